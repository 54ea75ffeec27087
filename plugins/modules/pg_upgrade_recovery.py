#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: pg_upgrade_recovery
short_description: Recognise what an interrupted or finished upgrade of a PostgreSQL container left, and the way back
version_added: 0.2.0
description:
  - Reads, and never changes, the containers and volumes of the instance O(container) and the journal the
    C(postgres_upgrade) role writes before an upgrade changes anything, and says how to bring the old instance
    back.
  - Recognises every state an upgrade can be interrupted in (a killed play, a host reboot); the staging container
    up, the clients stopped, the old container stopped (RV(step=before_swap)); the old container renamed to
    C(<name>-pg<old major>) but no new one (V(set_aside)); the new container created (V(new_created)) or started
    but not verified (V(new_started)). With a journal the upgrade is under way (RV(state=interrupted)); without
    one, a container made by an upgrade is a finished upgrade (V(finished)), left alone unless O(rollback=true).
  - The way back; containers to remove (RV(remove)), the old container to get its name back (RV(rename)) and
    be started (RV(start)), the new volume no container keeps using (RV(volumes)), the clients the interrupted
    run stopped (RV(clients)). The task fails, naming why, when there is no old instance to go back to.
author:
  - NL-BIOMERO database maintainers (@NL-BIOMERO)
extends_documentation_fragment:
  - nl_biomero.database.container.engine
options:
  container:
    description: Name of the instance's container (the name the old instance has, and gets back).
    type: str
    required: true
  journal:
    description: The upgrade's journal file on the host (absent when no upgrade is under way).
    type: path
  rollback:
    description: Also plan the way back from a finished upgrade (rollback on demand).
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Reads only, in check mode too.
  diff_mode:
    support: none
    description: Nothing is changed.
  idempotent:
    support: full
    description: Reads only.
seealso:
  - module: nl_biomero.database.pg_upgrade_preflight
"""

EXAMPLES = r"""
- name: Find out what a killed upgrade left of the OMERO DB
  nl_biomero.database.pg_upgrade_recovery:
    container: database
    journal: /var/backups/nl-biomero/upgrade/state/database.json
  register: recovery
"""

RETURN = r"""
state:
  description: V(clean) (nothing to do), V(interrupted) or V(finished).
  returned: always
  type: str
step:
  description: Where the upgrade stopped; none, before_swap, set_aside, new_created, new_started, finished or lost.
  returned: always
  type: str
old_name:
  description: The old container's name while it is set aside (null when unknown).
  returned: always
  type: str
remove:
  description: Containers to remove (the staging container, the new container).
  returned: always
  type: list
  elements: str
rename:
  description: Whether RV(old_name) gets the instance's name back.
  returned: always
  type: bool
start:
  description: Whether the old instance is to be started.
  returned: always
  type: bool
volumes:
  description: Volumes the upgrade made that no container keeps using once RV(remove) is removed.
  returned: always
  type: list
  elements: str
clients:
  description: Client containers the interrupted run stopped (from its journal).
  returned: always
  type: list
  elements: str
old_volume:
  description: The old instance's volume (from the journal or the new container's labels; null when unknown).
  returned: always
  type: str
new_volume:
  description: The upgrade's new volume (from the journal or the new container's labels; null when unknown).
  returned: always
  type: str
running:
  description: Whether the container called O(container) runs now.
  returned: always
  type: bool
journal:
  description: The journal (null when there is none).
  returned: always
  type: dict
compose:
  description:
    - For a container made by docker-compose, its project from the labels of the container called
      O(container) (or of the old container set aside) and C(handed_back), whether the project holds a
      hand-back of the service (M(nl_biomero.database.pg_compose_handback)); null otherwise.
    - After C(docker-compose up) re-created the service from the hand-back, the container has no upgrade
      labels (RV(state=clean)) and the hand-back is the only record of the upgrade.
  returned: always
  type: dict
problems:
  description: Why the old instance cannot be brought back (the module fails when not empty).
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nl_biomero.database.plugins.module_utils.engine import engine_argument_spec
from ansible_collections.nl_biomero.database.plugins.module_utils.errors import run_module
from ansible_collections.nl_biomero.database.plugins.module_utils.upgrade import recovery_result


def main():
    spec = engine_argument_spec()
    spec.update(container=dict(type="str", required=True), journal=dict(type="path"),
                rollback=dict(type="bool", default=False))
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    run_module(module, lambda: recovery_result(**module.params))


if __name__ == "__main__":
    main()
