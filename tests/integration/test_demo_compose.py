"""./scripts/demo.sh compose (playbooks/demo_compose.yml): a project laid out like NL-BIOMERO's is brought up
with docker-compose, taken over by the role, backed up and restore-tested; then its cleanup."""

import os
import subprocess

import yaml

import compose_fixture
from harness import REPO_ROOT, engine, require_image, unique

pytestmark = compose_fixture.pytestmark  # docker and docker-compose


def test_compose_demo(tmp_path):
    """./scripts/demo.sh compose runs playbooks/demo_compose.yml after the machine's setup: run it (with a
    unique project name and a tmp directory), check what it printed and did, then its cleanup."""
    require_image(17)
    name = unique("nlbtest-democ")
    extra = ["-e", "demo_dir=%s" % (tmp_path / "demo"), "-e", "demo_project=%s" % name]

    def play(playbook):
        proc = subprocess.run(["ansible-playbook", "-i", "localhost,", os.path.join(REPO_ROOT, "playbooks", playbook)]
                              + extra, capture_output=True, text=True, timeout=600, check=False, cwd=REPO_ROOT)
        assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
        return proc.stdout

    try:
        out = play("demo_compose.yml")
        summary = out[out.index("TASK [Summary]"):]
        assert "%s_database_1 (database)" % name in summary
        assert "max_connections=500" in summary and "omero." in summary and "biomero." in summary
        assert "complete; restore test: restorable" in summary
        db = "%s_database_1" % name
        assert engine("exec", db, "psql", "-X", "-At", "-U", "omero", "-d", "omero", "-c",
                      "SELECT current_setting('max_connections'), current_setting('logging_collector'), "
                      "(SELECT count(*) FROM job)").stdout.strip() == "500|on|500"
        with open(tmp_path / "demo" / "nl-biomero" / "docker-compose.override.yml") as handle:
            assert yaml.safe_load(handle.read())["services"]["database"]["command"][:3] == ["postgres", "-N", "500"]
        for password in ("omero-db.password", "biomero-db.password"):
            assert open(tmp_path / "demo" / password).read().strip() not in out
    finally:
        play("demo_compose_cleanup.yml")
    assert engine("ps", "-aq", "--filter", "label=com.docker.compose.project=" + name).stdout.strip() == ""
    assert engine("volume", "ls", "-q", "--filter", "label=com.docker.compose.project=" + name).stdout.strip() == ""
    assert not os.path.exists(tmp_path / "demo")
