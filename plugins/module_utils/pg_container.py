# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A PostgreSQL server inside a container, reached with its own client tools via exec."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

from ansible_collections.nl_biomero.database.plugins.module_utils.engine import ContainerEngine, EngineError, engine_argument_spec
from ansible_collections.nl_biomero.database.plugins.module_utils.pg_tools import connection_env, major_version, tool_major, tool_version
from ansible_collections.nl_biomero.database.plugins.module_utils.errors import NlbError


# User tables: not in system schemas, not owned by an extension.
_USER_TABLES = r"""FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
    AND n.nspname !~ '^pg_(toast|temp_)'
    AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                    AND d.objid = c.oid AND d.deptype = 'e')"""


def table_rows_sql(condition=""):
    """Exact per-table row counts in one round trip (of the user tables matching ``condition``, SQL on ``n``
    and ``c``); the server quotes identifiers."""
    return r"""SELECT coalesce(json_object_agg(t.name, t.n ORDER BY t.name), '{}')::text FROM (
  SELECT n.nspname || '.' || c.relname AS name,
    (xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM %I.%I', n.nspname, c.relname),
                                          false, true, '')))[1]::text::bigint AS n
  """ + _USER_TABLES + condition + ") t"


SQL_TABLE_ROWS = table_rows_sql()
# What changes when a table's rows may have: its file node (TRUNCATE, rewrites) and its cumulative counts of
# inserted and deleted rows. None (always counted again) for a partitioned table or one with children (their
# rows live in other tables) and on servers before 15 (whose statistics collector may drop messages).
SQL_TABLE_SIGNATURES = r"""SELECT coalesce(json_object_agg(n.nspname || '.' || c.relname,
    CASE WHEN c.relkind = 'p' OR c.relhassubclass OR current_setting('server_version_num')::int < 150000 THEN NULL
         ELSE concat_ws(':', pg_relation_filenode(c.oid), pg_stat_get_tuples_inserted(c.oid),
                        pg_stat_get_tuples_deleted(c.oid)) END), '{}')::text
  """ + _USER_TABLES
SQL_SEQUENCES = r"""SELECT coalesce(json_object_agg(schemaname || '.' || sequencename, last_value
  ORDER BY schemaname, sequencename), '{}')::text FROM pg_sequences"""


class PgError(NlbError):
    """A query or tool in the container failed; the message carries its stderr."""


def container_argument_spec(**options):
    """Argument spec of the doc fragment nl_biomero.database.container plus a module's own ``options``."""
    spec = engine_argument_spec()
    spec.update(
        container=dict(type="str", required=True),
        login_user=dict(type="str"),
        login_password=dict(type="str", no_log=True),
    )
    spec.update(options)
    return spec


def container_env(info, name, default=None):
    """Value of an environment variable in the container's configuration."""
    prefix = name + "="
    for item in info.get("Config", {}).get("Env") or []:
        if item.startswith(prefix):
            return item[len(prefix):]
    return default


class PgContainer:
    """The server in ``container``; connects as ``user`` over the container's local socket."""

    def __init__(self, container, engine="auto", user=None, password=None, maintenance_db="postgres"):
        self.engine = ContainerEngine(engine)  # auto: detected there
        self.container = container
        self.info = self.engine.require_running(container)
        self.user = user or container_env(self.info, "POSTGRES_USER", "postgres")
        self.password = password
        self.maintenance_db = maintenance_db

    def env(self, database):
        return connection_env(self.user, database, self.password)

    def exec_tool(self, command, database=None, input_bytes=None, timeout=None):
        """Run a client tool with the connection environment; returns (rc, out, err)."""
        return self.engine.exec_run(self.container, command, env=self.env(database or self.maintenance_db),
                                    input_bytes=input_bytes, timeout=timeout)

    def query(self, sql, database=None):
        """Rows of a query as lists of strings (psql unaligned, tab separated, NULL as '')."""
        command = ["psql", "-X", "--no-password", "-v", "ON_ERROR_STOP=1", "-A", "-t", "-F", "\t", "-f", "-"]
        rc, out, err = self.exec_tool(command, database=database, input_bytes=sql.encode("utf-8"))
        if rc != 0:
            raise PgError("query on %s failed: %s" % (self.container, err.strip() or out.strip()))
        return [line.split("\t") for line in out.splitlines() if line != ""]

    def scalar(self, sql, database=None):
        rows = self.query(sql, database=database)
        return rows[0][0] if rows else None

    def server_version_num(self):
        return int(self.scalar("SHOW server_version_num"))

    def server_major(self):
        return major_version(self.server_version_num())

    def server_version(self):
        return self.scalar("SHOW server_version").split()[0]

    def tool_version(self, tool):
        """(major, version) of a client tool in the container, e.g. ('pg_dump') -> (17, '17.6')."""
        rc, out, err = self.engine.exec_run(self.container, [tool, "--version"])
        if rc != 0:
            raise PgError("%s is not usable in container %s: %s" % (tool, self.container, err.strip() or out.strip()))
        return tool_major(out), tool_version(out)

    def databases(self):
        return [row[0] for row in self.query("SELECT datname FROM pg_database WHERE datallowconn ORDER BY 1")]

    def database_exists(self, name):
        return name in self.databases()

    def table_row_counts(self, database, tables=None):
        """{'schema.table': exact row count} of the user tables of ``database`` (of those named in ``tables``)."""
        if tables is None:
            return json.loads(self.scalar(SQL_TABLE_ROWS, database=database))
        if not tables:
            return {}
        names = ", ".join("'%s'" % name.replace("'", "''") for name in tables)
        return json.loads(self.scalar(table_rows_sql(" AND n.nspname || '.' || c.relname IN (%s)" % names),
                                      database=database))


__all__ = ["PgContainer", "PgError", "EngineError", "container_argument_spec", "container_env"]
