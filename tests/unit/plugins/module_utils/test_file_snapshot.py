"""Hard-linked incremental snapshots of a folder (file_snapshot.py), on real files."""
import os
import time

import pytest

from ansible_collections.nl_biomero.database.plugins.module_utils import archive, file_snapshot
from ansible_collections.nl_biomero.database.plugins.module_utils.file_snapshot import make_snapshot, verify


@pytest.fixture
def repo(tmp_path):
    root = tmp_path / "OMERO"
    (root / "ManagedRepository" / "user_1").mkdir(parents=True)
    (root / "ManagedRepository" / "user_1" / "a.tif").write_bytes(os.urandom(100000))
    (root / "ManagedRepository" / "user_1" / "b.tif").write_bytes(os.urandom(5000))
    (root / "Files").mkdir()
    (root / "Files" / "1").write_text("attachment")
    os.chmod(str(root / "Files" / "1"), 0o640)
    os.symlink("ManagedRepository/user_1/a.tif", str(root / "latest"))
    return root


def test_first_copy_is_whole_and_its_sha256_is_the_folders(repo, tmp_path):
    index, stats = make_snapshot(str(repo), str(tmp_path / "s1" / "OMERO"))
    assert stats == {"files": 3, "copied_files": 3, "copied_bytes": 105010, "linked_files": 0, "linked_bytes": 0}
    dest = tmp_path / "s1" / "OMERO"
    assert (dest / "ManagedRepository" / "user_1" / "a.tif").read_bytes() == \
        (repo / "ManagedRepository" / "user_1" / "a.tif").read_bytes()
    assert os.readlink(str(dest / "latest")) == "ManagedRepository/user_1/a.tif"
    assert oct(os.stat(str(dest / "Files" / "1")).st_mode & 0o777) == "0o640"
    assert os.stat(str(dest / "Files" / "1")).st_mtime_ns == os.stat(str(repo / "Files" / "1")).st_mtime_ns
    assert file_snapshot.index_sha256(index) == archive.sha256_path(str(dest))
    assert file_snapshot.index_bytes(index) == archive.size_of(str(dest)) == 105010
    assert verify(str(dest), index) == []


def test_second_copy_links_what_did_not_change_and_copies_the_rest(repo, tmp_path):
    first = make_snapshot(str(repo), str(tmp_path / "s1" / "OMERO"))[0]
    (repo / "ManagedRepository" / "user_1" / "c.tif").write_bytes(os.urandom(7000))
    time.sleep(0.01)
    (repo / "Files" / "1").write_text("attachment, edited")
    second, stats = make_snapshot(str(repo), str(tmp_path / "s2" / "OMERO"), previous=str(tmp_path / "s1" / "OMERO"),
                                  previous_index=first)
    assert stats == {"files": 4, "copied_files": 2, "copied_bytes": 7018, "linked_files": 2, "linked_bytes": 105000}
    old, new = tmp_path / "s1" / "OMERO", tmp_path / "s2" / "OMERO"
    rel = os.path.join("ManagedRepository", "user_1", "a.tif")
    assert os.stat(str(old / rel)).st_ino == os.stat(str(new / rel)).st_ino
    assert (old / "Files" / "1").read_text() == "attachment"  # the earlier snapshot keeps its own copy
    assert (new / "Files" / "1").read_text() == "attachment, edited"
    assert verify(str(old), first) == [] and verify(str(new), second) == []
    assert file_snapshot.index_sha256(second) == archive.sha256_path(str(new))


def test_a_changed_byte_in_a_snapshot_is_named_by_verify(repo, tmp_path):
    index = make_snapshot(str(repo), str(tmp_path / "s1" / "OMERO"))[0]
    with open(str(tmp_path / "s1" / "OMERO" / "Files" / "1"), "r+") as handle:
        handle.write("X")
    (tmp_path / "s1" / "OMERO" / "stray").write_text("x")
    assert verify(str(tmp_path / "s1" / "OMERO"), index) == ["Files/1 differs from the copy that was made",
                                                             "stray is not in the index"]


def test_a_failure_leaves_no_partial_snapshot(repo, tmp_path, monkeypatch):
    copies = []

    def failing_copy(source, dest):
        copies.append(source)
        if len(copies) == 2:
            raise OSError(28, "No space left on device")
        return real_copy(source, dest)

    real_copy = file_snapshot._copy
    monkeypatch.setattr(file_snapshot, "_copy", failing_copy)
    with pytest.raises(OSError, match="No space left"):
        make_snapshot(str(repo), str(tmp_path / "s1" / "OMERO"))
    assert os.listdir(str(tmp_path / "s1")) == []
