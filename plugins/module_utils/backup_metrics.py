# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Prometheus textfile metrics of a backup catalogue (node_exporter's textfile collector).

:func:`render_metrics` is pure (catalogue and run record in, text out, unit
tested with prometheus_client's parser); :func:`write_metrics` records the
run that just ended and rewrites the configured file atomically (a new file
renamed over the old one: node_exporter never reads half a file, and a link
at the metrics path is replaced, never written through).

One truth: ``last_run_success`` is the exit status of the last run (a run
whose restore test failed exited 1 and says 0), kept in a small record in the
backup directory (:data:`LAST_RUN_NAME`) that also counts consecutive
incomplete runs across retention; restore-test metrics carry no set label
(no new series per night); sets dated in the future (a wrong clock) count for
nothing and are counted apart; ``clients_left_stopped`` is the length of the
job's list of clients it stopped and has not started again (its state file, job_state).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json
import math
import os
import stat

from ansible_collections.nl_biomero.database.plugins.module_utils import archive, job_state
from ansible_collections.nl_biomero.database.plugins.module_utils.backup_set import (
    BackupSetError,
    list_backups,
    parse_time,
)
from ansible_collections.nl_biomero.database.plugins.module_utils.errors import NlbError
from ansible_collections.nl_biomero.database.plugins.module_utils.retention import dated_in_future

METRIC_PREFIX = "nl_biomero_backup_"
# The record of the last run, in the backup directory (hidden: the catalogue ignores it).
LAST_RUN_NAME = ".nl-biomero-backup.last-run.json"
# Beside the lock file: the JSON list of client containers a run stopped and has not started again.

_HELP = {
    "last_run_timestamp_seconds": "When the last backup run finished (unix time).",
    "last_run_success": "1 if the last backup run succeeded (exit status 0: set complete, restore test passed), else 0.",
    "last_run_duration_seconds": "Duration of the set of the last backup run.",
    "last_run_bytes": "Bytes of the components of the set of the last backup run.",
    "last_run_clients_held_seconds": "How long the last run held (stopped or paused) the clients (clients_held_for).",
    "last_success_timestamp_seconds": "When the newest complete backup set finished (0: none).",
    "consecutive_incomplete_runs": "Backup runs in a row, up to the last one, whose set is not complete.",
    "sets": "Backup sets in the catalogue by status.",
    "sets_dated_in_future": "Backup sets dated in the future (made with a wrong clock); retention counts them for nothing.",
    "clients_left_stopped": "Client containers a backup run stopped and has not started again (NaN: unreadable list).",
    "component_last_run_success": "1 if the component succeeded in the set of the last run, else 0.",
    "component_last_run_duration_seconds": "Duration of the component in the set of the last run.",
    "component_last_run_bytes": "Bytes of the component in the set of the last run.",
    "component_last_success_timestamp_seconds": "When a set last finished with this component succeeding (0: never).",
    "restore_test_success": "1 if the newest restore test restored every database with equal row counts (restorable).",
    "restore_test_timestamp_seconds": "When the newest restore test ran (unix time).",
    "restore_test_set_timestamp_seconds": "Start time of the backup set the newest restore test restored.",
    "offsite_last_copy_success": "1 if the newest off-host copy to the target was verified there, else 0.",
    "offsite_last_copy_bytes": "Bytes stored at the target by its newest verified copy.",
    "offsite_last_success_timestamp_seconds": "When a copy to the target was last verified there (0: never).",
}


class MetricsError(NlbError):
    """The metrics file cannot be written safely."""


def _escape(value):
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels):
    return "{%s}" % ",".join('%s="%s"' % (key, _escape(value)) for key, value in sorted(labels.items()))


def _unix(text):
    when = parse_time(text) if text else None
    return when.timestamp() if when else None


def _number(value):
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    return repr(round(float(value), 3))


def _now(now):
    return now or datetime.datetime.now(datetime.timezone.utc)


def _real(sets, now):
    """The sets not dated in the future (newest first), and the number that are."""
    real = [entry for entry in sets if not dated_in_future(parse_time(entry.get("time")), now)]
    return real, len(sets) - len(real)


def consecutive_incomplete(sets, record, now=None):
    """Runs in a row whose set is not complete, from the catalogue (newest first) and the last run record.

    Walks back through the sets newer than the record's set, stopping at a
    complete one; reaching the record's set (or running out: retention may
    have deleted it) adds the record's own count.
    """
    anchor = parse_time((record or {}).get("time"))
    count = 0
    for entry in _real(sets, now)[0]:
        when = parse_time(entry.get("time"))
        if anchor is not None and (entry["name"] == record.get("set") or (when is not None and when <= anchor)):
            break
        if entry.get("complete"):
            return count
        count += 1
    return count + int((record or {}).get("consecutive_incomplete") or 0)


