"""One inventory line, postgres_compose_project, is enough: on a real docker-compose (1.29.2) project
modelled on NL-BIOMERO's, backup (a set and its restore test), restore.yml, retry_imports.yml and
upgrade.yml (check mode) find both databases, their credentials (from the project's .env) and their
clients; the clients are stopped and started through compose; bad input is refused, nothing stopped.

One project for the whole module (module-scoped fixture); the tests run in file order."""

import json
import os
import stat
import subprocess
import time
import uuid

import pytest

from harness import IMAGES, REPO_ROOT, engine, require_image, run_module, unique
from importer_fixture import SCHEMA_FULL
from compose_fixture import COMPOSE, PROJECT, Project

pytestmark = pytest.mark.skipif(COMPOSE is None, reason="needs docker and docker-compose (scripts/setup.sh installs it)")

# test_compose's platform layout plus the importer (a second client) and a service that is no client.
EXTRA = """  biomero-importer:
    image: "{pg15}"
    entrypoint: ["sleep", "infinity"]
    init: true
    depends_on:
      - database-biomero
    networks:
      - omero
  redis:
    image: "{pg15}"
    entrypoint: ["sleep", "infinity"]
    init: true
    networks:
      - omero
"""
# Names that are not the collection's defaults, so that finding them proves the .env was read.
ENV = """COMPOSE_PROJECT_NAME={name}
POSTGRES_USER=omeroadm
POSTGRES_DB=omerodb
POSTGRES_PASSWORD='om ero"pw'
BIOMERO_POSTGRES_USER=bioadm
BIOMERO_POSTGRES_DB="${{BIOMERO_POSTGRES_USER}}db"
BIOMERO_POSTGRES_PASSWORD=Bio$ecret-{name} # never printed
"""
CLIENTS = ("omeroserver", "biomero-importer")


