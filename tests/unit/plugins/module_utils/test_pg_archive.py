import gzip
import io
import struct
import tarfile

import pytest

from ansible_collections.nl_biomero.database.plugins.module_utils import pg_archive
from ansible_collections.nl_biomero.database.plugins.module_utils.pg_archive import RestoreError
from ansible_collections.nl_biomero.database.plugins.module_utils.pg_tools import major_version

# --------------------------------------------------------------------------
# archive headers
# --------------------------------------------------------------------------


def _int(value, int_size=4):
    return bytes([1 if value < 0 else 0]) + abs(value).to_bytes(int_size, "little")


def _str(text):
    if text is None:
        return _int(-1)
    data = text.encode("utf-8")
    return _int(len(data)) + data


def make_header(version=(1, 16, 0), fmt=1, compression=3, dbname="omero",
                server="17.6 (Debian 17.6-1)", dump="17.6 (Debian 17.6-1)"):
    """Bytes as pg_backup_archiver.c WriteHead writes them."""
    out = b"PGDMP" + bytes(version) + bytes([4, 8, fmt])
    if version >= (1, 15, 0):
        out += bytes([compression])
    else:
        out += _int(compression)
    for value in (50, 4, 3, 26, 10, 126, 0):  # 2026-11-26 03:04:50
        out += _int(value)
    return out + _str(dbname) + _str(server) + _str(dump) + b"rest of the TOC"


def test_header_of_a_17_custom_archive():
    info = pg_archive.parse_archive_header(make_header())
    assert info == {
        "archive_version": "1.16-0", "format": "custom", "compression": "zstd", "created": "2026-11-26 03:04:50",
        "dbname": "omero", "server_version": "17.6 (Debian 17.6-1)", "dump_version": "17.6 (Debian 17.6-1)",
    }


@pytest.mark.parametrize("level,expected", [(-1, "gzip"), (0, "none"), (6, "gzip")])
def test_header_of_a_15_archive_has_a_compression_level(level, expected):
    header = make_header((1, 14, 0), fmt=3, compression=level, server="15.14", dump="15.14")
    info = pg_archive.parse_archive_header(header)
    assert info["archive_version"] == "1.14-0"
    assert info["format"] == "tar"
    assert info["compression"] == expected
    assert info["server_version"] == "15.14"


def test_header_with_non_ascii_database_name():
    assert pg_archive.parse_archive_header(make_header(dbname="bäse ✓"))["dbname"] == "bäse ✓"


@pytest.mark.parametrize("data,message", [
    (b"hello", "no PGDMP signature"),
    (make_header()[:40], "header is truncated"),
    (b"PGDMP\x01", "header is truncated"),
])
def test_bad_headers(data, message):
    with pytest.raises(RestoreError, match=message):
        pg_archive.parse_archive_header(data)


@pytest.mark.parametrize("text,major,short", [
    ("17.6 (Debian 17.6-1.pgdg13+1)", 17, "17.6"),
    ("15.14", 15, "15.14"),
    ("9.6.24", 9, "9.6.24"),
    (None, None, None),
    ("", None, ""),
])
def test_versions(text, major, short):
    assert major_version(text) == major
    assert pg_archive.short_version(text) == short


# --------------------------------------------------------------------------
# inspecting files and directories
# --------------------------------------------------------------------------

def test_inspect_custom(tmp_path):
    path = tmp_path / "omero.dump"
    path.write_bytes(make_header())
    info = pg_archive.inspect_archive(str(path))
    assert info["format"] == "custom" and info["gzip"] is False and info["dump_version"].startswith("17.6")


@pytest.mark.parametrize("code", [3, 5])
def test_inspect_directory(tmp_path, code):
    """pg_dump writes the tar code into a directory archive's toc.dat; the directory code is accepted too."""
    (tmp_path / "toc.dat").write_bytes(make_header(fmt=code))
    (tmp_path / "3001.dat.zst").write_bytes(b"data")
    assert pg_archive.inspect_archive(str(tmp_path))["format"] == "directory"


def test_inspect_directory_without_toc(tmp_path):
    with pytest.raises(RestoreError, match="without toc.dat"):
        pg_archive.inspect_archive(str(tmp_path))


