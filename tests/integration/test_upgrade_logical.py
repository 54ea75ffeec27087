"""Strategy logical of the postgres_upgrade role: the rows are copied by logical replication while the clients
keep working; the switchover (clients stopped -> started) only catches up, sets the sequences and copies the
large objects. No replication slot, publication, subscription or network of the upgrade may stay behind on any
path (a forgotten slot keeps WAL on the old server until its disk is full).
"""

import json
import os
import signal
import subprocess
import time

import pytest

from harness import ENGINE, DbContainer, Writer, engine, unique
from upgrade_fixture import USER, DB, remove_everything, role_command, run_role

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


def wait_for(path, proc, timeout=300):
    deadline = time.time() + timeout
    while not os.path.exists(path):
        assert proc.poll() is None, "the play ended before it held: %s" % proc.stdout.read()[-4000:]
        assert time.time() < deadline, "the play did not reach the hold in %s s" % timeout
        time.sleep(0.5)


def held_role(tmp_path, old, hold):
    """The role started in the background, held at ``hold`` once it returns; (process, hold file, report)."""
    hold_file = str(tmp_path / ("hold-%d" % time.monotonic_ns()))
    argv, report = role_command(tmp_path, {"name": old.name, "strategy": "logical", "login_password": PASSWORD},
                                postgres_upgrade__hold_at=hold, postgres_upgrade__hold_file=hold_file)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    wait_for(hold_file, proc)
    return proc, hold_file, report


def release(proc, hold_file, report):
    os.remove(hold_file)
    output = proc.communicate(timeout=600)[0]
    return proc.returncode, json.loads(report.read_text()), output


def assert_rolled_back(old, prefix, rows="20000"):
    """The old server serves (writable, its rows), no staging container, nothing of the replication left."""
    assert old.query("SELECT count(*) FROM image") == rows
    assert old.query("SELECT current_setting('default_transaction_read_only')") == "off"
    names = engine("ps", "-a", "--format", "{{.Names}}").stdout.split()
    assert [n for n in names if n.startswith(prefix)] == [old.name]
    assert_nothing_left(old, prefix)


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
    # wal_level=replica: the role prepares it (ALTER SYSTEM, one restart, timed apart)
    old = start_old(prefix, wal_level=None)
    writer = Writer(old.name, USER, DB)
    writer.start()
    try:
        rc, report, output = run_role(tmp_path, {"name": old.name, "strategy": "logical",
                                                 "login_password": PASSWORD}, postgres_upgrade_logical_prepare=True)
    finally:
        writer.stop()
    assert rc == 0, output[-6000:]
    (entry,) = report
    assert (entry["outcome"], entry["from"], entry["to"], entry["strategy"]) == ("upgraded", 15, 17, "logical"), entry
    logical = entry["logical"]
    print("15 -> 17 logical: downtime %.1f s, duration %.1f s, steps %s, %s"
          % (entry["downtime_s"], entry["duration_s"], entry["steps_s"], json.dumps(logical)))
    assert entry["downtime_s"] > 0
    assert logical["wal_level_set"] is True and float(logical["prepare_restart_s"]) > 0
    assert logical["large_objects_found"] == {"count": 1, "bytes": len("attachment bytes")}
    assert logical["large_objects"] == {"count": 1, "bytes": len("attachment bytes")}
    assert logical["sequences"] == 4
    assert sorted(logical["dropped"]["slots"]) == sorted(logical["subscriptions"].values())
    # The rows were counted while the clients worked; in the downtime only the writer's table may be counted again
    # (it wrote until the fence), never the 20000 images nobody changed since.
    assert float(logical["counted_s"]) > 0
    for side in ("old", "new"):
        assert set(logical["tables_recounted"][side]) <= {"%s: public.writes" % DB}, logical["tables_recounted"]

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


def test_refusals_change_nothing(prefix, tmp_path):
    """wal_level not logical (without prepare) and a table without a primary key: refused, both named."""
    old = start_old(prefix, wal_level=None)
    old.psql("CREATE TABLE audit_log (at timestamptz, what text); INSERT INTO audit_log VALUES (now(), 'x');")
    rc, report, output = run_role(tmp_path, {"name": old.name, "strategy": "logical", "login_password": PASSWORD})
    assert rc != 0
    (entry,) = report
    assert (entry["outcome"], entry["step"]) == ("preflight_failed", "preflight"), entry
    assert any("wal_level is replica" in p and "postgres_upgrade_logical_prepare" in p for p in entry["problems"])
    assert any("omero: public.audit_log" in p and "postgres_upgrade_logical_replica_identity_full" in p
               for p in entry["problems"]), entry["problems"]
    assert old.query("SHOW wal_level") == "replica"
    assert old.query("SELECT relreplident FROM pg_class WHERE relname = 'audit_log'") == "d"
    assert_rolled_back(old, prefix)


def test_faults_roll_back_and_leave_no_slot(prefix, tmp_path):
    """On one old instance, in turn: the play SIGKILLed mid-copy with the staging container gone, then the
    rollback entry point; DDL during the copy; a verification mismatch. Each time the old server serves and no
    slot, publication, subscription or network remains. (A staging container removed under a live play fails
    the same step as the DDL and rolls back through the same recovery as the first case: not run again.)"""
    old = start_old(prefix)

    # 1. The play killed mid-copy (SIGKILL to its process group), the staging container removed too (a crash of
    # the host would take it): the recovery drops the slots on the old server directly, tablesync ones included.
    proc, hold_file, _report = held_role(tmp_path, old, "logical_copying")
    assert old.query("SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'nlb_upgrade_%'") == "1"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    engine("rm", "-f", "-v", "%s-pg17-staging" % old.name)
    rc, report, output = run_role(tmp_path, {"name": old.name}, entry="rollback")
    assert rc == 0, output[-4000:]
    assert [e["outcome"] for e in report] == ["rolled_back"], report
    assert_rolled_back(old, prefix)

    # 2. DDL on the old server during the copy: the upgrade stops and names the object.
    proc, hold_file, report = held_role(tmp_path, old, "logical_copying")
    old.psql("ALTER TABLE image ADD COLUMN note text")
    rc, report, output = release(proc, hold_file, report)
    assert rc != 0
    (entry,) = report
    assert (entry["outcome"], entry["step"]) == ("rolled_back", "copy"), entry
    assert "omero: changed table public.image" in entry["reason"], entry["reason"]
    assert_rolled_back(old, prefix)

    # 3. The verification finds a difference (a row lost in the new cluster): rolled back. It is part of the
    # switchover's one call (step transfer), after the catch-up.
    hook = tmp_path / "lose_a_row.yml"
    hook.write_text(json.dumps([{"name": "lose a row", "community.docker.docker_container_exec": {
        "container": "{{ postgres_upgrade_verify_container }}",
        "argv": ["psql", "-U", USER, "-d", DB, "-c", "DELETE FROM image WHERE id = 1"]}}]))
    rc, report, output = run_role(tmp_path, {"name": old.name, "strategy": "logical", "login_password": PASSWORD},
                                  postgres_upgrade_before_verify_tasks=str(hook))
    assert rc != 0
    (entry,) = report
    assert (entry["outcome"], entry["step"]) == ("rolled_back", "transfer"), entry
    assert "differs from the old instance" in entry["reason"] and "omero: rows of public.image" in entry["reason"], \
        entry["reason"]
    assert_rolled_back(old, prefix)
