"""Credentials and log hygiene of the role postgres_container (issue 16), against one container set.

The module fixture provisions one OMERO-like instance (PostgreSQL 17) with
playbooks/provision.yml as a user does: logging on with log_statement=all, a
host log directory holding files of the page's date pattern (old and recent),
and an init script that leaves a role with an md5-hashed password. The tests
then rotate passwords (playbooks/rotate_password.yml and the module
pg_role_password) on that instance.
"""

import json
import os
import re
import shutil
import subprocess
import time

import psycopg2
import pytest

from harness import ENGINE, REPO_ROOT, container_ip, engine, require_image, run_module, unique

pytestmark = pytest.mark.skipif(ENGINE != "docker", reason="the postgres_container role is tested with Docker")

OLD_PW = "first-pw"
NEW_PW = "n3w 'rotated\" pw"  # quotes and a blank: a password pasted into SQL would break
MD5_PW = "legacy-md5-pw"
READ_PW = "metabase-ro-pw"
DAY = 86400


def playbook(site, name, *extra):
    proc = subprocess.run(["ansible-playbook", "-i", site["inventory"], *extra,
                           os.path.join(REPO_ROOT, "playbooks", name)],
                          capture_output=True, text=True, timeout=600, check=False, cwd=site["work"])
    return proc


def recap(output):
    found = re.findall(r"^db-host\s*:\s*(.*)$", output, re.M)
    return dict((key, int(value)) for key, value in re.findall(r"(\w+)=(\d+)", found[-1]))


def write_inventory(site, password):
    with open(site["inventory"], "w") as handle:
        json.dump({"nl_biomero_database": {"hosts": {"db-host": {
            "ansible_connection": "local",
            "ansible_python_interpreter": os.environ.get("ANSIBLE_PYTHON_INTERPRETER", "auto"),
            "postgres_container_instances": [{
                "name": site["container"], "role": "omero", "user": "omero", "db": "omero",
                "password": password, "image": require_image(17), "initdb_dir": site["initdb"],
                "logging": True, "log_dir": site["logs"], "log_statement": "all", "log_keep_days": 7,
                "readers": [{"name": "metabase", "password": READ_PW}]}],
            "postgres_container_network": site["network"],
            "postgres_container_tuning": "none",
            "postgres_container_pull": False,
            "postgres_container_stop_timeout": 30,
            "postgres_container_wait_timeout": 120,
        }}}}, handle)


def connect(site, password, user="omero"):
    return psycopg2.connect(host=container_ip(site["container"]), port=5432, user=user, password=password,
                            dbname="omero", connect_timeout=5)


def login(site, password, user="omero"):
    """None when a fresh TCP login from the host works, else the error."""
    try:
        conn = connect(site, password, user)
    except psycopg2.OperationalError as exc:
        return str(exc)
    conn.close()
    return None


def psql(site, sql):
    return engine("exec", "-i", site["container"], "psql", "-X", "-v", "ON_ERROR_STOP=1", "-At", "-U", "omero",
                  "-d", "omero", "-f", "-", input=sql).stdout.strip()


