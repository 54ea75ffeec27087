# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Prometheus textfile metrics of a backup catalogue (node_exporter's textfile collector).

:func:`render_metrics` is pure (catalogue in, text out, unit tested);
:func:`write_metrics` rewrites the configured file atomically, so
node_exporter never reads half a file.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.nl_biomero.database.plugins.module_utils import archive
from ansible_collections.nl_biomero.database.plugins.module_utils.backup_set import (
    BackupSetError,
    list_backups,
    parse_time,
)

METRIC_PREFIX = "nl_biomero_backup_"

_HELP = {
    "last_run_timestamp_seconds": "When the newest finished backup set finished (unix time).",
    "last_run_success": "1 if the newest finished backup set is complete, else 0.",
    "last_run_duration_seconds": "Duration of the newest finished backup set.",
    "last_run_bytes": "Bytes of the components of the newest finished backup set.",
    "last_success_timestamp_seconds": "When the newest complete backup set finished (0: none).",
    "sets": "Backup sets in the catalogue by status.",
    "component_last_run_success": "1 if the component succeeded in the newest finished set, else 0.",
    "component_last_run_duration_seconds": "Duration of the component in the newest finished set.",
    "component_last_run_bytes": "Bytes of the component in the newest finished set.",
    "component_last_success_timestamp_seconds": "When a set last finished with this component succeeding (0: never).",
    "restore_test_success": "1 if the newest restore test restored every database with equal row counts (restorable).",
    "restore_test_timestamp_seconds": "When the newest restore test ran (unix time).",
    "restore_test_set_timestamp_seconds": "Start time of the backup set the newest restore test restored.",
}
_TYPES = {"sets": "gauge"}


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
    return repr(round(float(value), 3))


def render_metrics(sets, backup_dir, components=()):
    """Prometheus text for a catalogue's sets (newest first, as list_backups gives them).

    ``components`` ((name, kind) pairs, the configured ones) always get a
    series, so a component missing from the newest set shows up as failed.
    """
    base = {"backup_dir": backup_dir}
    samples = []

    def add(name, labels, value):
        if value is not None:
            samples.append((name, labels, value))

    finished = [entry for entry in sets if entry.get("finished")]
    last = finished[0] if finished else None
    if last:
        add("last_run_timestamp_seconds", base, _unix(last["finished"]))
        add("last_run_success", base, bool(last["complete"]))
        add("last_run_duration_seconds", base, last.get("duration_s"))
        add("last_run_bytes", base, last.get("bytes") or 0)
    good = [entry for entry in finished if entry.get("complete")]
    add("last_success_timestamp_seconds", base, _unix(good[0]["finished"]) if good else 0)
    counts = {}
    for entry in sets:
        counts[entry["status"]] = counts.get(entry["status"], 0) + 1
    for status in ("complete", "incomplete", "unfinished", "damaged", "unknown"):
        add("sets", dict(base, status=status), counts.get(status, 0))
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
    tested = [entry for entry in sets if isinstance(entry.get("restore_test"), dict)]
    if tested:
        newest = max(tested, key=lambda entry: entry["restore_test"].get("time") or "")
        result = newest["restore_test"]
        labels = dict(base, set=newest["name"])
        add("restore_test_success", labels, bool(result.get("restorable")))
        add("restore_test_timestamp_seconds", labels, _unix(result.get("time")))
        add("restore_test_set_timestamp_seconds", labels, _unix(newest.get("time")))
    lines = []
    seen = set()
    for name, labels, value in samples:
        full = METRIC_PREFIX + name
        if full not in seen:
            seen.add(full)
            lines.append("# HELP %s %s" % (full, _HELP[name]))
            lines.append("# TYPE %s %s" % (full, _TYPES.get(name, "gauge")))
        lines.append("%s%s %s" % (full, _labels(labels), _number(value)))
    return "\n".join(lines) + "\n"


def write_metrics_file(path, text):
    """Replace the metrics file (mode 0644: node_exporter reads it) in one rename; creates its directory."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    archive.write_atomic(path, text, 0o644)


def write_metrics(config, log=None):
    """Rewrite the metrics file from the catalogue (when one is configured); returns its path or None."""
    path = config.get("metrics_file")
    if not path:
        return None
    try:
        sets = list_backups(config["backup_dir"])["sets"]
        components = [(entry["name"], "database") for entry in config["databases"]]
        for key in ("container_commands", "paths", "container_paths"):
            components += [(entry["name"], entry["kind"]) for entry in config.get(key, [])]
        write_metrics_file(path, render_metrics(sets, config["backup_dir"], components))
    except (BackupSetError, OSError) as exc:
        if log:
            log("cannot write the metrics file %s: %s" % (path, exc), error=True)
        return None
    return path
