# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""BIOMERO.importer orders in the table ``imports``: selection, inspection and retry.

The table is an append-only event log: every stage change of an order is a
new row with the order's ``uuid``; the state of an order is the stage of its
latest row (highest ``id``). The importer polls for
``stage = 'Import Pending' AND id > last_max_id`` and skips uuids it already
processed, so a retry that works while the importer runs is a NEW
``Import Pending`` row with a fresh uuid that copies the order (strategy
``new_order``). See docs of the modules biomero_import_retry/_info.

Decisions (kept here, next to the code that implements them):

- The order is copied from its first ``Import Pending`` row (the order as the
  front end created it; failure rows carry the error text in ``description``),
  or from its first row when it has none. Every column except ``id``,
  ``uuid``, ``stage``, ``timestamp`` and generated/identity columns is copied,
  so columns of newer importer versions (``import_options``) travel along.
- Lineage: where ``description`` exists the new row's description starts with
  ``[retry of <old uuid>]`` followed by the original description.
- "Already retried" (idempotence) does not depend on that marker, so it works
  without ``description`` too: an order is retried when an ``Import Pending``
  row with ANOTHER uuid, a higher id than the order's latest row, and the same
  order columns (all copied columns except ``description``, compared by a
  fingerprint) exists. Whatever became of that retry, the old order is not
  retried again: if the retry failed, it is itself a failed order and is the
  one to retry, so a chain never forks into two imports of the same files.
  Limit: an identical order submitted again by hand after the failure counts
  as its retry (which is what it is).
- Concurrency: the writing transaction takes ``LOCK TABLE imports IN SHARE ROW
  EXCLUSIVE MODE`` (reads go on; other writers wait for the sub-second
  transaction), then selects and writes in READ COMMITTED, so a second retry
  running at the same moment waits and then sees the first one's rows. The
  lock also makes row ids commit in order, so the importer's ``id >
  last_max_id`` watermark cannot pass over the retry rows.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json
import re
import uuid as uuidlib

from ansible_collections.nl_biomero.database.plugins.module_utils.errors import NlbError

STAGE_PENDING = "Import Pending"
STAGE_STARTED = "Import Started"
STAGE_PREPROCESSING = "Import Preprocessing"
STAGE_COMPLETED = "Import Completed"
STAGE_FAILED = "Import Failed"
STAGES = (STAGE_PENDING, STAGE_STARTED, STAGE_PREPROCESSING, STAGE_COMPLETED, STAGE_FAILED)

TABLE = "imports"
REQUIRED_COLUMNS = ("id", "group_name", "user_name", "destination_id", "destination_type",
                    "stage", "uuid", "timestamp", "files")
BOOKKEEPING_COLUMNS = ("id", "uuid", "stage", "timestamp")
LINEAGE_COLUMN = "description"

STRATEGIES = ("new_order", "same_uuid", "reset_stage")
DEFAULT_LIMIT = 100
LOCK_MODE = "SHARE ROW EXCLUSIVE"

