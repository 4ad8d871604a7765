#!/usr/bin/env bash
# What extraction costs a checkout: the same checkout load against the monolith and against the
# split deployment, in one run, on one throwaway Postgres, with the p50 and p99 of each and
# their ratio (the target: split p50 at most 1.3 times the monolith's).
#
#   scripts/bench-split.sh [--connections 8] [--duration 20] [--warmup 5] [--criterion]
#
# monolith: one `shop serve` running every context.
# split:    three processes: the shop (auth, orders, notifications), catalog and payments,
#           wired through their internal listeners (placement.*_url, internal.token), with
#           catalog's public routes sent to the catalog process (routing.catalog_url).
# Each deployment gets a fresh database of its own, an administrator (`shop admin create`),
# products with stock that cannot run out and customers, then `wrk` (a native load
# generator; Debian's `wrk` package is installed if missing) places checkouts from
# --connections connections for --warmup seconds (not counted), then for --duration seconds
# (counted), every request with its own Idempotency-Key (scripts/checkout.lua).
# It prints, per deployment, requests/s, p50, p99, errors and the CPU time of the shop
# processes per checkout, then the split/monolith ratios, and exits 1 if a checkout did not
# end confirmed. --criterion also runs `cargo bench -p remote --bench boundary` (the cost of
# one call). Figures and analysis: docs/EXTRACTION.md, "What it costs".
#
# The figures are only comparable within one run on one machine: quote the ratios.
set -euo pipefail
cd "$(dirname "$0")/.."

connections=8
duration=20
warmup=5
criterion=false
products=16
customers=8
while [ $# -gt 0 ]; do
    case "$1" in
        --connections) connections="$2"; shift 2 ;;
        --duration) duration="$2"; shift 2 ;;
        --warmup) warmup="$2"; shift 2 ;;
        --criterion) criterion=true; shift ;;
        *) echo "usage: scripts/bench-split.sh [--connections N] [--duration S] [--warmup S] [--criterion]" >&2; exit 2 ;;
    esac
done
# wrk cannot tie a customer to a connection, so one customer may have several checkouts in
# flight at once: the per-customer limit is raised above the connection count.
in_flight=$((connections * 2))

if ! command -v wrk >/dev/null 2>&1; then
    echo "bench-split.sh: wrk not found; installing Debian's wrk package" >&2
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq wrk >&2
fi

cargo build --release --quiet -p shop
shop="$PWD/target/release/shop"

work="$(mktemp -d -t shop-bench-split.XXXXXX)"
# The throwaway Postgres runs as another user when we are root; let it reach its directory.
chmod 755 "$work"
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

# Waits until $2 answers /readyz with 200, at most 60 s; fails early if process $3 died.
wait_ready() {
    local name="$1" url="$2" pid="$3"
    for _ in $(seq 1 600); do
        if curl -fs "$url/readyz" >/dev/null 2>&1; then
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "bench-split.sh: $name exited before it was ready:" >&2
            tail -n 20 "$work/$name.log" >&2
            exit 1
        fi
        sleep 0.1
    done
    echo "bench-split.sh: $name not ready after 60 s:" >&2
    tail -n 20 "$work/$name.log" >&2
    exit 1
}

call() {
    local method="$1" url="$2" token="$3" body="$4"
    curl -fsS -X "$method" "$url" -H 'Content-Type: application/json' \
        ${token:+-H "Authorization: Bearer $token"} -d "$body"
}

