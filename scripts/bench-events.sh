#!/usr/bin/env bash
# What carrying integration events across processes costs: the same burst of events through the
# in-process bus and through NATS JetStream, in one run, with throughput and end-to-end latency
# (commit to handled) of each and their ratio.
#
#   scripts/bench-events.sh [--events 10000] [--transactions 10] [--warmup 100] [--lone 100]
#                           [--deadline 1200]
#
# in-process: one `shop serve` running every context, no broker: the relay hands each event of
#             auth's outbox to notifications' inbox itself.
# across:     the shop without notifications (auth, catalog, payments, orders) and
#             `shop serve --contexts notifications` in a process of its own, with broker.url
#             set: the shop's relay publishes to JetStream, notifications' durable consumer
#             stores into its inbox.
# Each deployment gets a fresh database on one throwaway Postgres (scripts/postgres.sh); the
# broker is a throwaway NATS server with JetStream (scripts/nats.sh).
#
# The events are `auth.user_registered.v1`, which notifications really handles (it records a
# recipient and a welcome message, then sends it). Registering users over HTTP would measure
# argon2, so psql writes them straight into auth's outbox, with payloads as auth writes them,
# in --transactions transactions of --events/--transactions rows each, committed back to back;
# after each COMMIT it notes the time (clock_timestamp(), on the same clock as the shop's) and
# the highest outbox seq, in a `bench.commits` table of the throwaway database. Each of its
# transactions also sends the wake-up a publisher's commit sends (pg_notify on auth's channel,
# docs/EVENTS.md "Waking up, not polling"), so the relay takes the rows at once. --warmup events
# go through first, uncounted, so that pools, the stream and the durable consumer exist; then
# the database is analyzed, as autovacuum would be within the shop's first minute.
#
# An event is handled when its welcome message was sent: notifications.sent_at, set after the
# consumer's transaction committed. Latency is sent_at minus its transaction's commit time;
# throughput is the events over first commit to last sent_at. Stages, medians: "to relay",
# commit to the start of the relay pass that took it (outbox.dispatched_at); "to inbox", from
# there to its row in notifications' inbox (inbox.received_at: in one process the relay
# stamps it with its pass's start too, so this stage reads 0 there); "in inbox", from there
# to sent. The script polls the database (bounded by --deadline seconds) until every event is
# handled, and fails if any event is parked.
#
# In a burst, latency is mostly queueing. So, before the burst, --lone events go one at a
# time, each committed once the previous one was handled: the trip of one event through an
# idle system. To wake the relay as a publisher in the shop does, each is written parked
# (status failed) and put back in line by `POST /api/admin/events/{id}/retry` (an
# administrator made with `shop admin create`), whose UPDATE sets next_attempt_at to its
# time, commits and wakes the relay; its latency is sent_at minus next_attempt_at.
#
# It prints, per deployment, the burst's events/s, p50/p99/max latency, the stages and the
# CPU time per event of the shop processes, of nats-server and of Postgres, the lone events'
# p50/p99/max and stages, then the across/in-process ratios. Messages go to the `log` sender
# at log level warn (nothing is written), in both deployments.
# Figures and analysis: docs/EVENTS.md, "Events across processes: what it costs".
#
# The figures are only comparable within one run on one machine: quote the ratios.
set -euo pipefail
cd "$(dirname "$0")/.."

events=10000
transactions=10
warmup=100
lone=100
deadline=1200
while [ $# -gt 0 ]; do
    case "$1" in
        --events) events="$2"; shift 2 ;;
        --transactions) transactions="$2"; shift 2 ;;
        --warmup) warmup="$2"; shift 2 ;;
        --lone) lone="$2"; shift 2 ;;
        --deadline) deadline="$2"; shift 2 ;;
        *) echo "usage: scripts/bench-events.sh [--events N] [--transactions N] [--warmup N] [--lone N] [--deadline S]" >&2; exit 2 ;;
    esac
done
if [ "$events" -lt 1 ] || [ "$transactions" -lt 1 ] || [ $((events % transactions)) -ne 0 ]; then
    echo "bench-events.sh: --events must be a positive multiple of --transactions" >&2
    exit 2
fi
if [ "$warmup" -lt 1 ] || [ "$lone" -lt 1 ]; then
    echo "bench-events.sh: --warmup and --lone must be at least 1" >&2
    exit 2
fi
per_transaction=$((events / transactions))

cargo build --release --quiet -p shop
shop="$PWD/target/release/shop"

