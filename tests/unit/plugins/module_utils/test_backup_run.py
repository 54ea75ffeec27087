import datetime
import fcntl
import io
import os
import subprocess
import sys

import pytest

from ansible_collections.nl_biomero.database.plugins.module_utils import backup_run as br
from ansible_collections.nl_biomero.database.plugins.module_utils import backup_set as bs

UTC = datetime.timezone.utc


def base(**extra):
    config = {"backup_dir": "/var/backups/nlb", "databases": [{"container": "database", "database": "omero"}]}
    config.update(extra)
    return config


def test_normalize_defaults():
    config = br.normalize_config(base())
    entry = config["databases"][0]
    assert entry["name"] == "omero"
    assert entry["format"] == "custom" and entry["globals"] is True and entry["row_counts"] is True
    assert config["lock_file"] == "/var/backups/nlb/.nl-biomero-backup.lock"
    assert config["client_action"] == "stop" and config["retention"] is None
    assert br.expected_components(config) == ["omero", "omero.globals"]


@pytest.mark.parametrize("config, expect", [
    ({"databases": []}, "backup_dir is required"),
    (base(databases=[]), "nothing to back up"),
    (base(databases=[{"container": "c"}]), "database is required"),
    (base(databases=[{"container": "c", "database": "d", "pasword": "x"}]), "unknown key(s) pasword"),
    (base(databases=[{"container": "c", "database": "d", "password": "a", "password_env": "B"}]), "at most one"),
    (base(databases=[{"container": "a", "database": "omero"}, {"container": "b", "database": "omero"}]),
     "repeated: omero"),
    (base(paths=[{"path": "relative/dir"}]), "absolute host path"),
    (base(paths=[{"path": "/srv/x", "kind": "photos"}]), "kind 'photos'"),
    (base(paths=[{"path": "/srv/x", "name": "../x"}]), "not usable"),
    (base(client_action="kill"), "client_action"),
    (base(clients="omero"), "clients must be a list"),
    (base(notify_command="mail -s x root"), "argv list"),
    (base(retention={"keep_lots": 3}), "retention"),
    (base(surprise=1), "unknown key(s) surprise"),
    (base(container_paths=[{"container": "omero", "path": "OMERO"}]), "absolute path"),
    (base(container_commands=[{"name": "cfg", "container": "omero", "command": "omero config get"}]), "argv list"),
    (base(container_commands=[{"container": "omero", "command": ["true"]}]), "name and container are required"),
])
def test_normalize_refuses(config, expect):
    with pytest.raises(br.BackupRunError) as error:
        br.normalize_config(config)
    assert expect in str(error.value)


def test_normalize_same_database_twice_with_names_and_retention():
    config = br.normalize_config(base(
        databases=[{"container": "a", "database": "postgres", "name": "a"},
                   {"container": "b", "database": "postgres", "name": "b", "globals": False}],
        paths=[{"path": "/srv/metabase/", "kind": "metabase"}],
        retention={"keep_daily": 7, "prune_incomplete": True}))
    assert br.expected_components(config) == ["a", "a.globals", "b", "metabase"]
    assert config["retention"]["keep_daily"] == 7 and config["retention"]["prune_incomplete"] is True


def test_normalize_container_components_order():
    config = br.normalize_config(base(
        container_paths=[{"container": "omeroserver", "path": "/OMERO/"}],
        container_commands=[{"name": "omero.config", "container": "omeroserver", "command": ["omero", "config", "get"]}]))
    assert config["container_paths"][0]["name"] == "OMERO" and config["container_paths"][0]["kind"] == "omero_data"
    assert br.expected_components(config) == ["omero", "omero.globals", "omero.config", "OMERO"]


