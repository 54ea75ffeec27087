# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Database-level properties (pure): what lives on the database object, carried to a restored copy.

A custom or directory archive always holds the database's own entries
(``DATABASE``, ``DATABASE PROPERTIES``, ``COMMENT - DATABASE``, ``ACL -
DATABASE``); ``pg_restore --create`` prints them as SQL. From that SQL this
module keeps, token by token (the quote-aware reader of globals_sql), only
statements about that database, with its name replaced by the target's:

- the options of ``CREATE DATABASE`` (encoding, locale provider, locales),
  used to create the restored copy;
- ``ALTER DATABASE ... OWNER TO | CONNECTION LIMIT | SET | RESET |
  IS_TEMPLATE | ALLOW_CONNECTIONS``, ``COMMENT ON DATABASE``, ``GRANT|REVOKE
  ... ON DATABASE``, ``ALTER ROLE ... IN DATABASE ... SET``, applied once
  the copy is restored (they belong to the database object, so a rename
  carries them); a statement naming a role the target lacks is left out
  and reported (:func:`plan_properties`).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.nl_biomero.database.plugins.module_utils.globals_sql import GlobalsError, split_statements

# pg_restore --list entries about the database object itself: '3419; 1262 16386 DATABASE - name owner',
# '3420; 0 0 COMMENT - DATABASE "name" owner', '3422; 0 0 DATABASE PROPERTIES - name owner', ACL alike.
_DATABASE_ENTRY = re.compile(r"^\d+; \d+ \d+ (?:DATABASE - |DATABASE PROPERTIES - |COMMENT - DATABASE |ACL - DATABASE )")
CREATE_OPTIONS = ("ENCODING", "LOCALE_PROVIDER", "LOCALE", "LC_COLLATE", "LC_CTYPE", "ICU_LOCALE", "ICU_RULES",
                  "BUILTIN_LOCALE", "COLLATION_VERSION")
_PLAIN_WORD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ALTER_KINDS = ("OWNER", "CONNECTION", "SET", "RESET", "IS_TEMPLATE", "ALLOW_CONNECTIONS")


def quote_ident(name):
    """An SQL identifier, always quoted (PostgreSQL's rule: double any '"')."""
    return '"%s"' % name.replace('"', '""')


def is_database_entry(line):
    """Whether a ``pg_restore --create --list`` line is one of the database object's own entries."""
    return bool(_DATABASE_ENTRY.match(line))


def database_entries(list_lines):
    """The ``pg_restore --create --list`` lines of the database object's own entries (for ``-L``)."""
    return [line.rstrip("\r\n") for line in list_lines if _DATABASE_ENTRY.match(line)]


def _words(tokens):
    return [token[1].upper() if token[0] == "word" else None for token in tokens]


def _is_name(token, name):
    return token[0] in ("word", "ident") and token[1] == name


def _rewrite(statement, tokens, positions, new_name):
    """``statement`` with the tokens at ``positions`` (the database name) replaced by ``new_name``, quoted."""
    offset = tokens[0][2]
    out, last = [], 0
    for index in positions:
        start, end = tokens[index][2] - offset, tokens[index][3] - offset
        out.append(statement[last:start])
        out.append(quote_ident(new_name))
        last = end
    out.append(statement[last:])
    return "".join(out)


def _classify(tokens, name):
    """(kind, positions of the database name) of one statement; kind None when it is not kept."""
    body = [token for token in tokens if token[0] != ";"]
    if any(token[0] == "meta" or (token[0] == "op" and token[1] in (":", "\\")) for token in body):
        return None, []  # psql would interpolate ':name' or run a backslash command: not a plain statement
    words = _words(body)
    if len(body) >= 3 and words[:2] == ["CREATE", "DATABASE"] and _is_name(body[2], name):
        return "create", [2]
    if len(body) >= 4 and words[:2] == ["ALTER", "DATABASE"] and _is_name(body[2], name) and words[3] in _ALTER_KINDS:
        return "alter", [2]
    if len(body) >= 5 and words[:3] == ["COMMENT", "ON", "DATABASE"] and _is_name(body[3], name) and words[4] == "IS":
        return "alter", [3]
    if words and words[0] in ("GRANT", "REVOKE") and "ON" in words:
        at = words.index("ON")
        if at + 2 < len(body) and words[at + 1] == "DATABASE" and _is_name(body[at + 2], name) \
                and words[at + 3:at + 4] in (["TO"], ["FROM"]):
            return "alter", [at + 2]
    if len(body) >= 7 and words[:2] == ["ALTER", "ROLE"] and words[3:5] == ["IN", "DATABASE"] \
            and _is_name(body[5], name) and words[6] in ("SET", "RESET"):
        return "alter", [5]
    return None, []


