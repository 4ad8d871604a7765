-- pgbench script for scripts/bench-perf.sh: one single-row INSERT, committed on its own (no
-- BEGIN, so each execution is one transaction and one commit). The raw reference for the
-- write side: what the same Postgres commits per second, from the same number of clients,
-- with nothing else in the transaction. scripts/bench-perf.sh creates the table first.
INSERT INTO bench_insert (client, at) VALUES (:client_id, now());
