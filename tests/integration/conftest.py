"""pytest fixtures of the integration tests; the helpers live in harness.py (importable by tests and benchmarks)."""

import pytest

from harness import DbContainer, unique

# Tests that use what the whole host shares (the example inventory's fixed names, ports and system
# paths, cron.d, the global check that no restore-test throwaway is left): one xdist worker runs
# them one after the other (scripts/test.sh runs the rest beside them with --dist loadgroup).
HOST_WIDE = {
    "test_backup_catalogue.py", "test_backup_cron.py", "test_backup_faults.py", "test_backup_lock.py",
    "test_backup_run.py", "test_example_inventory.py", "test_restore_lock.py",
}


def pytest_collection_modifyitems(items):
    for item in items:
        if item.path.name in HOST_WIDE:
            item.add_marker(pytest.mark.xdist_group("host-wide"))


@pytest.fixture
def pg_factory():
    """Factory for PostgreSQL containers; every container made is removed afterwards."""
    made = []

    def make(major=17, prefix="nlbtest", **kwargs):
        container = DbContainer(major, unique(prefix), **kwargs)
        made.append(container)
        return container.start()

    yield make
    for container in made:
        container.remove()
