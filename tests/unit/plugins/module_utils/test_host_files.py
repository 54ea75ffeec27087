"""Lock/state files: real files, links and modes in a temporary directory."""

import os

import pytest

from ansible_collections.nl_biomero.database.plugins.module_utils.host_files import (
    UnsafePathError, check_directory, open_private)


@pytest.fixture
def private(tmp_path):
    directory = tmp_path / "private"
    directory.mkdir(mode=0o700)
    return directory


def test_creates_and_reuses_without_truncating(private):
    path = private / "job.lock"
    fd = open_private(str(path))
    os.write(fd, b"12345")
    os.close(fd)
    fd = open_private(str(path))
    os.close(fd)
    assert path.read_bytes() == b"12345"
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_a_symlink_is_never_followed(private, tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (private / "job.lock").symlink_to(victim)
    with pytest.raises(UnsafePathError, match="symlink"):
        open_private(str(private / "job.lock"))
    assert victim.read_text() == "precious"


def test_a_hard_link_is_refused(private, tmp_path):
    victim = private / "victim"
    victim.write_text("precious")
    os.link(str(victim), str(private / "job.lock"))
    with pytest.raises(UnsafePathError, match="private regular file"):
        open_private(str(private / "job.lock"))
    assert victim.read_text() == "precious"


@pytest.mark.parametrize("mode", [0o777, 0o1777, 0o775])
def test_directories_others_can_write_are_refused(tmp_path, mode):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(str(shared), mode)
    with pytest.raises(UnsafePathError, match="writable by others"):
        check_directory(str(shared))
    with pytest.raises(UnsafePathError):
        open_private(str(shared / "job.lock"))
    assert not (shared / "job.lock").exists()
