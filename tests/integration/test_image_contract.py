"""Contract of the offline-built PostgreSQL images (images/postgres/build.sh).

The images stand in for the official ``postgres`` image on air-gapped hosts, so
they must honour its contract: POSTGRES_USER/PASSWORD/PASSWORD_FILE/DB,
init scripts run once, ``postgres`` arguments passed through, data on the
volume, the server as PID 1 running as postgres, clean shutdown on stop.
From 18 on the official 18 layout: the volume on /var/lib/postgresql, the
cluster in /var/lib/postgresql/18/docker, an old layout's cluster refused.

Runs against a real engine (``NLB_ENGINE``, docker by default). A missing image
is a failure, never a skip. Everything created is named ``nlbtest-img-*``,
labelled with this run's id, and removed in teardown.
``NLB_ENGINE_RUN_ARGS`` adds arguments to every ``run`` (podman here needs
e.g. ``--runtime runc --ulimit nofile=1024:1024``).
"""

import json
import os
import shlex
import time
import uuid

import pytest

from harness import ENGINE, IMAGES, engine

from ansible_collections.nl_biomero.database.plugins.module_utils.tuning import data_layout
RUN_ARGS = shlex.split(os.environ.get("NLB_ENGINE_RUN_ARGS", ""))
PREFIX = "nlbtest-img-"
RUN_ID = uuid.uuid4().hex[:8]
RUN_LABEL = "org.nl-biomero.test-run=" + RUN_ID
PG_BINARIES = ("pg_dump", "pg_restore", "psql", "pg_isready", "postgres", "initdb", "pg_dumpall")

INIT_SQL = """\
CREATE TABLE init_marker (id serial PRIMARY KEY, note text NOT NULL);
INSERT INTO init_marker (note) VALUES ('from 01-marker.sql');
"""
# Sourced (not executable) like most init scripts; appends one line per run.
INIT_SH = 'echo "init.sh ran for $POSTGRES_DB" >> "$PGDATA/init-sh.log"\n'


def logs(name):
    proc = engine("logs", name, check=False)
    return proc.stdout + proc.stderr


class Stack:
    """Containers and volumes of one image under test; all removed at teardown."""

    def __init__(self, major, tmpdir):
        self.major = major
        self.image = IMAGES[major]
        # Where the volume goes and where the cluster lies (18: /var/lib/postgresql, 18/docker).
        self.mount, self.pgdata = data_layout(major)
        self.tmpdir = tmpdir
        self.containers = []
        self.volumes = []
        self._checked = False
        self._primary = None

    # -- resources -------------------------------------------------------
    def require_image(self):
        """Fail (not skip) when the image was not built."""
        if not self._checked:
            if engine("image", "inspect", self.image, check=False).returncode != 0:
                pytest.fail("image %s is missing: build it with `bash images/postgres/build.sh %s` "
                            "(ENGINE=%s)" % (self.image, self.major, ENGINE), pytrace=False)
            self._checked = True
        return self.image

    def name(self, what):
        return "%s%s-pg%s-%s" % (PREFIX, what, self.major, uuid.uuid4().hex[:6])

    def volume(self, what):
        name = self.name(what)
        engine("volume", "create", "--label", RUN_LABEL, name)
        self.volumes.append(name)
        return name

    def init_dir(self):
        path = os.path.join(self.tmpdir, "initdb.d")
        if not os.path.isdir(path):
            os.makedirs(path)
            with open(os.path.join(path, "01-marker.sql"), "w") as handle:
                handle.write(INIT_SQL)
            with open(os.path.join(path, "02-append.sh"), "w") as handle:
                handle.write(INIT_SH)
            # The container reads it as the postgres user (uid 999).
            os.chmod(path, 0o755)
            for entry in os.listdir(path):
                os.chmod(os.path.join(path, entry), 0o644)
        return path

    def run(self, name, env=(), mounts=(), command=(), detach=True, timeout=120):
        args = ["run", "--name", name, "--label", RUN_LABEL, *RUN_ARGS]
        if detach:
            args.append("-d")
        for key, value in env:
            args += ["-e", "%s=%s" % (key, value)]
        for mount in mounts:
            args += ["-v", mount]
        self.containers.append(name)
        return engine(*args, self.require_image(), *command, check=detach, timeout=timeout)

    def cleanup(self):
        for name in reversed(self.containers):
            engine("rm", "-f", "-v", name, check=False)
        for name in self.volumes:
            engine("volume", "rm", "-f", name, check=False)

    # -- the shared, read-only container ----------------------------------
    def primary(self):
        if self._primary is None:
            pg = Pg(self, "main", user="nlb_owner", password="Corr3ct-h0rse'\"", database="nlb_app")
            pg.start(command=["-N", "77", "-c", "work_mem=7MB"], init=True)
            self._primary = pg
        return self._primary


