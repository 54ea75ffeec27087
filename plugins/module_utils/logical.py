# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Strategy ``logical`` of the upgrade: the new cluster catches up with the old one through logical replication.

One publication ``nlb_upgrade`` (FOR ALL TABLES) per database on the old
server, one subscription ``nlb_upgrade_<db>`` per database in the staging
cluster (its slot on the old server has the same name). The old server keeps
serving while the rows are copied; the switchover (clients stopped, write
fence up) only waits for the last changes, sets the sequences, copies the large
objects (logical replication carries neither) and drops everything the
replication made. :meth:`Logical.cleanup` is the one way those objects go, on
success and on every failure path (also after a killed run: the recovery calls
it with the staging cluster already gone and drops the slots directly).

Pure rules first (unit tested), then the host actions.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import binascii
import json
import os
import re
import threading
import time

from ansible_collections.nl_biomero.database.plugins.module_utils.errors import NlbError
from ansible_collections.nl_biomero.database.plugins.module_utils.pg_archive import conninfo_dbname
from ansible_collections.nl_biomero.database.plugins.module_utils.pg_container import PgContainer, container_env
from ansible_collections.nl_biomero.database.plugins.module_utils.upgrade_plan import compare_fingerprints, first_ten
from ansible_collections.nl_biomero.database.plugins.module_utils.write_fence import WriteFence, quote_ident, quote_literal

PUBLICATION = "nlb_upgrade"
PREFIX = "nlb_upgrade_"
# Schemas that are never the user's.
_USER_SCHEMA = "%s.nspname NOT IN ('pg_catalog', 'information_schema') AND %s.nspname !~ '^pg_(toast|temp_)'"


class LogicalError(NlbError):
    """The logical copy cannot go on (message names the database, table, object or setting)."""


# ---------------------------------------------------------------------------
# Pure rules
# ---------------------------------------------------------------------------

def subscription_names(databases):
    """{database: subscription and slot name}: ``nlb_upgrade_`` and the database name in lower case letters,
    digits and '_' (what a slot name allows), made unique with a number; at most 63 characters."""
    names = {}
    taken = set()
    for database in databases:
        base = PREFIX + (re.sub(r"[^a-z0-9_]", "_", database.lower())[:40] or "db")
        name, number = base, 1
        while name in taken:
            number += 1
            name = "%s_%d" % (base, number)
        taken.add(name)
        names[database] = name
    return names


def _conninfo_value(value):
    return "'%s'" % str(value).replace("\\", "\\\\").replace("'", "\\'")


def conninfo(host, port, database, user, password=None):
    """The libpq connection string of a subscription (every value quoted)."""
    items = [("host", host), ("port", port), ("dbname", database), ("user", user),
             ("application_name", "nlb_upgrade")]
    if password:
        items.append(("password", password))
    return " ".join("%s=%s" % (key, _conninfo_value(value)) for key, value in items)


def lsn_int(text):
    """'16/B374D848' -> an integer that orders like the LSN."""
    high, low = text.strip().split("/")
    return (int(high, 16) << 32) + int(low, 16)


def catalog_changes(before, after):
    """Objects whose definition differs between two catalog readings ({database: {object: digest}}):
    ['omero: changed table public.image', ...]."""
    changes = []
    for database in sorted(set(before) | set(after)):
        old, new = before.get(database) or {}, after.get(database) or {}
        for name in sorted(set(old) | set(new)):
            if name not in new:
                changes.append("%s: dropped %s" % (database, name))
            elif name not in old:
                changes.append("%s: new %s" % (database, name))
            elif old[name] != new[name]:
                changes.append("%s: changed %s" % (database, name))
    return changes


def setval_script(rows):
    """SQL setting each sequence as it was: rows are (qualified name, value, is_called)."""
    lines = ["SELECT setval(%s::regclass, %d, %s);\n" % (quote_literal(name), int(value), "true" if called else "false")
             for name, value, called in rows]
    return "".join(lines)


def large_objects_dump_argv(database):
    """pg_dump of the large objects of ``database`` only (their owners, ACLs and comments too).

    pg_catalog both included and excluded leaves no schema to dump (a pattern matching no schema is an error),
    and ``-b`` (``--large-objects``, 15 calls it ``--blobs``) brings the large objects back.
    """
    return ["pg_dump", "--format=custom", "--compress=0", "--no-password", "-b", "--schema=pg_catalog",
            "--exclude-schema=pg_catalog", "--dbname=" + conninfo_dbname(database)]