def render_metrics(sets, backup_dir, components=(), last_run=None, clients_stopped=0, now=None, targets=()):
    """Prometheus text for a catalogue's sets (newest first, as list_backups gives them).

    ``components`` ((name, kind) pairs, the configured ones) always get a
    series, so a component missing from the last set shows up as failed.
    ``last_run`` is the record of the last run (see record_run) or None;
    ``clients_stopped`` the number of clients left stopped (None: unknown);
    ``targets`` the configured off-host targets (each gets a series).
    """
    base = {"backup_dir": backup_dir}
    samples = []

    def add(name, labels, value):
        if value is not None:
            samples.append((name, labels, value))

    real, future = _real(sets, now)
    finished = [entry for entry in real if entry.get("finished")]
    last = finished[0] if finished else None
    record = last_run if isinstance(last_run, dict) and last_run.get("set") else None
    if record and _real([{"time": record.get("time")}], now)[1]:
        record = None  # recorded under a wrong clock
    if record and last and record["set"] != last["name"]:
        newer = parse_time(last.get("time")) and parse_time(record.get("time")) and \
            parse_time(last["time"]) > parse_time(record["time"])
        if newer:
            record = None  # a run that did not record itself (killed) came after it: its set tells
    if record:
        same = last if last and last["name"] == record["set"] else None
        add("last_run_timestamp_seconds", base, _unix((same or {}).get("finished") or record.get("finished")))
        add("last_run_success", base, record.get("rc") == 0)
        if same:
            add("last_run_duration_seconds", base, same.get("duration_s"))
            add("last_run_clients_held_seconds", base, same.get("clients_held_s"))
            add("last_run_bytes", base, same.get("bytes") or 0)
        last = same
    elif last:
        add("last_run_timestamp_seconds", base, _unix(last["finished"]))
        add("last_run_success", base, bool(last["complete"]))
        add("last_run_duration_seconds", base, last.get("duration_s"))
        add("last_run_clients_held_seconds", base, last.get("clients_held_s"))
        add("last_run_bytes", base, last.get("bytes") or 0)
    good = [entry for entry in finished if entry.get("complete")]
    add("last_success_timestamp_seconds", base, _unix(good[0]["finished"]) if good else 0)
    add("consecutive_incomplete_runs", base, consecutive_incomplete(sets, record, now))
    counts = {}
    for entry in sets:
        counts[entry["status"]] = counts.get(entry["status"], 0) + 1
    for status in ("complete", "incomplete", "unfinished", "damaged", "unknown"):
        add("sets", dict(base, status=status), counts.get(status, 0))
    add("sets_dated_in_future", base, future)
    add("clients_left_stopped", base, float("nan") if clients_stopped is None else clients_stopped)
    wanted = list(components)
    if last:
        for item in last["components"]:
            pair = (item["name"], item.get("kind") or "other")
            if pair not in wanted and pair[1] != "globals":
                wanted.append(pair)
    for name, kind in wanted:
        labels = dict(base, component=name, kind=kind)
        item = None
        if last:
            item = next((comp for comp in last["components"] if comp.get("name") == name), None)
        add("component_last_run_success", labels, bool(item and item.get("outcome") == "ok"))
        if item:
            add("component_last_run_duration_seconds", labels, item.get("duration_s"))
            add("component_last_run_bytes", labels, item.get("bytes") or 0)
        success = 0
        for entry in finished:
            if any(comp.get("name") == name and comp.get("outcome") == "ok" and not comp.get("problem")
                   for comp in entry["components"]):
                success = _unix(entry["finished"]) or 0
                break
        add("component_last_success_timestamp_seconds", labels, success)
    tested = [entry for entry in real if isinstance(entry.get("restore_test"), dict)]
    if tested:
        newest = max(tested, key=lambda entry: entry["restore_test"].get("time") or "")
        result = newest["restore_test"]
        add("restore_test_success", base, bool(result.get("restorable")))
        add("restore_test_timestamp_seconds", base, _unix(result.get("time")))
        add("restore_test_set_timestamp_seconds", base, _unix(newest.get("time")))
    copies = dict((name, []) for name in targets)
    for entry in real:  # newest first
        for name, item in sorted((entry.get("offsite") or {}).items()):
            copies.setdefault(name, []).append(item)
    for name, items in sorted(copies.items()):
        labels = dict(base, target=name)
        verified = [item for item in items if item.get("verified")]
        add("offsite_last_copy_success", labels, bool(items and items[0].get("verified")))
        add("offsite_last_copy_bytes", labels, verified[0].get("bytes") or 0 if verified else 0)
        add("offsite_last_success_timestamp_seconds", labels, _unix(verified[0].get("time")) or 0 if verified else 0)
    # the text format wants all samples of a metric together, under its HELP and TYPE
    order = []
    for name, _labels_, _value in samples:
        if name not in order:
            order.append(name)
    lines = []
    for name in order:
        full = METRIC_PREFIX + name
        lines.append("# HELP %s %s" % (full, _HELP[name]))
        lines.append("# TYPE %s gauge" % full)
        lines.extend("%s%s %s" % (full, _labels(labels), _number(value))
                     for sample_name, labels, value in samples if sample_name == name)
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------
# Files: the last run record, the list of stopped clients, the metrics file
# --------------------------------------------------------------------------

