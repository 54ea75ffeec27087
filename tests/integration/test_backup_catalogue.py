"""pg_backup_info and pg_backup_retention run through ansible-playbook on
synthetic backup directories: real folders, real files, real sha256 sums, the
on-disk format written here by hand (not by the code under test). No
container engine needed."""

import datetime
import hashlib
import json
import os

import pytest

from harness import run_module

INFO = "nl_biomero.database.pg_backup_info"
RETENTION = "nl_biomero.database.pg_backup_retention"


def stamp(when):
    return when.strftime("%Y-%m-%dT%H-%M-%SZ")


def iso(when):
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def write_set(root, when, outcomes=("ok", "ok"), finished=True):
    """A set folder as the backup role leaves it: one dump per database + set.manifest.json."""
    folder = os.path.join(str(root), stamp(when))
    os.mkdir(folder, 0o700)
    components = []
    for database, outcome in zip(("omero", "biomero"), outcomes):
        entry = {"name": database, "kind": "database", "database": database, "path": None, "bytes": None,
                 "sha256": None, "versions": {"server": "17.2", "pg_dump": "17.2"}, "duration_s": 1.0,
                 "outcome": outcome, "error": None if outcome == "ok" else "container stopped"}
        if outcome == "ok":
            data = ("%s at %s" % (database, iso(when))).encode() * 10
            entry["path"] = "%s.%s.dump" % (database, stamp(when))
            with open(os.path.join(folder, entry["path"]), "wb") as handle:
                handle.write(data)
            entry.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
        components.append(entry)
    complete = finished and all(outcome == "ok" for outcome in outcomes)
    manifest = {"format_version": 1, "stamp": stamp(when), "started": iso(when),
                "finished": iso(when + datetime.timedelta(minutes=2)) if finished else None,
                "duration_s": 120.0 if finished else None, "complete": complete,
                "error": None if complete else "something failed", "components": components}
    with open(os.path.join(folder, "set.manifest.json"), "w") as handle:
        json.dump(manifest, handle)
    return folder


