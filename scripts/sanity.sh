#!/usr/bin/env bash
# Static checks: ansible-test sanity (in its own venv, offline) and
# ansible-lint's production profile. Expects scripts/setup.sh to have run.
set -euo pipefail
source "$(dirname "$0")/env.sh"

# ansible-test must run from a path ending in ansible_collections/<ns>/<name>,
# resolves symlinks and skips files git ignores, so it gets a copy of the
# tracked and new files outside this checkout. Its tests/output (venvs) is kept
# between runs for speed.
tree="${NLB_SANITY_DIR:-/var/tmp/nl_biomero-sanity}/ansible_collections/nl_biomero/database"
mkdir -p "$tree"
find "$tree" -mindepth 1 -maxdepth 1 ! -name tests -exec rm -rf {} +
find "$tree/tests" -mindepth 1 -maxdepth 1 ! -name output -exec rm -rf {} + 2>/dev/null || true
(cd "$REPO_ROOT" && git ls-files -co --exclude-standard -z | xargs -0 -r tar -cf - --no-recursion) | tar -xf - -C "$tree"
# The collections galaxy.yml depends on, beside ours (ansible-test looks for them there): the pinned
# copies the `ansible` package carries (e.g. the doc fragment community.postgresql.postgres).
site_collections="$(python -c 'import ansible_collections.community.postgresql as m, os; print(os.path.dirname(os.path.dirname(list(m.__path__)[0])))')"
for dep in community/postgresql community/docker; do
    rm -rf "$tree/../../$dep" && mkdir -p "$tree/../../$(dirname "$dep")"
    cp -r "$site_collections/$dep" "$tree/../../$dep"
done

# Offline pip bootstrap for ansible-test's managed venv (see scripts/pip_bootstrap.py).
pip_version="$(python - <<'PY'
import re, ansible_test._internal.python_requirements as r, inspect
print(re.search(r"pip='([0-9.]+)'", inspect.getsource(r.get_venv_packages)).group(1))
PY
)"
cache="$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"
mkdir -p "$(dirname "$cache")"
cp "$REPO_ROOT/scripts/pip_bootstrap.py" "$cache"

echo "==> ansible-test sanity"
(cd "$tree" && ansible-test sanity --venv --requirements --python "$(python -c 'import sys; print("%d.%d" % sys.version_info[:2])')" --color no)

echo "==> ansible-lint (production profile)"
(cd "$REPO_ROOT" && ansible-lint --profile production --offline)

echo "==> ansible-galaxy collection build, install and ansible-doc of every module"
dist="$BUILD_DIR/dist"
rm -rf "$dist" && mkdir -p "$dist/collections"
(cd "$tree" && ansible-galaxy collection build --force --output-path "$dist" >/dev/null)
ansible-galaxy collection install --offline --no-deps --force -p "$dist/collections" "$dist"/nl_biomero-database-*.tar.gz >/dev/null
for module in "$REPO_ROOT"/plugins/modules/*.py; do
    name="nl_biomero.database.$(basename "$module" .py)"
    ANSIBLE_COLLECTIONS_PATH="$dist/collections" ansible-doc "$name" | grep -q "^EXAMPLES" \
        || { echo "error: ansible-doc $name shows no EXAMPLES from the built collection" >&2; exit 1; }
done
echo "built $(basename "$dist"/nl_biomero-database-*.tar.gz) and documented $(ls "$REPO_ROOT"/plugins/modules/*.py | wc -l) modules"
