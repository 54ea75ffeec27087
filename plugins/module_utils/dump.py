# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Logical backup of one database in a running PostgreSQL container.

The core of the ``pg_dump_container`` module, usable without Ansible (the
scheduled backup job calls the same code)::

    result = PgDump("database", "omero", dest_dir="/backups").run()

Every problem raises :class:`DumpError` with a message meant for a human
(the failing command's stderr included). Guarantees:

- the dump streams from ``<engine> exec`` stdout straight into a hidden
  temporary file beside the destination (memory bounded, written once);
- it gets its final name only after the tool exited 0, the file was fsynced
  and verified and its sha256 computed; a killed or failed dump never gets
  a final name, and temporaries (host and container) are removed;
- passwords travel in the exec environment only, never in argv or results.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import gzip
import os
import posixpath
import signal
import subprocess
import tarfile
import tempfile
import time

from ansible_collections.nl_biomero.database.plugins.module_utils import archive
from ansible_collections.nl_biomero.database.plugins.module_utils.engine import EngineError, full_env, stderr_tail, wait_child
from ansible_collections.nl_biomero.database.plugins.module_utils.pg_container import PgContainer, PgError
from ansible_collections.nl_biomero.database.plugins.module_utils.pg_tools import (
    FORMATS,
    PgToolError,
    compression_args,
    parse_compression,
    pg_dump_argv,
    pg_dumpall_globals_argv,
)
from ansible_collections.nl_biomero.database.plugins.module_utils.errors import NlbError

MANIFEST_VERSION = 1
# Default parallelism of directory format: the container's CPUs, at most this.
# More workers than CPUs does not dump faster, and each one is a connection
# (and load) on a server that may be serving users.
JOBS_CAP = 8
# The last comment pg_dump / pg_dumpall write into a plain script. (17.6+ and
# 15.14+ add a "\unrestrict" line after it, hence "near the end".)
PLAIN_COMPLETE = b"-- PostgreSQL database dump complete"
GLOBALS_COMPLETE = b"-- PostgreSQL database cluster dump complete"
TAIL_BYTES = 64 * 1024
STDERR_KEEP = 64 * 1024
COMPRESSED_PLAIN_EXT = {"gzip": "gz", "lz4": "lz4", "zstd": "zst"}
# Where a directory-format dump is staged inside the container.
STAGE_TEMPLATE = "/tmp/nlb-dump.XXXXXXXXXX"
STAGE_SUBDIR = "dump"


class DumpError(NlbError):
    """The dump cannot be taken or failed; the message says why (with the tool's stderr)."""


# --------------------------------------------------------------------------
# Pure helpers (unit tested)
# --------------------------------------------------------------------------

def parse_mode(mode):
    """File mode from '0600' / '600' / 0o600 (an int is taken as is); DumpError otherwise."""
    if isinstance(mode, bool):
        raise DumpError("mode %r is not a file mode; use an octal string such as '0600'" % (mode,))
    if isinstance(mode, int):
        value = mode
    else:
        text = str(mode).strip()
        if text.startswith("0o"):
            text = text[2:]
        try:
            value = int(text, 8)
        except ValueError:
            raise DumpError("mode '%s' is not an octal file mode such as '0600'" % mode)
    if not 0 <= value <= 0o777:
        raise DumpError("mode %s is out of range (0000 to 0777; no setuid/setgid/sticky bits)" % oct(value))
    if not value & 0o600 == 0o600:
        raise DumpError("mode %s would not let the owner read and write the backup" % format(value, "04o"))
    return value


def dir_mode_for(mode):
    """Directory mode matching a file mode: x wherever r is set (0600 -> 0700, 0640 -> 0750)."""
    return mode | ((mode & 0o444) >> 2)


def choose_compression(spec, major, fmt, verify=True):
    """(pg_dump args, described, method) for a compression spec and the container's pg_dump major.

    'auto' means zstd on 16+ and gzip below for custom and directory; tar
    cannot be compressed by pg_dump and plain stays readable text unless asked.
    A plain dump compressed with lz4/zstd cannot be verified here (pg_restore
    does not read plain dumps and Python has no zstd/lz4 decoder), so that
    combination needs verify off.
    """
    if spec in (None, "", "auto") and fmt in ("plain", "tar"):
        spec = "none"
    try:
        args, described = compression_args(spec, major, fmt)
    except PgToolError as exc:
        raise DumpError(str(exc))
    method = parse_compression(described)[0]
    if fmt == "plain" and method in ("lz4", "zstd") and verify:
        raise DumpError("format 'plain' compressed with %s cannot be verified (pg_restore does not read plain dumps); "
                        "use compress: gzip or none, format custom or directory, or verify: false" % method)
    return args, described, method


def extension_for(fmt, method):
    """File extension of a dump: dump, dir, tar, sql (sql.gz, sql.zst, sql.lz4 for compressed plain)."""
    ext = FORMATS[fmt][1]
    if fmt == "plain" and method in COMPRESSED_PLAIN_EXT:
        ext += "." + COMPRESSED_PLAIN_EXT[method]
    return ext


def resolve_dest(dest, dest_dir, database, ext, stamp):
    """Absolute destination path: ``dest`` as given, or ``<dest_dir>/<database>.<stamp>.<ext>``."""
    if bool(dest) == bool(dest_dir):
        raise DumpError("exactly one of dest and dest_dir is needed")
    if dest:
        return os.path.abspath(os.path.expanduser(dest))
    return os.path.join(os.path.abspath(os.path.expanduser(dest_dir)), archive.default_dump_name(database, ext, stamp))


def default_jobs(nproc_output, cap=JOBS_CAP):
    """Parallel jobs from ``nproc`` output in the container: its CPU count, at least 1, at most ``cap``."""
    try:
        cpus = int(str(nproc_output).strip().split()[0])
    except (ValueError, IndexError):
        return 1
    return max(1, min(cpus, cap))


def describe_exit(rc):
    """Human description of a return code from subprocess (negative: signal) or an engine exec (128+N)."""
    if rc < 0:
        return "killed by signal %s" % _signal_name(-rc)
    if rc > 128 and rc - 128 < 65:
        return "exit status %d (killed by signal %s?)" % (rc, _signal_name(rc - 128))
    return "exit status %d" % rc


def _signal_name(number):
    try:
        return "%s (%d)" % (signal.Signals(number).name, number)
    except ValueError:
        return str(number)


def parse_ls_sizes(output):
    """{name: size} of the regular files in ``ls -ln DIR`` output (GNU and busybox agree on the columns)."""
    sizes = {}
    for line in output.splitlines():
        fields = line.split()
        if not fields or fields[0] == "total":
            continue
        if not line.startswith("-") or len(fields) < 9:
            raise DumpError("unexpected entry in the staged dump directory: %s" % line.strip())
        sizes[fields[-1]] = int(fields[4])
    return sizes


def safe_member_path(name, root):
    """Relative path for a tar member of ``<engine> cp CONTAINER:/x/<root> -``.

    Returns '' for the root directory itself. Anything outside ``root``
    (absolute names, '..', other top-level names) raises DumpError: the
    stream comes from inside a container and is not trusted.
    """
    if name.startswith("/") or "\\" in name:
        raise DumpError("refusing unsafe path in the copied dump: %r" % name)
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if not parts or parts[0] != root:
        raise DumpError("unexpected path in the copied dump: %r (expected it under %s/)" % (name, root))
    rest = parts[1:]
    if any(part == ".." for part in rest):
        raise DumpError("refusing unsafe path in the copied dump: %r" % name)
    return posixpath.join(*rest) if rest else ""


def extract_tar_stream(fileobj, target, root, file_mode=0o600, dir_mode=0o700):
    """Extract a tar stream (read once, in order: ``r|``) of directory ``root`` into ``target``.

    Only regular files and directories are accepted (no links, devices or
    paths outside ``root``). ``target`` must exist. Returns {relative path: size}.
    """
    sizes = {}
    try:
        with tarfile.open(fileobj=fileobj, mode="r|") as stream:
            for member in stream:
                rel = safe_member_path(member.name, root)
                full = os.path.join(target, *rel.split("/")) if rel else target
                if member.isdir():
                    if rel and not os.path.isdir(full):
                        os.mkdir(full, dir_mode)
                    continue
                if not member.isreg():
                    raise DumpError("refusing %s in the copied dump: %r is not a regular file or directory"
                                    % (_tar_type(member), member.name))
                if not rel:
                    raise DumpError("the copied dump is a file, not a directory")
                parent = os.path.dirname(full)
                if not os.path.isdir(parent):
                    os.makedirs(parent, dir_mode)
                source = stream.extractfile(member)
                written = 0
                fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_EXCL, file_mode)
                with os.fdopen(fd, "wb") as out:
                    while True:
                        chunk = source.read(archive.CHUNK)
                        if not chunk:
                            break
                        out.write(chunk)
                        written += len(chunk)
                if written != member.size:
                    raise DumpError("the copied dump is truncated: %s has %d of %d bytes" % (rel, written, member.size))
                sizes[rel] = written
    except tarfile.TarError as exc:
        raise DumpError("cannot read the copied dump as a tar stream: %s" % exc)
    return sizes


