# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the role postgres_container: turn the role's variables into
container specifications, in two steps.

``postgres_container_plan`` (before anything is touched): merge each instance
with the role-wide defaults, check names, passwords and settings, compute the
auto-tuned settings and the logging block; the ``check`` entry of each planned
instance is what ``pg_settings_check`` validates against the image.

``postgres_container_spec`` (after ``pg_settings_check``): with the image's real
major version and postgres uid, the data mount point, PGDATA, mounts,
environment, labels, health check and command line of each container.

Plans and specs never carry the password: the role's container task (no_log)
adds POSTGRES_PASSWORD from the instance itself.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import math
import re

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.text.converters import to_text
from ansible.module_utils.parsing.convert_bool import boolean
from ansible_collections.nl_biomero.database.plugins.module_utils import labels as label_names
from ansible_collections.nl_biomero.database.plugins.module_utils.access import AccessError, access_plan
from ansible_collections.nl_biomero.database.plugins.module_utils.exporter import ExporterError, exporter_plan
from ansible_collections.nl_biomero.database.plugins.module_utils.tuning import (
    SettingsError,
    auto_tune,
    data_layout,
    logging_settings,
    major_from_image,
    merge_settings,
    normalize_settings,
    postgres_command,
    size_to_bytes,
)

LABEL_PREFIX = label_names.INSTANCE_PREFIX
MANAGED_BY = "nl_biomero.database.postgres_container"
PASSWORD_FILE_TARGET = "/run/secrets/postgres-password"
INITDB_TARGET = "/docker-entrypoint-initdb.d"
PG_PORT = 5432

# Keys an instance may set; the ones with a role-wide default take it from
# ``common`` (the role's postgres_container_* variables, without the prefix).
INSTANCE_KEYS = frozenset((
    "name", "role", "state", "image", "volume", "data_path", "data_mount", "pgdata", "network", "aliases",
    "user", "db", "password", "password_file", "initdb_dir", "env", "max_connections", "tuning",
    "tuning_memory_mb", "tuning_cpus", "settings", "logging", "log_dir", "log_filename", "log_rotation_age",
    "log_rotation_size", "log_statement", "shm_size", "memory", "cpus", "restart_policy", "stop_timeout",
    "published_port", "labels", "log_truncate_on_rotation", "log_keep_days", "clients", "readers",
    "compose_service", "hba", "listen_addresses", "tls", "access_dir", "relabel",
))
INSTANCE_KEYS = INSTANCE_KEYS | frozenset(("exporter",))  # metrics: module_utils/exporter.py
COMMON_KEYS = (
    "state", "image", "network", "max_connections", "tuning", "tuning_memory_mb", "tuning_cpus", "logging",
    "log_filename", "log_rotation_age", "log_rotation_size", "log_statement", "shm_size", "memory", "cpus",
    "restart_policy", "stop_timeout", "initdb_dir", "log_truncate_on_rotation", "log_keep_days", "relabel",
)
# Keys the compose project owns for a service it defines (postgres_container_compose_project): an instance
# that sets one is refused rather than silently ignored. user, db and password come from the project too.
COMPOSE_OWNED = ("image", "volume", "data_path", "data_mount", "pgdata", "network", "aliases", "password_file",
                 "initdb_dir", "env", "published_port", "labels", "shm_size", "memory", "cpus")
RESERVED_ENV = ("POSTGRES_USER", "POSTGRES_DB", "POSTGRES_PASSWORD", "POSTGRES_PASSWORD_FILE", "PGDATA")
STATES = ("started", "absent")
# SELinux relabel of the bind mounts (-v src:dst:Z): none, shared (z) or private (Z).
RELABELS = ("", "z", "Z")
TUNING_MODES = ("auto", "none")


def _err(instance, message):
    return AnsibleFilterError("postgres_container: instance '%s': %s" % (instance, message))


def _empty(value):
    return value is None or (isinstance(value, str) and value.strip() == "")


def _merged(instance, common):
    unknown = sorted(set(instance) - INSTANCE_KEYS)
    name = instance.get("name")
    if _empty(name):
        raise AnsibleFilterError("postgres_container: every instance needs a name")
    if unknown:
        raise _err(name, "unknown key(s): %s" % ", ".join(unknown))
    merged = dict((key, common.get(key)) for key in COMMON_KEYS)
    merged.update(dict((k, v) for k, v in instance.items() if v is not None))
    return merged


