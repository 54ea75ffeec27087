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
    if strategy not in ("dump_restore", "pipe", "logical"):
        raise UpgradeError("unknown strategy %r (dump_restore, pipe or logical)" % (strategy,))
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
    """docker_container ``networks`` (name, aliases, fixed addresses, links) from NetworkSettings.Networks.

    Aliases the engine adds itself (the short container id, the container name)
    are left out; they follow the new container. Addresses are carried only
    when they were fixed (IPAMConfig), not the ones the engine handed out.
    """
    skip = set([old_name])
    if container_id:
        skip.add(container_id[:12])
        skip.add(container_id)
    specs = []
    for name, data in sorted((networks or {}).items()):
        if name in ("bridge", "host", "none"):
            continue
        data = data or {}
        spec = {"name": name}
        aliases = [alias for alias in data.get("Aliases") or [] if alias not in skip]
        if aliases:
            spec["aliases"] = aliases
        for key, option in (("IPv4Address", "ipv4_address"), ("IPv6Address", "ipv6_address")):
            if (data.get("IPAMConfig") or {}).get(key):
                spec[option] = data["IPAMConfig"][key]
        links = [_link(link) for link in data.get("Links") or []]
        if links:
            spec["links"] = links
        specs.append(spec)
    return specs


def _link(link):
    """'other:alias' from a link as the engine shows it ('/other:/me/alias' or 'other:alias')."""
    target, _sep, alias = link.partition(":")
    return "%s:%s" % (target.lstrip("/"), alias.rsplit("/", 1)[-1] or target.lstrip("/"))


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


# HostConfig fields docker_container takes as they are (copied when set).
_HOST_AS_IS = (
    ("CapAdd", "capabilities"), ("CapDrop", "cap_drop"), ("SecurityOpt", "security_opts"),
    ("ReadonlyRootfs", "read_only"), ("Privileged", "privileged"), ("Init", "init"),
    ("Dns", "dns_servers"), ("DnsSearch", "dns_search_domains"), ("DnsOptions", "dns_opts"),
    ("Sysctls", "sysctls"), ("GroupAdd", "groups"), ("PidsLimit", "pids_limit"),
    ("CpuShares", "cpu_shares"), ("CpuPeriod", "cpu_period"), ("CpuQuota", "cpu_quota"),
    ("CpusetCpus", "cpuset_cpus"), ("CpusetMems", "cpuset_mems"), ("BlkioWeight", "blkio_weight"),
    ("OomKillDisable", "oom_killer"), ("OomScoreAdj", "oom_score_adj"), ("PidMode", "pid_mode"),
    ("IpcMode", "ipc_mode"), ("UTSMode", "uts"), ("UsernsMode", "userns_mode"), ("CgroupParent", "cgroup_parent"),
    ("Runtime", "runtime"), ("VolumesFrom", "volumes_from"), ("PublishAllPorts", "publish_all_ports"),
    ("DeviceCgroupRules", "device_cgroup_rules"), ("StorageOpt", "storage_opts"), ("VolumeDriver", "volume_driver"),
)
# HostConfig byte sizes ('<n>b'; -1 is unlimited).
_HOST_BYTES = (("Memory", "memory"), ("MemoryReservation", "memory_reservation"), ("MemorySwap", "memory_swap"),
               ("KernelMemory", "kernel_memory"), ("ShmSize", "shm_size"))
# HostConfig device rates: option and whether the rate is a byte size (else operations per second).
_HOST_RATES = (("BlkioDeviceReadBps", "device_read_bps"), ("BlkioDeviceWriteBps", "device_write_bps"),
               ("BlkioDeviceReadIOps", "device_read_iops"), ("BlkioDeviceWriteIOps", "device_write_iops"))
# HostConfig fields docker_container cannot set: preflight refuses a container that sets one
# (the new container would silently lack it). Fields not named anywhere here are the engine's own
# (MaskedPaths, ConsoleSize, ContainerIDFile, ...) and follow from the carried ones.
_HOST_UNCARRIED = ("CpuRealtimePeriod", "CpuRealtimeRuntime", "BlkioWeightDevice", "KernelMemoryTCP", "CpuCount",
                   "CpuPercent", "IOMaximumIOps", "IOMaximumBandwidth", "Cgroup")
# Variables the image's entrypoint also reads from a file (<name>_FILE).
FILE_ENV = ("POSTGRES_PASSWORD", "POSTGRES_USER", "POSTGRES_DB", "POSTGRES_INITDB_ARGS")


