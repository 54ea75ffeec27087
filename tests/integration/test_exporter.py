"""Database metrics of the role postgres_container (issue 16): an exporter per instance.

The module fixture provisions one OMERO-like instance (PostgreSQL 15, -N 57,
wal_level=logical) with its exporter on a host port, with playbooks/provision.yml
as a user does, then makes a user table and a logical replication slot. The
tests scrape /metrics over HTTP, log in as the monitoring role, re-run the
playbook, feed it a bad port, and finally turn the exporter off.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.request

import psycopg2
import pytest

from harness import ENGINE, REPO_ROOT, container_ip, engine, require_image, run_module, unique

pytestmark = pytest.mark.skipif(ENGINE != "docker", reason="the postgres_container role is tested with Docker")

EXPORTER_IMAGE = os.environ.get("NLB_IMAGE_EXPORTER", "nl-biomero/postgres-exporter:0.11.1")
OWNER_PW = "owner-pw"
MON_PW = "m0n 'itor\" pw"  # quotes and a blank: must survive the environment, never be printed
MAX_CONNECTIONS = 57
SLOT = "nlbtest_slot"


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_inventory(site, exporter):
    with open(site["inventory"], "w") as handle:
        json.dump({"nl_biomero_database": {"hosts": {"db-host": {
            "ansible_connection": "local",
            "ansible_python_interpreter": os.environ.get("ANSIBLE_PYTHON_INTERPRETER", "auto"),
            "postgres_container_instances": [{
                "name": site["container"], "role": "omero", "user": "omero", "db": "omero",
                "password": OWNER_PW, "image": require_image(15), "max_connections": MAX_CONNECTIONS,
                "settings": {"wal_level": "logical"}, "exporter": exporter}],
            "postgres_container_network": site["network"],
            "postgres_container_tuning": "none",
            "postgres_container_pull": False,
            "postgres_container_stop_timeout": 30,
            "postgres_container_wait_timeout": 120,
            "postgres_container_exporter_image": EXPORTER_IMAGE,
        }}}}, handle)


def playbook(site, *extra):
    proc = subprocess.run(["ansible-playbook", "-i", site["inventory"], *extra,
                           os.path.join(REPO_ROOT, "playbooks", "provision.yml")],
                          capture_output=True, text=True, timeout=600, check=False, cwd=site["work"])
    assert MON_PW not in proc.stdout + proc.stderr
    return proc


def recap(output):
    found = re.findall(r"^db-host\s*:\s*(.*)$", output, re.M)
    return dict((key, int(value)) for key, value in re.findall(r"(\w+)=(\d+)", found[-1]))


def psql(site, sql):
    return engine("exec", "-i", site["container"], "psql", "-X", "-v", "ON_ERROR_STOP=1", "-At", "-U", "omero",
                  "-d", "omero", "-f", "-", input=sql).stdout.strip()


def container_id(name):
    proc = engine("inspect", "-f", "{{.Id}}", name, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def scrape(port, deadline=60):
    """The exporter's /metrics text, polled until it reports the database up."""
    end = time.monotonic() + deadline
    text = ""
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as response:
                text = response.read().decode("utf-8")
            if re.search(r"^pg_up 1(\.0)?$", text, re.M) and "pg_settings_max_connections" in text:
                return text
        except OSError:
            pass
        time.sleep(0.5)  # polling the exporter's start, not a fixed wait
    raise AssertionError("exporter on port %d did not report pg_up 1 within %d s: %s" % (port, deadline, text[-2000:]))


def samples(text, metric):
    """[(labels dict, value)] of one metric in Prometheus text format."""
    found = []
    for labels, value in re.findall(r"^%s(?:\{([^}]*)\})? (\S+)$" % re.escape(metric), text, re.M):
        found.append((dict(re.findall(r'(\w+)="([^"]*)"', labels or "")), float(value)))
    return found


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    work = tmp_path_factory.mktemp("exporter")
    if engine("image", "inspect", EXPORTER_IMAGE, check=False).returncode != 0:
        pytest.skip("%s missing: run scripts/setup.sh (images/postgres-exporter/build.sh)" % EXPORTER_IMAGE)
    names = {"container": unique("nlbtest-exp"), "network": unique("nlbtest-exp-net"), "work": str(work),
             "inventory": str(work / "inventory.json"), "port": free_port()}
    names["exporter"] = names["container"] + "-exporter"
    names["settings"] = {"enabled": True, "port": names["port"], "password": MON_PW}
    write_inventory(names, names["settings"])
    started = time.time()
    proc = playbook(names)
    names["provision_seconds"] = time.time() - started
    try:
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
        psql(names, "CREATE TABLE secret (v text); INSERT INTO secret VALUES ('s3cr3t');"
                    "SELECT pg_create_logical_replication_slot('%s', 'test_decoding');" % SLOT)
        yield names
    finally:
        for name in (names["exporter"], names["container"]):
            engine("rm", "-f", "-v", name, check=False)
        engine("volume", "rm", "-f", names["container"], check=False)
        engine("network", "rm", names["network"], check=False)
        shutil.rmtree(str(work), ignore_errors=True)


