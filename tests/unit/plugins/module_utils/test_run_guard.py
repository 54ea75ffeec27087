import os
import signal
import subprocess
import threading
import time

import pytest

from ansible_collections.nl_biomero.database.plugins.module_utils.run_guard import Guard, Interrupted, TimedOut


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_part_past_its_limit_times_out_and_its_child_is_killed():
    started = time.monotonic()
    with Guard(60) as guard:
        with pytest.raises(TimedOut, match="the copy of x did not finish within 1 s and was stopped"):
            with guard.limit(1, "the copy of x"):
                proc = subprocess.Popen(["sleep", "30"])
                try:
                    proc.wait()
                except BaseException:
                    proc.kill()
                    proc.wait()
                    raise
        assert time.monotonic() - started < 10
        assert not _alive(proc.pid)
        # the run goes on: the next part is not hit by the first one's alarm
        with guard.limit(5, "the next part"):
            time.sleep(1.2)
        assert guard.reason is None


def test_signals_raise_interrupted_once_then_are_only_noted():
    with Guard(60) as guard:
        with pytest.raises(Interrupted, match="signal SIGTERM"):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        os.kill(os.getpid(), signal.SIGHUP)  # during the cleanup: noted, not raised
        time.sleep(0.1)
        assert guard.reason == "signal SIGTERM" and guard.ignored == ["signal SIGHUP"]
        with pytest.raises(Interrupted):
            guard.check()


def test_shielded_blocks_are_not_interrupted_and_check_raises_afterwards():
    with Guard(60) as guard:
        with guard.shielded():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)
            done = True
        assert done and guard.reason == "signal SIGINT"
        with pytest.raises(Interrupted, match="SIGINT"):
            guard.check()


def test_the_run_ceiling_interrupts_whatever_runs():
    started = time.monotonic()
    with Guard(1) as guard:
        with pytest.raises(Interrupted, match=r"the run took longer than 1 s \(timeouts.run\)"):
            with guard.limit(30, "a long dump"):
                time.sleep(10)
    assert time.monotonic() - started < 5


def test_handlers_are_restored_and_a_thread_guard_does_nothing():
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGALRM)}
    with Guard(1):
        pass
    assert {sig: signal.getsignal(sig) for sig in before} == before
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    seen = []

    def in_thread():
        with Guard(0.1) as guard:
            with guard.limit(0.1, "x"):
                time.sleep(0.3)
            seen.append(guard.active)

    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join()
    assert seen == [False]