def _is_set(value):
    return value not in (None, "", 0, False, [], {})


def _size(value):
    return "-1" if int(value) < 0 else "%db" % int(value)


def _inside(path, directory):
    """Whether ``path`` is ``directory`` or below it."""
    path, directory = path.rstrip("/") or "/", directory.rstrip("/") or "/"
    return path == directory or path.startswith(directory.rstrip("/") + "/")


_LAYOUT_PGDATA = re.compile(r"^/var/lib/postgresql/(data|[0-9]+/docker)/*$")


def _pgdata_follows(pgdata, old_data_mount, new_data_mount):
    """Whether the new container keeps the PGDATA the old one set.

    Only a PGDATA of the site's own (not a major's layout, see tuning.data_layout) in a data
    mount that did not move: otherwise the target image's own PGDATA applies (17 -> 18: from
    /var/lib/postgresql/data to /var/lib/postgresql/18/docker).
    """
    same_mount = bool(old_data_mount) and (old_data_mount.rstrip("/") or "/") == (new_data_mount.rstrip("/") or "/")
    return same_mount and _inside(pgdata, new_data_mount) and not _LAYOUT_PGDATA.match(pgdata)


def _argv(value):
    """Cmd/Entrypoint as a list: podman 4's inspect gives the container's Entrypoint as one string."""
    return value.split() if isinstance(value, str) else list(value)


def _config_options(config, image_config, container_id, network_mode):
    """Options from Config that the container set itself (what equals its image's is left to the new image)."""
    opts = {}
    for key, option in (("Cmd", "command"), ("Entrypoint", "entrypoint")):
        if config.get(key) and _argv(config[key]) != _argv(image_config.get(key) or []):
            opts[option] = _argv(config[key])
    for key, option in (("User", "user"), ("WorkingDir", "working_dir")):
        if config.get(key) and config[key] != image_config.get(key):
            opts[option] = config[key]
    hostname = config.get("Hostname") or ""
    if hostname and not (container_id or "").startswith(hostname) and network_mode != "host" \
            and not network_mode.startswith("container:"):
        opts["hostname"] = hostname
    for key, option in (("Domainname", "domainname"), ("MacAddress", "mac_address"), ("Tty", "tty"),
                        ("OpenStdin", "interactive")):
        if _is_set(config.get(key)):
            opts[option] = config[key]
    health = healthcheck_spec(config.get("Healthcheck"))
    if health:
        opts["healthcheck"] = health
    opts["stop_signal"] = config.get("StopSignal") or image_config.get("StopSignal") or "SIGINT"
    if config.get("StopTimeout") is not None:
        opts["stop_timeout"] = int(config["StopTimeout"])
    return opts


def _host_options(host):
    """Options from HostConfig: security, resources, logging, DNS, devices, restart policy."""
    opts = {}
    for key, option in _HOST_AS_IS:
        if _is_set(host.get(key)):
            opts[option] = host[key]
    for key, option in _HOST_BYTES:
        if _is_set(host.get(key)):
            opts[option] = _size(host[key])
    if host.get("MemorySwappiness") is not None:
        opts["memory_swappiness"] = int(host["MemorySwappiness"])
    if host.get("NanoCpus"):
        opts["cpus"] = int(host["NanoCpus"]) / 1e9
    if host.get("CgroupnsMode") in ("host", "private"):
        opts["cgroupns_mode"] = host["CgroupnsMode"]
    if host.get("Tmpfs"):
        opts["tmpfs"] = [("%s:%s" % (path, options)) if options else path
                         for path, options in sorted(host["Tmpfs"].items())]
    if host.get("Ulimits"):
        opts["ulimits"] = ["%s:%d:%d" % (item["Name"], item["Soft"], item["Hard"]) for item in host["Ulimits"]]
    if host.get("ExtraHosts"):
        opts["etc_hosts"] = dict(entry.partition(":")[::2] for entry in host["ExtraHosts"])
    if host.get("Devices"):
        opts["devices"] = ["%s:%s:%s" % (item["PathOnHost"], item["PathInContainer"], item["CgroupPermissions"])
                           for item in host["Devices"]]
    for key, option in _HOST_RATES:
        if host.get(key):
            opts[option] = [{"path": item["Path"], "rate": str(item["Rate"]) if "Bps" in key else int(item["Rate"])}
                            for item in host[key]]
    if host.get("DeviceRequests"):
        opts["device_requests"] = [dict((option, item[key]) for key, option in (
            ("Driver", "driver"), ("Count", "count"), ("DeviceIDs", "device_ids"), ("Capabilities", "capabilities"),
            ("Options", "options")) if _is_set(item.get(key))) for item in host["DeviceRequests"]]
    if host.get("Links"):
        opts["links"] = [_link(link) for link in host["Links"]]
    log = host.get("LogConfig") or {}
    if log.get("Type"):
        opts["log_driver"] = log["Type"]
        if log.get("Config"):
            opts["log_options"] = dict(log["Config"])
    restart = host.get("RestartPolicy") or {}
    opts["restart_policy"] = restart.get("Name") or "no"
    if restart.get("MaximumRetryCount"):
        opts["restart_retries"] = int(restart["MaximumRetryCount"])
    return opts


