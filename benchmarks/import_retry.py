#!/usr/bin/env python
"""Benchmark (not a test): retry 10,000 failed BIOMERO.importer orders in one run.

Starts a PostgreSQL container from the offline image, creates the importer's schema,
seeds N failed orders (Import Pending -> Import Started -> Import Failed) and as many
completed ones, then times biomero_import_retry's core in-process and the module
end to end through ansible-playbook. Prints a table; --write-docs puts it into the
section "## biomero_import_retry" of docs/benchmarks.md.

Usage (after `export VENV=...; source scripts/env.sh`):
    python benchmarks/import_retry.py [--orders 10000] [--major 17] [--write-docs]
"""
import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO_ROOT, "tests", "integration"))

import harness  # noqa: E402  (links the collection)
import importer_fixture as fx  # noqa: E402  (the importer schema, connections, module arguments)

from ansible_collections.nl_biomero.database.plugins.module_utils import importer  # noqa: E402
SECTION = "## biomero_import_retry"
DOCS = os.path.join(REPO_ROOT, "docs", "benchmarks.md")

SEED = """
INSERT INTO imports (group_name, user_name, destination_id, destination_type, stage, uuid, timestamp, files,
                     file_names, description)
SELECT 'group' || (n %% 20), 'user' || (n %% 150), (n %% 5000)::text, 'Dataset', s.stage, md5('order' || n)::uuid::text,
       now() - interval '2 days' + n * interval '1 second' + s.k * interval '1 minute',
       '["/data/group' || (n %% 20) || '/run' || n || '/plate_a.tif", "/data/group' || (n %% 20) || '/run' || n || '/plate_b.tif"]',
       '["plate_a.tif", "plate_b.tif"]',
       CASE WHEN s.k = 0 THEN 'order ' || n WHEN s.stage = 'Import Failed' THEN 'Import failed for data package' END
FROM generate_series(1, %(total)s) AS n,
     LATERAL (VALUES (0, 'Import Pending'), (1, 'Import Started'),
                     (2, CASE WHEN n %% 2 = 0 THEN 'Import Failed' ELSE 'Import Completed' END)) AS s(k, stage)
ORDER BY n, s.k
"""


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def library_retry(pg, orders, check_mode=False):
    conn = fx.connect(pg)
    try:
        return importer.retry_orders(conn, importer.Selection(stages=[importer.STAGE_FAILED]), limit=orders,
                                     check_mode=check_mode)
    finally:
        conn.close()


def library_info(pg):
    conn = fx.connect(pg)
    try:
        return importer.list_orders(conn, importer.Selection(stages=[importer.STAGE_FAILED]), 100)
    finally:
        conn.close()


def playbook_retry(module_args, check):
    """(wall of the whole ansible-playbook run, time of the module task as profile_tasks reports it)."""
    with tempfile.TemporaryDirectory(prefix="nlb-imp-bench-") as tmp:
        playbook = os.path.join(tmp, "play.yml")
        tasks = [{"name": "retry", fx.RETRY: module_args, "register": "retry"},
                 {"name": "check", "ansible.builtin.assert": {"that": [check], "quiet": True}}]
        with open(playbook, "w") as handle:
            json.dump([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}], handle)
        inventory = os.path.join(tmp, "inventory")
        with open(inventory, "w") as handle:
            handle.write("localhost ansible_connection=local ansible_python_interpreter=%s\n"
                         % os.environ["ANSIBLE_PYTHON_INTERPRETER"])
        env = dict(os.environ, ANSIBLE_CALLBACKS_ENABLED="ansible.posix.profile_tasks")
        start = time.perf_counter()
        proc = subprocess.run(["ansible-playbook", "-i", inventory, playbook], capture_output=True, text=True,
                              env=env, check=False)
        wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit("ansible-playbook failed:\n%s\n%s" % (proc.stdout[-3000:], proc.stderr[-3000:]))
    match = re.search(r"^retry -+ ([0-9.]+)s$", proc.stdout, re.M)
    return wall, float(match.group(1)) if match else float("nan")


