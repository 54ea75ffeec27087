"""pg_restore_container against real PostgreSQL 15 and 17 containers.

Five containers are shared by the whole module (started in parallel):
sources 15 and 17 holding the data set of dataset.py, targets 15 and 17,
and an "adopt" PostgreSQL 17 container set up like NL-BIOMERO's OMERO
database (POSTGRES_USER=omero, POSTGRES_DB=omero). Dumps are made with the
collection's own pg_dump_container (globals included), all in one playbook.
Every test restores into its own database name, so the tests are
independent of their order.

Speed: starting ansible-playbook costs seconds, the module itself about one
second on this data set, so tasks that belong together run as several tasks
of one playbook (run_tasks): all dumps, all round trips, the two runs of a
check-mode test.
"""

import concurrent.futures
import json
import os
import shutil
import subprocess
import threading
import time

import pytest

import harness
from harness import run_tasks

import dataset

HERE = os.path.dirname(os.path.abspath(__file__))


engine, run_module, unique = harness.engine, harness.run_module, harness.unique

RESTORE = "nl_biomero.database.pg_restore_container"
DUMP = "nl_biomero.database.pg_dump_container"
PREFIX = "nlbtest-rst"
SOURCE_DB = "appdb"


def _conninfo(database):
    return "dbname='%s'" % database.replace("\\", "\\\\").replace("'", "\\'")


# --------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cluster():
    """{'src15', 'src17', 'tgt15', 'tgt17', 'adopt'}: running containers, removed at the end."""
    specs = {
        "src15": dict(major=15),
        "src17": dict(major=17),
        "tgt15": dict(major=15),
        "tgt17": dict(major=17),
        "adopt": dict(major=17, user="omero", password="omero-Pw'1", database="omero"),
    }
    made = {}
    for key, spec in specs.items():
        major = spec.pop("major")
        made[key] = harness.DbContainer(major, unique("%s-%s" % (PREFIX, key)), **spec)
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(made)) as pool:
            list(pool.map(lambda pg: pg.start(), made.values()))
            list(pool.map(lambda key: dataset.load(made[key]), ["src15", "src17"]))
        yield made
    finally:
        for pg in made.values():
            pg.remove()


@pytest.fixture(scope="module")
def source_fp(cluster):
    cache = {}

    def get(major):
        if major not in cache:
            cache[major] = dataset.fingerprint(cluster["src%d" % major], SOURCE_DB)
        return cache[major]
    return get


# (major, format, compress) of every dump the tests use
DUMPS = [(15, "custom", None), (15, "directory", None), (17, "custom", None), (17, "directory", None),
         (15, "plain", "gzip"), (15, "tar", None)]


@pytest.fixture(scope="module")
def dumps(cluster, tmp_path_factory):
    """dumps(major, format, compress=None) -> pg_dump_container result (path, manifest, globals_path)."""
    base = tmp_path_factory.mktemp("dumps")
    tasks = []
    for major, fmt, compress in DUMPS:
        args = {"container": cluster["src%d" % major].name, "database": SOURCE_DB, "format": fmt, "globals": True,
                "dest": str(base / ("%d-%s.%s" % (major, fmt, {"plain": "sql.gz"}.get(fmt, fmt))))}
        if fmt == "directory":
            args["jobs"] = 2
        if compress:
            args["compress"] = compress
        tasks.append((DUMP, args))
    results = dict(zip(DUMPS, run_tasks(tasks)))
    for key, result in results.items():
        assert not result.get("failed"), (key, result.get("msg"))

    def get(major, fmt, compress=None):
        return results[(major, fmt, compress)]
    return get


def restore_task(pg, database, src, check_mode=False, **args):
    params = {"container": pg.name, "database": database, "src": str(src)}
    params.update(args)
    return (RESTORE, params, check_mode)


