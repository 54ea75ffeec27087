#!/usr/bin/env bash
# Build the PostgreSQL exporter image offline from Debian's package (no registry).
#
# usage: images/postgres-exporter/build.sh
#
# prometheus-postgres-exporter (0.11.1 in bookworm) is fetched with this host's
# own apt configuration (`apt-get download`, nothing installed), unpacked with
# dpkg-deb, and its one static binary copied onto nl-biomero/postgres:15 (built
# by images/postgres/build.sh, also bookworm), run as nobody. Image tag:
# ${NLB_IMAGE_EXPORTER:-nl-biomero/postgres-exporter:<package upstream version>}
# plus nl-biomero/postgres-exporter:latest.
#
# Environment:
#   ENGINE              docker (default) or podman
#   NLB_IMAGE_PG15      the base image (default nl-biomero/postgres:15)
#   NLB_FORCE_REBUILD=1 rebuild even when the inputs did not change
#
# Skipped (no download) when the tagged image carries the label
# org.nl-biomero.inputs with the hash of this script, the package version apt
# would fetch and the base image's ID.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ENGINE="${ENGINE:-docker}"
BASE="${NLB_IMAGE_PG15:-nl-biomero/postgres:15}"
PACKAGE=prometheus-postgres-exporter
LABEL_KEY="org.nl-biomero.inputs"

log() { printf '[build exporter] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

version="$(apt-cache policy "$PACKAGE" | awk '$1 == "Candidate:" { print $2 }')"
[ -n "$version" ] && [ "$version" != "(none)" ] \
    || die "apt knows no $PACKAGE (Debian bookworm or later in this host's apt sources?)"
upstream="${version#*:}"; upstream="${upstream%%-*}"
TAG="${NLB_IMAGE_EXPORTER:-nl-biomero/postgres-exporter:$upstream}"
base_id="$("$ENGINE" image inspect -f '{{.Id}}' "$BASE" 2>/dev/null)" \
    || die "base image $BASE is missing: run images/postgres/build.sh 15 first"
inputs="$( { printf 'package=%s %s\nbase=%s\n' "$PACKAGE" "$version" "$base_id"; cat "$HERE/build.sh"; } \
    | sha256sum | cut -d' ' -f1)"
have="$("$ENGINE" image inspect -f "{{index .Config.Labels \"$LABEL_KEY\"}}" "$TAG" 2>/dev/null || true)"
if [ "$have" = "$inputs" ] && [ "${NLB_FORCE_REBUILD:-0}" != 1 ]; then
    log "$TAG is up to date"
    exit 0
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/nlb-exporter.XXXXXX")"
trap 'rm -rf "$work"' EXIT
# _apt cannot write into a private mktemp directory: a world-readable subdir.
chmod 755 "$work"
(cd "$work" && apt-get download -q "$PACKAGE=$version" >/dev/null 2>"$work/apt.err") \
    || { cat "$work/apt.err" >&2; die "apt-get download $PACKAGE=$version failed"; }
dpkg-deb -x "$work"/"$PACKAGE"_*.deb "$work/root"
install -D -m 0755 "$work/root/usr/bin/$PACKAGE" "$work/context/postgres_exporter"
cat > "$work/context/Dockerfile" <<DOCKERFILE
FROM $BASE
COPY postgres_exporter /usr/local/bin/postgres_exporter
LABEL $LABEL_KEY="$inputs" org.nl-biomero.exporter-package="$PACKAGE $version"
# nobody: the exporter needs no file of its own, only its database login.
USER 65534:65534
EXPOSE 9187
ENTRYPOINT ["/usr/local/bin/postgres_exporter"]
CMD []
DOCKERFILE
log "building $TAG from $PACKAGE $version on $BASE"
"$ENGINE" build -q --pull=false -t "$TAG" -t nl-biomero/postgres-exporter:latest "$work/context" \
    >/dev/null 2>"$work/build.err" || { cat "$work/build.err" >&2; die "$ENGINE build failed"; }
log "built $TAG"
