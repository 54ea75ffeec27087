"""The globals filter against hostile role settings, comments and names (real pg_dumpall 17 and 18 output)."""

import os

import pytest

from ansible_collections.nl_biomero.database.plugins.module_utils.globals_sql import (
    GlobalsError, classify, filter_globals, globals_roles, split_statements, tokenize)

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures")
EVIL = "evil\nALTER ROLE plain SUPERUSER"
SMUGGLER = "x\nGRANT pg_execute_server_program TO plain;--"


@pytest.fixture(params=["hostile_globals.sql", "hostile_globals_18.sql"])
def hostile(request):
    with open(os.path.join(FIXTURES, request.param)) as handle:
        return handle.read()


def _statements(script):
    return [(classify(tokens), text) for text, tokens in split_statements(script)]


def test_hostile_settings_stay_inside_their_literals(hostile):
    script, report = filter_globals(hostile, ["postgres"])
    assert report["roles_created"] == [EVIL, "plain", SMUGGLER]
    assert report["roles_skipped"] == ["postgres"]
    for (kind, subject), text in _statements(script):
        assert kind in ("set", "create_role", "role", "grant"), text
        assert kind == "set" or subject in report["roles_created"], text
    # the injected texts are each one statement about their own role, never a statement of their own
    words = [token[1].upper() for _text, tokens in split_statements(script) for token in tokens if token[0] == "word"]
    assert "SUPERUSER" not in words and "PG_MONITOR" not in words and "PG_EXECUTE_SERVER_PROGRAM" not in words
    assert "ALTER ROLE plain SET default_tablespace TO ';ALTER ROLE plain SUPERUSER;--';" in script
    # the target's own superuser is never touched: no password or attribute reset
    assert "ROLE postgres" not in script
    # psql meta-commands are left out (\restrict/\unrestrict), and reported without their text
    assert "\\restrict" not in script and "psql meta-command" in report["statements_left_out"]


def test_existing_roles_gain_nothing(hostile):
    script, report = filter_globals(hostile, ["postgres", "plain"])
    assert report["roles_created"] == [EVIL, SMUGGLER]
    for (kind, subject), text in _statements(script):
        assert subject != "plain", text  # no attribute, setting, comment or membership for an existing role


def test_a_grant_to_a_list_cannot_smuggle_in_an_existing_role():
    script, report = filter_globals("CREATE ROLE a;\nGRANT pg_monitor TO a, postgres;\nGRANT pg_read_all_data TO a;\n",
                                    ["postgres"])
    assert script == "CREATE ROLE a;\nGRANT pg_read_all_data TO a;\n"
    assert report["statements_left_out"] == []


@pytest.mark.parametrize("text", [
    "SELECT 1;", "DROP ROLE postgres;", "ALTER ROLE a SUPERUSER;", "ALTER ROLE a WITH LOGIN :evil;", "CREATE ROLE a;",
    "DO $$ BEGIN END $$;", "ALTER SYSTEM SET x = 1;",
])
def test_unknown_shapes_are_left_out(text):
    script, report = filter_globals("CREATE ROLE a;\n" + text + "\n", [])
    assert script == "CREATE ROLE a;\n"
    assert report["statements_left_out"] or text == "CREATE ROLE a;"


def test_tokenizer_quotes():
    tokens = tokenize("ALTER ROLE \"a\"\"b\" SET x TO E'it\\'s;' /* c /* n */ ; */ $t$;$t$; -- ;\n")
    kinds = [(kind, value) for kind, value, _start, _end in tokens]
    assert kinds == [("word", "ALTER"), ("word", "ROLE"), ("ident", 'a"b'), ("word", "SET"), ("word", "x"),
                     ("word", "TO"), ("string", "E'it\\'s;'"), ("string", "$t$;$t$"), (";", ";")]


@pytest.mark.parametrize("text,message", [
    ("CREATE ROLE a; ALTER ROLE a SET x TO 'open", "unterminated string"),
    ('CREATE ROLE "open', "unterminated identifier"),
    ("ALTER ROLE a SET x TO $q$open", "unterminated dollar"),
    ("/* open", "unterminated /\\*"),
    ("SET standard_conforming_strings = off;", "standard_conforming_strings off"),
])
def test_unreadable_scripts_are_refused(text, message):
    with pytest.raises(GlobalsError, match=message):
        filter_globals(text, [])


def test_tablespaces_and_roles_of_the_target(hostile):
    text = ("CREATE ROLE app;\nCREATE TABLESPACE fast OWNER app LOCATION '/ssd';\n"
            "CREATE TABLESPACE slow OWNER app LOCATION '/hdd';\nALTER TABLESPACE fast SET (random_page_cost='1.1');\n")
    script, report = filter_globals(text, ["app"], ["fast"])
    assert script == "CREATE TABLESPACE slow OWNER app LOCATION '/hdd';\n"
    assert report["tablespaces_created"] == ["slow"] and report["tablespaces_skipped"] == ["fast"]
    assert report["roles_skipped"] == ["app"]


def test_globals_roles(hostile):
    assert globals_roles(hostile) == [EVIL, "plain", "postgres", SMUGGLER]


# --------------------------------------------------------------------------
# An ordinary pg_dumpall 17 script (the regex filter's old test, on the quote-aware reader)
# --------------------------------------------------------------------------

