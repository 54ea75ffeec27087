#!/usr/bin/env bash
# Entrypoint of the offline-built nl-biomero/postgres images. Honours the
# official postgres image's contract:
#
#   POSTGRES_PASSWORD / POSTGRES_PASSWORD_FILE   superuser password (required
#                                 for initialisation unless
#                                 POSTGRES_HOST_AUTH_METHOD=trust)
#   POSTGRES_USER (postgres)      superuser name
#   POSTGRES_DB (= user)          database created on initialisation
#   POSTGRES_INITDB_ARGS          extra initdb arguments (shell words)
#   POSTGRES_INITDB_WALDIR        put pg_wal elsewhere
#   POSTGRES_HOST_AUTH_METHOD     pg_hba.conf method for TCP (scram-sha-256)
#   PGDATA (/var/lib/postgresql/data; from 18 on /var/lib/postgresql/<major>/docker,
#          the image's volume being /var/lib/postgresql, as the official 18 image)
#   /docker-entrypoint-initdb.d/*.sql, *.sql.gz, *.sql.xz, *.sql.zst, *.sh
#                                 run once, in sorted order, on initialisation
#   `docker run IMAGE -c key=value -N 500`  arguments go to postgres
#
# The POSTGRES_* variables with a _FILE variant are read only when the cluster
# is initialised; afterwards the cluster in PGDATA is the truth.
#
# Differences from the official image, on purpose:
# - Initialisation is all-or-nothing: initdb, the init scripts and the
#   temporary server run in "$PGDATA/.nlb-initdb"; only when all of it
#   succeeded are the files moved into $PGDATA (PG_VERSION last). A failed
#   init script no longer leaves a half-initialised cluster that the next
#   start would silently serve; the next start simply retries.
# - A PGDATA that is not empty only because of mount points (e.g. NL-BIOMERO's
#   logging example mounts a host directory on $PGDATA/logs together with
#   `-c log_directory=logs`) or lost+found is accepted: the official image
#   runs initdb on PGDATA itself and fails with "directory exists but is not
#   empty". Any other content is refused, as initdb would.
# - pg_hba.conf is written whole: local connections trust, every TCP
#   connection (127.0.0.1 included) uses POSTGRES_HOST_AUTH_METHOD.
set -euo pipefail
shopt -s nullglob

INIT_SUBDIR=".nlb-initdb"

log() { printf '%s: %s\n' "entrypoint" "$*" >&2; }
die() { printf '%s: error: %s\n' "entrypoint" "$*" >&2; exit 1; }

# usage: file_env VAR [DEFAULT]: VAR from VAR or from the file named by VAR_FILE.
file_env() {
    local var="$1" def="${2:-}"
    local file_var="${var}_FILE"
    if [ -n "${!var:-}" ] && [ -n "${!file_var:-}" ]; then
        die "both $var and $file_var are set (but are exclusive)"
    fi
    local val="$def"
    if [ -n "${!var:-}" ]; then
        val="${!var}"
    elif [ -n "${!file_var:-}" ]; then
        [ -r "${!file_var}" ] || die "$file_var=${!file_var}: file not readable"
        val="$(<"${!file_var}")"
    fi
    export "$var"="$val"
    unset "$file_var"
}

cluster_exists() { [ -s "$PGDATA/PG_VERSION" ]; }

# True when help/version output was asked for: no initialisation then.
want_help() {
    local arg
    for arg in "$@"; do
        case "$arg" in
            -'?' | --help | --describe-config | -V | --version) return 0 ;;
        esac
    done
    return 1
}

default_pgdata() {
    if [ "${PG_MAJOR:-0}" -ge 18 ]; then
        echo "/var/lib/postgresql/$PG_MAJOR/docker"
    else
        echo /var/lib/postgresql/data
    fi
}

setup_env() {
    export PGDATA="${PGDATA:-$(default_pgdata)}"
    if ! cluster_exists; then
        file_env POSTGRES_PASSWORD
        file_env POSTGRES_USER postgres
        file_env POSTGRES_DB "$POSTGRES_USER"
        file_env POSTGRES_INITDB_ARGS
        : "${POSTGRES_HOST_AUTH_METHOD:=}"
        export POSTGRES_HOST_AUTH_METHOD
    fi
}

# As root: create the directories and hand them to postgres. The find only
# touches what is not yet owned by postgres (cheap on an existing cluster); it
# also makes a host directory mounted inside PGDATA (logs) writable.
prepare_dirs_as_root() {
    mkdir -p "$PGDATA"
    chmod 00700 "$PGDATA"
    find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
    mkdir -p /var/run/postgresql
    chmod 03775 /var/run/postgresql
    find /var/run/postgresql \! -user postgres -exec chown postgres:postgres '{}' +
    if [ -n "${POSTGRES_INITDB_WALDIR:-}" ]; then
        mkdir -p "$POSTGRES_INITDB_WALDIR"
        find "$POSTGRES_INITDB_WALDIR" \! -user postgres -exec chown postgres:postgres '{}' +
        chmod 700 "$POSTGRES_INITDB_WALDIR"
    fi
}

