import datetime
import hashlib
import json
import os

import pytest

from ansible_collections.nl_biomero.database.plugins.module_utils import archive
from ansible_collections.nl_biomero.database.plugins.module_utils import backup_set as bs

UTC = datetime.timezone.utc


def when(text):
    """'2026-03-14' or '2026-03-14 18:00' -> aware UTC datetime (02:00 when no time is given)."""
    if " " not in text:
        text += " 02:00"
    return datetime.datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)


def mode(path):
    return oct(os.stat(path).st_mode & 0o777)


def make_set(directory, at, outcomes=("ok",), finish=True, content=b"dump bytes"):
    """A real set with one component per outcome (real files, real checksums)."""
    started = when(at)
    backup = bs.start_set(str(directory), now=started)
    for index, outcome in enumerate(outcomes):
        name = "db%d" % index
        if outcome == "ok":
            path = os.path.join(backup.path, "%s.%s.dump" % (name, backup.name))
            with open(path, "wb") as handle:
                handle.write(content + name.encode())
            backup.record_component(name, "database", os.path.basename(path), versions={"server": "17.2"},
                                    duration_s=1.5)
        else:
            backup.record_failure(name, "database", "container stopped")
    if finish:
        backup.finish(now=started + datetime.timedelta(minutes=3))
    return backup


def test_start_creates_private_folder_and_manifest(tmp_path):
    backup = bs.start_set(str(tmp_path / "backups"), now=when("2026-03-14 02:00"))
    assert backup.name == "2026-03-14T02-00-00Z"
    assert mode(backup.path) == "0o700" and mode(str(tmp_path / "backups")) == "0o700"
    assert mode(backup.manifest_path) == "0o600"
    with open(backup.manifest_path) as handle:
        manifest = json.load(handle)
    assert manifest == {"format_version": 1, "stamp": "2026-03-14T02-00-00Z", "started": "2026-03-14T02:00:00Z",
                        "finished": None, "duration_s": None, "complete": False, "error": None, "components": []}
    assert sorted(os.listdir(backup.path)) == [bs.SET_MANIFEST]


def test_start_refuses_an_existing_set(tmp_path):
    bs.start_set(str(tmp_path), now=when("2026-03-14"))
    with pytest.raises(bs.BackupSetError, match="already exists"):
        bs.start_set(str(tmp_path), now=when("2026-03-14"))


def test_record_component_measures_the_file_and_saves(tmp_path):
    backup = bs.start_set(str(tmp_path), now=when("2026-03-14"))
    data = b"x" * 5000
    with open(os.path.join(backup.path, "omero.config"), "wb") as handle:
        handle.write(data)
    entry = backup.record_component("config", "omero_config", os.path.join(backup.path, "omero.config"),
                                    versions={"omero": "5.6.9"}, duration_s=0.2, container="omeroserver")
    assert entry["path"] == "omero.config"
    assert entry["bytes"] == 5000 and entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert entry["container"] == "omeroserver" and entry["outcome"] == "ok" and entry["error"] is None
    on_disk = bs.BackupSet.open(backup.path).manifest
    assert on_disk["components"] == [entry]


def test_record_component_directory(tmp_path):
    backup = bs.start_set(str(tmp_path), now=when("2026-03-14"))
    tree = os.path.join(backup.path, "OMERO")
    os.makedirs(os.path.join(tree, "ManagedRepository"))
    with open(os.path.join(tree, "ManagedRepository", "a.tif"), "wb") as handle:
        handle.write(b"pixels")
    entry = backup.record_component("omero_data", "omero_data", "OMERO")
    assert entry["bytes"] == 6 and entry["sha256"] == archive.sha256_path(tree)


def test_recording_a_name_again_replaces_it(tmp_path):
    backup = bs.start_set(str(tmp_path), now=when("2026-03-14"))
    backup.record_failure("omero", "database", "timeout")
    with open(os.path.join(backup.path, "omero.dump"), "wb") as handle:
        handle.write(b"ok")
    backup.record_component("omero", "database", "omero.dump")
    assert [(c["name"], c["outcome"]) for c in backup.manifest["components"]] == [("omero", "ok")]


