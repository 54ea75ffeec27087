import gzip
import os
import sys
import time

import pytest

from ansible_collections.nl_biomero.database.plugins.module_utils import dump_rules, globals_sql, pg_archive, restore
from ansible_collections.nl_biomero.database.plugins.module_utils.engine import stream
from ansible_collections.nl_biomero.database.plugins.module_utils.restore import RestoreError


def test_the_pure_rules_stay_importable_from_restore():
    """upgrade.py imports these from restore; they are pg_archive's, and the one (quote-aware) globals filter."""
    assert restore.filter_globals is globals_sql.filter_globals
    assert restore.globals_roles is globals_sql.globals_roles
    for name in ("psql_script_argv", "pg_restore_argv", "session_options", "conninfo_dbname",
                 "inspect_archive", "check_versions"):
        assert getattr(restore, name) is getattr(pg_archive, name)
    assert restore.RestoreError is pg_archive.RestoreError
    assert restore.default_jobs is dump_rules.default_jobs


@pytest.mark.parametrize("out,jobs", [("2\n", 2), ("64", 8), ("", 1), ("x", 1), ("0", 1)])
def test_default_jobs(out, jobs):
    assert restore.default_jobs(out) == jobs


def test_password_is_redacted_from_messages():
    job = restore.PgRestore("db", "omero", "/x.dump", login_password="s3cr3t")
    assert job._redact("FATAL: password s3cr3t rejected") == "FATAL: password ******** rejected"
    assert restore.PgRestore("db", "omero", "/x.dump")._redact("text") == "text"


def test_src_is_required():
    with pytest.raises(RestoreError, match="src is required"):
        restore.PgRestore("db", "omero", "")


def test_sql_uses_variables_not_pasted_values():
    """Identifiers and values reach SQL only as psql variables."""
    for sql in (restore.SQL_FACTS, restore.SQL_USER_OBJECTS, restore.SQL_COUNTS_ESTIMATE):
        assert "%(" not in sql and "{" not in sql.replace("'{}'", "")
    assert ":'db'" in restore.SQL_FACTS


def test_a_gzip_script_is_fed_decompressed(tmp_path):
    path = tmp_path / "omero.sql.gz"
    script = b"SELECT 1;\n" * 300000
    path.write_bytes(gzip.compress(script))
    done = stream(["cat"], stdin=restore._gunzip_writer(str(path)), stdout=lambda pipe: pipe.read())
    assert (done.rc, done.output) == (0, script)


def test_a_broken_gzip_script_kills_the_tool_before_it_sees_the_end(tmp_path):
    """EOF would tell psql that the script is complete: with --single-transaction it would commit a cut script."""
    path = tmp_path / "omero.sql.gz"
    path.write_bytes(gzip.compress(os.urandom(3 * 1024 * 1024))[:-1024 * 1024])
    committed = tmp_path / "committed"
    tool = "import sys; sys.stdin.buffer.read(); open(sys.argv[1], 'w').close()"
    with pytest.raises(RestoreError, match="reading the gzip-compressed script .* failed"):
        stream([sys.executable, "-c", tool, str(committed)], stdin=restore._gunzip_writer(str(path)))
    time.sleep(0.2)
    assert not committed.exists()
