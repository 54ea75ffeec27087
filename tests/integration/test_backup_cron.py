"""The postgres_backup role's schedules run exactly as installed (issues 5 and 11).

- cron: the role installs the job and an every-minute /etc/cron.d entry, a
  real cron daemon runs it on schedule (minimal environment, cron's '%' rule,
  /bin/sh, as in production) and a complete backup set appears.
- systemd: the units pass `systemd-analyze verify`, and ExecStart= read back
  the way systemd splits it (tests/integration/schedule_lines.py) runs the
  job in an empty environment with the unit's Environment=.
Both with an install dir and a configuration path holding a space and a '%'. Also: a lock or metrics file in a world-writable
directory is refused before anything is installed.
Needs root and Debian's cron (scripts/setup.sh installs it); everything made
is named nlbtest-cron-*."""

import json
import os
import shutil
import subprocess
import time
import uuid

import pytest

from harness import ENGINE
from schedule_lines import cron_command, cron_entries, service

from ansible_collections.nl_biomero.database.plugins.module_utils.schedule import systemd_command

CRON_DIR = "/etc/cron.d"
WAIT_FOR_SET = 130
PYTHON = "/usr/bin/python3"
MODULE = "ansible_collections.nl_biomero.database.plugins.module_utils.backup_run"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def metric_values(path):
    """{sample name: [(labels, value)]} of a textfile, read by Prometheus' own parser (prometheus_client)."""
    from prometheus_client.parser import text_string_to_metric_families
    with open(path) as handle:
        text = handle.read()
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values.setdefault(sample.name, []).append((sample.labels, sample.value))
    return values


def running_cron():
    """Pid of a cron daemon already running on this machine (zombies ignored), else None."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as handle:
                stat = handle.read()
        except OSError:
            continue
        name, state = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split(" ", 1)[0]
        if name in ("cron", "crond") and state != "Z":
            return int(entry)
    return None


def processes_with(text):
    """Pids of processes whose command line mentions text (the cron job of this test)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as handle:
                cmdline = handle.read().decode("utf-8", "replace")
        except OSError:
            continue
        if text in cmdline:
            pids.append(int(entry))
    return pids


def apply_role(work, role_vars, succeed=True):
    """Apply the role to localhost with ansible-playbook, as a user does; returns the finished process."""
    playbook = [{"hosts": "localhost", "gather_facts": False,
                 "roles": [{"role": "nl_biomero.database.postgres_backup", "vars": role_vars}]}]
    path = os.path.join(work, "play.yml")
    with open(path, "w") as handle:
        json.dump(playbook, handle)
    inventory = os.path.join(work, "inventory")
    with open(inventory, "w") as handle:
        handle.write("localhost ansible_connection=local ansible_python_interpreter=%s\n"
                     % os.environ.get("ANSIBLE_PYTHON_INTERPRETER", "auto"))
    proc = subprocess.run(["ansible-playbook", "-i", inventory, path], capture_output=True, text=True,
                          timeout=300, check=False)
    if succeed:
        assert proc.returncode == 0, "applying the role failed:\n%s\n%s" % (proc.stdout[-4000:], proc.stderr[-2000:])
    return proc


def read_sets(backup_dir):
    """{set name: manifest} of the sets in backup_dir (manifests written atomically)."""
    sets = {}
    if not os.path.isdir(backup_dir):
        return sets
    for name in sorted(os.listdir(backup_dir)):
        manifest = os.path.join(backup_dir, name, "set.manifest.json")
        if os.path.isfile(manifest):
            with open(manifest) as handle:
                sets[name] = json.load(handle)
    return sets


def read_text(path, default=""):
    if not os.path.exists(path):
        return default
    with open(path) as handle:
        return handle.read()


