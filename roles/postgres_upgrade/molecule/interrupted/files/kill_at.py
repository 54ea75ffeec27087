"""Run a command in its own process group, wait until it holds at a step boundary, then SIGKILL the group.

usage: kill_at.py MARKER TIMEOUT LOCK_FILE -- ansible-playbook ...

The role writes MARKER when it reaches the boundary named by
postgres_upgrade__hold_at and waits there. This script then reads who holds
the backup job's lock (LOCK_FILE's .holder record), kills the whole process
group with SIGKILL (ansible-playbook, its workers and the module they run)
the way a crash or an impatient operator would, and prints one JSON line:
{"boundary", "lock_holder", "seconds"}. It fails when the command ends
before the boundary or the boundary is not reached in TIMEOUT seconds.
"""

import json
import os
import signal
import subprocess
import sys
import time


def main(argv):
    marker, timeout, lock_file = argv[1], float(argv[2]), argv[3]
    command = argv[argv.index("--") + 1:]
    if os.path.exists(marker):
        os.remove(marker)
    started = time.time()
    with open(marker + ".log", "w") as log:
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    while not os.path.exists(marker):
        if child.poll() is not None:
            sys.exit("the play ended (exit %s) before the boundary; see %s.log" % (child.returncode, marker))
        if time.time() - started > timeout:
            os.killpg(child.pid, signal.SIGKILL)
            sys.exit("the boundary was not reached within %s s; see %s.log" % (timeout, marker))
        time.sleep(0.2)
    with open(marker) as handle:
        boundary = handle.read().strip()
    try:
        with open(lock_file + ".holder") as handle:
            holder = json.load(handle).get("holder")
    except (OSError, ValueError):
        holder = None
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    os.remove(marker)
    print(json.dumps({"boundary": boundary, "lock_holder": holder, "seconds": round(time.time() - started, 1)}))


if __name__ == "__main__":
    main(sys.argv)
