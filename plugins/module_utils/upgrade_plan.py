# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Major-version upgrade of a PostgreSQL container: the plan, pure (no engine, no server, no files).

Whether to upgrade, the names of the renamed old container and the new
volume, the disk estimate, the data mounts, the new container's specification
cloned from the old container's inspect data, the upgrade labels, the
settings and extension rules, and the comparison of fingerprints taken
before and after. ``upgrade`` holds the host actions that gather the facts
and move the data.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.nl_biomero.database.plugins.module_utils import labels
from ansible_collections.nl_biomero.database.plugins.module_utils.errors import NlbError
from ansible_collections.nl_biomero.database.plugins.module_utils.pg_tools import major_version
from ansible_collections.nl_biomero.database.plugins.module_utils.tuning import data_layout

INITDB_DIR = "/docker-entrypoint-initdb.d"

# Smoke queries per instance kind: tables whose row count is compared (when the table exists).
SMOKE_TABLES = {
    "omero": ["job"],
    "biomero": ["imports", "workflowtracker_events"],
}

_VOLUME_SUFFIX = re.compile(r"-pg\d+$")
_SETTING = re.compile(r"^([A-Za-z_][A-Za-z0-9_.]*)=(.*)$", re.S)


class UpgradeError(NlbError):
    """A decision cannot be made (bad input); the message says why."""


def decide(current_major, target_major, allow_same_major=False):
    """'upgrade' or 'noop' for the majors; UpgradeError for a downgrade."""
    current_major, target_major = int(current_major), int(target_major)
    if target_major < current_major:
        raise UpgradeError("target major %d is older than the running major %d: a downgrade is not possible "
                           "(restore a backup instead)" % (target_major, current_major))
    if target_major == current_major:
        return "upgrade" if allow_same_major else "noop"
    return "upgrade"


def image_major(image_info):
    """Major version an image declares in PG_MAJOR (the official image contract), or None."""
    for item in ((image_info or {}).get("Config") or {}).get("Env") or []:
        if item.startswith("PG_MAJOR="):
            return major_version(item.split("=", 1)[1])
    return None


def old_container_name(name, major):
    """Name the old container gets once it is stopped: '<name>-pg<major>'."""
    return "%s-pg%d" % (name, int(major))


def new_volume_name(old_volume, name, target_major):
    """Volume of the new instance: the old volume's name with '-pg<target>' (replacing an old suffix)."""
    base = old_volume if old_volume and not _is_anonymous(old_volume) else "%s-data" % name
    return "%s-pg%d" % (_VOLUME_SUFFIX.sub("", base), int(target_major))


def _is_anonymous(volume):
    return bool(re.match(r"^[0-9a-f]{64}$", volume or ""))


def disk_estimate(database_bytes, strategy, margin=1.5):
    """Bytes needed: {'volume': new cluster, 'dump': intermediate archive}.

    The new cluster holds the same data (minus bloat); the margin covers WAL
    written during the restore. An archive is at most the size of the data
    (compression makes it much smaller, a conservative estimate keeps it).
    """
    if strategy not in ("dump_restore", "pipe"):
        raise UpgradeError("unknown strategy %r (dump_restore or pipe)" % (strategy,))
    total = sum(int(size) for size in database_bytes)
    volume = int(total * float(margin))
    dump = int(total * float(margin) / 2) if strategy == "dump_restore" else 0
    return {"volume": volume, "dump": dump, "data": total}


def disk_problems(estimate, free_volume, free_dump, same_filesystem):
    """Messages for a lack of space; the dump and the volume may share a file system."""
    problems = []
    if same_filesystem:
        need = estimate["volume"] + estimate["dump"]
        if free_volume is not None and free_volume < need:
            problems.append("not enough free disk: %s needed for the new volume and the dump, %s free"
                            % (human_bytes(need), human_bytes(free_volume)))
        return problems
    if free_volume is not None and free_volume < estimate["volume"]:
        problems.append("not enough free disk for the new volume: %s needed, %s free"
                        % (human_bytes(estimate["volume"]), human_bytes(free_volume)))
    if free_dump is not None and free_dump < estimate["dump"]:
        problems.append("not enough free disk in the dump directory: %s needed, %s free"
                        % (human_bytes(estimate["dump"]), human_bytes(free_dump)))
    return problems


