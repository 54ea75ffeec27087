#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Benchmark of pg_dump_container / pg_restore_container (issue 2, section 6). Not a test.

Builds a PostgreSQL 17 container (offline image ``nl-biomero/postgres:17``)
holding a database of about ``--size-gb`` GB (random text, numbers,
timestamps, bytea, generated server-side with generate_series), then
measures side by side, in interleaved rounds:

  (a) pg_dump_container, custom format: default compression (zstd on 17)
      and gzip; also once through ansible-playbook (wall time)
  (b) the NL-BIOMERO script's method: pg_dump -Fc -f /tmp/x inside the
      container, docker cp out, rm inside
  (c) plain ``docker exec pg_dump -Fc > file`` (gzip default, and zstd)
  (d) pg_dump_container, directory format, jobs=2
  restores with pg_restore_container: custom jobs 1 and 2, directory jobs 2

For every row: wall time (best of 2 runs, or median of 3+), archive size,
throughput, bytes written inside the container (peak growth of the
container's writable layer, PGDATA being on a volume) and, for the module
rows, the peak RSS of the module's Python process.

The result table is printed and written into docs/benchmarks.md (the
section "## pg_dump_container / pg_restore_container", replaced in place).

Run it with benchmarks/run.sh (sets up the venv and the collection path),
or with a Python that has ansible and COLLECTIONS_DIR / ANSIBLE_COLLECTIONS_PATH
pointing at a directory with ansible_collections/nl_biomero/database.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import DOC, BenchError, fmt_load, loadavg, log, run, write_doc  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECTION = "## pg_dump_container / pg_restore_container"
MODULES = os.path.join(REPO, "plugins", "modules")
PGDATA = "/var/lib/postgresql/data"
DB = "bench"
MB = 1000 * 1000
# Server settings of the benchmark container (not tuned for the dump; enough
# WAL room so that loading the data and restoring do not checkpoint all the time).
SERVER_SETTINGS = ["shared_buffers=256MB", "max_wal_size=4GB", "checkpoint_timeout=30min"]
TABLES = 4
# Runs the module file the way AnsiballZ does (module file as __main__, its
# args in a JSON file), then reports this process's own peak RSS and the
# largest peak RSS among its children (the docker CLI processes) on stderr.
MODULE_RUNNER = r"""
import json, resource, runpy, sys
sys.path.insert(0, sys.argv[1])
module_path, args_path = sys.argv[2], sys.argv[3]
sys.argv = [module_path, args_path]
code = 0
try:
    runpy.run_path(module_path, run_name="__main__")
except SystemExit as exc:
    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
sys.stderr.write("\nNLBBENCH-RUSAGE " + json.dumps({
    "self_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    "children_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}) + "\n")
sys.exit(code)
"""


def size_of(path):
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(root, name)) for root, _d, files in os.walk(path) for name in files)
    return os.path.getsize(path)


def remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.unlink(path)
    if os.path.lexists(path + ".manifest.json"):
        os.unlink(path + ".manifest.json")