@pytest.mark.parametrize("kwargs,message", [
    ({"name": "a", "kind": "tape", "path": "f"}, "kind 'tape'"),
    ({"name": "a", "kind": "database", "path": "f", "outcome": "maybe"}, "outcome 'maybe'"),
    ({"name": "a", "kind": "database", "path": "missing"}, "does not exist"),
    ({"name": "a", "kind": "database"}, "names no file"),
    ({"name": "a", "kind": "database", "path": "../f"}, "leaves the set folder"),
    ({"name": "a", "kind": "database", "path": "/etc/passwd"}, "not inside the set folder"),
    ({"name": "a", "kind": "database", "path": "f", "database": "x", "sha256": "1", "bytes": 2}, "clash"),
    ({"name": "", "kind": "database", "path": "f"}, "needs a name"),
])
def test_record_component_refuses(tmp_path, kwargs, message):
    backup = bs.start_set(str(tmp_path), now=when("2026-03-14"))
    with open(os.path.join(backup.path, "f"), "wb") as handle:
        handle.write(b"x")
    with pytest.raises(bs.BackupSetError, match=message):
        backup.record_component(**kwargs)


@pytest.mark.parametrize("outcomes,expected,error,complete,message", [
    (("ok", "ok"), None, None, True, None),
    (("ok", "failed"), None, None, False, "db1: container stopped"),
    ((), None, None, False, "no components"),
    (("ok",), ["db0", "metabase"], None, False, "metabase: not recorded"),
    (("ok",), ["db0"], None, True, None),
    (("ok",), None, "could not restart omeroserver", False, "could not restart omeroserver"),
])
def test_finish(tmp_path, outcomes, expected, error, complete, message):
    backup = make_set(tmp_path, "2026-03-14", outcomes, finish=False)
    manifest = backup.finish(expected=expected, error=error, now=when("2026-03-14 02:03"))
    assert manifest["complete"] is complete
    assert manifest["finished"] == "2026-03-14T02:03:00Z" and manifest["duration_s"] == 180
    assert manifest["error"] == message or message in manifest["error"]
    assert bs.BackupSet.open(backup.path).manifest == manifest


def write_dump(directory, database, stamp, content=b"PGDMP fake", globals_sql=b"CREATE ROLE app;", **extra):
    """A per-dump file + manifest as pg_dump_container leaves them."""
    path = os.path.join(str(directory), archive.default_dump_name(database, "dump", stamp))
    with open(path, "wb") as handle:
        handle.write(content)
    manifest = {"manifest_version": 1, "database": database, "container": "db", "image": "postgres:17",
                "server_version": "17.2", "pg_dump_version": "17.2", "format": "custom", "compression": "zstd:3",
                "bytes": len(content), "sha256": hashlib.sha256(content).hexdigest(), "duration_s": 0.4,
                "start_utc": stamp.replace("-", ":").replace(":", "-", 2)}
    if globals_sql is not None:
        with open(archive.globals_path(path), "wb") as handle:
            handle.write(globals_sql)
        manifest.update(globals_file=os.path.basename(archive.globals_path(path)), globals_bytes=len(globals_sql),
                        globals_sha256=hashlib.sha256(globals_sql).hexdigest())
    manifest.update(extra)
    archive.write_json_atomic(archive.manifest_path(path), manifest)
    return path


def test_record_dump_takes_the_dump_manifest(tmp_path):
    backup = bs.start_set(str(tmp_path), now=when("2026-03-14"))
    dump = write_dump(backup.path, "omero", backup.name)
    entry = backup.record_dump(dump)
    assert entry["name"] == "omero" and entry["kind"] == "database" and entry["database"] == "omero"
    assert entry["versions"] == {"server": "17.2", "pg_dump": "17.2", "image": "postgres:17"}
    assert entry["compression"] == "zstd:3" and entry["duration_s"] == 0.4
    assert [(c["name"], c["kind"]) for c in backup.manifest["components"]] == [
        ("omero", "database"), ("omero.globals", "globals")]
    assert backup.finish()["complete"] is True
    listed = bs.list_backups(str(tmp_path), verify_checksums=True)["sets"][0]
    assert listed["status"] == "complete" and listed["checksums"] == "ok" and listed["databases"] == ["omero"]


def test_record_dump_without_manifest(tmp_path):
    backup = bs.start_set(str(tmp_path), now=when("2026-03-14"))
    with pytest.raises(bs.BackupSetError, match="has no manifest"):
        backup.record_dump(os.path.join(backup.path, "nothing.dump"))