def _read_json(path):
    """The JSON in ``path``; None when it does not exist; ValueError/OSError when it cannot be read."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        if not os.path.lexists(path):
            return None
        raise
    with os.fdopen(fd) as handle:
        return json.load(handle)


def read_last_run(backup_dir):
    """The record of the last run in ``backup_dir`` (None when there is none or it is unreadable)."""
    try:
        data = _read_json(os.path.join(backup_dir, LAST_RUN_NAME))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def record_run(backup_dir, run, sets=None, now=None):
    """Record the run that just ended (``run``: its result, with ``rc``, ``name`` and ``complete``); returns it."""
    previous = read_last_run(backup_dir)
    if sets is None:
        sets = list_backups(backup_dir)["sets"]
    others = [entry for entry in sets if entry["name"] != run["name"]]
    when = parse_time(run["name"])
    record = {
        "set": run["name"],
        "time": archive.utc_iso(when) if when else None,
        "finished": archive.utc_iso(_now(now)),
        "rc": run["rc"],
        "complete": bool(run["complete"]),
        "consecutive_incomplete": 0 if run["complete"] else 1 + consecutive_incomplete(others, previous, now),
    }
    archive.write_atomic(os.path.join(backup_dir, LAST_RUN_NAME), json.dumps(record, sort_keys=True) + "\n", 0o600)
    return record


def clients_left_stopped(lock_file):
    """How many clients the job's state file (job_state, beside ``lock_file``) says it left stopped (None: unreadable)."""
    if not lock_file:
        return 0
    try:
        state = job_state.read_state(job_state.state_path(lock_file))
    except (NlbError, OSError):
        return None
    clients = (state or {}).get("clients") or []
    return len(clients) if isinstance(clients, list) else None


def metrics_text(backup_dir, components=(), lock_file=None, now=None, targets=()):
    """The metrics of ``backup_dir`` as they are on disk: catalogue, last run record, stopped clients."""
    return render_metrics(list_backups(backup_dir)["sets"], backup_dir, components, last_run=read_last_run(backup_dir),
                          clients_stopped=clients_left_stopped(lock_file), now=now, targets=targets)


def write_metrics_file(path, text):
    """Replace the metrics file (mode 0644: node_exporter reads it) in one rename; creates its directory.

    A directory anyone can write to is refused: there a root job's file can
    be swapped or read before node_exporter sees it.
    """
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    mode = os.stat(directory).st_mode
    if mode & stat.S_IWOTH:
        raise MetricsError("the metrics directory %s is writable by everyone (mode %s); use a directory only its "
                           "owner (and group) can write to" % (directory, format(stat.S_IMODE(mode), "04o")))
    archive.write_atomic(path, text, 0o644)


def _components(config):
    components = [(entry["name"], "database") for entry in config["databases"]]
    for key in ("container_commands", "paths", "container_paths"):
        components += [(entry["name"], entry["kind"]) for entry in config.get(key, [])]
    return components


def write_metrics(config, log=None, run=None):
    """Record ``run`` (the result of the run that just ended, when given) and rewrite the metrics file.

    Returns the metrics file's path, or None (none configured, or it failed:
    logged, a backup run does not fail for its metrics).
    """
    if run is not None and run.get("name"):
        try:
            record_run(config["backup_dir"], run)
        except (BackupSetError, OSError) as exc:
            if log:
                log("cannot record the run in %s: %s" % (config["backup_dir"], exc), error=True)
    path = config.get("metrics_file")
    if not path:
        return None
    try:
        write_metrics_file(path, metrics_text(config["backup_dir"], _components(config), config.get("lock_file"),
                                              targets=[target["name"] for target in config.get("offsite") or []]))
    except (BackupSetError, MetricsError, OSError) as exc:
        if log:
            log("cannot write the metrics file %s: %s" % (path, exc), error=True)
        return None
    return path
