import io
import os
import stat
import tarfile

import pytest

from ansible_collections.nl_biomero.database.plugins.module_utils import restore_files as rf
from ansible_collections.nl_biomero.database.plugins.module_utils.backup_set import BackupSet


@pytest.mark.parametrize("members, top", [
    ([("OMERO", "dir", ""), ("OMERO/a", "file", ""), ("OMERO/l", "symlink", "/etc/passwd")], "OMERO"),
    ([("metabase/", "dir", ""), ("metabase/x/y", "file", ""), ("metabase/h", "hardlink", "metabase/x/y")], "metabase"),
    ([("config.txt", "file", "")], "config.txt"),
])
def test_archive_top(members, top):
    assert rf.archive_top(members) == top


@pytest.mark.parametrize("members, text", [
    ([], "empty"),
    ([("/etc/passwd", "file", "")], "not a relative path"),
    ([("OMERO", "dir", ""), ("OMERO/../etc", "file", "")], "not a relative path"),
    ([("OMERO", "dir", ""), ("other/a", "file", "")], "outside its top entry"),
    ([("OMERO", "dir", ""), ("OMERO/l", "symlink", "/etc"), ("OMERO/l/cron", "file", "")], "under a symbolic link"),
    ([("OMERO", "dir", ""), ("OMERO/h", "hardlink", "/etc/shadow")], "hard link"),
    ([("OMERO", "dir", ""), ("OMERO/h", "hardlink", "OMERO/../../etc/shadow")], "hard link"),
])
def test_archive_top_refuses(members, text):
    with pytest.raises(rf.RestoreFilesError, match=text):
        rf.archive_top(members)


COMPONENTS = [
    {"name": "omero", "kind": "database", "path": "omero.dump", "outcome": "ok"},
    {"name": "OMERO", "kind": "omero_data", "path": "OMERO.tar.gz", "outcome": "ok", "sha256": "a", "bytes": 1},
    {"name": "omero.config", "kind": "omero_config", "path": "omero.config.txt", "outcome": "ok", "sha256": "b",
     "bytes": 2},
    {"name": "metabase", "kind": "metabase", "path": None, "outcome": "failed", "error": "disk full"},
]


def test_plan_pairs_targets_and_marks_nested_ones():
    # folders first, whatever order they are asked in
    planned = rf.plan(COMPONENTS, [{"name": "omero.config", "container": "srv", "path": "/OMERO/backup/omero.config"},
                                   {"name": "OMERO", "container": "srv", "path": "/OMERO/"}])
    assert [(item["format"], item["path"], item["nested"], item["overwrite"]) for item in planned] == [
        ("tree", "/OMERO", False, False), ("file", "/OMERO/backup/omero.config", True, False)]
    # another container, or a host path, is not nested
    planned = rf.plan(COMPONENTS, [{"name": "OMERO", "container": "srv", "path": "/OMERO"},
                                   {"name": "omero.config", "path": "/OMERO/backup/omero.config", "overwrite": True}],
                      overwrite_all=False)
    assert [(item["nested"], item["overwrite"]) for item in planned] == [(False, False), (False, True)]


@pytest.mark.parametrize("restores, text", [
    ([{"name": "nope", "path": "/x"}], r"no component 'nope' \(it has: OMERO, metabase, omero, omero.config\)"),
    ([{"name": "omero", "path": "/x"}], "kind 'database'"),
    ([{"name": "metabase", "path": "/x"}], "failed in this set \\(disk full\\)"),
    ([{"name": "OMERO", "path": "relative"}], "target path 'relative' must be an absolute path"),
    ([{"name": "OMERO", "path": "/"}], "other than /"),
])
def test_plan_refuses(restores, text):
    with pytest.raises(rf.RestoreFilesError, match=text):
        rf.plan(COMPONENTS, restores)


def test_on_mount():
    assert rf.on_mount("/OMERO", ["/OMERO"])
    assert rf.on_mount("/OMERO/backup/omero.config", ["/var/lib/x", "/OMERO/"])
    assert not rf.on_mount("/OMEROX", ["/OMERO"])
    assert not rf.on_mount("/opt/omero", [])


def _tree(base):
    os.makedirs(str(base / "metabase" / "nested" / "deeper"))
    (base / "metabase" / "metabase.db.mv.db").write_bytes(b"h2" * 50)
    (base / "metabase" / "nested" / "deeper" / "x.bin").write_bytes(bytes(range(256)))
    os.chmod(str(base / "metabase" / "nested" / "deeper" / "x.bin"), 0o640)
    os.symlink("deeper/x.bin", str(base / "metabase" / "nested" / "link"))
    os.chmod(str(base / "metabase"), 0o750)
    return base / "metabase"


