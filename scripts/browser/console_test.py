"""The admin console (/console) in a real Chromium, end to end. Run by scripts/browser-test.sh.

Reads its shop from the environment:

    SHOP_BROWSER_BASE_URL        http://127.0.0.1:PORT of a running shop, started with
                                 SHOP__MESSAGING__MAX_ATTEMPTS=1 (one failed send parks)
    SHOP_BROWSER_ADMIN_EMAIL     an administrator (`shop admin create`)
    SHOP_BROWSER_ADMIN_PASSWORD
    SHOP_BROWSER_DATA_DIR        the shop's SHOP__DATA_DIR (its mail goes to <it>/mail)
    SHOP_CHROMIUM                the Chromium to drive (default /usr/bin/chromium)
    SHOP_BROWSER_HEADED=1        show the browser (needs a display)
    SHOP_BROWSER_ARTIFACTS=DIR   on failure, keep a screenshot and the page's HTML there

Every wait is one of Playwright's auto-waiting assertions (`expect`), except the wait for a
mail file, which polls the file system within a bound. Exits non-zero on the first failure.
"""

import json
import os
import re
import shutil
import sys
import urllib.error
import urllib.request
import uuid

from playwright.sync_api import Page, expect, sync_playwright

BASE = os.environ["SHOP_BROWSER_BASE_URL"].rstrip("/")
ADMIN_EMAIL = os.environ["SHOP_BROWSER_ADMIN_EMAIL"]
ADMIN_PASSWORD = os.environ["SHOP_BROWSER_ADMIN_PASSWORD"]
DATA_DIR = os.environ["SHOP_BROWSER_DATA_DIR"]
MAIL_DIR = os.path.join(DATA_DIR, "mail")
CHROMIUM = os.environ.get("SHOP_CHROMIUM", "/usr/bin/chromium")
HEADED = os.environ.get("SHOP_BROWSER_HEADED") == "1"
ARTIFACTS = os.environ.get("SHOP_BROWSER_ARTIFACTS")

CONTEXTS = ["auth", "catalog", "orders", "payments", "notifications"]
DECLARED_EDGES = [
    "orders->catalog",
    "orders->payments",
    "notifications->auth",
    "notifications->orders",
]
CONFIRMED = "orders.order_confirmed.v1"
# How long the console's auto-refresh gets to show a change.
REFRESH_MS = 15_000

LOGIN_URL = re.compile(re.escape(BASE) + r"/console/login(\?.*)?$")
CONSOLE_URL = re.compile(re.escape(BASE) + r"/console/?(\?.*)?$")
PARKED_CONFIRMED = (
    f'#parked-events tr[data-parked-event][data-owner="notifications"]'
    f'[data-event-name="{CONFIRMED}"]'
)


def step(text: str) -> None:
    print(f"console_test: {text}", flush=True)


# --- The HTTP API (urllib only) --------------------------------------------------------------


def api(method: str, path: str, body=None, token=None, headers=None):
    """Calls the shop's API; returns (status, decoded JSON body or None)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(BASE + path, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    return status, (json.loads(raw) if raw.strip() else None)


def expect_status(what: str, got, wanted) -> dict:
    status, body = got
    assert status in wanted, f"{what}: expected {wanted}, got {status}: {body}"
    return body


def login_token(email: str, password: str) -> str:
    body = expect_status(
        f"login {email}",
        api("POST", "/api/auth/login", {"email": email, "password": password}),
        (200,),
    )
    return body["access_token"]


def new_customer() -> str:
    email = f"customer-{uuid.uuid4().hex[:12]}@browser.example"
    password = "browser customer password"
    expect_status(
        "register a customer",
        api(
            "POST",
            "/api/auth/register",
            {"email": email, "password": password, "display_name": "Browser Test"},
        ),
        (200, 201),
    )
    return login_token(email, password)


def product_in_stock(units: int) -> str:
    page = expect_status(
        "list products", api("GET", "/api/catalog/products?per_page=100"), (200,)
    )
    for product in page["items"]:
        if product.get("active", True) and product["stock"]["available"] >= units:
            return product["id"]
    raise AssertionError(f"no active product with {units} units in stock: {page}")


def place_order(token: str, product_id: str) -> str:
    """Places a one-unit order, expects 201 confirmed, returns its id."""
    body = {
        "lines": [{"product_id": product_id, "quantity": 1}],
        "shipping_address": {
            "name": "Browser Test",
            "line1": "1 Main St",
            "city": "London",
            "postal_code": "N1",
            "country": "GB",
        },
        "payment_token": "tok_visa",
    }
    order = expect_status(
        "place an order",
        api(
            "POST",
            "/api/orders",
            body,
            token=token,
            headers={"Idempotency-Key": str(uuid.uuid4())},
        ),
        (201,),
    )
    assert order["status"] == "confirmed", f"order not confirmed: {order}"
    return order["id"]


# --- The mail directory ----------------------------------------------------------------------


def mail_for(order_id: str) -> bool:
    """Whether a mail mentioning the order is in the mail directory."""
    if not os.path.isdir(MAIL_DIR):
        return False
    for name in os.listdir(MAIL_DIR):
        try:
            with open(os.path.join(MAIL_DIR, name), encoding="utf-8") as file:
                if order_id in file.read():
                    return True
        except OSError:
            pass  # being written, or not a file
    return False


def wait_for_mail(page: Page, order_id: str, timeout_ms: int = 10_000) -> None:
    """Polls the file system (bounded) until the order's mail is there."""
    waited = 0
    while not mail_for(order_id):
        assert waited < timeout_ms, f"no mail for order {order_id} in {MAIL_DIR}"
        page.wait_for_timeout(100)
        waited += 100


