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

# The zip bytecode cache (scripts/site/nlb_zip_bytecode_cache.py): every venv python loads it,
# and it acts only where NLB_ZIP_BYTECODE_CACHE is set (scripts/env.sh).
install_zip_bytecode_cache() {
    local site
    site="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    install -m 0644 "$REPO_ROOT/scripts/site/nlb_zip_bytecode_cache.py" "$site/"
    echo "import nlb_zip_bytecode_cache" > "$site/nlb_zip_bytecode_cache.pth"
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
    # runc too: crun (podman's default when installed) fails on these machines
    if ! command -v podman >/dev/null || ! command -v runc >/dev/null; then
        log "installing podman runc"
        apt_install podman runc
    fi
    podman_ulimits
    podman info >/dev/null 2>&1 || { echo "error: podman does not answer: podman info" >&2; exit 1; }
    log "podman answers"
}

# Podman gives every container default rlimits above this machine's (it withholds
# CAP_SYS_RESOURCE), so every `podman run` fails ("error setting rlimits"). A
# containers.conf drop-in sets defaults at or below the host's limits: the role's
# containers and the collection's throwaway containers then run unchanged.
podman_ulimits() {
    local conf=/etc/containers/containers.conf.d/nl-biomero-ulimits.conf nofile nproc
    nofile="$(ulimit -Sn)"; nproc="$(ulimit -Su)"
    [ "$nofile" = unlimited ] || [ "$nofile" -gt 4096 ] && nofile=4096
    [ "$nproc" = unlimited ] || [ "$nproc" -gt 4096 ] && nproc=4096
    mkdir -p "${conf%/*}"
    printf '# written by nl_biomero.database scripts/setup.sh\n[containers]\ndefault_ulimits = ["nofile=%s:%s", "nproc=%s:%s"]\n' \
        "$nofile" "$nofile" "$nproc" "$nproc" >"$conf.tmp"
    if ! cmp -s "$conf.tmp" "$conf"; then mv "$conf.tmp" "$conf"; log "podman default ulimits: nofile=$nofile nproc=$nproc"; else rm -f "$conf.tmp"; fi
}

# Copy an image docker built into podman (tests/integration/test_podman.py runs
# both engines). Skipped when podman holds the same image ID, i.e. the same
# configuration and inputs label. podman stores it as localhost/<name>, which
# the short name resolves to.
podman_image_from_docker() {
    local tag="$1" want have
    want="$(docker image inspect -f '{{.Id}}' "$tag")"
    have="$(podman image inspect -f '{{.Id}}' "$tag" 2>/dev/null || true)"
    if [ "sha256:${have#sha256:}" = "$want" ]; then
        log "podman has $tag"
        return
    fi
    log "copying $tag from docker into podman"
    docker save "$tag" | podman load -q >/dev/null
    podman tag "${want#sha256:}" "$tag"
    # the replaced image, now untagged (kept if a container still uses it)
    [ -z "$have" ] || podman image rm "$have" >/dev/null 2>&1 || true
}

# promtool (Debian's prometheus package) checks the shipped alert rules
# (tests/unit/test_alert_rules.py): only the binary, unpacked into .build/bin,
# so no Prometheus server is installed or started.
ensure_promtool() {
    local bin="$BUILD_DIR/bin/promtool" tmp
    if command -v promtool >/dev/null || [ -x "$bin" ]; then
        log "promtool present"
        return
    fi
    command -v apt-get >/dev/null || { log "no apt-get: promtool skipped (the rules test parses the file instead)"; return; }
    log "unpacking promtool from Debian's prometheus package"
    tmp="$(mktemp -d)" && chmod 755 "$tmp"
    (cd "$tmp" && apt-get download -q prometheus >/dev/null 2>&1 \
        && dpkg-deb --fsys-tarfile prometheus_*.deb | tar -x ./usr/bin/promtool) \
        && install -D -m 0755 "$tmp/usr/bin/promtool" "$bin" \
        || log "promtool could not be unpacked: skipped (the rules test parses the file instead)"
    rm -rf "$tmp"
}

setup_venv
install_zip_bytecode_cache
link_collection
case "$NLB_ENGINE" in
    docker) ensure_docker ;;
    podman) ensure_podman ;;
    *) echo "error: NLB_ENGINE='$NLB_ENGINE' is not supported; use docker or podman" >&2; exit 1 ;;
esac
command -v debootstrap >/dev/null || { log "installing debootstrap"; apt_install debootstrap; }
# A real cron daemon for tests/integration/test_backup_cron.py (the role's cron variant).
command -v cron >/dev/null || { log "installing cron"; apt_install cron; }
# age (encryption of off-host copies) and the ssh client (SSH targets), for the off-host copy tests.
command -v age >/dev/null && command -v ssh >/dev/null || { log "installing age openssh-client"; apt_install age openssh-client; }
# docker-compose 1.29.2 (Debian's package) for tests/integration/test_compose.py: a real compose project.
if [ "$NLB_ENGINE" = docker ] && ! command -v docker-compose >/dev/null; then
    log "installing docker-compose"
    apt_install docker-compose
fi
log "building PostgreSQL images (skipped when up to date)"
ENGINE="$NLB_ENGINE" "$REPO_ROOT/images/postgres/build.sh" 15 17 18
# The metrics exporter (Debian's prometheus-postgres-exporter on the :15 image) for test_exporter.py.
ENGINE="$NLB_ENGINE" "$REPO_ROOT/images/postgres-exporter/build.sh"
ensure_promtool
# Podman beside docker, for tests/integration/test_podman.py (NLB_SKIP_PODMAN=1: neither).
if [ "$NLB_ENGINE" = docker ] && [ "${NLB_SKIP_PODMAN:-0}" != 1 ]; then
    ensure_podman
    podman_image_from_docker "$NLB_IMAGE_PG17"
    # the upgrade on podman (tests/integration/test_podman_roles.py) goes 15 -> 17
    podman_image_from_docker "$NLB_IMAGE_PG15"
fi