def _tar_type(member):
    if member.issym():
        return "symlink"
    if member.islnk():
        return "hard link"
    return "special file"


def tail_bytes(path, size=TAIL_BYTES):
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        end = handle.tell()
        handle.seek(max(0, end - size))
        return handle.read()


def gzip_tail(path, size=TAIL_BYTES):
    """Last ``size`` bytes of a gzip file's content (reads it all, streaming; raises on a bad stream)."""
    tail = b""
    with gzip.open(path, "rb") as handle:
        while True:
            chunk = handle.read(archive.CHUNK)
            if not chunk:
                break
            tail = (tail + chunk)[-size:]
    return tail


def check_plain_complete(path, method="none", marker=PLAIN_COMPLETE):
    """DumpError unless a plain script (optionally gzip) ends with pg_dump's completion comment."""
    try:
        tail = gzip_tail(path) if method == "gzip" else tail_bytes(path)
    except (OSError, EOFError) as exc:
        raise DumpError("the plain dump cannot be read back: %s" % exc)
    if marker not in tail:
        raise DumpError("the plain dump is incomplete: it does not end with %r" % marker.decode("ascii"))


def check_tar_archive(path):
    """Walk a tar archive's headers: every member complete and the end-of-archive blocks present.

    Returns the member count. (Cheap: only headers are read, data is seeked over.)
    """
    size = os.path.getsize(path)
    count = 0
    try:
        with tarfile.open(path, mode="r:") as tar:
            for member in tar:
                if member.offset_data + member.size > size:
                    raise DumpError("the tar dump is truncated: member %s is incomplete" % member.name)
                count += 1
            end = tar.offset
    except tarfile.TarError as exc:
        raise DumpError("the tar dump cannot be read: %s" % exc)
    if count == 0:
        raise DumpError("the tar dump is empty")
    with open(path, "rb") as handle:
        handle.seek(end)
        trailer = handle.read(1024)
    if len(trailer) < 1024 or trailer.strip(b"\0"):
        raise DumpError("the tar dump is truncated: the end-of-archive marker is missing")
    return count


