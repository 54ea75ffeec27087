"""restore.yml and pg_restore_test hold the backup job's lock for their duration (issue 10, item 4): while
someone else holds it (an upgrade, a backup run: here pg_backup_lock with holder "other") they fail fast,
naming the holder, and touch no client and no database; once it is free they work and release it."""

import json
import os
import subprocess
import time

from prometheus_client.parser import text_string_to_metric_families

from harness import ENGINE, IMAGES, REPO_ROOT, engine, run_module, unique

from ansible_collections.nl_biomero.database.plugins.module_utils.job_lock import JobLock, read_holder

LOCK = "nl_biomero.database.pg_backup_lock"


def run_restore_playbook(tmp_path, extra):
    inventory = tmp_path / "inventory"
    inventory.write_text("localhost ansible_connection=local ansible_python_interpreter=%s\n"
                         % os.environ.get("ANSIBLE_PYTHON_INTERPRETER", "auto"))
    return subprocess.run(["ansible-playbook", "-i", str(inventory), os.path.join(REPO_ROOT, "playbooks", "restore.yml"),
                           "-e", json.dumps(dict({"target": "localhost", "postgres_backup_engine": ENGINE}, **extra))],
                          capture_output=True, text=True, timeout=600, check=False)


def container_state(name):
    return json.loads(engine("container", "inspect", name).stdout)[0]["State"]


def test_restore_and_restore_test_hold_the_job_lock(pg_factory, tmp_path):
    db = pg_factory(major=17, prefix="nlbtest-rlock", user="omero", password="pw", database="omero")
    db.psql("CREATE TABLE job (id bigint PRIMARY KEY); INSERT INTO job SELECT generate_series(1, 50);")
    client = unique("nlbtest-rlock-client")
    engine("run", "-d", "--name", client, "--entrypoint", "sleep", IMAGES[17], "infinity")
    backup_dir = str(tmp_path / "backups")
    lock_file = os.path.join(backup_dir, ".nl-biomero-backup.lock")
    metrics_file = str(tmp_path / "textfile" / "m.prom")
    try:
        made = run_module("nl_biomero.database.pg_backup_set", {
            "backup_dir": backup_dir, "engine": ENGINE,
            "databases": [{"container": db.name, "database": "omero", "user": "omero"}]})
        assert not made.get("failed"), made.get("msg")
        db.psql("INSERT INTO job VALUES (999)")
        started_at = container_state(client)["StartedAt"]

        other = run_module(LOCK, {"backup_dir": backup_dir, "holder": "other", "wait": 5})
        assert not other.get("failed") and other["holder"] == "other", other
        restore_vars = {"postgres_backup_dir": backup_dir, "postgres_backup_clients": [client],
                        "postgres_backup_client_stop_timeout": 1, "postgres_backup_restore_overwrite": True,
                        "postgres_backup_restore_lock_wait": 2}
        clock = time.monotonic()
        refused = run_restore_playbook(tmp_path, restore_vars)
        assert refused.returncode != 0
        assert time.monotonic() - clock < 120  # the 2 s wait, not the default 600
        assert "is held by other (pid %d" % other["pid"] in refused.stdout, refused.stdout[-3000:]
        assert "Stop the client containers" not in refused.stdout and "List the backup sets" not in refused.stdout
        state = container_state(client)
        assert state["Running"] and state["StartedAt"] == started_at, "the client was touched"
        assert db.query("SELECT count(*) FROM job") == "51", "the database was touched"
        assert read_holder(lock_file)["holder"] == "other", "the refused restore released someone else's hold"

        tested = run_module("nl_biomero.database.pg_restore_test", {
            "backup_dir": backup_dir, "engine": ENGINE, "lock_wait": 1, "metrics_file": metrics_file})
        assert tested.get("failed") and "is held by other" in tested["msg"], tested
        with open(os.path.join(made["set"], "set.manifest.json")) as handle:
            assert "restore_test" not in json.load(handle)
        assert not os.path.exists(metrics_file)

        assert run_module(LOCK, {"backup_dir": backup_dir, "holder": "other", "state": "released"})["changed"]
        restored = run_restore_playbook(tmp_path, restore_vars)
        assert restored.returncode == 0, restored.stdout[-3000:]
        assert "Take the backup job's lock" in restored.stdout and "Release the backup job's lock" in restored.stdout
        assert db.query("SELECT count(*) FROM job") == "50"
        assert container_state(client)["Running"]
        assert read_holder(lock_file) == {}, "the restore's hold was not released"

        tested = run_module("nl_biomero.database.pg_restore_test", {
            "backup_dir": backup_dir, "engine": ENGINE, "lock_wait": 1, "metrics_file": metrics_file})
        assert not tested.get("failed") and tested["restorable"] and tested["lock_file"] == lock_file, tested
        with open(metrics_file) as handle:
            samples = dict((sample.name, sample) for family in text_string_to_metric_families(handle.read())
                           for sample in family.samples)
        assert samples["nl_biomero_backup_restore_test_success"].value == 1
        assert samples["nl_biomero_backup_restore_test_success"].labels == {"backup_dir": backup_dir}
        assert read_holder(lock_file) == {}
        with JobLock(lock_file, "backup job"):  # free again for the job
            pass
    finally:
        engine("rm", "-f", "-v", client, check=False)
