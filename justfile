# Developer recipes. `just` lists them; CI runs `.ci/run`, which is `just ready`.

_default:
    @just --list

# Run the shop (embedded SQLite under ./data); extra arguments go to `shop`.
run *args:
    cargo run -- {{args}}

# Run every test; starts and removes a throwaway Postgres. Arguments filter tests.
test *args:
    ./scripts/test.sh {{args}}

# Formatting and clippy, as CI checks them.
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings

# Format the code.
fmt:
    cargo fmt --all

# The architecture lint, and the generated context map's freshness.
arch:
    cargo run -q -p archlint -- check
    cargo run -q -p archlint -- graph --check docs/CONTEXT_MAP.md

# The versioned contracts: the committed JSON Schemas still match the types (docs/CONTRACTS.md).
contracts:
    cargo run -q -p contracts -- check

# Rewrite the contract files after a compatible change (refuses an incompatible one).
contracts-write:
    cargo run -q -p contracts -- write

# Fuzz the public API against its OpenAPI document with Schemathesis (every check).
fuzz:
    ./scripts/fuzz.sh

# Regenerate the context map picture in docs/CONTEXT_MAP.md.
graph:
    cargo run -q -p archlint -- graph --write docs/CONTEXT_MAP.md

# Checkout throughput, latency and invariants of a release build on SQLite and Postgres.
bench *args:
    ./scripts/bench.sh {{args}}

# The cost of extraction: checkout p50/p99 of the monolith and the split deployment, one run.
bench-split *args:
    ./scripts/bench-split.sh {{args}}

# The cost of carrying events across processes: 10,000 events in one process and through NATS.
bench-events *args:
    ./scripts/bench-events.sh {{args}}

# Reads and checkouts beside pgbench on the same Postgres, then on SQLite (docs/PERFORMANCE.md).
bench-perf *args:
    ./scripts/bench-perf.sh {{args}}

# Start a local Postgres in .pg/ and print the URL to export as SHOP__DATABASE__URL.
db-up:
    @scripts/postgres.sh start "$PWD/.pg"

# Stop the local Postgres started by db-up and delete its data.
db-down:
    scripts/postgres.sh stop "$PWD/.pg"
    rm -rf .pg

# Everything CI does.
ready:
    bash .ci/run
