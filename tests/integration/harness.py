"""The integration test harness, one importable module (tests and benchmarks use it):
a real container engine, real PostgreSQL containers built by
images/postgres/build.sh, and modules run through ansible-playbook exactly as
a user runs them. Importing it makes this checkout the collection
nl_biomero.database for Python and for ansible-playbook."""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import pytest

ENGINE = os.environ.get("NLB_ENGINE", "docker")
IMAGES = {
    15: os.environ.get("NLB_IMAGE_PG15", "nl-biomero/postgres:15"),
    17: os.environ.get("NLB_IMAGE_PG17", "nl-biomero/postgres:17"),
    18: os.environ.get("NLB_IMAGE_PG18", "nl-biomero/postgres:18"),
}
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(REPO_ROOT, ".build", "collections")


def link_collection():
    """This checkout as ansible_collections.nl_biomero.database, for imports and for ansible-playbook."""
    link = os.path.join(COLLECTIONS, "ansible_collections", "nl_biomero", "database")
    if not os.path.exists(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(REPO_ROOT, link)
    if COLLECTIONS not in sys.path:
        sys.path.insert(0, COLLECTIONS)
    os.environ.setdefault("ANSIBLE_COLLECTIONS_PATH", COLLECTIONS)
    os.environ.setdefault("ANSIBLE_PYTHON_INTERPRETER", sys.executable)
    if not shutil.which("ansible-playbook"):
        os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")


link_collection()


def engine(*args, check=True, input=None, timeout=300):
    """Run the container engine CLI; returns CompletedProcess with text output."""
    proc = subprocess.run([ENGINE, *args], capture_output=True, text=True, input=input, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError("%s %s failed (rc=%s): %s" % (ENGINE, " ".join(args), proc.returncode, proc.stderr))
    return proc


def container_ip(name):
    """The first bridge-network address of a container (the host reaches unpublished ports there)."""
    out = engine("container", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", name).stdout
    return out.split()[0]


def unique(prefix):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:8])


def require_image(major):
    image = IMAGES[major]
    if engine("image", "inspect", image, check=False).returncode != 0:
        pytest.fail("image %s is missing: run images/postgres/build.sh %s (scripts/setup.sh does)" % (image, major))
    return image


def data_mount(major):
    """Where an image of ``major`` wants its data volume (tuning.data_layout, the collection's rule)."""
    from ansible_collections.nl_biomero.database.plugins.module_utils.tuning import data_layout
    return data_layout(major)[0]


class DbContainer:
    """A PostgreSQL test container on a named volume (the harness's, not module_utils' PgContainer)."""

    def __init__(self, major, name, user="app", password="s3cret-pw", database="appdb", volume=None, extra_args=()):
        self.major = major
        self.image = require_image(major)
        self.name = name
        self.user = user
        self.password = password
        self.database = database
        self.volume = volume or name + "-data"
        self.extra_args = list(extra_args)

    def start(self):
        engine("volume", "create", self.volume)
        engine(
            "run", "-d", "--name", self.name,
            "-e", "POSTGRES_USER=" + self.user,
            "-e", "POSTGRES_PASSWORD=" + self.password,
            "-e", "POSTGRES_DB=" + self.database,
            "-v", self.volume + ":" + data_mount(self.major),
            *self.extra_args, self.image,
        )
        self.wait_ready()
        return self

    def wait_ready(self, timeout=90):
        deadline = time.time() + timeout
        while time.time() < deadline:
            # -h 127.0.0.1: the entrypoint's temporary init server listens on the socket only
            proc = engine("exec", self.name, "pg_isready", "-h", "127.0.0.1", "-U", self.user, "-d", self.database, check=False)
            if proc.returncode == 0:
                probe = self.psql("SELECT 1", check=False)
                if probe.returncode == 0:
                    return
            time.sleep(0.5)
        logs = engine("logs", self.name, check=False)
        raise AssertionError("container %s not ready: %s %s" % (self.name, logs.stdout[-2000:], logs.stderr[-2000:]))

    def psql(self, sql, database=None, check=True):
        """Run SQL inside the container as the superuser; returns CompletedProcess (unaligned, tuples only)."""
        return engine(
            "exec", "-i", self.name, "psql", "-X", "-v", "ON_ERROR_STOP=1", "-At",
            "-U", self.user, "-d", database or self.database, "-f", "-",
            input=sql, check=check,
        )

    def query(self, sql, database=None):
        return self.psql(sql, database=database).stdout.strip()

    def stop(self):
        engine("stop", self.name, check=False)

    def remove(self):
        engine("rm", "-f", "-v", self.name, check=False)
        engine("volume", "rm", "-f", self.volume, check=False)


def run_module(module, args, check_mode=False, diff=False, env=None, timeout=900):
    """Run one module task through ansible-playbook on localhost and return its
    registered result (dict). Failures are returned (result['failed']), not raised."""
    with tempfile.TemporaryDirectory(prefix="nlb-play-") as tmp:
        out = os.path.join(tmp, "result.json")
        playbook = [{
            "hosts": "localhost",
            "gather_facts": False,
            "tasks": [
                {"name": "module under test", module: args, "register": "result", "ignore_errors": True,
                 "check_mode": check_mode, "diff": diff},
                {"name": "save result", "ansible.builtin.copy": {"content": "{{ result | to_json }}", "dest": out},
                 "check_mode": False, "diff": False},
            ],
        }]
        path = os.path.join(tmp, "play.yml")
        with open(path, "w") as handle:
            json.dump(playbook, handle)
        inventory = "localhost ansible_connection=local ansible_python_interpreter=%s\n" % os.environ.get(
            "ANSIBLE_PYTHON_INTERPRETER", "auto")
        inv_path = os.path.join(tmp, "inventory")
        with open(inv_path, "w") as handle:
            handle.write(inventory)
        proc = subprocess.run(
            ["ansible-playbook", "-i", inv_path, path],
            capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}, check=False,
        )
        if not os.path.exists(out):
            raise AssertionError("ansible-playbook did not run the module: %s\n%s" % (proc.stdout, proc.stderr))
        with open(out) as handle:
            result = json.load(handle)
        result["_playbook_output"] = proc.stdout
        return result


