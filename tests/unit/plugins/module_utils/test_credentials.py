# -*- coding: utf-8 -*-
"""The SCRAM verifier computed on the client is the one PostgreSQL computes (verifiers read from pg_authid of
a PostgreSQL 17 server, CREATE ROLE ... PASSWORD '<plain>' with password_encryption=scram-sha-256)."""

import pytest

from ansible_collections.nl_biomero.database.plugins.module_utils import credentials

SERVER_VERIFIERS = {
    "correct horse": (
        "SCRAM-SHA-256$4096:KqO7nIaAu06vzd8pruAaJA==$3EwjanYlnwCUIHRyFjC8z8m+tGoulm4dT4NmfTgzGqI="
        ":cvQLV2Jim198whRhPv+F893O/xZX0GRpcQ97ONj6RIA="),
    # a non-ASCII space (mapped to a space) and a soft hyphen (mapped to nothing) by SASLprep
    u"p\u00e4ss\u00a0word\u00ad!": (
        "SCRAM-SHA-256$4096:W2jCx/Mt5rrONbIvFTVmoQ==$m+PGK+IhtCD7I82P4S7HrvGgPujq/BNaO5v76p0TXgU="
        ":VtdAmHaZ2a4hv6Ic9n1uOhcfe8FZZcFjf0Uh2Gmq/ag="),
    # ROMAN NUMERAL NINE: NFKC makes it "IX"
    u"\u2168": (
        "SCRAM-SHA-256$4096:ZfOxMEgb6yCac7OmyDlauw==$09P58Ytez+GDBwg2n/g9BZEDwBOM6gTMwtjNd6vjsAw="
        ":lYMN/idbX9EmPd2QnaNf52ddm9X9nLf7NJHYe+gyP2E="),
}


@pytest.mark.parametrize("password", sorted(SERVER_VERIFIERS))
def test_verifier_equals_the_servers(password):
    verifier = SERVER_VERIFIERS[password]
    salt, iterations = credentials.verifier_salt(verifier)
    assert credentials.scram_verifier(password, salt, iterations) == verifier
    assert credentials.matches(verifier, password)
    assert not credentials.matches(verifier, password + "x")


def test_verifier_has_a_fresh_salt_and_never_holds_the_password():
    first, second = credentials.scram_verifier("hunter2"), credentials.scram_verifier("hunter2")
    assert first != second
    assert "hunter2" not in first
    assert credentials.matches(first, "hunter2") and credentials.matches(second, "hunter2")


@pytest.mark.parametrize("password, problem", [
    ("", "empty"), ("a\x00b", "NUL"), (" pw", "white space"), ("pw\n", "white space"), (None, "string"),
])
def test_refused_passwords(password, problem):
    assert problem in credentials.password_problem(password)
    with pytest.raises(credentials.PasswordError, match=problem):
        credentials.scram_verifier(password)


def test_md5():
    # md5 of "leg" + "legacy", the form of CREATE ROLE legacy PASSWORD 'leg' under password_encryption=md5
    import hashlib
    stored = "md5" + hashlib.md5(b"leglegacy").hexdigest()
    assert credentials.hash_kind(stored) == "md5"
    assert credentials.md5_matches(stored, "legacy", "leg")
    assert not credentials.md5_matches(stored, "legacy", "other")


@pytest.mark.parametrize("stored, kind", [
    (None, "none"), ("", "none"), (SERVER_VERIFIERS["correct horse"], "scram"), ("plaintext", "plain"),
])
def test_hash_kind(stored, kind):
    assert credentials.hash_kind(stored) == kind


def test_set_password_sql_quotes_and_silences_the_session():
    sql = credentials.set_password_sql('we"ird', "SCRAM-SHA-256$4096:a$b:c")
    assert sql.startswith(credentials.QUIET_SESSION)
    assert "SET log_statement = 'none'" in sql and "SET log_min_error_statement = 'panic'" in sql
    assert sql.endswith('ALTER ROLE "we""ird" PASSWORD \'SCRAM-SHA-256$4096:a$b:c\';\n')
    assert credentials.set_password_sql("r", None).endswith('ALTER ROLE "r" PASSWORD NULL;\n')
    assert credentials.quote_literal("it's") == "'it''s'"


def test_saslprep_keeps_ascii_and_unpreparable_strings():
    assert credentials.saslprep("a\tb") == "a\tb"  # ASCII passes as it is, as in PostgreSQL
    unassigned = u"pw\u0221"  # unassigned in Unicode 3.2: SASLprep fails, the password is used as it is
    assert credentials.saslprep(unassigned) == unassigned


def test_error_line_drops_the_statement_context():
    from ansible_collections.nl_biomero.database.plugins.module_utils.role_password import _error_line
    text = ("query on db failed: psql:<stdin>:2: ERROR:  syntax error at or near \"x\"\n"
            "LINE 1: ALTER ROLE \"r\" PASSWORD 'SCRAM-SHA-256$4096:salt$k:s' x;\n                     ^")
    assert _error_line(Exception(text)) == 'ERROR:  syntax error at or near "x"'
    assert "SCRAM" not in _error_line(Exception(text))