GLOBALS = '''--
-- PostgreSQL database cluster dump
--

\\restrict KEY

SET default_transaction_read_only = off;

--
-- Roles
--

CREATE ROLE app;
ALTER ROLE app WITH SUPERUSER INHERIT CREATEROLE CREATEDB LOGIN REPLICATION BYPASSRLS PASSWORD 'SCRAM-SHA-256$4096:src';
CREATE ROLE nlb_reader;
ALTER ROLE nlb_reader WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB NOLOGIN NOREPLICATION NOBYPASSRLS;
COMMENT ON ROLE nlb_reader IS 'read-only';
CREATE ROLE "Odd ""Role""";
ALTER ROLE "Odd ""Role""" WITH LOGIN PASSWORD 'SCRAM-SHA-256$4096:odd';
COMMENT ON ROLE app IS 'the superuser';

--
-- User Configurations
--

ALTER ROLE app SET search_path TO 'omero';

--
-- Role memberships
--

GRANT nlb_reader TO "Odd ""Role""" WITH INHERIT TRUE GRANTED BY app;

CREATE TABLESPACE fast OWNER app LOCATION '/ssd';
CREATE TABLESPACE slow OWNER app LOCATION '/hdd';
ALTER TABLESPACE fast SET (random_page_cost='1.1');

\\unrestrict KEY
'''


def test_ordinary_globals_leave_existing_roles_alone():
    script, report = filter_globals(GLOBALS, ["app", "postgres"], ["pg_default", "pg_global", "fast"])
    assert report == {"roles_created": ["nlb_reader", 'Odd "Role"'], "roles_skipped": ["app"], "roles_carried": [],
                      "tablespaces_created": ["slow"], "tablespaces_skipped": ["fast"],
                      "statements_left_out": ["psql meta-command", "psql meta-command"]}
    # nothing of the existing superuser survives: no CREATE, no password/attribute reset, no settings
    assert "ROLE app" not in script and "SCRAM-SHA-256$4096:src" not in script
    assert "CREATE ROLE nlb_reader;" in script and "COMMENT ON ROLE nlb_reader" in script
    assert 'ALTER ROLE "Odd ""Role""" WITH LOGIN PASSWORD \'SCRAM-SHA-256$4096:odd\';' in script
    assert "GRANT nlb_reader TO" in script
    assert "CREATE TABLESPACE slow" in script and "CREATE TABLESPACE fast" not in script
    assert "ALTER TABLESPACE fast" not in script
    # psql meta-commands are not run (the script runs in psql without them)
    assert "\\restrict" not in script and "\\unrestrict" not in script


def test_ordinary_globals_on_an_empty_cluster_keep_every_statement():
    script, report = filter_globals(GLOBALS, [])
    kept = [text for text, tokens in split_statements(GLOBALS) if tokens[0][0] != "meta"]
    assert [text for text, _tokens in split_statements(script)] == kept
    assert report["roles_created"] == ["app", "nlb_reader", 'Odd "Role"'] and report["roles_skipped"] == []
    assert report["tablespaces_created"] == ["fast", "slow"]


def test_ordinary_globals_roles():
    assert globals_roles(GLOBALS) == ["app", "nlb_reader", 'Odd "Role"']


def test_a_carried_role_keeps_its_attributes_password_and_settings_but_gains_no_membership():
    text = ("CREATE ROLE omero;\nALTER ROLE omero WITH SUPERUSER LOGIN PASSWORD 'SCRAM-SHA-256$4096:abc';\n"
            "ALTER ROLE omero SET work_mem TO '7MB';\nCOMMENT ON ROLE omero IS 'owner';\n"
            "GRANT pg_monitor TO omero;\nCREATE ROLE plain;\nALTER ROLE plain SET search_path TO $$a\nALTER ROLE omero b$$;\n")
    script, report = filter_globals(text, ["omero", "postgres"], carried_roles=["omero", "postgres", "ghost"])
    assert script == ("ALTER ROLE omero WITH SUPERUSER LOGIN PASSWORD 'SCRAM-SHA-256$4096:abc';\n"
                      "ALTER ROLE omero SET work_mem TO '7MB';\nCOMMENT ON ROLE omero IS 'owner';\n"
                      "CREATE ROLE plain;\nALTER ROLE plain SET search_path TO $$a\nALTER ROLE omero b$$;\n")
    assert report["roles_carried"] == ["omero"] and report["roles_skipped"] == ["omero"]
    assert report["roles_created"] == ["plain"]


def test_without_carried_roles_an_existing_role_is_left_alone():
    script, report = filter_globals("ALTER ROLE omero SET work_mem TO '7MB';\n", ["omero"])
    assert script == "\n" and report["roles_carried"] == []


# Real pg_dumpall 17/18 output: from 16 on a membership's options are a list after WITH.
@pytest.mark.parametrize("grant", [
    "GRANT team TO reader WITH ADMIN OPTION, INHERIT TRUE GRANTED BY omero;",
    "GRANT team TO reader WITH ADMIN OPTION GRANTED BY omero;",
    "GRANT team TO reader;",
])
def test_a_membership_with_options_is_kept(grant):
    script, report = filter_globals("CREATE ROLE reader;\nCREATE ROLE team;\n%s\n" % grant, ["omero"])
    assert script.endswith(grant + "\n") and report["statements_left_out"] == []


@pytest.mark.parametrize("grant", [
    "GRANT team TO reader, omero WITH ADMIN OPTION, INHERIT TRUE GRANTED BY omero;",
    "GRANT team TO reader, omero;",
])
def test_a_membership_to_a_list_is_left_out_even_with_options(grant):
    script, _report = filter_globals("CREATE ROLE reader;\nCREATE ROLE team;\n%s\n" % grant, ["omero"])
    assert "GRANT" not in script
