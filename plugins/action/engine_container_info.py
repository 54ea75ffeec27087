# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action engine_container_info: docker_container_info, or podman's inspect in its shape.

Podman's ``container inspect`` has Docker's layout for what the roles read
(Config.Env/Labels/Image, State.Running/Health, Mounts, HostConfig); the result
is ``{exists, container}`` as docker_container_info's. ``run_healthchecks``:
see engine_host_info (podman without systemd runs no health checks itself).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.nl_biomero.database.plugins.module_utils import engine_args
from ansible_collections.nl_biomero.database.plugins.plugin_utils.engine_action import EngineAction


class ActionModule(EngineAction):
    KIND = "container_info"

    def map_and_run(self, engine, args):
        run_healthchecks = args.pop("run_healthchecks", False)
        if engine == "docker":
            if self._docker_host:
                args["docker_host"] = self._docker_host
            return self._run_module("community.docker.docker_container_info", args)
        engine_args._refuse_other("engine_container_info", args, ("name",))
        found = self._inspect(args["name"])
        health = ((found or {}).get("State") or {}).get("Health") or {}
        if run_healthchecks and found and found["State"].get("Running") and health.get("Status") not in (
                None, "", "healthy") and not self._task.check_mode:
            self._run_module("ansible.builtin.command", {"argv": ["podman", "healthcheck", "run", args["name"]]})
            found = self._inspect(args["name"])
        return {"changed": False, "exists": found is not None, "container": found}

    def _inspect(self, name):
        result = self._run_module("containers.podman.podman_container_info", {"name": [name]})
        if result.get("failed"):
            raise engine_args.EngineArgsError("podman: %s" % result.get("msg"))
        containers = [c for c in result.get("containers") or [] if c]
        return containers[0] if containers else None
