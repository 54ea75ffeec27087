# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Major-version upgrade of a PostgreSQL container: the decisions, kept pure.

Preflight (what to do, and why not), naming of the renamed old container and
the new volume, the disk estimate, the new container's specification cloned
from the old container's inspect data, and the comparison of fingerprints
(row counts, sequences, roles, smoke queries) taken before and after.
Everything that talks to the engine or the server lives in
``pg_upgrade_preflight``/``pg_fingerprint`` and ``pg_container``/``engine``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re
import subprocess
import tempfile
import time

from ansible_collections.nl_biomero.database.plugins.module_utils.errors import NlbError

# Labels put on the new container so that rollback and cleanup find the old one.
LABEL_PREFIX = "org.nl-biomero.upgrade."
LABEL_PREVIOUS_CONTAINER = LABEL_PREFIX + "previous-container"
LABEL_PREVIOUS_VOLUME = LABEL_PREFIX + "previous-volume"
LABEL_PREVIOUS_IMAGE = LABEL_PREFIX + "previous-image"
LABEL_FROM_MAJOR = LABEL_PREFIX + "from-major"
LABEL_VOLUME = LABEL_PREFIX + "volume"

DEFAULT_DATA_DIR = "/var/lib/postgresql/data"
INITDB_DIR = "/docker-entrypoint-initdb.d"

# Smoke queries per instance kind: (table, why). Counted when the table exists.
SMOKE_TABLES = {
    "omero": ["job"],
    "biomero": ["imports", "workflowtracker_events"],
}

_VOLUME_SUFFIX = re.compile(r"-pg\d+$")
_SETTING = re.compile(r"^([A-Za-z_][A-Za-z0-9_.]*)=(.*)$", re.S)


class UpgradeError(NlbError):
    """A decision cannot be made (bad input); the message says why."""


def major_of(version):
    """Major version of '15.10', '17', '9.6.24' or a server_version_num such as 170006."""
    text = str(version).strip()
    if text.isdigit() and len(text) >= 5:
        num = int(text)
        return num // 10000 if num >= 100000 else (num // 10000) * 10 + (num // 100) % 100
    match = re.match(r"^(\d+)(?:\.(\d+))?", text)
    if not match:
        raise UpgradeError("cannot read a PostgreSQL version from %r" % (version,))
    major = int(match.group(1))
    if major < 10 and match.group(2) is not None:
        return major * 10 + int(match.group(2))
    return major


def decide(current_major, target_major, allow_same_major=False):
    """'upgrade' or 'noop' for the majors; UpgradeError for a downgrade."""
    current_major, target_major = int(current_major), int(target_major)
    if target_major < current_major:
        raise UpgradeError("target major %d is older than the running major %d: a downgrade is not possible "
                           "(restore a backup instead)" % (target_major, current_major))
    if target_major == current_major:
        return "upgrade" if allow_same_major else "noop"
    return "upgrade"


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


def unknown_settings(settings, known):
    """Names of ``settings`` the target server does not know (custom 'a.b' placeholders are allowed)."""
    known = set(name.lower() for name in known)
    return sorted(name for name in settings if "." not in name and name.lower() not in known)


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


def data_mount(mounts, data_dir=DEFAULT_DATA_DIR):
    """The mount at the data directory (inspect's Mounts entry), or None."""
    for mount in mounts or []:
        if mount.get("Destination") == data_dir:
            return mount
    return None


