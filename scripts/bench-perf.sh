#!/usr/bin/env bash
# How fast the shop is next to the database it runs on, in one run (issue 11's table): the raw
# speed of a throwaway Postgres (pgbench), then the shop's release build on that Postgres and
# on the embedded SQLite store, under a native load generator (wrk), with every figure quoted
# beside its same-run reference.
#
#   scripts/bench-perf.sh [--duration 10] [--warmup 2] [--stores postgres,sqlite]
#                         [--wrk-threads 1] [--pgbench-jobs 2] [--starts 3] [--perf DIR]
#                         [--statements 15] [--pool N] [--sender file|log] [--shop PATH]
#
# 1. Postgres: `scripts/postgres.sh` starts a throwaway cluster (initdb defaults, with the
#    durability switches that script turns off for disposable data). pgbench initialises a
#    database of its own and runs select-only with prepared statements (`-S -M prepared`)
#    from 16 clients, then a single-row INSERT, each its own commit
#    (scripts/pgbench-insert.sql), from 16 clients. These are the raw references.
# 2. Per store, the shop (`shop serve`, release build) starts on a fresh database; an
#    administrator (`shop admin create`), products with stock that cannot run out and
#    customers are created through the API. Then wrk (Debian's `wrk` package, installed if
#    missing) measures, each after --warmup seconds that are not counted:
#      GET /api/catalog/products/{id} from 64 connections and from 1 (scripts/get.lua),
#      GET /healthz from 64 connections,
#      checkout (POST /api/orders, one unit, tok_visa, scripts/checkout.lua) from 16
#      connections and from 1.
#    On Postgres it also counts commits per confirmed checkout: the shop database's
#    `pg_stat_database.xact_commit` delta over the measured checkout run (background loops
#    included) divided by the orders confirmed in it (counted in the database).
#    After the checkout load: the shop's RSS (VmRSS of /proc/PID/status), then it checks the
#    checkout invariants: every checkout answered 201 confirmed, no order left unfinished,
#    and per product `available + units confirmed = initial stock` with nothing reserved.
#    Last, start to ready: the shop is stopped and started --starts times on the migrated
#    database, timed from spawn to the first 200 from /readyz (polled every 5 ms).
# 3. It prints one Markdown table (Postgres figures, reference, ratio, SQLite figures) and
#    the goals of issue 11 with the ratio each is at, and exits 1 if an invariant failed.
#
# --perf DIR also records the shop with `perf record` (DWARF call graphs) during the measured
# product reads at 64 connections and checkouts at 16, into DIR/<store>-<run>.perf.data, and
# draws DIR/<store>-<run>.svg when `inferno-collapse-perf` and `inferno-flamegraph` are on PATH
# (`cargo install inferno`). Profiling slows the shop: figures of such a run are not a baseline.
#
# --statements N loads pg_stat_statements into the throwaway Postgres and prints, before the
# table, the N statements Postgres spent the most time on during the measured checkouts at 16
# connections, each with its calls and milliseconds per confirmed checkout. Where the
# database's time goes, statement by statement: measure before changing an index or a query.
#
# --pool N runs the shop with N pooled connections per context (`database.max_connections`)
# instead of its configured default, to measure what the pool size does to each figure.
#
# --sender picks how notifications are delivered (`notifications.sender`): `file`, the shop's
# default (one file per message under the data dir, a mailbox for development), or `log`,
# which the bench's log filter (warn) drops. A profile once put a sixth of the shop's CPU in
# creating those files (docs/PERFORMANCE.md, "The development mailbox"); `log` measures the
# checkout without them.
#
# --shop PATH runs that shop binary instead of building the release build of this tree: to
# compare two builds in alternating runs on the same machine (build the other one with its own
# CARGO_TARGET_DIR).
#
# Shop and Postgres CPU time per request are printed too (from /proc/PID/stat), to tell which
# side a figure is spent on. Figures are only comparable within one run on one machine: quote
# the ratios. Results and how to profile: docs/PERFORMANCE.md.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=10
warmup=2
stores="postgres,sqlite"
wrk_threads=1
pgbench_jobs=2
starts=3
soak=60
idle=10
perf_dir=""
statements=0
pool=""
sender=file
shop=""
read_connections=64
checkout_connections=16
pgbench_clients=16
products=16
customers=8
initial_stock=1000000
usage="usage: scripts/bench-perf.sh [--duration S] [--warmup S] [--stores postgres,sqlite] [--wrk-threads N] [--pgbench-jobs N] [--starts N] [--soak S] [--idle S] [--perf DIR] [--statements N] [--pool N] [--sender file|log] [--shop PATH]"
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) duration="$2"; shift 2 ;;
        --warmup) warmup="$2"; shift 2 ;;
        --stores) stores="$2"; shift 2 ;;
        --wrk-threads) wrk_threads="$2"; shift 2 ;;
        --pgbench-jobs) pgbench_jobs="$2"; shift 2 ;;
        --starts) starts="$2"; shift 2 ;;
        --soak) soak="$2"; shift 2 ;;
        --idle) idle="$2"; shift 2 ;;
        --perf) perf_dir="$2"; shift 2 ;;
        --statements) statements="$2"; shift 2 ;;
        --sender) sender="$2"; shift 2 ;;
        --shop) shop="$2"; shift 2 ;;
        --pool) pool="$2"; shift 2 ;;
        *) echo "$usage" >&2; exit 2 ;;
    esac
