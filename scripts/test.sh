#!/usr/bin/env bash
# Runs the whole test suite: unit, integration (SQLite and Postgres), black-box HTTP,
# architecture, contract and tidy tests, then API fuzzing. Starts a throwaway Postgres for the run and removes it afterwards.
# Extra arguments go to `cargo nextest run` (e.g. a test name filter).
set -euo pipefail
cd "$(dirname "$0")/.."

pg_dir="$(mktemp -d -t shop-test-pg.XXXXXX)"
cleanup() {
    scripts/postgres.sh stop "$pg_dir"
    rm -rf "$pg_dir"
}
trap cleanup EXIT

SHOP_TEST_DATABASE_URL="$(scripts/postgres.sh start "$pg_dir")"
export SHOP_TEST_DATABASE_URL
echo "test.sh: throwaway Postgres at $SHOP_TEST_DATABASE_URL" >&2

if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast "$@"
else
    echo "test.sh: cargo-nextest not found; using cargo test" >&2
    cargo test --workspace --no-fail-fast "$@"
fi
# The whole suite (no filter given) also runs the doctests, which nextest does not run, and
# fuzzes the HTTP API against its OpenAPI document (scripts/fuzz.sh, Schemathesis).
if [ $# -eq 0 ]; then
    cargo test --workspace --doc --quiet
    ./scripts/fuzz.sh
fi
