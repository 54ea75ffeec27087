import pytest

from ansible_collections.nl_biomero.database.plugins.module_utils.engine import ContainerEngine, EngineError, detect_engine


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
    argv = ContainerEngine("podman").exec_argv("db; rm -rf /", ["pg_dump", "x"], env_names=["PGPASSWORD"], interactive=True)
    assert argv == ["podman", "exec", "-i", "-e", "PGPASSWORD", "db; rm -rf /", "pg_dump", "x"]
    assert "-t" not in argv
