# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One scheduled backup run: a backup set of several databases (and host folders).

The core of the ``pg_backup_set`` and ``pg_restore_test`` modules, and the
command the ``postgres_backup`` role schedules on each host (systemd timer or
cron), without a control node and without Ansible::

    PYTHONPATH=/opt/nl-biomero/collection \\
      python3 -m ansible_collections.nl_biomero.database.plugins.module_utils.backup_run \\
      --config /etc/nl-biomero/backup.json [--recover | --restore-test | --check]

A run: take the job's lock (job_lock.JobLock; while another run, an upgrade
or a restore holds it, exit 75 naming the holder without touching anything),
recover what a killed run left (see below), start a set (backup_set.py),
stop or pause the client containers, dump each database with dump.py into the
set in an exported snapshot whose row counts are recorded (pg_snapshot.py:
the counts equal the archive's under any write load), tar the configured
host folders into it, restart the clients (always, also after a failure),
finish the set (complete only when every component succeeded), apply
retention, optionally restore-test the set (restore_test.py), write
Prometheus textfile metrics (backup_metrics.py) and, on failure, run the
notify command. The configuration is validated by backup_config.py.

Faults (run_guard.py): every part has a timeout (``timeouts``: engine_call,
dump, copy, restore_test, lock_wait, run); a part that takes longer is
killed and fails. SIGTERM, SIGINT, SIGHUP and the run's ceiling stop the run
on its normal failure path: children killed (in the container too), clients
started again, the set finished as incomplete, metrics written, notify run.
Before a client is stopped it is recorded in a state file beside the lock
(job_state.py); after a SIGKILL ``--recover`` (at boot, after the unit
stopped) or the next run starts those clients again and finishes the dead
run's set as incomplete.

Exit status: 0 complete (or nothing to recover), 1 failed (incomplete set,
interrupted, a client not started again), 2 bad configuration, 75 the lock is
held by someone else.

Pure Python without Ansible; secrets (passwords) come from the 0600 config
file, a password file or the environment and never appear in argv, logs or
results.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import argparse
import contextlib
import gzip
import json
import os
import subprocess
import sys
import tarfile
import time
import uuid

from ansible_collections.nl_biomero.database.plugins.module_utils import archive, file_snapshot
from ansible_collections.nl_biomero.database.plugins.module_utils.backup_config import (
    BackupRunError,
    expected_components,
    load_config,
    normalize_config,
    resolve_password,
)
from ansible_collections.nl_biomero.database.plugins.module_utils.backup_metrics import (
    metrics_text,
    write_metrics,
    write_metrics_file,
)
from ansible_collections.nl_biomero.database.plugins.module_utils.backup_set import (
    BackupSet,
    BackupSetError,
    apply_retention,
    read_set_manifest,
)
from ansible_collections.nl_biomero.database.plugins.module_utils.compose import ClientControl
from ansible_collections.nl_biomero.database.plugins.module_utils.dump import PgDump
from ansible_collections.nl_biomero.database.plugins.module_utils.engine import ContainerEngine, EngineError
from ansible_collections.nl_biomero.database.plugins.module_utils.engine import stream as engine_stream
from ansible_collections.nl_biomero.database.plugins.module_utils.errors import NlbError
from ansible_collections.nl_biomero.database.plugins.module_utils.job_lock import JobLock, LockBusyError
from ansible_collections.nl_biomero.database.plugins.module_utils.job_recovery import (
    RUN_MARK,
    end_dumps,
    end_marked,
    recover,
    since_now,
)
from ansible_collections.nl_biomero.database.plugins.module_utils.job_state import RunState, state_path, utc_now_iso
from ansible_collections.nl_biomero.database.plugins.module_utils.offsite import OffsiteError, Target
from ansible_collections.nl_biomero.database.plugins.module_utils.pg_container import PgContainer
from ansible_collections.nl_biomero.database.plugins.module_utils.pg_snapshot import ExportedSnapshot
from ansible_collections.nl_biomero.database.plugins.module_utils.restore_test import restore_test
from ansible_collections.nl_biomero.database.plugins.module_utils.retention import RetentionError
from ansible_collections.nl_biomero.database.plugins.module_utils.run_guard import Guard, Interrupted, TimedOut

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_LOCKED = 75  # EX_TEMPFAIL: try again later
NOTIFY_TIMEOUT = 120
PROG = "nl-biomero-backup"
HOLDER = "backup job"


class LockedError(BackupRunError):
    """Another run, an upgrade or a restore holds the job's lock (the message names the holder)."""


# --------------------------------------------------------------------------
# Logging, notify
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


def _job_lock(config):
    """The job's lock (shared with upgrade, rollback and restore); LockedError naming the holder when busy."""
    os.makedirs(config["backup_dir"], 0o700, exist_ok=True)
    lock = JobLock(config["lock_file"], HOLDER)
    try:
        lock.acquire()
    except LockBusyError as exc:
        raise LockedError("not starting: %s" % exc)
    return lock


@contextlib.contextmanager
def _locked(config):
    lock = _job_lock(config)
    try:
        yield lock
    finally:
        lock.release()


# --------------------------------------------------------------------------
# Client containers
# --------------------------------------------------------------------------

class Clients:
    """Stops (or pauses) the client containers that are running, and brings exactly those back.

    Each client is written to the run's state file before it is stopped, so a
    run killed meanwhile leaves a record of it for ``--recover``.
    """

    def __init__(self, engine, names, action, timeout, log, state=None, compose_command=None):
        self.engine = engine
        self.names = list(names)
        self.action = action
        self.timeout = timeout
        self.log = log
        self.state = state
        self.held = []
        self.report = []
        self.labels = {}
        # a client docker-compose made is stopped and started with compose (compose's view stays true)
        self.control = ClientControl(engine, compose_command, timeout)
        for note in self.control.notes:
            log(note)

    def hold(self):
        """Stop/pause the running clients. Returns an error text or None (the caller then restarts)."""
        for name in self.names:
            try:
                info = self.engine.inspect(name)
            except EngineError as exc:
                self.report.append({"name": name, "state": "unknown", "error": str(exc)})
                return "cannot inspect client container %s: %s" % (name, exc)
            if info is None:
                refused = self.engine.other_engine_refusal(name, "client container")
                if refused:  # a client of the other engine named by mistake: it would keep writing
                    self.report.append({"name": name, "state": "missing"})
                    return refused
                self.report.append({"name": name, "state": "missing"})
                self.log("client container %s does not exist; nothing to %s" % (name, self.action))
                continue
            state = info.get("State", {})
            if not state.get("Running") or state.get("Paused"):
                self.report.append({"name": name, "state": state.get("Status", "not running")})
                self.log("client container %s is %s; left as it is" % (name, state.get("Status", "not running")))
                continue
            self.held.append(name)
            self.labels[name] = (info.get("Config") or {}).get("Labels") or {}
            if self.state is not None:
                self.state.update(clients=list(self.held))
            rc, err = self.control.act(name, self.labels[name], self.action,
                                       self.timeout if self.action == "stop" else None)
            if rc != 0:
                self.report.append({"name": name, "state": "running", "error": err})
                return "could not %s client container %s: %s" % (self.action, name, err)
            self.report.append({"name": name, "state": "stopped" if self.action == "stop" else "paused"})
            self.log("%s client container %s" % ("stopped" if self.action == "stop" else "paused", name))
        return None

    def release(self):
        """Start/unpause every held client, newest held first; returns a list of error texts."""
        errors = []
        failed = []
        for name in reversed(self.held):
            verb = "unpause" if self.action == "pause" else "start"
            rc, err = self.control.act(name, self.labels.get(name, {}), verb)
            entry = next((item for item in self.report if item["name"] == name), None)
            if entry is None:  # stopped, or being stopped, when the run was interrupted
                entry = {"name": name, "state": "stopped" if self.action == "stop" else "paused"}
                self.report.append(entry)
            if rc != 0:
                entry["restarted"] = False
                failed.append(name)
                errors.append("could not %s client container %s: %s" % (verb, name, err))
            else:
                entry["restarted"] = True
                self.log("%s client container %s" % ("unpaused" if self.action == "pause" else "started", name))
        self.held = []
        if self.state is not None and self.state.data is not None:
            self.state.update(clients=failed)  # what --recover or the next run must still start
        return errors


# --------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------

@contextlib.contextmanager
def _new_file(dest):
    """A new 0600 file (binary handle) under a hidden temp name beside ``dest``, fsynced and renamed on success."""
    tmp = archive.temp_path_beside(dest)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as raw:
            yield raw
            raw.flush()
            os.fsync(raw.fileno())
        archive.place(tmp, dest)
    finally:
        archive.remove_path(tmp)


def _tar_path(source, dest):
    """tar.gz of a host folder (or file) as ``dest``."""
    with _new_file(dest) as raw:
        with tarfile.open(fileobj=raw, mode="w:gz") as tar:
            tar.add(source, arcname=os.path.basename(source.rstrip("/")) or "root")


def _copy_out_gz(engine, container, path, dest, timeout=None):
    """``path`` of the container (running or stopped) as a gzipped tar stream in ``dest``.

    Streamed in chunks: memory stays bounded whatever the folder's size (an
    OMERO binary repository can be terabytes). The exit status is checked.
    """
    with _new_file(dest) as raw:
        def gzip_into_file(pipe):
            with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6) as out:
                for chunk in iter(lambda: pipe.read(archive.CHUNK), b""):
                    out.write(chunk)

        streamed = engine_stream(engine.cp_out_argv(container, path), stdout=gzip_into_file, timeout=timeout)
        if streamed.rc != 0:
            raise BackupRunError("%s cp %s:%s failed (exit %d): %s"
                                 % (engine.binary, container, path, streamed.rc, streamed.stderr[-500:]))


