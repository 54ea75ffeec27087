"""Restore of every component kind of a backup set onto a fresh host (issue 15, "restore of every component kind").

A small fake site: an OMERO DB and a BIOMERO DB container (PostgreSQL 17), a stand-in OMERO server (a
container on volumes /OMERO - nested folders, a symbolic link, owners and modes of its own, 2 MB of
pixels - and /etc/omero holding the configuration), a Metabase folder and another host folder. The real
backup job (job_cli, as cron runs it) takes one complete set; restore.yml then restores the whole set
onto a "fresh host" (other containers, volumes and folders) and everything is compared with the source:
files byte for byte with type, mode and owner, rows per table. Then the refusals: targets that are not
empty without overwrite (nothing stopped or changed; with overwrite they are replaced), a tampered file
in a copy of the set (checksum mismatch, nothing touched), and a restore that fails with its clients
stopped (a full volume): the client is started again and the target is as it was.
"""

import concurrent.futures
import json
import os
import shutil
import stat
import subprocess

import pytest

from harness import ENGINE, IMAGES, REPO_ROOT, DbContainer, engine, unique
from job_cli import run_cli, state, write_config

PREFIX = "nlbtest-rcomp"
OMERO_FILES = r"""set -e
mkdir -p /OMERO/ManagedRepository/user_1/2026-01/deep /OMERO/Pixels /OMERO/.hidden
printf 'pixels\n' > /OMERO/ManagedRepository/user_1/2026-01/deep/a.tif
printf 'odd name\n' > '/OMERO/ManagedRepository/user_1/with space & quote'\''s'
head -c 2000000 /dev/urandom > /OMERO/Pixels/1_pyramid
ln -s user_1/2026-01/deep/a.tif /OMERO/ManagedRepository/latest
echo dot > /OMERO/.hidden/.f
chown -R 1000:1001 /OMERO/ManagedRepository
chmod 640 /OMERO/ManagedRepository/user_1/2026-01/deep/a.tif
chmod 2770 /OMERO/ManagedRepository/user_1
chmod 751 /OMERO
printf 'omero.db.host=database\nomero.db.pass=it'\''s secret\n' > /etc/omero/omero.config
"""
# type, mode, owner, size, link target and sha256 of every entry (the top folder too), in the container
LISTING = r"""cd "$1" && find . -printf '%p|%y|%m|%U:%G|%s|%l|' -exec sh -c '
  if [ -f "$1" ] && [ ! -L "$1" ]; then sha256sum < "$1" | cut -d" " -f1; else echo; fi' sh {} \; | LC_ALL=C sort"""


def listing(container, path="/OMERO"):
    return engine("run", "--rm", "--volumes-from", container, "--entrypoint", "sh", IMAGES[17], "-c", LISTING, "sh",
                  path).stdout


def host_listing(root):
    out = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files + ["."] * (folder == root):
            full = os.path.normpath(os.path.join(folder, name))
            info = os.lstat(full)
            body = os.readlink(full) if stat.S_ISLNK(info.st_mode) else (
                open(full, "rb").read() if stat.S_ISREG(info.st_mode) else None)
            out[os.path.relpath(full, root)] = (stat.S_IFMT(info.st_mode), stat.S_IMODE(info.st_mode), info.st_uid,
                                                info.st_gid, body)
    return out


def server(name, omero_volume_opts=()):
    engine("volume", "create", *omero_volume_opts, name + "-omero")
    engine("run", "-d", "--name", name, "-v", name + "-omero:/OMERO", "-v", name + "-cfg:/etc/omero",
           "--entrypoint", "sleep", IMAGES[17], "infinity")
    return name


def remove_server(name):
    engine("rm", "-f", "-v", name, check=False)
    engine("volume", "rm", "-f", name + "-omero", name + "-cfg", check=False)


def rows(db):
    """Row count per table of the public schema, as JSON."""
    return db.query(
        "SELECT json_object_agg(table_name, (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM "
        "%I.%I', table_schema, table_name), false, true, '')))[1]::text::int ORDER BY table_name) "
        "FROM information_schema.tables WHERE table_schema = 'public'")


def started_at(name):
    return state(name)["StartedAt"]