done
case ",$stores," in
    *,postgres,*|*,sqlite,*) ;;
    *) echo "$usage" >&2; exit 2 ;;
esac
if [ -n "$perf_dir" ]; then
    command -v perf >/dev/null 2>&1 || { echo "bench-perf.sh: --perf needs perf (Debian: linux-perf)" >&2; exit 2; }
    mkdir -p "$perf_dir"
    perf_dir="$(cd "$perf_dir" && pwd)"
fi
# wrk cannot tie a customer to a connection, so one customer may have several checkouts in
# flight at once: the per-customer limit is raised above the connection count.
in_flight=$((checkout_connections * 2))

if ! command -v wrk >/dev/null 2>&1; then
    echo "bench-perf.sh: wrk not found; installing Debian's wrk package" >&2
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq wrk >&2
fi

if [ -z "$shop" ]; then
    cargo build --release --quiet -p shop
    shop="$PWD/target/release/shop"
fi

work="$(mktemp -d -t shop-bench-perf.XXXXXX)"
# The throwaway Postgres runs as another user when we are root; let it reach its directory.
chmod 755 "$work"
results="$work/results"
: >"$results"
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    scripts/postgres.sh stop "$work/pg"
    rm -rf "$work"
}
trap cleanup EXIT

say() {
    echo "bench-perf: $*" >&2
}

# Records one figure: `store.name=value` in $results, read by the table at the end.
record() {
    echo "$1=$2" >>"$results"
}

record sender "$sender"

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Reads one top-level field of the JSON document on stdin (`access_token`, `id`).
json_field() {
    python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}

random_secret() {
    python3 -c 'import secrets; print(secrets.token_urlsafe(36))'
}

# Starts a process in the background, its output in $work/<name>.log; sets $started.
started=""
launch() {
    local name="$1"
    shift
    "$@" >"$work/$name.log" 2>&1 &
    started=$!
    pids+=("$started")
}

# Drops a process that has been waited for from $pids, so that nothing signals its PID again.
forget() {
    local pid kept=()
    for pid in "${pids[@]}"; do
        if [ "$pid" != "$1" ]; then kept+=("$pid"); fi
    done
    pids=("${kept[@]}")
}

# Stops the processes started so far, by PID: SIGTERM, up to 20 s to drain, then SIGKILL.
stop_all() {
    local pid
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        for _ in $(seq 1 200); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    pids=()
}

# Waits until $2 answers /readyz with 200, polling every 5 ms, at most 60 s; fails early if
# process $3 died.
wait_ready() {
    local name="$1" url="$2" pid="$3"
    for _ in $(seq 1 6000); do
        if curl -fs -o /dev/null --max-time 1 "$url/readyz" 2>/dev/null; then
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "bench-perf.sh: $name exited before it was ready:" >&2
            tail -n 20 "$work/$name.log" >&2
            exit 1
        fi
        sleep 0.005
    done
    echo "bench-perf.sh: $name not ready after 60 s:" >&2
    tail -n 20 "$work/$name.log" >&2
    exit 1
}

call() {
    local method="$1" url="$2" token="$3" body="$4"
    curl -fsS -X "$method" "$url" -H 'Content-Type: application/json' \
        ${token:+-H "Authorization: Bearer $token"} -d "$body"
}

# CPU time (user and system, all threads) of the given processes, in ms; a process that is
# gone counts 0.
cpu_ms() {
    local pid ticks=0 stat
    for pid in "$@"; do
        # Fields 14 and 15 of /proc/PID/stat, counted after the command name's parenthesis.
        stat="$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{ print $12 + $13 }')" || true
        ticks=$((ticks + ${stat:-0}))
    done
    echo $((ticks * 1000 / $(getconf CLK_TCK)))
}

# The Postgres server processes (the postmaster and its children), when there is one.
postgres_pids() {
    if [ -n "${postmaster:-}" ]; then
        echo "$postmaster" $(pgrep -P "$postmaster" || true)
    fi
}

# --- The raw references: pgbench on the throwaway Postgres -------------------------------

