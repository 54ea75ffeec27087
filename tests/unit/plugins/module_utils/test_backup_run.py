import io
import json
import os
import subprocess
import sys

import pytest

from ansible_collections.nl_biomero.database.plugins.module_utils import backup_run as br, job_recovery
from ansible_collections.nl_biomero.database.plugins.module_utils.job_lock import JobLock


def test_locked_job_exits_75_naming_the_holder_and_touches_nothing(tmp_path):
    backup_dir = tmp_path / "b"
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"backup_dir": str(backup_dir), "engine": "docker", "clients": ["omero"],
                                "databases": [{"container": "c", "database": "d"}]}))
    with JobLock(str(backup_dir / ".nl-biomero-backup.lock"), "upgrade of db-a"):
        for extra in ([], ["--recover"], ["--restore-test"]):
            stream = io.StringIO()
            assert br.main(["--config", str(path)] + extra, stream=stream) == br.EXIT_LOCKED
            assert "not starting: the lock %s is held by upgrade of db-a (pid %d" % (
                backup_dir / ".nl-biomero-backup.lock", os.getpid()) in stream.getvalue()
    assert sorted(os.listdir(str(backup_dir))) == [".nl-biomero-backup.lock"]


def test_notify_gets_outcome_in_environment(tmp_path):
    out = tmp_path / "out"
    log = br.Log()
    rc = br.run_notify([sys.executable, "-c", "import os,sys; open(sys.argv[1], 'w').write("
                        "os.environ['NLB_BACKUP_STATUS'] + ' ' + os.environ['NLB_BACKUP_ERROR'])", str(out)],
                       "failed", "/b/s", "omero: boom", log)
    assert rc == 0 and out.read_text() == "failed omero: boom"
    assert br.run_notify(["/nonexistent/notify"], "failed", None, "x", log) is None
    assert "notify command /nonexistent/notify failed" in log.lines[-1]


def test_log_writes_stream():
    stream = io.StringIO()
    log = br.Log(stream)
    log("fine")
    log("broken", error=True)
    assert stream.getvalue() == "fine\nERROR: broken\n"
    assert log.lines == ["fine", "broken"]


def test_cli_bad_config_exits_2(tmp_path):
    path = tmp_path / "c.json"
    path.write_text("{not json")
    stream = io.StringIO()
    assert br.main(["--config", str(path)], stream=stream) == br.EXIT_CONFIG
    assert "cannot read the configuration" in stream.getvalue()


def test_cli_check_prints_plan(tmp_path, capsys):
    path = tmp_path / "c.json"
    path.write_text('{"backup_dir": "%s", "databases": [{"container": "c", "database": "d", "password": "pw"}]}'
                    % (tmp_path / "b"))
    assert br.main(["--config", str(path), "--check"], stream=io.StringIO()) == 0
    out = capsys.readouterr().out
    assert '"d.globals"' in out and "pw" not in out.replace("password", "")
    assert not (tmp_path / "b").exists()


def test_module_runs_without_ansible_installed():
    """The scheduled job imports only the standard library and the collection's module_utils."""
    code = ("import sys, builtins; real = builtins.__import__\n"
            "def guard(name, *a, **k):\n"
            "    if name == 'ansible' or name.startswith('ansible.'): raise ImportError(name)\n"
            "    return real(name, *a, **k)\n"
            "builtins.__import__ = guard\n"
            "import ansible_collections.nl_biomero.database.plugins.module_utils.backup_run as m; print(m.EXIT_LOCKED)")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    assert proc.stdout.strip() == "75", proc.stderr


class ShellEngine(br.ContainerEngine):
    """A ContainerEngine whose ``cp`` is a shell command: streams without a container engine."""

    def __init__(self, script):
        br.ContainerEngine.__init__(self, "docker")
        self.script = script

    def cp_out_argv(self, container, path):
        return ["sh", "-c", self.script]


def test_copy_out_gz_streams_through_engine_stream(tmp_path):
    import gzip
    dest = str(tmp_path / "OMERO.tar.gz")
    br._copy_out_gz(ShellEngine("printf 'tar bytes'"), "omero", "/OMERO", dest)
    with gzip.open(dest) as handle:
        assert handle.read() == b"tar bytes"
    assert oct(os.stat(dest).st_mode & 0o777) == "0o600"
    assert os.listdir(str(tmp_path)) == ["OMERO.tar.gz"]


