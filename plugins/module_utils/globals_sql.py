# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Roles and tablespaces from ``pg_dumpall --globals-only`` made safe to run on another cluster (pure).

The script's text comes from the source cluster, and any login role there can
put text of its choosing into it (role settings, comments, role names). So it
is never rewritten line by line: a quote-aware lexer splits it into
statements (string literals, E'' strings, quoted identifiers, dollar quotes,
comments), each statement is read as tokens, and only statements of a few
known shapes are kept, verbatim, and only about roles the target lacks:

- ``CREATE ROLE r``, ``ALTER ROLE r WITH ...``, ``ALTER ROLE r [IN DATABASE d] SET|RESET ...``,
  ``COMMENT ON ROLE r IS ...`` for a role created by this script (and, but ``CREATE``, for a
  role the caller names as the same role in both clusters);
- ``GRANT role TO r ...`` and ``GRANT ... ON PARAMETER ... TO r ...`` whose
  grantee is created by this script (an existing role never gains anything);
- ``CREATE TABLESPACE``, ``ALTER TABLESPACE``, ``COMMENT ON TABLESPACE`` for
  tablespaces the target lacks;
- the session ``SET``s pg_dumpall writes (client_encoding, standard_conforming_strings,
  default_transaction_read_only).

Everything else (psql meta-commands, other statements, a ``:`` or ``\\``
outside quotes that psql would interpret) is left out and reported.
Password hashes pass through unchanged inside their statements and are never
put in the report.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.nl_biomero.database.plugins.module_utils.errors import NlbError

_SAFE_SETS = ("client_encoding", "standard_conforming_strings", "default_transaction_read_only")
_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_\x80-\uffff][A-Za-z0-9_\x80-\uffff]*)?\$")
_WORD = re.compile(r"[A-Za-z_\x80-\uffff][A-Za-z0-9_$\x80-\uffff]*")


class GlobalsError(NlbError):
    """The globals script cannot be read safely (unterminated quote, settings this reader cannot follow)."""


# --------------------------------------------------------------------------
# Lexer
# --------------------------------------------------------------------------

def _skip_quoted(text, pos, quote, backslash=False):
    """Index after the closing ``quote`` of a literal starting at ``pos`` (the opening quote)."""
    i = pos + 1
    while i < len(text):
        char = text[i]
        if backslash and char == "\\":
            i += 2
            continue
        if char == quote:
            if i + 1 < len(text) and text[i + 1] == quote:
                i += 2
                continue
            return i + 1
        i += 1
    raise GlobalsError("the globals script has an unterminated %s literal" % ("identifier" if quote == '"' else "string"))


def _skip_block_comment(text, pos):
    depth, i = 0, pos
    while i < len(text):
        if text.startswith("/*", i):
            depth, i = depth + 1, i + 2
        elif text.startswith("*/", i):
            depth, i = depth - 1, i + 2
            if depth == 0:
                return i
        else:
            i += 1
    raise GlobalsError("the globals script has an unterminated /* comment")


def tokenize(text):
    """Tokens of SQL text: (kind, value, start, end) with kind in word, ident, string, op, meta, ';'.

    ``ident`` values are unquoted ("a""b" -> a"b); ``word`` values keep their
    case (keywords compare case-insensitively, bare names are what pg_dumpall
    printed); ``string`` values are the literal's raw text including quotes;
    ``meta`` is a psql backslash command (to the end of its line). Comments
    and white space are skipped.
    """
    tokens = []
    i, size = 0, len(text)
    while i < size:
        char = text[i]
        kind, end, value = None, None, None
        if char.isspace():
            i += 1
            continue
        if text.startswith("--", i):
            end = text.find("\n", i)
            i = size if end < 0 else end + 1
            continue
        if text.startswith("/*", i):
            i = _skip_block_comment(text, i)
            continue
        dollar = _DOLLAR_TAG.match(text, i) if char == "$" else None
        if char == "'":
            kind, end = "string", _skip_quoted(text, i, "'")
        elif char in "eE" and text.startswith("'", i + 1):
            kind, end = "string", _skip_quoted(text, i + 1, "'", backslash=True)
        elif char == '"':
            end = _skip_quoted(text, i, '"')
            kind, value = "ident", text[i + 1:end - 1].replace('""', '"')
        elif dollar:
            close = text.find(dollar.group(0), dollar.end())
            if close < 0:
                raise GlobalsError("the globals script has an unterminated dollar-quoted string")
            kind, end = "string", close + len(dollar.group(0))
        elif char == "\\":
            end = text.find("\n", i)
            kind, end = "meta", size if end < 0 else end
        elif char == ";":
            kind, end = ";", i + 1
        else:
            match = _WORD.match(text, i)
            kind, end = ("word", match.end()) if match else ("op", i + 1)
        tokens.append((kind, text[i:end] if value is None else value, i, end))
        i = end
    return tokens


def split_statements(text):
    """[(statement text, tokens)] of a script; a psql meta-command is a statement of its own.

    A statement's text runs from its first token to its ';' (comments before
    it dropped), so what is kept is re-emitted exactly as written.
    """
    statements, current = [], []
    for token in tokenize(text):
        if token[0] == "meta" and not current:
            statements.append((token[1], [token]))
            continue
        current.append(token)
        if token[0] == ";":
            statements.append((text[current[0][2]:token[3]], current))
            current = []
    if current:
        statements.append((text[current[0][2]:current[-1][3]], current))
    return statements


# --------------------------------------------------------------------------
# Statement shapes
# --------------------------------------------------------------------------

def _is(token, *words):
    return token[0] == "word" and token[1].upper() in words


def _name(token):
    """A role/tablespace name token -> the name (quoted identifiers unquoted, bare words as printed)."""
    if token[0] == "ident":
        return token[1]
    if token[0] == "word":
        return token[1]
    return None


