"""The roles and the demo on a real Podman (issue 14), against one container set.

The module fixture provisions one small PostgreSQL 15 instance on podman
(rootful, runtime runc, default ulimits from scripts/setup.sh's containers.conf
drop-in) with playbooks/provision.yml and ``postgres_container_engine: podman``,
as a user does: a named volume, an init script, ``-N``/``-c`` tuning, the
logging block into a host directory, the health check, and the SELinux relabel
option ``Z`` on its bind mounts. The tests read the server's settings, the
health and the mounts from podman itself and re-run the playbook (changed=0);
then, on the same instance, the scheduled backup job (job_cli.run_cli, restore
test included) with a podman client container and restore.yml (the client stopped
and started by podman). The upgrade on podman is the Molecule scenario
roles/postgres_upgrade/molecule/podman. The demo (NLB_ENGINE=podman
./scripts/demo.sh) runs on its own nlbdemo-* names in a temporary demo directory.
Bad input: engine podman on a host without podman; a docker container named with
engine podman.

Every container, volume and network made here is named ``nlbtest-podr-*`` (the
demo's ``nlbdemo-*``, in podman) and removed at the end. Podman is a
prerequisite: missing, the tests FAIL unless NLB_SKIP_PODMAN=1 (as
tests/integration/test_podman.py).
"""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from harness import IMAGES, REPO_ROOT, run_module, unique
from job_cli import run_cli, write_config

PASSWORD = "pod 'role\" pw"  # quotes and a blank


def podman(*args, check=True, input=None, timeout=300):
    proc = subprocess.run(["podman", *args], capture_output=True, text=True, input=input, timeout=timeout,
                          check=False)
    if check and proc.returncode != 0:
        raise AssertionError("podman %s failed (rc=%s): %s" % (" ".join(args), proc.returncode, proc.stderr))
    return proc


def playbook(site, name, *extra, timeout=600):
    return subprocess.run(["ansible-playbook", "-i", site["inventory"], *extra,
                           os.path.join(REPO_ROOT, "playbooks", name)],
                          capture_output=True, text=True, timeout=timeout, check=False, cwd=site["work"])


def recap(output):
    found = re.findall(r"^db-host\s*:\s*(.*)$", output, re.M)
    return dict((key, int(value)) for key, value in re.findall(r"(\w+)=(\d+)", found[-1]))


def psql(site, sql):
    return podman("exec", "-i", site["container"], "psql", "-X", "-v", "ON_ERROR_STOP=1", "-At", "-U", "omero",
                  "-d", "omero", "-f", "-", input=sql).stdout.strip()


def write_inventory(site):
    with open(site["inventory"], "w") as handle:
        json.dump({"nl_biomero_database": {"hosts": {"db-host": {
            "ansible_connection": "local",
            "ansible_python_interpreter": os.environ.get("ANSIBLE_PYTHON_INTERPRETER", "auto"),
            "postgres_container_engine": "podman",
            "postgres_container_instances": [{
                "name": site["container"], "role": "omero", "user": "omero", "db": "omero",
                "password": PASSWORD, "image": IMAGES[15], "initdb_dir": site["initdb"],
                "max_connections": 40, "settings": {"work_mem": "8MB"},
                "logging": True, "log_dir": site["logs"], "relabel": "Z"}],
            "postgres_container_network": site["network"],
            "postgres_container_tuning": "none",
            "postgres_container_pull": False,
            "postgres_container_stop_timeout": 30,
            "postgres_container_wait_timeout": 120,
            "postgres_container_healthcheck": {"interval": "5s", "timeout": "5s", "retries": 5,
                                               "start_period": "30s"},
        }}}}, handle)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    if os.environ.get("NLB_SKIP_PODMAN") == "1":
        pytest.skip("NLB_SKIP_PODMAN=1: podman tests skipped on request")
    for major in (15, 17):
        if not shutil.which("podman") or podman("image", "inspect", IMAGES[major], check=False).returncode != 0:
            pytest.fail("podman or its image %s is missing: run scripts/setup.sh as root" % IMAGES[major])
    work = tmp_path_factory.mktemp("podr")
    names = {"container": unique("nlbtest-podr"), "network": unique("nlbtest-podr-net"), "work": str(work),
             "inventory": str(work / "inventory.json"), "initdb": str(work / "initdb"), "logs": str(work / "logs")}
    os.makedirs(names["initdb"])
    os.chmod(names["initdb"], 0o755)
    with open(os.path.join(names["initdb"], "01-marker.sql"), "w") as handle:
        handle.write("CREATE TABLE marker (id int PRIMARY KEY); INSERT INTO marker VALUES (42);\n")
    write_inventory(names)
    try:
        proc = playbook(names, "provision.yml")
        names["provision"] = proc
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
        yield names
    finally:
        for suffix in ("", "-pg15", "-pg17-staging"):  # the upgrade's old and staging containers
            podman("rm", "-f", "-v", names["container"] + suffix, check=False)
        for suffix in ("", "-pg17"):
            podman("volume", "rm", "-f", names["container"] + suffix, check=False)
        podman("network", "rm", names["network"], check=False)
        shutil.rmtree(str(work), ignore_errors=True)


