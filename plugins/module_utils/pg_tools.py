# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure rules for PostgreSQL client tools: versions, formats, compression, argv.

Connection parameters (user, database, password) travel as PG* environment
variables, not argv: a database name containing '=' would otherwise be read
by pg_dump as a connection string, and a password would show up in ``ps``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.nl_biomero.database.plugins.module_utils.errors import NlbError

# format name -> (pg_dump --format letter, file extension used for default names)
FORMATS = {
    "custom": ("c", "dump"),
    "directory": ("d", "dir"),
    "tar": ("t", "tar"),
    "plain": ("p", "sql"),
}

# compression method -> (lowest, highest) level pg_dump accepts
COMPRESSION_LEVELS = {"gzip": (1, 9), "lz4": (1, 12), "zstd": (1, 22)}
# pg_dump 16 added --compress=METHOD[:LEVEL] with lz4 and zstd
FIRST_MAJOR_WITH_METHODS = 16


class PgToolError(NlbError):
    """A PostgreSQL tool cannot do what was asked (bad option or version)."""


def major_version(value):
    """The one PostgreSQL major-version parser; None when ``value`` holds no version.

    Takes a version ('17.6', '15.10 (Debian 15.10-1)', '9.6.24'), a
    ``server_version_num`` (170006, '90624'), tool output ('pg_dump
    (PostgreSQL) 17.6') or a bare major ('18'). Releases before 10 are all
    major 9 here (9.6 -> 9): only the order matters, and it stays right.
    """
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip()
    if text.isdigit():
        number = int(text)
        return number // 10000 if len(text) >= 5 else number
    match = re.search(r"\(PostgreSQL\)\s+(\d+)", text) or re.match(r"(?:PostgreSQL\s+)?(\d+)(?!\d)", text)
    return int(match.group(1)) if match else None


def tool_major(version_output):
    """Major version from ``pg_dump --version``-style output, e.g. 'pg_dump (PostgreSQL) 17.6 (Debian …)' -> 17."""
    major = major_version(version_output)
    if major is None:
        raise PgToolError("cannot read a PostgreSQL version from: %r" % (version_output,))
    return major


def tool_version(version_output):
    """Full version string, e.g. '17.6', from ``--version`` output."""
    match = re.search(r"\(PostgreSQL\)\s+(\S+)", version_output or "")
    if not match:
        raise PgToolError("cannot read a PostgreSQL version from: %r" % (version_output,))
    return match.group(1)


def server_major(server_version_num):
    """Major version from ``server_version_num`` (e.g. 170006 -> 17, 150014 -> 15)."""
    return int(server_version_num) // 10000


def compression_methods(major):
    """Compression methods pg_dump of this major version accepts."""
    if major >= FIRST_MAJOR_WITH_METHODS:
        return ("gzip", "lz4", "zstd", "none")
    return ("gzip", "none")


def default_compression(major, fmt):
    """zstd where pg_dump has it (much faster than gzip at similar size), gzip otherwise."""
    if fmt == "tar":
        return "none"
    return "zstd" if major >= FIRST_MAJOR_WITH_METHODS else "gzip"


def parse_compression(spec):
    """Split 'method[:level]' into (method, level or None). A bare number means gzip at that level."""
    text = str(spec).strip().lower()
    if re.match(r"^\d+$", text):
        level = int(text)
        return ("none", None) if level == 0 else ("gzip", level)
    method, _sep, level = text.partition(":")
    if level == "":
        return method, None
    if not re.match(r"^-?\d+$", level):
        raise PgToolError("compression level '%s' in '%s' is not a number" % (level, spec))
    return method, int(level)


def compression_args(spec, major, fmt):
    """pg_dump arguments for compression ``spec`` ('auto', 'zstd:3', 'gzip', 'none', '6')."""
    if spec in (None, "", "auto"):
        spec = default_compression(major, fmt)
    method, level = parse_compression(spec)
    accepted = compression_methods(major)
    if method not in accepted:
        raise PgToolError("compression '%s' is not supported by pg_dump %s; accepted: %s"
                          % (spec, major, ", ".join(accepted)))
    if fmt == "tar" and method != "none":
        raise PgToolError("format 'tar' cannot be compressed by pg_dump; use compress: none or another format")
    if method == "none":
        if level not in (None, 0):
            raise PgToolError("compression 'none' takes no level (got '%s')" % spec)
        return (["--compress=none"] if major >= FIRST_MAJOR_WITH_METHODS else ["--compress=0"]), "none"
    low, high = COMPRESSION_LEVELS[method]
    if level is not None and not low <= level <= high:
        raise PgToolError("compression level %s for %s is out of range; accepted: %s to %s"
                          % (level, method, low, high))
    if major >= FIRST_MAJOR_WITH_METHODS:
        value = method if level is None else "%s:%s" % (method, level)
    else:
        value = str(6 if level is None else level)
    described = method if level is None else "%s:%s" % (method, level)
    return ["--compress=" + value], described


def connection_env(user, database, password=None):
    """PG* environment for a client tool inside the container."""
    env = {"PGUSER": user, "PGDATABASE": database}
    if password:
        env["PGPASSWORD"] = password
    return env


def pg_dump_argv(fmt, compress_args, jobs=None, exclude_table_data=(), output=None, snapshot=None,
                 lock_wait_timeout=None):
    """argv for pg_dump; output None means stdout (custom, tar, plain).

    ``snapshot``: an exported snapshot id to dump in (``--snapshot``);
    ``lock_wait_timeout``: seconds pg_dump waits for a table lock before it fails.
    """
    if fmt not in FORMATS:
        raise PgToolError("format '%s' is not supported; accepted: %s" % (fmt, ", ".join(sorted(FORMATS))))
    argv = ["pg_dump", "--format=" + FORMATS[fmt][0], "--no-password"] + list(compress_args)
    if snapshot:
        argv.append("--snapshot=" + snapshot)
    if lock_wait_timeout:
        argv.append("--lock-wait-timeout=%d" % int(lock_wait_timeout * 1000))  # milliseconds
    if jobs and jobs > 1:
        if fmt != "directory":
            raise PgToolError("jobs=%s needs format 'directory' (pg_dump dumps in parallel only into a directory)" % jobs)
        argv.append("--jobs=%d" % jobs)
    for pattern in exclude_table_data:
        argv.append("--exclude-table-data=" + pattern)
    if fmt == "directory":
        if not output:
            raise PgToolError("format 'directory' needs an output directory")
        argv.append("--file=" + output)
    elif output:
        argv.append("--file=" + output)
    return argv


def pg_dumpall_globals_argv():
    """argv for roles and tablespaces only (to stdout)."""
    return ["pg_dumpall", "--globals-only", "--no-password"]
