#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: pg_stack
short_description: A named test stack (OMERO DB + BIOMERO DB) for CI pipelines, seeded, with connection files; teardown and sweep
version_added: 0.2.0
description:
  - With O(state=present), creates the stack O(name) when it does not exist - a network C(<name>-net), the
    containers C(<name>-omero-db) and C(<name>-biomero-db) on it (network aliases C(database) and
    C(database-biomero), the names NL-BIOMERO's clients use), every resource labelled
    C(nl-biomero.database.stack=<name>) and C(nl-biomero.database.stack-created=<epoch seconds>) - waits until both
    servers answer over TCP, restores the seeds, and writes the connection files C(<files_dir>/<name>.json) and
    C(<files_dir>/<name>.env) (mode 0600, atomically).
  - A stack that exists and runs is left alone; its connection files are rewritten when they differ.
  - A create that fails removes everything it made (found by the labels) before it reports.
  - With O(state=absent), removes the stack's containers, volumes, network and connection files.
  - With O(max_age), removes every stack whose creation label is older than that many hours (not O(name)).
author:
  - NL-BIOMERO database maintainers (@NL-BIOMERO)
extends_documentation_fragment:
  - nl_biomero.database.container.engine
options:
  name:
    description:
      - The stack name, the prefix of every resource name; 1 to 48 letters, digits, C(_), C(.) or C(-), starting
        with a letter or a digit.
      - Required unless O(max_age) is given.
    type: str
  state:
    description: V(present) creates the stack; V(absent) removes it.
    type: str
    choices: [present, absent]
    default: present
  image:
    description: PostgreSQL image of both instances; it must be on the host (never pulled).
    type: str
    default: nl-biomero/postgres:17
  ephemeral:
    description:
      - V(true) keeps the data on tmpfs and runs with C(fsync=off), C(synchronous_commit=off) and
        C(full_page_writes=off) - for tests only, never for real data; the task warns about it.
      - V(false) keeps the data in the volumes C(<name>-omero-data) and C(<name>-biomero-data).
    type: bool
    default: true
  tmpfs_size:
    description: Size limit of each instance's tmpfs in ephemeral mode.
    type: str
    default: 1g
  shm_size:
    description: Shared memory of each container.
    type: str
    default: 256m
  publish:
    description: Publish the servers' port on the host (O(publish_address)); V(false) publishes none (clients
      connect on the stack network, or to the container addresses the files give).
    type: bool
    default: true
  publish_address:
    description: Host address the ports are published on.
    type: str
    default: 127.0.0.1
  omero_port:
    description: Host port of the OMERO DB; V(0) lets the engine pick a free one (no races between stacks).
    type: int
    default: 0
  biomero_port:
    description: Host port of the BIOMERO DB; V(0) lets the engine pick a free one.
    type: int
    default: 0
  omero_user:
    description: Superuser (C(POSTGRES_USER)) of the OMERO DB.
    type: str
    default: omero
  omero_database:
    description: Database of the OMERO DB.
    type: str
    default: omero
  omero_password:
    description: Password of O(omero_user); generated (24 letters and digits) when not given.
    type: str
  biomero_user:
    description: Superuser of the BIOMERO DB.
    type: str
    default: biomero
  biomero_database:
    description: Database of the BIOMERO DB.
    type: str
    default: biomero
  biomero_password:
    description: Password of O(biomero_user); generated when not given.
    type: str
  omero_seed:
    description:
      - "A file restored into O(omero_database) after start through the verified restore path (module
        M(nl_biomero.database.pg_restore_container)): a dump of the collection (its manifest checksum is verified),
        any C(pg_dump) archive (custom or tar), or a plain SQL script (C(.sql) or C(.sql.gz))."
      - The archive's owners and privileges are not restored; O(omero_user) owns what it restores (a test stack
        has no other roles).
      - Not given, the database stays empty.
    type: path
  biomero_seed:
    description: Like O(omero_seed), for O(biomero_database).
    type: path
  seed_cache:
    description:
      - Keep the seeded cluster of each seed (a C(pg_basebackup) tar in O(cache_dir)) and start the next stack of
        the same seed, image, user and database from it instead of restoring again; that stack gets its own
        password. A seed file that changes (size or modification time) gets a new cluster.
    type: bool
    default: true
  cache_dir:
    description: Directory of the prepared clusters (0700; files 0600). They hold the seeds' data; remove them
      when the seeds go.
    type: path
    default: ~/.cache/nl-biomero/stack-seeds
  settings:
    description: Extra server settings (C(-c name=value)) of both instances; they win over the ephemeral ones.
    type: dict
  files_dir:
    description: Directory of the connection files (created 0700 when missing).
    type: path
    default: ~/.cache/nl-biomero/stacks
  wait_timeout:
    description: Seconds to wait for the servers to accept connections.
    type: int
    default: 120
  max_age:
    description: Remove every stack on the host whose creation label is older than this many hours (a sweep for
      pipelines that died before their teardown). The stack O(name) itself is never swept.
    type: float
  show_secrets:
    description: Return the passwords (and URLs carrying them) in RV(connection); off by default.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Reports what would be created, rewritten or removed.
  diff_mode:
    support: none
    description: Not implemented.
  idempotent:
    support: full
    description: A running stack is left as it is; removing a missing stack changes nothing.
