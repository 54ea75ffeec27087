"""The upgrade's new container is a complete clone of the old one, and its staging container is walled off.

A PostgreSQL 15 container run with a rich set of options a site may choose
(capabilities, security options, read-only root with tmpfs, ulimits, log
options, extra hosts, pids limit, a device, shm size, sysctls, DNS, memory and
CPU limits, restart policy, stop timeout, working directory, hostname, health
check, init, extra groups, an exposed port, a published port, a network alias
and fixed address, bind mounts, a password file, WAL archiving into a bind
mount) is upgraded to 17 by the role; ``inspect`` of the old and the new
container must agree on everything but the differences listed in ALLOWED.
While the new cluster runs in its staging container (the before-verify hook),
that container must have the new volume as its only mount and archive_mode
off, and the old cluster's WAL archive must be untouched.
"""

import json
import os
import random
import subprocess
import time

import pytest

from harness import ENGINE, engine, require_image, unique

pytestmark = pytest.mark.skipif(ENGINE != "docker", reason="the postgres_upgrade role is tested with Docker")

# What the upgrade changes on purpose, and nothing else may differ.
ALLOWED = {
    "Config.Image": "the target image",
    "Config.Env": "variables inherited from the image (PATH, PG_MAJOR) follow the new image",
    "Config.Labels": "the image's labels follow the new image; the upgrade's own labels are added",
    "HostConfig.Binds": "the old data volume's -v binding is replaced by the new volume (a mount)",
    "HostConfig.Mounts": "the new data volume",
    "Mounts": "the data volume: the old one replaced by <volume>-pg17",
    "Image": "the target image's id",
    # How the engine client created it: `docker run -d` says false, the API (docker_container) true;
    # nothing is attached to a detached container either way.
    "Config.AttachStdout": "docker run -d vs the API",
    "Config.AttachStderr": "docker run -d vs the API",
}
UPGRADE_LABELS = ("org.nl-biomero.upgrade.", "nl-biomero.database.major")


def same(value):
    """Values that mean the same to the engine compare equal: an empty list/map is no setting."""
    return None if value in ([], {}, "", None) else value


def bind(entry):
    """A -v binding without a mode is read-write (the API writes ':rw')."""
    return entry if entry.count(":") >= 2 else entry + ":rw"


def inspect(name):
    return json.loads(engine("inspect", name).stdout)[0]


def image_env(image):
    return set(json.loads(engine("image", "inspect", image).stdout)[0]["Config"]["Env"])


def image_labels(image):
    return json.loads(engine("image", "inspect", image).stdout)[0]["Config"].get("Labels") or {}


def listing(directory):
    """{file: (size, mtime)} of a directory (the WAL archive)."""
    return dict((name, (os.stat(os.path.join(directory, name)).st_size,
                        os.stat(os.path.join(directory, name)).st_mtime_ns)) for name in os.listdir(directory))


