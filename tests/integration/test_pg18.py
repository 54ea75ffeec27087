"""PostgreSQL 18 as a target: nl-biomero/postgres:18 (the official 18 layout) with the collection.

- Major upgrades 15 -> 18 and 17 -> 18 through the postgres_upgrade role, each
  strategy (dump_restore, pipe, logical): the role's own verification (rows, sequences, database
  properties, roles and their password digests, an md5 one among them) must
  pass, the new volume is mounted where 18 wants it (/var/lib/postgresql, the
  cluster in /var/lib/postgresql/18/docker, the provisioning role's plan for
  an 18 image), with 18's data checksums; the old container and volume stay;
  after logical no replication slot, publication or subscription on either side.
- A backup set of an 18 instance, with its restore test (a throwaway 18
  container on the 18 layout).
- A dump of a 17 instance (pg_dump_container, globals) restored into 18
  (pg_restore_container).
"""

import json
import os

import pytest

import dataset
from harness import ENGINE, IMAGES, DbContainer, engine, require_image, run_module, unique
from job_cli import run_cli, write_config
from harness import run_tasks
from upgrade_fixture import PROPERTIES_SQL, USER, DB, user_properties, remove_everything, run_role

from ansible_collections.nl_biomero.database.plugins.module_utils.tuning import data_layout

pytestmark = pytest.mark.skipif(ENGINE != "docker", reason="the postgres_upgrade role is tested with Docker")

MOUNT_18, PGDATA_18 = data_layout(18)
# A role whose password hash is md5 (sites that began on old PostgreSQL defaults): 18 deprecates md5.
MD5_ROLE_SQL = "SET password_encryption = 'md5'; CREATE ROLE legacy LOGIN PASSWORD 'legacy pw'; RESET password_encryption;"
LEGACY_HASH = "SELECT rolpassword FROM pg_authid WHERE rolname = 'legacy'"
LEFTOVERS_SQL = ("SELECT (SELECT count(*) FROM pg_replication_slots) || ' ' || (SELECT count(*) FROM pg_publication)"
                 " || ' ' || (SELECT count(*) FROM pg_subscription)")
# Small (the machine is shared): a serial table, a stand-alone sequence moved on, a large object, a view.
SMALL_DATA_SQL = """
CREATE TABLE image (id bigserial PRIMARY KEY, name text NOT NULL, taken timestamptz);
INSERT INTO image (name, taken) SELECT 'img ' || g, '2026-01-01'::timestamptz + g * interval '1 min'
  FROM generate_series(1, 3000) g;
CREATE SEQUENCE ome_seq START 100;
SELECT setval('ome_seq', 4242);
SELECT lo_from_bytea(0, 'attachment bytes');
CREATE VIEW recent AS SELECT id, name FROM image WHERE taken > '2026-01-02';
"""


def inspect(name):
    return json.loads(engine("inspect", name).stdout)[0]


def networks(prefix):
    return [n for n in engine("network", "ls", "--format", "{{.Name}}").stdout.split() if n.startswith(prefix)]


@pytest.fixture
def prefix(request):
    name = unique("nlbtest-pg18")

    def teardown():
        remove_everything(name)
        for network in networks(name):  # the private network of a logical upgrade that failed half-way
            engine("network", "rm", network, check=False)
    request.addfinalizer(teardown)
    return name


