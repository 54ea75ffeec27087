#!/usr/bin/env bash
# Build the fleet test host image offline: FROM the local PostgreSQL 17 image
# (Debian trixie, built by images/postgres/build.sh) plus docker.io,
# openssh-server and python3-docker from the Debian mirror of this machine's
# apt sources (read here, at run time; NLB_APT_MIRROR overrides it).
#
# usage: build.sh [tag]     (default: nlbtest-fleet/host:latest)
#
# Skipped when the tagged image carries the label org.nl-biomero.inputs with
# the hash of this directory's files, the base image's id and the mirror
# (NLB_FORCE_REBUILD=1 rebuilds anyway).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TAG="${1:-nlbtest-fleet/host:latest}"
BASE="${NLB_IMAGE_PG17:-nl-biomero/postgres:17}"
LABEL_KEY="org.nl-biomero.inputs"

# The URI of the first Debian main archive in the apt sources (one-line and
# deb822 formats; security/updates/backports suites skipped).
host_mirror() {
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        awk '$1 == "deb" { i = 2; if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
                           if ($(i + 1) !~ /-/ && $0 ~ / main( |$)/ && $i ~ /^(https?|ftp):/) { print $i; exit } }' "$f"
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk 'BEGIN { RS = ""; FS = "\n" }
             { u = s = c = ""
               for (k = 1; k <= NF; k++) {
                 if ($k ~ /^URIs:/) { u = $k; sub(/^URIs:[ \t]*/, "", u); sub(/[ \t].*/, "", u) }
                 if ($k ~ /^Suites:/) s = $k
                 if ($k ~ /^Components:/) c = $k }
               if (s ~ /Suites:[ \t]*[a-z]+([ \t]|$)/ && c ~ /[ \t]main([ \t]|$)/ && u ~ /^(https?|ftp):/) { print u; exit } }' "$f"
    done
}

docker image inspect "$BASE" >/dev/null 2>&1 \
    || { echo "missing $BASE: run images/postgres/build.sh 17 first" >&2; exit 1; }
MIRROR="${NLB_APT_MIRROR:-$(host_mirror | head -n 1)}"
[ -n "$MIRROR" ] || { echo "no Debian mirror in this machine's apt sources (set NLB_APT_MIRROR)" >&2; exit 1; }

INPUTS="$({ printf 'base=%s\nmirror=%s\n' "$(docker image inspect -f '{{.Id}}' "$BASE")" "$MIRROR"
            cat "$HERE/Dockerfile" "$HERE/host-init.sh" "$HERE/build.sh"; } | sha256sum | cut -d' ' -f1)"
CURRENT="$(docker image inspect -f "{{ index .Config.Labels \"$LABEL_KEY\" }}" "$TAG" 2>/dev/null || true)"
if [ "$CURRENT" = "$INPUTS" ] && [ "${NLB_FORCE_REBUILD:-0}" != 1 ]; then
    echo "$TAG is up to date"
    exit 0
fi
OLD_ID="$(docker image inspect -f '{{.Id}}' "$TAG" 2>/dev/null || true)"
docker build --network host --pull=false -t "$TAG" \
    --build-arg BASE_IMAGE="$BASE" --build-arg MIRROR="$MIRROR" --build-arg INPUTS="$INPUTS" "$HERE"
if [ -n "$OLD_ID" ] && [ "$OLD_ID" != "$(docker image inspect -f '{{.Id}}' "$TAG")" ]; then
    docker image rm "$OLD_ID" >/dev/null 2>&1 || true
fi
echo "built $TAG"