def _memory_budget_mb(inst, host_memory_mb, sharing):
    if not _empty(inst.get("memory")) and size_to_bytes(inst["memory"]) > 0:
        return size_to_bytes(inst["memory"]) // (1024 * 1024), "memory limit"
    if inst.get("tuning_memory_mb"):
        return int(inst["tuning_memory_mb"]), "tuning_memory_mb"
    if not host_memory_mb:
        raise SettingsError("auto tuning needs the host's memory (gather facts) or tuning_memory_mb")
    return int(host_memory_mb) // max(sharing, 1), "host memory / %d instance(s)" % max(sharing, 1)


def _cpu_budget(inst, host_cpus):
    if inst.get("cpus"):
        return max(1, int(math.ceil(float(inst["cpus"]))))
    if inst.get("tuning_cpus"):
        return int(inst["tuning_cpus"])
    return int(host_cpus or 1)


def _reader_names(instance, readers):
    """Names of the read-only roles of an instance; their passwords stay out of the plan."""
    names = []
    for reader in readers or []:
        if not isinstance(reader, dict) or _empty(reader.get("name")) or _empty(reader.get("password")):
            raise _err(instance, "each of readers needs a name and a password, e.g. {name: metabase, password: ...}")
        unknown = sorted(set(reader) - set(("name", "password")))
        if unknown:
            raise _err(instance, "readers: unknown key(s) %s (accepted: name, password)" % ", ".join(unknown))
        names.append(to_text(reader["name"]))
    if len(set(names)) != len(names):
        raise _err(instance, "readers: names must be unique")
    return names


def _truncate(value):
    """log_truncate_on_rotation: on unless set off."""
    if value is None or value == "":
        return True
    try:
        return boolean(value, strict=True)
    except TypeError:
        raise SettingsError("log_truncate_on_rotation must be a boolean (got %r)" % (value,))


def _keep_days(value):
    """Days the role keeps server log files (0: it never deletes them)."""
    if value is None or value == "":
        return 0
    if isinstance(value, bool) or not str(value).strip().isdigit():
        raise SettingsError("log_keep_days must be a whole number of days, 0 to keep every log file (got %r)"
                            % (value,))
    return int(value)


def _access(inst, common, settings):
    """Client authentication of an instance (module_utils/access.py), with its host directory; None if unset."""
    access = access_plan(inst["name"], inst["user"], inst.get("hba"), inst.get("listen_addresses"),
                         inst.get("tls"), settings)
    if access:
        root = str(common.get("access_root") or "").rstrip("/")
        access["dir"] = inst.get("access_dir") or "%s/%s" % (root, inst["name"])
        if access["files"] and not access["dir"].startswith("/"):
            raise AccessError("access_dir (or postgres_container_access_root) must be an absolute host path")
    return access


def _compose_instance(inst, facts):
    """The instance as the compose project defines it: its image and credentials, no container options."""
    name = inst["name"]
    if (inst.get("state") or "started") != "started":
        raise _err(name, "state must be started for a service of the compose project %s (remove it with "
                         "docker-compose)" % facts["dir"])
    inst = dict(inst, image=facts["image"], user=facts["user"], db=facts["database"], password=None,
                password_file=None, data_path=None, initdb_dir=None, memory=None, cpus=None, shm_size=None)
    return inst


