# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One scheduled backup run: a backup set of several databases (and host folders).

The core of the ``pg_backup_set`` and ``pg_restore_test`` modules, and the
command the ``postgres_backup`` role schedules on each host (systemd timer or
cron), without a control node and without Ansible::

    PYTHONPATH=/opt/nl-biomero/collection \\
      python3 -m ansible_collections.nl_biomero.database.plugins.module_utils.backup_run \\
      --config /etc/nl-biomero/backup.json

A run: take the lock (``flock``; a second run exits 75 at once), start a set
(backup_set.py), stop or pause the client containers, record per-table row
counts and dump each database with dump.py into the set, tar the configured
host folders into it, restart the clients (always, also after a failure),
finish the set (complete only when every component succeeded), apply
retention, optionally restore-test the newest complete set, write Prometheus
textfile metrics (atomic) and, on failure, run the notify command.
Exit status: 0 complete, 1 failed (incomplete set), 2 bad configuration,
75 another run holds the lock.

Pure Python without Ansible; secrets (passwords) come from the 0600 config
file, a password file or the environment and never appear in argv, logs or
results.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import argparse
import datetime
import errno
import gzip
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX
    fcntl = None

from ansible_collections.nl_biomero.database.plugins.module_utils import archive
from ansible_collections.nl_biomero.database.plugins.module_utils.backup_set import (
    BackupSet,
    BackupSetError,
    apply_retention,
    list_backups,
    newest_complete,
    parse_time,
)
from ansible_collections.nl_biomero.database.plugins.module_utils.dump import PgDump, DumpError
from ansible_collections.nl_biomero.database.plugins.module_utils.engine import (
    ContainerEngine,
    EngineError,
    detect_engine,
    run as engine_run,
)
from ansible_collections.nl_biomero.database.plugins.module_utils.pg_container import PgContainer, PgError
from ansible_collections.nl_biomero.database.plugins.module_utils.retention import (
    POLICY_KEYS,
    RetentionError,
    validate_policy,
)
from ansible_collections.nl_biomero.database.plugins.module_utils.errors import NlbError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_LOCKED = 75  # EX_TEMPFAIL: try again later
LOCK_NAME = ".nl-biomero-backup.lock"
METRIC_PREFIX = "nl_biomero_backup_"
CLIENT_ACTIONS = ("stop", "pause")
RESTORE_TEST_PREFIX = "nlb-restoretest-"
NOTIFY_TIMEOUT = 120
PROG = "nl-biomero-backup"

_TOP_KEYS = {
    "backup_dir": None, "engine": "auto", "databases": [], "paths": [], "container_paths": [],
    "container_commands": [], "clients": [],
    "client_action": "stop", "client_stop_timeout": 60, "metrics_file": None, "lock_file": None,
    "notify_command": None, "retention": None, "restore_test": False, "restore_test_timeout": 180,
    "syslog": False,
}
_DB_KEYS = {
    "name": None, "container": None, "database": None, "user": None, "password": None,
    "password_file": None, "password_env": None, "format": "custom", "compress": "auto",
    "globals": True, "jobs": None, "row_counts": True, "exclude_table_data": [],
}
_PATH_KEYS = {"name": None, "path": None, "kind": "other"}
_CONTAINER_PATH_KEYS = {"name": None, "container": None, "path": None, "kind": "omero_data"}
_CONTAINER_COMMAND_KEYS = {"name": None, "container": None, "command": None, "kind": "omero_config"}
_PATH_KINDS = ("omero_data", "omero_config", "metabase", "other")


class BackupRunError(NlbError):
    """Bad configuration, or the run cannot start (no lock, no backup directory)."""


class LockedError(BackupRunError):
    """Another run holds the lock."""


# --------------------------------------------------------------------------
# Configuration (pure, unit tested)
# --------------------------------------------------------------------------

