import pytest

from ansible_collections.nl_biomero.database.plugins.module_utils.engine import PODMAN_STDIN_DRAIN, ContainerEngine, EngineError, detect_engine


def test_detect_engine_auto_prefers_docker():
    assert detect_engine("auto", which=lambda n: "/usr/bin/" + n) == "docker"
    assert detect_engine("auto", which=lambda n: "/usr/bin/podman" if n == "podman" else None) == "podman"


@pytest.mark.parametrize("preferred,message", [
    ("lxc", "engine 'lxc' is not supported; use one of: auto, docker, podman"),
    ("podman", "no container engine found on PATH \\(looked for: podman\\)"),
])
def test_detect_engine_errors(preferred, message):
    with pytest.raises(EngineError, match=message):
        detect_engine(preferred, which=lambda n: None)


def test_exec_argv_keeps_secrets_out_of_argv():
    argv = ContainerEngine("docker").exec_argv("db; rm -rf /", ["pg_dump", "x"], env_names=["PGPASSWORD"], interactive=True)
    assert argv == ["docker", "exec", "-i", "-e", "PGPASSWORD", "db; rm -rf /", "pg_dump", "x"]


def test_exec_argv_podman_interactive_drains_stdin():
    """podman 4.3 loses exec -i output when the process leaves stdin unread: the wrapper reads the rest."""
    engine = ContainerEngine("podman")
    argv = engine.exec_argv("db", ["pg_restore", "--list"], env_names=["PGPASSWORD"], interactive=True)
    assert argv == ["podman", "exec", "-i", "-e", "PGPASSWORD", "db", "sh", "-c", PODMAN_STDIN_DRAIN, "sh", "pg_restore", "--list"]
    assert engine.exec_argv("db", ["pg_isready"]) == ["podman", "exec", "db", "pg_isready"]
    assert "-t" not in argv


# -- streaming: real child processes (sh, cat), no engine needed ------------------

import hashlib  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

from ansible_collections.nl_biomero.database.plugins.module_utils.engine import pipe, stream  # noqa: E402
from ansible_collections.nl_biomero.database.plugins.module_utils import labels  # noqa: E402


def test_stream_to_path_hashes_what_it_writes(tmp_path):
    dest = str(tmp_path / "out.bin")
    result = stream(["sh", "-c", "head -c 3000000 /dev/urandom; echo warn >&2"], stdout=dest)
    with open(dest, "rb") as handle:
        data = handle.read()
    assert result.rc == 0 and result.bytes == len(data) == 3000000
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert result.stderr == "warn"
    assert oct(os.stat(dest).st_mode & 0o777) == "0o600"


def test_stream_refuses_an_existing_output(tmp_path):
    dest = tmp_path / "exists"
    dest.write_text("keep")
    with pytest.raises(FileExistsError):
        stream(["echo", "x"], stdout=str(dest))
    assert dest.read_text() == "keep"


def test_stream_stdin_path_and_reader(tmp_path):
    src = tmp_path / "in"
    src.write_bytes(b"a\nb\nc\n")
    result = stream(["cat"], stdin=str(src), stdout=lambda pipe_: sum(1 for _line in pipe_))
    assert (result.rc, result.output) == (0, 3)


def test_stream_writer_and_reader_together_do_not_deadlock():
    """More than a pipe buffer each way: the writer runs in a thread while stdout is read."""
    payload = b"x" * (8 * 1024 * 1024)
    result = stream(["cat"], stdin=lambda sink: sink.write(payload), stdout=lambda out: len(out.read()))
    assert (result.rc, result.output) == (0, len(payload))


def test_stream_writer_broken_pipe_is_not_an_error():
    result = stream(["sh", "-c", "head -c 10 >/dev/null; exit 3"], stdin=lambda sink: sink.write(b"y" * 10000000))
    assert result.rc == 3


def test_stream_timeout_kills_the_child(tmp_path):
    marker = tmp_path / "pid"
    started = time.monotonic()
    with pytest.raises(EngineError, match="did not finish within 0.5 s"):
        stream(["sh", "-c", "echo $$ > %s; exec sleep 30" % marker], timeout=0.5)
    assert time.monotonic() - started < 10
    _assert_gone(int(marker.read_text()))


def test_stream_reader_error_kills_the_child(tmp_path):
    marker = tmp_path / "pid"

    def reader(out):
        out.read(1)
        raise ValueError("bad stream")

    with pytest.raises(ValueError, match="bad stream"):
        stream(["sh", "-c", "echo $$ > %s; echo x; exec sleep 30" % marker], stdout=reader)
    _assert_gone(int(marker.read_text()))


