#!/usr/bin/env python3
"""Load a running shop with concurrent checkouts and check its invariants afterwards.

    ./scripts/load.py [--url http://127.0.0.1:8080] [--customers 20] [--orders 400]
                      [--concurrency 32] [--stock 100]

Registers customers, creates a product as an administrator (created with `shop admin
create` beforehand; see --admin-email/--admin-password), then places `--orders` orders of
one unit each from `--concurrency` threads, every one with its own Idempotency-Key, a tenth
of them with a declined card. It prints throughput and latency percentiles, then checks
what must hold whatever the load: exactly `min(stock, approved orders)` orders confirmed,
stock never negative and nothing left reserved, every customer welcomed exactly once.
Standard library only, so it runs wherever Python 3 does. Exit code 1 if an invariant fails.
"""

import argparse
import json
import statistics
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor


def call(base, method, path, body=None, token=None, headers=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", "Bearer " + token)
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def token(base, email, password):
    status, body = call(base, "POST", "/api/auth/login", {"email": email, "password": password})
    if status != 200:
        sys.exit(f"cannot log in as {email}: {status} {body}")
    return body["access_token"]


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--admin-email", default="admin@example.com")
    parser.add_argument("--admin-password", default="admin password")
    parser.add_argument("--customers", type=int, default=20)
    parser.add_argument("--orders", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--stock", type=int, default=100)
    args = parser.parse_args()
    base = args.url.rstrip("/")
    run = uuid.uuid4().hex[:8]

    admin = token(base, args.admin_email, args.admin_password)
    status, product = call(base, "POST", "/api/catalog/products", {
        "sku": f"LOAD-{run}", "name": f"Load test {run}",
        "price": {"amount_minor": 1000, "currency": "EUR"},
        "category": "load", "initial_stock": args.stock,
    }, token=admin)
    if status != 201:
        sys.exit(f"cannot create the product: {status} {product}")

    customers = []
    for i in range(args.customers):
        email = f"load-{run}-{i}@example.com"
        call(base, "POST", "/api/auth/register",
             {"email": email, "password": "load password", "display_name": f"Load {i}"})
        customers.append(token(base, email, "load password"))

    address = {"name": "Load Test", "line1": "1 Load Street", "city": "Benchville",
               "postal_code": "B1", "country": "GB"}
    latencies, statuses, lock = [], {}, threading.Lock()

    def place(i):
        card = "tok_declined" if i % 10 == 9 else "tok_visa"
        body = {"lines": [{"product_id": product["id"], "quantity": 1}],
                "shipping_address": address, "payment_token": card}
        started = time.perf_counter()
        status, order = call(base, "POST", "/api/orders", body, token=customers[i % len(customers)],
                             headers={"Idempotency-Key": f"load-{run}-{i}"})
        elapsed = time.perf_counter() - started
        outcome = order.get("status") if isinstance(order, dict) and "status" in order else f"http {status}"
        with lock:
            latencies.append(elapsed)
            statuses[outcome] = statuses.get(outcome, 0) + 1

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        list(pool.map(place, range(args.orders)))
    wall = time.perf_counter() - started

    print(f"{args.orders} checkouts from {args.concurrency} threads in {wall:.2f}s: "
          f"{args.orders / wall:.1f} orders/s")
    print(f"latency p50 {percentile(latencies, 0.5) * 1000:.0f} ms, "
          f"p95 {percentile(latencies, 0.95) * 1000:.0f} ms, "
          f"p99 {percentile(latencies, 0.99) * 1000:.0f} ms, "
          f"max {max(latencies) * 1000:.0f} ms, mean {statistics.mean(latencies) * 1000:.0f} ms")
    print("outcomes:", dict(sorted(statuses.items())))

    failures = []
    approved = sum(1 for i in range(args.orders) if i % 10 != 9)
    expected_confirmed = min(args.stock, approved)
    if statuses.get("confirmed", 0) != expected_confirmed:
        failures.append(f"{statuses.get('confirmed', 0)} confirmed, expected {expected_confirmed}")
    unexpected = set(statuses) - {"confirmed", "rejected", "payment_failed"}
    if unexpected:
        failures.append(f"unexpected outcomes {unexpected}")
    _, now = call(base, "GET", f"/api/catalog/products/{product['id']}")
    stock = now["stock"]
    if stock != {"available": args.stock - expected_confirmed, "reserved": 0}:
        failures.append(f"stock is {stock}, expected {args.stock - expected_confirmed} available, 0 reserved")
    print("stock after:", stock)

    # Welcome messages arrive through the outbox and the background bus: give it a moment.
    deadline = time.monotonic() + 30
    while True:
        welcomed = 0
        for customer in customers:
            _, page = call(base, "GET", "/api/notifications?per_page=100", token=customer)
            welcomed += sum(1 for n in page["items"] if n["kind"] == "welcome") == 1
        if welcomed == len(customers) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    if welcomed != len(customers):
        failures.append(f"{welcomed} of {len(customers)} customers welcomed exactly once")

    if failures:
        print("INVARIANTS FAILED:", *failures, sep="\n  ")
        return 1
    print("invariants hold: confirmed = min(stock, approved), stock consistent, one welcome each")
    return 0


if __name__ == "__main__":
    sys.exit(main())
