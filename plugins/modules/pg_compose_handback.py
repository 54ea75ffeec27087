#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: pg_compose_handback
short_description: Hand a change of a database service back to its docker-compose project
version_added: 0.3.0
description:
  - Writes what the collection changed about a service of a docker-compose project (the new image after an
    upgrade, the new data volume, created outside compose and so declared C(external) under its real name) into
    an override file the project loads, so that the next C(docker-compose up -d) keeps it instead of
    re-creating the old service on the old volume.
  - The user's own files are never rewritten. When compose loads C(docker-compose.override.yml) by default
    (no C(COMPOSE_FILE) in the project's C(.env)) and the project has no override file, the hand-back is that
    file; otherwise it is C(docker-compose.nl-biomero.yml), added last to C(COMPOSE_FILE) in C(.env) after the
    files compose loaded before, in their order. Every file the collection writes starts with a marker line;
    a copy of any file changed or removed is kept as C(<file>.nlb-backup-<UTC stamp>).
  - O(state=absent) removes exactly what O(state=present) added for O(service) (the file goes when no service
    is left in it, and C(COMPOSE_FILE) is set back as it was).
  - The project is read the way docker-compose 1.29 reads it (C(.env), C(COMPOSE_FILE),
    C(COMPOSE_PATH_SEPARATOR), the default file names); a project directory without a compose file or a
    service it does not define is an error naming it, and nothing is changed.
author:
  - NL-BIOMERO database maintainers (@NL-BIOMERO)
options:
  project_dir:
    description: The compose project's directory (its C(com.docker.compose.project.working_dir) label).
    type: path
    required: true
  service:
    description: The compose service, for example V(database) or V(database-biomero).
    type: str
    required: true
  image:
    description: The image the service runs from now on.
    type: str
  volume:
    description: The data volume (its real name) the service mounts at O(data_dir) from now on.
    type: str
  previous_volume:
    description:
      - The data volume the project's own files give the service (the one O(volume) replaces); recorded in the
        hand-back and returned by O(state=absent) (RV(previous_volume)), so that a rollback can check it still
        exists before it gives the service back to the project's files.
    type: str
  data_dir:
    description: Where O(volume) is mounted in the container.
    type: str
    default: /var/lib/postgresql/data
  state:
    description: V(present) writes the hand-back of O(service); V(absent) removes it.
    type: str
    choices: [present, absent]
    default: present
attributes:
  check_mode:
    support: full
    description: Reports and diffs what would be written; fails as the real run would (no compose file,
      unknown service, a directory it may not write).
  diff_mode:
    support: full
    description: The override file and C(.env), before and after.
  idempotent:
    support: full
    description: The same hand-back again changes nothing.
notes:
  - Variables set only in the shell of whoever runs docker-compose are not seen; only the project's C(.env).
  - A new data directory that a mount of the old layout would sit inside (PostgreSQL 18 moved it) is refused.
seealso:
  - module: nl_biomero.database.pg_upgrade_preflight
"""

EXAMPLES = r"""
- name: Make the next docker-compose up keep the upgraded database
  nl_biomero.database.pg_compose_handback:
    project_dir: /opt/NL-BIOMERO
    service: database
    image: nl-biomero/postgres:17
    volume: nl-biomero_database-pg17

- name: Give the service back to the project's own compose files (rollback)
  nl_biomero.database.pg_compose_handback:
    project_dir: /opt/NL-BIOMERO
    service: database
    state: absent
"""

RETURN = r"""
file:
  description: The override file that holds (or held) the hand-back; null when there is none.
  returned: always
  type: str
backups:
  description: The copies kept of the files changed or removed.
  returned: always
  type: list
  elements: str
previous_volume:
  description: The O(previous_volume) the hand-back of O(service) recorded (before this task); null when none.
  returned: always
  type: str
compose_files:
  description: The files docker-compose loads for the project afterwards, in order.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nl_biomero.database.plugins.module_utils.compose import Handback
from ansible_collections.nl_biomero.database.plugins.module_utils.errors import run_module


def _run(module):
    result = Handback(**module.params).run(check_mode=module.check_mode)
    if not module._diff:
        result.pop("diff")
    return result


def main():
    module = AnsibleModule(argument_spec=dict(
        project_dir=dict(type="path", required=True), service=dict(type="str", required=True),
        image=dict(type="str"), volume=dict(type="str"), previous_volume=dict(type="str"), data_dir=dict(type="str", default="/var/lib/postgresql/data"),
        state=dict(type="str", choices=["present", "absent"], default="present")),
        required_if=[("state", "present", ("image", "volume"), True)], supports_check_mode=True)
    run_module(module, lambda: _run(module))


if __name__ == "__main__":
    main()
