# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that write an argv into a crontab line or a systemd unit (see module_utils/schedule.py)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError
from ansible_collections.nl_biomero.database.plugins.module_utils import schedule


def _wrap(function):
    def run(*args):
        try:
            return function(*args)
        except schedule.ScheduleError as exc:
            raise AnsibleFilterError(str(exc))
    return run


class FilterModule(object):
    """Quoting of scheduled commands."""

    def filters(self):
        return {
            "cron_command": _wrap(schedule.cron_command),
            "systemd_command": _wrap(schedule.systemd_command),
            "systemd_environment": _wrap(schedule.systemd_environment),
            "shell_command": _wrap(schedule.shell_command),
        }
