import pytest

from ansible_collections.nl_biomero.database.plugins.module_utils import pg_tools
from ansible_collections.nl_biomero.database.plugins.module_utils.pg_tools import PgToolError


@pytest.mark.parametrize("text,major,version", [
    ("pg_dump (PostgreSQL) 17.6 (Debian 17.6-0+deb13u1)", 17, "17.6"),
    ("pg_restore (PostgreSQL) 15.14 (Debian 15.14-0+deb12u1)", 15, "15.14"),
    ("psql (PostgreSQL) 9.6.24", 9, "9.6.24"),
])
def test_tool_versions(text, major, version):
    assert pg_tools.tool_major(text) == major
    assert pg_tools.tool_version(text) == version


def test_tool_major_rejects_garbage():
    with pytest.raises(PgToolError, match="cannot read"):
        pg_tools.tool_major("bash: pg_dump: command not found")


@pytest.mark.parametrize("num,major", [(170006, 17), (150014, 15), ("160000", 16)])
def test_server_major(num, major):
    assert pg_tools.server_major(num) == major


@pytest.mark.parametrize("spec,major,fmt,args,described", [
    ("auto", 17, "custom", ["--compress=zstd"], "zstd"),
    ("auto", 15, "custom", ["--compress=6"], "gzip"),
    ("auto", 17, "tar", ["--compress=none"], "none"),
    ("auto", 15, "tar", ["--compress=0"], "none"),
    ("zstd:3", 17, "directory", ["--compress=zstd:3"], "zstd:3"),
    ("lz4", 16, "custom", ["--compress=lz4"], "lz4"),
    ("gzip:9", 15, "custom", ["--compress=9"], "gzip:9"),
    ("gzip", 17, "custom", ["--compress=gzip"], "gzip"),
    ("0", 17, "custom", ["--compress=none"], "none"),
    ("4", 15, "custom", ["--compress=4"], "gzip:4"),
    ("none", 17, "plain", ["--compress=none"], "none"),
])
def test_compression_args(spec, major, fmt, args, described):
    assert pg_tools.compression_args(spec, major, fmt) == (args, described)


@pytest.mark.parametrize("spec,major,fmt,message", [
    ("zstd", 15, "custom", "not supported by pg_dump 15; accepted: gzip, none"),
    ("lz4:3", 15, "custom", "not supported by pg_dump 15"),
    ("brotli", 17, "custom", "accepted: gzip, lz4, zstd, none"),
    ("gzip:10", 17, "custom", "out of range; accepted: 1 to 9"),
    ("zstd:x", 17, "custom", "is not a number"),
    ("gzip", 17, "tar", "cannot be compressed"),
])
def test_compression_refused(spec, major, fmt, message):
    with pytest.raises(PgToolError, match=message):
        pg_tools.compression_args(spec, major, fmt)


def test_pg_dump_argv_custom_to_stdout():
    argv = pg_tools.pg_dump_argv("custom", ["--compress=zstd"], exclude_table_data=["public.log*", "a b"])
    assert argv == ["pg_dump", "--format=c", "--no-password", "--compress=zstd",
                    "--exclude-table-data=public.log*", "--exclude-table-data=a b"]


def test_pg_dump_argv_directory_parallel():
    argv = pg_tools.pg_dump_argv("directory", [], jobs=2, output="/tmp/x")
    assert argv[-2:] == ["--jobs=2", "--file=/tmp/x"]


def test_pg_dump_argv_snapshot_and_lock_wait_timeout():
    """The job dumps in its exported snapshot and never waits for a table lock forever (also with jobs)."""
    argv = pg_tools.pg_dump_argv("directory", [], jobs=2, output="/tmp/x", snapshot="00000003-0000001B-1",
                                 lock_wait_timeout=600)
    assert "--snapshot=00000003-0000001B-1" in argv and "--lock-wait-timeout=600000" in argv
    assert argv[-2:] == ["--jobs=2", "--file=/tmp/x"]
    plain = pg_tools.pg_dump_argv("custom", [])
    assert not [item for item in plain if item.startswith(("--snapshot", "--lock-wait"))]


@pytest.mark.parametrize("kwargs,message", [
    ({"fmt": "zip"}, "format 'zip' is not supported"),
    ({"fmt": "custom", "jobs": 2}, "needs format 'directory'"),
    ({"fmt": "directory"}, "needs an output directory"),
])
def test_pg_dump_argv_refused(kwargs, message):
    fmt = kwargs.pop("fmt")
    with pytest.raises(PgToolError, match=message):
        pg_tools.pg_dump_argv(fmt, [], **kwargs)


def test_connection_env_keeps_password_out_unless_given():
    assert pg_tools.connection_env("u", "d") == {"PGUSER": "u", "PGDATABASE": "d"}
    assert pg_tools.connection_env("u", "d", "p")["PGPASSWORD"] == "p"


@pytest.mark.parametrize("value,major", [
    ("17.6", 17), ("15.10 (Debian 15.10-1.pgdg120+1)", 15), ("9.6.24", 9), ("9.6", 9), ("18", 18), (18, 18),
    (170006, 17), ("90624", 9), ("150014", 15), ("pg_dump (PostgreSQL) 17.6 (Debian 17.6-1)", 17),
    ("PostgreSQL 15.14 on x86_64-pc-linux-gnu", 15), ("18beta1", 18), ("18rc1 (Debian)", 18), ("", None), (None, None), ("abc", None),
])
def test_major_version_is_the_one_parser(value, major):
    from ansible_collections.nl_biomero.database.plugins.module_utils.pg_tools import major_version
    assert major_version(value) == major
