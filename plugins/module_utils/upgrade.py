# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Major-version upgrade of a PostgreSQL container: the host actions.

:class:`Preflight` reads the container, the images, the server and the disk
(through ``engine`` and ``pg_container``) and asks ``upgrade_plan`` what to
do; :func:`fingerprint` reads what the verification compares; :class:`Pipe`
moves databases from the old server into the new one. The decisions are in
``upgrade_plan`` (pure, unit tested).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import binascii
import json
import os
import re
import time

from ansible_collections.nl_biomero.database.plugins.module_utils import labels
from ansible_collections.nl_biomero.database.plugins.module_utils.compose import (
    compose_labels, handed_back, upgrade_problems)
from ansible_collections.nl_biomero.database.plugins.module_utils.engine import ContainerEngine, pipe
from ansible_collections.nl_biomero.database.plugins.module_utils.logical import (
    preflight_problems as logical_problems, read_preflight)
from ansible_collections.nl_biomero.database.plugins.module_utils.errors import NlbError
from ansible_collections.nl_biomero.database.plugins.module_utils.pg_container import (
    SQL_SEQUENCES, SQL_TABLE_ROWS, SQL_TABLE_SIGNATURES, PgContainer, container_env)
from ansible_collections.nl_biomero.database.plugins.module_utils.pg_tools import major_version
from ansible_collections.nl_biomero.database.plugins.module_utils.restore import (
    conninfo_dbname, filter_globals, pg_restore_argv, psql_script_argv, session_options)
from ansible_collections.nl_biomero.database.plugins.module_utils.tuning import parse_describe_config, unknown_settings
from ansible_collections.nl_biomero.database.plugins.module_utils.upgrade_plan import (
    UpgradeError, aside_names, clone_problems, clone_spec, command_settings, compare_fingerprints, data_mounts,
    first_ten, decide, disk_estimate, disk_problems, extension_names, image_major, missing_extensions, new_volume_name,
    old_container_name, recovery_plan, smoke_tables, upgrade_labels)
from ansible_collections.nl_biomero.database.plugins.module_utils.db_properties import (
    create_database_sql, property_statements)
from ansible_collections.nl_biomero.database.plugins.module_utils.write_fence import WriteFence, unfenced

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
SQL_ROLES = r"SELECT coalesce(json_agg(rolname ORDER BY rolname), '[]')::text FROM pg_roles WHERE rolname !~ '^pg_'"
SQL_IDENTITY = "SHOW server_version; SELECT system_identifier FROM pg_control_system()"
SQL_TABLESPACES = "SELECT spcname FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global') ORDER BY 1"


# Database-level properties of every database: owner, encoding and locale (to_jsonb: the columns differ
# between majors), connection limit, ACL (exploded, defaults made explicit), comment, settings, and the
# settings of roles in the database.
SQL_DATABASE_PROPERTIES = r"""SELECT coalesce(json_object_agg(d.datname, json_build_object(
    'owner', pg_get_userbyid(d.datdba), 'encoding', pg_encoding_to_char(d.encoding),
    'locale_provider', to_jsonb(d)->>'datlocprovider', 'collate', d.datcollate, 'ctype', d.datctype,
    'locale', coalesce(to_jsonb(d)->>'datlocale', to_jsonb(d)->>'daticulocale'),
    'icu_rules', to_jsonb(d)->>'daticurules', 'connection_limit', d.datconnlimit,
    'comment', shobj_description(d.oid, 'pg_database'),
    'acl', (SELECT coalesce(json_agg(a.item ORDER BY a.item), '[]') FROM (
        SELECT CASE WHEN e.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(e.grantee) END || '=' || e.privilege_type
               || CASE WHEN e.is_grantable THEN '*' ELSE '' END || '/' || pg_get_userbyid(e.grantor) AS item
        FROM aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) e) a),
    'settings', coalesce((SELECT to_json(s.setconfig) FROM pg_db_role_setting s
                          WHERE s.setdatabase = d.oid AND s.setrole = 0), '[]'),
    'role_settings', (SELECT coalesce(json_object_agg(pg_get_userbyid(s.setrole), s.setconfig), '{}')
                      FROM pg_db_role_setting s WHERE s.setdatabase = d.oid AND s.setrole <> 0))), '{}')::text
  FROM pg_database d"""
