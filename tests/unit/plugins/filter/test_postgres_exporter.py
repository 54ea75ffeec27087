import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.nl_biomero.database.plugins.filter.postgres_container import (
    postgres_container_plan,
    postgres_container_spec,
)
from ansible_collections.nl_biomero.database.plugins.filter.postgres_exporter import (
    FilterModule,
    postgres_container_exporters,
    postgres_container_stale_exporters,
)

COMMON = {"state": "started", "image": "postgres:16", "network": "omero", "max_connections": 100, "tuning": "none",
          "restart_policy": "unless-stopped", "exporter_user": "nlb_monitor", "healthcheck": {}}
OMERO = {"name": "database", "role": "omero", "user": "omero", "db": "omero", "password": "owner"}
MON_PW = "m0n 'pw\""
IMAGE = "nl-biomero/postgres-exporter:0.11.1"


def specs(instances):
    plans = postgres_container_plan(instances, dict(COMMON), 4096, 2)
    probed = {"instances": [{"name": p["name"], "major": 16, "uid": 999, "gid": 999}
                            for p in plans if p["state"] == "started"]}
    return postgres_container_spec(plans, dict(COMMON), probed)


def test_filters_are_registered():
    assert set(FilterModule().filters()) == {"postgres_container_exporters", "postgres_container_stale_exporters"}


def test_exporter_spec_carries_no_password_and_connects_by_name():
    spec = specs([dict(OMERO, exporter={"enabled": True, "port": 9187, "password": MON_PW})])
    assert spec[0]["exporter"] == {"port": 9187, "user": "nlb_monitor"}
    (exporter,) = postgres_container_exporters(spec, IMAGE, "127.0.0.1", "disable", {"site": "x"})
    assert MON_PW not in repr(spec) + repr(exporter)
    assert exporter["name"] == "database-exporter" and exporter["instance"] == "database"
    assert exporter["env"] == {"DATA_SOURCE_NAME": "host='database' port=5432 dbname='omero' "
                                                   "user='nlb_monitor' sslmode=disable"}
    assert exporter["published_ports"] == ["127.0.0.1:9187:9187"]
    assert exporter["networks"] == [{"name": "omero"}] and exporter["restart_policy"] == "unless-stopped"
    assert exporter["labels"]["nl-biomero.database.exporter-of"] == "database"
    assert exporter["labels"]["site"] == "x"


@pytest.mark.parametrize("exporter", [None, {"enabled": False}, {"enabled": "no", "port": 1}])
def test_exporter_off_or_absent_plans_nothing(exporter):
    instance = dict(OMERO, exporter=exporter) if exporter is not None else dict(OMERO)
    assert postgres_container_exporters(specs([instance]), IMAGE) == []


def test_absent_instance_keeps_no_exporter_password():
    spec = specs([dict(OMERO, state="absent", exporter={"password": MON_PW})])
    assert spec[0]["exporter"] is None and MON_PW not in repr(spec)


def test_port_none_publishes_nothing_and_user_is_per_instance():
    spec = specs([dict(OMERO, exporter={"password": "p", "port": None, "user": "metrics"})])
    (exporter,) = postgres_container_exporters(spec, IMAGE)
    assert exporter["published_ports"] == [] and exporter["env"]["DATA_SOURCE_NAME"].endswith("user='metrics' sslmode=disable")


@pytest.mark.parametrize("exporter, message", [
    ({"password": "p", "port": 70000}, "exporter.port must be a host port from 1 to 65535, or none to publish nothing (got 70000)"),
    ({"password": "p", "port": 0}, "(got 0)"),
    ({"password": "p", "port": "abc"}, "(got 'abc')"),
    ({"password": "p", "port": True}, "(got True)"),
    ({"port": 9187}, "exporter.password is required"),
    ({"password": "p", "colour": "red"}, "exporter: unknown key(s) colour (accepted: enabled, port, password, user)"),
    ({"password": "p", "enabled": "maybe"}, "exporter.enabled must be a boolean (got 'maybe')"),
    ("yes", "exporter must be a mapping"),
])
def test_bad_exporter_settings_are_refused_naming_the_value(exporter, message):
    with pytest.raises(AnsibleFilterError) as err:
        specs([dict(OMERO, exporter=exporter)])
    assert "instance 'database'" in str(err.value) and message in str(err.value)


def test_exporter_needs_a_network_and_a_plain_user():
    with pytest.raises(AnsibleFilterError, match="needs the instance on a network"):
        postgres_container_exporters(specs([dict(OMERO, network="", exporter={"password": "p"})]), IMAGE)
    with pytest.raises(AnsibleFilterError, match="quote or backslash"):
        postgres_container_exporters(specs([dict(OMERO, exporter={"password": "p", "user": "o'neil"})]), IMAGE)


def test_stale_exporters_are_those_of_planned_instances_without_one():
    found = [{"Names": ["/database-exporter"], "Labels": {"nl-biomero.database.exporter-of": "database"}},
             {"Names": ["/other-exporter"], "Labels": {"nl-biomero.database.exporter-of": "other"}},
             {"Names": ["/database-biomero-exporter"],
              "Labels": {"nl-biomero.database.exporter-of": "database-biomero"}}]
    plans = specs([dict(OMERO, exporter={"enabled": False}),
                   dict(OMERO, name="database-biomero", exporter={"password": "p"})])
    wanted = postgres_container_exporters(plans, IMAGE)
    # other: an instance this play does not manage keeps its exporter
    assert postgres_container_stale_exporters(found, plans, wanted) == ["database-exporter"]
