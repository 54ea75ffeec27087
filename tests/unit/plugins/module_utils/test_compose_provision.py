"""Provisioning of a compose service (pure rules and the override file), beside the upgrade's hand-back."""

import pytest
import yaml

from ansible_collections.nl_biomero.database.plugins.module_utils import compose
from ansible_collections.nl_biomero.database.plugins.module_utils.compose import ComposeError

from test_compose import ENV, PLATFORM, project

COMMAND = ["postgres", "-N", "500", "-c", "log_filename=pg-$x.log"]
HEALTH = {"test": ["CMD", "pg_isready", "-q", "-U", "omero"], "interval": "10s", "retries": 5, "start_period": None}
SETTINGS = dict(command=COMMAND, healthcheck=HEALTH, restart="unless-stopped", mounts=["/logs/db:/var/log/postgresql"])
UPGRADE = dict(image="nl-biomero/postgres:17", volume="p_database-pg17", data_dir="/var/lib/postgresql/data",
               previous_volume="p_database")


def _override(tmp_path):
    return yaml.safe_load((tmp_path / "docker-compose.override.yml").read_text())


def test_settings_are_escaped_and_checked():
    settings = compose.provision_settings(**SETTINGS)
    assert settings["command"][-1] == "log_filename=pg-$$x.log"
    assert settings["healthcheck"] == {"test": HEALTH["test"], "interval": "10s", "retries": 5}
    assert settings["stop_grace_period"] is None
    assert compose.provision_settings(stop_timeout=120, **SETTINGS)["stop_grace_period"] == "120s"
    for bad, message in ((dict(SETTINGS, restart="sometimes"), "restart must be one of"),
                         (dict(SETTINGS, mounts=["logs:/x"]), "mount 'logs:/x' is not"),
                         (dict(SETTINGS, healthcheck={"tset": []}), "unknown key(s) tset"),
                         (dict(SETTINGS, command=[]), "command must be")):
        with pytest.raises(ComposeError, match=message.replace("(", r"\(").replace(")", r"\)")):
            compose.provision_settings(**bad)


def test_provisioning_and_the_upgrade_share_one_file_and_keep_each_other(tmp_path):
    d = project(tmp_path)
    done = compose.ServiceSettings(d, "database", **SETTINGS).run()
    assert done["changed"] and done["file"] == d + "/docker-compose.override.yml"
    entry = _override(tmp_path)["services"]["database"]
    assert entry == {"volumes": ["/logs/db:/var/log/postgresql"], "command": compose.compose_escape(COMMAND),
                     "healthcheck": {"test": HEALTH["test"], "interval": "10s", "retries": 5},
                     "restart": "unless-stopped"}
    assert not compose.ServiceSettings(d, "database", **SETTINGS).run()["changed"]
    assert not compose.handed_back(d, "database")
    # two services: a re-run of each writes the same text (each keeps its place)
    assert compose.ServiceSettings(d, "database-biomero", **SETTINGS).run()["changed"]
    assert not compose.ServiceSettings(d, "database", **SETTINGS).run()["changed"]
    assert not compose.ServiceSettings(d, "database-biomero", **SETTINGS).run()["changed"]
    assert list(_override(tmp_path)["services"]) == ["database", "database-biomero"]
    compose.ServiceSettings(d, "database-biomero", state="absent").run()
    # the project reads the same as before (the override adds no image, keeps the data volume)
    assert compose.read_project(d)["services"]["database"]["image"] == "postgres:16"
    # an upgrade's hand-back keeps provisioning's keys and mount; provisioning again keeps the upgrade's pins
    compose.Handback(d, "database", **UPGRADE).run()
    entry = _override(tmp_path)["services"]["database"]
    assert entry["image"] == UPGRADE["image"] and entry["command"] == compose.compose_escape(COMMAND)
    assert entry["volumes"] == ["p_database-pg17:/var/lib/postgresql/data", "/logs/db:/var/log/postgresql"]
    assert compose.handed_back(d, "database")
    assert not compose.ServiceSettings(d, "database", **SETTINGS).run()["changed"]
    other = dict(SETTINGS)
    other.update(restart="always", mounts=[])
    changed = compose.ServiceSettings(d, "database", **other).run()
    assert changed["changed"] and len(changed["backups"]) == 1
    entry = _override(tmp_path)["services"]["database"]
    assert entry["volumes"] == ["p_database-pg17:/var/lib/postgresql/data"] and entry["restart"] == "always"
    assert _override(tmp_path)["volumes"] == {"p_database-pg17": {"external": True}}
    assert compose.Handback(d, "database", state="absent").run(check_mode=True)["previous_volume"] == "p_database"
    # the rollback removes exactly the upgrade's pins; provisioning's settings stay
    compose.Handback(d, "database", state="absent").run()
    assert _override(tmp_path) == {"version": "3.8", "services": {"database": {
        "command": compose.compose_escape(COMMAND), "healthcheck": entry["healthcheck"], "restart": "always"}}}
    assert not compose.handed_back(d, "database")
    compose.ServiceSettings(d, "database", state="absent").run()
    assert not (tmp_path / "docker-compose.override.yml").exists()
    assert (tmp_path / ".env").read_text() == ENV