class Site(Project):
    def __init__(self, directory, name, work):
        super().__init__(directory, name)
        self.work = work
        self.bio = "%s_database-biomero_1" % name
        self.password = "Bio$ecret-%s" % name
        self.compose_log = os.path.join(work, "compose.log")

    def wait(self, name, timeout=90):
        user, db = ("omeroadm", "omerodb") if name == self.db else ("bioadm", "bioadmdb")
        deadline = time.time() + timeout
        while time.time() < deadline:
            if engine("exec", name, "psql", "-X", "-At", "-U", user, "-d", db, "-c", "SELECT 1",
                      check=False).returncode == 0:
                return
            time.sleep(0.5)
        raise AssertionError("%s did not come up: %s" % (name, engine("logs", name, check=False).stderr[-2000:]))

    def up(self):
        self.compose("up", "-d")
        self.wait(self.db)
        self.wait(self.bio)

    def sql(self, text, bio=False):
        container, user, db = (self.bio, "bioadm", "bioadmdb") if bio else (self.db, "omeroadm", "omerodb")
        return engine("exec", "-i", container, "psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-U", user, "-d", db,
                      "-f", "-", input=text).stdout.strip()

    def clients(self):
        return ["%s_%s_1" % (self.name, service) for service in CLIENTS]

    def ps(self):
        """compose's own view: the services docker-compose ps lists as running."""
        return set(self.compose("ps", "--services", "--filter", "status=running").stdout.split())

    def started_at(self, name):
        return engine("inspect", "-f", "{{.State.StartedAt}}", name).stdout.strip()

    def compose_calls(self):
        """The compose commands the collection ran (the wrapper's log): [(cwd, argv)]."""
        if not os.path.exists(self.compose_log):
            return []
        with open(self.compose_log) as handle:
            return [tuple(line.rstrip("\n").split(" ", 1)) for line in handle]

    def playbook(self, name, extra=None, host=None, args=()):
        inventory = os.path.join(self.work, "inventory.json")
        hostvars = {"ansible_connection": "local",
                    "ansible_python_interpreter": os.environ.get("ANSIBLE_PYTHON_INTERPRETER", "auto"),
                    # THE line; everything else points host paths at the test's directory
                    "postgres_compose_project": self.dir,
                    "postgres_backup_dir": os.path.join(self.work, "backups"),
                    "postgres_backup_metrics_file": "", "postgres_backup_lock_file": "",
                    "postgres_backup_client_stop_timeout": 5,
                    "postgres_backup_compose_command": [os.path.join(self.work, "docker-compose")],
                    "postgres_upgrade_target_image": IMAGES[17],
                    "postgres_upgrade_dump_dir": os.path.join(self.work, "dumps")}
        hostvars.update(host or {})
        with open(inventory, "w") as handle:
            json.dump({"nl_biomero_database": {"hosts": {"localhost": hostvars}}}, handle)
        argv = ["ansible-playbook", "-i", inventory, os.path.join(REPO_ROOT, "playbooks", name), *args]
        for key, value in (extra or {}).items():
            argv += ["-e", json.dumps({key: value})]
        return subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    require_image(15)
    require_image(17)
    base = tmp_path_factory.mktemp("compose-ops")
    os.chmod(str(base), 0o700)
    name = unique("nlbtest-cops")
    directory, work = base / "nl-biomero", base / "work"
    directory.mkdir()
    work.mkdir(mode=0o700)
    (work / "backups").mkdir(mode=0o700)
    services = "\n" + EXTRA.format(pg15=IMAGES[15]) + "networks:\n  omero:\n"
    text = PROJECT.format(pg15=IMAGES[15]).replace("\nnetworks:\n  omero:\n", services)
    (directory / "docker-compose.yml").write_text(text)
    (directory / ".env").write_text(ENV.format(name=name))
    project = Site(str(directory), name, str(work))
    # A real docker-compose behind a wrapper that logs where and how it was called.
    wrapper = work / "docker-compose"
    wrapper.write_text('#!/bin/sh\necho "$PWD $*" >> %s\nexec %s "$@"\n' % (project.compose_log, COMPOSE))
    wrapper.chmod(stat.S_IRWXU)
    try:
        project.up()
        yield project
    finally:
        project.compose("-p", name, "down", "-v", "--remove-orphans", check=False)
        for service in ("database", "database-biomero"):
            engine("rm", "-f", "-v", "%s_%s_1-restore" % (name, service), check=False)
        for left in engine("ps", "-aq", "--filter", "label=com.docker.compose.project=" + name).stdout.split():
            engine("rm", "-f", "-v", left, check=False)
        for volume in engine("volume", "ls", "-q", "--filter", "name=" + name).stdout.split():
            engine("volume", "rm", "-f", volume, check=False)


def _ok(proc):
    assert proc.returncode == 0, "playbook failed:\n%s\n%s" % (proc.stdout[-6000:], proc.stderr[-2000:])


def test_info_finds_databases_credentials_and_clients(site):
    result = run_module("nl_biomero.database.pg_compose_info", {"project_dir": site.dir})
    assert not result.get("failed"), result.get("msg")
    assert result["instances"] == {
        "omero": {"service": "database", "container": site.db, "user": "omeroadm", "database": "omerodb"},
        "biomero": {"service": "database-biomero", "container": site.bio, "user": "bioadm", "database": "bioadmdb"}}
    # the platform's clients the project defines (redis is none of them)
    assert result["clients"] == site.clients()
    assert result["client_services"] == list(CLIENTS)
    assert site.password not in json.dumps(result)
    with_passwords = run_module("nl_biomero.database.pg_compose_info", {"project_dir": site.dir, "passwords": True})
    assert with_passwords["instances"]["biomero"]["password"] == site.password
    assert with_passwords["instances"]["omero"]["password"] == 'om ero"pw'


