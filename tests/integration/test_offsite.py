"""Off-host copies made by the scheduled backup job, to a directory and to a real SSH backup host.

The backup host is a container of the fleet scenario's host image (Debian's
sshd and python3) on which the job's dedicated keys run offsite_store.py as
their forced command, the way the role README sets a receiving host up: one
key stores into /srv/nlb (big enough), one into /srv/small (a 256 KiB tmpfs:
a full remote disk). One real run of the job copies one set to five targets:
a directory, the SSH host encrypted with age, the full disk, a key the host
does not know, and a port nobody listens on. The good copies must be verified
and listed there, the failures recorded in the manifest, the metrics and the
notification without anything half-copied left listed, and the local set
must stay complete and untouched. Then the host is "lost" (local sets gone,
the database damaged): restore.yml refuses the copy tampered with at the
backup host and restores from the newest good one, fetched and decrypted.
"""
import json
import os
import subprocess
import time

import pytest

from harness import ENGINE, REPO_ROOT, container_ip, engine, run_module, unique
from job_cli import metric, metrics, run_cli, run_playbook, write_config

pytestmark = pytest.mark.skipif(ENGINE != "docker", reason="the SSH host is a docker container")

HOST_IMAGE = "nlbtest-fleet/host:latest"
RECEIVER = os.path.join(REPO_ROOT, "playbooks", "offsite_receiver.yml")
STORE = "/usr/local/lib/nl-biomero/offsite_store.py"  # where the receiver playbook installs it


def keygen(path):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return str(path), open(str(path) + ".pub").read().strip()


@pytest.fixture(scope="module")
def backup_host(tmp_path_factory):
    build = subprocess.run([os.path.join(REPO_ROOT, "roles/postgres_upgrade/molecule/fleet/host-image/build.sh"),
                            HOST_IMAGE], capture_output=True, text=True, check=False)
    assert build.returncode == 0, build.stderr[-2000:]
    keys = tmp_path_factory.mktemp("keys")
    name = unique("nlbtest-offsite-host")
    engine("run", "-d", "--name", name, "--tmpfs", "/srv/small:size=256k", "--entrypoint", "/bin/sh", HOST_IMAGE,
           "-c", "ssh-keygen -A >/dev/null && mkdir -p /run/sshd && exec /usr/sbin/sshd -D -e")
    try:
        deadline = time.time() + 60
        while engine("exec", name, "pgrep", "-x", "sshd", check=False).returncode != 0:
            assert time.time() < deadline, engine("logs", name, check=False).stderr
            time.sleep(0.2)
        big, big_pub = keygen(keys / "big")
        small, small_pub = keygen(keys / "small")
        unknown = keygen(keys / "unknown")[0]
        # the receiving side set up the way a site does it: playbooks/offsite_receiver.yml (over the engine's
        # connection), one user per store directory
        inventory = keys / "inventory"
        inventory.write_text("%s ansible_connection=community.docker.docker ansible_python_interpreter=/usr/bin/python3\n"
                             % name)
        for user, root, pub in (("nlb-backup", "/srv/nlb", big_pub), ("nlb-small", "/srv/small", small_pub)):
            setup = subprocess.run(["ansible-playbook", "-i", str(inventory), RECEIVER, "-e", json.dumps({
                "target": name, "postgres_backup_receiver_user": user, "postgres_backup_receiver_dir": root,
                "postgres_backup_receiver_keys": [pub]})], capture_output=True, text=True, check=False)
            assert setup.returncode == 0, setup.stdout[-3000:]
        address = container_ip(name)
        host_key = engine("exec", name, "cat", "/etc/ssh/ssh_host_ed25519_key.pub").stdout.split()[:2]
        known = keys / "known_hosts"
        known.write_text("%s %s\n" % (address, " ".join(host_key)))
        yield {"name": name, "address": address, "known_hosts": str(known), "big": big, "small": small,
               "unknown": unknown}
    finally:
        engine("rm", "-f", "-v", name, check=False)


def ssh_target(host, name, key, **extra):
    user = "nlb-small" if key == "small" else "nlb-backup"
    ssh = {"host": host["address"], "user": user, "identity_file": host[key], "known_hosts": host["known_hosts"]}
    ssh.update(extra)
    return {"name": name, "ssh": ssh}