postmaster=""
if [[ ",$stores," == *,postgres,* ]]; then
    if [ "$statements" -gt 0 ]; then
        export POSTGRES_OPTIONS="-c shared_preload_libraries=pg_stat_statements"
    fi
    postgres_url="$(scripts/postgres.sh start "$work/pg")"
    postgres_base="${postgres_url%/*}"
    postgres_port="$(cat "$work/pg/port")"
    postmaster="$(head -n 1 "$work/pg/data/postmaster.pid")"
    pgbench_bin="$(command -v pgbench || ls /usr/lib/postgresql/*/bin/pgbench | tail -n 1)"
    for database in pgbench shop; do
        psql -qX "$postgres_url" -c "CREATE DATABASE $database" >/dev/null
    done
    if [ "$statements" -gt 0 ]; then
        psql -qX "$postgres_base/shop" -c "CREATE EXTENSION pg_stat_statements" >/dev/null
    fi
    server_version="$(psql -qAtX "$postgres_url" -c 'SHOW server_version')"
    record pg.version "$server_version"
    pgbench_args=(-h 127.0.0.1 -p "$postgres_port" -U postgres -n -M prepared
        -c "$pgbench_clients" -j "$pgbench_jobs")

    say "Postgres $server_version ready; pgbench -i, then select-only and INSERT+COMMIT," \
        "$pgbench_clients clients, ${warmup} s warm-up then ${duration} s each"
    "$pgbench_bin" -h 127.0.0.1 -p "$postgres_port" -U postgres -i -q pgbench \
        >"$work/pgbench-init.log" 2>&1 || { cat "$work/pgbench-init.log" >&2; exit 1; }
    psql -qX "$postgres_base/pgbench" \
        -c 'CREATE TABLE bench_insert (id bigserial PRIMARY KEY, client integer NOT NULL, at timestamptz NOT NULL)'

    # Runs pgbench (warm-up, then the measured run) and records its TPS as pg.$1.
    pgbench_run() {
        local name="$1" tps
        shift
        "$pgbench_bin" "${pgbench_args[@]}" -T "$warmup" "$@" pgbench >"$work/pgbench-$name.warmup" 2>&1 ||
            { cat "$work/pgbench-$name.warmup" >&2; exit 1; }
        "$pgbench_bin" "${pgbench_args[@]}" -T "$duration" "$@" pgbench >"$work/pgbench-$name.log" 2>&1 ||
            { cat "$work/pgbench-$name.log" >&2; exit 1; }
        tps="$(awk '/^tps = / { print $3; exit }' "$work/pgbench-$name.log")"
        if [ -z "$tps" ]; then
            echo "bench-perf.sh: pgbench printed no tps for $name:" >&2
            cat "$work/pgbench-$name.log" >&2
            exit 1
        fi
        record "pg.$name" "$tps"
        say "pgbench $name: $tps tps"
    }
    pgbench_run select -S
    pgbench_run insert -f scripts/pgbench-insert.sql
fi

# --- The shop -----------------------------------------------------------------------------

jwt_secret="$(random_secret)"
# Set per store by run_store: the env of `shop`, its URL, its data directory.
shop_env=()
url=""
data=""
store=""
shop_pid=""
product_ids=""
product_paths=""
tokens=""

# Runs SQL against the shop's own data and prints the rows, tab-separated. The same text
# works on both stores: on Postgres the contexts are schemas of one database, on SQLite
# their files are attached under the contexts' names. Bookkeeping only (the benchmark
# checks the shop from outside); the shop itself never reads across contexts.
sql() {
    if [ "$store" = postgres ]; then
        psql -qAtX -F $'\t' "$postgres_base/shop" -c "$1"
    else
        python3 - "$data" "$1" <<'EOF'
import sqlite3, sys
data, query = sys.argv[1], sys.argv[2]
db = sqlite3.connect(":memory:", timeout=10)
for context in ("orders", "catalog"):
    db.execute("ATTACH DATABASE ? AS " + context, (f"file:{data}/{context}.db?mode=ro",))
for row in db.execute(query):
    print("\t".join(str(value) for value in row))
EOF
    fi
}

# Commits in the shop's database so far (read from another database, so that asking does
# not add one).
xact_commit() {
    psql -qAtX "$postgres_url" -c "SELECT xact_commit FROM pg_stat_database WHERE datname = 'shop'"
}

confirmed_orders() {
    sql "SELECT count(*) FROM orders.orders WHERE status = 'confirmed'"
}

# Events not yet relayed (outbox `pending`) or handled (inbox `pending` or `handled`), in
# every context's tables.
unfinished_events() {
    if [ "$store" = postgres ]; then
        local query
        query="$(psql -qAtX "$postgres_base/shop" -c "
            SELECT string_agg(format('SELECT count(*) FROM %I.%I WHERE status IN (%s)',
                       table_schema, table_name,
                       CASE table_name WHEN 'outbox' THEN '''pending'''
                                       ELSE '''pending'', ''handled''' END), ' UNION ALL ')
            FROM information_schema.tables WHERE table_name IN ('outbox', 'inbox')")"
        psql -qAtX "$postgres_base/shop" -c "SELECT sum(count) FROM ($query) AS events"
    else
        python3 - "$data" <<'PY'
import glob, sqlite3, sys
total = 0
for path in glob.glob(f"{sys.argv[1]}/*.db"):
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "outbox" in tables:
        total += db.execute("SELECT count(*) FROM outbox WHERE status = 'pending'").fetchone()[0]
    if "inbox" in tables:
        total += db.execute("SELECT count(*) FROM inbox WHERE status IN ('pending', 'handled')").fetchone()[0]
print(total)
PY
    fi
}

