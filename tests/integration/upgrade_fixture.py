"""The upgrade role as a user runs it, and the source instance's user-set properties: shared by the upgrade tests."""

import json
import os
import subprocess
import time

from harness import IMAGES, ENGINE, engine

USER = "omero"
DB = "omero"
# What a user may have put on the database object and on roles (issue 10, item 2).
PROPERTIES_SQL = """
CREATE ROLE reader LOGIN PASSWORD 'r''pw' CONNECTION LIMIT 7 VALID UNTIL '2031-01-01 00:00:00+00';
CREATE ROLE team NOLOGIN;
GRANT team TO reader WITH ADMIN OPTION;
GRANT pg_monitor TO reader;
ALTER ROLE reader SET search_path TO 'app', 'public';
ALTER DATABASE omero SET work_mem = '12MB';
COMMENT ON DATABASE omero IS 'OMERO''s database';
REVOKE CONNECT ON DATABASE omero FROM PUBLIC;
GRANT CONNECT ON DATABASE omero TO reader;
ALTER ROLE reader IN DATABASE omero SET statement_timeout = '5s';
ALTER DATABASE omero CONNECTION LIMIT 40;
CREATE DATABASE extra OWNER reader;
COMMENT ON DATABASE extra IS 'empty, with properties';
ALTER DATABASE extra SET maintenance_work_mem = '77MB';
"""


def remove_everything(prefix):
    for kind, listing in (("container", ["ps", "-a", "--format", "{{.Names}}"]),
                          ("volume", ["volume", "ls", "--format", "{{.Name}}"])):
        names = [n for n in engine(*listing).stdout.split() if n.startswith(prefix)]
        if names:
            engine(*(["rm", "-f", "-v"] if kind == "container" else ["volume", "rm", "-f"]), *names, check=False)


def role_command(tmp_path, instance, entry="main", **role_vars):
    """(argv of ansible-playbook running the postgres_upgrade role's ``entry`` on one instance, report path)."""
    report = tmp_path / ("report-%s-%d.json" % (entry, time.monotonic_ns()))
    role = {"name": "role", "ansible.builtin.include_role": {"name": "nl_biomero.database.postgres_upgrade",
                                                             "tasks_from": entry}}
    save = {"name": "save the report", "ansible.builtin.copy": {
        "content": "{{ postgres_upgrade_report | default([]) | to_json }}", "dest": str(report)}}
    play = [{"hosts": "localhost", "gather_facts": False, "tasks": [{"block": [role], "always": [save]}]}]
    variables = {"postgres_upgrade_instances": [dict({"clients": [], "kind": "none"}, **instance)],
                 "postgres_upgrade_target_image": IMAGES[17], "postgres_upgrade_engine": ENGINE,
                 "postgres_upgrade_dump_dir": str(tmp_path / "dumps"), "postgres_upgrade_wait_timeout": 180,
                 # the test's own: the role takes the backup job's lock where that directory exists
                 "postgres_upgrade_backup_dir": str(tmp_path / "backups"),
                 "postgres_upgrade_stop_timeout": 20, "postgres_upgrade_no_log": False}
    variables.update(role_vars)
    (tmp_path / "play.yml").write_text(json.dumps(play))
    (tmp_path / "vars.json").write_text(json.dumps(variables))
    (tmp_path / "inventory").write_text("localhost ansible_connection=local ansible_python_interpreter=%s\n"
                                        % os.environ.get("ANSIBLE_PYTHON_INTERPRETER", "auto"))
    return (["ansible-playbook", "-i", str(tmp_path / "inventory"), "-e", "@" + str(tmp_path / "vars.json"),
             str(tmp_path / "play.yml")], report)


def run_role(tmp_path, instance, entry="main", **role_vars):
    """Run the postgres_upgrade role (entry point ``entry``) on one instance; (rc, report, output)."""
    argv, report = role_command(tmp_path, instance, entry, **role_vars)
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False)
    return proc.returncode, json.loads(report.read_text()), proc.stdout + proc.stderr


def database_settings(pg):
    return pg.query("SELECT coalesce(string_agg(d.datname || ':' || array_to_string(s.setconfig, ','), ' ' "
                    "ORDER BY d.datname), '') FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase "
                    "WHERE s.setrole = 0", database="postgres")


def user_properties(pg):
    """What the user set, read back from the catalog (not through the fingerprint)."""
    q = pg.query
    return {
        "settings": database_settings(pg),
        "comment": q("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = 'omero'"),
        "public_connect": q("SELECT has_database_privilege('public', 'omero', 'CONNECT')"),
        "reader_connect": q("SELECT has_database_privilege('reader', 'omero', 'CONNECT')"),
        "connlimit": q("SELECT datconnlimit FROM pg_database WHERE datname = 'omero'"),
        "reader_in_db": q("SELECT array_to_string(setconfig, ',') FROM pg_db_role_setting s JOIN pg_roles r "
                          "ON r.oid = s.setrole WHERE r.rolname = 'reader' AND s.setdatabase <> 0"),
        "reader": q("SELECT rolconnlimit || ' ' || rolvaliduntil AT TIME ZONE 'UTC' || ' ' || rolcanlogin "
                    "FROM pg_roles WHERE rolname = 'reader'"),
        "members": q("SELECT string_agg(pg_get_userbyid(roleid) || ':' || admin_option, ',' "
                     "ORDER BY pg_get_userbyid(roleid)) "
                     "FROM pg_auth_members WHERE member = 'reader'::regrole"),
        "extra": q("SELECT pg_get_userbyid(datdba) || ' ' || shobj_description(oid, 'pg_database') "
                   "FROM pg_database WHERE datname = 'extra'"),
    }