def scrub(text, secret):
    """``text`` without ``secret`` (an error of the server may quote the statement)."""
    return text.replace(secret, "********") if secret else text


# Definitions that logical replication needs to stay the same: relations with their columns, constraints,
# indexes, enum and domain types. One digest per object; names are quoted by the server.
SQL_CATALOG = r"""SELECT coalesce(json_object_agg(k, md5(v)), '{}')::text FROM (
  SELECT CASE c.relkind WHEN 'r' THEN 'table ' WHEN 'p' THEN 'table ' WHEN 'v' THEN 'view '
           WHEN 'm' THEN 'materialized view ' WHEN 'S' THEN 'sequence ' WHEN 'f' THEN 'foreign table '
           ELSE 'type ' END || format('%%I.%%I', n.nspname, c.relname) AS k,
    c.relkind::text || ':' || c.relpersistence::text || ':' || c.relreplident::text || ':' || coalesce((
      SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                        || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
                        || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), ''), ', ' ORDER BY a.attnum)
      FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
      WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '') AS v
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c') AND %(c)s
  UNION ALL
  SELECT 'index ' || format('%%I.%%I', n.nspname, c.relname), pg_get_indexdef(c.oid)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('i', 'I') AND %(c)s
  UNION ALL
  SELECT 'constraint ' || format('%%I', con.conname) || ' on '
         || coalesce(nullif(con.conrelid, 0)::regclass::text, format_type(con.contypid, NULL)),
         pg_get_constraintdef(con.oid)
  FROM pg_constraint con JOIN pg_namespace n ON n.oid = con.connamespace WHERE %(n)s
  UNION ALL
  SELECT 'type ' || format('%%I.%%I', n.nspname, t.typname), t.typtype::text || ':' || format_type(t.typbasetype, t.typtypmod)
         || ':' || coalesce((SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder) FROM pg_enum e
                             WHERE e.enumtypid = t.oid), '')
  FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE t.typtype IN ('d', 'e') AND %(n)s
) o""" % {"c": _USER_SCHEMA % ("n", "n"), "n": _USER_SCHEMA % ("n", "n")}
# Every sequence: qualified name, value to set, whether nextval() was called.
SQL_SEQUENCES = r"""SELECT coalesce(json_agg(json_build_array(format('%I.%I', schemaname, sequencename),
  coalesce(last_value, start_value), last_value IS NOT NULL) ORDER BY 1), '[]')::text FROM pg_sequences"""
# One row per large object with its size.
SQL_LARGE_OBJECTS = ("SELECT m.oid, coalesce(sum(octet_length(l.data)), 0) AS bytes FROM pg_largeobject_metadata m "
                     "LEFT JOIN pg_largeobject l ON l.loid = m.oid GROUP BY m.oid")
# Our slots on the old server (the tablesync ones carry the subscriber's system identifier).
SQL_SLOTS = r"""SELECT slot_name, database, coalesce(active_pid::text, ''),
  coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint::text, ''),
  coalesce(confirmed_flush_lsn::text, '')
  FROM pg_replication_slots WHERE slot_name LIKE 'nlb\_upgrade\_%%' OR slot_name ~ %s ORDER BY 1"""
SQL_SUBSCRIPTIONS = (r"SELECT s.subname, d.datname FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid "
                     r"WHERE s.subname LIKE 'nlb\_upgrade\_%' ORDER BY 1")
SQL_RELATIONS_NOT_READY = (r"SELECT coalesce(string_agg(r.srrelid::regclass::text || ':' || r.srsubstate::text, ', '), '') "
                           r"FROM pg_subscription_rel r JOIN pg_subscription s ON s.oid = r.srsubid "
                           r"WHERE s.subname = %s AND r.srsubstate <> 'r'")
SQL_SUBSCRIPTION_ERRORS = (r"SELECT coalesce(sum(apply_error_count + sync_error_count), 0) "
                           r"FROM pg_stat_subscription_stats WHERE subname LIKE 'nlb\_upgrade\_%'")


