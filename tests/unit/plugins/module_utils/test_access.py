import pytest

from ansible_collections.nl_biomero.database.plugins.module_utils.access import (
    AccessError, access_plan, listen_setting, normalize_rules, render_hba)

TLS = {"cert": "/etc/ssl/db.crt", "key": "/etc/ssl/db.key"}


def test_rules_render_in_order_before_the_roles_own_lines():
    rules = normalize_rules([{"address": "10.0.0.0/24", "database": "omero", "user": "omero"},
                             {"address": "10.1.2.3", "type": "host"}], True, "omero")
    assert rules == [("hostssl", "omero", "omero", "10.0.0.0/24", "scram-sha-256"),
                     ("host", "all", "all", "10.1.2.3/32", "scram-sha-256")]
    lines = [line.split() for line in render_hba("database", rules).splitlines() if not line.startswith("#")]
    assert lines[0] == ["hostssl", "omero", "omero", "10.0.0.0/24", "scram-sha-256"]
    assert lines[2] == ["local", "all", "all", "trust"]
    assert lines[4] == ["host", "all", "all", "127.0.0.1/32", "scram-sha-256"]


def test_type_defaults_to_host_without_tls():
    assert normalize_rules([{"address": "::1"}], False, "omero")[0][0] == "host"


@pytest.mark.parametrize("rule, words", [
    ({"address": "10.0.0.0/24", "method": "md5"}, ["method 'md5'", "only scram-sha-256"]),
    ({"address": "10.0.0.0/24", "method": "trust"}, ["method 'trust'"]),
    ({"address": "10.0.0.1/24"}, ["address '10.0.0.1/24'", "host bits"]),
    ({"address": "db.example.org"}, ["address 'db.example.org'"]),
    ({}, ["address is required"]),
    ({"address": "10.0.0.0/8", "type": "hostnossl"}, ["type 'hostnossl'"]),
    ({"address": "10.0.0.0/8", "type": "hostssl"}, ["needs TLS"]),
    ({"address": "10.0.0.0/8", "user": "+admins"}, ["user '+admins'"]),
    ({"address": "10.0.0.0/8", "database": "a,b"}, ["database 'a,b'"]),
    ({"address": "10.0.0.0/8", "port": 5432}, ["unknown key(s) port"]),
    ({"type": "local", "address": "10.0.0.0/8", "user": "metabase"}, ["has no address"]),
])
def test_bad_rules_are_refused_naming_the_value(rule, words):
    with pytest.raises(AccessError) as err:
        normalize_rules([{"address": "10.9.0.0/16"}, rule], False, "omero")
    assert "hba[1]" in str(err.value)
    for word in words:
        assert word in str(err.value)


@pytest.mark.parametrize("rule", [{"type": "local"}, {"type": "local", "user": "omero", "database": "omero"}])
def test_a_local_rule_catching_the_superuser_is_a_lockout(rule):
    with pytest.raises(AccessError) as err:
        normalize_rules([rule], False, "omero")
    assert "hba[0]" in str(err.value) and "lock out" in str(err.value) and "omero" in str(err.value)


def test_a_local_rule_for_another_user_is_kept():
    assert normalize_rules([{"type": "local", "user": "metabase"}], False, "omero") == [
        ("local", "all", "metabase", "", "scram-sha-256")]


@pytest.mark.parametrize("value, text", [(["*"], "*"), ("127.0.0.1,10.0.0.5", "127.0.0.1,10.0.0.5"),
                                         (["localhost", "db.example.org"], "localhost,db.example.org")])
def test_listen_addresses(value, text):
    assert listen_setting(value) == text


@pytest.mark.parametrize("value, word", [(["10.0.0.5"], "lock out"), ([""], "not accepted"),
                                         (["a b"], "'a b'"), (5, "must be a list")])
def test_listen_addresses_refused(value, word):
    with pytest.raises(AccessError) as err:
        listen_setting(value)
    assert word in str(err.value)


def test_access_plan_settings():
    assert access_plan("db", "omero") is None
    plan = access_plan("db", "omero", hba=[{"address": "10.0.0.0/24"}], tls=dict(TLS, ca="/etc/ssl/ca.crt"))
    assert plan["settings"] == {
        "ssl": "on", "ssl_cert_file": "/etc/nl-biomero/access/server.crt",
        "ssl_key_file": "/etc/nl-biomero/access/server.key", "ssl_ca_file": "/etc/nl-biomero/access/ca.crt",
        "hba_file": "/etc/nl-biomero/access/pg_hba.conf"}
    assert "hostssl" in plan["hba"] and plan["files"]
    only_listen = access_plan("db", "omero", listen_addresses=["*"])
    assert only_listen["settings"] == {"listen_addresses": "*"} and not only_listen["files"]


@pytest.mark.parametrize("kwargs, word", [
    ({"tls": {"cert": "/a"}}, "key is required"),
    ({"tls": {"cert": "a.crt", "key": "/k"}}, "absolute"),
    ({"tls": dict(TLS, pem="/x")}, "unknown key(s) pem"),
    ({"tls": TLS, "settings": {"ssl": "off"}}, "settings ssl"),
    ({"listen_addresses": ["*"], "settings": {"listen_addresses": "*"}}, "not both"),
    ({"hba": {"address": "10.0.0.0/8"}}, "must be a list"),
])
def test_access_plan_refusals(kwargs, word):
    with pytest.raises(AccessError) as err:
        access_plan("db", "omero", **kwargs)
    assert word in str(err.value)