def human_bytes(num):
    num = float(num)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(num) < 1024 or unit == "TiB":
            return ("%d %s" % (num, unit)) if unit == "B" else ("%.1f %s" % (num, unit))
        num /= 1024.0
    return str(num)


def command_settings(command):
    """{'name': 'value'} of the '-c name=value' and '--name=value' arguments of a postgres command line."""
    settings = {}
    args = list(command or [])
    i = 0
    while i < len(args):
        arg = args[i]
        value = None
        if arg == "-c" and i + 1 < len(args):
            value = args[i + 1]
            i += 1
        elif arg.startswith("-c") and len(arg) > 2:
            value = arg[2:]
        elif arg.startswith("--") and "=" in arg:
            name, _sep, rest = arg[2:].partition("=")
            value = "%s=%s" % (name.replace("-", "_"), rest)
        if value is not None:
            match = _SETTING.match(value)
            if match:
                settings[match.group(1)] = match.group(2)
        i += 1
    return settings


def extension_names(listing):
    """Extensions an image ships, from the file names of its extension directory ('x.control' -> 'x')."""
    return [name[:-len(".control")] for name in listing.split() if name.endswith(".control")]


def missing_extensions(used, available):
    """{'database': [extension, ...]} of extensions in use that the target cannot create."""
    available = set(available)
    missing = {}
    for database, extensions in sorted(used.items()):
        lacking = sorted(set(extensions) - available - {"plpgsql"})
        if lacking:
            missing[database] = lacking
    return missing