def _mount_spec(mount):
    """docker_container ``mounts`` item from a HostConfig.Mounts item, with its options."""
    spec = {"type": mount.get("Type") or "volume", "target": mount["Target"],
            "read_only": bool(mount.get("ReadOnly"))}
    if mount.get("Source"):
        spec["source"] = mount["Source"]
    if mount.get("Consistency") not in (None, "", "default"):
        spec["consistency"] = mount["Consistency"]
    bind = mount.get("BindOptions") or {}
    volume = mount.get("VolumeOptions") or {}
    tmpfs = mount.get("TmpfsOptions") or {}
    for value, option in ((bind.get("Propagation"), "propagation"), (bind.get("NonRecursive"), "non_recursive"),
                          (volume.get("NoCopy"), "no_copy"), (volume.get("Labels"), "labels"),
                          ((volume.get("DriverConfig") or {}).get("Name"), "volume_driver"),
                          ((volume.get("DriverConfig") or {}).get("Options"), "volume_options")):
        if _is_set(value):
            spec[option] = value
    if tmpfs.get("SizeBytes"):
        spec["tmpfs_size"] = "%db" % int(tmpfs["SizeBytes"])
    if tmpfs.get("Mode"):
        spec["tmpfs_mode"] = "%o" % int(tmpfs["Mode"])
    return spec


def _mount_options(host, old_data_mount, new_volume, new_data_mount):
    """``volumes`` (the -v bindings, as written) and ``mounts`` (with their options) of the new container.

    Leaves out the old data mount (the new volume takes its place at
    ``new_data_mount``) and anonymous volumes (the engine makes new ones). The
    init scripts stay: the new container starts on a cluster that exists, so
    they never run there (the staging container, which creates the cluster,
    gets none of these mounts).
    """
    skip = (old_data_mount,)
    volumes = [bind for bind in host.get("Binds") or [] if (bind.split(":") + [""])[1] not in skip]
    mounts = [_mount_spec(mount) for mount in host.get("Mounts") or []
              if mount.get("Target") not in skip and (mount.get("Source") or mount.get("Type") == "tmpfs")]
    mounts.append(new_data_volume(new_volume, new_data_mount))
    return {"volumes": volumes, "mounts": mounts}


def new_data_volume(new_volume, new_data_mount):
    """The ``mounts`` item of the new volume."""
    return {"type": "volume", "source": new_volume, "target": new_data_mount, "read_only": False}


def clone_spec(info, image_info, target_image, new_volume, old_data_mount, new_data_mount):
    """Parameters of community.docker.docker_container for the new instance, from the old one.

    Everything the old container set is taken over except what the upgrade
    changes: the image, the data mount (``new_volume`` at ``new_data_mount``,
    see :func:`data_mounts`), the upgrade's labels (:func:`upgrade_labels`),
    and a PGDATA of a major's layout or outside the new data mount. Environment variables
    are given by name (``env_names``; the values are read by the role under
    no_log, never returned). What docker_container cannot set is refused by
    :func:`clone_problems`. ``staging`` is the specification of the staging
    container (:func:`staging_spec`).
    """
    config = info.get("Config") or {}
    host = info.get("HostConfig") or {}
    image_config = (image_info or {}).get("Config") or {}
    name = (info.get("Name") or "").lstrip("/")
    spec = {"name": name, "image": target_image}

    env_names = _env_names(config.get("Env"), image_config.get("Env"))
    pgdata = _env_value(config.get("Env"), "PGDATA")
    if "PGDATA" in env_names and pgdata and not _pgdata_follows(pgdata, old_data_mount, new_data_mount):
        env_names.remove("PGDATA")
    spec["env_names"] = env_names

    networks = network_specs((info.get("NetworkSettings") or {}).get("Networks"), info.get("Id"), name)
    spec["networks"] = networks
    mode = host.get("NetworkMode") or "default"
    if networks:
        spec["network_mode"] = networks[0]["name"]
    elif mode not in ("default", "bridge"):
        spec["network_mode"] = mode
    spec["published_ports"] = published_ports(host.get("PortBindings"))
    exposed = set(config.get("ExposedPorts") or {}) - set(image_config.get("ExposedPorts") or {}) \
        - set(host.get("PortBindings") or {})
    if exposed:
        spec["exposed_ports"] = sorted(exposed)

    spec.update(_config_options(config, image_config, info.get("Id"), mode))
    spec.update(_host_options(host))
    spec.update(_mount_options(host, old_data_mount, new_volume, new_data_mount))

    image_labels = image_config.get("Labels") or {}
    spec["labels"] = dict((key, value) for key, value in (config.get("Labels") or {}).items()
                          if image_labels.get(key) != value and not key.startswith(labels.UPGRADE_PREFIX))
    spec["staging"] = staging_spec(spec, command_settings(config.get("Cmd")), new_volume, new_data_mount)
    return spec


