# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

import pytest

from ansible_collections.nl_biomero.database.plugins.module_utils import write_fence as wf
from ansible_collections.nl_biomero.database.plugins.module_utils.globals_sql import split_statements


def test_setting_map_splits_at_the_first_equals_sign():
    assert wf.setting_map(["work_mem=12MB", 'nl_biomero.write_fence={"previous": "a=b"}', "search_path="]) == {
        "work_mem": "12MB", "nl_biomero.write_fence": '{"previous": "a=b"}', "search_path": ""}
    assert wf.setting_map(None) == {}


@pytest.mark.parametrize("previous", [None, "off", "on"])
def test_marker_round_trip(previous):
    assert wf.read_marker("omero", wf.marker_value(previous, "2026-12-01T02:00:00Z")) == previous


@pytest.mark.parametrize("value", ["", "yes", "[]", '{"since": "x"}', '{"previous": 1}'])
def test_a_marker_we_did_not_write_is_refused_by_name(value):
    with pytest.raises(wf.FenceError) as err:
        wf.read_marker("om ero", value)
    assert "database om ero" in str(err.value) and repr(value) in str(err.value)


def test_unfenced_settings_are_the_settings_before_the_fence():
    marker = "nl_biomero.write_fence=" + wf.marker_value(None, "t")
    assert wf.unfenced("d", ["work_mem=12MB", "default_transaction_read_only=on", marker]) == (["work_mem=12MB"], True)
    marker = "nl_biomero.write_fence=" + wf.marker_value("off", "t")
    assert wf.unfenced("d", ["default_transaction_read_only=on", marker, "a=1"]) == (
        ["a=1", "default_transaction_read_only=off"], True)
    # The user's own read-only database, unfenced: as it is.
    assert wf.unfenced("d", ["x=1", "default_transaction_read_only=on"]) == (
        ["default_transaction_read_only=on", "x=1"], False)


def _statements(sql):
    return [statement[0] for statement in split_statements(sql)]


def test_fence_and_lift_statements_quote_any_database_name():
    name = 'we"ird\'; DROP DATABASE x; --'
    fence = wf.fence_statements(name, "it's", "2026-12-01T02:00:00Z")
    assert fence[0] == 'ALTER DATABASE "we""ird\'; DROP DATABASE x; --" SET default_transaction_read_only = on;'
    # One statement each, whatever the name: the quote-aware splitter agrees.
    assert len(_statements("\n".join(fence))) == 2
    record = _statements(fence[1])[0]
    assert record.startswith('ALTER DATABASE "we""ird\'; DROP DATABASE x; --" SET "nl_biomero.write_fence" = \'')
    assert json.loads(record.split(" = ", 1)[1][1:-2].replace("''", "'"))["previous"] == "it's"
    assert wf.lift_statements(name, None) == [
        'ALTER DATABASE "we""ird\'; DROP DATABASE x; --" RESET default_transaction_read_only;',
        'ALTER DATABASE "we""ird\'; DROP DATABASE x; --" RESET "nl_biomero.write_fence";']
    assert wf.lift_statements("omero", "off")[0] == "ALTER DATABASE \"omero\" SET default_transaction_read_only = 'off';"


def test_transaction_is_read_write_and_reports_the_commit_time():
    script = wf.transaction(["ALTER DATABASE \"a\" SET x = 1;"])
    lines = script.splitlines()
    assert lines[:3] == ["SET standard_conforming_strings = on;", "SET default_transaction_read_only = off;", "BEGIN;"]
    assert lines[-2:] == ["COMMIT;", "SELECT clock_timestamp();"]


def test_sessions_sql_names_quoted_databases_and_never_our_own_session():
    sql = wf.sessions_sql(["om'ero", "postgres"], before="2026-12-01 02:00:00+00", terminate=True)
    assert "ARRAY['om''ero', 'postgres']::name[]" in sql
    assert "pid <> pg_backend_pid()" in sql and "backend_type = 'client backend'" in sql
    assert "backend_start < '2026-12-01 02:00:00+00'::timestamptz" in sql
    assert "pg_terminate_backend(pid)" in sql
    assert "pg_terminate_backend" not in wf.sessions_sql(["omero"])


def test_override_warnings_name_roles_that_escape_the_fence():
    warnings = wf.override_warnings([
        ["metabase", None, ["default_transaction_read_only=off"]],
        ["cron", "omero", ["work_mem=1MB", "default_transaction_read_only=false"]],
        ["reader", "omero", ["default_transaction_read_only=on"]],
        ["other", None, ["work_mem=1MB"]],
    ])
    assert len(warnings) == 2
    assert warnings[0].startswith("role metabase sets default_transaction_read_only=off in every database")
    assert "role cron sets default_transaction_read_only=false in database omero" in warnings[1]


class _FencedServer:
    """A server whose database omero is fenced; records what would change it."""
    container = "database"

    def __init__(self, sysid):
        self.sysid = sysid
        self.commits = []

    def query(self, sql, database=None):
        answers = {wf.SQL_DATABASES: [{"name": "omero", "connectable": True,
                                       "settings": [wf.SETTING + "=on", wf.MARKER + "=" + wf.marker_value(None, "t")]}]}
        rows = []
        for statement in sql.split(";\n"):
            rows.append([json.dumps(self.sysid if "pg_control_system" in statement else answers.get(statement, []))])
        return rows

    def scalar(self, sql, database=None):
        return "[]"  # no other sessions

    def exec_tool(self, command, database=None, input_bytes=None, timeout=None):
        self.commits.append(input_bytes)
        return 0, "2026-12-01 02:00:00+00\n", ""


def test_lifting_checks_the_system_identifier_first_and_changes_nothing_on_another_cluster():
    other = _FencedServer("111")
    with pytest.raises(wf.FenceError, match="database serves the cluster with system identifier 111, not 222 "
                                            r"\(the one expected\): nothing was changed"):
        wf.WriteFence(other, system_identifier="222").off(terminate=False)
    assert other.commits == []
    verified = _FencedServer("222")
    result = wf.WriteFence(verified, system_identifier="222").off(terminate=False)
    assert result["lifted"] == ["omero"] and len(verified.commits) == 1
