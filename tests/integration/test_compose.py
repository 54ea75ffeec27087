"""A real docker-compose (Debian's 1.29.2) project modelled on NL-BIOMERO's: the upgrade hands its change
back to the project, so docker-compose up (and down/up) keeps the upgraded data; rollback gives the
service back to the project's own files."""

import json
import os

import pytest

import compose_fixture
from compose_fixture import ENV, PROJECT, Project
from harness import IMAGES, engine, require_image, run_module, unique

from ansible_collections.nl_biomero.database.plugins.module_utils import compose

pytestmark = compose_fixture.pytestmark  # docker and docker-compose


def _state(name):
    proc = engine("inspect", "-f", "{{.State.Running}} {{.Config.Image}}", name, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


# The user's own override file (the hand-back must then go into COMPOSE_FILE, beside it).
USER_OVERRIDE = """version: "3.8"
services:
  omeroserver:
    restart: unless-stopped
"""


@pytest.fixture
def site(request, tmp_path):
    require_image(15)
    require_image(17)
    name = unique("nlbtest-compose")
    directory = tmp_path / "nl-biomero"
    directory.mkdir()
    (tmp_path / "work").mkdir()
    (directory / "docker-compose.yml").write_text(PROJECT.format(pg15=IMAGES[15]))
    (directory / ".env").write_text(ENV.format(name=name))
    if getattr(request, "param", None) == "user_override":
        (directory / "docker-compose.override.yml").write_text(USER_OVERRIDE)
    project = Project(str(directory), name)
    try:
        project.up()
        yield project
    finally:
        # -p: a test may have changed the project name in .env
        project.compose("-p", name, "down", "-v", "--remove-orphans", check=False)
        for volume in ("%s_database-pg17" % name, "%s_database-biomero-pg17" % name):
            engine("volume", "rm", "-f", volume, check=False)
        for left in engine("ps", "-aq", "--filter", "label=com.docker.compose.project=" + name).stdout.split():
            engine("rm", "-f", "-v", left, check=False)


def test_credentials_read_as_compose_gave_them(site):
    """module_utils.compose reads the project's .env and compose file to what the containers really got."""
    project = compose.read_project(site.dir)
    for service in ("database", "database-biomero"):
        container = "%s_%s_1" % (site.name, service)
        env = dict(item.split("=", 1) for item in json.loads(
            engine("inspect", "-f", "{{json .Config.Env}}", container).stdout))
        assert compose.service_credentials(project, service) == {
            "user": env["POSTGRES_USER"], "database": env["POSTGRES_DB"], "password": env["POSTGRES_PASSWORD"]}
    assert compose.service_credentials(project, "database-biomero")["password"] == "bio$pw"
    labels = json.loads(engine("inspect", "-f", "{{json .Config.Labels}}", site.db).stdout)
    seen = compose.compose_labels(labels)
    assert (seen["project"], seen["service"], seen["working_dir"]) == (site.name, "database", site.dir)
    containers = dict((name, json.loads(engine("inspect", "-f", "{{json .Config.Labels}}", name).stdout))
                      for name in engine("ps", "--format", "{{.Names}}").stdout.split())
    assert compose.service_container(containers, site.name, "database", site.dir) == site.db


def test_bad_projects_are_refused_naming_the_value(site, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_module("nl_biomero.database.pg_compose_handback", {
        "project_dir": str(empty), "service": "database", "image": IMAGES[17], "volume": "v"})
    assert result["failed"] and "%s has no compose file" % empty in result["msg"]
    result = run_module("nl_biomero.database.pg_compose_handback", {
        "project_dir": site.dir, "service": "databse", "image": IMAGES[17], "volume": "v"})
    assert result["failed"] and "has no service databse" in result["msg"]
    # The upgrade refuses before stopping anything when the project is not the one that made the container.
    env_path = os.path.join(site.dir, ".env")
    original = open(env_path).read()
    with open(env_path, "w") as handle:
        handle.write(original.replace("COMPOSE_PROJECT_NAME=", "COMPOSE_PROJECT_NAME=x"))
    proc = site.playbook("upgrade.yml")
    assert proc.returncode != 0
    assert "is project x%s for docker-compose" % site.name in proc.stdout, proc.stdout[-3000:]
    assert _state(site.db) == "true %s" % IMAGES[15] and _state(site.client).startswith("true")
    assert site.files() == [".env", "docker-compose.yml"]
    assert engine("volume", "inspect", "%s_database-pg17" % site.name, check=False).returncode != 0
    with open(env_path, "w") as handle:
        handle.write(original)
    # A rollback refuses when the volume the project's own files give the service is gone (compose would
    # start an empty database there): nothing stopped, the hand-back stays.
    gone = "%s_gone" % site.name
    result = run_module("nl_biomero.database.pg_compose_handback", {
        "project_dir": site.dir, "service": "database", "image": IMAGES[15], "volume": "%s_database" % site.name,
        "previous_volume": gone})
    assert result["changed"] and not result["failed"]
    proc = site.playbook("rollback.yml")
    assert proc.returncode != 0
    assert "volume %s, which the compose project %s gives service database" % (gone, site.dir) in proc.stdout
    assert _state(site.db) == "true %s" % IMAGES[15] and _state(site.client).startswith("true")
    assert site.files() == [".env", "docker-compose.override.yml", "docker-compose.yml"]
    assert engine("volume", "inspect", gone, check=False).returncode != 0


def test_upgrade_hand_back_survives_compose_up_and_rollback(site):
    site.sql("CREATE TABLE t (id int PRIMARY KEY, note text); INSERT INTO t SELECT g, 'before' FROM "
             "generate_series(1, 100) g")
    proc = site.playbook("upgrade.yml")
    assert proc.returncode == 0, "the upgrade failed:\n%s\n%s" % (proc.stdout[-6000:], proc.stderr[-2000:])
    volume = "%s_database-pg17" % site.name
    # The exact override produced (the project had none: compose loads docker-compose.override.yml by default).
    assert site.files() == [".env", "docker-compose.override.yml", "docker-compose.yml"]
    with open(os.path.join(site.dir, "docker-compose.override.yml")) as handle:
        assert handle.read() == (
            compose.MARKER + "\n"
            "# Do not edit: nl_biomero.database rewrites this file (provisioning, upgrade) and removes what it added (rollback);\n"
            "# put your own settings in a file of yours.\n"
            "# nl-biomero-compose-file-before: false\n"
            "# nl-biomero-replaced-volumes: {\"database\": \"%s_database\"}\n"
            "version: '3.8'\n"
            "services:\n"
            "  database:\n"
            "    image: %s\n"
            "    volumes:\n"
            "    - %s:/var/lib/postgresql/data\n"
            "volumes:\n"
            "  %s:\n"
            "    external: true\n" % (site.name, IMAGES[17], volume, volume))
    assert site.sql("SHOW server_version_num")[:2] == "17"
    site.sql("INSERT INTO t VALUES (101, 'after the upgrade')")

    # A routine redeploy: compose re-creates the service from the hand-back, on the upgraded volume.
    site.up()
    assert _state(site.db) == "true %s" % IMAGES[17]
    assert site.sql("SHOW server_version_num")[:2] == "17"
    assert site.sql("SELECT count(*), max(note) FROM t") == "101|before"
    assert site.sql("SELECT note FROM t WHERE id = 101") == "after the upgrade"
    mounts = json.loads(engine("inspect", "-f", "{{json .Mounts}}", site.db).stdout)
    assert [(m.get("Name"), m["Destination"]) for m in mounts] == [(volume, "/var/lib/postgresql/data")]
    assert site.compose("up", "-d").stderr.count("Recreating") == 0  # a second up changes nothing

    # down (without -v) and up again: the same.
    site.compose("down")
    site.up()
    assert site.sql("SHOW server_version_num")[:2] == "17"
    assert site.sql("SELECT note FROM t WHERE id = 101") == "after the upgrade"

    # Rollback: the project's own files again, then up brings back 15 with the pre-upgrade data.
    proc = site.playbook("rollback.yml")
    assert proc.returncode == 0, "the rollback failed:\n%s\n%s" % (proc.stdout[-6000:], proc.stderr[-2000:])
    assert site.files() == [".env", "docker-compose.yml"]
    site.up()
    assert _state(site.db) == "true %s" % IMAGES[15]
    assert site.sql("SHOW server_version_num")[:2] == "15"
    assert site.sql("SELECT count(*) FROM t") == "100"
    assert site.sql("SELECT count(*) FROM t WHERE id = 101") == "0"
    # writable again (the upgrade's write fence is lifted)
    site.sql("INSERT INTO t VALUES (102, 'after the rollback')")
    assert _state(site.client).startswith("true")


@pytest.mark.parametrize("site", ["user_override"], indirect=True)
def test_handback_beside_a_users_override_and_rollback_right_away(site):
    """The project has its own docker-compose.override.yml: the hand-back is docker-compose.nl-biomero.yml,
    listed last in COMPOSE_FILE; a rollback straight after the upgrade (no up in between) restores .env."""
    env_before = open(os.path.join(site.dir, ".env")).read()
    site.sql("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 10)")
    proc = site.playbook("upgrade.yml")
    assert proc.returncode == 0, "the upgrade failed:\n%s\n%s" % (proc.stdout[-6000:], proc.stderr[-2000:])
    assert site.files() == [".env", "docker-compose.nl-biomero.yml", "docker-compose.override.yml",
                            "docker-compose.yml"]
    assert open(os.path.join(site.dir, "docker-compose.override.yml")).read() == USER_OVERRIDE
    with open(os.path.join(site.dir, ".env")) as handle:
        assert handle.read() == env_before + (
            "COMPOSE_FILE=docker-compose.yml:docker-compose.override.yml:docker-compose.nl-biomero.yml\n")
    with open(os.path.join(site.dir, "docker-compose.nl-biomero.yml")) as handle:
        assert "# nl-biomero-compose-file-before: null\n" in handle.read()
    config = site.compose("config").stdout
    assert "image: %s" % IMAGES[17] in config and "restart: unless-stopped" in config
    site.sql("INSERT INTO t VALUES (11)")

    proc = site.playbook("rollback.yml")
    assert proc.returncode == 0, "the rollback failed:\n%s\n%s" % (proc.stdout[-6000:], proc.stderr[-2000:])
    assert site.files() == [".env", "docker-compose.override.yml", "docker-compose.yml"]
    assert open(os.path.join(site.dir, ".env")).read() == env_before
    backups = sorted(name.split(".nlb-backup-")[0] for name in os.listdir(site.dir) if ".nlb-backup-" in name)
    assert backups == [".env", ".env", "docker-compose.nl-biomero.yml"]
    # the rollback started the old service itself; up changes nothing for it
    assert _state(site.db) == "true %s" % IMAGES[15]
    assert "%s is up-to-date" % site.db in site.compose("up", "-d").stderr
    assert site.sql("SHOW server_version_num")[:2] == "15"
    assert site.sql("SELECT count(*) FROM t") == "10"