def break_mail() -> None:
    """Puts a regular file where the mail directory is: every send fails."""
    if os.path.isdir(MAIL_DIR):
        shutil.rmtree(MAIL_DIR)
    with open(MAIL_DIR, "w", encoding="utf-8") as file:
        file.write("not a directory: console_test.py makes the mail sender fail\n")


def restore_mail() -> None:
    if os.path.isfile(MAIL_DIR):
        os.remove(MAIL_DIR)
    os.makedirs(MAIL_DIR, exist_ok=True)


# --- The console -----------------------------------------------------------------------------


def log_in(page: Page) -> None:
    page.goto(f"{BASE}/console")
    expect(page).to_have_url(LOGIN_URL)
    form = page.locator("form#login")
    form.locator("input[name=email]").fill(ADMIN_EMAIL)
    form.locator("input[name=password]").fill(ADMIN_PASSWORD)
    form.locator("button:not([type=button]):not([type=reset]), input[type=submit]").first.click()
    expect(page).to_have_url(CONSOLE_URL)


def expect_contexts(page: Page) -> None:
    rows = page.locator("#contexts tr[data-context]")
    expect(rows).to_have_count(len(CONTEXTS))
    shown = rows.evaluate_all("rows => rows.map(row => row.dataset.context)")
    assert sorted(shown) == sorted(CONTEXTS), f"contexts shown: {shown}"
    expect(page.locator('#contexts tr[data-context][data-placement="local"]')).to_have_count(
        len(CONTEXTS)
    )
    expect(page.locator("svg#context-map")).to_be_visible()
    for context in CONTEXTS:
        expect(page.locator(f'svg#context-map g[data-context="{context}"]').first).to_be_attached()


def calls_total(page: Page, edge: str):
    return page.locator(f'#edges tr[data-edge="{edge}"] [data-metric="calls-total"]')


def read_calls_total(page: Page, edge: str) -> int:
    cell = calls_total(page, edge)
    expect(cell).to_have_text(re.compile(r"^\s*\d+\s*$"))
    return int(cell.inner_text().strip())


def expect_calls_above(page: Page, edge: str, before: int) -> int:
    cell = calls_total(page, edge)
    # Counts only grow: once the text is not the old number, it is a higher one.
    expect(cell).not_to_have_text(re.compile(rf"^\s*{before}\s*$"), timeout=REFRESH_MS)
    after = read_calls_total(page, edge)
    assert after > before, f"{edge}: calls-total went from {before} to {after}"
    return after


def park_one(page: Page, token: str, product_id: str) -> str:
    """Breaks the mail directory, places an order, waits for its event to show as parked."""
    break_mail()
    order_id = place_order(token, product_id)
    expect(page.locator(PARKED_CONFIRMED)).to_have_count(1, timeout=REFRESH_MS)
    return order_id


def admin_events(token: str, which: str) -> list:
    body = expect_status(
        f"list {which} events",
        api("GET", f"/api/admin/events/{which}?owner=notifications", token=token),
        (200,),
    )
    return body if isinstance(body, list) else body.get("items", [])


def run(browser) -> None:
    context = browser.new_context()
    page = context.new_page()
    current = {"page": page}
    try:
        scenario(browser, page, current)
    except BaseException:
        failed = current["page"]
        print(f"console_test: FAILED on {failed.url}", file=sys.stderr, flush=True)
        try:
            html = failed.content()
            if ARTIFACTS:
                os.makedirs(ARTIFACTS, exist_ok=True)
                failed.screenshot(path=os.path.join(ARTIFACTS, "failure.png"), full_page=True)
                with open(os.path.join(ARTIFACTS, "failure.html"), "w", encoding="utf-8") as f:
                    f.write(html)
            print(f"console_test: the page (first 4000 characters):\n{html[:4000]}", file=sys.stderr)
        except Exception as error:  # the page may be gone
            print(f"console_test: could not read the page: {error}", file=sys.stderr)
        raise
    finally:
        context.close()


