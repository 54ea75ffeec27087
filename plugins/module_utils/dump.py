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
  temporary file beside the destination (memory bounded, written once,
  hashed as it is written: engine.stream);
- it gets its final name only after the tool exited 0, the file was fsynced
  and verified and its sha256 computed; a killed or failed dump never gets
  a final name, and temporaries (host and container) are removed;
- passwords travel in the exec environment only, never in argv or results.

The rules without a container (modes, compression, names, file checks) are
in :mod:`dump_rules`.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import os
import posixpath
import time

from ansible_collections.nl_biomero.database.plugins.module_utils import archive
from ansible_collections.nl_biomero.database.plugins.module_utils.dump_rules import (
    GLOBALS_COMPLETE,
    DumpError,
    check_directory_frames,
    check_plain_complete,
    check_tar_archive,
    choose_compression,
    default_jobs,
    describe_exit,
    dir_mode_for,
    extension_for,
    extract_tar_stream,
    parse_ls_sizes,
    parse_mode,
    resolve_dest,
    verify_argv,
    verify_level,
)
from ansible_collections.nl_biomero.database.plugins.module_utils.engine import EngineError, stream
from ansible_collections.nl_biomero.database.plugins.module_utils.pg_archive import read_toc
from ansible_collections.nl_biomero.database.plugins.module_utils.pg_container import PgContainer, PgError
from ansible_collections.nl_biomero.database.plugins.module_utils.pg_tools import (
    FORMATS,
    PgToolError,
    parse_compression,
    pg_dump_argv,
    pg_dumpall_globals_argv,
)

MANIFEST_VERSION = 1
# Where a directory-format dump is staged inside the container.
STAGE_TEMPLATE = "/tmp/nlb-dump.XXXXXXXXXX"
STAGE_SUBDIR = "dump"


def _utc_now():
    return datetime.datetime.now(datetime.timezone.utc)


# --------------------------------------------------------------------------
# The dump
# --------------------------------------------------------------------------

class PgDump:
    """One logical backup of ``database`` in ``container``; see the module documentation for the options."""

    def __init__(self, container, database, engine="auto", login_user=None, login_password=None,
                 dest=None, dest_dir=None, format="custom", jobs=None, compress="auto", globals=False,
                 exclude_table_data=(), verify="toc", mode="0600", force=False, snapshot=None,
                 lock_wait_timeout=None):
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
        self.verify = verify_level(verify)  # toc | full | none
        self.file_mode = parse_mode(mode)
        self.dir_mode = dir_mode_for(self.file_mode)
        self.force = bool(force)
        # an exported snapshot to dump in (pg_snapshot.ExportedSnapshot), seconds to wait for a table lock
        self.snapshot = snapshot
        self.lock_wait_timeout = lock_wait_timeout
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
        args, described, method = choose_compression(self.compress, dump_major, self.format, self.verify != "none")
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
            "verification_level": self.verify,
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
                dump_seconds = time.monotonic() - dump_started
                checksum, size = archive.sha256_path(tmp), archive.size_of(tmp)
            else:
                # the sha256 was taken from the stream as it was written: the file is not read again
                checksum, size, verification = self._dump_stream(plan, tmp)
                dump_seconds = time.monotonic() - dump_started
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
            "verification": verification.get("verification"),
            "toc_entries": verification.get("toc_entries"),
            "globals_sha256": globals_info["sha256"] if globals_info else None,
        }

    def _env(self):
        return self.pg.env(self.database)

    def _exec_into(self, command, path):
        """Run ``command`` in the container, its stdout streamed into the new file ``path``.

        The engine hashes and counts the bytes as it writes them and fsyncs
        the file (engine.stream); no -i (nothing to read), no -t (a TTY would
        corrupt binary output); secrets travel by ``-e NAME`` only.
        """
        env = self._env()
        argv = self.pg.engine.exec_argv(self.container, command, env_names=sorted(env))
        return stream(argv, env=env, stdout=path, file_mode=self.file_mode)

    def _dump_globals(self, gtmp):
        done = self._exec_into(pg_dumpall_globals_argv(), gtmp)
        if done.rc != 0:
            raise DumpError("pg_dumpall --globals-only failed (%s): %s" % (describe_exit(done.rc), done.stderr))
        check_plain_complete(gtmp, marker=GLOBALS_COMPLETE)
        return {"file": os.path.basename(archive.globals_path(self.plan["path"])),
                "bytes": done.bytes, "sha256": done.sha256}

    def _dump_stream(self, plan, tmp):
        """custom, tar, plain: pg_dump's stdout from the exec goes straight into tmp.

        Returns (sha256, bytes, verification); the sha256 is the stream's.
        """
        command = pg_dump_argv(self.format, plan["compress_args"], exclude_table_data=self.exclude_table_data,
                               snapshot=self.snapshot, lock_wait_timeout=self.lock_wait_timeout)
        done = self._exec_into(command, tmp)
        if done.rc != 0:
            raise DumpError("pg_dump of database '%s' in container '%s' failed (%s): %s"
                            % (self.database, self.container, describe_exit(done.rc), done.stderr or "no error output"))
        if done.stderr:
            self.warnings.append("pg_dump: %s" % done.stderr)
        if done.bytes == 0:
            raise DumpError("pg_dump exited 0 but wrote nothing")
        return done.sha256, done.bytes, self._verify_file(plan, tmp)

    def _verify_file(self, plan, tmp):
        method = parse_compression(plan["compression"])[0]
        if self.verify == "none":
            return {"verified": False, "verification": None}
        if self.format == "plain":
            # the gzip check decompresses the whole file; either way the stream was hashed as written
            check_plain_complete(tmp, method)
            return {"verified": True, "verification": "plain script ends with pg_dump's completion comment%s"
                    % (" (the whole gzip stream read)" if method == "gzip" else "")}
        members = check_tar_archive(tmp) if self.format == "tar" else None
        entries = verify_archive(self.pg.engine, self.container, self.verify, host_file=tmp)
        text = describe_verification(self.verify, entries)
        if members is not None:
            text += "; tar archive complete (%d members)" % members
        return {"verified": True, "verification": text, "toc_entries": entries}

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
                                   exclude_table_data=self.exclude_table_data, output=staged,
                                   snapshot=self.snapshot, lock_wait_timeout=self.lock_wait_timeout)
            rc, out, err = engine.exec_run(self.container, command, env=self._env())
            if rc != 0:
                raise DumpError("pg_dump of database '%s' in container '%s' failed (%s): %s"
                                % (self.database, self.container, describe_exit(rc),
                                   err.strip() or out.strip() or "no error output"))
            if err.strip():
                self.warnings.append("pg_dump: %s" % err.strip())
            entries = None
            if self.verify != "none":
                entries = verify_archive(engine, self.container, self.verify, container_path=staged)
            rc, out, err = engine.exec_run(self.container, ["ls", "-ln", staged])
            if rc != 0:
                raise DumpError("cannot list the staged dump in container '%s': %s" % (self.container, err.strip()))
            expected = parse_ls_sizes(out)
            os.mkdir(tmp, 0o700)
            copied = self._copy_out(staged, tmp)
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
        if self.verify == "none":
            return {"verified": False, "verification": None}
        text = "%s; %d files copied with the staged sizes" % (describe_verification(self.verify, entries), len(copied))
        if self.verify == "full":
            # pg_restore does not notice a zstd/lz4 data file cut short (dump_rules.check_frames)
            framed = check_directory_frames(tmp)
            if framed:
                text += "; every frame of the %d zstd/lz4 data files of the copy complete" % framed
        return {"verified": True, "toc_entries": entries, "verification": text}

    def _copy_out(self, staged, target):
        """``<engine> cp CONTAINER:staged -`` extracted into ``target`` as the tar stream arrives; {path: size}.

        The exit status is checked as well as the stream: a tar stream cut at a
        member boundary looks complete to tarfile.
        """
        argv = self.pg.engine.cp_out_argv(self.container, staged)
        done = stream(argv, stdout=lambda pipe: extract_tar_stream(pipe, target, STAGE_SUBDIR, self.file_mode,
                                                                   self.dir_mode))
        if done.rc != 0:
            raise DumpError("%s cp failed (%s): %s" % (self.pg.engine.binary, describe_exit(done.rc), done.stderr))
        return done.output

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
            "verification_level": self.verify,
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


