"""Test stacks (module pg_stack, role stack, playbook stack.yml) on the real engine.

Every stack here is named nlbtest-stk-*; each test removes its stacks by name
(state: absent) in a finally, and checks that nothing labelled with them is left.
"""
import json
import os
import random
import re
import socket
import stat
import subprocess
import sys
import time

import psycopg2
import pytest

from harness import COLLECTIONS, ENGINE, IMAGES, REPO_ROOT, engine, require_image, run_module, unique
from importer_fixture import SCHEMA_FULL

MODULE = "nl_biomero.database.pg_stack"
LABEL = "nl-biomero.database.stack"


@pytest.fixture
def image():
    return require_image(17)


def _labelled(stack):
    """Names of everything on the engine labelled with ``stack``."""
    found = []
    for args in (("ps", "-a", "--format", "{{.Names}}"), ("volume", "ls", "--format", "{{.Name}}"),
                 ("network", "ls", "--format", "{{.Name}}")):
        found += engine(*(args + ("--filter", "label=%s=%s" % (LABEL, stack)))).stdout.split()
    return found


def _args(stack, files_dir, **extra):
    args = {"name": stack, "image": IMAGES[17], "files_dir": str(files_dir), "engine": ENGINE,
            "cache_dir": os.path.join(str(files_dir), ".seeds")}
    args.update(extra)
    return args


def _remove(stack, files_dir):
    run_module(MODULE, _args(stack, files_dir, state="absent"))


def _connect(entry, database=None):
    return psycopg2.connect(host=entry["host"], port=entry["port"], user=entry["user"], password=entry["password"],
                            dbname=database or entry["database"], connect_timeout=10)


def _query(entry, sql):
    conn = _connect(entry)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall()
    finally:
        conn.close()


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_create_connect_rerun_teardown(image, tmp_path):
    stack = unique("nlbtest-stk")
    files = tmp_path / "files"
    try:
        result = run_module(MODULE, _args(stack, files, omero_password="given pw'1"))
        assert result.get("changed") is True, result
        assert any("EPHEMERAL" in w and "NEVER for real data" in w for w in result.get("warnings", []))
        assert result["ready_seconds"] < 30
        paths = result["files"]
        assert _mode(str(files)) == 0o700 and _mode(paths["json"]) == 0o600 and _mode(paths["env"]) == 0o600
        details = json.load(open(paths["json"]))
        # Passwords: the given one, a generated one; in the files only, never in the output.
        assert details["omero"]["password"] == "given pw'1"
        generated = details["biomero"]["password"]
        assert len(generated) == 24 and generated.isalnum()
        for secret in ("given pw'1", generated):
            assert secret not in result["_playbook_output"] and secret not in json.dumps(result)
        assert "password" not in result["connection"]["biomero"]
        # Both databases answer with the files' values over the published ports, ephemeral settings on.
        for role in ("omero", "biomero"):
            entry = details[role]
            assert entry["host"] == "127.0.0.1" and entry["port"] > 0
            rows = _query(entry, "SELECT current_user, current_database(), current_setting('fsync'), "
                                 "current_setting('synchronous_commit'), current_setting('full_page_writes')")
            assert rows == [(entry["user"], entry["database"], "off", "off", "off")]
        assert details["omero"]["port"] != details["biomero"]["port"]
        assert details["omero"]["omero_config"]["omero.db.port"] == str(details["omero"]["port"])
        # The dotenv file, sourced by sh, gives the same values (psql with them connects).
        env_out = subprocess.run(
            ["sh", "-c", 'set -a; . "$1"; PGPASSWORD="$OMERO_DB_PASSWORD" psql -X -At -h "$OMERO_DB_HOST" '
             '-p "$OMERO_DB_PORT" -U "$OMERO_DB_USER" -d "$OMERO_DB_NAME" -c "SELECT 41+1"', "sh", paths["env"]],
            capture_output=True, text=True, check=False)
        assert env_out.stdout.strip() == "42", env_out.stderr
        # The containers see each other under NL-BIOMERO's service names on the stack's network.
        probe = engine("exec", "-e", "PGPASSWORD=%s" % generated, details["omero"]["container"], "psql", "-X",
                       "-At", "-h", "database-biomero", "-U", "biomero", "-d", "biomero", "-c", "SELECT 1")
        assert probe.stdout.strip() == "1"
        labelled = _labelled(stack)
        assert sorted(labelled) == sorted(["%s-omero-db" % stack, "%s-biomero-db" % stack, "%s-net" % stack])

        # Re-run: nothing changes, the same details come back.
        again = run_module(MODULE, _args(stack, files))
        assert again.get("changed") is False, again
        assert json.load(open(paths["json"])) == details

        removed = run_module(MODULE, _args(stack, files, state="absent"))
        assert removed["changed"] is True and set(removed["removed"]) >= set(labelled)
        assert _labelled(stack) == [] and not os.path.exists(paths["json"]) and not os.path.exists(paths["env"])
        assert run_module(MODULE, _args(stack, files, state="absent"))["changed"] is False
    finally:
        _remove(stack, files)


