#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: pg_restore_test
short_description: Restore-test a backup set in throwaway containers and compare row counts
version_added: 0.1.0
description:
  - Restores each database of a backup set (default the newest complete set
    under O(backup_dir)) into a new container of the image it was dumped from
    (its own volume, no network), with the archive's checksum verified and its
    globals restored, and compares the per-table row counts with those the
    set recorded at backup time (M(nl_biomero.database.pg_backup_set)).
  - Records the outcome in the set manifest (C(restore_test), shown by
    M(nl_biomero.database.pg_backup_info)) and, with O(metrics_file), in the
    Prometheus textfile metrics (C(nl_biomero_backup_restore_test_success)).
  - The throwaway containers and volumes are removed in every case.
  - Holds the backup job's lock (O(lock_file)) for its whole duration, so the
    scheduled job does not start a backup meanwhile; when a backup run (or an
    upgrade, a restore) holds it, waits up to O(lock_wait) seconds, then fails
    naming the holder, having restored nothing.
  - Fails when a database cannot be restored or its row counts differ.
author:
  - NL-BIOMERO database maintainers (@NL-BIOMERO)
extends_documentation_fragment:
  - nl_biomero.database.container.engine
options:
  backup_dir:
    description: Directory holding the backup sets.
    type: path
    required: true
  set:
    description: Name (UTC stamp) or path of the set to test; default the newest complete set.
    type: str
  components:
    description: Only these database components of the set; default all.
    type: list
    elements: str
  timeout:
    description: Seconds a throwaway container gets to start.
    type: int
    default: 180
  metrics_file:
    description: Prometheus textfile to rewrite from the catalogue afterwards.
    type: path
  lock_file:
    description:
      - The backup job's lock file; default C(<backup_dir>/.nl-biomero-backup.lock), as the job's.
      - Its directory must be writable by its owner only.
    type: path
  lock_wait:
    description: Seconds to wait for the lock before failing.
    type: int
    default: 600
attributes:
  check_mode:
    support: none
    description: The restore test always runs (it changes only throwaway containers and the set manifest).
  diff_mode:
    support: none
    description: No diff is returned.
  idempotent:
    support: none
    description: Every run restores again and records a new result in the manifest.
seealso:
  - module: nl_biomero.database.pg_backup_set
"""

EXAMPLES = r"""
- name: Restore-test the newest complete set
  nl_biomero.database.pg_restore_test:
    backup_dir: /var/backups/nl-biomero
    metrics_file: /var/lib/prometheus/node-exporter/nl_biomero_backup.prom
"""

RETURN = r"""
set:
  description: Path of the tested set.
  returned: when a set was tested
  type: str
restorable:
  description: True when every database restored with row counts equal to the recorded ones.
  returned: when a set was tested
  type: bool
lock_file:
  description: The backup job's lock file that was held.
  returned: when a set was tested
  type: str
databases:
  description: Per database component, the outcome (ok, error, tables, rows, mismatches, image).
  returned: when a set was tested
  type: list
  elements: dict
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.nl_biomero.database.plugins.module_utils.backup_config import LOCK_NAME
from ansible_collections.nl_biomero.database.plugins.module_utils.backup_metrics import metrics_text, write_metrics_file
from ansible_collections.nl_biomero.database.plugins.module_utils.backup_run import restore_test_module
from ansible_collections.nl_biomero.database.plugins.module_utils.engine import engine_argument_spec
from ansible_collections.nl_biomero.database.plugins.module_utils.errors import NlbError, run_module
from ansible_collections.nl_biomero.database.plugins.module_utils.job_lock import JobLock

HOLDER = "pg_restore_test"


def _run(params):
    """The restore test under the backup job's lock; the metrics rewritten from what is on disk, pass or fail."""
    if params["lock_wait"] < 0:
        raise NlbError("lock_wait=%s is out of range; accepted: 0 or more seconds" % params["lock_wait"])
    backup_dir = os.path.abspath(params["backup_dir"])
    lock_file = params["lock_file"] or os.path.join(backup_dir, LOCK_NAME)
    with JobLock(lock_file, HOLDER, wait=params["lock_wait"]):
        result = restore_test_module(backup_dir, set=params["set"], components=params["components"],
                                     engine=params["engine"], timeout=params["timeout"])
        if params["metrics_file"]:
            write_metrics_file(params["metrics_file"], metrics_text(backup_dir, lock_file=lock_file))
    return dict(result, lock_file=lock_file)


def main():
    argument_spec = dict(
        backup_dir=dict(type="path", required=True),
        set=dict(type="str"),
        components=dict(type="list", elements="str"),
        timeout=dict(type="int", default=180),
        metrics_file=dict(type="path"),
        lock_file=dict(type="path"),
        lock_wait=dict(type="int", default=600),
    )
    argument_spec.update(engine_argument_spec())
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=False)
    run_module(module, lambda: _run(module.params))


if __name__ == "__main__":
    main()