def inspect(site):
    return json.loads(podman("container", "inspect", site["container"]).stdout)[0]


def test_provisioned_on_podman_with_its_settings(site):
    assert recap(site["provision"].stdout)["failed"] == 0
    settings = psql(site, "SELECT current_setting('max_connections') || ' ' || current_setting('work_mem') || ' '"
                          " || current_setting('logging_collector');")
    assert settings == "40 8MB on"
    assert psql(site, "SELECT id FROM marker;") == "42", "the init script did not run"
    # The data is in podman's named volume, not docker's.
    assert podman("volume", "inspect", site["container"]).returncode == 0
    assert any(name.startswith("postgresql-") for name in os.listdir(site["logs"])), "no server log on the host"


def test_health_check_runs_and_is_healthy(site):
    state = inspect(site)["State"]
    health = state.get("Health") or state.get("Healthcheck")
    assert state["Status"] == "running"
    assert health["Status"] == "healthy", health


def test_bind_mounts_carry_the_relabel_option(site):
    # Podman 4.3 drops z/Z from the inspected mounts of a host without SELinux (this one); the command
    # line it recorded keeps them.
    created = inspect(site)["Config"]["CreateCommand"]
    volumes = dict((v.split(":")[0], v.split(":")[2].split(",") if v.count(":") > 1 else [])
                   for flag, v in zip(created, created[1:]) if flag in ("--volume", "-v"))
    assert "Z" in volumes[site["logs"]], created
    assert "Z" in volumes[site["initdb"]] and "ro" in volumes[site["initdb"]], created
    assert "Z" not in volumes[site["container"]], "a named volume is not relabelled"


def test_second_run_changes_nothing(site):
    again = playbook(site, "provision.yml")
    assert again.returncode == 0, again.stdout[-4000:]
    assert recap(again.stdout)["changed"] == 0, again.stdout[-6000:]


def test_engine_podman_without_podman_is_a_clear_error_and_changes_nothing(tmp_path):
    # A host without podman (and docker): every program of /usr/bin but those two.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for entry in os.listdir("/usr/bin"):
        if entry not in ("podman", "docker"):
            os.symlink(os.path.join("/usr/bin", entry), str(bin_dir / entry))
    env = {"PATH": "%s:%s" % (os.path.dirname(sys.executable), bin_dir)}
    name = unique("nlbtest-podr-none")
    result = run_module("nl_biomero.database.engine_container",
                        {"engine": "podman", "name": name, "image": IMAGES[17], "state": "started"}, env=env)
    assert result.get("failed") and "podman" in result["msg"] and "on localhost" in result["msg"], result
    info = run_module("nl_biomero.database.engine_host_info", {"containers": True}, env=env)
    assert info.get("failed") and "looked for: docker, podman" in info["msg"], info
    assert podman("container", "inspect", name, check=False).returncode != 0, "nothing was created"


# --------------------------------------------------------------------------
# Backups: the scheduled job (as cron/systemd run it) and restore.yml on podman
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def client(site):
    """A client container on podman (what OMERO.server is to the database): stopped and started by the job."""
    name = unique("nlbtest-podr-client")
    podman("run", "-d", "--name", name, "--entrypoint", "sleep", IMAGES[17], "infinity")
    yield name
    podman("rm", "-f", "-t", "0", "-v", name, check=False)


def running(name):
    return json.loads(podman("container", "inspect", name).stdout)[0]["State"]["Running"]


def started_at(name):
    return json.loads(podman("container", "inspect", name).stdout)[0]["State"]["StartedAt"]