def scenario(browser, page: Page, current: dict) -> None:
    step("a. /console without a session redirects to the login form; logging in lands on /console")
    log_in(page)

    step("b. five contexts, each local, in the table and on the map")
    expect_contexts(page)

    step("c. the declared edges, in the table and on the map")
    for edge in DECLARED_EDGES:
        expect(page.locator(f'#edges tr[data-edge="{edge}"]')).to_have_attribute(
            "data-declared", "true"
        )
        expect(page.locator(f'svg#context-map [data-edge="{edge}"]').first).to_be_attached()

    step("d. an order placed through the API raises orders->catalog and orders->payments calls")
    catalog_before = read_calls_total(page, "orders->catalog")
    payments_before = read_calls_total(page, "orders->payments")
    customer = new_customer()
    admin = login_token(ADMIN_EMAIL, ADMIN_PASSWORD)
    product_id = product_in_stock(3)
    first_order = place_order(customer, product_id)
    step(f"   order {first_order} confirmed; waiting for the page to refresh")
    catalog_after = expect_calls_above(page, "orders->catalog", catalog_before)
    payments_after = expect_calls_above(page, "orders->payments", payments_before)
    step(f"   orders->catalog {catalog_before} -> {catalog_after}, "
         f"orders->payments {payments_before} -> {payments_after}")
    # Its mail must be out before the directory is broken, or it would be parked too.
    wait_for_mail(page, first_order)

    step("e. a send that fails parks the event; retry from the console sends the mail")
    second_order = park_one(page, customer, product_id)
    parked = admin_events(admin, "failed")
    assert any(e["event_name"] == CONFIRMED for e in parked), f"parked per the API: {parked}"
    restore_mail()
    page.locator(PARKED_CONFIRMED).locator('button[data-action="retry"]').click()
    expect(page.locator("#parked-events")).to_be_attached()
    expect(page.locator(PARKED_CONFIRMED)).to_have_count(0)
    wait_for_mail(page, second_order)
    step(f"   mail for order {second_order} sent after the retry")

    step("f. discard asks first: cancel keeps the event parked, confirm discards it")
    third_order = park_one(page, customer, product_id)
    row = page.locator(PARKED_CONFIRMED)
    row.locator('a[data-action="discard"]').click()
    expect(page).to_have_url(re.compile(re.escape(BASE) + r"/console/events/[^/?#]+/discard$"))
    expect(page.locator("form#confirm-discard")).to_be_visible()
    expect(page.locator('form#confirm-discard button[data-action="confirm-discard"]')).to_be_visible()
    cancel = page.locator('a[data-action="cancel"]')
    expect(cancel).to_be_visible()
    cancel.click()
    expect(page).not_to_have_url(re.compile(r"/discard$"))
    expect(page.locator("#parked-events")).to_be_attached()
    expect(row).to_have_count(1)
    row.locator('a[data-action="discard"]').click()
    page.locator('form#confirm-discard button[data-action="confirm-discard"]').click()
    expect(page).not_to_have_url(re.compile(r"/discard$"))
    expect(page.locator("#parked-events")).to_be_attached()
    expect(row).to_have_count(0)
    discarded = admin_events(admin, "discarded")
    assert any(e["event_name"] == CONFIRMED for e in discarded), f"discarded per the API: {discarded}"
    restore_mail()
    step(f"   the event of order {third_order} discarded")

    step("g. the orders context's page")
    page.goto(f"{BASE}/console")
    page.locator('a[href="/console/contexts/orders"]').first.click()
    expect(page).to_have_url(re.compile(re.escape(BASE) + r"/console/contexts/orders/?$"))
    expect(page.locator("h1")).to_contain_text("orders")
    expect(page.locator("#purpose")).not_to_be_empty()
    expect(page.locator("#language dt").nth(2)).to_be_attached()  # at least three terms
    expect(page.locator('#port tr[data-method="place_order"][data-idempotent]')).to_have_count(1)
    expect(page.locator(f'#events-out tr[data-event="{CONFIRMED}"]')).to_have_count(1)
    expect(page.locator("#tables tr[data-table]").first).to_be_attached()

    step("h. with JavaScript off: login, the contexts, the map, the parked orders table")
    no_js = browser.new_context(java_script_enabled=False)
    try:
        plain = no_js.new_page()
        current["page"] = plain
        log_in(plain)
        expect_contexts(plain)
        expect(plain.locator("#parked-orders")).to_be_attached()
    finally:
        current["page"] = page
        no_js.close()

    step("i. logout returns to the login form, and /console asks for it again")
    page.goto(f"{BASE}/console")
    page.locator("form#logout button").click()
    expect(page).to_have_url(LOGIN_URL)
    page.goto(f"{BASE}/console")
    expect(page).to_have_url(LOGIN_URL)


def main() -> int:
    expect.set_options(timeout=10_000)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=not HEADED,
            # Chromium refuses to sandbox as root (CI runs as root); the pages are our own.
            args=["--no-sandbox"] if os.geteuid() == 0 else [],
        )
        try:
            run(browser)
        finally:
            browser.close()
    step("all steps passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
