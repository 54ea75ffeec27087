# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the role postgres_container for client authentication (module_utils/access.py):
what ``pg_access_check`` checks and which files the role writes into each instance's access directory."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.nl_biomero.database.plugins.module_utils.access import HBA_FILE, TLS_FILES


def _with_files(specs):
    return [spec for spec in specs or [] if (spec.get("access") or {}).get("files")]


def postgres_container_access_checks(specs):
    """Instances for pg_access_check: name, image and (when set) the TLS host paths."""
    checks = []
    for spec in _with_files(specs):
        check = {"name": spec["name"], "image": spec["image"]}
        if spec["access"]["tls"]:
            check["tls"] = dict(spec["access"]["tls"])
        checks.append(check)
    return checks


def postgres_container_access_files(specs, check_result, kind):
    """The files of kind ``hba`` (content) or ``tls`` (copied from a host path) per instance:
    instance, dir, dest, owner, group, mode and content or src. The key is 0600, like PostgreSQL wants."""
    owners = dict((item["name"], item) for item in (check_result or {}).get("instances") or [])
    files = []
    for spec in _with_files(specs):
        access = spec["access"]
        owner = owners.get(spec["name"], {})
        base = {"instance": spec["name"], "dir": access["dir"], "owner": owner.get("uid"), "group": owner.get("gid")}
        if kind == "dir":
            files.append(dict(base, dest=access["dir"], mode="0700"))
        elif kind == "hba" and access["hba"] is not None:
            files.append(dict(base, dest="%s/%s" % (access["dir"], HBA_FILE), mode="0600", content=access["hba"]))
        elif kind == "tls":
            for key, path in sorted(access["tls"].items()):
                files.append(dict(base, dest="%s/%s" % (access["dir"], TLS_FILES[key]), src=path,
                                  mode="0600" if key == "key" else "0644"))
    return files


class FilterModule(object):
    """Client authentication filters of the role postgres_container."""

    def filters(self):
        return {
            "postgres_container_access_checks": postgres_container_access_checks,
            "postgres_container_access_files": postgres_container_access_files,
        }