# What a failed component's error is recorded as, by exception: any of these fails that component only.
_COMPONENT_ERRORS = (NlbError, OSError, ValueError, tarfile.TarError, TimedOut)


def previous_snapshot(backup_dir, current, name):
    """The newest earlier set's snapshot of component ``name`` (folder, index), or (None, None)."""
    for set_name in sorted(os.listdir(backup_dir), reverse=True):
        if set_name == current or set_name.startswith("."):
            continue
        path = os.path.join(backup_dir, set_name)
        try:
            manifest = read_set_manifest(path)
        except (OSError, ValueError):
            continue
        item = next((comp for comp in (manifest or {}).get("components", [])
                     if comp.get("name") == name and comp.get("outcome") == "ok" and comp.get("format") == "snapshot"),
                    None)
        if item:
            try:
                return os.path.join(path, item["path"]), file_snapshot.read_index(os.path.join(path, item["index"]))
            except file_snapshot.SnapshotError:
                continue
    return None, None


class BackupRun:
    """One backup run from a normalized configuration (see normalize_config)."""

    def __init__(self, config, log=None, environ=None):
        self.config = config
        self.log = log or Log()
        self.environ = os.environ if environ is None else environ
        self.warnings = []
        self.timeouts = config["timeouts"]
        self.mark = uuid.uuid4().hex
        self.guard = None
        self.state = None

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
            "timeouts": dict(self.timeouts),
        }

    def run(self):
        """Take the lock, recover a dead run, run; returns the result dict with ``rc`` (see EXIT_*).

        Raises LockedError (naming the holder) when the lock is held, and
        Interrupted when stopped before a set was started.
        """
        with Guard(self.timeouts["run"]) as guard:
            self.guard = guard
            with guard.shielded():
                lock = _job_lock(self.config)
            try:
                with guard.shielded():
                    recovered = recover(self.config, self.log, self.environ)
                    if recovered:
                        self._notify("recovered", recovered["set"], recovered["message"])
                guard.check()
                result = self._run_locked()
                result["recovered"] = recovered
                return result
            finally:
                lock.release()

    def _run_locked(self):
        config = self.config
        guard = self.guard
        clock = time.monotonic()
        engine = ContainerEngine(config["engine"], timeout=self.timeouts["engine_call"])
        with guard.shielded():
            try:
                backup_set = BackupSet.start(config["backup_dir"])
            except BackupSetError:
                # a run in the same second as the previous one: set names are UTC stamps to the second
                time.sleep(1.05)
                backup_set = BackupSet.start(config["backup_dir"])
            self.state = RunState(state_path(config["lock_file"]))
            self.state.begin(backup_set.path, config["client_action"])
        self.log("backup set %s started" % backup_set.path)
        clients = Clients(engine, config["clients"], config["client_action"], config["client_stop_timeout"],
                          self.log, state=self.state, compose_command=config["compose_command"])
        run_error = None
        stopped = None
        restart_errors = []
        held = time.monotonic()
        try:
            guard.check()
            # commands (e.g. omero config get --show-password) need their container running: before the clients stop
            for entry in config["container_commands"]:
                self._container_command(backup_set, entry, engine)
            run_error = clients.hold()
            if run_error:
                self.log(run_error, error=True)
            elif config["clients_held_for"] == "snapshot":
                restart_errors = self._snapshot_first(backup_set, engine, clients, held)
            else:
                for entry in config["databases"]:
                    self._database(backup_set, entry, engine, bool(config["clients"]))
                for entry in config["paths"]:
                    self._path(backup_set, entry)
                for entry in config["container_paths"]:
                    self._container_path(backup_set, entry, engine)
        except Interrupted as exc:
            stopped = str(exc)
            self.log("%s: stopping the run, starting the clients again" % exc, error=True)
        finally:
            with guard.shielded():
                was_held = bool(clients.held)
                restart_errors = restart_errors + clients.release()
                if was_held and "clients_held_s" not in backup_set.manifest:  # held for the whole run
                    backup_set.manifest["clients_held_s"] = round(time.monotonic() - held, 3)
                for text in restart_errors:
                    self.log(text, error=True)
        stopped = stopped or guard.reason
        with guard.shielded():
            errors = [text for text in ["interrupted: %s" % stopped if stopped else None, run_error] + restart_errors
                      if text]
            manifest = backup_set.finish(expected=expected_components(config), error="; ".join(errors) or None)
            if stopped:
                backup_set.manifest["interrupted"] = stopped
                backup_set.save()
            if not restart_errors:
                self.state.clear()
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
            "interrupted": stopped,
            "components": manifest["components"],
            "clients": clients.report,
            "retention": None,
            "restore_test": None,
            "offsite": None,
        }
        try:
            if not stopped:
                guard.check()  # a signal while the set was finished
                if config["retention"]:
                    result["retention"] = self._retention()
                if config["restore_test"] and manifest["complete"]:
                    result["restore_test"] = self._restore_test(backup_set.path)
                    if not result["restore_test"].get("restorable"):
                        result["rc"] = EXIT_FAILED
                # only a complete set that passed its restore test (when there is one) leaves the host
                if config["offsite"] and manifest["complete"] and result["rc"] == EXIT_OK:
                    result["offsite"] = self._offsite(backup_set.path)
                    if any(item.get("error") for item in result["offsite"].values()):
                        result["rc"] = EXIT_FAILED
        except Interrupted as exc:
            stopped = result["interrupted"] = str(exc)
            self.log("%s: stopping the run" % exc, error=True)
            result["rc"] = EXIT_FAILED
            if result["restore_test"] is None and config["restore_test"] and manifest["complete"]:
                result["restore_test"] = {"restorable": False, "error": "interrupted: %s" % exc}
                self._record_restore_test(backup_set.path, result["restore_test"])
        with guard.shielded():
            result["metrics_file"] = self._metrics(result)
            result["duration_s"] = round(time.monotonic() - clock, 3)
            if result["rc"] != EXIT_OK:
                offsite_errors = ["%s: %s" % (name, item["error"]) for name, item in sorted((result["offsite"] or {}).items())
                                  if item.get("error")]
                failure = (manifest["error"] or (result["restore_test"] or {}).get("error")
                           or ("interrupted: %s" % stopped if stopped else None)
                           or ("off-host copy failed: %s" % "; ".join(offsite_errors) if offsite_errors else None)
                           or "restore test failed")
                result["notify_rc"] = self._notify("failed", backup_set.path, failure)
        for reason in guard.ignored:
            self.log("%s came while stopping; ignored, the cleanup went on" % reason, error=True)
        result["warnings"] = list(self.warnings)
        result["log"] = list(self.log.lines)
        return result

    # -- components ------------------------------------------------------------------

    @contextlib.contextmanager
    def _component(self, backup_set, name, kind, seconds, what, cleanup=None, **details):
        """Run one component under its timeout; a failure (or timeout) is recorded and the run goes on.

        ``cleanup()`` ends what the component left running (in a container)
        when it was stopped by its timeout or by an interruption. An
        interruption is recorded, then raised on.
        """
        started = time.monotonic()
        try:
            with self.guard.limit(seconds, what):
                yield
        except _COMPONENT_ERRORS as exc:
            error = str(exc)
            if isinstance(exc, TimedOut) and cleanup:
                with self.guard.shielded():
                    cleanup()
            self.log("%s: %s" % (name, error), error=True)
            backup_set.record_failure(name, kind, error, duration_s=round(time.monotonic() - started, 3), **details)
        except Interrupted as exc:
            with self.guard.shielded():
                if cleanup:
                    cleanup()
                backup_set.record_failure(name, kind, "interrupted: %s" % exc,
                                          duration_s=round(time.monotonic() - started, 3), **details)
            raise

    def _pg(self, entry, engine, password):
        """The database container of ``entry``, its engine calls under timeouts.engine_call."""
        pg = PgContainer(entry["container"], engine=engine.binary, user=entry["user"], password=password)
        pg.engine.timeout = self.timeouts["engine_call"]
        return pg

    def _snapshot_first(self, backup_set, engine, clients, held):
        """Clients held only while each database's snapshot is taken and the small folders copied.

        The dumps then read those snapshots (held open until they are done) with
        the clients running again, and the binary repository (kind omero_data)
        is copied last: OMERO writes a file before it records it, so every file
        the snapshot references is there. Returns the errors of starting the clients.
        """
        config = self.config
        with contextlib.ExitStack() as snapshots:
            taken = {}
            for entry in config["databases"]:
                with self._component(backup_set, entry["name"], "database", self.timeouts["lock_wait"],
                                     "the snapshot of %s (timeouts.lock_wait)" % entry["name"],
                                     container=entry["container"], database=entry["database"]):
                    pg = self._pg(entry, engine, resolve_password(entry, self.environ))
                    taken[entry["name"]] = snapshots.enter_context(ExportedSnapshot(
                        pg, entry["database"], timeout=self.timeouts["dump"], lock_timeout=self.timeouts["lock_wait"]))
            for entry in config["paths"]:
                if entry["kind"] != "omero_data":
                    self._path(backup_set, entry)
            for entry in config["container_paths"]:
                if entry["kind"] != "omero_data":
                    self._container_path(backup_set, entry, engine)
            with self.guard.shielded():
                errors = clients.release()
                backup_set.manifest["clients_held_s"] = round(time.monotonic() - held, 3)
                backup_set.save()
            self.log("clients held for %.1f s (snapshots and small folders)" % backup_set.manifest["clients_held_s"])
            for entry in config["databases"]:
                if entry["name"] in taken:
                    self._database(backup_set, entry, engine, bool(config["clients"]), snapshot=taken[entry["name"]])
        for entry in config["paths"]:
            if entry["kind"] == "omero_data":
                self._path(backup_set, entry)
        for entry in config["container_paths"]:
            if entry["kind"] == "omero_data":
                self._container_path(backup_set, entry, engine)
        return errors

    def _database(self, backup_set, entry, engine, clients_held, snapshot=None):
        name = entry["name"]
        since = since_now()

        def cleanup():
            end_dumps(engine, entry, since, self.log, self.environ)

        self.state.update(dumping={"name": name, "since": since})
        seconds = self.timeouts["dump"]
        with self._component(backup_set, name, "database", seconds, "the dump of %s (timeouts.dump)" % name,
                             cleanup=cleanup, container=entry["container"], database=entry["database"]):
            started = time.monotonic()
            password = resolve_password(entry, self.environ)
            dest_dir = backup_set.path
            same_db = [item for item in self.config["databases"] if item["database"] == entry["database"]]
            if len(same_db) > 1:
                dest_dir = os.path.join(backup_set.path, archive.safe_name(name))
                os.mkdir(dest_dir, 0o700)
            options = dict(engine=engine.binary, login_user=entry["user"], login_password=password,
                           dest_dir=dest_dir, format=entry["format"], compress=entry["compress"],
                           globals=entry["globals"], jobs=entry["jobs"],
                           exclude_table_data=entry["exclude_table_data"], verify=entry["verify"],
                           lock_wait_timeout=self.timeouts["lock_wait"])
            counts = None
            if snapshot is not None:  # taken while the clients were held (clients_held_for: snapshot)
                counts = snapshot.row_counts() if entry["row_counts"] else None
                dumped = PgDump(entry["container"], entry["database"], snapshot=snapshot.snapshot_id, **options).run()
            elif entry["row_counts"]:
                # counted in the snapshot the dump reads: the counts are the archive's whatever writes meanwhile
                pg = self._pg(entry, engine, password)
                with ExportedSnapshot(pg, entry["database"], timeout=seconds,
                                      lock_timeout=self.timeouts["lock_wait"]) as snapshot:
                    counts = snapshot.row_counts()
                    dumped = PgDump(entry["container"], entry["database"], snapshot=snapshot.snapshot_id,
                                    **options).run()
            else:
                dumped = PgDump(entry["container"], entry["database"], **options).run()
            self.warnings.extend("%s: %s" % (name, text) for text in dumped.get("warnings", []))
            extra = {"login_user": dumped["login_user"], "verified": dumped["verified"]}
            if counts is not None:
                extra.update(row_counts=counts, rows_total=sum(value or 0 for value in counts.values()),
                             row_counts_with_clients_held=clients_held, row_counts_in_dump_snapshot=True)
            backup_set.record_dump(dumped["path"], name=name, duration_s=round(time.monotonic() - started, 3), **extra)
            self.log("%s: dumped %s/%s (%d bytes, %s)" % (name, entry["container"], entry["database"],
                                                          dumped["bytes"], dumped["compression"]))
        self.state.update(dumping=None)

    def _path(self, backup_set, entry):
        name = entry["name"]
        with self._component(backup_set, name, entry["kind"], self.timeouts["copy"],
                             "archiving %s (timeouts.copy)" % entry["path"], source=entry["path"]):
            started = time.monotonic()
            if not os.path.exists(entry["path"]):
                raise BackupRunError("%s does not exist" % entry["path"])
            if entry["incremental"]:
                self._snapshot_path(backup_set, entry, started)
                return
            dest = backup_set.file_path("%s.tar.gz" % name)
            _tar_path(entry["path"], dest)
            backup_set.record_component(name, entry["kind"], path=dest, duration_s=round(time.monotonic() - started, 3),
                                        source=entry["path"])
            self.log("%s: archived %s" % (name, entry["path"]))

    def _snapshot_path(self, backup_set, entry, started):
        """A host folder as a hard-linked snapshot beside the previous set's (file_snapshot.py)."""
        name = entry["name"]
        previous, previous_index = previous_snapshot(self.config["backup_dir"], backup_set.name, name)
        index, stats = file_snapshot.make_snapshot(entry["path"], backup_set.file_path(name), previous, previous_index)
        file_snapshot.write_index(backup_set.file_path(name + file_snapshot.INDEX_SUFFIX), index)
        backup_set.record_component(name, entry["kind"], path=backup_set.file_path(name),
                                    size=file_snapshot.index_bytes(index), sha256=file_snapshot.index_sha256(index),
                                    duration_s=round(time.monotonic() - started, 3), source=entry["path"],
                                    format="snapshot", index=name + file_snapshot.INDEX_SUFFIX,
                                    previous=os.path.basename(os.path.dirname(previous)) if previous else None, **stats)
        self.log("%s: snapshot of %s, %d of %d files copied (%d bytes), %d linked to the previous set"
                 % (name, entry["path"], stats["copied_files"], stats["files"], stats["copied_bytes"],
                    stats["linked_files"]))

    def _container_command(self, backup_set, entry, engine):
        """stdout of a command in a container into ``<name>.txt`` (0600; it may hold passwords, never logged)."""
        name = entry["name"]
        seconds = self.timeouts["engine_call"]

        def cleanup():
            end_marked(engine, entry["container"], self.mark, self.log)

        with self._component(backup_set, name, entry["kind"], seconds,
                             "%s in container %s (timeouts.engine_call)" % (entry["command"][0], entry["container"]),
                             cleanup=cleanup, container=entry["container"]):
            started = time.monotonic()
            try:
                rc, out, err = engine.exec_run(entry["container"], entry["command"], env={RUN_MARK: self.mark},
                                               timeout=seconds)
            except EngineError:
                with self.guard.shielded():
                    cleanup()
                raise
            if rc != 0:
                raise BackupRunError("%s in container %s failed (exit %d): %s"
                                     % (entry["command"][0], entry["container"], rc, err.strip()[-500:]))
            dest = backup_set.file_path("%s.txt" % name)
            archive.write_atomic(dest, out, 0o600)
            backup_set.record_component(name, entry["kind"], path=dest, duration_s=round(time.monotonic() - started, 3),
                                        container=entry["container"], command=entry["command"][0])
            self.log("%s: saved the output of %s in container %s" % (name, entry["command"][0], entry["container"]))

    def _container_path(self, backup_set, entry, engine):
        """A folder inside a container (running or stopped) as ``<name>.tar.gz``: ``<engine> cp`` streamed, gzip."""
        name = entry["name"]
        seconds = self.timeouts["copy"]
        with self._component(backup_set, name, entry["kind"], seconds,
                             "copying %s from container %s (timeouts.copy)" % (entry["path"], entry["container"]),
                             container=entry["container"], source=entry["path"]):
            started = time.monotonic()
            dest = backup_set.file_path("%s.tar.gz" % name)
            _copy_out_gz(engine, entry["container"], entry["path"], dest, timeout=seconds)
            backup_set.record_component(name, entry["kind"], path=dest, duration_s=round(time.monotonic() - started, 3),
                                        container=entry["container"], source=entry["path"])
            self.log("%s: archived %s from container %s" % (name, entry["path"], entry["container"]))

    # -- after the set ---------------------------------------------------------------

    def _retention(self):
        policy = dict(self.config["retention"])
        prune = policy.pop("prune_incomplete")
        try:
            plan = apply_retention(self.config["backup_dir"], policy, prune_incomplete=prune)
        except (BackupSetError, RetentionError, OSError) as exc:
            self.log("retention failed: %s" % exc, error=True)
            self.warnings.append("retention failed: %s" % exc)
            return {"error": str(exc)}
        for text in plan["warnings"]:
            self.log("retention: %s" % text, error=True)
            self.warnings.append("retention: %s" % text)
        for item in plan["deleted"]:
            self.log("retention: deleted %s (%s)" % (item["name"], item["reason"]))
        return {"kept": [item["name"] for item in plan["keep"]], "deleted": [item["name"] for item in plan["deleted"]]}

    def _restore_test(self, set_path):
        """Restore-test the set under timeouts.restore_test; a failure or timeout is a result, not an exception."""
        seconds = self.timeouts["restore_test"]
        try:
            with self.guard.limit(seconds, "the restore test (timeouts.restore_test)"):
                return restore_test(self.config["backup_dir"], set_path=set_path, engine=self.config["engine"],
                                    log=self.log, timeout=self.config["restore_test_timeout"],
                                    engine_timeout=self.timeouts["engine_call"])
        except (BackupRunError, TimedOut) as exc:
            self.log("restore test: %s" % exc, error=True)
            result = {"restorable": False, "error": str(exc)}
            if isinstance(exc, TimedOut):
                self._record_restore_test(set_path, result)
            return result

    def _offsite(self, set_path):
        """Copy the set to each off-host target; a failure is recorded per target, the local set stays."""
        results = {}
        seconds = self.timeouts["copy"]
        for spec in self.config["offsite"]:
            name, clock = spec["name"], time.monotonic()
            target = Target(spec, timeout=seconds)
            try:
                with self.guard.limit(seconds, "the copy to %s (timeouts.copy)" % name):
                    answer = target.copy_set(set_path)
                results[name] = {"verified": True, "bytes": answer["bytes"], "files": answer["files"],
                                 "encrypted": answer["encrypted"], "error": None}
                self.log("off-host copy to %s verified (%d bytes, %d files)" % (name, answer["bytes"], answer["files"]))
                with self.guard.limit(seconds, "the retention of %s (timeouts.copy)" % name):
                    results[name]["deleted"] = target.apply_retention(os.path.basename(set_path))
            except (OffsiteError, TimedOut) as exc:
                entry = results.setdefault(name, {"verified": False, "error": None})
                entry["error"] = str(exc) if not entry["verified"] else None
                if entry["verified"]:
                    entry["retention_error"] = str(exc)
                self.log("off-host copy to %s: %s" % (name, exc), error=True)
            results[name].update(time=utc_now_iso(), duration_s=round(time.monotonic() - clock, 3),
                                 target=spec["directory"] or "%s@%s" % (spec["ssh"]["user"], spec["ssh"]["host"]))
        try:
            BackupSet.open(set_path).set_offsite(results)
        except (BackupSetError, OSError, ValueError) as exc:
            self.log("cannot record the off-host copies in %s: %s" % (set_path, exc), error=True)
        return results

    def _record_restore_test(self, set_path, result):
        try:
            BackupSet.open(set_path).set_restore_test(dict(result, time=utc_now_iso()))
        except (BackupSetError, OSError, ValueError) as exc:
            self.log("cannot record the restore test in %s: %s" % (set_path, exc), error=True)

    def _metrics(self, result=None):
        return write_metrics(self.config, self.log, run=result)

    def _notify(self, status, set_path, error):
        if not self.config["notify_command"]:
            return None
        return run_notify(self.config["notify_command"], status, set_path, error, self.log)


