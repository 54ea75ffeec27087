# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Restore a pg_dump archive into a database in a running PostgreSQL container.

The core of the ``pg_restore_container`` module, usable without Ansible::

    result = PgRestore("database", "omero", "/backups/omero.2026-01-01T02-00-00Z.dump").run()

Every problem raises :class:`RestoreError` with a message meant for a human
(the failing tool's stderr included). Guarantees:

- Everything that can be checked is checked before the target is touched:
  the manifest checksum, the archive's header (format, the versions of the
  server it was dumped from and of pg_dump), that the target is not older,
  that the target container's own pg_restore reads the table of contents,
  that the roles owning the archive's objects exist, the state of the target
  database. Check mode stops there.
- A database the module creates (``if_exists: replace`` or a database that
  does not exist yet) is restored under a temporary name first and only
  renamed to its final name once pg_restore (``--exit-on-error``) and
  ANALYZE succeeded; on failure the temporary database is dropped and an
  existing target is untouched. ``replace`` swaps in the new database only
  then: connections to the old one are refused and terminated, it is
  renamed aside, the new one takes its name, the old one is dropped.
- custom/tar/plain archives stream from the host file into the exec's
  stdin (nothing written inside the container, memory bounded). A parallel
  restore (``jobs`` > 1) needs a seekable file, and pg_restore reads a
  directory archive only from a directory, so those are staged in a private
  directory inside the container with ``<engine> cp`` and always removed.
- Passwords travel in the exec environment only, never in argv or results;
  identifiers and values reach SQL through psql variables (``:"name"``,
  ``:'value'``), never by pasting strings.

The rules without a container (archive headers, versions, TOC, globals,
options, plan, argv) are in :mod:`pg_archive`; every child process goes
through engine.stream.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import gzip
import json
import os
import posixpath
import signal
import tarfile
import threading
import time
import uuid

from ansible_collections.nl_biomero.database.plugins.module_utils import archive
from ansible_collections.nl_biomero.database.plugins.module_utils.db_properties import (
    client_encoding,
    create_database_sql,
    describe_options,
    plan_properties,
)
from ansible_collections.nl_biomero.database.plugins.module_utils.dump_rules import default_jobs
from ansible_collections.nl_biomero.database.plugins.module_utils.engine import EngineError, stream
# The one globals filter (quote-aware; upgrade imports filter_globals from here too).
from ansible_collections.nl_biomero.database.plugins.module_utils.globals_sql import (
    GlobalsError,
    filter_globals,
    globals_roles,
)
# The pure rules of a restore live in pg_archive; these names stay importable from here (upgrade uses them).
from ansible_collections.nl_biomero.database.plugins.module_utils.pg_archive import (
    RestoreError,
    check_versions,
    conninfo_dbname,
    decide,
    describe_objects,
    describe_plan,
    failure_state,
    inspect_archive,
    parse_id_output,
    pg_restore_argv,
    plan_result,
    planned_actions,
    psql_script_argv,
    read_toc,
    restore_command,
    session_options,
    short_version,
    stderr_hint,
    validate,
)
# _USER_TABLES: the one definition of "user tables" (system schemas and extension members excluded)
from ansible_collections.nl_biomero.database.plugins.module_utils.pg_container import PgContainer, PgError, _USER_TABLES
from ansible_collections.nl_biomero.database.plugins.module_utils.pg_tools import PgToolError, major_version

STDERR_KEEP = 16 * 1024
STAGE_PREFIX = "nlb-restore."
STAGING_DB_PREFIX = "nlb_restore_"
ASIDE_DB_PREFIX = "nlb_replaced_"
COPY_BUFSIZE = 1024 * 1024


class Terminated(BaseException):
    """SIGTERM (for example an Ansible task timeout) arrived: unwind so that the cleanup runs."""


def _on_sigterm(signum, _frame):
    raise Terminated("terminated by signal %d" % signum)


def _unique(prefix):
    return prefix + uuid.uuid4().hex[:12]


def _gunzip_writer(path):
    """stdin writer for engine.stream: the decompressed content of the gzip file ``path``."""
    def write(sink):
        with gzip.open(path, "rb") as source:
            while True:
                try:
                    chunk = source.read(COPY_BUFSIZE)
                except (OSError, EOFError) as exc:  # not the pipe: the file (engine.stream kills the tool)
                    raise RestoreError("reading the gzip-compressed script %s failed: %s" % (path, exc))
                if not chunk:
                    return
                sink.write(chunk)
    return write