def classify(tokens):
    """(kind, subject name) of one statement's tokens; kind None when it is not a shape this module keeps."""
    body = [token for token in tokens if token[0] != ";"]
    if not body:
        return None, None
    if any(token[0] == "meta" for token in body):
        return "meta", None
    if any(token[0] == "op" and token[1] in (":", "\\") for token in body):
        return None, None  # psql would interpolate ':name' outside quotes: not a plain statement
    words = [token[1].upper() if token[0] == "word" else None for token in body]
    if words[0] == "SET" and len(body) >= 3 and _is(body[1], *[name.upper() for name in _SAFE_SETS]):
        return "set", body[1][1].lower()
    if len(body) >= 3 and words[:2] == ["CREATE", "ROLE"] and len(body) == 3:
        return "create_role", _name(body[2])
    if len(body) >= 4 and words[:2] == ["ALTER", "ROLE"] and words[3] in ("WITH", "SET", "RESET", "IN"):
        return "role", _name(body[2])
    if len(body) >= 5 and words[:3] == ["COMMENT", "ON", "ROLE"] and words[4] == "IS":
        return "role", _name(body[3])
    if words[0] == "GRANT" and "TO" in words:
        position = len(words) - 1 - words[::-1].index("TO")
        if position + 1 < len(body):
            return "grant", _name(body[position + 1])
    if len(body) >= 3 and words[:2] == ["CREATE", "TABLESPACE"]:
        return "create_tablespace", _name(body[2])
    if len(body) >= 3 and words[:2] == ["ALTER", "TABLESPACE"]:
        return "tablespace", _name(body[2])
    if len(body) >= 5 and words[:3] == ["COMMENT", "ON", "TABLESPACE"] and words[4] == "IS":
        return "tablespace", _name(body[3])
    return None, None


def _grant_is_plain(tokens):
    """A GRANT with exactly one grantee after its last TO (no 'TO a, b' smuggling in an existing role).

    The grantee list ends at WITH or GRANTED: 16+ write options as a list
    ('WITH ADMIN OPTION, INHERIT TRUE GRANTED BY x'), whose comma is no grantee.
    """
    body = [token for token in tokens if token[0] != ";"]
    words = [token[1].upper() if token[0] == "word" else None for token in body]
    position = len(words) - 1 - words[::-1].index("TO")
    for word, token in zip(words[position + 1:], body[position + 1:]):
        if word in ("WITH", "GRANTED"):
            break
        if token[0] == "op" and token[1] == ",":
            return False
    return True


def filter_globals(text, existing_roles, existing_tablespaces=(), carried_roles=()):
    """Keep what creates the roles and tablespaces the target lacks; returns (script, report).

    Roles (and tablespaces) that exist in the target are left exactly as they
    are: running their statements would fail ("role already exists") or,
    worse, reset the password and attributes of the target's own roles.
    ``carried_roles`` are existing roles that are the same role as in the
    source (an upgrade's bootstrap superuser, which the new image created
    anew): their ``ALTER ROLE`` (attributes, password, settings) and comment
    are kept too, but never a membership granted to them.
    Report keys: roles_created, roles_skipped, roles_carried, tablespaces_created,
    tablespaces_skipped, statements_left_out (what the statement was, never its text).
    """
    carried = set(carried_roles) & set(existing_roles)
    roles = set(existing_roles)
    spaces = set(existing_tablespaces)
    statements = split_statements(text)
    created = []
    for _text, tokens in statements:
        kind, subject = classify(tokens)
        if kind == "create_role" and subject not in roles and subject not in created:
            created.append(subject)
        if kind == "set" and subject == "standard_conforming_strings" and "OFF" in [
                token[1].upper().strip("'") for token in tokens if token[0] in ("word", "string")]:
            raise GlobalsError("the globals script turns standard_conforming_strings off; it cannot be read safely")
    report = {"roles_created": list(created), "roles_skipped": [], "roles_carried": [], "tablespaces_created": [],
              "tablespaces_skipped": [], "statements_left_out": []}
    created = set(created)
    emitted = set()
    out = []
    for statement, tokens in statements:
        kind, subject = classify(tokens)
        keep = False
        if kind == "set":
            keep = True
        elif kind == "create_role":
            keep = subject in created and subject not in emitted
            emitted.add(subject)
            if subject in roles and subject not in report["roles_skipped"]:
                report["roles_skipped"].append(subject)
        elif kind == "role":
            keep = subject in created or subject in carried
            if subject in carried and subject not in report["roles_carried"]:
                report["roles_carried"].append(subject)
        elif kind == "grant":
            keep = subject in created and _grant_is_plain(tokens)
        elif kind == "create_tablespace":
            keep = subject not in spaces
            bucket = "tablespaces_created" if keep else "tablespaces_skipped"
            if subject not in report[bucket]:
                report[bucket].append(subject)
        elif kind == "tablespace":
            keep = subject not in spaces
        if keep:
            out.append(statement)
        elif kind is None or kind == "meta":
            report["statements_left_out"].append(_describe(tokens))
    return "\n".join(out) + "\n", report


def _describe(tokens):
    """A statement's first keywords, for the report (never its literals or names)."""
    words = []
    for token in tokens:
        if token[0] != "word" or len(words) == 3:
            break
        words.append(token[1].upper())
    return " ".join(words) or ("psql meta-command" if tokens and tokens[0][0] == "meta" else "statement")


def globals_roles(text):
    """Names of the roles a globals script creates (its CREATE ROLE statements)."""
    names = []
    for _text, tokens in split_statements(text):
        kind, subject = classify(tokens)
        if kind == "create_role" and subject not in names:
            names.append(subject)
    return names
