import pytest

from ansible_collections.nl_biomero.database.plugins.module_utils import engine_args as ea

SPEC = {
    "name": "database", "image": "postgres:16", "state": "started",
    "command": ["postgres", "-N", "40", "-c", "work_mem=8MB"],
    "env": {"POSTGRES_USER": "omero"},
    "mounts": [
        {"type": "volume", "source": "database", "target": "/var/lib/postgresql/data"},
        {"type": "bind", "source": "/srv/init", "target": "/docker-entrypoint-initdb.d", "read_only": True,
         "relabel": "Z"},
        {"type": "bind", "source": "/srv/logs", "target": "/var/log/postgresql", "relabel": "z"},
        {"type": "bind", "source": "/srv/tls", "target": "/etc/pg", "read_only": True},
    ],
    "labels": {"a": "b"},
    "networks": [{"name": "omero", "aliases": ["db"]}],
    "network_mode": "omero",
    "published_ports": ["127.0.0.1:5433:5432"],
    "healthcheck": {"test": ["CMD", "pg_isready", "-q", "-U", "o'mero"], "interval": "10s", "retries": 5},
    "shm_size": "256m", "memory": None, "cpus": 1.5,
    "restart_policy": "unless-stopped", "stop_signal": "SIGINT", "stop_timeout": 120,
}


def test_podman_container_maps_every_argument_the_roles_use():
    out = ea.podman_container(SPEC)
    assert out["volume"] == ["database:/var/lib/postgresql/data", "/srv/init:/docker-entrypoint-initdb.d:ro,Z",
                             "/srv/logs:/var/log/postgresql:z", "/srv/tls:/etc/pg:ro"]
    assert out["network"] == ["omero"] and out["network_aliases"] == ["db"]
    assert out["healthcheck"] == "pg_isready -q -U 'o'\"'\"'mero'"
    assert out["healthcheck_interval"] == "10s" and out["healthcheck_retries"] == "5"
    assert out["stop_signal"] == 2 and out["cpus"] == "1.5" and "memory" not in out
    assert out["label"] == {"a": "b"} and out["publish"] == ["127.0.0.1:5433:5432"]
    assert out["state"] == "started" and out["command"] == SPEC["command"]


def test_docker_container_moves_only_relabelled_binds_to_volumes():
    out = ea.docker_container(SPEC)
    assert [m["target"] for m in out["mounts"]] == ["/var/lib/postgresql/data", "/etc/pg"]
    assert all("relabel" not in m for m in out["mounts"])
    assert out["volumes"] == ["/srv/init:/docker-entrypoint-initdb.d:ro,Z", "/srv/logs:/var/log/postgresql:z"]
    plain = dict(SPEC, mounts=[SPEC["mounts"][0]])
    assert ea.docker_container(plain) == plain  # no relabel: exactly the arguments given


def test_absent_keeps_only_name_and_timeout():
    assert ea.podman_container({"name": "x", "state": "absent", "stop_timeout": 30}) == {
        "name": "x", "state": "absent", "stop_timeout": 30}


@pytest.mark.parametrize("args, named", [
    (dict(SPEC, devices=["/dev/fuse"]), "devices"),
    (dict(SPEC, mounts=[{"type": "volume", "source": "v", "target": "/d", "relabel": "Z"}]), "bind mounts only"),
    (dict(SPEC, mounts=[{"type": "bind", "source": "/s", "target": "/d", "relabel": "Q"}]), "relabel 'Q'"),
    (dict(SPEC, stop_signal="SIGNOPE"), "SIGNOPE"),
    (dict(SPEC, state="running"), "state 'running'"),
])
def test_arguments_podman_cannot_honour_are_named(args, named):
    with pytest.raises(ea.EngineArgsError) as caught:
        ea.podman_container(args)
    assert named in str(caught.value)


def test_module_for_each_kind_and_bad_engine():
    assert ea.module_for("docker", "volume", {"name": "v"}) == ("community.docker.docker_volume", {"name": "v"})
    assert ea.module_for("podman", "volume", {"name": "v", "labels": {"k": "v"}}) == (
        "containers.podman.podman_volume", {"name": "v", "state": "present", "label": {"k": "v"}})
    assert ea.module_for("podman", "exec", {"container": "c", "argv": ["psql"]}) == (
        "containers.podman.podman_container_exec", {"name": "c", "argv": ["psql"]})
    assert ea.module_for("podman", "image_pull", {"name": "postgres", "tag": "16", "pull": "not_present"}) == (
        "containers.podman.podman_image", {"name": "postgres:16", "state": "present"})
    with pytest.raises(ea.EngineArgsError, match="engine 'lxc'"):
        ea.module_for("lxc", "container", {})
    assert ea.module_for("podman", "exec", {"container": "c", "argv": ["psql", "-f", "-"], "stdin": "SELECT 1",
                                            "env": {"A": "1"}, "stdin_add_newline": False}) == (
        "ansible.builtin.command", {"argv": ["podman", "exec", "-i", "--env", "A=1", "c", "psql", "-f", "-"],
                                    "stdin": "SELECT 1", "stdin_add_newline": False})
    with pytest.raises(ea.EngineArgsError, match="detach"):
        ea.module_for("podman", "exec", {"container": "c", "argv": ["psql"], "detach": True})