# Three of the six pairs (each upgrade runs the whole role, ~2 min here): each major and each strategy once.
@pytest.mark.parametrize("old_major, strategy", [(17, "pipe"), (15, "dump_restore"), (17, "logical")])
def test_upgrade_to_18(prefix, tmp_path, old_major, strategy):
    require_image(18)
    old = DbContainer(old_major, prefix, user=USER, database=DB, password="o'pw").start()
    old.psql(PROPERTIES_SQL + MD5_ROLE_SQL + SMALL_DATA_SQL)
    before = dataset.fingerprint(old, DB)
    properties = user_properties(old)
    legacy_hash = old.query(LEGACY_HASH)
    view_rows = old.query("SELECT count(*) FROM recent")
    old_volume = inspect(old.name)["Mounts"][0]["Name"]

    # logical: the old server is on wal_level=replica, the role prepares it (ALTER SYSTEM, one restart)
    rc, report, output = run_role(tmp_path, {"name": old.name, "strategy": strategy},
                                  postgres_upgrade_target_image=IMAGES[18],
                                  postgres_upgrade_logical_prepare=strategy == "logical")
    assert rc == 0, output[-4000:]
    (entry,) = report
    assert (entry["outcome"], entry["from"], entry["to"], entry["strategy"]) == ("upgraded", old_major, 18,
                                                                                 strategy), entry
    print("%d -> 18 %s: downtime %.1f s, duration %.1f s" % (old_major, strategy, entry["downtime_s"],
                                                             entry["duration_s"]))

    # The 18 layout: the new volume at /var/lib/postgresql, the cluster in 18/docker, checksums on.
    info = inspect(old.name)
    assert [(m["Name"], m["Destination"]) for m in info["Mounts"]] == [(old_volume + "-pg18", MOUNT_18)]
    assert "PGDATA=" + PGDATA_18 in info["Config"]["Env"]
    new = DbContainer(18, old.name, user=USER, database=DB, password="o'pw")
    assert new.query("SHOW data_directory") == PGDATA_18
    assert new.query("SHOW data_checksums") == "on"
    assert new.query("SHOW server_version_num").startswith("18")
    # The data, the properties, the roles: the same (the role verified it too).
    after = dataset.fingerprint(new, DB)
    # View definitions are printed differently by each major (15 qualifies columns): compared by their rows.
    assert dict(after, objects=None) == dict(before, objects=None)
    assert [o.split(":")[0] for o in after["objects"]] == [o.split(":")[0] for o in before["objects"]]
    assert new.query("SELECT count(*) FROM recent") == view_rows
    assert user_properties(new) == properties
    # The md5 hash is carried as it was (18 only warns about md5); logging in with it needs an md5 pg_hba line.
    assert new.query(LEGACY_HASH) == legacy_hash and legacy_hash.startswith("md5")
    # The old instance is kept aside, on its untouched volume.
    aside = inspect("%s-pg%d" % (old.name, old_major))
    assert [(m["Name"], m["Destination"]) for m in aside["Mounts"]] == [(old_volume, "/var/lib/postgresql/data")]
    assert not aside["State"]["Running"]
    if strategy == "logical":
        assert entry["logical"]["wal_level_set"] is True, entry["logical"]
        assert entry["logical"]["large_objects"] == {"count": 1, "bytes": len("attachment bytes")}
        # Nothing of the replication on either side, in any database (the old one started again to look), and
        # no private network of the upgrade.
        assert networks(prefix) == []
        assert_no_replication_left(new)
        old_aside = DbContainer(old_major, aside["Name"].lstrip("/"), user=USER, database=DB, password="o'pw",
                                volume=old_volume)
        engine("start", old_aside.name)
        old_aside.wait_ready()
        assert_no_replication_left(old_aside)


def assert_no_replication_left(pg):
    for database in pg.query("SELECT datname FROM pg_database WHERE datallowconn", database="postgres").split():
        assert pg.query(LEFTOVERS_SQL, database=database) == "0 0 0", (pg.name, database)


def test_backup_set_of_an_18_instance_and_its_restore_test(prefix, tmp_path):
    db = DbContainer(18, prefix, user="omero", password="it's a pw", database="omero").start()
    db.psql("CREATE TABLE job (id bigint PRIMARY KEY, status text);"
            "INSERT INTO job SELECT g, 'Finished' FROM generate_series(1, 250) g;")
    password_file = tmp_path / "omero.pw"
    password_file.write_text("it's a pw\n")
    os.chmod(password_file, 0o600)
    config = {"backup_dir": str(tmp_path / "backups"), "engine": ENGINE, "restore_test": True,
              "databases": [{"name": "omero", "container": db.name, "database": "omero", "user": "omero",
                             "password_file": str(password_file)}]}
    proc = run_cli(write_config(str(tmp_path / "backup.json"), config))
    assert proc.returncode == 0, proc.stderr[-3000:]
    (set_name,) = [name for name in os.listdir(config["backup_dir"]) if not name.startswith(".")]
    with open(os.path.join(config["backup_dir"], set_name, "set.manifest.json")) as handle:
        manifest = json.load(handle)
    assert manifest["complete"] is True, manifest.get("error")
    by_name = dict((item["name"], item) for item in manifest["components"])
    assert by_name["omero"]["row_counts"] == {"public.job": 250}
    assert manifest["restore_test"]["restorable"] is True, manifest["restore_test"]
    assert manifest["restore_test"]["databases"][0]["rows"] == 250


def test_restore_a_17_dump_into_18(prefix, tmp_path):
    src = DbContainer(17, prefix + "-src").start()
    tgt = DbContainer(18, prefix + "-tgt").start()
    dataset.load(src)
    src.psql(MD5_ROLE_SQL, database="postgres")
    dump = run_module("nl_biomero.database.pg_dump_container", {
        "container": src.name, "database": src.database, "format": "custom", "globals": True,
        "dest": str(tmp_path / "appdb.custom")})
    assert not dump.get("failed"), dump.get("msg")
    (restored,) = run_tasks([("nl_biomero.database.pg_restore_container", {
        "container": tgt.name, "database": "appdb_from_17", "src": dump["path"], "globals": True, "jobs": 2})])
    assert not restored.get("failed"), restored.get("msg")
    assert dataset.fingerprint(tgt, "appdb_from_17") == dataset.fingerprint(src, src.database)
    assert tgt.query(LEGACY_HASH) == src.query(LEGACY_HASH, database="postgres")
