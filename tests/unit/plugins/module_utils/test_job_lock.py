"""The job lock with real flocks and real background holders (processes), in private temporary directories."""

import os
import subprocess
import sys
import time

import pytest

from ansible_collections.nl_biomero.database.plugins.module_utils import job_lock
from ansible_collections.nl_biomero.database.plugins.module_utils.job_lock import (
    JobLock, LockBusyError, describe_holder, hold_in_background, read_holder, release_background)

# .../ansible_collections/nl_biomero/database/plugins/module_utils/job_lock.py -> the directory holding ansible_collections
COLLECTIONS_ROOT = os.path.abspath(os.path.join(os.path.dirname(job_lock.__file__), *[os.pardir] * 5))


@pytest.fixture
def lock_path(tmp_path):
    os.chmod(str(tmp_path), 0o700)
    return str(tmp_path / ".nl-biomero-backup.lock")


def test_second_taker_is_refused_naming_the_holder(lock_path):
    with JobLock(lock_path, "backup job"):
        with pytest.raises(LockBusyError, match=r"held by backup job \(pid %d" % os.getpid()):
            JobLock(lock_path, "upgrade").acquire()
    assert read_holder(lock_path) == {}
    with JobLock(lock_path, "upgrade"):
        pass


def test_background_holder_keeps_it_across_processes_until_released(lock_path):
    pid = hold_in_background(lock_path, "upgrade of db-a", max_hold=300)
    try:
        # another process (as the scheduled job is) cannot take it, and is told who has it
        probe = [sys.executable, "-c", "import sys; sys.path[:0] = %r\n"
                 "from ansible_collections.nl_biomero.database.plugins.module_utils.job_lock import JobLock, LockBusyError\n"
                 "try:\n    JobLock(%r, 'backup job').acquire()\nexcept LockBusyError as exc:\n    print(exc); sys.exit(75)\n"
                 % ([COLLECTIONS_ROOT], lock_path)]
        proc = subprocess.run(probe, capture_output=True, text=True, check=False)
        assert proc.returncode == 75, proc.stderr
        assert "upgrade of db-a (pid %d" % pid in proc.stdout
        with pytest.raises(LockBusyError, match="waited 1 s"):
            JobLock(lock_path, "restore", wait=1).acquire()
    finally:
        assert release_background(lock_path, "upgrade of db-a")
    with JobLock(lock_path, "backup job"):
        pass
    assert describe_holder(lock_path) == "another process"


def test_a_waiting_taker_gets_it_when_the_holder_ends(lock_path):
    hold_in_background(lock_path, "restore", max_hold=2)
    started = time.monotonic()
    with JobLock(lock_path, "upgrade", wait=30):
        assert read_holder(lock_path)["holder"] == "upgrade"
    assert 1 <= time.monotonic() - started < 30


def test_the_same_holder_takes_over_its_own_leftover(lock_path):
    first = hold_in_background(lock_path, "upgrade", max_hold=300)
    second = hold_in_background(lock_path, "upgrade", max_hold=300)
    try:
        assert first != second and read_holder(lock_path)["pid"] == second
        with pytest.raises(LockBusyError):
            hold_in_background(lock_path, "restore", max_hold=300)
    finally:
        release_background(lock_path)
    assert not release_background(lock_path)  # nothing left to end


def test_release_does_not_signal_a_foreign_process(lock_path):
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        with open(lock_path + ".holder", "w") as handle:
            handle.write('{"holder": "upgrade", "pid": %d}' % sleeper.pid)
        assert not release_background(lock_path, "upgrade")
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()
