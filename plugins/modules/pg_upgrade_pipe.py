#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: pg_upgrade_pipe
short_description: Stream databases from one PostgreSQL container into another, without an intermediate file
version_added: 0.1.0
description:
  - The C(pipe) strategy of the C(postgres_upgrade) role. For each database, C(pg_dump --format=custom
    --compress=0) runs in O(container) and its output is streamed through an OS pipe into
    C(pg_restore --exit-on-error) running in O(target_container) (both through C(docker exec) or C(podman exec)).
    Nothing is written to disk and nothing is held in memory; the source volume is the safety copy.
  - First copies the roles and tablespaces the target lacks (C(pg_dumpall --globals-only), existing roles such as
    the target's superuser are left alone).
  - A database missing in the target is created (C(template0), the source's encoding and locale, owner from
    O(owners)); an existing one must be empty (as the one the image creates from E(POSTGRES_DB)). Each restored
    database is analyzed.
  - Then the database-level properties of each database are carried, in one transaction (read from
    C(pg_dump --create --schema-only) of the source, only the database's own statements kept) - owner,
    connection limit, ACL (for example C(REVOKE CONNECT ... FROM PUBLIC)), comment, C(ALTER DATABASE ... SET)
    settings and C(ALTER ROLE ... IN DATABASE ... SET) settings. A write fence of the source
    (M(nl_biomero.database.pg_write_fence)) that came with them is lifted in the target.
  - O(properties_only) get only their properties from the source (created the same way, without data, when the
    target lacks them) - databases without objects, or databases another tool restored in place.
  - Fails with the tool's error output on the first database that fails; what was restored stays in the target
    (the role discards the whole target on failure).
author:
  - NL-BIOMERO database maintainers (@NL-BIOMERO)
extends_documentation_fragment:
  - nl_biomero.database.container
  - nl_biomero.database.container.engine
options:
  target_container:
    description: The running container of the new server (same O(login_user) and O(login_password)).
    type: str
    required: true
  databases:
    description: Databases to move, in this order.
    type: list
    elements: str
    required: true
  owners:
    description: Owner per database for the databases the module creates.
    type: dict
    default: {}
  globals:
    description: Copy the missing roles and tablespaces first.
    type: bool
    default: true
  maintenance_work_mem:
    description: C(maintenance_work_mem) of the restoring session (index builds).
    type: str
  schema_only:
    description:
      - Move only the definitions of O(databases) (C(pg_dump --schema-only)), no rows, for the C(logical) strategy
        where logical replication brings the rows. Their properties are carried all the same.
    type: bool
    default: false
  properties_only:
    description:
      - Databases whose database-level properties only are carried, after O(databases); one the target lacks is
        created without data. Applying them again to a database that has them changes nothing.
    type: list
    elements: str
    default: []
attributes:
  check_mode:
    support: none
    description: The role only calls it outside check mode.
  diff_mode:
    support: none
    description: Not applicable.
  idempotent:
    support: none
    description: Every run restores again (and fails when the target databases are not empty).
seealso:
  - module: nl_biomero.database.pg_dump_container
  - module: nl_biomero.database.pg_restore_container
  - module: nl_biomero.database.pg_write_fence
"""

EXAMPLES = r"""
- name: Move the OMERO database from the 15 container to the 17 one
  nl_biomero.database.pg_upgrade_pipe:
    container: database
    target_container: database-pg17-staging
    databases: [omero]
"""

RETURN = r"""
databases:
  description: Per database (O(databases), then O(properties_only)), the bytes streamed, the seconds it took and
    the number of C(properties) statements applied.
  returned: success
  type: list
  elements: dict
bytes:
  description: Bytes streamed in total (uncompressed custom-format archive).
  returned: success
  type: int
globals:
  description: Roles and tablespaces created and left alone.
  returned: success
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nl_biomero.database.plugins.module_utils.errors import run_module
from ansible_collections.nl_biomero.database.plugins.module_utils.pg_container import container_argument_spec
from ansible_collections.nl_biomero.database.plugins.module_utils.upgrade import pipe_result


def main():
    module = AnsibleModule(
        argument_spec=container_argument_spec(
            target_container=dict(type="str", required=True),
            databases=dict(type="list", elements="str", required=True),
            owners=dict(type="dict", default={}),
            globals=dict(type="bool", default=True),
            maintenance_work_mem=dict(type="str"),
            properties_only=dict(type="list", elements="str", default=[]),
            schema_only=dict(type="bool", default=False),
        ),
        supports_check_mode=False,
    )
    run_module(module, lambda: pipe_result(**module.params))


if __name__ == "__main__":
    main()