def direct_dump(pg, database, dest):
    """A 'foreign' dump: plain ``pg_dump -Fc`` of the container, no manifest, no globals."""
    with open(dest, "wb") as out:
        proc = subprocess.run([harness.ENGINE, "exec", "-e", "PGUSER=" + pg.user, "-e", "PGDATABASE=" + database,
                               pg.name, "pg_dump", "-Fc"], stdout=out, stderr=subprocess.PIPE, check=False)
    assert proc.returncode == 0, proc.stderr
    return str(dest)


def restore(pg, database, src, check_mode=False, **args):
    return run_module(*restore_task(pg, database, src, check_mode=check_mode, **args))


def db_exists(pg, database):
    return pg.query("SELECT count(*) FROM pg_database WHERE datname = '%s'" % database.replace("'", "''")) == "1"


def leftovers(pg):
    """Staging databases and staging directories the module might have left behind."""
    dbs = pg.query("SELECT string_agg(datname, ',') FROM pg_database WHERE datname ~ '^nlb_(restore|replaced)_'")
    files = engine("exec", pg.name, "ls", "-A", "/tmp").stdout.split()
    return [name for name in dbs.split(",") if name] + [name for name in files if name.startswith("nlb-restore.")]


def stable(result):
    """A result without what differs between two identical runs."""
    return {key: value for key, value in result.items() if key not in ("duration_s", "_playbook_output")}


def copy_set(result, directory):
    """Copy a dump with its manifest and globals file into ``directory``; returns the new dump path."""
    os.makedirs(directory, exist_ok=True)
    dest = os.path.join(directory, os.path.basename(result["path"]))
    if os.path.isdir(result["path"]):
        shutil.copytree(result["path"], dest)
    else:
        shutil.copy2(result["path"], dest)
    for extra in (result["manifest"], result.get("globals_path")):
        if extra:
            shutil.copy2(extra, os.path.join(directory, os.path.basename(extra)))
    return dest


@pytest.fixture(scope="module")
def keeper(cluster, round_trips):
    """A database restored into tgt15 that failure tests must leave untouched: (name, fingerprint)."""
    result = round_trips["keeper"]
    assert not result.get("failed"), result.get("msg")
    return "keeper", dataset.fingerprint(cluster["tgt15"], "keeper")


# --------------------------------------------------------------------------
# round trips
# --------------------------------------------------------------------------

# 15 -> 17 in the other formats: (format, compression)
OTHER_FORMATS = [("plain", "gzip"), ("tar", None)]
# (source major, target major, format, jobs, staged in the container)
ROUND_TRIPS = [
    (15, 15, "custom", None, False),
    (15, 15, "directory", 2, True),
    (17, 17, "custom", 2, True),
    (17, 17, "directory", 1, True),
    (15, 17, "custom", None, False),
    (15, 17, "directory", 2, True),
]


def _round_trip_db(src_major, fmt, jobs):
    return "rt_%d_%s_%s" % (src_major, fmt, jobs or 1)


@pytest.fixture(scope="module")
def round_trips(cluster, dumps):
    """All round-trip restores, run as the tasks of one playbook: {case: result}."""
    tasks = []
    for src_major, tgt_major, fmt, jobs, _staged in ROUND_TRIPS:
        args = {"globals": True}
        if jobs:
            args["jobs"] = jobs
        tasks.append(restore_task(cluster["tgt%d" % tgt_major], _round_trip_db(src_major, fmt, jobs),
                                  dumps(src_major, fmt)["path"], **args))
    for fmt, compress in OTHER_FORMATS:
        tasks.append(restore_task(cluster["tgt17"], "rt_other_%s" % fmt, dumps(15, fmt, compress)["path"],
                                  globals=True))
    # the databases of test_replace_and_clean and of the `keeper` fixture
    extra = ["replace_me", "keeper"]
    for name in extra:
        tasks.append(restore_task(cluster["tgt15"], name, dumps(15, "custom")["path"], globals=True))
    return dict(zip(ROUND_TRIPS + OTHER_FORMATS + extra, run_tasks(tasks)))


@pytest.mark.parametrize("case", ROUND_TRIPS, ids=["15-15-custom", "15-15-directory-j2", "17-17-custom-j2",
                                                   "17-17-directory-j1", "15-17-custom", "15-17-directory-j2"])
