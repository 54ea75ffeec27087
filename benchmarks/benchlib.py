"""Helpers shared by the benchmark scripts: logging, commands, load average, docs/benchmarks.md sections."""

from __future__ import annotations

import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(REPO, "docs", "benchmarks.md")
DOC_TITLE = "# Benchmarks\n\nMeasured performance of the collection's modules on the project's test machines.\n"


class BenchError(Exception):
    pass


def log(msg):
    sys.stderr.write("[%s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()


def loadavg():
    with open("/proc/loadavg") as handle:
        return [float(x) for x in handle.read().split()[:3]]


def fmt_load(value):
    return "/".join("%.1f" % v for v in value) if value else "?"


def run(argv, check=True, input_bytes=None, timeout=3600, env=None):
    proc = subprocess.run(argv, input=input_bytes, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=timeout, env=env, check=False)
    out = proc.stdout.decode("utf-8", "replace")
    err = proc.stderr.decode("utf-8", "replace")
    if check and proc.returncode != 0:
        raise BenchError("%s failed (%d): %s" % (" ".join(argv[:4]), proc.returncode, (err or out).strip()[-3000:]))
    return proc.returncode, out, err


def write_doc(section, section_body):
    """Replace the text between ``section`` (a '## ' heading) and the next '## ' heading, or append the section."""
    text = DOC_TITLE
    if os.path.exists(DOC):
        with open(DOC) as handle:
            text = handle.read()
    block = section + "\n\n" + section_body.rstrip("\n") + "\n"
    lines = text.splitlines(True)
    start = next((i for i, line in enumerate(lines) if line.rstrip("\n") == section), None)
    if start is None:
        new = text.rstrip("\n") + "\n\n" + block
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        tail = "".join(lines[end:])
        new = "".join(lines[:start]) + block + ("\n" + tail if tail else "")
    os.makedirs(os.path.dirname(DOC), exist_ok=True)
    tmp = "%s.tmp-%d" % (DOC, os.getpid())
    with open(tmp, "w") as handle:
        handle.write(new)
    os.replace(tmp, DOC)
