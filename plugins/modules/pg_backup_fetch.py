#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: pg_backup_fetch
short_description: Bring a backup set back from an off-host copy
version_added: 0.1.0
description:
  - Copies a set the backup job copied off the host (option C(offsite) of
    M(nl_biomero.database.pg_backup_set), role variable C(postgres_backup_offsite)) back into
    O(backup_dir), for a restore when the local set is gone.
  - Every file must arrive with the sha256 the target stored and, decrypted with O(identity_file) when
    the copy is encrypted, give the plaintext sha256 recorded when it was copied. The set appears under
    its name only when all files did; nothing is left on failure.
  - A set that is already in O(backup_dir) is not fetched again (C(changed=false)).
author:
  - NL-BIOMERO database maintainers (@NL-BIOMERO)
options:
  backup_dir:
    description: Directory of the local backup sets.
    type: path
    required: true
  offsite:
    description:
      - The off-host targets, as in O(nl_biomero.database.pg_backup_set#module:offsite) (the role's
        C(postgres_backup_offsite)).
    type: list
    elements: dict
    required: true
  target:
    description: Name of the target in O(offsite) to fetch from.
    type: str
    required: true
  set:
    description: Name of the set (its UTC stamp); default the newest set stored at the target.
    type: str
  identity_file:
    description: The age identity (private key) file; needed for an encrypted copy, read only by C(age).
    type: path
  timeout:
    description: Seconds one file may take.
    type: int
    default: 43200
attributes:
  check_mode:
    support: full
    description: Reads the target's record of the set and reports what would be fetched.
  diff_mode:
    support: none
    description: No diff is returned.
  idempotent:
    support: full
    description: A set already in O(backup_dir) is left as it is.
seealso:
  - module: nl_biomero.database.pg_backup_set
  - module: nl_biomero.database.pg_backup_info
"""

EXAMPLES = r"""
- name: Fetch the newest set from the backup host, decrypting it
  nl_biomero.database.pg_backup_fetch:
    backup_dir: /var/backups/nl-biomero
    offsite: "{{ postgres_backup_offsite }}"
    target: vault
    identity_file: /root/restore-key.txt
"""

RETURN = r"""
set:
  description: Name of the set.
  returned: always
  type: str
path:
  description: Where the set is (or would be) in O(backup_dir).
  returned: always
  type: str
fetched:
  description: True when the set was copied back by this call.
  returned: always
  type: bool
files:
  description: Files of the set at the target.
  returned: when the set was fetched or would be
  type: int
encrypted:
  description: True when the copy at the target is encrypted.
  returned: when the set was fetched or would be
  type: bool
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.nl_biomero.database.plugins.module_utils.backup_config import offsite_targets
from ansible_collections.nl_biomero.database.plugins.module_utils.errors import run_module
from ansible_collections.nl_biomero.database.plugins.module_utils.offsite import fetch_module


def main():
    module = AnsibleModule(
        argument_spec=dict(
            backup_dir=dict(type="path", required=True),
            offsite=dict(type="list", elements="dict", required=True),
            target=dict(type="str", required=True),
            set=dict(type="str"),
            identity_file=dict(type="path"),
            timeout=dict(type="int", default=43200),
        ),
        supports_check_mode=True,
    )
    params = dict(module.params, backup_dir=os.path.abspath(module.params["backup_dir"]))
    run_module(module, lambda: fetch_module(params, offsite_targets(params["offsite"]), check_mode=module.check_mode))


if __name__ == "__main__":
    main()