def test_real_cron_daemon_runs_the_installed_job(pg_factory, tmp_path):
    if os.geteuid() != 0:
        pytest.fail("test_backup_cron needs root (it writes %s and may start a cron daemon)" % CRON_DIR)
    if not os.path.exists(PYTHON):
        pytest.fail("%s is missing: the role's job runs with the system Python" % PYTHON)
    cron = shutil.which("cron") or next((path for path in ("/usr/sbin/cron", "/usr/sbin/crond") if os.path.exists(path)), None)
    if running_cron() is None and cron is None:
        pytest.fail("no cron daemon: install Debian's cron (apt-get install -y cron; scripts/setup.sh does)")
    db = pg_factory(major=17, prefix="nlbtest-cron", user="app", password="cr0n-pw", database="appdb")
    db.psql("CREATE TABLE job (id bigint PRIMARY KEY, status text);"
            "INSERT INTO job SELECT g, 'Finished' FROM generate_series(1, 42) g;")

    name = "nlbtest-cron-%s" % uuid.uuid4().hex[:8]
    work = str(tmp_path / name)
    os.makedirs(work)
    backup_dir = os.path.join(work, "backups")
    install_dir = os.path.join(work, "opt nl %biomero")  # a space and a '%': cron and sh must see them as they are
    config_file = os.path.join(work, "etc 100%", "backup job.json")
    cron_file = os.path.join(CRON_DIR, name)  # no dots: cron ignores such names in /etc/cron.d
    metrics_file = os.path.join(work, "textfile", "nl_biomero_backup.prom")
    daemon = None
    log_path = os.path.join(work, "cron.log")
    try:
        apply_role(work, {
            "postgres_backup_scheduler": "cron",
            "postgres_backup_cron_schedule": "* * * * *",
            "postgres_backup_engine": ENGINE,
            "postgres_backup_python": PYTHON,
            "postgres_backup_dir": backup_dir,
            "postgres_backup_install_dir": install_dir,
            "postgres_backup_config_file": config_file,
            "postgres_backup_systemd_dir": os.path.join(work, "systemd"),
            "postgres_backup_cron_file": cron_file,
            "postgres_backup_metrics_file": metrics_file,
            "postgres_backup_databases": [{"name": "appdb", "container": db.name, "database": "appdb", "user": "app"}],
            "postgres_backup_retention": {},
        })
        status = os.stat(cron_file)
        assert status.st_uid == 0 and status.st_mode & 0o777 == 0o644, "cron ignores %s: owner/mode" % cron_file
        with open(cron_file) as handle:
            entry = handle.read()
        entries = cron_entries(entry)
        assert [item[:2] for item in entries] == [("* * * * *", "root"), ("@reboot", "root")], entry
        # what cron hands to sh: the job with its PYTHONPATH, no stdin; run as it is (plus --check) it finds its
        # module and its configuration; at boot the same line with --recover
        command, stdin = cron_command(entries[0][2])
        assert stdin is None and command.startswith("PYTHONPATH="), entry
        assert cron_command(entries[1][2]) == (command + " --recover", None), entry
        check = subprocess.run(["env", "-i", "PATH=" + PATH, "/bin/sh", "-c", command + " --check"],
                               capture_output=True, text=True, check=False, cwd="/")
        assert check.returncode == 0 and json.loads(check.stdout)["backup_dir"] == backup_dir, check.stderr

        if running_cron() is None:
            log = open(log_path, "w")
            try:
                daemon = subprocess.Popen([cron, "-f"], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          start_new_session=True)
            finally:
                log.close()
            time.sleep(1)
            assert daemon.poll() is None, "cron -f exited at once (rc=%s): %s" % (daemon.returncode, read_text(log_path))

        deadline = time.time() + WAIT_FOR_SET
        complete = None
        while time.time() < deadline and complete is None:
            complete = next((item for item in read_sets(backup_dir).items() if item[1].get("complete") is True), None)
            if complete is None:
                time.sleep(2)
        if complete is None:
            cron_log = read_text(log_path, "(a cron daemon already ran, not started by the test)")
            pytest.fail("no complete backup set from cron within %ss; sets: %s; cron output: %s"
                        % (WAIT_FOR_SET, json.dumps(read_sets(backup_dir))[-3000:], cron_log[-2000:]))

        set_name, manifest = complete
        assert manifest["complete"] is True and manifest["finished"], manifest
        by_name = dict((item["name"], item) for item in manifest["components"])
        assert by_name["appdb"]["kind"] == "database", by_name
        assert by_name["appdb"]["row_counts"] == {"public.job": 42}, by_name["appdb"]
        assert os.path.isfile(os.path.join(backup_dir, set_name, by_name["appdb"]["path"]))
        # the job ran under cron, which sets syslog on; the metrics came from that run
        with open(config_file) as handle:
            assert json.load(handle)["syslog"] is True
        # (parsed: the HELP line alone also holds the text "nl_biomero_backup_last_run_success 1")
        assert metric_values(metrics_file)["nl_biomero_backup_last_run_success"] == [({"backup_dir": backup_dir}, 1.0)]
    finally:
        if os.path.exists(cron_file):
            os.remove(cron_file)
        if daemon is not None:
            daemon.terminate()
            try:
                daemon.wait(timeout=10)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait(timeout=10)
        # a run cron started just before may still be going: let it end before removing its folders
        deadline = time.time() + 120
        while processes_with(config_file) and time.time() < deadline:
            time.sleep(1)
        shutil.rmtree(work, ignore_errors=True)


