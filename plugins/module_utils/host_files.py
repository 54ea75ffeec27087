# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Small files a root job keeps on the host (lock, state) opened so that no link can redirect them.

The scheduled job runs as root. A lock or state file in a directory someone
else can write to could be replaced by a symlink to any file, which an open
with O_CREAT|O_TRUNC would then truncate. Here: no following of links, no
truncation, only a regular file of our own, and directories others can write
to are refused.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import stat

from ansible_collections.nl_biomero.database.plugins.module_utils.errors import NlbError


class UnsafePathError(NlbError):
    """A path the job would write through is not safe to use as root."""


def check_directory(directory):
    """UnsafePathError when others may write to ``directory`` (world- or group-writable, or not ours)."""
    try:
        info = os.stat(directory)
    except OSError as exc:
        raise UnsafePathError("cannot use directory %s: %s" % (directory, exc))
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafePathError("%s is not a directory" % directory)
    if info.st_mode & (stat.S_IWOTH | stat.S_IWGRP):
        raise UnsafePathError("directory %s is writable by others (mode %s); put the file in a directory only its "
                              "owner can write to, e.g. /run/nl-biomero or the backup directory"
                              % (directory, format(stat.S_IMODE(info.st_mode), "04o")))
    if info.st_uid not in (0, os.geteuid()):
        raise UnsafePathError("directory %s belongs to uid %d, not to this user or root" % (directory, info.st_uid))


def open_private(path, mode=0o600):
    """File descriptor (read/write) of the regular file ``path``, created if missing; never truncated.

    Refuses a symlink (O_NOFOLLOW), anything but a regular file, a file with
    other hard links or owned by someone else, and a directory others can write to.
    """
    check_directory(os.path.dirname(os.path.abspath(path)))
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, mode)
    except OSError as exc:
        raise UnsafePathError("cannot open %s safely (a symlink is refused): %s" % (path, exc))
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1 or info.st_uid != os.geteuid():
        os.close(fd)
        raise UnsafePathError("%s is not a private regular file (type, links or owner); refusing to use it" % path)
    return fd
