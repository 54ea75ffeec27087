"""Unit tests of the pure logic of the importer retry/info core and its connection options.

SQL behaviour is tested against a real PostgreSQL in tests/integration/test_import_retry.py.
"""
import datetime

import pytest
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.community.postgresql.plugins.module_utils import postgres
from ansible_collections.nl_biomero.database.plugins.module_utils import importer, pg_connect
from ansible_collections.nl_biomero.database.plugins.module_utils.importer import ImporterError, Selection
from ansible_collections.nl_biomero.database.plugins.module_utils.pg_connect import PgConnectError

UTC = datetime.timezone.utc
NOW = datetime.datetime(2025, 6, 10, 12, 0, 0, tzinfo=UTC)
U1 = "550e8400-e29b-41d4-a716-446655440000"
U2 = "9B2F6C1E-3F7A-4D7E-9A57-0F0A3C6E1B22"


# --- uuids and stages -------------------------------------------------------

def test_validate_uuids_keeps_order_strips_and_dedupes():
    assert importer.validate_uuids([" %s " % U1, U2, U1]) == [U1, U2]
    assert importer.validate_uuids(None) == []


@pytest.mark.parametrize("bad", [
    "550e8400-e29b-41d4-a716-44665544000",      # one digit short
    "550e8400e29b41d4a716446655440000",         # no dashes
    "550e8400-e29b-41d4-a716-44665544000g",     # not hex
    "'; DROP TABLE imports; --",
    "",
])
def test_validate_uuids_names_the_bad_value(bad):
    with pytest.raises(ImporterError) as err:
        importer.validate_uuids([U1, bad])
    assert "malformed uuid '%s'" % bad in str(err.value)
    assert "8-4-4-4-12" in str(err.value)


def test_validate_stages():
    assert importer.validate_stages(["Import Failed", "Import Pending", "Import Failed"]) == ["Import Failed", "Import Pending"]
    with pytest.raises(ImporterError) as err:
        importer.validate_stages(["Import Failed", "failed"])
    assert "unknown stage 'failed'" in str(err.value)
    for stage in importer.STAGES:
        assert stage in str(err.value)


# --- time parsing -----------------------------------------------------------

@pytest.mark.parametrize("text,expected", [
    ("24h", NOW - datetime.timedelta(hours=24)),
    ("7d", NOW - datetime.timedelta(days=7)),
    ("30m", NOW - datetime.timedelta(minutes=30)),
    ("90s", NOW - datetime.timedelta(seconds=90)),
    ("2w", NOW - datetime.timedelta(weeks=2)),
    (" 12 H ", NOW - datetime.timedelta(hours=12)),
    ("now", NOW),
    ("2025-06-01", datetime.datetime(2025, 6, 1, tzinfo=UTC)),
    ("2025-06-01T10:30:00Z", datetime.datetime(2025, 6, 1, 10, 30, tzinfo=UTC)),
    ("2025-06-01 10:30:00+02:00", datetime.datetime(2025, 6, 1, 8, 30, tzinfo=UTC)),
])
def test_parse_time(text, expected):
    assert importer.parse_time(text, now=NOW) == expected


def test_parse_time_empty_is_none():
    assert importer.parse_time(None) is None
    assert importer.parse_time("") is None


@pytest.mark.parametrize("bad", ["yesterday", "24", "-3d", "3 days", "2025-13-01", "1y"])
def test_parse_time_rejects_with_accepted_forms(bad):
    with pytest.raises(ImporterError) as err:
        importer.parse_time(bad, name="until", now=NOW)
    message = str(err.value)
    assert message.startswith("until: '%s'" % bad)
    assert "24h" in message and "2025-06-01" in message


def test_selection_from_params_window_and_defaults():
    sel = importer.selection_from_params({"since": "7d", "until": "1d", "uuids": [U1]}, default_stages=["Import Failed"], now=NOW)
    assert sel.stages == ["Import Failed"]
    assert sel.since == NOW - datetime.timedelta(days=7)
    assert sel.filters() == {"uuids": [U1], "stages": ["Import Failed"],
                             "since": "2025-06-03T12:00:00+00:00", "until": "2025-06-09T12:00:00+00:00"}
    with pytest.raises(ImporterError, match="since .* must be before until"):
        importer.selection_from_params({"since": "1d", "until": "7d"}, now=NOW)
    with pytest.raises(ImporterError, match="unknown stage 'Done'"):
        importer.selection_from_params({"stages": ["Done"]}, now=NOW)


# --- retry request ----------------------------------------------------------

