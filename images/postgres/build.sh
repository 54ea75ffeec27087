#!/usr/bin/env bash
# Build the PostgreSQL images offline, from Debian packages only (no registry).
#
# usage: images/postgres/build.sh [15|17|18 ...]   (default: 15 17 18)
#
#   15 -> Debian bookworm + postgresql-15 -> ${NLB_IMAGE_PG15:-nl-biomero/postgres:15}
#   17 -> Debian trixie   + postgresql-17 -> ${NLB_IMAGE_PG17:-nl-biomero/postgres:17}
#   18 -> Debian forky    + postgresql-18 -> ${NLB_IMAGE_PG18:-nl-biomero/postgres:18}
#
# From 18 on the images keep the official image's 18 layout: the volume is
# /var/lib/postgresql and PGDATA=/var/lib/postgresql/<major>/docker.
#
# Environment:
#   ENGINE              docker (default) or podman: the CLI that imports the image
#   NLB_APT_MIRROR      Debian archive URI to debootstrap from; default: the Debian
#                       main archive of this host's apt sources, else debootstrap's
#                       own default
#   NLB_FORCE_REBUILD=1 rebuild even when the image's inputs did not change
#   NLB_BUILD_TMPDIR    where the temporary rootfs goes (default /var/tmp)
#
# A rebuild is skipped when the tagged image carries the label
# org.nl-biomero.inputs with the hash of this script, the entrypoint, the
# package list, the suite, the mirror and the architecture. Security updates
# in the archive do not change that hash: use NLB_FORCE_REBUILD=1 to pick
# them up.
#
# Needs root (debootstrap, chroot) and debootstrap. The builds run in parallel.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ENGINE="${ENGINE:-docker}"
LABEL_KEY="org.nl-biomero.inputs"
# Packages on top of debootstrap's minbase. locales: only to compile
# en_US.UTF-8 (the official image's default locale) so that dumps taken from
# it restore with --create; the image itself runs with LANG=C.UTF-8 (built
# into glibc, no locales needed). xz-utils, zstd: for *.sql.xz / *.sql.zst
# init scripts, as in the official image.
EXTRA_PACKAGES="locales,xz-utils,zstd"

log() { printf '%s %s\n' "[build${1:+ pg$1}]" "${*:2}" >&2; }
die() { log "" "error: $*"; exit 1; }

suite_for() {
    case "$1" in
        15) echo bookworm ;;
        17) echo trixie ;;
        18) echo forky ;;
        *) return 1 ;;
    esac
}

tag_for() {
    case "$1" in
        15) echo "${NLB_IMAGE_PG15:-nl-biomero/postgres:15}" ;;
        17) echo "${NLB_IMAGE_PG17:-nl-biomero/postgres:17}" ;;
        18) echo "${NLB_IMAGE_PG18:-nl-biomero/postgres:18}" ;;
    esac
}

# The official image's data layout (tuning.data_layout is the same rule):
# "<volume> <PGDATA>".
layout_for() {
    if [ "$1" -ge 18 ]; then
        echo "/var/lib/postgresql /var/lib/postgresql/$1/docker"
    else
        echo "/var/lib/postgresql/data /var/lib/postgresql/data"
    fi
}

# debootstrap script of a suite: an older debootstrap (bookworm's) has no
# script for newer suites; sid's works for them (same layout of the archive).
script_for() {
    local dir=/usr/share/debootstrap/scripts
    if [ -e "$dir/$1" ]; then echo "$dir/$1"; else echo "$dir/sid"; fi
}

# Print the URI of the Debian main archive from the host's apt sources
# (one-line *.list files and deb822 *.sources files). Security, updates,
# backports and third-party repositories are skipped: an entry qualifies when
# it is a "deb" entry of a plain Debian suite name with the main component.
host_mirror() {
    local files=()
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] && files+=("$f")
    done
    local suites='^(buster|bullseye|bookworm|trixie|forky|duke|sid|oldoldstable|oldstable|stable|testing|unstable)$'
    local uri=""
    if [ "${#files[@]}" -gt 0 ]; then
        uri="$(awk -v re="$suites" '
            $1 == "deb" {
                i = 2
                if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
                u = $i; s = $(i + 1); main = 0
                for (j = i + 2; j <= NF; j++) if ($j == "main") main = 1
                if (s ~ re && main && u ~ /^(https?|ftp|file):/) { print u; exit }
            }' "${files[@]}")"
    fi
    if [ -z "$uri" ]; then
        for f in /etc/apt/sources.list.d/*.sources; do
            [ -f "$f" ] || continue
            uri="$(awk -v re="$suites" '
                function flush() {
                    if (types ~ /(^|[ \t])deb([ \t]|$)/ && enabled !~ /^(no|false)$/ && comps ~ /(^|[ \t])main([ \t]|$)/) {
                        ns = split(suitesv, S, /[ \t]+/); nu = split(uris, U, /[ \t]+/)
                        for (a = 1; a <= ns; a++) if (S[a] ~ re)
                            for (b = 1; b <= nu; b++) if (U[b] ~ /^(https?|ftp|file):/) { print U[b]; found = 1; exit }
                    }
                    types = uris = suitesv = comps = enabled = ""
                }
                /^[ \t]*#/ { next }
                /^[ \t]*$/ { flush(); next }
                {
                    key = tolower($1); sub(/:$/, "", key); val = $0
                    sub(/^[^:]*:[ \t]*/, "", val); sub(/[ \t]+$/, "", val)
                    if (key == "types") types = val
                    else if (key == "uris") uris = val
                    else if (key == "suites") suitesv = val
                    else if (key == "components") comps = val
                    else if (key == "enabled") enabled = tolower(val)
                }
                END { if (!found) flush() }' "$f")"
            [ -n "$uri" ] && break
        done
    fi
    printf '%s\n' "$uri"
}