def _tar(path, members):
    with tarfile.open(str(path), "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_inspect_tar(tmp_path):
    path = tmp_path / "omero.tar"
    _tar(path, [("toc.dat", make_header(fmt=3)), ("3001.dat", b"1\t2\n\\.\n")])
    assert pg_archive.inspect_archive(str(path))["format"] == "tar"


def test_inspect_tar_that_is_not_a_dump(tmp_path):
    path = tmp_path / "photos.tar"
    _tar(path, [("cat.jpg", b"\xff\xd8")])
    with pytest.raises(RestoreError, match="not a pg_dump tar archive"):
        pg_archive.inspect_archive(str(path))


PLAIN = """--
-- PostgreSQL database dump
--

\\restrict abc

-- Dumped from database version 15.14 (Debian 15.14-0+deb12u1)
-- Dumped by pg_dump version 17.6 (Debian 17.6-1)

SET statement_timeout = 0;
"""


def test_inspect_plain(tmp_path):
    path = tmp_path / "omero.sql"
    path.write_text(PLAIN)
    info = pg_archive.inspect_archive(str(path))
    assert (info["format"], info["gzip"], info["server_version"], info["dump_version"]) == (
        "plain", False, "15.14 (Debian 15.14-0+deb12u1)", "17.6 (Debian 17.6-1)")


def test_inspect_plain_gzip(tmp_path):
    path = tmp_path / "omero.sql.gz"
    path.write_bytes(gzip.compress(PLAIN.encode()))
    info = pg_archive.inspect_archive(str(path))
    assert info["format"] == "plain" and info["gzip"] is True and info["compression"] == "gzip"
    assert major_version(info["dump_version"]) == 17


def test_inspect_plain_without_header(tmp_path):
    path = tmp_path / "hand.sql"
    path.write_text("CREATE TABLE t (id int);\n")
    info = pg_archive.inspect_archive(str(path))
    assert info["format"] == "plain" and info["server_version"] is None


@pytest.mark.parametrize("name,data,message", [
    ("custom.dump.gz", gzip.compress(make_header()), "gzip-compressed pg_dump archive"),
    ("x.sql.zst", b"\x28\xb5\x2f\xfd" + b"\0" * 20, "compressed with zstd"),
    ("x.sql.lz4", b"\x04\x22\x4d\x18" + b"\0" * 20, "compressed with lz4"),
    ("image.png", b"\x89PNG\r\n\x1a\n\0\0\0", "neither a pg_dump archive"),
    ("empty.dump", b"", "is empty"),
    ("broken.gz", b"\x1f\x8b\x08\x00garbage", "cannot be read"),
])
def test_inspect_rejects(tmp_path, name, data, message):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(RestoreError, match=message):
        pg_archive.inspect_archive(str(path))


def test_inspect_missing(tmp_path):
    with pytest.raises(RestoreError, match="does not exist"):
        pg_archive.inspect_archive(str(tmp_path / "nope.dump"))


# --------------------------------------------------------------------------
# version rule
# --------------------------------------------------------------------------

def _info(server, dump):
    return {"server_version": server, "dump_version": dump}


@pytest.mark.parametrize("info,target,tool_version", [
    (_info("15.14", "15.14"), "15.14", "15.14"),
    (_info("15.14", "15.14"), "17.6", "17.6"),
    (_info("17.6", "17.6"), "17.2", "17.2"),
    (_info("11.22", "11.22"), "17.6", "17.6"),
    (_info(None, None), "15.14", "15.14"),
])
def test_versions_accepted(info, target, tool_version):
    pg_archive.check_versions(info, "db", target, "pg_restore", tool_version)


def test_newer_dump_is_refused_naming_both_versions():
    with pytest.raises(RestoreError) as exc:
        pg_archive.check_versions(_info("17.6 (Debian)", "17.6 (Debian)"), "omero-db", "15.14 (Debian)",
                                  "pg_restore", "15.14 (Debian)")
    text = str(exc.value)
    assert "PostgreSQL 17.6" in text and "pg_dump 17.6" in text and "PostgreSQL 15.14" in text
    assert "pg_restore 15.14" in text and "'omero-db'" in text and "PostgreSQL 17 or newer" in text


def test_dump_by_newer_pg_dump_of_an_older_server_is_refused():
    """pg_dump 17 writes archive version 1.16, which pg_restore 15 cannot read."""
    with pytest.raises(RestoreError, match="pg_dump 17.6"):
        pg_archive.check_versions(_info("15.14", "17.6"), "db", "15.14", "pg_restore", "15.14")


# --------------------------------------------------------------------------
# table of contents
# --------------------------------------------------------------------------

TOC = """;
; Archive created at 2026-11-26 02:44:02 UTC
;     dbname: appdb
;     TOC Entries: 13
;     Compression: gzip
;     Dump Version: 1.16-0
;     Format: CUSTOM
;     Dumped from database version: 17.12 (Debian 17.12-0+deb13u1)
;     Dumped by pg_dump version: 17.12 (Debian 17.12-0+deb13u1)
;
;
; Selected TOC Entries:
;
3432; 0 0 ENCODING - ENCODING <SP>
6; 2615 16386 SCHEMA - core app
217; 1259 16385 TABLE core image app
218; 1259 16392 TABLE public t my role
3432; 0 16385 TABLE DATA core image app
3433; 0 16392 TABLE DATA public t my role
3434; 0 16399 TABLE DATA public u omero
3500; 0 0 BLOB METADATA - 16673..16674 app
3501; 0 0 BLOBS - BLOBS <SP>
3286; 2606 16405 CONSTRAINT public w w_pkey app
""".replace("<SP>", " ")  # entries without an owner end in a space


def test_parse_toc_list():
    toc = pg_archive.parse_toc_list(io.StringIO(TOC), known_roles=["app", "my role"])
    assert toc["entries"] == 10
    assert toc["table_data"] == 3
    assert toc["large_objects"] == 1
    assert toc["header"]["Dump Version"] == "1.16-0"
    assert toc["header"]["Dumped by pg_dump version"].startswith("17.12")
    assert toc["missing_owners"] == ["omero"]
    assert toc["database_entries"] == []


def test_parse_toc_list_keeps_the_database_entries_apart():
    """``--create --list`` adds the database's own entries: listed apart, not counted, their owner not checked."""
    database = ("3419; 1262 16386 DATABASE - appdb dbowner\n3420; 0 0 COMMENT - DATABASE appdb dbowner\n"
                "3421; 0 0 ACL - DATABASE appdb dbowner\n3422; 0 0 DATABASE PROPERTIES - appdb dbowner\n")
    toc = pg_archive.parse_toc_list(io.StringIO(TOC + database), known_roles=["app", "my role"])
    assert toc["entries"] == 10 and toc["missing_owners"] == ["omero"]
    assert toc["database_entries"] == database.splitlines()


def test_parse_toc_list_reports_every_unknown_owner():
    assert pg_archive.parse_toc_list(TOC.splitlines(), known_roles=["app"])["missing_owners"] == ["omero", "role"]


# --------------------------------------------------------------------------
# command lines
# --------------------------------------------------------------------------

@pytest.mark.parametrize("name,expected", [
    ("omero", "dbname='omero'"),
    ("a b=c", "dbname='a b=c'"),
    ("it's", "dbname='it\\'s'"),
    ("back\\slash", "dbname='back\\\\slash'"),
    ("$(rm -rf /);`x`", "dbname='$(rm -rf /);`x`'"),
])
def test_conninfo_dbname(name, expected):
    assert pg_archive.conninfo_dbname(name) == expected


def test_pg_restore_argv_streamed():
    assert pg_archive.pg_restore_argv("omero") == [
        "pg_restore", "--exit-on-error", "--no-password", "--dbname=dbname='omero'"]


def test_pg_restore_argv_everything():
    argv = pg_archive.pg_restore_argv("omero", path="/tmp/nlb-pg_archive.x/archive", jobs=4, no_owner=True,
                                      no_privileges=True, clean=True, role="omero_app")
    assert argv == ["pg_restore", "--exit-on-error", "--no-password", "--dbname=dbname='omero'", "--jobs=4",
                    "--no-owner", "--no-privileges", "--clean", "--if-exists", "--role=omero_app",
                    "/tmp/nlb-pg_archive.x/archive"]


def test_pg_restore_argv_single_transaction():
    assert "--single-transaction" in pg_archive.pg_restore_argv("x", single_transaction=True)
    assert not any(arg.startswith("--jobs") for arg in pg_archive.pg_restore_argv("x", jobs=1))


def test_psql_script_argv():
    assert pg_archive.psql_script_argv("db", single_transaction=True) == [
        "psql", "-X", "-q", "--no-password", "-v", "ON_ERROR_STOP=1", "--dbname=dbname='db'",
        "--single-transaction", "-f", "-"]


@pytest.mark.parametrize("mem,expected", [
    (None, "-c synchronous_commit=off"),
    ("512MB", "-c synchronous_commit=off -c maintenance_work_mem=512MB"),
    ("1 GB", "-c synchronous_commit=off -c maintenance_work_mem=1GB"),
    ("65536", "-c synchronous_commit=off -c maintenance_work_mem=65536"),
])
def test_session_options(mem, expected):
    assert pg_archive.session_options(mem) == expected


@pytest.mark.parametrize("mem", ["lots", "1GB -c fsync=off", "-1"])
def test_session_options_rejects(mem):
    with pytest.raises(RestoreError, match="maintenance_work_mem"):
        pg_archive.session_options(mem)


@pytest.mark.parametrize("text,ids", [
    ("uid=0(root) gid=0(root) groups=0(root)\n", (0, 0)),
    ("uid=999(postgres) gid=999(postgres) groups=999(postgres),101(ssl-cert)", (999, 999)),
])
def test_parse_id_output(text, ids):
    assert pg_archive.parse_id_output(text) == ids


def test_parse_id_output_garbage():
    with pytest.raises(RestoreError, match="uid/gid"):
        pg_archive.parse_id_output("id: not found")


# --------------------------------------------------------------------------
# options and plan
# --------------------------------------------------------------------------

BASE = {"container": "omero-db", "database": "omero", "if_exists": "fail", "count_rows": "exact",
        "staging_dir": "/tmp"}


@pytest.mark.parametrize("changes,fmt,message", [
    ({"jobs": 0}, "custom", "jobs must be 1 or more"),
    ({"jobs": 2, "single_transaction": True}, "custom", "single_transaction cannot be combined"),
    ({"jobs": 2}, "tar", "custom or directory archive"),
    ({"jobs": 2}, "plain", "custom or directory archive"),
    ({"no_owner": True}, "plain", "no_owner need an archive format"),
    ({"no_owner": True, "no_privileges": True}, "plain", "no_owner and no_privileges"),
    ({"if_exists": "clean"}, "plain", "if_exists: replace"),
    ({"if_exists": "merge"}, "custom", "if_exists must be one of"),
    ({"container": "--privileged"}, "custom", "not a valid container name"),
    ({"container": "db;rm -rf /"}, "custom", "not a valid container name"),
    ({"container": ""}, "custom", "not a valid container name"),
    ({"database": ""}, "custom", "database is required"),
    ({"database": "a\0b"}, "custom", "NUL"),
    ({"staging_dir": "tmp"}, "directory", "absolute path"),
    ({"count_rows": "guess"}, "custom", "count_rows must be one of"),
])
def test_validate_rejects(changes, fmt, message):
    with pytest.raises(RestoreError, match=message):
        pg_archive.validate(dict(BASE, **changes), fmt)


def test_validate_accepts_and_normalizes():
    params = pg_archive.validate(dict(BASE, jobs="4", staging_dir=None, database="x $(id)"), "directory")
    assert params["jobs"] == 4 and params["staging_dir"] == "/tmp"
    assert pg_archive.validate(dict(BASE, single_transaction=True, jobs=1), "tar")["jobs"] == 1


EMPTY = {"relations": 0, "large_objects": 0}
FULL = {"relations": 12, "large_objects": 0}
ONLY_LO = {"relations": 0, "large_objects": 3}


@pytest.mark.parametrize("if_exists,exists,objects,plan", [
    ("fail", False, EMPTY, "create"),
    ("replace", False, EMPTY, "create"),
    ("clean", False, EMPTY, "create"),
    ("skip", False, EMPTY, "create"),
    ("fail", True, EMPTY, "in_place"),
    ("skip", True, EMPTY, "in_place"),
    ("fail", True, FULL, None),
    ("fail", True, ONLY_LO, None),
    ("skip", True, FULL, "skip"),
    ("replace", True, FULL, "replace"),
    ("replace", True, EMPTY, "replace"),
    ("clean", True, FULL, "clean"),
])
def test_decide(if_exists, exists, objects, plan):
    assert pg_archive.decide(if_exists, exists, objects) == plan


def test_describe_objects():
    assert pg_archive.describe_objects({"relations": 1, "large_objects": 0}) == "1 relation"
    assert pg_archive.describe_objects({"relations": 12, "large_objects": 2}) == "12 relations and 2 large objects"


def test_stderr_hints():
    assert "globals: true" in pg_archive.stderr_hint('pg_restore: error: ... ERROR:  role "nlb_ghost" does not exist')
    assert "newer pg_dump" in pg_archive.stderr_hint("pg_restore: error: unsupported version (1.16) in file header")
    assert pg_archive.stderr_hint("something else") == ""


def test_struct_sanity():
    # the test helper writes little-endian ints like pg_dump does on any platform
    assert _int(1) == b"\x00" + struct.pack("<I", 1)


def test_parse_toc_list_notes_the_archive_line():
    assert pg_archive.parse_toc_list(io.StringIO(TOC))["created"] == "2026-11-26 02:44:02 UTC"
    assert pg_archive.parse_toc_list(["pg_restore: error: nothing\n"])["created"] is None


def test_read_toc_reads_a_binary_stream():
    toc = pg_archive.read_toc(io.BytesIO(TOC.encode("utf-8")), known_roles=["app", "my role"])
    assert (toc["entries"], toc["table_data"], toc["missing_owners"]) == (10, 3, ["omero"])


# --------------------------------------------------------------------------
# what a plan does, in words
# --------------------------------------------------------------------------

def _plan(kind, fmt="custom", staged=False, jobs=1, **extra):
    plan = {"kind": kind, "info": {"format": fmt}, "staged": staged, "jobs": jobs, "owner": "app",
            "user_objects": FULL, "checksum_verified": False, "toc": None, "tool_version": "17.6"}
    plan.update(extra)
    return plan


def test_describe_plan():
    assert pg_archive.describe_plan(_plan("create")) == "the database does not exist: it is created"
    assert pg_archive.describe_plan(_plan("replace")) == "the database exists with 12 relations and is replaced"


def test_planned_actions_of_a_replace():
    plan = _plan("replace", fmt="directory", staged=True, jobs=2, checksum_verified=True,
                 toc={"entries": 10, "table_data": 3})
    actions = pg_archive.planned_actions(plan, {"staging_dir": "/scratch", "analyze": True}, "omero")
    assert actions == [
        "verified the archive's sha256 against its manifest",
        "the target's pg_restore 17.6 read the archive's table of contents (10 entries, 3 tables with data)",
        "create a staging database (owner app, from template0) and restore into it with pg_restore: copy the "
        "directory archive into a directory under /scratch in the container, 2 jobs",
        "ANALYZE the restored database",
        "refuse new connections to 'omero', terminate its sessions, rename it aside, rename the staging database "
        "to 'omero' and drop the old one",
    ]


def test_planned_actions_of_a_plain_script_in_place():
    actions = pg_archive.planned_actions(_plan("in_place", fmt="plain"), {"staging_dir": "/tmp", "analyze": False},
                                         "omero")
    assert actions == ["restore into database 'omero' with psql: stream the plain script from the host into the "
                       "container"]


@pytest.mark.parametrize("kind,text", [
    ("create", "database 'omero' was not created"),
    ("replace", "the existing database 'omero' is untouched"),
    ("clean", "restored in place with --clean and may be partly restored"),
    ("in_place", "(empty before) may now be partly restored"),
])
def test_failure_state(kind, text):
    assert text in pg_archive.failure_state(kind, "omero")


def test_plan_result():
    plan = _plan("create", checksum_verified=True, toc={"entries": 10, "table_data": 3}, server_version="17.6",
                 globals_report={"roles_created": ["app"]}, globals_path="/b/x.dump.globals.sql",
                 info={"format": "custom", "archive_version": "1.16-0", "compression": "zstd",
                       "server_version": "15.14 (Debian)", "dump_version": "15.14 (Debian)"})
    result = pg_archive.plan_result(plan)
    assert (result["plan"], result["toc_entries"], result["tables_restored"], result["dump_version"]) == (
        "create", 10, 3, "15.14")
    assert result["globals"] == {"roles_created": ["app"], "path": "/b/x.dump.globals.sql"}
    assert pg_archive.plan_result(dict(plan, toc=None, globals_report=None))["toc_entries"] is None


PARAMS = {"single_transaction": False, "owner": "omero_app", "no_owner": True, "no_privileges": False}


def test_restore_command():
    assert pg_archive.restore_command(_plan("clean", jobs=4), PARAMS, "omero", "/tmp/nlb-restore.x/archive") == [
        "pg_restore", "--exit-on-error", "--no-password", "--dbname=dbname='omero'", "--jobs=4", "--no-owner",
        "--clean", "--if-exists", "--role=omero_app", "/tmp/nlb-restore.x/archive"]
    assert pg_archive.restore_command(_plan("create", fmt="plain"), dict(PARAMS, single_transaction=True), "s") == [
        "psql", "-X", "-q", "--no-password", "-v", "ON_ERROR_STOP=1", "--dbname=dbname='s'", "--single-transaction",
        "-f", "-"]
