# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action engine_volume: community.docker's or containers.podman's module, by engine."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.nl_biomero.database.plugins.plugin_utils.engine_action import EngineAction


class ActionModule(EngineAction):
    KIND = "volume"
