# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action engine_host_info: docker_host_info, or the same lists read from podman.

Podman's containers come back in docker_host_info's list shape (Names, State,
Status with "(healthy)", Labels, Image, Id); volumes and networks as
``{Name: ...}``. ``run_healthchecks`` (podman): podman runs health checks from
systemd timers, and a host without systemd (a container, these test machines)
never runs them; the action then runs ``podman healthcheck run`` once on each
running, not yet healthy container it lists before reading the state.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.nl_biomero.database.plugins.module_utils import engine_args
from ansible_collections.nl_biomero.database.plugins.plugin_utils.engine_action import EngineAction

_DOCKER_ONLY_LIST_KEYS = ("images", "disk_usage", "images_filters", "volumes_filters", "networks_filters")


class ActionModule(EngineAction):
    KIND = "host_info"

    def map_and_run(self, engine, args):
        elsewhere = args.pop("elsewhere", None)
        result = self._listed(engine, args)
        if elsewhere is not None and not result.get("failed"):
            other, command = engine_args.elsewhere_probe(engine, elsewhere, result.get("containers"))
            probed = self._low_level_execute_command(command, sudoable=False) if command else {}
            result["elsewhere"] = engine_args.elsewhere_found(other, probed.get("stdout"))
        return result

    def _listed(self, engine, args):
        run_healthchecks = args.pop("run_healthchecks", False)
        if engine == "docker":
            if self._docker_host:
                args["docker_host"] = self._docker_host
            return self._run_module("community.docker.docker_host_info", args)
        engine_args._refuse_other("engine_host_info", args, (
            "containers", "containers_all", "containers_filters", "verbose_output", "volumes", "networks"))
        unknown = engine_args.unknown_filters(args.get("containers_filters"))
        if unknown:
            raise engine_args.EngineArgsError("engine_host_info: container filter(s) %s cannot be honoured with "
                                              "engine podman; accepted: label, name" % ", ".join(unknown))
        result = {"changed": False}
        if args.get("containers"):
            listed = self._containers(args)
            if run_healthchecks and not self._task.check_mode:
                waiting = [c["Names"][0].lstrip("/") for c in listed
                           if c["State"] == "running" and "(health: starting)" in c["Status"]
                           or c["State"] == "running" and "(unhealthy)" in c["Status"]]
                for name in waiting:
                    self._run_module("ansible.builtin.command", {"argv": ["podman", "healthcheck", "run", name]})
                if waiting:
                    listed = self._containers(args)
            result["containers"] = listed
        if args.get("volumes"):
            found = self._checked(self._run_module("containers.podman.podman_volume_info", {}))
            result["volumes"] = [{"Name": v.get("Name") or v.get("name"), "Labels": v.get("Labels") or {}}
                                 for v in found.get("volumes") or []]
        if args.get("networks"):
            found = self._checked(self._run_module("containers.podman.podman_network_info", {}))
            result["networks"] = [{"Name": n.get("name") or n.get("Name")} for n in found.get("networks") or []]
        return result

    def _containers(self, args):
        found = self._checked(self._run_module("containers.podman.podman_container_info", {}))
        listed = engine_args.filter_listed(engine_args.podman_listed(found.get("containers")),
                                           args.get("containers_filters"))
        if not args.get("containers_all"):
            listed = [c for c in listed if c["State"] == "running"]
        return listed

    @staticmethod
    def _checked(result):
        if result.get("failed"):
            raise engine_args.EngineArgsError("podman: %s" % result.get("msg"))
        return result
