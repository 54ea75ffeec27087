#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: engine_host_info
short_description: Containers, volumes and networks of Docker or Podman, in docker_host_info's shape
description:
  - An action plugin. With O(engine=docker) it runs M(community.docker.docker_host_info) with the task's arguments; with
    O(engine=podman) it maps them onto containers.podman.podman_container_info, podman_volume_info and
    podman_network_info (it maps containers, containers_all, containers_filters (name, label),
    verbose_output, volumes and networks).
  - The engine is resolved on the target; C(auto) picks docker when both CLIs exist.
  - An argument podman cannot honour fails the task, naming it, before anything runs.
version_added: 1.0.0
author:
  - NL-BIOMERO database maintainers (@NL-BIOMERO)
extends_documentation_fragment:
  - nl_biomero.database.engine_action
options:
  run_healthchecks:
    description:
      - Podman only, runs C(podman healthcheck run) once on each listed running container that is not yet
        healthy before reading the state (podman runs health checks from systemd timers; a host without
        systemd never runs them). Docker runs its own.
    type: bool
    default: false
  elsewhere:
    description:
      - Container names to look for in the other engine (podman when the engine is docker, and the reverse)
        when they are not among the listed containers; RV(elsewhere) names those found there (a container of
        the other engine named by mistake). Read-only; nothing when the other engine is not installed.
    type: list
    elements: str
notes:
  - Every other option is M(community.docker.docker_host_info)'s.
"""

EXAMPLES = r"""
- name: The same task on the role's engine
  nl_biomero.database.engine_host_info:
    engine: podman
"""

RETURN = r"""
engine:
  description: The engine that ran the task.
  returned: always
  type: str
  sample: podman
elsewhere:
  description: The names of O(elsewhere) missing on the engine and found in the other one, with that engine.
  returned: when O(elsewhere) is given
  type: dict
  sample: {database: docker}
"""
