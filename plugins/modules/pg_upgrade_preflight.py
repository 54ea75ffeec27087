#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: pg_upgrade_preflight
short_description: Decide whether and how a PostgreSQL container can move to a new major version
version_added: 0.1.0
description:
  - Reads, and never changes, everything a major-version upgrade of the PostgreSQL container O(container) to
    the image O(target_image) depends on, and decides.
  - The running major (C(server_version_num)) and the target image's major (its E(PG_MAJOR), else
    C(postgres --version) in a throwaway container). A target newer than the running major gives
    RV(action=upgrade); an equal one gives RV(action=noop) (already upgraded) unless O(allow_same_major=true)
    (a rebuild); an older one is a problem.
  - For an upgrade, also checks that the target image is present, that the extensions used in each database
    are shipped by the target image, that the C(-c) settings on the container's command line are known to the
    target server (C(postgres --describe-config)), that there is free disk for the new volume and the dump
    (estimated from C(pg_database_size) times O(disk_margin)), that the client containers exist, that the
    name the old container will get and the new volume are free, that the cluster has no tablespaces, and
    that the old container can be cloned faithfully and safely (no setting M(community.docker.docker_container)
    cannot give the new container, no C(auto_remove), no mount inside the data mount, no
    E(POSTGRES_INITDB_WALDIR) outside it).
  - Returns the specification of the new container (RV(spec)), cloned from the old container's inspect
    data, for M(community.docker.docker_container); everything the old container set except the image, the
    data mount and the upgrade's labels (the major label says the new major). Environment values are not
    returned, only their names.
  - Fails, listing all problems, when any check fails. Checks that could not be made are returned as warnings.
author:
  - NL-BIOMERO database maintainers (@NL-BIOMERO)
extends_documentation_fragment:
  - nl_biomero.database.container
  - nl_biomero.database.container.engine
options:
  target_image:
    description: Image of the new PostgreSQL major version (official postgres image contract).
    type: str
    required: true
  strategy:
    description: How the data will move (changes the disk estimate); see the C(postgres_upgrade) role.
    type: str
    choices: [dump_restore, pipe, logical]
    default: dump_restore
  dump_dir:
    description: Directory on the host for the dump (O(strategy=dump_restore)); its free space is checked.
    type: path
  clients:
    description: Names of the client containers that will be stopped during the upgrade.
    type: list
    elements: str
    default: []
  allow_same_major:
    description: Treat a target of the running major version as an upgrade (a rebuild) instead of a no-op.
    type: bool
    default: false
  disk_margin:
    description: Factor applied to the size of the databases to estimate the new volume (and half of it the dump).
    type: float
    default: 1.5
  data_dir:
    description:
      - Mount point of the data volume in the old and the new container.
      - By default the old container's data mount is the mount holding its E(PGDATA), and the new volume is
        mounted where the official image of the target major keeps its data (V(/var/lib/postgresql/data) before
        18, V(/var/lib/postgresql) from 18 on).
    type: str
  check_extensions:
    description: Check that the target image ships the extensions in use.
    type: bool
    default: true
  check_settings:
    description: Check that the command-line settings are known to the target major.
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
  - Starts short-lived containers of O(target_image) without network and never pulled (C(--rm --pull never)) to
    read its version, settings and extension files.
seealso:
  - module: nl_biomero.database.pg_fingerprint
"""

EXAMPLES = r"""
- name: Can the OMERO database move to PostgreSQL 17?
  nl_biomero.database.pg_upgrade_preflight:
    container: database
    target_image: postgres:17
    clients: [omeroserver, omeroweb]
    dump_dir: /srv/upgrade
  register: plan
"""

RETURN = r"""
action:
  description: V(upgrade) or V(noop) (already at the target major).
  returned: success
  type: str
current_major:
  description: Major version of the running server.
  returned: success
  type: int
target_major:
  description: Major version of the target image.
  returned: success
  type: int
name:
  description: Name of the instance (container name).
  returned: when RV(action=upgrade)
  type: str
old_name:
  description: Name the old container gets when it is set aside.
  returned: when RV(action=upgrade)
  type: str
old_volume:
  description: The old data volume (or bind-mount source), never modified.
  returned: when RV(action=upgrade)
  type: str
new_volume:
  description: Volume of the new instance, named after the target major.
  returned: when RV(action=upgrade)
  type: str
databases:
  description: Databases to move with their size in bytes.
  returned: when RV(action=upgrade)
  type: dict
disk:
  description: Estimate and free space (bytes).
  returned: when RV(action=upgrade)
  type: dict
clients:
  description: Client containers and their status.
  returned: when RV(action=upgrade)
  type: dict
spec:
  description:
    - Parameters for M(community.docker.docker_container) of the new instance (C(env_names) lists the
      variables to take over; their values are not returned).
    - C(staging) holds the staging container's C(command) (the old settings that name no file, and
      C(archive_mode=off)), C(mounts) (the new volume only) and C(file_env) (the C(<name>_FILE) variables
      whose files are handed over by value, as the staging container has none of the old mounts).
  returned: when RV(action=upgrade)
  type: dict
compose:
  description:
    - For a container made by docker-compose (its C(com.docker.compose.*) labels), the project (C(project),
      C(service), C(working_dir), C(config_files), C(number)) and C(data_dir), the new data directory the
      hand-back mounts the new volume at; null otherwise.
    - The project must take the hand-back (M(nl_biomero.database.pg_compose_handback) in check mode); a
      project directory that is missing, without a compose file or not writable, a service it does not
      define, or containers made with other files or another project name than the directory gives are
      problems.
  returned: when RV(action=upgrade)
  type: dict
problems:
  description: Why the upgrade cannot go ahead (the module fails when not empty).
  returned: always
  type: list
  elements: str
empty_databases:
  description: Databases without any objects (created empty in the new cluster instead of dumped).
  returned: when RV(action=upgrade)
  type: list
  elements: str
database_owners:
  description: Owner of each database.
  returned: when RV(action=upgrade)
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nl_biomero.database.plugins.module_utils.errors import run_module
from ansible_collections.nl_biomero.database.plugins.module_utils.pg_container import container_argument_spec
from ansible_collections.nl_biomero.database.plugins.module_utils.upgrade import preflight_result


def main():
    module = AnsibleModule(
        argument_spec=container_argument_spec(
            target_image=dict(type="str", required=True),
            strategy=dict(type="str", default="dump_restore", choices=["dump_restore", "pipe", "logical"]),
            dump_dir=dict(type="path"),
            clients=dict(type="list", elements="str", default=[]),
            allow_same_major=dict(type="bool", default=False),
            disk_margin=dict(type="float", default=1.5),
            data_dir=dict(type="str"),
            check_extensions=dict(type="bool", default=True),
            check_settings=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    run_module(module, lambda: preflight_result(**module.params))


if __name__ == "__main__":
    main()
