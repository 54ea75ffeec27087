#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: pg_backup_retention
short_description: Delete old backup sets by a keep-last/daily/weekly/monthly policy
version_added: 0.1.0
description:
  - Applies a retention policy to the backup sets in a directory on the
    managed host (the catalogue that M(nl_biomero.database.pg_backup_info)
    lists) and deletes the sets the policy does not keep.
  - Only complete sets count for the policy. O(keep_last) keeps the N newest.
    O(keep_daily), O(keep_weekly) and O(keep_monthly) use calendar buckets in
    UTC (day; ISO week, Monday to Sunday; month). Going back from the newest
    set, the newest complete set of each bucket is kept, for the N most recent
    buckets that hold a complete set; days, weeks or months without a backup
    do not use up the count. A set kept by several rules is kept once.
  - The newest complete set is never deleted.
  - Incomplete sets (a failed component, a run that died, a damaged or
    unreadable set) never count as backups. Of those newer than the newest
    complete set the O(keep_incomplete) newest are kept (they may be the only
    trace of a recent failure, and hold the components that did succeed), the
    others are deleted, so a component that fails every night does not fill
    the disk; O(prune_incomplete=true) keeps none. Older ones are deleted. The
    newest set, when it has not finished, may be a run in progress and is
    never deleted (nor counted).
  - A set dated in the future (made while the clock was wrong) is kept, named
    in a warning and counted by no rule, so it never makes the newest real set
    deletable; remove it by hand once the clock is right.
  - A set is removed by first renaming its folder to a hidden name, so a
    removal that fails half-way never leaves something that looks like a set.
  - Loose dumps (outside sets) are left alone unless O(include_dumps=true).
author:
  - NL-BIOMERO database maintainers (@NL-BIOMERO)
