"""pytest fixtures of the integration tests; the helpers live in harness.py (importable by tests and benchmarks)."""

import pytest

from harness import DbContainer, unique


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