def verify_archive(engine, container, level, host_file=None, container_path=None):
    """Read a dump back with the container's own pg_restore; returns the table of contents' entry count.

    ``level`` toc: ``pg_restore --list`` (header and table of contents, which
    sit at the start of the archive). full: that, then ``pg_restore -f
    /dev/null``, which reads and decompresses every entry and data block as a
    restore would: an archive cut short or with a damaged block fails here.
    The archive streams from ``host_file`` into the exec's stdin, or is read
    at ``container_path`` inside the container (a staged directory). Nothing
    is written anywhere. DumpError when it cannot be read.
    """
    interactive = host_file is not None
    done = stream(engine.exec_argv(container, verify_argv("toc", container_path), interactive=interactive),
                  stdin=host_file, stdout=read_toc)
    if done.rc != 0:
        raise DumpError("verification failed: pg_restore --list cannot read the dump (%s): %s"
                        % (describe_exit(done.rc), done.stderr))
    if done.output["created"] is None:
        raise DumpError("verification failed: pg_restore --list printed no table of contents")
    if level == "full":
        read = stream(engine.exec_argv(container, verify_argv("full", container_path), interactive=interactive),
                      stdin=host_file)
        if read.rc != 0:
            raise DumpError("verification failed: pg_restore cannot read the whole dump (%s): %s"
                            % (describe_exit(read.rc), read.stderr or "no error output"))
    # Zero entries is a valid dump of an empty database (a fresh BIOMERO DB).
    return done.output["entries"]


def describe_verification(level, entries):
    """The manifest's ``verification`` text of a custom/tar/directory dump read back at ``level``."""
    text = "pg_restore --list in the container read %d entries" % entries
    if level == "full":
        text += "; pg_restore read every entry and data block of the archive (full read to /dev/null)"
    return text


def dump(**options):
    """Convenience: ``dump(container=..., database=..., dest_dir=...)`` -> result dict (see PgDump)."""
    check_mode = options.pop("check_mode", False)
    return PgDump(**options).run(check_mode=check_mode)


__all__ = ["PgDump", "DumpError", "dump", "verify_archive"]