# Waits (at most 180 s) until no checkout is unfinished and every event is relayed and
# handled: wrk stops with requests in flight, and the shop finishes them and their events.
settle() {
    local unfinished
    for _ in $(seq 1 1800); do
        unfinished="$(sql "SELECT count(*) FROM orders.orders
            WHERE status IN ('pending', 'stock_reserved', 'payment_captured', 'cancelling')")"
        if [ "$unfinished" = 0 ]; then
            unfinished="$(unfinished_events)"
        fi
        if [ "$unfinished" = 0 ]; then
            # Postgres backends publish their statistics at most once a second.
            sleep 1.5
            return 0
        fi
        sleep 0.1
    done
    say "$store: $unfinished checkouts or events still unfinished after 180 s"
    record "$store.unfinished" "$unfinished"
}

# Creates the administrator, products and customers through the public API; sets
# $product_ids, $product_paths and $tokens.
prepare() {
    local admin id i token
    env "${shop_env[@]}" SHOP_ADMIN_PASSWORD="admin password" \
        "$shop" admin create --email admin@example.com >/dev/null
    admin="$(call POST "$url/api/auth/login" "" \
        '{"email": "admin@example.com", "password": "admin password"}' | json_field access_token)"
    product_ids=""
    product_paths=""
    for i in $(seq 1 "$products"); do
        id="$(call POST "$url/api/catalog/products" "$admin" \
            "{\"sku\": \"BENCH-$i\", \"name\": \"Bench product $i\",
              \"description\": \"A product for scripts/bench-perf.sh\",
              \"price\": {\"amount_minor\": 1000, \"currency\": \"EUR\"},
              \"category\": \"bench\", \"initial_stock\": $initial_stock}" | json_field id)"
        product_ids="$product_ids $id"
        product_paths="$product_paths /api/catalog/products/$id"
    done
    tokens=""
    for i in $(seq 1 "$customers"); do
        call POST "$url/api/auth/register" "" \
            "{\"email\": \"bench-$i@example.com\", \"password\": \"bench password\",
              \"display_name\": \"Bench $i\"}" >/dev/null
        token="$(call POST "$url/api/auth/login" "" \
            "{\"email\": \"bench-$i@example.com\", \"password\": \"bench password\"}" |
            json_field access_token)"
        tokens="$tokens $token"
    done
}

# Runs wrk with a script for --warmup seconds, not counted. $1 names the measurement, $2 the
# Lua script, $3 the connections, $4 the URL.
wrk_warmup() {
    local name="$1" script="$2" connections="$3" target="$4"
    BENCH_RUN="$store-$name-warmup" \
        wrk --threads "$wrk_threads" --connections "$connections" --duration "${warmup}s" \
        --timeout 10s --script "$script" "$target" >"$work/$store-$name.warmup" 2>&1
}

# Runs wrk with a script for --duration seconds, with the shop's and Postgres' CPU time
# meanwhile; the result line (plus cpu fields) is recorded as $store.$1. With --perf, the
# product reads at 64 connections and the checkouts at 16 are recorded by `perf record`.
wrk_measure() {
    local name="$1" script="$2" connections="$3" target="$4" shop_before pg_before shop_cpu pg_cpu
    local profiler=""
    if [ -n "$perf_dir" ] && { [ "$name" = read-64 ] || [ "$name" = checkout-16 ]; }; then
        perf record -F 499 --call-graph dwarf,16384 -p "$shop_pid" \
            -o "$perf_dir/$store-$name.perf.data" -- sleep "$duration" >"$work/$store-$name.perf.log" 2>&1 &
        profiler=$!
        pids+=("$profiler")
    fi
    shop_before="$(cpu_ms "$shop_pid")"
    # shellcheck disable=SC2046
    pg_before="$(cpu_ms $(postgres_pids))"
    BENCH_RUN="$store-$name" \
        wrk --threads "$wrk_threads" --connections "$connections" --duration "${duration}s" \
        --timeout 10s --latency --script "$script" "$target" >"$work/$store-$name.wrk" 2>&1
    shop_cpu=$(($(cpu_ms "$shop_pid") - shop_before))
    if [ -n "$profiler" ]; then
        wait "$profiler" || { cat "$work/$store-$name.perf.log" >&2; exit 1; }
        forget "$profiler"
        flame_graph "$perf_dir/$store-$name"
    fi
    # shellcheck disable=SC2046
    pg_cpu=$(($(cpu_ms $(postgres_pids)) - pg_before))
    if ! grep -E '^(get|checkout)-result ' "$work/$store-$name.wrk" >"$work/$store-$name.result"; then
        echo "bench-perf.sh: wrk printed no result for $store $name:" >&2
        cat "$work/$store-$name.wrk" >&2
        exit 1
    fi
    record "$store.$name" "$(cut -d' ' -f2- "$work/$store-$name.result") shop_cpu_ms=$shop_cpu pg_cpu_ms=$pg_cpu"
    say "$store $name: $(cut -d' ' -f2-5 "$work/$store-$name.result")"
}

