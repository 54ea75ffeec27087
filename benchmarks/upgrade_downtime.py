# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Benchmark of the postgres_upgrade role's downtime (issues 6 and 13). Not a test.

For each size (``--sizes``, GB; default 1 and 4) builds one OMERO-like
PostgreSQL 15 instance (offline image ``nl-biomero/postgres:15``: 4 tables
with random text, numbers, timestamps and bytea generated server-side, primary
keys and a secondary index, plus the writer's two tables) and keeps it in a
golden volume. Each method then upgrades an identical copy of it to 17
(``nl-biomero/postgres:17``) while a writer runs:

  dump_restore, pipe, logical
                ansible-playbook applying nl_biomero.database.postgres_upgrade
                with that strategy; downtime and step durations are the ones
                the role reports in postgres_upgrade_report
  script        (only when listed in --strategies) the NL-BIOMERO platform
                script's method: pg_dump -Fc inside the old container, docker
                cp out and in, a fresh postgres:17 container, pg_restore; the
                operator's hand swap is counted as zero; no writer

The writer (pgbench-like: each transaction inserts a row into
``bench_writer`` and adds 1 to a row of ``bench_accounts``) is a client
nobody listed: it connects over TCP from this process, runs through the copy
and stops at the switchover (when the listed client container stops; the
role's write fence ends its session anyway). After each upgrade every row it
committed must be in the new cluster, and the balances must add up to the
rows (the update committed with the insert).

Disk and WAL: the new volume's size, the old pg_wal's size before, at its
peak during the run (sampled every 2 s until the switchover) and after, the
WAL the old server generated (pg_current_wal_lsn before the run ->
pg_controldata's last checkpoint of the stopped old server), the
dump_restore archive.

The table is printed and written into docs/benchmarks.md (the section
"## postgres_upgrade: downtime", replaced in place).

Run it with a Python that has ansible and psycopg2 and ANSIBLE_COLLECTIONS_PATH
pointing at a directory with ansible_collections/nl_biomero/database
(``source scripts/env.sh; link_collection``).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import DOC, BenchError, fmt_load, loadavg, log, run, write_doc  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECTION = "## postgres_upgrade: downtime"
PGDATA = "/var/lib/postgresql/data"
DB = "omero"
USER = "omero"
PASSWORD = "nlbbench pw"
MB = 1000 * 1000
SERVER_SETTINGS = ["shared_buffers=256MB", "max_wal_size=4GB", "checkpoint_timeout=30min"]
# The logical strategy needs wal_level=logical: the benchmark sets it (ALTER SYSTEM and a restart)
# before the clock starts, as the role's prepare step would in an earlier maintenance window.
PREPARE_SQL = {"logical": "ALTER SYSTEM SET wal_level = logical;"}
TABLES = ("job", "image", "annotation", "eventlog")
STRATEGIES = ("dump_restore", "pipe", "logical", "script")
DEFAULT_STRATEGIES = ("logical", "pipe", "dump_restore")
ACCOUNTS = 1000


def fmt_mb(value):
    return "-" if value is None else "%.0f MB" % (value / MB)


def lsn_bytes(text):
    high, low = text.strip().split("/")
    return (int(high, 16) << 32) + int(low, 16)


def size_label(size_gb):
    return ("%g GB" % size_gb)


class Writer(threading.Thread):
    """The unlisted writer: one session over TCP, ``rate`` transactions a second, until ``stop``.

    ``committed`` holds the ids whose COMMIT returned; an id whose COMMIT failed is never used again (it
    may or may not have been committed), so ``committed`` is exact. A failed session is reconnected
    (a restart of the old server) until the switchover stops the writer.
    """

    def __init__(self, host, rate):
        super().__init__(daemon=True)
        self.host, self.rate = host, rate
        self.committed = []
        self.errors = []
        self.stopping = threading.Event()
        self.stopped_at = None

    def _connect(self):
        import psycopg2
        return psycopg2.connect(host=self.host, port=5432, user=USER, password=PASSWORD, dbname=DB,
                                connect_timeout=3, application_name="nlbbench-writer")

    def run(self):
        import psycopg2
        conn = None
        next_id = 1
        started = time.monotonic()
        done = 0
        while not self.stopping.is_set():
            delay = started + done / float(self.rate) - time.monotonic()
            if delay > 0:
                self.stopping.wait(delay)
                continue
            try:
                if conn is None:
                    conn = self._connect()
                with conn.cursor() as cur:
                    cur.execute("INSERT INTO bench_writer (id, note) VALUES (%s, %s)",
                                (next_id, "writer row %d" % next_id))
                    cur.execute("UPDATE bench_accounts SET balance = balance + 1 WHERE aid = %s",
                                (next_id % ACCOUNTS + 1,))
                next_id += 1
                conn.commit()
                self.committed.append(next_id - 1)
                done += 1
            except psycopg2.Error as exc:
                self.errors.append(str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc))
                if conn is not None:
                    conn.close()
                conn = None
                self.stopping.wait(0.2)
                done += 1
        if conn is not None:
            conn.close()
        self.stopped_at = time.monotonic()


class Watcher(threading.Thread):
    """Stops the writer when the listed client stops (the switchover) and samples the old pg_wal until then."""

    def __init__(self, bench, writer, host):
        super().__init__(daemon=True)
        self.bench, self.writer, self.host = bench, writer, host
        self.stopping = threading.Event()
        self.switchover = None
        self.wal_peak = 0
        self.wal_samples = 0

    def _sample(self, conn):
        with conn.cursor() as cur:
            cur.execute("SELECT coalesce(sum(size), 0) FROM pg_ls_waldir()")
            self.wal_peak = max(self.wal_peak, int(cur.fetchone()[0]))
            self.wal_samples += 1

    def run(self):
        import psycopg2
        conn = None
        last_sample = 0.0
        while not self.stopping.is_set():
            rc, out, _err = run([self.bench.engine, "inspect", "-f", "{{.State.Running}}", self.bench.client],
                                check=False)
            if rc != 0 or out.strip() != "true":
                self.switchover = time.monotonic()
                break
            if time.monotonic() - last_sample >= 2.0:
                last_sample = time.monotonic()
                try:
                    if conn is None:
                        conn = psycopg2.connect(host=self.host, port=5432, user=USER, password=PASSWORD, dbname=DB,
                                                connect_timeout=3, application_name="nlbbench-watcher")
                        conn.autocommit = True
                    self._sample(conn)
                except psycopg2.Error:
                    if conn is not None:
                        conn.close()
                    conn = None
            self.stopping.wait(0.2)
        self.writer.stopping.set()
        if conn is not None:
            conn.close()


class Bench:
    def __init__(self, args):
        self.args = args
        self.engine = "docker"
        self.prefix = "nlbbench-upg-%s" % uuid.uuid4().hex[:8]
        self.golden = None
        self.network = self.prefix + "-net"
        self.instance = self.prefix + "-omero"
        self.client = self.prefix + "-client"
        self.volume = self.prefix + "-data"
        self.workdir = tempfile.mkdtemp(prefix="nlbbench-upg-", dir=args.workdir)
        self.facts = {"sizes": {}}
        self.results = {}
        self.size = None

    # -- helpers ------------------------------------------------------------------

    def psql(self, sql, container=None, database=DB, user=USER, timeout=3600):
        argv = [self.engine, "exec", "-i", container or self.instance, "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1",
                "-U", user, "-d", database, "-A", "-t", "-f", "-"]
        return run(argv, input_bytes=sql.encode("utf-8"), timeout=timeout)[1].strip()

    def wait_ready(self, container, user=USER, timeout=180):
        deadline = time.monotonic() + timeout
        while True:
            # TCP answers only once the final server runs (the init server listens on the socket only)
            rc, _out, _err = run([self.engine, "exec", container, "pg_isready", "-q", "-h", "127.0.0.1", "-U", user],
                                 check=False)
            if rc == 0:
                return
            if time.monotonic() > deadline:
                _rc, logs, errs = run([self.engine, "logs", container], check=False)
                raise BenchError("the server in %s did not start: %s" % (container, (logs + errs)[-2000:]))
            time.sleep(0.2)

    def start_instance(self, volume):
        """The old instance, shaped like the platform's OMERO DB (network alias, health check, settings)."""
        argv = [self.engine, "run", "-d", "--name", self.instance, "--network", self.network,
                "--network-alias", self.prefix + "-database", "-v", "%s:%s" % (volume, PGDATA),
                "-e", "POSTGRES_USER=%s" % USER, "-e", "POSTGRES_DB=%s" % DB, "-e", "POSTGRES_PASSWORD=%s" % PASSWORD,
                "--health-cmd", "pg_isready -U %s -d %s" % (USER, DB), "--health-interval", "1s",
                "--health-retries", "30", "--shm-size=256m", "--stop-signal", "SIGINT", self.args.old_image,
                "postgres"]
        for setting in SERVER_SETTINGS:
            argv += ["-c", setting]
        run(argv)
        self.wait_ready(self.instance)

    def ip_of(self, container):
        return run([self.engine, "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
                    container])[1].split()[0]

    def volume_facts(self, volume):
        """(volume bytes, pg_wal bytes, last checkpoint LSN or None) of a volume, read by a throwaway container."""
        script = ("du -sb /v | cut -f1; du -sb /v/pg_wal 2>/dev/null | cut -f1 || echo 0; "
                  "pg_controldata /v 2>/dev/null | sed -n 's/^Latest checkpoint location: *//p'")
        out = run([self.engine, "run", "--rm", "--network", "none", "-v", "%s:/v:ro" % volume, "--entrypoint", "sh",
                   self.args.old_image, "-c", script])[1].split()
        return int(out[0]), int(out[1]), (out[2] if len(out) > 2 else None)

    def remove_run_objects(self, keep_golden=True):
        _rc, out, _err = run([self.engine, "ps", "-aq", "--filter", "name=" + self.prefix], check=False)
        ids = out.split()
        if ids:
            run([self.engine, "rm", "-f", "-v"] + ids, check=False)
        _rc, out, _err = run([self.engine, "volume", "ls", "-q", "--filter", "name=" + self.prefix], check=False)
        vols = [v for v in out.split() if not (keep_golden and v == self.golden)]
        if vols:
            run([self.engine, "volume", "rm", "-f"] + vols, check=False)

    def cleanup(self):
        self.remove_run_objects(keep_golden=False)
        _rc, out, _err = run([self.engine, "network", "ls", "-q", "--filter", "name=" + self.prefix], check=False)
        if out.split():
            run([self.engine, "network", "rm"] + out.split(), check=False)
        shutil.rmtree(self.workdir, ignore_errors=True)

    # -- setup ----------------------------------------------------------------------

    def check_env(self):
        for image in (self.args.old_image, self.args.new_image):
            rc, _out, _err = run([self.engine, "image", "inspect", image], check=False)
            if rc != 0:
                raise BenchError("image %s not found; build it with images/postgres/build.sh" % image)
        if not os.environ.get("ANSIBLE_COLLECTIONS_PATH"):
            raise BenchError("ANSIBLE_COLLECTIONS_PATH is not set: source scripts/env.sh and call link_collection")
        if not shutil.which("ansible-playbook"):
            raise BenchError("ansible-playbook is not on PATH: source scripts/env.sh")
        if importlib.util.find_spec("psycopg2") is None:
            raise BenchError("psycopg2 is missing (the writer needs it): use the project's virtualenv")
        run([self.engine, "network", "create", self.network])

    def generate(self, size_gb):
        """Fill a golden volume for this size (through a temporary instance that is removed afterwards)."""
        self.size = size_label(size_gb)
        self.golden = "%s-golden-%s" % (self.prefix, ("%g" % size_gb).replace(".", "_"))
        self.start_instance(self.golden)
        target = int(size_gb * 1000 ** 3)
        started = time.monotonic()
        columns = ("id bigint NOT NULL, label text, note text, value double precision, amount numeric(12,2), "
                   "created timestamptz, payload bytea")
        self.psql("".join("CREATE TABLE %s (%s);\n" % (name, columns) for name in TABLES)
                  + "CREATE SEQUENCE seq_job START 1000;\nSELECT setval('seq_job', 123456);\n"
                  + "CREATE TABLE bench_writer (id bigint PRIMARY KEY, note text, at timestamptz DEFAULT now());\n"
                  + "CREATE TABLE bench_accounts (aid int PRIMARY KEY, balance bigint NOT NULL);\n"
                  + "INSERT INTO bench_accounts SELECT i, 0 FROM generate_series(1, %d) AS i;\n" % ACCOUNTS)

        def insert(table, first, last):
            self.psql("SET synchronous_commit = off;\n"
                      "INSERT INTO %s SELECT i, 'sample ' || i || ' ' || substr(md5(random()::text), 1, 16), "
                      "md5(random()::text) || ' ' || md5(random()::text), random() * 1e6, "
                      "(random() * 100000)::numeric(12,2), "
                      "timestamptz '2020-01-01 00:00:00+00' + random() * interval '1800 days', "
                      "decode(md5(random()::text) || md5(random()::text) || md5(random()::text), 'hex') "
                      "FROM generate_series(%d, %d) AS i;" % (table, first, last))

        probe = min(50000, max(1000, target // 2000))
        insert(TABLES[0], 1, probe)
        heap_per_row = float(self.psql("SELECT pg_table_size('%s')" % TABLES[0])) / probe
        per_row = heap_per_row + 22.0 + 5.0  # + primary key index, + the secondary index on part of one table
        rows_per_table = max(probe, int(target / per_row / len(TABLES)))
        chunk = 250000
        jobs = []
        for table in TABLES:
            first = probe + 1 if table == TABLES[0] else 1
            while first <= rows_per_table:
                last = min(rows_per_table, first + chunk - 1)
                jobs.append((table, first, last))
                first = last + 1
        log("%s: generating %d rows in %d tables (%.0f bytes/row, 2 sessions)"
            % (self.size, rows_per_table * len(TABLES), len(TABLES), per_row))
        with ThreadPoolExecutor(max_workers=2) as pool:
            for future in [pool.submit(insert, *job) for job in jobs]:
                future.result()
        self.psql("".join("ALTER TABLE %s ADD PRIMARY KEY (id);\n" % name for name in TABLES)
                  + "CREATE INDEX job_created ON job (created);\n")
        self.psql("VACUUM (FREEZE, ANALYZE);")
        self.psql("CHECKPOINT;", user=USER)
        facts = json.loads(self.psql(
            "SELECT json_build_object('db_bytes', pg_database_size(current_database()), "
            "'version', current_setting('server_version'))"))
        facts["rows"] = self.rows(self.instance)
        facts["generate_s"] = round(time.monotonic() - started, 1)
        self.facts["sizes"][self.size] = facts
        self.facts["version"] = facts["version"]
        log("%s: database %s: %.0f MB, %d rows, generated in %.0f s"
            % (self.size, DB, facts["db_bytes"] / MB, int(facts["rows"]), facts["generate_s"]))
        run([self.engine, "stop", "-t", "60", self.instance])
        run([self.engine, "rm", "-f", "-v", self.instance])

    def drop_golden(self):
        run([self.engine, "volume", "rm", "-f", self.golden], check=False)
        self.golden = None

    def prepare(self, strategy):
        """Fresh copy of the golden volume, the old instance on it and the running client."""
        started = time.monotonic()
        run([self.engine, "volume", "create", self.volume])
        run([self.engine, "run", "--rm", "--network", "none", "--entrypoint", "cp", "-v", "%s:/from:ro" % self.golden,
             "-v", "%s:/to" % self.volume, self.args.old_image, "-a", "/from/.", "/to/"])
        self.start_instance(self.volume)
        if strategy in PREPARE_SQL:
            self.psql(PREPARE_SQL[strategy])
            run([self.engine, "restart", "-t", "60", self.instance])
            self.wait_ready(self.instance)
        run([self.engine, "run", "-d", "--name", self.client, "--network", self.network, "--entrypoint", "sleep",
             "--stop-signal", "SIGKILL", self.args.old_image, "infinity"])
        log("%s %s: copied the volume and started %s, %s in %.0f s"
            % (self.size, strategy, self.instance, self.client, time.monotonic() - started))

    def rows(self, container, user=USER):
        return int(self.psql("SELECT (SELECT count(*) FROM job) + (SELECT count(*) FROM image) + "
                             "(SELECT count(*) FROM annotation) + (SELECT count(*) FROM eventlog)",
                             container=container, user=user))

    # -- the methods --------------------------------------------------------------------

    def role(self, strategy):
        out_dir = os.path.join(self.workdir, strategy)
        os.makedirs(out_dir)
        report = os.path.join(out_dir, "report.json")
        variables = {
            "ansible_python_interpreter": sys.executable,
            "postgres_upgrade_target_image": self.args.new_image,
            "postgres_upgrade_strategy": strategy,
            "postgres_upgrade_dump_dir": os.path.join(out_dir, "dumps"),
            "postgres_upgrade_backup_dir": os.path.join(out_dir, "backups"),
            "postgres_upgrade_instances": [{"name": self.instance, "kind": "omero", "clients": [self.client]}],
            "nlbbench_report": report,
        }
        vars_file = os.path.join(out_dir, "vars.json")
        with open(vars_file, "w") as handle:
            json.dump(variables, handle)
        playbook = os.path.join(out_dir, "upgrade.yml")
        with open(playbook, "w") as handle:
            handle.write(
                "---\n"
                "- name: Upgrade the benchmark instance\n"
                "  hosts: localhost\n"
                "  connection: local\n"
                "  gather_facts: false\n"
                "  tasks:\n"
                "    - name: Run the role\n"
                "      ansible.builtin.include_role:\n"
                "        name: nl_biomero.database.postgres_upgrade\n"
                "    - name: Save the report\n"
                "      ansible.builtin.copy:\n"
                "        dest: \"{{ nlbbench_report }}\"\n"
                "        content: \"{{ postgres_upgrade_report | to_json }}\"\n"
                "        mode: \"0600\"\n")
        wal_before, lsn_start = self.psql("SELECT (SELECT coalesce(sum(size), 0) FROM pg_ls_waldir()) || ' ' || "
                                          "pg_current_wal_lsn()").split()
        wal_before = int(wal_before)
        host = self.ip_of(self.instance)
        writer = Writer(host, self.args.writer_rate)
        watcher = Watcher(self, writer, host)
        started = time.monotonic()
        if self.args.writer_rate > 0:
            writer.start()
        watcher.start()
        try:
            rc, out, err = run(["ansible-playbook", "-i", "localhost,", "-e", "@" + vars_file, playbook], check=False)
        finally:
            watcher.stopping.set()
            writer.stopping.set()
            watcher.join(30)
            writer.join(30)
        wall = time.monotonic() - started
        entry = None
        if os.path.exists(report):
            with open(report) as handle:
                entry = (json.load(handle) or [None])[0]
        if rc != 0 or not entry:
            raise BenchError("ansible-playbook (%s) failed (%d): %s" % (strategy, rc, _failure_text(out + err)))
        if entry.get("outcome") != "upgraded":
            raise BenchError("%s: outcome %s: %s" % (strategy, entry.get("outcome"), entry.get("reason")))
        result = {"downtime": float(entry["downtime_s"]), "duration": float(entry["duration_s"]), "wall": wall,
                  "bytes": int(entry.get("bytes_moved") or 0), "steps": entry.get("steps_s") or {},
                  "rows": self.rows(self.instance), "version": entry.get("to_version"),
                  "logical": entry.get("logical")}
        result.update(self.writer_check(writer, watcher, started))
        result.update(self.disk(entry, wal_before, lsn_start, watcher.wal_peak))
        if strategy == "dump_restore":
            result["archive"] = _tree_bytes(variables["postgres_upgrade_dump_dir"])
        return result

    def writer_check(self, writer, watcher, started):
        """Every row the writer committed is in the new cluster; its balances add up to its rows."""
        committed = set(writer.committed)
        found = set(int(x) for x in self.psql("SELECT id FROM bench_writer").split())
        balance, count = (int(x) for x in self.psql(
            "SELECT (SELECT coalesce(sum(balance), 0) FROM bench_accounts) || ' ' || "
            "(SELECT count(*) FROM bench_writer)").split())
        missing = sorted(committed - found)
        stopped = writer.stopped_at or time.monotonic()
        return {"writer_committed": len(committed), "writer_found": len(found), "writer_missing": len(missing),
                "writer_missing_ids": missing[:20], "writer_balance_ok": balance == count,
                "writer_errors": len(writer.errors), "writer_first_errors": writer.errors[:3],
                "writer_s": round(stopped - started, 1),
                "switchover_seen_s": round(watcher.switchover - started, 1) if watcher.switchover else None}

    def disk(self, entry, wal_before, lsn_start, wal_peak):
        new_bytes, _new_wal, _new_lsn = self.volume_facts(entry["new_volume"])
        _old_bytes, wal_after, lsn_end = self.volume_facts(entry["old_volume"])
        return {"new_volume": new_bytes, "wal_before": wal_before, "wal_after": wal_after,
                "wal_peak": max(wal_peak, wal_after, wal_before),
                "wal_generated": lsn_bytes(lsn_end) - lsn_bytes(lsn_start) if lsn_end else None}

    def script(self):
        """The platform script's method; clients are not stopped, the swap is the operator's (counted as 0)."""
        archive = os.path.join(self.workdir, "omero.pgdump")
        new = self.prefix + "-pg17-restore"
        new_volume = self.volume + "-pg17"
        steps = {}
        started = time.monotonic()
        mark = started

        def step(name):
            now = time.monotonic()
            steps[name] = round(now - step.last, 2)
            step.last = now
        step.last = mark
        run([self.engine, "exec", self.instance, "pg_dump", "-U", USER, "-d", DB, "-Fc", "-f", "/tmp/x.pgdump"])
        step("pg_dump")
        run([self.engine, "cp", "%s:/tmp/x.pgdump" % self.instance, archive])
        run([self.engine, "exec", self.instance, "rm", "-f", "/tmp/x.pgdump"])
        step("docker_cp_out")
        size = os.path.getsize(archive)
        argv = [self.engine, "run", "-d", "--name", new, "-v", "%s:%s" % (new_volume, PGDATA),
                "-e", "POSTGRES_PASSWORD=%s" % PASSWORD, "--shm-size=256m", self.args.new_image, "postgres"]
        for setting in SERVER_SETTINGS:
            argv += ["-c", setting]
        run(argv)
        self.wait_ready(new, user="postgres")
        step("new_container")
        self.psql("CREATE USER %s PASSWORD '%s';\nCREATE DATABASE %s OWNER %s;\n" % (USER, PASSWORD, DB, USER),
                  container=new, database="postgres", user="postgres")
        step("create_user_db")
        run([self.engine, "cp", archive, "%s:/tmp/x.pgdump" % new])
        step("docker_cp_in")
        # like the script: no --exit-on-error, errors end up in the output only
        rc, _out, err = run([self.engine, "exec", new, "pg_restore", "-U", "postgres", "-d", DB, "/tmp/x.pgdump"],
                            check=False)
        step("pg_restore")
        count = int(self.psql("SELECT count(*) FROM job", container=new, user="postgres"))
        step("check_job_rows")
        downtime = time.monotonic() - started
        rows = self.rows(new, user="postgres")
        new_bytes = self.volume_facts(new_volume)[0]
        return {"downtime": downtime, "duration": downtime, "wall": downtime, "bytes": 2 * size, "archive": size,
                "steps": steps, "rows": rows, "restore_rc": rc, "restore_errors": err.strip()[-500:],
                "job_rows": count, "new_volume": new_bytes}

    def measure(self, strategy):
        self.remove_run_objects()
        self.prepare(strategy)
        load_before = loadavg()
        log("%s %s: start (load %s)" % (self.size, strategy, fmt_load(load_before)))
        try:
            result = self.script() if strategy == "script" else self.role(strategy)
        except BenchError as exc:
            result = {"error": str(exc)}
        result["load_before"] = load_before
        result["load_after"] = loadavg()
        self.results.setdefault(self.size, {}).setdefault(strategy, []).append(result)
        if "error" in result:
            log("%s %s: FAILED: %s" % (self.size, strategy, result["error"][-3000:]))
        else:
            log("%s %s: downtime %.1f s, wall %.1f s, %s moved, %d rows, writer %s/%s rows (load %s)"
                % (self.size, strategy, result["downtime"], result["wall"], fmt_mb(result["bytes"]), result["rows"],
                   result.get("writer_committed", "-"), result.get("writer_found", "-"),
                   fmt_load(result["load_after"])))
        self.remove_run_objects()
        for entry in os.listdir(self.workdir):
            path = os.path.join(self.workdir, entry)
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)


def _tree_bytes(path):
    total = 0
    for root, _dirs, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(root, name)) for name in files)
    return total


def _failure_text(output):
    """The failed task's name and message from ansible-playbook output, so the error is precise."""
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(("fatal:", "failed:")) and "=> " in line:
            task = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].startswith("TASK [")), "TASK [?]")
            try:
                result = json.loads(line.split("=> ", 1)[1])
            except ValueError:
                return "%s %s" % (task, line[:2000])
            found = result.get("msg") or result.get("reason") or result
            return "%s %s" % (task.rstrip(" *"), json.dumps(found)[:2000] if not isinstance(found, str) else found[:2000])
    return "\n".join(lines[-30:])[-3000:]