def _bool(value, what):
    """A boolean from a bool or its usual text forms (configurations written by templates)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise BackupRunError("%s must be true or false, got %r" % (what, value))


def _fill(entry, keys, what):
    if not isinstance(entry, dict):
        raise BackupRunError("%s must be a mapping, got %r" % (what, type(entry).__name__))
    unknown = sorted(set(entry) - set(keys))
    if unknown:
        raise BackupRunError("%s: unknown key(s) %s (known: %s)" % (what, ", ".join(unknown), ", ".join(sorted(keys))))
    full = dict(keys)
    full.update(dict((key, value) for key, value in entry.items() if value is not None))
    return full


def normalize_config(raw):
    """Validate a configuration dict and fill in defaults; BackupRunError naming the problem."""
    config = _fill(raw, _TOP_KEYS, "configuration")
    if not config["backup_dir"] or not isinstance(config["backup_dir"], str):
        raise BackupRunError("configuration: backup_dir is required")
    config["backup_dir"] = os.path.abspath(os.path.expanduser(config["backup_dir"]))
    for key in ("databases", "paths", "container_paths", "container_commands"):
        if not isinstance(config[key], list):
            raise BackupRunError("configuration: %s must be a list" % key)
    if not any(config[key] for key in ("databases", "paths", "container_paths")):
        raise BackupRunError("configuration: nothing to back up (no databases and no paths)")
    names = []
    databases = []
    for index, item in enumerate(config["databases"]):
        entry = _fill(item, _DB_KEYS, "databases[%d]" % index)
        for key in ("container", "database"):
            if not entry[key] or not isinstance(entry[key], str):
                raise BackupRunError("databases[%d]: %s is required" % (index, key))
        entry["name"] = entry["name"] or entry["database"]
        if sum(1 for key in ("password", "password_file", "password_env") if entry[key]) > 1:
            raise BackupRunError("databases[%d] (%s): give at most one of password, password_file, password_env"
                                 % (index, entry["name"]))
        if not isinstance(entry["exclude_table_data"], list):
            raise BackupRunError("databases[%d] (%s): exclude_table_data must be a list" % (index, entry["name"]))
        for key in ("globals", "row_counts"):
            entry[key] = _bool(entry[key], "databases[%d].%s" % (index, key))
        names.append(entry["name"])
        databases.append(entry)
    paths = []
    for index, item in enumerate(config["paths"]):
        entry = _fill(item, _PATH_KEYS, "paths[%d]" % index)
        if not entry["path"] or not os.path.isabs(entry["path"]):
            raise BackupRunError("paths[%d]: path must be an absolute host path" % index)
        if entry["kind"] not in _PATH_KINDS:
            raise BackupRunError("paths[%d]: kind '%s' is not one of %s" % (index, entry["kind"], ", ".join(_PATH_KINDS)))
        entry["name"] = entry["name"] or (os.path.basename(entry["path"].rstrip("/")) or "root")
        names.append(entry["name"])
        paths.append(entry)
    container_paths = []
    for index, item in enumerate(config["container_paths"]):
        entry = _fill(item, _CONTAINER_PATH_KEYS, "container_paths[%d]" % index)
        if not entry["container"] or not entry["path"] or not entry["path"].startswith("/"):
            raise BackupRunError("container_paths[%d]: container and an absolute path are required" % index)
        if entry["kind"] not in _PATH_KINDS:
            raise BackupRunError("container_paths[%d]: kind '%s' is not one of %s"
                                 % (index, entry["kind"], ", ".join(_PATH_KINDS)))
        entry["name"] = entry["name"] or (entry["path"].rstrip("/").rsplit("/", 1)[-1] or "root")
        names.append(entry["name"])
        container_paths.append(entry)
    container_commands = []
    for index, item in enumerate(config["container_commands"]):
        entry = _fill(item, _CONTAINER_COMMAND_KEYS, "container_commands[%d]" % index)
        command = entry["command"]
        if not entry["container"] or not entry["name"]:
            raise BackupRunError("container_commands[%d]: name and container are required" % index)
        if not isinstance(command, list) or not command or not all(isinstance(arg, str) for arg in command):
            raise BackupRunError("container_commands[%d]: command must be an argv list of strings" % index)
        if entry["kind"] not in _PATH_KINDS:
            raise BackupRunError("container_commands[%d]: kind '%s' is not one of %s"
                                 % (index, entry["kind"], ", ".join(_PATH_KINDS)))
        names.append(entry["name"])
        container_commands.append(entry)
    for name in names:
        if not name or "/" in name or name.startswith(".") or name.endswith(".globals"):
            raise BackupRunError("component name '%s' is not usable (no '/', no leading '.', no '.globals' suffix)"
                                 % name)
    duplicates = sorted(set(name for name in names if names.count(name) > 1))
    if duplicates:
        raise BackupRunError("component names must be unique; repeated: %s (set name: on the entries)"
                             % ", ".join(duplicates))
    config["databases"] = databases
    config["paths"] = paths
    config["container_paths"] = container_paths
    config["container_commands"] = container_commands
    clients = config["clients"]
    if not isinstance(clients, list) or not all(isinstance(item, str) and item for item in clients):
        raise BackupRunError("configuration: clients must be a list of container names")
    if config["client_action"] not in CLIENT_ACTIONS:
        raise BackupRunError("configuration: client_action must be one of %s" % ", ".join(CLIENT_ACTIONS))
    notify = config["notify_command"]
    if notify is not None and (not isinstance(notify, list) or not notify
                               or not all(isinstance(item, str) for item in notify)):
        raise BackupRunError("configuration: notify_command must be an argv list of strings (no shell string)")
    if config["retention"]:
        retention = dict(config["retention"])
        prune = bool(retention.pop("prune_incomplete", False))
        try:
            policy = validate_policy(**retention)
        except (RetentionError, TypeError) as exc:
            raise BackupRunError("configuration: retention: %s (keys: %s, prune_incomplete)"
                                 % (exc, ", ".join(POLICY_KEYS)))
        config["retention"] = dict(policy, prune_incomplete=prune)
    else:
        config["retention"] = None
    for key in ("restore_test", "syslog"):
        config[key] = _bool(config[key], key)
    config["lock_file"] = config["lock_file"] or os.path.join(config["backup_dir"], LOCK_NAME)
    for key in ("client_stop_timeout", "restore_test_timeout"):
        config[key] = int(config[key])
    return config


def load_config(path):
    """Read and validate a JSON configuration file."""
    try:
        with open(path) as handle:
            raw = json.load(handle)
    except (OSError, ValueError) as exc:
        raise BackupRunError("cannot read the configuration %s: %s" % (path, exc))
    return normalize_config(raw)


def resolve_password(entry, environ=None):
    """The password of a database entry (inline, from a file, or from an environment variable), or None."""
    environ = os.environ if environ is None else environ
    if entry.get("password"):
        return entry["password"]
    if entry.get("password_file"):
        try:
            with open(entry["password_file"]) as handle:
                return handle.read().rstrip("\r\n")
        except OSError as exc:
            raise BackupRunError("database %s: cannot read password_file %s: %s"
                                 % (entry["name"], entry["password_file"], exc.strerror or exc))
    if entry.get("password_env"):
        value = environ.get(entry["password_env"])
        if value is None:
            raise BackupRunError("database %s: environment variable %s is not set"
                                 % (entry["name"], entry["password_env"]))
        return value
    return None


def public_config(config):
    """The configuration without secrets (for results and logs)."""
    shown = dict(config)
    shown["databases"] = [dict((key, value) for key, value in entry.items() if key != "password")
                          for entry in config.get("databases", [])]
    return shown


def expected_components(config):
    names = []
    for entry in config["databases"]:
        names.append(entry["name"])
        if entry["globals"]:
            names.append(entry["name"] + ".globals")
    for key in ("container_commands", "paths", "container_paths"):
        names.extend(entry["name"] for entry in config.get(key, []))
    return names


# --------------------------------------------------------------------------
# Prometheus textfile metrics (pure, unit tested)
# --------------------------------------------------------------------------

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


def write_text_atomic(path, text, mode=0o644):
    """Write a text file through a temporary file beside it and a rename (node_exporter never sees half a file)."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    tmp = archive.temp_path_beside(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        archive.remove_path(tmp)