verify_minimum_env() {
    if [ -z "$POSTGRES_PASSWORD" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != trust ]; then
        cat >&2 <<'EOE'
entrypoint: error: database is uninitialized and superuser password is not specified.
       Set POSTGRES_PASSWORD (or POSTGRES_PASSWORD_FILE) to a non-empty value
       for the superuser, for example "-e POSTGRES_PASSWORD=password".

       POSTGRES_HOST_AUTH_METHOD=trust allows every connection without a
       password instead. This is *not* recommended.
EOE
        exit 1
    fi
    if [ "$POSTGRES_HOST_AUTH_METHOD" = trust ]; then
        log "WARNING: POSTGRES_HOST_AUTH_METHOD=trust: anyone who can reach port 5432 is superuser"
    fi
}

# PGDATA may hold mount points and lost+found (see the header), nothing else.
check_pgdata_empty() {
    local entry name
    for entry in "$PGDATA"/* "$PGDATA"/.[!.]* "$PGDATA"/..?*; do
        name="${entry##*/}"
        [ "$name" = "$INIT_SUBDIR" ] && continue
        [ "$name" = lost+found ] && continue
        mountpoint -q "$entry" 2>/dev/null && continue
        die "PGDATA ($PGDATA) holds no cluster (no PG_VERSION) but is not empty ('$name').
       Empty it, or point PGDATA at a subdirectory of the volume."
    done
}

# 18+ (as the official image): a cluster of the old layout, or of another
# major, under /var/lib/postgresql means the image was changed without an
# upgrade of the data; initialising a new empty cluster beside it would hide it.
check_old_databases() {
    [ "${PG_MAJOR:-0}" -ge 18 ] || return 0
    local dir found=()
    for dir in /var/lib/postgresql /var/lib/postgresql/data /var/lib/postgresql/*/docker; do
        [ "$dir" != "$PGDATA" ] && [ -s "$dir/PG_VERSION" ] && found+=("$dir")
    done
    [ "${#found[@]}" -eq 0 ] && return 0
    die "PGDATA ($PGDATA) holds no cluster, but there is PostgreSQL data in: ${found[*]}
       From 18 on the image keeps its cluster in /var/lib/postgresql/<major>/docker with
       one volume at /var/lib/postgresql. Upgrade the old cluster's data first (role
       postgres_upgrade), or mount the volume where its layout expects it."
}

write_hba() {
    local dir="$1" method="$2"
    cat >"$dir/pg_hba.conf" <<EOF
# Written by docker-entrypoint.sh at initialisation.
# TYPE  DATABASE     USER  ADDRESS  METHOD
local   all          all            trust
local   replication  all            trust
host    all          all   all      $method
host    replication  all   all      $method
EOF
}

temp_server_start() {
    # Unix socket only: clients waiting on TCP do not see the temporary server.
    PGUSER="$POSTGRES_USER" pg_ctl -D "$PGDATA" -w -t 120 \
        -o "-c listen_addresses='' -p ${PGPORT:-5432}" start >/dev/null
}

temp_server_stop() {
    PGUSER="$POSTGRES_USER" pg_ctl -D "$PGDATA" -m fast -w -t 120 stop >/dev/null
}

process_init_files() {
    local psql=(psql -X -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --dbname "$POSTGRES_DB")
    local f
    for f in /docker-entrypoint-initdb.d/*; do
        case "$f" in
            *.sh)
                if [ -x "$f" ]; then
                    log "running $f"
                    "$f"
                else
                    log "sourcing $f"
                    # Sourced scripts get the shell options the official image
                    # gives them (no nounset, no nullglob).
                    set +u
                    shopt -u nullglob
                    # shellcheck disable=SC1090
                    . "$f"
                    shopt -s nullglob
                    set -u
                fi
                ;;
            *.sql) log "running $f"; "${psql[@]}" -f "$f" ;;
            *.sql.gz) log "running $f"; gunzip -c "$f" | "${psql[@]}" ;;
            *.sql.xz) log "running $f"; xzcat "$f" | "${psql[@]}" ;;
            *.sql.zst) log "running $f"; zstd -dc "$f" | "${psql[@]}" ;;
            *) log "ignoring $f" ;;
        esac
    done
}

# Move a finished cluster from the init subdirectory into PGDATA; PG_VERSION
# goes last, so PGDATA only looks initialised once everything is in place.
# Safe to repeat after a crash half-way.
publish_cluster() {
    local tmp="$1" entry name
    for entry in "$tmp"/* "$tmp"/.[!.]* "$tmp"/..?*; do
        name="${entry##*/}"
        case "$name" in PG_VERSION | .complete) continue ;; esac
        if [ -e "$PGDATA/$name" ] || [ -L "$PGDATA/$name" ]; then
            die "cannot place '$name' in $PGDATA: something is already there (a mount point?)"
        fi
        mv "$entry" "$PGDATA/$name"
    done
    mv "$tmp/PG_VERSION" "$PGDATA/PG_VERSION"
    rm -f "$tmp/.complete"
    rmdir "$tmp"
}

