"""postgres_container takes over the database services of a real docker-compose (1.29.2) project modelled on
NL-BIOMERO's: the tuning, logging, health check and restart policy go into the project's override, compose
applies them, and every later docker-compose up (or down/up) keeps them. One project for the whole module."""

import json
import os
import subprocess
import time

import pytest
import yaml

from harness import IMAGES, REPO_ROOT, engine, require_image, unique
import compose_fixture
from compose_fixture import ENV, PROJECT, Project

from ansible_collections.nl_biomero.database.plugins.module_utils import compose

pytestmark = compose_fixture.pytestmark  # docker and docker-compose

INSTANCES = [
    {"name": "database", "max_connections": 150, "logging": True, "log_statement": "all",
     "settings": {"work_mem": "8MB", "log_line_prefix": "%m [$pid] "}},
    {"name": "database-biomero", "max_connections": 60},
]


class Site(Project):
    def __init__(self, directory, name, work):
        Project.__init__(self, directory, name)
        self.work = work
        self.biomero = "%s_database-biomero_1" % name

    def provision(self, *options, **host):
        """playbooks/provision.yml on this host with the project taken over; (rc, stdout)."""
        values = {"ansible_connection": "local",
                  "ansible_python_interpreter": os.environ.get("ANSIBLE_PYTHON_INTERPRETER", "auto"),
                  "postgres_container_compose_project": self.dir, "postgres_container_pull": False,
                  "postgres_container_log_root": os.path.join(self.work, "logs"),
                  "postgres_container_tuning_memory_mb": 512, "postgres_container_stop_timeout": 30,
                  "postgres_container_wait_timeout": 90,
                  "postgres_container_healthcheck": {"interval": "1s", "timeout": "5s", "retries": 5,
                                                     "start_period": "30s"},
                  "postgres_container_instances": INSTANCES}
        values.update(host)
        inventory = os.path.join(self.work, "inventory.json")
        with open(inventory, "w") as handle:
            json.dump({"nl_biomero_database": {"hosts": {"localhost": values}}}, handle)
        proc = subprocess.run(["ansible-playbook", "-i", inventory, os.path.join(REPO_ROOT, "playbooks",
                                                                                 "provision.yml")] + list(options),
                              capture_output=True, text=True, timeout=600, check=False)
        return proc.returncode, proc.stdout + proc.stderr

    def ids(self):
        return [engine("inspect", "-f", "{{.Id}}", name).stdout.strip() for name in (self.db, self.biomero)]

    def show(self, container, user, setting):
        return engine("exec", container, "psql", "-X", "-At", "-U", user, "-d", user, "-c",
                      "SHOW %s" % setting).stdout.strip()

    def override(self):
        with open(os.path.join(self.dir, "docker-compose.override.yml")) as handle:
            return handle.read()


def _recap(output):
    return output.split("PLAY RECAP")[1].split("\n")[1]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    require_image(15)
    tmp = tmp_path_factory.mktemp("compose-provision")
    name = unique("nlbtest-cprov")
    directory = tmp / "nl-biomero"
    directory.mkdir()
    (tmp / "work").mkdir()
    (directory / "docker-compose.yml").write_text(PROJECT.format(pg15=IMAGES[15]))
    (directory / ".env").write_text(ENV.format(name=name))
    project = Site(str(directory), name, str(tmp / "work"))
    try:
        project.up()
        project.sql("CREATE TABLE t (id int PRIMARY KEY, note text); INSERT INTO t VALUES (1, 'before')")
        yield project
    finally:
        project.compose("-p", name, "down", "-v", "--remove-orphans", check=False)
        for left in engine("ps", "-aq", "--filter", "label=com.docker.compose.project=" + name).stdout.split():
            engine("rm", "-f", "-v", left, check=False)