def test_persistent_mode_uses_labelled_volumes(image, tmp_path):
    stack = unique("nlbtest-stk")
    try:
        result = run_module(MODULE, _args(stack, tmp_path, ephemeral=False, publish=False))
        assert result.get("changed") is True, result
        assert not any("EPHEMERAL" in w for w in result.get("warnings", []))
        details = json.load(open(result["files"]["json"]))
        # No published port: the files give the container address on the stack network.
        assert details["biomero"]["port"] == 5432 and details["biomero"]["host"] != "127.0.0.1"
        assert _query(details["biomero"], "SHOW fsync") == [("on",)]
        assert "%s-omero-data" % stack in _labelled(stack)
    finally:
        _remove(stack, tmp_path)
    assert _labelled(stack) == []


_CORE = """
import json, sys
from ansible_collections.nl_biomero.database.plugins.module_utils.stack import stack_result
print(json.dumps(stack_result(**json.loads(sys.argv[1]))))
"""


def _process(stack, files_dir, **extra):
    """The module's core in a process of its own (what ansible-playbook runs, without its start-up cost)."""
    return subprocess.Popen([sys.executable, "-c", _CORE, json.dumps(_args(stack, files_dir, **extra))],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, PYTHONPATH=COLLECTIONS))


def test_four_stacks_in_parallel_processes(image, tmp_path):
    """Four pipelines at once on one host: created in parallel processes, then torn down in parallel."""
    stacks = [unique("nlbtest-stk") for _number in range(4)]
    try:
        procs = [_process(stack, tmp_path) for stack in stacks]
        outputs = [proc.communicate(timeout=300)[0] for proc in procs]
        for proc, out in zip(procs, outputs):
            assert proc.returncode == 0, out
        ports, networks = set(), set()
        for stack in stacks:
            details = json.load(open(str(tmp_path / (stack + ".json"))))
            networks.add(details["network"])
            for role in ("omero", "biomero"):
                assert _query(details[role], "SELECT current_database()") == [(details[role]["database"],)]
                ports.add(details[role]["port"])
            assert len(_labelled(stack)) == 3
        assert len(ports) == 8 and len(networks) == 4
        procs = [_process(stack, tmp_path, state="absent") for stack in stacks]
        for proc in procs:
            out = proc.communicate(timeout=300)[0]
            assert proc.returncode == 0, out
        for stack in stacks:
            assert _labelled(stack) == []
        assert os.listdir(str(tmp_path)) == []
    finally:
        for stack in stacks:
            _remove(stack, tmp_path)