@pytest.mark.parametrize("params,message", [
    ({}, "refusing to retry without a selection"),
    ({"group_name": "g"}, "refusing to retry without a selection"),
    ({"uuids": [U1], "all_failed": True}, "mutually exclusive"),
    ({"all_failed": True, "limit": 0}, "limit must be at least 1, got 0"),
    ({"all_failed": True, "strategy": "update"}, "strategy 'update' is not supported; use one of: new_order, same_uuid, reset_stage"),
])
def test_validate_retry_request_errors(params, message):
    with pytest.raises(ImporterError, match=message):
        importer.validate_retry_request(params)


def test_validate_retry_request_defaults():
    assert importer.validate_retry_request({"all_failed": True}) == ("new_order", importer.DEFAULT_LIMIT)
    assert importer.validate_retry_request({"uuids": [U1], "strategy": "same_uuid", "limit": 5}) == ("same_uuid", 5)


# --- columns and lineage ----------------------------------------------------

FULL = ["id", "group_name", "user_name", "destination_id", "destination_type", "stage", "uuid", "timestamp",
        "files", "file_names", "description", "preprocessing_id", "import_options"]


def test_table_columns_copied_and_compared():
    table = importer.TableInfo("public", "imports", FULL)
    assert table.copy_columns() == ["group_name", "user_name", "destination_id", "destination_type", "files",
                                    "file_names", "description", "preprocessing_id", "import_options"]
    assert "description" not in table.compare_columns()
    assert table.has_lineage and table.missing_required() == []


def test_table_without_description_and_generated_columns():
    columns = [c for c in FULL if c != "description"] + ["search_text"]
    table = importer.TableInfo("biomero", "imports", columns, not_insertable=["search_text"])
    assert not table.has_lineage
    assert "search_text" not in table.copy_columns()
    assert table.copy_columns() == table.compare_columns()
    assert table.qualified_name == "biomero.imports"


def test_table_missing_required_columns():
    table = importer.TableInfo("public", "imports", ["id", "uuid", "stage", "files"])
    assert table.missing_required() == ["group_name", "user_name", "destination_id", "destination_type", "timestamp"]


def test_lineage_marker_round_trip():
    assert importer.lineage_marker(U1) == "[retry of %s]" % U1
    assert importer.retry_of(importer.lineage_marker(U1) + " original text") == U1
    assert importer.retry_of("user text [retry of %s]" % U1) is None
    assert importer.retry_of(None) is None


@pytest.mark.parametrize("text,files", [
    ('["/a/b.tif", "/a/c.tif"]', ["/a/b.tif", "/a/c.tif"]),
    ("[]", []),
    ("/not/json.tif", ["/not/json.tif"]),
    ('"/one.tif"', ["/one.tif"]),
    (None, []),
])
def test_parse_files(text, files):
    assert importer.parse_files(text) == files


# --- eligibility ------------------------------------------------------------

def _candidate(uuid, stage="Import Failed", retried_as=None, group="g", user="u", at=NOW):
    return {"uuid": uuid, "stage": stage, "retried_as": retried_as, "group_name": group, "user_name": user,
            "last_at": at, "destination_type": "Dataset", "destination_id": "1", "files": '["/f"]', "source_id": 1}


def test_classify_filter_mode_skips_already_retried():
    sel = Selection(stages=["Import Failed"])
    eligible, skipped = importer.classify([_candidate("a"), _candidate("b", retried_as="c")], sel, "new_order")
    assert [c["uuid"] for c in eligible] == ["a"]
    assert skipped == [{"uuid": "b", "stage": "Import Failed", "reason": "already retried as c", "retried_as": "c"}]


def test_classify_named_orders_report_why_they_do_not_match():
    sel = Selection(uuids=["a", "b", "c", "d", "e"], stages=["Import Failed"], group_name="g", user_name="u",
                    since=NOW - datetime.timedelta(days=1))
    candidates = [
        _candidate("a"),
        _candidate("b", stage="Import Completed"),
        _candidate("c", group="other"),
        _candidate("d", at=NOW - datetime.timedelta(days=2)),
        _candidate("e", at=None),
    ]
    eligible, skipped = importer.classify(candidates, sel, "new_order")
    assert [c["uuid"] for c in eligible] == ["a"]
    reasons = dict((s["uuid"], s["reason"]) for s in skipped)
    assert reasons["b"] == "latest stage is 'Import Completed', not one of: Import Failed"
    assert reasons["c"] == "group is 'other', not 'g'"
    assert reasons["d"].startswith("latest row (2025-06-08T12:00:00+00:00) is before since")
    assert reasons["e"] == "latest row has no timestamp"