# Draws $1.svg from $1.perf.data when inferno is installed.
flame_graph() {
    if command -v inferno-collapse-perf >/dev/null 2>&1 && command -v inferno-flamegraph >/dev/null 2>&1; then
        perf script -i "$1.perf.data" 2>/dev/null | inferno-collapse-perf >"$1.folded"
        inferno-flamegraph <"$1.folded" >"$1.svg"
        say "flame graph: $1.svg"
    else
        say "profile: $1.perf.data (cargo install inferno to draw flame graphs)"
    fi
}

# GET requests over $BENCH_PATHS: warm-up, then the measured run.
run_get() {
    wrk_warmup "$1" scripts/get.lua "$2" "$url"
    wrk_measure "$1" scripts/get.lua "$2" "$url"
}

# Checkouts: warm-up, then the measured run between two settled states, so that on Postgres
# the commits counted and the orders confirmed belong to the same window.
run_checkout() {
    local name="$1" connections="$2" commits_before confirmed_before confirmed profiled=""
    export BENCH_TOKENS="$tokens" BENCH_PRODUCTS="$product_ids"
    wrk_warmup "$name" scripts/checkout.lua "$connections" "$url/api/orders"
    settle
    confirmed_before="$(confirmed_orders)"
    if [ "$store" = postgres ]; then commits_before="$(xact_commit)"; fi
    if [ "$store" = postgres ] && [ "$statements" -gt 0 ] && [ "$name" = checkout-16 ]; then
        profiled=1
        psql -qAtX "$postgres_base/shop" -c "SELECT pg_stat_statements_reset()" >/dev/null
    fi
    wrk_measure "$name" scripts/checkout.lua "$connections" "$url/api/orders"
    settle
    if [ "$store" = postgres ]; then
        record "$store.$name.commits" $(($(xact_commit) - commits_before))
    fi
    confirmed=$(($(confirmed_orders) - confirmed_before))
    record "$store.$name.confirmed_in_db" "$confirmed"
    if [ -n "$profiled" ] && [ "$confirmed" -gt 0 ]; then
        top_statements "$confirmed" >"$work/statements.txt"
    fi
}

# The --statements statements of the shop's database that took Postgres the most time since
# the last reset, per confirmed checkout ($1 of them), the event machinery's included.
top_statements() {
    psql -qX "$postgres_base/shop" -c "
        SELECT calls,
               round(calls::numeric / $1, 2) AS per_checkout,
               round(total_exec_time::numeric / $1, 3) AS ms_per_checkout,
               round(mean_exec_time::numeric, 3) AS mean_ms,
               left(regexp_replace(query, '\s+', ' ', 'g'), 110) AS statement
        FROM pg_stat_statements
        WHERE dbid = (SELECT oid FROM pg_database WHERE datname = 'shop')
        ORDER BY total_exec_time DESC
        LIMIT $statements"
    psql -qX "$postgres_base/shop" -c "
        SELECT round(sum(calls)::numeric / $1, 1) AS statements_per_checkout,
               round(sum(total_exec_time)::numeric / $1, 3) AS exec_ms_per_checkout
        FROM pg_stat_statements
        WHERE dbid = (SELECT oid FROM pg_database WHERE datname = 'shop')"
}

rss_kb() {
    awk '/^VmRSS:/ { print $2 }' "/proc/$shop_pid/status"
}

# Checkouts at 16 connections for --soak seconds, not measured but for the RSS read after.
soak_checkouts() {
    export BENCH_TOKENS="$tokens" BENCH_PRODUCTS="$product_ids" BENCH_RUN="$store-soak"
    wrk --threads "$wrk_threads" --connections "$checkout_connections" --duration "${soak}s" \
        --timeout 10s --script scripts/checkout.lua "$url/api/orders" >"$work/$store-soak.wrk" 2>&1
    settle
    record "$store.soak_s" "$soak"
}

# Statements the shop sends Postgres in --idle seconds without traffic, once everything has
# settled: Postgres logs every statement meanwhile (log_statement = all, switched on and off
# by reloading the configuration), and the lines of the shop's database are counted.
count_idle_statements() {
    local log="$work/pg/server.log" before
    settle
    psql -qAtX "$postgres_url" -c "ALTER SYSTEM SET log_statement = 'all'" \
        -c "ALTER SYSTEM SET log_line_prefix = '%d '" -c "SELECT pg_reload_conf()" >/dev/null
    before="$(wc -l <"$log")"
    sleep "$idle"
    tail -n +"$((before + 1))" "$log" | grep -E '^shop .*(statement|execute [^ ]*): ' \
        >"$work/$store-idle.statements" || true
    psql -qAtX "$postgres_url" -c "ALTER SYSTEM RESET log_statement" \
        -c "ALTER SYSTEM RESET log_line_prefix" -c "SELECT pg_reload_conf()" >/dev/null
    record "$store.idle_statements" "$(wc -l <"$work/$store-idle.statements")"
    record "$store.idle_s" "$idle"
    say "$store: $(wc -l <"$work/$store-idle.statements") statements in ${idle} s without traffic"
}