notes:
  - Ephemeral stacks lose their data when a container stops; that is their point.
seealso:
  - module: nl_biomero.database.pg_restore_container
"""

EXAMPLES = r"""
- name: A stack for this pipeline, seeded from last night's OMERO dump
  nl_biomero.database.pg_stack:
    name: pr-1234
    omero_seed: /srv/backups/omero.2026-12-01T02-00-00Z.pg_dump
  register: stack

- name: Remove it
  nl_biomero.database.pg_stack:
    name: pr-1234
    state: absent

- name: Remove stacks of pipelines that died more than 6 hours ago
  nl_biomero.database.pg_stack:
    max_age: 6
"""

RETURN = r"""
stack:
  description: The stack name (null for a sweep alone).
  returned: always
  type: str
network:
  description: The stack's network.
  returned: when O(name) is given
  type: str
containers:
  description: The stack's container names.
  returned: when O(name) is given
  type: list
  elements: str
files:
  description: Paths of the connection files (keys C(json) and C(env)).
  returned: when O(state=present)
  type: dict
connection:
  description: The content of the JSON connection file; passwords only with O(show_secrets).
  returned: when O(state=present) and not in check mode for a new stack
  type: dict
ephemeral:
  description: Whether the stack runs in ephemeral mode.
  returned: when O(state=present)
  type: bool
ready_seconds:
  description: Seconds from the first engine call to both servers accepting connections (new stack).
  returned: when a stack was created
  type: float
seconds:
  description: Seconds the creation took, seeds and files included.
  returned: when a stack was created
  type: float
seeded:
  description: Per role, the restored seed (src, format, rows, checksum_verified) and C(prepared_cluster), the
    cached cluster it was kept in or started from.
  returned: when a stack was created
  type: dict
removed:
  description: Names of the resources and files removed (O(state=absent)).
  returned: when O(state=absent)
  type: list
  elements: str
swept:
  description: Stack name -> resources removed by the O(max_age) sweep.
  returned: when O(max_age) is given
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.nl_biomero.database.plugins.module_utils.engine import engine_argument_spec
from ansible_collections.nl_biomero.database.plugins.module_utils.errors import run_module
from ansible_collections.nl_biomero.database.plugins.module_utils.stack import stack_result


def main():
    spec = engine_argument_spec()
    spec.update(
        name=dict(type="str"),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        image=dict(type="str", default="nl-biomero/postgres:17"),
        ephemeral=dict(type="bool", default=True),
        tmpfs_size=dict(type="str", default="1g"),
        shm_size=dict(type="str", default="256m"),
        publish=dict(type="bool", default=True),
        publish_address=dict(type="str", default="127.0.0.1"),
        omero_port=dict(type="int", default=0),
        biomero_port=dict(type="int", default=0),
        omero_user=dict(type="str", default="omero"),
        omero_database=dict(type="str", default="omero"),
        omero_password=dict(type="str", no_log=True),
        biomero_user=dict(type="str", default="biomero"),
        biomero_database=dict(type="str", default="biomero"),
        biomero_password=dict(type="str", no_log=True),
        omero_seed=dict(type="path"),
        biomero_seed=dict(type="path"),
        settings=dict(type="dict"),
        files_dir=dict(type="path", default="~/.cache/nl-biomero/stacks"),
        wait_timeout=dict(type="int", default=120),
        max_age=dict(type="float"),
        show_secrets=dict(type="bool", default=False),
        seed_cache=dict(type="bool", default=True),
        cache_dir=dict(type="path", default="~/.cache/nl-biomero/stack-seeds"),
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    run_module(module, lambda: stack_result(check_mode=module.check_mode, **module.params))


if __name__ == "__main__":
    main()
