#!/usr/bin/env bash
# Drives the admin console (/console) in a real, headless Chromium with Playwright: login,
# the context map and its edges, call counts that grow after an order placed through the API,
# a parked event retried and another discarded from the page, a context's page, the console
# with JavaScript off, and logout (scripts/browser/console_test.py says each step).
#
#   scripts/browser-test.sh
#   SHOP_CHROMIUM=/path/to/chrome scripts/browser-test.sh   another Chromium than /usr/bin/chromium
#   SHOP_BROWSER_HEADED=1 scripts/browser-test.sh           watch it (needs a display)
#
# Chromium is Debian's `chromium` package, installed with apt-get when missing; Playwright is
# installed, at the versions pinned in scripts/browser/requirements.txt, into a throwaway
# virtualenv, and never downloads a browser of its own (no `playwright install`). The shop
# runs from a debug build on a throwaway SQLite store on a free loopback port. Everything but
# the Chromium package is removed afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

chromium="${SHOP_CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$chromium" ]; then
    if [ -n "${SHOP_CHROMIUM:-}" ]; then
        echo "browser-test.sh: SHOP_CHROMIUM=$SHOP_CHROMIUM is not an executable" >&2
        exit 1
    fi
    sudo=()
    if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi
    echo "browser-test.sh: installing Chromium: ${sudo[*]} apt-get install -y --no-install-recommends chromium" >&2
    if ! "${sudo[@]}" apt-get install -y --no-install-recommends chromium >&2; then
        echo "browser-test.sh: that failed; running apt-get update and trying again" >&2
        "${sudo[@]}" apt-get update >&2
        "${sudo[@]}" apt-get install -y --no-install-recommends chromium >&2
    fi
fi
echo "browser-test.sh: Chromium at $chromium: $("$chromium" --version 2>/dev/null || echo unknown version)" >&2

work="$(mktemp -d -t shop-browser.XXXXXX)"
shop_pid=""
cleanup() {
    if [ -n "$shop_pid" ]; then kill "$shop_pid" 2>/dev/null || true; wait "$shop_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

echo "browser-test.sh: installing Playwright into a throwaway virtualenv" >&2
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --disable-pip-version-check -r scripts/browser/requirements.txt

echo "browser-test.sh: building and starting the shop" >&2
cargo build --locked -q -p shop
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
base="http://127.0.0.1:$port"
export SHOP__DATA_DIR="$work/data"
export SHOP__SERVER__PORT="$port"
export SHOP__AUTH__JWT_SECRET="browser-test-key-that-is-at-least-32-bytes-long"
export SHOP__LOG__FILTER="warn"
# An event whose handler fails once is parked at once, so the test parks one by breaking the
# mail directory for a single order, without waiting through retries and their backoff.
export SHOP__MESSAGING__MAX_ATTEMPTS=1
target/debug/shop serve >"$work/shop.log" 2>&1 &
shop_pid=$!
for _ in $(seq 1 100); do
    if curl -sf "$base/readyz" >/dev/null 2>&1; then break; fi
    if ! kill -0 "$shop_pid" 2>/dev/null; then cat "$work/shop.log" >&2; exit 1; fi
    sleep 0.1
done
curl -sf "$base/readyz" >/dev/null || { echo "browser-test.sh: the shop did not become ready" >&2; cat "$work/shop.log" >&2; exit 1; }

admin_email="admin@browser.example"
admin_password="browser admin password"
SHOP_ADMIN_PASSWORD="$admin_password" target/debug/shop admin create --email "$admin_email" >/dev/null 2>&1

echo "browser-test.sh: driving the console at $base/console" >&2
if ! SHOP_BROWSER_BASE_URL="$base" \
    SHOP_BROWSER_ADMIN_EMAIL="$admin_email" \
    SHOP_BROWSER_ADMIN_PASSWORD="$admin_password" \
    SHOP_BROWSER_DATA_DIR="$SHOP__DATA_DIR" \
    SHOP_CHROMIUM="$chromium" \
    "$work/venv/bin/python" scripts/browser/console_test.py; then
    echo "browser-test.sh: the console test failed; the shop's log:" >&2
    cat "$work/shop.log" >&2
    exit 1
fi
if grep -q "panicked" "$work/shop.log"; then
    echo "browser-test.sh: the shop panicked during the test:" >&2
    grep -A5 "panicked" "$work/shop.log" >&2
    exit 1
fi
echo "browser-test.sh: the console works" >&2
