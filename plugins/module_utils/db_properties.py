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
  the copy is in place.
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


def create_database_sql(name, options, owner=None):
    """CREATE DATABASE for a restored copy: template0, the source's encoding and locale options."""
    parts = ["CREATE DATABASE %s WITH TEMPLATE = template0" % quote_ident(name)]
    for option in CREATE_OPTIONS:
        if option in options and option != "COLLATION_VERSION":
            parts.append("%s = %s" % (option, options[option]))
    if owner:
        parts.append("OWNER = %s" % quote_ident(owner))
    return " ".join(parts) + ";"