# Roles (without the predefined pg_*): attributes, settings, memberships, comment and a digest of the
# password hash (%s: the digest expression; the hash itself never leaves the server).
SQL_ROLE_PROPERTIES = r"""SELECT coalesce(json_object_agg(r.rolname, json_build_object(
    'attributes', json_build_object('superuser', r.rolsuper, 'inherit', r.rolinherit,
        'createrole', r.rolcreaterole, 'createdb', r.rolcreatedb, 'login', r.rolcanlogin,
        'replication', r.rolreplication, 'bypassrls', r.rolbypassrls, 'connection_limit', r.rolconnlimit,
        'valid_until', (r.rolvaliduntil AT TIME ZONE 'UTC')::text),
    'settings', coalesce((SELECT to_json(s.setconfig) FROM pg_db_role_setting s
                          WHERE s.setrole = r.oid AND s.setdatabase = 0), '[]'),
    'member_of', (SELECT coalesce(jsonb_agg(DISTINCT jsonb_build_array(pg_get_userbyid(m.roleid), m.admin_option)),
                                  '[]') FROM pg_auth_members m WHERE m.member = r.oid),
    'comment', shobj_description(r.oid, 'pg_authid'), 'bootstrap', r.oid = 10,
    'password', %s)), '{}')::text
  FROM pg_roles r WHERE r.rolname !~ '^pg_'"""
SQL_PASSWORD_DIGEST = (r"(SELECT encode(sha256(convert_to('%s' || a.rolpassword, 'UTF8')), 'hex') "
                       r"FROM pg_authid a WHERE a.oid = r.oid)")
_SALT = re.compile(r"^[0-9a-f]{16,64}$")


def _smoke_sql(table):
    # ``table`` is one of the constants in SMOKE_TABLES: a plain lower-case identifier.
    return ("SELECT CASE WHEN to_regclass('%s') IS NULL THEN NULL ELSE "
            "(xpath('/row/n/text()', query_to_xml('SELECT count(*) AS n FROM %s', false, true, '')))[1]::text "
            "END" % (table, table))


def _database_sql(kind, row_counts):
    """One statement reading what the fingerprint keeps of one database, as one JSON row: its sequences, smoke
    counts and, with ``row_counts``, the row counts or (``"signatures"``) the tables' change signatures."""
    smoke = ", ".join("'%s', (%s)" % (table, _smoke_sql(table)) for table in smoke_tables(kind))
    tables = {True: "(%s)::json" % SQL_TABLE_ROWS, "signatures": "(%s)::json" % SQL_TABLE_SIGNATURES}.get(
        row_counts, "NULL")
    return "SELECT json_build_object('sequences', (%s)::json, 'smoke', json_build_object(%s), 'tables', %s)::text" % (
        SQL_SEQUENCES, smoke, tables)


def database_properties(pg, text=None):
    """{database: properties} of every database; settings as they were before a write fence, and whether one is up."""
    properties = json.loads(text or pg.scalar(SQL_DATABASE_PROPERTIES))
    for name, item in properties.items():
        item["settings"], item["write_fence"] = unfenced(name, item["settings"])
        item["role_settings"] = dict((role, sorted(values)) for role, values in item["role_settings"].items())
    return properties


def role_properties(pg, salt, superuser):
    """{role: properties}; ``password`` is sha256(salt + hash) when the login user may read pg_authid, else None."""
    if not _SALT.match(salt or ""):
        raise UpgradeError("password_salt %r is not 16 to 64 lower-case hex digits" % (salt,))
    roles = json.loads(pg.scalar(SQL_ROLE_PROPERTIES % (SQL_PASSWORD_DIGEST % salt if superuser else "NULL")))
    for item in roles.values():
        item["settings"] = sorted(item["settings"])
    return roles, superuser