_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_RELATIVE_RE = re.compile(r"^(\d+)\s*(s|m|h|d|w)$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_LINEAGE_RE = re.compile(r"^\[retry of ([0-9a-fA-F-]{36})\]")

WARN_SAME_UUID = (
    "strategy same_uuid: the running BIOMERO.importer skips uuids it has already processed, and an importer "
    "started after this insert starts past these rows; only an importer restarted since the failure "
    "(and not restarted again) picks them up. Prefer strategy new_order.")
WARN_RESET_STAGE = (
    "strategy reset_stage: the platform's documented UPDATE rewrote the stage of every row of these orders "
    "(their history is lost), and current BIOMERO.importer versions ignore it: the running importer skips "
    "processed uuids and only looks at ids above its watermark. Kept for old importers; prefer new_order.")
NOTE_RUNNING = (
    "Retries are picked up by a RUNNING importer on its next poll (every 5 s). While the importer is stopped "
    "a retry cannot succeed: its start-up marks pending orders without a result as Import Failed.")


class ImporterError(NlbError):
    """Bad input or a database that is not usable for the request; nothing was written."""


# ---------------------------------------------------------------------------
# Input validation
# ---------------------------------------------------------------------------

def validate_uuids(values, name="uuids"):
    """Stripped, de-duplicated uuids (order kept); ImporterError naming malformed ones."""
    result, bad = [], []
    for value in values or []:
        text = ("%s" % value).strip()
        if not _UUID_RE.match(text):
            bad.append(value)
        elif text not in result:
            result.append(text)
    if bad:
        raise ImporterError("%s: malformed uuid %s; expected the form 8-4-4-4-12 hex digits, "
                            "e.g. 550e8400-e29b-41d4-a716-446655440000"
                            % (name, ", ".join("'%s'" % b for b in bad)))
    return result


def validate_stages(values, name="stages"):
    """Known stage names (order kept); ImporterError naming unknown ones and listing the known ones."""
    result, bad = [], []
    for value in values or []:
        if value not in STAGES:
            bad.append(value)
        elif value not in result:
            result.append(value)
    if bad:
        raise ImporterError("%s: unknown stage %s; known stages: %s"
                            % (name, ", ".join("'%s'" % b for b in bad), ", ".join(STAGES)))
    return result


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


def parse_time(value, name="since", now=None):
    """An aware datetime from an ISO 8601 timestamp (naive = UTC), ``now`` or a relative age.

    Relative ages count back from now: ``90s``, ``30m``, ``24h``, ``7d``, ``2w``.
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime.datetime):
        parsed = value
    else:
        text = ("%s" % value).strip()
        now = now or utcnow()
        match = _RELATIVE_RE.match(text.lower())
        if text.lower() == "now":
            return now
        if match:
            return now - datetime.timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])
        iso = text[:-1] + "+00:00" if text[-1:] in ("Z", "z") else text
        try:
            parsed = datetime.datetime.fromisoformat(iso)
        except ValueError:
            raise ImporterError("%s: '%s' is neither a timestamp nor a relative age; use e.g. 2025-06-01, "
                                "2025-06-01T12:00:00+02:00 (no zone = UTC), or 90s, 30m, 24h, 7d, 2w" % (name, value))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return parsed


class Selection:
    """Which orders a request is about. Filters apply to each order's latest row."""

    def __init__(self, uuids=None, stages=None, group_name=None, user_name=None, since=None, until=None):
        self.uuids = uuids or []
        self.stages = stages or []
        self.group_name = group_name or None
        self.user_name = user_name or None
        self.since = since
        self.until = until

    def filters(self):
        """The filters in use, for results (timestamps as ISO text)."""
        out = {}
        for key in ("uuids", "stages", "group_name", "user_name"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        for key in ("since", "until"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key).isoformat()
        return out


def selection_argument_spec(default_stages=None):
    """Argument spec of the order filters shared by biomero_import_info and biomero_import_retry."""
    return dict(
        uuids=dict(type="list", elements="str"),
        stages=dict(type="list", elements="str", default=default_stages),
        group_name=dict(type="str"),
        user_name=dict(type="str"),
        since=dict(type="str"),
        until=dict(type="str"),
        limit=dict(type="int", default=DEFAULT_LIMIT),
    )


def selection_from_params(params, default_stages=None, now=None):
    """Validated Selection from module parameters (uuids, stages, group_name, user_name, since, until)."""
    now = now or utcnow()
    since = parse_time(params.get("since"), "since", now)
    until = parse_time(params.get("until"), "until", now)
    if since is not None and until is not None and since >= until:
        raise ImporterError("since (%s) must be before until (%s)" % (since.isoformat(), until.isoformat()))
    stages = params.get("stages")
    stages = validate_stages(stages) if stages else list(default_stages or [])
    return Selection(uuids=validate_uuids(params.get("uuids")), stages=stages,
                     group_name=params.get("group_name"), user_name=params.get("user_name"),
                     since=since, until=until)


def validate_retry_request(params):
    """Check the retry-specific parameters; returns (strategy, limit)."""
    strategy = params.get("strategy") or "new_order"
    if strategy not in STRATEGIES:
        raise ImporterError("strategy '%s' is not supported; use one of: %s" % (strategy, ", ".join(STRATEGIES)))
    if params.get("uuids") and params.get("all_failed"):
        raise ImporterError("uuids and all_failed are mutually exclusive: give a list of orders, or all_failed: true "
                            "with optional filters")
    if not params.get("uuids") and not params.get("all_failed"):
        raise ImporterError("refusing to retry without a selection: give uuids, or all_failed: true "
                            "(optionally narrowed by group_name, user_name, since, until)")
    limit = params.get("limit")
    limit = DEFAULT_LIMIT if limit is None else limit
    if limit < 1:
        raise ImporterError("limit must be at least 1, got %s" % limit)
    return strategy, limit


# ---------------------------------------------------------------------------
# Table inspection
# ---------------------------------------------------------------------------

class TableInfo:
    """The imports table of this database: its columns, detected at run time."""

    def __init__(self, schema, name, columns, not_insertable=()):
        self.schema = schema
        self.name = name
        self.columns = list(columns)
        self.not_insertable = set(not_insertable)

    @property
    def identifier(self):
        return quote_ident(self.schema, self.name)

    @property
    def qualified_name(self):
        return "%s.%s" % (self.schema, self.name)

    def has(self, column):
        return column in self.columns

    @property
    def has_lineage(self):
        return self.has(LINEAGE_COLUMN)

    def copy_columns(self):
        """Columns a retry row copies from the order."""
        return [c for c in self.columns if c not in BOOKKEEPING_COLUMNS and c not in self.not_insertable]

    def compare_columns(self):
        """Columns that say two rows are the same order (``description`` carries lineage, not the order)."""
        return [c for c in self.copy_columns() if c != LINEAGE_COLUMN]

    def missing_required(self):
        return [c for c in REQUIRED_COLUMNS if c not in self.columns]


class _Runner:
    """Executes statements on one cursor and records their text (placeholders, never values).

    Works with the connections of psycopg2 and psycopg 3 alike (community.postgresql
    picks the driver); rows are read as tuples.
    """

    def __init__(self, conn):
        self.conn = conn
        self.cursor = conn.cursor()
        self.queries = []

    def record(self, query):
        self.queries.append(" ".join(query.split()))

    def execute(self, query, params=None):
        self.record(query)
        self.cursor.execute(query, params)
        return self.cursor

    def fetchall(self, query, params=None):
        return self.execute(query, params).fetchall()

    def dicts(self, query, params=None):
        cursor = self.execute(query, params)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]


def inspect_table(runner, table=TABLE):
    """TableInfo for ``table`` (resolved through search_path); ImporterError when missing or not an imports table."""
    row = runner.fetchall(
        "SELECT n.nspname, c.relname, c.oid, current_setting('server_version_num')::int "
        "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.oid = to_regclass(%(table)s)", {"table": table})
    if not row:
        database = runner.fetchall("SELECT current_database(), current_setting('search_path')")[0]
        raise ImporterError("table '%s' does not exist in database '%s' (search_path: %s): this is not a "
                            "BIOMERO.importer database, or the importer has not started on it yet"
                            % (table, database[0], database[1]))
    schema, name, oid, version = row[0]
    flags = []
    if version >= 100000:
        flags.append("a.attidentity = 'a'")
    if version >= 120000:
        flags.append("a.attgenerated <> ''")
    not_insertable = " OR ".join(flags) or "false"
    columns = runner.fetchall(
        "SELECT a.attname, (" + not_insertable + ") FROM pg_catalog.pg_attribute a "
        "WHERE a.attrelid = %(oid)s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum", {"oid": oid})
    info = TableInfo(schema, name, [c[0] for c in columns], [c[0] for c in columns if c[1]])
    missing = info.missing_required()
    if missing:
        raise ImporterError("table %s lacks the required column(s) %s (it has: %s): not a BIOMERO.importer "
                            "imports table" % (info.qualified_name, ", ".join(missing), ", ".join(info.columns)))
    return info


# ---------------------------------------------------------------------------
# SQL building (values always parameterised; identifiers quoted by quote_ident)
# ---------------------------------------------------------------------------

def quote_ident(*parts):
    """A (schema-qualified) SQL identifier: each part in double quotes, inner quotes doubled."""
    return ".".join('"%s"' % part.replace('"', '""') for part in parts)


def _latest_cte(table, selection):
    """CTE ``latest``: each order's latest row (highest id).

    Named orders: DISTINCT ON over the uuid index. All orders: max(id) per
    uuid joined back on the primary key (hash aggregate + hash join, no sort
    of the whole table).
    """
    columns = ('i.id, i.uuid, i.stage, i."timestamp" AS ts, i.group_name, i.user_name, i.destination_type, '
               'i.destination_id')
    if selection.uuids:
        return ("latest AS (SELECT DISTINCT ON (i.uuid) {columns} FROM {t} AS i "
                "WHERE i.uuid = ANY(%(uuids)s) ORDER BY i.uuid, i.id DESC)").format(columns=columns, t=table.identifier)
    return ("latest AS (SELECT {columns} FROM {t} AS i "
            "JOIN (SELECT uuid, max(id) AS id FROM {t} GROUP BY uuid) AS m ON m.id = i.id)"
            ).format(columns=columns, t=table.identifier)


def _filter_sql(selection, alias="l", with_stages=True):
    """WHERE clause and parameters for the selection's filters on the latest rows."""
    conditions, params = [], {}

    def col(name):
        return quote_ident(alias, name)

    if selection.uuids:
        params["uuids"] = list(selection.uuids)
    if with_stages and selection.stages:
        conditions.append("%s = ANY(%%(stages)s)" % col("stage"))
        params["stages"] = list(selection.stages)
    if selection.group_name:
        conditions.append("%s = %%(group_name)s" % col("group_name"))
        params["group_name"] = selection.group_name
    if selection.user_name:
        conditions.append("%s = %%(user_name)s" % col("user_name"))
        params["user_name"] = selection.user_name
    if selection.since is not None:
        conditions.append("%s >= %%(since)s" % col("ts"))
        params["since"] = selection.since
    if selection.until is not None:
        conditions.append("%s < %%(until)s" % col("ts"))
        params["until"] = selection.until
    if not conditions:
        return "", params
    return " WHERE " + " AND ".join(conditions), params


def info_queries(table, selection, limit):
    """(orders query, counts query, params) for biomero_import_info."""
    where, params = _filter_sql(selection)
    params["limit"] = limit
    head = "WITH {latest}, matched AS (SELECT l.* FROM latest AS l{where}) ".format(
        latest=_latest_cte(table, selection), where=where)
    description = (", z.description AS last_description, f.description AS first_description" if table.has_lineage
                   else ", NULL AS last_description, NULL AS first_description")
    orders = head + (
        "SELECT m.uuid, m.stage, m.group_name, m.user_name, m.destination_type, m.destination_id, m.id AS last_id, "
        "a.row_count, a.first_at, a.last_at, f.files{description} "
        "FROM (SELECT * FROM matched ORDER BY id DESC LIMIT %(limit)s) AS m "
        'CROSS JOIN LATERAL (SELECT count(*) AS row_count, min(r."timestamp") AS first_at, '
        'max(r."timestamp") AS last_at, '
        "min(r.id) AS first_id FROM {t} AS r WHERE r.uuid = m.uuid) AS a "
        "JOIN {t} AS f ON f.id = a.first_id JOIN {t} AS z ON z.id = m.id "
        "ORDER BY m.id DESC"
    ).format(t=table.identifier, description=description)
    counts = head + "SELECT stage, count(*) FROM matched GROUP BY stage ORDER BY stage"
    return orders, counts, params


def _fingerprint(alias, columns):
    """md5 of the order columns of a row (ROW()::text keeps NULL and '' apart)."""
    return "md5(ROW(%s)::text)" % ", ".join(quote_ident(alias, c) for c in columns)


def candidates_query(table, selection, strategy):
    """Orders matching the selection with their source row and, for new_order, an existing retry.

    With explicit uuids the filters are NOT applied in SQL: the caller reports
    why a named order is skipped. Every join is an equality join meant to be
    hashed (see _PLANNER_SETTINGS).
    """
    if selection.uuids:
        where, params = "", {"uuids": list(selection.uuids)}
        source_filter = "i.uuid = ANY(%(uuids)s)"
    else:
        where, params = _filter_sql(selection)
        source_filter = "i.uuid IN (SELECT uuid FROM picked)"
    params["pending"] = STAGE_PENDING
    fingerprint = retried_cte = retried_join = ""
    retried_col = "NULL::text"
    if strategy == "new_order":
        columns = table.compare_columns()
        fingerprint = ", %s AS fingerprint" % _fingerprint("i", columns)
        # Later Import Pending rows by fingerprint: the order's own rows all have ids <= its latest id,
        # so "id > latest id" also means "another uuid".
        retried_cte = (
            ", later AS (SELECT r.id, r.uuid, {rfp} AS fingerprint FROM {t} AS r "
            "WHERE r.stage = %(pending)s AND r.id > (SELECT min(id) FROM picked)), "
            "retried AS (SELECT DISTINCT ON (p.uuid) p.uuid, r.uuid AS retried_as "
            "FROM picked AS p JOIN source AS s ON s.uuid = p.uuid JOIN later AS r ON r.fingerprint = s.fingerprint "
            "WHERE r.id > p.id ORDER BY p.uuid, r.id)"
        ).format(t=table.identifier, rfp=_fingerprint("r", columns))
        retried_col = "rt.retried_as"
        retried_join = " LEFT JOIN retried AS rt ON rt.uuid = p.uuid"
    query = (
        "WITH {latest}, picked AS (SELECT l.* FROM latest AS l{where}), "
        "source AS (SELECT DISTINCT ON (i.uuid) i.uuid, i.id AS source_id, i.files{fingerprint} "
        "FROM {t} AS i WHERE {source_filter} "
        "ORDER BY i.uuid, (i.stage = %(pending)s) DESC, i.id){retried_cte} "
        "SELECT p.uuid, p.id AS last_id, p.stage, p.ts AS last_at, p.group_name, p.user_name, "
        "p.destination_type, p.destination_id, s.source_id, s.files, {retried_col} AS retried_as "
        "FROM picked AS p JOIN source AS s ON s.uuid = p.uuid{retried_join} ORDER BY p.id"
    ).format(latest=_latest_cte(table, selection), where=where, t=table.identifier, fingerprint=fingerprint,
             source_filter=source_filter, retried_cte=retried_cte, retried_col=retried_col,
             retried_join=retried_join)
    return query, params


# The selection is set-based over many rows. Without statistics (a freshly restored or just-filled table)
# the planner estimates one row per CTE and picks nested loops that are quadratic in the number of orders
# (measured: 18 s for 200 orders). Hash joins are right for every join of that statement.
_PLANNER_SETTINGS = ("SET LOCAL enable_nestloop = off", "SET LOCAL enable_nestloop TO DEFAULT")


def insert_query(table):
    """INSERT of one Import Pending row per (source row, new uuid, lineage marker), set-based."""
    columns = table.copy_columns()
    exprs = []
    for column in columns:
        if column == LINEAGE_COLUMN:
            exprs.append("concat_ws(' ', v.marker, NULLIF(s.%s, ''))" % quote_ident(column))
        else:
            exprs.append("s.%s" % quote_ident(column))
    target = ", ".join(quote_ident(c) for c in columns + ["uuid", "stage", "timestamp"])
    return (
        "INSERT INTO {t} ({target}) SELECT {exprs}, v.new_uuid, %(pending)s, now() "
        "FROM unnest(%(source_ids)s::bigint[], %(new_uuids)s::text[], %(markers)s::text[]) "
        "WITH ORDINALITY AS v(source_id, new_uuid, marker, ord) "
        "JOIN {t} AS s ON s.id = v.source_id ORDER BY v.ord RETURNING id, uuid"
    ).format(t=table.identifier, target=target, exprs=", ".join(exprs))


def reset_query(table):
    """The platform's documented UPDATE (every row of the orders back to Import Pending)."""
    return (
        "WITH old AS (SELECT id, stage FROM {t} WHERE uuid = ANY(%(uuids)s) AND stage IS DISTINCT FROM %(pending)s "
        "ORDER BY id FOR UPDATE) "
        "UPDATE {t} AS u SET stage = %(pending)s FROM old WHERE u.id = old.id RETURNING u.id, u.uuid, old.stage"
    ).format(t=table.identifier)


def reset_preview_query(table):
    return ("SELECT id, uuid, stage FROM {t} WHERE uuid = ANY(%(uuids)s) AND stage IS DISTINCT FROM %(pending)s "
            "ORDER BY id").format(t=table.identifier)


def lock_query(table):
    return "LOCK TABLE %s IN %s MODE" % (table.identifier, LOCK_MODE)


# ---------------------------------------------------------------------------
# Pure helpers
# ---------------------------------------------------------------------------

def lineage_marker(old_uuid):
    return "[retry of %s]" % old_uuid


def retry_of(description):
    """The old uuid recorded in a retry row's description, or None."""
    match = _LINEAGE_RE.match(description or "")
    return match.group(1) if match else None


def parse_files(text):
    """The order's files as a list (the column holds a JSON list; anything else is returned as one item)."""
    if text is None:
        return []
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return [text]
    if isinstance(value, list):
        return value
    return [value]


def _iso(value):
    return value.isoformat() if value is not None else None


def selection_mismatch(candidate, selection):
    """Why a named order does not match the selection's stages/filters, or None."""
    if selection.stages and candidate["stage"] not in selection.stages:
        return "latest stage is '%s', not one of: %s" % (candidate["stage"], ", ".join(selection.stages))
    if selection.group_name and candidate["group_name"] != selection.group_name:
        return "group is '%s', not '%s'" % (candidate["group_name"], selection.group_name)
    if selection.user_name and candidate["user_name"] != selection.user_name:
        return "user is '%s', not '%s'" % (candidate["user_name"], selection.user_name)
    at = candidate.get("last_at")
    if (selection.since is not None or selection.until is not None) and at is None:
        return "latest row has no timestamp"
    if selection.since is not None and at < selection.since:
        return "latest row (%s) is before since (%s)" % (at.isoformat(), selection.since.isoformat())
    if selection.until is not None and at >= selection.until:
        return "latest row (%s) is not before until (%s)" % (at.isoformat(), selection.until.isoformat())
    return None


def classify(candidates, selection, strategy):
    """Split candidates into (eligible, skipped); skipped items carry a reason."""
    eligible, skipped = [], []
    for candidate in candidates:
        reason = selection_mismatch(candidate, selection) if selection.uuids else None
        if reason is None and strategy == "new_order" and candidate.get("retried_as"):
            reason = "already retried as %s" % candidate["retried_as"]
        if reason is None and strategy != "new_order" and candidate["stage"] == STAGE_PENDING:
            reason = "already Import Pending"
        if reason:
            skipped.append({"uuid": candidate["uuid"], "stage": candidate["stage"], "reason": reason,
                            "retried_as": candidate.get("retried_as")})
        else:
            eligible.append(candidate)
    return eligible, skipped


def _order_entry(candidate, new_uuid=None, new_id=None):
    files = parse_files(candidate.get("files"))
    return {
        "uuid": candidate["uuid"],
        "new_uuid": new_uuid,
        "new_id": new_id,
        "stage": candidate["stage"],
        "last_at": _iso(candidate.get("last_at")),
        "group_name": candidate["group_name"],
        "user_name": candidate["user_name"],
        "destination_type": candidate["destination_type"],
        "destination_id": candidate["destination_id"],
        "files": files,
        "file_count": len(files),
    }


# ---------------------------------------------------------------------------
# Operations
# ---------------------------------------------------------------------------

def _prepare(runner, readonly):
    """Open the transaction READ COMMITTED explicitly: after the lock each statement must see what others
    committed. SQL rather than a driver call, so psycopg2 and psycopg 3 connections behave alike."""
    if runner.conn.autocommit:
        runner.conn.autocommit = False
    runner.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED, %s" % ("READ ONLY" if readonly else "READ WRITE"))


def _sqlstate(exc):
    """SQLSTATE of a database error (psycopg2: pgcode; psycopg 3: sqlstate)."""
    return getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)


