#!/usr/bin/env bash
# Checkout throughput and latency of a release build, on the embedded SQLite store and on a
# throwaway Postgres, with the invariants checked after each run (scripts/load.py).
#   scripts/bench.sh [load.py options, e.g. --orders 1000 --concurrency 64]
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --quiet -p shop
work="$(mktemp -d -t shop-bench.XXXXXX)"
# The throwaway Postgres runs as another user when we are root; let it reach its directory.
chmod 755 "$work"
server=""
cleanup() {
    if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
    scripts/postgres.sh stop "$work/pg"
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

bench() {
    local name="$1" database_url="$2"
    shift 2
    local port data
    port="$(free_port)"
    data="$work/$name"
    export SHOP__DATA_DIR="$data" SHOP__SERVER__PORT="$port" SHOP__DATABASE__URL="$database_url"
    export SHOP__LOG__FILTER="warn" SHOP__CATALOG__SEED_DEMO="false"
    SHOP_ADMIN_PASSWORD="admin password" target/release/shop admin create --email admin@example.com >/dev/null
    target/release/shop serve >"$work/$name.log" 2>&1 &
    server=$!
    for _ in $(seq 1 100); do
        curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
        sleep 0.1
    done
    echo "== $name"
    python3 scripts/load.py --url "http://127.0.0.1:$port" "$@"
    kill "$server"
    wait "$server" || true
    server=""
}

bench sqlite "" "$@"
postgres_url="$(scripts/postgres.sh start "$work/pg")"
bench postgres "$postgres_url" "$@"