def test_backup_set_and_restore_test_by_project(site):
    site.sql("CREATE TABLE t (id int PRIMARY KEY, note text); INSERT INTO t SELECT g, 'backed up' "
             "FROM generate_series(1, 50) g")
    site.sql(SCHEMA_FULL, bio=True)
    before = dict((name, site.started_at(name)) for name in site.clients())
    proc = site.playbook("backup.yml", {"backup_install": False}, host={"postgres_backup_restore_test": True})
    _ok(proc)
    sets = sorted(os.listdir(os.path.join(site.work, "backups")))
    with open(os.path.join(site.work, "backups", sets[-1], "set.manifest.json")) as handle:
        manifest = json.load(handle)
    assert manifest["complete"]
    components = dict((c["name"], c) for c in manifest["components"] if c["kind"] == "database")
    assert sorted(components) == ["biomero", "omero"]
    assert (components["omero"]["container"], components["omero"]["database"]) == (site.db, "omerodb")
    assert (components["biomero"]["container"], components["biomero"]["database"]) == (site.bio, "bioadmdb")
    assert manifest["restore_test"]["restorable"], manifest["restore_test"]
    # the clients were stopped and started again by compose, in the project directory
    calls = site.compose_calls()
    for service in CLIENTS:
        assert (site.dir, "-p %s stop -t 5 %s" % (site.name, service)) in calls, calls
        assert (site.dir, "-p %s start %s" % (site.name, service)) in calls, calls
    assert all(site.started_at(name) != before[name] for name in site.clients())
    assert site.ps() == {"database", "database-biomero", "omeroserver", "biomero-importer", "redis"}


def test_restore_by_project_clients_through_compose(site):
    site.sql("INSERT INTO t VALUES (51, 'after the backup')")
    open(site.compose_log, "w").close()
    before = dict((name, site.started_at(name)) for name in site.clients())
    proc = site.playbook("restore.yml", {"postgres_backup_restore_overwrite": True})
    _ok(proc)
    assert site.sql("SELECT count(*), max(note) FROM t") == "50|backed up"
    assert site.sql("SELECT count(*) FROM imports", bio=True) == "0"
    calls = site.compose_calls()
    assert [argv for _cwd, argv in calls] == (
        ["-p %s stop -t 5 %s" % (site.name, service) for service in CLIENTS]
        + ["-p %s start %s" % (site.name, service) for service in reversed(CLIENTS)]), calls
    assert set(cwd for cwd, _argv in calls) == {site.dir}
    assert all(site.started_at(name) != before[name] for name in site.clients())
    assert set(CLIENTS) <= site.ps()


def test_retry_import_with_the_projects_credentials(site):
    order = str(uuid.uuid4())
    site.sql("INSERT INTO imports (group_name, user_name, destination_id, destination_type, stage, uuid, timestamp, "
             "files) VALUES ('Core', 'alice', '7', 'Dataset', 'Import Pending', '%s', now(), '[\"/a.tif\"]'), "
             "('Core', 'alice', '7', 'Dataset', 'Import Failed', '%s', now(), '[\"/a.tif\"]')" % (order, order),
             bio=True)
    proc = site.playbook("retry_imports.yml", {"retry_imports_uuids": [order]}, args=["-v"])
    _ok(proc)
    assert site.password not in proc.stdout + proc.stderr
    assert site.sql("SELECT count(*) FROM imports WHERE stage = 'Import Pending' AND uuid <> '%s'" % order,
                    bio=True) == "1"


def test_upgrade_check_by_project(site):
    proc = site.playbook("upgrade.yml", {"upgrade_report_dir": os.path.join(site.work, "reports")}, args=["--check"])
    _ok(proc)
    with open(os.path.join(site.work, "reports", "summary.json")) as handle:
        rows = json.load(handle)["instances"]
    assert [(row["instance"], row["outcome"], int(row["from"]), int(row["to"])) for row in rows] == [
        (site.db, "would_upgrade", 15, 17), (site.bio, "would_upgrade", 15, 17)], rows
    assert json.dumps(rows[0]["clients"]).count(site.name) == len(CLIENTS), rows[0]["clients"]


