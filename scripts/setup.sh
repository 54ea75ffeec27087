#!/usr/bin/env bash
# Prepare a machine for the demo and the tests: Python virtualenv, a running
# container engine, the offline-built PostgreSQL images. Safe to re-run.
set -euo pipefail
source "$(dirname "$0")/env.sh"

log() { printf '==> %s\n' "$*"; }

apt_install() {
    if ! command -v apt-get >/dev/null || [ "$(id -u)" != 0 ]; then
        echo "error: '$*' is missing and cannot be installed automatically (needs root and apt-get); install it and re-run" >&2
        exit 1
    fi
    if [ ! -f "$BUILD_DIR/.apt-updated" ]; then
        apt-get update -qq
        mkdir -p "$BUILD_DIR" && touch "$BUILD_DIR/.apt-updated"
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

setup_venv() {
    local stamp="$VENV/.requirements.sha256" want
    want="$(sha256sum "$REPO_ROOT/requirements.txt" | cut -d' ' -f1)"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        log "virtualenv up to date ($VENV)"
        return
    fi
    log "creating virtualenv $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip >/dev/null
    "$VENV/bin/pip" install -q -r "$REPO_ROOT/requirements.txt"
    echo "$want" > "$stamp"
}

ensure_docker() {
    if docker info >/dev/null 2>&1; then
        log "docker engine answers"
        return
    fi
    if ! command -v dockerd >/dev/null; then
        log "installing docker.io"
        apt_install docker.io
    fi
    if ! docker info >/dev/null 2>&1; then
        log "starting dockerd in the background (log: /var/log/nl-biomero-dockerd.log)"
        nohup dockerd >/var/log/nl-biomero-dockerd.log 2>&1 &
        for _ in $(seq 1 60); do
            docker info >/dev/null 2>&1 && break
            sleep 1
        done
    fi
    docker info >/dev/null 2>&1 || { echo "error: dockerd did not answer within 60 s; see /var/log/nl-biomero-dockerd.log" >&2; exit 1; }
    log "docker engine answers"
}

ensure_podman() {
    command -v podman >/dev/null || apt_install podman runc
    podman info >/dev/null 2>&1 || { echo "error: podman does not answer: podman info" >&2; exit 1; }
    log "podman answers"
}

setup_venv
link_collection
case "$NLB_ENGINE" in
    docker) ensure_docker ;;
    podman) ensure_podman ;;
    *) echo "error: NLB_ENGINE='$NLB_ENGINE' is not supported; use docker or podman" >&2; exit 1 ;;
esac
command -v debootstrap >/dev/null || { log "installing debootstrap"; apt_install debootstrap; }
log "building PostgreSQL images (skipped when up to date)"
ENGINE="$NLB_ENGINE" "$REPO_ROOT/images/postgres/build.sh" 15 17