def compare_counts(recorded, restored):
    """Differences between recorded and restored row counts: a list of texts (empty: equal)."""
    problems = []
    for table in sorted(set(recorded) | set(restored)):
        if table not in restored:
            problems.append("%s: missing after restore (recorded %s rows)" % (table, recorded[table]))
        elif table not in recorded:
            problems.append("%s: not recorded at backup time (%s rows restored)" % (table, restored[table]))
        elif recorded[table] != restored[table]:
            problems.append("%s: %s rows restored, %s recorded" % (table, restored[table], recorded[table]))
    return problems


# --------------------------------------------------------------------------
# Logging, lock, notify
# --------------------------------------------------------------------------

class Log:
    """Messages to stderr (the journal under systemd) and optionally syslog (cron); kept for the result."""

    def __init__(self, stream=None, use_syslog=False):
        self.stream = stream
        self.lines = []
        self.syslog = None
        if use_syslog:
            try:
                import syslog
                syslog.openlog(PROG, syslog.LOG_PID, syslog.LOG_DAEMON)
                self.syslog = syslog
            except ImportError:  # pragma: no cover
                self.syslog = None

    def __call__(self, message, error=False):
        self.lines.append(message)
        if self.stream is not None:
            self.stream.write("%s%s\n" % ("ERROR: " if error else "", message))
            self.stream.flush()
        if self.syslog is not None:
            self.syslog.syslog(self.syslog.LOG_ERR if error else self.syslog.LOG_INFO, message)


class RunLock:
    """An exclusive, non-blocking flock on a lock file; released when the process ends in any case."""

    def __init__(self, path):
        self.path = path
        self.fd = None

    def __enter__(self):
        if fcntl is None:  # pragma: no cover
            raise BackupRunError("file locking (fcntl) is not available on this platform")
        directory = os.path.dirname(self.path)
        if directory and not os.path.isdir(directory):
            os.makedirs(directory, 0o700)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self.fd)
            self.fd = None
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise LockedError("another backup run holds the lock %s" % self.path)
            raise BackupRunError("cannot lock %s: %s" % (self.path, exc))
        os.ftruncate(self.fd, 0)
        os.write(self.fd, ("%d\n" % os.getpid()).encode("ascii"))
        return self

    def __exit__(self, *exc_info):
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None
        return False