def measure(pg, orders):
    """One round on the seeded database: [(step, orders written, seconds)]; leaves the failed state."""
    rows = []
    conn = fx.connect(pg)
    high_water = fx.scalar(conn, "SELECT max(id) FROM imports")
    seconds, result = timed(lambda: library_retry(pg, orders, check_mode=True))
    rows.append(("check mode, nothing written (core, read-only)", 0, seconds))
    seconds, result = timed(lambda: library_retry(pg, orders))
    assert len(result["retried"]) == orders, len(result["retried"])
    rows.append(("retry, new_order (core, one transaction)", orders, seconds))
    seconds, result = timed(lambda: library_retry(pg, orders))
    assert result["changed"] is False and len(result["not_retried"]) == orders
    rows.append(("second run, nothing to do (core)", 0, seconds))
    seconds, result = timed(lambda: library_info(pg))
    rows.append(("biomero_import_info, stage filter, %d orders in the table (core)" % (orders * 3), 0, seconds))

    # end to end through ansible-playbook on a fresh copy of the failed state
    reset(conn, high_water)
    module_args = fx.module_args(pg, all_failed=True, limit=orders)
    wall, task = playbook_retry(module_args, "retry.retried | length == %d" % orders)
    rows.append(("retry, module task in ansible-playbook (container option)", orders, task))
    rows.append(("  the whole ansible-playbook run", orders, wall))
    wall, task = playbook_retry(module_args, "not retry.changed")
    rows.append(("second run, module task in ansible-playbook", 0, task))
    reset(conn, high_water)
    conn.close()
    return rows


def reset(conn, high_water):
    """Back to the seeded failed state, dead rows vacuumed so every round sees the same table."""
    with conn.cursor() as cur:
        cur.execute("DELETE FROM imports WHERE id > %s", (high_water,))
    conn.commit()
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("VACUUM imports")
    conn.autocommit = False


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=10000, help="failed orders to retry (as many completed ones are added)")
    parser.add_argument("--major", type=int, default=17, choices=[15, 17])
    parser.add_argument("--repeat", type=int, default=3,
                        help="rounds; the table shows each step's best (other load on a shared machine only adds time)")
    parser.add_argument("--write-docs", action="store_true", help="write the table into docs/benchmarks.md")
    args = parser.parse_args()

    pg = harness.DbContainer(args.major, harness.unique("nlbtest-imp-bench"))
    pg.start()
    rounds = []
    try:
        conn = fx.connect(pg)
        with conn.cursor() as cur:
            cur.execute(fx.SCHEMA_FULL)
            cur.execute(SEED, {"total": args.orders * 2})
        conn.commit()
        total_rows = fx.scalar(conn, "SELECT count(*) FROM imports")
        conn.close()
        loads = []
        for _round in range(args.repeat):
            loads.append(os.getloadavg()[0])
            rounds.append(measure(pg, args.orders))
    finally:
        pg.remove()

    rows = [(step, written, min(r[index][2] for r in rounds)) for index, (step, written, _s) in enumerate(rounds[0])]
    worst = [max(r[index][2] for r in rounds) for index in range(len(rows))]
    cpu = "%d cores, load average %.1f-%.1f" % (os.cpu_count(), min(loads), max(loads))
    header = ("%d failed + %d completed orders (%d rows), PostgreSQL %d in a container, %s, %s, %s, best of %d"
              % (args.orders, args.orders, total_rows, args.major, cpu, platform.python_implementation() + " "
                 + platform.python_version(), datetime.date.today().isoformat(), args.repeat))
    table = ["| step | orders written | wall (best) | wall (worst) |", "|---|---:|---:|---:|"]
    table += ["| %s | %d | %.2f s | %.2f s |" % (row + (bad,)) for row, bad in zip(rows, worst)]
    print(header)
    print("\n".join(table))
    if args.write_docs:
        write_docs(header, table)


def write_docs(header, table):
    notes = [
        "The retry is set-based: one selection statement (latest row per order, source row, existing-retry",
        "fingerprint join) and one `INSERT ... SELECT` over `unnest()` of the planned rows, in one transaction",
        "under `SHARE ROW EXCLUSIVE`. \"core\" is the module_utils call over psycopg2; the module task adds",
        "Ansible's module start-up, the container inspect and returning 10,000 result entries (AnsibleModule",
        "scans every returned value for the no_log password: about half a second for 10,000 orders).",
    ]
    intro = "`python benchmarks/import_retry.py --write-docs` (target: 10,000 orders retried in under 2 s)."
    body = [SECTION, "", intro, "", header + ":", ""] + table + [""] + notes + [""]
    text = open(DOCS).read() if os.path.exists(DOCS) else "# Benchmarks\n\n"
    pattern = re.compile(r"^%s\n.*?(?=^## |\Z)" % re.escape(SECTION), re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _match: "\n".join(body) + "\n", text)
    else:
        text = text.rstrip("\n") + "\n\n" + "\n".join(body) + "\n"
    with open(DOCS, "w") as handle:
        handle.write(text)
    print("wrote %s (section %s)" % (DOCS, SECTION))


if __name__ == "__main__":
    main()
