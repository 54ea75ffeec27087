import datetime
import json
import math
import os

import pytest
from prometheus_client.parser import text_string_to_metric_families

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
    parse(text)
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
    assert "nl_biomero_backup_restore_test_success{%s} 1" % label in lines  # no set label: no series per night
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


# -- one truth, parsed by a real Prometheus parser -----------------------------------------------------

NOW = datetime.datetime(2026, 3, 20, 12, 0, tzinfo=UTC)


def parse(text):
    """{(name, labels without backup_dir as a sorted tuple): value} through prometheus_client's parser."""
    samples = {}
    for family in text_string_to_metric_families(text):
        assert family.type == "gauge" and family.documentation, family.name
        for sample in family.samples:
            labels = tuple(sorted((key, value) for key, value in sample.labels.items() if key != "backup_dir"))
            assert (sample.name, labels) not in samples, "a series twice: %s" % (sample.name,)
            samples[(sample.name, labels)] = sample.value
    return samples


def metric(samples, name, **labels):
    return samples[("nl_biomero_backup_" + name, tuple(sorted(labels.items())))]


def day(number, hour=2):
    return datetime.datetime(2026, 3, number, hour, 0, tzinfo=UTC)


def test_last_run_success_is_the_exit_status_of_the_run(tmp_path):
    """A complete set whose restore test failed: the run exited 1, the metric says 0."""
    made = _make_set(tmp_path, day(14), [("omero", "ok")], restore=False)
    sets = bs.list_backups(str(tmp_path))["sets"]
    record = bm.record_run(str(tmp_path), {"name": made.name, "rc": 1, "complete": True}, now=NOW)
    samples = parse(bm.render_metrics(sets, str(tmp_path), last_run=record, now=NOW))
    assert metric(samples, "last_run_success") == 0
    assert metric(samples, "restore_test_success") == 0
    assert metric(samples, "consecutive_incomplete_runs") == 0  # the set is complete
    assert metric(samples, "last_success_timestamp_seconds") == day(14).timestamp() + 30
    # the same catalogue read back from disk (pg_restore_test, --restore-test) tells the same
    assert parse(bm.metrics_text(str(tmp_path), now=NOW)) == samples
    ok = bm.record_run(str(tmp_path), {"name": made.name, "rc": 0, "complete": True}, now=NOW)
    assert metric(parse(bm.render_metrics(sets, str(tmp_path), last_run=ok, now=NOW)), "last_run_success") == 1


def test_a_run_that_did_not_record_itself_is_told_by_its_set(tmp_path):
    first = _make_set(tmp_path, day(14), [("omero", "ok")])
    record = bm.record_run(str(tmp_path), {"name": first.name, "rc": 0, "complete": True}, now=NOW)
    killed = bs.start_set(str(tmp_path), now=day(15))  # killed: never finished, then marked by recovery
    killed.record_failure("omero", "database", "killed")
    killed.finish(now=day(15, 3))
    samples = parse(bm.render_metrics(bs.list_backups(str(tmp_path))["sets"], str(tmp_path), last_run=record, now=NOW))
    assert metric(samples, "last_run_success") == 0
    assert metric(samples, "last_run_timestamp_seconds") == day(15, 3).timestamp()
    assert metric(samples, "consecutive_incomplete_runs") == 1


def test_consecutive_incomplete_runs_survive_retention(tmp_path):
    """Each failed night is counted although keep_incomplete deletes all but the newest failed set."""
    _make_set(tmp_path, day(1), [("omero", "ok")])
    counts = []
    for number in range(2, 7):
        made = _make_set(tmp_path, day(number), [("omero", "failed")])
        record = bm.record_run(str(tmp_path), {"name": made.name, "rc": 1, "complete": False}, now=NOW)
        bs.apply_retention(str(tmp_path), {"keep_last": 1, "keep_incomplete": 1}, now=NOW)
        counts.append(metric(parse(bm.metrics_text(str(tmp_path), now=NOW)), "consecutive_incomplete_runs"))
        assert record["consecutive_incomplete"] == counts[-1]
    assert counts == [1, 2, 3, 4, 5]
    assert len(os.listdir(str(tmp_path))) == 3  # the complete set, the newest failed one, the run record
    made = _make_set(tmp_path, day(7), [("omero", "ok")])
    bm.record_run(str(tmp_path), {"name": made.name, "rc": 0, "complete": True}, now=NOW)
    assert metric(parse(bm.metrics_text(str(tmp_path), now=NOW)), "consecutive_incomplete_runs") == 0