def log_text(site):
    text = ""
    for name in sorted(os.listdir(site["logs"])):
        with open(os.path.join(site["logs"], name), errors="replace") as handle:
            text += handle.read()
    return text


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    work = tmp_path_factory.mktemp("creds")
    names = {"container": unique("nlbtest-creds"), "network": unique("nlbtest-creds-net"), "work": str(work),
             "inventory": str(work / "inventory.json"), "initdb": str(work / "initdb"), "logs": str(work / "logs")}
    os.makedirs(names["initdb"])
    os.chmod(names["initdb"], 0o755)
    with open(os.path.join(names["initdb"], "01-legacy.sql"), "w") as handle:
        handle.write("SET password_encryption = 'md5';\nCREATE ROLE legacy LOGIN PASSWORD '%s';\n"
                     "CREATE TABLE marker (id int PRIMARY KEY); INSERT INTO marker VALUES (42);\n" % MD5_PW)
    os.makedirs(names["logs"])
    now = time.time()
    # Files of the page's pattern: one older than log_keep_days (7), one newer; a file of another kind.
    for name, age_days in (("postgresql-2026-01-02.log", 10), ("postgresql-2026-01-09.log", 3),
                           ("README.txt", 30)):
        path = os.path.join(names["logs"], name)
        with open(path, "w") as handle:
            handle.write("old log line\n")
        os.utime(path, (now - age_days * DAY, now - age_days * DAY))
    write_inventory(names, OLD_PW)
    started = time.time()
    proc = playbook(names, "provision.yml")
    names["provision_output"] = proc.stdout + proc.stderr  # warnings go to stderr
    names["provision_seconds"] = time.time() - started
    try:
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
        yield names
    finally:
        engine("rm", "-f", "-v", names["container"], check=False)
        engine("volume", "rm", "-f", names["container"], check=False)
        engine("network", "rm", names["network"], check=False)
        shutil.rmtree(str(work), ignore_errors=True)


def test_logs_rotate_by_weekday_and_old_files_are_pruned(site):
    assert psql(site, "SHOW log_filename") == "postgresql-%a.log"
    assert psql(site, "SHOW log_truncate_on_rotation") == "on"
    assert psql(site, "SHOW log_rotation_age") == "1d"
    assert psql(site, "SHOW log_rotation_size") == "0"
    files = sorted(os.listdir(site["logs"]))
    assert "postgresql-2026-01-02.log" not in files  # older than log_keep_days: removed
    assert "postgresql-2026-01-09.log" in files  # newer: kept
    assert "README.txt" in files  # not a log file
    assert [name for name in files if re.match(r"^postgresql-(Mon|Tue|Wed|Thu|Fri|Sat|Sun)\.log$", name)], files


def test_provisioning_warns_about_md5_roles(site):
    assert re.search(r"\[WARNING\]: container %s: role\(s\) legacy store md5-hashed" % re.escape(site["container"]),
                     site["provision_output"]), site["provision_output"][-3000:]


def test_read_only_role_reads_everything_writes_nothing(site):
    psql(site, "CREATE TABLE later (note text); INSERT INTO later VALUES ('made after the reader')")
    conn = connect(site, READ_PW, user="metabase")
    conn.autocommit = True
    try:
        cursor = conn.cursor()
        cursor.execute("SELECT id FROM marker")
        assert cursor.fetchall() == [(42,)]
        cursor.execute("SELECT note FROM later")  # a table created after the role
        assert cursor.fetchall() == [("made after the reader",)]
        for statement in ("INSERT INTO marker VALUES (1)", "SET default_transaction_read_only = off; "
                          "INSERT INTO marker VALUES (1)", "CREATE TABLE mine (id int)"):
            with pytest.raises(psycopg2.Error) as failed:
                cursor.execute(statement)
            assert "permission denied" in str(failed.value) or "read-only transaction" in str(failed.value)
    finally:
        conn.close()
    assert psql(site, "SELECT count(*) FROM marker") == "1"
    kept = run_module("nl_biomero.database.pg_read_role",
                      {"container": site["container"], "name": "metabase", "password": READ_PW})
    assert not kept.get("failed") and kept["changed"] is False, kept