def _rollback_quietly(conn):
    """Roll back; a broken connection must not hide the error that broke it."""
    try:
        conn.rollback()
    except Exception:  # pylint: disable=broad-except
        pass


def list_orders(conn, selection, limit):
    """Read-only view of orders (biomero_import_info). Returns a result dict."""
    runner = _Runner(conn)
    try:
        _prepare(runner, readonly=True)
        table = inspect_table(runner)
        orders_sql, counts_sql, params = info_queries(table, selection, limit)
        rows = runner.dicts(orders_sql, params)
        counts = dict((stage, count) for stage, count in runner.fetchall(counts_sql, params))
    finally:
        _rollback_quietly(conn)
    orders = []
    for row in rows:
        files = parse_files(row["files"])
        orders.append({
            "uuid": row["uuid"],
            "stage": row["stage"],
            "group_name": row["group_name"],
            "user_name": row["user_name"],
            "destination_type": row["destination_type"],
            "destination_id": row["destination_id"],
            "file_count": len(files),
            "files": files,
            "first_at": _iso(row["first_at"]),
            "last_at": _iso(row["last_at"]),
            "rows": row["row_count"],
            "description": row["last_description"],
            "retry_of": retry_of(row["first_description"]),
        })
    total = sum(counts.values())
    return {
        "orders": orders,
        "counts": counts,
        "total": total,
        "truncated": total > len(orders),
        "table": table.qualified_name,
        "columns": table.columns,
        "queries": runner.queries,
    }


