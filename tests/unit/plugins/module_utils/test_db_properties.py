"""Database-level properties from real pg_restore --create output (PostgreSQL 17 and 18, a name with a space)."""

import os

import pytest

from ansible_collections.nl_biomero.database.plugins.module_utils.db_properties import (
    client_encoding, create_database_sql, database_entries, describe_options, is_database_entry, plan_properties, property_statements, quote_ident,
    statement_roles)
from ansible_collections.nl_biomero.database.plugins.module_utils.globals_sql import split_statements

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures")


def _read(name):
    with open(os.path.join(FIXTURES, name)) as handle:
        return handle.read()


@pytest.mark.parametrize("suffix", ["", "_18"])
def test_database_entries_from_the_list(suffix):
    lines = database_entries(_read("database_properties%s.list" % suffix).splitlines(True))
    assert [line.split(" ", 3)[3] for line in lines] == [
        "DATABASE - om ero omero", 'COMMENT - DATABASE "om ero" omero', 'ACL - DATABASE "om ero" omero',
        "DATABASE PROPERTIES - om ero omero"]


@pytest.mark.parametrize("suffix", ["", "_18"])
def test_properties_renamed_to_the_target(suffix):
    options, apply = property_statements(_read("database_properties%s.sql" % suffix), "om ero", 'new "db"')
    assert options == {"ENCODING": "'UTF8'", "LOCALE_PROVIDER": "libc", "LOCALE": "'C.UTF-8'"}
    assert apply == [
        'ALTER DATABASE "new ""db""" OWNER TO omero;',
        'COMMENT ON DATABASE "new ""db""" IS \'OMERO\'\'s db\';',
        'ALTER DATABASE "new ""db""" CONNECTION LIMIT = 50;',
        'ALTER DATABASE "new ""db""" SET work_mem TO \'12MB\';',
        'ALTER DATABASE "new ""db""" SET search_path TO \'$user\', \'public\', \'we\'\'ird\';',
        'ALTER ROLE reader IN DATABASE "new ""db""" SET statement_timeout TO \'5s\';',
        'REVOKE CONNECT,TEMPORARY ON DATABASE "new ""db""" FROM PUBLIC;',
        'GRANT TEMPORARY ON DATABASE "new ""db""" TO PUBLIC;',
        'GRANT CONNECT ON DATABASE "new ""db""" TO reader;',
    ]


def test_owner_statement_is_kept():
    sql = 'CREATE DATABASE a WITH TEMPLATE = template0;\nALTER DATABASE a OWNER TO "b c";\n'
    assert property_statements(sql, "a", "t")[1] == ['ALTER DATABASE "t" OWNER TO "b c";']


@pytest.mark.parametrize("sql", [
    "ALTER DATABASE other SET work_mem TO '1MB';",          # another database
    "ALTER DATABASE a RENAME TO b;",                       # not a property
    "\\connect a\nDROP DATABASE a;",                        # meta-commands and other statements
    "GRANT CONNECT ON DATABASE a, postgres TO x;",         # a list smuggling in another database
    "COMMENT ON DATABASE a IS 'x'; ALTER ROLE r SUPERUSER;",
])
def test_nothing_else_is_kept(sql):
    apply = property_statements(sql, "a", "t")[1]
    assert all(text.startswith("COMMENT ON DATABASE") for text in apply)


def test_create_database_sql_takes_only_literals_and_plain_words():
    sql = "CREATE DATABASE a WITH TEMPLATE = template0 ENCODING = 'UTF8' LOCALE_PROVIDER = icu ICU_LOCALE = 'de' LOCALE = x(1);"
    options = property_statements(sql, "a", "t")[0]
    assert options == {"ENCODING": "'UTF8'", "LOCALE_PROVIDER": "icu", "ICU_LOCALE": "'de'"}
    created = create_database_sql('t"1', options, owner="o")
    assert created == ('CREATE DATABASE "t""1" WITH TEMPLATE = template0 ENCODING = \'UTF8\' LOCALE_PROVIDER = icu '
                       'ICU_LOCALE = \'de\' OWNER = "o";')
    assert len(split_statements(created)) == 1