def test_rotate_password_check_mode_then_rotation_then_nothing(site):
    before = engine("container", "inspect", "-f", "{{.Id}}", site["container"]).stdout.strip()
    write_inventory(site, NEW_PW)

    check = playbook(site, "rotate_password.yml", "--check")
    assert check.returncode == 0, check.stdout[-4000:]
    assert recap(check.stdout)["changed"] >= 2  # the password and the container's environment
    assert "the password of role omero would change" in check.stdout
    assert login(site, OLD_PW) is None and login(site, NEW_PW) is not None
    assert engine("container", "inspect", "-f", "{{.Id}}", site["container"]).stdout.strip() == before

    run = playbook(site, "rotate_password.yml")
    assert run.returncode == 0, run.stdout[-4000:]
    assert "the password of role omero changed; give the new value to OMERO.server (CONFIG_omero_db_pass), " \
           "Metabase (stored connection of the OMERO database)" in run.stdout
    assert login(site, NEW_PW) is None
    assert "password authentication failed" in login(site, OLD_PW)
    env = json.loads(engine("container", "inspect", "-f", "{{json .Config.Env}}", site["container"]).stdout)
    assert "POSTGRES_PASSWORD=" + NEW_PW in env
    assert engine("container", "inspect", "-f", "{{.Id}}", site["container"]).stdout.strip() != before
    assert psql(site, "SELECT id FROM marker") == "42"  # same data, not re-initialised
    assert psql(site, "SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid WHERE rolname = 'omero'") == "t"
    # log_statement=all: the ALTER ROLE session kept itself out of the log; no password anywhere.
    logs = log_text(site)
    assert "statement: SELECT" in logs or "statement: SHOW" in logs  # the log does hold statements
    assert "ALTER ROLE" not in logs
    for secret in (NEW_PW, OLD_PW):
        assert secret not in logs
        assert secret not in run.stdout + run.stderr + check.stdout + check.stderr

    again = playbook(site, "rotate_password.yml")
    assert again.returncode == 0, again.stdout[-4000:]
    assert recap(again.stdout)["changed"] == 0
    assert login(site, NEW_PW) is None


def _stored(site, role):
    return psql(site, "SELECT rolpassword FROM pg_authid WHERE rolname = '%s'" % role)


def test_password_that_fails_verification_is_undone(site):
    # A site's connection limit on the role makes the fresh login fail after the new verifier is stored.
    psql(site, "CREATE ROLE app LOGIN PASSWORD 'app-old-pw' CONNECTION LIMIT 0")
    before = _stored(site, "app")
    result = run_module("nl_biomero.database.pg_role_password",
                        {"container": site["container"], "user": "app", "password": "app-new-pw"})
    assert result.get("failed"), result
    assert "fresh login over TCP" in result["msg"] and "the old password is back in place" in result["msg"]
    assert "too many connections for role" in result["msg"]
    assert "app-new-pw" not in json.dumps(result)
    assert result["restored"] is True and result["changed"] is False
    assert _stored(site, "app") == before
    psql(site, "ALTER ROLE app CONNECTION LIMIT -1")
    assert login(site, "app-old-pw", user="app") is None
    assert login(site, "app-new-pw", user="app") is not None


def test_bad_password_is_refused_and_changes_nothing(site):
    """An empty password would disable the login (the other refusals: unit tests of credentials.password_problem)."""
    before = _stored(site, "omero")
    result = run_module("nl_biomero.database.pg_role_password", {"container": site["container"], "password": ""})
    assert result.get("failed"), result
    assert "the password is empty" in result["msg"] and "nothing was changed" in result["msg"]
    assert _stored(site, "omero") == before
    assert login(site, NEW_PW) is None


def test_md5_role_is_rehashed_only_when_asked(site):
    args = {"container": site["container"], "user": "legacy", "password": MD5_PW}
    kept = run_module("nl_biomero.database.pg_role_password", args)
    assert not kept.get("failed") and kept["changed"] is False, kept
    assert kept["md5_roles"] == ["legacy"] and "rehash_md5=true" in kept["msg"]
    assert _stored(site, "legacy").startswith("md5")

    fixed = run_module("nl_biomero.database.pg_role_password", dict(args, rehash_md5=True))
    assert not fixed.get("failed") and fixed["changed"] is True and fixed["verified"] is True, fixed
    assert fixed["md5_roles"] == [] and not fixed.get("warnings")
    assert _stored(site, "legacy").startswith("SCRAM-SHA-256$")
    # The image's pg_hba line is scram-sha-256: the md5 role could not log in over TCP before, now it can.
    assert login(site, MD5_PW, user="legacy") is None