def test_restore_test_result_is_recorded(tmp_path):
    backup = make_set(tmp_path, "2026-03-14")
    backup.set_restore_test({"restorable": True, "tables": 12})
    assert bs.list_backups(str(tmp_path))["sets"][0]["restore_test"] == {"restorable": True, "tables": 12}


@pytest.fixture
def catalogue_dir(tmp_path):
    """A backup directory with every kind of entry the catalogue knows."""
    make_set(tmp_path, "2026-03-01", ("ok", "ok"))                     # complete
    make_set(tmp_path, "2026-03-02", ("ok", "failed"))                 # incomplete
    make_set(tmp_path, "2026-03-03", ("ok",), finish=False)            # unfinished
    os.mkdir(str(tmp_path / "2026-03-04T02-00-00Z"))                   # no manifest: unknown
    os.mkdir(str(tmp_path / "2026-03-05T02-00-00Z"))
    (tmp_path / "2026-03-05T02-00-00Z" / bs.SET_MANIFEST).write_text("{not json")  # unreadable: unknown
    future = make_set(tmp_path, "2026-03-06")
    future.manifest["format_version"] = 99
    future.save()                                                       # newer format: unknown
    os.mkdir(str(tmp_path / "metabase"))                                # not a set: ignored
    os.mkdir(str(tmp_path / ".2026-03-07T02-00-00Z.tmp-123"))          # hidden: ignored
    os.symlink(str(tmp_path / "2026-03-01T02-00-00Z"), str(tmp_path / "2026-03-08T02-00-00Z"))  # link: ignored
    write_dump(tmp_path, "omero", "2026-02-10T01-00-00Z")              # loose dump
    write_dump(tmp_path, "biomero", "2026-02-11T01-00-00Z", globals_sql=None)
    return tmp_path


def test_list_backups_statuses(catalogue_dir):
    catalogue = bs.list_backups(str(catalogue_dir))
    assert [(s["name"], s["status"], s["complete"]) for s in catalogue["sets"]] == [
        ("2026-03-06T02-00-00Z", "unknown", False),
        ("2026-03-05T02-00-00Z", "unknown", False),
        ("2026-03-04T02-00-00Z", "unknown", False),
        ("2026-03-03T02-00-00Z", "unfinished", False),
        ("2026-03-02T02-00-00Z", "incomplete", False),
        ("2026-03-01T02-00-00Z", "complete", True),
    ]
    problems = dict((s["name"], s["problems"]) for s in catalogue["sets"])
    assert problems["2026-03-04T02-00-00Z"] == ["no set manifest"]
    assert "unreadable" in problems["2026-03-05T02-00-00Z"][0]
    assert "99" in problems["2026-03-06T02-00-00Z"][0]
    assert [(d["name"], d["database"], d["status"], d["time"]) for d in catalogue["dumps"]] == [
        ("biomero.2026-02-11T01-00-00Z.dump", "biomero", "complete", "2026-02-11T01:00:00Z"),
        ("omero.2026-02-10T01-00-00Z.dump", "omero", "complete", "2026-02-10T01:00:00Z"),
    ]
    assert catalogue["dumps"][1]["globals_file"].endswith(".dump.globals.sql")
    assert catalogue["dumps"][0]["globals_file"] is None
    good = bs.newest_complete(catalogue["sets"])
    assert good["name"] == "2026-03-01T02-00-00Z" and good["databases"] == ["db0", "db1"]
    assert good["bytes"] == 2 * len(b"dump bytesdb0") and good["versions"]["db0"] == {"server": "17.2"}
    assert good["checksums"] == "not_checked"