def throwaway_names(manifest):
    """The restore test's throwaway containers named in a set manifest (this test's own: the podman
    scenario may run its restore test meanwhile)."""
    return sorted(set(re.findall(r"nlb-restoretest-[0-9a-f]{12}", json.dumps(manifest.get("restore_test")))))


def podman_leftovers(names):
    """Those of ``names`` still in podman, as a container or as its volume ``<name>-data``."""
    return [name for name in names if podman("container", "exists", name, check=False).returncode == 0
            or podman("volume", "exists", name + "-data", check=False).returncode == 0]


@pytest.fixture(scope="module")
def backup(site, client):
    """One run of the scheduled job (job_cli.run_cli) on the podman instance, restore test included."""
    psql(site, "CREATE TABLE job (id bigint PRIMARY KEY, status text);"
               "INSERT INTO job SELECT g, 'Finished' FROM generate_series(1, 250) g;")
    config = {"backup_dir": os.path.join(site["work"], "backups"), "engine": "podman", "restore_test": True,
              "databases": [{"name": "omero", "container": site["container"], "database": "omero", "user": "omero"}],
              "clients": [client], "client_stop_timeout": 1}
    proc = run_cli(write_config(os.path.join(site["work"], "backup.json"), config))
    return {"proc": proc, "config": config}