def restore(base, backup_dir, **extra):
    inventory = os.path.join(base, "inventory")
    with open(inventory, "w") as handle:
        handle.write("localhost ansible_connection=local ansible_python_interpreter=%s\n"
                     % os.environ.get("ANSIBLE_PYTHON_INTERPRETER", "auto"))
    variables = dict({"target": "localhost", "postgres_backup_engine": ENGINE, "postgres_backup_dir": backup_dir,
                      "postgres_backup_client_stop_timeout": 1}, **extra)
    return subprocess.run(["ansible-playbook", "-i", inventory, os.path.join(REPO_ROOT, "playbooks", "restore.yml"),
                           "-e", json.dumps(variables)], capture_output=True, text=True, timeout=600, check=False)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    base = str(tmp_path_factory.mktemp("rcomp"))
    dbs = {key: DbContainer(17, unique("%s-%s" % (PREFIX, key)), user=user, password="pw", database=user)
           for key, user in (("omero", "omero"), ("biomero", "biomero"), ("new_omero", "omero"),
                             ("new_biomero", "biomero"))}
    servers = {key: unique("%s-%s" % (PREFIX, key)) for key in ("server", "new_server", "full_server")}
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda db: db.start(), dbs.values()))
        server(servers["server"])
        server(servers["new_server"])
        # a volume of 1 MB: the 2 MB of pixels do not fit (a full disk at a site)
        server(servers["full_server"], ("--driver", "local", "--opt", "type=tmpfs", "--opt", "device=tmpfs",
                                        "--opt", "o=size=1m"))
        engine("exec", servers["server"], "sh", "-c", OMERO_FILES)
        dbs["omero"].psql("CREATE TABLE job (id bigint PRIMARY KEY, status text);"
                          "INSERT INTO job SELECT g, 'Finished' FROM generate_series(1, 250) g;"
                          "CREATE TABLE image (id int); INSERT INTO image VALUES (1), (2), (3);")
        dbs["biomero"].psql("CREATE TABLE workflowtracker_events (id int); "
                            "INSERT INTO workflowtracker_events SELECT generate_series(1, 30);")
        folders = {}
        for name, mode in (("metabase", 0o750), ("certs", 0o700)):
            folder = folders[name] = os.path.join(base, "site", name)
            os.makedirs(os.path.join(folder, "nested", "deeper"))
            with open(os.path.join(folder, "nested", "deeper", "%s.bin" % name), "wb") as handle:
                handle.write(os.urandom(5000))
            os.symlink("nested/deeper/%s.bin" % name, os.path.join(folder, "link"))
            os.chown(os.path.join(folder, "nested"), 1000, 1000)
            os.chmod(folder, mode)
        os.chmod(os.path.join(folders["certs"], "nested", "deeper", "certs.bin"), 0o600)
        config = {
            "backup_dir": os.path.join(base, "backups"), "engine": ENGINE, "client_stop_timeout": 1,
            "databases": [{"name": key, "container": dbs[key].name, "database": key, "user": key}
                          for key in ("omero", "biomero")],
            "paths": [{"name": "metabase", "path": folders["metabase"], "kind": "metabase"},
                      {"name": "certs", "path": folders["certs"], "kind": "other"}],
            "container_paths": [{"name": "OMERO", "container": servers["server"], "path": "/OMERO"}],
            "container_commands": [{"name": "omero.config", "container": servers["server"],
                                    "command": ["cat", "/etc/omero/omero.config"]}],
            "clients": [servers["server"]],
        }
        backup = run_cli(write_config(os.path.join(base, "backup.json"), config))
        assert backup.returncode == 0, backup.stderr[-3000:]
        fresh = os.path.join(base, "fresh")
        os.mkdir(fresh)
        targets = {"omero": {"container": dbs["new_omero"].name}, "biomero": {"container": dbs["new_biomero"].name},
                   "OMERO": {"container": servers["new_server"], "path": "/OMERO"},
                   "omero.config": {"container": servers["new_server"], "path": "/etc/omero/omero.config"},
                   "metabase": {"path": os.path.join(fresh, "metabase")},
                   "certs": {"path": os.path.join(fresh, "certs")}}
        yield {"base": base, "dbs": dbs, "servers": servers, "folders": folders, "fresh": fresh,
               "backup_dir": config["backup_dir"], "targets": targets,
               "set": sorted(name for name in os.listdir(config["backup_dir"]) if name[0].isdigit())[-1]}
    finally:
        for db in dbs.values():
            db.remove()
        for name in servers.values():
            remove_server(name)