inputs_hash() {
    local major="$1" suite="$2" mirror="$3"
    {
        printf 'major=%s\nsuite=%s\nmirror=%s\narch=%s\npackages=%s\n' \
            "$major" "$suite" "$mirror" "$ARCH" "postgresql-$major $EXTRA_PACKAGES"
        cat "$HERE/build.sh" "$HERE/docker-entrypoint.sh"
    } | sha256sum | cut -d' ' -f1
}

# Runs inside the new rootfs (chroot) after debootstrap.
configure_rootfs() {
    cat <<'EOF'
set -eu
major="$1" volume="$2" pgdata="$3"
export LC_ALL=C DEBIAN_FRONTEND=noninteractive
# Debian's postgresql-common creates a "main" cluster on install: drop it, the
# entrypoint creates the cluster in $PGDATA on first start.
rm -rf "/etc/postgresql/$major" "/var/lib/postgresql/$major"
# ssl-cert generated a snakeoil key pair at install: a private key shared by
# every copy of the image is worse than none (ssl stays off, as in initdb's default).
rm -f /etc/ssl/private/ssl-cert-snakeoil.key /etc/ssl/certs/ssl-cert-snakeoil.pem
find /etc/ssl/certs -xtype l -delete
# uid/gid 999 like the official image, so volumes move between the two
# without a chown.
# Newer suites (forky) may give 999 to a system group or user first: it moves
# to a free id below 999.
free_id() { awk -F: '{ used[$3] = 1 } END { for (i = 998; i > 100; i--) if (!(i in used)) { print i; exit } }' "$1"; }
other="$(getent group 999 | cut -d: -f1)"
if [ -n "$other" ] && [ "$other" != postgres ]; then
    new="$(free_id /etc/group)"
    groupmod -g "$new" "$other"
    find / -xdev -gid 999 -exec chgrp -h "$new" '{}' +
fi
other="$(getent passwd 999 | cut -d: -f1)"
if [ -n "$other" ] && [ "$other" != postgres ]; then
    new="$(free_id /etc/passwd)"
    usermod -u "$new" "$other"
    find / -xdev -uid 999 -exec chown -h "$new" '{}' +
fi
old_uid="$(id -u postgres)"; old_gid="$(id -g postgres)"
if [ "$old_gid" != 999 ]; then
    groupmod -g 999 postgres
    find / -xdev -gid "$old_gid" -exec chgrp -h 999 '{}' +
fi
if [ "$old_uid" != 999 ]; then
    usermod -u 999 postgres
    find / -xdev -uid "$old_uid" -exec chown -h 999 '{}' +
fi
# New clusters listen on all addresses (the official image does the same).
sample="/usr/share/postgresql/$major/postgresql.conf.sample"
sed -ri "s!^#?(listen_addresses)\s*=\s*\S+.*!\1 = '*'!" "$sample"
grep -qF "listen_addresses = '*'" "$sample"
# en_US.UTF-8 only; then drop the locale sources (about 15 MB).
sed -i 's/^# *\(en_US.UTF-8 UTF-8\)/\1/' /etc/locale.gen
locale-gen >/dev/null
rm -rf /usr/share/i18n/charmaps/* /usr/share/i18n/locales/*
mkdir -p /var/run/postgresql "$volume" "$pgdata" /docker-entrypoint-initdb.d
chown postgres:postgres /var/run/postgresql /var/lib/postgresql "$volume" "$pgdata"
chmod 3777 /var/run/postgresql
chmod 700 "$pgdata"
# 18+: /var/lib/postgresql/data points at the volume, as in the official image
# (a volume mounted there by the old habit is not left beside the cluster).
if [ "$pgdata" != /var/lib/postgresql/data ]; then ln -sT . /var/lib/postgresql/data; fi
# Size: no docs, man pages, translations or apt caches.
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/debconf/*-old \
    /var/lib/dpkg/*-old /var/log/*.log /var/log/apt/* \
    /usr/share/doc/* /usr/share/man/* /usr/share/info/* /usr/share/lintian \
    /usr/share/locale/*
# Keep later apt-get installs from bringing them back.
mkdir -p /etc/dpkg/dpkg.cfg.d
cat > /etc/dpkg/dpkg.cfg.d/01-nl-biomero-slim <<'CFG'
path-exclude /usr/share/doc/*
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
CFG
EOF
}

# All mounts below a directory, deepest first (debootstrap mounts proc/sys
# in the target and may leave them behind when it fails).
mounts_below() {
    awk -v d="$1/" 'index($2 "/", d) == 1 { print $2 }' /proc/self/mounts | sort -r
}

build_one() {
    local major="$1" suite="$2" tag="$3" hash="$4"
    local dir="$WORK/pg$major" rootfs="$WORK/pg$major/rootfs"
    local volume pgdata script
    read -r volume pgdata <<<"$(layout_for "$major")"
    script="$(script_for "$suite")"
    local mirror_arg=()
    [ "$MIRROR" = default ] || mirror_arg=("$MIRROR" "$script")
    if [ "$MIRROR" = default ] && [ "$script" != "/usr/share/debootstrap/scripts/$suite" ]; then
        log "$major" "this debootstrap has no '$suite' script: set NLB_APT_MIRROR (then sid's script is used)"
        return 1
    fi
    mkdir -p "$dir"
    local t0=$SECONDS
    log "$major" "debootstrap $suite (minbase + postgresql-$major) from ${MIRROR}"
    if ! debootstrap --variant=minbase --components=main \
        --include="postgresql-$major,$EXTRA_PACKAGES" \
        "$suite" "$rootfs" "${mirror_arg[@]}" >"$dir/debootstrap.log" 2>&1; then
        tail -n 30 "$dir/debootstrap.log" >&2
        [ -f "$rootfs/debootstrap/debootstrap.log" ] && tail -n 30 "$rootfs/debootstrap/debootstrap.log" >&2
        log "$major" "debootstrap failed"
        return 1
    fi
    log "$major" "debootstrap done in $((SECONDS - t0)) s"
    configure_rootfs | chroot "$rootfs" /bin/sh -s "$major" "$volume" "$pgdata"
    install -m 0755 "$HERE/docker-entrypoint.sh" "$rootfs/usr/local/bin/docker-entrypoint.sh"
    local m
    for m in $(mounts_below "$rootfs"); do umount -l "$m"; done
    # The engine provides /dev, /proc and /sys at run time; /tmp starts empty.
    find "$rootfs/dev" "$rootfs/proc" "$rootfs/sys" "$rootfs/tmp" \
        -mindepth 1 -maxdepth 1 -exec rm -rf --one-file-system '{}' +
    chmod 1777 "$rootfs/tmp"

    local bindir="/usr/lib/postgresql/$major/bin"
    [ -x "$rootfs$bindir/postgres" ] || { log "$major" "no $bindir/postgres in rootfs"; return 1; }
    tar -C "$rootfs" --numeric-owner --xattrs -cf "$dir/rootfs.tar" .
    # Two steps: `import --change` cannot set STOPSIGNAL on docker 20.10, so
    # the rootfs goes in under a temporary tag and the image configuration
    # comes from a Dockerfile built FROM it (the legacy builder, BuildKit and
    # podman/buildah all take a local FROM image without pulling).
    local tmp_tag="nlb-build-tmp/postgres:$major-${WORK##*.}"
    "$ENGINE" import "$dir/rootfs.tar" "$tmp_tag" >/dev/null
    rm -f "$dir/rootfs.tar"
    mkdir -p "$dir/context"
    cat >"$dir/context/Dockerfile" <<DOCKERFILE
FROM $tmp_tag
ENV PATH=$bindir:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    LANG=C.UTF-8 \\
    PG_MAJOR=$major \\
    PGDATA=$pgdata
LABEL $LABEL_KEY="$hash" \\
      org.opencontainers.image.title="nl-biomero postgres $major" \\
      org.opencontainers.image.description="PostgreSQL $major on Debian $suite, built offline by images/postgres/build.sh"
VOLUME $volume
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
CMD ["postgres"]
DOCKERFILE
    local old_id
    old_id="$("$ENGINE" image inspect -f '{{.Id}}' "$tag" 2>/dev/null || true)"
    local build_rc=0
    "$ENGINE" build -t "$tag" "$dir/context" >"$dir/build.log" 2>&1 || build_rc=$?
    "$ENGINE" image rm "$tmp_tag" >/dev/null 2>&1 || true
    if [ "$build_rc" -ne 0 ]; then
        cat "$dir/build.log" >&2
        log "$major" "$ENGINE build failed"
        return 1
    fi
    # The image we replaced is now untagged: remove it unless a container uses it.
    if [ -n "$old_id" ] && [ "$old_id" != "$("$ENGINE" image inspect -f '{{.Id}}' "$tag")" ]; then
        "$ENGINE" image rm "$old_id" >/dev/null 2>&1 || true
    fi
    log "$major" "built $tag in $((SECONDS - t0)) s ($("$ENGINE" image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1 / 1e6}'))"
}

# Stop a build job and everything it started (debootstrap, dpkg, tar, ...)
# before its directory is removed.
kill_tree() {
    local child
    for child in $(pgrep -P "$1" 2>/dev/null || true); do kill_tree "$child"; done
    kill "$1" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    [ -z "${1:-}" ] || rc="$1"
    trap - EXIT INT TERM
    local pid
    for pid in "${PIDS[@]}"; do kill_tree "$pid"; done
    wait 2>/dev/null || true
    if [ -n "${WORK:-}" ]; then
        # Temporary tags of an interrupted build (normally removed already).
        local tmp
        for tmp in $("$ENGINE" images --format '{{.Repository}}:{{.Tag}}' 2>/dev/null | grep -F -- "-${WORK##*.}" || true); do
            case "$tmp" in *nlb-build-tmp/postgres:*) "$ENGINE" image rm "$tmp" >/dev/null 2>&1 || true ;; esac
        done
    fi
    if [ -n "${WORK:-}" ] && [ -d "$WORK" ]; then
        local m
        for m in $(mounts_below "$WORK"); do umount -l "$m" 2>/dev/null || true; done
        rm -rf --one-file-system "$WORK"
    fi
    exit "$rc"
}

main() {
    local majors=("$@")
    [ "${#majors[@]}" -gt 0 ] || majors=(15 17 18)
    local major
    for major in "${majors[@]}"; do
        suite_for "$major" >/dev/null || die "unsupported major '$major' (use 15, 17 and/or 18)"
    done
    [ -f "$HERE/docker-entrypoint.sh" ] || die "missing $HERE/docker-entrypoint.sh"
    command -v "$ENGINE" >/dev/null || die "container engine '$ENGINE' not found (set ENGINE=docker|podman)"
    "$ENGINE" info >/dev/null 2>&1 || die "'$ENGINE info' failed: is the engine running?"

    ARCH="$(dpkg --print-architecture)"
    MIRROR="${NLB_APT_MIRROR:-$(host_mirror)}"
    MIRROR="${MIRROR:-default}"

    PIDS=()
    WORK=""
    trap cleanup EXIT
    trap 'cleanup 130' INT
    trap 'cleanup 143' TERM

    local todo=() suite tag hash current
    for major in "${majors[@]}"; do
        suite="$(suite_for "$major")"
        tag="$(tag_for "$major")"
        hash="$(inputs_hash "$major" "$suite" "$MIRROR")"
        current="$("$ENGINE" image inspect -f "{{ index .Config.Labels \"$LABEL_KEY\" }}" "$tag" 2>/dev/null || true)"
        if [ "$current" = "$hash" ] && [ "${NLB_FORCE_REBUILD:-0}" != 1 ]; then
            log "$major" "$tag is up to date"
        else
            todo+=("$major")
        fi
    done
    [ "${#todo[@]}" -gt 0 ] || return 0

    [ "$(id -u)" = 0 ] || die "building needs root (debootstrap, chroot)"
    command -v debootstrap >/dev/null || die "debootstrap not found (apt-get install debootstrap)"
    WORK="$(mktemp -d "${NLB_BUILD_TMPDIR:-/var/tmp}/nlb-pg-build.XXXXXX")"

    # Separate targets, separate package caches: the builds share nothing
    # and run in parallel.
    local rc=0 i
    for major in "${todo[@]}"; do
        build_one "$major" "$(suite_for "$major")" "$(tag_for "$major")" \
            "$(inputs_hash "$major" "$(suite_for "$major")" "$MIRROR")" &
        PIDS+=("$!")
    done
    for i in "${!PIDS[@]}"; do
        if ! wait "${PIDS[$i]}"; then
            log "${todo[$i]}" "build FAILED"
            rc=1
        fi
    done
    PIDS=()
    return "$rc"
}

main "$@"
