# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Password rules of the credentials modules (pure: no engine, no database).

``scram_verifier`` computes the SCRAM-SHA-256 verifier PostgreSQL stores in
pg_authid, on the client, the way libpq's ``PQencryptPasswordConn`` (psql's
``\\password``) does: the server then only ever sees the verifier, so a
statement log (``log_statement=ddl`` or ``all``) or pg_stat_statements can
never hold the password itself.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import hashlib
import hmac
import os
import stringprep
import unicodedata

SCRAM_ITERATIONS = 4096  # PostgreSQL's default scram_iterations
# SQL that keeps the session's statements out of the server log, whatever the
# server's log_statement, log_min_duration_statement or log_min_error_statement
# (each can be set by a superuser for its own session).
QUIET_SESSION = ("SET log_statement = 'none'; SET log_min_duration_statement = -1; "
                 "SET log_min_error_statement = 'panic'; SET log_duration = off;\n")


class PasswordError(ValueError):
    """A password the collection refuses to set (the message never holds it)."""


def password_problem(password):
    """Why ``password`` cannot be a login password, or None when it can."""
    if not isinstance(password, str):
        return "the password must be a string, not %s" % type(password).__name__
    if password == "":
        return "the password is empty (an empty password would disable password login for the role)"
    if "\x00" in password:
        return "the password contains a NUL character, which PostgreSQL cannot store"
    if password.strip() != password:
        # The official image's POSTGRES_PASSWORD_FILE reader strips trailing newlines:
        # a password ending in white space would differ between the file and the cluster.
        return "the password begins or ends with white space (use a password without leading or trailing blanks)"
    return None


def _prohibited(char):
    return (stringprep.in_table_c12(char) or stringprep.in_table_c21_c22(char) or stringprep.in_table_c3(char)
            or stringprep.in_table_c4(char) or stringprep.in_table_c5(char) or stringprep.in_table_c6(char)
            or stringprep.in_table_c7(char) or stringprep.in_table_c8(char) or stringprep.in_table_c9(char)
            or stringprep.in_table_a1(char))


def saslprep(password):
    """The password as PostgreSQL's SCRAM code prepares it (RFC 4013, src/common/saslprep.c).

    ASCII passes as it is; a string SASLprep rejects is used as it is too
    (what the server does), so every password still gets a verifier.
    """
    if all(ord(char) < 128 for char in password):
        return password
    mapped = "".join(" " if stringprep.in_table_c12(char) else char
                     for char in password if not stringprep.in_table_b1(char))
    prepared = unicodedata.normalize("NFKC", mapped)
    if any(_prohibited(char) for char in prepared):
        return password
    if any(stringprep.in_table_d1(char) for char in prepared):
        if any(stringprep.in_table_d2(char) for char in prepared):
            return password
        if not (stringprep.in_table_d1(prepared[0]) and stringprep.in_table_d1(prepared[-1])):
            return password
    return prepared


def scram_verifier(password, salt=None, iterations=SCRAM_ITERATIONS):
    """``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`` of ``password``."""
    problem = password_problem(password)
    if problem:
        raise PasswordError(problem)
    salt = os.urandom(16) if salt is None else salt
    salted = hashlib.pbkdf2_hmac("sha256", saslprep(password).encode("utf-8"), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(data):
        return base64.b64encode(data).decode("ascii")

    return "SCRAM-SHA-256$%d:%s$%s:%s" % (iterations, b64(salt), b64(stored_key), b64(server_key))


def verifier_salt(verifier):
    """(salt bytes, iterations) of a SCRAM-SHA-256 verifier; ValueError for anything else."""
    try:
        method, rest = verifier.split("$", 1)
        head = rest.split("$", 1)[0]
        iterations, salt = head.split(":", 1)
        if method != "SCRAM-SHA-256":
            raise ValueError(method)
        return base64.b64decode(salt), int(iterations)
    except (AttributeError, ValueError) as exc:
        raise ValueError("not a SCRAM-SHA-256 verifier (%s)" % exc)


def matches(verifier, password):
    """Whether a stored SCRAM verifier is the one of ``password`` (same salt, constant-time compare)."""
    try:
        salt, iterations = verifier_salt(verifier)
    except ValueError:
        return False
    return hmac.compare_digest(scram_verifier(password, salt, iterations), verifier)


def md5_matches(stored, role, password):
    """Whether a stored md5 hash (``md5`` + md5 of password and role name) is the one of ``password``."""
    digest = hashlib.md5((password + role).encode("utf-8")).hexdigest()  # nosec - reading PostgreSQL's format
    return hmac.compare_digest("md5" + digest, stored or "")


def hash_kind(stored):
    """What pg_authid.rolpassword holds: scram, md5, none (NULL) or plain (a pre-10 plain text password)."""
    if stored is None or stored == "":
        return "none"
    if stored.startswith("SCRAM-SHA-256$"):
        return "scram"
    if len(stored) == 35 and stored.startswith("md5"):
        return "md5"
    return "plain"


def quote_ident(name):
    """A SQL identifier in double quotes (embedded quotes doubled)."""
    return '"%s"' % name.replace('"', '""')


def quote_literal(text):
    """A SQL string literal (standard_conforming_strings, on since PostgreSQL 9.1)."""
    if "\x00" in text:
        raise PasswordError("a SQL literal cannot hold a NUL character")
    return "'%s'" % text.replace("'", "''")


def set_password_sql(role, stored):
    """ALTER ROLE statement that stores ``stored`` (a verifier, or None for no password) as it is,
    in a session whose statements stay out of the server log."""
    value = "NULL" if stored in (None, "") else quote_literal(stored)
    return QUIET_SESSION + "ALTER ROLE %s PASSWORD %s;\n" % (quote_ident(role), value)
