import pytest

from ansible_collections.nl_biomero.database.plugins.module_utils import restore_test as rt


@pytest.mark.parametrize("recorded, restored, expect", [
    ({"public.a": 1}, {"public.a": 1}, []),
    ({"public.a": 1}, {"public.a": 2}, ["public.a: 2 rows restored, 1 recorded"]),
    ({"public.a": 1}, {}, ["public.a: missing after restore (recorded 1 rows)"]),
    ({}, {"public.b": 0}, ["public.b: not recorded at backup time (0 rows restored)"]),
])
def test_compare_counts(recorded, restored, expect):
    assert rt.compare_counts(recorded, restored) == expect
