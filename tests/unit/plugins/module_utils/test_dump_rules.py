import gzip
import io
import os
import stat
import tarfile

import pytest

from ansible_collections.nl_biomero.database.plugins.module_utils import dump_rules
from ansible_collections.nl_biomero.database.plugins.module_utils.dump_rules import DumpError


@pytest.mark.parametrize("given,expected", [
    ("0600", 0o600), ("600", 0o600), ("0640", 0o640), ("0o600", 0o600), (0o600, 0o600), (0o644, 0o644),
])
def test_parse_mode(given, expected):
    assert dump_rules.parse_mode(given) == expected


@pytest.mark.parametrize("given,message", [
    ("rw-r--r--", "is not an octal file mode"),
    ("0400", "would not let the owner read and write"),
    ("04600", "out of range"),
    (True, "is not a file mode"),
])
def test_parse_mode_refuses(given, message):
    with pytest.raises(DumpError, match=message):
        dump_rules.parse_mode(given)


@pytest.mark.parametrize("mode,expected", [(0o600, 0o700), (0o640, 0o750), (0o644, 0o755), (0o660, 0o770)])
def test_dir_mode_for(mode, expected):
    assert dump_rules.dir_mode_for(mode) == expected


@pytest.mark.parametrize("spec,major,fmt,args,described", [
    ("auto", 17, "custom", ["--compress=zstd"], "zstd"),
    ("auto", 16, "directory", ["--compress=zstd"], "zstd"),
    ("auto", 15, "custom", ["--compress=6"], "gzip"),
    ("auto", 15, "directory", ["--compress=6"], "gzip"),
    ("auto", 17, "tar", ["--compress=none"], "none"),
    ("auto", 15, "tar", ["--compress=0"], "none"),
    ("auto", 17, "plain", ["--compress=none"], "none"),
    ("gzip", 17, "plain", ["--compress=gzip"], "gzip"),
    ("gzip:9", 15, "custom", ["--compress=9"], "gzip:9"),
    ("zstd:3", 17, "custom", ["--compress=zstd:3"], "zstd:3"),
    ("lz4", 17, "directory", ["--compress=lz4"], "lz4"),
])
def test_choose_compression(spec, major, fmt, args, described):
    got_args, got_described, _method = dump_rules.choose_compression(spec, major, fmt)
    assert (got_args, got_described) == (args, described)


@pytest.mark.parametrize("spec,major,fmt,verify,message", [
    ("zstd", 15, "custom", True, "compression 'zstd' is not supported by pg_dump 15; accepted: gzip, none"),
    ("lz4", 15, "directory", True, "compression 'lz4' is not supported by pg_dump 15"),
    ("gzip", 17, "tar", True, "format 'tar' cannot be compressed"),
    ("zstd", 17, "plain", True, "format 'plain' compressed with zstd cannot be verified"),
    ("gzip:12", 17, "custom", True, "out of range"),
])
def test_choose_compression_refuses(spec, major, fmt, verify, message):
    with pytest.raises(DumpError, match=message):
        dump_rules.choose_compression(spec, major, fmt, verify)


def test_plain_zstd_allowed_without_verify():
    assert dump_rules.choose_compression("zstd", 17, "plain", verify=False)[1] == "zstd"


@pytest.mark.parametrize("fmt,method,ext", [
    ("custom", "zstd", "dump"), ("directory", "gzip", "dir"), ("tar", "none", "tar"),
    ("plain", "none", "sql"), ("plain", "gzip", "sql.gz"), ("plain", "zstd", "sql.zst"),
])
def test_extension_for(fmt, method, ext):
    assert dump_rules.extension_for(fmt, method) == ext


def test_resolve_dest_default_name(tmp_path):
    path = dump_rules.resolve_dest(None, str(tmp_path), 'x"; touch /tmp/pwned; "', "dump", "2026-11-26T02-35-50Z")
    assert path == str(tmp_path / "x___touch__tmp_pwned___.2026-11-26T02-35-50Z.dump")


def test_resolve_dest_explicit(tmp_path):
    assert dump_rules.resolve_dest(str(tmp_path / "a.dump"), None, "db", "dump", "s") == str(tmp_path / "a.dump")


@pytest.mark.parametrize("dest,dest_dir", [(None, None), ("/a", "/b")])
def test_resolve_dest_needs_exactly_one(dest, dest_dir):
    with pytest.raises(DumpError, match="exactly one of dest and dest_dir"):
        dump_rules.resolve_dest(dest, dest_dir, "db", "dump", "s")


@pytest.mark.parametrize("output,expected", [("2\n", 2), ("1", 1), ("64\n", 8), ("0", 1), ("garbage", 1), ("", 1)])
def test_default_jobs(output, expected):
    assert dump_rules.default_jobs(output) == expected


@pytest.mark.parametrize("rc,text", [
    (1, "exit status 1"),
    (-9, "killed by signal SIGKILL (9)"),
    (137, "exit status 137 (killed by signal SIGKILL (9)?)"),
])
def test_describe_exit(rc, text):
    assert dump_rules.describe_exit(rc) == text


