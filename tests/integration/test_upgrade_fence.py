"""The upgrade's write fence and the database-level properties it carries, on real 15 -> 17 upgrades.

The role runs through ansible-playbook exactly as a user runs it. A writer
nobody listed in ``clients`` (a loop of INSERTs as the superuser that owns the
database, as OMERO's role does) writes during the whole upgrade.
"""

import json
import subprocess
import time

import pytest

from harness import ENGINE, IMAGES, DbContainer, Writer, engine, run_module, unique
from upgrade_fixture import DB, PROPERTIES_SQL, USER, database_settings, remove_everything, run_role, user_properties

FENCE = "nl_biomero.database.pg_write_fence"
BROKEN_IMAGE = "nlbtest-upf/postgres:17-no-trgm"


@pytest.fixture
def source(request):
    """A PostgreSQL 15 OMERO-like instance with data; everything named after it is removed afterwards."""
    prefix = unique("nlbtest-upf")
    pg = DbContainer(15, prefix, user=USER, database=DB, password="o'pw")
    request.addfinalizer(lambda: remove_everything(prefix))
    pg.start()
    pg.psql("CREATE EXTENSION pg_trgm; "
            "CREATE TABLE writes (id bigserial PRIMARY KEY, note text NOT NULL); "
            "INSERT INTO writes (note) SELECT 'seed ' || g FROM generate_series(1, 500) g;")
    return pg


def _ids(pg, database=DB):
    return set(int(x) for x in pg.query("SELECT id FROM writes", database=database).split())


def _accepts_writes(pg):
    return pg.psql("INSERT INTO writes (note) VALUES ('after') RETURNING id", check=False)


@pytest.mark.parametrize("strategy", ["dump_restore", "pipe"])
def test_unlisted_writer_is_fenced_and_the_upgrade_keeps_every_committed_row_and_property(source, tmp_path, strategy):
    """One upgrade per strategy proves both: a writer nobody listed is fenced and loses no committed row, and
    every property a user set (database, roles, the bootstrap superuser's settings and rotated password) is
    carried to the new cluster."""
    source.psql(PROPERTIES_SQL)
    # The bootstrap superuser's own settings and a password rotated by ALTER ROLE (the container's
    # POSTGRES_PASSWORD is stale then): the new image creates the role anew; the upgrade carries both.
    source.psql("ALTER ROLE omero SET lock_timeout TO '9s'; ALTER ROLE omero PASSWORD 'rotated pw';")
    before = user_properties(source)
    assert "omero:work_mem=12MB" in before["settings"] and before["public_connect"] == "f"
    writer = Writer(source.name, USER, DB)
    writer.start()
    try:
        deadline = time.time() + 30
        while len(writer.committed) < 20 and time.time() < deadline:
            time.sleep(0.2)
        assert len(writer.committed) >= 20, writer.errors
        rc, report, output = run_role(tmp_path, {"name": source.name, "strategy": strategy})
        time.sleep(1)  # the writer meets the new server too
    finally:
        writer.stop()
    assert rc == 0, output[-3000:]
    (entry,) = report
    assert entry["outcome"] == "upgraded" and entry["to"] == 17, entry
    print("%s: writer committed %d rows, saw %d error lines; fence step %.2f s, downtime %.1f s" % (
        strategy, len(writer.committed), len(writer.errors), entry["steps_s"]["fence"], entry["downtime_s"]))
    # The writer saw the fence: its session was ended, then every write was refused.
    ended = [s for s in entry["write_fence"]["sessions_ended"] if s["application_name"] == "unlisted-writer"]
    assert ended and ended[0]["database"] == DB and ended[0]["user"] == USER
    assert any("terminating connection due to administrator command" in e for e in writer.errors), writer.errors
    assert any("cannot execute INSERT in a read-only transaction" in e for e in writer.errors), writer.errors
    assert sorted(entry["write_fence"]["databases"]) == ["extra", DB, "postgres"]
    # Every row it committed is in the new cluster, which is not read-only.
    new = DbContainer(17, source.name, user=USER, database=DB)
    assert writer.committed <= _ids(new)
    assert "nl_biomero.write_fence" not in database_settings(new)
    assert new.query("SHOW default_transaction_read_only") == "off"
    assert _accepts_writes(new).returncode == 0
    # Every property the user set, as the catalog and as the clients see them.
    assert user_properties(new) == before
    assert _as_reader(new, "SHOW work_mem") == "12MB"
    assert _as_reader(new, "SHOW statement_timeout") == "5s"
    assert _as_reader(new, "SHOW search_path") == "app, public"
    assert engine("exec", "-e", "PGPASSWORD=rotated pw", new.name, "psql", "-X", "-At", "-h", "127.0.0.1", "-U", USER,
                  "-d", DB, "-c", "SHOW lock_timeout").stdout.strip() == "9s"
    # The old instance kept the fence; the on-demand rollback lifts it and leaves the user's settings.
    rc, report, output = run_role(tmp_path, {"name": source.name}, entry="rollback")
    assert rc == 0 and report[0]["outcome"] == "rolled_back", output[-3000:]
    assert sorted(report[0]["write_fence_lifted"]) == ["extra", DB, "postgres"]
    assert source.query("SHOW server_version_num").startswith("15")
    assert database_settings(source) == before["settings"] and _accepts_writes(source).returncode == 0


@pytest.fixture
def broken_image():
    """The target image without the pg_trgm library (its control file stays: preflight passes, the restore fails)."""
    engine("build", "-t", BROKEN_IMAGE, "-", input="FROM %s\nRUN rm -f /usr/lib/postgresql/17/lib/pg_trgm.so\n"
           % IMAGES[17], timeout=300)
    yield BROKEN_IMAGE
    engine("image", "rm", "-f", BROKEN_IMAGE, check=False)