def sync_slot_pattern(sysid):
    """Regular expression of the tablesync slots a subscriber with system identifier ``sysid`` makes."""
    return "^pg_[0-9]+_sync_[0-9]+_%s$" % (int(sysid) if sysid else "nlb_none")


# Tables logical replication cannot carry: without a primary key or usable replica identity (UPDATE and DELETE
# on the old server would fail once published), unlogged ones (never replicated). User tables only.
SQL_UNFIT_TABLES = r"""SELECT format('%I.%I', n.nspname, c.relname),
  CASE WHEN c.relpersistence = 'u' THEN 'unlogged' ELSE 'no_identity' END
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_)'
    AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                    AND d.deptype = 'e')
    AND (c.relpersistence = 'u' OR c.relreplident = 'n'
         OR (c.relreplident = 'd' AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary))
         OR (c.relreplident = 'i' AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid
                                                  AND i.indisreplident)))
  ORDER BY 1"""
SQL_REPLICATION_SETTINGS = r"""SELECT current_setting('wal_level'), current_setting('max_replication_slots'),
  current_setting('max_wal_senders'), (SELECT count(*) FROM pg_replication_slots),
  (SELECT count(*) FROM pg_stat_replication)"""
# Tablesync slots at a time per subscription (max_sync_workers_per_subscription's default in the staging cluster).
SYNC_SLOTS = 2


def preflight_problems(found, command_settings, prepare=False, identity_full=False):
    """(problems, plan) of a logical upgrade from what :func:`read_preflight` found on the old server.

    ``command_settings``: the '-c' settings of the old container's command line (upgrade_plan.command_settings).
    """
    problems = []
    plan = {"prepare_restart": False, "replica_identity_full": [], "large_objects": found["large_objects"]}
    if found["wal_level"] != "logical":
        if "wal_level" in command_settings:
            problems.append("wal_level is %s and the container's command line sets it (-c wal_level=%s): ALTER "
                            "SYSTEM cannot change it; set -c wal_level=logical in the container's command (a "
                            "restart) before a logical upgrade" % (found["wal_level"], command_settings["wal_level"]))
        elif not prepare:
            problems.append("wal_level is %s, logical replication needs wal_level=logical: set "
                            "postgres_upgrade_logical_prepare (ALTER SYSTEM and ONE restart of the old server, "
                            "reported as prepare_restart_s; it can run in an earlier maintenance window) or set it "
                            "yourself" % found["wal_level"])
        else:
            plan["prepare_restart"] = True
    needed = len(found["databases"]) * (1 + SYNC_SLOTS)
    free_slots = found["max_replication_slots"] - found["slots_in_use"]
    free_senders = found["max_wal_senders"] - found["senders_in_use"]
    for name, free, total in (("max_replication_slots", free_slots, found["max_replication_slots"]),
                              ("max_wal_senders", free_senders, found["max_wal_senders"])):
        if free < needed:
            problems.append("%s is %d with %d free; the logical copy of %d database(s) needs %d (one per database "
                            "and %d for its table copies)" % (name, total, free, len(found["databases"]), needed,
                                                              SYNC_SLOTS))
    unlogged = [t for t, why in found["unfit"] if why == "unlogged"]
    no_identity = [t for t, why in found["unfit"] if why == "no_identity"]
    if unlogged:
        problems.append("unlogged table(s) %s: logical replication does not carry them (make them logged, ALTER "
                        "TABLE ... SET LOGGED, or use the pipe strategy)" % ", ".join(unlogged))
    if no_identity and identity_full:
        plan["replica_identity_full"] = no_identity
    elif no_identity:
        problems.append("table(s) without a primary key or replica identity %s: once published, UPDATE and DELETE "
                        "on them fail on the old server; add a primary key, or set "
                        "postgres_upgrade_logical_replica_identity_full (ALTER TABLE ... REPLICA IDENTITY FULL: "
                        "each change then logs the whole row)" % ", ".join(no_identity))
    return problems, plan


