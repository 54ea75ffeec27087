#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: pg_settings_check
short_description: Check PostgreSQL settings against the image that will run them
version_added: 0.1.0
description:
  - Asks the PostgreSQL of a container image, in throwaway containers without
    network, whether the settings a container will be started with are valid.
  - Setting names are checked against C(postgres --describe-config); values
    (and C(-N max_connections)) are parsed by C(postgres -C) exactly as the
    server parses them at start. Names with a dot (extension settings) are
    accepted, as PostgreSQL accepts them.
  - Also reports the image's PostgreSQL version and the uid/gid of its
    C(postgres) user.
  - Changes nothing; runs in check mode too. The image must be present
    locally (it is never pulled).
author:
  - NL-BIOMERO database maintainers (@NL-BIOMERO)
extends_documentation_fragment:
  - nl_biomero.database.container.engine
options:
  instances:
    description:
      - The instances to check.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Name of the instance (container), used in messages.
        type: str
        required: true
      image:
        description: Image reference.
        type: str
        required: true
      max_connections:
        description: Value for C(-N).
        type: int
        default: 100
      settings:
        description: Settings passed as C(-c name=value); values are text.
        type: dict
        default: {}
  docker_host:
    description:
      - Engine endpoint (sets E(DOCKER_HOST) for docker, E(CONTAINER_HOST) for podman).
    type: str
  probe_user:
    description:
      - Also read the uid and gid of the image's C(postgres) user (for host directories it must own).
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    description: Runs in check mode; it only reads.
  diff_mode:
    support: none
    description: Nothing to diff; it changes nothing.
  idempotent:
    support: full
    description: Only reads; the same input gives the same answer.
notes:
  - Each instance costs one throwaway container, each image one more with O(probe_user); they run
    in parallel. Only when a check fails are the names read from C(--describe-config) to report every
    unknown name.
"""

EXAMPLES = r"""
- name: Validate settings before touching running containers
  nl_biomero.database.pg_settings_check:
    instances:
      - name: database
        image: postgres:16
        max_connections: 500
        settings:
          shared_buffers: 2GB
          log_statement: ddl
  register: check
"""

RETURN = r"""
engine:
  description: The engine CLI that was used.
  returned: always
  type: str
  sample: docker
images:
  description: Per image, what its PostgreSQL reported.
  returned: always
  type: dict
  sample:
    "postgres:16": {"server_version_num": 160004, "major": 16, "uid": 999, "gid": 999}
    # uid and gid only with probe_user
instances:
  description: Per instance, the image facts it uses.
  returned: always
  type: list
  elements: dict
  sample:
    - {"name": "database", "image": "postgres:16", "major": 16, "uid": 999, "gid": 999}
errors:
  description: On failure, one entry per bad setting.
  returned: failure
  type: list
  elements: dict
  sample:
    - {"instance": "database", "setting": "shared_buffers", "message": "invalid value for parameter ..."}
