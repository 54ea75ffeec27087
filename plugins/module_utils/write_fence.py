# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A write fence on databases: new writes refused, the sessions that could still write ended.

Putting the fence up on a database is, in one transaction,
``ALTER DATABASE d SET default_transaction_read_only = on`` and a record of
what that setting was before, ``ALTER DATABASE d SET
"nl_biomero.write_fence" = '{"previous": ...}'`` (a custom setting: the
record lives in the database, committed with the fence itself, so whoever
lifts it later - a rollback days after, from another controller - finds
it, and a dump of the database carries both, so a copy can be unfenced
the same way). Then every other client session on the database is ended:
clients that reconnect get read-only sessions, a superuser such as OMERO's
owner role too (it is a database default, not a privilege). Sessions that
started before the fence committed are ended until none is left.

Lifting it puts ``default_transaction_read_only`` back as the record says
(reset, or the value it had) and removes the record, then ends the sessions
that started under the fence (they are read-only until they reconnect).

What it does not stop: a client that sets ``default_transaction_read_only``
or ``BEGIN READ WRITE`` itself, and roles whose own settings override the
database's (reported as warnings). The upgrade's verification remains the
backstop for those.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import time

from ansible_collections.nl_biomero.database.plugins.module_utils.errors import NlbError
from ansible_collections.nl_biomero.database.plugins.module_utils.pg_container import PgContainer

MARKER = "nl_biomero.write_fence"
SETTING = "default_transaction_read_only"
_TRUE = ("on", "true", "yes", "1", "t", "y")


class FenceError(NlbError):
    """The fence cannot be put up or lifted (message names the database or sessions)."""


def quote_ident(name):
    return '"%s"' % name.replace('"', '""')


def quote_literal(text):
    """A string literal (standard_conforming_strings is on in every script here)."""
    return "'%s'" % text.replace("'", "''")


def setting_map(setconfig):
    """{name: value} of a pg_db_role_setting ``setconfig`` list ('name=value' items)."""
    out = {}
    for item in setconfig or []:
        name, value = item.split("=", 1) if "=" in item else (item, "")
        out[name] = value
    return out


def marker_value(previous, since):
    """The record: the setting's value before the fence (None: not set on the database) and when."""
    return json.dumps({"previous": previous, "since": since}, sort_keys=True)


def read_marker(database, value):
    """The previous value recorded in a marker; FenceError when the marker is not one of ours."""
    try:
        data = json.loads(value)
        previous = data["previous"]
    except (ValueError, TypeError, KeyError):
        data, previous = None, 0
    if not isinstance(data, dict) or not (previous is None or isinstance(previous, str)):
        raise FenceError("database %s carries a %s setting this collection did not write (%r); lift it by hand "
                         "(ALTER DATABASE ... RESET %s, and set %s as it should be)"
                         % (database, MARKER, value, quote_ident(MARKER), SETTING))
    return previous


def unfenced(database, setconfig):
    """(settings as they were before the fence, sorted 'name=value' list; whether a fence is up)."""
    settings = setting_map(setconfig)
    if MARKER not in settings:
        return sorted(setconfig or []), False
    previous = read_marker(database, settings.pop(MARKER))
    settings.pop(SETTING, None)
    if previous is not None:
        settings[SETTING] = previous
    return sorted("%s=%s" % item for item in settings.items()), True


def fence_statements(database, previous, since):
    name = quote_ident(database)
    return ["ALTER DATABASE %s SET %s = on;" % (name, SETTING),
            "ALTER DATABASE %s SET %s = %s;" % (name, quote_ident(MARKER), quote_literal(marker_value(previous, since)))]


def lift_statements(database, previous):
    name = quote_ident(database)
    first = ("ALTER DATABASE %s RESET %s;" % (name, SETTING) if previous is None
             else "ALTER DATABASE %s SET %s = %s;" % (name, SETTING, quote_literal(previous)))
    return [first, "ALTER DATABASE %s RESET %s;" % (name, quote_ident(MARKER))]