@pytest.mark.parametrize("strategy", ["same_uuid", "reset_stage"])
def test_classify_same_uuid_strategies_never_repeat_a_pending_order(strategy):
    sel = Selection(stages=["Import Failed", "Import Pending"])
    eligible, skipped = importer.classify([_candidate("a", stage="Import Pending"), _candidate("b")], sel, strategy)
    assert [c["uuid"] for c in eligible] == ["b"]
    assert skipped[0]["reason"] == "already Import Pending"


# --- SQL text -----------------------------------------------------------------

@pytest.mark.parametrize("parts,expected", [
    (("imports",), '"imports"'),
    (("public", "imports"), '"public"."imports"'),
    (('we"ird', "a.b"), '"we""ird"."a.b"'),
])
def test_quote_ident(parts, expected):
    assert importer.quote_ident(*parts) == expected


def test_queries_quote_identifiers_and_keep_values_as_placeholders():
    table = importer.TableInfo("public", "imports", list(importer.REQUIRED_COLUMNS) + ["description", 'x"y'])
    insert = importer.insert_query(table)
    assert insert.startswith('INSERT INTO "public"."imports" ("group_name", ')
    assert '"x""y", "uuid", "stage", "timestamp")' in insert
    assert "concat_ws(' ', v.marker, NULLIF(s.\"description\", ''))" in insert
    assert importer.lock_query(table) == 'LOCK TABLE "public"."imports" IN SHARE ROW EXCLUSIVE MODE'
    query, params = importer.candidates_query(table, Selection(stages=["Import Failed"], group_name="g'; --"),
                                              "new_order")
    assert '"l"."group_name" = %(group_name)s' in query and "g'; --" not in query
    assert params["group_name"] == "g'; --" and params["stages"] == ["Import Failed"]


# --- connection options (community.postgresql's, plus ours) -------------------

class FakeModule:
    """The AnsibleModule interface community.postgresql's helpers use."""

    def __init__(self, **params):
        self.params = dict((key, value.get("default")) for key, value in pg_connect.argument_spec().items())
        self.params.update(params)
        self.warnings = []

    def warn(self, text):
        self.warnings.append(text)

    def fail_json(self, **kwargs):
        raise AssertionError("fail_json: %s" % kwargs)


@pytest.fixture(autouse=True)
def _no_libpq_environment(monkeypatch):
    for name in ("PGUSER", "PGPORT"):
        monkeypatch.delenv(name, raising=False)


def test_argument_spec_is_community_postgresql_plus_ours():
    spec = pg_connect.argument_spec()
    community = postgres.postgres_common_argument_spec()
    assert set(community) < set(spec)
    assert set(spec) - set(community) == {"login_db", "connect_timeout", "container", "container_network", "engine"}
    assert spec["login_user"]["default"] is None and spec["login_password"]["no_log"] is True


@pytest.mark.parametrize("params,error", [
    ({"container": "db", "login_host": "h"}, "container|login_host"),
    ({"container": "db", "login_unix_socket": "/run"}, "container|login_unix_socket"),
    ({"login_host": "h", "login_unix_socket": "/run"}, "login_host|login_unix_socket"),
    ({"ssl_mode": "on"}, "ssl_mode"),
])
def test_argument_spec_rejects(params, error):
    validator = ArgumentSpecValidator(pg_connect.argument_spec(), mutually_exclusive=pg_connect.MUTUALLY_EXCLUSIVE)
    messages = validator.validate(params).error_messages
    assert messages and error in messages[0]


def test_conn_params_defaults_and_no_empty_values():
    module = FakeModule()
    assert pg_connect.conn_params(module) == {
        "port": 5432, "user": "postgres", "dbname": "biomero", "sslmode": "prefer", "connect_timeout": 10,
        "application_name": "nl_biomero.database"}
    assert module.warnings == []


def test_conn_params_full_socket_and_connect_params_win():
    kwargs = pg_connect.conn_params(FakeModule(
        login_port=5433, login_password="pw", ssl_mode="verify-full", ca_cert="/ca.pem", ssl_cert="/c.pem",
        ssl_key="/k.pem", connect_timeout=3, login_user="admin", login_db="other"))
    assert kwargs["user"] == "admin" and kwargs["dbname"] == "other" and kwargs["port"] == 5433
    assert kwargs["sslrootcert"] == "/ca.pem" and kwargs["sslkey"] == "/k.pem" and kwargs["password"] == "pw"
    assert kwargs["connect_timeout"] == 3 and "host" not in kwargs
    assert "pw" not in pg_connect.describe(kwargs)
    kwargs = pg_connect.conn_params(FakeModule(login_unix_socket="/run/pg",
                                               connect_params={"connect_timeout": 1, "options": "-c x=1"}))
    assert kwargs["host"] == "/run/pg" and kwargs["connect_timeout"] == 1 and kwargs["options"] == "-c x=1"