def test_whole_set_onto_a_fresh_host_equals_the_source(site):
    servers, dbs = site["servers"], site["dbs"]
    restored = restore(site["base"], site["backup_dir"], postgres_backup_clients=[servers["new_server"]],
                       postgres_backup_restore_targets=site["targets"])
    assert restored.returncode == 0, restored.stdout[-4000:]
    for key in ("omero", "biomero"):
        assert rows(dbs["new_" + key]) == rows(dbs[key])
    assert json.loads(rows(dbs["new_omero"])) == {"job": 250, "image": 3}
    source = listing(servers["server"])
    assert "./ManagedRepository/latest|l|777|1000:1001|" in source and "./ManagedRepository/user_1|d|2770|" in source
    assert listing(servers["new_server"]) == source
    config = engine("exec", servers["new_server"], "sh", "-c", "stat -c %a /etc/omero/omero.config; "
                    "cat /etc/omero/omero.config").stdout
    assert config == "600\nomero.db.host=database\nomero.db.pass=it's secret\n"
    for name in ("metabase", "certs"):
        assert host_listing(os.path.join(site["fresh"], name)) == host_listing(site["folders"][name]), name
    assert sorted(os.listdir(site["fresh"])) == ["certs", "metabase"], "a staging folder was left behind"
    assert state(servers["new_server"])["Running"], "the client was not started again"


def test_targets_that_are_not_empty_need_overwrite(site):
    servers, fresh = site["servers"], site["fresh"]
    engine("exec", servers["new_server"], "sh", "-c", "echo later > /OMERO/written-after")
    with open(os.path.join(fresh, "metabase", "later.txt"), "w") as handle:
        handle.write("later")
    before = (listing(servers["new_server"]), host_listing(os.path.join(fresh, "metabase")),
              started_at(servers["new_server"]))
    chosen = dict(postgres_backup_clients=[servers["new_server"]], postgres_backup_restore_targets=site["targets"],
                  postgres_backup_restore_components=["OMERO", "metabase"])
    refused = restore(site["base"], site["backup_dir"], **chosen)
    assert refused.returncode != 0
    assert "/OMERO in container %s: /OMERO is not empty" % servers["new_server"] in refused.stdout, refused.stdout[-3000:]
    assert "component metabase: %s is not empty" % os.path.join(fresh, "metabase") in refused.stdout
    assert "nothing was stopped or changed" in refused.stdout
    assert (listing(servers["new_server"]), host_listing(os.path.join(fresh, "metabase")),
            started_at(servers["new_server"])) == before

    replaced = restore(site["base"], site["backup_dir"], postgres_backup_restore_overwrite=True, **chosen)
    assert replaced.returncode == 0, replaced.stdout[-4000:]
    assert listing(servers["new_server"]) == listing(servers["server"])
    assert host_listing(os.path.join(fresh, "metabase")) == host_listing(site["folders"]["metabase"])
    assert state(servers["new_server"])["Running"]


def test_a_tampered_set_touches_nothing(site):
    servers, base = site["servers"], site["base"]
    copy_dir = os.path.join(base, "tampered")
    shutil.copytree(os.path.join(site["backup_dir"], site["set"]), os.path.join(copy_dir, site["set"]))
    os.chmod(copy_dir, 0o700)
    path = os.path.join(copy_dir, site["set"], "OMERO.tar.gz")
    with open(path, "r+b") as handle:
        handle.seek(os.path.getsize(path) // 2)
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 0xFF]))
    before = (listing(servers["new_server"]), host_listing(os.path.join(site["fresh"], "metabase")),
              started_at(servers["new_server"]))
    refused = restore(base, copy_dir, postgres_backup_clients=[servers["new_server"]],
                      postgres_backup_restore_targets=site["targets"], postgres_backup_restore_overwrite=True,
                      postgres_backup_restore_components=["metabase", "OMERO"])
    assert refused.returncode != 0
    assert "component OMERO: the sha256 of %s differs from the set manifest's" % path in refused.stdout, \
        refused.stdout[-3000:]
    assert (listing(servers["new_server"]), host_listing(os.path.join(site["fresh"], "metabase")),
            started_at(servers["new_server"])) == before


def test_a_failure_with_the_clients_stopped_starts_them_again_and_leaves_the_target(site):
    full = site["servers"]["full_server"]
    before = started_at(full)
    failed = restore(site["base"], site["backup_dir"], postgres_backup_clients=[full],
                     postgres_backup_restore_targets={"OMERO": {"container": full, "path": "/OMERO"}},
                     postgres_backup_restore_components=["OMERO"])
    assert failed.returncode != 0
    assert "restoring into /OMERO of container %s failed" % full in failed.stdout, failed.stdout[-3000:]
    assert "the target is as it was" in failed.stdout and "Wrote only" in failed.stdout, \
        failed.stdout[-3000:]
    assert state(full)["Running"] and started_at(full) != before, "the client was not stopped and started again"
    assert [line.split("|")[0] for line in listing(full).splitlines()] == ["."], "something was left in the target"