options:
  path:
    description:
      - The backup directory holding the sets.
    type: path
    required: true
  keep_last:
    description:
      - Keep the N newest complete sets.
    type: int
    default: 0
  keep_daily:
    description:
      - Keep the newest complete set of each of the N most recent UTC days that have one.
    type: int
    default: 0
  keep_weekly:
    description:
      - Keep the newest complete set of each of the N most recent ISO weeks (UTC) that have one.
    type: int
    default: 0
  keep_monthly:
    description:
      - Keep the newest complete set of each of the N most recent UTC months that have one.
    type: int
    default: 0
  keep_incomplete:
    description:
      - How many incomplete sets newer than the newest complete set to keep
        (the newest ones); older incomplete sets are always deleted.
    type: int
    default: 2
  prune_incomplete:
    description:
      - Also delete incomplete sets that are newer than the newest complete set
        (except an unfinished newest set, which may still be running), as
        O(keep_incomplete=0) does.
    type: bool
    default: false
  include_dumps:
    description:
      - Also apply the policy to loose dumps in O(path), separately for each
        database (each database's dumps form their own series). A loose dump is
        removed with its globals file and its manifest.
    type: bool
    default: false
notes:
  - At least one of O(keep_last), O(keep_daily), O(keep_weekly) and
    O(keep_monthly) must be above 0; a policy of all zeros is refused as a
    likely mistake (use O(keep_last=1) to keep only the newest set).
  - Run it after the backup, not during one; the scheduled backup job holds a
    lock, this module does not take it.
attributes:
  check_mode:
    support: full
    description: In check mode nothing is deleted; RV(deleted) lists what would be.
  diff_mode:
    support: full
    description: The diff lists the backups before and after, one name per line.
  idempotent:
    support: full
    description: A second run with the same policy deletes nothing and reports no change.
seealso:
  - module: nl_biomero.database.pg_backup_info
"""

EXAMPLES = r"""
- name: Keep a week of daily sets, 5 weekly and 12 monthly ones
  nl_biomero.database.pg_backup_retention:
    path: /var/backups/nl-biomero
    keep_daily: 7
    keep_weekly: 5
    keep_monthly: 12

- name: Show what a stricter policy would delete, without deleting
  nl_biomero.database.pg_backup_retention:
    path: /var/backups/nl-biomero
    keep_last: 3
    prune_incomplete: true
  check_mode: true
  diff: true
  register: would

- name: Also thin out loose pg_dump_container dumps, per database
  nl_biomero.database.pg_backup_retention:
    path: /var/backups/adhoc
    keep_last: 5
    include_dumps: true
"""

RETURN = r"""
path:
  description: The backup directory, as an absolute path.
  returned: always
  type: str
  sample: /var/backups/nl-biomero
policy:
  description: The policy that was applied.
  returned: success
  type: dict
  sample: {"keep_last": 0, "keep_daily": 7, "keep_weekly": 5, "keep_monthly": 12, "keep_incomplete": 2}
kept:
  description: The backups kept, newest first, each with every reason it is kept.
  returned: success
  type: list
  elements: dict
  sample:
    - type: set
      name: 2026-03-14T02-00-00Z
      path: /var/backups/nl-biomero/2026-03-14T02-00-00Z
      time: "2026-03-14T02:00:00Z"
      status: complete
      complete: true
      databases: [omero, biomero]
      reasons: [newest complete, daily 2026-03-14, weekly 2026-W11, monthly 2026-03]
future:
  description: Names of the backups dated in the future (kept, counted by no rule; see the warnings).
  returned: success
  type: list
  elements: str
deleted:
  description:
    - The backups deleted (in check mode, those that would be), newest first,
      each with the reason. On a failure, those deleted before it.
  returned: always
  type: list
  elements: dict
  sample:
    - type: set
      name: 2026-01-02T02-00-00Z
      path: /var/backups/nl-biomero/2026-01-02T02-00-00Z
      time: "2026-01-02T02:00:00Z"
      status: complete
      complete: true
      databases: [omero, biomero]
      reason: complete, not selected by keep_last/keep_daily/keep_weekly/keep_monthly
ignored:
  description: Entries left alone (loose dumps without O(include_dumps), entries without a usable time), with the reason.
  returned: success
  type: list
  elements: dict
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.nl_biomero.database.plugins.module_utils.backup_set import (
    BackupSetError,
    apply_retention,
)
from ansible_collections.nl_biomero.database.plugins.module_utils.errors import run_module
from ansible_collections.nl_biomero.database.plugins.module_utils.retention import (
    POLICY_KEYS,
    RetentionError,
    validate_keep_incomplete,
    validate_policy,
)


def _diff(path, plan):
    everything = sorted(item["name"] for item in plan["keep"] + plan["delete"])
    kept = sorted(item["name"] for item in plan["keep"])
    return {
        "before_header": path,
        "after_header": path,
        "before": "".join(name + "\n" for name in everything),
        "after": "".join(name + "\n" for name in kept),
    }


def _retention(params, check_mode, diff):
    path = os.path.abspath(params["path"])
    try:
        policy = validate_policy(**dict((key, params[key]) for key in POLICY_KEYS))
        policy["keep_incomplete"] = validate_keep_incomplete(params["keep_incomplete"])
    except RetentionError as exc:
        raise RetentionError(str(exc), result=dict(path=path, deleted=[]))
    try:
        plan = apply_retention(path, policy, prune_incomplete=params["prune_incomplete"],
                               include_dumps=params["include_dumps"], dry_run=check_mode)
    except BackupSetError as exc:
        deleted = getattr(exc, "deleted", [])
        raise BackupSetError("retention in %s: %s" % (path, exc), result=dict(path=path, changed=bool(deleted),
                                                                              deleted=deleted))
    except (RetentionError, OSError) as exc:
        raise RetentionError("retention in %s: %s" % (path, exc), result=dict(path=path, deleted=[]))
    result = dict(
        changed=bool(plan["delete"]),
        path=path,
        policy=policy,
        kept=plan["keep"],
        deleted=plan["delete"] if check_mode else plan["deleted"],
        ignored=plan["ignored"],
        future=[item["name"] for item in plan["keep"] if item.get("future")],
        warnings=plan["warnings"],
    )
    if diff:
        result["diff"] = _diff(path, plan)
    return result


def main():
    argument_spec = dict(
        path=dict(type="path", required=True),
        prune_incomplete=dict(type="bool", default=False),
        keep_incomplete=dict(type="int", default=2),
        include_dumps=dict(type="bool", default=False),
    )
    argument_spec.update((key, dict(type="int", default=0)) for key in POLICY_KEYS)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    run_module(module, lambda: _retention(module.params, module.check_mode, module._diff))


if __name__ == "__main__":
    main()
