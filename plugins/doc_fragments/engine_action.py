# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    """What every engine_* action (community.docker or containers.podman by engine) shares."""

    DOCUMENTATION = r"""
options:
  engine:
    description: The container engine.
    type: str
    choices: [auto, docker, podman]
    default: auto
  docker_host:
    description: The Docker API endpoint (engine docker only).
    type: str
attributes:
  check_mode:
    support: full
    description: The engine's module in check mode (it says what it would change).
  diff_mode:
    support: none
    description: No diff.
"""
