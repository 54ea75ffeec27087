#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: pg_compose_service
short_description: Write the PostgreSQL settings of a docker-compose database service into the project's override
version_added: 0.3.0
description:
  - Reads a service of a docker-compose project the way docker-compose 1.29 does (C(.env), C(COMPOSE_FILE), the
    default file names) and returns what the role C(postgres_container) needs to take it over (the project name,
    the service's container, its image, database user and database; never the password).
  - With O(command), writes the service's C(command:), C(healthcheck:), C(restart:) and C(stop_grace_period:) (and the bind O(mounts),
    e.g. the log directory) into the override file the collection owns in the project, the same file
    M(nl_biomero.database.pg_compose_handback) writes (C(docker-compose.override.yml) when compose loads it by
    default and the project has none, else C(docker-compose.nl-biomero.yml) added last to C(COMPOSE_FILE) in
    C(.env)). The user's files are never rewritten; a copy of any file changed is kept as
    C(<file>.nlb-backup-<UTC stamp>); an upgrade's image and volume in that file stay as they are.
  - Reports in RV(recreate) why the service's container does not run with these settings (missing, stopped,
    another command, health check, restart policy or mounts); the caller then runs
    C(docker-compose -p <project> up -d --no-deps <service>). It does not run compose itself.
  - Without O(command) it only reads. O(state=absent) removes what it wrote for O(service).
author:
  - NL-BIOMERO database maintainers (@NL-BIOMERO)
extends_documentation_fragment:
  - nl_biomero.database.container.engine
options:
  project_dir:
    description: The compose project's directory.
    type: path
    required: true
  service:
    description: The compose service, for example V(database) or V(database-biomero).
    type: str
    required: true
  command:
    description: The service's command (argv), for example C([postgres, -N, "500", -c, work_mem=8MB]).
    type: list
    elements: str
  healthcheck:
    description: The service's health check (C(test) as a list, C(interval), C(timeout), C(retries), C(start_period)).
    type: dict
  restart:
    description: The service's restart policy.
    type: str
    choices: ["no", on-failure, always, unless-stopped]
    default: unless-stopped
  stop_timeout:
    description: Seconds compose gives the server's clean shutdown (C(stop_grace_period); compose's default is 10).
    type: int
  mounts:
    description: Bind mounts C(/host/path:/container/path) the service gets besides the project's own volumes.
    type: list
    elements: str
    default: []
  state:
    description: V(present) writes the settings (with O(command)); V(absent) removes them.
    type: str
    choices: [present, absent]
    default: present
attributes:
  check_mode:
    support: full
    description: Reports and diffs what would be written and whether the container would be re-created.
  diff_mode:
    support: full
    description: The override file and C(.env), before and after.
  idempotent:
    support: full
    description: The same settings again change nothing (no write, RV(recreate) empty).
notes:
  - Every C($) in the settings is written as C($$), so compose passes it on literally.
seealso:
  - module: nl_biomero.database.pg_compose_handback
"""

EXAMPLES = r"""
- name: Read the OMERO DB service of the project
  nl_biomero.database.pg_compose_service:
    project_dir: /opt/NL-BIOMERO
    service: database
  register: omero_db

- name: Run it with 500 connections and a health check
  nl_biomero.database.pg_compose_service:
    project_dir: /opt/NL-BIOMERO
    service: database
    command: [postgres, -N, "500", -c, shared_buffers=2GB]
    healthcheck:
      test: [CMD, pg_isready, -q, -h, 127.0.0.1, -U, "{{ omero_db.user }}", -d, "{{ omero_db.database }}"]
      interval: 10s
    restart: unless-stopped
"""

RETURN = r"""
project:
  description: The compose project name (C(-p) of docker-compose).
  returned: always
  type: str
container:
  description: The service's container (compose v1's name for it when there is none yet).
  returned: always
  type: str
exists:
  description: Whether the service has a container.
  returned: always
  type: bool
image:
  description: The service's image, as the project's files give it.
  returned: always
  type: str
user:
  description: The database superuser (POSTGRES_USER) the service's container gets.
  returned: always
  type: str
database:
  description: The database (POSTGRES_DB) the service's container gets.
  returned: always
  type: str
file:
  description: The override file that holds (or held) the settings; null when none.
  returned: always
  type: str
backups:
  description: The copies kept of the files changed.
  returned: always
  type: list
  elements: str
compose_files:
  description: The files docker-compose loads for the project afterwards, in order.
  returned: always
  type: list
  elements: str
recreate:
  description: Why compose must (re)create the service's container to run these settings; empty when it runs them.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nl_biomero.database.plugins.module_utils import compose
from ansible_collections.nl_biomero.database.plugins.module_utils.engine import ContainerEngine, engine_argument_spec
from ansible_collections.nl_biomero.database.plugins.module_utils.errors import run_module


def _run(module):
    params = module.params
    engine = ContainerEngine(params["engine"])
    project = compose.read_project(params["project_dir"])
    containers = dict(engine.labelled("container", "%s=%s" % (compose.PROJECT, project["name"])))
    result = compose.service_facts(project, params["service"], containers)
    result.update({"changed": False, "file": None, "backups": [], "compose_files": project["files"],
                   "recreate": []})
    if params["command"] is None and params["state"] == "present":
        return result
    written = compose.ServiceSettings(params["project_dir"], params["service"], params["command"],
                                      params["healthcheck"], params["restart"], params["mounts"],
                                      params["state"], params["stop_timeout"]).run(check_mode=module.check_mode)
    result.update(written)
    result.pop("previous_volume", None)
    if not module._diff:
        result.pop("diff")
    if params["state"] == "present":
        info = engine.inspect(result["container"]) if result["exists"] else None
        result["recreate"] = compose.container_differs(info, params["command"], (params["healthcheck"] or {}).get(
            "test"), params["restart"], params["mounts"], params["stop_timeout"])
        result["changed"] = result["changed"] or bool(result["recreate"])
    return result


def main():
    argument_spec = engine_argument_spec()
    argument_spec.update(
        project_dir=dict(type="path", required=True), service=dict(type="str", required=True),
        command=dict(type="list", elements="str"), healthcheck=dict(type="dict"),
        restart=dict(type="str", choices=["no", "on-failure", "always", "unless-stopped"], default="unless-stopped"),
        mounts=dict(type="list", elements="str", default=[]), stop_timeout=dict(type="int"),
        state=dict(type="str", choices=["present", "absent"], default="present"))
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    run_module(module, lambda: _run(module))


if __name__ == "__main__":
    main()