class Writer(threading.Thread):
    """An unlisted writer: the database owner INSERTs into table ``writes`` in a loop, reconnecting after every error.

    Each session commits one row at a time and says so after the commit
    (a NOTICE), so ``committed`` holds only rows that were really committed.
    A session lasts up to a minute, so it is always alive when a fence comes
    (a session that ended by itself just before would not be seen ended);
    ``stop`` ends it in the server.
    """

    LOOP = ("DO $$ DECLARE n bigint; t0 timestamptz := clock_timestamp(); BEGIN LOOP "
            "INSERT INTO writes (note) VALUES ('unlisted') RETURNING id INTO n; COMMIT; "
            "RAISE NOTICE 'committed %', n; PERFORM pg_sleep(0.02); "
            "EXIT WHEN clock_timestamp() - t0 > interval '60 seconds'; END LOOP; END $$;")

    def __init__(self, container, user, database):
        super().__init__(daemon=True)
        self.container, self.user, self.database = container, user, database
        self.committed = set()
        self.errors = []
        self.stopping = threading.Event()

    def run(self):
        while not self.stopping.is_set():
            proc = subprocess.Popen([ENGINE, "exec", "-e", "PGAPPNAME=unlisted-writer", self.container, "psql", "-X",
                                     "-q", "-U", self.user, "-d", self.database, "-c", self.LOOP],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for line in proc.stderr:
                found = re.search(r"NOTICE:\s+committed (\d+)", line)
                if found:
                    self.committed.add(int(found.group(1)))
                elif line.strip():
                    self.errors.append(line.strip())
            proc.wait()
            time.sleep(0.1)

    def stop(self):
        self.stopping.set()
        # docker exec does not pass a kill on to psql in the container: end the session in the server
        deadline = time.time() + 60
        while self.is_alive() and time.time() < deadline:
            engine("exec", self.container, "psql", "-X", "-q", "-U", self.user, "-d", self.database, "-c",
                   "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'unlisted-writer'",
                   check=False, timeout=30)
            self.join(timeout=2)
        assert not self.is_alive()


def run_tasks(tasks, timeout=900):
    """Run several module tasks in ONE ansible-playbook run; returns their registered results in order.

    ``tasks`` are (module, args) or (module, args, check_mode). Each task has
    ignore_errors, so a failure is returned (result['failed']), not raised.
    """
    with tempfile.TemporaryDirectory(prefix="nlb-rst-play-") as tmp:
        out = os.path.join(tmp, "results.json")
        play_tasks = []
        for number, task in enumerate(tasks):
            module, args = task[0], task[1]
            check_mode = task[2] if len(task) > 2 else False
            play_tasks.append({"name": "task %d" % number, module: args, "register": "result_%d" % number,
                               "ignore_errors": True, "check_mode": check_mode})
        collected = "[%s]" % ", ".join("result_%d" % number for number in range(len(tasks)))
        play_tasks.append({"name": "save results", "ansible.builtin.copy": {
            "content": "{{ %s | to_json }}" % collected, "dest": out}, "check_mode": False})
        playbook = os.path.join(tmp, "play.yml")
        with open(playbook, "w") as handle:
            json.dump([{"hosts": "localhost", "gather_facts": False, "tasks": play_tasks}], handle)
        inventory = os.path.join(tmp, "inventory")
        with open(inventory, "w") as handle:
            handle.write("localhost ansible_connection=local ansible_python_interpreter=%s\n"
                         % os.environ.get("ANSIBLE_PYTHON_INTERPRETER", "auto"))
        proc = subprocess.run(["ansible-playbook", "-i", inventory, playbook], capture_output=True, text=True,
                              timeout=timeout, check=False)
        if not os.path.exists(out):
            raise AssertionError("ansible-playbook did not run the tasks: %s\n%s" % (proc.stdout, proc.stderr))
        with open(out) as handle:
            results = json.load(handle)
        for result in results:
            result["_playbook_output"] = proc.stdout
        return results
