#!/usr/bin/env python
# -*- coding: utf-8 -*-
"""Benchmark (not a test): what `verify: full` costs against `verify: toc` on a ~1 GB database.

Builds the database of benchmarks/dump_restore.py (PostgreSQL 17, random text,
numbers, timestamps, bytea), then takes pg_dump_container's dumps with each
verification level (custom zstd, custom gzip, directory zstd with 2 jobs) and
times the verification of a finished custom archive alone. Prints a table and
writes the section "## verify: toc and full" of docs/benchmarks.md.

    benchmarks/run.sh verify_cost.py [--size-gb 1.0]
    python benchmarks/verify_cost.py --report-from results.json   # only render a saved run
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dump_restore  # noqa: E402  (builds the database, measures CPU of host, container, shim, dockerd)
from benchlib import fmt_load, loadavg, write_doc  # noqa: E402

SECTION = "## verify: toc and full"
CASES = (("custom", "auto", None), ("custom", "gzip", None), ("directory", "auto", 2))


def measure(size_gb):
    from ansible_collections.nl_biomero.database.plugins.module_utils.dump import PgDump, verify_archive
    from ansible_collections.nl_biomero.database.plugins.module_utils.engine import ContainerEngine

    args = argparse.Namespace(size_gb=size_gb, image=os.environ.get("NLB_IMAGE_PG17", "nl-biomero/postgres:17"),
                              workdir=None, quick=False, runs=1)
    bench = dump_restore.Bench(args)
    out = {"load_before": loadavg()}
    try:
        bench.check_env()
        bench.start()
        bench.generate()
        out["facts"] = bench.facts
        engine = ContainerEngine("docker")
        for fmt, compress, jobs in CASES:
            for level in ("toc", "full"):
                dest = os.path.join(bench.workdir, "%s-%s-%s" % (fmt, compress, level))
                cpu0, started = bench.cpu_seconds(), time.monotonic()
                result = PgDump(bench.container, "bench", engine="docker", login_user="postgres", dest=dest,
                                format=fmt, compress=compress, jobs=jobs, verify=level).run()
                wall, cpu1 = time.monotonic() - started, bench.cpu_seconds()
                key = "%s/%s/%s" % (fmt, result["compression"], level)
                out[key] = {"wall": round(wall, 1), "bytes": result["bytes"],
                            "cpu": {k: round(cpu1[k] - cpu0[k], 1) for k in cpu0}}
                if fmt != "directory" and level == "full":
                    for alone in ("toc", "full"):
                        cpu0, started = bench.cpu_seconds(), time.monotonic()
                        verify_archive(engine, bench.container, alone, host_file=result["path"])
                        cpu1 = bench.cpu_seconds()
                        out[key + "/alone-" + alone] = {"wall": round(time.monotonic() - started, 1),
                                                        "cpu": {k: round(cpu1[k] - cpu0[k], 1) for k in cpu0}}
                dump_restore.remove(result["path"])
    finally:
        bench.cleanup()
    out["load_after"] = loadavg()
    return out


def render(out):
    rows = ["| archive | dump + verify, toc | dump + verify, full | verification alone, toc | verification alone, full |",
            "|---|---|---|---|---|"]
    for fmt, method in (("custom", "zstd"), ("custom", "gzip"), ("directory", "zstd")):
        toc, full = out.get("%s/%s/toc" % (fmt, method)), out.get("%s/%s/full" % (fmt, method))
        alone = [out.get("%s/%s/full/alone-%s" % (fmt, method, level)) for level in ("toc", "full")]
        cells = ["%s s" % item["wall"] if item else "-" for item in (toc, full)]
        cells += ["%s s (container CPU %s s)" % (item["wall"], item["cpu"]["container"]) if item else "-"
                  for item in alone]
        rows.append("| %s %s, %d MB | %s |" % (fmt, method, (toc or full)["bytes"] // 10 ** 6, " | ".join(cells)))
    facts = out["facts"]
    return "\n".join([
        "PostgreSQL %s, %.2f GB database (%d rows), 2 cores; load average %s before, %s after (other work was "
        "running: wall times are noisy, CPU seconds steadier)." % (
            facts["version"].split()[0], facts["db_bytes"] / 1e9, facts["rows"], fmt_load(out["load_before"]),
            fmt_load(out["load_after"])),
        "",
    ] + rows + [
        "",
        "`full` reads the whole archive with the container's `pg_restore -f /dev/null` (custom and tar archives",
        "streamed through stdin; a directory dump on its staged copy, plus a walk of every zstd/lz4 frame of the",
        "copied data files, which pg_restore 17 reads past a cut without an error). Backup sets default to `full`;",
        "pg_dump_container to `toc`.",
    ])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--size-gb", type=float, default=1.0)
    parser.add_argument("--report-from", metavar="JSON", help="render a saved run instead of measuring")
    parser.add_argument("--json", help="also save the raw results here")
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args()
    if args.report_from:
        with open(args.report_from) as handle:
            out = json.load(handle)
    else:
        out = measure(args.size_gb)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(out, handle, indent=1)
    text = render(out)
    print(text)
    if not args.no_docs:
        write_doc(SECTION, text)


if __name__ == "__main__":
    main()
