# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PostgreSQL container settings: auto tuning, settings validation, the
``postgres -N .. -c k=v`` command line and the data directory layout of an
image's major version.

Pure functions (no engine, no Ansible): the role ``postgres_container`` uses
them through the filter plugin ``postgres_container``, the module
``pg_settings_check`` to build the arguments of the image's own ``postgres``
and read its answers, and the upgrade plan for the data directory
(``data_layout``, the one rule for it).

Auto tuning (``auto_tune``), with M the memory budget of the instance in MiB,
C its CPUs and N its max_connections:

==========================  ==================================================
shared_buffers              M / 4, at least 32MB, at most 16GB
effective_cache_size        M * 3 / 4 (never below shared_buffers)
maintenance_work_mem        M / 16, at least 16MB, at most 2GB
work_mem                    (M - shared_buffers) / (3 * N * W), at least 1MB,
                            at most 1GB; W = C // 2 clamped to 1..4, the
                            parallel workers one query may use
max_wal_size                2 * shared_buffers, at least 1GB, at most 16GB
==========================  ==================================================
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.nl_biomero.database.plugins.module_utils.errors import NlbError
from ansible_collections.nl_biomero.database.plugins.module_utils.pg_tools import major_version

# Settings the role manages itself: setting them through ``settings`` would
# break the container contract (data directory, port) or clash with ``-N``.
RESERVED_SETTINGS = {
    "data_directory": "the data directory is PGDATA of the container (see data_mount/pgdata)",
    "config_file": "the container uses the postgresql.conf in PGDATA",
    "hba_file": "use the instance option hba (the role writes and mounts the pg_hba.conf)",
    "ident_file": "the container uses the pg_ident.conf in PGDATA",
    "port": "the server always listens on 5432 inside the container; use published_port to publish it",
    "max_connections": "use the max_connections option (passed as -N)",
}

TUNED_SETTINGS = ("shared_buffers", "effective_cache_size", "maintenance_work_mem", "work_mem", "max_wal_size")

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgt]?)(i?b)?\s*$", re.IGNORECASE)
_SIZE_FACTORS = {"": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3, "t": 1024 ** 4}
# What postgres prints for a bad -c/-N argument; every variant names the
# parameter in double quotes.
_PARAM_IN_ERROR_RE = re.compile(r'parameter "([^"]+)"')

PGDATA_BEFORE_18 = "/var/lib/postgresql/data"


class SettingsError(NlbError, ValueError):
    """A setting name or value the role refuses before asking PostgreSQL."""


def _clamp(value, low, high):
    return max(low, min(high, value))


def size_to_bytes(value):
    """Bytes of a Docker-style size: ``2g``, ``512m``, ``1.5GiB``, ``1GB`` or an int (bytes).

    Units are binary (k = 1024), like ``docker run --memory``.
    """
    if isinstance(value, bool):
        raise SettingsError("size must be a number or a string like '2g', not a boolean")
    if isinstance(value, int):
        if value < 0:
            raise SettingsError("size must not be negative: %r" % value)
        return value
    match = _SIZE_RE.match(str(value))
    if not match:
        raise SettingsError("cannot read size %r (use e.g. 512m, 2g or a number of bytes)" % (value,))
    number, unit, _suffix = match.groups()
    return int(float(number) * _SIZE_FACTORS[unit.lower()])


