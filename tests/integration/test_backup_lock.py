"""pg_backup_lock through ansible-playbook: held across tasks and plays, named in refusals, released, check mode honest."""

import os
import time

from harness import run_module

from ansible_collections.nl_biomero.database.plugins.module_utils.job_lock import JobLock, LockBusyError, holds, read_holder

import pytest

LOCK = "nl_biomero.database.pg_backup_lock"


@pytest.fixture
def backup_dir(tmp_path):
    os.chmod(str(tmp_path), 0o700)
    yield str(tmp_path)
    holder = read_holder(os.path.join(str(tmp_path), ".nl-biomero-backup.lock"))
    if holder.get("pid") and holds(holder["pid"], os.path.join(str(tmp_path), ".nl-biomero-backup.lock")):
        os.kill(holder["pid"], 9)


def test_held_across_plays_then_released(backup_dir):
    path = os.path.join(backup_dir, ".nl-biomero-backup.lock")
    started = time.monotonic()
    held = run_module(LOCK, {"backup_dir": backup_dir, "holder": "upgrade of db-a", "wait": 5})
    assert not held.get("failed"), held
    assert held["changed"] and held["holder"] == "upgrade of db-a" and held["lock_file"] == path
    assert time.monotonic() - started < 60  # the play did not wait for the background holder
    # the job (another process) is refused and told who holds it
    with pytest.raises(LockBusyError, match="upgrade of db-a"):
        JobLock(path, "backup job").acquire()
    again = run_module(LOCK, {"backup_dir": backup_dir, "holder": "upgrade of db-a"})
    assert not again["changed"] and again["pid"] == held["pid"]
    other = run_module(LOCK, {"backup_dir": backup_dir, "holder": "restore", "wait": 1})
    assert other["failed"] and "held by upgrade of db-a" in other["msg"]
    check = run_module(LOCK, {"backup_dir": backup_dir, "holder": "upgrade of db-a", "state": "released"},
                       check_mode=True)
    assert check["changed"] and holds(held["pid"], path)
    released = run_module(LOCK, {"backup_dir": backup_dir, "holder": "upgrade of db-a", "state": "released"})
    assert released["changed"] and released["holder"] is None
    with JobLock(path, "backup job"):
        pass
    assert not run_module(LOCK, {"backup_dir": backup_dir, "holder": "upgrade of db-a", "state": "released"})["changed"]


def test_bad_input_changes_nothing(backup_dir, tmp_path_factory):
    result = run_module(LOCK, {"backup_dir": backup_dir, "max_hold": 0})
    assert result["failed"] and "max_hold=0 is out of range; accepted: 1 or more seconds" in result["msg"]
    shared = str(tmp_path_factory.mktemp("shared"))
    os.chmod(shared, 0o1777)
    result = run_module(LOCK, {"backup_dir": shared})
    assert result["failed"] and "writable by others" in result["msg"]
    assert not os.path.exists(os.path.join(shared, ".nl-biomero-backup.lock"))