# SQL run by the module (values and identifiers only through psql variables)
SQL_FACTS = """SELECT json_build_object(
  'server_version', current_setting('server_version'),
  'user', current_user,
  'superuser', (SELECT rolsuper FROM pg_roles WHERE rolname = current_user),
  'createdb', (SELECT rolcreatedb FROM pg_roles WHERE rolname = current_user),
  'roles', (SELECT coalesce(json_agg(rolname ORDER BY rolname), '[]') FROM pg_roles),
  'tablespaces', (SELECT coalesce(json_agg(spcname ORDER BY spcname), '[]') FROM pg_tablespace),
  'database', (SELECT json_build_object('owner', pg_get_userbyid(datdba), 'allow_connections', datallowconn,
                                        'is_template', datistemplate) FROM pg_database WHERE datname = :'db')
)::text"""
SQL_USER_OBJECTS = r"""SELECT json_build_object(
  'relations', (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
       AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_)'
       AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                       AND d.objid = c.oid AND d.deptype = 'e')),
  'large_objects', (SELECT count(*) FROM pg_largeobject_metadata))::text"""
SQL_COUNTS_ESTIMATE = r"""SELECT coalesce(json_object_agg(t.name, t.n ORDER BY t.name), '{}')::text FROM (
  SELECT n.nspname || '.' || c.relname AS name, CASE WHEN c.reltuples < 0 THEN NULL
    ELSE c.reltuples::bigint END AS n
  """ + _USER_TABLES + ") t"


# --------------------------------------------------------------------------
# The restore
# --------------------------------------------------------------------------