def test_fence_lifted_after_a_failed_transfer_back_to_the_previous_setting(source, tmp_path, broken_image):
    # The user's own setting, which the fence must put back as it was (not reset).
    source.psql("ALTER DATABASE omero SET default_transaction_read_only = off")
    writer = Writer(source.name, USER, DB)
    writer.start()
    try:
        rc, report, output = run_role(tmp_path, {"name": source.name, "strategy": "pipe"},
                                      postgres_upgrade_target_image=broken_image)
    finally:
        writer.stop()
    assert rc != 0
    (entry,) = report
    assert (entry["outcome"], entry["step"]) == ("rolled_back", "transfer"), entry
    assert "pg_trgm" in entry["reason"]
    assert entry["write_fence"]["previous"] == {DB: "off", "postgres": None}
    assert sorted(entry["write_fence"]["lifted"]) == [DB, "postgres"]
    assert any("read-only transaction" in e for e in writer.errors), writer.errors
    # The old server accepts writes again, its settings as before the upgrade, the writer's rows all there.
    assert database_settings(source) == "omero:default_transaction_read_only=off"
    assert _accepts_writes(source).returncode == 0
    assert writer.committed <= _ids(source)


def _as_reader(pg, sql):
    return engine("exec", "-e", "PGPASSWORD=r'pw", pg.name, "psql", "-X", "-At", "-h", "127.0.0.1", "-U", "reader",
                  "-d", DB, "-c", sql).stdout.strip()


def test_a_property_lost_in_the_new_cluster_fails_verification_and_rolls_back(source, tmp_path):
    source.psql(PROPERTIES_SQL)
    before = user_properties(source)
    lose = tmp_path / "lose_a_property.yml"
    lose.write_text(json.dumps([{"name": "Drop a database setting in the new cluster",
                                 "community.docker.docker_container_exec": {
                                     "container": "{{ postgres_upgrade_verify_container }}",
                                     "argv": ["psql", "-X", "-U", USER, "-d", "postgres", "-c",
                                              "ALTER DATABASE omero RESET work_mem"]}}]))
    rc, report, output = run_role(tmp_path, {"name": source.name, "strategy": "pipe"},
                                  postgres_upgrade_before_verify_tasks=str(lose))
    assert rc != 0
    (entry,) = report
    assert (entry["outcome"], entry["step"]) == ("rolled_back", "verify"), entry
    assert "omero: database property settings: ['work_mem=12MB'] before, [] after" in entry["reason"]
    assert source.query("SHOW server_version_num").startswith("15")
    assert user_properties(source) == before and _accepts_writes(source).returncode == 0


def test_pg_write_fence_check_mode_tells_and_changes_nothing_then_fences(source):
    source.psql("CREATE ROLE metabase LOGIN; ALTER ROLE metabase SET default_transaction_read_only = off;")
    idle = subprocess.Popen([ENGINE, "exec", "-i", "-e", "PGAPPNAME=idle-client", source.name, "psql", "-X", "-q",
                             "-U", USER, "-d", DB], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        idle.stdin.write("BEGIN; INSERT INTO writes (note) VALUES ('open transaction');\n")
        idle.stdin.flush()
        deadline = time.time() + 20
        while "idle-client" not in source.query("SELECT string_agg(application_name, ',') FROM pg_stat_activity"):
            assert time.time() < deadline
            time.sleep(0.2)
        check = run_module(FENCE, {"container": source.name, "databases": [DB, "nope"]}, check_mode=True)
        assert check["changed"] and check["fenced"] == [DB] and check["missing"] == ["nope"], check
        assert [s["application_name"] for s in check["sessions"]] == ["idle-client"]
        assert check["sessions_ended"] == [] and database_settings(source) == ""
        assert any("role metabase sets default_transaction_read_only=off in every database" in w
                   for w in check["warnings"])
        fenced = run_module(FENCE, {"container": source.name, "databases": [DB]})
        assert fenced["changed"] and [s["application_name"] for s in fenced["sessions_ended"]] == ["idle-client"]
        idle.stdin.write("COMMIT;\n")
        idle.stdin.close()
        assert idle.wait(timeout=20) != 0 and "terminating connection" in idle.stderr.read()
        assert "cannot execute INSERT in a read-only transaction" in _accepts_writes(source).stderr
        again = run_module(FENCE, {"container": source.name, "databases": [DB]})
        assert not again["changed"] and again["already_fenced"] == [DB] and again["previous"] == {DB: None}
        lifted = run_module(FENCE, {"container": source.name, "state": "off"})
        assert lifted["changed"] and lifted["lifted"] == [DB] and lifted["restored"] == {DB: None}
        assert database_settings(source) == "" and _accepts_writes(source).returncode == 0
        assert not run_module(FENCE, {"container": source.name, "state": "off"})["changed"]
        assert "open transaction" not in source.query("SELECT string_agg(note, ',') FROM writes")
    finally:
        idle.kill()


def test_pg_write_fence_bad_input_names_the_value_and_changes_nothing(source):
    result = run_module(FENCE, {"container": source.name, "state": "maybe"})
    assert result["failed"] and "maybe" in result["msg"] and "on, off" in result["msg"]
    result = run_module(FENCE, {"container": source.name, "wait_timeout": -1})
    assert result["failed"] and "wait_timeout -1 is negative" in result["msg"]
    source.psql("""ALTER DATABASE omero SET "nl_biomero.write_fence" = 'not ours'""")
    result = run_module(FENCE, {"container": source.name, "state": "off"})
    assert result["failed"] and "database omero carries a nl_biomero.write_fence setting" in result["msg"]
    assert database_settings(source) == "omero:nl_biomero.write_fence=not ours"
