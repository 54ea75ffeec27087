"""Backup runs (backup_run.py) against real containers: the CLI as the scheduler
runs it (system python, empty environment, only the collection on PYTHONPATH),
the pg_backup_set and pg_restore_test modules through ansible-playbook."""

import fcntl
import json
import os
import subprocess
import tarfile
import time

import pytest

from harness import ENGINE, IMAGES, Writer, engine, run_module, unique
from job_cli import metric, metrics, restore_leftovers, run_cli, run_playbook, state, write_config


@pytest.fixture
def client():
    name = unique("nlbtest-bak-client")
    engine("run", "-d", "--name", name, "--entrypoint", "sleep", IMAGES[17], "infinity")
    engine("exec", name, "sh", "-c", "mkdir -p /OMERO/ManagedRepository && echo pixels > /OMERO/ManagedRepository/a.tif")
    yield name
    engine("rm", "-f", "-v", name, check=False)


@pytest.fixture
def stack(pg_factory, client, tmp_path):
    db = pg_factory(major=17, prefix="nlbtest-bak", user="omero", password="it's a pw", database="omero")
    db.psql("CREATE TABLE job (id bigint PRIMARY KEY, status text);"
            "INSERT INTO job SELECT g, 'Finished' FROM generate_series(1, 250) g;"
            'CREATE SCHEMA "Odd Schema"; CREATE TABLE "Odd Schema"."Mixed Case" (v int);'
            'INSERT INTO "Odd Schema"."Mixed Case" VALUES (1), (2), (3);')
    (tmp_path / "metabase").mkdir()
    (tmp_path / "metabase" / "metabase.db.mv.db").write_bytes(b"h2" * 100)
    password_file = tmp_path / "omero.pw"
    password_file.write_text("it's a pw\n")
    os.chmod(password_file, 0o600)
    config = {
        "backup_dir": str(tmp_path / "backups"),
        "databases": [{"name": "omero", "container": db.name, "database": "omero", "user": "omero",
                       "password_file": str(password_file)}],
        "paths": [{"name": "metabase", "path": str(tmp_path / "metabase"), "kind": "metabase"}],
        "container_paths": [{"name": "OMERO", "container": client, "path": "/OMERO"}],
        "container_commands": [{"name": "omero.config", "container": client,
                                "command": ["cat", "/OMERO/ManagedRepository/a.tif"]}],
        "clients": [client],
        "client_stop_timeout": 1,
        "metrics_file": str(tmp_path / "textfile" / "nl_biomero_backup.prom"),
        "notify_command": ["/bin/sh", "-c", 'echo "$NLB_BACKUP_STATUS $NLB_BACKUP_SET" >> "$0"',
                           str(tmp_path / "notified")],
        "engine": ENGINE,
    }
    return {"db": db, "client": client, "config": config, "tmp": tmp_path}