"""

from concurrent.futures import ThreadPoolExecutor

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.nl_biomero.database.plugins.module_utils.engine import (
    ContainerEngine, EngineError, engine_argument_spec, run)
from ansible_collections.nl_biomero.database.plugins.module_utils.errors import run_module
from ansible_collections.nl_biomero.database.plugins.module_utils.pg_tools import major_version
from ansible_collections.nl_biomero.database.plugins.module_utils.tuning import (
    SettingsError,
    check_command_args,
    error_summary,
    normalize_settings,
    parameter_in_error,
    parse_describe_config,
    parse_id,
    unknown_settings,
)

# Two CPUs on the test machines; the engine serialises part of the work anyway.
MAX_PARALLEL = 4


class SettingsChecker:
    """Probes images and checks instance settings; collects every error.

    Each probe is a throwaway container (about 0.3 s); they run in parallel.
    """

    def __init__(self, engine, docker_host=None):
        self.engine = engine  # ContainerEngine
        self.env = {}
        if docker_host:
            self.env["CONTAINER_HOST" if engine.binary == "podman" else "DOCKER_HOST"] = docker_host
        self.images = {}
        self.errors = []

    def _probe(self, job):
        """(rc, out, err) of ``entrypoint args`` in a throwaway container of ``image``, as the postgres user."""
        image, entrypoint, args = job
        # The endpoint reaches the engine CLI only (run's env), not the container.
        argv = self.engine.throwaway_argv(image, args, purpose="settings-check", entrypoint=entrypoint,
                                          user="postgres", extra=("--log-driver", "none"))
        return run(argv, env=self.env)

    def _run_all(self, jobs):
        """Run (image, entrypoint, args) jobs in parallel; results in the same order."""
        with ThreadPoolExecutor(max_workers=MAX_PARALLEL) as pool:
            return list(pool.map(self._probe, jobs))

    def _engine_failed(self, image, rc, out, err):
        # 125: the engine could not run the container (no such image, ...);
        # 126/127: the command is missing in the image.
        if rc in (125, 126, 127):
            raise EngineError("cannot run a throwaway container of image %s (is the image present? it is "
                              "never pulled here): %s" % (image, (err or out).strip()))

    def _known_names(self, images):
        """Setting names per image, from ``postgres --describe-config``."""
        images = sorted(set(images))
        results = self._run_all([(image, "postgres", ["--describe-config"]) for image in images])
        for image, (rc, out, err) in zip(images, results):
            self._engine_failed(image, rc, out, err)
            if rc != 0:
                raise SettingsError("postgres --describe-config failed in image %s: %s" % (image, err.strip()))
            self.images.setdefault(image, {})["known"] = parse_describe_config(out)

    def _value_error(self, instance, settings, err, rc):
        setting = parameter_in_error(err)
        value = instance["max_connections"] if setting == "max_connections" else settings.get(setting)
        prefix = "'%s' = '%s': " % (setting, value) if setting else ""
        self.errors.append({"instance": instance["name"], "setting": setting,
                            "message": prefix + (error_summary(err) or "postgres exited with %d" % rc)})

    def check(self, instances, probe_user):
        """Validate every instance; returns the per-instance image facts.

        The common case costs one throwaway container per instance (plus one
        per image for the uid): the image's postgres parses ``-N`` and every
        ``-c`` as the server does and prints server_version_num. Only when
        that fails are the names checked against --describe-config, so that
        every unknown name is reported, and the values are parsed again
        without them.
        """
        todo = []
        for instance in instances:
            try:
                settings = normalize_settings(instance["settings"])
            except SettingsError as exc:
                self.errors.append({"instance": instance["name"], "setting": None, "message": str(exc)})
                continue
            todo.append((instance, dict((k, v) for k, v in settings.items() if v is not None)))
        images = sorted(set(instance["image"] for instance, _settings in todo))
        jobs = [(instance["image"], "postgres", check_command_args(instance["max_connections"], settings))
                for instance, settings in todo]
        if probe_user:
            jobs += [(image, "id", []) for image in images]
        results = self._run_all(jobs)
        for image, (rc, out, err) in zip(images, results[len(todo):]):
            self._engine_failed(image, rc, out, err)
            if rc != 0:
                raise SettingsError("cannot read the postgres user of image %s: %s" % (image, err.strip()))
            uid, gid = parse_id(out)
            self.images.setdefault(image, {}).update({"uid": uid, "gid": gid})

        failed = []
        checked = {}
        for (instance, settings), (rc, out, err) in zip(todo, results[:len(todo)]):
            self._engine_failed(instance["image"], rc, out, err)
            if rc != 0:
                failed.append((instance, settings))
                continue
            version_num = int(out.strip().splitlines()[-1])
            facts = self.images.setdefault(instance["image"], {})
            facts.update({"server_version_num": version_num, "major": major_version(version_num)})
            checked[instance["name"]] = {"name": instance["name"], "image": instance["image"], "major": facts["major"],
                                         "server_version_num": version_num, "uid": facts.get("uid"),
                                         "gid": facts.get("gid")}
        if failed:
            self._explain(failed)
        return [checked[instance["name"]] for instance, _settings in todo if instance["name"] in checked]

    def _explain(self, failed):
        """Report every unknown name, then the first bad value of the rest."""
        self._known_names([instance["image"] for instance, _settings in failed])
        again = []
        for instance, settings in failed:
            unknown = unknown_settings(settings, self.images[instance["image"]]["known"])
            for setting in unknown:
                self.errors.append({"instance": instance["name"], "setting": setting,
                                    "message": "unknown setting '%s' (not a parameter of %s)"
                                               % (setting, instance["image"])})
            again.append((instance, dict((k, v) for k, v in settings.items() if k not in unknown)))
        results = self._run_all([(instance["image"], "postgres",
                                  check_command_args(instance["max_connections"], settings))
                                 for instance, settings in again])
        for (instance, settings), (rc, out, err) in zip(again, results):
            if rc != 0:
                self._value_error(instance, settings, err, rc)


def check_settings(instances, engine="auto", docker_host=None, probe_user=True):
    """The module's result: image facts per instance; SettingsError listing every bad setting."""
    checker = SettingsChecker(ContainerEngine(engine), docker_host)
    results = checker.check(instances, probe_user)
    if checker.errors:
        order = [instance["name"] for instance in instances]
        checker.errors.sort(key=lambda e: order.index(e["instance"]))
        raise SettingsError(
            "invalid PostgreSQL settings, nothing was changed: %s"
            % "; ".join("instance %s: %s" % (e["instance"], e["message"]) for e in checker.errors),
            {"errors": checker.errors})
    images = dict((image, dict((k, v) for k, v in facts.items() if k != "known"))
                  for image, facts in checker.images.items())
    return {"changed": False, "engine": checker.engine.binary, "images": images, "instances": results}


def main():
    argument_spec = engine_argument_spec()
    argument_spec.update(
        instances=dict(type="list", elements="dict", required=True, options=dict(
            name=dict(type="str", required=True),
            image=dict(type="str", required=True),
            max_connections=dict(type="int", default=100),
            settings=dict(type="dict", default={}),
        )),
        docker_host=dict(type="str"),
        probe_user=dict(type="bool", default=True),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    run_module(module, lambda: check_settings(**module.params))


if __name__ == "__main__":
    main()
