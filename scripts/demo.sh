#!/usr/bin/env bash
# The main job, on local containers: provision NL-BIOMERO's OMERO DB and
# BIOMERO DB, load a small sample, take verified backups of both, retry the
# failed BIOMERO.importer order, print a summary. Safe to re-run.
#
#   ./scripts/demo.sh          run the demo (sets up the machine first)
#   ./scripts/demo.sh compose  the same job on a docker-compose deployment: a project laid out like
#                              NL-BIOMERO's is brought up, taken over by the collection, backed up and
#                              restore-tested (playbooks/demo_compose.yml)
#   ./scripts/demo.sh clean    remove both demos' containers, volumes, networks and files
# Extra arguments after run|compose go to ansible-playbook (e.g. -e demo_dir=/tmp/demo).
# NLB_SKIP_SETUP=1: the machine is set up already (scripts/setup.sh ran; the tests set it).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$REPO_ROOT"

setup() {
    if [ "${NLB_SKIP_SETUP:-0}" = 1 ]; then
        link_collection
    else
        "$REPO_ROOT/scripts/setup.sh"
    fi
}

case "${1:-run}" in
    run)
        setup
        ansible-playbook -i localhost, playbooks/demo.yml "${@:2}"
        ;;
    compose)
        setup
        ansible-playbook -i localhost, playbooks/demo_compose.yml "${@:2}"
        ;;
    clean)
        link_collection
        ansible-playbook -i localhost, playbooks/demo_cleanup.yml
        ansible-playbook -i localhost, playbooks/demo_compose_cleanup.yml
        ;;
    *)
        echo "usage: $0 [run|compose|clean]" >&2
        exit 2
        ;;
esac