# Creates the administrator ($1: the env of the process that runs auth), products and
# customers through the public API at $2; sets $tokens and $product_ids.
tokens=""
product_ids=""
prepare() {
    local -n auth_env="$1"
    local url="$2" admin id i token
    env "${auth_env[@]}" SHOP_ADMIN_PASSWORD="admin password" \
        "$shop" admin create --email admin@example.com >/dev/null
    admin="$(call POST "$url/api/auth/login" "" \
        '{"email": "admin@example.com", "password": "admin password"}' | json_field access_token)"
    product_ids=""
    for i in $(seq 1 "$products"); do
        id="$(call POST "$url/api/catalog/products" "$admin" \
            "{\"sku\": \"BENCH-$i\", \"name\": \"Bench product $i\",
              \"price\": {\"amount_minor\": 1000, \"currency\": \"EUR\"},
              \"category\": \"bench\", \"initial_stock\": 1000000}" | json_field id)"
        product_ids="$product_ids $id"
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

# CPU time (user and system, all threads) the shop processes started so far have used, in ms.
cpu_ms() {
    local pid ticks=0
    for pid in "${pids[@]}"; do
        # Fields 14 and 15 of /proc/PID/stat, counted after the command name's parenthesis.
        ticks=$((ticks + $(sed 's/.*) //' "/proc/$pid/stat" | awk '{ print $12 + $13 }')))
    done
    echo $((ticks * 1000 / $(getconf CLK_TCK)))
}

# Runs the warm-up and the measured load against $2; the result line goes to $work/$1.result,
# with the CPU time the shop processes used meanwhile.
load() {
    local name="$1" url="$2" before
    BENCH_TOKENS="$tokens" BENCH_PRODUCTS="$product_ids" BENCH_RUN="$name-warmup" \
        wrk --threads 1 --connections "$connections" --duration "${warmup}s" --timeout 10s \
        --script scripts/checkout.lua "$url/api/orders" >"$work/$name.warmup" 2>&1
    before="$(cpu_ms)"
    BENCH_TOKENS="$tokens" BENCH_PRODUCTS="$product_ids" BENCH_RUN="$name" \
        wrk --threads 1 --connections "$connections" --duration "${duration}s" --timeout 10s \
        --latency --script scripts/checkout.lua "$url/api/orders" >"$work/$name.wrk" 2>&1
    echo "shop_cpu_ms=$(($(cpu_ms) - before))" >"$work/$name.cpu"
    grep '^checkout-result ' "$work/$name.warmup" >"$work/$name.warmup-result" || true
    if ! grep '^checkout-result ' "$work/$name.wrk" >"$work/$name.result"; then
        echo "bench-split.sh: wrk printed no result for $name:" >&2
        cat "$work/$name.wrk" >&2
        exit 1
    fi
    echo " $(cat "$work/$name.cpu")" >>"$work/$name.result"
}

postgres_url="$(scripts/postgres.sh start "$work/pg")"
postgres_base="${postgres_url%/*}"
for database in monolith split; do
    psql -q "$postgres_url" -c "CREATE DATABASE $database" >/dev/null
done

common=(
    SHOP__LOG__FILTER=warn
    SHOP__CATALOG__SEED_DEMO=false
    SHOP__AUTH__JWT_SECRET="$(random_secret)"
    SHOP__ORDERS__MAX_IN_FLIGHT_PER_CUSTOMER="$in_flight"
)

echo "bench-split: $connections connections, ${warmup} s warm-up then ${duration} s per deployment," \
    "$customers customers, $products products, orders.max_in_flight_per_customer=$in_flight" >&2

# The monolith.
port="$(free_port)"
monolith_env=(
    "${common[@]}"
    SHOP__DATABASE__URL="$postgres_base/monolith"
    SHOP__DATA_DIR="$work/monolith"
    SHOP__SERVER__PORT="$port"
)
monolith="http://127.0.0.1:$port"
launch monolith env "${monolith_env[@]}" "$shop" serve
wait_ready monolith "$monolith" "$started"
prepare monolith_env "$monolith"
echo "bench-split: monolith ready, loading it" >&2
load monolith "$monolith"
stop_all

# The split deployment: each process has a public and an internal port; one service token.
shop_port="$(free_port)" shop_internal="$(free_port)"
catalog_port="$(free_port)" catalog_internal="$(free_port)"
payments_port="$(free_port)" payments_internal="$(free_port)"
split_common=(
    "${common[@]}"
    SHOP__DATABASE__URL="$postgres_base/split"
    SHOP__INTERNAL__TOKEN="$(random_secret)"
)
shop_env=(
    "${split_common[@]}"
    SHOP__DATA_DIR="$work/split-shop"
    SHOP__PLACEMENT__CONTEXTS=auth,orders,notifications
    SHOP__PLACEMENT__CATALOG_URL="http://127.0.0.1:$catalog_internal"
    SHOP__PLACEMENT__PAYMENTS_URL="http://127.0.0.1:$payments_internal"
    SHOP__ROUTING__CATALOG_URL="http://127.0.0.1:$catalog_port"
    SHOP__SERVER__PORT="$shop_port"
    SHOP__INTERNAL__PORT="$shop_internal"
    SHOP__TELEMETRY__SERVICE_NAME=shop
)
catalog_env=(
    "${split_common[@]}"
    SHOP__DATA_DIR="$work/split-catalog"
    SHOP__PLACEMENT__AUTH_URL="http://127.0.0.1:$shop_internal"
    SHOP__SERVER__PORT="$catalog_port"
    SHOP__INTERNAL__PORT="$catalog_internal"
    SHOP__TELEMETRY__SERVICE_NAME=shop-catalog
)
payments_env=(
    "${split_common[@]}"
    SHOP__DATA_DIR="$work/split-payments"
    SHOP__PLACEMENT__AUTH_URL="http://127.0.0.1:$shop_internal"
    SHOP__SERVER__PORT="$payments_port"
    SHOP__INTERNAL__PORT="$payments_internal"
    SHOP__TELEMETRY__SERVICE_NAME=shop-payments
)
split="http://127.0.0.1:$shop_port"
launch split-catalog env "${catalog_env[@]}" "$shop" serve --contexts catalog
catalog_pid="$started"
launch split-payments env "${payments_env[@]}" "$shop" serve --contexts payments
payments_pid="$started"
launch split-shop env "${shop_env[@]}" "$shop" serve --contexts auth,orders,notifications
wait_ready split-shop "$split" "$started"
wait_ready split-catalog "http://127.0.0.1:$catalog_port" "$catalog_pid"
wait_ready split-payments "http://127.0.0.1:$payments_port" "$payments_pid"
prepare shop_env "$split"
echo "bench-split: split deployment ready, loading it" >&2
load split "$split"
remote_calls="$(curl -fs "$split/metrics" |
    awk '/^shop_boundary_calls_total\{.*placement="remote"/ { n += $NF } END { print n + 0 }')"
