#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: pg_fingerprint
short_description: Row counts, sequence values, roles and smoke queries of a PostgreSQL container, compared
version_added: 0.1.0
description:
  - Reads a fingerprint of the server in a running PostgreSQL container; exact per-table row counts and
    sequence values of each database, the smoke query of the instance kind (OMERO C(SELECT count(*) FROM job),
    BIOMERO the importer table C(imports) and C(workflowtracker_events), each when the table exists) and the
    roles (without the predefined C(pg_*) roles).
  - Also the database-level properties of each database (owner, encoding, locale provider and locales,
    connection limit, ACL, comment, C(ALTER DATABASE ... SET) settings, settings of roles in the database) and,
    per role, its attributes, settings, memberships, comment and a digest of its password hash
    (sha256 of a random salt and the hash, computed in the server; the hash itself is never read out, and the
    digests are only there when O(login_user) is a superuser).
  - Settings that a write fence (M(nl_biomero.database.pg_write_fence)) put on a database are reported as they
    were before the fence, and C(write_fence) says that one is up.
  - With O(compare_to) (an earlier RV(fingerprint)), lists the differences; row counts, sequences, smoke
    counts and database properties must be equal, every earlier role must exist with the same attributes,
    settings, memberships and password (the digest is taken with the salt of O(compare_to); the bootstrap
    superuser's password is not compared, the image sets it anew), and no database may be write-fenced.
    The task fails on a difference unless O(fail_on_difference=false).
author:
  - NL-BIOMERO database maintainers (@NL-BIOMERO)
extends_documentation_fragment:
  - nl_biomero.database.container
  - nl_biomero.database.container.engine
options:
  databases:
    description: Databases to read. Default is every database that accepts connections, except templates.
    type: list
    elements: str
  kind:
    description: Instance kind, which selects the smoke queries.
    type: str
    choices: [auto, omero, biomero, none]
    default: auto
  compare_to:
    description: A fingerprint returned earlier by this module to compare with.
    type: dict
  fail_on_difference:
    description: Fail when O(compare_to) is given and there are differences.
    type: bool
    default: true
  row_counts:
    description:
      - Count the rows of every table (an exact C(count(*)) each). Without it the tables are neither counted nor
        compared, e.g. to check an instance again on the volume whose rows were just compared.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    description: The module only reads; it behaves the same in check mode.
  diff_mode:
    support: none
    description: Nothing is changed.
  idempotent:
    support: full
    description: Never changes anything.
notes:
  - Counting rows reads every table; on a large database this takes a while.
seealso:
  - module: nl_biomero.database.pg_upgrade_preflight
"""

EXAMPLES = r"""
- name: Fingerprint before
  nl_biomero.database.pg_fingerprint:
    container: database
    kind: omero
  register: before

- name: Compare after
  nl_biomero.database.pg_fingerprint:
    container: database
    kind: omero
    compare_to: "{{ before.fingerprint }}"
"""

RETURN = r"""
fingerprint:
  description: C(server_version), C(system_identifier), C(databases) (per database C(tables), C(sequences), C(smoke),
    C(properties), C(write_fence)), C(roles), C(role_properties), C(passwords_compared) and C(password_salt).
  returned: success
  type: dict
differences:
  description: Differences with O(compare_to), as sentences.
  returned: success
  type: list
  elements: str
matches:
  description: Whether the fingerprint equals O(compare_to) (true when nothing was compared).
  returned: success
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nl_biomero.database.plugins.module_utils.errors import run_module
from ansible_collections.nl_biomero.database.plugins.module_utils.pg_container import container_argument_spec
from ansible_collections.nl_biomero.database.plugins.module_utils.upgrade import fingerprint_result


def main():
    module = AnsibleModule(
        argument_spec=container_argument_spec(
            databases=dict(type="list", elements="str"),
            kind=dict(type="str", default="auto", choices=["auto", "omero", "biomero", "none"]),
            compare_to=dict(type="dict"),
            fail_on_difference=dict(type="bool", default=True),
            row_counts=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    run_module(module, lambda: fingerprint_result(**module.params))


if __name__ == "__main__":
    main()