def clone_spec(info, image_info, target_image, new_volume, data_dir=DEFAULT_DATA_DIR):
    """Parameters of community.docker.docker_container for the new instance, from the old one.

    Takes over: the name, environment variables the container set (by name; the
    values are read by the role under no_log, never returned), the command when it
    differs from the old image's (so '-c' settings), entrypoint when overridden,
    mounts except the data directory (replaced by ``new_volume``) and the init
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
        if destination == data_dir or destination == INITDB_DIR:
            continue
        kind = mount.get("Type") or "bind"
        source = mount.get("Name") if kind == "volume" else mount.get("Source")
        if kind == "volume" and _is_anonymous(source):
            continue
        item = {"type": kind, "source": source, "target": destination, "read_only": not mount.get("RW", True)}
        mounts.append(item)
    mounts.append({"type": "volume", "source": new_volume, "target": data_dir, "read_only": False})
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
    labels = dict((key, value) for key, value in (config.get("Labels") or {}).items()
                  if image_labels.get(key) != value and not key.startswith(LABEL_PREFIX))
    spec["labels"] = labels

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
        LABEL_PREVIOUS_CONTAINER: old_name,
        LABEL_PREVIOUS_VOLUME: old_volume or "",
        LABEL_PREVIOUS_IMAGE: old_image or "",
        LABEL_FROM_MAJOR: str(from_major),
        LABEL_VOLUME: new_volume,
    }


def compare_fingerprints(before, after):
    """Differences between two fingerprints (as returned by pg_fingerprint), as readable strings.

    Row counts and sequence values must be equal per database; every role of
    ``before`` must exist in ``after`` (the new cluster may have more, e.g. the
    newer major's predefined roles); smoke query results must be equal.
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
    missing_roles = sorted(set(before.get("roles") or []) - set(after.get("roles") or []))
    if missing_roles:
        differences.append("roles missing: %s" % ", ".join(missing_roles))
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


# ---------------------------------------------------------------------------
# The side that reads the host: engine, images, the running server.
# ---------------------------------------------------------------------------

SQL_DATABASES = ("SELECT datname, pg_database_size(datname), pg_get_userbyid(datdba) FROM pg_database "
                 "WHERE datallowconn AND NOT datistemplate ORDER BY 1")
SQL_EXTENSIONS = "SELECT extname FROM pg_extension ORDER BY 1"
# Objects a dump of the database would hold (an empty database dumps an empty archive).
SQL_OBJECTS = r"""SELECT
  (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_)')
  + (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema'))
  + (SELECT count(*) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_' AND t.typtype IN ('d', 'e'))
  + (SELECT count(*) FROM pg_extension WHERE extname <> 'plpgsql')
  + (SELECT count(*) FROM pg_largeobject_metadata)
  + (SELECT count(*) FROM pg_namespace WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'public')
    AND nspname !~ '^pg_')"""
SQL_ROLES = r"SELECT rolname FROM pg_roles WHERE rolname !~ '^pg_' ORDER BY 1"


def _smoke_sql(table):
    # ``table`` is one of the constants in SMOKE_TABLES: a plain lower-case identifier.
    return ("SELECT CASE WHEN to_regclass('%s') IS NULL THEN NULL ELSE "
            "(xpath('/row/n/text()', query_to_xml('SELECT count(*) AS n FROM %s', false, true, '')))[1]::text "
            "END" % (table, table))


def fingerprint(pg, databases=None, kind="auto"):
    """Row counts, sequence values and smoke counts per database, and the roles, of a PgContainer."""
    if not databases:
        databases = [row[0] for row in pg.query(SQL_DATABASES)]
    result = {"server_version": pg.server_version(), "databases": {}, "roles": []}
    for database in databases:
        smoke = {}
        for table in smoke_tables(kind):
            value = pg.scalar(_smoke_sql(table), database=database)
            if value not in (None, ""):
                smoke[table] = int(value)
        result["databases"][database] = {
            "tables": pg.table_row_counts(database),
            "sequences": pg.sequence_values(database),
            "smoke": smoke,
        }
    result["roles"] = [row[0] for row in pg.query(SQL_ROLES)]
    return result


class Preflight:
    """Reads everything the upgrade of one container depends on and decides; changes nothing."""

    def __init__(self, engine, run, pg_factory, statvfs, stat):
        self.engine = engine          # ContainerEngine
        self.run = run                # engine.run(argv) -> (rc, out, err)
        self.pg_factory = pg_factory  # () -> PgContainer of the instance
        self.statvfs = statvfs
        self.stat = stat

    def _image(self, reference):
        rc, out, err = self.run([self.engine.binary, "image", "inspect", reference])
        if rc != 0:
            return None
        data = json.loads(out)
        return data[0] if data else None

    def _exists(self, kind, name):
        rc, _out, _err = self.run([self.engine.binary, kind, "inspect", name])
        return rc == 0

    def _in_image(self, image, command, user=None):
        argv = [self.engine.binary, "run", "--rm", "--network", "none"]
        if user:
            argv += ["--user", user]
        argv += ["--entrypoint", command[0], image] + list(command[1:])
        return self.run(argv)

    def _free(self, path):
        """(free bytes, device) of the file system holding ``path`` or its nearest existing parent."""
        while path and path != "/" and not os.path.exists(path):
            path = os.path.dirname(path)
        try:
            st = self.statvfs(path or "/")
            return st.f_bavail * st.f_frsize, self.stat(path or "/").st_dev
        except OSError:
            return None, None

    def _engine_root(self):
        fmt = "{{.DockerRootDir}}" if self.engine.binary == "docker" else "{{.Store.GraphRoot}}"
        rc, out, _err = self.run([self.engine.binary, "info", "--format", fmt])
        return out.strip() if rc == 0 and out.strip() else None

    def run_checks(self, container, target_image, strategy="dump_restore", dump_dir=None, clients=(),
                   allow_same_major=False, disk_margin=1.5, data_dir=DEFAULT_DATA_DIR, check_extensions=True,
                   check_settings=True):
        problems = []
        warnings = []
        info = self.engine.inspect(container)
        if info is None:
            raise UpgradeError("container '%s' does not exist" % container)
        if not (info.get("State") or {}).get("Running"):
            raise UpgradeError("container '%s' is not running (status: %s)"
                               % (container, (info.get("State") or {}).get("Status", "unknown")))
        pg = self.pg_factory()
        current_major = major_of(pg.server_version_num())
        result = {"container": container, "current_major": current_major, "current_version": pg.server_version(),
                  "current_image": self.engine.image_of(info), "target_image": target_image,
                  "strategy": strategy, "problems": problems, "warnings": warnings}

        target = self._image(target_image)
        if target is None:
            problems.append("target image %s is not available on the host (load or pull it first)" % target_image)
            result["action"] = "fail"
            return result
        target_major = None
        for item in (target.get("Config") or {}).get("Env") or []:
            if item.startswith("PG_MAJOR="):
                target_major = major_of(item.split("=", 1)[1])
        if target_major is None:
            rc, out, err = self._in_image(target_image, ["postgres", "--version"])
            if rc != 0:
                problems.append("cannot run postgres --version in %s: %s" % (target_image, err.strip()))
                result["action"] = "fail"
                return result
            target_major = major_of(out.strip().split()[-1])
        result["target_major"] = target_major
        try:
            result["action"] = decide(current_major, target_major, allow_same_major)
        except UpgradeError as exc:
            problems.append(str(exc))
            result["action"] = "fail"
            return result
        if result["action"] == "noop":
            return result

        # Databases, their sizes and extensions.
        databases = {}
        owners = {}
        used = {}
        empty = []
        for name, size, owner in pg.query(SQL_DATABASES):
            databases[name] = int(size)
            owners[name] = owner
            used[name] = [row[0] for row in pg.query(SQL_EXTENSIONS, database=name)]
            if int(pg.scalar(SQL_OBJECTS, database=name)) == 0:
                empty.append(name)
        result["empty_databases"] = empty
        result["databases"] = databases
        result["database_owners"] = owners
        result["extensions"] = used

        if check_extensions:
            rc, out, err = self._in_image(target_image, ["ls", "/usr/share/postgresql/%d/extension" % target_major])
            if rc == 0:
                available = [f[:-len(".control")] for f in out.split() if f.endswith(".control")]
                missing = missing_extensions(used, available)
                for database, names in sorted(missing.items()):
                    problems.append("database %s uses extension(s) %s that %s does not provide"
                                    % (database, ", ".join(names), target_image))
            else:
                warnings.append("could not list the extensions of %s (%s); not checked" % (target_image, err.strip()))

        settings = command_settings((info.get("Config") or {}).get("Cmd"))
        result["settings"] = settings
        if check_settings and settings:
            rc, out, err = self._in_image(target_image, ["postgres", "--describe-config"], user="postgres")
            if rc == 0:
                known = [line.split("\t", 1)[0] for line in out.splitlines() if line.strip()]
                rejected = unknown_settings(settings, known)
                if rejected:
                    problems.append("setting(s) %s on the command line are unknown to PostgreSQL %d"
                                    % (", ".join(rejected), target_major))
            else:
                warnings.append("could not read the settings of %s (%s); not checked" % (target_image, err.strip()))

        # Volumes and names.
        mount = data_mount(info.get("Mounts"), data_dir)
        if mount is None:
            problems.append("container %s has no mount at %s; cannot keep its data aside" % (container, data_dir))
            old_volume = None
        else:
            old_volume = mount.get("Name") if mount.get("Type") == "volume" else mount.get("Source")
        name = (info.get("Name") or container).lstrip("/")
        old_name = old_container_name(name, current_major)
        new_volume = new_volume_name(old_volume if (mount or {}).get("Type") == "volume" else None, name, target_major)
        if self._exists("container", old_name):
            problems.append("container %s already exists (an earlier upgrade was not cleaned up: run "
                            "playbooks/rollback.yml or playbooks/upgrade_cleanup.yml)" % old_name)
        if self._exists("volume", new_volume):
            problems.append("volume %s already exists (left by an earlier attempt?); remove it first" % new_volume)
        result.update({"name": name, "old_name": old_name, "old_volume": old_volume, "new_volume": new_volume,
                       "old_volume_type": (mount or {}).get("Type")})

        # Disk.
        estimate = disk_estimate(databases.values(), strategy, disk_margin)
        root = self._engine_root()
        free_volume, dev_volume = self._free(root) if root else (None, None)
        free_dump, dev_dump = self._free(dump_dir) if (dump_dir and strategy == "dump_restore") else (None, None)
        if root is None:
            warnings.append("could not find the engine's storage directory; free space for the volume not checked")
        problems += disk_problems(estimate, free_volume, free_dump,
                                  dev_volume is not None and dev_volume == dev_dump)
        result["disk"] = dict(estimate, free_volume=free_volume, free_dump=free_dump, engine_root=root)

        # Clients.
        client_states = {}
        for client in clients or []:
            client_info = self.engine.inspect(client)
            if client_info is None:
                problems.append("client container %s does not exist" % client)
            else:
                client_states[client] = (client_info.get("State") or {}).get("Status", "unknown")
        result["clients"] = client_states

        image_info = self._image(info.get("Image")) if info.get("Image") else None
        spec = clone_spec(info, image_info, target_image, new_volume, data_dir)
        spec["labels"].update(upgrade_labels(old_name, old_volume if (mount or {}).get("Type") == "volume" else "",
                                             self.engine.image_of(info), current_major, new_volume))
        result["spec"] = spec
        if problems:
            result["action"] = "fail"
        return result


# ---------------------------------------------------------------------------
# Strategy pipe: pg_dump of the old server streamed into pg_restore of the new.
# ---------------------------------------------------------------------------

def pipe_dump_argv(database):
    """pg_dump of ``database`` to stdout, custom format, uncompressed (nothing is stored, CPU is the limit)."""
    from ansible_collections.nl_biomero.database.plugins.module_utils.restore import conninfo_dbname
    return ["pg_dump", "--format=custom", "--compress=0", "--no-password", "--dbname=" + conninfo_dbname(database)]


class Pipe:
    """Moves databases from one PgContainer to another without an intermediate file."""

    def __init__(self, source, target, popen=None):
        self.source = source    # PgContainer (old server)
        self.target = target    # PgContainer (new server)
        self.popen = popen or subprocess.Popen

    def copy_globals(self):
        """Roles and tablespaces of the source that the target lacks (existing ones are left alone)."""
        from ansible_collections.nl_biomero.database.plugins.module_utils.restore import filter_globals, psql_script_argv
        rc, out, err = self.source.exec_tool(["pg_dumpall", "--globals-only", "--no-password"])
        if rc != 0:
            raise UpgradeError("pg_dumpall --globals-only in %s failed: %s" % (self.source.container, err.strip()))
        roles = [row[0] for row in self.target.query("SELECT rolname FROM pg_roles")]
        spaces = [row[0] for row in self.target.query("SELECT spcname FROM pg_tablespace")]
        script, report = filter_globals(out, roles, spaces)
        rc, out, err = self.target.exec_tool(psql_script_argv("postgres"), input_bytes=script.encode("utf-8"))
        if rc != 0:
            raise UpgradeError("restoring the globals into %s failed: %s" % (self.target.container, err.strip()))
        return report

    def copy_database(self, database, owner=None, maintenance_work_mem=None):
        """Stream one database; creates it in the target (owned by ``owner``) unless it exists and is empty."""
        from ansible_collections.nl_biomero.database.plugins.module_utils.restore import (
            pg_restore_argv, session_options)
        if database not in self.target.databases():
            rc, out, err = self.target.exec_tool(["createdb", "--template=template0"]
                                                 + (["--owner=" + owner] if owner else []) + ["--", database])
            if rc != 0:
                raise UpgradeError("createdb %s in %s failed: %s" % (database, self.target.container, err.strip()))
        src_env = self.source.env(database)
        dst_env = self.target.env(database)
        dst_env["PGOPTIONS"] = session_options(maintenance_work_mem)
        engine = self.source.engine
        dump_argv = engine.exec_argv(self.source.container, pipe_dump_argv(database), env_names=sorted(src_env))
        restore_argv = engine.exec_argv(self.target.container, pg_restore_argv(database),
                                        env_names=sorted(dst_env), interactive=True)
        started = time.time()
        # The two tools talk through an OS pipe (Popen, not run_command): the
        # dump is never held in memory or written to disk. Their stderr goes to
        # temporary files so that neither can block on a full stderr pipe.
        env = dict(os.environ)
        env.update(src_env)
        with tempfile.TemporaryFile() as dump_err_file, tempfile.TemporaryFile() as restore_err_file:
            dump = self.popen(dump_argv, stdout=subprocess.PIPE, stderr=dump_err_file, env=env)
            env = dict(os.environ)
            env.update(dst_env)
            restore = self.popen(restore_argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                 stderr=restore_err_file, env=env)
            counter = _CountingReader(dump.stdout)
            try:
                while True:
                    chunk = counter.read(1024 * 1024)
                    if not chunk:
                        break
                    restore.stdin.write(chunk)
            except (IOError, OSError):
                pass  # pg_restore stopped reading: its exit status and stderr say why
            finally:
                try:
                    restore.stdin.close()
                except (IOError, OSError):
                    pass
                dump.stdout.close()
            restore.wait()
            dump.wait()
            dump_err_file.seek(0)
            dump_err = dump_err_file.read()
            restore_err_file.seek(0)
            restore_err = restore_err_file.read()
        if dump.returncode != 0:
            raise UpgradeError("pg_dump of %s in %s failed (exit %s): %s" % (
                database, self.source.container, dump.returncode, dump_err.decode("utf-8", "replace").strip()))
        if restore.returncode != 0:
            raise UpgradeError("pg_restore of %s into %s failed (exit %s): %s" % (
                database, self.target.container, restore.returncode,
                restore_err.decode("utf-8", "replace").strip()[-2000:]))
        self.target.query("ANALYZE", database=database)
        return {"database": database, "bytes": counter.count, "seconds": round(time.time() - started, 2)}


class _CountingReader:
    def __init__(self, handle):
        self.handle = handle
        self.count = 0

    def read(self, size):
        data = self.handle.read(size)
        self.count += len(data)
        return data