def test_list_backups_needs_a_directory(tmp_path):
    with pytest.raises(bs.BackupSetError, match="does not exist"):
        bs.list_backups(str(tmp_path / "nope"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(bs.BackupSetError, match="not a directory"):
        bs.list_backups(str(tmp_path / "file"))


def damage_missing(path):
    os.unlink(path)


def damage_truncate(path):
    with open(path, "ab") as handle:
        handle.write(b"more")


def damage_same_size(path):
    with open(path, "r+b") as handle:
        handle.write(b"X")


@pytest.mark.parametrize("damage,verify,status,checksums,problem", [
    (None, False, "complete", "not_checked", None),
    (None, True, "complete", "ok", None),
    (damage_missing, False, "damaged", "not_checked", "missing"),
    (damage_truncate, False, "damaged", "not_checked", "differs from the recorded"),
    (damage_same_size, False, "complete", "not_checked", None),  # only a checksum finds this one
    (damage_same_size, True, "damaged", "mismatch", "sha256 differs"),
])
def test_damage_is_found(tmp_path, damage, verify, status, checksums, problem):
    backup = make_set(tmp_path, "2026-03-01", ("ok", "ok"))
    dump = write_dump(tmp_path, "omero", "2026-02-10T01-00-00Z")
    if damage:
        damage(os.path.join(backup.path, backup.manifest["components"][1]["path"]))
        damage(dump)
    catalogue = bs.list_backups(str(tmp_path), verify_checksums=verify)
    for entry in (catalogue["sets"][0], catalogue["dumps"][0]):
        assert entry["status"] == status and entry["complete"] is (status == "complete")
        assert entry["checksums"] == checksums
        assert (problem is None and entry["problems"] == []) or problem in entry["problems"][0]
    components = catalogue["sets"][0]["components"]
    assert components[0]["problem"] is None
    assert (components[1]["problem"] is None) is (problem is None)


def test_component_path_leaving_the_set_is_a_problem(tmp_path):
    backup = make_set(tmp_path, "2026-03-01")
    backup.manifest["components"][0]["path"] = "../../etc/passwd"
    backup.save()
    entry = bs.list_backups(str(tmp_path), verify_checksums=True)["sets"][0]
    assert entry["status"] == "damaged" and "leaves the set folder" in entry["problems"][0]


def test_delete_entry(catalogue_dir):
    catalogue = bs.list_backups(str(catalogue_dir))
    for entry in catalogue["sets"][-2:] + catalogue["dumps"]:
        bs.delete_entry(entry)
    left = sorted(os.listdir(str(catalogue_dir)))
    assert not any(name.startswith(("omero.", "biomero.")) for name in left)
    assert "2026-03-01T02-00-00Z" not in left and "2026-03-02T02-00-00Z" not in left
    assert not any(".deleting-" in name for name in left)
    assert "metabase" in left and "2026-03-08T02-00-00Z" in left  # a link is never followed nor removed here


def months_of_sets(directory, first, last, failed_days=()):
    day = when(first)
    while day <= when(last):
        make_set(directory, day.strftime("%Y-%m-%d"), ("failed",) if day.day in failed_days else ("ok",))
        day += datetime.timedelta(days=1)


@pytest.mark.parametrize("policy,prune,kept", [
    ({"keep_daily": 3, "keep_weekly": 2, "keep_monthly": 3}, False,
     # daily: 31, 30, 28 (29 failed); weekly: W14 -> 31, W13 -> 28 (Sun 29 failed); monthly: 31, 02-28, 01-31
     ["2026-03-31", "2026-03-30", "2026-03-28", "2026-02-28", "2026-01-31"]),
    ({"keep_last": 2}, False, ["2026-03-31", "2026-03-30"]),
])
def test_plan_retention_over_months(tmp_path, policy, prune, kept):
    months_of_sets(tmp_path, "2026-01-20", "2026-03-31", failed_days=(29,))
    catalogue = bs.list_backups(str(tmp_path))
    plan = bs.plan_retention(catalogue, policy, prune_incomplete=prune)
    assert [item["name"][:10] for item in plan["keep"]] == kept
    assert len(plan["keep"]) + len(plan["delete"]) == len(catalogue["sets"]) == 71
    deleted = dict((item["name"][:10], item["reason"]) for item in plan["delete"])
    assert deleted["2026-03-29"] == "incomplete, older than the newest complete backup"
    assert deleted["2026-02-27"].startswith("complete, not selected")


def test_plan_retention_keeps_new_failures_and_a_running_set(tmp_path):
    make_set(tmp_path, "2026-03-01")
    make_set(tmp_path, "2026-03-02", ("failed",))
    make_set(tmp_path, "2026-03-03", finish=False)
    catalogue = bs.list_backups(str(tmp_path))
    plan = bs.plan_retention(catalogue, {"keep_last": 1})
    assert [(item["name"][:10], item["reasons"]) for item in plan["keep"]] == [
        ("2026-03-03", ["in progress"]),
        ("2026-03-02", ["incomplete, newer than the newest complete backup"]),
        ("2026-03-01", ["newest complete", "last 1 of 1"]),
    ]
    pruned = bs.plan_retention(catalogue, {"keep_last": 1}, prune_incomplete=True)
    assert [item["name"][:10] for item in pruned["delete"]] == ["2026-03-02"]


def test_plan_retention_dumps_per_database(tmp_path):
    make_set(tmp_path, "2026-03-01")
    for day in ("01", "02", "03"):
        write_dump(tmp_path, "omero", "2026-02-%sT01-00-00Z" % day)
    write_dump(tmp_path, "biomero", "2026-01-15T01-00-00Z")
    catalogue = bs.list_backups(str(tmp_path))
    left_alone = bs.plan_retention(catalogue, {"keep_last": 1})
    assert left_alone["delete"] == [] and len(left_alone["ignored"]) == 4
    plan = bs.plan_retention(catalogue, {"keep_last": 1}, include_dumps=True)
    assert sorted(item["name"] for item in plan["keep"]) == [
        "2026-03-01T02-00-00Z", "biomero.2026-01-15T01-00-00Z.dump", "omero.2026-02-03T01-00-00Z.dump"]
    assert [item["name"] for item in plan["delete"]] == ["omero.2026-02-02T01-00-00Z.dump",
                                                         "omero.2026-02-01T01-00-00Z.dump"]


def test_apply_retention(tmp_path):
    months_of_sets(tmp_path, "2026-03-01", "2026-03-10")
    dry = bs.apply_retention(str(tmp_path), {"keep_last": 3}, dry_run=True)
    assert len(dry["delete"]) == 7 and dry["deleted"] == [] and len(os.listdir(str(tmp_path))) == 10
    done = bs.apply_retention(str(tmp_path), {"keep_last": 3})
    assert done["deleted"] == done["delete"]
    assert sorted(os.listdir(str(tmp_path))) == ["2026-03-08T02-00-00Z", "2026-03-09T02-00-00Z",
                                                 "2026-03-10T02-00-00Z"]
    assert bs.apply_retention(str(tmp_path), {"keep_last": 3})["deleted"] == []


def test_apply_retention_refuses_all_zero_before_looking(tmp_path):
    with pytest.raises(ValueError, match="all zeros"):
        bs.apply_retention(str(tmp_path), {"keep_last": 0})


@pytest.mark.parametrize("text,expected", [
    ("2026-03-14T02-00-00Z", datetime.datetime(2026, 3, 14, 2, tzinfo=UTC)),
    ("2026-03-14T02:00:00Z", datetime.datetime(2026, 3, 14, 2, tzinfo=UTC)),
    ("2026-03-14T03:00:00+01:00", datetime.datetime(2026, 3, 14, 2, tzinfo=UTC)),
    ("2026-13-14T02-00-00Z", None),
    ("metabase", None),
    (None, None),
])
def test_parse_time(text, expected):
    assert bs.parse_time(text) == expected


@pytest.mark.parametrize("verify,damage,problem", [
    (False, damage_missing, "globals file missing"),
    (False, damage_truncate, "globals file size"),
    (True, damage_same_size, "globals file sha256 differs"),
])
def test_loose_dump_globals_file_is_checked(tmp_path, verify, damage, problem):
    dump = write_dump(tmp_path, "omero", "2026-02-10T01-00-00Z")
    damage(archive.globals_path(dump))
    entry = bs.list_backups(str(tmp_path), verify_checksums=verify)["dumps"][0]
    assert entry["status"] == "damaged" and entry["problems"][0].startswith(problem)


def test_record_dump_uses_the_recorded_globals_checksum(tmp_path):
    backup = bs.start_set(str(tmp_path), now=when("2026-03-14"))
    dump = write_dump(backup.path, "omero", backup.name, globals_sql=b"CREATE ROLE omero;")
    backup.record_dump(dump)
    glob = backup.component("omero.globals")
    assert glob["sha256"] == hashlib.sha256(b"CREATE ROLE omero;").hexdigest() and glob["bytes"] == 18


def test_loose_dump_time_falls_back_to_the_manifest(tmp_path):
    path = str(tmp_path / "custom-name.dump")
    with open(path, "wb") as handle:
        handle.write(b"x")
    archive.write_json_atomic(archive.manifest_path(path), {"database": "omero", "bytes": 1,
                                                            "start_utc": "2026-02-03T04:05:06Z"})
    entry = bs.list_backups(str(tmp_path))["dumps"][0]
    assert entry["time"] == "2026-02-03T04:05:06Z" and entry["complete"] is True