def test_systemd_unit_runs_the_job_exactly_as_written(pg_factory, tmp_path):
    """The service's ExecStart=, split the way systemd splits it, with its Environment=, runs the job; the units
    pass systemd-analyze verify; recovery runs before and after (ignoring failure), the run has a ceiling."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is missing: apt-get install -y systemd")
    db = pg_factory(major=17, prefix="nlbtest-cron-sd", user="app", password="sd-pw", database="appdb")
    db.psql("CREATE TABLE job (id bigint PRIMARY KEY); INSERT INTO job SELECT generate_series(1, 7);")
    work = str(tmp_path / "nlbtest-cron-sd")
    os.makedirs(work)
    # no '$': Ansible's path options expand variables in paths (the copy would go elsewhere)
    install_dir = os.path.join(work, "opt nl %n")
    config_file = os.path.join(work, "etc 100%", "backup %i job.json")
    backup_dir = os.path.join(work, "backups")
    systemd_dir = os.path.join(work, "systemd")
    os.makedirs(systemd_dir)  # /etc/systemd/system exists on a host
    apply_role(work, {
        "postgres_backup_scheduler": "systemd",
        "postgres_backup_engine": ENGINE,
        "postgres_backup_python": PYTHON,
        "postgres_backup_dir": backup_dir,
        "postgres_backup_install_dir": install_dir,
        "postgres_backup_config_file": config_file,
        "postgres_backup_systemd_dir": systemd_dir,
        "postgres_backup_cron_file": os.path.join(work, "cron.d", "nlbtest-cron-sd"),
        "postgres_backup_metrics_file": os.path.join(work, "textfile", "nl_biomero_backup.prom"),
        "postgres_backup_databases": [{"name": "appdb", "container": db.name, "database": "appdb", "user": "app"}],
        "postgres_backup_retention": {"keep_last": 1},
        "postgres_backup_timeout_start_sec": "2h",
    })
    unit = os.path.join(systemd_dir, "nl-biomero-backup.service")
    proc = subprocess.run([analyze, "verify", "--man=no", unit, os.path.join(systemd_dir, "nl-biomero-backup.timer")],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stderr
    with open(unit) as handle:
        text = handle.read()
    read = service(text)
    argv = [PYTHON, "-m", MODULE, "--config", config_file]
    assert read["argv"] == argv and read["prefix"] == ""
    assert read["env"] == {"PYTHONPATH": install_dir}
    assert read["pre"] == [("-", argv + ["--recover"])] and read["post"] == [("-", argv + ["--recover"])]
    assert "ExecStart=%s\n" % systemd_command(argv) in text
    assert "TimeoutStartSec=2h\n" in text and "TimeoutStopSec=10min\n" in text
    # the boot unit: the same command with --recover, wanted at boot, after the engine
    boot_unit = os.path.join(systemd_dir, "nl-biomero-backup-recover.service")
    proc = subprocess.run([analyze, "verify", "--man=no", boot_unit], capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stderr
    with open(boot_unit) as handle:
        boot_text = handle.read()
    boot = service(boot_text)
    assert boot["argv"] == argv + ["--recover"] and boot["prefix"] == "" and boot["env"] == read["env"]
    assert "WantedBy=multi-user.target\n" in boot_text and "After=docker.service" in boot_text
    job = subprocess.run(["env", "-i", "PATH=" + PATH, "PYTHONPATH=" + read["env"]["PYTHONPATH"]] + read["argv"],
                         capture_output=True, text=True, timeout=600, check=False, cwd="/")
    assert job.returncode == 0, job.stderr
    sets = read_sets(backup_dir)
    assert len(sets) == 1 and list(sets.values())[0]["complete"] is True, sets
    assert list(sets.values())[0]["components"][0]["row_counts"] == {"public.job": 7}
    values = metric_values(os.path.join(work, "textfile", "nl_biomero_backup.prom"))
    assert values["nl_biomero_backup_last_run_success"] == [({"backup_dir": backup_dir}, 1.0)]
    # the boot unit's command, as systemd runs it, finds nothing to recover after a run that ended
    recover = subprocess.run(["env", "-i", "PATH=" + PATH, "PYTHONPATH=" + boot["env"]["PYTHONPATH"]] + boot["argv"],
                             capture_output=True, text=True, timeout=600, check=False, cwd="/")
    assert recover.returncode == 0, recover.stderr
    assert read_sets(backup_dir) == sets


@pytest.mark.parametrize("variable", ["postgres_backup_lock_file", "postgres_backup_metrics_file"])
def test_role_refuses_a_job_file_in_a_world_writable_directory(tmp_path, variable):
    work = str(tmp_path / "nlbtest-cron-ww")
    shared = os.path.join(work, "shared")
    os.makedirs(shared)
    os.chmod(shared, 0o1777)
    install_dir = os.path.join(work, "opt")
    config_file = os.path.join(work, "etc", "backup.json")
    proc = apply_role(work, {
        "postgres_backup_scheduler": "cron",
        "postgres_backup_dir": os.path.join(work, "backups"),
        "postgres_backup_install_dir": install_dir,
        "postgres_backup_config_file": config_file,
        "postgres_backup_systemd_dir": os.path.join(work, "systemd"),
        "postgres_backup_cron_file": os.path.join(work, "cron.d", "nlbtest-cron-ww"),
        "postgres_backup_metrics_file": os.path.join(work, "textfile", "m.prom"),
        "postgres_backup_databases": [{"container": "nlbtest-cron-none", "database": "appdb"}],
        variable: os.path.join(shared, "job.file"),
    }, succeed=False)
    assert proc.returncode != 0
    assert ("%s %s: its directory %s is writable by" % (variable, os.path.join(shared, "job.file"), shared)
            in proc.stdout), proc.stdout[-3000:]
    assert "(mode 1777)" in proc.stdout and "Nothing was installed" in proc.stdout
    assert sorted(os.listdir(work)) == ["inventory", "play.yml", "shared"]
    assert os.listdir(shared) == [] and os.stat(shared).st_mode & 0o7777 == 0o1777
