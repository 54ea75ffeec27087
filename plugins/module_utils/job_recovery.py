# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the backup job does when a run, or a part of it, is stopped: end what it left running, start its clients.

Killing an engine CLI (``docker exec``) does not end the process it started
in the container: a stopped part's pg_dump is ended through its server
sessions (:func:`end_dumps`), a container command through the mark in its
environment (:func:`end_marked`). :func:`recover` undoes what a run that
died (SIGKILL, power loss) left, from its state file (job_state.py): it
starts the clients, ends the dump and finishes the set as incomplete. Used by
backup_run.py (its ``--recover`` mode, and first thing in every run).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import os
import time

from ansible_collections.nl_biomero.database.plugins.module_utils import archive
from ansible_collections.nl_biomero.database.plugins.module_utils.backup_config import (
    BackupRunError,
    expected_components,
    resolve_password,
)
from ansible_collections.nl_biomero.database.plugins.module_utils.backup_set import BackupSet, BackupSetError
from ansible_collections.nl_biomero.database.plugins.module_utils.engine import ContainerEngine, EngineError
from ansible_collections.nl_biomero.database.plugins.module_utils.host_files import UnsafePathError
from ansible_collections.nl_biomero.database.plugins.module_utils.job_state import (
    RunState,
    read_state,
    state_path,
    utc_now_iso,
)
from ansible_collections.nl_biomero.database.plugins.module_utils.pg_container import container_env
from ansible_collections.nl_biomero.database.plugins.module_utils.pg_tools import connection_env

# Processes a run starts in a container carry this in their environment, so that they can be found and
# ended there when the run stops them (killing the engine CLI does not end the process in the container).
RUN_MARK = "NLB_BACKUP_RUN"
_KILL_MARKED = ('for d in /proc/[0-9]*; do if tr "\\0" "\\n" < "$d/environ" 2>/dev/null | grep -qx "$1"; '
                'then kill -9 "${d#/proc/}" 2>/dev/null; fi; done; exit 0')
# pg_dump sessions of a run that was stopped: ended by the server, so pg_dump ends in the container too.
_SQL_END_DUMPS = ("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'pg_dump' "
                  "AND usename = current_user AND datname = current_database() AND pid <> pg_backend_pid() "
                  "AND backend_start >= '%s'::timestamptz;\n")


def start_clients(engine, names, log, compose_command=None):
    """Start (unpause) the named clients that are not running (the compose way for those compose made);
    returns (started, failed, errors). For recovery."""
    from ansible_collections.nl_biomero.database.plugins.module_utils.compose import ClientControl
    control = ClientControl(engine, compose_command)
    started, failed, errors = [], [], []
    for name in names:
        try:
            info = engine.inspect(name)
        except EngineError as exc:
            failed.append(name)
            errors.append("cannot inspect client container %s: %s" % (name, exc))
            continue
        if info is None:
            log("client container %s does not exist any more; nothing to start" % name)
            continue
        state = info.get("State", {})
        verb = "unpause" if state.get("Paused") else ("start" if not state.get("Running") else None)
        if verb is None:
            continue
        rc, err = control.act(name, (info.get("Config") or {}).get("Labels") or {}, verb)
        if rc != 0:
            failed.append(name)
            errors.append("could not %s client container %s: %s" % (verb, name, err.strip()))
        else:
            started.append(name)
            log("%s client container %s (left %s by a run that did not finish)"
                % ("unpaused" if verb == "unpause" else "started", name, "paused" if verb == "unpause" else "stopped"))
    return started, failed, errors


def end_marked(engine, container, mark, log):
    """Kill the processes in ``container`` whose environment carries ``NLB_BACKUP_RUN=<mark>``."""
    try:
        rc, _out, err = engine.exec_run(container, ["sh", "-c", _KILL_MARKED, "sh", "%s=%s" % (RUN_MARK, mark)],
                                        user="0")
    except EngineError as exc:
        rc, err = 1, str(exc)
    if rc != 0:
        log("could not end the run's processes in container %s: %s" % (container, err.strip()), error=True)


