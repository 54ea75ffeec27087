#!/usr/bin/env python
"""Benchmark (not a test): what a CI test stack (module pg_stack) costs.

- time to a ready empty stack (the module's core in-process, and end to end through
  `ansible-playbook nl_biomero.database.stack`), and its teardown;
- a stack seeded from a ~100 MB dump: the first (restore, then the cluster is kept) and the
  following ones (started from the kept cluster) up to the tenth;
- memory of N idle stacks (`docker stats`, both containers of each).

Prints a table; --write-docs puts it into the section "## pg_stack: test stacks for CI" of
docs/benchmarks.md. Every stack is named nlbbench-stk-* and removed at the end.

Usage (after `export VENV=...; source scripts/env.sh`):
    python benchmarks/stack.py [--seed-mb 100] [--seeded 10] [--idle 5] [--write-docs]
"""
import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO_ROOT, "tests", "integration"))
sys.path.insert(0, HERE)

import harness  # noqa: E402  (links the collection)
from benchlib import fmt_load, loadavg, log, write_doc  # noqa: E402
from ansible_collections.nl_biomero.database.plugins.module_utils.stack import stack_result  # noqa: E402

SECTION = "## pg_stack: test stacks for CI"


def _stack(name, files, **params):
    params.setdefault("engine", harness.ENGINE)
    params.setdefault("image", harness.IMAGES[17])
    return stack_result(name=name, files_dir=files, **params)


def _remove(name, files):
    clock = time.monotonic()
    _stack(name, files, state="absent")
    return time.monotonic() - clock


def _make_seed(files, megabytes, path):
    """A dump of ~``megabytes`` of table data (random text, numbers, timestamps), pg_dump -Fc."""
    name = harness.unique("nlbbench-stk-src")
    result = _stack(name, files)
    container = result["containers"][1]  # <name>-omero-db (sorted: biomero, omero)
    rows = megabytes * 1024 * 1024 // 150
    sql = ("CREATE TABLE job (id bigint PRIMARY KEY, name text, started timestamptz, value double precision);"
           "INSERT INTO job SELECT g, md5(g::text) || md5((g*7)::text) || md5((g*13)::text), "
           "now() - g * interval '1 s', random() FROM generate_series(1, %d) g; ANALYZE job;" % rows)
    harness.engine("exec", container, "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-U", "omero", "-d", "omero",
                   "-c", sql, timeout=1800)
    size = harness.engine("exec", container, "psql", "-X", "-At", "-U", "omero", "-d", "omero", "-c",
                          "SELECT pg_database_size('omero')").stdout.strip()
    with open(path, "wb") as handle:
        subprocess.run([harness.ENGINE, "exec", container, "pg_dump", "-Fc", "-U", "omero", "omero"],
                       stdout=handle, check=True)
    _remove(name, files)
    return int(size), os.path.getsize(path)


def _playbook_seconds(name, files, *extra):
    clock = time.monotonic()
    subprocess.run(["ansible-playbook", "nl_biomero.database.stack", "-e", "stack=%s" % name,
                    "-e", "files_dir=%s" % files, "-e", "image=%s" % harness.IMAGES[17]] + list(extra),
                   check=True, capture_output=True)
    return time.monotonic() - clock


