#!/usr/bin/env bash
# Run the dump/restore benchmark with the project's virtualenv and this
# checkout importable as nl_biomero.database (see scripts/env.sh).
#   benchmarks/run.sh [--quick] [--size-gb N] [--runs N] [--no-docs] [--json FILE]
set -euo pipefail
# shellcheck source=../scripts/env.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/scripts/env.sh"
if [ ! -x "$VENV/bin/ansible-playbook" ]; then
    echo "no virtualenv with ansible at $VENV: run scripts/setup.sh first (or set VENV)" >&2
    exit 1
fi
link_collection
exec "$VENV/bin/python" "$REPO_ROOT/benchmarks/dump_restore.py" "$@"