GNU_LS = """total 12
-rw-r--r-- 1 0 0   25 Nov 26 02:38 3370.dat.zst
-rw-r--r-- 1 0 0 4096 Nov 26 02:38 toc.dat
"""
BUSYBOX_LS = """-rw-r--r--    1 70       70              25 Nov 26 02:38 3370.dat.gz
-rw-r--r--    1 70       70            4096 Nov 26 02:38 toc.dat
"""


def test_parse_ls_sizes():
    assert dump_rules.parse_ls_sizes(GNU_LS) == {"3370.dat.zst": 25, "toc.dat": 4096}
    assert dump_rules.parse_ls_sizes(BUSYBOX_LS) == {"3370.dat.gz": 25, "toc.dat": 4096}


def test_parse_ls_sizes_refuses_other_entries():
    with pytest.raises(DumpError, match="unexpected entry"):
        dump_rules.parse_ls_sizes(GNU_LS + "lrwxrwxrwx 1 0 0 4 Nov 26 02:38 evil -> /etc\n")


@pytest.mark.parametrize("name,rel", [
    ("dump", ""), ("dump/", ""), ("./dump/toc.dat", "toc.dat"), ("dump/toc.dat", "toc.dat"), ("dump/a/b.dat", "a/b.dat"),
])
def test_safe_member_path(name, rel):
    assert dump_rules.safe_member_path(name, "dump") == rel


@pytest.mark.parametrize("name", ["/etc/passwd", "dump/../../etc/passwd", "other/toc.dat", "..", "dump\\..\\x"])
def test_safe_member_path_refuses(name):
    with pytest.raises(DumpError):
        dump_rules.safe_member_path(name, "dump")


def _tar_bytes(members, pad=True):
    """members: list of (name, bytes or None for a directory, or ('sym', target)).

    pad=False ends the archive like pg_dump does: two zero blocks, no padding to a record.
    """
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, content in members:
            info = tarfile.TarInfo(name)
            if content is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif isinstance(content, tuple):
                info.type = tarfile.SYMTYPE
                info.linkname = content[1]
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
        end = tar.offset
    data = buf.getvalue()
    return data if pad else data[:end + 1024]


class OneWay(io.RawIOBase):
    """A non-seekable stream, like a pipe."""

    def __init__(self, data):
        self._buf = io.BytesIO(data)

    def readable(self):
        return True

    def readinto(self, target):
        chunk = self._buf.read(len(target))
        target[:len(chunk)] = chunk
        return len(chunk)


def test_extract_tar_stream(tmp_path):
    data = _tar_bytes([("dump", None), ("dump/toc.dat", b"toc" * 1000), ("dump/3370.dat.gz", b"\x1f\x8b data")])
    sizes = dump_rules.extract_tar_stream(io.BufferedReader(OneWay(data)), str(tmp_path), "dump", 0o640, 0o750)
    assert sizes == {"toc.dat": 3000, "3370.dat.gz": 7}
    assert (tmp_path / "toc.dat").read_bytes() == b"toc" * 1000
    assert stat.S_IMODE(os.stat(tmp_path / "toc.dat").st_mode) == 0o640


@pytest.mark.parametrize("members,message", [
    ([("dump", None), ("dump/evil", ("sym", "/etc/passwd"))], "refusing symlink"),
    ([("dump/../escape", b"x")], "refusing unsafe path"),
    ([("/abs", b"x")], "refusing unsafe path"),
    ([("elsewhere/toc.dat", b"x")], "unexpected path"),
])
def test_extract_tar_stream_refuses(tmp_path, members, message):
    target = tmp_path / "t"
    target.mkdir()
    with pytest.raises(DumpError, match=message):
        dump_rules.extract_tar_stream(io.BufferedReader(OneWay(_tar_bytes(members))), str(target), "dump")
    assert not (tmp_path / "escape").exists()


def test_extract_tar_stream_truncated(tmp_path):
    data = _tar_bytes([("dump", None), ("dump/toc.dat", os.urandom(100000))])
    with pytest.raises(DumpError, match="truncated|unexpected end"):
        dump_rules.extract_tar_stream(io.BufferedReader(OneWay(data[:50000])), str(tmp_path), "dump")


def test_check_tar_archive(tmp_path):
    path = tmp_path / "a.tar"
    path.write_bytes(_tar_bytes([("toc.dat", b"x" * 3000), ("3370.dat", b"y" * 10)], pad=False))
    assert dump_rules.check_tar_archive(str(path)) == 2


@pytest.mark.parametrize("cut", [100, 2000, 4096, -1024, -10])
def test_check_tar_archive_truncated(tmp_path, cut):
    data = _tar_bytes([("toc.dat", os.urandom(3000)), ("3370.dat", os.urandom(600))], pad=False)
    path = tmp_path / "a.tar"
    path.write_bytes(data[:cut])
    with pytest.raises(DumpError, match="tar dump"):
        dump_rules.check_tar_archive(str(path))