def test_provisioning_beside_a_users_override_goes_into_compose_file(tmp_path):
    user = "services:\n  omeroserver:\n    restart: always\n"
    d = project(tmp_path, {"docker-compose.yml": PLATFORM, "docker-compose.override.yml": user})
    compose.ServiceSettings(d, "database-biomero", **SETTINGS).run()
    assert (tmp_path / "docker-compose.override.yml").read_text() == user
    assert "COMPOSE_FILE=docker-compose.yml:docker-compose.override.yml:docker-compose.nl-biomero.yml" in (
        tmp_path / ".env").read_text()
    assert "database-biomero" in yaml.safe_load((tmp_path / "docker-compose.nl-biomero.yml").read_text())["services"]


def test_container_differs():
    info = {"State": {"Running": True}, "Config": {"Cmd": COMMAND, "Healthcheck": {"Test": HEALTH["test"]}},
            "HostConfig": {"RestartPolicy": {"Name": "unless-stopped"}},
            "Mounts": [{"Type": "volume", "Source": "/x", "Destination": "/var/lib/postgresql/data"},
                       {"Type": "bind", "Source": "/logs/db", "Destination": "/var/log/postgresql"}]}
    args = (COMMAND, HEALTH["test"], "unless-stopped", ["/logs/db:/var/log/postgresql"])
    assert compose.container_differs(info, *args) == []
    assert compose.container_differs(None, *args) == ["no container"]
    assert compose.container_differs(info, COMMAND[:3], HEALTH["test"], "always", ["/l:/m"]) == [
        "command", "restart", "mounts"]
    assert compose.container_differs(info, *args, stop_timeout=120) == ["stop timeout"]
    info["Config"]["StopTimeout"] = 120
    assert compose.container_differs(info, *args, stop_timeout=120) == []


def test_service_facts(tmp_path):
    d = project(tmp_path, env=ENV + "COMPOSE_PROJECT_NAME=p\n")
    facts = compose.service_facts(compose.read_project(d), "database-biomero", {})
    assert facts == {"project": "p", "dir": d, "service": "database-biomero", "container": "p_database-biomero_1",
                     "exists": False, "image": "postgres:16", "user": "biomero", "database": "biomero_db"}
    with pytest.raises(ComposeError, match="has no service databse"):
        compose.service_facts(compose.read_project(d), "databse", {})


@pytest.mark.parametrize("version, allowed", [(None, True), ("3.8", True), ("3.4", True), ("3", False),
                                              ("3.3", False), ("2.3", True), ("2.1", False), ("2", False)])
def test_start_period_needs_a_recent_file_format(version, allowed):
    assert compose.start_period_allowed(version) is allowed


def test_start_period_on_an_old_format_is_refused_before_anything_is_written(tmp_path):
    d = project(tmp_path, {"docker-compose.yml": PLATFORM.replace('version: "3.8"', 'version: "3"')})
    old = dict(SETTINGS)
    old["healthcheck"] = dict(HEALTH, start_period="60s")
    with pytest.raises(ComposeError, match=r"compose file format 3 \(version: of .*docker-compose.yml\) has no "
                                           r"healthcheck start_period"):
        compose.ServiceSettings(d, "database", **old).run()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".env", "docker-compose.yml"]
    assert compose.ServiceSettings(d, "database", **SETTINGS).run()["changed"]  # without start_period
