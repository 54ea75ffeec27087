# -*- coding: utf-8 -*-
# Copyright: (c) 2026, NL-BIOMERO database maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Benchmark of the postgres_upgrade role's downtime (issue 6, Tests). Not a test.

Builds one OMERO-like PostgreSQL 15 instance (offline image
``nl-biomero/postgres:15``) holding about ``--size-gb`` GB (4 tables with
random text, numbers, timestamps and bytea, generated server-side with
generate_series; primary keys and a secondary index) plus a stand-in client
container, keeps a copy of its volume, and upgrades it to 17
(``nl-biomero/postgres:17``) three times, each time from an identical copy:

  dump_restore  ansible-playbook applying nl_biomero.database.postgres_upgrade
                (strategy dump_restore); downtime and step durations are the
                ones the role reports in postgres_upgrade_report
  pipe          the same with strategy pipe
  script        the NL-BIOMERO platform script's method: pg_dump -Fc -f /tmp/x
                inside the old container, docker cp out, a fresh postgres:17
                container on a new volume, pg_isready polling, user and
                database created, docker cp in, pg_restore (no
                --exit-on-error), row check of ``job``; the operator's hand
                swap of the compose file is counted as zero

The table is printed and written into docs/benchmarks.md (the section
"## postgres_upgrade: downtime", replaced in place).

