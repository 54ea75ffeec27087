# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Set a role's password in a PostgreSQL container, verified; list md5-hashed roles.

The module ``pg_role_password`` runs ``role_password_result``:

1. Reads pg_authid over the container's local socket (psql through the
   engine's exec, SQL on stdin): which roles store md5 hashes (a warning:
   PostgreSQL 18 deprecates them, and the images' ``scram-sha-256`` pg_hba
   lines refuse them), and whether the role's stored verifier already is the
   one of the wanted password (then nothing changes: idempotent without a
   login attempt).
2. Stores a SCRAM-SHA-256 verifier computed here (credentials.scram_verifier),
   in a session that keeps its statements out of the server log: neither the
   password nor the verifier reaches a log line, argv or the result.
3. Verifies with a fresh login over TCP to the container's address (the path
   clients take, through pg_hba's host lines) with the new password. When that
   fails, the old stored value is put back as it was, so the old password
   works again, and the task fails saying so.

PostgreSQL keeps one password per role: the old one stops working when the
new verifier is stored, and comes back when verification fails.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.nl_biomero.database.plugins.module_utils import credentials
from ansible_collections.nl_biomero.database.plugins.module_utils.errors import NlbError
from ansible_collections.nl_biomero.database.plugins.module_utils.pg_connect import container_address
from ansible_collections.nl_biomero.database.plugins.module_utils.pg_container import PgContainer, PgError, container_env

try:
    from ansible_collections.community.postgresql.plugins.module_utils import postgres as _cp
    _DRIVER = _cp.psycopg if _cp.HAS_PSYCOPG else None
except ImportError:  # pragma: no cover - community.postgresql ships with ansible
    _DRIVER = None

PG_PORT = 5432
SQL_ROLES = ("SELECT rolname, coalesce(rolpassword, ''), rolcanlogin FROM pg_authid "
             "WHERE rolname !~ '^pg_' ORDER BY rolname")


class RolePasswordError(NlbError):
    """The password could not be set or verified; the message says what state the role is in."""


def _login(host, role, password, database, timeout):
    """None when a fresh TCP login works, else the driver's reason (it never holds the password)."""
    if _DRIVER is None:
        raise RolePasswordError("the psycopg2 (or psycopg) Python library is needed on the managed host "
                                "to verify a password by logging in")
    try:
        conn = _DRIVER.connect(host=host, port=PG_PORT, user=role, password=password, dbname=database,
                               connect_timeout=timeout, application_name="nl_biomero.database password check")
    except _DRIVER.Error as exc:
        return " ".join(("%s" % exc).split())
    try:
        cursor = conn.cursor()
        cursor.execute("SELECT 1")
        cursor.fetchall()
    finally:
        conn.close()
    return None


def _error_line(exc):
    """The server's ERROR line of a failed statement, without the LINE/caret context psql adds (that
    context would quote the statement, and with it the verifier)."""
    for line in ("%s" % exc).splitlines():
        if "ERROR:" in line:
            return line[line.index("ERROR:"):].strip()
    return "psql failed"


def _roles(pg):
    """{role: (stored value, can login)}."""
    return dict((row[0], (row[1], row[2] == "t")) for row in pg.query(SQL_ROLES))


def md5_warning(container, md5_roles):
    return ("container %s: role(s) %s store md5-hashed passwords; PostgreSQL 18 deprecates md5 and the "
            "scram-sha-256 lines of pg_hba.conf refuse them: rotate them (pg_role_password with rehash_md5, "
            "or the postgres_container rotate_password entry point) to store SCRAM verifiers"
            % (container, ", ".join(md5_roles)))


def role_password_result(container, engine="auto", login_user=None, login_password=None, user=None,
                         password=None, login_db=None, container_network=None, connect_timeout=10,
                         rehash_md5=False, check_mode=False):
    """The module's result (see the module docstring)."""
    pg = PgContainer(container, engine=engine, user=login_user, password=login_password)
    role = user or pg.user
    database = login_db or container_env(pg.info, "POSTGRES_DB") or pg.user
    roles = _roles(pg)
    md5_roles = [name for name, (stored, _login_ok) in roles.items() if credentials.hash_kind(stored) == "md5"]
    result = {"changed": False, "container": container, "role": role, "md5_roles": md5_roles, "warnings": []}
    if md5_roles:
        result["warnings"].append(md5_warning(container, md5_roles))
    if password is None:
        return result
    problem = credentials.password_problem(password)
    if problem:
        raise RolePasswordError("role %s in container %s: %s; nothing was changed" % (role, container, problem),
                                result)
    if role not in roles:
        raise RolePasswordError("role %s does not exist in container %s (roles: %s); nothing was changed"
                                % (role, container, ", ".join(sorted(roles)) or "none"), result)
    old, can_login = roles[role]
    kind = credentials.hash_kind(old)
    result["previous_hash"] = kind
    if kind == "scram" and credentials.matches(old, password):
        result["msg"] = "role %s in container %s already has this password (SCRAM-SHA-256)" % (role, container)
        return result
    if kind == "md5" and not rehash_md5 and credentials.md5_matches(old, role, password):
        result["msg"] = ("role %s in container %s has this password, md5-hashed; rehash_md5=true stores it "
                         "as SCRAM-SHA-256" % (role, container))
        return result
    result["changed"] = True
    if check_mode:
        result["msg"] = "would set a new password (SCRAM-SHA-256) for role %s in container %s" % (role, container)
        return result
    if not can_login:
        raise RolePasswordError("role %s in container %s cannot log in (NOLOGIN): its password cannot be "
                                "verified; nothing was changed" % (role, container), dict(result, changed=False))
    host = container_address(pg.info, container_network)
    try:
        pg.query(credentials.set_password_sql(role, credentials.scram_verifier(password)))
    except PgError as exc:
        raise RolePasswordError("role %s in container %s: the new password could not be stored (%s); nothing was "
                                "changed" % (role, container, _error_line(exc)), dict(result, changed=False))
    reason = _login(host, role, password, database, connect_timeout)
    if reason is not None:
        pg.query(credentials.set_password_sql(role, old))
        raise RolePasswordError(
            "role %s in container %s: the new password was stored but a fresh login over TCP (%s:%d, database "
            "%s) failed: %s; the old password is back in place" % (role, container, host, PG_PORT, database, reason),
            dict(result, changed=False, restored=True))
    result["verified"] = True
    result["md5_roles"] = [name for name in md5_roles if name != role]
    result["warnings"] = [md5_warning(container, result["md5_roles"])] if result["md5_roles"] else []
    result["msg"] = ("set a new password (SCRAM-SHA-256) for role %s in container %s and logged in with it over TCP"
                     % (role, container))
    return result
