#!/usr/bin/env bash
# The main job, on local containers: provision NL-BIOMERO's OMERO DB and
# BIOMERO DB, load a small sample, take verified backups of both, retry the
# failed BIOMERO.importer order, print a summary. Safe to re-run.
#
#   ./scripts/demo.sh          run the demo (sets up the machine first)
#   ./scripts/demo.sh clean    remove the demo's containers, volumes, network and files
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$REPO_ROOT"

case "${1:-run}" in
    run)
        "$REPO_ROOT/scripts/setup.sh"
        ansible-playbook -i localhost, playbooks/demo.yml
        ;;
    clean)
        link_collection
        ansible-playbook -i localhost, playbooks/demo_cleanup.yml
        ;;
    *)
        echo "usage: $0 [run|clean]" >&2
        exit 2
        ;;
esac