def _duration(nanoseconds):
    """A docker duration string for docker_container from inspect's nanoseconds."""
    nanoseconds = int(nanoseconds or 0)
    if nanoseconds % 1000000000 == 0:
        return "%ds" % (nanoseconds // 1000000000)
    return "%dms" % (nanoseconds // 1000000)


def healthcheck_spec(config_healthcheck):
    """docker_container ``healthcheck`` from inspect's Config.Healthcheck (None when there is none)."""
    if not config_healthcheck or not config_healthcheck.get("Test"):
        return None
    test = list(config_healthcheck["Test"])
    if test == ["NONE"]:
        return None
    spec = {"test": test}
    for key, name in (("Interval", "interval"), ("Timeout", "timeout"), ("StartPeriod", "start_period")):
        if config_healthcheck.get(key):
            spec[name] = _duration(config_healthcheck[key])
    if config_healthcheck.get("Retries"):
        spec["retries"] = int(config_healthcheck["Retries"])
    return spec


def _env_names(container_env, image_env):
    """Names of the variables the container sets itself (not inherited unchanged from its image)."""
    inherited = set(image_env or [])
    names = []
    for item in container_env or []:
        if item in inherited:
            continue
        name = item.split("=", 1)[0]
        if name not in names:
            names.append(name)
    return names


def published_ports(port_bindings):
    """docker_container ``published_ports`` ('ip:host:container/proto') from HostConfig.PortBindings."""
    ports = []
    for container_port, bindings in sorted((port_bindings or {}).items()):
        for binding in bindings or []:
            host_ip = binding.get("HostIp") or ""
            host_port = binding.get("HostPort") or ""
            if host_ip:
                ports.append("%s:%s:%s" % (host_ip, host_port, container_port))
            else:
                ports.append("%s:%s" % (host_port, container_port))
    return ports


def network_specs(networks, container_id, old_name):
    """docker_container ``networks`` (name + aliases) from NetworkSettings.Networks.

    Aliases the engine adds itself (the short container id, the container name)
    are left out; they follow the new container.
    """
    skip = set([old_name])
    if container_id:
        skip.add(container_id[:12])
        skip.add(container_id)
    specs = []
    for name, data in sorted((networks or {}).items()):
        if name in ("bridge", "host", "none"):
            continue
        aliases = [alias for alias in (data or {}).get("Aliases") or [] if alias not in skip]
        spec = {"name": name}
        if aliases:
            spec["aliases"] = aliases
        specs.append(spec)
    return specs


def data_mount(mounts, pgdata):
    """The mount (inspect's Mounts entry) holding the data directory ``pgdata``: the deepest at or above it, or None."""
    found = None
    for mount in mounts or []:
        destination = (mount.get("Destination") or "").rstrip("/") or "/"
        inside = pgdata == destination or pgdata.startswith(destination.rstrip("/") + "/")
        if inside and (found is None or len(destination) > len(found["Destination"].rstrip("/"))):
            found = mount
    return found


def data_mounts(mounts, pgdata, current_major, target_major, data_dir=None):
    """(the old container's data mount or None, mount point of the new volume).

    The old mount is the one holding the old data directory: ``data_dir`` when
    given, else the container's PGDATA, else where its major keeps it. The new
    volume goes where the target major's layout puts it, or at ``data_dir``
    (tuning.data_layout is the one rule).
    """
    old_pgdata = data_dir or pgdata or data_layout(current_major)[1]
    return data_mount(mounts, old_pgdata), data_layout(target_major, data_dir)[0]


def clone_spec(info, image_info, target_image, new_volume, old_data_mount, new_data_mount):
    """Parameters of community.docker.docker_container for the new instance, from the old one.

    Takes over: the name, environment variables the container set (by name; the
    values are read by the role under no_log, never returned), the command when it
    differs from the old image's (so '-c' settings), entrypoint when overridden,
    mounts except the old data mount at ``old_data_mount`` (replaced by
    ``new_volume`` at ``new_data_mount``, see :func:`data_mounts`) and the init
    scripts directory (the restore brings the data, init scripts must not run
    again), networks with their aliases, published ports, labels the container
    set, restart policy, health check, memory, CPUs, shared memory, stop signal and
    timeout, user.
    """
    config = info.get("Config") or {}
    host = info.get("HostConfig") or {}
    image_config = (image_info or {}).get("Config") or {}
    name = (info.get("Name") or "").lstrip("/")
    spec = {"name": name, "image": target_image}

    spec["env_names"] = _env_names(config.get("Env"), image_config.get("Env"))
    command = config.get("Cmd") or []
    if command and command != (image_config.get("Cmd") or []):
        spec["command"] = list(command)
    entrypoint = config.get("Entrypoint") or []
    if entrypoint and entrypoint != (image_config.get("Entrypoint") or []):
        spec["entrypoint"] = list(entrypoint)
    if config.get("User") and config.get("User") != image_config.get("User"):
        spec["user"] = config["User"]

    mounts = []
    for mount in info.get("Mounts") or []:
        destination = mount.get("Destination")
        if destination in (old_data_mount, INITDB_DIR):
            continue
        kind = mount.get("Type") or "bind"
        source = mount.get("Name") if kind == "volume" else mount.get("Source")
        if kind == "volume" and _is_anonymous(source):
            continue
        item = {"type": kind, "source": source, "target": destination, "read_only": not mount.get("RW", True)}
        mounts.append(item)
    mounts.append({"type": "volume", "source": new_volume, "target": new_data_mount, "read_only": False})
    spec["mounts"] = mounts

    networks = network_specs((info.get("NetworkSettings") or {}).get("Networks"), info.get("Id"), name)
    spec["networks"] = networks
    mode = host.get("NetworkMode") or "default"
    if networks:
        spec["network_mode"] = networks[0]["name"]
    elif mode not in ("default", "bridge"):
        spec["network_mode"] = mode
    spec["published_ports"] = published_ports(host.get("PortBindings"))

    image_labels = image_config.get("Labels") or {}
    spec["labels"] = dict((key, value) for key, value in (config.get("Labels") or {}).items()
                          if image_labels.get(key) != value and not key.startswith(labels.UPGRADE_PREFIX))

    restart = (host.get("RestartPolicy") or {}).get("Name") or "no"
    spec["restart_policy"] = restart
    health = healthcheck_spec(config.get("Healthcheck"))
    if health:
        spec["healthcheck"] = health
    if host.get("Memory"):
        spec["memory"] = "%db" % int(host["Memory"])
    if host.get("NanoCpus"):
        spec["cpus"] = int(host["NanoCpus"]) / 1e9
    if host.get("ShmSize"):
        spec["shm_size"] = "%db" % int(host["ShmSize"])
    spec["stop_signal"] = config.get("StopSignal") or image_config.get("StopSignal") or "SIGINT"
    if config.get("StopTimeout"):
        spec["stop_timeout"] = int(config["StopTimeout"])
    return spec


def upgrade_labels(old_name, old_volume, old_image, from_major, new_volume):
    """Labels that tie the new container to what it replaced."""
    return {
        labels.UPGRADE_PREVIOUS_CONTAINER: old_name,
        labels.UPGRADE_PREVIOUS_VOLUME: old_volume or "",
        labels.UPGRADE_PREVIOUS_IMAGE: old_image or "",
        labels.UPGRADE_FROM_MAJOR: str(from_major),
        labels.UPGRADE_VOLUME: new_volume,
    }


def compare_fingerprints(before, after):
    """Differences between two fingerprints (as returned by pg_fingerprint), as readable strings.

    Row counts and sequence values must be equal per database; every role of
    ``before`` must exist in ``after`` (the new cluster may have more, e.g. the
    newer major's predefined roles); smoke query results must be equal.
    Database-level properties and, per role of ``before``, its attributes,
    settings, memberships, comment and password digest must be equal (when
    both fingerprints have them), and a write fence must be up in both or in neither.
    """
    differences = []
    before_dbs = before.get("databases") or {}
    after_dbs = after.get("databases") or {}
    for database in sorted(before_dbs):
        if database not in after_dbs:
            differences.append("database %s is missing" % database)
            continue
        old, new = before_dbs[database], after_dbs[database]
        differences += _compare_maps("%s: rows of" % database, old.get("tables") or {}, new.get("tables") or {})
        differences += _compare_maps("%s: sequence" % database, old.get("sequences") or {},
                                     new.get("sequences") or {})
        differences += _compare_maps("%s: smoke query on" % database, old.get("smoke") or {}, new.get("smoke") or {})
        if "properties" in old and "properties" in new:
            differences += _compare_maps("%s: database property" % database, old["properties"], new["properties"])
        if bool(old.get("write_fence")) != bool(new.get("write_fence")):
            differences.append("%s: the write fence (nl_biomero.write_fence) is %s before, %s after" % (
                database, "up" if old.get("write_fence") else "down", "up" if new.get("write_fence") else "down"))
    missing_roles = sorted(set(before.get("roles") or []) - set(after.get("roles") or []))
    if missing_roles:
        differences.append("roles missing: %s" % ", ".join(missing_roles))
    differences += _compare_roles(before, after)
    return differences


def _compare_roles(before, after):
    """Role attributes, settings, memberships and comments; password digests compared, never shown.

    The bootstrap superuser's password is not compared: the new cluster's
    image sets it from the same environment, with a new salt.
    """
    old_roles, new_roles = before.get("role_properties"), after.get("role_properties")
    if old_roles is None or new_roles is None:
        return []
    passwords = bool(before.get("passwords_compared") and after.get("passwords_compared")
                     and before.get("password_salt") == after.get("password_salt"))
    differences = []
    for role in sorted(set(old_roles) & set(new_roles)):
        old, new = dict(old_roles[role]), dict(new_roles[role])
        old_password, new_password = old.pop("password", None), new.pop("password", None)
        differences += _compare_maps("role %s:" % role, old, new)
        if passwords and not old.get("bootstrap") and old_password != new_password:
            differences.append("role %s: the password hash %s" % (
                role, "is missing after" if new_password is None else
                ("is new after" if old_password is None else "differs")))
    return differences


def _compare_maps(prefix, old, new):
    differences = []
    for key in sorted(set(old) | set(new)):
        if key not in new:
            differences.append("%s %s: missing after (before: %s)" % (prefix, key, old[key]))
        elif key not in old:
            differences.append("%s %s: new after (%s), absent before" % (prefix, key, new[key]))
        elif old[key] != new[key]:
            differences.append("%s %s: %s before, %s after" % (prefix, key, old[key], new[key]))
    return differences


def smoke_tables(kind):
    """Tables whose row count is the smoke query for an instance kind (omero, biomero, other)."""
    if kind == "auto":
        return sorted(set(t for tables in SMOKE_TABLES.values() for t in tables))
    return list(SMOKE_TABLES.get(kind, []))