def run_notify(argv, status, set_path, error, log):
    """Run the notify command (argv list, no shell) with the outcome in its environment."""
    env = dict(os.environ, NLB_BACKUP_STATUS=status, NLB_BACKUP_SET=set_path or "", NLB_BACKUP_ERROR=error or "")
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              env=env, timeout=NOTIFY_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log("notify command %s failed: %s" % (argv[0], exc), error=True)
        return None
    if proc.returncode != 0:
        output = proc.stdout.decode("utf-8", "replace").strip()[-500:]
        log("notify command %s exited %d: %s" % (argv[0], proc.returncode, output), error=True)
    return proc.returncode


# --------------------------------------------------------------------------
# Client containers
# --------------------------------------------------------------------------

class Clients:
    """Stops (or pauses) the client containers that are running, and brings exactly those back."""

    def __init__(self, engine, names, action, timeout, log):
        self.engine = engine
        self.names = list(names)
        self.action = action
        self.timeout = timeout
        self.log = log
        self.held = []
        self.report = []

    def _call(self, *args):
        return engine_run([self.engine.binary] + list(args))

    def hold(self):
        """Stop/pause the running clients. Returns an error text or None (the caller then restarts)."""
        for name in self.names:
            info = self.engine.inspect(name)
            if info is None:
                self.report.append({"name": name, "state": "missing"})
                self.log("client container %s does not exist; nothing to %s" % (name, self.action))
                continue
            state = info.get("State", {})
            if not state.get("Running") or state.get("Paused"):
                self.report.append({"name": name, "state": state.get("Status", "not running")})
                self.log("client container %s is %s; left as it is" % (name, state.get("Status", "not running")))
                continue
            if self.action == "pause":
                rc, _out, err = self._call("pause", name)
            else:
                rc, _out, err = self._call("stop", "-t", str(self.timeout), name)
            if rc != 0:
                self.report.append({"name": name, "state": "running", "error": err.strip()})
                return "could not %s client container %s: %s" % (self.action, name, err.strip())
            self.held.append(name)
            self.report.append({"name": name, "state": "stopped" if self.action == "stop" else "paused"})
            self.log("%s client container %s" % ("stopped" if self.action == "stop" else "paused", name))
        return None

    def release(self):
        """Start/unpause every held client, newest held first; returns a list of error texts."""
        errors = []
        for name in reversed(self.held):
            rc, _out, err = self._call("unpause" if self.action == "pause" else "start", name)
            entry = next(item for item in self.report if item["name"] == name)
            if rc != 0:
                entry["restarted"] = False
                errors.append("could not %s client container %s: %s"
                              % ("unpause" if self.action == "pause" else "start", name, err.strip()))
            else:
                entry["restarted"] = True
                self.log("%s client container %s" % ("unpaused" if self.action == "pause" else "started", name))
        self.held = []
        return errors


# --------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------

def _tar_path(source, dest):
    """tar.gz of a host folder (or file) written to a hidden temp beside ``dest``, then renamed."""
    tmp = archive.temp_path_beside(dest)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as raw:
            with tarfile.open(fileobj=raw, mode="w:gz") as tar:
                tar.add(source, arcname=os.path.basename(source.rstrip("/")) or "root")
            raw.flush()
            os.fsync(raw.fileno())
        archive.place(tmp, dest)
    finally:
        archive.remove_path(tmp)


def _copy_out_gz(argv, dest):
    """Run ``argv`` (a tar stream on stdout) and gzip the stream into ``dest`` (temp beside it, then renamed).

    Streamed in chunks: memory stays bounded whatever the folder's size (an
    OMERO binary repository can be terabytes). The exit status is checked.
    """
    tmp = archive.temp_path_beside(dest)
    try:
        with tempfile.TemporaryFile() as err:
            try:
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err)
            except OSError as exc:
                raise BackupRunError("cannot run %s: %s" % (argv[0], exc))
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as raw:
                    with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6) as out:
                        while True:
                            chunk = proc.stdout.read(archive.CHUNK)
                            if not chunk:
                                break
                            out.write(chunk)
                    raw.flush()
                    os.fsync(raw.fileno())
            except BaseException:
                proc.kill()
                proc.wait()
                raise
            finally:
                proc.stdout.close()
            rc = proc.wait()
            if rc != 0:
                err.seek(0)
                raise BackupRunError("%s failed (exit %d): %s" % (" ".join(argv[:3]), rc,
                                                                  err.read().decode("utf-8", "replace").strip()[-500:]))
        archive.place(tmp, dest)
    finally:
        archive.remove_path(tmp)


