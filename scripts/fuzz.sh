#!/usr/bin/env bash
# Fuzzes the shop's public API against its own OpenAPI document with Schemathesis, every
# check on (`--checks all`), as an anonymous caller, a customer and an administrator, and
# fails if Schemathesis finds anything.
#
#   scripts/fuzz.sh                 50 examples per operation and phase
#   FUZZ_EXAMPLES=200 scripts/fuzz.sh
#   FUZZ_SEED=123 scripts/fuzz.sh   replay a run (the seed is printed by every run)
#
# Schemathesis is installed, at the versions pinned in scripts/fuzz/requirements.txt, into
# a throwaway virtualenv; the shop runs from a debug build on a throwaway SQLite store on a
# free loopback port. Everything is removed afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

examples="${FUZZ_EXAMPLES:-50}"
work="$(mktemp -d -t shop-fuzz.XXXXXX)"
shop_pid=""
cleanup() {
    if [ -n "$shop_pid" ]; then kill "$shop_pid" 2>/dev/null || true; wait "$shop_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

echo "fuzz.sh: installing Schemathesis into a throwaway virtualenv" >&2
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --disable-pip-version-check -r scripts/fuzz/requirements.txt

echo "fuzz.sh: building and starting the shop" >&2
cargo build --locked -q -p shop
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
base="http://127.0.0.1:$port"
export SHOP__DATA_DIR="$work/data"
export SHOP__SERVER__PORT="$port"
export SHOP__AUTH__JWT_SECRET="fuzzing-key-that-is-at-least-32-bytes-long"
export SHOP__LOG__FILTER="warn"
# Schemathesis sends thousands of logins and registrations from one address; at the shipped
# limits nearly all of them would be answered 429 before their bodies are looked at. The
# limits themselves are tested in tests/api/abuse.rs.
export SHOP__AUTH__RATE_LIMITS__ADDRESS_PER_MINUTE=1000000
export SHOP__AUTH__RATE_LIMITS__ADDRESS_BURST=1000000
export SHOP__AUTH__RATE_LIMITS__ACCOUNT_PER_MINUTE=1000000
export SHOP__AUTH__RATE_LIMITS__ACCOUNT_BURST=1000000
target/debug/shop serve >"$work/shop.log" 2>&1 &
shop_pid=$!
for _ in $(seq 1 100); do
    if curl -sf "$base/readyz" >/dev/null 2>&1; then break; fi
    if ! kill -0 "$shop_pid" 2>/dev/null; then cat "$work/shop.log" >&2; exit 1; fi
    sleep 0.1
done
curl -sf "$base/readyz" >/dev/null || { echo "fuzz.sh: the shop did not become ready" >&2; cat "$work/shop.log" >&2; exit 1; }

# An administrator from the CLI, a customer through the API; a bearer token for each.
SHOP_ADMIN_PASSWORD="fuzz admin password" target/debug/shop admin create --email admin@fuzz.example >/dev/null 2>&1
curl -sf -X POST "$base/api/auth/register" -H 'Content-Type: application/json' \
    -d '{"email": "customer@fuzz.example", "password": "fuzz customer password", "display_name": "Fuzz"}' >/dev/null
token() {
    curl -sf -X POST "$base/api/auth/login" -H 'Content-Type: application/json' \
        -d "{\"email\": \"$1\", \"password\": \"$2\"}" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])'
}
admin="$(token admin@fuzz.example "fuzz admin password")"
customer="$(token customer@fuzz.example "fuzz customer password")"

seed_args=()
if [ -n "${FUZZ_SEED:-}" ]; then seed_args=(--seed "$FUZZ_SEED"); fi
failed=0
run() {
    local who="$1"
    shift
    echo "fuzz.sh: Schemathesis as $who" >&2
    if ! "$work/venv/bin/schemathesis" --config-file scripts/fuzz/schemathesis.toml run \
        "$base/api-docs/openapi.json" --checks all --max-examples "$examples" \
        --generation-database none --no-color "${seed_args[@]}" "$@"; then
        failed=1
    fi
}
run "an anonymous caller"
run "a customer" -H "Authorization: Bearer $customer"
run "an administrator" -H "Authorization: Bearer $admin"

if grep -q "panicked" "$work/shop.log"; then
    echo "fuzz.sh: the shop panicked while fuzzed:" >&2
    grep -A5 "panicked" "$work/shop.log" >&2
    failed=1
fi
if [ "$failed" -ne 0 ]; then
    echo "fuzz.sh: Schemathesis found failures (see above)" >&2
    exit 1
fi
echo "fuzz.sh: no failures" >&2