class Pg:
    """One PostgreSQL container of a Stack."""

    def __init__(self, stack, what, user, password, database, volume=None):
        self.stack = stack
        self.user = user
        self.password = password
        self.database = database
        self.name = stack.name(what)
        self.volume = volume or stack.volume(what)

    def start(self, command=(), init=False, env=(), mounts=(), name=None):
        self.name = name or self.name
        mounts = ["%s:%s" % (self.volume, self.stack.mount), *mounts]
        if init:
            mounts.append("%s:/docker-entrypoint-initdb.d:ro" % self.stack.init_dir())
        base_env = [("POSTGRES_USER", self.user), ("POSTGRES_DB", self.database)]
        if self.password is not None and not any(item[0] == "POSTGRES_PASSWORD_FILE" for item in env):
            base_env.append(("POSTGRES_PASSWORD", self.password))
        self.stack.run(self.name, env=[*base_env, *env], mounts=mounts, command=command)
        self.wait_ready()
        return self

    def wait_ready(self, timeout=90):
        deadline = time.time() + timeout
        while time.time() < deadline:
            # TCP: the temporary init server listens on the unix socket only.
            probe = engine("exec", self.name, "pg_isready", "-q", "-h", "127.0.0.1",
                           "-U", self.user, "-d", self.database, check=False)
            if probe.returncode == 0 and self.tcp("SELECT 1", check=False).returncode == 0:
                return
            state = engine("inspect", "-f", "{{.State.Running}}", self.name, check=False).stdout.strip()
            if state == "false":
                break
            time.sleep(0.3)
        raise AssertionError("container %s did not become ready:\n%s" % (self.name, logs(self.name)[-3000:]))

    def tcp(self, sql, password=None, check=True, database=None):
        """psql over TCP with a password (PGPASSWORD in the exec environment)."""
        return engine(
            "exec", "-i", "-e", "PGPASSWORD=" + (self.password if password is None else password),
            self.name, "psql", "-X", "-qAt", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
            "-U", self.user, "-d", database or self.database, "-f", "-",
            input=sql, check=check)

    def query(self, sql):
        return self.tcp(sql).stdout.strip()

    def stop(self, timeout=30):
        started = time.monotonic()
        engine("stop", "-t", str(timeout), self.name, timeout=timeout + 30)
        return time.monotonic() - started

    def remove(self):
        engine("rm", "-f", "-v", self.name, check=False)


@pytest.fixture(scope="module", params=[15, 17, 18], ids=["pg15", "pg17", "pg18"])
def stack(request, tmp_path_factory):
    stack = Stack(request.param, str(tmp_path_factory.mktemp("pg%s" % request.param)))
    try:
        yield stack
    finally:
        stack.cleanup()


@pytest.fixture(scope="module", autouse=True)
def _sweep():
    """Belt and braces: whatever this run labelled goes, even after a crash in a test."""
    yield
    ids = engine("ps", "-aq", "--filter", "label=" + RUN_LABEL, check=False).stdout.split()
    if ids:
        engine("rm", "-f", "-v", *ids, check=False)
    vols = engine("volume", "ls", "-q", "--filter", "label=" + RUN_LABEL, check=False).stdout.split()
    if vols:
        engine("volume", "rm", "-f", *vols, check=False)