# --------------------------------------------------------------------------
# The modules pg_backup_set and pg_restore_test (errors.run_module runs these)
# --------------------------------------------------------------------------

def backup_set_module(params, check_mode=False):
    """The result of ``pg_backup_set``: a run from the module's parameters (the schema's options)."""
    config = normalize_config(dict(params))
    runner = BackupRun(config, log=Log())
    if check_mode:
        return dict(changed=True, plan=runner.plan(), msg="would take a backup set in %s" % config["backup_dir"])
    try:
        result = runner.run()
    except LockedError as exc:
        raise LockedError(str(exc), result={"rc": EXIT_LOCKED})
    except Interrupted as exc:
        raise BackupRunError("backup run in %s interrupted before it started a set: %s" % (config["backup_dir"], exc))
    except (BackupRunError, BackupSetError, EngineError, OSError) as exc:
        raise BackupRunError("backup run in %s failed: %s" % (config["backup_dir"], exc))
    if result["rc"] != EXIT_OK:
        reason = result["error"] or (result.get("restore_test") or {}).get("error") or "restore test failed"
        return dict(result, failed=True, msg="backup set %s failed: %s" % (result["set"], reason))
    return dict(result, msg="backup set %s complete" % result["set"])


def restore_test_module(backup_dir, set=None, components=None, engine="auto", timeout=180, metrics_file=None):
    """The result of ``pg_restore_test``: restore-test a set, rewrite the metrics file when one is given."""
    backup_dir = os.path.abspath(backup_dir)
    set_path = None
    if set:
        set_path = set if os.path.isabs(set) else os.path.join(backup_dir, set)
    log = Log()
    try:
        result = restore_test(backup_dir, set_path=set_path, engine=engine, log=log, timeout=timeout,
                              components=components)
        if metrics_file:
            write_metrics_file(metrics_file, metrics_text(backup_dir))
    except (BackupRunError, BackupSetError, OSError) as exc:
        raise BackupRunError("restore test in %s: %s" % (backup_dir, exc), result={"log": log.lines})
    result.update(changed=True, log=log.lines)
    if not result["restorable"]:
        return dict(result, failed=True, msg="backup set %s is not restorable: %s" % (result["set"], result["error"]))
    return dict(result, msg="backup set %s restored in throwaway containers, row counts equal" % result["set"])


