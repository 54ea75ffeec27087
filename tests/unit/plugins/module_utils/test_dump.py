import datetime
import io
import os
import stat
import sys
import tarfile

import pytest

from ansible_collections.nl_biomero.database.plugins.module_utils import dump
from ansible_collections.nl_biomero.database.plugins.module_utils.dump import DumpError, PgDump
from ansible_collections.nl_biomero.database.plugins.module_utils.engine import stream
from ansible_collections.nl_biomero.database.plugins.module_utils.pg_archive import read_toc

PY = sys.executable


def _dump_dir_tar(toc):
    """What ``<engine> cp CONTAINER:/tmp/nlb-dump.x/dump -`` writes: the directory and its files."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("dump")
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
        info = tarfile.TarInfo("dump/toc.dat")
        info.size = len(toc)
        tar.addfile(info, io.BytesIO(toc))
    return buf.getvalue()


# The dump's child processes all go through engine.stream: what the dump relies on.

def test_stream_into_a_file_writes_stdout_hashes_it_and_keeps_stderr(tmp_path):
    path = tmp_path / "out"
    script = "import sys; sys.stdout.buffer.write(b'\\x00\\xff' * 500000); sys.stderr.write('warn\\n')"
    done = stream([PY, "-c", script], env={"NLB_TEST": "1"}, stdout=str(path))
    assert (done.rc, done.stderr) == (0, "warn")
    assert path.read_bytes() == b"\x00\xff" * 500000
    assert (done.bytes, done.sha256) == (1000000, dump.archive.sha256_file(str(path)))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_stream_into_a_file_detects_a_killed_process(tmp_path):
    path = tmp_path / "out"
    done = stream(["sh", "-c", "printf partial; kill -9 $$"], stdout=str(path))
    assert done.rc == -9
    assert dump.describe_exit(done.rc) == "killed by signal SIGKILL (9)"


def test_stream_into_a_file_refuses_an_existing_path(tmp_path):
    path = tmp_path / "out"
    path.write_text("keep")
    with pytest.raises(FileExistsError):
        stream(["true"], stdout=str(path))
    assert path.read_text() == "keep"


def test_stream_env_reaches_the_child_not_argv(tmp_path):
    path = tmp_path / "out"
    done = stream(["sh", "-c", 'printf "%s" "$PGPASSWORD"'], env={"PGPASSWORD": "pw'\""}, stdout=str(path))
    assert done.rc == 0 and path.read_text() == "pw'\""


def test_counting_the_toc_from_a_file(tmp_path):
    path = tmp_path / "listing"
    listing = ";\n; Archive created at x\n;     dbname: appdb\n;\n\n" + "215; 1259 16389 TABLE public t app\n" * 100000
    path.write_bytes(listing.encode())
    done = stream(["cat"], stdin=str(path), stdout=read_toc)
    assert (done.rc, done.output["entries"], done.output["created"] is not None, done.stderr) == (0, 100000, True, "")


def test_counting_the_toc_failure():
    done = stream(["sh", "-c", "echo 'pg_restore: error: input file is too short' >&2; exit 1"], stdout=read_toc)
    assert (done.rc, done.output["entries"], done.output["created"] is not None, done.stderr) == (
        1, 0, False, "pg_restore: error: input file is too short")


def test_counting_the_toc_empty_database_vs_no_listing(tmp_path):
    path = tmp_path / "listing"
    path.write_bytes(b";\n; Archive created at x\n;\n")
    done = stream(["cat"], stdin=str(path), stdout=read_toc)
    assert (done.rc, done.output["entries"], done.output["created"] is not None, done.stderr) == (0, 0, True, "")
    done = stream(["true"], stdout=read_toc)
    assert (done.rc, done.output["entries"], done.output["created"] is not None, done.stderr) == (0, 0, False, "")


class _Engine:
    """The engine as the dump sees it: cp_out_argv gives a command that writes the tar stream."""

    binary = "docker"

    def __init__(self, argv):
        self._argv = argv

    def cp_out_argv(self, container, path):
        return self._argv


def _copier(argv):
    job = PgDump("c", "db", dest="/x", format="directory")
    job.pg = type("Pg", (), {"engine": _Engine(argv)})()
    return job


def test_copy_out_extracts_the_tar_stream(tmp_path):
    data = _dump_dir_tar(b"t" * 10)
    src = tmp_path / "stream.tar"
    src.write_bytes(data)
    target = tmp_path / "x"
    target.mkdir()
    assert _copier(["cat", str(src)])._copy_out("/tmp/nlb-dump.x/dump", str(target)) == {"toc.dat": 10}


def test_copy_out_fails_on_exit_status(tmp_path):
    data = _dump_dir_tar(b"t" * 10)
    src = tmp_path / "stream.tar"
    src.write_bytes(data)
    target = tmp_path / "x"
    target.mkdir()
    with pytest.raises(DumpError, match=r"docker cp failed \(exit status 3\): oops"):
        _copier(["sh", "-c", 'cat "$0"; echo oops >&2; exit 3', str(src)])._copy_out("/s/dump", str(target))


@pytest.mark.parametrize("kwargs,message", [
    (dict(format="custom", jobs=2, dest="/x"), "jobs=2 needs format 'directory'"),
    (dict(format="directory", jobs=0, dest="/x"), "jobs must be 1 or more"),
    (dict(format="zip", dest="/x"), "format 'zip' is not supported"),
    (dict(dest="/x", dest_dir="/y"), "exactly one of dest and dest_dir"),
    (dict(), "exactly one of dest and dest_dir"),
    (dict(dest="/x", mode="0400"), "would not let the owner"),
    (dict(dest="/x", verify="quick"), "verify 'quick' is not accepted"),
])
def test_pgdump_option_errors_before_any_command(kwargs, message):
    with pytest.raises(DumpError, match=message):
        PgDump("c", "db", **kwargs)


def test_default_name_uses_utc():
    stamp = dump.archive.utc_stamp(datetime.datetime(2026, 11, 26, 3, 35, 50, tzinfo=datetime.timezone(datetime.timedelta(hours=1))))
    assert stamp == "2026-11-26T02-35-50Z"


def test_check_destination(tmp_path):
    target = tmp_path / "a.dump"
    PgDump("c", "db", dest=str(target))._check_destination(str(target))
    with pytest.raises(DumpError, match="destination directory %s does not exist" % (tmp_path / "no")):
        PgDump("c", "db", dest="x")._check_destination(str(tmp_path / "no" / "a.dump"))
    (tmp_path / "a.dump.manifest.json").write_text("{}")
    with pytest.raises(DumpError, match=r"destination .*a\.dump\.manifest\.json exists \(use force to overwrite\)"):
        PgDump("c", "db", dest=str(target))._check_destination(str(target))
    PgDump("c", "db", dest=str(target), force=True)._check_destination(str(target))
    (tmp_path / "d").mkdir()
    with pytest.raises(DumpError, match="is a directory; name a file, or use dest_dir"):
        PgDump("c", "db", dest=str(tmp_path / "d"), force=True)._check_destination(str(tmp_path / "d"))
    target.write_text("x")
    with pytest.raises(DumpError, match="exists and is not a directory"):
        PgDump("c", "db", dest=str(target), format="directory", force=True)._check_destination(str(target))
    with pytest.raises(DumpError, match="globals.sql exists"):
        target.unlink()
        (tmp_path / "a.dump.manifest.json").unlink()
        (tmp_path / "a.dump.globals.sql").write_text("")
        PgDump("c", "db", dest=str(target), globals=True)._check_destination(str(target))


@pytest.mark.parametrize("verify,level", [(True, "toc"), (False, "none"), ("full", "full"), ("toc", "toc")])
def test_pgdump_verify_levels(verify, level):
    assert PgDump("c", "db", dest="/x", verify=verify).verify == level
    assert PgDump("c", "db", dest="/x").verify == "toc"