def test_exporter_container_runs_beside_the_instance(site):
    info = json.loads(engine("inspect", site["exporter"]).stdout)[0]
    assert info["Config"]["Labels"]["nl-biomero.database.exporter-of"] == site["container"]
    assert info["Config"]["User"] in ("65534:65534", "65534")
    assert info["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert list(info["NetworkSettings"]["Networks"]) == [site["network"]]
    assert not any(MON_PW in arg for arg in info["Args"] + [info["Path"]])  # the password is not on the command line


def test_scrape_finds_connections_max_connections_size_and_slots(site):
    text = scrape(site["port"])
    assert samples(text, "pg_settings_max_connections")[0][1] == MAX_CONNECTIONS
    backends = dict((labels.get("datname"), value) for labels, value in samples(text, "pg_stat_database_numbackends"))
    assert "omero" in backends, text[:2000]
    assert samples(text, "pg_stat_activity_count"), "no pg_stat_activity_count"
    sizes = dict((labels.get("datname"), value) for labels, value in samples(text, "pg_database_size_bytes"))
    assert sizes.get("omero", 0) > 1000000, sizes
    slots = [sample[0].get("slot_name") for sample in samples(text, "pg_replication_slots_active")]
    assert SLOT in slots, [line for line in text.splitlines() if "slot" in line][:20]
    lag = [value for labels, value in samples(text, "pg_replication_slots_pg_wal_lsn_diff")
           if labels.get("slot_name") == SLOT]
    assert lag and lag[0] >= 0


def test_monitor_role_reads_statistics_not_data(site):
    conn = psycopg2.connect(host=container_ip(site["container"]), port=5432, user="nlb_monitor", password=MON_PW,
                            dbname="omero", connect_timeout=5)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_has_role('pg_monitor', 'MEMBER'), pg_has_role('pg_read_all_data', 'MEMBER'), "
                        "rolsuper FROM pg_roles WHERE rolname = current_user")
            assert cur.fetchone() == (True, False, False)
            cur.execute("SELECT count(*) FROM pg_stat_activity WHERE query <> ''")  # pg_read_all_stats: others' queries
            assert cur.fetchone()[0] >= 1
        conn.rollback()
        with conn.cursor() as cur:
            with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                cur.execute("SELECT v FROM secret")
    finally:
        conn.close()


def test_reader_role_is_not_made_a_monitor(site):
    """A role that reads all data is refused as the monitoring role, not changed."""
    psql(site, "CREATE ROLE nlbtest_reader LOGIN PASSWORD 'r'; GRANT pg_read_all_data TO nlbtest_reader;")
    result = run_module("nl_biomero.database.pg_read_role", {
        "container": site["container"], "login_user": "omero", "name": "nlbtest_reader", "password": "other-pw",
        "member_of": "pg_monitor"})
    assert result.get("failed"), result
    assert "reads all data (pg_read_all_data)" in result["msg"] and "nothing was changed" in result["msg"]
    assert psql(site, "SELECT pg_has_role('nlbtest_reader', 'pg_monitor', 'MEMBER')") == "f"


def test_second_run_changes_nothing(site):
    before = container_id(site["exporter"])
    proc = playbook(site, "--check")
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert recap(proc.stdout)["changed"] == 0, proc.stdout[-4000:]
    proc = playbook(site)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert recap(proc.stdout)["changed"] == 0, proc.stdout[-4000:]
    assert container_id(site["exporter"]) == before


@pytest.mark.parametrize("port", [70000, "abc"])
def test_bad_port_is_refused_and_nothing_changes(site, port):
    before = (container_id(site["container"]), container_id(site["exporter"]))
    write_inventory(site, dict(site["settings"], port=port))
    try:
        proc = playbook(site)
    finally:
        write_inventory(site, site["settings"])
    assert proc.returncode != 0
    assert re.search(r"exporter\.port must be a host port from 1 to 65535.*got '?%s'?" % port,
                     proc.stdout + proc.stderr), proc.stdout[-3000:]
    assert (container_id(site["container"]), container_id(site["exporter"])) == before


def test_exporter_off_check_mode_tells_then_removes_it(site):
    write_inventory(site, {"enabled": False})
    proc = playbook(site, "--check")
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert recap(proc.stdout)["changed"] >= 1
    assert container_id(site["exporter"]) is not None  # check mode changed nothing
    proc = playbook(site)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert container_id(site["exporter"]) is None
    assert container_id(site["container"]) is not None  # the database stays
