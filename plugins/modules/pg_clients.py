#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: pg_clients
short_description: Stop or start the client containers of the databases, the compose way where compose made them
version_added: 0.3.0
description:
  - Stops (O(state=stopped)) the client containers in O(names) that are running, in order, or starts
    (O(state=started)) those that are not, in reverse order.
  - A container docker-compose made (its labels name the project, the service and the project directory) is
    stopped and started with C(<compose_command> -p <project> stop -t <stop_timeout> <service>) and
    C(start <service>), run in the project directory, so that compose's own view (C(docker-compose ps))
    stays true; any other container with the engine (C(docker stop) / C(docker start)).
  - A missing container is skipped when stopping and an error when starting; a container that cannot be
    stopped ends the task (the ones stopped before are returned in RV(changed_clients), for the caller to
    start again); every container is tried when starting.
author:
  - NL-BIOMERO database maintainers (@NL-BIOMERO)
extends_documentation_fragment:
  - nl_biomero.database.container.engine
options:
  names:
    description: The client containers.
    type: list
    elements: str
    required: true
  state:
    description: V(stopped) or V(started).
    type: str
    choices: [stopped, started]
    required: true
  stop_timeout:
    description: Seconds a client gets to stop cleanly.
    type: int
    default: 60
  compose_command:
    description:
      - The docker-compose command as an argv list (compose V2 - V([docker, compose])). Empty - every client
        with the engine. When its program is not installed, compose-made clients are handled with the engine
        too, with a warning.
    type: list
    elements: str
    default: [docker-compose]
attributes:
  check_mode:
    support: full
    description: Reports which clients would be stopped or started, and how.
  diff_mode:
    support: none
    description: Nothing to diff; RV(clients) says what was done.
  idempotent:
    support: full
    description: Running clients are not started again, stopped ones not stopped again.
seealso:
  - module: nl_biomero.database.pg_compose_info
"""

EXAMPLES = r"""
- name: Stop the clients of the OMERO DB
  nl_biomero.database.pg_clients:
    names: [nl-biomero_omeroserver_1, nl-biomero_omeroweb_1]
    state: stopped
  register: stopped

- name: Start exactly those again
  nl_biomero.database.pg_clients:
    names: "{{ stopped.changed_clients }}"
    state: started
"""

RETURN = r"""
clients:
  description: Per container - name, state afterwards (running, stopped, missing), how (compose, engine).
  returned: always
  type: list
  elements: dict
changed_clients:
  description: The containers this task stopped (or started).
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nl_biomero.database.plugins.module_utils.compose import clients_to
from ansible_collections.nl_biomero.database.plugins.module_utils.engine import ContainerEngine, engine_argument_spec
from ansible_collections.nl_biomero.database.plugins.module_utils.errors import run_module


def main():
    module = AnsibleModule(argument_spec=dict(
        names=dict(type="list", elements="str", required=True),
        state=dict(type="str", choices=["stopped", "started"], required=True),
        stop_timeout=dict(type="int", default=60),
        compose_command=dict(type="list", elements="str", default=["docker-compose"]),
        **engine_argument_spec()), supports_check_mode=True)
    params = module.params
    run_module(module, lambda: clients_to(ContainerEngine(params["engine"]), params["names"], params["state"],
                                          params["compose_command"], params["stop_timeout"], module.check_mode))


if __name__ == "__main__":
    main()