def stream_to_file(argv, path, env=None, file_mode=0o600):
    """Run ``argv`` with its stdout written straight into the new file ``path``; returns (rc, stderr).

    Why not AnsibleModule.run_command: it collects stdout in memory, and a dump
    is as large as the database. Here the child process writes into the file
    descriptor itself: no copy through Python, memory bounded whatever the
    size. stderr goes to an anonymous temporary file (bounded too).
    ``path`` must not exist (O_EXCL).
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, file_mode)
    with os.fdopen(fd, "wb") as out, tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=full_env(env))
        except OSError as exc:
            raise DumpError("cannot run %s: %s" % (argv[0], exc))
        rc = wait_child(proc)
        return rc, stderr_tail(err, STDERR_KEEP)


def run_counting_toc(argv, stdin_path=None, env=None):
    """Run a ``pg_restore --list`` command; returns (rc, TOC entries, header seen, stderr).

    The listing is counted as it streams (a database with many large objects
    has a long one); ``stdin_path`` is piped to the command's stdin. An empty
    database has no entries, but a readable archive always has the
    "; Archive created at" header.
    """
    with tempfile.TemporaryFile() as err:
        src = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL
        try:
            try:
                proc = subprocess.Popen(argv, stdin=src, stdout=subprocess.PIPE, stderr=err, env=full_env(env))
            except OSError as exc:
                raise DumpError("cannot run %s: %s" % (argv[0], exc))
            entries, header = 0, False
            try:
                for line in proc.stdout:
                    if line.startswith(b"; Archive created at"):
                        header = True
                    elif line.strip() and not line.lstrip().startswith(b";"):
                        entries += 1
            except BaseException:
                proc.kill()
                proc.wait()
                raise
            finally:
                proc.stdout.close()
            rc = wait_child(proc)
        finally:
            if stdin_path:
                src.close()
        return rc, entries, header, stderr_tail(err, STDERR_KEEP)


def extract_command_output(argv, target, root, env=None, file_mode=0o600, dir_mode=0o700):
    """Run ``argv`` (which writes a tar stream of directory ``root`` to stdout) and extract it into ``target``.

    Returns {relative path: size}. The exit status is checked as well as the
    stream: a tar stream cut at a member boundary looks complete to tarfile.
    """
    with tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                                    env=full_env(env))
        except OSError as exc:
            raise DumpError("cannot run %s: %s" % (argv[0], exc))
        try:
            try:
                sizes = extract_tar_stream(proc.stdout, target, root, file_mode, dir_mode)
                # drain whatever follows the end-of-archive blocks
                while proc.stdout.read(archive.CHUNK):
                    pass
            finally:
                proc.stdout.close()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        rc = wait_child(proc)
        if rc != 0:
            raise DumpError("%s failed (%s): %s" % (" ".join(argv[:2]), describe_exit(rc), stderr_tail(err, STDERR_KEEP)))
    return sizes


def _utc_now():
    return datetime.datetime.now(datetime.timezone.utc)


# --------------------------------------------------------------------------
# The dump
# --------------------------------------------------------------------------

class PgDump:
    """One logical backup of ``database`` in ``container``; see the module documentation for the options."""

    def __init__(self, container, database, engine="auto", login_user=None, login_password=None,
                 dest=None, dest_dir=None, format="custom", jobs=None, compress="auto", globals=False,
                 exclude_table_data=(), verify=True, mode="0600", force=False):
        if not container:
            raise DumpError("container is required")
        if not database:
            raise DumpError("database is required")
        if format not in FORMATS:
            raise DumpError("format '%s' is not supported; accepted: %s" % (format, ", ".join(sorted(FORMATS))))
        if bool(dest) == bool(dest_dir):
            raise DumpError("exactly one of dest and dest_dir is needed")
        if jobs is not None:
            if int(jobs) < 1:
                raise DumpError("jobs must be 1 or more (got %s)" % jobs)
            if int(jobs) > 1 and format != "directory":
                raise DumpError("jobs=%s needs format 'directory' (pg_dump dumps in parallel only into a directory)"
                                % jobs)
        self.container = container
        self.database = database
        self.engine_name = engine
        self.login_user = login_user
        self.login_password = login_password
        self.dest = dest
        self.dest_dir = dest_dir
        self.format = format
        self.jobs = int(jobs) if jobs is not None else None
        self.compress = compress
        self.globals = bool(globals)
        self.exclude_table_data = [str(item) for item in (exclude_table_data or [])]
        self.verify = bool(verify)
        self.file_mode = parse_mode(mode)
        self.dir_mode = dir_mode_for(self.file_mode)
        self.force = bool(force)
        self.warnings = []
        self.pg = None
        self.plan = None

    # -- checks (shared by check mode and the real run) --------------------

    def prepare(self, started=None):
        """Check everything that can be checked without writing; returns the plan (also kept in self.plan)."""
        started = started or _utc_now()
        try:
            self.pg = PgContainer(self.container, engine=self.engine_name, user=self.login_user,
                                  password=self.login_password)
            dump_major, dump_version = self.pg.tool_version("pg_dump")
        except (EngineError, PgError) as exc:
            raise DumpError(str(exc))
        facts = self._server_facts()
        args, described, method = choose_compression(self.compress, dump_major, self.format, self.verify)
        if self.globals and not facts["superuser"]:
            raise DumpError("globals: pg_dumpall --globals-only needs a superuser (it reads role passwords from "
                            "pg_authid), and login_user '%s' is not one; use a superuser or globals: false"
                            % self.pg.user)
        jobs = None
        if self.format == "directory":
            jobs = self.jobs if self.jobs is not None else self._container_jobs()
        path = resolve_dest(self.dest, self.dest_dir, self.database, extension_for(self.format, method),
                            archive.utc_stamp(started))
        self._check_destination(path)
        self.plan = {
            "path": path,
            "manifest": archive.manifest_path(path),
            "globals_path": archive.globals_path(path) if self.globals else None,
            "format": self.format,
            "compression": described,
            "compress_args": args,
            "jobs": jobs,
            "server_version": facts["server_version"],
            "server_version_num": facts["server_version_num"],
            "pg_dump_version": dump_version,
            "pg_dump_major": dump_major,
            "database_size": facts["database_size"],
            "login_user": self.pg.user,
            "started": started,
        }
        return self.plan

    def _server_facts(self):
        sql = ("SELECT current_setting('server_version'), current_setting('server_version_num'), "
               "(SELECT rolsuper FROM pg_roles WHERE rolname = current_user), "
               "pg_database_size(current_database())")
        try:
            rows = self.pg.query(sql, database=self.database)
        except PgError as exc:
            text = str(exc)
            if "does not exist" in text and "database" in text:
                raise DumpError("database '%s' does not exist in container '%s'%s"
                                % (self.database, self.container, self._known_databases()))
            raise DumpError("cannot connect to database '%s' in container '%s' as '%s': %s"
                            % (self.database, self.container, self.pg.user, text))
        version, version_num, superuser, size = rows[0]
        return {"server_version": version.split()[0], "server_version_num": int(version_num),
                "superuser": superuser == "t", "database_size": int(size)}

    def _known_databases(self):
        try:
            names = self.pg.databases()
        except PgError:
            return ""
        return " (databases: %s)" % ", ".join(names) if names else ""

    def _container_jobs(self):
        rc, out, _err = self.pg.engine.exec_run(self.container, ["nproc"])
        if rc != 0:
            self.warnings.append("cannot read the container's CPU count (nproc); dumping with 1 job")
            return 1
        return default_jobs(out)

    def _check_destination(self, path):
        directory = os.path.dirname(path)
        if not os.path.isdir(directory):
            raise DumpError("destination directory %s does not exist" % directory)
        if not os.access(directory, os.W_OK | os.X_OK):
            raise DumpError("destination directory %s is not writable" % directory)
        if os.path.isdir(path) and self.format != "directory":
            raise DumpError("dest %s is a directory; name a file, or use dest_dir for a default name in it" % path)
        if os.path.lexists(path) and not os.path.isdir(path) and self.format == "directory":
            raise DumpError("dest %s exists and is not a directory (format directory writes a directory)" % path)
        candidates = [path, archive.manifest_path(path)] + ([archive.globals_path(path)] if self.globals else [])
        if not self.force:
            for candidate in candidates:
                if os.path.lexists(candidate):
                    raise DumpError("destination %s exists (use force to overwrite)" % candidate)

    # -- the run -------------------------------------------------------------

    def run(self, check_mode=False):
        """Take the dump (or, in check mode, only check and say what would be written); returns the result dict."""
        clock = time.monotonic()
        started = _utc_now()
        try:
            plan = self.prepare(started)
        except (EngineError, PgError, PgToolError) as exc:
            raise DumpError(str(exc))
        result = {
            "changed": True,
            "path": plan["path"],
            "manifest": plan["manifest"],
            "globals_path": plan["globals_path"],
            "format": plan["format"],
            "compression": plan["compression"],
            "jobs": plan["jobs"],
            "database": self.database,
            "container": self.container,
            "engine": self.pg.engine.binary,
            "login_user": plan["login_user"],
            "server_version": plan["server_version"],
            "pg_dump_version": plan["pg_dump_version"],
            "database_size": plan["database_size"],
        }
        if check_mode:
            result["msg"] = "would dump database '%s' of container '%s' to %s (format %s, compression %s)" % (
                self.database, self.container, plan["path"], plan["format"], plan["compression"])
            result["warnings"] = list(self.warnings)
            return result
        try:
            result.update(self._dump(plan, clock))
        except (EngineError, PgError, PgToolError) as exc:
            raise DumpError(str(exc))
        except OSError as exc:
            raise DumpError("writing the dump failed: %s" % exc)
        result["warnings"] = list(self.warnings)
        result["msg"] = "dumped database '%s' to %s (%d bytes, %s)" % (
            self.database, plan["path"], result["bytes"], plan["compression"])
        return result

    def _dump(self, plan, clock):
        path = plan["path"]
        tmp = archive.temp_path_beside(path)
        gpath = plan["globals_path"]
        gtmp = archive.temp_path_beside(gpath) if gpath else None
        placed = []
        try:
            globals_info = self._dump_globals(gtmp) if gtmp else None
            dump_started = time.monotonic()
            if self.format == "directory":
                verification = self._dump_directory(plan, tmp)
            else:
                verification = self._dump_stream(plan, tmp)
            dump_seconds = time.monotonic() - dump_started
            checksum = archive.sha256_path(tmp)
            size = archive.size_of(tmp)
            archive.set_mode(tmp, self.file_mode, self.dir_mode)
            finished = _utc_now()
            manifest = self._manifest(plan, path, size, checksum, verification, globals_info,
                                      finished, round(time.monotonic() - clock, 3), round(dump_seconds, 3))
            if gtmp:
                os.chmod(gtmp, self.file_mode)
                archive.place(gtmp, gpath, force=self.force)
                placed.append(gpath)
            archive.place(tmp, path, force=self.force)
            placed.append(path)
            archive.write_json_atomic(plan["manifest"], manifest, mode=self.file_mode)
            placed.append(plan["manifest"])
        except BaseException:
            # a set without its manifest (or a dump without its globals) is not a backup
            for item in placed:
                archive.remove_path(item)
            raise
        finally:
            archive.remove_path(tmp)
            if gtmp:
                archive.remove_path(gtmp)
        return {
            "bytes": size,
            "sha256": checksum,
            "duration_s": manifest["duration_s"],
            "dump_duration_s": manifest["dump_duration_s"],
            "verified": verification["verified"],
            "toc_entries": verification.get("toc_entries"),
            "globals_sha256": globals_info["sha256"] if globals_info else None,
        }

    def _env(self):
        return self.pg.env(self.database)

    def _dump_globals(self, gtmp):
        env = self._env()
        argv = self.pg.engine.exec_argv(self.container, pg_dumpall_globals_argv(), env_names=sorted(env))
        rc, err = stream_to_file(argv, gtmp, env=env)
        if rc != 0:
            raise DumpError("pg_dumpall --globals-only failed (%s): %s" % (describe_exit(rc), err))
        archive.fsync_path(gtmp)
        check_plain_complete(gtmp, marker=GLOBALS_COMPLETE)
        return {"file": os.path.basename(archive.globals_path(self.plan["path"])),
                "bytes": os.path.getsize(gtmp), "sha256": archive.sha256_file(gtmp)}

    def _dump_stream(self, plan, tmp):
        """custom, tar, plain: pg_dump's stdout from the exec goes straight into tmp."""
        env = self._env()
        command = pg_dump_argv(self.format, plan["compress_args"], exclude_table_data=self.exclude_table_data)
        # no -i (nothing to read), no -t (a TTY would corrupt binary output); secrets by -e NAME only
        argv = self.pg.engine.exec_argv(self.container, command, env_names=sorted(env))
        rc, err = stream_to_file(argv, tmp, env=env)
        if rc != 0:
            raise DumpError("pg_dump of database '%s' in container '%s' failed (%s): %s"
                            % (self.database, self.container, describe_exit(rc), err or "no error output"))
        if err:
            self.warnings.append("pg_dump: %s" % err)
        archive.fsync_path(tmp)
        if os.path.getsize(tmp) == 0:
            raise DumpError("pg_dump exited 0 but wrote nothing")
        return self._verify_file(plan, tmp)

    def _verify_file(self, plan, tmp):
        method = parse_compression(plan["compression"])[0]
        if not self.verify:
            return {"verified": False, "verification": None}
        if self.format == "plain":
            check_plain_complete(tmp, method)
            return {"verified": True, "verification": "plain script ends with pg_dump's completion comment"}
        members = check_tar_archive(tmp) if self.format == "tar" else None
        entries = self._restore_list(tmp)
        text = "pg_restore --list in the container read %d entries" % entries
        if members is not None:
            text += "; tar archive complete (%d members)" % members
        return {"verified": True, "verification": text, "toc_entries": entries}

    def _restore_list(self, tmp):
        """pg_restore --list in the same container, the archive piped to its stdin: TOC readable."""
        argv = self.pg.engine.exec_argv(self.container, ["pg_restore", "--list"], interactive=True)
        return self._count_toc(argv, tmp)

    def _count_toc(self, argv, stdin_path=None):
        rc, entries, header, err = run_counting_toc(argv, stdin_path)
        if rc != 0:
            raise DumpError("verification failed: pg_restore --list cannot read the dump (%s): %s"
                            % (describe_exit(rc), err))
        if not header:
            raise DumpError("verification failed: pg_restore --list printed no table of contents")
        # Zero entries is a valid dump of an empty database (a fresh BIOMERO DB).
        return entries

    # -- directory format ------------------------------------------------------

    def _dump_directory(self, plan, tmp):
        """pg_dump -Fd -j N into a private directory inside the container, then ``cp`` it out as a tar stream.

        pg_dump cannot write a directory to stdout, so this is the one path that
        needs space inside the container (the size of the dump). The staged
        directory is removed in every case.
        """
        engine = self.pg.engine
        rc, out, err = engine.exec_run(self.container, ["mktemp", "-d", STAGE_TEMPLATE])
        if rc != 0:
            raise DumpError("cannot create a staging directory in container '%s' (mktemp -d): %s"
                            % (self.container, err.strip() or out.strip()))
        stage = out.strip()
        if not stage.startswith("/tmp/nlb-dump."):
            raise DumpError("mktemp in container '%s' answered an unexpected path: %r" % (self.container, stage))
        staged = posixpath.join(stage, STAGE_SUBDIR)
        try:
            command = pg_dump_argv("directory", plan["compress_args"], jobs=plan["jobs"],
                                   exclude_table_data=self.exclude_table_data, output=staged)
            rc, out, err = engine.exec_run(self.container, command, env=self._env())
            if rc != 0:
                raise DumpError("pg_dump of database '%s' in container '%s' failed (%s): %s"
                                % (self.database, self.container, describe_exit(rc),
                                   err.strip() or out.strip() or "no error output"))
            if err.strip():
                self.warnings.append("pg_dump: %s" % err.strip())
            entries = None
            if self.verify:
                entries = self._count_toc(engine.exec_argv(self.container, ["pg_restore", "--list", staged]))
            rc, out, err = engine.exec_run(self.container, ["ls", "-ln", staged])
            if rc != 0:
                raise DumpError("cannot list the staged dump in container '%s': %s" % (self.container, err.strip()))
            expected = parse_ls_sizes(out)
            os.mkdir(tmp, 0o700)
            copied = extract_command_output([engine.binary, "cp", "%s:%s" % (self.container, staged), "-"],
                                            tmp, STAGE_SUBDIR, file_mode=self.file_mode, dir_mode=self.dir_mode)
        finally:
            rc, _out, err = engine.exec_run(self.container, ["rm", "-rf", "--", stage])
            if rc != 0:
                self.warnings.append("could not remove the staging directory %s in container '%s': %s"
                                     % (stage, self.container, err.strip()))
        if copied != expected:
            missing = sorted(set(expected) - set(copied))
            differing = sorted(name for name in copied if expected.get(name) != copied[name])
            raise DumpError("the copied dump does not match the staged one (missing: %s; different: %s)"
                            % (", ".join(missing) or "none", ", ".join(differing) or "none"))
        if "toc.dat" not in copied:
            raise DumpError("the copied dump has no toc.dat")
        archive.fsync_path(tmp)
        if not self.verify:
            return {"verified": False, "verification": None}
        return {"verified": True, "toc_entries": entries,
                "verification": "pg_restore --list in the container read %d entries; %d files copied "
                                "with the staged sizes" % (entries, len(copied))}

    # -- manifest --------------------------------------------------------------

    def _manifest(self, plan, path, size, checksum, verification, globals_info, finished, duration, dump_duration):
        info = self.pg.info
        return {
            "manifest_version": MANIFEST_VERSION,
            "created_by": "nl_biomero.database pg_dump_container",
            "file": os.path.basename(path),
            "database": self.database,
            "container": self.container,
            "container_id": info.get("Id"),
            "image": self.pg.engine.image_of(info),
            "image_id": info.get("Image"),
            "engine": self.pg.engine.binary,
            "login_user": plan["login_user"],
            "server_version": plan["server_version"],
            "server_version_num": plan["server_version_num"],
            "pg_dump_version": plan["pg_dump_version"],
            "format": self.format,
            "compression": plan["compression"],
            "jobs": plan["jobs"],
            "exclude_table_data": list(self.exclude_table_data),
            "bytes": size,
            "sha256": checksum,
            "sha256_scheme": ("directory: sha256 over sorted '<relative path>  <file sha256>' lines"
                              if self.format == "directory" else "file"),
            "database_size": plan["database_size"],
            "verified": verification["verified"],
            "verification": verification.get("verification"),
            "toc_entries": verification.get("toc_entries"),
            "start_utc": archive.utc_iso(plan["started"]),
            "end_utc": archive.utc_iso(finished),
            "duration_s": duration,
            "dump_duration_s": dump_duration,
            "globals_file": globals_info["file"] if globals_info else None,
            "globals_bytes": globals_info["bytes"] if globals_info else None,
            "globals_sha256": globals_info["sha256"] if globals_info else None,
        }


def dump(**options):
    """Convenience: ``dump(container=..., database=..., dest_dir=...)`` -> result dict (see PgDump)."""
    check_mode = options.pop("check_mode", False)
    return PgDump(**options).run(check_mode=check_mode)


__all__ = ["PgDump", "DumpError", "dump"]
