"""compose.project_view and compose.client_argv: a project named by its directory, and clients the compose way."""

import pytest

from ansible_collections.nl_biomero.database.plugins.module_utils import compose
from ansible_collections.nl_biomero.database.plugins.module_utils.compose import ComposeError
from ansible_collections.nl_biomero.database.plugins.module_utils.engine import ContainerEngine


def _project(*services, name="nl-biomero", directory="/opt/NL-BIOMERO"):
    return {"name": name, "dir": directory, "files": [directory + "/docker-compose.yml"],
            "services": dict((service, {}) for service in services)}


def _labels(service, project="nl-biomero", directory="/opt/NL-BIOMERO", number=1, oneoff=None):
    labels = {compose.PROJECT: project, compose.SERVICE: service, compose.WORKING_DIR: directory,
              compose.NUMBER: str(number)}
    if oneoff:
        labels[compose.ONEOFF] = "True"
    return labels


PLATFORM = _project("database", "database-biomero", "omeroserver", "omeroweb", "biomero-importer", "redis")


@pytest.mark.parametrize("sep", ["_", "-"])  # compose v1 and v2 names
def test_view_of_the_platform(sep):
    containers = dict(("nl-biomero%s%s%s1" % (sep, service, sep), _labels(service))
                      for service in ("database", "database-biomero", "omeroserver", "biomero-importer"))
    containers["nl-biomero_database_run_1"] = _labels("database", oneoff=True)
    view = compose.project_view(PLATFORM, containers)
    assert view["instances"] == {
        "omero": {"service": "database", "container": "nl-biomero%sdatabase%s1" % (sep, sep)},
        "biomero": {"service": "database-biomero", "container": "nl-biomero%sdatabase-biomero%s1" % (sep, sep)}}
    # only the platform's clients the project defines; omeroweb has no container (not up): left out
    assert view["client_services"] == ["omeroserver", "omeroweb", "biomero-importer"]
    assert view["clients"] == ["nl-biomero%someroserver%s1" % (sep, sep), "nl-biomero%sbiomero-importer%s1" % (sep, sep)]
    assert (view["project"], view["project_dir"]) == ("nl-biomero", "/opt/NL-BIOMERO")


def test_view_with_own_service_names_and_clients():
    project = _project("db", "redis", "web")
    containers = {"nl-biomero_db_1": _labels("db"), "nl-biomero_web_1": _labels("web")}
    view = compose.project_view(project, containers, services={"omero": "db", "biomero": ""}, clients=["web"])
    assert view["instances"] == {"omero": {"service": "db", "container": "nl-biomero_db_1"}}
    assert view["clients"] == ["nl-biomero_web_1"]


@pytest.mark.parametrize("services, clients, containers, expect", [
    ({"omero": "databse"}, None, {}, "compose project /opt/NL-BIOMERO has no service databse"),
    ({"omero": "database"}, ["omeroserver", "omero-web"], {"nl-biomero_database_1": _labels("database")},
     "has no service omero-web"),
    ({"omero": "database"}, None, {}, "service database of compose project nl-biomero (/opt/NL-BIOMERO) has no "
                                      "container: run docker-compose up -d"),
    ({"omero": "database"}, None, {"nl-biomero_database_1": _labels("database"),
                                   "nl-biomero-database-1": _labels("database", directory="/srv/other")},
     "two compose projects claim service database of project nl-biomero: /opt/NL-BIOMERO and /srv/other"),
    ({"omero": "database"}, None, {"nl-biomero_database_1": _labels("database", directory="/srv/other")},
     "container nl-biomero_database_1 was made by the compose project in /srv/other, not by /opt/NL-BIOMERO"),
])
def test_view_refuses(services, clients, containers, expect):
    with pytest.raises(ComposeError, match=expect.replace("(", r"\(").replace(")", r"\)")):
        compose.project_view(PLATFORM, containers, services=services, clients=clients)


def test_view_without_containers_when_not_required():
    view = compose.project_view(PLATFORM, {}, require_containers=False)
    assert view["instances"]["omero"] == {"service": "database", "container": None}
    assert view["clients"] == []


def _engine_argv(*args):
    return ["docker"] + list(args)


@pytest.mark.parametrize("action, timeout, expect", [
    ("stop", 30, ["docker-compose", "-p", "nl-biomero", "stop", "-t", "30", "omeroserver"]),
    ("start", 30, ["docker-compose", "-p", "nl-biomero", "start", "omeroserver"]),
    ("pause", None, ["docker-compose", "-p", "nl-biomero", "pause", "omeroserver"]),
])
def test_client_argv_the_compose_way(action, timeout, expect):
    argv, cwd = compose.client_argv("nl-biomero_omeroserver_1", _labels("omeroserver"), action, ["docker-compose"],
                                    _engine_argv, timeout)
    assert (argv, cwd) == (expect, "/opt/NL-BIOMERO")
    argv, _cwd = compose.client_argv("x", _labels("omeroserver"), action, ["docker", "compose"], _engine_argv, timeout)
    assert argv[:3] == ["docker", "compose", "-p"]


@pytest.mark.parametrize("labels, command", [
    ({}, ["docker-compose"]),                                   # not made by compose
    ({compose.PROJECT: "p", compose.SERVICE: "s"}, ["docker-compose"]),  # no project directory in its labels
    (_labels("omeroserver"), []),                               # compose not asked for
])
def test_client_argv_with_the_engine(labels, command):
    assert compose.client_argv("web", labels, "stop", command, _engine_argv, 5) == (
        ["docker", "stop", "-t", "5", "web"], None)
    assert compose.client_argv("web", labels, "start", command, _engine_argv, 5) == (["docker", "start", "web"], None)


class _Engine(object):
    binary = "docker"
    timeout = None

    def argv(self, *args):
        return _engine_argv(*args)


def test_client_control_falls_back_to_the_engine_when_compose_is_not_installed():
    control = compose.ClientControl(_Engine(), ["nlb-no-such-compose"], timeout=5)
    assert control.notes == ["nlb-no-such-compose is not installed: client containers made by compose are stopped "
                             "and started with docker"]
    assert control.how("web", _labels("omeroserver")) == "engine"
    assert compose.ClientControl(_Engine(), ["sh"]).how("web", _labels("omeroserver")) == "compose"
    assert compose.ClientControl(_Engine(), ["sh"]).how("web", {}) == "engine"


class _PodmanWithoutTheClient(_Engine):
    """podman, where client 'web' is missing but docker has it; 'db' runs here."""
    binary = "podman"

    def __init__(self):
        self.acted = []

    def inspect(self, name):
        return {"State": {"Running": True}, "Config": {"Labels": {}}} if name == "db" else None

    def other_engine_having(self, name):
        return "docker" if name == "web" else None

    missing = ContainerEngine.missing
    other_engine_refusal = ContainerEngine.other_engine_refusal


def test_clients_to_refuses_a_client_of_the_other_engine_before_stopping_anything():
    engine = _PodmanWithoutTheClient()
    with pytest.raises(ComposeError, match="client container 'web' does not exist in podman; a container 'web' "
                                           "exists in docker: the engine is podman") as caught:
        compose.clients_to(engine, ["db", "web"], "stopped", timeout=1)
    assert caught.value.result["changed_clients"] == [], "nothing is stopped"


def test_container_engine_missing_names_only_an_engine_that_has_it(monkeypatch):
    engine = ContainerEngine("docker")
    assert engine.other_engine_having("x", which=lambda name: None) is None
    monkeypatch.setattr(ContainerEngine, "other_engine_having", lambda self, name: None)
    assert engine.missing("x", "client container") == "client container 'x' does not exist in docker"
