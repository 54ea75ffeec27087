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
retention, optionally restore-test the newest complete set (restore_test.py),
write Prometheus textfile metrics (backup_metrics.py) and, on failure, run
the notify command. The configuration is validated by backup_config.py.
Exit status: 0 complete, 1 failed (incomplete set), 2 bad configuration,
75 another run holds the lock.

Pure Python without Ansible; secrets (passwords) come from the 0600 config
file, a password file or the environment and never appear in argv, logs or
results.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import argparse
import contextlib
import errno
import gzip
import json
import os
import subprocess
import sys
import tarfile
import time

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX
    fcntl = None

from ansible_collections.nl_biomero.database.plugins.module_utils import archive
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
)
from ansible_collections.nl_biomero.database.plugins.module_utils.dump import PgDump, DumpError
from ansible_collections.nl_biomero.database.plugins.module_utils.engine import ContainerEngine, EngineError
from ansible_collections.nl_biomero.database.plugins.module_utils.engine import stream as engine_stream
from ansible_collections.nl_biomero.database.plugins.module_utils.pg_container import PgContainer, PgError
from ansible_collections.nl_biomero.database.plugins.module_utils.restore_test import restore_test
from ansible_collections.nl_biomero.database.plugins.module_utils.retention import RetentionError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_LOCKED = 75  # EX_TEMPFAIL: try again later
NOTIFY_TIMEOUT = 120
PROG = "nl-biomero-backup"


class LockedError(BackupRunError):
    """Another run holds the lock."""


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
                rc, _out, err = self.engine.call("pause", name)
            else:
                rc, _out, err = self.engine.call("stop", "-t", str(self.timeout), name)
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
            rc, _out, err = self.engine.call("unpause" if self.action == "pause" else "start", name)
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


def _copy_out_gz(engine, container, path, dest):
    """``path`` of the container (running or stopped) as a gzipped tar stream in ``dest``.

    Streamed in chunks: memory stays bounded whatever the folder's size (an
    OMERO binary repository can be terabytes). The exit status is checked.
    """
    with _new_file(dest) as raw:
        def gzip_into_file(pipe):
            with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6) as out:
                for chunk in iter(lambda: pipe.read(archive.CHUNK), b""):
                    out.write(chunk)

        streamed = engine_stream(engine.cp_out_argv(container, path), stdout=gzip_into_file)
        if streamed.rc != 0:
            raise BackupRunError("%s cp %s:%s failed (exit %d): %s"
                                 % (engine.binary, container, path, streamed.rc, streamed.stderr[-500:]))


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
        engine = ContainerEngine(config["engine"])
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
        result["metrics_file"] = self._metrics(result)
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
            archive.write_atomic(dest, out, 0o600)
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
            _copy_out_gz(engine, entry["container"], entry["path"], dest)
            backup_set.record_component(name, entry["kind"], path=dest, duration_s=round(time.monotonic() - started, 3),
                                        container=entry["container"], source=entry["path"])
            self.log("%s: archived %s from container %s" % (name, entry["path"], entry["container"]))
        except (BackupRunError, BackupSetError, EngineError, OSError) as exc:
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
        for text in plan["warnings"]:
            self.log("retention: %s" % text, error=True)
            self.warnings.append("retention: %s" % text)
        for item in plan["deleted"]:
            self.log("retention: deleted %s (%s)" % (item["name"], item["reason"]))
        return {"kept": [item["name"] for item in plan["keep"]], "deleted": [item["name"] for item in plan["deleted"]]}

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