def _plan_one(inst, common, host_memory_mb, host_cpus, sharing, facts=None):
    name = inst["name"]
    if facts:
        inst = _compose_instance(inst, facts)
    plan = dict(inst)
    plan.pop("password", None)
    plan["readers"] = []  # names only, set below for started instances
    plan["compose"] = facts or None
    plan["exporter"] = None  # settings without the password, set below for started instances
    plan["role"] = inst.get("role") or name
    plan["state"] = inst.get("state") or "started"
    if plan["state"] not in STATES:
        raise _err(name, "state must be one of %s" % ", ".join(STATES))
    if plan["state"] == "absent":
        return plan
    plan["relabel"] = "" if _empty(inst.get("relabel")) else to_text(inst["relabel"])
    if plan["relabel"] not in RELABELS:
        raise _err(name, "relabel '%s' is not one of: '' (none), z (shared), Z (private)" % plan["relabel"])
    if _empty(inst.get("image")):
        raise _err(name, "image is empty")
    for key in ("user", "db"):
        if _empty(inst.get(key)):
            raise _err(name, "%s is required" % key)
    has_password = not _empty(inst.get("password"))
    has_file = not _empty(inst.get("password_file"))
    if facts:
        pass  # the project gives the container its password
    elif not has_password and not has_file:
        raise _err(name, "no password: set password or password_file (the default instances take "
                         "postgres_container_omero_password and postgres_container_biomero_password)")
    if has_password and has_file:
        raise _err(name, "set password or password_file, not both")
    if has_file and not inst["password_file"].startswith("/"):
        raise _err(name, "password_file must be an absolute path on the host")
    # The password stays out of plans and specs: only the (no_log) container
    # task reads it, from postgres_container_instances.
    plan.pop("password", None)
    plan["password_file"] = inst["password_file"] if has_file else None
    if facts:
        plan["data_path"] = plan["volume"] = None  # the project's own volume stays
    elif _empty(inst.get("data_path")):
        plan["data_path"] = None
        plan["volume"] = inst.get("volume") or name
    else:
        if not inst["data_path"].startswith("/"):
            raise _err(name, "data_path must be an absolute path on the host")
        plan["volume"] = None
    try:
        max_connections = int(inst.get("max_connections") or 100)
        if max_connections < 1:
            raise SettingsError("max_connections must be at least 1")
        tuning = inst.get("tuning") or "none"
        if tuning not in TUNING_MODES:
            raise SettingsError("tuning must be one of %s" % ", ".join(TUNING_MODES))
        tuned = {}
        plan["tuning_inputs"] = None
        if tuning == "auto":
            memory_mb, memory_source = _memory_budget_mb(inst, host_memory_mb, sharing)
            cpus = _cpu_budget(inst, host_cpus)
            tuned = auto_tune(memory_mb, cpus, max_connections)
            plan["tuning_inputs"] = {"memory_mb": memory_mb, "memory_source": memory_source, "cpus": cpus,
                                     "max_connections": max_connections}
        plan["tuned"] = tuned
        log_settings = {}
        plan["log_dir"] = None
        if inst.get("logging"):
            plan["log_dir"] = inst.get("log_dir") or "%s/%s" % (str(common.get("log_root", "")).rstrip("/"), name)
            if not plan["log_dir"].startswith("/"):
                raise SettingsError("log_dir (or postgres_container_log_root) must be an absolute host path")
            log_settings = logging_settings(
                common.get("log_mount") or "/var/log/postgresql",
                filename=inst.get("log_filename") or "postgresql-%a.log",
                rotation_age=inst.get("log_rotation_age") or "1d",
                rotation_size=inst.get("log_rotation_size") or "0",
                statement=inst.get("log_statement") or "ddl",
                truncate_on_rotation=_truncate(inst.get("log_truncate_on_rotation")))
        plan["log_keep_days"] = _keep_days(inst.get("log_keep_days"))
        settings = merge_settings(
            tuned,
            log_settings,
            normalize_settings(common.get("settings"), source="postgres_container_settings"),
            normalize_settings(inst.get("settings") if "settings" in inst else None, source="settings"),
        )
        for key in ("shm_size", "memory"):
            if not _empty(inst.get(key)):
                size_to_bytes(inst[key])
        plan["access"] = _access(inst, common, settings)
        if facts and plan["access"] and plan["access"]["files"]:
            raise AccessError("hba and tls mount the instance's access directory, which the compose override "
                              "does not carry: not supported for a service taken over from a compose project "
                              "(listen_addresses is)")
    except (SettingsError, AccessError, ValueError, TypeError) as exc:
        raise _err(name, to_text(exc))
    env = inst.get("env") or {}
    clash = sorted(set(env) & set(RESERVED_ENV))
    if clash:
        raise _err(name, "env must not set %s (use user/db/password/password_file/pgdata)" % ", ".join(clash))
    plan["readers"] = _reader_names(name, inst.get("readers"))
    try:
        plan["exporter"] = exporter_plan(inst.get("exporter"), common.get("exporter_user"))
    except ExporterError as exc:
        raise _err(name, to_text(exc))
    plan["env"] = dict((to_text(k), to_text(v)) for k, v in env.items())
    plan["max_connections"] = max_connections
    plan["settings"] = settings
    plan["check"] = {"name": name, "image": inst["image"], "max_connections": max_connections,
                     "settings": settings}
    plan["tag_major"] = major_from_image(inst["image"])
    return plan