class BackupRun:
    """One backup run from a normalized configuration (see normalize_config)."""

    def __init__(self, config, log=None, environ=None):
        self.config = config
        self.log = log or Log()
        self.environ = os.environ if environ is None else environ
        self.warnings = []

    def plan(self):
        """What a run would do (check mode): the components and client actions, nothing touched."""
        config = self.config
        return {
            "backup_dir": config["backup_dir"],
            "components": expected_components(config),
            "databases": [dict(name=entry["name"], container=entry["container"], database=entry["database"])
                          for entry in config["databases"]],
            "paths": [dict(name=entry["name"], path=entry["path"]) for entry in config["paths"]],
            "container_paths": [dict(name=entry["name"], container=entry["container"], path=entry["path"])
                                for entry in config["container_paths"]],
            "container_commands": [dict(name=entry["name"], container=entry["container"])
                                   for entry in config["container_commands"]],
            "clients": list(config["clients"]),
            "client_action": config["client_action"],
            "retention": config["retention"],
            "restore_test": config["restore_test"],
        }

    def run(self):
        """Take the lock and run; returns the result dict with ``rc`` (see EXIT_*). Raises LockedError."""
        config = self.config
        os.makedirs(config["backup_dir"], 0o700, exist_ok=True)
        with RunLock(config["lock_file"]):
            return self._run_locked()

    def _run_locked(self):
        config = self.config
        clock = time.monotonic()
        engine = ContainerEngine(detect_engine(config["engine"]))
        try:
            backup_set = BackupSet.start(config["backup_dir"])
        except BackupSetError:
            # a run in the same second as the previous one: set names are UTC stamps to the second
            time.sleep(1.05)
            backup_set = BackupSet.start(config["backup_dir"])
        self.log("backup set %s started" % backup_set.path)
        clients = Clients(engine, config["clients"], config["client_action"], config["client_stop_timeout"], self.log)
        run_error = None
        # commands (e.g. omero config get --show-password) need their container running: before the clients stop
        for entry in config["container_commands"]:
            self._container_command(backup_set, entry, engine)
        try:
            run_error = clients.hold()
            if run_error:
                self.log(run_error, error=True)
            else:
                for entry in config["databases"]:
                    self._database(backup_set, entry, engine, bool(config["clients"]))
                for entry in config["paths"]:
                    self._path(backup_set, entry)
                for entry in config["container_paths"]:
                    self._container_path(backup_set, entry, engine)
        finally:
            restart_errors = clients.release()
            for text in restart_errors:
                self.log(text, error=True)
        errors = [text for text in [run_error] + restart_errors if text]
        manifest = backup_set.finish(expected=expected_components(config), error="; ".join(errors) or None)
        if manifest["complete"]:
            self.log("backup set %s complete (%.1f s)" % (backup_set.path, manifest["duration_s"] or 0))
        else:
            self.log("backup set %s INCOMPLETE: %s" % (backup_set.path, manifest["error"]), error=True)
        result = {
            "rc": EXIT_OK if manifest["complete"] else EXIT_FAILED,
            "changed": True,
            "set": backup_set.path,
            "name": backup_set.name,
            "complete": manifest["complete"],
            "error": manifest["error"],
            "components": manifest["components"],
            "clients": clients.report,
            "retention": None,
            "restore_test": None,
        }
        if config["retention"]:
            result["retention"] = self._retention()
        if config["restore_test"] and manifest["complete"]:
            try:
                result["restore_test"] = restore_test(config["backup_dir"], set_path=backup_set.path,
                                                      engine=config["engine"], log=self.log,
                                                      timeout=config["restore_test_timeout"])
            except BackupRunError as exc:
                self.log("restore test: %s" % exc, error=True)
                result["restore_test"] = {"restorable": False, "error": str(exc)}
            if not result["restore_test"].get("restorable"):
                result["rc"] = EXIT_FAILED
        result["metrics_file"] = self._metrics()
        result["duration_s"] = round(time.monotonic() - clock, 3)
        if result["rc"] != EXIT_OK:
            failure = manifest["error"] or (result["restore_test"] or {}).get("error") or "restore test failed"
            result["notify_rc"] = self._notify("failed", backup_set.path, failure)
        result["warnings"] = list(self.warnings)
        result["log"] = list(self.log.lines)
        return result

    def _database(self, backup_set, entry, engine, clients_held):
        name = entry["name"]
        started = time.monotonic()
        try:
            password = resolve_password(entry, self.environ)
            counts = None
            if entry["row_counts"]:
                pg = PgContainer(entry["container"], engine=engine.binary, user=entry["user"], password=password)
                counts = pg.table_row_counts(entry["database"])
            dest_dir = backup_set.path
            same_db = [item for item in self.config["databases"] if item["database"] == entry["database"]]
            if len(same_db) > 1:
                dest_dir = os.path.join(backup_set.path, archive.safe_name(name))
                os.mkdir(dest_dir, 0o700)
            dumped = PgDump(entry["container"], entry["database"], engine=engine.binary, login_user=entry["user"],
                            login_password=password, dest_dir=dest_dir, format=entry["format"],
                            compress=entry["compress"], globals=entry["globals"], jobs=entry["jobs"],
                            exclude_table_data=entry["exclude_table_data"]).run()
            self.warnings.extend("%s: %s" % (name, text) for text in dumped.get("warnings", []))
            extra = {"login_user": dumped["login_user"], "verified": dumped["verified"]}
            if counts is not None:
                extra.update(row_counts=counts, rows_total=sum(value or 0 for value in counts.values()),
                             row_counts_with_clients_held=clients_held)
            backup_set.record_dump(dumped["path"], name=name, duration_s=round(time.monotonic() - started, 3), **extra)
            self.log("%s: dumped %s/%s (%d bytes, %s)" % (name, entry["container"], entry["database"],
                                                          dumped["bytes"], dumped["compression"]))
        except (DumpError, PgError, EngineError, BackupRunError, BackupSetError, OSError, ValueError) as exc:
            self.log("%s: %s" % (name, exc), error=True)
            backup_set.record_failure(name, "database", str(exc), duration_s=round(time.monotonic() - started, 3),
                                      container=entry["container"], database=entry["database"])

    def _path(self, backup_set, entry):
        name = entry["name"]
        started = time.monotonic()
        try:
            if not os.path.exists(entry["path"]):
                raise BackupRunError("%s does not exist" % entry["path"])
            dest = backup_set.file_path("%s.tar.gz" % name)
            _tar_path(entry["path"], dest)
            backup_set.record_component(name, entry["kind"], path=dest, duration_s=round(time.monotonic() - started, 3),
                                        source=entry["path"])
            self.log("%s: archived %s" % (name, entry["path"]))
        except (BackupRunError, BackupSetError, OSError, tarfile.TarError) as exc:
            self.log("%s: %s" % (name, exc), error=True)
            backup_set.record_failure(name, entry["kind"], str(exc), duration_s=round(time.monotonic() - started, 3),
                                      source=entry["path"])

    def _container_command(self, backup_set, entry, engine):
        """stdout of a command in a container into ``<name>.txt`` (0600; it may hold passwords, never logged)."""
        name = entry["name"]
        started = time.monotonic()
        try:
            rc, out, err = engine.exec_run(entry["container"], entry["command"])
            if rc != 0:
                raise BackupRunError("%s in container %s failed (exit %d): %s"
                                     % (entry["command"][0], entry["container"], rc, err.strip()[-500:]))
            dest = backup_set.file_path("%s.txt" % name)
            tmp = archive.temp_path_beside(dest)
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as handle:
                    handle.write(out)
                    handle.flush()
                    os.fsync(handle.fileno())
                archive.place(tmp, dest)
            finally:
                archive.remove_path(tmp)
            backup_set.record_component(name, entry["kind"], path=dest, duration_s=round(time.monotonic() - started, 3),
                                        container=entry["container"], command=entry["command"][0])
            self.log("%s: saved the output of %s in container %s" % (name, entry["command"][0], entry["container"]))
        except (BackupRunError, BackupSetError, EngineError, OSError) as exc:
            self.log("%s: %s" % (name, exc), error=True)
            backup_set.record_failure(name, entry["kind"], str(exc), duration_s=round(time.monotonic() - started, 3),
                                      container=entry["container"])

    def _container_path(self, backup_set, entry, engine):
        """A folder inside a container (running or stopped) as ``<name>.tar.gz``: ``<engine> cp`` streamed, gzip."""
        name = entry["name"]
        started = time.monotonic()
        try:
            dest = backup_set.file_path("%s.tar.gz" % name)
            _copy_out_gz([engine.binary, "cp", "%s:%s" % (entry["container"], entry["path"]), "-"], dest)
            backup_set.record_component(name, entry["kind"], path=dest, duration_s=round(time.monotonic() - started, 3),
                                        container=entry["container"], source=entry["path"])
            self.log("%s: archived %s from container %s" % (name, entry["path"], entry["container"]))
        except (BackupRunError, BackupSetError, OSError) as exc:
            self.log("%s: %s" % (name, exc), error=True)
            backup_set.record_failure(name, entry["kind"], str(exc), duration_s=round(time.monotonic() - started, 3),
                                      container=entry["container"], source=entry["path"])

    def _retention(self):
        policy = dict(self.config["retention"])
        prune = policy.pop("prune_incomplete")
        try:
            plan = apply_retention(self.config["backup_dir"], policy, prune_incomplete=prune)
        except (BackupSetError, RetentionError, OSError) as exc:
            self.log("retention failed: %s" % exc, error=True)
            self.warnings.append("retention failed: %s" % exc)
            return {"error": str(exc)}
        for item in plan["deleted"]:
            self.log("retention: deleted %s (%s)" % (item["name"], item["reason"]))
        return {"kept": [item["name"] for item in plan["keep"]], "deleted": [item["name"] for item in plan["deleted"]]}

    def _metrics(self):
        return write_metrics(self.config, self.log)

    def _notify(self, status, set_path, error):
        if not self.config["notify_command"]:
            return None
        return run_notify(self.config["notify_command"], status, set_path, error, self.log)


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
        write_text_atomic(path, render_metrics(sets, config["backup_dir"], components))
    except (BackupSetError, OSError) as exc:
        if log:
            log("cannot write the metrics file %s: %s" % (path, exc), error=True)
        return None
    return path