PLAIN = b"--\n-- PostgreSQL database dump\n--\nCREATE TABLE t ();\n--\n-- PostgreSQL database dump complete\n--\n\n"


@pytest.mark.parametrize("suffix", [b"", b"\\unrestrict abc\n\n"])
def test_check_plain_complete(tmp_path, suffix):
    path = tmp_path / "a.sql"
    path.write_bytes(PLAIN + suffix)
    dump_rules.check_plain_complete(str(path))
    gz = tmp_path / "a.sql.gz"
    gz.write_bytes(gzip.compress(b"x" * 200000 + PLAIN + suffix))
    dump_rules.check_plain_complete(str(gz), "gzip")


def test_check_plain_incomplete(tmp_path):
    path = tmp_path / "a.sql"
    path.write_bytes(PLAIN[:40])
    with pytest.raises(DumpError, match="incomplete"):
        dump_rules.check_plain_complete(str(path))
    gz = tmp_path / "a.sql.gz"
    gz.write_bytes(gzip.compress(PLAIN)[:-12])
    with pytest.raises(DumpError, match="cannot be read back|incomplete"):
        dump_rules.check_plain_complete(str(gz), "gzip")


@pytest.mark.parametrize("value,level", [
    (None, "toc"), ("toc", "toc"), ("full", "full"), ("none", "none"), ("FULL", "full"),
    (True, "toc"), (False, "none"), ("true", "toc"), ("yes", "toc"), ("False", "none"), ("no", "none"),
])
def test_verify_level(value, level):
    assert dump_rules.verify_level(value) == level


@pytest.mark.parametrize("value", ["fast", "", 2, "toc,full"])
def test_verify_level_refuses_naming_the_value_and_the_choices(value):
    with pytest.raises(dump_rules.DumpError, match=r"verify '%s' is not accepted; use toc .* full .* none" % value):
        dump_rules.verify_level(value)


def test_verify_argv():
    assert dump_rules.verify_argv("toc") == ["pg_restore", "--list"]
    assert dump_rules.verify_argv("toc", "/tmp/nlb-dump.x/dump") == ["pg_restore", "--list", "/tmp/nlb-dump.x/dump"]
    assert dump_rules.verify_argv("full") == ["pg_restore", "--file=/dev/null"]
    assert dump_rules.verify_argv("full", "/s/dump") == ["pg_restore", "--file=/dev/null", "/s/dump"]


# real data files of a pg_dump 17 directory archive (-Z zstd / -Z lz4): 300 rows, and an empty table
FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures")


@pytest.mark.parametrize("name", ["pg_dump_data.dat.zst", "pg_dump_empty.dat.zst", "pg_dump_data.dat.lz4",
                                  "pg_dump_empty.dat.lz4"])
def test_complete_frames_pass_and_every_cut_fails(tmp_path, name):
    with open(os.path.join(FIXTURES, name), "rb") as handle:
        data = handle.read()
    whole = tmp_path / name
    whole.write_bytes(data + data)  # two frames, as a file appended to would have
    assert dump_rules.check_frames(str(whole)) == 2
    for cut in sorted(set([1, 4, 5, 9, len(data) - 1, len(data) + 3, len(data) * 2 - 1, int(len(data) * 1.6)])):
        part = tmp_path / ("cut" + name)
        part.write_bytes((data + data)[:cut])
        with pytest.raises(dump_rules.DumpError, match="cut short"):
            dump_rules.check_frames(str(part))


def test_frames_of_something_else_or_nothing(tmp_path):
    other = tmp_path / "x.dat.zst"
    other.write_bytes(b"\x1f\x8b\x08\x00" + b"\0" * 20)
    with pytest.raises(dump_rules.DumpError, match="is not zstd data"):
        dump_rules.check_frames(str(other))
    empty = tmp_path / "y.dat.lz4"
    empty.write_bytes(b"")
    with pytest.raises(dump_rules.DumpError, match="is empty"):
        dump_rules.check_frames(str(empty))


def test_check_directory_frames(tmp_path):
    for name in ("pg_dump_data.dat.zst", "pg_dump_empty.dat.lz4"):
        with open(os.path.join(FIXTURES, name), "rb") as handle:
            (tmp_path / name.replace("pg_dump_", "34")).write_bytes(handle.read())
    (tmp_path / "toc.dat").write_bytes(b"PGDMP")
    (tmp_path / "3400.dat.gz").write_bytes(b"\x1f\x8b")
    assert dump_rules.check_directory_frames(str(tmp_path)) == 2
    (tmp_path / "34data.dat.zst").write_bytes(b"(\xb5/\xfd\x00X)\x00\x00\\.")
    with pytest.raises(DumpError, match="34data.dat.zst is cut short"):
        dump_rules.check_directory_frames(str(tmp_path))