INSPECTED = [
    {"Id": "1", "Name": "database", "ImageName": "localhost/nl-biomero/postgres:17",
     "State": {"Status": "running", "Health": {"Status": "healthy"}},
     "Config": {"Labels": {"nl-biomero.database.major": "17"}}},
    {"Id": "2", "Name": "database-biomero", "ImageName": "postgres:16",
     "State": {"Status": "running", "Health": {"Status": "starting"}}, "Config": {"Labels": None}},
    {"Id": "3", "Name": "old", "State": {"Status": "exited", "ExitCode": 0}, "Config": {"Image": "postgres:15"}},
    {"Id": "4", "Name": "new", "State": {"Status": "configured"}, "Config": {}},
]


def test_podman_listed_speaks_docker_host_info():
    listed = ea.podman_listed(INSPECTED)
    assert listed[0] == {"Id": "1", "Names": ["/database"], "Image": "localhost/nl-biomero/postgres:17",
                         "State": "running", "Status": "Up (healthy)",
                         "Labels": {"nl-biomero.database.major": "17"}}
    assert listed[1]["Status"] == "Up (health: starting)" and listed[1]["Labels"] == {}
    assert (listed[2]["State"], listed[2]["Status"], listed[2]["Image"]) == ("exited", "Exited (0)", "postgres:15")
    assert listed[3]["State"] == "created"


def test_filter_listed_by_anchored_name_and_label():
    listed = ea.podman_listed(INSPECTED)
    assert [c["Id"] for c in ea.filter_listed(listed, {"name": ["^/database$"]})] == ["1"]
    assert [c["Id"] for c in ea.filter_listed(listed, {"label": "nl-biomero.database.major=17"})] == ["1"]
    assert [c["Id"] for c in ea.filter_listed(listed, {"label": "nl-biomero.database.major=15"})] == []
    assert len(ea.filter_listed(listed, {})) == 4
    assert ea.unknown_filters({"name": [], "status": "running"}) == ["status"]


# ---- engine_network on podman: the CLI plan ----------------------------------------------------

def test_network_plan_creates_with_labels_and_connects():
    args = {"name": "n", "connected": ["old"], "appends": True, "labels": {"b": "2", "a": "1"}}
    assert ea.podman_network_plan(args, False, []) == [
        ["podman", "network", "create", "--label", "a=1", "--label", "b=2", "n"],
        ["podman", "network", "connect", "n", "old"]]


def test_network_plan_is_idempotent_and_appends_keeps_others():
    args = {"name": "n", "connected": ["old"], "appends": True}
    assert ea.podman_network_plan(args, True, ["old", "staging"]) == []


def test_network_plan_without_appends_disconnects_the_others():
    args = {"name": "n", "connected": ["old"], "appends": False}
    assert ea.podman_network_plan(args, True, ["staging"]) == [
        ["podman", "network", "connect", "n", "old"], ["podman", "network", "disconnect", "n", "staging"]]


def test_network_plan_force_absent_disconnects_never_removes_containers():
    steps = ea.podman_network_plan({"name": "n", "state": "absent", "force": True}, True, ["b", "a"])
    assert steps == [["podman", "network", "disconnect", "--force", "n", "a"],
                     ["podman", "network", "disconnect", "--force", "n", "b"], ["podman", "network", "rm", "n"]]
    assert ea.podman_network_plan({"name": "n", "state": "absent", "force": True}, False, []) == []


def test_network_plan_refuses_what_it_cannot_honour():
    with pytest.raises(ea.EngineArgsError, match="used by a; set force"):
        ea.podman_network_plan({"name": "n", "state": "absent"}, True, ["a"])
    with pytest.raises(ea.EngineArgsError, match="driver cannot be honoured.*accepted: appends"):
        ea.podman_network_plan({"name": "n", "driver": "macvlan"}, False, [])
    with pytest.raises(ea.EngineArgsError, match="state 'quadlet'"):
        ea.podman_network_plan({"name": "n", "state": "quadlet"}, False, [])


def test_elsewhere_probe_asks_the_other_engine_only_for_the_missing_names():
    listed = [{"Names": ["/here"]}]
    other, command = ea.elsewhere_probe("podman", ["here", "db 1"], listed)
    assert other == "docker"
    assert command.startswith("command -v docker >/dev/null 2>&1 && docker container inspect")
    assert "'db 1'" in command and " here" not in command
    assert ea.elsewhere_probe("docker", ["here"], listed) == ("podman", None)
    assert ea.elsewhere_found("docker", "/db 1\n\n") == {"db 1": "docker"}
