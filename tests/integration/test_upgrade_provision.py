"""Provisioning accepts the container an upgrade produced.

provision.yml (PostgreSQL 15) -> data -> upgrade.yml (to 17) -> the inventory
updated as the postgres_upgrade README says (the 17 image, the volume
``<volume>-pg17``) -> provision.yml again changes nothing (changed=0) and the
data is there; the new container says major 17 and keeps the upgrade's labels
(rollback still finds the old instance). Before the inventory is updated,
provisioning refuses and changes nothing.
"""

import json
import os
import re
import subprocess

import pytest

from harness import ENGINE, REPO_ROOT, engine, require_image, unique

pytestmark = pytest.mark.skipif(ENGINE != "docker", reason="the postgres_upgrade role is tested with Docker")


def playbook(work, name, inventory, *extra):
    """Run playbooks/<name>.yml as a user does; returns the CompletedProcess."""
    return subprocess.run(["ansible-playbook", "-i", inventory, *extra, os.path.join(REPO_ROOT, "playbooks", name)],
                          capture_output=True, text=True, timeout=900, check=False, cwd=work)


def recap(output, host):
    """{ok, changed, failed, ...} of ``host`` in a PLAY RECAP (the last one)."""
    found = re.findall(r"^%s\s*:\s*(.*)$" % re.escape(host), output, re.M)
    return dict((key, int(value)) for key, value in re.findall(r"(\w+)=(\d+)", found[-1]))


def write_inventory(path, site, image, volume):
    with open(path, "w") as handle:
        json.dump({"nl_biomero_database": {"hosts": {"db-host": {
            "ansible_connection": "local",
            "ansible_python_interpreter": os.environ.get("ANSIBLE_PYTHON_INTERPRETER", "auto"),
            # Provisioning (role postgres_container).
            "postgres_container_instances": [{
                "name": site["container"], "role": "biomero", "user": "biomero", "db": "biomero",
                "password": "prov'pw", "image": image, "volume": volume, "aliases": ["biomero-db"],
                "initdb_dir": site["initdb"], "settings": {"work_mem": "12MB"}}],
            "postgres_container_network": site["network"],
            "postgres_container_tuning": "none",
            "postgres_container_stop_timeout": 30,
            # The upgrade (role postgres_upgrade).
            "postgres_upgrade_target_image": require_image(17),
            "postgres_upgrade_strategy": "pipe",
            "postgres_upgrade_dump_dir": site["dumps"],
            "postgres_upgrade_backup_dir": site["backups"],
            "postgres_upgrade_instances": [{"name": site["container"], "kind": "biomero"}],
        }}}}, handle)


@pytest.fixture
def site(tmp_path):
    names = {"container": unique("nlbtest-swp-prov"), "network": unique("nlbtest-swp-provnet")}
    for sub in ("initdb", "dumps", "backups", "reports"):
        names[sub] = str(tmp_path / sub)
        os.makedirs(names[sub], mode=0o700)
    with open(os.path.join(names["initdb"], "01-marker.sql"), "w") as handle:
        handle.write("CREATE TABLE init_marker (id int PRIMARY KEY); INSERT INTO init_marker VALUES (1);\n")
    os.chmod(names["initdb"], 0o755)
    names["work"] = str(tmp_path)
    yield names
    for container in (names["container"], names["container"] + "-pg15"):
        engine("rm", "-f", "-v", container, check=False)
    for volume in (names["container"], names["container"] + "-pg17"):
        engine("volume", "rm", "-f", volume, check=False)
    engine("network", "rm", names["network"], check=False)


def count(container, sql):
    return engine("exec", container, "psql", "-X", "-At", "-U", "biomero", "-d", "biomero", "-c", sql).stdout.strip()


def test_provision_upgrade_update_inventory_provision_again(site):
    inventory = os.path.join(site["work"], "inventory.json")
    write_inventory(inventory, site, require_image(15), site["container"])
    proc = playbook(site["work"], "provision.yml", inventory)
    assert proc.returncode == 0, proc.stdout[-4000:]
    engine("exec", site["container"], "psql", "-X", "-U", "biomero", "-d", "biomero", "-c",
           "CREATE TABLE imports (id serial PRIMARY KEY, stage text); "
           "INSERT INTO imports (stage) SELECT 'Import Completed' FROM generate_series(1, 500)")

    proc = playbook(site["work"], "upgrade.yml", inventory, "-e", "upgrade_report_dir=" + site["reports"])
    assert proc.returncode == 0, proc.stdout[-6000:]
    labels = json.loads(engine("inspect", site["container"]).stdout)[0]["Config"]["Labels"]
    assert labels["nl-biomero.database.major"] == "17"
    assert labels["org.nl-biomero.upgrade.previous-container"] == site["container"] + "-pg15"
    assert labels["org.nl-biomero.upgrade.from-major"] == "15"
    assert labels["nl-biomero.database.managed-by"] == "nl_biomero.database.postgres_container"
    new_id = json.loads(engine("inspect", site["container"]).stdout)[0]["Id"]

    # The inventory not updated yet: provisioning refuses, names what to do, and changes nothing.
    proc = playbook(site["work"], "provision.yml", inventory)
    assert proc.returncode != 0
    assert "runs PostgreSQL 17 and the image %s is PostgreSQL 15" % require_image(15) in proc.stdout
    assert "postgres_upgrade" in proc.stdout
    assert json.loads(engine("inspect", site["container"]).stdout)[0]["Id"] == new_id

    # Updated as the README says: the 17 image and the volume <volume>-pg17.
    write_inventory(inventory, site, require_image(17), site["container"] + "-pg17")
    proc = playbook(site["work"], "provision.yml", inventory)
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert recap(proc.stdout, "db-host")["changed"] == 0, proc.stdout[-6000:]
    info = json.loads(engine("inspect", site["container"]).stdout)[0]
    assert info["Id"] == new_id and info["State"]["Running"]
    assert count(site["container"], "SELECT count(*) FROM imports") == "500"
    assert count(site["container"], "SELECT count(*) FROM init_marker") == "1"
    assert count(site["container"], "SHOW server_version").startswith("17.")
    # Rollback still finds the old instance through the kept upgrade labels.
    proc = playbook(site["work"], "rollback.yml", inventory)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert count(site["container"], "SHOW server_version").startswith("15.")
    assert count(site["container"], "SELECT count(*) FROM imports") == "500"