# --------------------------------------------------------------------------
# Command line (what the systemd service / cron job runs)
# --------------------------------------------------------------------------

def _parser():
    parser = argparse.ArgumentParser(
        prog=PROG, description="Take one NL-BIOMERO backup set (or restore-test the newest one) as configured.")
    parser.add_argument("--config", required=True, help="JSON configuration (mode 0600: it may hold passwords)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--restore-test", action="store_true",
                      help="only restore-test the newest complete set (under the same lock)")
    mode.add_argument("--recover", action="store_true",
                      help="only undo what a run that died left: start its clients, finish its set as incomplete "
                           "(at boot and after the service stopped; a normal run does it first too)")
    mode.add_argument("--check", action="store_true", help="validate the configuration and print the plan")
    parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    return parser


def _recover_only(config, log):
    """``--recover``: under the lock and shielded from signals; rc 0 when nothing was left or all was undone."""
    with Guard(config["timeouts"]["run"]) as guard:
        with guard.shielded():
            with _locked(config):
                recovered = recover(config, log)
            if recovered is None:
                return {"rc": EXIT_OK, "recovered": None}
            write_metrics(config, log)
            if config["notify_command"]:
                run_notify(config["notify_command"], "recovered", recovered["set"], recovered["message"], log)
    return {"rc": EXIT_FAILED if recovered["errors"] else EXIT_OK, "recovered": recovered}