def postgres_container_plan(instances, common, host_memory_mb=None, host_cpus=None, compose=None):
    """Merged, validated instances (see the module docstring). ``compose``: the results of
    ``pg_compose_service`` reading each instance's service (postgres_container_compose_project), or None."""
    if not isinstance(instances, list):
        raise AnsibleFilterError("postgres_container: postgres_container_instances must be a list")
    common = dict(common or {})
    facts = dict((result["item"]["name"], result) for result in compose or [] if not result.get("skipped"))
    for instance in instances:
        owned = sorted(key for key in COMPOSE_OWNED if instance.get("name") in facts and instance.get(key) is not None)
        if owned:
            raise _err(instance["name"], "%s: the compose project %s sets these for service %s; change them there"
                       % (", ".join(owned), facts[instance["name"]]["dir"], facts[instance["name"]]["service"]))
    merged = [_merged(dict(instance), common) for instance in instances]
    names = [inst["name"] for inst in merged]
    duplicates = sorted(set(n for n in names if names.count(n) > 1))
    if duplicates:
        raise AnsibleFilterError("postgres_container: instance names must be unique: %s" % ", ".join(duplicates))
    services = [facts[name]["service"] for name in names if name in facts]
    duplicates = sorted(set(n for n in services if services.count(n) > 1))
    if duplicates:
        raise AnsibleFilterError("postgres_container: two instances take over compose service(s) %s"
                                 % ", ".join(duplicates))
    sharing = len([i for i in merged if (i.get("state") or "started") != "absent"])
    return [_plan_one(inst, common, host_memory_mb, host_cpus, sharing, facts.get(inst["name"]))
            for inst in merged]


def postgres_container_compose_services(instances):
    """[{name, service}] of the instances (service: compose_service, default the name): what the role reads
    from the compose project, without the instances' passwords."""
    return [{"name": item.get("name"), "service": item.get("compose_service") or item.get("name")}
            for item in instances or []]


def _labels(plan, common, major):
    labels = {}
    for source in (common.get("labels"), plan.get("labels")):
        labels.update(dict((to_text(k), to_text(v)) for k, v in (source or {}).items()))
    labels.update({
        LABEL_PREFIX + "instance": plan["name"],
        label_names.INSTANCE_ROLE: plan["role"],
        label_names.INSTANCE_MAJOR: to_text(major),
        LABEL_PREFIX + "managed-by": MANAGED_BY,
    })
    return labels


def _spec_one(plan, common, probed):
    name = plan["name"]
    if plan["state"] == "absent":
        return dict(plan)
    facts = probed.get(name)
    if facts is None:
        raise _err(name, "pg_settings_check returned nothing for this instance")
    major = facts.get("major") or plan.get("tag_major")
    try:
        mount, pgdata = data_layout(major, plan.get("data_mount"), plan.get("pgdata"))
    except SettingsError as exc:
        raise _err(name, to_text(exc))
    spec = dict(plan)
    spec.update({"major": major, "uid": facts.get("uid"), "gid": facts.get("gid"),
                 "data_mount": mount, "pgdata": pgdata})
    if plan.get("compose"):
        return _compose_spec(spec, common)
    if plan.get("volume"):
        mounts = [{"type": "volume", "source": plan["volume"], "target": mount}]
    else:
        mounts = [{"type": "bind", "source": plan["data_path"], "target": mount}]
    env = dict(plan["env"])
    env.update({"POSTGRES_USER": plan["user"], "POSTGRES_DB": plan["db"], "PGDATA": pgdata})
    if plan.get("password_file"):
        env["POSTGRES_PASSWORD_FILE"] = PASSWORD_FILE_TARGET
        mounts.append({"type": "bind", "source": plan["password_file"], "target": PASSWORD_FILE_TARGET,
                       "read_only": True})
    if not _empty(plan.get("initdb_dir")):
        if not plan["initdb_dir"].startswith("/"):
            raise _err(name, "initdb_dir must be an absolute host path")
        mounts.append({"type": "bind", "source": plan["initdb_dir"], "target": INITDB_TARGET, "read_only": True})
    if plan.get("log_dir"):
        mounts.append({"type": "bind", "source": plan["log_dir"],
                       "target": common.get("log_mount") or "/var/log/postgresql"})
    access = plan.get("access") or {"settings": {}}
    if access.get("files"):
        mounts.append({"type": "bind", "source": access["dir"], "target": access["mount"], "read_only": True})
    if plan.get("relabel"):
        mounts = [dict(m, relabel=plan["relabel"]) if m["type"] == "bind" else m for m in mounts]
    host_files = [{"what": what, "path": plan[what]} for what in ("password_file", "initdb_dir")
                  if not _empty(plan.get(what))]
    health = _healthcheck(plan, common)
    ports = []
    if plan.get("published_port"):
        ports = ["%s:%d:%d" % (common.get("publish_address") or "127.0.0.1", int(plan["published_port"]), PG_PORT)]
    network = plan.get("network")
    networks = [{"name": network, "aliases": list(plan.get("aliases") or [])}] if network else []
    spec.update({
        "env": env,
        "host_files": host_files,
        "mounts": mounts,
        "labels": _labels(plan, common, major),
        "healthcheck": health,
        "published_ports": ports,
        "networks": networks,
        "command": postgres_command(plan["max_connections"], merge_settings(plan["settings"], access["settings"])),
        "shm_size": plan.get("shm_size") or None,
        "memory": plan.get("memory") or None,
        "cpus": float(plan["cpus"]) if plan.get("cpus") else None,
    })
    return spec