Run it with a Python that has ansible and ANSIBLE_COLLECTIONS_PATH pointing at
a directory with ansible_collections/nl_biomero/database
(``source scripts/env.sh; link_collection``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
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
TABLES = ("job", "image", "annotation", "eventlog")
STRATEGIES = ("dump_restore", "pipe", "script")


def fmt_mb(value):
    return "-" if value is None else "%.0f MB" % (value / MB)


class Bench:
    def __init__(self, args):
        self.args = args
        self.engine = "docker"
        self.prefix = "nlbbench-upg-%s" % uuid.uuid4().hex[:8]
        self.golden = self.prefix + "-golden"
        self.network = self.prefix + "-net"
        self.instance = self.prefix + "-omero"
        self.client = self.prefix + "-client"
        self.volume = self.prefix + "-data"
        self.workdir = tempfile.mkdtemp(prefix="nlbbench-upg-", dir=args.workdir)
        self.facts = {}
        self.results = {}

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
        run([self.engine, "network", "rm", self.network], check=False)
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

    def generate(self):
        """Fill the golden volume once (through a temporary instance that is removed afterwards)."""
        run([self.engine, "network", "create", self.network])
        self.start_instance(self.golden)
        target = int(self.args.size_gb * 1000 ** 3)
        started = time.monotonic()
        columns = ("id bigint NOT NULL, label text, note text, value double precision, amount numeric(12,2), "
                   "created timestamptz, payload bytea")
        self.psql("".join("CREATE TABLE %s (%s);\n" % (name, columns) for name in TABLES)
                  + "CREATE SEQUENCE seq_job START 1000;\nSELECT setval('seq_job', 123456);\n")

        def insert(table, first, last):
            self.psql("SET synchronous_commit = off;\n"
                      "INSERT INTO %s SELECT i, 'sample ' || i || ' ' || substr(md5(random()::text), 1, 16), "
                      "md5(random()::text) || ' ' || md5(random()::text), random() * 1e6, "
                      "(random() * 100000)::numeric(12,2), "
                      "timestamptz '2020-01-01 00:00:00+00' + random() * interval '1800 days', "
                      "decode(md5(random()::text) || md5(random()::text) || md5(random()::text), 'hex') "
                      "FROM generate_series(%d, %d) AS i;" % (table, first, last))

        probe = 50000
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
        log("generating %d rows in %d tables (%.0f bytes/row, 2 sessions)"
            % (rows_per_table * len(TABLES), len(TABLES), per_row))
        with ThreadPoolExecutor(max_workers=2) as pool:
            for future in [pool.submit(insert, *job) for job in jobs]:
                future.result()
        self.psql("".join("ALTER TABLE %s ADD PRIMARY KEY (id);\n" % name for name in TABLES)
                  + "CREATE INDEX job_created ON job (created);\n")
        self.psql("VACUUM (FREEZE, ANALYZE);")
        self.psql("CHECKPOINT;", user=USER)
        facts = json.loads(self.psql(
            "SELECT json_build_object('db_bytes', pg_database_size(current_database()), "
            "'rows', (SELECT sum(n_live_tup) FROM pg_stat_user_tables), "
            "'version', current_setting('server_version'))"))
        facts["rows"] = self.rows(self.instance)
        facts["generate_s"] = round(time.monotonic() - started, 1)
        self.facts.update(facts)
        log("database %s: %.0f MB, %d rows, generated in %.0f s"
            % (DB, facts["db_bytes"] / MB, int(facts["rows"]), facts["generate_s"]))
        run([self.engine, "stop", "-t", "60", self.instance])
        run([self.engine, "rm", "-f", "-v", self.instance])

    def prepare(self):
        """Fresh copy of the golden volume, the old instance on it and the running client."""
        started = time.monotonic()
        run([self.engine, "volume", "create", self.volume])
        run([self.engine, "run", "--rm", "--network", "none", "--entrypoint", "cp", "-v", "%s:/from:ro" % self.golden,
             "-v", "%s:/to" % self.volume, self.args.old_image, "-a", "/from/.", "/to/"])
        self.start_instance(self.volume)
        run([self.engine, "run", "-d", "--name", self.client, "--network", self.network, "--entrypoint", "sleep",
             "--stop-signal", "SIGKILL", self.args.old_image, "infinity"])
        log("copied the volume and started %s, %s in %.0f s"
            % (self.instance, self.client, time.monotonic() - started))

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
        started = time.monotonic()
        rc, out, err = run(["ansible-playbook", "-i", "localhost,", "-e", "@" + vars_file, playbook], check=False)
        wall = time.monotonic() - started
        if rc != 0 or not os.path.exists(report):
            raise BenchError("ansible-playbook (%s) failed (%d): %s" % (strategy, rc, (out + err)[-3000:]))
        with open(report) as handle:
            entry = json.load(handle)[0]
        if entry.get("outcome") != "upgraded":
            raise BenchError("%s: outcome %s: %s" % (strategy, entry.get("outcome"), entry.get("reason")))
        rows = self.rows(self.instance)
        return {"downtime": float(entry["downtime_s"]), "duration": float(entry["duration_s"]), "wall": wall,
                "bytes": int(entry.get("bytes_moved") or 0), "steps": entry.get("steps_s") or {},
                "rows": rows, "version": entry.get("to_version")}

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
        return {"downtime": downtime, "duration": downtime, "wall": downtime, "bytes": 2 * size, "archive": size,
                "steps": steps, "rows": rows, "restore_rc": rc, "restore_errors": err.strip()[-500:],
                "job_rows": count}

    def measure(self, strategy):
        self.remove_run_objects()
        self.prepare()
        load_before = loadavg()
        log("%s: start (load %s)" % (strategy, fmt_load(load_before)))
        try:
            result = self.script() if strategy == "script" else self.role(strategy)
        except BenchError as exc:
            result = {"error": str(exc)}
        result["load_before"] = load_before
        result["load_after"] = loadavg()
        self.results.setdefault(strategy, []).append(result)
        if "error" in result:
            log("%s: FAILED: %s" % (strategy, result["error"][-1500:]))
        else:
            log("%s: downtime %.1f s, wall %.1f s, %s moved, %d rows (load %s)"
                % (strategy, result["downtime"], result["wall"], fmt_mb(result["bytes"]), result["rows"],
                   fmt_load(result["load_after"])))
        self.remove_run_objects()
        for entry in os.listdir(self.workdir):
            path = os.path.join(self.workdir, entry)
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)


def steps_text(steps):
    return ", ".join("%s %.1f" % (name, value) for name, value in steps.items() if value >= 0.5)


def runs_of(results, strategy):
    """The runs of a method (a JSON file of a one-run version holds a dict instead of a list)."""
    runs = results.get(strategy) or []
    return [runs] if isinstance(runs, dict) else runs