def transaction(statements):
    """A script that commits ``statements`` in one read-write transaction and prints the commit time.

    Our own session may start in a fenced database (postgres), hence the explicit read-write.
    """
    return "\n".join(["SET standard_conforming_strings = on;", "SET default_transaction_read_only = off;",
                      "BEGIN;"] + statements + ["COMMIT;", "SELECT clock_timestamp();"]) + "\n"


def override_warnings(rows):
    """Warnings for role settings of default_transaction_read_only, which win over the database's."""
    warnings = []
    for role, database, setconfig in rows:
        value = setting_map(setconfig).get(SETTING)
        if value is not None and value.lower() not in _TRUE:
            where = "in database %s" % database if database else "in every database"
            warnings.append("role %s sets %s=%s %s: its new sessions are not read-only under the write fence"
                            % (role, SETTING, value, where))
    return warnings


def _array(names):
    return "ARRAY[%s]::name[]" % ", ".join(quote_literal(name) for name in names) if names else "ARRAY[]::name[]"


# Every database with its database-level settings.
SQL_DATABASES = r"""SELECT coalesce(json_agg(json_build_object('name', d.datname,
    'connectable', d.datallowconn AND NOT d.datistemplate,
    'settings', coalesce((SELECT s.setconfig FROM pg_db_role_setting s
                           WHERE s.setdatabase = d.oid AND s.setrole = 0), '{}'))), '[]')::text
  FROM pg_database d"""
# Role settings of default_transaction_read_only (role-wide or role-in-database).
SQL_OVERRIDES = r"""SELECT coalesce(json_agg(json_build_array(pg_get_userbyid(s.setrole),
    (SELECT datname FROM pg_database WHERE oid = s.setdatabase), s.setconfig)), '[]')::text
  FROM pg_db_role_setting s WHERE s.setrole <> 0"""
_SESSION = r"""json_build_object('pid', pid, 'database', datname, 'user', usename,
    'application_name', application_name, 'client_addr', host(client_addr),
    'backend_start', backend_start, 'state', state)"""


def sessions_sql(databases, before=None, terminate=False):
    """Other client sessions on ``databases`` (started before ``before``), ended when ``terminate``."""
    where = ["backend_type = 'client backend'", "pid <> pg_backend_pid()", "datname = ANY(%s)" % _array(databases)]
    if before:
        where.append("backend_start < %s::timestamptz" % quote_literal(before))
    record = "%s::jsonb || jsonb_build_object('ended', pg_terminate_backend(pid))" % _SESSION if terminate else _SESSION
    return "SELECT coalesce(json_agg(%s ORDER BY pid), '[]')::text FROM pg_stat_activity WHERE %s" % (
        record, " AND ".join(where))


def _split(databases, known):
    """(listed databases that exist, listed databases that do not)."""
    return [name for name in databases if name in known], [name for name in databases if name not in known]


