# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Signals and timeouts of the backup job, turned into exceptions on its normal failure path.

The job runs unattended: ``systemctl stop``, a shutdown or a hung ``docker
exec`` must not leave the OMERO server stopped. Here SIGTERM, SIGINT and
SIGHUP, and the run's ceiling (``timeouts.run``), raise :class:`Interrupted`
in the main thread, once; ``limit(seconds, what)`` raises :class:`TimedOut`
when one part of the run takes too long (SIGALRM). Both derive from
BaseException, like KeyboardInterrupt: no ``except SomeError`` on the way
swallows them, and every child process runner in this collection kills its
child on any exception. After the first Interrupted, and inside
``shielded()`` (starting the clients, finishing the set), further signals
are only noted, so the cleanup is never cut short.

Only the main thread can handle signals; elsewhere the guard does nothing.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import signal
import threading
import time

HANDLED = ("SIGTERM", "SIGINT", "SIGHUP")


class Interrupted(BaseException):
    """The run must stop (a signal, or its ceiling passed): clients are started again, the set is finished."""


class TimedOut(BaseException):
    """One part of the run took longer than its timeout; it was stopped and fails, the run goes on."""


class Guard:
    """``with Guard(run_seconds) as guard:`` - see the module documentation."""

    def __init__(self, run_seconds=None):
        self.run_seconds = run_seconds
        self.ignored = []  # signals that came while stopping
        self.reason = None  # why the run stops (the first signal, or the ceiling); None while it goes on
        self.active = False
        self._deadline = None
        self._part = None  # (monotonic deadline, seconds, what) of the part running under limit()
        self._shielded = 0
        self._previous = {}

    # -- installing ------------------------------------------------------------

    def __enter__(self):
        if threading.current_thread() is not threading.main_thread():
            return self
        self.active = True
        for name in HANDLED:
            signum = getattr(signal, name)
            self._previous[signum] = signal.signal(signum, self._on_signal)
        self._previous[signal.SIGALRM] = signal.signal(signal.SIGALRM, self._on_alarm)
        self._deadline = time.monotonic() + self.run_seconds if self.run_seconds else None
        self._arm()
        return self

    def __exit__(self, *exc_info):
        if self.active:
            signal.setitimer(signal.ITIMER_REAL, 0)
            for signum, handler in self._previous.items():
                signal.signal(signum, handler)
            self.active = False
        return False

    # -- what the run uses -----------------------------------------------------

    @contextlib.contextmanager
    def limit(self, seconds, what):
        """Run the block with at most ``seconds`` (and the run's ceiling); TimedOut('<what> did not finish ...')."""
        self._part = (time.monotonic() + seconds, seconds, what) if seconds else None
        self._arm()
        try:
            yield
        finally:
            self._part = None
            self._arm()

    @contextlib.contextmanager
    def shielded(self):
        """A block no signal interrupts (a signal meanwhile is noted: ``check()`` raises it afterwards)."""
        self._shielded += 1
        self._arm()
        try:
            yield
        finally:
            self._shielded -= 1
            self._arm()

    def check(self):
        """Raise Interrupted when a signal came while shielded (call it between parts of the run)."""
        if self.reason:
            raise Interrupted(self.reason)

    # -- handlers ----------------------------------------------------------------

    def _arm(self):
        """Set the alarm to the nearest deadline (none while shielded or stopping)."""
        if not self.active:
            return
        ends = [] if self._shielded or self.reason else [
            end for end in (self._deadline, self._part[0] if self._part else None) if end is not None]
        seconds = max(0.001, min(ends) - time.monotonic()) if ends else 0
        signal.setitimer(signal.ITIMER_REAL, seconds)

    def _on_signal(self, signum, frame):
        self._stop("signal %s" % signal.Signals(signum).name)

    def _on_alarm(self, signum, frame):
        now = time.monotonic()
        if self._deadline is not None and now >= self._deadline - 0.01:
            self._stop("the run took longer than %d s (timeouts.run)" % self.run_seconds)
        elif self._part is not None and now >= self._part[0] - 0.01 and not self._shielded:
            _end, seconds, what = self._part
            self._part = None
            raise TimedOut("%s did not finish within %d s and was stopped" % (what, seconds))
        else:
            self._arm()

    def _stop(self, reason):
        # no logging here: a handler that writes to a stream the main thread is writing to fails
        if self.reason:
            self.ignored.append(reason)
            return
        self.reason = reason
        signal.setitimer(signal.ITIMER_REAL, 0)
        if not self._shielded:
            raise Interrupted(reason)
