#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: pg_backup_lock
short_description: Hold the scheduled backup job's lock while an upgrade, rollback or restore runs
version_added: 0.2.0
description:
  - Takes the lock of the backup job of role C(nl_biomero.database.postgres_backup) (an exclusive C(flock) on
    C(<backup_dir>/.nl-biomero-backup.lock)) and keeps it in a small background process until
    O(state=released), so that the nightly job cannot stop or start clients in the middle of the work.
    While it is held the job exits with status 75 without touching anything and names the holder.
  - The lock is taken within O(wait) seconds or the task fails naming its current holder (for example a
    backup run in progress). The kernel drops it when its holder ends, and the holder ends by itself after
    O(max_hold) seconds, so a play killed with SIGKILL never leaves it taken for longer.
  - Taking it again with the same O(holder) (a re-run after a killed play) replaces the old holder.
author:
  - NL-BIOMERO database maintainers (@NL-BIOMERO)
options:
  backup_dir:
    description: The backup directory of the job; the lock is C(<backup_dir>/.nl-biomero-backup.lock).
    type: path
  lock_file:
    description: The job's lock file, when it is not the default one in O(backup_dir).
    type: path
  holder:
    description: Who holds it, as the job and other takers will name it.
    type: str
    default: ansible
  state:
    description: V(held) takes it (waiting up to O(wait) seconds); V(released) ends this holder's hold.
    type: str
    choices: [held, released]
    default: held
  wait:
    description: Seconds to wait for the lock to become free (a backup run in progress) before failing.
    type: int
    default: 600
  max_hold:
    description: Seconds after which the holder lets go by itself.
    type: int
    default: 21600
attributes:
  check_mode:
    support: full
    description: Reports whether the lock is free and who holds it; takes or releases nothing.
  diff_mode:
    support: none
    description: Nothing to compare.
  idempotent:
    support: full
    description: Holding a lock this O(holder) already holds, or releasing one not held, changes nothing.
notes:
  - The lock file's directory must be writable by its owner only (a world-writable directory is refused).
seealso:
  - module: nl_biomero.database.pg_backup_set
"""

EXAMPLES = r"""
- name: Keep the nightly backup away during the upgrade
  nl_biomero.database.pg_backup_lock:
    backup_dir: /var/backups/nl-biomero
    holder: "upgrade of {{ inventory_hostname }}"
    wait: 900

- name: Let the backup job run again
  nl_biomero.database.pg_backup_lock:
    backup_dir: /var/backups/nl-biomero
    holder: "upgrade of {{ inventory_hostname }}"
    state: released
"""

RETURN = r"""
lock_file:
  description: The lock file.
  returned: always
  type: str
  sample: /var/backups/nl-biomero/.nl-biomero-backup.lock
holder:
  description: Who holds the lock after the task (null when nobody does).
  returned: always
  type: str
  sample: upgrade of db-a
pid:
  description: Process id of the background holder (null when nobody holds it).
  returned: always
  type: int
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.nl_biomero.database.plugins.module_utils import job_lock
from ansible_collections.nl_biomero.database.plugins.module_utils.errors import NlbError, run_module

LOCK_NAME = ".nl-biomero-backup.lock"


def _run(params, check_mode):
    if not params["lock_file"] and not params["backup_dir"]:
        raise NlbError("one of backup_dir and lock_file is needed")
    for name in ("wait", "max_hold"):
        if params[name] < 0 or (name == "max_hold" and params[name] == 0):
            raise NlbError("%s=%s is out of range; accepted: %s" % (
                name, params[name], "0 or more seconds" if name == "wait" else "1 or more seconds"))
    path = params["lock_file"] or os.path.join(params["backup_dir"], LOCK_NAME)
    current = job_lock.read_holder(path)
    ours = current.get("holder") == params["holder"] and job_lock.holds(current.get("pid"), path)
    result = {"lock_file": path, "changed": False}
    if params["state"] == "released":
        result["changed"] = ours
        if ours and not check_mode:
            job_lock.release_background(path, params["holder"])
    elif not ours:
        result["changed"] = True
        if check_mode:
            result["msg"] = "would take the lock (now held by %s)" % job_lock.describe_holder(path)
        else:
            job_lock.hold_in_background(path, params["holder"], params["wait"], params["max_hold"])
    after = job_lock.read_holder(path)
    held = job_lock.holds(after.get("pid"), path)
    result.update(holder=after.get("holder") if held else None, pid=after.get("pid") if held else None)
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            backup_dir=dict(type="path"),
            lock_file=dict(type="path"),
            holder=dict(type="str", default="ansible"),
            state=dict(type="str", default="held", choices=["held", "released"]),
            wait=dict(type="int", default=600),
            max_hold=dict(type="int", default=21600),
        ),
        supports_check_mode=True,
    )
    run_module(module, lambda: _run(module.params, module.check_mode))


if __name__ == "__main__":
    main()