def _restore_test_only(config, log):
    """``--restore-test``: the newest complete set, under the lock and the restore test's timeout."""
    timeouts = config["timeouts"]
    with Guard(timeouts["run"]) as guard:
        with _locked(config):
            try:
                with guard.limit(timeouts["restore_test"], "the restore test (timeouts.restore_test)"):
                    result = restore_test(config["backup_dir"], engine=config["engine"], log=log,
                                          timeout=config["restore_test_timeout"],
                                          engine_timeout=timeouts["engine_call"])
            except (TimedOut, Interrupted) as exc:
                log("restore test: %s" % exc, error=True)
                result = {"restorable": False, "error": str(exc), "set": None}
            with guard.shielded():
                write_metrics(config, log)
    result["rc"] = EXIT_OK if result["restorable"] else EXIT_FAILED
    if result["rc"] != EXIT_OK and config["notify_command"]:
        run_notify(config["notify_command"], "restore_test_failed", result["set"], result["error"], log)
    return result


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
        if args.recover:
            result = _recover_only(config, log)
        elif args.restore_test:
            result = _restore_test_only(config, log)
        else:
            result = runner.run()
    except LockedError as exc:
        log(str(exc), error=True)
        return EXIT_LOCKED
    except (NlbError, OSError, Interrupted) as exc:
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
