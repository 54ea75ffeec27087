"""The scheduled backup job's command line as cron and systemd run it, and what it leaves behind
(metrics, container state, restore-test leftovers): shared by the backup tests."""

import json
import os
import subprocess

from harness import ENGINE, REPO_ROOT, engine

COLLECTIONS = os.path.join(REPO_ROOT, ".build", "collections")
CLI = "ansible_collections.nl_biomero.database.plugins.module_utils.backup_run"
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else "python3"


def run_cli(config_path, *extra):
    """The command exactly as the role's systemd unit / cron entry runs it: no Ansible, minimal environment."""
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": COLLECTIONS,
           "LANG": "C.UTF-8"}
    return subprocess.run([PYTHON, "-m", CLI, "--config", config_path, *extra], capture_output=True, text=True,
                          env=env, timeout=600, check=False, cwd="/")


def write_config(path, config):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(config, handle)
    return path


def metrics(path):
    values = {}
    with open(path) as handle:
        for line in handle:
            if line.startswith("#") or not line.strip():
                continue
            key, value = line.rsplit(" ", 1)
            values[key] = float(value)
    return values


def metric(values, name, **labels):
    for key, value in values.items():
        if key.startswith("nl_biomero_backup_" + name + "{") and all('%s="%s"' % item in key for item in labels.items()):
            return value
    raise KeyError(name)


def state(name):
    return json.loads(engine("container", "inspect", name).stdout)[0]["State"]


def restore_leftovers():
    containers = engine("ps", "-a", "--filter", "name=nlb-restoretest-", "--format", "{{.Names}}").stdout.strip()
    volumes = engine("volume", "ls", "--filter", "name=nlb-restoretest-", "--format", "{{.Name}}").stdout.strip()
    return containers + volumes


def run_playbook(name, tmp_path, extra):
    """One of the collection's playbooks on localhost with the role's engine and the test's backup directory."""
    inventory = tmp_path / "inventory"
    inventory.write_text("localhost ansible_connection=local ansible_python_interpreter=%s\n"
                         % os.environ.get("ANSIBLE_PYTHON_INTERPRETER", "auto"))
    return subprocess.run(["ansible-playbook", "-i", str(inventory), os.path.join(REPO_ROOT, "playbooks", name),
                           # the backup directory is always the test's own: the lock lives there even for a dump
                           "-e", json.dumps(dict({"target": "localhost", "postgres_backup_engine": ENGINE,
                                                  "postgres_backup_dir": str(tmp_path / "backups")}, **extra)),
                           "-e", "ansible_python_interpreter=%s" % os.environ.get("ANSIBLE_PYTHON_INTERPRETER", "auto")],
                          capture_output=True, text=True, timeout=600, check=False)
