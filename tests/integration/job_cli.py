"""The scheduled backup job's command line as cron and systemd run it, and what it leaves behind
(metrics, container state, restore-test leftovers): shared by the backup tests."""

import json
import os
import subprocess

from harness import REPO_ROOT, engine

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