def test_seed_from_sql_then_from_the_collections_dump(image, tmp_path):
    """A SQL fixture (with the importer's imports table and orders); then a dump of it taken by
    pg_dump_container (manifest + checksum) seeds another stack; a pg_dump archive a third."""
    first, second = unique("nlbtest-stk"), unique("nlbtest-stk")
    fixture = tmp_path / "biomero.sql"
    fixture.write_text(SCHEMA_FULL + """
INSERT INTO imports (group_name, user_name, destination_id, destination_type, stage, uuid, timestamp, files)
VALUES ('g', 'u', '1', 'Dataset', 'Import Pending', 'a0000000-0000-0000-0000-000000000001', now(), '["/a"]'),
       ('g', 'u', '1', 'Dataset', 'Import Failed', 'a0000000-0000-0000-0000-000000000001', now(), '["/a"]');
CREATE TABLE job (id integer PRIMARY KEY);
INSERT INTO job SELECT generate_series(1, 1000);
""")
    dumps = tmp_path / "dumps"
    dumps.mkdir()
    try:
        result = run_module(MODULE, _args(first, tmp_path, biomero_seed=str(fixture)))
        assert result.get("changed") is True, result
        assert result["seeded"]["biomero"]["format"] == "plain"
        details = json.load(open(result["files"]["json"]))
        assert _query(details["biomero"], "SELECT count(*), max(stage) FROM imports") == [(2, "Import Pending")]
        assert _query(details["omero"], "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == [(0,)]

        dump = run_module("nl_biomero.database.pg_dump_container",
                          {"container": details["biomero"]["container"], "database": "biomero",
                           "dest_dir": str(dumps), "engine": ENGINE})
        assert dump.get("failed") is not True, dump
        seeded = run_module(MODULE, _args(second, tmp_path, biomero_seed=dump["path"], omero_seed=dump["path"]))
        assert seeded.get("changed") is True, seeded
        assert seeded["seeded"]["biomero"]["checksum_verified"] is True
        other = json.load(open(seeded["files"]["json"]))
        for role in ("omero", "biomero"):
            assert _query(other[role], "SELECT count(*) FROM job") == [(1000,)]
            assert _query(other[role], "SELECT count(*) FROM imports") == [(2,)]

        # The tenth stack of a seed starts from the cluster the first one kept, with its own password.
        kept = seeded["seeded"]["biomero"]["prepared_cluster"]
        assert kept and _mode(kept) == 0o600 and _mode(os.path.dirname(kept)) == 0o700
        fourth = unique("nlbtest-stk")
        again = run_module(MODULE, _args(fourth, tmp_path, biomero_seed=dump["path"]))
        assert again.get("changed") is True, again
        assert again["seeded"]["biomero"]["prepared_cluster"] == kept and "rows" not in again["seeded"]["biomero"]
        reused = json.load(open(again["files"]["json"]))
        assert reused["biomero"]["password"] != other["biomero"]["password"]
        assert _query(reused["biomero"], "SELECT count(*) FROM job") == [(1000,)]
        assert _query(reused["biomero"], "SELECT count(*) FROM imports") == [(2,)]
        assert _query(reused["biomero"], "SHOW fsync") == [("off",)]
        _remove(fourth, tmp_path)
        assert _labelled(fourth) == []

        # The same dump cut short: the restore fails, the stack is removed, the error names the seed.
        cut = dumps / "cut.pg_dump"
        cut.write_bytes(open(dump["path"], "rb").read()[:-200])
        third = unique("nlbtest-stk")
        failed = run_module(MODULE, _args(third, tmp_path, biomero_seed=str(cut)))
        assert failed.get("failed") is True and "biomero_seed %s could not be restored" % cut in failed["msg"], failed
        assert _labelled(third) == [] and not os.path.exists(str(tmp_path / (third + ".json")))
    finally:
        _remove(first, tmp_path)
        _remove(second, tmp_path)
    assert _labelled(first) == [] and _labelled(second) == []


def _in_process(**params):
    from ansible_collections.nl_biomero.database.plugins.module_utils.stack import stack_result
    params.setdefault("engine", ENGINE)
    params.setdefault("image", IMAGES[17])
    return stack_result(**params)


def test_max_age_sweep_removes_old_keeps_new(image, tmp_path):
    """Run in-process (no ansible-playbook start-up between the calls) so that the age limit falls
    between the two stacks' creation times."""
    old, new = unique("nlbtest-stk"), unique("nlbtest-stk")
    try:
        _in_process(name=old, files_dir=str(tmp_path))
        old_created = json.load(open(str(tmp_path / (old + ".json"))))["created"]
        time.sleep(4)
        _in_process(name=new, files_dir=str(tmp_path))
        new_created = json.load(open(str(tmp_path / (new + ".json"))))["created"]
        assert new_created - old_created >= 4
        hours = (time.time() - old_created - 1.0) / 3600.0
        result = _in_process(max_age=hours, files_dir=str(tmp_path))
        assert list(result["swept"]) == [old] and result["changed"] is True
        assert _labelled(old) == [] and not os.path.exists(str(tmp_path / (old + ".json")))
        assert len(_labelled(new)) == 3 and os.path.exists(str(tmp_path / (new + ".json")))
        assert _in_process(max_age=hours, files_dir=str(tmp_path))["swept"] == {}
    finally:
        _remove(old, tmp_path)
        _remove(new, tmp_path)


def test_check_mode_creates_nothing(image, tmp_path):
    stack = unique("nlbtest-stk")
    result = run_module(MODULE, _args(stack, tmp_path), check_mode=True)
    assert result.get("changed") is True and result["msg"] == "would create stack %s" % stack, result
    assert _labelled(stack) == [] and os.listdir(str(tmp_path)) == []


def test_bad_name_is_refused(image, tmp_path):
    result = run_module(MODULE, _args("pr 1/x", tmp_path))
    assert result.get("failed") is True
    assert "stack name 'pr 1/x' is not valid" in result["msg"] and "letters, digits" in result["msg"]
    assert not os.path.exists(str(tmp_path / "pr 1"))


def test_missing_seed_leaves_nothing(image, tmp_path):
    stack = unique("nlbtest-stk")
    from ansible_collections.nl_biomero.database.plugins.module_utils.stack_rules import StackError
    with pytest.raises(StackError) as err:
        _in_process(**_args(stack, tmp_path, omero_seed=str(tmp_path / "nope.pg_dump")))
    assert "omero_seed %s does not exist" % (tmp_path / "nope.pg_dump") in str(err.value)
    assert _labelled(stack) == [] and os.listdir(str(tmp_path)) == []


def test_damaged_seed_leaves_nothing(image, tmp_path):
    stack = unique("nlbtest-stk")
    damaged = tmp_path / "damaged.pg_dump"
    # A custom-format header with nothing valid after it (fixed bytes: the same damage every run).
    damaged.write_bytes(b"PGDMP\x01\x0f\x00\x04\x08\x01\x01" + random.Random(7).randbytes(4096))
    try:
        result = run_module(MODULE, _args(stack, tmp_path, biomero_seed=str(damaged)))
        assert result.get("failed") is True, result
        assert "biomero_seed %s" % damaged in result["msg"], result["msg"]
        assert _labelled(stack) == []
        assert sorted(os.listdir(str(tmp_path))) == ["damaged.pg_dump"]
    finally:
        _remove(stack, tmp_path)


def test_taken_port_leaves_nothing(image, tmp_path):
    stack = unique("nlbtest-stk")
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    try:
        result = run_module(MODULE, _args(stack, tmp_path, biomero_port=port))
        assert result.get("failed") is True, result
        assert "biomero_port %d is taken" % port in result["msg"], result["msg"]
        assert _labelled(stack) == [] and os.listdir(str(tmp_path)) == []
    finally:
        holder.close()
        _remove(stack, tmp_path)


def readme_job():
    """The shell job of README.md's "Test stacks in CI" section, exactly as written."""
    text = open(os.path.join(REPO_ROOT, "README.md")).read()
    section = text.split("## Test stacks in CI", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```sh\n(.*?)```", section, re.S).group(1)


def test_readme_ci_job(image, tmp_path):
    """Run the README's job as a CI runner would (its own working directory, a job id); the test adds
    only the job id. The stack is ci-<job id>; afterwards nothing labelled with it is left."""
    job_id = unique("nlbtest-stk")
    stack = "ci-" + job_id
    if IMAGES[17] != "nl-biomero/postgres:17":
        pytest.skip("the README's job uses the default image nl-biomero/postgres:17")
    try:
        proc = subprocess.run(["bash", "-c", readme_job()], cwd=str(tmp_path), env=dict(os.environ, CI_JOB_ID=job_id),
                              capture_output=True, text=True, timeout=300, check=False)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert "EPHEMERAL" in proc.stdout + proc.stderr
        # psql printed its row, python the BIOMERO URL's host:port/database (not the password).
        assert re.search(r"^\s*1\s*$", proc.stdout, re.M), proc.stdout[-2000:]
        assert re.search(r"^127\.0\.0\.1:\d+/biomero$", proc.stdout, re.M), proc.stdout[-2000:]
        # The trap tore it down: nothing labelled, no files.
        assert _labelled(stack) == []
        assert os.listdir(str(tmp_path / ".stack")) == []
    finally:
        _remove(stack, tmp_path / ".stack")
