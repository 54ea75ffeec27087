"""A docker-compose project laid out like NL-BIOMERO's, brought up for real: shared by the compose tests."""

import json
import os
import shutil
import subprocess
import time

import pytest

from harness import ENGINE, IMAGES, engine

COMPOSE = shutil.which("docker-compose")

pytestmark = pytest.mark.skipif(ENGINE != "docker" or COMPOSE is None,
                                reason="needs docker and docker-compose (scripts/setup.sh installs it)")

# The platform's layout: two database services with its variable names, network omero, named volumes,
# a client (stand-in: the postgres image sleeping). No pulls: the images are the locally built ones.
PROJECT = """version: "3.8"
services:
  database:
    image: "{pg15}"
    environment:
      POSTGRES_USER: ${{POSTGRES_USER:-omero}}
      POSTGRES_DB: ${{POSTGRES_DB:-omero}}
      POSTGRES_PASSWORD: ${{POSTGRES_PASSWORD}}
    networks:
      - omero
    volumes:
      - "database:/var/lib/postgresql/data"
  database-biomero:
    image: "{pg15}"
    environment:
      - POSTGRES_USER=${{BIOMERO_POSTGRES_USER}}
      - POSTGRES_DB=${{BIOMERO_POSTGRES_DB}}
      - POSTGRES_PASSWORD=${{BIOMERO_POSTGRES_PASSWORD}}
    networks:
      - omero
    volumes:
      - "database-biomero:/var/lib/postgresql/data"
  omeroserver:
    image: "{pg15}"
    entrypoint: ["sleep", "infinity"]
    init: true
    depends_on:
      - database
    networks:
      - omero
networks:
  omero:
volumes:
  database:
  database-biomero:
"""

ENV = """COMPOSE_PROJECT_NAME={name}
# OMERO database
POSTGRES_USER=omero
POSTGRES_DB=omero
POSTGRES_PASSWORD='om ero"pw'
BIOMERO_POSTGRES_USER=biomero
BIOMERO_POSTGRES_DB="${{BIOMERO_POSTGRES_USER}}"
BIOMERO_POSTGRES_PASSWORD=bio$pw # the BIOMERO password
"""


class Project:
    def __init__(self, directory, name):
        self.dir = directory
        self.name = name
        self.db = "%s_database_1" % name
        self.client = "%s_omeroserver_1" % name

    def compose(self, *args, check=True, timeout=180):
        proc = subprocess.run([COMPOSE, *args], cwd=self.dir, capture_output=True, text=True, timeout=timeout,
                              check=False)
        if check and proc.returncode != 0:
            raise AssertionError("docker-compose %s failed: %s" % (" ".join(args), proc.stderr[-3000:]))
        return proc

    def up(self):
        self.compose("up", "-d")
        self.wait(self.db)

    def wait(self, name, timeout=90):
        deadline = time.time() + timeout
        while time.time() < deadline:
            # Over TCP: the image's entrypoint runs its init scripts on a server without TCP, then stops it
            # and starts the real one (a check on the socket can pass on the first while it shuts down).
            if engine("exec", name, "pg_isready", "-q", "-h", "127.0.0.1", "-U", "omero", check=False).returncode == 0:
                if engine("exec", name, "psql", "-X", "-At", "-U", "omero", "-d", "omero", "-c", "SELECT 1",
                          check=False).returncode == 0:
                    return
            time.sleep(1)
        raise AssertionError("%s did not come up: %s" % (name, engine("logs", name, check=False).stderr[-2000:]))

    def sql(self, text):
        return engine("exec", self.db, "psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-U", "omero", "-d", "omero",
                      "-c", text).stdout.strip()

    def files(self):
        return sorted(name for name in os.listdir(self.dir) if ".nlb-backup-" not in name)

    def playbook(self, name, extra=None):
        work = os.path.join(self.dir, "..", "work")
        inventory = os.path.join(work, "inventory.json")
        host = {"ansible_connection": "local",
                "ansible_python_interpreter": os.environ.get("ANSIBLE_PYTHON_INTERPRETER", "auto"),
                "postgres_upgrade_instances": [{"name": self.db, "clients": [self.client], "kind": "none"}],
                "postgres_upgrade_target_image": IMAGES[17], "postgres_upgrade_strategy": "pipe",
                "postgres_upgrade_dump_dir": os.path.join(work, "dumps"),
                "postgres_upgrade_backup_dir": os.path.join(work, "backups"),
                "postgres_upgrade_wait_timeout": 90, "postgres_upgrade_stop_timeout": 30,
                "postgres_upgrade_client_stop_timeout": 5}
        host.update(extra or {})
        with open(inventory, "w") as handle:
            json.dump({"nl_biomero_database": {"hosts": {"localhost": host}}}, handle)
        from harness import REPO_ROOT
        return subprocess.run(["ansible-playbook", "-i", inventory, os.path.join(REPO_ROOT, "playbooks", name),
                               "-e", "upgrade_report_dir=%s" % os.path.join(work, "reports")],
                              capture_output=True, text=True, timeout=600, check=False)