# Checks the checkout invariants in the shop's data; records `$store.invariants`.
check_invariants() {
    sql "SELECT status, count(*) FROM orders.orders GROUP BY status ORDER BY status" >"$work/$store-statuses"
    sql "SELECT s.available, s.reserved, COALESCE(c.units, 0)
         FROM catalog.stock s
         LEFT JOIN (SELECT l.product_id, sum(l.quantity) AS units
                    FROM orders.order_lines l JOIN orders.orders o ON o.id = l.order_id
                    WHERE o.status = 'confirmed' GROUP BY l.product_id) c
           ON c.product_id = s.product_id" >"$work/$store-stock"
    local failures
    failures="$(python3 - "$work/$store-statuses" "$work/$store-stock" "$initial_stock" "$products" <<'EOF'
import sys
statuses = dict(line.split("\t") for line in open(sys.argv[1]).read().splitlines())
stock = [tuple(map(int, line.split("\t"))) for line in open(sys.argv[2]).read().splitlines()]
initial, products = int(sys.argv[3]), int(sys.argv[4])
failures = []
others = {status: n for status, n in statuses.items() if status != "confirmed"}
if others:
    failures.append(f"orders not confirmed: {others}")
if len(stock) != products:
    failures.append(f"{len(stock)} stock rows, expected {products}")
for available, reserved, units in stock:
    if available + units != initial or reserved != 0:
        failures.append(f"stock available={available} reserved={reserved} with {units} units "
                        f"confirmed (initial {initial})")
        break
print("; ".join(failures) or "ok")
EOF
    )"
    record "$store.orders" "$(tr '\t\n' ':,' <"$work/$store-statuses" | sed 's/,$//')"
    record "$store.invariants" "$failures"
}

run_store() {
    store="$1"
    local port database_url
    port="$(free_port)"
    data="$work/$store"
    url="http://127.0.0.1:$port"
    database_url=""
    if [ "$store" = postgres ]; then database_url="$postgres_base/shop"; fi
    shop_env=(
        SHOP__LOG__FILTER=warn
        SHOP__CATALOG__SEED_DEMO=false
        SHOP__AUTH__JWT_SECRET="$jwt_secret"
        SHOP__ORDERS__MAX_IN_FLIGHT_PER_CUSTOMER="$in_flight"
        SHOP__DATABASE__URL="$database_url"
        SHOP__DATA_DIR="$data"
        SHOP__SERVER__PORT="$port"
        SHOP__NOTIFICATIONS__SENDER="$sender"
    )
    if [ -n "$pool" ]; then shop_env+=(SHOP__DATABASE__MAX_CONNECTIONS="$pool"); fi
    launch "$store-shop" env "${shop_env[@]}" "$shop" serve
    shop_pid="$started"
    wait_ready "$store-shop" "$url" "$shop_pid"
    prepare
    say "$store: shop ready with $products products and $customers customers;" \
        "${warmup} s warm-up then ${duration} s per measurement"

    export BENCH_PATHS="$product_paths"
    # Uncached: every read carries `Cache-Control: no-cache` and goes to the database.
    export BENCH_NO_CACHE=1
    run_get read-64 "$read_connections"
    run_get read-1 1
    # Cached: the same reads, served from catalog's in-process cache.
    export BENCH_NO_CACHE=0
    run_get read-64-cached "$read_connections"
    export BENCH_PATHS="/healthz"
    run_get healthz-64 "$read_connections"
    record "$store.rss_idle_kb" "$(rss_kb)"
    run_checkout checkout-16 "$checkout_connections"
    run_checkout checkout-1 1
    # Sixteen buyers of one hot product: every reservation updates the same stock row.
    local spread="$product_ids"
    product_ids="${spread%% *}"
    [ -n "$product_ids" ] || product_ids="$(echo "$spread" | awk '{ print $1 }')"
    run_checkout checkout-hot-16 "$checkout_connections"
    product_ids="$spread"
    if [ "$store" = postgres ]; then count_idle_statements; fi
    # RSS after a minute (--soak) of checkout load at 16 connections, as the goal says.
    soak_checkouts
    record "$store.rss_kb" "$(rss_kb)"
    check_invariants
    stop_all

    # Start to ready on the migrated database: spawn to the first 200 from /readyz.
    local i t0 t1 times=""
    for i in $(seq 1 "$starts"); do
        t0="$(date +%s%N)"
        launch "$store-restart-$i" env "${shop_env[@]}" "$shop" serve
        wait_ready "$store-restart-$i" "$url" "$started"
        t1="$(date +%s%N)"
        times="$times $(((t1 - t0) / 1000000))"
        stop_all
    done
    record "$store.ready_ms" "${times# }"
    say "$store: start to ready (ms):$times"
}

if [[ ",$stores," == *,postgres,* ]]; then run_store postgres; fi
if [[ ",$stores," == *,sqlite,* ]]; then run_store sqlite; fi

