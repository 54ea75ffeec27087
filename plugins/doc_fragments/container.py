# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    """Options shared by modules that run PostgreSQL tools inside a container; ENGINE is the engine option alone
    (modules with a container list both fragments)."""

    ENGINE = r"""
options:
  engine:
    description:
      - Container engine CLI to drive.
      - V(auto) uses C(docker) when it is on E(PATH), else C(podman).
    type: str
    choices: [auto, docker, podman]
    default: auto
"""

    DOCUMENTATION = r"""
options:
  container:
    description:
      - Name or ID of the running PostgreSQL container on the managed host.
    type: str
    required: true
  login_user:
    description:
      - PostgreSQL role the tools connect as, inside the container.
      - Defaults to the container's E(POSTGRES_USER), or V(postgres).
    type: str
  login_password:
    description:
      - Password of O(login_user).
      - Passed to the tools through the exec environment (E(PGPASSWORD)), never on a command line,
        and never returned. Not needed when the container trusts local socket connections
        (the official image's default).
    type: str
"""
