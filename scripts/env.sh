# shellcheck shell=bash
# Common environment for the project's scripts: sourced, never run.
# Puts the virtualenv first on PATH and makes this checkout importable as the
# collection nl_biomero.database (through a symlink under .build/).
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$REPO_ROOT/.venv}"
BUILD_DIR="$REPO_ROOT/.build"
COLLECTIONS_DIR="$BUILD_DIR/collections"
export REPO_ROOT VENV BUILD_DIR COLLECTIONS_DIR
export PATH="$VENV/bin:$PATH"
export ANSIBLE_COLLECTIONS_PATH="$COLLECTIONS_DIR"
export ANSIBLE_PYTHON_INTERPRETER="$VENV/bin/python"
# Compiled module code kept between Ansible tasks (scripts/site/nlb_zip_bytecode_cache.py).
export NLB_ZIP_BYTECODE_CACHE="$BUILD_DIR/zip-bytecode"
export ANSIBLE_NOCOLOR=1
export ANSIBLE_FORCE_COLOR=0
export ANSIBLE_RETRY_FILES_ENABLED=0
export ANSIBLE_LOCALHOST_WARNING=0
export ANSIBLE_INVENTORY_UNPARSED_WARNING=0
# The container engine the tests and demo use: docker (default) or podman.
export NLB_ENGINE="${NLB_ENGINE:-docker}"
# Images built offline by images/postgres/build.sh.
export NLB_IMAGE_PG15="${NLB_IMAGE_PG15:-nl-biomero/postgres:15}"
export NLB_IMAGE_PG17="${NLB_IMAGE_PG17:-nl-biomero/postgres:17}"
export NLB_IMAGE_PG18="${NLB_IMAGE_PG18:-nl-biomero/postgres:18}"

link_collection() {
    mkdir -p "$COLLECTIONS_DIR/ansible_collections/nl_biomero"
    ln -sfn "$REPO_ROOT" "$COLLECTIONS_DIR/ansible_collections/nl_biomero/database"
}