def counted_rows(pg, database):
    """{table: [exact row count, change signature]} of ``database``: the signature is read first, so a change
    made while counting changes it (see :func:`settled_row_counts`)."""
    signatures = json.loads(pg.scalar(SQL_TABLE_SIGNATURES, database=database))
    counts = pg.table_row_counts(database)
    return dict((table, [count, signatures.get(table)]) for table, count in counts.items())


def settled_row_counts(counted, signatures, count):
    """(exact row counts, tables counted again) of one database, from counts taken earlier.

    ``counted``: {table: [count, signature]} (:func:`counted_rows`); ``signatures``: {table: signature} read now;
    ``count(tables)`` counts those tables now. A table's earlier count holds when its signature (file node,
    rows inserted, rows deleted: cumulative statistics, which a finished session has always written) is the
    same now; a table without one (partitioned, with children, a server before 15) or new is counted again.
    """
    again = sorted(table for table, signature in signatures.items()
                   if signature is None or (counted.get(table) or [None, None])[1] != signature)
    counts = dict((table, counted[table][0]) for table in signatures if table not in again)
    if again:
        counts.update(count(again))
    return counts, again


def fingerprint(pg, databases=None, kind="auto", salt=None, row_counts=True, counted=None):
    """What an upgrade must keep, of a PgContainer: per database row counts, sequence values, smoke counts and
    database-level properties; the roles with their attributes, settings, memberships and password digests.

    ``salt`` (hex) salts the password digests: a comparison uses the salt of the fingerprint it compares to.
    Without ``row_counts`` the tables are not counted (and not compared). ``counted`` ({database:
    :func:`counted_rows`}): counts taken earlier, only the tables changed since are counted again (their names
    under ``recounted``). One query per database and two for the cluster (each exec costs downtime).
    """
    if not databases:
        databases = [row[0] for row in pg.query(SQL_DATABASES)]
    salt = salt or binascii.hexlify(os.urandom(16)).decode("ascii")
    version, sysid, superuser, properties = [row[0] for row in pg.query(
        SQL_IDENTITY + "; SELECT rolsuper FROM pg_roles WHERE rolname = current_user; " + SQL_DATABASE_PROPERTIES)]
    properties = database_properties(pg, properties)
    result = {"server_version": version.split()[0], "system_identifier": sysid, "databases": {}, "roles": []}
    mode = "signatures" if (row_counts and counted is not None) else bool(row_counts)
    for database in databases:
        read = json.loads(pg.scalar(_database_sql(kind, mode), database=database))
        item = properties.get(database) or {}
        result["databases"][database] = {
            "sequences": read["sequences"],
            "smoke": dict((table, int(value)) for table, value in read["smoke"].items() if value not in (None, "")),
            "write_fence": item.pop("write_fence", False),
            "properties": item,
        }
        if mode == "signatures":
            tables, again = settled_row_counts((counted or {}).get(database) or {}, read["tables"],
                                               lambda names, db=database: pg.table_row_counts(db, names))
            result["databases"][database].update(tables=tables, recounted=again)
        elif mode:
            result["databases"][database]["tables"] = read["tables"]
    result["roles"] = json.loads(pg.scalar(SQL_ROLES))
    result["role_properties"], result["passwords_compared"] = role_properties(pg, salt, superuser == "t")
    result["password_salt"] = salt
    return result