# --- The table ----------------------------------------------------------------------------

if [ -s "$work/statements.txt" ]; then
    echo "The statements Postgres spent the most time on, checkout at $checkout_connections connections (execution time, lock waits included):"
    cat "$work/statements.txt"
fi

python3 - "$results" "$duration" "$warmup" <<'EOF'
import statistics
import sys

results = {}
for line in open(sys.argv[1]):
    key, value = line.rstrip("\n").split("=", 1)
    results[key] = value
duration, warmup = sys.argv[2], sys.argv[3]


def run(store, name):
    """A wrk result as a dict, or None when that store was not measured."""
    text = results.get(f"{store}.{name}")
    if text is None:
        return None
    row = dict(field.split("=", 1) for field in text.split())
    row["rate"] = int(row["requests"]) / float(row["seconds"])
    return row


stores = [store for store in ("postgres", "sqlite") if f"{store}.read-64" in results]
select_tps = float(results["pg.select"]) if "pg.select" in results else None
insert_tps = float(results["pg.insert"]) if "pg.insert" in results else None


def fmt_rate(row, unit):
    return f"{row['rate']:,.0f} {unit}, p50 {float(row['p50_ms']):.2f} ms, p99 {float(row['p99_ms']):.2f} ms"


def cpu(store, row):
    requests = max(1, int(row["requests"]))
    text = f"shop {int(row['shop_cpu_ms']) / requests:.3f}"
    if store == "postgres":
        text += f", pg {int(row['pg_cpu_ms']) / requests:.3f}"
    return text


def commits(store, name):
    confirmed = int(results.get(f"{store}.{name}.confirmed_in_db", 0))
    total = results.get(f"{store}.{name}.commits")
    if total is None or not confirmed:
        return None
    return int(total) / confirmed


rows = []  # (what, {store: measured}, reference, ratio)
def add(what, per_store, reference="", ratio=""):
    rows.append((what, per_store, reference, ratio))


def per_store(name, unit):
    return {store: fmt_rate(run(store, name), unit) for store in stores if run(store, name)}


pg = "postgres" in stores
read64 = run("postgres", "read-64") if pg else None
healthz = run("postgres", "healthz-64") if pg else None
checkout16 = run("postgres", "checkout-16") if pg else None
add("`GET /api/catalog/products/{id}` uncached (`Cache-Control: no-cache`), 64 connections", per_store("read-64", "req/s"),
    f"pgbench select-only, prepared, 16 clients: {select_tps:,.0f} tps" if select_tps else "",
    f"{read64['rate'] / select_tps:.2f}" if read64 and select_tps else "")
add("same, 1 connection", per_store("read-1", "req/s"))
cached64 = run("postgres", "read-64-cached") if pg else None
add("same, 64 connections, from the in-process cache", per_store("read-64-cached", "req/s"),
    "cached product read / healthz",
    f"{cached64['rate'] / healthz['rate']:.2f}" if cached64 and healthz else "")
add("`GET /healthz`, 64 connections", per_store("healthz-64", "req/s"))
add("checkout (`POST /api/orders`, one unit, tok_visa), 16 connections", per_store("checkout-16", "checkouts/s"),
    f"single-row INSERT+COMMIT, 16 clients: {insert_tps:,.0f} tps" if insert_tps else "",
    f"{checkout16['rate'] / insert_tps:.3f}" if checkout16 and insert_tps else "")
add("same, 1 connection", per_store("checkout-1", "checkouts/s"))
hot = run("postgres", "checkout-hot-16") if pg else None
add("same, 16 connections all buying one product", per_store("checkout-hot-16", "checkouts/s"),
    "hot / spread checkouts per second",
    f"{hot['rate'] / checkout16['rate']:.2f}" if hot and checkout16 else "")
pg_commits = {store: f"{commits(store, 'checkout-16'):.1f} at 16 connections, "
                     f"{commits(store, 'checkout-1'):.1f} at 1"
              for store in stores if commits(store, "checkout-16") and commits(store, "checkout-1")}
add("Postgres commits per confirmed checkout (`xact_commit` delta / orders confirmed)", pg_commits)
if pg and checkout16 and commits("postgres", "checkout-16") and insert_tps:
    driven = checkout16["rate"] * commits("postgres", "checkout-16")
    add("commits/s the 16-connection checkout load drives", {"postgres": f"{driven:,.0f}"},
        "INSERT+COMMIT tps", f"{driven / insert_tps:.2f}")
if pg and "postgres.idle_statements" in results:
    add("statements sent to Postgres without traffic",
        {"postgres": f"{results['postgres.idle_statements']} in {results['postgres.idle_s']} s"})
add("shop RSS: idle after start / after the measured runs and a further checkout soak",
    {store: f"{int(results[f'{store}.rss_idle_kb']) / 1024:.0f} MB / "
            f"{int(results[f'{store}.rss_kb']) / 1024:.0f} MB (soak {results[f'{store}.soak_s']} s)"
     for store in stores})


