# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The base of the engine_* action plugins: one task, either engine.

A role task names ``nl_biomero.database.engine_container`` (or _volume,
_network, _container_info, _exec, _host_info) with community.docker's argument
shape plus ``engine`` and ``docker_host`` (from the role's module_defaults).
The action resolves the engine ON THE TARGET (``auto``: the rule of
engine.detect_engine, docker when both exist), maps the arguments
(module_utils/engine_args.py) and runs community.docker's or
containers.podman's module there.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.action import ActionBase

from ansible_collections.nl_biomero.database.plugins.module_utils import engine_args
from ansible_collections.nl_biomero.database.plugins.module_utils.engine import EngineError, detect_engine


class EngineAction(ActionBase):
    """Subclasses set KIND (a key of engine_args.DOCKER)."""

    KIND = None
    _supports_check_mode = True
    _supports_async = False

    def _has(self, binary):
        probe = self._low_level_execute_command("command -v %s" % binary, sudoable=False)
        return probe.get("rc") == 0

    def _engine(self, preferred):
        try:
            return detect_engine(preferred or "auto", which=self._has)
        except EngineError as exc:
            host = self._task_vars.get("inventory_hostname", "the target")
            raise engine_args.EngineArgsError("%s on %s" % (to_text(exc), host))

    def _run_module(self, name, args):
        return self._execute_module(module_name=name, module_args=args, task_vars=self._task_vars)

    def map_and_run(self, engine, args):
        """The default: one module call on the mapped arguments."""
        name, mapped = engine_args.module_for(engine, self.KIND, args)
        if engine == "docker" and self._docker_host:
            mapped["docker_host"] = self._docker_host
        result = self._run_module(name, mapped)
        if name == "ansible.builtin.command" and result.get("rc") not in (None, 0):
            # docker_container_exec reports a command's exit status without failing: so does this.
            result.pop("msg", None)
            result["failed"] = False
        return result

    def run(self, tmp=None, task_vars=None):
        result = super(EngineAction, self).run(tmp, task_vars)
        self._task_vars = task_vars or {}
        args = dict(self._task.args)
        preferred = args.pop("engine", None) or "auto"
        self._docker_host = args.pop("docker_host", None)
        try:
            engine = self._engine(preferred)
            result.update(self.map_and_run(engine, args))
        except engine_args.EngineArgsError as exc:
            result.update(failed=True, msg=to_text(exc), changed=False)
            return result
        result["engine"] = engine
        return result
