# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backup job's state file beside its lock: what a run that dies (SIGKILL, power loss) leaves undone.

Before a run stops a client container it records the client here, with the
set it is writing and the dump running; a run that ends normally removes the
file. A run killed with SIGKILL cannot clean up, so the next run, or the job's
``--recover`` mode (at boot, and after the systemd unit stopped), reads the
file, starts those clients again and marks the dead run's set. JSON::

    {"pid": 123, "started": "2026-03-14T02:00:00Z", "set": "/backups/2026-03-14T02-00-00Z",
     "action": "stop", "clients": ["omeroserver"], "dumping": {"name": "omero", "since": "..."} | null}

Written atomically (a new file renamed over it: a symlink planted there is
replaced, never followed), read without following links, only when it is a
regular file of ours, in a directory no one else can write to.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json
import os
import stat

from ansible_collections.nl_biomero.database.plugins.module_utils import archive
from ansible_collections.nl_biomero.database.plugins.module_utils.host_files import UnsafePathError, check_directory

STATE_SUFFIX = ".state"


def state_path(lock_file):
    return lock_file + STATE_SUFFIX


def utc_now_iso():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def read_state(path):
    """The state dict at ``path``, or None when there is none; UnsafePathError for a link or a foreign file."""
    check_directory(os.path.dirname(os.path.abspath(path)))
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UnsafePathError("cannot open the job's state file %s safely (a symlink is refused): %s" % (path, exc))
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
            raise UnsafePathError("the job's state file %s is not a regular file of this user; refusing it" % path)
        text = handle.read(1024 * 1024).decode("utf-8", "replace")
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        # half a file cannot happen (atomic writes); say so rather than guess
        raise UnsafePathError("the job's state file %s is not a JSON object; look at it and remove it" % path)
    data.setdefault("clients", [])
    return data


class RunState:
    """The state file of the running run: ``begin``, ``update`` as it goes, ``clear`` at its end."""

    def __init__(self, path):
        self.path = path
        self.data = None

    def begin(self, set_path, action):
        self.data = {"pid": os.getpid(), "started": utc_now_iso(), "set": set_path, "action": action,
                     "clients": [], "dumping": None}
        self._save()

    def update(self, **changes):
        self.data.update(changes)
        self._save()

    def clear(self):
        archive.remove_path(self.path)
        self.data = None

    def _save(self):
        check_directory(os.path.dirname(os.path.abspath(self.path)))
        archive.write_atomic(self.path, json.dumps(self.data, sort_keys=True) + "\n", 0o600)