class Preflight:
    """Reads everything the upgrade of one container depends on and decides; changes nothing."""

    def __init__(self, engine, pg_factory, statvfs=os.statvfs, stat=os.stat):
        self.engine = engine          # ContainerEngine
        self.pg_factory = pg_factory  # () -> PgContainer of the instance
        self.statvfs = statvfs
        self.stat = stat

    def _in_image(self, image, command, user=None):
        """(rc, out, err) of ``command`` in a throwaway container of ``image`` (no network, never pulled)."""
        return self.engine.run_throwaway(image, command[1:], purpose="upgrade-preflight", entrypoint=command[0],
                                         user=user)

    def _free(self, path):
        """(free bytes, device) of the file system holding ``path`` or its nearest existing parent."""
        while path and path != "/" and not os.path.exists(path):
            path = os.path.dirname(path)
        try:
            st = self.statvfs(path or "/")
            return st.f_bavail * st.f_frsize, self.stat(path or "/").st_dev
        except OSError:
            return None, None

    def run_checks(self, container, target_image, strategy="dump_restore", dump_dir=None, clients=(),
                   allow_same_major=False, disk_margin=1.5, data_dir=None, check_extensions=True,
                   check_settings=True, logical_prepare=False, logical_replica_identity_full=False):
        problems = []
        warnings = []
        info = self.engine.inspect(container)
        if info is None:
            raise UpgradeError(self.engine.missing(container))
        if not (info.get("State") or {}).get("Running"):
            raise UpgradeError("container '%s' is not running (status: %s)"
                               % (container, (info.get("State") or {}).get("Status", "unknown")))
        pg = self.pg_factory()
        current_major = major_version(pg.server_version_num())
        result = {"container": container, "current_major": current_major, "current_version": pg.server_version(),
                  "current_image": self.engine.image_of(info), "target_image": target_image,
                  "strategy": strategy, "problems": problems, "warnings": warnings}

        target = self.engine.image_inspect(target_image)
        if target is None:
            problems.append("target image %s is not available on the host (load or pull it first)" % target_image)
            result["action"] = "fail"
            return result
        target_major = image_major(target)
        if target_major is None:
            rc, out, err = self._in_image(target_image, ["postgres", "--version"])
            target_major = major_version(out) if rc == 0 else None
            if target_major is None:
                problems.append("cannot read the PostgreSQL version of %s (postgres --version): %s"
                                % (target_image, (err or out).strip()))
                result["action"] = "fail"
                return result
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
                missing = missing_extensions(used, extension_names(out))
                for database, names in sorted(missing.items()):
                    problems.append("database %s uses extension(s) %s that %s does not provide"
                                    % (database, ", ".join(names), target_image))
            else:
                warnings.append("could not list the extensions of %s (%s); not checked" % (target_image, err.strip()))

        spaces = [row[0] for row in pg.query(SQL_TABLESPACES)]
        if spaces:
            problems.append("tablespace(s) %s: the upgrade builds the new cluster in one new volume and cannot "
                            "carry tablespaces" % ", ".join(spaces))

        settings = command_settings((info.get("Config") or {}).get("Cmd"))
        result["settings"] = settings
        if settings.get("archive_command") or settings.get("archive_library"):
            warnings.append("the new instance takes over archive_command/archive_library: its WAL file names start "
                            "again from the beginning in the same archive; point the archive at a new place")
        if check_settings and settings:
            rc, out, err = self._in_image(target_image, ["postgres", "--describe-config"], user="postgres")
            if rc == 0:
                rejected = unknown_settings(settings, parse_describe_config(out))
                if rejected:
                    problems.append("setting(s) %s on the command line are unknown to PostgreSQL %d"
                                    % (", ".join(rejected), target_major))
            else:
                warnings.append("could not read the settings of %s (%s); not checked" % (target_image, err.strip()))

        if strategy == "logical":
            found = read_preflight(pg, [name for name in sorted(databases) if name not in empty])
            found_problems, result["logical"] = logical_problems(found, settings, logical_prepare,
                                                                 logical_replica_identity_full)
            problems += found_problems

        # Volumes and names.
        pgdata = container_env(info, "PGDATA")
        mount, new_data_mount = data_mounts(info.get("Mounts"), pgdata, current_major, target_major, data_dir)
        if mount is None:
            problems.append("container %s has no mount holding its data directory %s; cannot keep its data aside"
                            % (container, data_dir or pgdata))
            old_volume = None
        else:
            old_volume = mount.get("Name") if mount.get("Type") == "volume" else mount.get("Source")
            problems += clone_problems(info, mount.get("Destination"), new_data_mount)
        name = (info.get("Name") or container).lstrip("/")
        old_name = old_container_name(name, current_major)
        new_volume = new_volume_name(old_volume if (mount or {}).get("Type") == "volume" else None, name, target_major)
        if self.engine.inspect(old_name) is not None:
            problems.append("container %s already exists (an earlier upgrade was not cleaned up: run "
                            "playbooks/rollback.yml or playbooks/upgrade_cleanup.yml)" % old_name)
        if self.engine.volume_inspect(new_volume) is not None:
            problems.append("volume %s already exists (left by an earlier attempt?); remove it first" % new_volume)
        result.update({"name": name, "old_name": old_name, "old_volume": old_volume, "new_volume": new_volume,
                       "old_volume_type": (mount or {}).get("Type")})

        # Disk.
        estimate = disk_estimate(databases.values(), strategy, disk_margin)
        root = self.engine.storage_root()
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
                problems.append(self.engine.missing(client, "client container"))
            else:
                client_states[client] = (client_info.get("State") or {}).get("Status", "unknown")
        result["clients"] = client_states

        image_info = self.engine.image_inspect(info.get("Image")) if info.get("Image") else None
        spec = clone_spec(info, image_info, target_image, new_volume, (mount or {}).get("Destination"),
                          new_data_mount)
        spec["labels"].update(upgrade_labels(old_name, old_volume if (mount or {}).get("Type") == "volume" else "",
                                             self.engine.image_of(info), current_major, new_volume,
                                             target_major))
        result["spec"] = spec
        # A container made by docker-compose: the hand-back must be writable before anything stops.
        result["compose"], found = upgrade_problems((info.get("Config") or {}).get("Labels"), target_image,
                                                    new_volume, new_data_mount)
        problems += found
        if problems:
            result["action"] = "fail"
        return result


