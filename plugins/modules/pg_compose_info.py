#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: pg_compose_info
short_description: Find the database containers, their credentials and their clients from a docker-compose project
version_added: 0.3.0
description:
  - Reads a docker-compose project the way docker-compose 1.29 does (C(.env), C(COMPOSE_FILE), C(env_file),
    C(${VAR}) and C(${VAR:-default}) in C(environment:)) and finds the containers compose made for its two
    database services by their labels (C(com.docker.compose.project), C(.service),
    C(.project.working_dir); compose v1 and v2 names alike).
  - Returns per database component (V(omero), V(biomero)) the service, its container, and the
    E(POSTGRES_USER) and E(POSTGRES_DB) the container gets; with O(passwords) also E(POSTGRES_PASSWORD)
    (register the result in a task with C(no_log), and never print it).
  - Returns the containers of the client services the project defines (OMERO.server, workers, OMERO.web,
    Metabase, the importer), for the roles to stop and start around a restore, a backup or an upgrade.
  - A project directory without a compose file, a service the project does not define, a variable the
    C(.env) lacks, a database service without a container, or a container of the same project name made
    from another directory is an error naming it.
author:
  - NL-BIOMERO database maintainers (@NL-BIOMERO)
extends_documentation_fragment:
  - nl_biomero.database.container.engine
options:
  project_dir:
    description: The compose project's directory (where C(docker-compose up) runs; its C(.env) is read).
    type: path
    required: true
  services:
    description:
      - The database services, by component name (the name a backup set gives the database).
      - A component set to an empty string is left out.
    type: dict
    default: {omero: database, biomero: database-biomero}
  clients:
    description:
      - The client services. Default (unset) the platform's V(omeroserver), V(omeroworker-1),
        V(biomeroworker), V(omeroweb), V(metabase) and V(biomero-importer) that the project defines; a
        service named here that the project does not define is an error.
    type: list
    elements: str
  require_containers:
    description: A database service without a container is an error (V(false) returns its container as null).
    type: bool
    default: true
  passwords:
    description: Also return each database's E(POSTGRES_PASSWORD) (null when the service sets none).
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Reads only.
  diff_mode:
    support: none
    description: Reads only.
  idempotent:
    support: full
    description: Reads only.
notes:
  - Variables set only in the shell of whoever runs docker-compose are not seen; only the project's C(.env)
    and the services' C(env_file)s.
seealso:
  - module: nl_biomero.database.pg_clients
  - module: nl_biomero.database.pg_compose_handback
"""

EXAMPLES = r"""
- name: Find NL-BIOMERO's databases in its compose project
  nl_biomero.database.pg_compose_info:
    project_dir: /opt/NL-BIOMERO
  register: site
# site.instances.omero.container -> nl-biomero_database_1, site.clients -> [nl-biomero_omeroserver_1, ...]

- name: With the passwords (for a module that connects over TCP)
  nl_biomero.database.pg_compose_info:
    project_dir: /opt/NL-BIOMERO
    passwords: true
  register: site_credentials
  no_log: true
"""

RETURN = r"""
project:
  description: The compose project name (C(COMPOSE_PROJECT_NAME) or the directory's name).
  returned: always
  type: str
  sample: nl-biomero
project_dir:
  description: The project directory, absolute.
  returned: always
  type: str
files:
  description: The compose files docker-compose loads for the project, in order.
  returned: always
  type: list
  elements: str
instances:
  description:
    - Per component of O(services) - service, container (null when there is none and
      O(require_containers=false)), user, database, and with O(passwords) password.
  returned: always
  type: dict
  sample: {omero: {service: database, container: nl-biomero_database_1, user: omero, database: omero}}
clients:
  description: The containers of the client services (those that have one), in the order of the services.
  returned: always
  type: list
  elements: str
client_services:
  description: The client services looked for.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nl_biomero.database.plugins.module_utils.compose import DATABASE_SERVICES, project_info
from ansible_collections.nl_biomero.database.plugins.module_utils.engine import ContainerEngine, engine_argument_spec
from ansible_collections.nl_biomero.database.plugins.module_utils.errors import run_module


def _run(params):
    result = project_info(params["project_dir"], ContainerEngine(params["engine"]), services=params["services"],
                          clients=params["clients"], require_containers=params["require_containers"],
                          passwords=params["passwords"])
    result["changed"] = False
    return result


def main():
    module = AnsibleModule(argument_spec=dict(
        project_dir=dict(type="path", required=True),
        services=dict(type="dict", default=dict(DATABASE_SERVICES)),
        clients=dict(type="list", elements="str"),
        require_containers=dict(type="bool", default=True),
        passwords=dict(type="bool", default=False),
        **engine_argument_spec()), supports_check_mode=True)
    run_module(module, lambda: _run(module.params))


if __name__ == "__main__":
    main()
