import pytest

from ansible_collections.nl_biomero.database.plugins.module_utils.errors import NlbError, run_module
from ansible_collections.nl_biomero.database.plugins.module_utils import (
    backup_run, backup_set, dump, engine, importer, pg_connect, pg_container, pg_tools, restore, retention, tuning,
    upgrade)


class Exited(Exception):
    pass


class FakeModule:
    """Records what a module would report (the AnsibleModule exit interface)."""

    def __init__(self):
        self.warnings = []
        self.outcome = None

    def warn(self, text):
        self.warnings.append(text)

    def exit_json(self, **result):
        self.outcome = ("exit", result)
        raise Exited()

    def fail_json(self, **result):
        self.outcome = ("fail", result)
        raise Exited()


def _run(call):
    module = FakeModule()
    with pytest.raises(Exited):
        run_module(module, call)
    return module


def test_success_moves_warnings_to_module_warn():
    module = _run(lambda: {"changed": True, "warnings": ["w1", "w2"], "path": "/x"})
    assert module.outcome == ("exit", {"changed": True, "path": "/x"})
    assert module.warnings == ["w1", "w2"]


def test_error_result_travels_with_the_failure():
    def call():
        raise NlbError("it broke", result={"warnings": ["w"], "actions": ["a"], "msg": "shadowed"})
    module = _run(call)
    assert module.outcome == ("fail", {"msg": "it broke", "actions": ["a"]})
    assert module.warnings == ["w"]


def test_os_error_fails_cleanly():
    def call():
        raise OSError(28, "No space left on device")
    module = _run(call)
    assert module.outcome[0] == "fail" and "No space left" in module.outcome[1]["msg"]


def test_result_marked_failed_fails_with_everything():
    module = _run(lambda: {"failed": True, "msg": "set incomplete", "set": "/b/s"})
    assert module.outcome == ("fail", {"msg": "set incomplete", "set": "/b/s"})


@pytest.mark.parametrize("cls", [
    backup_run.BackupRunError, backup_set.BackupSetError, dump.DumpError, engine.EngineError, importer.ImporterError,
    pg_connect.PgConnectError, pg_container.PgError, pg_tools.PgToolError, restore.RestoreError,
    retention.RetentionError, tuning.SettingsError, upgrade.UpgradeError,
])
def test_every_core_error_has_the_one_base(cls):
    assert issubclass(cls, NlbError)
    assert cls("x", result={"a": 1}).result == {"a": 1}