# ---------------------------------------------------------------------------
# Strategy pipe: pg_dump of the old server streamed into pg_restore of the new.
# ---------------------------------------------------------------------------

def pipe_dump_argv(database, schema_only=False):
    """pg_dump of ``database`` to stdout, custom format, uncompressed (nothing is stored, CPU is the limit);
    ``schema_only``: the definitions without the data (strategy logical: replication brings the rows)."""
    return (["pg_dump", "--format=custom", "--compress=0", "--no-password", "--dbname=" + conninfo_dbname(database)]
            + (["--schema-only"] if schema_only else []))


class Pipe:
    """Moves databases from one PgContainer to another without an intermediate file."""

    def __init__(self, source, target):
        self.source = source    # PgContainer (old server)
        self.target = target    # PgContainer (new server)

    def copy_globals(self):
        """Roles and tablespaces of the source that the target lacks (existing ones are left alone)."""
        rc, out, err = self.source.exec_tool(["pg_dumpall", "--globals-only", "--no-password"])
        if rc != 0:
            raise UpgradeError("pg_dumpall --globals-only in %s failed: %s" % (self.source.container, err.strip()))
        roles = [row[0] for row in self.target.query("SELECT rolname FROM pg_roles")]
        spaces = [row[0] for row in self.target.query("SELECT spcname FROM pg_tablespace")]
        # the new image created the bootstrap role anew: it keeps the password and settings it had
        script, report = filter_globals(out, roles, spaces, carried_roles=[self.target.user])
        rc, out, err = self.target.exec_tool(psql_script_argv("postgres"), input_bytes=script.encode("utf-8"))
        if rc != 0:
            raise UpgradeError("restoring the globals into %s failed: %s" % (self.target.container, err.strip()))
        return report

    def source_properties(self, database):
        """(CREATE DATABASE options, [statements]) of the database object in the source (db_properties).

        ``pg_dump --create --schema-only`` with every schema excluded prints the
        database's own entries (and little else); db_properties keeps only those.
        """
        rc, out, err = self.source.exec_tool(["pg_dump", "--create", "--schema-only", "--exclude-schema=*",
                                              "--no-password", "--dbname=" + conninfo_dbname(database)])
        if rc != 0:
            raise UpgradeError("reading the properties of database %s in %s failed: %s"
                               % (database, self.source.container, err.strip()))
        return property_statements(out, database, database)

    def _create(self, database, options, owner):
        if database in self.target.databases():
            return
        rc, out, err = self.target.exec_tool(psql_script_argv("postgres"),
                                             input_bytes=create_database_sql(database, options, owner).encode("utf-8"))
        if rc != 0:
            raise UpgradeError("creating database %s in %s failed: %s" % (database, self.target.container, err.strip()))

    def _apply(self, database, statements):
        """The database's properties, in one transaction, once its data is in (settings of its extensions work)."""
        if statements:
            script = "SET standard_conforming_strings = on;\n" + "\n".join(statements) + "\n"
            rc, out, err = self.target.exec_tool(psql_script_argv("postgres", single_transaction=True),
                                                 input_bytes=script.encode("utf-8"))
            if rc != 0:
                raise UpgradeError("setting the properties of database %s in %s failed: %s"
                                   % (database, self.target.container, err.strip()))
        # A write fence of the source travels with its settings: never into the new cluster.
        WriteFence(self.target).off([database])
        return len(statements)

    def copy_properties(self, database, owner=None):
        """The properties of a database without data to move: created with the source's encoding and locale when
        missing (an empty one), applied to it when present (one another tool restored in place)."""
        options, statements = self.source_properties(database)
        self._create(database, options, owner)
        return {"database": database, "bytes": 0, "seconds": 0, "properties": self._apply(database, statements)}

    def stream(self, database, dump_command, maintenance_work_mem=None):
        """``dump_command`` (a pg_dump to stdout, custom format) in the source piped into pg_restore of
        ``database`` in the target; returns the bytes streamed."""
        src_env = self.source.env(database)
        dst_env = self.target.env(database)
        dst_env["PGOPTIONS"] = session_options(maintenance_work_mem)
        dump_argv = self.source.engine.exec_argv(self.source.container, dump_command, env_names=sorted(src_env))
        restore_argv = self.target.engine.exec_argv(self.target.container, pg_restore_argv(database),
                                                    env_names=sorted(dst_env), interactive=True)
        # Through an OS pipe: the dump is never held in memory or written to disk.
        dump, restore = pipe(dump_argv, restore_argv, first_env=src_env, second_env=dst_env)
        if dump.rc != 0:
            raise UpgradeError("pg_dump of %s in %s failed (exit %s): %s" % (
                database, self.source.container, dump.rc, dump.stderr))
        if restore.rc != 0:
            raise UpgradeError("pg_restore of %s into %s failed (exit %s): %s" % (
                database, self.target.container, restore.rc, restore.stderr[-2000:]))
        return dump.bytes

    def copy_database(self, database, owner=None, maintenance_work_mem=None, schema_only=False):
        """Stream one database; creates it in the target (owned by ``owner``) unless it exists and is empty.

        Its properties (owner, encoding and locale, connection limit, ACL,
        comment, settings, settings of roles in it) are applied after the data.
        """
        options, statements = self.source_properties(database)
        self._create(database, options, owner)
        started = time.time()
        moved = self.stream(database, pipe_dump_argv(database, schema_only), maintenance_work_mem)
        if not schema_only:
            self.target.query("ANALYZE", database=database)
        applied = self._apply(database, statements)
        return {"database": database, "bytes": moved, "seconds": round(time.time() - started, 2),
                "properties": applied}