def read_preflight(pg, databases):
    """What a logical upgrade depends on, read from the old server (PgContainer); changes nothing."""
    row = pg.query(SQL_REPLICATION_SETTINGS)[0]
    found = {"wal_level": row[0], "max_replication_slots": int(row[1]), "max_wal_senders": int(row[2]),
             "slots_in_use": int(row[3]), "senders_in_use": int(row[4]), "databases": list(databases),
             "unfit": [], "large_objects": {"count": 0, "bytes": 0}}
    for database in databases:
        found["unfit"] += [("%s: %s" % (database, r[0]), r[1]) for r in pg.query(SQL_UNFIT_TABLES, database=database)]
        count, size = pg.query("SELECT count(*), coalesce(sum(bytes), 0) FROM (%s) lo" % SQL_LARGE_OBJECTS,
                               database=database)[0]
        found["large_objects"]["count"] += int(count)
        found["large_objects"]["bytes"] += int(size)
    return found


# ---------------------------------------------------------------------------
# Host actions
# ---------------------------------------------------------------------------

class Logical:
    """Replication from ``source`` (the old server, a PgContainer) into ``target`` (staging, or None when gone)."""

    def __init__(self, source, target=None, password=None, poll=1.0):
        self.source = source
        self.target = target
        self.password = password
        self.poll = poll

    def _q(self, pg, sql, database=None):
        try:
            return pg.query(sql, database=database)
        except NlbError as exc:
            raise LogicalError(scrub(str(exc), self.password))

    def _scalar(self, pg, sql, database=None):
        rows = self._q(pg, sql, database)
        return rows[0][0] if rows else ""

    def databases(self):
        return [row[0] for row in self._q(self.source, "SELECT datname FROM pg_database WHERE datallowconn "
                                                       "AND NOT datistemplate ORDER BY 1")]

    def catalog(self, databases):
        return dict((db, json.loads(self._scalar(self.source, SQL_CATALOG, db))) for db in databases)

    def ddl_check(self, before):
        changes = catalog_changes(before, self.catalog(sorted(before)))
        if changes:
            raise LogicalError("the schema of the old server changed during the copy (DDL): %s; logical "
                               "replication does not carry DDL, the upgrade stops (run it again once the schema "
                               "stays the same)" % first_ten(changes), {"ddl_changes": changes})

    def sysid(self):
        return self._scalar(self.target, "SELECT system_identifier FROM pg_control_system()")

    def prepare(self, wal_level, identity_full):
        """What preflight planned: wal_level=logical by ALTER SYSTEM (the role restarts the server), and
        REPLICA IDENTITY FULL on the named tables ('database: schema.table')."""
        done = {"wal_level": False, "replica_identity_full": []}
        if wal_level:
            self._q(self.source, "ALTER SYSTEM SET wal_level = logical")
            done["wal_level"] = True
        for item in identity_full or []:
            database, table = item.split(": ", 1)
            # the server quoted the name (format %I.%I)
            self._q(self.source, "ALTER TABLE %s REPLICA IDENTITY FULL" % table, database)
            done["replica_identity_full"].append(item)
        return done

    def subscribe(self, databases, host):
        """A publication per database on the source, then a subscription per database in the target."""
        names = subscription_names(databases)
        port = container_env(self.source.info, "PGPORT", "5432")
        for database in databases:
            self._q(self.source, "CREATE PUBLICATION %s FOR ALL TABLES" % PUBLICATION, database)
        for database in databases:
            info = conninfo(host, port, database, self.source.user, self.password)
            self._q(self.target, "CREATE SUBSCRIPTION %s CONNECTION %s PUBLICATION %s WITH (slot_name = %s)"
                    % (quote_ident(names[database]), quote_literal(info), PUBLICATION,
                       quote_literal(names[database])), database)
        return names

    def slots(self, sysid=None):
        rows = self._q(self.source, SQL_SLOTS % quote_literal(sync_slot_pattern(sysid)))
        return [{"slot": r[0], "database": r[1], "pid": r[2], "lag": int(r[3]) if r[3] else None, "lsn": r[4]}
                for r in rows]

    def _wait(self, what, timeout, check, poll=None):
        """Poll ``check`` (returns None when done, else what is still missing) until ``timeout`` seconds."""
        deadline = time.time() + timeout
        while True:
            missing = check()
            if missing is None:
                return
            if time.time() > deadline:
                errors = self._scalar(self.target, SQL_SUBSCRIPTION_ERRORS) if self.target else "0"
                raise LogicalError("%s did not happen within %s s: %s%s" % (
                    what, timeout, missing, "" if errors in ("0", "") else
                    "; the subscriptions in %s report %s apply/sync errors (its log says why)"
                    % (self.target.container, errors)))
            time.sleep(poll or self.poll)

    def wait_synced(self, names, catalog, timeout, max_lag):
        """Every table of every subscription copied (state r) and each slot within ``max_lag`` bytes."""
        started = time.time()

        def check():
            self.ddl_check(catalog)
            for database, name in sorted(names.items()):
                pending = self._scalar(self.target, SQL_RELATIONS_NOT_READY % quote_literal(name), database)
                if pending:
                    return "tables of %s still copying: %s" % (database, pending)
            lags = dict((s["slot"], s["lag"]) for s in self.slots())
            behind = [(n, lags.get(n)) for n in sorted(names.values())
                      if lags.get(n) is None or lags[n] > max_lag]
            if behind:
                return "slots behind: %s" % ", ".join("%s (%s bytes)" % item for item in behind)
            return None

        self._wait("the initial copy", timeout, check)
        # While the clients still work: the new cluster gets its planner statistics (the clients start on it),
        # and both clusters a checkpoint (their shutdowns at the swap then write little).
        for database in sorted(names):
            self._q(self.target, "VACUUM (ANALYZE)", database)
        for pg in (self.target, self.source):
            self._q(pg, "CHECKPOINT")
        return round(time.time() - started, 2)

    def catch_up(self, names, timeout):
        """Wait until each slot confirmed the old server's current WAL position (taken now, writes fenced)."""
        started = time.time()
        position = self._scalar(self.source, "SELECT pg_current_wal_lsn()")

        def check():
            done = dict((s["slot"], s["lsn"]) for s in self.slots())
            behind = [n for n in sorted(names.values()) if not done.get(n) or lsn_int(done[n]) < lsn_int(position)]
            return "slots %s below %s" % (", ".join(behind), position) if behind else None

        # The clients are stopped while this waits: poll often.
        self._wait("the final catch-up", timeout, check, poll=0.05)
        return position, round(time.time() - started, 2)

    def copy_sequences_and_large_objects(self, databases, pipe):
        """Every sequence set from the old values, and the large objects (neither is replicated): one read of the
        old server per database; large objects by pg_dump of them alone streamed into pg_restore (``pipe``:
        upgrade.Pipe's stream). (number of sequences, {count, bytes} of the large objects)"""
        sequences, found = 0, {"count": 0, "bytes": 0}
        for database in databases:
            read = json.loads(self._scalar(self.source, "SELECT json_build_array((%s)::json, (SELECT json_build_array("
                                           "count(*), sum(bytes)) FROM (%s) lo))::text"
                                           % (SQL_SEQUENCES, SQL_LARGE_OBJECTS), database))
            rows, (count, size) = read
            if rows:
                self._q(self.target, setval_script(rows), database)
            sequences += len(rows)
            if count:
                pipe(database, large_objects_dump_argv(database))
                found["count"] += int(count)
                found["bytes"] += int(size or 0)
        return sequences, found

    def cleanup(self, sysid=None, timeout=60, databases=None, reachable=False):
        """Drop the subscriptions (target, when it runs), our slots and publications (source). Idempotent.

        ``reachable`` (the switchover: both servers up and linked): each DROP SUBSCRIPTION drops its slot on the
        old server itself, the quickest way; should it fail, the subscription is detached and dropped as on
        every other path, where its slot is dropped directly (the drop then never waits on the old server).
        ``databases``: where the publications are (default: every database of the old server).
        """
        dropped = {"subscriptions": [], "slots": [], "publications": []}
        if self.target is not None:
            for name, database in self._q(self.target, SQL_SUBSCRIPTIONS):
                sub = quote_ident(name)
                with_slot = False
                if reachable:
                    try:
                        # a bound on the wait for the old server (then detached, as below)
                        self._q(self.target, "SET statement_timeout = '30s'; DROP SUBSCRIPTION %s" % sub, database)
                        with_slot = True
                        dropped["slots"].append(name)
                    except LogicalError:
                        pass  # still there (the drop is one transaction): detached and dropped below
                if not with_slot:
                    self._q(self.target, "ALTER SUBSCRIPTION %s DISABLE; ALTER SUBSCRIPTION %s SET (slot_name = NONE); "
                            "DROP SUBSCRIPTION %s" % (sub, sub, sub), database)
                dropped["subscriptions"].append(name)
            sysid = sysid or self.sysid()
        deadline = time.time() + timeout
        while True:
            slots = self.slots(sysid)
            if not slots:
                break
            for slot in slots:
                # A walsender still streaming the slot (its subscriber disabled, killed or removed) is ended first.
                sql = ("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
                       "WHERE slot_name = %s AND active_pid IS NOT NULL" % quote_literal(slot["slot"]))
                self._q(self.source, sql, slot["database"])
                try:
                    self.source.query("SELECT pg_drop_replication_slot(%s)" % quote_literal(slot["slot"]),
                                      database=slot["database"])
                    dropped["slots"].append(slot["slot"])
                except NlbError:
                    if time.time() > deadline:
                        raise LogicalError("replication slot %s on %s could not be dropped within %s s; drop it "
                                           "by hand (SELECT pg_drop_replication_slot('%s')): a forgotten slot "
                                           "keeps WAL until the disk is full"
                                           % (slot["slot"], self.source.container, timeout, slot["slot"]))
            time.sleep(0.2 if slots else 0)
        for database in self.databases() if databases is None else databases:
            # The old server may be fenced (read-only by default): this session writes. The first row says
            # whether the publication was there (psql then prints the command tags).
            rows = self._q(self.source, "SELECT count(*) FROM pg_publication WHERE pubname = %s; "
                           "SET default_transaction_read_only = off; DROP PUBLICATION IF EXISTS %s"
                           % (quote_literal(PUBLICATION), PUBLICATION), database)
            if rows and rows[0][0] != "0":
                dropped["publications"].append(database)
        return dropped