def test_copy_out_gz_failure_leaves_nothing(tmp_path):
    dest = str(tmp_path / "OMERO.tar.gz")
    with pytest.raises(br.BackupRunError, match="docker cp omero:/OMERO failed \\(exit 3\\): no such path"):
        br._copy_out_gz(ShellEngine("printf partial; echo no such path >&2; exit 3"), "omero", "/OMERO", dest)
    assert os.listdir(str(tmp_path)) == []


def test_tar_path(tmp_path):
    import tarfile
    source = tmp_path / "metabase"
    source.mkdir()
    (source / "h2.db").write_text("h2")
    dest = str(tmp_path / "out" / "metabase.tar.gz")
    os.mkdir(str(tmp_path / "out"))
    br._tar_path(str(source) + "/", dest)
    with tarfile.open(dest) as tar:
        assert tar.extractfile("metabase/h2.db").read() == b"h2"
    assert os.listdir(str(tmp_path / "out")) == ["metabase.tar.gz"]


def _config(tmp_path, **extra):
    from ansible_collections.nl_biomero.database.plugins.module_utils.backup_config import normalize_config
    os.chmod(str(tmp_path), 0o700)
    raw = {"backup_dir": str(tmp_path / "b"), "engine": "docker",
           "databases": [{"container": "c", "database": "d", "password": "pw"}]}
    raw.update(extra)
    os.makedirs(raw["backup_dir"], 0o700, exist_ok=True)
    return normalize_config(raw)


def test_recover_finishes_the_dead_runs_set_and_forgets_it(tmp_path):
    from ansible_collections.nl_biomero.database.plugins.module_utils.backup_set import BackupSet, list_backups
    from ansible_collections.nl_biomero.database.plugins.module_utils.job_state import RunState, state_path
    config = _config(tmp_path)
    log = br.Log()
    assert job_recovery.recover(config, log) is None  # nothing left: nothing done
    dead = BackupSet.start(config["backup_dir"])
    dead.record_failure("d", "database", "boom")
    leftover = os.path.join(dead.path, ".d.2026.dump.tmp-0123456789ab")
    open(leftover, "w").close()
    state = RunState(state_path(config["lock_file"]))
    state.begin(dead.path, "stop")
    recovered = job_recovery.recover(config, log)
    assert recovered["set"] == dead.path and recovered["errors"] == [] and recovered["clients_started"] == []
    assert recovered["message"].startswith("a run (pid %d, started " % os.getpid())
    entry = list_backups(config["backup_dir"])["sets"][0]
    assert entry["status"] == "incomplete" and "ended without finishing (killed?)" in entry["error"]
    assert "d.globals: not recorded" in entry["error"]
    assert not os.path.exists(leftover) and not os.path.exists(state_path(config["lock_file"]))
    assert job_recovery.recover(config, log) is None


def test_recover_moves_an_unusable_state_file_aside(tmp_path):
    from ansible_collections.nl_biomero.database.plugins.module_utils.job_state import state_path
    config = _config(tmp_path)
    target = tmp_path / "elsewhere"
    target.write_text("{}")
    os.symlink(str(target), state_path(config["lock_file"]))
    recovered = job_recovery.recover(config, br.Log())
    assert "a symlink is refused" in recovered["errors"][0] and "moved it to" in recovered["message"]
    assert not os.path.lexists(state_path(config["lock_file"])) and target.read_text() == "{}"
    assert job_recovery.recover(config, br.Log()) is None


def test_timeouts_are_filled_and_checked(tmp_path):
    from ansible_collections.nl_biomero.database.plugins.module_utils.backup_config import BackupRunError
    config = _config(tmp_path, timeouts={"dump": "30"})
    assert config["timeouts"] == {"engine_call": 120, "dump": 30, "copy": 43200, "restore_test": 43200,
                                  "lock_wait": 600, "run": 72000}
    assert br.BackupRun(config).plan()["timeouts"]["dump"] == 30
    with pytest.raises(BackupRunError, match="timeouts: unknown key"):
        _config(tmp_path, timeouts={"dupm": 30})
    with pytest.raises(BackupRunError, match="timeouts.run must be at least 1 second, got 0"):
        _config(tmp_path, timeouts={"run": 0})
