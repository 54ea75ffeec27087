# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A read-only login role (Metabase, analysis) in a PostgreSQL container.

The module ``pg_read_role`` runs ``read_role_result``: the role is a plain
LOGIN role (no superuser, no CREATEROLE/CREATEDB), a member of the predefined
role ``pg_read_all_data`` (PostgreSQL 14+: SELECT on every table, view and
sequence of every database, including tables created later, without grants
per schema), with ``default_transaction_read_only=on``. Its password is set
and verified as ``pg_role_password`` does (role_password_result).

``member_of=pg_monitor`` makes the metrics exporter's role the same way: a
member of ``pg_monitor`` (statistics and settings, no table data) instead.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.nl_biomero.database.plugins.module_utils import credentials
from ansible_collections.nl_biomero.database.plugins.module_utils.pg_container import PgContainer
from ansible_collections.nl_biomero.database.plugins.module_utils.role_password import (
    RolePasswordError, role_password_result)

READ_ALL_SINCE = 140000  # pg_read_all_data is new in PostgreSQL 14
MEMBER_OF = ("pg_read_all_data", "pg_monitor")
SQL_ROLE = ("SELECT r.rolcanlogin, r.rolsuper OR r.rolcreaterole OR r.rolcreatedb OR r.rolreplication "
            "OR r.rolbypassrls, pg_has_role(r.oid, %s, 'MEMBER'), "
            "coalesce((SELECT 'default_transaction_read_only=on' = ANY(s.setconfig) FROM pg_db_role_setting s "
            "WHERE s.setrole = r.oid AND s.setdatabase = 0), false) FROM pg_roles r WHERE r.rolname = %s")
# Roles a pg_monitor login must not hold: it reads statistics, not data.
SQL_DATA_MEMBER = ("SELECT pg_has_role(r.oid, 'pg_read_all_data', 'MEMBER') FROM pg_roles r WHERE r.rolname = %s "
                   "AND EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pg_read_all_data')")


def _flag(text):
    return text == "t"


def read_role_result(container, name, password, engine="auto", login_user=None, login_password=None,
                     login_db=None, container_network=None, connect_timeout=10, member_of="pg_read_all_data",
                     check_mode=False):
    """The module's result (see the module docstring)."""
    pg = PgContainer(container, engine=engine, user=login_user, password=login_password)
    problem = credentials.password_problem(password)
    if problem:
        raise RolePasswordError("read-only role %s in container %s: %s; nothing was changed"
                                % (name, container, problem))
    if member_of not in MEMBER_OF:
        raise RolePasswordError("member_of must be one of %s (got %r); nothing was changed"
                                % (", ".join(MEMBER_OF), member_of))
    if member_of == "pg_read_all_data" and int(pg.scalar("SHOW server_version_num")) < READ_ALL_SINCE:
        raise RolePasswordError("container %s runs PostgreSQL before 14, which has no pg_read_all_data: "
                                "a read-only role is not made there; nothing was changed" % container)
    ident = credentials.quote_ident(name)
    rows = pg.query(SQL_ROLE % (credentials.quote_literal(member_of), credentials.quote_literal(name)))
    result = {"changed": False, "container": container, "role": name, "member_of": member_of, "created": False,
              "granted": False}
    statements = []
    if not rows:
        result["created"] = True
        statements.append("CREATE ROLE %s LOGIN;" % ident)
        can_login, powerful, member, read_only = True, False, False, False
    else:
        can_login, powerful, member, read_only = [_flag(value) for value in rows[0]]
    if powerful:
        raise RolePasswordError("role %s in container %s exists with more than read rights (superuser, "
                                "createrole, createdb, replication or bypassrls): choose another name for the "
                                "read-only role; nothing was changed" % (name, container))
    if member_of == "pg_monitor" and rows and pg.query(SQL_DATA_MEMBER % credentials.quote_literal(name)) == [["t"]]:
        raise RolePasswordError("role %s in container %s reads all data (pg_read_all_data): a monitoring role "
                                "must not; choose another name; nothing was changed" % (name, container))
    if not can_login:
        statements.append("ALTER ROLE %s LOGIN;" % ident)
    if not member:
        result["granted"] = True
        statements.append("GRANT %s TO %s;" % (member_of, ident))
    if not read_only:
        statements.append("ALTER ROLE %s SET default_transaction_read_only = on;" % ident)
    result["changed"] = bool(statements)
    if check_mode:
        if not result["created"]:
            result["changed"] = role_password_result(container, engine, login_user, login_password, user=name,
                                                     password=password, check_mode=True)["changed"] or result["changed"]
        return result
    if statements:
        pg.query(credentials.QUIET_SESSION + "\n".join(statements) + "\n")
    rotated = role_password_result(container, engine, login_user, login_password, user=name, password=password,
                                   login_db=login_db, container_network=container_network,
                                   connect_timeout=connect_timeout)
    result["changed"] = result["changed"] or rotated["changed"]
    result["password_changed"] = rotated["changed"]
    result["warnings"] = rotated.get("warnings") or []
    return result