def test_round_trip(cluster, round_trips, source_fp, case):
    src_major, tgt_major, fmt, jobs, staged = case
    tgt = cluster["tgt%d" % tgt_major]
    database = _round_trip_db(src_major, fmt, jobs)
    result = round_trips[case]
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is True
    assert result["plan"] == "create"
    assert result["format"] == fmt
    assert result["staged"] is staged
    assert result["checksum_verified"] is True
    assert result["dump_server_version"].split(".")[0] == str(src_major)
    assert result["target_server_version"].split(".")[0] == str(tgt_major)
    assert result["jobs"] == (jobs or 1)
    expected = source_fp(src_major)
    assert result["row_counts"] == dataset.row_counts(expected)
    assert result["rows_total"] == sum(dataset.row_counts(expected).values())
    assert result["tables_restored"] == len([name for name in expected["tables"] if name != "events.metric"])
    globals_report = result["globals"]
    assert "app" in globals_report["roles_skipped"]
    restored_roles = set(globals_report["roles_created"] + globals_report["roles_skipped"])
    assert restored_roles >= {"app", "nlb_reader", "nlb_writer"}
    # everything that matters is there: data, order, sequences, large objects, grants, memberships, DDL
    assert dataset.fingerprint(tgt, database) == expected
    # sequences continue after the restored rows
    assert int(tgt.query("INSERT INTO core.project (name, created) VALUES ('nieuw ✓', now()) RETURNING id",
                         database=database).splitlines()[0]) > 1000
    assert int(tgt.query("INSERT INTO core.image (project_id, name, width, height) VALUES (1, 'n', 1, 1) "
                         "RETURNING id", database=database).splitlines()[0]) > 50000
    assert tgt.query("SELECT nextval('core.ticket_seq')", database=database) == "4243"
    # the role restored from the globals file logs in with its password and has its grants
    proc = engine("exec", "-e", "PGPASSWORD=writer-Pä55", tgt.name, "psql", "-h", "127.0.0.1", "-U", "nlb_writer",
                  "-d", database, "-Atc", "SELECT count(*) FROM core.project", check=False)
    assert proc.returncode == 0 and proc.stdout.strip() == "1001", proc.stderr
    assert leftovers(tgt) == []


@pytest.mark.parametrize("case", OTHER_FORMATS, ids=["plain-gzip", "tar"])
def test_round_trip_other_formats(cluster, round_trips, source_fp, case):
    fmt = case[0]
    tgt = cluster["tgt17"]
    database = "rt_other_%s" % fmt
    result = round_trips[case]
    assert not result.get("failed"), result.get("msg")
    assert result["format"] == fmt
    assert result["staged"] is False
    assert dataset.fingerprint(tgt, database) == source_fp(15)
    properties = result["database_properties"]
    if fmt == "plain":
        # a plain script records no database-level properties: the target's defaults, and the result says so
        assert properties["source"] == "none" and "plain SQL script" in properties["note"], properties
    else:
        assert properties["source"] == "archive" and properties["create_options"]["ENCODING"] == "'UTF8'", properties


