"""Restores that let no one in and keep what lives on the database object (issue 10, items 1 and 2).

Real PostgreSQL 15 and 17 source clusters where an ordinary login role
(``plain``, no CREATEROLE) has put hostile text into its own settings, and a
role whose name holds a newline exists; and a database ``props`` with
properties of its own (encoding/locale other than the target's default, owner,
work_mem, comment, REVOKE CONNECT FROM PUBLIC + GRANT CONNECT, a per-role
setting, a connection limit). Dumps with globals by pg_dump_container,
restores by pg_restore_container into fresh PostgreSQL 17 targets (17 -> 17
into ``tgt_a``, 15 -> 17 into ``tgt_b``), each step through ansible-playbook.

The steps run once, in this order, in the module fixture ``world``; the tests
read its results and the containers' catalogs.
"""

import concurrent.futures
import json

import pytest

import harness

engine, run_module, unique = harness.engine, harness.run_module, harness.unique

RESTORE = "nl_biomero.database.pg_restore_container"
DUMP = "nl_biomero.database.pg_dump_container"
PREFIX = "nlbtest-safe"
NEWLINE_ROLE = "x\nALTER ROLE plain SUPERUSER"

SOURCE_SQL = """
CREATE ROLE plain LOGIN PASSWORD 'plain-Pw1';
CREATE ROLE "x
ALTER ROLE plain SUPERUSER";
GRANT pg_read_all_stats TO plain;
CREATE ROLE prop_owner;
CREATE ROLE prop_reader LOGIN;
CREATE DATABASE props OWNER prop_owner TEMPLATE template0 ENCODING 'UTF8' LOCALE 'en_US.utf8';
ALTER DATABASE props SET work_mem = '12MB';
COMMENT ON DATABASE props IS 'OMERO''s properties ✓';
REVOKE CONNECT ON DATABASE props FROM PUBLIC;
GRANT CONNECT ON DATABASE props TO prop_reader;
ALTER ROLE prop_reader IN DATABASE props SET statement_timeout = '5s';
ALTER DATABASE props CONNECTION LIMIT 42;
"""
# run by `plain` itself: any login role may set its own settings
HOSTILE_SQL = """
ALTER ROLE CURRENT_USER SET search_path TO $$a
ALTER ROLE pg_monitor b$$;
ALTER ROLE CURRENT_USER SET default_tablespace TO $$;ALTER ROLE plain SUPERUSER;--$$;
"""
ROLES_SQL = """SELECT json_build_object(
  'roles', (SELECT json_object_agg(rolname, json_build_array(rolsuper, rolinherit, rolcreaterole, rolcreatedb,
                   rolcanlogin, rolreplication, rolbypassrls, rolconnlimit, rolconfig) ORDER BY rolname) FROM pg_roles),
  'members', (SELECT coalesce(json_agg(json_build_array(pg_get_userbyid(roleid), pg_get_userbyid(member))
                     ORDER BY pg_get_userbyid(roleid), pg_get_userbyid(member)), '[]') FROM pg_auth_members),
  'superusers', (SELECT json_agg(rolname ORDER BY rolname) FROM pg_roles WHERE rolsuper)
)::text"""
PROPS_SQL = """SELECT json_build_object(
  'owner', pg_get_userbyid(d.datdba), 'connlimit', d.datconnlimit, 'encoding', pg_encoding_to_char(d.encoding),
  'collate', d.datcollate, 'ctype', d.datctype, 'provider', d.datlocprovider,
  'acl', (SELECT json_agg(a::text ORDER BY a::text) FROM unnest(d.datacl) a),
  'comment', shobj_description(d.oid, 'pg_database'),
  'settings', (SELECT json_object_agg(coalesce(r.rolname, '*'), s.setconfig ORDER BY r.rolname)
               FROM pg_db_role_setting s LEFT JOIN pg_roles r ON r.oid = s.setrole WHERE s.setdatabase = d.oid)
)::text FROM pg_database d WHERE d.datname = '%s'"""


def roles(pg):
    return json.loads(pg.query(ROLES_SQL))


def props(pg, database):
    return json.loads(pg.query(PROPS_SQL % database.replace("'", "''")))


