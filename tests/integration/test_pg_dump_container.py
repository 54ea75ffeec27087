"""pg_dump_container against real PostgreSQL 15 and 17 containers, run through
ansible-playbook. Every dump is checked independently of the module: sha256
recomputed, modes, and the archive restored or read by the container's own
tools. Failure cases assert the message, that no file got a final name, that
no temporaries are left (host and container) and that the source is intact."""

import glob
import hashlib
import json
import os
import signal
import stat
import subprocess
import threading
import time

import pytest

from harness import ENGINE, DbContainer, engine, run_module, unique

from ansible_collections.nl_biomero.database.plugins.module_utils.dump import DumpError, verify_archive
from ansible_collections.nl_biomero.database.plugins.module_utils.dump_rules import check_directory_frames
from ansible_collections.nl_biomero.database.plugins.module_utils.engine import ContainerEngine

MODULE = "nl_biomero.database.pg_dump_container"
PASSWORD = "pw-Sekr1t'\"$x"
PREFIX = "nlbtest-dump"
EVIL_DB = 'x"; touch /tmp/pwned; "'

DATASET = r"""
CREATE SCHEMA s1;
CREATE TABLE s1.items (id serial PRIMARY KEY, name text NOT NULL, blob bytea, at timestamptz DEFAULT now());
CREATE INDEX items_name ON s1.items (name);
INSERT INTO s1.items (name, blob)
    SELECT 'naïve café ' || i || ' 北京', decode(md5(i::text), 'hex') FROM generate_series(1, 20000) i;
CREATE VIEW s1.recent AS SELECT id, name FROM s1.items WHERE id > 19990;
CREATE FUNCTION s1.double(x int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT x * 2';
CREATE TABLE public.eventlog (id bigserial PRIMARY KEY, msg text);
INSERT INTO public.eventlog (msg) SELECT 'event ' || i FROM generate_series(1, 5000) i;
CREATE ROLE reader LOGIN PASSWORD 'reader-pw';
GRANT USAGE ON SCHEMA s1 TO reader;
GRANT SELECT ON s1.items TO reader;
SELECT lo_from_bytea(0, '\x68656c6c6f'::bytea);
"""


def make_server(major):
    server = DbContainer(major, unique("%s-%d" % (PREFIX, major)), user="app", password=PASSWORD, database="appdb")
    try:
        server.start()
        server.psql(DATASET)
    except BaseException:
        server.remove()
        raise
    return server


@pytest.fixture(scope="module")
def started():
    """PostgreSQL 15 and 17 with the data set, started side by side (saves a container start)."""
    made, errors = {}, []

    def start(major):
        try:
            made[major] = make_server(major)
        except BaseException as exc:  # reported below, after both threads ended
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(major,)) for major in (15, 17)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        if errors:
            raise errors[0]
        yield made
    finally:
        for server in made.values():
            server.remove()


@pytest.fixture
def pg15(started):
    return started[15]


@pytest.fixture
def pg17(started):
    return started[17]


@pytest.fixture
def servers(pg15, pg17):
    return {15: pg15, 17: pg17}


def dump_args(server, **extra):
    args = {"container": server.name, "database": server.database, "login_password": PASSWORD}
    args.update(extra)
    return args


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def dir_sha256(path):
    """The directory checksum scheme the manifest documents, recomputed here."""
    lines = []
    for root, _dirs, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            lines.append("%s  %s\n" % (os.path.relpath(full, path), sha256(full)))
    return hashlib.sha256("".join(sorted(lines)).encode()).hexdigest()