def test_replace_and_clean(cluster, round_trips, dumps, source_fp):
    """replace swaps in a fresh copy (terminating a session still connected); clean restores in place."""
    tgt = cluster["tgt15"]
    assert not round_trips["replace_me"].get("failed"), round_trips["replace_me"].get("msg")
    src = dumps(15, "directory")["path"]
    tgt.psql("INSERT INTO core.project (name, created) VALUES ('marker', now())", database="replace_me")
    session = subprocess.Popen([harness.ENGINE, "exec", tgt.name, "psql", "-U", tgt.user, "-d", "replace_me", "-c",
                                "SELECT pg_sleep(300)"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1)
        (replaced,) = run_tasks([restore_task(tgt, "replace_me", src, if_exists="replace", jobs=2)])
        assert session.wait(timeout=60) != 0
        assert "terminating connection" in session.stderr.read()
    finally:
        if session.poll() is None:
            session.kill()
    assert not replaced.get("failed"), replaced.get("msg")
    assert replaced["plan"] == "replace" and replaced["changed"] is True
    assert any("dropped the old database" in action for action in replaced["actions"])
    assert dataset.fingerprint(tgt, "replace_me") == source_fp(15)

    tgt.psql("INSERT INTO core.project (name, created) VALUES ('marker', now()); "
             "UPDATE public.settings SET value = 'changed'", database="replace_me")
    (cleaned,) = run_tasks([restore_task(tgt, "replace_me", src, if_exists="clean", jobs=2)])
    assert not cleaned.get("failed"), cleaned.get("msg")
    assert cleaned["plan"] == "clean"
    assert dataset.fingerprint(tgt, "replace_me") == source_fp(15)
    assert leftovers(tgt) == []


# --------------------------------------------------------------------------
# failures: clear message, nothing lost; and check mode
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def probes(cluster, dumps, keeper, tmp_path_factory):
    """Runs that must change nothing, as the tasks of one playbook: {name: result}.

    Most of them aim at the `keeper` database, whose fingerprint was taken
    before: each test compares it afterwards, i.e. after ALL of these runs.
    """
    base = tmp_path_factory.mktemp("probes")
    tgt15, tgt17, src15 = cluster["tgt15"], cluster["tgt17"], cluster["src15"]
    custom15 = dumps(15, "custom")

    # a copy of a dump with one byte flipped, manifest and globals beside it
    corrupt = copy_set(custom15, str(base / "corrupt"))
    size = os.path.getsize(corrupt)
    with open(corrupt, "r+b") as handle:
        handle.seek(size // 2)
        byte = handle.read(1)
        handle.seek(size // 2)
        handle.write(bytes([byte[0] ^ 0xFF]))
    # the first half of a dump, no manifest: like a foreign dump cut off in transfer
    truncated = str(base / "truncated.dump")
    with open(custom15["path"], "rb") as full, open(truncated, "wb") as out:
        out.write(full.read(os.path.getsize(custom15["path"]) // 2))
    # a foreign dump granting to a role that only its source cluster has
    src15.psql("CREATE ROLE nlb_ghost; CREATE DATABASE ghostdb")
    try:
        src15.psql("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 100); "
                   "GRANT SELECT ON t TO nlb_ghost", database="ghostdb")
        ghost = direct_dump(src15, "ghostdb", base / "ghost.dump")
    finally:
        src15.psql("DROP DATABASE IF EXISTS ghostdb; DROP ROLE IF EXISTS nlb_ghost")
    stopped = unique(PREFIX + "-stopped")
    engine("create", "--name", stopped, harness.IMAGES[17])
    probes = {
        "newer": restore_task(tgt15, "from17", dumps(17, "custom")["path"]),
        "checksum": restore_task(tgt15, "keeper", corrupt, if_exists="replace", globals=True),
        "truncated": restore_task(tgt15, "keeper", truncated, if_exists="replace"),
        "refused": restore_task(tgt15, "keeper", custom15["path"]),
        "skipped": restore_task(tgt15, "keeper", custom15["path"], if_exists="skip"),
        "ghost": restore_task(tgt17, "ghost", ghost),
        "stopped": (RESTORE, {"container": stopped, "database": "x", "src": custom15["path"]}),
        "check_replace": restore_task(tgt15, "keeper", custom15["path"], check_mode=True, if_exists="replace"),
        "check_new_1": restore_task(tgt17, "check_only", dumps(15, "directory")["path"], check_mode=True,
                                    globals=True),
        "check_new_2": restore_task(tgt17, "check_only", dumps(15, "directory")["path"], check_mode=True,
                                    globals=True),
    }
    try:
        results = dict(zip(probes, run_tasks(list(probes.values()))))
    finally:
        engine("rm", "-f", "-v", stopped, check=False)
    results["stopped"]["_container"] = stopped
    return results


def test_newer_major_is_refused(cluster, dumps, probes):
    tgt = cluster["tgt15"]
    result = probes["newer"]
    assert result.get("failed"), result
    target_version = tgt.query("SHOW server_version").split()[0]
    assert "newer major version" in result["msg"]
    assert dumps(17, "custom")["server_version"] in result["msg"] and target_version in result["msg"], result["msg"]
    assert not db_exists(tgt, "from17")
    assert leftovers(tgt) == []


def test_checksum_mismatch_leaves_target_untouched(cluster, keeper, probes):
    result = probes["checksum"]
    assert result.get("failed"), result
    assert "checksum mismatch" in result["msg"] and "untouched" in result["msg"]
    assert dataset.fingerprint(cluster["tgt15"], keeper[0]) == keeper[1]
    assert leftovers(cluster["tgt15"]) == []


def test_truncated_archive_leaves_target_untouched(cluster, keeper, probes):
    result = probes["truncated"]
    assert result.get("failed"), result
    assert "pg_restore into database 'keeper' failed" in result["msg"]
    assert "end of file" in result["msg"] or "could not read" in result["msg"], result["msg"]
    assert "existing database 'keeper' is untouched" in result["msg"]
    assert dataset.fingerprint(cluster["tgt15"], keeper[0]) == keeper[1]
    assert leftovers(cluster["tgt15"]) == []


def test_non_empty_target_is_refused_or_skipped(cluster, keeper, probes):
    refused, skipped = probes["refused"], probes["skipped"]
    assert refused.get("failed"), refused
    assert "already has" in refused["msg"] and "if_exists" in refused["msg"]
    assert not skipped.get("failed") and skipped["changed"] is False and skipped["plan"] == "skip"
    assert dataset.fingerprint(cluster["tgt15"], keeper[0]) == keeper[1]


def test_restore_error_fails_with_exit_on_error(cluster, probes):
    """A grant to a role the target does not have: pg_restore's error fails the task, nothing is left."""
    tgt = cluster["tgt17"]
    result = probes["ghost"]
    assert result.get("failed"), result
    assert 'role "nlb_ghost" does not exist' in result["msg"]
    assert "globals" in result["msg"] and "was not created" in result["msg"]
    assert not db_exists(tgt, "ghost")
    assert leftovers(tgt) == []


def test_container_not_running(probes):
    result = probes["stopped"]
    assert result.get("failed"), result
    assert "is not running" in result["msg"] and result["_container"] in result["msg"]


def test_check_mode_changes_nothing_and_is_repeatable(cluster, probes):
    tgt = cluster["tgt17"]
    first, second = probes["check_new_1"], probes["check_new_2"]
    assert not first.get("failed"), first.get("msg")
    assert stable(first) == stable(second)
    assert first["changed"] is True and first["plan"] == "create"
    assert first["msg"].startswith("would restore")
    assert first["tables_restored"] == 9 and first["row_counts"] == {}
    assert any("staging database" in action for action in first["actions"])
    assert not db_exists(tgt, "check_only")
    assert leftovers(tgt) == []


def test_check_mode_replace_leaves_database(cluster, keeper, probes):
    result = probes["check_replace"]
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is True and result["plan"] == "replace"
    assert any("terminate its sessions" in action for action in result["actions"])
    assert dataset.fingerprint(cluster["tgt15"], keeper[0]) == keeper[1]


def test_shell_metacharacters_in_names(cluster, dumps, source_fp, tmp_path):
    tgt = cluster["tgt15"]
    database = "nlb $(touch /tmp/nlb-rst-pwned) ;'\"\\ a=b `id` |&"
    weird_dir = str(tmp_path / "dir $(touch /tmp/nlb-rst-pwned) 'q' ;")
    path = copy_set(dumps(15, "custom"), weird_dir)
    bad_container = dict(restore_task(tgt, "x", path)[1], container=tgt.name + ";touch /tmp/nlb-rst-pwned")
    result, refused = run_tasks([restore_task(tgt, database, path, globals=True), (RESTORE, bad_container)])
    assert not result.get("failed"), result.get("msg")
    assert result["database"] == database
    assert db_exists(tgt, database)
    assert dataset.fingerprint(tgt, _conninfo(database))["tables"] == source_fp(15)["tables"]
    assert refused.get("failed") and "not a valid container name" in refused["msg"], refused
    assert not os.path.exists("/tmp/nlb-rst-pwned")
    assert engine("exec", tgt.name, "ls", "/tmp/nlb-rst-pwned", check=False).returncode != 0


def test_password_not_in_argv_or_results(cluster, dumps):
    """The password is watched for in every process's argv (``ps``) during a staged parallel restore.

    It is unique to this test: other tests on this machine start containers
    with the harness's default password on their command lines. (Local socket
    connections are trusted by the image, so any value connects.)
    """
    tgt = cluster["tgt15"]
    password = "nlb-rst-%s-p'w" % os.urandom(6).hex()
    seen = []
    done = threading.Event()

    def watch():
        while not done.is_set():
            out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=False).stdout
            seen.append(password in out)
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        result = restore(tgt, "with_password", dumps(15, "directory")["path"], login_password=password,
                         login_user=tgt.user, jobs=2, globals=True)
    finally:
        done.set()
        watcher.join()
    assert not result.get("failed"), result.get("msg")
    assert len(seen) > 10 and not any(seen)
    assert password not in json.dumps(result)


# --------------------------------------------------------------------------
# adopting a foreign dump (an existing OMERO install's pg_dump -Fc)
# --------------------------------------------------------------------------

def test_adopt_foreign_dump(cluster, source_fp, tmp_path):
    src, adopt = cluster["src15"], cluster["adopt"]
    foreign = direct_dump(src, SOURCE_DB, tmp_path / "omero.pg_dump")
    expected = dataset.data_only(source_fp(15))
    adopt.psql("CREATE ROLE omero_app LOGIN")
    refused, in_place, adopted = run_tasks([
        # its objects belong to 'app', which this cluster does not have: refused before anything happens
        restore_task(adopt, "omero", foreign),
        # into the image's empty POSTGRES_DB: restored in place, objects owned by the connecting superuser
        restore_task(adopt, "omero", foreign, no_owner=True, no_privileges=True),
        # into a new database owned by an unprivileged application role, which also owns every object
        restore_task(adopt, "omero_app_db", foreign, owner="omero_app", no_owner=True, no_privileges=True, jobs=2),
    ])

    assert refused.get("failed"), refused
    assert "missing" in refused["msg"] and "app" in refused["msg"] and "no_owner" in refused["msg"]

    assert not in_place.get("failed"), in_place.get("msg")
    assert in_place["plan"] == "in_place" and in_place["checksum_verified"] is False
    fp = dataset.fingerprint(adopt, "omero")
    assert dataset.data_only(fp) == expected
    assert fp["grants"] == []
    assert set(dataset.owners(adopt, "omero")["objects"].values()) == {"omero"}

    assert not adopted.get("failed"), adopted.get("msg")
    assert adopted["plan"] == "create" and adopted["staged"] is True
    assert dataset.data_only(dataset.fingerprint(adopt, "omero_app_db")) == expected
    owners = dataset.owners(adopt, "omero_app_db")
    assert owners["database"] == "omero_app"
    assert set(owners["objects"].values()) == {"omero_app"}, owners
    assert owners["large_objects"] == ["omero_app"]
    assert leftovers(adopt) == []


def test_empty_database_round_trip(cluster, tmp_path):
    """A fresh database without tables (a new BIOMERO DB) dumps and restores: an empty TOC is not an error."""
    src, tgt = cluster["src17"], cluster["tgt17"]
    src.psql("CREATE DATABASE fresh_empty")
    dumped = run_module(DUMP, {"container": src.name, "database": "fresh_empty", "dest_dir": str(tmp_path)})
    assert not dumped.get("failed"), dumped.get("msg")
    result = restore(tgt, "fresh_empty_copy", dumped["path"])
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] and result["row_counts"] == {}
    assert db_exists(tgt, "fresh_empty_copy")