# --------------------------------------------------------------------------
# Restore test
# --------------------------------------------------------------------------

def _data_mount(engine, image, server_version):
    """Where the image keeps its data: its declared volume, else PGDATA, else by major version."""
    rc, out, _err = engine_run([engine.binary, "image", "inspect", image])
    if rc == 0:
        try:
            conf = json.loads(out)[0].get("Config") or {}
        except (ValueError, IndexError):
            conf = {}
        volumes = [key for key in (conf.get("Volumes") or {}) if "postgresql" in key]
        if volumes:
            return sorted(volumes)[0]
        for item in conf.get("Env") or []:
            if item.startswith("PGDATA="):
                return item[len("PGDATA="):]
    major = int(str(server_version or "0").split(".", 1)[0] or 0)
    return "/var/lib/postgresql" if major >= 18 else "/var/lib/postgresql/data"


def _wait_ready(engine, name, user, timeout):
    """Wait until the final server accepts connections (the entrypoint's init server listens on the socket only)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        info = engine.inspect(name)
        if info is None or not info.get("State", {}).get("Running"):
            rc, out, err = engine_run([engine.binary, "logs", "--tail", "20", name])
            raise BackupRunError("the throwaway container %s stopped: %s" % (name, (out + err).strip()[-1000:]))
        rc, out, err = engine.exec_run(name, ["pg_isready", "-h", "127.0.0.1", "-U", user, "-d", "postgres"])
        if rc == 0:
            rc, out, err = engine.exec_run(name, ["psql", "-X", "-At", "-U", user, "-d", "postgres", "-c", "SELECT 1"])
            if rc == 0:
                return
        last = (err or out).strip()
        time.sleep(0.5)
    raise BackupRunError("the throwaway container %s was not ready after %d s: %s" % (name, timeout, last))


def _restore_component(engine, backup_set, component, timeout, log):
    """Restore one database component into a throwaway container; returns its result (never raises)."""
    from ansible_collections.nl_biomero.database.plugins.module_utils.restore import PgRestore, RestoreError

    name = component["name"]
    versions = component.get("versions") or {}
    image = versions.get("image")
    user = component.get("login_user") or "postgres"
    database = component.get("database") or name
    container = RESTORE_TEST_PREFIX + uuid.uuid4().hex[:12]
    volume = container + "-data"
    outcome = {"name": name, "database": database, "image": image, "container": container, "ok": False,
               "error": None, "tables": 0, "rows": 0, "mismatches": []}
    started = time.monotonic()
    created = False
    try:
        if not image:
            raise BackupRunError("the set does not record the image the database ran on")
        if not isinstance(component.get("row_counts"), dict):
            raise BackupRunError("the set recorded no row counts for %s" % name)
        password = uuid.uuid4().hex
        mount = _data_mount(engine, image, versions.get("server"))
        rc, _out, err = engine_run([engine.binary, "volume", "create", volume])
        if rc != 0:
            raise BackupRunError("cannot create volume %s: %s" % (volume, err.strip()))
        created = True
        argv = [engine.binary, "run", "-d", "--name", container, "--network", "none",
                "--label", "nl-biomero.database.restore-test=1",
                "-e", "POSTGRES_USER=%s" % user, "-e", "POSTGRES_PASSWORD", "-e", "POSTGRES_DB=postgres",
                "-v", "%s:%s" % (volume, mount), image]
        rc, _out, err = engine_run(argv, env={"POSTGRES_PASSWORD": password})
        if rc != 0:
            raise BackupRunError("cannot start a throwaway container of %s: %s" % (image, err.strip()))
        _wait_ready(engine, container, user, timeout)
        src = backup_set.file_path(component["path"])
        has_globals = bool(backup_set.component(name + ".globals"))
        restored = PgRestore(container, database, src, engine=engine.binary, login_user=user,
                             login_password=password, globals=has_globals, if_exists="fail",
                             verify_checksum=True).run()
        counts = PgContainer(container, engine=engine.binary, user=user, password=password).table_row_counts(database)
        outcome["mismatches"] = compare_counts(component["row_counts"], counts)
        outcome["tables"] = len(counts)
        outcome["rows"] = sum(value or 0 for value in counts.values())
        outcome["restore_duration_s"] = restored.get("duration_s")
        if outcome["mismatches"]:
            outcome["error"] = "row counts differ: " + "; ".join(outcome["mismatches"][:10])
        else:
            outcome["ok"] = True
    except (RestoreError, BackupRunError, BackupSetError, PgError, EngineError, OSError) as exc:
        outcome["error"] = str(exc)
    finally:
        engine_run([engine.binary, "rm", "-f", "-v", container])
        if created:
            rc, _out, err = engine_run([engine.binary, "volume", "rm", "-f", volume])
            if rc != 0:
                outcome["cleanup_error"] = "volume %s could not be removed: %s" % (volume, err.strip())
                log(outcome["cleanup_error"], error=True)
    outcome["duration_s"] = round(time.monotonic() - started, 3)
    if outcome["ok"]:
        log("restore test %s: restored %d tables, %d rows, counts equal" % (name, outcome["tables"], outcome["rows"]))
    else:
        log("restore test %s FAILED: %s" % (name, outcome["error"]), error=True)
    return outcome


def restore_test(backup_dir, set_path=None, engine="auto", log=None, timeout=180, components=None):
    """Restore the newest complete set (or ``set_path``) into throwaway containers and compare row counts.

    Each database component is restored into a new container of the image it
    was dumped from (own volume, no network) and its per-table row counts are
    compared with those recorded at backup time. The result is recorded in
    the set manifest (``restore_test``) and returned; the throwaway
    containers and volumes are removed in every case.
    """
    log = log or Log()
    backup_dir = os.path.abspath(backup_dir)
    if set_path is None:
        entry = newest_complete(list_backups(backup_dir)["sets"])
        if entry is None:
            raise BackupRunError("no complete backup set in %s to test" % backup_dir)
        set_path = entry["path"]
    backup_set = BackupSet.open(set_path)
    if not backup_set.manifest.get("complete"):
        raise BackupRunError("backup set %s is not complete; only complete sets are restore-tested" % set_path)
    try:
        binary = detect_engine(engine)
    except EngineError as exc:
        raise BackupRunError(str(exc))
    engine_obj = ContainerEngine(binary)
    now = datetime.datetime.now(datetime.timezone.utc)
    wanted = [item for item in backup_set.manifest["components"]
              if item.get("kind") == "database" and item.get("outcome") == "ok"
              and (components is None or item["name"] in components)]
    if not wanted:
        raise BackupRunError("backup set %s has no database component to test" % set_path)
    clock = time.monotonic()
    results = [_restore_component(engine_obj, backup_set, item, timeout, log) for item in wanted]
    record = {
        "time": archive.utc_iso(now),
        "restorable": all(item["ok"] for item in results),
        "duration_s": round(time.monotonic() - clock, 3),
        "databases": results,
        "error": "; ".join("%s: %s" % (item["name"], item["error"]) for item in results if not item["ok"]) or None,
    }
    backup_set.set_restore_test(record)
    return dict(record, set=backup_set.path, name=backup_set.name)


# --------------------------------------------------------------------------
# Command line (what the systemd service / cron job runs)
# --------------------------------------------------------------------------

def _parser():
    parser = argparse.ArgumentParser(
        prog=PROG, description="Take one NL-BIOMERO backup set (or restore-test the newest one) as configured.")
    parser.add_argument("--config", required=True, help="JSON configuration (mode 0600: it may hold passwords)")
    parser.add_argument("--restore-test", action="store_true",
                        help="only restore-test the newest complete set (under the same lock)")
    parser.add_argument("--check", action="store_true", help="validate the configuration and print the plan")
    parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    return parser


def main(argv=None, stream=None):
    args = _parser().parse_args(argv)
    stream = sys.stderr if stream is None else stream
    try:
        config = load_config(args.config)
    except BackupRunError as exc:
        stream.write("ERROR: %s\n" % exc)
        return EXIT_CONFIG
    log = Log(stream, use_syslog=config["syslog"])
    runner = BackupRun(config, log=log)
    if args.check:
        sys.stdout.write(json.dumps(runner.plan(), indent=2, sort_keys=True) + "\n")
        return EXIT_OK
    try:
        if args.restore_test:
            os.makedirs(config["backup_dir"], 0o700, exist_ok=True)
            with RunLock(config["lock_file"]):
                result = restore_test(config["backup_dir"], engine=config["engine"], log=log,
                                      timeout=config["restore_test_timeout"])
                write_metrics(config, log)
            result["rc"] = EXIT_OK if result["restorable"] else EXIT_FAILED
            if result["rc"] != EXIT_OK and config["notify_command"]:
                run_notify(config["notify_command"], "restore_test_failed", result["set"], result["error"], log)
        else:
            result = runner.run()
    except LockedError as exc:
        log(str(exc), error=True)
        return EXIT_LOCKED
    except (BackupRunError, BackupSetError, EngineError, OSError) as exc:
        log(str(exc), error=True)
        if config["notify_command"]:
            run_notify(config["notify_command"], "failed", None, str(exc), log)
        return EXIT_FAILED
    except Exception as exc:  # pylint: disable=broad-except
        # a scheduled job has no one watching: say so and notify rather than only leave a traceback
        log("unexpected error: %r" % (exc,), error=True)
        if config["notify_command"]:
            run_notify(config["notify_command"], "failed", None, "unexpected error: %r" % (exc,), log)
        raise
    if args.json:
        sys.stdout.write(json.dumps(result, indent=2, sort_keys=True, default=str) + "\n")
    return result["rc"]


if __name__ == "__main__":
    raise SystemExit(main())