def test_cli_complete_set_then_restore_test_then_tampered(stack):
    tmp, config = stack["tmp"], dict(stack["config"], restore_test=True)
    path = write_config(str(tmp / "backup.json"), config)
    proc = run_cli(path)
    assert proc.returncode == 0, proc.stderr
    assert "it's a pw" not in proc.stderr + proc.stdout
    sets = sorted(os.listdir(config["backup_dir"]))
    sets = [name for name in sets if not name.startswith(".")]
    assert len(sets) == 1
    set_dir = os.path.join(config["backup_dir"], sets[0])
    assert os.stat(set_dir).st_mode & 0o777 == 0o700
    with open(os.path.join(set_dir, "set.manifest.json")) as handle:
        manifest = json.load(handle)
    assert manifest["complete"] is True, manifest["error"]
    by_name = dict((item["name"], item) for item in manifest["components"])
    assert set(by_name) == {"omero", "omero.globals", "metabase", "OMERO", "omero.config"}
    with open(os.path.join(set_dir, "omero.config.txt")) as handle:
        assert handle.read() == "pixels\n"
    with tarfile.open(os.path.join(set_dir, "OMERO.tar.gz")) as tar:
        assert tar.extractfile("OMERO/ManagedRepository/a.tif").read() == b"pixels\n"
    assert by_name["omero"]["row_counts"] == {"public.job": 250, "Odd Schema.Mixed Case": 3}
    assert by_name["omero"]["row_counts_with_clients_held"] is True
    assert by_name["metabase"]["kind"] == "metabase"
    assert manifest["restore_test"]["restorable"] is True
    assert manifest["restore_test"]["databases"][0]["rows"] == 253
    # the client was stopped during the run and started again
    assert state(stack["client"])["Running"]
    assert "stopped client container %s" % stack["client"] in proc.stderr
    values = metrics(config["metrics_file"])
    assert metric(values, "last_run_success") == 1
    assert metric(values, "component_last_run_success", component="omero", kind="database") == 1
    assert metric(values, "component_last_run_bytes", component="omero") > 0
    assert metric(values, "restore_test_success") == 1
    assert metric(values, "last_success_timestamp_seconds") > 0
    assert not os.path.exists(str(tmp / "notified"))
    # no throwaway container or volume is left
    assert restore_leftovers() == ""
    # the on-demand restore test of the CLI (what a separate timer would run)
    again = run_cli(path, "--restore-test")
    assert again.returncode == 0, again.stderr
    assert "restore test omero: restored 2 tables, 253 rows, counts equal" in again.stderr

    # a tampered dump: the restore test (module) fails and records it; nothing is left behind
    dump = os.path.join(set_dir, by_name["omero"]["path"])
    with open(dump, "r+b") as handle:
        handle.seek(-20, os.SEEK_END)
        handle.write(b"\0" * 8)
    result = run_module("nl_biomero.database.pg_restore_test",
                        {"backup_dir": config["backup_dir"], "engine": ENGINE, "metrics_file": config["metrics_file"]})
    assert result.get("failed"), result
    assert result["restorable"] is False
    assert "checksum mismatch" in result["msg"]
    assert metric(metrics(config["metrics_file"]), "restore_test_success") == 0
    assert restore_leftovers() == ""


def test_cli_stopped_database_gives_incomplete_set_and_restarts_clients(stack):
    tmp, config = stack["tmp"], dict(stack["config"], retention={"keep_last": 1})
    path = write_config(str(tmp / "backup.json"), config)
    first = run_cli(path)
    assert first.returncode == 0, first.stderr
    stack["db"].stop()
    proc = run_cli(path)
    assert proc.returncode == 1
    assert "is not running" in proc.stderr
    assert state(stack["client"])["Running"], "the client must be restarted after a failed backup"
    from_catalogue = run_module("nl_biomero.database.pg_backup_info", {"path": config["backup_dir"]})
    statuses = [item["status"] for item in from_catalogue["sets"]]
    # retention kept the complete set and the (newer) incomplete one
    assert statuses == ["incomplete", "complete"], from_catalogue["sets"]
    values = metrics(config["metrics_file"])
    assert metric(values, "last_run_success") == 0
    assert metric(values, "component_last_run_success", component="omero") == 0
    assert metric(values, "component_last_run_success", component="metabase") == 1
    assert metric(values, "last_success_timestamp_seconds") > 0
    assert metric(values, "sets", status="incomplete") == 1
    with open(str(tmp / "notified")) as handle:
        assert handle.read().startswith("failed %s/" % config["backup_dir"])