stop_all

# The table.
python3 - "$work" "$remote_calls" <<'EOF'
import sys

def parse(path):
    fields = open(path).read().split()[1:]
    return dict(field.split("=", 1) for field in fields)

work = sys.argv[1]
monolith, split = parse(f"{work}/monolith.result"), parse(f"{work}/split.result")
split_warmup = parse(f"{work}/split.warmup-result")
remote_calls = int(sys.argv[2])
print(f"{'deployment':<10} {'requests/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'confirmed':>9} "
      f"{'errors':>6} {'shop CPU ms/checkout':>20}  statuses")
for name, row in (("monolith", monolith), ("split", split)):
    errors = int(row["non_2xx"]) + int(row["other_2xx"]) + int(row["socket_errors"])
    rate = int(row["requests"]) / float(row["seconds"])
    cpu = int(row["shop_cpu_ms"]) / max(1, int(row["requests"]))
    print(f"{name:<10} {rate:>10.1f} {float(row['p50_ms']):>8.2f} {float(row['p99_ms']):>8.2f} "
          f"{row['confirmed']:>9} {errors:>6} {cpu:>20.2f}  {row['statuses']}")
p50 = float(split["p50_ms"]) / float(monolith["p50_ms"])
p99 = float(split["p99_ms"]) / float(monolith["p99_ms"])
throughput = (int(split["requests"]) / float(split["seconds"])) / (
    int(monolith["requests"]) / float(monolith["seconds"]))
print(f"split/monolith p50 ratio {p50:.2f}, p99 ratio {p99:.2f}, throughput ratio {throughput:.2f}")
checkouts = int(split["requests"]) + int(split_warmup["requests"])
if checkouts:
    print(f"split: {remote_calls / checkouts:.1f} remote port calls per checkout "
          f"({remote_calls} for {checkouts} checkouts, warm-up included)")
verdict = "yes" if p50 <= 1.3 else "NO"
print(f"split p50 <= 1.3 x monolith p50: {verdict}")
failed = any(int(row["confirmed"]) == 0 or int(row["non_2xx"]) or int(row["other_2xx"]) or int(row["socket_errors"])
             for row in (monolith, split))
if failed:
    print("some checkouts did not end confirmed: see the statuses above")
    sys.exit(1)
EOF

if [ "$criterion" = true ]; then
    cargo bench -p remote --bench boundary
fi