def engine_bytes(container, path):
    return subprocess.run([ENGINE, "exec", container, "cat", path], capture_output=True, check=True).stdout


def store_list(host, root):
    out = engine("exec", host["name"], "python3", STORE, root, "list").stdout
    return json.loads(out)


def test_one_run_copies_to_every_target_and_records_each_failure(pg_factory, backup_host, tmp_path):
    db = pg_factory(major=17, prefix="nlbtest-offsite", user="omero", password="pw", database="omero")
    db.psql("CREATE TABLE pixels AS SELECT g AS id, md5(g::text) AS sha FROM generate_series(1, 20000) g;")
    os.chmod(str(tmp_path), 0o700)
    (tmp_path / "nas").mkdir()
    identity = tmp_path / "age-identity.txt"
    subprocess.run(["age-keygen", "-o", str(identity)], check=True, capture_output=True)
    recipient = subprocess.run(["age-keygen", "-y", str(identity)], check=True, capture_output=True,
                               text=True).stdout.strip()
    config = {
        "backup_dir": str(tmp_path / "backups"),
        "databases": [{"name": "omero", "container": db.name, "database": "omero", "user": "omero", "password": "pw"}],
        "metrics_file": str(tmp_path / "textfile" / "nl_biomero_backup.prom"),
        "notify_command": ["/bin/sh", "-c", 'echo "$NLB_BACKUP_STATUS $NLB_BACKUP_ERROR" >> "$0"',
                           str(tmp_path / "notified")],
        "engine": ENGINE,
        "offsite": [
            {"name": "nas", "directory": str(tmp_path / "nas"), "keep": 3},
            dict(ssh_target(backup_host, "vault", "big"), recipients=[recipient]),
            ssh_target(backup_host, "full", "small"),
            ssh_target(backup_host, "stranger", "unknown"),
            ssh_target(backup_host, "closed", "big", port=1),
        ],
    }
    proc = run_cli(write_config(str(tmp_path / "c.json"), config))
    assert proc.returncode == 1, proc.stderr
    set_dir = tmp_path / "backups" / sorted(os.listdir(str(tmp_path / "backups")))[-1]
    manifest = json.loads((set_dir / "set.manifest.json").read_text())
    assert manifest["complete"] is True and manifest["error"] is None
    offsite = manifest["offsite"]
    dump = next(name for name in os.listdir(str(set_dir)) if name.endswith(".dump"))

    # the good copies: verified at the target and listed there, byte for byte
    assert offsite["nas"]["verified"] and offsite["vault"]["verified"] and offsite["vault"]["encrypted"]
    local_files = sorted(os.listdir(str(set_dir)))
    nas = tmp_path / "nas" / set_dir.name
    assert sorted(os.listdir(str(nas))) == sorted(local_files + ["remote-manifest.json"])
    for name in local_files:
        if name != "set.manifest.json":  # the local one now records the copies too
            assert (nas / name).read_bytes() == (set_dir / name).read_bytes()
    assert [item["set"] for item in store_list(backup_host, "/srv/nlb")["sets"]] == [set_dir.name]
    cipher = engine_bytes(backup_host["name"], "/srv/nlb/%s/%s.age" % (set_dir.name, dump))
    assert (set_dir / dump).read_bytes()[:64] not in cipher
    plain = subprocess.run(["age", "-d", "-i", str(identity)], input=cipher, check=True, capture_output=True).stdout
    assert plain == (set_dir / dump).read_bytes()

    # the failures: named, recorded, nothing half-copied listed, the local set untouched
    assert "No space left on device" in offsite["full"]["error"]
    assert store_list(backup_host, "/srv/small") == {"sets": [], "partial": []}
    assert "Permission denied" in offsite["stranger"]["error"]
    assert "Connection refused" in offsite["closed"]["error"] or "port 1" in offsite["closed"]["error"]
    assert not any(offsite[name]["verified"] for name in ("full", "stranger", "closed"))
    assert "off-host copy failed: closed:" in (tmp_path / "notified").read_text()
    values = metrics(config["metrics_file"])
    assert metric(values, "offsite_last_copy_success", target="vault") == 1
    assert metric(values, "offsite_last_copy_success", target="full") == 0
    assert metric(values, "offsite_last_success_timestamp_seconds", target="stranger") == 0
    assert metric(values, "offsite_last_copy_bytes", target="nas") == offsite["nas"]["bytes"] > 0
    # the catalogue lists where each set was copied
    info = run_module("nl_biomero.database.pg_backup_info", {"path": config["backup_dir"]})
    listed = next(item for item in info["sets"] if item["name"] == set_dir.name)
    assert listed["offsite"]["vault"]["verified"] and listed["offsite"]["vault"]["target"] == "nlb-backup@" + backup_host["address"]

    # a copy tampered with at the backup host is found by its verification, naming the file
    engine("exec", backup_host["name"], "python3", "-c",
           "import sys; f = open(sys.argv[1], 'r+b'); f.seek(200); b = f.read(1); f.seek(200); f.write(bytes([b[0] ^ 255]))",
           "/srv/nlb/%s/%s.age" % (set_dir.name, dump))
    answer = subprocess.run(
        ["ssh", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i", backup_host["big"],
         "-o", "UserKnownHostsFile=" + backup_host["known_hosts"], "nlb-backup@" + backup_host["address"],
         "verify " + set_dir.name], capture_output=True, text=True, check=True).stdout
    assert json.loads(answer) == {"set": set_dir.name, "verified": False,
                                  "problems": ["%s.age differs from the copy that was verified" % dump]}
    # the key can do nothing but the store's commands
    shell = subprocess.run(
        ["ssh", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i", backup_host["big"],
         "-o", "UserKnownHostsFile=" + backup_host["known_hosts"], "nlb-backup@" + backup_host["address"],
         "cat /etc/shadow"], capture_output=True, text=True, check=False)
    assert shell.returncode != 0 and "is not one of" in shell.stderr and "root:" not in shell.stdout

    # a second, good set on the backup host; then the host is lost: the local sets are gone, the database damaged
    vault = [dict(ssh_target(backup_host, "vault", "big"), recipients=[recipient])]
    assert run_cli(write_config(str(tmp_path / "c.json"), dict(config, offsite=vault))).returncode == 0
    good = sorted(name for name in os.listdir(str(tmp_path / "backups")) if not name.startswith("."))[-1]
    assert good > set_dir.name
    subprocess.run(["rm", "-rf", str(set_dir), str(tmp_path / "backups" / good)], check=True)
    db.psql("DELETE FROM pixels WHERE id > 100")
    extra = {"postgres_backup_offsite": vault, "postgres_backup_restore_fetch_from": "vault",
             "postgres_backup_restore_identity_file": str(identity), "postgres_backup_restore_overwrite": True}
    # the tampered copy is refused before anything is touched: age authenticates every chunk
    refused = run_playbook("restore.yml", tmp_path, dict(extra, postgres_backup_restore_set=set_dir.name))
    assert refused.returncode != 0 and "could not decrypt %s.age" % dump in refused.stdout, refused.stdout[-3000:]
    assert not os.path.exists(str(set_dir)) and db.query("SELECT count(*) FROM pixels") == "100"
    # the newest copy there is fetched, decrypted, checked and restored
    restored = run_playbook("restore.yml", tmp_path, extra)
    assert restored.returncode == 0, restored.stdout[-3000:]
    assert db.query("SELECT count(*) FROM pixels") == "20000"
    assert json.loads((tmp_path / "backups" / good / "set.manifest.json").read_text())["complete"] is True
    # the catalogue lists what each target stores (also sets whose local copy is gone), re-reading them on request
    listed = run_module("nl_biomero.database.pg_backup_info", {
        "path": config["backup_dir"], "verify_checksums": True,
        "offsite": vault + [ssh_target(backup_host, "closed", "big", port=1),
                            {"name": "nas", "directory": str(tmp_path / "nas")}]})
    stored = dict((item["set"], item) for item in listed["remote"]["vault"]["sets"])
    assert sorted(stored) == [set_dir.name, good]
    assert stored[good]["verified"] and not stored[set_dir.name]["verified"]
    assert stored[set_dir.name]["problems"] == ["%s.age differs from the copy that was verified" % dump]
    assert listed["remote"]["closed"]["sets"] == [] and "Connection refused" in listed["remote"]["closed"]["error"]
    assert [item["set"] for item in listed["remote"]["nas"]["sets"]] == [set_dir.name]  # a directory, from a module
    assert listed["remote"]["nas"]["sets"][0]["verified"]