def test_stream_interrupted_by_a_signal_kills_the_child(tmp_path):
    """A signal handler that raises (as the backup job's does for SIGTERM) unwinds without a leftover child."""
    marker = tmp_path / "pid"

    class Stop(BaseException):
        pass

    def handler(_signum, _frame):
        raise Stop()

    previous = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.5)
        with pytest.raises(Stop):
            stream(["sh", "-c", "echo $$ > %s; exec sleep 30" % marker], stdout=lambda out: out.read())
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    _assert_gone(int(marker.read_text()))


def test_pipe_relays_and_counts():
    first, second = pipe(["sh", "-c", "head -c 5000000 /dev/zero"], ["sh", "-c", "wc -c >&2"])
    assert (first.rc, first.bytes, second.rc) == (0, 5000000, 0)
    assert second.stderr == "5000000"


def test_pipe_second_failing_early_stops_the_first():
    first, second = pipe(["sh", "-c", "exec cat /dev/zero"], ["sh", "-c", "head -c 100 >/dev/null; echo no >&2; exit 4"],
                         timeout=20)
    assert second.rc == 4 and second.stderr == "no"
    assert first.rc != 0  # killed by SIGPIPE, not left running


def test_pipe_timeout_kills_both(tmp_path):
    marker = tmp_path / "pid"
    with pytest.raises(EngineError, match="did not finish"):
        pipe(["sh", "-c", "echo $$ > %s; exec sleep 30" % marker], ["cat"], timeout=0.5)
    _assert_gone(int(marker.read_text()))


def _assert_gone(pid):
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise AssertionError("child %d is still running" % pid)


def test_threads_do_not_pile_up():
    before = threading.active_count()
    for _round in range(5):
        stream(["cat"], stdin=lambda sink: sink.write(b"z"), stdout=lambda out: out.read())
    assert threading.active_count() <= before + 1


# -- command lines ----------------------------------------------------------------

def test_throwaway_argv_never_pulls_and_is_labelled():
    engine = ContainerEngine("docker")
    argv = engine.throwaway_argv("img:17", ["postgres", "--describe-config"], purpose="settings-check",
                                 env_names=["POSTGRES_PASSWORD"], volumes=["v:/data"], entrypoint="postgres",
                                 user="postgres")
    assert argv == ["docker", "run", "--pull", "never", "--label", labels.THROWAWAY + "=settings-check", "--rm",
                    "--network", "none", "--user", "postgres", "-e", "POSTGRES_PASSWORD", "-v", "v:/data",
                    "--entrypoint", "postgres", "img:17", "postgres", "--describe-config"]
    detached = ContainerEngine("podman").throwaway_argv("img", name="t1", detach=True, network=None)
    assert detached == ["podman", "run", "--pull", "never", "--label", labels.THROWAWAY + "=throwaway", "-d",
                        "--name", "t1", "img"]


def test_cp_argv():
    engine = ContainerEngine("docker")
    assert engine.cp_out_argv("c", "/x/y") == ["docker", "cp", "c:/x/y", "-"]
    assert engine.cp_in_argv("c", "/tmp/d") == ["docker", "cp", "-", "c:/tmp/d"]


def test_engine_call_timeout_names_the_command(monkeypatch):
    engine = ContainerEngine("docker", timeout=0.3)
    monkeypatch.setattr(engine, "binary", "sleep")  # a stand-in CLI that hangs: the timeout is what is tested
    with pytest.raises(EngineError, match="did not finish within 0.3 s"):
        engine.call("5")


# -- sessions (a real sh reading lines) ------------------------------------------------

from ansible_collections.nl_biomero.database.plugins.module_utils.engine import Session  # noqa: E402

_ECHO_LOOP = 'while read -r line; do case "$line" in q) exit 0;; boom) echo bad >&2; exit 5;; esac; echo "got $line"; echo END; done'


def test_session_exchanges_in_order():
    session = Session(["sh", "-c", _ECHO_LOOP])
    assert session.exchange("a\n", "END") == ["got a"]
    assert session.exchange("b\n", "END", timeout=10) == ["got b"]
    assert session.close() == 0


def test_session_child_ending_early_is_an_error_with_its_stderr():
    session = Session(["sh", "-c", _ECHO_LOOP])
    with pytest.raises(EngineError, match="ended early: bad"):
        session.exchange("boom\n", "END")
    assert session.proc.poll() == 5


def test_session_timeout_kills_the_child():
    session = Session(["sh", "-c", "read -r x; exec sleep 30"])
    with pytest.raises(EngineError, match="did not answer within 0.5 s"):
        session.exchange("x\n", "END", timeout=0.5)
    assert session.proc.poll() is not None
