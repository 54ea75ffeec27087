#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: pg_access_check
short_description: Check the TLS files of PostgreSQL instances before they are used
version_added: 0.1.0
description:
  - For each instance, checks on the managed host that its certificate, private key and (optional) CA file exist
    and are readable, then asks the OpenSSL of the instance's image, in throwaway containers without network,
    whether the files parse and the key belongs to the certificate.
  - Also reports the uid and gid of the image's C(postgres) user, which must own the copied key.
  - Changes nothing; runs in check mode too. The image must be present locally (it is never pulled).
author:
  - NL-BIOMERO database maintainers (@NL-BIOMERO)
extends_documentation_fragment:
  - nl_biomero.database.container.engine
options:
  instances:
    description: The instances to check.
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
      tls:
        description: Host paths of the files; none to only read the postgres uid and gid.
        type: dict
        suboptions:
          cert:
            description: Server certificate (PEM).
            type: str
            required: true
          key:
            description: Its private key (PEM, not encrypted).
            type: str
            required: true
          ca:
            description: CA certificates for client certificates (PEM).
            type: str
  docker_host:
    description: Engine endpoint (sets E(DOCKER_HOST) for docker, E(CONTAINER_HOST) for podman).
    type: str
attributes:
  check_mode:
    support: full
    description: Runs in check mode; it only reads.
  diff_mode:
    support: none
    description: Nothing to diff; it changes nothing.
  idempotent:
    support: full
    description: Only reads.
"""

EXAMPLES = r"""
- name: Check the site certificate of the OMERO DB
  nl_biomero.database.pg_access_check:
    instances:
      - name: database
        image: postgres:17
        tls: {cert: /etc/ssl/db/server.crt, key: /etc/ssl/db/server.key}
"""

RETURN = r"""
instances:
  description: Per instance, the uid and gid of the image's postgres user.
  returned: always
  type: list
  elements: dict
  sample:
    - {"name": "database", "uid": 999, "gid": 999}
"""

import os
from concurrent.futures import ThreadPoolExecutor

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.nl_biomero.database.plugins.module_utils.access import AccessError
from ansible_collections.nl_biomero.database.plugins.module_utils.engine import (
    ContainerEngine, EngineError, engine_argument_spec, run)
from ansible_collections.nl_biomero.database.plugins.module_utils.errors import run_module
from ansible_collections.nl_biomero.database.plugins.module_utils.tuning import parse_id

MOUNT = "/nlb-tls"
# Each probe prints what the file holds for comparison; -noout keeps PEM bodies out.
_PROBES = {
    "cert": ["x509", "-noout", "-pubkey", "-in"],
    "key": ["pkey", "-pubout", "-passin", "pass:", "-in"],
    "ca": ["x509", "-noout", "-subject", "-in"],
}


def _file_problem(path):
    if not os.path.exists(path):
        return "does not exist"
    if not os.path.isfile(path):
        return "is not a regular file"
    if not os.access(path, os.R_OK):
        return "is not readable"
    return None


class AccessChecker:
    def __init__(self, engine, docker_host=None):
        self.engine = engine
        self.env = {}
        if docker_host:
            self.env["CONTAINER_HOST" if engine.binary == "podman" else "DOCKER_HOST"] = docker_host

    def _probe(self, job):
        image, entrypoint, args, volumes, user = job
        argv = self.engine.throwaway_argv(image, args, purpose="access-check", entrypoint=entrypoint,
                                          user=user, volumes=volumes, extra=("--log-driver", "none"))
        return run(argv, env=self.env)

    def check(self, instances):
        errors = []
        jobs, where = [], []
        for inst in instances:
            jobs.append((inst["image"], "id", [], (), "postgres"))
            where.append((inst, "id"))
            for key, path in sorted((inst.get("tls") or {}).items()):
                if not path:
                    continue
                problem = _file_problem(path)
                if problem:
                    errors.append("instance %s: tls %s %s %s" % (inst["name"], key, path, problem))
                    continue
                target = "%s/%s" % (MOUNT, key)
                # Read as root: the host file's owner is not the image's postgres user.
                jobs.append((inst["image"], "openssl", _PROBES[key] + [target], ("%s:%s:ro" % (path, target),), None))
                where.append((inst, key))
        with ThreadPoolExecutor(max_workers=4) as pool:
            results = list(pool.map(self._probe, jobs))
        found = {}
        for (inst, key), (rc, out, err) in zip(where, results):
            if rc in (125, 126, 127):
                raise EngineError("cannot run a throwaway container of image %s (is the image present? it is "
                                  "never pulled here): %s" % (inst["image"], (err or out).strip()))
            if key == "id":
                uid, gid = parse_id(out)
                found.setdefault(inst["name"], {}).update({"uid": uid, "gid": gid})
            elif rc != 0:
                errors.append("instance %s: tls %s %s cannot be read by openssl: %s" % (
                    inst["name"], key, inst["tls"][key], " ".join(err.split())[:300] or "exit %d" % rc))
            else:
                found.setdefault(inst["name"], {})[key] = out.strip()
        for inst in instances:
            facts = found.get(inst["name"], {})
            if "cert" in facts and "key" in facts and facts["cert"] != facts["key"]:
                errors.append("instance %s: tls key %s does not belong to the certificate %s" % (
                    inst["name"], inst["tls"]["key"], inst["tls"]["cert"]))
        if errors:
            raise AccessError("TLS files refused, nothing was changed: %s" % "; ".join(errors), {"errors": errors})
        return [{"name": inst["name"], "uid": found[inst["name"]]["uid"], "gid": found[inst["name"]]["gid"]}
                for inst in instances]


def check_access(instances, engine="auto", docker_host=None):
    checker = AccessChecker(ContainerEngine(engine), docker_host)
    return {"changed": False, "instances": checker.check(instances)}


def main():
    argument_spec = engine_argument_spec()
    argument_spec.update(
        instances=dict(type="list", elements="dict", required=True, options=dict(
            name=dict(type="str", required=True),
            image=dict(type="str", required=True),
            tls=dict(type="dict", options=dict(
                cert=dict(type="str", required=True),
                key=dict(type="str", required=True, no_log=False),
                ca=dict(type="str"),
            )),
        )),
        docker_host=dict(type="str"),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    run_module(module, lambda: check_access(**module.params))


if __name__ == "__main__":
    main()
