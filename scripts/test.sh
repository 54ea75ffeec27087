#!/usr/bin/env bash
# The whole test suite from a clean clone: setup (virtualenv, container engine,
# offline images), static checks, unit tests, integration tests against real
# PostgreSQL containers, Molecule scenarios. Exits non-zero on any failure.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$REPO_ROOT"

"$REPO_ROOT/scripts/setup.sh"

"$REPO_ROOT/scripts/sanity.sh"

echo "==> unit tests"
python -m pytest -q -p no:cacheprovider tests/unit

echo "==> integration tests (real engine: $NLB_ENGINE)"
# two workers: the tests mostly wait on containers; host-wide ones share a worker (tests/integration/conftest.py)
python -m pytest -q -p no:cacheprovider -n 2 --dist loadgroup --durations=25 tests/integration

for scenario_dir in roles/*/molecule/*/; do
    [ -f "$scenario_dir/molecule.yml" ] || continue
    role_dir="${scenario_dir%/molecule/*}"
    scenario="$(basename "$scenario_dir")"
    echo "==> molecule test: $role_dir ($scenario)"
    (cd "$role_dir" && molecule test -s "$scenario")
done
echo "==> all tests passed"
