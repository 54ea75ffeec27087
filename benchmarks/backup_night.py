#!/usr/bin/env python
"""Benchmark: a night's backup set - how long the clients are down, how long the set takes.

A ~1 GB OMERO-like database (one PostgreSQL 17 container), a client container
and a binary repository folder of 1 GB and of 5 GB (10 MB files of random
data: images hardly compress). The real backup job (the role's command line)
runs two nights per repository size with ``clients_held_for: snapshot`` and
the repository ``incremental``; between the nights 2 % of new files arrive.
For comparison, one night of the default (clients held for the whole run,
the repository as a tar.gz) at 1 GB. Prints a table and writes it into
docs/benchmarks.md ("postgres_backup: a night's set").

usage: benchmarks/backup_night.py [--db-rows N] [--sizes-gb 1 5] [--no-doc]
"""

from __future__ import annotations

import argparse
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
from benchlib import REPO, log, loadavg, fmt_load, run, write_doc  # noqa: E402

ENGINE = os.environ.get("NLB_ENGINE", "docker")
IMAGE = os.environ.get("NLB_IMAGE_PG17", "nl-biomero/postgres:17")
COLLECTIONS = os.path.join(REPO, ".build", "collections")
FILE_MB = 10


def job(config_path):
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": COLLECTIONS,
           "LANG": "C.UTF-8"}
    started = time.monotonic()
    proc = subprocess.run(["python3", "-m", "ansible_collections.nl_biomero.database.plugins.module_utils.backup_run",
                           "--config", config_path], capture_output=True, text=True, env=env, check=False)
    wall = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit("the job failed: %s" % (proc.stderr or proc.stdout)[-3000:])
    return wall


def newest_set(backup_dir):
    name = sorted(n for n in os.listdir(backup_dir) if not n.startswith("."))[-1]
    with open(os.path.join(backup_dir, name, "set.manifest.json")) as handle:
        return name, json.load(handle)