def end_dumps(engine, entry, since, log, environ=None):
    """End the pg_dump sessions of ``entry`` (its container, database and user) started since ``since``.

    Killing ``docker exec`` does not end pg_dump in the container; ending its
    server sessions does. Returns how many were ended (None when unknown).
    """
    try:
        password = resolve_password(entry, environ)
        info = engine.inspect(entry["container"])
        if info is None or not info.get("State", {}).get("Running"):
            return 0
        user = entry["user"] or container_env(info, "POSTGRES_USER", "postgres")
        rc, out, err = engine.exec_run(
            entry["container"], ["psql", "-X", "-q", "-At", "--no-password", "-v", "ON_ERROR_STOP=1", "-f", "-"],
            env=connection_env(user, entry["database"], password), input_bytes=(_SQL_END_DUMPS % since).encode())
    except (EngineError, BackupRunError) as exc:
        rc, out, err = 1, "", str(exc)
    if rc != 0:
        log("%s: could not end the dump's sessions in container %s: %s" % (entry["name"], entry["container"],
                                                                           err.strip()), error=True)
        return None
    ended = int(out.strip() or 0)
    if ended:
        log("%s: ended %d pg_dump session(s) in container %s" % (entry["name"], ended, entry["container"]))
    return ended


def since_now():
    """Server-comparable start time of a part (the container shares the host's clock), a second early."""
    when = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=1)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _wait_for_engine(engine, seconds):
    """At boot the engine may answer after us: wait up to ``seconds`` for ``<engine> info``."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            rc, _out, err = engine.call("info", "--format", "{{.ID}}")
        except EngineError as exc:
            rc, err = 1, str(exc)
        if rc == 0:
            return
        if time.monotonic() >= deadline:
            raise BackupRunError("the container engine %s does not answer: %s" % (engine.binary, err.strip()))
        time.sleep(2)


def recover(config, log, environ=None):
    """Undo what a run that died left (from its state file); the caller holds the lock.

    Starts the clients it stopped, ends its dump, finishes its set as
    incomplete. Returns None when there is nothing to recover, else a dict
    with ``clients_started``, ``set`` (the set it marked or None) and ``errors``.
    """
    path = state_path(config["lock_file"])
    try:
        state = read_state(path)
    except UnsafePathError as exc:
        # not ours or not readable: moved aside (rename never follows a link), so it blocks no later run
        aside = "%s.unusable-%s" % (path, utc_now_iso().replace(":", "-"))
        os.rename(path, aside)
        text = "%s; moved it to %s: look at it, start the clients it may name yourself" % (exc, aside)
        log(text, error=True)
        return {"clients_started": [], "set": None, "errors": [text], "dead_run": {}, "message": text}
    if state is None:
        return None
    timeouts = config["timeouts"]
    engine = ContainerEngine(config["engine"], timeout=timeouts["engine_call"])
    log("a run (pid %s, started %s) did not finish; recovering" % (state.get("pid"), state.get("started")),
        error=True)
    errors = []
    started = []
    names = [name for name in state["clients"] if isinstance(name, str)]
    failed = list(names)
    try:
        if names or state.get("dumping"):
            _wait_for_engine(engine, timeouts["engine_call"])
        started, failed, errors = start_clients(engine, names, log, config.get("compose_command"))
        dumping = state.get("dumping") or {}
        for entry in config["databases"]:
            if entry["name"] == dumping.get("name") and dumping.get("since"):
                end_dumps(engine, entry, dumping["since"], log, environ)
    except BackupRunError as exc:
        errors.append(str(exc))
    marked = None
    set_path = state.get("set")
    if set_path and os.path.isfile(os.path.join(set_path, "set.manifest.json")):
        try:
            backup_set = BackupSet.open(set_path)
            if not backup_set.manifest.get("finished"):
                _remove_temporaries(set_path)
                reason = ("the run (pid %s) ended without finishing (killed?); recovered at %s"
                          % (state.get("pid"), utc_now_iso()))
                backup_set.manifest["interrupted"] = reason
                backup_set.finish(expected=expected_components(config), error=reason)
                marked = set_path
                log("backup set %s finished as incomplete: %s" % (set_path, reason), error=True)
        except (BackupSetError, OSError, ValueError) as exc:
            errors.append("cannot mark the set %s: %s" % (set_path, exc))
    if failed:  # still to be started: by the next --recover or run
        keeper = RunState(path)
        keeper.data = dict(state, clients=failed, dumping=None)
        keeper.update()
    else:
        archive.remove_path(path)
    for text in errors:
        log(text, error=True)
    return {"clients_started": started, "set": marked, "errors": errors, "dead_run": state,
            "message": "; ".join(["a run (pid %s, started %s) did not finish" % (state.get("pid"), state.get("started"))]
                                 + errors)}


def _remove_temporaries(set_path):
    """Hidden temporaries (``.<name>.tmp-<id>``) a killed dump left in its set."""
    for name in os.listdir(set_path):
        if name.startswith(".") and ".tmp-" in name:
            archive.remove_path(os.path.join(set_path, name))
