import pytest

from ansible_collections.nl_biomero.database.plugins.module_utils.engine import PODMAN_STDIN_DRAIN, ContainerEngine, EngineError, detect_engine


def test_detect_engine_auto_prefers_docker():
    assert detect_engine("auto", which=lambda n: "/usr/bin/" + n) == "docker"
    assert detect_engine("auto", which=lambda n: "/usr/bin/podman" if n == "podman" else None) == "podman"


@pytest.mark.parametrize("preferred,message", [
    ("lxc", "engine 'lxc' is not supported; use one of: auto, docker, podman"),
    ("podman", "no container engine found on PATH \\(looked for: podman\\)"),
])
def test_detect_engine_errors(preferred, message):
    with pytest.raises(EngineError, match=message):
        detect_engine(preferred, which=lambda n: None)


def test_exec_argv_keeps_secrets_out_of_argv():
    argv = ContainerEngine("docker").exec_argv("db; rm -rf /", ["pg_dump", "x"], env_names=["PGPASSWORD"], interactive=True)
    assert argv == ["docker", "exec", "-i", "-e", "PGPASSWORD", "db; rm -rf /", "pg_dump", "x"]


def test_exec_argv_podman_interactive_drains_stdin():
    """podman 4.3 loses exec -i output when the process leaves stdin unread: the wrapper reads the rest."""
    engine = ContainerEngine("podman")
    argv = engine.exec_argv("db", ["pg_restore", "--list"], env_names=["PGPASSWORD"], interactive=True)
    assert argv == ["podman", "exec", "-i", "-e", "PGPASSWORD", "db", "sh", "-c", PODMAN_STDIN_DRAIN, "sh", "pg_restore", "--list"]
    assert engine.exec_argv("db", ["pg_isready"]) == ["podman", "exec", "db", "pg_isready"]
    assert "-t" not in argv