def restore(pg, database, src, check_mode=False, **args):
    params = {"container": pg.name, "database": database, "src": src}
    params.update(args)
    result = run_module(RESTORE, params, check_mode=check_mode)
    assert not result.get("failed"), result.get("msg")
    return result


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    made = {key: harness.DbContainer(major, unique("%s-%s" % (PREFIX, key)))
            for key, major in (("src15", 15), ("src17", 17), ("tgt_a", 17), ("tgt_b", 17))}
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(made)) as pool:
            list(pool.map(lambda pg: pg.start(), made.values()))
        out = {"pg": made, "dumps": {}, "results": {}, "before": {}}
        base = tmp_path_factory.mktemp("safe")
        for major in (15, 17):
            src = made["src%d" % major]
            src.psql(SOURCE_SQL)
            engine("exec", "-i", src.name, "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-U", "plain", "-d",
                   src.database, "-f", "-", input=HOSTILE_SQL)
            src.psql("CREATE TABLE t AS SELECT generate_series(1, 1000) AS id", database="props")
            dumped = run_module(DUMP, {"container": src.name, "database": "props", "globals": True,
                                       "dest": str(base / ("props%d.dump" % major))})
            assert not dumped.get("failed"), dumped.get("msg")
            out["dumps"][major] = dumped["path"]
        tgt_a, results = made["tgt_a"], out["results"]
        # 1. no globals: the roles the properties name are missing in tgt_a
        results["no_globals"] = restore(tgt_a, "props_bare", out["dumps"][17])
        # 2. globals into the fresh targets (their roles as they were before, kept for the comparison)
        for key, major in (("tgt_a", 17), ("tgt_b", 15)):
            out["before"][key] = roles(made[key])
            results["create%d" % major] = restore(made[key], "props%d" % major, out["dumps"][major], globals=True)
        # 3. replace a database that has other properties, after a check-mode run
        for key, major in (("tgt_a", 17), ("tgt_b", 15)):
            pg, name = made[key], "props_r%d" % major
            pg.psql("CREATE DATABASE %s; ALTER DATABASE %s SET work_mem = '1MB'; COMMENT ON DATABASE %s IS 'old'"
                    % (name, name, name))
            pg.psql("CREATE TABLE old (x int)", database=name)
            out["before_replace%d" % major] = props(pg, name)
            results["check_replace%d" % major] = restore(pg, name, out["dumps"][major], check_mode=True,
                                                         if_exists="replace", globals=True)
            out["after_check%d" % major] = props(pg, name)
            results["replace%d" % major] = restore(pg, name, out["dumps"][major], if_exists="replace", globals=True)
        yield out
    finally:
        for pg in made.values():
            pg.remove()


# --------------------------------------------------------------------------
# item 1: hostile globals
# --------------------------------------------------------------------------

@pytest.mark.parametrize("major,key", [(17, "tgt_a"), (15, "tgt_b")], ids=["17-17", "15-17"])
def test_hostile_globals_escalate_no_one(world, major, key):
    pg, src = world["pg"][key], world["pg"]["src%d" % major]
    before, after, source = world["before"][key], roles(pg), roles(src)
    report = world["results"]["create%d" % major]["globals"]
    # the ordinary role's settings stay inside their literals: `plain` is not a superuser
    assert after["roles"]["plain"][0] is False
    assert after["superusers"] == before["superusers"] == ["app"]
    # every role the target had (pg_monitor, app, ...) keeps its attributes and settings
    assert {name: after["roles"][name] for name in before["roles"]} == before["roles"]
    # no membership but the source's own one for the created role
    assert after["members"] == sorted(before["members"] + [["pg_read_all_stats", "plain"]])
    # the created roles carry the source's settings, verbatim
    assert after["roles"]["plain"] == source["roles"]["plain"]
    assert any("ALTER ROLE pg_monitor b" in item for item in after["roles"]["plain"][8])
    assert after["roles"][NEWLINE_ROLE] == source["roles"][NEWLINE_ROLE]
    # the newline role is reported as created
    assert {NEWLINE_ROLE, "plain", "prop_owner", "prop_reader"} <= set(report["roles_created"])
    assert "app" in report["roles_skipped"]
    # `plain` logs in with its password from the source
    proc = engine("exec", "-e", "PGPASSWORD=plain-Pw1", pg.name, "psql", "-h", "127.0.0.1", "-U", "plain", "-d",
                  "props%d" % major, "-Atc", "SELECT current_user", check=False)
    assert proc.returncode != 0 and "permission denied" in proc.stderr  # REVOKE CONNECT FROM PUBLIC holds
    proc = engine("exec", "-e", "PGPASSWORD=plain-Pw1", pg.name, "psql", "-h", "127.0.0.1", "-U", "plain", "-d",
                  "appdb", "-Atc", "SELECT current_user", check=False)
    assert proc.returncode == 0 and proc.stdout.strip() == "plain", proc.stderr