def test_first_run_counts_the_failed_sets_already_there(tmp_path):
    _make_set(tmp_path, day(1), [("omero", "ok")])
    _make_set(tmp_path, day(2), [("omero", "failed")])
    made = _make_set(tmp_path, day(3), [("omero", "failed")])
    assert bm.record_run(str(tmp_path), {"name": made.name, "rc": 1, "complete": False},
                         now=NOW)["consecutive_incomplete"] == 2


def test_a_set_from_the_future_counts_for_nothing(tmp_path):
    _make_set(tmp_path, datetime.datetime(2031, 1, 1, tzinfo=UTC), [("omero", "ok")], restore=True)
    made = _make_set(tmp_path, day(14), [("omero", "failed")])
    record = bm.record_run(str(tmp_path), {"name": made.name, "rc": 1, "complete": False}, now=NOW)
    samples = parse(bm.render_metrics(bs.list_backups(str(tmp_path))["sets"], str(tmp_path), last_run=record, now=NOW))
    assert metric(samples, "sets_dated_in_future") == 1
    assert metric(samples, "last_run_success") == 0
    assert metric(samples, "last_success_timestamp_seconds") == 0
    assert metric(samples, "component_last_run_success", component="omero", kind="database") == 0
    assert ("nl_biomero_backup_restore_test_success", ()) not in samples
    assert metric(samples, "consecutive_incomplete_runs") == 1


@pytest.mark.parametrize("content,expected", [
    (None, 0), ('{"clients": ["omeroserver", "metabase"], "set": "/b/s"}', 2), ('{"clients": ["omeroserver"]}', 1),
    ('{"clients": []}', 0), ("{}", 0), ('["omeroserver"]', None), ("not json", None),
])
def test_clients_left_stopped(tmp_path, content, expected):
    lock = str(tmp_path / ".nl-biomero-backup.lock")
    if content is not None:
        (tmp_path / ".nl-biomero-backup.lock.state").write_text(content)  # job_state's file
    assert bm.clients_left_stopped(lock) == expected
    value = metric(parse(bm.metrics_text(str(tmp_path), lock_file=lock, now=NOW)), "clients_left_stopped")
    assert math.isnan(value) if expected is None else value == expected


def test_several_components_and_hostile_labels_parse(tmp_path):
    """Every metric's samples together under one HELP/TYPE (the parser refuses interleaved families)."""
    _make_set(tmp_path, day(14), [('om"e\\ro\nx', "ok"), ("biomero", "failed")])
    text = bm.render_metrics(bs.list_backups(str(tmp_path))["sets"], 'dir "q"\\n', [("meta{x}", "metabase")], now=NOW)
    samples = parse(text)
    assert metric(samples, "component_last_run_success", component='om"e\\ro\nx', kind="database") == 1
    assert metric(samples, "component_last_run_success", component="biomero", kind="database") == 0
    assert metric(samples, "component_last_run_success", component="meta{x}", kind="metabase") == 0
    assert text.count("# TYPE nl_biomero_backup_component_last_run_success gauge") == 1


def test_metrics_file_is_never_written_through_a_link(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep me\n")
    directory = tmp_path / "textfile"
    directory.mkdir()
    target = directory / "m.prom"
    os.symlink(str(victim), str(target))
    bm.write_metrics_file(str(target), "a 1\n")
    assert victim.read_text() == "keep me\n"
    assert not os.path.islink(str(target)) and target.read_text() == "a 1\n"


def test_metrics_file_in_a_world_writable_directory_is_refused(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(str(shared), 0o1777)
    with pytest.raises(bm.MetricsError, match="metrics directory %s is writable by everyone \\(mode 1777\\)" % shared):
        bm.write_metrics_file(str(shared / "m.prom"), "a 1\n")
    assert os.listdir(str(shared)) == []


def test_write_metrics_records_the_run_and_logs_failures(tmp_path):
    (tmp_path / "b").mkdir()
    made = _make_set(tmp_path / "b", day(14), [("omero", "ok")])
    config = {"backup_dir": str(tmp_path / "b"), "metrics_file": str(tmp_path / "t" / "m.prom"),
              "lock_file": str(tmp_path / "b" / ".lock"), "databases": [{"name": "omero"}]}
    assert bm.write_metrics(config, run={"name": made.name, "rc": 1, "complete": True}) == config["metrics_file"]
    with open(os.path.join(config["backup_dir"], bm.LAST_RUN_NAME)) as handle:
        assert json.load(handle)["rc"] == 1
    assert metric(parse((tmp_path / "t" / "m.prom").read_text()), "last_run_success") == 0
    os.chmod(str(tmp_path / "t"), 0o777)
    logged = []
    assert bm.write_metrics(config, log=lambda text, error=False: logged.append(text)) is None
    assert "writable by everyone" in logged[0]