def _env_value(env, name):
    """The value of ``name`` in an inspect Env list (the last one counts), or None."""
    value = None
    for item in env or []:
        if item.startswith(name + "="):
            value = item.split("=", 1)[1]
    return value


def staging_command(settings):
    """postgres command line of the staging container: the old settings it can use, archiving off.

    The staging cluster has none of the old container's bind mounts, so settings
    naming files or directories are left out, and it never archives WAL (an
    archive_command of the old cluster would write the new cluster's WAL into
    the old cluster's archive).
    """
    argv = ["postgres"]
    for name, value in settings.items():
        if name.startswith("archive_") or name.endswith(("_command", "_file", "_directory", "_path")) \
                or name in ("data_directory", "primary_conninfo", "primary_slot_name") or "/" in value:
            continue
        argv += ["-c", "%s=%s" % (name, value)]
    return argv + ["-c", "archive_mode=off"]


def staging_spec(spec, settings, new_volume, new_data_mount):
    """The staging container (the new cluster before the swap): the new volume only, no network, no archiving.

    ``file_env``: the <name>_FILE variables whose files the role reads from the
    old container and hands over as <name> (their files are on mounts the
    staging container does not get).
    """
    return {"command": staging_command(settings), "mounts": [new_data_volume(new_volume, new_data_mount)],
            "file_env": [name for name in spec["env_names"]
                         if name.endswith("_FILE") and name[:-len("_FILE")] in FILE_ENV]}


def clone_problems(info, old_data_mount, new_data_mount):
    """Why the old container cannot be cloned faithfully and safely (messages; empty when it can)."""
    name = (info.get("Name") or "").lstrip("/")
    host = info.get("HostConfig") or {}
    problems = []
    if host.get("AutoRemove"):
        problems.append("container %s is removed when it stops (--rm / auto_remove): the upgrade could not keep it "
                        "for a rollback; recreate it without auto_remove first" % name)
    for key in _HOST_UNCARRIED:
        if _is_set(host.get(key)):
            problems.append("container %s sets HostConfig.%s=%s, which the new container cannot be given "
                            "(docker_container has no such option); recreate it without it first"
                            % (name, key, host[key]))
    for mount in info.get("Mounts") or []:
        destination = (mount.get("Destination") or "").rstrip("/")
        if old_data_mount and destination != old_data_mount.rstrip("/") and _inside(destination, old_data_mount):
            problems.append("mount %s of container %s lies inside its data mount %s: the new cluster would use the "
                            "old cluster's files there; not supported" % (destination, name, old_data_mount))
    waldir = _env_value((info.get("Config") or {}).get("Env"), "POSTGRES_INITDB_WALDIR")
    if waldir and not _inside(waldir, new_data_mount):
        problems.append("container %s sets POSTGRES_INITDB_WALDIR=%s outside the data mount %s: the new cluster "
                        "would write its WAL where the old one keeps its own; not supported"
                        % (name, waldir, new_data_mount))
    return problems


def upgrade_labels(old_name, old_volume, old_image, from_major, new_volume, to_major):
    """Labels that tie the new container to what it replaced, and the major it runs.

    The major label is the one provisioning (role postgres_container) reads
    first: with the new major on it, provisioning accepts the new container
    once its inventory names the new image and volume.
    """
    return {
        labels.UPGRADE_PREVIOUS_CONTAINER: old_name,
        labels.UPGRADE_PREVIOUS_VOLUME: old_volume or "",
        labels.UPGRADE_PREVIOUS_IMAGE: old_image or "",
        labels.UPGRADE_FROM_MAJOR: str(from_major),
        labels.UPGRADE_VOLUME: new_volume,
        labels.INSTANCE_MAJOR: str(to_major),
    }