def test_quote_ident():
    assert quote_ident('a"b') == '"a""b"'


@pytest.mark.parametrize("statement,roles", [
    ('ALTER DATABASE "t" OWNER TO omero;', ["omero"]),
    ('ALTER DATABASE "t" OWNER TO "Odd ""Owner""";', ['Odd "Owner"']),
    ("COMMENT ON DATABASE \"t\" IS 'OWNER TO x';", []),
    ('ALTER DATABASE "t" CONNECTION LIMIT = 50;', []),
    ("ALTER DATABASE \"t\" SET search_path TO 'reader';", []),
    ("ALTER ROLE \"x\nALTER ROLE plain SUPERUSER\" IN DATABASE \"t\" SET work_mem TO '1MB';",
     ["x\nALTER ROLE plain SUPERUSER"]),
    ('REVOKE CONNECT,TEMPORARY ON DATABASE "t" FROM PUBLIC;', []),
    ('GRANT CONNECT ON DATABASE "t" TO reader;', ["reader"]),
    ('GRANT CONNECT ON DATABASE "t" TO "x y", GROUP g, cascade, CURRENT_USER WITH GRANT OPTION GRANTED BY "o";',
     ["x y", "g", "cascade", "o"]),
    ('REVOKE GRANT OPTION FOR CONNECT ON DATABASE "t" FROM a, "b" CASCADE;', ["a", "b"]),
])
def test_statement_roles(statement, roles):
    assert statement_roles(statement) == roles


def test_plan_properties_leaves_out_statements_naming_missing_roles():
    options, apply, left_out = plan_properties(_read("database_properties.sql"), "om ero", "t", ["postgres"])
    assert options["ENCODING"] == "'UTF8'"
    assert apply == [
        'COMMENT ON DATABASE "t" IS \'OMERO\'\'s db\';',
        'ALTER DATABASE "t" CONNECTION LIMIT = 50;',
        'ALTER DATABASE "t" SET work_mem TO \'12MB\';',
        'ALTER DATABASE "t" SET search_path TO \'$user\', \'public\', \'we\'\'ird\';',
        'REVOKE CONNECT,TEMPORARY ON DATABASE "t" FROM PUBLIC;',
        'GRANT TEMPORARY ON DATABASE "t" TO PUBLIC;',
    ]
    assert left_out == [('ALTER DATABASE "t" OWNER TO omero;', ["omero"]),
                        ('ALTER ROLE reader IN DATABASE "t" SET statement_timeout TO \'5s\';', ["reader"]),
                        ('GRANT CONNECT ON DATABASE "t" TO reader;', ["reader"])]
    assert plan_properties(_read("database_properties.sql"), "om ero", "t", ["omero", "reader"])[2] == []


@pytest.mark.parametrize("sql", [
    "ALTER DATABASE a SET search_path TO :evil;",
    "ALTER DATABASE a SET work_mem TO '1MB' \\gexec",
])
def test_psql_interpolation_is_never_kept(sql):
    assert property_statements(sql, "a", "t")[1] == []


def test_is_database_entry():
    lines = _read("database_properties.list").splitlines()
    assert [line for line in lines if is_database_entry(line)] == database_entries(lines)
    assert not is_database_entry("3423; 2615 2200 SCHEMA - public pg_database_owner")


@pytest.mark.parametrize("sql,encoding", [
    (None, "UTF8"),
    ("SET client_encoding = 'LATIN1';\nCREATE DATABASE a;", "LATIN1"),
    ("SET client_encoding TO 'EUC_JP';", "EUC_JP"),
    ("SET client_encoding = 'x'';DROP';", "UTF8"),
    ("COMMENT ON DATABASE a IS 'SET client_encoding = ''LATIN1''';", "UTF8"),
])
def test_client_encoding(sql, encoding):
    assert client_encoding(sql if sql is not None else _read("database_properties.sql")) == encoding


def test_describe_options_in_create_database_order():
    options = {"LOCALE": "'C.UTF-8'", "ENCODING": "'UTF8'", "LOCALE_PROVIDER": "libc"}
    assert describe_options(options) == "ENCODING = 'UTF8' LOCALE_PROVIDER = libc LOCALE = 'C.UTF-8'"
