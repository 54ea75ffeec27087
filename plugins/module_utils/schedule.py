# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A command (argv) written into a schedule so that the schedule runs exactly that argv (pure).

cron hands its command line to ``/bin/sh`` after turning every unescaped
``%`` into a newline; systemd splits ExecStart= itself, expands ``%``
specifiers and ``$VAR``. Joining argv with spaces breaks on a space, a quote,
a ``%`` or a ``$`` in a path; these quote each argument for its reader.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

_SHELL_SAFE = re.compile(r"^[A-Za-z0-9_@%+=:,./-]+$")
_SYSTEMD_SAFE = re.compile(r"^[A-Za-z0-9_@+=:,./-]+$")


class ScheduleError(ValueError):
    """An argument cannot be written into the schedule (a newline or NUL: no scheduler keeps it)."""


def _check(argv):
    if not argv:
        raise ScheduleError("the scheduled command is empty")
    for arg in argv:
        if "\n" in arg or "\r" in arg or "\0" in arg:
            raise ScheduleError("argument %r of the scheduled command holds a line break or NUL; "
                                "no schedule can carry it" % arg)
    return [str(arg) for arg in argv]


def shell_quote(arg):
    """POSIX sh quoting: safe words as they are, everything else in single quotes."""
    if _SHELL_SAFE.match(arg):
        return arg
    return "'" + arg.replace("'", "'\"'\"'") + "'"


def shell_command(argv):
    """argv as one /bin/sh command line."""
    return " ".join(shell_quote(arg) for arg in _check(argv))


def cron_command(argv):
    """argv as a crontab command field: sh quoting, then every ``%`` escaped for cron."""
    return shell_command(argv).replace("%", "\\%")


def systemd_quote(arg):
    """One ExecStart= argument: double quotes with C escapes, ``%`` -> ``%%``, ``$`` -> ``$$``."""
    text = arg.replace("%", "%%").replace("$", "$$")
    if _SYSTEMD_SAFE.match(arg):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def systemd_command(argv):
    """argv as the value of ExecStart= (and ExecStartPre=/ExecStopPost=)."""
    return " ".join(systemd_quote(arg) for arg in _check(argv))


def systemd_environment(name, value):
    """One Environment= assignment, quoted: ``"NAME=value"`` with ``%`` doubled (no ``$`` expansion there)."""
    _check([value])
    return '"' + ("%s=%s" % (name, value)).replace("%", "%%").replace("\\", "\\\\").replace('"', '\\"') + '"'