def retry_orders(conn, selection, strategy="new_order", limit=DEFAULT_LIMIT, check_mode=False, lock_timeout=30,
                 new_uuid=None):
    """Retry the selected orders in ONE transaction; nothing is written on any error or in check mode.

    Returns a result dict: changed, retried, not_retried, warnings, diff, queries.
    ``new_uuid`` makes fresh uuids (tests pass a deterministic one).
    """
    if strategy not in STRATEGIES:
        raise ImporterError("strategy '%s' is not supported; use one of: %s" % (strategy, ", ".join(STRATEGIES)))
    new_uuid = new_uuid or (lambda: str(uuidlib.uuid4()))
    runner = _Runner(conn)
    try:
        _prepare(runner, readonly=check_mode)
        table = inspect_table(runner)
        if not check_mode:
            runner.execute("SELECT set_config('lock_timeout', %(lock_timeout)s, true)",
                           {"lock_timeout": "%ds" % int(lock_timeout)})
            try:
                runner.execute(lock_query(table))
            except Exception as exc:
                if _sqlstate(exc) == "55P03":  # lock_not_available
                    raise ImporterError("could not lock %s within lock_timeout=%ss: another retry or a long "
                                        "transaction holds it; nothing was written" % (table.qualified_name, lock_timeout))
                raise
        query, params = candidates_query(table, selection, strategy)
        runner.execute(_PLANNER_SETTINGS[0])
        candidates = runner.dicts(query, params)
        runner.execute(_PLANNER_SETTINGS[1])
        if selection.uuids:
            found = set(c["uuid"] for c in candidates)
            unknown = [u for u in selection.uuids if u not in found]
            if unknown:
                raise ImporterError("order(s) not found in %s: %s; nothing was written"
                                    % (table.qualified_name, ", ".join(unknown)))
        eligible, skipped = classify(candidates, selection, strategy)
        if len(eligible) > limit:
            raise ImporterError("%d orders are eligible for retry, more than limit=%d: narrow the selection or "
                                "raise limit; nothing was written" % (len(eligible), limit))
        if strategy == "reset_stage":
            result = _reset(runner, table, eligible, check_mode)
        else:
            result = _append(runner, table, eligible, strategy, check_mode, new_uuid)
        if check_mode:
            conn.rollback()
        else:
            conn.commit()
    except BaseException:
        _rollback_quietly(conn)
        raise
    warnings = []
    if strategy == "same_uuid":
        warnings.append(WARN_SAME_UUID)
    elif strategy == "reset_stage":
        warnings.append(WARN_RESET_STAGE)
    result.update({
        "changed": bool(eligible),
        "strategy": strategy,
        "not_retried": skipped,
        "selected": len(candidates),
        "table": table.qualified_name,
        "lineage_column": LINEAGE_COLUMN if table.has_lineage else None,
        "warnings": warnings,
        "queries": runner.queries,
        "msg": "%d order(s) %s, %d skipped. %s" % (
            len(eligible), "would be retried" if check_mode else "retried", len(skipped), NOTE_RUNNING),
    })
    return result


