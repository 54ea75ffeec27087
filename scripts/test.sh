#!/usr/bin/env bash
# The whole test suite from a clean clone: setup (virtualenv, container engine,
# offline images), static checks, unit tests, integration tests against real
# PostgreSQL containers, Molecule scenarios. Exits non-zero on any failure.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$REPO_ROOT"

"$REPO_ROOT/scripts/setup.sh"

echo "==> unit tests"
python -m pytest -q -p no:cacheprovider tests/unit

echo "==> integration tests and Molecule scenarios (real engine: $NLB_ENGINE), in three streams"
# The tests mostly wait on containers, so three streams run side by side:
# - host: the tests that use what the whole host shares (the example inventory's fixed names, ports and
#   paths, cron.d, the check that no restore-test throwaway is left anywhere; test stacks, credentials,
#   compose provisioning, off-host copies, the short-downtime backup and the logical upgrade, to balance the
#   streams), one after the other, then the scenarios of postgres_backup (restore-test throwaways too) and
#   postgres_container;
# - others: every other integration test, then the fleet scenario;
# - upgrade: the PostgreSQL 18 tests, the compose hand-back and addressing tests, then the other scenarios of postgres_upgrade
#   (their own nlbtest-* names; the podman one too, in podman).
host_wide=(test_backup_catalogue test_backup_cron test_backup_faults test_backup_lock test_backup_run
           test_example_inventory test_restore_lock test_stack test_credentials test_compose_provision
           test_offsite test_backup_snapshot_first test_upgrade_logical)
# Integration tests of the upgrade stream (beside its scenarios, to balance the streams).
upgrade_tests=(tests/integration/test_pg18.py tests/integration/test_compose.py tests/integration/test_compose_ops.py)
host_args=() other_args=()
for name in "${host_wide[@]}"; do
    host_args+=("tests/integration/$name.py")
    other_args+=("--ignore=tests/integration/$name.py")
done
for path in "${upgrade_tests[@]}"; do
    other_args+=("--ignore=$path")
done

molecule_scenarios() {   # scenario directories, run in order; stops at the first failure
    local scenario_dir role_dir
    for scenario_dir in "$@"; do
        role_dir="${scenario_dir%/molecule/*}"
        echo "==> molecule test: $role_dir ($(basename "$scenario_dir")) $(date -u +%T)"
        (cd "$role_dir" && molecule test -s "$(basename "$scenario_dir")") || return 1
    done
}
# Every scenario runs in exactly one stream (checked here, so a new scenario cannot be forgotten).
host_scenarios=(roles/postgres_backup/molecule/default roles/postgres_container/molecule/default)
others_scenarios=(roles/postgres_upgrade/molecule/fleet)
upgrade_scenarios=(roles/postgres_upgrade/molecule/interrupted roles/postgres_upgrade/molecule/podman roles/postgres_upgrade/molecule/upgrade)
listed="$(printf '%s\n' "${host_scenarios[@]}" "${others_scenarios[@]}" "${upgrade_scenarios[@]}" | sort)"
found="$(for f in roles/*/molecule/*/molecule.yml; do dirname "$f"; done | sort)"
[ "$listed" = "$found" ] || { echo "scripts/test.sh: Molecule scenarios not in a stream: $(comm -13 <(echo "$listed") <(echo "$found"))"; exit 1; }

logs="$(mktemp -d)"
started=$SECONDS
# Each stream runs all its parts (a failure does not hide the others) and fails if any part failed.
# The static checks (CPU only, a few minutes) run first in the host stream, the shortest one, while the
# other streams start their containers.
( rc=0
  "$REPO_ROOT/scripts/sanity.sh" || rc=1
  python -m pytest -q -p no:cacheprovider --durations=15 "${host_args[@]}" || rc=1
  molecule_scenarios "${host_scenarios[@]}" || rc=1
  echo "(stream took $((SECONDS - started)) s)"; exit $rc ) > "$logs/host.log" 2>&1 &
host_pid=$!
( rc=0
  python -m pytest -q -p no:cacheprovider --durations=5 "${upgrade_tests[@]}" || rc=1
  molecule_scenarios "${upgrade_scenarios[@]}" || rc=1
  echo "(stream took $((SECONDS - started)) s)"; exit $rc ) > "$logs/upgrade.log" 2>&1 &
upgrade_pid=$!
others_rc=0
( rc=0
  python -m pytest -q -p no:cacheprovider --durations=15 "${other_args[@]}" tests/integration || rc=1
  molecule_scenarios "${others_scenarios[@]}" || rc=1
  echo "(stream took $((SECONDS - started)) s)"; exit $rc ) > "$logs/others.log" 2>&1 || others_rc=$?
host_rc=0 upgrade_rc=0
wait "$host_pid" || host_rc=$?
wait "$upgrade_pid" || upgrade_rc=$?
for stream in host others upgrade; do
    echo "--- stream: $stream"
    cat "$logs/$stream.log"
done
rm -rf "$logs"
if [ "$host_rc" != 0 ] || [ "$others_rc" != 0 ] || [ "$upgrade_rc" != 0 ]; then
    echo "tests failed (host: $host_rc, others: $others_rc, upgrade: $upgrade_rc)"
    exit 1
fi
echo "==> all tests passed"