# ---------------------------------------------------------------------------
# The modules' calls: parameters in, result dict out (errors.run_module reports it).
# ---------------------------------------------------------------------------

def preflight_result(container, target_image, engine="auto", login_user=None, login_password=None, **checks):
    """pg_upgrade_preflight: the plan; ``failed`` (with every problem in the message) when there are problems."""
    engine = ContainerEngine(engine)
    preflight = Preflight(engine, lambda: PgContainer(container, engine.binary, login_user, login_password))
    try:
        result = preflight.run_checks(container, target_image, **checks)
    except NlbError as exc:
        raise UpgradeError("preflight of %s failed: %s" % (container, exc), {"problems": [str(exc)]})
    result["changed"] = False
    if result["problems"]:
        result.update(failed=True, msg="preflight of %s failed: %s" % (container, "; ".join(result["problems"])))
    return result


def fingerprint_result(container, engine="auto", login_user=None, login_password=None, databases=None, kind="auto",
                       compare_to=None, fail_on_difference=True, row_counts=True):
    """pg_fingerprint: the fingerprint and its differences with ``compare_to``; ``failed`` on a difference."""
    try:
        pg = PgContainer(container, engine, login_user, login_password)
        if not databases and compare_to:
            databases = sorted((compare_to.get("databases") or {}).keys())
        taken = fingerprint(pg, databases, kind, (compare_to or {}).get("password_salt"), row_counts)
    except NlbError as exc:
        raise UpgradeError("fingerprint of %s failed: %s" % (container, exc))
    differences = compare_fingerprints(compare_to, taken) if compare_to else []
    result = {"changed": False, "fingerprint": taken, "differences": differences, "matches": not differences}
    if differences and fail_on_difference:
        result.update(failed=True, msg="%s differs from the earlier fingerprint: %s"
                      % (container, first_ten(differences)))
    return result