def _healthcheck(plan, common):
    health = dict(common.get("healthcheck") or {})
    health["test"] = ["CMD", "pg_isready", "-q", "-h", "127.0.0.1", "-p", str(PG_PORT),
                      "-U", plan["user"], "-d", plan["db"]]
    return health


def _compose_spec(spec, common):
    """A service of the compose project: the container compose made (or makes), the settings for its override."""
    log_mount = common.get("log_mount") or "/var/log/postgresql"
    spec.update({
        "name": spec["compose"]["container"],
        "instance": spec["name"],
        "env": {}, "host_files": [], "labels": {}, "published_ports": [], "networks": [],
        "mounts": [{"type": "bind", "source": spec["log_dir"], "target": log_mount}] if spec.get("log_dir") else [],
        "compose_mounts": ["%s:%s" % (spec["log_dir"], log_mount)] if spec.get("log_dir") else [],
        "healthcheck": _healthcheck(spec, common),
        "command": postgres_command(spec["max_connections"],
                                    merge_settings(spec["settings"], (spec.get("access") or {}).get("settings"))),
        "shm_size": None, "memory": None, "cpus": None,
    })
    return spec


def postgres_container_spec(plans, common, check_result):
    """Container specifications from plans and the result of pg_settings_check."""
    probed = dict((item["name"], item) for item in (check_result or {}).get("instances") or [] if item)
    return [_spec_one(plan, dict(common or {}), probed) for plan in plans]


def _health(status):
    if "(healthy)" in status:
        return "healthy"
    if "(unhealthy)" in status:
        return "unhealthy"
    if "(health: starting)" in status:
        return "starting"
    return "none"


def postgres_container_listed(containers, specs):
    """Per spec, its container from ``docker_host_info`` (``verbose_output``):
    exists, state, status, health, the running major (our label, else the
    image tag) and ``settled`` (healthy, or in a state it will not leave on
    its own: missing, exited, dead, restarting).

    The container list carries no environment (so no password), unlike
    ``docker_container_info``, and one call covers every instance.
    """
    by_name = {}
    for container in containers or []:
        for name in container.get("Names") or []:
            by_name[name.lstrip("/")] = container
    summaries = []
    for spec in specs or []:
        container = by_name.get(spec["name"])
        labels = (container or {}).get("Labels") or {}
        status = to_text((container or {}).get("Status") or "")
        state = to_text((container or {}).get("State") or "") if container else "missing"
        health = _health(status)
        running_major = labels.get(label_names.INSTANCE_MAJOR) or major_from_image((container or {}).get("Image")) or ""
        summaries.append({
            "name": spec["name"],
            "image": spec.get("image"),
            "major": spec.get("major"),
            "log_dir": spec.get("log_dir"),
            "exists": container is not None,
            "id": (container or {}).get("Id") or "",
            "running_image": (container or {}).get("Image") or "",
            "running_major": to_text(running_major),
            "state": state,
            "status": status,
            "health": health,
            "settled": health == "healthy" or state in ("missing", "exited", "dead", "restarting"),
        })
    return summaries


def postgres_container_name_filter(specs):
    """Anchored regular expressions for docker's container ``name`` filter."""
    return ["^/%s$" % re.escape(spec["name"]) for spec in specs or []]


class FilterModule(object):
    """Filters of the role postgres_container."""

    def filters(self):
        return {
            "postgres_container_plan": postgres_container_plan,
            "postgres_container_spec": postgres_container_spec,
            "postgres_container_listed": postgres_container_listed,
            "postgres_container_name_filter": postgres_container_name_filter,
            "postgres_container_compose_services": postgres_container_compose_services,
        }
