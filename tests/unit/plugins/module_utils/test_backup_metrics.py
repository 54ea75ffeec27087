import datetime
import os

from ansible_collections.nl_biomero.database.plugins.module_utils import backup_metrics as bm
from ansible_collections.nl_biomero.database.plugins.module_utils import backup_set as bs

UTC = datetime.timezone.utc


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
    text = bm.render_metrics(sets, 'dir "q"', [("omero", "database"), ("biomero", "database"), ("meta", "metabase")])
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
    text = bm.render_metrics([], "/b", [("omero", "database")])
    assert 'nl_biomero_backup_last_success_timestamp_seconds{backup_dir="/b"} 0' in text
    assert 'nl_biomero_backup_component_last_run_success{backup_dir="/b",component="omero",kind="database"} 0' in text
    assert "nl_biomero_backup_last_run_success{" not in text


def test_write_metrics_file(tmp_path):
    target = tmp_path / "sub" / "m.prom"
    bm.write_metrics_file(str(target), "a 1\n")
    bm.write_metrics_file(str(target), "a 2\n")
    assert target.read_text() == "a 2\n"
    assert oct(os.stat(str(target)).st_mode & 0o777) == "0o644"
    assert os.listdir(str(tmp_path / "sub")) == ["m.prom"]