class WriteFence:
    """Puts up or lifts the write fence on databases of a PgContainer."""

    # poll: ended sessions go within milliseconds, and the clients wait meanwhile
    def __init__(self, pg, wait_timeout=30, poll=0.05, system_identifier=None):
        self.pg = pg
        self.wait_timeout = wait_timeout
        self.poll = poll
        self.system_identifier = system_identifier

    def _read(self, statements):
        """Rows of one JSON value per statement, in one exec; with ``system_identifier`` the server must be that
        cluster (checked before anything changes)."""
        if self.system_identifier:
            statements = ["SELECT to_json(system_identifier::text)::text FROM pg_control_system()"] + statements
        read = [json.loads(row[0]) for row in self.pg.query(";\n".join(statements))]
        if self.system_identifier:
            found = read.pop(0)
            if found != str(self.system_identifier):
                raise FenceError("%s serves the cluster with system identifier %s, not %s (the one expected): "
                                 "nothing was changed" % (self.pg.container, found, self.system_identifier))
        return read

    def _json(self, sql):
        return json.loads(self.pg.scalar(sql))

    def _commit(self, statements):
        """Run ``statements`` in one transaction; the server's time after the commit."""
        rc, out, err = self.pg.exec_tool(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-f", "-"],
                                         input_bytes=transaction(statements).encode("utf-8"))
        if rc != 0:
            raise FenceError("changing the write fence in %s failed: %s" % (self.pg.container, err.strip()))
        return out.strip().splitlines()[-1]

    def sessions(self, databases):
        return self._json(sessions_sql(databases)) if databases else []

    def end_sessions(self, databases, before):
        """End the other sessions on ``databases`` that started before ``before``; wait until they are gone."""
        ended = {}
        deadline = time.time() + self.wait_timeout
        while databases:
            left = self._json(sessions_sql(databases, before, terminate=True))
            for session in left:
                ended.setdefault(session["pid"], session)
            if not left:
                break
            if time.time() > deadline:
                raise FenceError("sessions %s on %s in %s did not end within %s s"
                                 % (", ".join(str(s["pid"]) for s in left), ", ".join(databases),
                                    self.pg.container, self.wait_timeout),
                                 {"sessions_ended": sorted(ended.values(), key=lambda s: s["pid"])})
            time.sleep(self.poll)
        return [dict((k, v) for k, v in ended[pid].items() if k != "ended") for pid in sorted(ended)]

    def on(self, databases=None, terminate=True, check_mode=False):
        # One exec reads the databases, the role overrides and (databases named) their sessions: the fence
        # goes up while the clients wait.
        read = self._read([SQL_DATABASES, SQL_OVERRIDES] + ([sessions_sql(databases)] if databases else []))
        known = dict((row["name"], row) for row in read[0])
        if databases is None:
            names, missing = [name for name, row in sorted(known.items()) if row["connectable"]], []
        else:
            names, missing = _split(databases, known)
        previous, already = {}, []
        for name in names:
            settings = setting_map(known[name]["settings"])
            if MARKER in settings:
                previous[name] = read_marker(name, settings[MARKER])
                already.append(name)
            else:
                previous[name] = settings.get(SETTING)
        new = [name for name in names if name not in already]
        sessions = read[2] if len(read) > 2 else self.sessions(names)
        result = {"state": "on", "databases": names, "fenced": new, "already_fenced": already,
                  "previous": previous, "missing": missing, "sessions": sessions, "sessions_ended": [],
                  "warnings": override_warnings(read[1])}
        result["changed"] = bool(new or (terminate and sessions))
        if check_mode or not names:
            return result
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        statements = [sql for name in new for sql in fence_statements(name, previous[name], since)]
        committed = self._commit(statements)
        if terminate:
            result["sessions_ended"] = self.end_sessions(names, committed)
            result["changed"] = bool(new or result["sessions_ended"])
        return result

    def off(self, databases=None, terminate=True, check_mode=False):
        known = dict((row["name"], row) for row in self._read([SQL_DATABASES])[0])
        if databases is None:
            names, missing = sorted(name for name, row in known.items() if MARKER in setting_map(row["settings"])), []
        else:
            names, missing = _split(databases, known)
        restored = {}
        for name in names:
            settings = setting_map(known[name]["settings"])
            if MARKER in settings:
                restored[name] = read_marker(name, settings[MARKER])
        lifted = [name for name in names if name in restored]
        sessions = self.sessions(lifted)
        result = {"state": "off", "databases": names, "lifted": lifted,
                  "not_fenced": [name for name in names if name not in restored], "restored": restored,
                  "missing": missing, "sessions": sessions, "sessions_ended": [], "changed": bool(lifted)}
        if check_mode or not lifted:
            return result
        committed = self._commit([sql for name in lifted for sql in lift_statements(name, restored[name])])
        if terminate:
            result["sessions_ended"] = self.end_sessions(lifted, committed)
        return result


def fence_result(container, state="on", databases=None, engine="auto", login_user=None, login_password=None,
                 terminate=True, wait_timeout=30, check_mode=False, system_identifier=None):
    """pg_write_fence: put the fence up or lift it; the result says which databases and sessions."""
    if wait_timeout is not None and wait_timeout < 0:
        raise FenceError("wait_timeout %s is negative; give the seconds to wait for ended sessions (0 or more)"
                         % wait_timeout)
    fence = WriteFence(PgContainer(container, engine, login_user, login_password), wait_timeout,
                       system_identifier=system_identifier)
    if state == "on":
        return fence.on(databases, terminate, check_mode)
    if state == "off":
        return fence.off(databases, terminate, check_mode)
    raise FenceError("state %r is not one of on, off" % (state,))
