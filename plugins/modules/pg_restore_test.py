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
databases:
  description: Per database component, the outcome (ok, error, tables, rows, mismatches, image).
  returned: when a set was tested
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.nl_biomero.database.plugins.module_utils.backup_run import restore_test_module
from ansible_collections.nl_biomero.database.plugins.module_utils.engine import engine_argument_spec
from ansible_collections.nl_biomero.database.plugins.module_utils.errors import run_module


def main():
    argument_spec = dict(
        backup_dir=dict(type="path", required=True),
        set=dict(type="str"),
        components=dict(type="list", elements="str"),
        timeout=dict(type="int", default=180),
        metrics_file=dict(type="path"),
    )
    argument_spec.update(engine_argument_spec())
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=False)
    run_module(module, lambda: restore_test_module(**module.params))


if __name__ == "__main__":
    main()