def test_takeover_tunes_the_services_and_compose_keeps_it(site):
    started = time.time()
    volumes_before = engine("inspect", "-f", "{{json .Mounts}}", site.db).stdout
    env_before = engine("inspect", "-f", "{{json .Config.Env}}", site.db).stdout
    rc, out = site.provision()
    assert rc == 0, out[-6000:]
    first = time.time() - started

    # The override the project now loads (it had none: compose loads docker-compose.override.yml by default).
    logs = os.path.join(site.work, "logs", "database")
    health = ["CMD", "pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432"]
    text = site.override()
    assert text.startswith(compose.MARKER + "\n")
    assert yaml.safe_load(text) == {"version": "3.8", "services": {
        "database": {
            "volumes": ["%s:/var/log/postgresql" % logs],
            "command": ["postgres", "-N", "150", "-c", "effective_cache_size=384MB", "-c", "log_directory=/var/log/postgresql",
                        "-c", "log_filename=postgresql-%a.log", "-c", "log_line_prefix=%m [$$pid] ",
                        "-c", "log_rotation_age=1d", "-c", "log_rotation_size=0", "-c", "log_statement=all",
                        "-c", "log_truncate_on_rotation=on", "-c", "logging_collector=on", "-c", "maintenance_work_mem=32MB", "-c", "max_wal_size=1024MB",
                        "-c", "shared_buffers=128MB", "-c", "work_mem=8MB"],
            "healthcheck": {"test": health + ["-U", "omero", "-d", "omero"], "interval": "1s", "timeout": "5s",
                            "retries": 5, "start_period": "30s"},
            "restart": "unless-stopped", "stop_grace_period": "30s"},
        "database-biomero": {
            "command": ["postgres", "-N", "60", "-c", "effective_cache_size=384MB", "-c", "maintenance_work_mem=32MB",
                        "-c", "max_wal_size=1024MB", "-c", "shared_buffers=128MB", "-c", "work_mem=2184kB"],
            "healthcheck": {"test": health + ["-U", "biomero", "-d", "biomero"], "interval": "1s",
                            "timeout": "5s", "retries": 5, "start_period": "30s"},
            "restart": "unless-stopped", "stop_grace_period": "30s"}}}
    # the user's files untouched (the second service's write kept a copy of our own file of the first)
    assert sorted(name for name in os.listdir(site.dir) if ".nlb-backup-" not in name) == [
        ".env", "docker-compose.override.yml", "docker-compose.yml"]
    assert [name.split(".nlb-backup-")[0] for name in os.listdir(site.dir) if ".nlb-backup-" in name] == [
        "docker-compose.override.yml"]

    def check_running():
        assert site.show(site.db, "omero", "max_connections") == "150"
        assert site.show(site.db, "omero", "work_mem") == "8MB"
        assert site.show(site.db, "omero", "shared_buffers") == "128MB"
        assert site.show(site.db, "omero", "logging_collector") == "on"
        assert site.show(site.db, "omero", "log_directory") == "/var/log/postgresql"
        assert site.show(site.db, "omero", "log_line_prefix") == "%m [$pid]"  # (psql's output stripped)
        assert site.show(site.biomero, "biomero", "max_connections") == "60"
        for name in (site.db, site.biomero):
            info = json.loads(engine("inspect", name).stdout)[0]
            assert info["Config"]["Healthcheck"]["Test"][:3] == ["CMD", "pg_isready", "-q"]
            assert info["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
        assert site.sql("SELECT note FROM t WHERE id = 1") == "before"

    check_running()
    assert engine("inspect", "-f", "{{.State.Health.Status}}", site.db).stdout.strip() == "healthy"
    # the same data volume and the platform's variables (the password from .env)
    assert engine("inspect", "-f", "{{json .Mounts}}", site.db).stdout.count('"Name":"%s_database"' % site.name) == 1
    assert json.loads(volumes_before)[0]["Name"] in engine("inspect", "-f", "{{json .Mounts}}", site.db).stdout
    # (compose v1 adds affinity:container==<old id> to a container it re-creates)
    assert sorted(item for item in json.loads(engine("inspect", "-f", "{{json .Config.Env}}", site.db).stdout)
                  if not item.startswith("affinity:")) == sorted(json.loads(env_before))
    assert [name for name in os.listdir(logs) if name.startswith("postgresql-")]
    # the password never shows
    assert "om ero\"pw" not in out and "bio$pw" not in out

    # Second run: nothing changes, nothing is re-created.
    ids = site.ids()
    started = time.time()
    rc, out = site.provision()
    second = time.time() - started
    assert rc == 0 and "changed=0" in _recap(out), out[-4000:]
    assert site.ids() == ids
    print("first run %.1f s, second %.1f s" % (first, second))

    # A routine redeploy keeps the tuning without re-creating anything; down and up again keeps it too.
    assert "Recreating" not in site.compose("up", "-d").stderr
    assert site.ids() == ids
    site.compose("down")
    site.up()
    check_running()


def test_check_mode_tells_the_truth_and_changes_nothing(site):
    before, ids = site.override(), site.ids()
    rc, out = site.provision("--check", "--diff", postgres_container_instances=[dict(INSTANCES[0], max_connections=90),
                                                                                INSTANCES[1]])
    assert rc == 0, out[-4000:]
    assert "-    - '150'\n+    - '90'\n" in out, out[-4000:]
    assert "changed=0" not in _recap(out)
    assert site.override() == before and site.ids() == ids


@pytest.mark.parametrize("host, message", [
    ({"postgres_container_instances": [{"name": "database", "settings": {"work_mem": "lots"}}]},
     "'work_mem' = 'lots'"),
    ({"postgres_container_instances": [{"name": "database", "compose_service": "databse"}]},
     "has no service databse (it has database, database-biomero, omeroserver)"),
    ({"postgres_container_compose_project": "/nonexistent/nlbtest-project"},
     "compose project directory /nonexistent/nlbtest-project does not exist"),
])
def test_bad_input_is_refused_with_nothing_changed(site, host, message):
    before, ids = site.override(), site.ids()
    rc, out = site.provision(**host)
    assert rc != 0 and message in out, out[-4000:]
    assert site.override() == before and site.ids() == ids
    assert sorted(n for n in os.listdir(site.dir) if ".nlb-backup-" not in n) == [
        ".env", "docker-compose.override.yml", "docker-compose.yml"]