def mode_of(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def staged_leftovers(server):
    return engine("exec", server.name, "sh", "-c", "ls -d /tmp/nlb-dump.* 2>/dev/null || true").stdout.split()


def assert_nothing_written(directory):
    assert os.listdir(str(directory)) == [], "files left behind: %s" % os.listdir(str(directory))


def assert_ok(result):
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is True


def check_manifest(result, server, fmt, mode=0o600):
    path = result["path"]
    with open(result["manifest"]) as handle:
        manifest = json.load(handle)
    actual = dir_sha256(path) if fmt == "directory" else sha256(path)
    size = sum(os.path.getsize(os.path.join(r, f)) for r, _d, fs in os.walk(path) for f in fs) \
        if fmt == "directory" else os.path.getsize(path)
    assert manifest["sha256"] == result["sha256"] == actual
    assert manifest["bytes"] == result["bytes"] == size
    assert manifest["format"] == result["format"] == fmt
    assert manifest["database"] == server.database
    assert manifest["container"] == server.name
    assert manifest["image"] == server.image
    assert manifest["server_version"] == result["server_version"]
    assert manifest["server_version"].startswith("%d." % server.major)
    assert manifest["pg_dump_version"] == result["pg_dump_version"]
    assert manifest["compression"] == result["compression"]
    assert manifest["verified"] is True
    assert manifest["verification_level"] == result["verification_level"] == "toc"
    assert manifest["file"] == os.path.basename(path)
    assert manifest["start_utc"].endswith("Z") and manifest["end_utc"] >= manifest["start_utc"]
    assert manifest["duration_s"] == result["duration_s"] > 0
    assert mode_of(result["manifest"]) == mode
    return manifest


def restored_count(server, dbname):
    return server.query("SELECT count(*) FROM s1.items", database=dbname)


# --------------------------------------------------------------------------
# formats on 15 and 17
# --------------------------------------------------------------------------

@pytest.mark.parametrize("major", [15, 17])
def test_custom_with_globals_restores(servers, tmp_path, major):
    server = servers[major]
    result = run_module(MODULE, dump_args(server, dest_dir=str(tmp_path), globals=True))
    assert_ok(result)
    assert result["compression"] == ("zstd" if major >= 16 else "gzip")
    assert os.path.basename(result["path"]).startswith("appdb.") and result["path"].endswith("Z.dump")
    manifest = check_manifest(result, server, "custom")
    assert mode_of(result["path"]) == 0o600
    # globals sidecar: placed, listed in the manifest with its checksum, holds the role
    assert result["globals_path"] == result["path"] + ".globals.sql"
    assert manifest["globals_file"] == os.path.basename(result["globals_path"])
    assert manifest["globals_sha256"] == sha256(result["globals_path"]) == result["globals_sha256"]
    assert mode_of(result["globals_path"]) == 0o600
    with open(result["globals_path"]) as handle:
        assert "CREATE ROLE reader" in handle.read()
    assert sorted(os.listdir(str(tmp_path))) == sorted(
        os.path.basename(p) for p in (result["path"], result["manifest"], result["globals_path"]))
    # the archive restores (independent of the module)
    server.psql("CREATE DATABASE restored_custom", database="postgres")
    with open(result["path"], "rb") as handle:
        proc = subprocess.run([ENGINE, "exec", "-i", server.name, "pg_restore", "--exit-on-error", "-U", "app",
                               "-d", "restored_custom"], stdin=handle, capture_output=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert restored_count(server, "restored_custom") == "20000"
    server.psql("DROP DATABASE restored_custom", database="postgres")


@pytest.mark.parametrize("major,compress,expected,suffix", [
    (15, "auto", "gzip", ".dat.gz"),
    (17, "zstd:3", "zstd:3", ".dat.zst"),
])
def test_directory_parallel(servers, tmp_path, major, compress, expected, suffix):
    server = servers[major]
    dest = tmp_path / "appdb.dir"
    result = run_module(MODULE, dump_args(server, format="directory", jobs=2, dest=str(dest), mode="0640",
                                          compress=compress))
    assert_ok(result)
    assert result["path"] == str(dest) and result["jobs"] == 2
    assert result["compression"] == expected
    check_manifest(result, server, "directory", mode=0o640)
    names = os.listdir(str(dest))
    assert "toc.dat" in names and any(name.startswith("blob") for name in names), names
    assert any(name.endswith(suffix) for name in names), names
    assert mode_of(str(dest)) == 0o750
    assert all(mode_of(str(dest / name)) == 0o640 for name in names)
    assert staged_leftovers(server) == []
    # restore it with the container's pg_restore, in parallel
    engine("cp", str(dest), "%s:/tmp/restore-check" % server.name)
    try:
        server.psql("CREATE DATABASE restored_dir", database="postgres")
        engine("exec", server.name, "pg_restore", "--exit-on-error", "-j", "2", "-U", "app", "-d", "restored_dir",
               "/tmp/restore-check")
        assert restored_count(server, "restored_dir") == "20000"
    finally:
        engine("exec", server.name, "rm", "-rf", "/tmp/restore-check", check=False)
        server.psql("DROP DATABASE IF EXISTS restored_dir", database="postgres", check=False)


@pytest.mark.parametrize("major", [15, 17])
def test_tar(servers, tmp_path, major):
    server = servers[major]
    result = run_module(MODULE, dump_args(server, format="tar", dest=str(tmp_path / "appdb.tar")))
    assert_ok(result)
    assert result["compression"] == "none"
    check_manifest(result, server, "tar")
    with open(result["path"], "rb") as handle:
        proc = subprocess.run([ENGINE, "exec", "-i", server.name, "pg_restore", "--list"], stdin=handle,
                              capture_output=True, text=True, timeout=60, check=False)
    assert "TABLE DATA s1 items" in proc.stdout


@pytest.mark.parametrize("major", [15, 17])
def test_plain_with_excluded_table_data(servers, tmp_path, major):
    server = servers[major]
    result = run_module(MODULE, dump_args(server, format="plain", dest_dir=str(tmp_path),
                                          exclude_table_data=["public.eventlog"]))
    assert_ok(result)
    assert result["path"].endswith(".sql") and result["compression"] == "none"
    manifest = check_manifest(result, server, "plain")
    assert manifest["exclude_table_data"] == ["public.eventlog"]
    with open(result["path"], encoding="utf-8") as handle:
        text = handle.read()
    assert "CREATE TABLE public.eventlog" in text
    assert "COPY public.eventlog" not in text
    assert "COPY s1.items" in text and "naïve café 1 北京" in text
    assert "-- PostgreSQL database dump complete" in text


def test_zstd_refused_on_15_even_in_check_mode(pg15, tmp_path):
    result = run_module(MODULE, dump_args(pg15, compress="zstd", dest=str(tmp_path / "z.dump")), check_mode=True)
    assert result["failed"]
    assert "compression 'zstd' is not supported by pg_dump 15; accepted: gzip, none" in result["msg"]
    assert_nothing_written(tmp_path)


# --------------------------------------------------------------------------
# check mode, force
# --------------------------------------------------------------------------

def test_check_mode_writes_nothing(pg17, tmp_path):
    result = run_module(MODULE, dump_args(pg17, dest_dir=str(tmp_path), format="directory", globals=True),
                        check_mode=True)
    assert_ok(result)
    assert result["path"].startswith(str(tmp_path) + "/appdb.") and result["path"].endswith(".dir")
    assert (result["format"], result["compression"]) == ("directory", "zstd")
    assert result["jobs"] >= 1 and result["globals_path"] == result["path"] + ".globals.sql"
    assert "sha256" not in result
    assert_nothing_written(tmp_path)
    assert staged_leftovers(pg17) == []


def test_existing_dest_needs_force(pg15, tmp_path):
    dest = tmp_path / "appdb.dump"
    dest.write_bytes(b"precious")
    result = run_module(MODULE, dump_args(pg15, dest=str(dest)))
    assert result["failed"]
    assert "destination %s exists (use force to overwrite)" % dest in result["msg"]
    assert dest.read_bytes() == b"precious" and os.listdir(str(tmp_path)) == ["appdb.dump"]
    result = run_module(MODULE, dump_args(pg15, dest=str(dest), force=True))
    assert_ok(result)
    check_manifest(result, pg15, "custom")
    assert dest.read_bytes()[:5] == b"PGDMP"


# --------------------------------------------------------------------------
# failures
# --------------------------------------------------------------------------

def test_container_stopped(tmp_path):
    name = unique(PREFIX + "-stopped")
    engine("run", "--name", name, "--entrypoint", "true", DbContainer(15, name).image)
    try:
        result = run_module(MODULE, {"container": name, "database": "appdb", "dest_dir": str(tmp_path)})
        assert result["failed"]
        assert "container '%s' is not running (status: exited)" % name in result["msg"]
        assert_nothing_written(tmp_path)
    finally:
        engine("rm", "-f", "-v", name, check=False)


def test_unknown_database(pg17, tmp_path):
    result = run_module(MODULE, dump_args(pg17, database="nosuchdb", dest_dir=str(tmp_path)))
    assert result["failed"]
    assert "database 'nosuchdb' does not exist in container '%s'" % pg17.name in result["msg"]
    assert "appdb" in result["msg"]  # the databases that do exist are named
    assert_nothing_written(tmp_path)


def test_empty_database_dumps_and_verifies(pg17, tmp_path):
    """A fresh database without tables (a new BIOMERO DB) is a valid backup, not an error."""
    pg17.psql("CREATE DATABASE emptydb")
    result = run_module(MODULE, dump_args(pg17, database="emptydb", dest_dir=str(tmp_path)))
    assert_ok(result)
    assert sha256(result["path"]) == result["sha256"]
    with open(result["manifest"]) as handle:
        assert json.load(handle)["database"] == "emptydb"


def test_shell_metacharacters_in_names(pg17, tmp_path):
    """Names reach the tools as argv elements and environment values: no shell ever sees them."""
    pg17.psql('CREATE DATABASE "x""; touch /tmp/pwned; """', database="postgres")
    try:
        pg17.psql("CREATE TABLE evil_t AS SELECT 42 AS answer", database=EVIL_DB)
        result = run_module(MODULE, dump_args(pg17, database=EVIL_DB, dest_dir=str(tmp_path), format="plain"))
        assert_ok(result)
        assert os.path.basename(result["path"]).startswith("x___touch__tmp_pwned___.")
        with open(result["path"]) as handle:
            assert "CREATE TABLE public.evil_t" in handle.read()
        with open(result["manifest"]) as handle:
            assert json.load(handle)["database"] == EVIL_DB
        evil_container = pg17.name + "; touch /tmp/pwned"
        result = run_module(MODULE, dump_args(pg17, container=evil_container, dest_dir=str(tmp_path)))
        assert result["failed"] and "container '%s' does not exist" % evil_container in result["msg"]
        assert not os.path.exists("/tmp/pwned")
        assert engine("exec", pg17.name, "test", "-e", "/tmp/pwned", check=False).returncode != 0
    finally:
        pg17.psql('DROP DATABASE IF EXISTS "x""; touch /tmp/pwned; """', database="postgres", check=False)


def test_directory_failure_cleans_up_inside_the_container(pg15, tmp_path):
    """pg_dump -Fd fails half-way (no read permission): no host files, staged directory removed."""
    pg15.psql("CREATE ROLE limited LOGIN; GRANT CONNECT ON DATABASE appdb TO limited; GRANT USAGE ON SCHEMA s1 TO limited;")
    try:
        result = run_module(MODULE, dump_args(pg15, login_user="limited", format="directory",
                                              dest_dir=str(tmp_path)))
        assert result["failed"]
        assert "pg_dump of database 'appdb'" in result["msg"] and "permission denied" in result["msg"]
        assert_nothing_written(tmp_path)
        assert staged_leftovers(pg15) == []
    finally:
        pg15.psql("DROP OWNED BY limited; DROP ROLE limited;", check=False)


def test_globals_needs_superuser(pg15, tmp_path):
    pg15.psql("CREATE ROLE limited2 LOGIN; GRANT CONNECT ON DATABASE appdb TO limited2;")
    try:
        result = run_module(MODULE, dump_args(pg15, login_user="limited2", globals=True, dest_dir=str(tmp_path)))
        assert result["failed"] and "needs a superuser" in result["msg"] and "'limited2'" in result["msg"]
        assert_nothing_written(tmp_path)
    finally:
        pg15.psql("DROP OWNED BY limited2; DROP ROLE limited2;", check=False)


class PsSampler(threading.Thread):
    """Samples the host's `ps -eo args` (host + container processes) until stopped."""

    def __init__(self):
        super().__init__(daemon=True)
        self.samples = []
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            self.samples.append(subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=False).stdout)
            time.sleep(0.02)

    def stop(self):
        self.halt.set()
        self.join()
        return "\n".join(self.samples)


@pytest.fixture
def password_server(pg_factory):
    """A server whose local socket demands a password (the image trusts it by default):
    pg_hba 'local ... trust' rewritten to scram-sha-256 and reloaded."""
    server = pg_factory(major=17, prefix=PREFIX + "-auth", user="app", password=PASSWORD, database="appdb")
    server.psql("CREATE TABLE t AS SELECT generate_series(1, 50000) AS n, md5(random()::text) AS m")
    engine("exec", server.name, "sh", "-c",
           'sed -i "s/^local\\(.*\\)trust$/local\\1scram-sha-256/" "$PGDATA/pg_hba.conf"')
    server.psql("SELECT pg_reload_conf()")
    time.sleep(0.5)
    assert engine("exec", server.name, "psql", "-X", "-U", "app", "-d", "appdb", "-c", "SELECT 1",
                  check=False).returncode != 0, "local connections should need a password now"
    return server


def test_password_wrong_right_and_never_visible(password_server, tmp_path):
    server = password_server
    result = run_module(MODULE, dump_args(server, login_password="wrong-password", dest_dir=str(tmp_path)))
    assert result["failed"]
    assert "password authentication failed for user \"app\"" in result["msg"]
    assert_nothing_written(tmp_path)

    sampler = PsSampler()
    sampler.start()
    try:
        result = run_module(MODULE, dump_args(server, dest_dir=str(tmp_path), globals=True, format="directory"))
    finally:
        seen = sampler.stop()
    assert_ok(result)
    assert "pg_dump" in seen and server.name in seen, "ps never saw the dump running"
    assert PASSWORD not in seen
    assert PASSWORD not in json.dumps(result)
    for name in os.listdir(str(tmp_path)):
        if name.endswith(".json"):
            with open(os.path.join(str(tmp_path), name)) as handle:
                assert PASSWORD not in handle.read()


def test_dump_killed_midway(pg17, tmp_path):
    """SIGKILL to pg_dump inside the container while it streams: no final file, no temporaries, source intact."""
    pg17.psql("CREATE TABLE IF NOT EXISTS big AS SELECT i, md5(i::text) a, md5((i * 7)::text) b "
              "FROM generate_series(1, 600000) i")
    outcome = {}
    runner = threading.Thread(target=lambda: outcome.update(
        run_module(MODULE, dump_args(pg17, dest_dir=str(tmp_path), compress="gzip:9"))))
    sampler = PsSampler()
    sampler.start()
    runner.start()
    killed = None
    try:
        deadline = time.time() + 120
        while time.time() < deadline and killed is None:
            temps = glob.glob(os.path.join(str(tmp_path), ".*.tmp-*"))
            if temps and os.path.getsize(temps[0]) > 512 * 1024:
                top = engine("top", pg17.name, "-eo", "pid,args").stdout.splitlines()[1:]
                pids = [int(line.split(None, 1)[0]) for line in top if line.split(None, 1)[1].startswith("pg_dump ")]
                assert pids, top
                os.kill(pids[0], signal.SIGKILL)
                killed = pids[0]
            time.sleep(0.05)
        assert killed, "the dump never got under way: %s" % os.listdir(str(tmp_path))
    finally:
        runner.join(300)
        seen = sampler.stop()
    result = outcome
    assert result["failed"]
    assert "pg_dump of database 'appdb' in container '%s' failed" % pg17.name in result["msg"]
    assert "137" in result["msg"] or "SIGKILL" in result["msg"]
    assert_nothing_written(tmp_path)
    assert PASSWORD not in seen and "pg_dump --format=c" in seen
    assert pg17.query("SELECT count(*) FROM big") == "600000"
    assert pg17.query("SELECT count(*) FROM s1.items") == "20000"


# --------------------------------------------------------------------------
# verify: toc | full
# --------------------------------------------------------------------------

@pytest.mark.parametrize("major", [15, 17])
def test_full_verification_reads_good_dumps(servers, tmp_path, major):
    server = servers[major]
    cases = [("custom", "dump", {}), ("directory", "dir", {"jobs": 2}), ("tar", "tar", {}),
             ("plain", "sql.gz", {"compress": "gzip"})]
    for fmt, ext, extra in cases:
        result = run_module(MODULE, dump_args(server, dest=str(tmp_path / ("full." + ext)), format=fmt,
                                              verify="full", **extra))
        assert_ok(result)
        with open(result["manifest"]) as handle:
            manifest = json.load(handle)
        assert manifest["verified"] is True and manifest["verification_level"] == "full", (fmt, manifest)
        assert result["verification_level"] == "full" and result["verification"] == manifest["verification"]
        if fmt == "plain":
            assert "the whole gzip stream read" in manifest["verification"]
        else:
            assert "full read to /dev/null" in manifest["verification"], manifest["verification"]
            assert manifest["toc_entries"] > 0
    assert staged_leftovers(server) == []


def test_verify_keeps_its_boolean_values(pg17, tmp_path):
    old_true = run_module(MODULE, dump_args(pg17, dest=str(tmp_path / "t.dump"), verify=True))
    old_false = run_module(MODULE, dump_args(pg17, dest=str(tmp_path / "f.dump"), verify=False))
    bad = run_module(MODULE, dump_args(pg17, dest=str(tmp_path / "b.dump"), verify="thorough"))
    assert_ok(old_true)
    assert_ok(old_false)
    assert old_true["verification_level"] == "toc" and old_true["verified"] is True
    assert "full read" not in old_true["verification"]
    assert old_false["verification_level"] == "none" and old_false["verified"] is False
    with open(old_false["manifest"]) as handle:
        assert json.load(handle)["verification_level"] == "none"
    assert bad.get("failed") and "verify 'thorough' is not accepted" in bad["msg"], bad
    assert not os.path.exists(str(tmp_path / "b.dump"))


@pytest.mark.parametrize("major", [15, 17])
def test_an_archive_cut_to_60_percent_passes_toc_but_not_full(servers, tmp_path, major):
    """The table of contents sits at the start: only the full read notices the missing data."""
    server = servers[major]
    result = run_module(MODULE, dump_args(server, dest=str(tmp_path / "good.dump")))
    assert_ok(result)
    with open(result["path"], "rb") as handle:
        data = handle.read()
    cut = tmp_path / "cut.dump"
    cut.write_bytes(data[:int(len(data) * 0.6)])
    engine_cli = ContainerEngine(ENGINE)
    assert verify_archive(engine_cli, server.name, "toc", host_file=str(cut)) == result["toc_entries"] > 0
    with pytest.raises(DumpError, match="cannot read the whole dump") as failed:
        verify_archive(engine_cli, server.name, "full", host_file=str(cut))
    assert "end of file" in str(failed.value) or "could not read" in str(failed.value), failed.value
    assert verify_archive(engine_cli, server.name, "full", host_file=result["path"]) == result["toc_entries"]


def test_a_cut_data_file_of_a_directory_dump_fails_full(pg17, tmp_path):
    """pg_restore reads a zstd data file cut short to its end with exit status 0 (16, 17): the frames are checked too."""
    result = run_module(MODULE, dump_args(pg17, dest=str(tmp_path / "d.dir"), format="directory", jobs=2,
                                          verify="full"))
    assert_ok(result)
    assert "every frame of the" in result["verification"] and "zstd/lz4 data files" in result["verification"]
    files = [os.path.join(result["path"], name) for name in os.listdir(result["path"]) if name.endswith(".zst")]
    assert files, os.listdir(result["path"])
    assert check_directory_frames(result["path"]) == len(files)
    biggest = max(files, key=os.path.getsize)
    with open(biggest, "r+b") as handle:
        handle.truncate(int(os.path.getsize(biggest) * 0.6))
    with pytest.raises(DumpError, match="cut short"):
        check_directory_frames(result["path"])