def add_files(folder, count, start):
    os.makedirs(folder, exist_ok=True)
    for number in range(start, start + count):
        with open(os.path.join(folder, "image-%05d.tif" % number), "wb") as handle:
            for _chunk in range(FILE_MB):
                handle.write(os.urandom(1 << 20))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db-rows", type=int, default=4_000_000, help="rows of the pixels table (~250 B each)")
    parser.add_argument("--sizes-gb", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args()
    tag = uuid.uuid4().hex[:6]
    db, client = "nlbbench-night-db-" + tag, "nlbbench-night-client-" + tag
    work = tempfile.mkdtemp(prefix="nlbbench-night-", dir="/var/tmp")
    os.chmod(work, 0o700)
    rows = []
    try:
        run([ENGINE, "run", "-d", "--name", db, "-e", "POSTGRES_USER=omero", "-e", "POSTGRES_PASSWORD=pw",
             "-e", "POSTGRES_DB=omero", "--tmpfs", "/run/postgresql", IMAGE])
        run([ENGINE, "run", "-d", "--name", client, "--entrypoint", "sleep", IMAGE, "infinity"])
        for _attempt in range(120):
            if run([ENGINE, "exec", db, "pg_isready", "-h", "127.0.0.1", "-U", "omero"], check=False)[0] == 0:
                break
            time.sleep(0.5)
        log("generating %d rows" % args.db_rows)
        run([ENGINE, "exec", "-i", db, "psql", "-X", "-v", "ON_ERROR_STOP=1", "-U", "omero", "omero"], input_bytes=(
            "CREATE TABLE pixels AS SELECT g AS id, md5(g::text) AS sha1, md5((g + 1)::text) AS sha2, now() AS seen, "
            "repeat(md5(g::text), 4) AS path FROM generate_series(1, %d) g; "
            "ALTER TABLE pixels ADD PRIMARY KEY (id); VACUUM ANALYZE pixels;" % args.db_rows).encode())
        db_bytes = int(run([ENGINE, "exec", db, "psql", "-XAt", "-U", "omero", "omero", "-c",
                            "SELECT pg_database_size('omero')"])[1].strip())
        for size in args.sizes_gb:
            repo = os.path.join(work, "OMERO-%d" % size)
            count = size * 1024 // FILE_MB
            log("writing %d GB of files" % size)
            add_files(os.path.join(repo, "ManagedRepository"), count, 0)
            modes = [("snapshot", True)] + ([("run", False)] if size == min(args.sizes_gb) else [])
            for held_for, incremental in modes:
                backup_dir = os.path.join(work, "backups-%d-%s" % (size, held_for))
                config = os.path.join(work, "config.json")
                with open(config, "w") as handle:
                    json.dump({"backup_dir": backup_dir, "engine": ENGINE, "clients": [client],
                               "client_stop_timeout": 1, "clients_held_for": held_for,
                               "databases": [{"name": "omero", "container": db, "database": "omero", "user": "omero",
                                              "password": "pw"}],
                               "paths": [{"name": "OMERO", "path": repo, "kind": "omero_data",
                                          "incremental": incremental}]}, handle)
                nights = 2 if incremental else 1
                for night in range(1, nights + 1):
                    if night == 2:
                        add_files(os.path.join(repo, "ManagedRepository"), max(1, count // 50), count)
                        time.sleep(1.1)
                    load = loadavg()
                    log("night %d, %d GB, clients held for %s" % (night, size, held_for))
                    wall = job(config)
                    _name, manifest = newest_set(backup_dir)
                    files = next(item for item in manifest["components"] if item["name"] == "OMERO")
                    dump = next(item for item in manifest["components"] if item["name"] == "omero")
                    rows.append({"files_gb": size, "night": night, "held_for": held_for, "incremental": incremental,
                                 "clients_down_s": manifest.get("clients_held_s", manifest["duration_s"]),
                                 "set_s": manifest["duration_s"], "wall_s": wall, "dump_s": dump["duration_s"],
                                 "files_s": files["duration_s"],
                                 "copied": files.get("copied_bytes", files["bytes"]), "load": load})
                    log(json.dumps(rows[-1]))
                shutil.rmtree(backup_dir)
            shutil.rmtree(repo)
    finally:
        run([ENGINE, "rm", "-f", "-v", db, client], check=False)
        shutil.rmtree(work, ignore_errors=True)
    header = ("| repository | night | clients held for | clients down (s) | set (s) | dump (s) | repository copy (s) "
              "| repository bytes written | load |\n|---|---|---|---|---|---|---|---|---|\n")
    body = "".join("| %d GB%s | %d | %s | **%.1f** | %.1f | %.1f | %.1f | %.2f GB | %s |\n" % (
        row["files_gb"], " (incremental)" if row["incremental"] else " (tar.gz)", row["night"], row["held_for"],
        row["clients_down_s"], row["set_s"], row["dump_s"], row["files_s"], row["copied"] / 1e9,
        fmt_load(row["load"])) for row in rows)
    firsts = dict(((row["files_gb"]), row["files_s"]) for row in rows if row["incremental"] and row["night"] == 1)
    ratios = ", ".join("%d GB: %.1f%%" % (row["files_gb"], 100.0 * row["files_s"] / firsts[row["files_gb"]])
                       for row in rows if row["incremental"] and row["night"] == 2)
    text = ("Run of %s on this machine (2 cores), `benchmarks/backup_night.py`: a %.2f GB database (%d rows), a "
            "client container, the binary repository as %d MB files of random data; the backup job's own command "
            "line. Nights 1 and 2 with `clients_held_for: snapshot` and the repository `incremental` (2%% new files "
            "before night 2); one night of the default (`run`, tar.gz) at the smallest size. Targets (issue 15): "
            "clients down under 10 s; the second night's repository copy under 10%% of the first's (measured: %s)."
            "\n\n" % (time.strftime("%Y-%m-%d"), db_bytes / 1e9, args.db_rows, FILE_MB, ratios)) + header + body
    print(text)
    if not args.no_doc:
        write_doc("## postgres_backup: a night's set", text)


if __name__ == "__main__":
    main()