def test_image_configuration(stack):
    image = stack.require_image()
    fmt = "{{json .Config.Env}}|{{.Config.StopSignal}}|{{json .Config.Volumes}}|{{json .Config.ExposedPorts}}|" \
          '{{index .Config.Labels "org.nl-biomero.inputs"}}'
    env, stopsignal, volumes, ports, inputs = engine("image", "inspect", "-f", fmt, image).stdout.strip().split("|")
    assert "/usr/lib/postgresql/%s/bin:" % stack.major in env
    assert '"LANG=C.UTF-8"' in env
    assert stopsignal == "SIGINT"
    assert json.loads(volumes) == {stack.mount: {}}
    assert '"PGDATA=%s"' % stack.pgdata in env
    assert "5432/tcp" in ports
    assert len(inputs) == 64, "label org.nl-biomero.inputs (the rebuild check) is missing"


def test_client_and_server_binaries_callable_by_name(stack):
    pg = stack.primary()
    script = "for b in %s; do command -v $b || exit 1; done; pg_dump --version" % " ".join(PG_BINARIES)
    out = engine("exec", pg.name, "sh", "-c", script).stdout.split("\n")
    for binary, path in zip(PG_BINARIES, out):
        assert path == "/usr/lib/postgresql/%s/bin/%s" % (stack.major, binary)
    assert "(PostgreSQL) %s." % stack.major in out[len(PG_BINARIES)]


def test_user_database_and_password_honoured(stack):
    pg = stack.primary()
    assert pg.query("SELECT current_user, current_database(), rolsuper FROM pg_roles "
                    "WHERE rolname = current_user") == "nlb_owner|nlb_app|t"
    assert pg.query("SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid WHERE rolname = current_user") == "t"
    wrong = pg.tcp("SELECT 1", password="not-the-password", check=False)
    assert wrong.returncode != 0
    assert "password authentication failed" in wrong.stderr


def test_server_arguments_pass_through(stack):
    pg = stack.primary()
    assert pg.query("SHOW max_connections") == "77"
    assert pg.query("SHOW work_mem") == "7MB"
    assert pg.query("SHOW listen_addresses") == "*"


def test_server_is_pid1_and_runs_as_postgres(stack):
    pg = stack.primary()
    out = engine("exec", pg.name, "sh", "-c", "cat /proc/1/comm; stat -c '%U %u' /proc/1").stdout.split("\n")
    assert out[0] == "postgres"
    user, uid = out[1].split()
    assert user == "postgres" and uid != "0"


def test_utf8_and_non_ascii_data(stack):
    pg = stack.primary()
    assert pg.query("SHOW server_encoding") == "UTF8"
    text = "héllo wörld ✓ 日本語"
    assert pg.query("CREATE TEMP TABLE t(x text); INSERT INTO t VALUES ('%s'); SELECT x FROM t" % text) == text


def test_init_scripts_run_once_and_data_survive_recreation(stack):
    stack.require_image()
    pg = Pg(stack, "life", user="biomero", password="biomero-pw", database="biomero")
    pg.start(init=True)
    first_logs = logs(pg.name)
    assert "01-marker.sql" in first_logs and "02-append.sh" in first_logs
    pg.query("INSERT INTO init_marker (note) VALUES ('written by the test')")
    assert pg.stop() < 15
    pg.remove()

    # Same volume, same init scripts, new container: no second initialisation.
    pg.start(init=True, name=stack.name("life2"))
    assert "01-marker.sql" not in logs(pg.name)
    assert pg.query("SELECT count(*) FROM init_marker WHERE note = 'from 01-marker.sql'") == "1"
    assert pg.query("SELECT count(*) FROM init_marker WHERE note = 'written by the test'") == "1"
    ran = engine("exec", pg.name, "cat", stack.pgdata + "/init-sh.log").stdout.splitlines()
    assert ran == ["init.sh ran for biomero"]