def aside_names(name, names):
    """The containers among ``names`` that an upgrade of ``name`` may have set aside ('<name>-pg<major>')."""
    pattern = re.compile(r"^%s-pg[0-9]+$" % re.escape(name))
    return sorted(item for item in names if pattern.match(item))


def _running(info):
    return bool(((info or {}).get("State") or {}).get("Running"))


def recovery_plan(name, current, aside, staging, volumes, journal=None, rollback=False):
    """How to bring back the old instance ``name`` after an interrupted (with ``rollback``: also a finished) upgrade.

    ``current``: inspect data of the container called ``name`` (None: there is none). ``aside``:
    {name: inspect data} of the containers called '<name>-pg<major>'. ``staging``: names of the
    staging containers of ``name``. ``volumes``: {volume: [containers using it]} of the volumes an
    upgrade of ``name`` created. ``journal``: what the upgrade recorded before it changed anything
    (None when none is under way); it tells an interrupted swap from a finished one and names the
    clients the run stopped.

    Returns ``state`` (clean: nothing to do; interrupted; finished), ``step`` (where it stopped:
    before_swap, set_aside, new_created, new_started, finished), ``old_name``, and the actions:
    ``remove`` (containers, staging first), ``rename`` (old_name back to name), ``start``,
    ``volumes`` (the new volume, removable: no container keeps using it), ``clients`` (to start
    again); ``problems`` when the old instance cannot be brought back; ``old_volume``,
    ``new_volume`` and ``running`` (the container called ``name`` runs now) for the report.
    """
    journal = journal or {}
    made = ((current or {}).get("Config") or {}).get("Labels") or {}
    made_from = made.get(labels.UPGRADE_PREVIOUS_CONTAINER)
    old_name = journal.get("old_name") or made_from or (list(aside)[0] if len(aside) == 1 else None)
    old = aside.get(old_name) if old_name else None
    new_made = current is not None and made_from is not None and made_from == old_name
    new_volume = journal.get("new_volume") or (made.get(labels.UPGRADE_VOLUME) if new_made else None)
    plan = {"state": "clean", "step": "none", "old_name": old_name, "remove": sorted(staging), "rename": False,
            "start": False, "volumes": [], "clients": list(journal.get("clients") or []), "problems": [],
            "new_volume": new_volume, "running": _running(current),
            "old_volume": journal.get("old_volume") or (made.get(labels.UPGRADE_PREVIOUS_VOLUME) if new_made else None)}
    if current is not None and not new_made:
        # The old container still has its name: stopped at most.
        if not (journal or staging):
            return plan
        plan.update(state="interrupted", step="before_swap", start=not _running(current))
    elif new_made:
        plan.update(state="interrupted" if journal else "finished",
                    step=("new_started" if _running(current) else "new_created") if journal else "finished")
        if old is None:
            if journal or rollback:
                plan["problems"].append("container %s was made by an upgrade from %s, which no longer exists "
                                        "(cleaned up?): there is no old instance to go back to" % (name, old_name))
            return plan
        if plan["state"] == "interrupted" or rollback:
            plan["remove"].append(name)
            plan.update(rename=True, start=True)
    elif old is not None:
        plan.update(state="interrupted", step="set_aside", rename=True, start=True)
    elif journal or staging:
        plan.update(state="interrupted", step="lost")
        plan["problems"].append("neither %s nor %s exists: there is no old instance to bring back"
                                % (name, old_name or "%s-pg<major>" % name))
        return plan
    else:
        return plan
    if plan["state"] == "finished" and not rollback:
        return plan
    plan["volumes"] = sorted(volume for volume, users in volumes.items()
                             if set(users) <= set(plan["remove"]) and volume == (new_volume or volume))
    return plan


def first_ten(items):
    """The first ten of ``items`` joined with '; ', and how many more there are (messages stay readable)."""
    more = " (and %d more)" % (len(items) - 10) if len(items) > 10 else ""
    return "; ".join(items[:10]) + more


def compare_fingerprints(before, after):
    """Differences between two fingerprints (as returned by pg_fingerprint), as readable strings.

    Row counts (when both have them) and sequence values must be equal per database; every role of
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
        if "tables" in old and "tables" in new:  # one side taken without row counts: not compared
            differences += _compare_maps("%s: rows of" % database, old["tables"], new["tables"])
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
