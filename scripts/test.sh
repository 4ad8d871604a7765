#!/usr/bin/env bash
# Runs the whole test suite: unit, integration (SQLite and Postgres), black-box HTTP,
# architecture, contract and tidy tests, then API fuzzing and the admin console in a real
# browser (scripts/browser-test.sh, Playwright driving Debian's Chromium). Starts a throwaway
# Postgres and a throwaway NATS server with JetStream for the run and removes them afterwards.
# Extra arguments go to `cargo nextest run` (e.g. a test name filter).
set -euo pipefail
cd "$(dirname "$0")/.."

pg_dir="$(mktemp -d -t shop-test-pg.XXXXXX)"
nats_dir="$(mktemp -d -t shop-test-nats.XXXXXX)"
cleanup() {
    scripts/postgres.sh stop "$pg_dir"
    scripts/nats.sh stop "$nats_dir"
    rm -rf "$pg_dir" "$nats_dir"
}
trap cleanup EXIT

# Each test drops its database when it ends (testkit); a small WAL keeps the many database
# copies the run makes from piling up as segments, so the run needs little disk.
SHOP_TEST_DATABASE_URL="$(POSTGRES_OPTIONS="-c max_wal_size=64MB -c min_wal_size=32MB ${POSTGRES_OPTIONS:-}" \
    scripts/postgres.sh start "$pg_dir")"
export SHOP_TEST_DATABASE_URL
echo "test.sh: throwaway Postgres at $SHOP_TEST_DATABASE_URL" >&2
SHOP_TEST_NATS_URL="$(scripts/nats.sh start "$nats_dir")"
SHOP_TEST_NATS_SERVER="$(cat "$nats_dir/server")"
export SHOP_TEST_NATS_URL SHOP_TEST_NATS_SERVER
echo "test.sh: throwaway NATS (JetStream) at $SHOP_TEST_NATS_URL" >&2

if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast "$@"
else
    echo "test.sh: cargo-nextest not found; using cargo test" >&2
    cargo test --workspace --no-fail-fast "$@"
fi
# The whole suite (no filter given) also runs the doctests, which nextest does not run, and
# fuzzes the HTTP API against its OpenAPI document (scripts/fuzz.sh, Schemathesis), and
# drives the admin console in headless Chromium (scripts/browser-test.sh, Playwright).
if [ $# -eq 0 ]; then
    cargo test --workspace --doc --quiet
    ./scripts/fuzz.sh
    ./scripts/browser-test.sh
fi