# ---------------------------------------------------------------------------
# The module's call
# ---------------------------------------------------------------------------

def _side_by_side(work, source, target):
    """{'old': work(source), 'new': work(target)}, the two run at once (each mostly waits on its server)."""
    taken = {}

    def take(name, pg):
        try:
            taken[name] = work(pg)
        except NlbError as exc:
            taken[name] = exc

    threads = [threading.Thread(target=take, args=item) for item in (("old", source), ("new", target))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return taken


def count_both(source, target, databases):
    """Exact row counts with their change signatures, of both clusters side by side, while the clients still
    work: {'old': {database: counted_rows}, 'new': ...}. The switchover counts again only what changed since."""
    # upgrade imports this module (preflight): imported here, not at the top
    from ansible_collections.nl_biomero.database.plugins.module_utils.upgrade import counted_rows
    taken = _side_by_side(lambda pg: dict((db, counted_rows(pg, db)) for db in databases), source, target)
    for name, pg in (("old", source), ("new", target)):
        if isinstance(taken[name], NlbError):
            raise LogicalError("counting the rows of %s failed: %s" % (pg.container, taken[name]))
    return taken


def verify_copy(source, target, databases, kind, counted=None):
    """The switchover's verification, inside the downtime: both clusters fingerprinted side by side (rows,
    sequences, roles, properties, smoke counts; writes are fenced, the replication is gone) and compared. The
    new cluster is fenced first and stays so until it runs under the instance name and is checked there
    (unlisted writers reach it as soon as it does: a rollback then loses none of their writes). With
    ``counted`` (:func:`count_both`), only the tables changed since are counted again."""
    # upgrade imports this module (preflight): imported here, not at the top
    from ansible_collections.nl_biomero.database.plugins.module_utils.upgrade import fingerprint
    salt = binascii.hexlify(os.urandom(16)).decode("ascii")
    counted = counted or {}

    def take(pg):
        if pg is target:
            # Fenced first, as the old one is (the fence is part of what is compared), while the old one is read.
            WriteFence(target).on(databases)
        return fingerprint(pg, databases, kind, salt, counted=counted.get("old" if pg is source else "new"))

    taken = _side_by_side(take, source, target)
    for name, pg in (("old", source), ("new", target)):
        if isinstance(taken[name], NlbError):
            raise LogicalError("fingerprint of %s failed: %s" % (pg.container, taken[name]))
    differences = compare_fingerprints(taken["old"], taken["new"])
    if differences:
        raise LogicalError("%s differs from the old instance %s after the switchover: %s"
                           % (target.container, source.container, first_ten(differences)),
                           {"differences": differences})
    recounted = dict((name, ["%s: %s" % (database, table) for database, item in sorted(taken[name]["databases"].items())
                             for table in item.get("recounted") or []]) for name in ("old", "new"))
    return {"fingerprint": taken["old"], "differences": [], "matches": True, "tables_recounted": recounted,
            "new_system_identifier": taken["new"]["system_identifier"], "new_server_version": taken["new"]["server_version"]}


def _password(source, login_password):
    """The password the subscriptions connect with: the login password, else the old container's own
    (POSTGRES_PASSWORD, or the file POSTGRES_PASSWORD_FILE names, read inside the container)."""
    if login_password or container_env(source.info, "POSTGRES_PASSWORD"):
        return login_password or container_env(source.info, "POSTGRES_PASSWORD")
    path = container_env(source.info, "POSTGRES_PASSWORD_FILE")
    if path:
        rc, out, err = source.engine.exec_run(source.container, ["cat", path])
        if rc != 0:
            raise LogicalError("cannot read POSTGRES_PASSWORD_FILE %s in %s: %s" % (path, source.container, err.strip()))
        # as the entrypoint reads it ("$(< file)": trailing newlines dropped)
        return out.rstrip("\n")
    return None


def logical_result(step, container, engine="auto", login_user=None, login_password=None, target_container=None,
                   databases=None, host=None, catalog=None, sysid=None, timeout=3600, max_lag_bytes=16 << 20,
                   wal_level=False, identity_full=None, verify=False, kind="auto", fingerprint_databases=None,
                   counted=None, network=None):
    """pg_upgrade_logical: one step of the logical copy (prepare, begin, subscribe, synced, switchover, absent)."""
    source = PgContainer(container, engine, login_user, login_password)
    target = None
    if target_container:
        # Cleaning up, a staging container that is gone or stopped is left to the recovery (its slots are dropped here).
        running = ((source.engine.inspect(target_container) or {}).get("State") or {}).get("Running")
        if step != "absent" or running:
            target = PgContainer(target_container, engine, login_user, login_password)
    logical = Logical(source, target, _password(source, login_password))
    databases = list(databases or [])
    result = {"changed": step != "begin", "step": step}
    if step == "prepare":
        result.update(logical.prepare(wal_level, identity_full))
        result["changed"] = bool(result["wal_level"] or result["replica_identity_full"])
    elif step == "begin":
        result.update(catalog=logical.catalog(databases), sysid=logical.sysid())
    elif step == "subscribe":
        result["subscriptions"] = logical.subscribe(databases, host or container)
    elif step == "synced":
        names = subscription_names(databases)
        result.update(subscriptions=names, copy_s=logical.wait_synced(names, catalog or {}, timeout, max_lag_bytes))
        started = time.time()
        result["counted"] = count_both(source, target, fingerprint_databases or databases)
        result["counted_s"] = round(time.time() - started, 2)
    elif step == "switchover":
        # upgrade imports this module (preflight): imported here, not at the top
        from ansible_collections.nl_biomero.database.plugins.module_utils.upgrade import Pipe
        names = subscription_names(databases)
        started = time.time()
        logical.ddl_check(catalog or {})
        result["wal_position"], result["catch_up_s"] = logical.catch_up(names, timeout)
        result["sequences"], result["large_objects"] = logical.copy_sequences_and_large_objects(
            databases, Pipe(source, target).stream)
        result["dropped"] = logical.cleanup(sysid, databases=databases, reachable=True)
        if network:
            # While the old server runs: a stopped container cannot leave a removed network, and would not start again.
            result["network_removed"] = source.engine.remove_network(network, [container, target_container])
        result["switchover_s"] = round(time.time() - started, 2)
        if verify:
            result.update(verify_copy(source, target, fingerprint_databases or databases, kind, counted))
            result["verify_s"] = round(time.time() - started - result["switchover_s"], 2)
    elif step == "absent":
        result["dropped"] = logical.cleanup(sysid)
        result["changed"] = any(result["dropped"].values())
    else:
        raise LogicalError("step %r is not one of prepare, begin, subscribe, synced, switchover, absent" % (step,))
    return result
