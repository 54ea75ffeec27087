"""The shipped Prometheus alert rules: every metric they name exists (the
exporter's, from a real scrape of nl-biomero/postgres-exporter, and the backup
job's, from backup_metrics), and promtool checks and unit-tests them when
present (scripts/setup.sh unpacks it into .build/bin)."""

import os
import re
import shutil
import subprocess

import pytest
import yaml

from ansible_collections.nl_biomero.database.plugins.module_utils import backup_metrics

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
RULES_DIR = os.path.join(REPO, "roles", "postgres_container", "files", "prometheus")
RULES = os.path.join(RULES_DIR, "nl-biomero-database.rules.yml")
RULE_TESTS = os.path.join(RULES_DIR, "nl-biomero-database.tests.yml")
# Metric names of a scrape of the exporter with a logical slot (tests/integration/test_exporter.py; pg_settings_*
# reduced to the one the rules use).
EXPORTER_NAMES = os.path.join(HERE, "fixtures", "exporter_metric_names.txt")
WANTED_ALERTS = {"NlbDatabaseDown", "NlbDatabaseConnectionsHigh", "NlbDatabaseLongTransaction",
                 "NlbReplicationSlotInactive", "NlbReplicationSlotLag", "NlbBackupTooOld", "NlbBackupRunFailed",
                 "NlbRestoreTestFailing", "NlbBackupOffsiteCopyFailed"}


def rules():
    with open(RULES) as handle:
        return [rule for group in yaml.safe_load(handle)["groups"] for rule in group["rules"]]


def known_metrics():
    with open(EXPORTER_NAMES) as handle:
        names = set(line.strip() for line in handle if line.strip())
    names.update(backup_metrics.METRIC_PREFIX + name for name in backup_metrics._HELP)
    return names


def promtool():
    local = os.path.join(REPO, ".build", "bin", "promtool")
    return shutil.which("promtool") or (local if os.access(local, os.X_OK) else None)


def test_the_rules_cover_the_issue_and_carry_severity_and_summary():
    found = rules()
    assert set(rule["alert"] for rule in found) == WANTED_ALERTS
    for rule in found:
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


@pytest.mark.parametrize("rule", rules(), ids=lambda rule: rule["alert"])
def test_every_metric_a_rule_names_exists(rule):
    named = set(re.findall(r"\b((?:pg|nl_biomero_backup)_[a-z0-9_]+)\b", rule["expr"]))
    assert named, rule["expr"]
    assert named <= known_metrics(), sorted(named - known_metrics())


def test_promtool_checks_and_unit_tests_the_rules():
    tool = promtool()
    if tool is None:
        pytest.skip("promtool absent (scripts/setup.sh unpacks it from Debian's prometheus package)")
    for args in (["check", "rules", RULES], ["test", "rules", RULE_TESTS]):
        proc = subprocess.run([tool] + args, capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