class PgRestore:
    """Restore ``src`` into ``database`` in ``container``; see the module documentation for the options."""

    def __init__(self, container, database, src, engine="auto", login_user=None, login_password=None, jobs=None,
                 owner=None, no_owner=False, no_privileges=False, globals=False, if_exists="fail",
                 single_transaction=False, analyze=True, verify_checksum=None, staging_dir="/tmp",
                 maintenance_work_mem=None, count_rows="exact", carry_login_role=False):
        if not src:
            raise RestoreError("src is required")
        self.params = {
            "container": container, "database": database, "engine": engine, "jobs": jobs,
            "owner": owner, "no_owner": bool(no_owner), "no_privileges": bool(no_privileges),
            "globals": bool(globals), "carry_login_role": bool(carry_login_role), "if_exists": if_exists or "fail",
            "single_transaction": bool(single_transaction), "analyze": analyze is not False,
            "verify_checksum": verify_checksum, "staging_dir": staging_dir or "/tmp",
            "maintenance_work_mem": maintenance_work_mem, "count_rows": count_rows or "exact",
        }
        self.container = container
        self.database = database
        self.src = os.path.normpath(os.path.abspath(os.path.expanduser(src)))
        self.login_user = login_user
        self.login_password = login_password
        self.pg = None
        self.warnings = []
        self.actions = []
        self._stages = []
        self._exec_ids = None
        self._toc_path = None
        self._server_major = None
        self._interrupted_state = ""
        self._completed = False

    # -- small exec helpers ----------------------------------------------------

    def _redact(self, text):
        if self.login_password and text:
            return text.replace(self.login_password, "********")
        return text

    def _psql(self, sql, database=None, variables=None):
        """Run SQL (stdin) with psql variables; returns stdout text. Values never pasted into SQL."""
        command = ["psql", "-X", "-q", "--no-password", "-v", "ON_ERROR_STOP=1", "-A", "-t"]
        for name, value in sorted((variables or {}).items()):
            command += ["-v", "%s=%s" % (name, value)]
        command += ["-f", "-"]
        rc, out, err = self.pg.exec_tool(command, database=database, input_bytes=sql.encode("utf-8"))
        if rc != 0:
            raise PgError(self._redact(err.strip() or out.strip() or "psql exit status %d" % rc))
        return out

    def _json(self, sql, database=None, variables=None):
        out = self._psql(sql, database=database, variables=variables).strip()
        return json.loads(out) if out else None

    def _exec(self, command, what):
        rc, out, err = self.pg.engine.exec_run(self.container, command)
        if rc != 0:
            raise RestoreError("%s in container '%s' failed: %s" % (what, self.container,
                                                                    err.strip() or out.strip() or "exit %d" % rc))
        return out

    def _run_streamed(self, command, database, stdin_path=None, gzip_input=False, extra_env=None, reader=None):
        """Run a tool in the container with the archive file as its stdin; returns (rc, reader's output, stderr tail).

        Why not AnsibleModule.run_command (or engine.run): they hold the whole
        input and output in memory, and an archive is as large as the database.
        engine.stream gives the engine CLI the file itself as its stdin (no copy
        through Python); only a gzip plain script is decompressed through a pipe.
        ``reader(binary pipe)`` reads stdout if given, else stdout is discarded.
        """
        env = self.pg.env(database)
        env.update(extra_env or {})
        argv = self.pg.engine.exec_argv(self.container, command, env_names=sorted(env),
                                        interactive=stdin_path is not None)
        stdin = _gunzip_writer(stdin_path) if stdin_path and gzip_input else stdin_path
        done = stream(argv, env=env, stdin=stdin, stdout=reader)
        return done.rc, done.output, self._redact(done.stderr[-STDERR_KEEP:])

    # -- checks ------------------------------------------------------------------

    def prepare(self, check_mode=False):
        """Every check that can be done without changing anything; returns the plan dict."""
        info = inspect_archive(self.src)
        fmt = info["format"]
        self.params = validate(dict(self.params, container=self.container, database=self.database), fmt)
        p = self.params
        manifest = self._manifest()
        maintenance = "template1" if self.database == "postgres" else "postgres"
        try:
            self.pg = PgContainer(self.container, engine=p["engine"], user=self.login_user,
                                  password=self.login_password, maintenance_db=maintenance)
            facts = self._json(SQL_FACTS, variables={"db": self.database})
            tool = "psql" if fmt == "plain" else "pg_restore"
            tool_version = self.pg.tool_version(tool)[1]
        except PgError as exc:
            raise RestoreError("cannot query the server in container '%s' as '%s': %s"
                               % (self.container, self.pg.user if self.pg else self.login_user, self._redact(str(exc))))
        if manifest and not info.get("server_version"):
            info["server_version"] = manifest.get("server_version")
            info["dump_version"] = info.get("dump_version") or manifest.get("pg_dump_version")
        server_version = facts["server_version"]
        check_versions(info, self.container, server_version, tool, tool_version)
        self._server_major = major_version(server_version)
        login = {"user": facts["user"], "superuser": facts["superuser"], "createdb": facts["createdb"]}
        roles = facts["roles"]
        target = facts["database"]
        user_objects = {"relations": 0, "large_objects": 0}
        if target:
            if target["is_template"] or not target["allow_connections"]:
                raise RestoreError("database '%s' is a template or does not allow connections; refusing to restore "
                                   "into it" % self.database)
            user_objects = self._json(SQL_USER_OBJECTS, database=self.database)
        plan_kind = decide(p["if_exists"], bool(target), user_objects)
        if plan_kind is None:
            raise RestoreError("database '%s' in container '%s' already has %s; refusing to restore over it "
                               "(if_exists: fail). Use if_exists: replace (restore into a new database and swap it "
                               "in when complete), clean (drop and re-create the archive's objects in place) or "
                               "skip, or restore into another database name"
                               % (self.database, self.container, describe_objects(user_objects)))
        plan = {
            "kind": plan_kind, "info": info, "manifest": manifest, "server_version": short_version(server_version),
            "tool": tool, "tool_version": short_version(tool_version), "login": login, "roles": roles,
            "target": target, "user_objects": user_objects, "checksum_verified": False,
            "globals_path": None, "globals_report": None, "toc": None, "properties": None,
        }
        if plan_kind == "skip":
            return plan
        if plan_kind in ("create", "replace") and not (login["superuser"] or login["createdb"]):
            raise RestoreError("login_user '%s' may not create databases (needs CREATEDB or superuser), which "
                               "if_exists: %s needs" % (login["user"], p["if_exists"]))
        owner = p["owner"]
        if owner and owner not in roles and not (p["globals"] and owner in self._globals_roles_preview(manifest)):
            raise RestoreError("owner '%s' is not a role in container '%s' (roles: %s)"
                               % (owner, self.container, ", ".join(roles)))
        plan["checksum_verified"] = self._verify_checksum(manifest)
        if p["globals"]:
            plan["globals_path"], gtext = self._read_globals(manifest)
            try:
                carried = [login["user"]] if p["carry_login_role"] else []
                plan["globals_script"], plan["globals_report"] = filter_globals(gtext, roles, facts["tablespaces"],
                                                                                carried)
            except GlobalsError as exc:
                raise RestoreError("the globals file %s cannot be used: %s (nothing was restored)"
                                   % (plan["globals_path"], exc))
        # jobs: parallel restore needs pg_restore to seek in a file inside the container
        jobs = p["jobs"]
        if jobs is None:
            jobs = 1
            if fmt == "directory" and not p["single_transaction"]:
                jobs = default_jobs(self.pg.engine.exec_run(self.container, ["nproc"])[1])
        plan["jobs"] = jobs
        plan["staged"] = fmt == "directory" or (fmt == "custom" and jobs > 1)
        known = set(roles) | set((plan["globals_report"] or {}).get("roles_created", []))
        plan["toc"] = self._list_toc(fmt, plan["staged"], check_mode, known)
        if plan["toc"] is not None and not p["no_owner"]:
            missing = plan["toc"]["missing_owners"]
            if missing:
                raise RestoreError("the archive's objects are owned by role(s) missing in container '%s': %s; restore "
                                   "the roles with globals: true (needs the dump's globals file), create them first, "
                                   "or adopt the objects with no_owner: true (optionally with owner)"
                                   % (self.container, ", ".join(missing)))
        plan["owner"] = owner or (target["owner"] if target else None) or login["user"]
        plan["properties"] = None
        if plan_kind in ("create", "replace"):
            plan["properties"] = self._read_properties(plan, known)
        if owner and plan_kind in ("in_place", "clean") and not p["no_owner"] and owner != target["owner"]:
            self.warnings.append("owner '%s' is not applied: database '%s' exists (owned by '%s'); owner sets the "
                                 "owner of a database the module creates, and with no_owner the role that owns "
                                 "the restored objects" % (owner, self.database, target["owner"]))
        return plan

    def _manifest(self):
        try:
            manifest = archive.read_manifest(self.src)
        except (OSError, ValueError) as exc:
            raise RestoreError("the manifest %s cannot be read: %s" % (archive.manifest_path(self.src), exc))
        if manifest is None and self.params["verify_checksum"]:
            raise RestoreError("verify_checksum: true but there is no manifest %s beside the archive"
                               % archive.manifest_path(self.src))
        return manifest

    def _verify_checksum(self, manifest):
        if not manifest or self.params["verify_checksum"] is False:
            return False
        expected = manifest.get("sha256")
        if not expected:
            raise RestoreError("the manifest %s has no sha256; use verify_checksum: false to restore anyway"
                               % archive.manifest_path(self.src))
        actual = archive.sha256_path(self.src)
        if actual != expected:
            raise RestoreError("checksum mismatch for %s: the manifest says sha256 %s, the archive has %s; it is "
                               "corrupt or was modified (nothing was restored, the target is untouched)"
                               % (self.src, expected, actual))
        return True

    def _globals_file(self, manifest):
        name = (manifest or {}).get("globals_file")
        if name:
            return os.path.join(os.path.dirname(self.src), os.path.basename(name))
        return archive.globals_path(self.src)

    def _globals_roles_preview(self, manifest):
        path = self._globals_file(manifest)
        if not os.path.isfile(path):
            return []
        with open(path, "rb") as handle:
            try:
                return globals_roles(handle.read().decode("utf-8", "replace"))
            except GlobalsError as exc:
                raise RestoreError("the globals file %s cannot be used: %s (nothing was restored)" % (path, exc))

    def _read_globals(self, manifest):
        path = self._globals_file(manifest)
        if not os.path.isfile(path):
            raise RestoreError("globals: true but the globals file %s does not exist (dump with globals: true, "
                               "or restore without globals)" % path)
        expected = (manifest or {}).get("globals_sha256")
        if expected and self.params["verify_checksum"] is not False:
            actual = archive.sha256_file(path)
            if actual != expected:
                raise RestoreError("checksum mismatch for the globals file %s: the manifest says sha256 %s, the file "
                                   "has %s (nothing was restored)" % (path, expected, actual))
        with open(path, "rb") as handle:
            return path, handle.read().decode("utf-8")

    def _list_toc(self, fmt, staged, check_mode, known_roles):
        """pg_restore --list in the target container: proves its pg_restore reads the archive."""
        if fmt == "plain":
            return None

        def parse(pipe):
            return read_toc(pipe, known_roles)

        # --create: the database object's own entries are listed too (kept apart, see parse_toc_list)
        if fmt == "directory":
            # pg_restore reads a directory archive only from a directory (not from stdin): stage
            # it (in check mode only its toc.dat, which is all --list reads) and list it there.
            self._toc_path = self._stage(toc_only=check_mode)
            rc, toc, err = self._run_streamed(["pg_restore", "--create", "--list", self._toc_path],
                                              self.pg.maintenance_db, reader=parse)
        else:
            # --list reads only the header and table of contents at the start of the stream
            rc, toc, err = self._run_streamed(["pg_restore", "--create", "--list"], self.pg.maintenance_db,
                                              stdin_path=self.src, reader=parse)
        if rc != 0:
            raise RestoreError("pg_restore --list in container '%s' cannot read %s: %s%s (nothing was restored)"
                               % (self.container, self.src, err.strip(), stderr_hint(err)))
        # An empty database's archive lists no entries, but every readable one has its header.
        if "Format" not in toc["header"]:
            raise RestoreError("pg_restore --list printed no table of contents for %s (nothing was restored)" % self.src)
        return toc

    def _read_properties(self, plan, known_roles):
        """The archive's database-level properties for the database this restore creates.

        ``pg_restore --create -L <the database's own entries>`` prints them as
        SQL (read by the quote-aware db_properties, never pasted); statements
        naming a role the target lacks are left out and reported. Returns
        {'sql', 'archive_name', 'known_roles', 'options', 'report'}; 'sql' is None when the
        archive has no such entries (a plain script, a data-only dump).
        """
        info = plan["info"]
        entries = (plan["toc"] or {}).get("database_entries") or []
        empty = {"sql": None, "report": {
            "source": "none", "create_options": {}, "applied": [], "left_out": [],
            "note": "%s: the database is created with the target's defaults (template0, owner %s) and gets no "
                    "settings, grants or comment from the archive"
                    % ("a plain SQL script records no database-level properties" if info["format"] == "plain" else
                       "the archive has no DATABASE entry (a data-only or partial dump)", plan["owner"])}}
        if not entries or not info.get("dbname"):
            return empty
        command = ["pg_restore", "--create", "--file=-",
                   "--use-list=" + self._put_file("database.list", "\n".join(entries) + "\n")]
        if self.params["owner"] or self.params["no_owner"]:
            command.append("--no-owner")  # owner (or no_owner) decides who owns the database
        if self.params["no_privileges"]:
            command.append("--no-privileges")
        stdin = self.src
        if self._toc_path:
            command.append(self._toc_path)
            stdin = None
        rc, raw, err = self._run_streamed(command, self.pg.maintenance_db, stdin_path=stdin,
                                          reader=lambda pipe: pipe.read())
        if rc != 0:
            raise RestoreError("pg_restore --create in container '%s' cannot print the database-level properties of "
                               "%s: %s (nothing was restored)" % (self.container, self.src, err.strip()))
        # bytes in the archive's encoding; surrogateescape keeps every byte for sending them back
        sql = raw.decode("utf-8", "surrogateescape")
        try:
            options, apply, left_out = plan_properties(sql, info["dbname"], self.database, known_roles)
        except GlobalsError as exc:
            raise RestoreError("%s (nothing was restored)" % exc)
        if not options and not apply and not left_out:
            return empty

        def shown(text):
            return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")

        report = {"source": "archive", "create_options": dict((key, shown(value)) for key, value in options.items()),
                  "applied": [shown(text) for text in apply], "note": None,
                  "left_out": [{"statement": shown(text), "missing_roles": missing} for text, missing in left_out]}
        if left_out:
            self.warnings.append("database-level properties naming roles that container '%s' lacks are not applied: "
                                 "%s (restore the roles with globals: true or create them first)"
                                 % (self.container, "; ".join(item["statement"] for item in report["left_out"])))
        return {"sql": sql, "archive_name": info["dbname"], "known_roles": sorted(known_roles), "options": options,
                "report": report}

    def _put_file(self, name, text):
        """A small file in a private directory of the container (removed with the stages); returns its path."""
        path = posixpath.join(self._private_dir("file"), name)
        rc, out, err = self.pg.engine.exec_run(self.container, ["sh", "-c", 'cat > "$1"', "sh", path],
                                               input_bytes=text.encode("utf-8", "surrogateescape"))
        if rc != 0:
            raise RestoreError("writing %s in container '%s' failed: %s"
                               % (path, self.container, err.strip() or out.strip()))
        return path

    # -- staging inside the container ------------------------------------------

    def _ids(self):
        """uid and gid of the exec user in the container (who runs the tools and must read the staged files)."""
        if self._exec_ids is None:
            self._exec_ids = parse_id_output(self._exec(["id"], "id"))
        return self._exec_ids

    def _stage(self, toc_only=False):
        """Copy the archive into a private directory in the container; returns the path pg_restore reads.

        The tar stream is built on the fly (nothing extra on the host) and
        piped into ``<engine> cp - CONTAINER:DIR``; its entries carry the uid and
        gid of the exec user so that the tools can read them (mode 0600/0700).
        """
        for _remote_dir, kind, path in self._stages:
            if kind == "full" and not toc_only:
                return path
        is_dir = os.path.isdir(self.src)
        name = "archive" if is_dir else "archive.dump"
        remote_dir = self._private_dir("toc" if toc_only else "full", name)
        uid, gid = self._ids()

        def owned(tarinfo):
            tarinfo.uid, tarinfo.gid, tarinfo.uname, tarinfo.gname = uid, gid, "", ""
            tarinfo.mode = 0o700 if tarinfo.isdir() else 0o600
            return tarinfo

        failure = []

        def write_tar(sink):
            try:
                with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT, copybufsize=COPY_BUFSIZE) as tar:
                    if is_dir and toc_only:
                        tar.add(self.src, arcname=name, recursive=False, filter=owned)
                        tar.add(os.path.join(self.src, "toc.dat"), arcname=name + "/toc.dat", filter=owned)
                    else:
                        tar.add(self.src, arcname=name, filter=owned)
            except (BrokenPipeError, ConnectionResetError) as exc:
                failure.append(exc)  # cp stopped reading: a failure even if it exits 0

        done = stream(self.pg.engine.cp_in_argv(self.container, remote_dir), stdin=write_tar)
        if done.rc != 0 or failure:
            raise RestoreError("copying the archive into container '%s' (%s cp) failed: %s"
                               % (self.container, self.pg.engine.binary,
                                  done.stderr[-STDERR_KEEP:] or (failure and failure[0])))
        self.actions.append("staged the archive%s in container directory %s"
                            % (" table of contents" if toc_only else "", remote_dir))
        return posixpath.join(remote_dir, name)

    def _private_dir(self, kind, name=None):
        """A new ``mktemp -d`` directory under staging_dir in the container, removed by _cleanup_stages."""
        staging_dir = self.params["staging_dir"]
        remote_dir = self._exec(["mktemp", "-d", posixpath.join(staging_dir, STAGE_PREFIX + "XXXXXXXXXX")],
                                "creating a staging directory (mktemp -d)").strip()
        if not remote_dir.startswith(posixpath.join(staging_dir, STAGE_PREFIX)):
            raise RestoreError("mktemp in container '%s' answered an unexpected path: %r" % (self.container, remote_dir))
        self._stages.append((remote_dir, kind, posixpath.join(remote_dir, name) if name else None))
        return remote_dir

    def _cleanup_stages(self):
        while self._stages:
            remote_dir = self._stages.pop()[0]
            rc, out, err = self.pg.engine.exec_run(self.container, ["rm", "-rf", "--", remote_dir])
            if rc != 0:
                self.warnings.append("could not remove the staging directory %s in container '%s': %s"
                                     % (remote_dir, self.container, err.strip() or out.strip()))

    # -- the run -------------------------------------------------------------------

    def run(self, check_mode=False):
        """Restore (or, in check mode, check and say what would happen); returns the result dict.

        SIGTERM is turned into an exception while it runs (main thread only), so
        that a killed task still drops its staging database and staged files.
        """
        previous = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, _on_sigterm)
        try:
            return self._run(check_mode)
        except Terminated as exc:
            if self._completed:
                raise RestoreError("interrupted (%s) after the restore completed: database '%s' is in place, "
                                   "only the row counts were not collected" % (exc, self.database), self._failure())
            raise RestoreError("the restore was interrupted (%s); whatever it staged was removed%s"
                               % (exc, self._interrupted_state), self._failure())
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    def _run(self, check_mode):
        clock = time.monotonic()
        try:
            try:
                plan = self.prepare(check_mode=check_mode)
                result = dict(plan_result(plan), changed=False, database=self.database, container=self.container,
                              engine=self.pg.engine.binary, src=self.src)
                if plan["kind"] == "skip":
                    result.update(changed=False, msg="database '%s' already has %s; left alone (if_exists: skip)"
                                  % (self.database, describe_objects(plan["user_objects"])))
                elif check_mode:
                    result.update(changed=True, actions=planned_actions(plan, self.params, self.database),
                                  msg="would restore %s into database '%s' of container '%s' (%s)"
                                  % (self.src, self.database, self.container, describe_plan(plan)))
                else:
                    result.update(self._restore(plan))
            finally:
                if self.pg is not None:
                    self._cleanup_stages()
        except (EngineError, PgError, PgToolError) as exc:
            raise RestoreError(self._redact(str(exc)), self._failure())
        except OSError as exc:
            raise RestoreError("reading the archive failed: %s" % exc, self._failure())
        except RestoreError as exc:
            for key, value in self._failure().items():
                exc.result.setdefault(key, value)
            raise
        result["duration_s"] = round(time.monotonic() - clock, 3)
        result["warnings"] = list(self.warnings)
        return result

    def _failure(self):
        """What a failed run returns besides its message: the steps it took and its warnings."""
        return {"actions": list(self.actions), "warnings": list(self.warnings)}

    def _restore(self, plan):
        p = self.params
        kind = plan["kind"]
        staging = None
        renamed = False
        try:
            if plan.get("globals_report") is not None:
                self._apply_globals(plan)
            if kind in ("create", "replace"):
                staging = _unique(STAGING_DB_PREFIX)
                self._create_staging(plan, staging)
            into = staging or self.database
            restore_started = time.monotonic()
            self._run_restore(plan, into)
            restore_seconds = round(time.monotonic() - restore_started, 3)
            if p["analyze"]:
                self._psql("ANALYZE", database=into)
                self.actions.append("analyzed")
            # Counted before the swap: a writer nobody stopped may write into the database once it is in place.
            counts = self._row_counts(into)
            if staging and plan["properties"]["sql"] is not None:
                self._apply_properties(plan, staging)
            if kind == "create":
                self._psql('ALTER DATABASE :"staging" RENAME TO :"db"', variables={"staging": staging, "db": self.database})
                renamed = True
                self.actions.append("renamed %s to '%s'" % (staging, self.database))
            elif kind == "replace":
                self._swap(staging)
                renamed = True
        except BaseException as exc:
            if staging and not renamed:
                self._drop_staging(staging, exc)
            if not isinstance(exc, (RestoreError, PgError)):
                # interrupted: a tool still running in the container must not go on writing
                self._terminate_restore_sessions(staging or self.database)
                self._interrupted_state = failure_state(plan["kind"], self.database)
            if isinstance(exc, PgError):
                raise RestoreError("restoring into database '%s' failed: %s%s"
                                   % (self.database, exc, failure_state(plan["kind"], self.database)))
            raise
        self._completed = True
        return {
            "changed": True,
            "actions": list(self.actions),
            "database_properties": plan["properties"]["report"] if plan["properties"] else None,
            "tables": sorted(counts),
            "row_counts": counts,
            "rows_total": sum(value or 0 for value in counts.values()),
            "restore_duration_s": restore_seconds,
            "msg": "restored %s into database '%s' of container '%s' (%d tables, %d rows)"
                   % (self.src, self.database, self.container, len(counts), sum(v or 0 for v in counts.values())),
        }

    def _run_restore(self, plan, into):
        p = self.params
        fmt = plan["info"]["format"]
        path = self._stage() if plan["staged"] else None
        command = restore_command(plan, self.params, into, path)
        env = {"PGOPTIONS": session_options(p["maintenance_work_mem"])}
        stdin = None if plan["staged"] else self.src
        rc, _out, err = self._run_streamed(command, into, stdin_path=stdin, gzip_input=plan["info"]["gzip"],
                                           extra_env=env)
        if rc != 0:
            tool = "psql" if fmt == "plain" else "pg_restore"
            raise RestoreError("%s into database '%s' failed (exit status %d): %s%s%s"
                               % (tool, self.database, rc, err or "no error output", stderr_hint(err),
                                  failure_state(plan["kind"], self.database)))
        if err:
            self.warnings.append("%s: %s" % ("psql" if fmt == "plain" else "pg_restore", err))
        self.actions.append("restored %s into %s (%s)" % (
            fmt, "staging database" if into != self.database else "'%s'" % self.database,
            "staged, %d job%s" % (plan["jobs"], "" if plan["jobs"] == 1 else "s") if plan["staged"] else "streamed"))

    def _create_staging(self, plan, staging):
        """CREATE DATABASE for the restore: the archive's encoding and locale options, else the target's defaults."""
        options = (plan["properties"] or {}).get("options")
        if options:
            try:
                self._psql(create_database_sql(staging, options, plan["owner"]))
            except PgError as exc:
                raise RestoreError("creating the database with the archive's %s failed in container '%s': %s. If the "
                                   "target lacks that locale, create database '%s' (empty) with the encoding and locale "
                                   "you want and restore into it (an empty database is restored in place)%s"
                                   % (describe_options(options), self.container, str(exc).strip(), self.database,
                                      failure_state(plan["kind"], self.database)))
            self.actions.append("created staging database %s (owner %s, %s from the archive)"
                                % (staging, plan["owner"], describe_options(options)))
            return
        self._psql('CREATE DATABASE :"db" OWNER :"owner" TEMPLATE template0',
                   variables={"db": staging, "owner": plan["owner"]})
        self.actions.append("created staging database %s (owner %s)" % (staging, plan["owner"]))

    def _apply_properties(self, plan, staging):
        """The archive's database-level statements, on the staging database (a rename carries them), all or none."""
        props = plan["properties"]
        _options, apply, _left_out = plan_properties(props["sql"], props["archive_name"], staging, props["known_roles"])
        if not apply:
            return
        encoding = client_encoding(props["sql"])
        script = "SET client_encoding = '%s';\n%s\n" % (encoding, "\n".join(apply))
        command = ["psql", "-X", "-q", "--no-password", "-v", "ON_ERROR_STOP=1", "--single-transaction", "-f", "-"]
        rc, out, err = self.pg.exec_tool(command, input_bytes=script.encode("utf-8", "surrogateescape"))
        if rc != 0:
            raise RestoreError("applying the archive's database-level properties (owner, settings, grants, comment) "
                               "failed: %s%s" % (self._redact(err.strip() or out.strip()),
                                                 failure_state(plan["kind"], self.database)))
        self.actions.append("applied %d database-level propert%s from the archive (owner, settings, grants, comment)"
                            % (len(apply), "y" if len(apply) == 1 else "ies"))

    def _apply_globals(self, plan):
        script = plan["globals_script"]
        command = ["psql", "-X", "-q", "--no-password", "-v", "ON_ERROR_STOP=1", "-f", "-"]
        rc, out, err = self.pg.exec_tool(command, input_bytes=script.encode("utf-8"))
        if rc != 0:
            raise RestoreError("restoring roles from %s failed (nothing else was changed; roles created before the "
                               "error remain): %s" % (plan["globals_path"], self._redact(err.strip() or out.strip())))
        report = plan["globals_report"]
        self.actions.append("restored globals: created roles %s, left existing roles %s untouched" % (
            ", ".join(report["roles_created"]) or "none", ", ".join(report["roles_skipped"]) or "none"))

    def _swap(self, staging):
        """Put the restored staging database in place of the existing one."""
        aside = _unique(ASIDE_DB_PREFIX)
        db = {"db": self.database}
        self._psql('ALTER DATABASE :"db" WITH ALLOW_CONNECTIONS false', variables=db)
        try:
            self._psql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                       "WHERE datname = :'db' AND pid <> pg_backend_pid()", variables=db)
            # RENAME waits (up to 5 s) for terminated sessions to go away
            self._psql('ALTER DATABASE :"db" RENAME TO :"aside"', variables=dict(db, aside=aside))
        except BaseException:
            self._try_sql('ALTER DATABASE :"db" WITH ALLOW_CONNECTIONS true', db)
            raise
        try:
            self._psql('ALTER DATABASE :"staging" RENAME TO :"db"', variables=dict(db, staging=staging))
        except BaseException:
            self._try_sql('ALTER DATABASE :"aside" RENAME TO :"db"', dict(db, aside=aside))
            self._try_sql('ALTER DATABASE :"db" WITH ALLOW_CONNECTIONS true', db)
            raise
        self.actions.append("replaced '%s': old database renamed to %s, staging %s renamed to '%s'"
                            % (self.database, aside, staging, self.database))
        try:
            self._psql('DROP DATABASE :"aside"', variables={"aside": aside})
            self.actions.append("dropped the old database (%s)" % aside)
        except PgError as exc:
            self.warnings.append("the old database was kept as '%s' because dropping it failed: %s" % (aside, exc))

    def _terminate_restore_sessions(self, database):
        """End pg_restore/psql sessions of ours that outlive a killed engine client."""
        sql = ("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = :'db' "
               "AND pid <> pg_backend_pid() AND application_name IN ('pg_restore', 'psql')")
        try:
            self._psql(sql, variables={"db": database})
        except (PgError, EngineError) as exc:
            self.warnings.append("could not stop the restore sessions in database '%s': %s" % (database, exc))

    def _try_sql(self, sql, variables):
        try:
            self._psql(sql, variables=variables)
        except PgError as exc:
            self.warnings.append("rollback step failed (%s): %s" % (sql, exc))

    def _drop_staging(self, staging, exc):
        force = " WITH (FORCE)" if (self._server_major or 0) >= 13 else ""
        try:
            self._psql('DROP DATABASE IF EXISTS :"staging"' + force, variables={"staging": staging})
            self.actions.append("dropped staging database %s after the failure" % staging)
        except (PgError, EngineError) as drop_exc:
            self.warnings.append("could not drop the staging database %s after the failure (%s); drop it by hand"
                                 % (staging, drop_exc))
            if isinstance(exc, RestoreError):
                exc.args = (exc.args[0] + " [the staging database %s could not be dropped: drop it by hand]" % staging,)

    def _row_counts(self, database):
        """Rows per user table of the restored database; a failure here is a warning (the data is restored)."""
        try:
            if self.params["count_rows"] == "exact":
                return self.pg.table_row_counts(database)
            return self._json(SQL_COUNTS_ESTIMATE, database=database) or {}
        except (PgError, EngineError, ValueError) as exc:
            self.warnings.append("the data was restored, but counting the rows failed: %s" % self._redact(str(exc)))
            return {}


def restore(**options):
    """Convenience: ``restore(container=..., database=..., src=...)`` -> result dict (see PgRestore)."""
    check_mode = options.pop("check_mode", False)
    return PgRestore(**options).run(check_mode=check_mode)


__all__ = ["PgRestore", "RestoreError", "restore", "inspect_archive", "filter_globals", "check_versions",
           "conninfo_dbname", "pg_restore_argv", "psql_script_argv", "session_options"]
