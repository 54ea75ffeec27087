# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backup job's lock, shared by everything that must not run beside it (upgrade, rollback, restore).

An exclusive ``flock`` on one file per backup directory: the kernel drops it
when its holder dies, so a killed holder never leaves it taken. Who holds it
is written beside it (``<lock>.holder``, JSON) so that a refusal names the
holder. A play that spans many tasks holds it through a small background
process (:func:`hold_in_background`) that lives until released, or until
``max_hold`` seconds have passed (a play killed with SIGKILL cannot release it).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import errno
import json
import os
import signal
import time

try:
    import fcntl
except ImportError:  # pragma: no cover (not POSIX)
    fcntl = None

from ansible_collections.nl_biomero.database.plugins.module_utils import archive
from ansible_collections.nl_biomero.database.plugins.module_utils.errors import NlbError
from ansible_collections.nl_biomero.database.plugins.module_utils.host_files import open_private

HOLDER_SUFFIX = ".holder"
POLL_SECONDS = 0.5


class LockBusyError(NlbError):
    """Another holder has the lock (its name is in the message)."""


def holder_path(path):
    return path + HOLDER_SUFFIX


def read_holder(path):
    """The holder record of the lock at ``path`` ({} when none or unreadable)."""
    try:
        with open(holder_path(path)) as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def describe_holder(path):
    """'upgrade (pid 123, since 2026-12-01T02:00:00Z)' or 'another process' when unknown."""
    data = read_holder(path)
    if not data.get("holder"):
        return "another process"
    return "%s (pid %s, since %s)" % (data.get("holder"), data.get("pid"), data.get("since"))


class JobLock:
    """``with JobLock(path, "backup job"):`` - exclusive; waits up to ``wait`` seconds, then LockBusyError."""

    def __init__(self, path, holder, wait=0):
        if fcntl is None:  # pragma: no cover
            raise NlbError("file locking (fcntl) is not available on this platform")
        self.path = path
        self.holder = holder
        self.wait = wait
        self.fd = None

    def acquire(self):
        directory = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(directory):
            os.makedirs(directory, 0o700)
        fd = open_private(self.path)
        deadline = time.monotonic() + (self.wait or 0)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    os.close(fd)
                    raise NlbError("cannot lock %s: %s" % (self.path, exc))
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise LockBusyError("the lock %s is held by %s%s" % (
                        self.path, describe_holder(self.path),
                        " (waited %s s)" % self.wait if self.wait else ""))
                time.sleep(POLL_SECONDS)
        self.fd = fd
        archive.write_atomic(holder_path(self.path), json.dumps({
            "holder": self.holder, "pid": os.getpid(),
            "since": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }) + "\n", 0o600)
        return self

    def release(self):
        if self.fd is None:
            return
        if read_holder(self.path).get("pid") == os.getpid():
            archive.remove_path(holder_path(self.path))
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc_info):
        self.release()
        return False


def hold_in_background(path, holder, wait=0, max_hold=6 * 3600):
    """Take the lock in a detached process that keeps it until released or ``max_hold`` seconds pass.

    Returns the holder's pid once it holds the lock; LockBusyError (naming the
    holder) when it is not free within ``wait`` seconds. The same ``holder``
    taking it again (a re-run after a killed play) replaces its old holder.
    """
    current = read_holder(path)
    if current.get("holder") == holder and holds(current.get("pid"), path):
        release_background(path, holder)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (runs in the child; tested through its effects)
        os.close(read_fd)
        _daemon(path, holder, wait, max_hold, write_fd)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as status:
        answer = status.read().decode("utf-8", "replace")
    os.waitpid(pid, 0)
    if not answer.startswith("ok "):
        raise LockBusyError(answer or "the lock holder for %s did not start" % path)
    return int(answer.split()[1])


def _daemon(path, holder, wait, max_hold, write_fd):  # pragma: no cover (a forked child)
    code = 0
    try:
        os.setsid()
        if os.fork() != 0:
            os._exit(0)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        lock = JobLock(path, holder, wait)
        try:
            lock.acquire()
        except NlbError as exc:
            os.write(write_fd, str(exc).encode("utf-8"))
            os._exit(1)
        os.write(write_fd, ("ok %d" % os.getpid()).encode("ascii"))
        os.close(write_fd)
        signal.signal(signal.SIGTERM, lambda *_args: os._exit(0))
        deadline = time.monotonic() + max_hold
        while time.monotonic() < deadline:
            time.sleep(min(5.0, max(0.1, deadline - time.monotonic())))
        lock.release()
    except BaseException:
        code = 1
    os._exit(code)


def holds(pid, path):
    """Whether process ``pid`` has ``path`` open (how a release is sure it signals the right process)."""
    if not pid:
        return False
    target = os.path.realpath(path)
    try:
        for fd in os.listdir("/proc/%d/fd" % int(pid)):
            try:
                if os.readlink("/proc/%d/fd/%s" % (int(pid), fd)) == target:
                    return True
            except OSError:
                continue
    except OSError:
        return False
    return False


def release_background(path, holder=None, timeout=30):
    """End the background holder of ``path`` (only if it is ``holder``, when given); returns whether one was ended."""
    current = read_holder(path)
    pid = current.get("pid")
    if not pid or (holder and current.get("holder") != holder) or not holds(pid, path):
        return False
    os.kill(int(pid), signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and holds(pid, path):
        time.sleep(0.1)
    if holds(pid, path):
        os.kill(int(pid), signal.SIGKILL)
    if read_holder(path).get("pid") == pid:
        archive.remove_path(holder_path(path))
    return True