# --------------------------------------------------------------------------
# item 2: database-level properties
# --------------------------------------------------------------------------

@pytest.mark.parametrize("major,key,how", [(17, "tgt_a", "create"), (17, "tgt_a", "replace"),
                                           (15, "tgt_b", "create"), (15, "tgt_b", "replace")],
                         ids=["17-17-create", "17-17-replace", "15-17-create", "15-17-replace"])
def test_database_properties_are_carried(world, major, key, how):
    pg, src = world["pg"][key], world["pg"]["src%d" % major]
    name = "props%d" % major if how == "create" else "props_r%d" % major
    result = world["results"]["%s%d" % (how, major)]
    assert result["plan"] == how
    expected = props(src, "props")
    assert expected["collate"] == "en_US.utf8" and props(pg, "postgres")["collate"] != "en_US.utf8"
    assert props(pg, name) == expected
    assert expected["settings"] == {"*": ["work_mem=12MB"], "prop_reader": ["statement_timeout=5s"]}
    assert expected["owner"] == "prop_owner" and expected["connlimit"] == 42
    assert "prop_reader=c/prop_owner" in expected["acl"] and "OMERO's" in expected["comment"]
    report = result["database_properties"]
    assert report["source"] == "archive" and report["left_out"] == [] and len(report["applied"]) == 8
    assert all('"%s"' % name in statement for statement in report["applied"])
    assert any("applied 8 database-level properties" in action for action in result["actions"])
    assert pg.query("SELECT count(*) FROM t", database=name) == "1000"
    assert pg.query("SELECT count(*) FROM pg_database WHERE datname ~ '^nlb_(restore|replaced)_'") == "0"


@pytest.mark.parametrize("major", [17, 15])
def test_check_mode_lists_the_properties_and_changes_nothing(world, major):
    result = world["results"]["check_replace%d" % major]
    assert result["changed"] is True and result["plan"] == "replace"
    assert world["after_check%d" % major] == world["before_replace%d" % major]
    assert world["before_replace%d" % major]["comment"] == "old"
    report = result["database_properties"]
    assert len(report["applied"]) == 8 and 'ALTER DATABASE "props_r%d" SET work_mem TO \'12MB\';' % major \
        in report["applied"]
    assert any(action.startswith("apply the archive's database-level properties") and "work_mem" in action
               for action in result["actions"])
    assert any("LOCALE_PROVIDER = libc LOCALE = 'en_US.utf8' from the archive" in action for action in result["actions"])


def test_properties_naming_missing_roles_are_reported_and_left_out(world):
    pg = world["pg"]["tgt_a"]
    result = world["results"]["no_globals"]
    report = result["database_properties"]
    assert sorted(sum((item["missing_roles"] for item in report["left_out"]), [])) == [
        "prop_owner", "prop_reader", "prop_reader"]
    assert len(report["applied"]) == 5
    assert any("lacks are not applied" in warning for warning in result["warnings"])
    got = props(pg, "props_bare")
    assert got["owner"] == "app" and got["settings"] == {"*": ["work_mem=12MB"]} and got["connlimit"] == 42
    assert got["collate"] == "en_US.utf8" and "OMERO's" in got["comment"]
    assert got["acl"] == ["=T/app", "app=CTc/app"]  # REVOKE CONNECT FROM PUBLIC applied, the grant left out