def _listing(root):
    out = {}
    for folder, dirs, files in os.walk(str(root)):
        for name in dirs + files:
            full = os.path.join(folder, name)
            info = os.lstat(full)
            body = os.readlink(full) if stat.S_ISLNK(info.st_mode) else (
                open(full, "rb").read() if stat.S_ISREG(info.st_mode) else None)
            out[os.path.relpath(full, str(root))] = (stat.S_IFMT(info.st_mode), stat.S_IMODE(info.st_mode), body)
    out["."] = stat.S_IMODE(os.stat(str(root)).st_mode)
    return out


@pytest.fixture
def made_set(tmp_path):
    source = _tree(tmp_path / "src")
    backup_set = BackupSet.start(str(tmp_path / "backups"))
    with tarfile.open(backup_set.file_path("metabase.tar.gz"), "w:gz") as tar:
        tar.add(str(source), arcname="metabase")
    backup_set.record_component("metabase", "metabase", path=backup_set.file_path("metabase.tar.gz"))
    with open(backup_set.file_path("omero.config.txt"), "wb") as handle:
        handle.write(b"omero.db.pass=it's secret\n")
    backup_set.record_component("omero.config", "omero_config", path=backup_set.file_path("omero.config.txt"))
    backup_set.finish()
    return {"set": backup_set.path, "source": source, "tmp": tmp_path}


def test_host_restore_then_refusal_then_overwrite(made_set):
    tmp = made_set["tmp"]
    target = tmp / "fresh" / "metabase"
    restores = [{"name": "metabase", "path": str(target)}, {"name": "omero.config", "path": str(tmp / "cfg" / "c")}]
    checked = rf.RestoreFiles(made_set["set"], restores).run(check_mode=True)
    assert not os.path.exists(str(target)) and [item["name"] for item in checked["restored"]] == ["metabase",
                                                                                                  "omero.config"]
    rf.RestoreFiles(made_set["set"], restores).run()
    assert _listing(target) == _listing(made_set["source"])
    assert (tmp / "cfg" / "c").read_bytes() == b"omero.db.pass=it's secret\n"
    assert stat.S_IMODE(os.stat(str(tmp / "cfg" / "c")).st_mode) == 0o600
    assert not [name for name in os.listdir(str(tmp / "fresh")) if name != "metabase"], "staging left behind"

    (target / "new.txt").write_text("written after the restore")
    with pytest.raises(rf.RestoreFilesError, match="is not empty"):
        rf.RestoreFiles(made_set["set"], restores).run()
    assert (target / "new.txt").exists()
    rf.RestoreFiles(made_set["set"], restores, overwrite=True).run()
    assert _listing(target) == _listing(made_set["source"])
    assert sorted(os.listdir(str(tmp / "fresh"))) == ["metabase"]


def test_tampered_component_touches_nothing(made_set):
    tmp = made_set["tmp"]
    path = os.path.join(made_set["set"], "metabase.tar.gz")
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(path, "wb").write(bytes(data))
    (tmp / "cfg").mkdir()
    restores = [{"name": "omero.config", "path": str(tmp / "cfg" / "c")}, {"name": "metabase", "path": str(tmp / "m")}]
    with pytest.raises(rf.RestoreFilesError, match="sha256 of .*metabase.tar.gz differs"):
        rf.RestoreFiles(made_set["set"], restores).run()
    assert os.listdir(str(tmp / "cfg")) == [] and not os.path.exists(str(tmp / "m"))


def test_a_hostile_archive_is_refused_before_anything(tmp_path):
    backup_set = BackupSet.start(str(tmp_path / "backups"))
    with tarfile.open(backup_set.file_path("x.tar.gz"), "w:gz") as tar:
        info = tarfile.TarInfo("x/../../escape")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    backup_set.record_component("x", "other", path=backup_set.file_path("x.tar.gz"))
    with pytest.raises(rf.RestoreFilesError, match="not a relative path"):
        rf.RestoreFiles(backup_set.path, [{"name": "x", "path": str(tmp_path / "t")}]).run()
    assert not os.path.exists(str(tmp_path / "t")) and not os.path.exists(str(tmp_path / "escape"))
