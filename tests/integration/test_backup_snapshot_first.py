"""clients_held_for: snapshot - the clients are stopped only while the snapshots are taken.

A real job run with a client container that writes a row into the database
each time it starts, a Metabase folder and a binary repository folder (kind
omero_data). The client must be running again before the binary repository
is copied (it is started once the snapshot exists), its new row must be in
the database but not in the dump (the dump reads the snapshot taken while it
was stopped), the counts recorded must be the archive's (the restore test
compares them), and the time the clients were held is in the manifest.

The binary repository is kept incrementally (``incremental: true``): the
second night copies only the new file and hard-links the rest to the first
night's snapshot, and that snapshot restores (pg_restore_files) into a host
folder and into a container's volume equal to the source.
"""
import json
import os
import subprocess

import time

from harness import ENGINE, container_ip, engine, run_module, unique
from job_cli import metric, metrics, run_cli, state, write_config


def test_clients_run_again_before_the_dump_and_the_repository_copy(pg_factory, tmp_path):
    db = pg_factory(major=17, prefix="nlbtest-snap", user="omero", password="pw", database="omero")
    db.psql("CREATE TABLE job (id bigserial PRIMARY KEY, status text);"
            "INSERT INTO job (status) SELECT 'Finished' FROM generate_series(1, 1000);")
    client = unique("nlbtest-snap-client")
    url = "postgresql://omero:pw@%s/omero" % container_ip(db.name)
    engine("run", "-d", "--name", client, "--entrypoint", "sh", db.image, "-c",
           "psql -X '%s' -c \"INSERT INTO job (status) VALUES ('client started')\" && exec sleep infinity" % url)
    try:
        _run(db, client, tmp_path)
    finally:
        engine("rm", "-f", "-v", client, check=False)


def _wait_rows(db, status, count):
    for _attempt in range(100):
        if db.query("SELECT count(*) FROM job WHERE status = '%s'" % status) == str(count):
            return
        engine("exec", db.name, "sleep", "0.1")
    raise AssertionError("the client did not write its row")


def _run(db, client, tmp_path):
    _wait_rows(db, "client started", 1)
    os.chmod(str(tmp_path), 0o700)
    (tmp_path / "metabase").mkdir()
    (tmp_path / "metabase" / "metabase.db.mv.db").write_bytes(b"h2" * 1000)
    (tmp_path / "OMERO" / "ManagedRepository").mkdir(parents=True)
    (tmp_path / "OMERO" / "ManagedRepository" / "image.tif").write_bytes(os.urandom(32 << 20))
    config = {
        "backup_dir": str(tmp_path / "backups"),
        "databases": [{"name": "omero", "container": db.name, "database": "omero", "user": "omero", "password": "pw"}],
        "paths": [{"name": "metabase", "path": str(tmp_path / "metabase"), "kind": "metabase"},
                  {"name": "OMERO", "path": str(tmp_path / "OMERO"), "kind": "omero_data", "incremental": True}],
        "clients": [client],
        "client_stop_timeout": 1,
        "clients_held_for": "snapshot",
        "metrics_file": str(tmp_path / "textfile" / "nl_biomero_backup.prom"),
        "restore_test": True,
        "engine": ENGINE,
    }
    proc = run_cli(write_config(str(tmp_path / "c.json"), config))
    assert proc.returncode == 0, proc.stderr
    _wait_rows(db, "client started", 2)  # it ran again
    set_dir = tmp_path / "backups" / sorted(n for n in os.listdir(str(tmp_path / "backups")) if not n.startswith("."))[-1]
    manifest = json.loads((set_dir / "set.manifest.json").read_text())
    assert manifest["complete"] and manifest["restore_test"]["restorable"]
    omero = next(item for item in manifest["components"] if item["name"] == "omero")
    assert omero["row_counts"]["public.job"] == 1001  # the snapshot: the client's second row came after it
    assert 0 < manifest["clients_held_s"] < manifest["duration_s"]
    assert metric(metrics(config["metrics_file"]), "last_run_clients_held_seconds") == manifest["clients_held_s"]
    log = proc.stdout + proc.stderr
    assert log.index("started client container %s" % client) < log.index("omero: dumped")
    assert log.index("started client container %s" % client) < log.index("OMERO: snapshot of")
    assert log.index("metabase: archived") < log.index("started client container %s" % client)
    assert state(client)["Running"]

    # the second night: one new file; the rest hard links to the first night's copy
    (tmp_path / "OMERO" / "ManagedRepository" / "new.tif").write_bytes(os.urandom(1 << 20))
    time.sleep(1.1)  # sets are named by the second
    second = run_cli(write_config(str(tmp_path / "c.json"), dict(config, restore_test=False)))
    assert second.returncode == 0, second.stderr
    night2 = tmp_path / "backups" / sorted(n for n in os.listdir(str(tmp_path / "backups")) if not n.startswith("."))[-1]
    omero_files = next(item for item in json.loads((night2 / "set.manifest.json").read_text())["components"]
                       if item["name"] == "OMERO")
    assert (omero_files["copied_files"], omero_files["copied_bytes"], omero_files["linked_files"]) == (1, 1 << 20, 1)
    assert omero_files["previous"] == set_dir.name
    image = os.path.join("OMERO", "ManagedRepository", "image.tif")
    assert os.stat(str(set_dir / image)).st_ino == os.stat(str(night2 / image)).st_ino
    # the second night's snapshot restores on its own: into a host folder and into a container's volume
    volume_holder = unique("nlbtest-snap-omero")
    engine("run", "-d", "--name", volume_holder, "-v", volume_holder + ":/OMERO", "--entrypoint", "sleep", db.image,
           "infinity")
    try:
        restored = run_module("nl_biomero.database.pg_restore_files", {
            "set": str(night2), "engine": ENGINE,
            "restores": [{"name": "OMERO", "path": str(tmp_path / "fresh" / "OMERO")}]})
        assert not restored.get("failed"), restored
        assert sorted(os.listdir(str(tmp_path / "fresh" / "OMERO" / "ManagedRepository"))) == ["image.tif", "new.tif"]
        assert (tmp_path / "fresh" / image).read_bytes() == (tmp_path / image).read_bytes()
        into = run_module("nl_biomero.database.pg_restore_files", {
            "set": str(night2), "engine": ENGINE,
            "restores": [{"name": "OMERO", "path": "/OMERO", "container": volume_holder}]})
        assert not into.get("failed"), into
        listed = engine("exec", volume_holder, "sh", "-c", "cd /OMERO && sha256sum ManagedRepository/*").stdout
        assert listed == subprocess.run(["sh", "-c", "cd '%s' && sha256sum ManagedRepository/*" % (tmp_path / "OMERO")],
                                        capture_output=True, text=True, check=True).stdout
    finally:
        engine("rm", "-f", "-v", volume_holder, check=False)
        engine("volume", "rm", "-f", volume_holder, check=False)
