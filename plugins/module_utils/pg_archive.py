# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure rules of a restore: what an archive is, what the options allow, the tool command lines.

No container and no engine here (the I/O is :mod:`restore`): parsing pg_dump
archive headers (reading only a file's first bytes), the version rule, the
``pg_restore --list`` table of contents, option checks, the plan for the
target database, and the pg_restore/psql argv. :mod:`upgrade` uses the argv
rules too. (A globals script is made safe by :mod:`globals_sql`, the database's
own properties are read by :mod:`db_properties`.)
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import gzip
import os
import posixpath
import re
import tarfile

from ansible_collections.nl_biomero.database.plugins.module_utils.db_properties import describe_options, is_database_entry
from ansible_collections.nl_biomero.database.plugins.module_utils.errors import NlbError
from ansible_collections.nl_biomero.database.plugins.module_utils.pg_tools import major_version


IF_EXISTS = ("fail", "skip", "replace", "clean")
ROW_COUNTS = ("exact", "estimate")
ARCHIVE_FORMATS = ("custom", "directory", "tar", "plain")
# pg_backup.h ArchiveFormat codes in the archive header
FORMAT_CODES = {1: "custom", 3: "tar", 5: "directory"}
# pg_compression.h algorithm codes (archive version 1.15+)
COMPRESSION_CODES = {0: "none", 1: "gzip", 2: "lz4", 3: "zstd"}
HEADER_BYTES = 64 * 1024

_MEM_RE = re.compile(r"^\d+\s*(kB|MB|GB|TB)?$")
_CONTAINER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class RestoreError(NlbError):
    """The restore cannot be done or failed; the message says why and what state the target is in."""


def short_version(text):
    """'17.6 (Debian 17.6-1)' -> '17.6'; None stays None."""
    return text.split()[0] if text else text


def parse_archive_header(data):
    """Header of a custom archive or of a directory/tar archive's toc.dat (pg_backup_archiver.c ReadHead).

    Returns a dict: archive_version ('1.16-0'), format, compression, created
    (UTC text), dbname, server_version, dump_version (None when the archive is
    older than 1.10 and does not record them).
    """
    if data[:5] != b"PGDMP":
        raise RestoreError("not a pg_dump archive (no PGDMP signature)")
    state = {"pos": 5}

    def take(count):
        start = state["pos"]
        if start + count > len(data):
            raise RestoreError("the archive header is truncated")
        state["pos"] = start + count
        return data[start:start + count]

    def byte():
        return take(1)[0]

    vmaj, vmin = byte(), byte()
    vrev = byte() if (vmaj > 1 or (vmaj == 1 and vmin > 0)) else 0
    version = (vmaj, vmin, vrev)
    int_size = byte()
    if version >= (1, 7, 0):
        byte()  # offset size
    fmt_code = byte()

    def read_int():
        sign = byte() if version > (1, 0, 0) else 0
        value = 0
        for shift, item in enumerate(take(int_size)):
            value += item << (8 * shift)
        return -value if sign else value

    def read_str():
        length = read_int()
        if length < 0:
            return None
        return take(length).decode("utf-8", "replace")

    compression = "none"
    if version >= (1, 15, 0):
        compression = COMPRESSION_CODES.get(byte(), "unknown")
    elif version >= (1, 2, 0):
        level = byte() if version < (1, 4, 0) else read_int()
        compression = "none" if level == 0 else "gzip"
    created = dbname = server_version = dump_version = None
    if version >= (1, 4, 0):
        sec, minute, hour, mday, mon, year, _isdst = [read_int() for _field in range(7)]
        created = "%04d-%02d-%02d %02d:%02d:%02d" % (year + 1900, mon + 1, mday, hour, minute, sec)
        dbname = read_str()
    if version >= (1, 10, 0):
        server_version = read_str()
        dump_version = read_str()
    return {
        "archive_version": "%d.%d-%d" % version,
        "format": FORMAT_CODES.get(fmt_code, "unknown (%d)" % fmt_code),
        "compression": compression,
        "created": created,
        "dbname": dbname,
        "server_version": server_version,
        "dump_version": dump_version,
    }


_PLAIN_FROM = re.compile(r"^-- Dumped from database version (.+?)\s*$", re.M)
_PLAIN_BY = re.compile(r"^-- Dumped by pg_dump version (.+?)\s*$", re.M)


def parse_plain_header(text):
    """Versions from the comments at the top of a plain pg_dump script (None when absent)."""
    server = _PLAIN_FROM.search(text)
    dump = _PLAIN_BY.search(text)
    return {
        "archive_version": None,
        "format": "plain",
        "compression": "none",
        "created": None,
        "dbname": None,
        "server_version": server.group(1) if server else None,
        "dump_version": dump.group(1) if dump else None,
    }


def inspect_archive(path):
    """What ``path`` is: format, header facts and how to feed it (``gzip`` for a gzip plain script).

    Reads only the first bytes of a file (the header), or a directory's toc.dat.
    """
    if not os.path.exists(path):
        raise RestoreError("src %s does not exist" % path)
    if os.path.isdir(path):
        toc = os.path.join(path, "toc.dat")
        if not os.path.isfile(toc):
            raise RestoreError("src %s is a directory without toc.dat: not a directory-format pg_dump archive" % path)
        with open(toc, "rb") as handle:
            info = parse_archive_header(handle.read(HEADER_BYTES))
        # pg_dump writes the tar code into a directory archive's toc.dat ("the directory is
        # compatible with tar"); the code for directory is accepted too
        if info["format"] not in ("tar", "directory"):
            raise RestoreError("%s/toc.dat says format %s, expected directory" % (path, info["format"]))
        info["format"] = "directory"
        info["gzip"] = False
        return info
    with open(path, "rb") as handle:
        head = handle.read(HEADER_BYTES)
    if not head:
        raise RestoreError("src %s is empty" % path)
    if head[:5] == b"PGDMP":
        info = parse_archive_header(head)
        if info["format"] != "custom":
            raise RestoreError("%s has a pg_dump header with format %s; expected custom for a single file"
                               % (path, info["format"]))
        info["gzip"] = False
        return info
    if len(head) >= 262 and head[257:262] == b"ustar":
        info = _tar_header(path)
        info["gzip"] = False
        return info
    if head[:2] == b"\x1f\x8b":
        try:
            with gzip.open(path, "rb") as handle:
                inner = handle.read(HEADER_BYTES)
        except (OSError, EOFError) as exc:
            raise RestoreError("src %s looks gzip-compressed but cannot be read: %s" % (path, exc))
        if inner[:5] == b"PGDMP" or (len(inner) >= 262 and inner[257:262] == b"ustar"):
            raise RestoreError("src %s is a gzip-compressed pg_dump archive; decompress it first "
                               "(pg_restore reads custom archives, which compress their own data)" % path)
        info = parse_plain_header(inner.decode("utf-8", "replace"))
        info["compression"] = "gzip"
        info["gzip"] = True
        return info
    if head[:4] in (b"\x28\xb5\x2f\xfd", b"\x04\x22\x4d\x18"):
        raise RestoreError("src %s is compressed with %s; decompress it first (only gzip-compressed plain "
                           "scripts are read directly)" % (path, "zstd" if head[:1] == b"\x28" else "lz4"))
    if b"\0" in head:
        raise RestoreError("src %s is neither a pg_dump archive (custom, directory, tar) nor a plain SQL script"
                           % path)
    info = parse_plain_header(head.decode("utf-8", "replace"))
    info["gzip"] = False
    return info


def _tar_header(path):
    try:
        with tarfile.open(path, mode="r|") as tar:
            member = tar.next()
            if member is None or member.name != "toc.dat":
                raise RestoreError("src %s is a tar file but not a pg_dump tar archive (first member %s, "
                                   "expected toc.dat)" % (path, member.name if member else "none"))
            head = tar.extractfile(member).read(HEADER_BYTES)
    except tarfile.TarError as exc:
        raise RestoreError("src %s cannot be read as a tar archive: %s" % (path, exc))
    info = parse_archive_header(head)
    if info["format"] != "tar":
        raise RestoreError("%s: toc.dat says format %s, expected tar" % (path, info["format"]))
    return info


def check_versions(info, container, server_version, tool, tool_version):
    """RestoreError when the archive comes from a newer major version than the target can restore.

    The archive records the version of the server it was dumped from and of
    the pg_dump that wrote it; a pg_restore (or psql) older than either cannot
    be trusted to read it and a server older than the source cannot take its SQL.
    """
    target_major = major_version(server_version)
    tool_major = major_version(tool_version)
    limit = min(m for m in (target_major, tool_major) if m is not None) if (target_major or tool_major) else None
    source = [major_version(info.get("server_version")), major_version(info.get("dump_version"))]
    newest = max([m for m in source if m is not None] or [0])
    if limit is None or newest <= limit:
        return
    raise RestoreError(
        "the archive was dumped from PostgreSQL %s by pg_dump %s, but container '%s' runs PostgreSQL %s "
        "(%s %s): a dump from a newer major version cannot be restored into an older one; restore it into "
        "a PostgreSQL %d or newer container"
        % (short_version(info.get("server_version")) or "unknown", short_version(info.get("dump_version")) or "unknown",
           container, short_version(server_version), tool, short_version(tool_version), newest))


_TOC_LINE = re.compile(r"^(\d+); (\d+) (\d+) (.*)$")
_TOC_HEADER = re.compile(r"^;\s+([A-Za-z][A-Za-z_ ]*?):\s(.*)$")
_TOC_CREATED = "; Archive created at"


def parse_toc_list(lines, known_roles=()):
    """``pg_restore [--create] --list`` output (an iterable of lines) -> summary dict.

    Keys: created (the '; Archive created at' line every readable archive's
    listing has, None without it), header (the '; Name: value' comments), entries (count), table_data
    (TABLE DATA entries: tables restored with their rows), large_objects,
    missing_owners (owners of entries that are not in ``known_roles``; the
    owner is the last word of an entry, and as a role name may contain
    spaces, an entry ending in ' <known role>' counts as owned by it),
    database_entries (the lines of the database object's own entries, which
    ``--create`` lists; they are not counted in entries nor owners: they are
    the database's properties, see :mod:`db_properties`).
    Works line by line: a list of millions of entries is not held in memory.
    """
    suffixes = tuple(" " + role for role in known_roles)
    header = {}
    summary = {"created": None, "header": header, "entries": 0, "table_data": 0, "large_objects": 0,
               "database_entries": []}
    missing = set()
    for line in lines:
        line = line.rstrip("\r\n")
        if line.startswith(";"):
            if line.startswith(_TOC_CREATED):
                summary["created"] = line[len(_TOC_CREATED):].strip()
            match = _TOC_HEADER.match(line)
            if match:
                header[match.group(1).strip()] = match.group(2).strip()
            continue
        match = _TOC_LINE.match(line)
        if not match:
            continue
        if is_database_entry(line):
            summary["database_entries"].append(line)
            continue
        entry = match.group(4)
        summary["entries"] += 1
        if entry.startswith("TABLE DATA "):
            summary["table_data"] += 1
        elif entry.startswith(("BLOB ", "BLOB METADATA ", "LARGE OBJECT ")):
            summary["large_objects"] += 1
        if entry.endswith(" ") or entry.endswith(" -") or (suffixes and entry.endswith(suffixes)):
            continue
        missing.add(entry.rsplit(" ", 1)[-1])
    summary["missing_owners"] = sorted(missing)
    return summary


def read_toc(pipe, known_roles=()):
    """:func:`parse_toc_list` of a binary stream (the stdout of ``pg_restore --list``), line by line."""
    return parse_toc_list((line.decode("utf-8", "replace") for line in pipe), known_roles)


def conninfo_dbname(database):
    """A libpq connection string naming only the database, quoted for any name.

    pg_restore and psql read ``--dbname`` as a connection string when it
    contains '=': quoting the value ourselves makes every name (spaces, quotes,
    '=', shell metacharacters) a plain database name.
    """
    return "dbname='%s'" % database.replace("\\", "\\\\").replace("'", "\\'")


def pg_restore_argv(database, path=None, jobs=1, no_owner=False, no_privileges=False, clean=False,
                    single_transaction=False, role=None):
    """argv for pg_restore into ``database``; ``path`` None reads the archive from stdin."""
    argv = ["pg_restore", "--exit-on-error", "--no-password", "--dbname=" + conninfo_dbname(database)]
    if jobs and jobs > 1:
        argv.append("--jobs=%d" % jobs)
    if no_owner:
        argv.append("--no-owner")
    if no_privileges:
        argv.append("--no-privileges")
    if clean:
        argv += ["--clean", "--if-exists"]
    if single_transaction:
        argv.append("--single-transaction")
    if role:
        argv.append("--role=" + role)
    if path:
        argv.append(path)
    return argv


def psql_script_argv(database, single_transaction=False):
    """argv for psql running a script from stdin; stops at the first error."""
    argv = ["psql", "-X", "-q", "--no-password", "-v", "ON_ERROR_STOP=1", "--dbname=" + conninfo_dbname(database)]
    if single_transaction:
        argv.append("--single-transaction")
    return argv + ["-f", "-"]


def session_options(maintenance_work_mem=None):
    """PGOPTIONS for the restoring sessions.

    synchronous_commit=off: the restore's own commits need not wait for the
    WAL flush (a crash mid-restore fails the restore anyway, and the module's
    final rename commits synchronously, which flushes everything before it).
    """
    options = ["-c synchronous_commit=off"]
    if maintenance_work_mem:
        value = str(maintenance_work_mem).replace(" ", "")
        if not _MEM_RE.match(value):
            raise RestoreError("maintenance_work_mem '%s' is not a size such as 512MB or 1GB" % maintenance_work_mem)
        options.append("-c maintenance_work_mem=" + value)
    return " ".join(options)


def validate(params, fmt):
    """Check option combinations against the archive format; returns normalized options."""
    jobs = params.get("jobs")
    if jobs is not None and int(jobs) < 1:
        raise RestoreError("jobs must be 1 or more (got %s)" % jobs)
    if params.get("if_exists", "fail") not in IF_EXISTS:
        raise RestoreError("if_exists must be one of %s" % ", ".join(IF_EXISTS))
    if params.get("count_rows", "exact") not in ROW_COUNTS:
        raise RestoreError("count_rows must be one of %s" % ", ".join(ROW_COUNTS))
    if params.get("single_transaction") and jobs is not None and int(jobs) > 1:
        raise RestoreError("single_transaction cannot be combined with jobs > 1 (pg_restore restores in parallel "
                           "with one connection per job)")
    if fmt == "tar" and jobs is not None and int(jobs) > 1:
        raise RestoreError("jobs > 1 needs a custom or directory archive; pg_restore restores a tar archive "
                           "with one job only")
    if fmt == "plain":
        if jobs is not None and int(jobs) > 1:
            raise RestoreError("jobs > 1 needs a custom or directory archive; a plain SQL script runs in one psql "
                               "session")
        unusable = [name for name in ("no_owner", "no_privileges") if params.get(name)]
        if unusable:
            raise RestoreError("%s need an archive format (custom, directory, tar): a plain SQL script carries its "
                               "ownership and privileges in its SQL (choose them when dumping)" % " and ".join(unusable))
        if params.get("if_exists") == "clean":
            raise RestoreError("if_exists: clean needs an archive format (custom, directory, tar); for a plain SQL "
                               "script use if_exists: replace")
    container = params.get("container") or ""
    if not _CONTAINER_RE.match(container):
        raise RestoreError("container %r is not a valid container name or ID" % container)
    if not params.get("database"):
        raise RestoreError("database is required")
    if "\0" in params["database"]:
        raise RestoreError("database name contains a NUL character")
    staging = params.get("staging_dir") or "/tmp"
    if not posixpath.isabs(staging):
        raise RestoreError("staging_dir '%s' must be an absolute path inside the container" % staging)
    return dict(params, jobs=int(jobs) if jobs is not None else None, staging_dir=staging)


def decide(if_exists, exists, user_objects):
    """Plan for the target database: create, in_place, replace, clean or skip (RestoreError for fail)."""
    if not exists:
        return "create"
    empty = not user_objects.get("relations") and not user_objects.get("large_objects")
    if if_exists == "replace":
        return "replace"
    if if_exists == "clean":
        return "clean"
    if empty:
        return "in_place"
    if if_exists == "skip":
        return "skip"
    return None


def _plural(count, word):
    return "%d %s%s" % (count, word, "" if count == 1 else "s")


def describe_objects(user_objects):
    parts = [_plural(user_objects.get("relations", 0), "relation")]
    if user_objects.get("large_objects"):
        parts.append(_plural(user_objects["large_objects"], "large object"))
    return " and ".join(parts)


def plan_result(plan):
    """The result fields that come from the plan (what check mode and a restore both return)."""
    info = plan["info"]
    toc = plan["toc"] or {}
    report = plan.get("globals_report")
    return {
        "format": info["format"],
        "archive_version": info.get("archive_version"),
        "compression": info.get("compression"),
        "dump_server_version": short_version(info.get("server_version")),
        "dump_version": short_version(info.get("dump_version")),
        "target_server_version": plan["server_version"],
        "restore_tool_version": plan["tool_version"],
        "checksum_verified": plan["checksum_verified"],
        "plan": plan["kind"],
        "jobs": plan.get("jobs"),
        "staged": bool(plan.get("staged")),
        "toc_entries": toc.get("entries") if toc else None,
        "tables_restored": toc.get("table_data") if toc else None,
        "globals": dict(report, path=plan["globals_path"]) if report else None,
        "database_properties": (plan.get("properties") or {}).get("report"),
        "actions": [],
        "tables": [],
        "row_counts": {},
        "rows_total": 0,
    }


def restore_command(plan, params, database, path=None):
    """argv of the tool restoring the archive into ``database``: from ``path`` (staged) or stdin."""
    if plan["info"]["format"] == "plain":
        return psql_script_argv(database, params["single_transaction"])
    role = params["owner"] if (params["no_owner"] and params["owner"]) else None
    return pg_restore_argv(database, path=path, jobs=plan["jobs"], no_owner=params["no_owner"],
                           no_privileges=params["no_privileges"], clean=plan["kind"] == "clean",
                           single_transaction=params["single_transaction"], role=role)


def describe_plan(plan):
    """What happens to the target database, in words (check mode's message)."""
    return {
        "create": "the database does not exist: it is created",
        "in_place": "the database exists and is empty: restored in place",
        "replace": "the database exists with %s and is replaced" % describe_objects(plan["user_objects"]),
        "clean": "the archive's objects are dropped and re-created in place (pg_restore --clean --if-exists)",
    }[plan["kind"]]


def planned_actions(plan, params, database):
    """The steps a restore with this plan and these (validated) options would take (check mode's actions)."""
    actions = []
    if plan["checksum_verified"]:
        actions.append("verified the archive's sha256 against its manifest")
    if plan["toc"] is not None:
        actions.append("the target's pg_restore %s read the archive's table of contents (%d entries, %d tables "
                       "with data)" % (plan["tool_version"], plan["toc"]["entries"], plan["toc"]["table_data"]))
    report = plan.get("globals_report")
    if report:
        actions.append("restore roles and tablespaces from %s: create %s; leave existing %s untouched"
                       % (plan["globals_path"], ", ".join(report["roles_created"] + report["tablespaces_created"])
                          or "none", ", ".join(report["roles_skipped"] + report["tablespaces_skipped"]) or "none"))
    tool = "psql" if plan["info"]["format"] == "plain" else "pg_restore"
    feed = _feed_text(plan, params["staging_dir"])
    properties = (plan.get("properties") or {}).get("report")
    if plan["kind"] in ("create", "replace"):
        options = describe_options((properties or {}).get("create_options", {}))
        actions.append("create a staging database (owner %s, from template0%s) and restore into it with %s: %s"
                       % (plan["owner"], ", %s from the archive" % options if options else "", tool, feed))
    else:
        actions.append("restore into database '%s' with %s%s: %s" % (
            database, tool, " --clean --if-exists" if plan["kind"] == "clean" else "", feed))
    if params["analyze"]:
        actions.append("ANALYZE the restored database")
    if properties and properties["applied"]:
        actions.append("apply the archive's database-level properties to it: %s" % " ".join(properties["applied"]))
    if properties and properties["left_out"]:
        actions.append("leave out the database-level properties naming roles the target lacks: %s"
                       % " ".join(item["statement"] for item in properties["left_out"]))
    if properties and properties["note"]:
        actions.append(properties["note"])
    if plan["kind"] == "create":
        actions.append("rename the staging database to '%s'" % database)
    elif plan["kind"] == "replace":
        actions.append("refuse new connections to '%s', terminate its sessions, rename it aside, rename the "
                       "staging database to '%s' and drop the old one" % (database, database))
    return actions


def _feed_text(plan, staging_dir):
    fmt = plan["info"]["format"]
    if plan["staged"]:
        return "copy the %s archive into a directory under %s in the container, %d job%s" % (
            fmt, staging_dir, plan["jobs"], "" if plan["jobs"] == 1 else "s")
    return "stream the %s %s from the host into the container" % (fmt, "script" if fmt == "plain" else "archive")


def failure_state(kind, database):
    """What a failed or interrupted restore of this plan kind left behind (appended to its message)."""
    if kind == "create":
        return "; the staging database was dropped, database '%s' was not created" % database
    if kind == "replace":
        return "; the staging database was dropped, the existing database '%s' is untouched" % database
    if kind == "clean":
        return ("; database '%s' was restored in place with --clean and may be partly restored (use "
                "if_exists: replace, or single_transaction, for all-or-nothing)" % database)
    return ("; database '%s' (empty before) may now be partly restored: restore again with if_exists: replace"
            % database)


def stderr_hint(text):
    """A hint for well-known pg_restore errors."""
    match = re.search(r'role "([^"]+)" does not exist', text or "")
    if match:
        return (" (the archive refers to role '%s', which the target cluster does not have: restore the roles "
                "with globals: true, create them first, or adopt the objects with no_owner/no_privileges)"
                % match.group(1))
    if "unsupported version" in (text or "") and "file header" in (text or ""):
        return " (the archive was written by a newer pg_dump than the target's pg_restore)"
    return ""


def parse_id_output(text):
    """(uid, gid) from ``id`` output: 'uid=999(postgres) gid=999(postgres) groups=…'."""
    match = re.search(r"uid=(\d+).*?gid=(\d+)", text or "")
    if not match:
        raise RestoreError("cannot read the container user's uid/gid from: %r" % (text,))
    return int(match.group(1)), int(match.group(2))
