import datetime
import os

import pytest

from ansible_collections.nl_biomero.database.plugins.module_utils import archive


def test_utc_stamp_is_utc_even_for_other_zones():
    cet = datetime.timezone(datetime.timedelta(hours=1))
    when = datetime.datetime(2026, 1, 2, 4, 5, 6, tzinfo=cet)
    assert archive.utc_stamp(when) == "2026-01-02T03-05-06Z"


@pytest.mark.parametrize("name,expected", [
    ("omero", "omero"),
    ("my db;rm -rf /", "my_db_rm_-rf__"),
    ("..hidden", "hidden"),
    ("ÿ", "_"),
])
def test_safe_name(name, expected):
    assert archive.safe_name(name) == expected


def test_default_dump_name():
    assert archive.default_dump_name("omero", "dump", "2026-01-02T03-05-06Z") == "omero.2026-01-02T03-05-06Z.dump"


def test_sha256_of_directory_depends_on_names_and_content(tmp_path):
    one = tmp_path / "one"
    (one / "sub").mkdir(parents=True)
    (one / "a.dat").write_bytes(b"x")
    (one / "sub" / "b.dat").write_bytes(b"y")
    first = archive.sha256_path(str(one))
    assert first == archive.sha256_path(str(one))
    (one / "sub" / "b.dat").write_bytes(b"z")
    assert archive.sha256_path(str(one)) != first


def test_place_refuses_existing_without_force(tmp_path):
    dest = tmp_path / "d"
    dest.write_text("old")
    tmp = tmp_path / "t"
    tmp.write_text("new")
    with pytest.raises(FileExistsError):
        archive.place(str(tmp), str(dest))
    assert dest.read_text() == "old"
    archive.place(str(tmp), str(dest), force=True)
    assert dest.read_text() == "new" and not tmp.exists()


def test_place_replaces_directory(tmp_path):
    dest = tmp_path / "d"
    dest.mkdir()
    (dest / "old").write_text("1")
    tmp = tmp_path / "t"
    tmp.mkdir()
    (tmp / "new").write_text("2")
    archive.place(str(tmp), str(dest), force=True)
    assert sorted(os.listdir(dest)) == ["new"]
    assert sorted(os.listdir(tmp_path)) == ["d"]


def test_write_json_atomic_mode_and_content(tmp_path):
    path = str(tmp_path / "m.json")
    archive.write_json_atomic(path, {"b": 1})
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    assert archive.read_manifest(path[:-len(archive.MANIFEST_SUFFIX)]) is None
    dump = str(tmp_path / "x.dump")
    archive.write_json_atomic(archive.manifest_path(dump), {"sha256": "ab"})
    assert archive.read_manifest(dump) == {"sha256": "ab"}
    assert sorted(os.listdir(tmp_path)) == ["m.json", "x.dump.manifest.json"]