def test_docker_stop_shuts_down_cleanly_and_quickly(stack):
    stack.require_image()
    pg = Pg(stack, "stop", user="postgres", password="pw", database="postgres")
    pg.start()
    pg.query("CREATE TABLE t AS SELECT generate_series(1, 10000) AS i")
    elapsed = pg.stop()
    assert elapsed < 8, "stop took %.1f s: the server did not get the stop signal" % elapsed
    state = engine("inspect", "-f", "{{.State.ExitCode}} {{.State.OOMKilled}}", pg.name).stdout.split()
    assert state == ["0", "false"]
    text = logs(pg.name)
    assert "database system is shut down" in text
    assert "fast shutdown request" in text  # STOPSIGNAL SIGINT


def test_password_file(stack):
    stack.require_image()
    secret = os.path.join(stack.tmpdir, "pg-password")
    with open(secret, "w") as handle:
        handle.write("from-a-file-pw\n")
    os.chmod(secret, 0o600)  # root-only on the host: the entrypoint reads it before dropping root
    pg = Pg(stack, "pwfile", user="omero", password="from-a-file-pw", database="omero")
    pg.start(env=[("POSTGRES_PASSWORD_FILE", "/run/secrets/pg-password")],
             mounts=["%s:/run/secrets/pg-password:ro" % secret])
    assert pg.query("SELECT current_user") == "omero"
    assert pg.tcp("SELECT 1", password="omero", check=False).returncode != 0


def test_refuses_to_initialise_without_password(stack):
    stack.require_image()
    name = stack.name("nopw")
    volume = stack.volume("nopw")
    proc = stack.run(name, env=[("POSTGRES_USER", "x")], mounts=["%s:%s" % (volume, stack.mount)], detach=False)
    assert proc.returncode != 0
    assert "POSTGRES_PASSWORD" in proc.stderr and "POSTGRES_HOST_AUTH_METHOD=trust" in proc.stderr
    listing = engine("run", "--rm", *RUN_ARGS, "--entrypoint", "ls", "-v", "%s:/d" % volume,
                     stack.image, "-A", "/d" + stack.pgdata[len(stack.mount):]).stdout.split()
    assert "PG_VERSION" not in listing


def test_log_directory_mounted_inside_pgdata(stack):
    """NL-BIOMERO's logging example: a host directory on $PGDATA/logs at first start."""
    stack.require_image()
    host_logs = os.path.join(stack.tmpdir, "logs")
    os.makedirs(host_logs)
    pg = Pg(stack, "logs", user="postgres", password="pw", database="postgres")
    pg.start(mounts=["%s:%s/logs" % (host_logs, stack.pgdata)],
             command=["postgres", "-c", "logging_collector=on", "-c", "log_directory=logs",
                      "-c", "log_filename=postgresql-%Y-%m-%d.log"])
    assert pg.query("SELECT 1") == "1"
    files = os.listdir(host_logs)
    assert any(f.startswith("postgresql-") for f in files), files


def test_18_refuses_an_old_layout_cluster(stack):
    """The image changed from 17 to 18 on the same volume: no new empty cluster hides the old one."""
    if stack.major < 18:
        pytest.skip("the 18 layout only")
    stack.require_image()
    old = stack.volume("old17")
    # A 17 cluster at the root of the volume (mounted on /var/lib/postgresql/data before 18).
    engine("run", "--rm", *RUN_ARGS, "--label", RUN_LABEL, "-v", "%s:/v" % old, "--entrypoint", "sh", stack.image,
           "-c", "echo 17 > /v/PG_VERSION && mkdir /v/base")
    proc = stack.run(stack.name("on-old"), env=[("POSTGRES_PASSWORD", "pw")], mounts=["%s:%s" % (old, stack.mount)],
                     detach=False)
    assert proc.returncode != 0
    assert "PostgreSQL data in: /var/lib/postgresql" in proc.stderr, proc.stderr
    # The old cluster is untouched (the entrypoint only made the empty 18/docker beside it, as postgres:18 does).
    listing = engine("run", "--rm", *RUN_ARGS, "--entrypoint", "sh", "-v", "%s:/d" % old, stack.image, "-c",
                     "cat /d/PG_VERSION; ls -A /d/base; ls -A /d%s" % stack.pgdata[len(stack.mount):]).stdout.split()
    assert listing == ["17"]