def pipe_result(container, target_container, databases, engine="auto", login_user=None, login_password=None,
                owners=None, globals=True, maintenance_work_mem=None, properties_only=None, schema_only=False):
    """pg_upgrade_pipe: globals, then each database streamed from ``container`` into ``target_container``
    (only its definitions with ``schema_only``), then only the properties of ``properties_only`` (created
    without data when missing)."""
    source = PgContainer(container, engine, login_user, login_password)
    target = PgContainer(target_container, engine, login_user, login_password)
    mover = Pipe(source, target)
    report = mover.copy_globals() if globals else {}
    moved = [mover.copy_database(db, (owners or {}).get(db), maintenance_work_mem, schema_only) for db in databases]
    moved += [mover.copy_properties(db, (owners or {}).get(db)) for db in properties_only or []]
    return {"changed": True, "databases": moved, "bytes": sum(item["bytes"] for item in moved), "globals": report}


def read_journal(path):
    """The journal an upgrade wrote before it changed anything (None when there is none)."""
    if not path or not os.path.exists(path):
        return None
    try:
        with open(path) as handle:
            return json.load(handle)
    except ValueError as exc:
        raise UpgradeError("the upgrade journal %s is not JSON (%s); remove it once the instance is checked by hand"
                           % (path, exc))


def recovery_result(container, journal=None, rollback=False, engine="auto"):
    """pg_upgrade_recovery: what an interrupted (with ``rollback``: also a finished) upgrade left, and the way back."""
    engine = ContainerEngine(engine)
    found = read_journal(journal)
    aside = dict((name, engine.inspect(name))
                 for name in aside_names(container, engine.names("container", "name=" + container)))
    staging = engine.names("container", "label=%s=%s" % (labels.UPGRADE_STAGING_FOR, container))
    volumes = dict((volume, engine.names("container", "volume=" + volume))
                   for volume in engine.names("volume", "label=%s=%s" % (labels.UPGRADE_INSTANCE, container)))
    plan = recovery_plan(container, engine.inspect(container), dict((k, v) for k, v in aside.items() if v),
                         staging, volumes, found, rollback)
    plan.update(changed=False, container=container, journal=found)
    # A compose-made instance: its project (the labels survive compose re-creating it) and whether the
    # project holds a hand-back of the service (after docker-compose up the container's upgrade labels are gone).
    current = engine.inspect(container)
    plan["compose"] = compose_labels(((current or {}).get("Config") or {}).get("Labels"))
    if plan["compose"] is None:
        plan["compose"] = next((compose_labels((info.get("Config") or {}).get("Labels")) for info in aside.values()
                                if info and compose_labels((info.get("Config") or {}).get("Labels"))), None)
    if plan["compose"] and plan["compose"]["working_dir"]:
        plan["compose"]["handed_back"] = handed_back(plan["compose"]["working_dir"], plan["compose"]["service"])
    if plan["problems"]:
        plan.update(failed=True, msg="cannot bring back the old instance of %s: %s"
                    % (container, "; ".join(plan["problems"])))
    return plan