def pick(runs):
    """The run reported: the lower downtime of 2 runs, the median of 3 or more; None when one failed."""
    if not runs or any("error" in r for r in runs):
        return None
    ordered = sorted(runs, key=lambda r: r["downtime"])
    return ordered[0] if len(ordered) < 3 else ordered[len(ordered) // 2]


def build_report(bench, args, started_utc, total):
    facts = bench.facts
    every = [r for strategy in STRATEGIES for r in runs_of(bench.results, strategy)]
    loads = [v for r in every for v in (r["load_before"][0], r["load_after"][0])]
    new_version = next((r["version"] for r in every if r.get("version")), "17")
    count = max([len(runs_of(bench.results, s)) for s in STRATEGIES] + [1])
    how = "one run per method" if count == 1 else (
        "%d interleaved rounds; the row shows the %s" % (count, "lower downtime of 2" if count == 2 else "median run"))
    lines = [
        "Run %s UTC, %s, %d CPUs, Docker %s; %s -> %s (PostgreSQL %s -> %s)."
        % (started_utc, platform.machine(), os.cpu_count() or 0, facts.get("docker", "?"), args.old_image,
           args.new_image, facts.get("version", "?"), new_version),
        "Database: %.2f GB (`pg_database_size`), %s rows in 4 tables (`job`, `image`, `annotation`, `eventlog`: "
        "random text, numbers, timestamps, bytea; primary keys and one secondary index), generated in %.0f s; "
        "one instance, one stand-in client container. Whole benchmark: %.0f s."
        % (facts.get("db_bytes", 0) / 1000.0 ** 3, "{:,}".format(int(facts.get("rows", 0))),
           facts.get("generate_s", 0), total),
        "1-minute load average %.1f to %.1f during the measurements (start %s, end %s) on %d cores; the machine "
        "was shared with other test runs, so absolute times are noisy (%s)."
        % (min(loads) if loads else 0, max(loads) if loads else 0, fmt_load(facts.get("load_start")),
           fmt_load(facts.get("load_end")), os.cpu_count() or 0, how),
        "",
        "| method | downtime (s) | downtime, all runs (s) | total wall (s) | bytes moved | rows after | steps (s) "
        "| load |",
        "|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    picked = {}
    for strategy in STRATEGIES:
        runs = runs_of(bench.results, strategy)
        if not runs:
            continue
        label = {"dump_restore": "role, `dump_restore`", "pipe": "role, `pipe`",
                 "script": "platform script (`pg_dump` in container, `docker cp`, `pg_restore`)"}[strategy]
        res = pick(runs)
        if res is None:
            why = next(r["error"] for r in runs if "error" in r)
            lines.append("| %s | failed: %s | | | | | | |" % (label, why.replace("|", "/").replace("\n", " ")[:300]))
            continue
        picked[strategy] = res
        moved = fmt_mb(res["bytes"])
        if strategy == "script":
            moved = "%s (archive %s, copied out and in)" % (moved, fmt_mb(res["archive"]))
            if res.get("restore_rc"):
                moved += "; pg_restore exit %d" % res["restore_rc"]
        lines.append("| %s | **%.1f** | %s | %.1f | %s | %s | %s | %.1f |"
                     % (label, res["downtime"], ", ".join("%.1f" % r["downtime"] for r in runs), res["wall"], moved,
                        "{:,}".format(res["rows"]), steps_text(res["steps"]), res["load_after"][0]))
    lines.append("")
    if "script" in picked:
        base = picked["script"]["downtime"]
        for strategy in ("dump_restore", "pipe"):
            if strategy in picked:
                down = picked[strategy]["downtime"]
                lines.append("- `%s`: downtime %.1f s = %.2fx the script's %.1f s (which stops no client and "
                             "counts the hand swap as zero)" % (strategy, down, down / base, base))
    source_rows = int(facts.get("rows", 0))
    ok = all(r["rows"] == source_rows for r in picked.values())
    lines.append("- rows after equal to the source's %s in every run shown: %s"
                 % ("{:,}".format(source_rows), "yes" if ok else "NO"))
    lines += [
        "",
        "How it is measured:",
        "- Each method starts from an identical copy of the PostgreSQL 15 volume (copied with `cp -a` before "
        "the clock starts), the old instance running with a network alias, a health check and a running client.",
        "- Role rows: `ansible-playbook` on a generated playbook applying `nl_biomero.database.postgres_upgrade` "
        "to localhost (connection local). Downtime, bytes moved and the step durations are the role's own "
        "`postgres_upgrade_report` (`downtime_s`: client stopped -> client started, i.e. after the transfer, "
        "verification, swap and the new container's health check); total wall is the whole `ansible-playbook` "
        "process (Ansible start-up, preflight and the staging cluster, which starts before the clients stop). "
        "Steps before `stop_clients` (`staging`: new volume and cluster) are not part of the downtime. "
        "Bytes moved: the archive size (`dump_restore`, default compression of the 15 server's pg_dump) or the "
        "bytes streamed (`pipe`, uncompressed).",
        "- Platform script row: the script does not stop the clients, so its downtime is counted from the start "
        "of `pg_dump` until the restored new instance answers (the `job` row check done); the operator's hand "
        "swap of the compose file and volume (and the restart of the clients on it) is counted as zero, so the "
        "real downtime is longer. Writes made during the script's run are lost. Total wall = downtime. Bytes "
        "moved: the archive copied out of the old container and into the new one (it was also written once "
        "inside the old container).",
        "- Rows after: the sum of the 4 tables' rows in the new instance (all methods must equal the source).",
        "- Server settings of the instances: %s." % ", ".join("`%s`" % s for s in SERVER_SETTINGS),
    ]
    return "\n".join(lines) + "\n"


def section_text(report, args):
    size = "--quick" if args.quick else "--size-gb %s" % args.size_gb
    size += " --runs %d" % getattr(args, "runs", 1)
    return (
        "`benchmarks/upgrade_downtime.py` (`source scripts/env.sh; link_collection; python "
        "benchmarks/upgrade_downtime.py [--quick] [--size-gb N] [--runs N]`) compares the downtime of a PostgreSQL 15 -> 17 "
        "upgrade of one OMERO-like instance by the `postgres_upgrade` role (strategies `dump_restore` and `pipe`) "
        "and by the NL-BIOMERO platform script's method. Last run: `%s`.\n\n" % size + report)


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
    parser.add_argument("--size-gb", type=float, default=1.0, help="database size to generate (default 1.0)")
    parser.add_argument("--quick", action="store_true", help="about 100 MB (no docs update unless --docs)")
    parser.add_argument("--old-image", default=os.environ.get("NLB_IMAGE_PG15", "nl-biomero/postgres:15"))
    parser.add_argument("--new-image", default=os.environ.get("NLB_IMAGE_PG17", "nl-biomero/postgres:17"))
    parser.add_argument("--workdir", default=None, help="host directory for dumps (default: TMPDIR)")
    parser.add_argument("--strategies", default=",".join(STRATEGIES), help="comma-separated subset of %s"
                        % ",".join(STRATEGIES))
    parser.add_argument("--runs", type=int, default=1,
                        help="interleaved rounds (default 1; 2 = lower of 2, 3+ = median)")
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
    chosen = [s for s in args.strategies.split(",") if s]
    if any(s not in STRATEGIES for s in chosen):
        parser.error("--strategies: choose from %s" % ", ".join(STRATEGIES))

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
        bench.generate()
        for round_no in range(args.runs):
            log("round %d of %d" % (round_no + 1, args.runs))
            for strategy in chosen:
                bench.measure(strategy)
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
        with open(args.json, "w") as handle:
            json.dump({"facts": bench.facts, "results": bench.results, "args": vars(args),
                       "started_utc": started_utc, "total_s": round(total, 1)}, handle, indent=2)
    if args.docs:
        write_doc(SECTION, section_text(report, args))
        log("wrote %s" % os.path.relpath(DOC, REPO))
    failed = [s for s in STRATEGIES if any("error" in r for r in runs_of(bench.results, s))]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