def test_scheduled_job_takes_a_verified_set_from_podman(site, client, backup):
    proc, config = backup["proc"], backup["config"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    sets = [name for name in os.listdir(config["backup_dir"]) if not name.startswith(".")]
    assert len(sets) == 1
    with open(os.path.join(config["backup_dir"], sets[0], "set.manifest.json")) as handle:
        manifest = json.load(handle)
    assert manifest["complete"] is True, manifest.get("error")
    omero = [c for c in manifest["components"] if c["name"] == "omero"][0]
    assert omero["row_counts"] == {"public.job": 250, "public.marker": 1}
    assert manifest["restore_test"]["restorable"] is True
    assert "stopped client container %s" % client in proc.stderr
    assert running(client), "the job starts its clients again"
    throwaways = throwaway_names(manifest)
    assert throwaways, manifest["restore_test"]
    assert podman_leftovers(throwaways) == [], "the restore test left a throwaway container or volume"


def test_restore_playbook_restores_the_set_with_clients_stopped_by_podman(site, client, backup):
    assert backup["proc"].returncode == 0
    psql(site, "DELETE FROM job WHERE id > 10;")
    before = started_at(client)
    restored = subprocess.run(
        ["ansible-playbook", "-i", site["inventory"], os.path.join(REPO_ROOT, "playbooks", "restore.yml"),
         "-e", json.dumps({"postgres_backup_engine": "podman", "postgres_backup_dir": backup["config"]["backup_dir"],
                           "postgres_backup_clients": [client], "postgres_backup_client_stop_timeout": 1,
                           "postgres_backup_restore_overwrite": True})],
        capture_output=True, text=True, timeout=600, check=False, cwd=site["work"])
    assert restored.returncode == 0, restored.stdout[-4000:]
    assert psql(site, "SELECT count(*) FROM job;") == "250"
    assert running(client)
    assert started_at(client) != before, "the client was not stopped and started again by podman"


# --------------------------------------------------------------------------
# A container of the other engine named by mistake (engine podman, the container in docker):
# a clear error naming the container and the engine it is in, nothing stopped or created.
# (The upgrade on podman - pipe, logical, rollback, a fault - is roles/postgres_upgrade/molecule/podman.)
# --------------------------------------------------------------------------

def test_a_docker_container_named_with_engine_podman_is_refused(tmp_path):
    if not shutil.which("docker") or subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
        pytest.skip("no docker beside podman on this machine")
    name = unique("nlbtest-podr-indocker")
    subprocess.run(["docker", "run", "-d", "--name", name, "--entrypoint", "sleep", IMAGES[15], "infinity"],
                   capture_output=True, check=True)
    try:
        stopped = run_module("nl_biomero.database.pg_clients", {"engine": "podman", "names": [name],
                                                                "state": "stopped", "stop_timeout": 1})
        assert stopped.get("failed"), stopped
        assert ("client container '%s' does not exist in podman; a container '%s' exists in docker"
                % (name, name)) in stopped["msg"]
        preflight = run_module("nl_biomero.database.pg_upgrade_preflight",
                               {"engine": "podman", "container": name, "target_image": IMAGES[17]})
        assert preflight.get("failed"), preflight
        assert "container '%s' does not exist in podman; a container '%s' exists in docker" % (name, name) \
            in preflight["msg"]
        site = {"inventory": str(tmp_path / "inventory.json"), "work": str(tmp_path)}
        with open(site["inventory"], "w") as handle:
            json.dump({"nl_biomero_database": {"hosts": {"db-host": {
                "ansible_connection": "local",
                "ansible_python_interpreter": os.environ.get("ANSIBLE_PYTHON_INTERPRETER", "auto"),
                "postgres_container_engine": "podman", "postgres_container_pull": False,
                "postgres_container_network": name + "-net",
                "postgres_container_instances": [{"name": name, "role": "omero", "user": "omero", "db": "omero",
                                                  "password": PASSWORD, "image": IMAGES[15]}]}}}}, handle)
        provisioned = playbook(site, "provision.yml")
        assert provisioned.returncode != 0
        assert "container '%s' does not exist in podman; a container '%s' exists in docker" % (name, name) \
            in provisioned.stdout, provisioned.stdout[-3000:]
        assert podman("volume", "exists", name, check=False).returncode == 1, "a volume was made in podman"
        assert podman("network", "exists", name + "-net", check=False).returncode == 1
        state = subprocess.run(["docker", "inspect", "--format", "{{.State.Running}}", name], capture_output=True,
                               text=True, check=True).stdout.strip()
        assert state == "true", "the docker container was stopped"
        assert podman("container", "exists", name, check=False).returncode == 1, "something was made in podman"
    finally:
        subprocess.run(["docker", "rm", "-f", "-v", name], capture_output=True, check=False)


# --------------------------------------------------------------------------
# The demo: NLB_ENGINE=podman ./scripts/demo.sh
# --------------------------------------------------------------------------

DEMO_CONTAINERS = ("nlbdemo-database", "nlbdemo-database-biomero")


def demo_playbook(name, demo_dir):
    proc = subprocess.run(["ansible-playbook", "-i", "localhost,", os.path.join(REPO_ROOT, "playbooks", name),
                           "-e", "demo_dir=%s" % demo_dir],
                          capture_output=True, text=True, timeout=900, check=False, cwd=REPO_ROOT,
                          env=dict(os.environ, NLB_ENGINE="podman"))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return proc.stdout


def summary_lines(output):
    block = output[output.index("TASK [Summary]"):]
    return [line.strip().strip('",') for line in block.splitlines() if line.strip().startswith('"nlbdemo-')]


def demo_script(demo_dir):
    """``NLB_ENGINE=podman ./scripts/demo.sh run`` as a user types it; NLB_SKIP_SETUP=1 skips only
    scripts/setup.sh (the suite's machine is set up; setup.sh would also build the :18 image into podman)."""
    proc = subprocess.run([os.path.join(REPO_ROOT, "scripts", "demo.sh"), "run", "-e", "demo_dir=%s" % demo_dir],
                          capture_output=True, text=True, timeout=900, check=False, cwd=REPO_ROOT,
                          env=dict(os.environ, NLB_ENGINE="podman", NLB_SKIP_SETUP="1"))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return proc.stdout


def test_demo_on_podman_runs_and_cleans_up(tmp_path):
    if os.environ.get("NLB_SKIP_PODMAN") == "1":
        pytest.skip("NLB_SKIP_PODMAN=1: podman tests skipped on request")
    demo_dir = str(tmp_path / "demo")
    try:
        first = summary_lines(demo_script(demo_dir))
        assert len(first) == 2
        omero, biomero = first
        assert omero.split()[1].startswith("17.")
        assert "max_connections=500" in omero and ".dump" in omero
        assert biomero.endswith("1 new, 0 already retried")
        for name in DEMO_CONTAINERS:
            assert podman("container", "inspect", name).returncode == 0, "the demo did not run on podman"
        # One run (the re-run is test_demo.py's on Docker; a provisioning re-run on podman is above).
        backups = os.listdir(os.path.join(demo_dir, "backups"))
        assert len([name for name in backups if name.endswith(".dump")]) == 2
    finally:
        demo_playbook("demo_cleanup.yml", demo_dir)
    for name in DEMO_CONTAINERS:
        assert podman("container", "inspect", name, check=False).returncode != 0
        assert podman("volume", "inspect", name, check=False).returncode != 0
    assert not os.path.exists(demo_dir)