def _mib(text):
    number, unit = re.match(r"([\d.]+)\s*([KMG]i?B|B)", text).groups()
    factor = {"B": 1.0 / 2 ** 20, "KiB": 1.0 / 1024, "kB": 1.0 / 1024, "MiB": 1.0, "MB": 1.0, "GiB": 1024.0,
              "GB": 1024.0}.get(unit, 1.0)
    return float(number) * factor


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--empty", type=int, default=3, help="empty stacks to time (default 3)")
    parser.add_argument("--seed-mb", type=int, default=100, help="table data in the seed (MB, default 100)")
    parser.add_argument("--seeded", type=int, default=10, help="seeded stacks to time (default 10)")
    parser.add_argument("--idle", type=int, default=5, help="idle stacks for the memory figure (default 5)")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    harness.require_image(17)
    work = tempfile.mkdtemp(prefix="nlbbench-stk-")
    files = os.path.join(work, "files")
    cache = os.path.join(work, "cache")
    made = []
    rows = []
    load_before = loadavg()
    try:
        log("empty stacks")
        empty = []
        for _round in range(args.empty):
            name = harness.unique("nlbbench-stk")
            made.append(name)
            clock = time.monotonic()
            result = _stack(name, files)
            total = time.monotonic() - clock
            empty.append((result["ready_seconds"], total, _remove(name, files)))
        name = harness.unique("nlbbench-stk")
        made.append(name)
        playbook_up = _playbook_seconds(name, files)
        playbook_down = _playbook_seconds(name, files, "-e", "state=absent")
        best = min(empty)
        rows.append(("empty stack ready (core, best of %d)" % args.empty, "%.1f s" % best[0],
                     "both servers accept TCP connections"))
        rows.append(("empty stack, module call (core, median)", "%.1f s" % sorted(e[1] for e in empty)[len(empty) // 2],
                     "network, 2 containers, wait, files"))
        rows.append(("empty stack, `ansible-playbook nl_biomero.database.stack`", "%.1f s" % playbook_up,
                     "end to end, Ansible start-up included"))
        rows.append(("teardown (core, median)", "%.1f s" % sorted(e[2] for e in empty)[len(empty) // 2],
                     "containers, network, files"))
        rows.append(("teardown, `-e state=absent` playbook", "%.1f s" % playbook_down, ""))

        log("seed of %d MB" % args.seed_mb)
        seed = os.path.join(work, "seed.pg_dump")
        db_bytes, dump_bytes = _make_seed(files, args.seed_mb, seed)
        seeded = []
        for index in range(args.seeded):
            name = harness.unique("nlbbench-stk")
            made.append(name)
            clock = time.monotonic()
            result = _stack(name, files, biomero_seed=seed, cache_dir=cache)
            seeded.append(time.monotonic() - clock)
            assert result["seeded"]["biomero"].get("prepared_cluster"), result
            _remove(name, files)
            log("seeded stack %d: %.1f s" % (index + 1, seeded[-1]))
        rows.append(("seeded stack, first (restore + keep the cluster)", "%.1f s" % seeded[0],
                     "database %d MB, dump %d MB" % (db_bytes // 2 ** 20, dump_bytes // 2 ** 20)))
        if len(seeded) > 1:
            rows.append(("seeded stack, second", "%.1f s" % seeded[1], "from the kept cluster"))
            rows.append(("seeded stack, #%d" % len(seeded), "%.1f s" % seeded[-1],
                         "%.1fx faster than the first" % (seeded[0] / seeded[-1])))

        log("%d idle stacks" % args.idle)
        idle = []
        for _idle in range(args.idle):
            name = harness.unique("nlbbench-stk")
            made.append(name)
            idle.append(name)
            _stack(name, files)
        time.sleep(15)
        out = harness.engine("stats", "--no-stream", "--format", "{{.Name}}\t{{.MemUsage}}").stdout
        used = [_mib(line.split("\t")[1]) for line in out.splitlines()
                if any(line.startswith(name + "-") for name in idle)]
        rows.append(("memory of %d idle empty stacks" % args.idle, "%.0f MiB" % sum(used),
                     "%.0f MiB per stack (2 containers, tmpfs data included)" % (sum(used) / args.idle)))
    finally:
        for name in made:
            try:
                _remove(name, files)
            except Exception as exc:  # noqa: BLE001 - report and go on
                log("removing %s failed: %s" % (name, exc))
        shutil.rmtree(work, ignore_errors=True)
    load_after = loadavg()
    table = "| measurement | value | notes |\n|---|---|---|\n" + "".join("| %s | %s | %s |\n" % row for row in rows)
    body = ("Module `pg_stack` (role `stack`), PostgreSQL 17 (`%s`), %s, %d CPUs, engine %s; ephemeral stacks "
            "(tmpfs, fsync off). Load average before/after: %s / %s (the machine is shared: other jobs ran).\n\n%s\n"
            "Run: `python benchmarks/stack.py --write-docs` (--seed-mb, --seeded, --idle).\n"
            % (harness.IMAGES[17], platform.machine(), os.cpu_count(), harness.ENGINE, fmt_load(load_before),
               fmt_load(load_after), table))
    print(body)
    if args.write_docs:
        write_doc(SECTION, body)


if __name__ == "__main__":
    main()
