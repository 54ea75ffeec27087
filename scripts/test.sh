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
# Two streams side by side (the tests mostly wait on containers): the tests that use what the whole
# host shares (the example inventory's fixed names, ports and paths, cron.d, the check that no
# restore-test throwaway is left anywhere) one after the other, and all the others.
host_wide=(test_backup_catalogue test_backup_cron test_backup_faults test_backup_lock test_backup_run
           test_example_inventory test_restore_lock)
host_args=() other_args=()
for name in "${host_wide[@]}"; do
    host_args+=("tests/integration/$name.py")
    other_args+=("--ignore=tests/integration/$name.py")
done
logs="$(mktemp -d)"
python -m pytest -q -p no:cacheprovider --durations=15 "${host_args[@]}" > "$logs/host-wide.log" 2>&1 &
host_pid=$!
other_rc=0
python -m pytest -q -p no:cacheprovider --durations=15 "${other_args[@]}" tests/integration > "$logs/others.log" 2>&1 || other_rc=$?
host_rc=0
wait "$host_pid" || host_rc=$?
echo "--- integration tests: host-wide stream"; cat "$logs/host-wide.log"
echo "--- integration tests: the other tests"; cat "$logs/others.log"
rm -rf "$logs"
[ "$host_rc" = 0 ] && [ "$other_rc" = 0 ] || { echo "integration tests failed (host-wide: $host_rc, others: $other_rc)"; exit 1; }

for scenario_dir in roles/*/molecule/*/; do
    [ -f "$scenario_dir/molecule.yml" ] || continue
    role_dir="${scenario_dir%/molecule/*}"
    scenario="$(basename "$scenario_dir")"
    echo "==> molecule test: $role_dir ($scenario)"
    (cd "$role_dir" && molecule test -s "$scenario")
done
echo "==> all tests passed"