def create_options(tokens):
    """{OPTION: value as SQL} of a CREATE DATABASE statement's WITH list, for the options in CREATE_OPTIONS.

    A value is kept only as a complete string literal or a plain word (libc, icu, 'UTF8'): nothing else
    from the archive reaches the CREATE DATABASE this module writes.
    """
    body = [token for token in tokens if token[0] != ";"]
    options = {}
    for index, token in enumerate(body[:-2]):
        if token[0] == "word" and token[1].upper() in CREATE_OPTIONS and body[index + 1][1] == "=":
            value = body[index + 2]
            after = body[index + 3] if index + 3 < len(body) else ("word", "")
            if after[0] == "word" and (value[0] == "string" or (value[0] == "word" and _PLAIN_WORD.match(value[1]))):
                options[token[1].upper()] = value[1]
    return options


def property_statements(sql_text, archive_name, target_name):
    """(CREATE DATABASE options or {}, [statements to apply]) from ``pg_restore --create`` SQL of those entries.

    Statements about another database, psql meta-commands and anything else
    are not kept. The database's name becomes ``target_name`` in each kept
    statement (by token, never by text search).
    """
    try:
        statements = split_statements(sql_text)
    except GlobalsError as exc:
        raise GlobalsError("the database properties cannot be read: %s" % exc)
    options, apply = {}, []
    for statement, tokens in statements:
        kind, positions = _classify(tokens, archive_name)
        if kind == "create":
            options = create_options(tokens)
        elif kind == "alter":
            apply.append(_rewrite(statement, tokens, positions, target_name))
    return options, apply


def describe_options(options):
    """'ENCODING = 'UTF8' LOCALE_PROVIDER = libc LOCALE = 'C.UTF-8'': the options in CREATE DATABASE order."""
    return " ".join("%s = %s" % (option, options[option]) for option in CREATE_OPTIONS if option in options)


def create_database_sql(name, options, owner=None):
    """CREATE DATABASE for a restored copy: template0, the source's encoding and locale options."""
    parts = ["CREATE DATABASE %s WITH TEMPLATE = template0" % quote_ident(name)]
    for option in CREATE_OPTIONS:
        if option in options and option != "COLLATION_VERSION":
            parts.append("%s = %s" % (option, options[option]))
    if owner:
        parts.append("OWNER = %s" % quote_ident(owner))
    return " ".join(parts) + ";"


# Grantee keywords that are not role names.
_NOT_ROLES = ("PUBLIC", "CURRENT_USER", "SESSION_USER", "CURRENT_ROLE")


def _role(token):
    """The role a name token stands for, None for PUBLIC/CURRENT_USER and the like (and for non-names)."""
    if token[0] == "ident":
        return token[1]
    if token[0] == "word" and token[1].upper() not in _NOT_ROLES:
        return token[1]
    return None


def statement_roles(statement):
    """The roles a kept property statement names (owner, grantees, grantor, the role of ALTER ROLE ... IN DATABASE).

    A statement naming a role the target lacks cannot run there; the caller
    leaves it out and reports it.
    """
    tokens = [token for token in split_statements(statement)[0][1] if token[0] != ";"]
    words = _words(tokens)
    names = []
    if words[:2] == ["ALTER", "ROLE"]:
        names.append(_role(tokens[2]))
    elif words[:2] == ["ALTER", "DATABASE"] and words[3:5] == ["OWNER", "TO"] and len(tokens) > 5:
        names.append(_role(tokens[5]))
    elif words and words[0] in ("GRANT", "REVOKE"):
        at = words.index("ON") + 3  # ON DATABASE name TO|FROM
        index = at + 1
        while index < len(tokens):  # grantee [, grantee ...]; GROUP is a noise word
            if words[index] == "GROUP" and index + 1 < len(tokens) and tokens[index + 1][1] != ",":
                index += 1
            names.append(_role(tokens[index]))
            if index + 1 < len(tokens) and tokens[index + 1][1] == ",":
                index += 2
                continue
            break
        for index in range(at + 1, len(tokens) - 2):
            if words[index:index + 2] == ["GRANTED", "BY"]:
                names.append(_role(tokens[index + 2]))
    return [name for name in names if name]


def plan_properties(sql_text, archive_name, target_name, known_roles):
    """(CREATE DATABASE options, statements to apply, [(statement, missing roles)] left out) for ``target_name``.

    Statements naming a role that is not in ``known_roles`` are left out (they
    would fail in the target) and returned with the missing names.
    """
    options, statements = property_statements(sql_text, archive_name, target_name)
    known = set(known_roles)
    apply, left_out = [], []
    for statement in statements:
        missing = [name for name in statement_roles(statement) if name not in known]
        if missing:
            left_out.append((statement, missing))
        else:
            apply.append(statement)
    return options, apply, left_out


_ENCODING_NAME = re.compile(r"^[A-Za-z0-9_]+$")


def client_encoding(sql_text):
    """The encoding a pg_dump/pg_restore script is written in (its ``SET client_encoding``), 'UTF8' without one.

    The property statements are sent in that encoding, with that SET first.
    """
    for _statement, tokens in split_statements(sql_text):
        body = [token for token in tokens if token[0] != ";"]
        if len(body) == 4 and _words(body[:2]) == ["SET", "CLIENT_ENCODING"] and body[2][1].upper() in ("=", "TO") \
                and body[3][0] == "string":
            value = body[3][1].strip("'")
            if _ENCODING_NAME.match(value):
                return value
    return "UTF8"