def differences(old, new, old_image, new_image, old_volume, new_volume):
    """Paths of inspect where old and new differ, once the ALLOWED differences are taken out."""
    found = []
    for section in ("Config", "HostConfig"):
        for key in sorted(set(old[section]) | set(new[section])):
            path = "%s.%s" % (section, key)
            if path in ALLOWED:
                continue
            if same(old[section].get(key)) != same(new[section].get(key)):
                found.append("%s: %r -> %r" % (path, old[section].get(key), new[section].get(key)))
    # Env: what the container set itself is equal; the rest is exactly the new image's.
    old_own = set(old["Config"]["Env"]) - image_env(old_image)
    new_own = set(new["Config"]["Env"]) - image_env(new_image)
    if old_own != new_own:
        found.append("Config.Env: %r -> %r" % (sorted(old_own), sorted(new_own)))
    # Labels: the container's own are equal; added are only the upgrade's.
    old_labels = dict((k, v) for k, v in old["Config"]["Labels"].items() if image_labels(old_image).get(k) != v)
    new_labels = dict((k, v) for k, v in new["Config"]["Labels"].items()
                      if image_labels(new_image).get(k) != v and not k.startswith(UPGRADE_LABELS))
    if old_labels != new_labels:
        found.append("Config.Labels: %r -> %r" % (old_labels, new_labels))
    # Mounts: equal but for the data volume.
    if mounts(old, old_volume) != mounts(new, new_volume):
        found.append("Mounts: %r -> %r" % (mounts(old, old_volume), mounts(new, new_volume)))
    binds = [bind(b) for b in old["HostConfig"]["Binds"] if not b.startswith(old_volume + ":")]
    if binds != [bind(b) for b in new["HostConfig"]["Binds"] or []]:
        found.append("HostConfig.Binds: %r -> %r" % (binds, new["HostConfig"]["Binds"]))
    new_mounts = [m for m in new["HostConfig"]["Mounts"] if m.get("Source") != new_volume]
    if (old["HostConfig"].get("Mounts") or []) != new_mounts:
        found.append("HostConfig.Mounts: %r -> %r" % (old["HostConfig"].get("Mounts"), new_mounts))
    # Networks: aliases (less the engine's own), fixed address, links.
    for network in sorted(set(old["NetworkSettings"]["Networks"]) | set(new["NetworkSettings"]["Networks"])):
        if endpoint(old, network) != endpoint(new, network):
            found.append("network %s: %r -> %r" % (network, endpoint(old, network), endpoint(new, network)))
    return found


def mounts(info, volume):
    """The mounts of a container but ``volume``, as (type, name or source, destination, rw, mode)."""
    return sorted((m["Type"], m.get("Name") or m["Source"], m["Destination"], m["RW"],
                   m.get("Mode") or ("rw" if m["Type"] == "bind" else ""))
                  for m in info["Mounts"] if m.get("Name") != volume)


def endpoint(info, network):
    """Aliases (less the engine's own), fixed address, links and address of a container on ``network``."""
    data = info["NetworkSettings"]["Networks"].get(network) or {}
    aliases = sorted(a for a in data.get("Aliases") or [] if a != info["Id"][:12])
    return aliases, data.get("IPAMConfig"), data.get("Links"), data.get("IPAddress")


@pytest.fixture
def site(tmp_path):
    """Names of everything the test makes, removed afterwards."""
    names = {"container": unique("nlbtest-swp-rich"), "network": unique("nlbtest-swp-net"),
             "client": unique("nlbtest-swp-client"), "dir": str(tmp_path)}
    names["volume"] = names["container"] + "-data"
    yield names
    for container in (names["container"], names["container"] + "-pg15", names["container"] + "-pg17-staging",
                      names["client"]):
        engine("rm", "-f", "-v", container, check=False)
    for volume in (names["volume"], names["volume"] + "-pg17"):
        engine("volume", "rm", "-f", volume, check=False)
    engine("network", "rm", names["network"], check=False)


def _free_subnet(network):
    """Create ``network`` on a /24 outside the engine's default pools (172.17-31, 192.168) that no network of
    this host overlaps; returns its first three octets."""
    for third in random.sample(range(1, 255), 20):
        prefix = "10.231.{0}".format(third)
        created = engine("network", "create", "--subnet", prefix + ".0/24", network, check=False)
        if created.returncode == 0:
            return prefix
        assert "overlaps" in created.stderr, created.stderr
    raise AssertionError("no free /24 in 10.231.0.0/16 for the test network")


