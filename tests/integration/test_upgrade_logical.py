"""Strategy logical of the postgres_upgrade role: the rows are copied by logical replication while the clients
keep working; the switchover (clients stopped -> started) only catches up, sets the sequences and copies the
large objects. No replication slot, publication, subscription or network of the upgrade may stay behind on any
path (a forgotten slot keeps WAL on the old server until its disk is full).
"""

import json

import pytest

from harness import ENGINE, DbContainer, Writer, engine, unique
from upgrade_fixture import USER, DB, remove_everything, run_role

pytestmark = pytest.mark.skipif(ENGINE != "docker", reason="the postgres_upgrade role is tested with Docker")

PASSWORD = "o'pw l"
# Small, but enough rows that the copy is real: a serial table, a stand-alone sequence moved on, a sequence
# never called, a large object, the unlisted writer's table.
DATA_SQL = """
CREATE TABLE image (id bigserial PRIMARY KEY, name text NOT NULL, taken timestamptz);
INSERT INTO image (name, taken) SELECT 'img ' || g, '2026-01-01'::timestamptz + g * interval '1 min'
  FROM generate_series(1, 20000) g;
CREATE SEQUENCE ome_seq START 100;
SELECT setval('ome_seq', 4242);
CREATE SEQUENCE never_called START 7;
SELECT lo_from_bytea(0, 'attachment bytes');
CREATE TABLE writes (id bigserial PRIMARY KEY, note text);
"""
LEFTOVERS_SQL = ("SELECT (SELECT count(*) FROM pg_replication_slots) || ' ' || (SELECT count(*) FROM pg_publication)"
                 " || ' ' || (SELECT count(*) FROM pg_subscription)")


def start_old(name, major=15, wal_level="logical"):
    """An old instance with the data; wal_level set the way a site would (ALTER SYSTEM, one restart)."""
    old = DbContainer(major, name, user=USER, database=DB, password=PASSWORD).start()
    old.psql(DATA_SQL)
    if wal_level:
        old.psql("ALTER SYSTEM SET wal_level = %s" % wal_level)
        engine("restart", old.name)
        old.wait_ready()
    return old


def networks(prefix):
    return [n for n in engine("network", "ls", "--format", "{{.Name}}").stdout.split() if n.startswith(prefix)]


def assert_nothing_left(old, prefix):
    """No slot, publication or subscription on the old server, in any database; no network of the upgrade."""
    for database in old.query("SELECT datname FROM pg_database WHERE datallowconn").split():
        assert old.query(LEFTOVERS_SQL, database=database) == "0 0 0", database
    assert networks(prefix) == []


@pytest.fixture
def prefix(request):
    name = unique("nlbtest-logical")

    def teardown():
        remove_everything(name)
        for network in networks(name):
            engine("network", "rm", network, check=False)
    request.addfinalizer(teardown)
    return name


def test_happy_path_with_a_writer_through_the_copy(prefix, tmp_path):
    old = start_old(prefix)
    writer = Writer(old.name, USER, DB)
    writer.start()
    try:
        rc, report, output = run_role(tmp_path, {"name": old.name, "strategy": "logical",
                                                 "login_password": PASSWORD})
    finally:
        writer.stop()
    assert rc == 0, output[-6000:]
    (entry,) = report
    assert (entry["outcome"], entry["from"], entry["to"], entry["strategy"]) == ("upgraded", 15, 17, "logical"), entry
    logical = entry["logical"]
    print("15 -> 17 logical: downtime %.1f s, duration %.1f s, steps %s, %s" % (entry["downtime_s"], entry["duration_s"], entry["steps_s"],
                                                                     json.dumps(logical)))
    assert entry["downtime_s"] > 0
    assert logical["large_objects"] == {"count": 1, "bytes": len("attachment bytes")}
    assert logical["sequences"] == 4
    assert sorted(logical["dropped"]["slots"]) == sorted(logical["subscriptions"].values())

    new = DbContainer(17, old.name, user=USER, database=DB, password=PASSWORD)
    assert new.query("SHOW server_version_num").startswith("17")
    # Every row the writer committed is there (before the switchover through the replication; after the swap
    # it wrote into the new instance itself).
    assert writer.committed, writer.errors[-5:]
    ids = set(int(i) for i in new.query("SELECT id FROM writes").split())
    assert writer.committed <= ids, sorted(writer.committed - ids)[:10]
    assert new.query("SELECT count(*) FROM image") == "20000"
    assert new.query("SELECT last_value || ' ' || is_called FROM ome_seq") == "4242 true"
    assert new.query("SELECT last_value || ' ' || is_called FROM never_called") == "7 false"
    assert new.query("SELECT convert_from(lo_get(oid), 'UTF8') FROM pg_largeobject_metadata") == "attachment bytes"
    # The writes go on in the new instance: its sequence continues after the old one's.
    assert new.query("WITH i AS (INSERT INTO writes (note) VALUES ('after') RETURNING id) SELECT id > %d FROM i"
                     % max(ids)) == "t"
    assert_nothing_left(new, prefix)
    # The old instance is aside on its volume, without anything of the replication.
    aside = DbContainer(15, "%s-pg15" % old.name, user=USER, database=DB, password=PASSWORD, volume=old.volume)
    engine("start", aside.name)
    aside.wait_ready()
    assert_nothing_left(aside, prefix)