def _append(runner, table, eligible, strategy, check_mode, new_uuid):
    """Strategies new_order / same_uuid: one new Import Pending row per order."""
    planned = []
    for candidate in eligible:
        fresh = new_uuid() if strategy == "new_order" else candidate["uuid"]
        planned.append((candidate, fresh))
    query = insert_query(table)
    ids = {}
    if planned:
        params = {
            "pending": STAGE_PENDING,
            "source_ids": [item[0]["source_id"] for item in planned],
            "new_uuids": [item[1] for item in planned],
            "markers": [lineage_marker(item[0]["uuid"]) for item in planned],
        }
        if check_mode:
            runner.record(query)
        else:
            ids = dict((row_uuid, row_id) for row_id, row_uuid in runner.fetchall(query, params))
    retried, after = [], []
    for candidate, fresh in planned:
        shown_uuid = fresh if (not check_mode or strategy == "same_uuid") else None
        entry = _order_entry(candidate, shown_uuid, ids.get(fresh))
        retried.append(entry)
        after.append({
            "uuid": shown_uuid or "(fresh uuid)",
            "stage": STAGE_PENDING,
            "timestamp": "now()",
            "retry_of": candidate["uuid"],
            "copied_from_row": candidate["source_id"],
            "group_name": entry["group_name"],
            "user_name": entry["user_name"],
            "destination": "%s:%s" % (entry["destination_type"], entry["destination_id"]),
            "files": entry["files"],
        })
    return {
        "retried": retried,
        "diff": {
            "before": {"appended_rows": []},
            "after": {"appended_rows": after},
            "before_header": "%s (history rows are never changed)" % table.qualified_name,
            "after_header": table.qualified_name,
        },
    }


def _reset(runner, table, eligible, check_mode):
    """Strategy reset_stage: the documented UPDATE of every row of the orders."""
    uuids = [c["uuid"] for c in eligible]
    params = {"uuids": uuids, "pending": STAGE_PENDING}
    rows = []
    if uuids:
        if check_mode:
            rows = [(r[0], r[1], r[2]) for r in runner.fetchall(reset_preview_query(table), params)]
            runner.record(reset_query(table))
        else:
            rows = sorted(runner.fetchall(reset_query(table), params))
    before = [{"id": r[0], "uuid": r[1], "stage": r[2]} for r in rows]
    after = [{"id": r[0], "uuid": r[1], "stage": STAGE_PENDING} for r in rows]
    return {
        "retried": [_order_entry(c, c["uuid"], None) for c in eligible],
        "updated_rows": len(rows),
        "diff": {"before": {"rows": before}, "after": {"rows": after},
                 "before_header": table.qualified_name, "after_header": table.qualified_name},
    }