def write_dump(root, database, when):
    """A loose dump with its per-dump manifest, as pg_dump_container leaves it."""
    data = b"PGDMP" + os.urandom(64)
    path = os.path.join(str(root), "%s.%s.dump" % (database, stamp(when)))
    with open(path, "wb") as handle:
        handle.write(data)
    with open(path + ".manifest.json", "w") as handle:
        json.dump({"database": database, "server_version": "15.8", "pg_dump_version": "15.8", "format": "custom",
                   "compression": "gzip", "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}, handle)
    return path


def day(text, hour=2):
    return datetime.datetime.strptime(text, "%Y-%m-%d").replace(hour=hour, tzinfo=datetime.timezone.utc)


@pytest.fixture
def backups(tmp_path):
    """Daily complete sets 2026-01-01 .. 2026-03-31, an old and a new failed set, a loose dump, a foreign folder."""
    root = tmp_path / "backups"
    root.mkdir()
    current = day("2026-01-01")
    while current <= day("2026-03-31"):
        write_set(root, current)
        current += datetime.timedelta(days=1)
    write_set(root, day("2026-03-20", hour=12), outcomes=("ok", "failed"))
    write_set(root, day("2026-04-01"), outcomes=("ok", "failed"))
    write_dump(root, "omero", day("2026-02-15", hour=9))
    (root / "notes").mkdir()
    return root


def listing(root):
    return sorted(os.listdir(str(root)))


KEPT = (["2026-04-01"]                                                   # failed, newer than newest complete
        + ["2026-03-%02d" % d for d in range(31, 24, -1)]                # keep_daily: 7
        + ["2026-03-22", "2026-03-15"]                                   # keep_weekly: 4 (w14, w13 in daily)
        + ["2026-02-28", "2026-01-31"])                                  # keep_monthly: 3 (March in daily)
POLICY = {"keep_daily": 7, "keep_weekly": 4, "keep_monthly": 3}


@pytest.mark.parametrize("check_mode", [False, True])
def test_info_lists_sets_and_dumps(backups, check_mode):
    before = listing(backups)
    result = run_module(INFO, {"path": str(backups)}, check_mode=check_mode)
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is False and listing(backups) == before
    sets = result["sets"]
    assert len(sets) == 92 and sets[0]["name"] == "2026-04-01T02-00-00Z"
    assert (sets[0]["status"], sets[0]["complete"], sets[0]["databases"]) == ("incomplete", False, ["omero", "biomero"])
    newest = result["newest_complete"]
    assert newest["name"] == "2026-03-31T02-00-00Z" and newest["status"] == "complete"
    assert newest["time"] == "2026-03-31T02:00:00Z" and newest["bytes"] > 0
    assert newest["versions"]["omero"] == {"server": "17.2", "pg_dump": "17.2"}
    assert newest["checksums"] == "not_checked"
    assert [(d["name"], d["database"], d["complete"]) for d in result["dumps"]] == [
        ("omero.2026-02-15T09-00-00Z.dump", "omero", True)]


def test_info_verifies_checksums(backups):
    target = os.path.join(str(backups), "2026-03-31T02-00-00Z", "biomero.2026-03-31T02-00-00Z.dump")
    with open(target, "r+b") as handle:  # same size, different bytes: only a checksum finds it
        handle.write(b"#")
    plain = run_module(INFO, {"path": str(backups)})
    assert plain["newest_complete"]["name"] == "2026-03-31T02-00-00Z"
    verified = run_module(INFO, {"path": str(backups), "verify_checksums": True})
    damaged = verified["sets"][1]
    assert damaged["name"] == "2026-03-31T02-00-00Z"
    assert (damaged["status"], damaged["checksums"], damaged["complete"]) == ("damaged", "mismatch", False)
    assert "biomero" in damaged["problems"][0] and "sha256" in damaged["problems"][0]
    assert verified["newest_complete"]["name"] == "2026-03-30T02-00-00Z"
    assert verified["newest_complete"]["checksums"] == "ok"
    assert verified["dumps"][0]["checksums"] == "ok"


def test_retention_check_mode_then_apply_then_nothing(backups):
    before = listing(backups)
    preview = run_module(RETENTION, dict(POLICY, path=str(backups)), check_mode=True, diff=True)
    assert not preview.get("failed"), preview.get("msg")
    assert preview["changed"] is True and listing(backups) == before
    assert [item["name"][:10] for item in preview["kept"]] == KEPT
    assert len(preview["deleted"]) == 92 - len(KEPT)
    assert {"2026-03-20T12-00-00Z": "incomplete, older than the newest complete backup"}.items() <= dict(
        (item["name"], item["reason"]) for item in preview["deleted"]).items()
    assert [item["name"] for item in preview["ignored"]] == ["omero.2026-02-15T09-00-00Z.dump"]
    reasons = dict((item["name"][:10], item["reasons"]) for item in preview["kept"])
    assert reasons["2026-03-31"] == ["newest complete", "daily 2026-03-31", "weekly 2026-W14", "monthly 2026-03"]
    assert reasons["2026-01-31"] == ["monthly 2026-01"]
    diff = preview["diff"]
    assert "2026-01-01T02-00-00Z\n" in diff["before"] and "2026-01-01T02-00-00Z" not in diff["after"]
    assert diff["after"].count("\n") == len(KEPT)
    assert "-2026-01-01T02-00-00Z" in preview["_playbook_output"]  # the diff is shown to the user

    applied = run_module(RETENTION, dict(POLICY, path=str(backups)))
    assert applied["changed"] is True
    assert [item["name"] for item in applied["deleted"]] == [item["name"] for item in preview["deleted"]]
    sets_left = [name for name in listing(backups) if name[0].isdigit()]
    assert [name[:10] for name in sorted(sets_left, reverse=True)] == KEPT
    assert "notes" in listing(backups) and "omero.2026-02-15T09-00-00Z.dump" in listing(backups)
    assert not [name for name in listing(backups) if name.startswith(".")]

    again = run_module(RETENTION, dict(POLICY, path=str(backups)), diff=True)
    assert again["changed"] is False and again["deleted"] == []
    assert again["diff"]["before"] == again["diff"]["after"]
    info = run_module(INFO, {"path": str(backups)})
    assert info["newest_complete"]["name"] == "2026-03-31T02-00-00Z"


def test_retention_include_dumps_and_prune_incomplete(tmp_path):
    root = tmp_path / "adhoc"
    root.mkdir()
    write_set(root, day("2026-03-01"))
    write_set(root, day("2026-03-02"), outcomes=("failed", "failed"))
    write_set(root, day("2026-03-03"), finished=False)  # may be running: never deleted
    for number in (1, 2, 3):
        write_dump(root, "omero", day("2026-02-0%d" % number))
    write_dump(root, "biomero", day("2026-02-01"))
    result = run_module(RETENTION, {"path": str(root), "keep_last": 1, "include_dumps": True,
                                    "prune_incomplete": True})
    assert result["changed"] is True and result["ignored"] == []
    assert sorted(item["name"] for item in result["deleted"]) == [
        "2026-03-02T02-00-00Z", "omero.2026-02-01T02-00-00Z.dump", "omero.2026-02-02T02-00-00Z.dump"]
    assert listing(root) == ["2026-03-01T02-00-00Z", "2026-03-03T02-00-00Z",
                             "biomero.2026-02-01T02-00-00Z.dump", "biomero.2026-02-01T02-00-00Z.dump.manifest.json",
                             "omero.2026-02-03T02-00-00Z.dump", "omero.2026-02-03T02-00-00Z.dump.manifest.json"]


@pytest.mark.parametrize("args,message", [
    ({}, "all zeros"),
    ({"keep_daily": -2, "keep_last": 3}, "keep_daily=-2"),
    ({"keep_weekly": "many"}, "keep_weekly"),
])
def test_retention_refuses_bad_policies(backups, args, message):
    before = listing(backups)
    result = run_module(RETENTION, dict(args, path=str(backups)))
    assert result.get("failed") is True and message in result["msg"]
    assert result["changed"] is False and listing(backups) == before


@pytest.mark.parametrize("module,args", [(INFO, {}), (RETENTION, {"keep_last": 1})])
def test_missing_directory_is_an_error(tmp_path, module, args):
    result = run_module(module, dict(args, path=str(tmp_path / "nowhere")))
    assert result.get("failed") is True and "does not exist" in result["msg"]


def test_retention_caps_incomplete_sets(tmp_path):
    """A component failing every night: 40 incomplete sets after the last complete one, the role's default
    policy; only the keep_incomplete (default 2) newest incomplete sets are kept."""
    root = tmp_path / "nightly"
    root.mkdir()
    write_set(root, day("2026-01-31"))
    for number in range(40):
        write_set(root, day("2026-02-01") + datetime.timedelta(days=number), outcomes=("ok", "failed"))
    result = run_module(RETENTION, {"path": str(root), "keep_daily": 7, "keep_weekly": 5, "keep_monthly": 12})
    assert not result.get("failed"), result.get("msg")
    assert [item["name"][:10] for item in result["kept"]] == ["2026-03-12", "2026-03-11", "2026-01-31"]
    assert len(result["deleted"]) == 38 and set(item["reason"] for item in result["deleted"]) == {
        "incomplete, beyond keep_incomplete (the 2 newest incomplete are kept)"}
    assert result["policy"]["keep_incomplete"] == 2
    assert sorted(listing(root)) == ["2026-01-31T02-00-00Z", "2026-03-11T02-00-00Z", "2026-03-12T02-00-00Z"]
    more = run_module(RETENTION, {"path": str(root), "keep_last": 1, "keep_incomplete": 1})
    assert [item["name"] for item in more["deleted"]] == ["2026-03-11T02-00-00Z"]
    refused = run_module(RETENTION, {"path": str(root), "keep_last": 1, "keep_incomplete": -1})
    assert refused["failed"] and "keep_incomplete must be a whole number of 0 or more; got -1" in refused["msg"]
    assert len(listing(root)) == 2


def test_retention_a_set_from_the_future_never_costs_the_set_just_made(tmp_path):
    """A set dated in the future (a wrong clock) and keep_last: 1: the set just made is kept, the future one is
    kept and reported, the older real one goes."""
    root = tmp_path / "clock"
    root.mkdir()
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    future = write_set(root, now + datetime.timedelta(days=400))
    just_made = write_set(root, now - datetime.timedelta(minutes=3))
    older = write_set(root, now - datetime.timedelta(days=1))
    info = run_module(INFO, {"path": str(root)})
    assert [item["dated_in_future"] for item in info["sets"]] == [True, False, False]
    assert info["newest_complete"]["path"] == just_made  # what restore.yml restores by default
    assert "in the future" in info["_playbook_output"] or any(
        "in the future" in text for text in info.get("warnings", []))
    result = run_module(RETENTION, {"path": str(root), "keep_last": 1})
    assert not result.get("failed"), result.get("msg")
    assert [item["path"] for item in result["kept"]] == [future, just_made]
    assert result["future"] == [os.path.basename(future)]
    assert result["kept"][1]["reasons"] == ["newest complete", "last 1 of 1"]
    assert [item["path"] for item in result["deleted"]] == [older]
    assert "in the future" in result["_playbook_output"] or any(
        "in the future" in text for text in result.get("warnings", []))
    assert os.path.isdir(future) and os.path.isdir(just_made) and not os.path.exists(older)
