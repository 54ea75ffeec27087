"""The README's main job: playbooks/demo.yml on local containers, run twice, then cleaned up."""

import os
import subprocess

from harness import REPO_ROOT, engine

DEMO_CONTAINERS = ("nlbdemo-database", "nlbdemo-database-biomero")


def playbook(name):
    proc = subprocess.run(["ansible-playbook", "-i", "localhost,", os.path.join(REPO_ROOT, "playbooks", name)],
                          capture_output=True, text=True, timeout=900, check=False, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return proc.stdout


def summary_lines(output):
    block = output[output.index("TASK [Summary]"):]
    return [line.strip().strip('",') for line in block.splitlines() if line.strip().startswith('"nlbdemo-')]


def test_demo_runs_twice_and_cleans_up():
    try:
        first = summary_lines(playbook("demo.yml"))
        assert len(first) == 2
        omero, biomero = first
        assert omero.split()[1].startswith("17.")
        assert "max_connections=500" in omero and ".dump" in omero
        assert biomero.endswith("1 new, 0 already retried")

        second_output = playbook("demo.yml")
        second = summary_lines(second_output)
        assert second[1].endswith("0 new, 1 already retried")
        # the re-run only adds one new backup per database
        assert "changed=1 " in second_output.split("PLAY RECAP")[1]
        backups = os.listdir(os.path.join(REPO_ROOT, ".build", "demo", "backups"))
        assert len([name for name in backups if name.endswith(".dump")]) == 4
        assert len([name for name in backups if name.endswith(".manifest.json")]) == 4
        password = open(os.path.join(REPO_ROOT, ".build", "demo", "biomero-db.password")).read().strip()
        assert password not in second_output
    finally:
        playbook("demo_cleanup.yml")
    for name in DEMO_CONTAINERS:
        assert engine("container", "inspect", name, check=False).returncode != 0
    assert not os.path.exists(os.path.join(REPO_ROOT, ".build", "demo"))