def test_new_container_is_a_complete_clone_and_staging_is_walled_off(site):
    old_image, new_image = require_image(15), require_image(17)
    work = site["dir"]
    for sub in ("archive", "secrets", "backups", "dumps", "staging"):
        os.makedirs(os.path.join(work, sub))
    os.chmod(os.path.join(work, "archive"), 0o777)
    os.chmod(os.path.join(work, "backups"), 0o700)
    with open(os.path.join(work, "secrets", "pw"), "w") as handle:
        handle.write("pw from file\n")
    subnet = _free_subnet(site["network"])
    engine(
        "run", "-d", "--name", site["container"], "--pull", "never",
        "--network", site["network"], "--network-alias", "rich-db", "--ip", subnet + ".10",
        "-p", "127.0.0.1::5432", "--expose", "7000",
        "--cap-add", "SYS_PTRACE", "--cap-drop", "MKNOD", "--security-opt", "no-new-privileges",
        "--read-only", "--tmpfs", "/run/postgresql:rw,size=16m", "--tmpfs", "/tmp",
        "--mount", "type=tmpfs,target=/scratch,tmpfs-size=1m,tmpfs-mode=1770",
        "--ulimit", "nofile=4096:8192", "--log-opt", "max-size=5m", "--log-opt", "max-file=2",
        "--add-host", "db.example:10.1.2.3", "--pids-limit", "300", "--device", "/dev/null:/dev/nulldev:rwm",
        "--shm-size", "128m", "--sysctl", "net.ipv4.tcp_keepalive_time=600",
        "--dns", "10.0.0.53", "--dns-search", "example.org", "--dns-option", "ndots:2",
        "--memory", "512m", "--memory-reservation", "256m", "--cpus", "1.5", "--cpu-shares", "512",
        "--restart", "on-failure:3", "--stop-timeout", "45", "--workdir", "/tmp", "--hostname", "pgdb",
        "--oom-score-adj", "100", "--init", "--group-add", "44",
        "--health-cmd", "pg_isready -h 127.0.0.1 -U app -d appdb", "--health-interval", "1s", "--health-retries", "30",
        "--label", "app=omero",
        "-e", "FOO=bar", "-e", "POSTGRES_USER=app", "-e", "POSTGRES_DB=appdb",
        "-e", "POSTGRES_PASSWORD_FILE=/run/secrets/pw",
        "-v", site["volume"] + ":/var/lib/postgresql/data",
        "-v", os.path.join(work, "secrets") + ":/run/secrets:ro",
        "-v", os.path.join(work, "archive") + ":/archive",
        old_image, "postgres", "-c", "work_mem=8MB", "-c", "archive_mode=on", "-c", "archive_command=cp %p /archive/%f",
    )
    engine("run", "-d", "--name", site["client"], "--pull", "never", "--network", site["network"],
           "--entrypoint", "sleep", old_image, "infinity")
    deadline = time.time() + 90
    while inspect(site["container"])["State"].get("Health", {}).get("Status") != "healthy":
        assert time.time() < deadline, engine("logs", site["container"], check=False).stderr[-2000:]
        time.sleep(1)
    engine("exec", site["container"], "psql", "-X", "-U", "app", "-d", "appdb", "-c",
           "CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g; SELECT pg_switch_wal()")
    # Until the archiver reports the copy done: a file listed while cp still writes it changes its mtime later.
    deadline = time.time() + 30
    while engine("exec", site["container"], "psql", "-X", "-At", "-U", "app", "-d", "appdb", "-c",
                 "SELECT archived_count FROM pg_stat_archiver").stdout.strip() in ("", "0"):
        assert time.time() < deadline, "the old cluster archived nothing"
        time.sleep(0.5)
    archive_before = listing(os.path.join(work, "archive"))
    assert archive_before
    old = inspect(site["container"])

    # Before verification, the hook records what the staging container looks like.
    hook = os.path.join(work, "staging.yml")
    with open(hook, "w") as handle:
        json.dump([
            {"name": "Read the staging container", "community.docker.docker_container_info": {
                "name": "{{ postgres_upgrade_verify_container }}"}, "register": "staging", "no_log": True},
            {"name": "Read its archive settings", "community.docker.docker_container_exec": {
                "container": "{{ postgres_upgrade_verify_container }}",
                "argv": ["psql", "-X", "-At", "-U", "app", "-d", "postgres", "-c",
                         "SELECT name || '=' || setting FROM pg_settings WHERE name IN "
                         "('archive_mode', 'archive_command', 'work_mem') ORDER BY 1"]},
             "register": "settings"},
            {"name": "Read the old cluster's archive", "ansible.builtin.find": {
                "paths": os.path.join(work, "archive")}, "register": "archive"},
            {"name": "Keep what was seen", "ansible.builtin.copy": {
                "dest": os.path.join(work, "staging", "seen.json"), "mode": "0600",
                "content": "{{ {'mounts': staging.container.Mounts, 'binds': staging.container.HostConfig.Binds,"
                           " 'env': staging.container.Config.Env | map('regex_replace', '=.*', '') | list,"
                           " 'networks': staging.container.NetworkSettings.Networks.keys() | list,"
                           " 'settings': settings.stdout_lines,"
                           " 'archive': archive.files | map(attribute='path') | map('basename') | list,"
                           " 'archive_mtimes': archive.files | map(attribute='mtime') | list} | to_json }}"}},
        ], handle)
    playbook = os.path.join(work, "play.yml")
    with open(playbook, "w") as handle:
        json.dump([{"hosts": "localhost", "gather_facts": False, "roles": [{
            "role": "nl_biomero.database.postgres_upgrade",
            "vars": {"postgres_upgrade_instances": [{"name": site["container"], "kind": "none",
                                                     "clients": [site["client"]]}],
                     "postgres_upgrade_target_image": new_image, "postgres_upgrade_strategy": "pipe",
                     "postgres_upgrade_dump_dir": os.path.join(work, "dumps"),
                     "postgres_upgrade_backup_dir": os.path.join(work, "backups"),
                     "postgres_upgrade_before_verify_tasks": hook, "postgres_upgrade_wait_timeout": 90,
                     "postgres_upgrade_stop_timeout": 30, "postgres_upgrade_client_stop_timeout": 2}}]}], handle)
    inventory = os.path.join(work, "inventory")
    with open(inventory, "w") as handle:
        handle.write("localhost ansible_connection=local ansible_python_interpreter=%s\n"
                     % os.environ.get("ANSIBLE_PYTHON_INTERPRETER", "auto"))
    proc = subprocess.run(["ansible-playbook", "-i", inventory, playbook], capture_output=True, text=True,
                          timeout=900, check=False)
    assert proc.returncode == 0, "the upgrade failed:\n%s\n%s" % (proc.stdout[-6000:], proc.stderr[-2000:])

    # The staging container: the new volume only, no network, no archiving; the old archive untouched.
    with open(os.path.join(work, "staging", "seen.json")) as handle:
        seen = json.load(handle)
    assert [(m["Type"], m.get("Name"), m["Destination"]) for m in seen["mounts"]] == [
        ("volume", site["volume"] + "-pg17", "/var/lib/postgresql/data")]
    assert not seen["binds"] and seen["networks"] == ["none"]
    assert seen["settings"] == ["archive_command=(disabled)", "archive_mode=off", "work_mem=8192"]
    # The password file was handed over by value (the staging container has no /run/secrets).
    assert "POSTGRES_PASSWORD" in seen["env"] and "POSTGRES_PASSWORD_FILE" not in seen["env"]
    assert sorted(seen["archive"]) == sorted(archive_before)
    assert sorted(round(mtime, 3) for mtime in seen["archive_mtimes"]) == sorted(
        round(mtime / 1e9, 3) for _size, mtime in archive_before.values())

    # The new container: everything the old one set, but for the listed differences.
    new = inspect(site["container"])
    assert new["State"]["Running"] and new["Config"]["Image"] == new_image
    assert inspect(site["container"] + "-pg15")["Id"] == old["Id"]
    found = differences(old, new, old_image, new_image, site["volume"], site["volume"] + "-pg17")
    assert found == [], "\n".join(found)
    assert new["Config"]["Labels"]["org.nl-biomero.upgrade.previous-container"] == site["container"] + "-pg15"
    # The password from the file is the superuser's in the new cluster, through the published port's server.
    proc = engine("exec", "-e", "PGPASSWORD=pw from file", site["container"], "psql", "-X", "-At", "-h", "127.0.0.1",
                  "-U", "app", "-d", "appdb", "-c", "SELECT count(*) FROM t")
    assert proc.stdout.strip() == "1000"
    assert inspect(site["client"])["State"]["Running"]
