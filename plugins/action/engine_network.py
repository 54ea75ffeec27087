# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action engine_network: community.docker's module on docker, podman's CLI on podman.

On podman the steps come from engine_args.podman_network_plan (labels, connect,
disconnect-then-remove for ``force``: containers.podman's module has neither and
its ``force`` would remove the containers on the network).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import shlex

from ansible_collections.nl_biomero.database.plugins.module_utils import engine_args
from ansible_collections.nl_biomero.database.plugins.plugin_utils.engine_action import EngineAction


class ActionModule(EngineAction):
    KIND = "network"

    def map_and_run(self, engine, args):
        if engine != "podman":
            return super(ActionModule, self).map_and_run(engine, args)
        name = args.get("name")
        exists = self._command(["podman", "network", "exists", name], ok=(0, 1))["rc"] == 0
        connected = []
        if exists:
            listed = self._command(["podman", "ps", "-a", "--filter", "network=%s" % name, "--format", "{{.Names}}"])
            connected = [line.strip() for line in listed.get("stdout", "").splitlines() if line.strip()]
        steps = engine_args.podman_network_plan(args, exists, connected)
        if not self._task.check_mode:
            for argv in steps:
                self._command(argv)
        return {"changed": bool(steps), "commands": steps, "network": {"name": name}}

    def _command(self, argv, ok=(0,)):
        # a plain command on the target (runs in check mode too: the probes must, the steps are skipped above)
        result = self._low_level_execute_command(" ".join(shlex.quote(str(a)) for a in argv), sudoable=False)
        if result.get("rc") not in ok:
            raise engine_args.EngineArgsError("%s failed (rc %s): %s" % (
                " ".join(argv), result.get("rc"), (result.get("stderr") or result.get("msg") or "").strip()))
        return result