def steps_text(steps):
    return ", ".join("%s %.1f" % (name, value) for name, value in steps.items() if value >= 0.5)


def downtime_steps(steps):
    """The steps inside the downtime: from the one after stop_clients (clients_stopped is marked there) on."""
    names = list(steps)
    first = names.index("stop_clients") + 1 if "stop_clients" in names else 0
    return {name: steps[name] for name in names[first:]}


def runs_of(results, size, strategy):
    return (results.get(size) or {}).get(strategy) or []


def pick(runs):
    """The run reported: the lower downtime of 2 runs, the median of 3 or more; None when one failed."""
    if not runs or any("error" in r for r in runs):
        return None
    ordered = sorted(runs, key=lambda r: r["downtime"])
    return ordered[0] if len(ordered) < 3 else ordered[len(ordered) // 2]


LABELS = {"dump_restore": "role, `dump_restore`", "pipe": "role, `pipe`", "logical": "role, `logical`",
          "script": "platform script"}


def _writer_cell(res):
    if "writer_committed" not in res:
        return "-"
    text = "%s / %s (%.0f s)" % ("{:,}".format(res["writer_committed"]), "{:,}".format(res["writer_found"]),
                                 res.get("writer_s") or 0)
    if res["writer_missing"] or not res["writer_balance_ok"]:
        text += " **%d MISSING%s**" % (res["writer_missing"], "" if res["writer_balance_ok"] else ", balances off")
    return text


def _disk_cell(res):
    parts = ["new volume %s" % fmt_mb(res.get("new_volume"))]
    if res.get("archive"):
        parts.append("archive %s" % fmt_mb(res["archive"]))
    if "wal_before" in res:
        growth = (res["wal_after"] - res["wal_before"]) / MB
        peak = (res["wal_peak"] - res["wal_before"]) / MB
        parts.append("old pg_wal %+.0f MB (peak %+.0f MB)" % (growth, peak))
    return ", ".join(parts)


def targets(bench, sizes):
    """The issue's targets, said plainly: logical under 10 s at every size, <= 0.2x pipe at the largest."""
    lines = []
    for size in sizes:
        logical = pick(runs_of(bench.results, size, "logical"))
        if logical is None:
            state = "failed" if runs_of(bench.results, size, "logical") else "not run"
            lines.append("- %s: no `logical` result (%s)" % (size, state))
            continue
        down = logical["downtime"]
        inside = downtime_steps(logical["steps"])
        top = sorted(inside.items(), key=lambda item: -item[1])[:3]
        line = "- %s: `logical` downtime %.1f s: target under 10 s %s" % (size, down, "met" if down < 10 else "NOT met")
        pipe = pick(runs_of(bench.results, size, "pipe"))
        if pipe:
            ratio = down / pipe["downtime"]
            line += "; %.3fx `pipe` (%.1f s)%s" % (ratio, pipe["downtime"], (
                ": target <= 0.2x %s" % ("met" if ratio <= 0.2 else "NOT met")) if size == sizes[-1] else "")
        line += "; longest steps inside the downtime: %s" % ", ".join("`%s` %.1f s" % item for item in top)
        own = logical.get("logical") or {}
        if own:
            line += (" (the role's own logical figures: initial copy %s s, catch-up %s s, switchover %s s)"
                     % (own.get("copy_s", "?"), own.get("catch_up_s", "?"), own.get("switchover_s", "?")))
        lines.append(line)
    return lines


def build_report(bench, args, started_utc, total):
    facts = bench.facts
    sizes = list(facts.get("sizes", {}))
    every = [r for size in sizes for strategy in STRATEGIES for r in runs_of(bench.results, size, strategy)]
    loads = [v for r in every for v in (r["load_before"][0], r["load_after"][0])]
    new_version = next((r["version"] for r in every if r.get("version")), "17")
    count = max([len(runs_of(bench.results, size, s)) for size in sizes for s in STRATEGIES] + [1])
    how = "one run per method and size" if count == 1 else (
        "%d interleaved rounds; the row shows the %s" % (count, "lower downtime of 2" if count == 2 else "median run"))
    lines = [
        "Run %s UTC, %s, %d CPUs (2 cores), Docker %s; %s -> %s (PostgreSQL %s -> %s). Whole benchmark: %.0f s."
        % (started_utc, platform.machine(), os.cpu_count() or 0, facts.get("docker", "?"), args.old_image,
           args.new_image, facts.get("version", "?"), new_version, total),
    ]
    for size in sizes:
        sf = facts["sizes"][size]
        lines.append("- %s: %.2f GB (`pg_database_size`), %s rows in 4 tables, generated in %.0f s."
                     % (size, sf.get("db_bytes", 0) / 1000.0 ** 3, "{:,}".format(int(sf.get("rows", 0))),
                        sf.get("generate_s", 0)))
    lines += [
        "",
        "1-minute load average %.1f to %.1f during the measurements (start %s, end %s) on %d cores; the machine "
        "was shared with other work, so absolute times are noisy (%s). Writer: %s transactions/s requested."
        % (min(loads) if loads else 0, max(loads) if loads else 0, fmt_load(facts.get("load_start")),
           fmt_load(facts.get("load_end")), os.cpu_count() or 0, how, args.writer_rate),
        "",
        "| size | method | downtime (s) | total wall (s) | writer rows committed / in new cluster (ran) | WAL generated "
        "| extra disk | rows after | steps (s) |",
        "|---|---|---:|---:|---:|---:|---|---:|---|",
    ]
    for size in sizes:
        source_rows = int(facts["sizes"][size].get("rows", 0))
        for strategy in STRATEGIES:
            runs = runs_of(bench.results, size, strategy)
            if not runs:
                if strategy in (getattr(args, "chosen", None) or ()):
                    lines.append("| %s | %s | not measured: the run was stopped before it | | | | | | |"
                                 % (size, LABELS[strategy]))
                continue
            res = pick(runs)
            if res is None:
                why = next(r["error"] for r in runs if "error" in r)
                lines.append("| %s | %s | failed: %s | | | | | | |" % (
                    size, LABELS[strategy], why.replace("|", "/").replace("\n", " ")[:400]))
                continue
            down = "**%.1f**" % res["downtime"]
            if len(runs) > 1:
                down += " (%s)" % ", ".join("%.1f" % r["downtime"] for r in runs)
            rows = "{:,}".format(res["rows"]) + ("" if res["rows"] == source_rows else " **(source %s)**"
                                                 % "{:,}".format(source_rows))
            lines.append("| %s | %s | %s | %.1f | %s | %s | %s | %s | %s |"
                         % (size, LABELS[strategy], down, res["wall"], _writer_cell(res),
                            fmt_mb(res.get("wal_generated")), _disk_cell(res), rows, steps_text(res["steps"])))
    lines += ["", "Targets of issue 13:"] + targets(bench, sizes)
    lines += [
        "",
        "How it is measured:",
        "- Each method starts from an identical copy of the size's PostgreSQL 15 volume (copied with `cp -a` "
        "before the clock starts), the old instance running with a network alias, a health check and one "
        "listed client container. For `logical` the old server is given `wal_level=logical` (`ALTER SYSTEM` and "
        "a restart) before the clock starts, as the role's prepare step would do in an earlier maintenance "
        "window; that restart is not measured.",
        "- Role rows: `ansible-playbook` on a generated playbook applying `nl_biomero.database.postgres_upgrade` "
        "to localhost (connection local). Downtime and the step durations are the role's own "
        "`postgres_upgrade_report` (`downtime_s`: clients stopped -> clients started); total wall is the whole "
        "`ansible-playbook` process. Steps before `stop_clients` are not part of the downtime.",
        "- Writer: a client nobody listed, over TCP from the benchmark process: each transaction inserts a row "
        "into `bench_writer` and adds 1 to a row of `bench_accounts`, paced; it runs from the start of the "
        "playbook until the listed client stops (the switchover). `committed`: transactions whose COMMIT "
        "returned; `in new cluster`: rows of `bench_writer` in the upgraded instance (every committed id must "
        "be there, and the balances must add up to the rows).",
        "- WAL generated: the old server's `pg_current_wal_lsn()` before the playbook -> the last checkpoint "
        "(`pg_controldata`) of the stopped old server. Extra disk: the new volume (`du`), the `dump_restore` "
        "archive, the old volume's `pg_wal` growth after the run and at its peak (sampled every 2 s until the "
        "switchover).",
        "- Rows after: the sum of the 4 data tables' rows in the new instance (must equal the source).",
        "- Server settings of the old instances: %s." % ", ".join("`%s`" % s for s in SERVER_SETTINGS),
    ]
    if any(runs_of(bench.results, size, "script") for size in sizes):
        lines.append("- Platform script row: `pg_dump -Fc` in the old container, `docker cp` out and in, a fresh "
                     "container, `pg_restore`; it stops no client, so its downtime is counted from the start of "
                     "`pg_dump` until the restored instance answers and the operator's hand swap counts as zero; "
                     "writes during its run are lost (no writer runs with it).")
    return "\n".join(lines) + "\n"


def section_text(report, args):
    how = "--quick" if args.quick else "--sizes %s" % ",".join("%g" % s for s in args.sizes)
    how += " --strategies %s --writer-rate %g --runs %d" % (",".join(args.chosen), args.writer_rate, args.runs)
    if getattr(args, "script_sizes", None):
        how += " --script-sizes %s" % ",".join("%g" % s for s in args.script_sizes)
    return (
        "`benchmarks/upgrade_downtime.py` (`source scripts/env.sh; link_collection; python "
        "benchmarks/upgrade_downtime.py [--quick] [--sizes 1,4] [--strategies ...] [--writer-rate N] [--runs N]`) "
        "compares the downtime of a PostgreSQL 15 -> 17 upgrade of one OMERO-like instance by the "
        "`postgres_upgrade` role's strategies (`dump_restore`, `pipe`, `logical`) at each size, with a writer "
        "nobody listed running through the copy. Last run: `%s`.\n\n" % how + report)


def save_json(path, bench, args, started_utc, total):
    tmp = path + ".tmp"
    with open(tmp, "w") as handle:
        json.dump({"facts": bench.facts, "results": bench.results, "args": vars(args),
                   "started_utc": started_utc, "total_s": round(total, 1)}, handle, indent=2)
    os.replace(tmp, path)


def report_from(path, docs):
    """Print (and with docs write) the report of a saved --json file."""
    with open(path) as handle:
        saved = json.load(handle)
    args = argparse.Namespace(**saved["args"])
    bench = argparse.Namespace(facts=saved["facts"], results=saved["results"])
    report = build_report(bench, args, saved.get("started_utc", "?"), float(saved.get("total_s") or 0))
    sys.stdout.write(report)
    if docs:
        write_doc(SECTION, section_text(report, args))
        log("wrote %s" % os.path.relpath(DOC, REPO))
    return 0


def _interrupt(_signum, _frame):
    raise KeyboardInterrupt()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--sizes", default="1,4", help="database sizes to generate, GB, comma-separated (default 1,4)")
    parser.add_argument("--quick", action="store_true", help="one size of about 100 MB (no docs update unless --docs)")
    parser.add_argument("--old-image", default=os.environ.get("NLB_IMAGE_PG15", "nl-biomero/postgres:15"))
    parser.add_argument("--new-image", default=os.environ.get("NLB_IMAGE_PG17", "nl-biomero/postgres:17"))
    parser.add_argument("--workdir", default=None, help="host directory for dumps (default: TMPDIR)")
    parser.add_argument("--strategies", default=",".join(DEFAULT_STRATEGIES),
                        help="comma-separated, in the order run, from %s (default %s)"
                        % (",".join(STRATEGIES), ",".join(DEFAULT_STRATEGIES)))
    parser.add_argument("--script-sizes", default=None,
                        help="sizes (GB) at which the platform script's method is measured too (default: the "
                        "smallest size; none: never)")
    parser.add_argument("--writer-rate", type=float, default=50.0,
                        help="writer transactions a second (default 50; 0: no writer)")
    parser.add_argument("--runs", type=int, default=1,
                        help="interleaved rounds (default 1; 2 = lower of 2, 3+ = median)")
    parser.add_argument("--docs", dest="docs", action="store_true", default=None, help="write docs/benchmarks.md")
    parser.add_argument("--no-docs", dest="docs", action="store_false")
    parser.add_argument("--json", help="also write the raw results to this file (after every measurement)")
    parser.add_argument("--report-from", metavar="JSON",
                        help="measure nothing: print (and with --docs write) the report of a --json file")
    args = parser.parse_args(argv)
    if args.report_from:
        return report_from(args.report_from, args.docs)
    try:
        args.sizes = [0.1] if args.quick else [float(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        parser.error("--sizes: comma-separated numbers of GB, e.g. 1,4 (got %r)" % args.sizes)
    if not args.sizes or any(s <= 0 for s in args.sizes):
        parser.error("--sizes: one or more positive numbers of GB, e.g. 1,4 (got %r)" % args.sizes)
    if args.docs is None:
        args.docs = not args.quick
    if args.runs < 1:
        parser.error("--runs must be 1 or more")
    if args.writer_rate < 0:
        parser.error("--writer-rate must be 0 (no writer) or more")
    args.chosen = [s for s in args.strategies.split(",") if s]
    if not args.chosen or any(s not in STRATEGIES for s in args.chosen):
        parser.error("--strategies: choose from %s (got %r)" % (", ".join(STRATEGIES), args.strategies))

    if args.script_sizes is None:
        args.script_sizes = [min(args.sizes)]
    elif args.script_sizes.strip().lower() in ("", "none"):
        args.script_sizes = []
    else:
        try:
            args.script_sizes = [float(s) for s in args.script_sizes.split(",") if s.strip()]
        except ValueError:
            parser.error("--script-sizes: comma-separated numbers of GB or none (got %r)" % args.script_sizes)

    signal.signal(signal.SIGTERM, _interrupt)
    started_utc = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
    clock = time.monotonic()
    bench = Bench(args)
    bench.facts["load_start"] = loadavg()
    try:
        bench.check_env()
        bench.facts["docker"] = run([bench.engine, "version", "-f", "{{.Server.Version}}"], check=False)[1].strip()
        log("prefix %s, %s -> %s (load %s)"
            % (bench.prefix, args.old_image, args.new_image, fmt_load(bench.facts["load_start"])))
        for size_gb in args.sizes:
            bench.generate(size_gb)
            for round_no in range(args.runs):
                log("%s: round %d of %d" % (bench.size, round_no + 1, args.runs))
                extra = ["script"] if size_gb in args.script_sizes and "script" not in args.chosen else []
                for strategy in args.chosen + extra:
                    bench.measure(strategy)
                    if args.json:
                        save_json(args.json, bench, args, started_utc, time.monotonic() - clock)
            bench.remove_run_objects()
            bench.drop_golden()
    except BenchError as exc:
        log("error: %s" % exc)
        return 1
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        bench.facts["load_end"] = loadavg()
        log("removing everything named %s*" % bench.prefix)
        bench.cleanup()
    total = time.monotonic() - clock
    report = build_report(bench, args, started_utc, total)
    sys.stdout.write("\n" + report)
    if args.json:
        save_json(args.json, bench, args, started_utc, total)
    if args.docs:
        write_doc(SECTION, section_text(report, args))
        log("wrote %s" % os.path.relpath(DOC, REPO))
    failed = [s for size in bench.results for s in bench.results[size]
              if any("error" in r for r in bench.results[size][s])]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