def dir_bytes(path):
    """Apparent size of every regular file under ``path`` (files vanishing during the walk are skipped)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            if not os.path.islink(os.path.join(root, name)):
                total += st.st_size
    return total


class LayerSampler:
    """Peak growth of a container's writable layer (overlay2 upperdir) while a measurement runs.

    PGDATA is a volume, so the layer only sees what is written to the
    container's own file system (/tmp and the like): exactly the writes the
    dump/restore methods cause inside the container. Sampled every 0.1 s.
    """

    def __init__(self, upperdir, interval=0.1):
        self.upperdir = upperdir
        self.interval = interval
        self.base = dir_bytes(upperdir) if upperdir else 0
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = None

    def __enter__(self):
        if self.upperdir:
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def _loop(self):
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, dir_bytes(self.upperdir))

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread:
            self._thread.join()
            self.peak = max(self.peak, dir_bytes(self.upperdir))
        return False

    @property
    def growth(self):
        return None if not self.upperdir else max(0, self.peak - self.base)


class Bench:
    def __init__(self, args):
        self.args = args
        self.engine = "docker"
        tag = uuid.uuid4().hex[:8]
        self.container = "nlbbench-pg17-%s" % tag
        self.volume = "nlbbench-data-%s" % tag
        self.workdir = tempfile.mkdtemp(prefix="nlbbench-", dir=args.workdir)
        self.collections = os.environ.get("COLLECTIONS_DIR") or os.path.join(REPO, ".build", "collections")
        self.upperdir = None
        self.cgroup_cpu = None
        self.shim_pid = None
        self.dockerd_pid = None
        self.started = time.monotonic()
        self.facts = {}
        self.results = {}
        self.load_samples = []

    # -- setup -----------------------------------------------------------------

    def check_env(self):
        link = os.path.join(self.collections, "ansible_collections", "nl_biomero", "database")
        if not os.path.isdir(os.path.join(link, "plugins", "module_utils")):
            raise BenchError("the collection is not importable from %s; run benchmarks/run.sh (or source "
                             "scripts/env.sh and call link_collection)" % self.collections)
        os.environ.setdefault("ANSIBLE_COLLECTIONS_PATH", self.collections)
        rc, _out, _err = run([self.engine, "image", "inspect", self.args.image], check=False)
        if rc != 0:
            raise BenchError("image %s not found; build it with images/postgres/build.sh" % self.args.image)

    def start(self):
        argv = [self.engine, "run", "-d", "--name", self.container, "-v", "%s:%s" % (self.volume, PGDATA),
                "-e", "POSTGRES_PASSWORD=nlbbench", "--shm-size=256m", self.args.image, "postgres"]
        for setting in SERVER_SETTINGS:
            argv += ["-c", setting]
        run(argv)
        deadline = time.monotonic() + 120
        while True:
            # TCP answers only once the final server runs (the init server listens on the socket only)
            rc, _out, _err = run([self.engine, "exec", self.container, "pg_isready", "-q", "-h", "127.0.0.1",
                                  "-U", "postgres"], check=False)
            if rc == 0:
                break
            if time.monotonic() > deadline:
                _rc, logs, errs = run([self.engine, "logs", self.container], check=False)
                raise BenchError("the server in %s did not start: %s" % (self.container, (logs + errs)[-2000:]))
            time.sleep(0.5)
        _rc, out, _err = run([self.engine, "inspect", "-f", "{{.GraphDriver.Name}}|{{.GraphDriver.Data.UpperDir}}",
                              self.container])
        self.find_cpu_accounting()
        driver, _sep, upper = out.strip().partition("|")
        if driver.startswith("overlay") and os.path.isdir(upper):
            self.upperdir = upper
        else:
            log("warning: cannot read the writable layer (%s); bytes written in the container are not measured"
                % driver)

    def find_cpu_accounting(self):
        _rc, out, _err = run([self.engine, "inspect", "-f", "{{.Id}} {{.State.Pid}}", self.container])
        cid, pid = out.split()
        for path in ("/sys/fs/cgroup/cpuacct/docker/%s/cpuacct.usage" % cid,
                     "/sys/fs/cgroup/cpu,cpuacct/docker/%s/cpuacct.usage" % cid,
                     "/sys/fs/cgroup/system.slice/docker-%s.scope/cpu.stat" % cid):
            if os.path.exists(path) and path.endswith("cpuacct.usage"):
                self.cgroup_cpu = path
                break
        try:
            with open("/proc/%s/stat" % pid) as handle:
                self.shim_pid = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            self.shim_pid = None
        rc, out, _err = run(["pidof", "dockerd"], check=False)
        self.dockerd_pid = int(out.split()[0]) if rc == 0 and out.split() else None
        if not self.cgroup_cpu:
            log("warning: no cgroup v1 cpuacct for the container: CPU time counts host processes only")

    def psql(self, sql, database=DB, timeout=3600):
        argv = [self.engine, "exec", "-i", self.container, "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-U",
                "postgres", "-d", database, "-A", "-t", "-f", "-"]
        return run(argv, input_bytes=sql.encode("utf-8"), timeout=timeout)[1].strip()

    def generate(self):
        target = int(self.args.size_gb * 1000 ** 3)
        started = time.monotonic()
        self.psql("CREATE DATABASE %s" % DB, database="postgres")
        columns = ("id bigint NOT NULL, label text, note text, value double precision, amount numeric(12,2), "
                   "created timestamptz, payload bytea")
        self.psql("".join("CREATE TABLE t%d (%s);\n" % (n, columns) for n in range(1, TABLES + 1)))

        def insert(table, first, last):
            # random text (hex and a counter), numbers, timestamps, random bytes
            self.psql("SET synchronous_commit = off;\n"
                      "INSERT INTO t%d SELECT i, 'sample ' || i || ' ' || substr(md5(random()::text), 1, 16), "
                      "md5(random()::text) || ' ' || md5(random()::text), random() * 1e6, "
                      "(random() * 100000)::numeric(12,2), "
                      "timestamptz '2020-01-01 00:00:00+00' + random() * interval '1800 days', "
                      "decode(md5(random()::text) || md5(random()::text) || md5(random()::text), 'hex') "
                      "FROM generate_series(%d, %d) AS i;" % (table, first, last))

        probe = 100000
        insert(1, 1, probe)
        heap_per_row = float(self.psql("SELECT pg_table_size('t1')")) / probe
        per_row = heap_per_row + 22.0  # + the primary key index (btree on bigint)
        rows_per_table = max(probe, int(target / per_row / TABLES))
        chunk = 250000
        jobs = []
        for table in range(1, TABLES + 1):
            first = probe + 1 if table == 1 else 1
            while first <= rows_per_table:
                last = min(rows_per_table, first + chunk - 1)
                jobs.append((table, first, last))
                first = last + 1
        log("generating %d rows in %d tables (%.0f bytes/row; %d statements, 2 sessions)"
            % (rows_per_table * TABLES, TABLES, per_row, len(jobs)))
        with ThreadPoolExecutor(max_workers=2) as pool:
            for future in [pool.submit(insert, *job) for job in jobs]:
                future.result()
        self.psql("".join("ALTER TABLE t%d ADD PRIMARY KEY (id);\n" % n for n in range(1, TABLES + 1))
                  + "CREATE INDEX t1_created ON t1 (created);\n")
        self.psql("VACUUM (FREEZE, ANALYZE);", timeout=3600)
        self.psql("CHECKPOINT;", database="postgres")
        facts = json.loads(self.psql(
            "SELECT json_build_object('db_bytes', pg_database_size(current_database()), "
            "'rows', (SELECT sum(n_live_tup) FROM pg_stat_user_tables), "
            "'version', current_setting('server_version'))"))
        _rc, out, _err = run([self.engine, "exec", self.container, "pg_dump", "--version"])
        facts["pg_dump"] = out.strip()
        facts["generate_s"] = round(time.monotonic() - started, 1)
        self.facts.update(facts)
        log("database %s: %.0f MB, %d rows, generated in %.0f s"
            % (DB, facts["db_bytes"] / MB, int(facts["rows"]), facts["generate_s"]))

    # -- one measurement ----------------------------------------------------------

    def cpu_seconds(self):
        """CPU seconds so far of what a method uses, by part: the container's cgroup (server backend,
        pg_dump, pg_restore), the container's shim, this process's waited-for children (docker CLI,
        module Python, ansible-playbook) and dockerd (shared with other users: informational only)."""
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        parts = {"host": usage.ru_utime + usage.ru_stime, "container": 0.0, "shim": 0.0, "dockerd": 0.0}
        if self.cgroup_cpu:
            try:
                with open(self.cgroup_cpu) as handle:
                    parts["container"] = int(handle.read()) / 1e9
            except (OSError, ValueError):
                pass
        parts["shim"] = proc_cpu(self.shim_pid)
        parts["dockerd"] = proc_cpu(self.dockerd_pid)
        return parts

    def measure(self, key, func):
        """Run func() -> dict with the layer sampler, CPU time and the load average around it; keeps every run."""
        load_before = loadavg()[0]
        cpu_before = self.cpu_seconds()
        with LayerSampler(self.upperdir) as sampler:
            started = time.monotonic()
            data = func()
            wall = time.monotonic() - started
        cpu_after = self.cpu_seconds()
        data["cpu_parts"] = dict((name, round(cpu_after[name] - cpu_before[name], 3)) for name in cpu_after)
        data["cpu"] = sum(value for name, value in data["cpu_parts"].items() if name != "dockerd")
        data.setdefault("wall", wall)
        data["container_bytes"] = sampler.growth
        data["load1"] = max(load_before, loadavg()[0])
        self.load_samples.append(data["load1"])
        self.results.setdefault(key, []).append(data)
        log("%-12s %6.1f s wall %6.1f s CPU (%s)  archive %s  container +%s  load %.1f%s"
            % (key, data["wall"], data["cpu"], " ".join("%s %.1f" % item for item in sorted(data["cpu_parts"].items())),
               fmt_mb(data.get("bytes")), fmt_mb(data["container_bytes"]), data["load1"],
               ("  rss %.1f MB" % (data["rss_kb"] / 1024.0)) if data.get("rss_kb") else ""))
        return data

    def run_module(self, name, params):
        """Run a module of this checkout (as AnsiballZ would: module file as __main__) in a child Python."""
        args_path = os.path.join(self.workdir, "args-%s.json" % uuid.uuid4().hex[:8])
        with open(args_path, "w") as handle:
            json.dump({"ANSIBLE_MODULE_ARGS": params}, handle)
        try:
            started = time.monotonic()
            proc = subprocess.run([sys.executable, "-c", MODULE_RUNNER, self.collections,
                                   os.path.join(MODULES, name + ".py"), args_path],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=3600, check=False)
            wall = time.monotonic() - started
        finally:
            os.unlink(args_path)
        err = proc.stderr.decode("utf-8", "replace")
        usage = {}
        for line in err.splitlines():
            if line.startswith("NLBBENCH-RUSAGE "):
                usage = json.loads(line.split(" ", 1)[1])
        try:
            result = json.loads(proc.stdout.decode("utf-8", "replace").strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise BenchError("%s printed no result (rc %d): %s" % (name, proc.returncode, err[-2000:]))
        if result.get("failed") or proc.returncode != 0:
            raise BenchError("%s failed: %s" % (name, result.get("msg")))
        return {"wall": wall, "result": result, "rss_kb": usage.get("self_kb"),
                "helper_rss_kb": usage.get("children_kb")}

    # -- the methods ------------------------------------------------------------------

    def dump_module(self, fmt="custom", compress="auto", jobs=None, keep=None):
        dest = os.path.join(self.workdir, "a-%s.%s" % (uuid.uuid4().hex[:6], "dir" if fmt == "directory" else "dump"))
        params = {"container": self.container, "database": DB, "dest": dest, "format": fmt, "compress": compress,
                  "engine": self.engine}
        if jobs:
            params["jobs"] = jobs
        data = self.run_module("pg_dump_container", params)
        res = data.pop("result")
        data.update(bytes=res["bytes"], compression=res["compression"], dump_s=res.get("dump_duration_s"),
                    module_s=res.get("duration_s"))
        if keep:
            self.keep(keep, dest)
        else:
            remove(dest)
        return data

    def keep(self, name, path):
        """Keep the latest archive of a kind (the restore source); the older one goes."""
        old = getattr(self, "_kept", {}).get(name)
        if old and old != path:
            remove(old)
        self._kept = getattr(self, "_kept", {})
        self._kept[name] = path

    def dump_playbook(self):
        dest = os.path.join(self.workdir, "p-%s.dump" % uuid.uuid4().hex[:6])
        playbook = os.path.join(self.workdir, "dump.yml")
        with open(playbook, "w") as handle:
            handle.write("- hosts: localhost\n  gather_facts: false\n  connection: local\n  tasks:\n"
                         "    - nl_biomero.database.pg_dump_container:\n"
                         "        container: %s\n        database: %s\n        dest: %s\n        engine: %s\n"
                         % (json.dumps(self.container), DB, json.dumps(dest), self.engine))
        playbook_bin = shutil.which("ansible-playbook", path=os.path.dirname(sys.executable)) or "ansible-playbook"
        env = dict(os.environ, ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_COLLECTIONS_PATH=self.collections)
        started = time.monotonic()
        rc, out, err = run([playbook_bin, "-i", "localhost,", playbook], check=False, env=env)
        wall = time.monotonic() - started
        if rc != 0:
            raise BenchError("ansible-playbook failed (%d): %s" % (rc, (out + err)[-2000:]))
        size = size_of(dest)
        remove(dest)
        return {"wall": wall, "bytes": size, "compression": "zstd (auto)"}

    def dump_script_method(self):
        """(b) backup_db.sh: pg_dump -Fc -f /tmp/<file> inside, docker cp out, rm inside."""
        inside = "/tmp/%s.%s.pg_dump" % (DB, time.strftime("%Y-%m-%d_%H-%M-%S-UTC", time.gmtime()))
        dest = os.path.join(self.workdir, "b-%s.pg_dump" % uuid.uuid4().hex[:6])
        t0 = time.monotonic()
        run([self.engine, "exec", self.container, "pg_dump", "-Fc", "-U", "postgres", DB, "-f", inside])
        t1 = time.monotonic()
        run([self.engine, "cp", "%s:%s" % (self.container, inside), dest])
        t2 = time.monotonic()
        run([self.engine, "exec", self.container, "rm", "-f", inside])
        t3 = time.monotonic()
        size = size_of(dest)
        remove(dest)
        return {"wall": t3 - t0, "bytes": size, "compression": "gzip (pg_dump default, level 6)",
                "phases": "pg_dump %.1f + cp %.1f + rm %.1f" % (t1 - t0, t2 - t1, t3 - t2)}

    def dump_exec_stdout(self, compress=None):
        """(c) docker exec pg_dump -Fc > file."""
        dest = os.path.join(self.workdir, "c-%s.dump" % uuid.uuid4().hex[:6])
        argv = [self.engine, "exec", self.container, "pg_dump", "-Fc", "-U", "postgres"]
        if compress:
            argv.append("--compress=" + compress)
        argv.append(DB)
        started = time.monotonic()
        with open(dest, "wb") as out:
            rc = subprocess.run(argv, stdout=out, stderr=subprocess.PIPE, timeout=3600, check=False).returncode
        wall = time.monotonic() - started
        if rc != 0:
            raise BenchError("docker exec pg_dump failed (%d)" % rc)
        size = size_of(dest)
        remove(dest)
        return {"wall": wall, "bytes": size,
                "compression": compress if compress else "gzip (pg_dump default, level 6)"}

    def restore_module(self, source, jobs, target):
        params = {"container": self.container, "database": target, "src": self._kept[source], "jobs": jobs,
                  "if_exists": "replace", "engine": self.engine}
        data = self.run_module("pg_restore_container", params)
        res = data.pop("result")
        data.update(bytes=size_of(self._kept[source]), restore_s=res.get("restore_duration_s"),
                    module_s=res.get("duration_s"), rows=res.get("rows_total"), staged=res.get("staged"),
                    compression=res.get("compression"))
        if data["rows"] is not None and int(data["rows"]) != int(self.facts["rows"]):
            raise BenchError("restore of %s restored %s rows, the source has %s"
                             % (source, data["rows"], self.facts["rows"]))
        return data

    # -- the whole run ----------------------------------------------------------------

    def plan(self):
        """(key, function, once) in the order of a round; 'once' rows run in the first round only."""
        rows = [
            ("a_zstd", lambda: self.dump_module(keep="custom"), False),
            ("c_zstd", lambda: self.dump_exec_stdout("zstd"), False),
            ("a_gzip", lambda: self.dump_module(compress="gzip"), False),
            ("c_gzip", self.dump_exec_stdout, False),
            ("b_gzip", self.dump_script_method, False),
            ("d_dir_j2", lambda: self.dump_module(fmt="directory", jobs=2, keep="directory"), False),
        ]
        if not self.args.skip_restore:
            rows += [
                ("r_custom_j1", lambda: self.restore_module("custom", 1, "bench_r_custom_j1"), False),
                ("r_custom_j2", lambda: self.restore_module("custom", 2, "bench_r_custom_j2"), False),
            ]
        if not self.args.skip_playbook:
            rows.append(("a_playbook", self.dump_playbook, True))
        if not self.args.skip_restore:
            rows.append(("r_dir_j2", lambda: self.restore_module("directory", 2, "bench_r_dir_j2"), True))
        return rows

    def rounds(self):
        """Interleaved rounds; a row is skipped when its last run would overrun the time budget."""
        budget = self.args.budget_min * 60.0
        broken = set()
        for n in range(1, self.args.runs + 1):
            log("round %d of %d (%.0f s of the %.0f s budget used)"
                % (n, self.args.runs, time.monotonic() - self.started, budget))
            for key, func, once in self.plan():
                if key in broken or (once and n > 1):
                    continue
                done = [r["wall"] for r in self.results.get(key, []) if "wall" in r]
                estimate = done[-1] if done else 0.0
                if time.monotonic() - self.started + estimate > budget:
                    log("%-12s skipped: the time budget (--budget-min %s) would be exceeded"
                        % (key, self.args.budget_min))
                    self.results.setdefault(key, []).append({"skipped": "time budget"})
                    continue
                try:
                    self.measure(key, func)
                except BenchError as exc:
                    if not key.startswith("r_"):
                        raise
                    # the restore module may be unfinished: report it, measure the rest
                    log("restore %s failed: %s" % (key, exc))
                    self.results.setdefault(key, []).append({"error": str(exc)})
                    broken.add(key)
                finally:
                    if key.startswith("r_"):
                        self.psql("DROP DATABASE IF EXISTS bench_%s WITH (FORCE)" % key, database="postgres")

    def cleanup(self):
        for argv in ([self.engine, "rm", "-f", "-v", self.container], [self.engine, "volume", "rm", "-f", self.volume]):
            rc, _out, err = run(argv, check=False)
            if rc != 0 and "no such" not in err.lower():
                log("cleanup: %s: %s" % (" ".join(argv), err.strip()))
        shutil.rmtree(self.workdir, ignore_errors=True)


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------

def proc_cpu(pid):
    """utime + stime of one process in seconds (0 when unknown)."""
    if not pid:
        return 0.0
    try:
        with open("/proc/%d/stat" % pid) as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / float(os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


def fmt_mb(value):
    return "-" if value is None else ("%.0f MB" % (value / MB) if value >= 10 * MB else "%.1f MB" % (value / MB))


def fmt_bytes_exact(value):
    if value is None:
        return "n/a"
    if value == 0:
        return "0 B"
    return fmt_mb(value) if value >= MB else "%d B" % value


def pick(runs, count):
    """Best run (lowest wall) for 2 runs, the median run for 3 or more."""
    good = sorted((r for r in runs if "wall" in r), key=lambda r: r["wall"])
    if not good:
        return None
    if count >= 3:
        return good[(len(good) - 1) // 2]
    return good[0]


ROWS = [
    # key, label, format, jobs
    ("a_zstd", "(a) pg_dump_container", "custom", "1"),
    ("a_gzip", "(a) pg_dump_container", "custom", "1"),
    ("a_playbook", "(a) same, via ansible-playbook (whole play; 1 run)", "custom", "1"),
    ("b_gzip", "(b) NL-BIOMERO script: pg_dump -f /tmp inside, docker cp, rm", "custom", "1"),
    ("c_gzip", "(c) docker exec pg_dump -Fc > file", "custom", "1"),
    ("c_zstd", "(c) docker exec pg_dump -Fc --compress=zstd > file", "custom", "1"),
    ("d_dir_j2", "(d) pg_dump_container", "directory", "2"),
    ("r_custom_j1", "restore: pg_restore_container (streamed)", "custom", "1"),
    ("r_custom_j2", "restore: pg_restore_container (staged in container)", "custom", "2"),
    ("r_dir_j2", "restore: pg_restore_container (staged in container; 1 run)", "directory", "2"),
]


def build_report(bench, args, started_utc, total_s):
    facts = bench.facts
    db_bytes = facts["db_bytes"]
    picked = {key: pick(runs, args.runs) for key, runs in bench.results.items()}
    stat = "best of %d" % args.runs if args.runs < 3 else "median of %d" % args.runs
    short = sorted(key for key, runs in bench.results.items()
                   if 0 < len([r for r in runs if "wall" in r]) < args.runs
                   and any("skipped" in r for r in runs))
    if short:
        stat += "; rows with a single value under 'runs' ran once (their other run did not fit the time budget)"
    lines = []
    lines.append("Run %s UTC, %s, %d CPUs, %.0f GiB RAM, Docker %s; image %s (PostgreSQL %s; %s)."
                 % (started_utc, platform.node() or "host", os.cpu_count() or 0, mem_gib(), facts.get("docker", "?"),
                    args.image, facts.get("version"), facts.get("pg_dump")))
    lines.append("Database: %.2f GB (`pg_database_size`), %s rows in %d tables (random text, numbers, timestamps, "
                 "bytea; primary keys and one secondary index), generated in %.0f s."
                 % (db_bytes / 1000.0 ** 3, "{:,}".format(int(facts["rows"])), TABLES, facts["generate_s"]))
    loads = bench.load_samples or [0.0]
    lines.append("Machine shared with other engineers' test runs: 1-minute load average %.1f to %.1f during the "
                 "measurements (start %s, end %s) on %d cores, so absolute times are noisy. Rounds interleave the "
                 "methods; each row is the %s. Total benchmark time %s."
                 % (min(loads), max(loads), fmt_load(facts.get("load_start")), fmt_load(facts.get("load_end")),
                    os.cpu_count() or 0, stat, "?" if math.isnan(total_s) else "%.0f s" % total_s))
    lines.append("")
    header = ("| method | format | compression | jobs | wall (s) | runs (s) | CPU (s) | archive | DB MB/s "
              "| written in container | module RSS | load |")
    lines.append(header)
    lines.append("|" + "---|" * 12)
    for key, label, fmt, jobs in ROWS:
        runs = bench.results.get(key)
        if not runs:
            continue
        best = picked.get(key)
        if best is None:
            why = next((r.get("error") or r.get("skipped") for r in runs), "?")
            lines.append("| %s | %s | | %s | %s: %s | | | | | | | |"
                         % (label, fmt, jobs, "failed" if any("error" in r for r in runs) else "skipped",
                            why.replace("|", "/").replace("\n", " ")[:300]))
            continue
        all_runs = ", ".join("%.1f" % r["wall"] for r in runs if "wall" in r)
        detail = ""
        if best.get("phases"):
            detail = " (%s)" % best["phases"]
        elif best.get("dump_s") is not None:
            detail = " (pg_dump %.1f)" % best["dump_s"]
        elif best.get("restore_s") is not None:
            detail = " (pg_restore %.1f)" % best["restore_s"]
        rss = "-"
        if best.get("rss_kb"):
            rss = "%.0f MB" % (best["rss_kb"] / 1024.0)
        compression = best.get("compression") or ""
        if key == "a_zstd":
            compression = "%s (auto)" % compression
        elif key == "a_gzip":
            compression = "%s (level 6)" % compression
        lines.append("| %s | %s | %s | %s | **%.1f**%s | %s | %.1f (+%.1f) | %s | %.0f | %s | %s | %.1f |"
                     % (label, fmt, compression, jobs, best["wall"], detail, all_runs, cpu_of(runs, args.runs),
                        cpu_of(runs, args.runs, "dockerd"),
                        fmt_mb(best.get("bytes")), db_bytes / MB / best["wall"],
                        fmt_bytes_exact(best.get("container_bytes")), rss, best["load1"]))
    lines.append("")
    lines.append("Targets:")
    lines.extend("- " + line for line in verdicts(picked, args, bench.results))
    spread = [max(w) / min(w) for w in ([r["wall"] for r in runs if "wall" in r] for runs in bench.results.values())
              if len(w) > 1]
    cpu_spread = [max(c) / min(c) for c in ([r["cpu"] for r in runs if r.get("cpu")] for runs in bench.results.values())
                  if len(c) > 1]
    if max(loads) > 1.5 * (os.cpu_count() or 1) or (spread and max(spread) > 1.3):
        varied = ""
        if spread:
            varied = (" the same command's wall time varied up to %.1fx between runs and its CPU time up to %.1fx "
                      "(contention inflates CPU time too);" % (max(spread), max(cpu_spread) if cpu_spread else 1.0))
        lines.append("- Caution: the machine was busy (load average up to %.1f on %d cores);%s treat differences "
                     "under about 30%% as noise and re-run on an idle machine before quoting absolute numbers."
                     % (max(loads), os.cpu_count() or 0, varied))
    lines.append("")
    lines.extend([
        "How it is measured:",
        "- wall: from starting the command to its end, as the caller sees it. Module rows run the module file "
        "of this checkout in a child Python the way AnsiballZ does (module as `__main__`, arguments in a JSON "
        "file) and include everything the module does: pre-checks over `docker exec`, the dump, fsync, "
        "verification (`pg_restore --list` in the container), sha256, atomic rename, manifest (restores: checksum, "
        "pre-checks, pg_restore, ANALYZE, exact per-table row counts). In brackets: the pg_dump / pg_restore "
        "phase alone as the module reports it. The ansible-playbook row is the whole `ansible-playbook` process "
        "(Ansible start-up included).",
        "- (b) and (c) run as the platform scripts do: no fsync, no verification, no checksum.",
        "- CPU: CPU seconds of the container's cgroup (server backend, pg_dump, pg_restore), its containerd "
        "shim and the local processes (docker CLI, the module's Python, ansible-playbook), from cgroup v1 "
        "cpuacct and rusage. It does not depend on how busy the machine is, unlike wall time. In brackets: "
        "what dockerd used meanwhile (it relays exec output and `docker cp` streams, but it is shared with the "
        "other users of the machine, so this is an upper bound and noisy).",
        "- DB MB/s: `pg_database_size` (heap + indexes) divided by the wall time.",
        "- written in container: peak growth of the container's writable layer (overlay2 upperdir, summed file "
        "sizes, sampled every 0.1 s during the command; PGDATA is on a volume, so server writes do not count). "
        "It shows what a method stages inside the container; a file that lived less than 0.1 s could be missed.",
        "- module RSS: peak RSS (`ru_maxrss` of `RUSAGE_SELF`, read by the module's own process when it ends) "
        "of the Python process running the module, AnsibleModule included; the docker CLI processes it starts "
        "are separate processes and not included.",
        "- restores run into a fresh database (`if_exists: replace`, dropped afterwards) of the same server, "
        "from the latest archive of (a) zstd (custom) or (d) (directory); every restore is checked to restore "
        "all rows.",
        "- server settings of the benchmark container: %s; everything else is PostgreSQL's default."
        % ", ".join("`%s`" % s for s in SERVER_SETTINGS),
    ])
    return "\n".join(lines) + "\n", picked


def cpu_of(runs, count, part=None):
    """CPU seconds of a row (or of one part): the lowest of 2 runs, the median of 3 or more."""
    values = sorted((r["cpu_parts"].get(part, 0.0) if part else r["cpu"]) for r in runs
                    if "wall" in r and r.get("cpu") is not None and "cpu_parts" in r)
    if not values:
        return float("nan")
    return statistics.median(values) if count >= 3 else values[0]


def verdicts(picked, args, results):
    out = []

    def wall(key):
        return picked[key]["wall"] if picked.get(key) else None

    def cpu(key):
        return cpu_of(results[key], args.runs) if results.get(key) else None

    for method, a_key, c_key in (("zstd", "a_zstd", "c_zstd"), ("gzip", "a_gzip", "c_gzip")):
        a, c = wall(a_key), wall(c_key)
        if a and c:
            ratio = a / c
            out.append("(a) within 10%% of (c) at the same compression, %s: wall %.1f s vs %.1f s = %+.0f%% -> %s "
                       "(CPU %.1f s vs %.1f s = %+.0f%%)"
                       % (method, a, c, (ratio - 1) * 100, "met" if ratio <= 1.10 else "NOT met",
                          cpu(a_key), cpu(c_key), (cpu(a_key) / cpu(c_key) - 1) * 100))
    a, b, ag = wall("a_zstd"), wall("b_gzip"), wall("a_gzip")
    if a and b:
        out.append("(a) clearly faster than (b), with (a)'s default compression (zstd) against (b)'s gzip: wall "
                   "%.1f s vs %.1f s (%.1fx), CPU %.1f s vs %.1f s (%.1fx) -> %s"
                   % (a, b, b / a, cpu("a_zstd"), cpu("b_gzip"), cpu("b_gzip") / cpu("a_zstd"),
                      "met" if a < 0.8 * b and cpu("a_zstd") < 0.8 * cpu("b_gzip") else "NOT met"))
        if ag:
            out.append("(a) against (b) at the same compression (gzip): wall %.1f s vs %.1f s (%+.0f%%), CPU %.1f s "
                       "vs %.1f s (%+.0f%%): the method itself (streaming vs a file inside plus `docker cp`) %s"
                       % (ag, b, (ag / b - 1) * 100, cpu("a_gzip"), cpu("b_gzip"),
                          (cpu("a_gzip") / cpu("b_gzip") - 1) * 100,
                          "is clearly faster too" if ag < 0.8 * b and cpu("a_gzip") < 0.8 * cpu("b_gzip")
                          else "is not clearly faster; the gain over (b) comes from the compression method"))
    written = [picked[k]["container_bytes"] for k in ("a_zstd", "a_gzip") if picked.get(k)]
    if written and all(w is not None for w in written):
        out.append("(a) zero bytes written inside the container: peak %s -> %s"
                   % (", ".join(fmt_bytes_exact(w) for w in written), "met" if max(written) == 0 else "NOT met"))
    rss = [picked[k]["rss_kb"] for k in picked if picked.get(k) and picked[k].get("rss_kb")]
    if rss:
        peak = max(rss) / 1024.0
        out.append("module peak RSS under 100 MB: at most %.0f MB over all module rows -> %s"
                   % (peak, "met" if peak < 100 else "NOT met"))
    return out


def mem_gib():
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 1024.0 / 1024.0
    except OSError:
        pass
    return 0.0


def section_text(report, args):
    size = "--quick" if args.quick else "--size-gb %s" % args.size_gb
    return (
        "`benchmarks/dump_restore.py` (run it with `benchmarks/run.sh [--quick] [--size-gb N] [--runs N]`) builds a "
        "PostgreSQL 17 container from the offline image with a database of about 1 GB and measures, side by side "
        "in one run: (a) `pg_dump_container` custom format with its default compression (zstd on 17) and with "
        "gzip, (b) the NL-BIOMERO backup script's method (`pg_dump -Fc -f /tmp/…` inside the container, "
        "`docker cp` out, `rm` inside), (c) plain `docker exec pg_dump -Fc > file`, (d) `pg_dump_container` "
        "directory format with jobs=2, and `pg_restore_container` with jobs 1 and 2. Last run: `%s --runs %d`.\n\n"
        % (size, args.runs) + report)


def report_from(path, docs):
    """Print (and with docs write) the report of a saved --json file."""
    with open(path) as handle:
        saved = json.load(handle)
    args = argparse.Namespace(**saved["args"])
    facts = saved["facts"]
    started = facts.get("started_utc") or datetime.datetime.fromtimestamp(
        os.path.getmtime(path) - float(facts.get("total_s") or 0), datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
    bench = argparse.Namespace(facts=facts, results=saved["results"],
                               load_samples=[r["load1"] for runs in saved["results"].values() for r in runs
                                             if "load1" in r])
    total = facts.get("total_s")
    report, _picked = build_report(bench, args, started, float(total) if total else float("nan"))
    sys.stdout.write(report)
    if docs:
        write_doc(SECTION, section_text(report, args))
        log("wrote %s" % os.path.relpath(DOC, REPO))
    return 0


def _interrupt(_signum, _frame):
    # SIGTERM -> KeyboardInterrupt, so that the cleanup in main's finally runs
    raise KeyboardInterrupt()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--size-gb", type=float, default=1.0, help="database size to generate (default 1.0)")
    parser.add_argument("--quick", action="store_true", help="about 100 MB, for a fast check (no docs update "
                                                             "unless --docs)")
    parser.add_argument("--runs", type=int, default=2, help="runs per measurement: 2 = best of 2, 3+ = median")
    parser.add_argument("--image", default=os.environ.get("NLB_IMAGE_PG17", "nl-biomero/postgres:17"))
    parser.add_argument("--workdir", default=None, help="host directory for the archives (default: TMPDIR)")
    parser.add_argument("--budget-min", type=float, default=14.0,
                        help="skip measurements that would end after this many minutes (default 14)")
    parser.add_argument("--skip-restore", action="store_true")
    parser.add_argument("--skip-playbook", action="store_true")
    parser.add_argument("--docs", dest="docs", action="store_true", default=None, help="write docs/benchmarks.md")
    parser.add_argument("--no-docs", dest="docs", action="store_false")
    parser.add_argument("--json", help="also write the raw results to this file")
    parser.add_argument("--report-from", metavar="JSON",
                        help="measure nothing: print (and with --docs write) the report of a --json file")
    args = parser.parse_args(argv)
    if args.report_from:
        return report_from(args.report_from, args.docs)
    if args.quick:
        args.size_gb = 0.1
    if args.docs is None:
        args.docs = not args.quick
    if args.runs < 1:
        parser.error("--runs must be 1 or more")

    signal.signal(signal.SIGTERM, _interrupt)
    started_utc = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
    clock = time.monotonic()
    bench = Bench(args)
    bench.facts["load_start"] = loadavg()
    try:
        bench.check_env()
        bench.facts["docker"] = run([bench.engine, "version", "-f", "{{.Server.Version}}"], check=False)[1].strip()
        log("starting %s from %s (load %s)" % (bench.container, args.image, fmt_load(bench.facts["load_start"])))
        bench.start()
        bench.generate()
        bench.rounds()
    except BenchError as exc:
        log("error: %s" % exc)
        return 1
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        bench.facts["load_end"] = loadavg()
        log("removing %s, volume %s, %s" % (bench.container, bench.volume, bench.workdir))
        bench.cleanup()
    total = time.monotonic() - clock
    bench.facts.update(started_utc=started_utc, total_s=round(total, 1))
    report, _picked = build_report(bench, args, started_utc, total)
    sys.stdout.write("\n" + report)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"facts": bench.facts, "results": bench.results, "args": vars(args)}, handle, indent=2,
                      default=str)
    if args.docs:
        write_doc(SECTION, section_text(report, args))
        log("wrote %s" % os.path.relpath(DOC, REPO))
    return 0


if __name__ == "__main__":
    sys.exit(main())
