# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Restore test of a backup set: each database into a throwaway container, row counts compared.

Each database component is restored into a new container of the image it
was dumped from (engine.run_throwaway: labelled ``throwaway=restore-test``,
never pulled, no network, its own volume) and its per-table row counts are
compared with those recorded at backup time. The container and its volume
are removed in every case. Used by the backup run, the CLI's
``--restore-test`` and the ``pg_restore_test`` module.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import os
import time
import uuid

from ansible_collections.nl_biomero.database.plugins.module_utils import archive, labels
from ansible_collections.nl_biomero.database.plugins.module_utils.backup_config import BackupRunError
from ansible_collections.nl_biomero.database.plugins.module_utils.backup_set import (
    BackupSet,
    list_backups,
    newest_complete,
)
from ansible_collections.nl_biomero.database.plugins.module_utils.engine import ContainerEngine
from ansible_collections.nl_biomero.database.plugins.module_utils.errors import NlbError
from ansible_collections.nl_biomero.database.plugins.module_utils.pg_container import PgContainer
from ansible_collections.nl_biomero.database.plugins.module_utils.pg_tools import major_version
from ansible_collections.nl_biomero.database.plugins.module_utils.tuning import data_layout

PURPOSE = "restore-test"
NAME_PREFIX = "nlb-restoretest-"


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


def _data_mount(engine, image, server_version):
    """Where the volume goes: the image's declared data volume, else the data-directory rule of its major."""
    config = (engine.image_inspect(image) or {}).get("Config") or {}
    declared = sorted(key for key in (config.get("Volumes") or {}) if "postgresql" in key)
    mount, _pgdata = data_layout(major_version(server_version), data_mount=declared[0] if declared else None)
    return mount


def _wait_ready(engine, name, user, timeout):
    """Wait until the final server accepts connections (the entrypoint's init server listens on the socket only)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        info = engine.inspect(name)
        if info is None or not info.get("State", {}).get("Running"):
            raise BackupRunError("the throwaway container %s stopped: %s" % (name, engine.logs(name)[-1000:]))
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
    from ansible_collections.nl_biomero.database.plugins.module_utils.restore import PgRestore

    name = component["name"]
    versions = component.get("versions") or {}
    image = versions.get("image")
    user = component.get("login_user") or "postgres"
    database = component.get("database") or name
    container = NAME_PREFIX + uuid.uuid4().hex[:12]
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
        engine.volume_create(volume, label="%s=%s" % (labels.THROWAWAY, PURPOSE))
        created = True
        rc, _out, err = engine.run_throwaway(
            image, env={"POSTGRES_USER": user, "POSTGRES_PASSWORD": password, "POSTGRES_DB": "postgres"},
            purpose=PURPOSE, name=container, detach=True, volumes=["%s:%s" % (volume, mount)])
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
    except (NlbError, OSError) as exc:
        outcome["error"] = str(exc)
    finally:
        engine.remove(container)
        if created:
            error = engine.volume_remove(volume)
            if error:
                outcome["cleanup_error"] = "volume %s could not be removed: %s" % (volume, error)
                log(outcome["cleanup_error"], error=True)
    outcome["duration_s"] = round(time.monotonic() - started, 3)
    if outcome["ok"]:
        log("restore test %s: restored %d tables, %d rows, counts equal" % (name, outcome["tables"], outcome["rows"]))
    else:
        log("restore test %s FAILED: %s" % (name, outcome["error"]), error=True)
    return outcome


def _quiet(message, error=False):
    """A log that says nothing."""


def restore_test(backup_dir, set_path=None, engine="auto", log=None, timeout=180, components=None, engine_timeout=None):
    """Restore the newest complete set (or ``set_path``) into throwaway containers and compare row counts.

    The result is recorded in the set manifest (``restore_test``) and
    returned. ``log(message, error=False)`` gets the progress. ``timeout``:
    seconds a throwaway container gets to start; ``engine_timeout``: seconds
    each short engine call may take.
    """
    log = log or _quiet
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
        engine_obj = ContainerEngine(engine, timeout=engine_timeout)
    except NlbError as exc:
        raise BackupRunError(str(exc))
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