def test_cli_lock_refuses_overlapping_run(tmp_path):
    config = {"backup_dir": str(tmp_path / "b"), "databases": [{"container": "nlbtest-bak-none", "database": "x"}]}
    path = write_config(str(tmp_path / "c.json"), config)
    os.makedirs(config["backup_dir"])
    with open(os.path.join(config["backup_dir"], ".nl-biomero-backup.lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        proc = run_cli(path)
    assert proc.returncode == 75
    assert "not starting: the lock %s/.nl-biomero-backup.lock is held by another process" % config["backup_dir"] \
        in proc.stderr
    assert os.listdir(config["backup_dir"]) == [".nl-biomero-backup.lock"]
    bad = write_config(str(tmp_path / "bad.json"), {"backup_dir": "/x", "databases": [{"contianer": "a"}]})
    proc = run_cli(bad)
    assert proc.returncode == 2 and "unknown key(s) contianer" in proc.stderr


def test_module_pg_backup_set_check_mode_and_backup_playbook(stack):
    config = dict(stack["config"])
    config.pop("notify_command")
    config["databases"] = [dict(config["databases"][0], password="it's a pw")]
    config["databases"][0].pop("password_file")
    checked = run_module("nl_biomero.database.pg_backup_set", config, check_mode=True)
    assert not checked.get("failed"), checked
    assert checked["plan"]["components"] == ["omero", "omero.globals", "omero.config", "metabase", "OMERO"]
    assert not os.path.exists(config["backup_dir"])

    # playbooks/backup.yml: installs the job (cron here: no systemd) and takes a set with pg_backup_set
    tmp = stack["tmp"]
    extra = {"postgres_backup_dir": config["backup_dir"], "postgres_backup_install_dir": str(tmp / "opt"),
             "postgres_backup_config_file": str(tmp / "etc" / "b.json"),
             "postgres_backup_cron_file": str(tmp / "nl-biomero-backup.cron"),
             "postgres_backup_systemd_dir": str(tmp), "postgres_backup_scheduler": "cron",
             "postgres_backup_metrics_file": config["metrics_file"], "postgres_backup_engine": ENGINE,
             "postgres_backup_databases": config["databases"], "postgres_backup_paths": config["paths"],
             "postgres_backup_container_paths": config["container_paths"],
             "postgres_backup_container_commands": config["container_commands"],
             "postgres_backup_clients": config["clients"], "postgres_backup_client_stop_timeout": 1}
    proc = run_playbook("backup.yml", tmp, extra)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "it's a pw" not in proc.stdout
    assert "complete; components: omero.config, omero, omero.globals, metabase, OMERO" in proc.stdout
    assert os.stat(str(tmp / "etc" / "b.json")).st_mode & 0o777 == 0o600
    with open(str(tmp / "nl-biomero-backup.cron")) as handle:
        assert " root PYTHONPATH=%s " % (tmp / "opt") in handle.read()
    assert state(stack["client"])["Running"]


def test_restore_playbook_refuses_then_restores_and_adopts_a_foreign_dump(pg_factory, client, tmp_path):
    db = pg_factory(major=17, prefix="nlbtest-bak", user="omero", password="pw", database="omero")
    db.psql("CREATE TABLE job (id bigint PRIMARY KEY); INSERT INTO job SELECT generate_series(1, 50);")
    config = {"backup_dir": str(tmp_path / "backups"), "engine": ENGINE,
              "databases": [{"container": db.name, "database": "omero", "user": "omero"}]}
    assert run_cli(write_config(str(tmp_path / "c.json"), config)).returncode == 0
    db.psql("DELETE FROM job WHERE id > 10")
    base = {"postgres_backup_dir": config["backup_dir"], "postgres_backup_clients": [client],
            "postgres_backup_client_stop_timeout": 1}

    refused = run_playbook("restore.yml", tmp_path, base)
    assert refused.returncode != 0
    assert "refusing to restore over it" in refused.stdout
    assert db.query("SELECT count(*) FROM job") == "10"
    assert state(client)["Running"], "clients are only stopped after every check passed"

    restored = run_playbook("restore.yml", tmp_path, dict(base, postgres_backup_restore_overwrite=True))
    assert restored.returncode == 0, restored.stdout[-3000:]
    assert db.query("SELECT count(*) FROM job") == "50"
    assert state(client)["Running"]

    # a foreign dump (another installation, objects owned by a role the instance does not have)
    db.psql("CREATE ROLE legacy_owner; CREATE DATABASE legacy OWNER legacy_owner;")
    db.psql("SET ROLE legacy_owner; CREATE TABLE image (id int); INSERT INTO image VALUES (1), (2);", database="legacy")
    dump = tmp_path / "legacy.pg_dump"
    with open(str(dump), "wb") as handle:
        subprocess.run([ENGINE, "exec", db.name, "pg_dump", "-U", "omero", "-Fc", "legacy"], stdout=handle, check=True)
    db.psql("DROP DATABASE legacy; DROP ROLE legacy_owner;")
    adopted = run_playbook("restore.yml", tmp_path, {"postgres_backup_restore_dump": str(dump),
                                                     "postgres_backup_restore_dump_container": db.name,
                                                     "postgres_backup_restore_dump_database": "omero_adopted",
                                                     "postgres_backup_restore_dump_owner": "omero"})
    assert adopted.returncode == 0, adopted.stdout[-3000:]
    assert db.query("SELECT count(*) || ' ' || (SELECT tableowner FROM pg_tables WHERE tablename = 'image') FROM image",
                    database="omero_adopted") == "2 omero"


def _fence_settings(db):
    return db.query("SELECT coalesce(string_agg(array_to_string(s.setconfig, ','), ' '), '') FROM pg_db_role_setting s "
                    "JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = 'omero' AND s.setrole = 0",
                    database="postgres")


def test_restore_playbook_fences_an_unlisted_writer_and_lifts_every_fence(pg_factory, tmp_path):
    """An overwriting restore.yml with a writer nobody listed in postgres_backup_clients: the writer gets
    read-only errors while the database is replaced, the restored counts are those of the set (not what the
    writer adds once the database is in place), and no fence is left: neither ours nor one a set carries
    because it was taken under an upgrade's fence."""
    db = pg_factory(major=17, prefix="nlbtest-bak", user="omero", password="pw", database="omero")
    db.psql("CREATE TABLE writes (id bigserial PRIMARY KEY, note text);"
            "INSERT INTO writes (note) SELECT 'set' FROM generate_series(1, 20);")
    backup_dir = str(tmp_path / "backups")
    config = write_config(str(tmp_path / "c.json"), {"backup_dir": backup_dir, "engine": ENGINE, "databases": [
        {"container": db.name, "database": "omero", "user": "omero"}]})
    assert run_cli(config).returncode == 0
    fence = {"container": db.name, "databases": ["omero"], "login_user": "omero", "engine": ENGINE}
    run_module("nl_biomero.database.pg_write_fence", dict(fence, state="on"))
    time.sleep(1.1)  # sets are named by the second
    assert run_cli(config).returncode == 0                   # a set taken under the fence carries it
    run_module("nl_biomero.database.pg_write_fence", dict(fence, state="off"))
    unfenced_set, fenced_set = sorted(name for name in os.listdir(backup_dir) if not name.startswith("."))
    assert _fence_settings(db) == ""

    writer = Writer(db.name, "omero", "omero")
    writer.start()
    try:
        time.sleep(1)
        restored = run_playbook("restore.yml", tmp_path, {"postgres_backup_restore_set": unfenced_set,
                                                          "postgres_backup_restore_overwrite": True})
        time.sleep(1)
    finally:
        writer.stop()
    assert restored.returncode == 0, restored.stdout[-3000:]
    assert any("read-only transaction" in error for error in writer.errors), writer.errors[-5:]
    ids = set(int(x) for x in db.query("SELECT id FROM writes").split())
    assert set(range(1, 21)) <= ids and ids - set(range(1, 21)) <= writer.committed
    assert _fence_settings(db) == ""
    assert db.psql("INSERT INTO writes (note) VALUES ('after') RETURNING id", check=False).returncode == 0

    again = run_playbook("restore.yml", tmp_path, {"postgres_backup_restore_set": fenced_set,
                                                   "postgres_backup_restore_overwrite": True})
    assert again.returncode == 0, again.stdout[-3000:]
    assert _fence_settings(db) == ""
    assert db.query("SELECT count(*) FROM writes") == "20"
    assert db.psql("INSERT INTO writes (note) VALUES ('after') RETURNING id", check=False).returncode == 0
