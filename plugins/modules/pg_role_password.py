#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: pg_role_password
short_description: Set a role's password in a PostgreSQL container (SCRAM, verified by a fresh login) and list md5-hashed roles
version_added: 0.3.0
description:
  - Reads C(pg_authid) through the container's local socket and warns about roles whose stored password is an md5
    hash (PostgreSQL 18 deprecates md5, and C(scram-sha-256) lines in C(pg_hba.conf) refuse such roles).
  - With O(password), stores the SCRAM-SHA-256 verifier of that password for O(user), computed by the module (the
    way C(psql)'s C(\password) does), in a session that sets C(log_statement=none) and
    C(log_min_error_statement=panic) for itself; neither the password nor its verifier reaches the server log, a
    command line or the result.
  - Then logs in afresh over TCP, at the container's network address, with the new password. When that login
    fails, the previous stored value is put back unchanged (the old password works again) and the task fails.
  - PostgreSQL keeps one password per role, so the old password stops working when the new one is stored, and it is
    restored when the new one cannot be verified.
author:
  - NL-BIOMERO database maintainers (@NL-BIOMERO)
extends_documentation_fragment:
  - nl_biomero.database.container
  - nl_biomero.database.container.engine
options:
  user:
    description: The role whose password is set. Default the container's E(POSTGRES_USER) (the superuser).
    type: str
  password:
    description:
      - The new password. Without it the module only lists md5-hashed roles.
      - Refused when empty, with a NUL character, or with leading or trailing white space.
    type: str
  rehash_md5:
    description:
      - When O(user)'s stored md5 hash already is the one of O(password), store it again as SCRAM-SHA-256
        (the opt-in fix of md5 roles). Without it such a role is left as it is, with a warning.
    type: bool
    default: false
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
attributes:
  check_mode:
    support: full
    description: Says whether the password would be set; nothing is stored.
  diff_mode:
    support: none
    description: Not implemented.
  idempotent:
    support: full
    description: A role whose stored verifier already is the one of O(password) is left alone (no login attempt).
notes:
  - The verifying login needs the Python library psycopg2 (or psycopg) on the managed host, as community.postgresql.
  - A role with NOLOGIN is refused (its password cannot be verified).
seealso:
  - module: community.postgresql.postgresql_user
"""

EXAMPLES = r"""
- name: Rotate the OMERO DB superuser's password
  nl_biomero.database.pg_role_password:
    container: database
    password: "{{ vault_omero_db_password }}"
  no_log: true

- name: List roles with md5-hashed passwords (warnings)
  nl_biomero.database.pg_role_password:
    container: database-biomero
"""

RETURN = r"""
container:
  description: The container.
  returned: always
  type: str
role:
  description: The role whose password was checked or set.
  returned: always
  type: str
md5_roles:
  description: Roles that store md5-hashed passwords (after the change).
  returned: always
  type: list
  elements: str
previous_hash:
  description: What the role stored before, V(scram), V(md5), V(none) or V(plain).
  returned: when O(password) is given
  type: str
verified:
  description: The fresh TCP login with the new password worked.
  returned: when the password was set
  type: bool
restored:
  description: The new password failed verification and the previous stored value was put back.
  returned: on that failure
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.nl_biomero.database.plugins.module_utils.errors import run_module
from ansible_collections.nl_biomero.database.plugins.module_utils.pg_container import container_argument_spec
from ansible_collections.nl_biomero.database.plugins.module_utils.role_password import role_password_result


def main():
    module = AnsibleModule(
        argument_spec=container_argument_spec(
            user=dict(type="str"),
            password=dict(type="str", no_log=True),
            rehash_md5=dict(type="bool", default=False),
            login_db=dict(type="str"),
            container_network=dict(type="str"),
            connect_timeout=dict(type="int", default=10),
        ),
        supports_check_mode=True,
    )
    run_module(module, lambda: role_password_result(check_mode=module.check_mode, **module.params))


if __name__ == "__main__":
    main()
