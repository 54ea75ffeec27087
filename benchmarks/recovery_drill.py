#!/usr/bin/env python
"""Benchmark: the recovery drill after losing the host, timed step by step.

A ~1 GB OMERO-like database, a 1 GB binary repository (incremental), the
backup job copying its set to an off-host target encrypted with age. Then the
host is "lost": the database container and its volume, the local backup
sets and the repository folder are removed. The drill, as a user runs it:
start an empty database container (what provisioning does on a new host),
then ``playbooks/restore.yml -e postgres_backup_restore_fetch_from=<target>
-e postgres_backup_restore_identity_file=<key>``: the newest set is fetched,
decrypted, checked and restored (database and repository). The rows and
every file are compared with the source. Prints a table and writes it into
docs/benchmarks.md ("Recovery drill").

usage: benchmarks/recovery_drill.py [--db-rows N] [--files-gb N] [--no-doc]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from backup_night import ENGINE, IMAGE, add_files, job  # noqa: E402
from benchlib import REPO, log, run, write_doc  # noqa: E402


def tree_digest(folder):
    digest = hashlib.sha256()
    for base, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(base, name)
            digest.update(os.path.relpath(path, folder).encode())
            with open(path, "rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()


def start_db(name, volume):
    run([ENGINE, "run", "-d", "--name", name, "-e", "POSTGRES_USER=omero", "-e", "POSTGRES_PASSWORD=pw",
         "-e", "POSTGRES_DB=omero", "-v", volume + ":/var/lib/postgresql/data", IMAGE])
    for _attempt in range(240):
        # over TCP: the image's first start runs a socket-only server while it initialises
        if run([ENGINE, "exec", "-e", "PGPASSWORD=pw", name, "psql", "-XAt", "-h", "127.0.0.1", "-U", "omero", "omero", "-c",
                "SELECT 1"], check=False)[0] == 0:
            return
        time.sleep(0.5)
    raise SystemExit("database container %s did not start" % name)


def rows(name):
    return int(run([ENGINE, "exec", name, "psql", "-XAt", "-U", "omero", "omero", "-c",
                    "SELECT count(*) FROM pixels"])[1].strip())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db-rows", type=int, default=4_000_000)
    parser.add_argument("--files-gb", type=int, default=1)
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args()
    tag = uuid.uuid4().hex[:6]
    db, volume, client = "nlbbench-drill-db-" + tag, "nlbbench-drill-data-" + tag, "nlbbench-drill-client-" + tag
    work = tempfile.mkdtemp(prefix="nlbbench-drill-", dir="/var/tmp")
    os.chmod(work, 0o700)
    backup_dir, repo, share = (os.path.join(work, name) for name in ("backups", "OMERO", "share"))
    os.mkdir(share)
    identity = os.path.join(work, "restore-key.txt")
    steps = []
    try:
        run(["age-keygen", "-o", identity])
        recipient = run(["age-keygen", "-y", identity])[1].strip()
        start_db(db, volume)
        run([ENGINE, "run", "-d", "--name", client, "--entrypoint", "sleep", IMAGE, "infinity"])
        log("generating %d rows and %d GB of files" % (args.db_rows, args.files_gb))
        run([ENGINE, "exec", "-i", db, "psql", "-X", "-v", "ON_ERROR_STOP=1", "-U", "omero", "omero"], input_bytes=(
            "CREATE TABLE pixels AS SELECT g AS id, md5(g::text) AS sha1, md5((g + 1)::text) AS sha2, now() AS seen, "
            "repeat(md5(g::text), 4) AS path FROM generate_series(1, %d) g; "
            "ALTER TABLE pixels ADD PRIMARY KEY (id);" % args.db_rows).encode())
        add_files(os.path.join(repo, "ManagedRepository"), args.files_gb * 1024 // 10, 0)
        source_rows, source_files = rows(db), tree_digest(repo)
        offsite = [{"name": "share", "directory": share, "recipients": [recipient]}]
        config = os.path.join(work, "config.json")
        with open(config, "w") as handle:
            json.dump({"backup_dir": backup_dir, "engine": ENGINE, "clients": [client], "client_stop_timeout": 1,
                       "clients_held_for": "snapshot", "offsite": offsite,
                       "databases": [{"name": "omero", "container": db, "database": "omero", "user": "omero",
                                      "password": "pw"}],
                       "paths": [{"name": "OMERO", "path": repo, "kind": "omero_data", "incremental": True}]}, handle)
        log("the night's backup with its off-host copy")
        backup_s = job(config)
        log("losing the host")
        run([ENGINE, "rm", "-f", "-v", db])
        run([ENGINE, "volume", "rm", "-f", volume])
        shutil.rmtree(backup_dir)
        shutil.rmtree(repo)
        started = time.monotonic()
        start_db(db, volume)
        steps.append(("start an empty database container", time.monotonic() - started))
        inventory = os.path.join(work, "inventory")
        with open(inventory, "w") as handle:
            handle.write("localhost ansible_connection=local ansible_python_interpreter=%s\n" % sys.executable)
        extra = {"target": "localhost", "postgres_backup_engine": ENGINE, "postgres_backup_dir": backup_dir,
                 "postgres_backup_clients": [client], "postgres_backup_client_stop_timeout": 1,
                 "postgres_backup_offsite": offsite, "postgres_backup_restore_fetch_from": "share",
                 "postgres_backup_restore_identity_file": identity}
        log("restore.yml from the off-host copy")
        started = time.monotonic()
        proc = subprocess.run(["ansible-playbook", "-i", inventory, os.path.join(REPO, "playbooks", "restore.yml"),
                               "-e", json.dumps(extra)], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise SystemExit("restore.yml failed: %s" % proc.stdout[-3000:])
        steps.append(("restore.yml: fetch, decrypt, check, restore database and repository",
                      time.monotonic() - started))
        assert rows(db) == source_rows, "rows differ"
        assert tree_digest(repo) == source_files, "files differ"
    finally:
        run([ENGINE, "rm", "-f", "-v", db, client], check=False)
        run([ENGINE, "volume", "rm", "-f", volume], check=False)
        shutil.rmtree(work, ignore_errors=True)
    total = sum(seconds for _step, seconds in steps)
    text = ("Run of %s on this machine (2 cores), `benchmarks/recovery_drill.py`: a database of %d rows (about "
            "1 GB) and a %d GB binary repository, backed up by the job (`clients_held_for: snapshot`, repository "
            "`incremental`, copied to an off-host directory target encrypted with age; the job took %.1f s). The "
            "host is then lost (database container and volume, local sets and repository removed), and the drill "
            "brings everything back; rows and every file are compared with the source (equal).\n\n"
            "| step | seconds |\n|---|---|\n" % (time.strftime("%Y-%m-%d"), args.db_rows, args.files_gb, backup_s)
            + "".join("| %s | %.1f |\n" % step for step in steps) + "| **total** | **%.1f** |\n" % total)
    print(text)
    if not args.no_doc:
        write_doc("## Recovery drill: losing the host", text)


if __name__ == "__main__":
    main()