def test_resolve_password(tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("s3cr'et\n")
    assert br.resolve_password({"name": "x", "password": "inline"}) == "inline"
    assert br.resolve_password({"name": "x", "password_file": str(pw)}) == "s3cr'et"
    assert br.resolve_password({"name": "x", "password_env": "PW"}, environ={"PW": "e"}) == "e"
    assert br.resolve_password({"name": "x"}) is None
    with pytest.raises(br.BackupRunError, match="PW is not set"):
        br.resolve_password({"name": "x", "password_env": "PW"}, environ={})
    with pytest.raises(br.BackupRunError, match="cannot read password_file"):
        br.resolve_password({"name": "x", "password_file": str(tmp_path / "missing")})


def test_public_config_hides_passwords():
    config = br.normalize_config(base(databases=[{"container": "c", "database": "d", "password": "hunter2"}]))
    assert "hunter2" not in repr(br.public_config(config))


@pytest.mark.parametrize("recorded, restored, expect", [
    ({"public.a": 1}, {"public.a": 1}, []),
    ({"public.a": 1}, {"public.a": 2}, ["public.a: 2 rows restored, 1 recorded"]),
    ({"public.a": 1}, {}, ["public.a: missing after restore (recorded 1 rows)"]),
    ({}, {"public.b": 0}, ["public.b: not recorded at backup time (0 rows restored)"]),
])
def test_compare_counts(recorded, restored, expect):
    assert br.compare_counts(recorded, restored) == expect


def _make_set(directory, at, outcomes, restore=None):
    backup = bs.start_set(str(directory), now=at)
    for name, outcome in outcomes:
        if outcome == "ok":
            path = os.path.join(backup.path, name + ".dump")
            with open(path, "wb") as handle:
                handle.write(b"x" * 10)
            backup.record_component(name, "database", path, duration_s=2.0)
        else:
            backup.record_failure(name, "database", "container stopped")
    backup.finish(now=at + datetime.timedelta(seconds=30))
    if restore is not None:
        backup.set_restore_test({"time": "2026-03-15T04:00:00Z", "restorable": restore})
    return backup


def test_render_metrics(tmp_path):
    old = datetime.datetime(2026, 3, 14, 2, 0, tzinfo=UTC)
    new = datetime.datetime(2026, 3, 15, 2, 0, tzinfo=UTC)
    _make_set(tmp_path, old, [("omero", "ok"), ("biomero", "ok")], restore=True)
    _make_set(tmp_path, new, [("omero", "ok"), ("biomero", "failed")])
    sets = bs.list_backups(str(tmp_path))["sets"]
    text = br.render_metrics(sets, 'dir "q"', [("omero", "database"), ("biomero", "database"), ("meta", "metabase")])
    lines = text.splitlines()
    label = 'backup_dir="dir \\"q\\""'
    assert "nl_biomero_backup_last_run_success{%s} 0" % label in lines
    assert "nl_biomero_backup_last_run_timestamp_seconds{%s} %r" % (label, (new.timestamp() + 30)) in lines
    assert "nl_biomero_backup_last_success_timestamp_seconds{%s} %r" % (label, old.timestamp() + 30) in lines
    assert 'nl_biomero_backup_sets{%s,status="incomplete"} 1' % label in lines
    assert 'nl_biomero_backup_component_last_run_success{%s,component="omero",kind="database"} 1' % label in lines
    assert 'nl_biomero_backup_component_last_run_success{%s,component="biomero",kind="database"} 0' % label in lines
    assert ('nl_biomero_backup_component_last_success_timestamp_seconds{%s,component="biomero",kind="database"} %r'
            % (label, old.timestamp() + 30)) in lines
    assert 'nl_biomero_backup_component_last_run_success{%s,component="meta",kind="metabase"} 0' % label in lines
    assert ('nl_biomero_backup_component_last_success_timestamp_seconds{%s,component="meta",kind="metabase"} 0'
            % label) in lines
    assert 'nl_biomero_backup_restore_test_success{%s,set="2026-03-14T02-00-00Z"} 1' % label in lines
    # every metric has HELP and TYPE once, before its samples
    names = [line.split()[2] for line in lines if line.startswith("# TYPE")]
    assert len(names) == len(set(names))


def test_render_metrics_empty_catalogue():
    text = br.render_metrics([], "/b", [("omero", "database")])
    assert 'nl_biomero_backup_last_success_timestamp_seconds{backup_dir="/b"} 0' in text
    assert 'nl_biomero_backup_component_last_run_success{backup_dir="/b",component="omero",kind="database"} 0' in text
    assert "nl_biomero_backup_last_run_success{" not in text


def test_write_text_atomic(tmp_path):
    target = tmp_path / "sub" / "m.prom"
    br.write_text_atomic(str(target), "a 1\n")
    br.write_text_atomic(str(target), "a 2\n")
    assert target.read_text() == "a 2\n"
    assert oct(os.stat(str(target)).st_mode & 0o777) == "0o644"
    assert os.listdir(str(tmp_path / "sub")) == ["m.prom"]


def test_lock_is_exclusive_and_released(tmp_path):
    path = str(tmp_path / "lock")
    with br.RunLock(path):
        with pytest.raises(br.LockedError):
            with br.RunLock(path):
                pass
    with br.RunLock(path):
        pass
    with open(path) as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)


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
