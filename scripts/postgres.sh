#!/usr/bin/env bash
# A throwaway PostgreSQL cluster on a loopback port, for tests and local development.
#
#   scripts/postgres.sh start DIR   create a cluster under DIR, start it, print its admin URL
#   scripts/postgres.sh stop DIR    stop it (DIR can then be deleted)
#   POSTGRES_OPTIONS="-c shared_preload_libraries=pg_stat_statements" scripts/postgres.sh start DIR
#                                   more server settings (scripts/bench-perf.sh --statements)
#
# Finds initdb/pg_ctl on PATH or under /usr/lib/postgresql/*/bin, and installs Debian's
# `postgresql` package only if neither has them. initdb refuses to run as root, so as root
# the cluster runs as the `postgres` system user. Durability is off: this data is disposable.
set -euo pipefail

find_pg_bin() {
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(command -v initdb)"
        return 0
    fi
    local dir
    for dir in /usr/lib/postgresql/*/bin; do
        if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
            echo "$dir"
            return 0
        fi
    done
    return 1
}

install_postgres() {
    echo "postgres.sh: PostgreSQL server binaries not found; installing Debian's postgresql package" >&2
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >&2
}

# Runs a command as the cluster's owner: ourselves, or `postgres` when we are root.
as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
    local dir="$1"
    local bin
    bin="$(find_pg_bin)" || { install_postgres; bin="$(find_pg_bin)"; }
    mkdir -p "$dir"
    if [ "$(id -u)" -eq 0 ]; then
        id postgres >/dev/null 2>&1 || useradd --system --home-dir "$dir" --shell /usr/sbin/nologin postgres
        chown postgres "$dir"
    fi
    local port
    port="$(free_port)"
    as_owner "$bin/initdb" --pgdata="$dir/data" --username=postgres --auth=trust \
        --encoding=UTF8 --locale=C >"$dir/initdb.log" 2>&1 ||
        { cat "$dir/initdb.log" >&2; exit 1; }
    as_owner "$bin/pg_ctl" --pgdata="$dir/data" --log="$dir/server.log" --wait --silent \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=500 \
            -c fsync=off -c synchronous_commit=off -c full_page_writes=off ${POSTGRES_OPTIONS:-}" start >&2 ||
        { cat "$dir/server.log" >&2; exit 1; }
    echo "$port" >"$dir/port"
    echo "postgres://postgres@127.0.0.1:$port/postgres"
}

stop() {
    local dir="$1"
    local bin
    bin="$(find_pg_bin)" || return 0
    if [ -f "$dir/data/postmaster.pid" ]; then
        as_owner "$bin/pg_ctl" --pgdata="$dir/data" --mode=immediate --silent stop >/dev/null 2>&1 || true
    fi
}

case "${1:-}" in
    start) start "${2:?usage: postgres.sh start DIR}" ;;
    stop) stop "${2:?usage: postgres.sh stop DIR}" ;;
    *) echo "usage: postgres.sh start|stop DIR" >&2; exit 2 ;;
esac