work="$(mktemp -d -t shop-bench-events.XXXXXX)"
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
    scripts/nats.sh stop "$work/nats"
    scripts/postgres.sh stop "$work/pg"
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
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
            echo "bench-events.sh: $name exited before it was ready:" >&2
            tail -n 20 "$work/$name.log" >&2
            exit 1
        fi
        sleep 0.1
    done
    echo "bench-events.sh: $name not ready after 60 s:" >&2
    tail -n 20 "$work/$name.log" >&2
    exit 1
}

# CPU time (user and system, all threads) of the given PIDs so far, in ms.
cpu_ms() {
    local pid ticks=0
    for pid in "$@"; do
        # Fields 14 and 15 of /proc/PID/stat, counted after the command name's parenthesis.
        ticks=$((ticks + $(sed 's/.*) //' "/proc/$pid/stat" | awk '{ print $12 + $13 }')))
    done
    echo $((ticks * 1000 / $(getconf CLK_TCK)))
}

# CPU time of the throwaway Postgres so far, in ms: the postmaster, the children it reaped
# (psql's short sessions) and the processes it runs now (the shop's pooled sessions, ...).
postgres_cpu_ms() {
    python3 - "$(head -n 1 "$work/pg/data/postmaster.pid")" <<'EOF'
import os, sys

postmaster = sys.argv[1]
ticks = 0
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        continue
    # After the command name: state, ppid, ..., utime (14th field), stime, cutime, cstime.
    if pid == postmaster:
        ticks += sum(int(field) for field in fields[11:15])
    elif fields[1] == postmaster:
        ticks += int(fields[11]) + int(fields[12])
print(ticks * 1000 // os.sysconf("SC_CLK_TCK"))
EOF
}

# psql on deployment $1's database: quiet, unaligned, no headers, stop at the first error.
sql() {
    local database="$1"
    shift
    psql -X -q -A -t -v ON_ERROR_STOP=1 "$postgres_base/$database" "$@"
}

# The columns of an `auth.user_registered.v1` outbox row for event id $1 and user number $2,
# as auth writes them (the payload is the serde form of auth_api::UserRegistered).
event_columns() {
    local id="$1" user="$2"
    echo "$id, 'auth.user_registered.v1', ($id)::text,
          json_build_object('user_id', $id,
                            'email', 'bench-' || $user || '@example.com',
                            'display_name', 'Bench ' || $user,
                            'registered_at', clock_timestamp())::text,
          clock_timestamp()"
}

# Commits $3 transactions of $4 events each into auth's outbox of database $1, back to back in
# one session, noting each commit in bench.commits under run $2.
commit_events() {
    local database="$1" run="$2" count="$3" size="$4" i
    {
        echo "SET TimeZone = 'UTC';"
        for i in $(seq 1 "$count"); do
            cat <<SQL
BEGIN;
INSERT INTO auth.outbox (id, name, aggregate_id, payload, occurred_at, status, attempts,
                         next_attempt_at)
SELECT $(event_columns id "'$run-$i-' || n"), 'pending', 0, clock_timestamp()
FROM (SELECT gen_random_uuid() AS id, n FROM generate_series(1, $size) AS n) AS fresh;
SELECT pg_notify('shop_wake_auth', 'bench-events.sh');
COMMIT;
INSERT INTO bench.commits (run, upto_seq, committed_at)
SELECT '$run', max(seq), clock_timestamp() FROM auth.outbox;
SQL
        done
    } | sql "$database"
}

# The events of database $1 not handled yet, and those parked (outbox or inbox).
progress() {
    sql "$1" -F ' ' -c "
        SELECT (SELECT count(*) FROM auth.outbox)
             - (SELECT count(*) FROM notifications.notifications WHERE sent_at IS NOT NULL),
               (SELECT count(*) FROM auth.outbox WHERE status = 'failed'
                                                   AND last_error <> 'bench-events.sh')
             + (SELECT count(*) FROM notifications.inbox WHERE status = 'failed')"
}

# Waits until every event of database $1 was handled, at most --deadline seconds (polling
# every $2 seconds); fails as soon as an event is parked.
wait_handled() {
    local database="$1" every="$2" started_at counts unhandled parked
    started_at="$(date +%s)"
    while true; do
        counts="$(progress "$database")"
        unhandled="${counts% *}"
        parked="${counts#* }"
        if [ "$parked" -ne 0 ]; then
            echo "bench-events.sh: $database: $parked events parked; the logs:" >&2
            tail -n 20 "$work"/*.log >&2
            exit 1
        fi
        if [ "$unhandled" -eq 0 ]; then
            return 0
        fi
        if [ $(($(date +%s) - started_at)) -ge "$deadline" ]; then
            echo "bench-events.sh: $database: $unhandled events not handled after $deadline s" >&2
            exit 1
        fi
        sleep "$every"
    done
}

# Sends $3 events of database $1 one at a time through the shop at $2 (an administrator's
# token in $4): each is written parked, put back in line over HTTP, and waited for.
lone_events() {
    local database="$1" url="$2" count="$3" token="$4" i id
    for i in $(seq 1 "$count"); do
        id="$(cat /proc/sys/kernel/random/uuid)"
        sql "$database" -c "
            SET TimeZone = 'UTC';
            INSERT INTO auth.outbox (id, name, aggregate_id, payload, occurred_at, status,
                                     attempts, next_attempt_at, last_error)
            SELECT $(event_columns "'$id'::uuid" "'lone-$i'"), 'failed', 8, clock_timestamp(),
                   'bench-events.sh';
            INSERT INTO bench.lone (event_id) VALUES ('$id')"
        curl -fsS -o /dev/null -X POST -H "Authorization: Bearer $token" \
            "$url/api/admin/events/$id/retry"
        wait_handled "$database" 0.02
    done
}

# Figures of the events `events` (a FROM clause yielding event_id, committed_at) of database
# $1, as key=value words with prefix $2.
figures() {
    local database="$1" prefix="$2" events="$3"
    sql "$database" -c "
        WITH timed AS (
            SELECT e.committed_at, o.dispatched_at, i.received_at, n.sent_at
            FROM $events
            JOIN auth.outbox o ON o.id = e.event_id
            JOIN notifications.inbox i ON i.event_id = e.event_id AND i.consumer = 'notifications'
            JOIN notifications.notifications n ON n.event_id = e.event_id
        ),
        ms AS (
            SELECT extract(epoch FROM sent_at - committed_at) * 1000 AS latency,
                   extract(epoch FROM dispatched_at - committed_at) * 1000 AS to_relay,
                   extract(epoch FROM received_at - dispatched_at) * 1000 AS to_inbox,
                   extract(epoch FROM sent_at - received_at) * 1000 AS in_inbox
            FROM timed
        )
        SELECT format('${prefix}events=%s ${prefix}seconds=%s ${prefix}p50_ms=%s ${prefix}p99_ms=%s '
                      '${prefix}max_ms=%s ${prefix}to_relay_p50_ms=%s ${prefix}to_inbox_p50_ms=%s '
                      '${prefix}in_inbox_p50_ms=%s',
                      count(*),
                      (SELECT extract(epoch FROM max(sent_at) - min(committed_at)) FROM timed),
                      percentile_cont(0.5) WITHIN GROUP (ORDER BY latency),
                      percentile_cont(0.99) WITHIN GROUP (ORDER BY latency),
                      max(latency),
                      percentile_cont(0.5) WITHIN GROUP (ORDER BY to_relay),
                      percentile_cont(0.5) WITHIN GROUP (ORDER BY to_inbox),
                      percentile_cont(0.5) WITHIN GROUP (ORDER BY in_inbox))
        FROM ms"
}

# Runs the warm-up, the lone events and the burst on deployment $1 (its database), served at
# $2 with an administrator's token $3; $4 is the PID of the broker it uses, or "" for none;
# its shop processes are $5.... The figures go to $work/$1.result as key=value words.
measure() {
    local database="$1" url="$2" token="$3" broker="$4" before after
    local broker_before=0 broker_after=0 postgres_before postgres_after
    shift 4
    sql "$database" -c "
        CREATE SCHEMA bench;
        CREATE TABLE bench.commits (run text NOT NULL, upto_seq bigint NOT NULL,
                                    committed_at timestamptz NOT NULL);
        CREATE TABLE bench.lone (event_id uuid PRIMARY KEY)"
    commit_events "$database" warmup 1 "$warmup"
    wait_handled "$database" 0.2
    # What autovacuum does within a minute of a shop's start: the burst then meets the
    # statistics of a quiet shop (a few rows, none pending), as in production, rather than
    # those of tables never analyzed, with which Postgres plans the inbox claim as a scan of
    # the whole inbox per pending row (docs/EVENTS.md).
    sql "$database" -c "ANALYZE"
    echo "bench-events: $database: $lone events one at a time" >&2
    lone_events "$database" "$url" "$lone" "$token"
    # Where the burst's first transaction starts from.
    sql "$database" -c "INSERT INTO bench.commits (run, upto_seq, committed_at)
                        SELECT 'lone', max(seq), clock_timestamp() FROM auth.outbox"
    echo "bench-events: $database: burst of $events" >&2
    before="$(cpu_ms "$@")"
    postgres_before="$(postgres_cpu_ms)"
    if [ -n "$broker" ]; then broker_before="$(cpu_ms "$broker")"; fi
    commit_events "$database" burst "$transactions" "$per_transaction"
    wait_handled "$database" 0.2
    after="$(cpu_ms "$@")"
    postgres_after="$(postgres_cpu_ms)"
    if [ -n "$broker" ]; then broker_after="$(cpu_ms "$broker")"; fi
    {
        # A burst event's commit is the first noted commit at or after its seq.
        figures "$database" "" "
            (SELECT o.id AS event_id, c.committed_at
             FROM auth.outbox o
             JOIN (SELECT run, committed_at, upto_seq,
                          lag(upto_seq, 1, 0::bigint) OVER (ORDER BY upto_seq) AS after_seq
                   FROM bench.commits) c
               ON o.seq > c.after_seq AND o.seq <= c.upto_seq AND c.run = 'burst') AS e"
        figures "$database" "lone_" "
            (SELECT o.id AS event_id, o.next_attempt_at AS committed_at
             FROM auth.outbox o JOIN bench.lone l ON l.event_id = o.id) AS e"
        echo "shop_cpu_ms=$((after - before)) nats_cpu_ms=$((broker_after - broker_before))" \
            "postgres_cpu_ms=$((postgres_after - postgres_before))"
    } >"$work/$database.result"
}

# Makes an administrator with the configuration in the array named $1 and logs in at $2;
# prints the access token.
admin_token() {
    local -n admin_env="$1"
    local url="$2"
    env "${admin_env[@]}" SHOP_ADMIN_PASSWORD="admin password" \
        "$shop" admin create --email admin@example.com >/dev/null
    curl -fsS -X POST "$url/api/auth/login" -H 'Content-Type: application/json' \
        -d '{"email": "admin@example.com", "password": "admin password"}' |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])'
}

postgres_url="$(scripts/postgres.sh start "$work/pg")"
postgres_base="${postgres_url%/*}"
for database in inprocess across; do
    sql postgres -c "CREATE DATABASE $database" >/dev/null
done
nats_url="$(scripts/nats.sh start "$work/nats")"
nats_pid="$(cat "$work/nats/pid")"

common=(
    SHOP__LOG__FILTER=warn
    SHOP__CATALOG__SEED_DEMO=false
    SHOP__NOTIFICATIONS__SENDER=log
    SHOP__AUTH__JWT_SECRET="$(random_secret)"
)

echo "bench-events: per deployment, $warmup events uncounted, $lone one at a time, then a" \
    "burst of $events auth.user_registered.v1 in $transactions transactions of" \
    "$per_transaction" >&2

# In process: every context in one shop, no broker.
port="$(free_port)"
inprocess_env=(
    "${common[@]}"
    SHOP__DATABASE__URL="$postgres_base/inprocess"
    SHOP__DATA_DIR="$work/inprocess"
    SHOP__SERVER__PORT="$port"
)
inprocess="http://127.0.0.1:$port"
launch inprocess env "${inprocess_env[@]}" "$shop" serve
wait_ready inprocess "$inprocess" "$started"
token="$(admin_token inprocess_env "$inprocess")"
measure inprocess "$inprocess" "$token" "" "${pids[@]}"
stop_all

# Across processes: notifications in a process of its own, events through JetStream.
shop_port="$(free_port)" shop_internal="$(free_port)"
notifications_port="$(free_port)" notifications_internal="$(free_port)"
across_common=(
    "${common[@]}"
    SHOP__DATABASE__URL="$postgres_base/across"
    SHOP__INTERNAL__TOKEN="$(random_secret)"
    SHOP__BROKER__URL="$nats_url"
    SHOP__BROKER__STREAM=BENCH_EVENTS
    SHOP__BROKER__SUBJECT_PREFIX=bench.events
)
notifications_env=(
    "${across_common[@]}"
    SHOP__DATA_DIR="$work/across-notifications"
    SHOP__PLACEMENT__AUTH_URL="http://127.0.0.1:$shop_internal"
    SHOP__SERVER__PORT="$notifications_port"
    SHOP__INTERNAL__PORT="$notifications_internal"
    SHOP__TELEMETRY__SERVICE_NAME=shop-notifications
)
shop_env=(
    "${across_common[@]}"
    SHOP__DATA_DIR="$work/across-shop"
    SHOP__PLACEMENT__CONTEXTS=auth,catalog,payments,orders
    SHOP__PLACEMENT__NOTIFICATIONS_URL="http://127.0.0.1:$notifications_internal"
    SHOP__ROUTING__NOTIFICATIONS_URL="http://127.0.0.1:$notifications_port"
    SHOP__SERVER__PORT="$shop_port"
    SHOP__INTERNAL__PORT="$shop_internal"
    SHOP__TELEMETRY__SERVICE_NAME=shop
)
across="http://127.0.0.1:$shop_port"
launch across-notifications env "${notifications_env[@]}" "$shop" serve --contexts notifications
notifications_pid="$started"
launch across-shop env "${shop_env[@]}" "$shop" serve
wait_ready across-shop "$across" "$started"
wait_ready across-notifications "http://127.0.0.1:$notifications_port" "$notifications_pid"
token="$(admin_token shop_env "$across")"
measure across "$across" "$token" "$nats_pid" "${pids[@]}"
stop_all

# The tables.
python3 - "$work" <<'EOF'
import sys

def parse(path):
    fields = open(path).read().split()
    return {key: float(value) for key, value in (field.split("=", 1) for field in fields)}

work = sys.argv[1]
names = (("inprocess", "in-process"), ("across", "across"))
rows = {name: parse(f"{work}/{name}.result") for name, _ in names}
print(f"burst: {rows['inprocess']['events']:.0f} events committed back to back, latency in ms")
stages = ("to relay", "to inbox", "in inbox")
def stage_columns(row, prefix=""):
    return " ".join(f"{row[prefix + key.replace(' ', '_') + '_p50_ms']:>8.1f}" for key in stages)
print(f"{'deployment':<11} {'events/s':>8} {'p50':>8} {'p99':>8} {'max':>8} | stage p50s: "
      f"{' '.join(f'{key:>8}' for key in stages)} | CPU ms/event: {'shop':>5} {'NATS':>5} {'Postgres':>8}")
for name, label in names:
    row = rows[name]
    events = row["events"]
    print(f"{label:<11} {events / row['seconds']:>8.1f} {row['p50_ms']:>8.1f} {row['p99_ms']:>8.1f} "
          f"{row['max_ms']:>8.1f} | {'':>12}{stage_columns(row)} | {'':>13}"
          f"{row['shop_cpu_ms'] / events:>5.2f} {row['nats_cpu_ms'] / events:>5.2f} "
          f"{row['postgres_cpu_ms'] / events:>8.2f}")
print(f"one at a time: {rows['inprocess']['lone_events']:.0f} events, each committed once the "
      f"previous one was handled, latency in ms")
print(f"{'deployment':<11} {'p50':>8} {'p99':>8} {'max':>8} | stage p50s: "
      f"{' '.join(f'{key:>8}' for key in stages)}")
for name, label in names:
    row = rows[name]
    print(f"{label:<11} {row['lone_p50_ms']:>8.1f} {row['lone_p99_ms']:>8.1f} {row['lone_max_ms']:>8.1f} "
          f"| {'':>12}{stage_columns(row, 'lone_')}")
inprocess, across = rows["inprocess"], rows["across"]
def ratio(key):
    return across[key] / inprocess[key]
throughput = (across["events"] / across["seconds"]) / (inprocess["events"] / inprocess["seconds"])
def per_event(row, key):
    return row[key] / row["events"]
shop_cpu = per_event(across, "shop_cpu_ms") / per_event(inprocess, "shop_cpu_ms")
postgres_cpu = per_event(across, "postgres_cpu_ms") / per_event(inprocess, "postgres_cpu_ms")
print(f"across/in-process, burst: throughput {throughput:.2f}, p50 {ratio('p50_ms'):.2f}, "
      f"p99 {ratio('p99_ms'):.2f}, max {ratio('max_ms'):.2f}, shop CPU per event {shop_cpu:.2f}, "
      f"Postgres CPU per event {postgres_cpu:.2f}")
print(f"across/in-process, one at a time: p50 {ratio('lone_p50_ms'):.2f}, "
      f"p99 {ratio('lone_p99_ms'):.2f}, max {ratio('lone_max_ms'):.2f}")
EOF