def test_restore_into_a_new_volume_handed_back_to_compose(site):
    """The platform page's flow: the set goes into a fresh volume, compose is pointed at it (external: true)
    and up -d serves the restored data; the service's own volume stays untouched."""
    site.sql("INSERT INTO t VALUES (52, 'on the old volume')")
    # the OMERO DB only: one restore container's first-run init, not two (the test's time)
    proc = site.playbook("restore.yml", {"postgres_backup_restore_new_volume": True,
                                         "postgres_backup_restore_components": ["omero"]})
    _ok(proc)
    stamp = sorted(os.listdir(os.path.join(site.work, "backups")))[-1]
    volume = "%s_database-restored-%s" % (site.name, stamp)
    assert site.sql("SELECT count(*), max(note) FROM t") == "50|backed up"
    mounts = json.loads(engine("inspect", "-f", "{{json .Mounts}}", site.db).stdout)
    assert [m.get("Name") for m in mounts if m["Destination"] == "/var/lib/postgresql/data"] == [volume]
    with open(os.path.join(site.dir, "docker-compose.override.yml")) as handle:
        override = handle.read()
    assert "- %s:/var/lib/postgresql/data" % volume in override and "external: true" in override
    assert '"database": "%s_database"' % site.name in override  # the volume a rollback gives back
    # a routine redeploy keeps the restored data; the old volume is still there
    assert "Recreating" not in site.compose("up", "-d").stderr
    assert site.sql("SELECT count(*) FROM t") == "50"
    engine("volume", "inspect", "%s_database" % site.name)
    assert set(CLIENTS) <= site.ps()
    assert not engine("ps", "-aq", "--filter", "name=%s-restore" % site.db).stdout.strip()


def test_bad_input_is_refused_and_nothing_stopped(site, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_module("nl_biomero.database.pg_compose_info", {"project_dir": str(empty)})
    assert result["failed"] and "%s has no compose file" % empty in result["msg"]
    result = run_module("nl_biomero.database.pg_compose_info", {"project_dir": site.dir,
                                                                "services": {"omero": "databse"}})
    assert result["failed"] and "compose project %s has no service databse" % site.dir in result["msg"]
    result = run_module("nl_biomero.database.pg_compose_info", {"project_dir": site.dir, "clients": ["omero-web"]})
    assert result["failed"] and "has no service omero-web" in result["msg"]

    before = dict((name, site.started_at(name)) for name in site.clients())
    env_path = os.path.join(site.dir, ".env")
    original = open(env_path).read()
    try:
        # .env without the variable: refused naming it, nothing stopped, no password printed
        with open(env_path, "w") as handle:
            handle.write("".join(line for line in original.splitlines(True)
                                 if not line.startswith("BIOMERO_POSTGRES_USER=")))
        proc = site.playbook("restore.yml", {"postgres_backup_restore_overwrite": True})
        assert proc.returncode != 0
        assert "uses ${BIOMERO_POSTGRES_USER}, which the project's .env does not set" in proc.stdout, proc.stdout[-3000:]
        assert site.password not in proc.stdout
    finally:
        with open(env_path, "w") as handle:
            handle.write(original)
    # Another directory claims the same project name (a compose v2 container of it): refused, naming both.
    other = unique("/srv/nlbtest-elsewhere")
    intruder = "%s-database-1" % site.name
    engine("run", "-d", "--name", intruder, "--label", "com.docker.compose.project=" + site.name,
           "--label", "com.docker.compose.service=database", "--label", "com.docker.compose.project.working_dir=" + other,
           "--entrypoint", "sleep", IMAGES[15], "infinity")
    try:
        result = run_module("nl_biomero.database.pg_compose_info", {"project_dir": site.dir})
        assert result["failed"]
        assert "two compose projects claim service database of project %s: %s and %s" % (
            site.name, other, site.dir) in result["msg"], result["msg"]
    finally:
        engine("rm", "-f", "-v", intruder, check=False)
    assert dict((name, site.started_at(name)) for name in site.clients()) == before
    assert site.sql("SELECT count(*) FROM t") == "50"
