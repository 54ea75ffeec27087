#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: engine_container
short_description: A container on Docker or Podman, in community.docker's argument shape
description:
  - An action plugin. With O(engine=docker) it runs M(community.docker.docker_container) with the
    task's arguments; with O(engine=podman) it maps them onto M(containers.podman.podman_container).
  - The engine is resolved on the target; C(auto) picks docker when both CLIs exist.
  - An argument podman cannot honour fails the task, naming it, before anything runs.
  - A bind mount in C(mounts) may carry C(relabel) (C(z) or C(Z)), the SELinux relabel of C(-v src:dst:Z).
version_added: 1.0.0
author:
  - NL-BIOMERO database maintainers (@NL-BIOMERO)
extends_documentation_fragment:
  - nl_biomero.database.engine_action
notes:
  - Every other option is M(community.docker.docker_container)'s (for podman, the subset the mapping knows).
"""

EXAMPLES = r"""
- name: Run a PostgreSQL container on the role's engine
  nl_biomero.database.engine_container:
    engine: podman
    name: database
    image: postgres:16
    mounts:
      - {type: bind, source: /srv/logs, target: /var/log/postgresql, relabel: Z}
"""

RETURN = r"""
engine:
  description: The engine that ran the container.
  returned: always
  type: str
  sample: podman
"""