init_cluster() {
    local tmp="$PGDATA/$INIT_SUBDIR"
    if [ -f "$tmp/.complete" ]; then
        log "finishing an interrupted initialisation"
        publish_cluster "$tmp"
        return
    fi
    verify_minimum_env
    check_old_databases
    check_pgdata_empty
    if [ -e "$tmp" ]; then
        log "removing the leftovers of a failed initialisation"
        rm -rf "$tmp"
    fi
    mkdir -m 0700 "$tmp"

    local final_pgdata="$PGDATA" initdb_args=()
    [ -n "${POSTGRES_INITDB_WALDIR:-}" ] && initdb_args+=(--waldir "$POSTGRES_INITDB_WALDIR")
    # POSTGRES_INITDB_ARGS is shell words (quotes allowed), as in the official image.
    eval 'initdb_args+=('"$POSTGRES_INITDB_ARGS"')'
    log "initialising a PostgreSQL $(postgres -V | awk '{print $3}') cluster for user \"$POSTGRES_USER\""
    # --auth=trust only silences initdb's warning: pg_hba.conf is rewritten below.
    if [ -n "$POSTGRES_PASSWORD" ]; then
        initdb -D "$tmp" --username="$POSTGRES_USER" --auth=trust \
            --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") "${initdb_args[@]}" >/dev/null
    else
        initdb -D "$tmp" --username="$POSTGRES_USER" --auth=trust "${initdb_args[@]}" >/dev/null
    fi

    local method="$POSTGRES_HOST_AUTH_METHOD"
    if [ -z "$method" ]; then
        method="$(postgres -D "$tmp" -C password_encryption)"
        [ "$method" = on ] && method=md5
    fi
    write_hba "$tmp" "$method"

    # Init scripts see PGDATA as the directory being initialised (they may
    # edit postgresql.conf there); it becomes the real PGDATA afterwards.
    export PGDATA="$tmp"
    temp_server_start
    # On a failed init script, stop the temporary server before exiting; the
    # next start removes the leftovers and initialises again.
    trap 'pg_ctl -D "$PGDATA" -m immediate -w stop >/dev/null 2>&1 || true' EXIT
    export PGPASSWORD="$POSTGRES_PASSWORD"
    if [ "$POSTGRES_DB" != postgres ]; then
        psql -X -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --dbname postgres \
            -v db="$POSTGRES_DB" -q <<'EOSQL'
SELECT format('CREATE DATABASE %I', :'db')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
EOSQL
    fi
    process_init_files
    temp_server_stop
    trap - EXIT
    unset PGPASSWORD
    export PGDATA="$final_pgdata"

    touch "$tmp/.complete"
    publish_cluster "$tmp"
    log "initialisation complete; starting the server"
}

main() {
    if [ "$#" -eq 0 ]; then
        set -- postgres
    elif [ "${1:0:1}" = '-' ]; then
        set -- postgres "$@"
    fi
    if [ "$1" != postgres ] || want_help "$@"; then
        exec "$@"
    fi

    setup_env
    if [ "$(id -u)" = 0 ]; then
        prepare_dirs_as_root
        # Re-run this script as postgres; exec keeps the chain on PID 1.
        exec setpriv --reuid=postgres --regid=postgres --init-groups -- "${BASH_SOURCE[0]}" "$@"
    fi

    # Not root (second pass, or `docker run --user`): PGDATA must be ours.
    mkdir -p "$PGDATA"
    chmod 00700 "$PGDATA" 2>/dev/null || true
    if ! cluster_exists; then
        init_cluster
    fi
    # Neither the password nor its file stay in the server's environment.
    unset POSTGRES_PASSWORD POSTGRES_PASSWORD_FILE
    # exec: postgres becomes PID 1 and gets the stop signal itself
    # (SIGINT = fast shutdown, the image's STOPSIGNAL; SIGTERM = smart).
    exec "$@"
}

main "$@"
