#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

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
  - NL-BIOMERO database maintainers
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
  engine:
    description:
      - Container engine CLI to use; V(auto) takes docker, else podman.
    type: str
    choices: [auto, docker, podman]
    default: auto
  docker_host:
    description:
      - Engine endpoint (sets E(DOCKER_HOST) for docker, E(CONTAINER_HOST) for podman).
    type: str
attributes:
  check_mode:
    support: full
    description: Runs in check mode; it only reads.
  diff_mode:
    support: none
  idempotent:
    support: full
notes:
  - Each image costs two throwaway containers, each instance one; they run in parallel.
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
from ansible_collections.nl_biomero.database.plugins.module_utils.engine import EngineError, detect_engine
from ansible_collections.nl_biomero.database.plugins.module_utils.tuning import (
    SettingsError,
    check_command_args,
    error_summary,
    major_from_version_num,
    normalize_settings,
    parameter_in_error,
    parse_describe_config,
    parse_id,
    probe_argv,
    unknown_settings,
)

# Two CPUs on the test machines; the engine serialises part of the work anyway.
MAX_PARALLEL = 4


class SettingsChecker:
    """Probes images and checks instance settings; collects every error.

    Each probe is a throwaway container (about 0.3 s); they run in parallel.
    """

    def __init__(self, module, engine):
        self.module = module
        self.engine = engine
        self.images = {}
        self.errors = []

    def _env(self):
        host = self.module.params["docker_host"]
        if not host:
            return {}
        return {"CONTAINER_HOST" if self.engine == "podman" else "DOCKER_HOST": host}

    def _run_all(self, jobs):
        """Run (image, entrypoint, args) jobs in parallel; results in the same order."""
        def run(job):
            image, entrypoint, args = job
            return self.module.run_command(probe_argv(self.engine, image, entrypoint, args), environ_update=self._env())
        with ThreadPoolExecutor(max_workers=MAX_PARALLEL) as pool:
            return list(pool.map(run, jobs))

    def probe_images(self, images):
        images = sorted(set(images))
        jobs = []
        for image in images:
            jobs += [(image, "postgres", ["--describe-config"]), (image, "id", [])]
        results = self._run_all(jobs)
        for index, image in enumerate(images):
            (rc, out, err), (id_rc, id_out, id_err) = results[2 * index], results[2 * index + 1]
            if rc != 0:
                self.module.fail_json(msg="cannot run postgres --describe-config in image %s (is the image present?): %s"
                                      % (image, err.strip() or out.strip()))
            if id_rc != 0:
                self.module.fail_json(msg="cannot read the postgres user of image %s: %s" % (image, id_err.strip()))
            uid, gid = parse_id(id_out)
            self.images[image] = {"known": parse_describe_config(out), "uid": uid, "gid": gid}

    def _names_ok(self, instance):
        """Syntax and names (against --describe-config); the settings to pass on, or None."""
        name, image = instance["name"], instance["image"]
        try:
            settings = normalize_settings(instance["settings"])
        except SettingsError as exc:
            self.errors.append({"instance": name, "setting": None, "message": str(exc)})
            return None
        settings = dict((k, v) for k, v in settings.items() if v is not None)
        unknown = unknown_settings(settings, self.images[image]["known"])
        for setting in unknown:
            self.errors.append({"instance": name, "setting": setting,
                                "message": "unknown setting '%s' (not a parameter of %s)" % (setting, image)})
        # The values of the known ones are still worth checking.
        return dict((k, v) for k, v in settings.items() if k not in unknown)

    def check(self, instances):
        self.probe_images([instance["image"] for instance in instances])
        todo = []
        for instance in instances:
            settings = self._names_ok(instance)
            if settings is not None:
                todo.append((instance, settings))
        # Values: the image's postgres parses -N and every -c as the server does.
        results = self._run_all([(instance["image"], "postgres",
                                  check_command_args(instance["max_connections"], settings))
                                 for instance, settings in todo])
        checked = []
        for (instance, settings), (rc, out, err) in zip(todo, results):
            name, image = instance["name"], instance["image"]
            if rc != 0:
                setting = parameter_in_error(err)
                value = instance["max_connections"] if setting == "max_connections" else settings.get(setting)
                prefix = "'%s' = '%s': " % (setting, value) if setting else ""
                self.errors.append({"instance": name, "setting": setting,
                                    "message": prefix + (error_summary(err) or "postgres exited with %d" % rc)})
                continue
            version_num = int(out.strip().splitlines()[-1])
            facts = self.images[image]
            facts.update({"server_version_num": version_num, "major": major_from_version_num(version_num)})
            checked.append({"name": name, "image": image, "major": facts["major"],
                            "server_version_num": version_num, "uid": facts["uid"], "gid": facts["gid"]})
        return checked


def main():
    module = AnsibleModule(
        argument_spec=dict(
            instances=dict(type="list", elements="dict", required=True, options=dict(
                name=dict(type="str", required=True),
                image=dict(type="str", required=True),
                max_connections=dict(type="int", default=100),
                settings=dict(type="dict", default={}),
            )),
            engine=dict(type="str", default="auto", choices=["auto", "docker", "podman"]),
            docker_host=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    try:
        engine = detect_engine(module.params["engine"])
    except EngineError as exc:
        module.fail_json(msg=str(exc))
    checker = SettingsChecker(module, engine)
    results = checker.check(module.params["instances"])
    if checker.errors:
        order = [instance["name"] for instance in module.params["instances"]]
        checker.errors.sort(key=lambda e: order.index(e["instance"]))
        module.fail_json(
            msg="invalid PostgreSQL settings, nothing was changed: %s"
                % "; ".join("instance %s: %s" % (e["instance"], e["message"]) for e in checker.errors),
            errors=checker.errors)
    images = dict((image, dict((k, v) for k, v in facts.items() if k != "known"))
                  for image, facts in checker.images.items())
    module.exit_json(changed=False, engine=engine, images=images, instances=results)


if __name__ == "__main__":
    main()
