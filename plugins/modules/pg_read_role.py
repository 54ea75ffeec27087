#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: pg_read_role
short_description: Keep a read-only login role (Metabase, analysis) in a PostgreSQL container
version_added: 0.3.0
description:
  - Makes O(name) a LOGIN role without superuser, CREATEROLE, CREATEDB, REPLICATION or BYPASSRLS, a member of
    C(pg_read_all_data) (SELECT on every table, view and sequence of every database, tables created later
    included), with C(default_transaction_read_only=on).
  - Its password is set as M(nl_biomero.database.pg_role_password) does (a SCRAM verifier computed by the module,
    kept out of the server log, verified by a fresh login over TCP).
  - An existing role of that name with more rights is refused, not changed. PostgreSQL before 14 (no
    C(pg_read_all_data)) is refused.
  - With O(member_of=pg_monitor) the role is the metrics exporter's login instead, a member of C(pg_monitor)
    (statistics and settings, no table data); an existing role of that name that reads all data is refused.
author:
  - NL-BIOMERO database maintainers (@NL-BIOMERO)
extends_documentation_fragment:
  - nl_biomero.database.container
  - nl_biomero.database.container.engine
options:
  name:
    description: The read-only role.
    type: str
    required: true
  password:
    description: Its password (refused when empty, with a NUL character or leading or trailing white space).
    type: str
    required: true
  login_db:
    description: Database of the verifying login. Default the container's E(POSTGRES_DB).
    type: str
  container_network:
    description: Network whose address of the container the verifying login uses. Default the first with an address.
    type: str
  connect_timeout:
    description: Seconds the verifying login may take to connect.
    type: int
    default: 10
  member_of:
    description:
      - The predefined role granted. V(pg_read_all_data) reads every table; V(pg_monitor) reads statistics and
        settings only (the metrics exporter).
    type: str
    choices: [pg_read_all_data, pg_monitor]
    default: pg_read_all_data
attributes:
  check_mode:
    support: full
    description: Says whether the role, its membership, setting or password would change.
  diff_mode:
    support: none
    description: Not implemented.
  idempotent:
    support: full
    description: A role that is as described is left alone.
seealso:
  - module: nl_biomero.database.pg_role_password
"""

EXAMPLES = r"""
- name: A read-only role for Metabase in the BIOMERO DB
  nl_biomero.database.pg_read_role:
    container: database-biomero
    name: metabase
    password: "{{ vault_metabase_db_password }}"

- name: The metrics exporter's login in the OMERO DB (pg_monitor only)
  nl_biomero.database.pg_read_role:
    container: database
    name: nlb_monitor
    password: "{{ vault_monitor_db_password }}"
    member_of: pg_monitor
"""

RETURN = r"""
container:
  description: The container.
  returned: always
  type: str
role:
  description: The read-only role.
  returned: always
  type: str
created:
  description: The role was (or would be) created.
  returned: always
  type: bool
member_of:
  description: The predefined role the role is a member of.
  returned: always
  type: str
granted:
  description: Membership of O(member_of) was (or would be) granted.
  returned: always
  type: bool
password_changed:
  description: The password was set.
  returned: when not in check mode
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.nl_biomero.database.plugins.module_utils.errors import run_module
from ansible_collections.nl_biomero.database.plugins.module_utils.pg_container import container_argument_spec
from ansible_collections.nl_biomero.database.plugins.module_utils.read_role import read_role_result


def main():
    module = AnsibleModule(
        argument_spec=container_argument_spec(
            name=dict(type="str", required=True),
            password=dict(type="str", required=True, no_log=True),
            login_db=dict(type="str"),
            container_network=dict(type="str"),
            connect_timeout=dict(type="int", default=10),
            member_of=dict(type="str", default="pg_read_all_data", choices=["pg_read_all_data", "pg_monitor"]),
        ),
        supports_check_mode=True,
    )
    run_module(module, lambda: read_role_result(check_mode=module.check_mode, **module.params))


if __name__ == "__main__":
    main()