def ready(store):
    return [int(ms) for ms in results[f"{store}.ready_ms"].split()]


add("start to ready (spawn to first 200 from `/readyz`), migrated database",
    {store: f"{statistics.median(ready(store))} ms (median of {', '.join(map(str, ready(store)))})"
     for store in stores})
add("CPU ms per request (shop, Postgres): product read at 64 / checkout at 16",
    {store: f"{cpu(store, run(store, 'read-64'))} / {cpu(store, run(store, 'checkout-16'))}"
     for store in stores})

print()
print(f"{duration} s per measurement after {warmup} s of warm-up"
      + (f"; Postgres {results['pg.version']}" if "pg.version" in results else "")
      + f"; notifications sent by the {results['sender']} sender")
print()
header = ["what"]
if pg:
    header += ["Postgres", "same run, raw", "ratio"]
if "sqlite" in stores:
    header += ["SQLite"]
print("| " + " | ".join(header) + " |")
print("|" + "---|" * len(header))
for what, measured, reference, ratio in rows:
    cells = [what]
    if pg:
        cells += [measured.get("postgres", ""), reference, ratio]
    if "sqlite" in stores:
        cells += [measured.get("sqlite", "")]
    print("| " + " | ".join(cells) + " |")

# The goals of issue 11, where the run stands against each.
print()
print("Goals of issue 11:")
def goal(text, value, met):
    print(f"  [{'met' if met else 'NOT met'}] {text}: {value}")
if pg and read64 and select_tps:
    ratio = read64["rate"] / select_tps
    goal("product read >= 0.5 x pgbench select-only", f"{ratio:.2f}", ratio >= 0.5)
if pg and cached64 and healthz:
    ratio = cached64["rate"] / healthz["rate"]
    goal("cached catalog read >= 0.3 x /healthz", f"{ratio:.2f}", ratio >= 0.3)
for store in stores:
    if store != "postgres" and run(store, "read-64-cached") and run(store, "healthz-64"):
        ratio = run(store, "read-64-cached")["rate"] / run(store, "healthz-64")["rate"]
        goal(f"cached catalog read >= 0.3 x /healthz ({store})", f"{ratio:.2f}", ratio >= 0.3)
if pg and commits("postgres", "checkout-16"):
    value = commits("postgres", "checkout-16")
    goal("<= 10 commits per confirmed checkout (16 connections)", f"{value:.1f}", value <= 10)
if pg and checkout16:
    rate, p99 = checkout16["rate"], float(checkout16["p99_ms"])
    goal(">= 700 checkouts/s at 16 connections, p99 < 50 ms", f"{rate:,.0f}/s, p99 {p99:.1f} ms",
         rate >= 700 and p99 < 50)
for store in stores:
    p50 = float(run(store, "checkout-1")["p50_ms"])
    goal(f"single-connection checkout p50 <= 4 ms ({store})", f"{p50:.2f} ms", p50 <= 4)
for store in stores:
    median = statistics.median(ready(store))
    goal(f"start to ready < 1 s ({store})", f"{median} ms", median < 1000)
if pg and "postgres.idle_statements" in results:
    idle = int(results["postgres.idle_statements"])
    goal(f"idle is idle: no statements in {results['postgres.idle_s']} s without traffic",
         str(idle), idle == 0)
for store in stores:
    mb = int(results[f"{store}.rss_kb"]) / 1024
    goal(f"RSS < 150 MB after checkout load ({store}; {results[f'{store}.soak_s']} s of soak after "
         f"{3 * (int(duration) + int(warmup))} s of measured checkouts)", f"{mb:.0f} MB", mb < 150)

# The invariants, which decide the exit status.
print()
failed = False
for store in stores:
    problems = []
    for name in ("read-64", "read-1", "read-64-cached", "healthz-64"):
        row = run(store, name)
        if int(row["non_2xx"]) or int(row["socket_errors"]):
            problems.append(f"{name}: statuses {row['statuses']}, socket errors {row['socket_errors']}")
    for name in ("checkout-16", "checkout-1", "checkout-hot-16"):
        row = run(store, name)
        if (int(row["confirmed"]) != int(row["requests"]) or int(row["non_2xx"])
                or int(row["other_2xx"]) or int(row["socket_errors"])):
            problems.append(f"{name}: {row['confirmed']} of {row['requests']} confirmed, statuses "
                            f"{row['statuses']}, socket errors {row['socket_errors']}")
    if results.get(f"{store}.invariants") != "ok":
        problems.append(results.get(f"{store}.invariants", "not checked"))
    if f"{store}.unfinished" in results:
        problems.append(f"{results[f'{store}.unfinished']} checkouts unfinished")
    orders = results.get(f"{store}.orders", "")
    if problems:
        failed = True
        print(f"{store}: INVARIANTS FAILED ({orders}):", *problems, sep="\n  ")
    else:
        print(f"{store}: invariants hold: every checkout answered 201 confirmed, none unfinished, "
              f"available + confirmed units = initial stock and nothing reserved ({orders})")
sys.exit(1 if failed else 0)
EOF