def auto_tune(memory_mb, cpus, max_connections):
    """The five tuned settings for an instance with ``memory_mb`` MiB, ``cpus`` CPUs.

    Returns a dict of PostgreSQL values with units (``3072MB``, ``6291kB``).
    """
    memory_mb = int(memory_mb)
    cpus = int(cpus) if cpus else 1
    max_connections = int(max_connections)
    if memory_mb < 64:
        raise SettingsError("auto tuning needs a memory budget of at least 64 MiB (got %s)" % memory_mb)
    if max_connections < 1:
        raise SettingsError("max_connections must be at least 1 (got %s)" % max_connections)
    cpus = max(cpus, 1)
    shared_buffers = _clamp(memory_mb // 4, 32, 16384)
    effective_cache_size = max(memory_mb * 3 // 4, shared_buffers)
    maintenance_work_mem = _clamp(memory_mb // 16, 16, 2048)
    workers = _clamp(cpus // 2, 1, 4)
    work_mem_kb = _clamp((memory_mb - shared_buffers) * 1024 // (3 * max_connections * workers), 1024, 1024 * 1024)
    max_wal_size = _clamp(2 * shared_buffers, 1024, 16384)
    return {
        "shared_buffers": "%dMB" % shared_buffers,
        "effective_cache_size": "%dMB" % effective_cache_size,
        "maintenance_work_mem": "%dMB" % maintenance_work_mem,
        "work_mem": "%dkB" % work_mem_kb,
        "max_wal_size": "%dMB" % max_wal_size,
    }


def format_value(name, value):
    """The text PostgreSQL gets for ``value``: booleans become on/off."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        if any(ch in value for ch in "\n\r\x00"):
            raise SettingsError("setting '%s': the value must be a single line" % name)
        return value
    raise SettingsError("setting '%s': the value must be a string, number or boolean, not %s"
                        % (name, type(value).__name__))


def normalize_settings(settings, source="settings"):
    """Check names and values of a settings dict; lower-case names, text values.

    A value of None removes the setting (e.g. to drop an auto-tuned value and
    fall back to PostgreSQL's default): it is kept as None here and dropped by
    ``merge_settings``.
    """
    if settings is None:
        return {}
    if not isinstance(settings, dict):
        raise SettingsError("%s must be a dict of setting names to values" % source)
    result = {}
    for raw_name, value in settings.items():
        name = str(raw_name).strip()
        if not _NAME_RE.match(name):
            raise SettingsError("%s: '%s' is not a valid PostgreSQL setting name" % (source, raw_name))
        name = name.lower()
        if name in RESERVED_SETTINGS:
            raise SettingsError("%s: '%s' cannot be set here: %s" % (source, name, RESERVED_SETTINGS[name]))
        if name in result:
            raise SettingsError("%s: '%s' is given twice (names are case-insensitive)" % (source, name))
        result[name] = None if value is None else format_value(name, value)
    return result


def merge_settings(*layers):
    """Merge normalized settings dicts, later layers win; None removes a setting."""
    merged = {}
    for layer in layers:
        for name, value in (layer or {}).items():
            if value is None:
                merged.pop(name, None)
            else:
                merged[name] = value
    return merged


def logging_settings(log_directory, filename="postgresql-%Y-%m-%d.log", rotation_age="1d",
                     rotation_size="100MB", statement="ddl", truncate_on_rotation=None):
    """The logging block of NL-BIOMERO's page, with the log directory inside the container;
    ``truncate_on_rotation`` (a bool) adds log_truncate_on_rotation."""
    settings = {
        "logging_collector": "on",
        "log_directory": log_directory,
        "log_filename": filename,
        "log_rotation_age": str(rotation_age),
        "log_rotation_size": str(rotation_size),
        "log_statement": statement,
    }
    if truncate_on_rotation is not None:
        settings["log_truncate_on_rotation"] = format_value("log_truncate_on_rotation", bool(truncate_on_rotation))
    return settings


def postgres_command(max_connections, settings):
    """argv for the container: ``postgres -N <max_connections> -c name=value ...`` (names sorted)."""
    max_connections = int(max_connections)
    if max_connections < 1:
        raise SettingsError("max_connections must be at least 1 (got %s)" % max_connections)
    argv = ["postgres", "-N", str(max_connections)]
    for name in sorted(settings):
        argv += ["-c", "%s=%s" % (name, settings[name])]
    return argv


def major_from_image(image):
    """PostgreSQL major version from an image reference's tag, or None.

    ``postgres:16`` -> 16, ``postgres:16-alpine`` -> 16, ``nl-biomero/postgres:17`` -> 17,
    ``postgres:18.1-trixie`` -> 18; ``postgres``, ``postgres:latest`` and
    ``registry:5000/postgres`` -> None.
    """
    if not image:
        return None
    ref = str(image).split("@", 1)[0]
    last = ref.rsplit("/", 1)[-1]
    if ":" not in last:
        return None
    tag = last.rsplit(":", 1)[1]
    major = major_version(tag) if tag[:1].isdigit() else None
    return major if major and major >= 9 else None


def data_layout(major, data_mount=None, pgdata=None):
    """(mount point of the data volume, PGDATA) for an image of ``major``.

    Before 18 the official image keeps the cluster in the volume mounted on
    /var/lib/postgresql/data. From 18 on it mounts /var/lib/postgresql and
    keeps the cluster in /var/lib/postgresql/<major>/docker, so a major
    upgrade can keep both clusters in one volume. An explicit ``data_mount``
    puts the cluster directly in that mount point unless ``pgdata`` says
    otherwise.
    """
    if data_mount:
        mount = data_mount.rstrip("/") or "/"
        return mount, pgdata or mount
    if major is None:
        raise SettingsError("cannot tell the PostgreSQL major version of the image: set data_mount (and pgdata)")
    if int(major) >= 18:
        mount = "/var/lib/postgresql"
        return mount, pgdata or "%s/%d/docker" % (mount, int(major))
    return PGDATA_BEFORE_18, pgdata or PGDATA_BEFORE_18


def parse_describe_config(text):
    """Setting names from ``postgres --describe-config`` (tab-separated, name first)."""
    names = set()
    for line in text.splitlines():
        name = line.split("\t", 1)[0].strip()
        if name and _NAME_RE.match(name):
            names.add(name.lower())
    return names


def unknown_settings(names, known):
    """Names PostgreSQL does not know. Names with a dot are extension
    (placeholder) settings, which PostgreSQL accepts, so they pass."""
    return sorted(name for name in names if "." not in name and name.lower() not in known)


def parameter_in_error(stderr):
    """The parameter a postgres error message names (``invalid value for parameter "x"``), or None."""
    match = _PARAM_IN_ERROR_RE.search(stderr or "")
    return match.group(1) if match else None


_LEVEL_RE = re.compile(r"\b(FATAL|ERROR|DETAIL|HINT):\s+(.*)$")


def error_summary(stderr):
    """The FATAL/ERROR/DETAIL/HINT messages of postgres output (log prefix and
    level dropped), joined; else the last non-empty line."""
    lines = [line.strip() for line in (stderr or "").splitlines() if line.strip()]
    picked = []
    for line in lines:
        match = _LEVEL_RE.search(line)
        if match:
            level, text = match.groups()
            picked.append(text if level in ("FATAL", "ERROR") else "%s: %s" % (level, text))
    if picked:
        return " ".join(picked)
    return lines[-1] if lines else ""


def parse_id(text):
    """(uid, gid) from ``id`` output: ``uid=999(postgres) gid=999(postgres) ...``."""
    uid = re.search(r"uid=(\d+)", text or "")
    gid = re.search(r"gid=(\d+)", text or "")
    if not uid or not gid:
        raise SettingsError("cannot read uid/gid from %r" % (text,))
    return int(uid.group(1)), int(gid.group(1))


def check_command_args(max_connections, settings):
    """Arguments for the image's ``postgres`` that parse ``-N``/``-c`` like the
    real server and print server_version_num, without a cluster: an empty
    config file, a data directory that need not exist."""
    args = ["--config-file=/dev/null", "-D", "/tmp", "-C", "server_version_num", "-N", str(int(max_connections))]
    for name in sorted(settings):
        args += ["-c", "%s=%s" % (name, settings[name])]
    return args