def test_conn_params_rejects_a_zero_timeout():
    with pytest.raises(PgConnectError, match="connect_timeout must be at least 1 second, got 0"):
        pg_connect.conn_params(FakeModule(connect_timeout=0))


def _inspect(networks, ip="", mode="bridge"):
    return {"Name": "/db", "HostConfig": {"NetworkMode": mode},
            "NetworkSettings": {"IPAddress": ip, "Networks": networks}}


def test_container_address_picks_network():
    info = _inspect({"zeta": {"IPAddress": "10.0.0.9"}, "alpha": {"IPAddress": ""}, "beta": {"IPAddress": "10.0.1.2"}})
    assert pg_connect.container_address(info) == "10.0.1.2"
    assert pg_connect.container_address(info, "zeta") == "10.0.0.9"
    with pytest.raises(PgConnectError, match="not attached to network 'gamma'; its networks: alpha, beta, zeta"):
        pg_connect.container_address(info, "gamma")
    with pytest.raises(PgConnectError, match="no IP address on network 'alpha'"):
        pg_connect.container_address(info, "alpha")


def test_container_address_fallbacks():
    assert pg_connect.container_address(_inspect({}, ip="172.17.0.3")) == "172.17.0.3"
    assert pg_connect.container_address(_inspect({"host": {"IPAddress": ""}}, mode="host")) == "127.0.0.1"
    with pytest.raises(PgConnectError, match="container 'db' has no IP address .network mode 'none'.; publish a port"):
        pg_connect.container_address(_inspect({"none": {"IPAddress": ""}}, mode="none"))


class FakeEngine:
    """Stands in for the engine CLI only (inspect data); the database itself is never faked."""

    def __init__(self, binary):
        self.binary = binary

    def require_running(self, name):
        from ansible_collections.nl_biomero.database.plugins.module_utils.engine import EngineError
        if name != "db":
            raise EngineError("container '%s' does not exist (%s)" % (name, self.binary))
        info = _inspect({"bridge": {"IPAddress": "172.17.0.7"}})
        info["Config"] = {"Env": ["POSTGRES_USER=biomero", "POSTGRES_DB=biomero_db", "POSTGRES_PASSWORD=x"]}
        return info


def test_connect_through_container_passes_resolved_address(monkeypatch):
    monkeypatch.setattr(pg_connect, "detect_engine", lambda preferred: "docker")
    seen = {}

    class Conn:
        def commit(self):
            seen["committed"] = True

    def fake_connect_to_db(module, kwargs, autocommit=False, fail_on_conn=True):
        seen.update(kwargs, autocommit=autocommit, fail_on_conn=fail_on_conn)
        return Conn(), None

    monkeypatch.setattr(postgres, "connect_to_db", fake_connect_to_db)
    pg_connect.connect(FakeModule(container="db", login_password="pw"), engine_factory=FakeEngine)
    assert seen["host"] == "172.17.0.7" and seen["user"] == "biomero" and seen["dbname"] == "biomero_db"
    assert seen["autocommit"] is False and seen["fail_on_conn"] is False and seen["committed"]
    pg_connect.connect(FakeModule(container="db", login_user="admin", login_db="other"), engine_factory=FakeEngine)
    assert seen["user"] == "admin" and seen["dbname"] == "other"
    with pytest.raises(PgConnectError, match="container 'nope' does not exist"):
        pg_connect.connect(FakeModule(container="nope"), engine_factory=FakeEngine)


def test_connect_error_message_names_target_not_password(monkeypatch):
    def refuse(module, kwargs, autocommit=False, fail_on_conn=True):
        return None, 'connection to server at "10.9.9.9", port 5439 failed: Connection refused\n\tIs the server running'

    monkeypatch.setattr(postgres, "connect_to_db", refuse)
    with pytest.raises(PgConnectError) as err:
        pg_connect.connect(FakeModule(login_host="10.9.9.9", login_port=5439, login_password="topsecret"))
    assert "cannot connect to database 'biomero' as user 'postgres' at 10.9.9.9:5439" in str(err.value)
    assert "Connection refused" in str(err.value)
    assert "topsecret" not in str(err.value)
