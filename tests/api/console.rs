//! `/console` over HTTP, as a browser without JavaScript uses it: the session, what the
//! pages show, the retry and discard forms, and the canvases in `docs/contexts/` that come
//! from the same source as the context pages. (`scripts/browser-test.sh` drives the same
//! console in Chromium, with the refresh.)

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use payments::{LookupOutcome, PaymentProvider, ProviderError, ProviderOutcome};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use serde_json::Value;
use shop::Options;
use shop::console::canvas::{self, Map};
use testkit::TestStore;

use crate::checkout::order_body;
use crate::helpers::{TestApp, spawn_app_with, spawn_app_with_options};

/// A page as the console answered it.
struct Page {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Page {
    fn location(&self) -> &str {
        self.headers
            .get(LOCATION)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
    }

    /// The text of the first element with `attribute` inside the element that has `row`.
    fn metric(&self, row: &str, metric: &str) -> u64 {
        let start = self.body.find(row).unwrap_or_else(|| panic!("no {row}"));
        let rest = &self.body[start..];
        let at = rest
            .find(&format!("data-metric=\"{metric}\">"))
            .unwrap_or_else(|| panic!("no {metric} after {row}"));
        let value = &rest[at + metric.len() + 15..];
        value[..value.find('<').expect("end of cell")]
            .parse()
            .unwrap_or_else(|_| panic!("a number in {metric} of {row}"))
    }

    /// The ids in `data-parked-event="..."` attributes, in page order.
    fn parked_events(&self) -> Vec<String> {
        self.body
            .match_indices("data-parked-event=\"")
            .map(|(at, found)| {
                let rest = &self.body[at + found.len()..];
                rest[..rest.find('"').expect("end")].to_owned()
            })
            .collect()
    }
}

/// An HTML form's body.
fn form_body(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// A browser's view of the console: no redirects followed, the session cookie kept by hand.
struct Browser<'a> {
    app: &'a TestApp,
    client: reqwest::Client,
    cookie: Option<String>,
}

impl<'a> Browser<'a> {
    fn new(app: &'a TestApp) -> Self {
        Self {
            app,
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            cookie: None,
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Page {
        let request = match &self.cookie {
            Some(cookie) => request.header("Cookie", cookie),
            None => request,
        };
        let response = request.send().await.expect("the console answers");
        Page {
            status: response.status(),
            headers: response.headers().clone(),
            body: response.text().await.expect("body"),
        }
    }

    async fn get(&self, path: &str) -> Page {
        self.send(self.client.get(self.app.url(path))).await
    }

    /// A form posted from the console's own page, as a browser sends it.
    async fn post(&self, path: &str, form: &[(&str, &str)]) -> Page {
        self.send(
            self.client
                .post(self.app.url(path))
                .header("Origin", self.app.url("").trim_end_matches('/'))
                .header("Sec-Fetch-Site", "same-origin")
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(form_body(form)),
        )
        .await
    }

    async fn log_in(&mut self, email: &str, password: &str) -> Page {
        let page = self
            .post(
                "/console/login",
                &[("email", email), ("password", password)],
            )
            .await;
        if let Some(cookie) = page
            .headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .find(|value| value.starts_with("shop_console="))
        {
            self.cookie = Some(cookie.split(';').next().expect("name=value").to_owned());
        }
        page
    }
}

async fn admin(app: &TestApp) -> (String, &'static str) {
    let email = format!("console-{}@example.com", uuid::Uuid::new_v4().simple());
    app.contexts
        .auth_module()
        .create_admin(
            email.clone(),
            auth_api::Password::new("console password"),
            "Console".into(),
        )
        .await
        .expect("create admin");
    (email, "console password")
}

async fn only_administrators_get_a_session(store: TestStore) {
    let app = spawn_app_with(store, |_| {}).await;
    let mut browser = Browser::new(&app);

    let page = browser.get("/console").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), "/console/login");
    let login = browser.get("/console/login").await;
    assert_eq!(login.status, StatusCode::OK);
    assert!(
        login
            .body
            .contains("<form id=\"login\" method=\"post\" action=\"/console/login\">")
    );

    // A customer has an account, but the console is not theirs.
    app.register("buyer@example.com", "buyer password", "Buyer")
        .await
        .ok(StatusCode::CREATED);
    let refused = browser.log_in("buyer@example.com", "buyer password").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.body.contains("not an administrator"));
    assert!(browser.cookie.is_none(), "no session for a customer");

    let (email, password) = admin(&app).await;
    let wrong = browser.log_in(&email, "not the password").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.body.contains("Wrong email or password."));
    assert!(browser.cookie.is_none());

    let signed_in = browser.log_in(&email, password).await;
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER);
    assert_eq!(signed_in.location(), "/console");
    let cookie = signed_in
        .headers
        .get(SET_COOKIE)
        .and_then(|value| value.to_str().ok())
        .expect("a session cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(cookie.contains(attribute), "{attribute} in {cookie}");
    }

    let overview = browser.get("/console").await;
    assert_eq!(overview.status, StatusCode::OK, "{}", overview.body);
    assert_eq!(
        overview
            .headers
            .get("cache-control")
            .map(|v| v.to_str().ok()),
        Some(Some("no-store"))
    );
    for context in ["auth", "catalog", "orders", "payments", "notifications"] {
        assert!(
            overview.body.contains(&format!(
                "data-context=\"{context}\" data-placement=\"local\""
            )),
            "{context} in the contexts table"
        );
    }
    for edge in [
        "orders-&gt;catalog",
        "orders-&gt;payments",
        "notifications-&gt;auth",
        "notifications-&gt;orders",
    ] {
        assert!(
            overview
                .body
                .contains(&format!("data-edge=\"{edge}\" data-declared=\"true\"")),
            "{edge} declared"
        );
    }

    // A token that is not the shop's is no session; logging out ends a real one.
    let mut forged = Browser::new(&app);
    forged.cookie = Some("shop_console=not.a.token".to_owned());
    assert_eq!(forged.get("/console").await.status, StatusCode::SEE_OTHER);
    let out = browser.post("/console/logout", &[]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(out.location(), "/console/login");
    assert!(
        out.headers
            .get(SET_COOKIE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(
                |cookie| cookie.starts_with("shop_console=;") && cookie.contains("Max-Age=0")
            ),
        "the session cookie is removed"
    );
}

async fn forms_from_other_sites_are_refused(store: TestStore) {
    let app = spawn_app_with(store, |_| {}).await;
    let mut browser = Browser::new(&app);
    let (email, password) = admin(&app).await;
    browser.log_in(&email, password).await;
    let path = format!("/console/events/{}/retry", uuid::Uuid::now_v7());
    for (header, value) in [
        ("Origin", "http://attacker.example"),
        ("Sec-Fetch-Site", "cross-site"),
    ] {
        let page = browser
            .send(
                browser
                    .client
                    .post(app.url(&path))
                    .header(header, value)
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .body(form_body(&[("x", "y")])),
            )
            .await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{header}: {value}");
    }
    let login = browser
        .send(
            browser
                .client
                .post(app.url("/console/login"))
                .header("Origin", "http://attacker.example")
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(form_body(&[
                    ("email", email.as_str()),
                    ("password", password),
                ])),
        )
        .await;
    assert_eq!(login.status, StatusCode::FORBIDDEN);
    // From the console itself, an event nobody parked is reported gone.
    let own = browser.post(&path, &[]).await;
    assert_eq!(own.status, StatusCode::SEE_OTHER);
    assert_eq!(own.location(), "/console?notice=event-gone#parked-events");
}

async fn console_logins_count_against_the_login_limits(store: TestStore) {
    let app = spawn_app_with(store, |settings| {
        let limits = &mut settings.auth.rate_limits;
        limits.account_per_minute = 1;
        limits.account_burst = 2;
    })
    .await;
    let (email, _) = admin(&app).await;
    let mut browser = Browser::new(&app);
    for _ in 0..2 {
        let page = browser.log_in(&email, "wrong").await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    }
    let limited = browser.log_in(&email, "wrong").await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    // The same account's counter as the API's.
    app.login(&email, "console password")
        .await
        .error(StatusCode::TOO_MANY_REQUESTS, "too_many_requests");
}

/// The mail directory is a file: every message fails to send, and with one attempt allowed,
/// its event is parked at once.
fn block_mail(app: &TestApp) -> std::path::PathBuf {
    let dir = app.store().dir.path().join("data").join("mail");
    if dir.is_dir() {
        std::fs::remove_dir_all(&dir).expect("remove the mail dir");
    }
    std::fs::create_dir_all(dir.parent().expect("data dir")).expect("data dir");
    std::fs::write(&dir, "not a directory").expect("block the mail dir");
    dir
}

async fn parked_events_are_retried_and_discarded_from_the_console(store: TestStore) {
    let app = spawn_app_with(store, |settings| settings.messaging.max_attempts = 1).await;
    let mut browser = Browser::new(&app);
    let (email, password) = admin(&app).await;
    browser.log_in(&email, password).await;
    app.deliver_events().await;
    assert!(browser.get("/console").await.parked_events().is_empty());

    let mail = block_mail(&app);
    app.customer_token().await;
    app.customer_token().await;
    app.deliver_events().await;
    let overview = browser.get("/console").await;
    let parked = overview.parked_events();
    assert_eq!(parked.len(), 2, "{}", overview.body);
    assert!(
        overview
            .body
            .contains("data-owner=\"notifications\" data-event-name=\"auth.user_registered.v1\"")
    );
    assert_eq!(
        overview.metric("<tr data-context=\"notifications\"", "parked"),
        2
    );

    // Discarding asks first, and shows what would be discarded.
    let ask = browser
        .get(&format!("/console/events/{}/discard", parked[1]))
        .await;
    assert_eq!(ask.status, StatusCode::OK);
    assert!(ask.body.contains("form id=\"confirm-discard\""));
    assert!(ask.body.contains("auth.user_registered.v1"));
    assert_eq!(
        browser.get("/console").await.parked_events(),
        parked,
        "asking changes nothing"
    );

    std::fs::remove_file(&mail).expect("unblock the mail dir");
    let retried = browser
        .post(&format!("/console/events/{}/retry", parked[0]), &[])
        .await;
    assert_eq!(retried.status, StatusCode::SEE_OTHER);
    assert_eq!(
        retried.location(),
        "/console?notice=event-retried#parked-events"
    );
    let discarded = browser
        .post(&format!("/console/events/{}/discard", parked[1]), &[])
        .await;
    assert_eq!(
        discarded.location(),
        "/console?notice=event-discarded#parked-events"
    );
    app.deliver_events().await;

    let after = browser.get("/console?notice=event-discarded").await;
    assert!(after.parked_events().is_empty(), "{}", after.body);
    assert!(after.body.contains("The event was discarded."));
    let admin_token = app.token(&email, password).await;
    let gone: Value = app
        .get("/api/admin/events/discarded", Some(&admin_token))
        .await
        .ok(StatusCode::OK)
        .clone();
    assert_eq!(gone.as_array().map(Vec::len), Some(1), "{gone:#?}");
    assert_eq!(gone[0]["id"], parked[1].as_str());
    // The retried one was handled: its welcome is in the mail directory now.
    assert_eq!(std::fs::read_dir(&mail).expect("mail").count(), 1);
    // Anything else in `notice` says nothing.
    let quiet = browser.get("/console?notice=%3Cscript%3E").await;
    assert!(!quiet.body.contains("class=\"notice\""));
}

async fn edge_counters_move_with_an_order(store: TestStore) {
    let app = spawn_app_with(store, |_| {}).await;
    let mut browser = Browser::new(&app);
    let (email, password) = admin(&app).await;
    browser.log_in(&email, password).await;
    let admin_token = app.token(&email, password).await;
    let product = app
        .create_product(&admin_token, "CONSOLE-1", 1200, "tests", 5)
        .await;
    let before = browser.get("/console").await;
    let catalog_calls = before.metric("data-edge=\"orders-&gt;catalog\"", "calls-total");
    let payments_calls = before.metric("data-edge=\"orders-&gt;payments\"", "calls-total");
    let confirmed = "data-event=\"orders.order_confirmed.v1\" data-consumer=\"notifications\"";
    let written = before.metric(confirmed, "written-total");

    let buyer = app.customer_token().await;
    app.place_order(
        &buyer,
        "console-order",
        &order_body(product["id"].as_str().expect("id"), 1, "tok_visa"),
    )
    .await
    .ok(StatusCode::CREATED);
    app.deliver_events().await;

    let after = browser.get("/console").await;
    // get_products, reserve_stock, commit_reservation; charge.
    assert!(after.metric("data-edge=\"orders-&gt;catalog\"", "calls-total") >= catalog_calls + 3);
    assert!(after.metric("data-edge=\"orders-&gt;payments\"", "calls-total") > payments_calls);
    assert_eq!(after.metric(confirmed, "written-total"), written + 1);
    assert!(after.metric(confirmed, "done-total") >= 1);
}

/// The built-in fake provider, except that refunds go unanswered while `down` is set: a
/// cancellation cannot finish, and with one attempt allowed its order is parked.
#[derive(Debug)]
struct RefundsDown {
    fake: payments::FakeProvider,
    down: AtomicBool,
}

#[async_trait::async_trait]
impl PaymentProvider for RefundsDown {
    async fn charge(
        &self,
        key: &str,
        amount: kernel::Money,
        token: &str,
    ) -> Result<ProviderOutcome, ProviderError> {
        self.fake.charge(key, amount, token).await
    }

    async fn lookup(&self, key: &str) -> Result<LookupOutcome, ProviderError> {
        self.fake.lookup(key).await
    }

    async fn refund(
        &self,
        reference: &str,
        amount: kernel::Money,
        key: &str,
    ) -> Result<String, ProviderError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(ProviderError::Unavailable {
                reason: "refunds are down".into(),
            });
        }
        self.fake.refund(reference, amount, key).await
    }
}

async fn parked_orders_are_retried_from_the_console(store: TestStore) {
    let provider = Arc::new(RefundsDown {
        fake: payments::FakeProvider::new(std::time::Duration::from_secs(60)),
        down: AtomicBool::new(true),
    });
    let options = Options {
        payment_provider: Some(provider.clone()),
        ..Options::default()
    };
    let app =
        spawn_app_with_options(store, |settings| settings.orders.max_attempts = 1, options).await;
    let mut browser = Browser::new(&app);
    let (email, password) = admin(&app).await;
    browser.log_in(&email, password).await;
    let admin_token = app.token(&email, password).await;
    let product = app
        .create_product(&admin_token, "CONSOLE-2", 900, "tests", 5)
        .await;
    let buyer = app.customer_token().await;
    let placed = app
        .place_order(
            &buyer,
            "console-parked",
            &order_body(product["id"].as_str().expect("id"), 1, "tok_visa"),
        )
        .await;
    let order_id = placed.ok(StatusCode::CREATED)["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let row = format!("data-parked-order=\"{order_id}\"");
    assert!(!browser.get("/console").await.body.contains(&row));

    // The refund goes unanswered: the cancellation stops, is booked, and parks.
    app.post(
        &format!("/api/orders/{order_id}/cancel"),
        Some(&buyer),
        serde_json::json!({}),
    )
    .await;
    let overview = browser.get("/console").await;
    assert!(overview.body.contains(&row), "{}", overview.body);
    assert!(
        overview.body.contains("data-count=\"0\""),
        "a parked order is not counted as unfinished"
    );
    assert!(overview.body.contains("refund"), "the reason is shown");

    provider.down.store(false, Ordering::SeqCst);
    let retried = browser
        .post(&format!("/console/orders/{order_id}/retry"), &[])
        .await;
    assert_eq!(
        retried.location(),
        "/console?notice=order-retried#parked-orders"
    );
    let order = app
        .get(&format!("/api/orders/{order_id}"), Some(&buyer))
        .await;
    assert_eq!(order.ok(StatusCode::OK)["order"]["status"], "cancelled");
    assert!(!browser.get("/console").await.body.contains(&row));
    let again = browser
        .post(&format!("/console/orders/{order_id}/retry"), &[])
        .await;
    assert_eq!(again.location(), "/console?notice=order-gone#parked-orders");
}

async fn each_context_has_its_page(store: TestStore) {
    let app = spawn_app_with(store, |_| {}).await;
    let mut browser = Browser::new(&app);
    let (email, password) = admin(&app).await;
    browser.log_in(&email, password).await;
    let orders = browser.get("/console/contexts/orders").await;
    assert_eq!(orders.status, StatusCode::OK);
    for expected in [
        "<h1>The orders context</h1>",
        "data-method=\"place_order\" data-idempotent=\"true\"",
        "data-event=\"orders.order_confirmed.v1\"",
        "data-table=\"orders\"",
        "data-table=\"order_lines\"",
        "data-edge=\"orders-&gt;catalog\"",
    ] {
        assert!(orders.body.contains(expected), "{expected}");
    }
    let payments = browser.get("/console/contexts/payments").await;
    assert!(
        payments
            .body
            .contains("data-method=\"charge\" data-idempotent=\"true\"")
    );
    assert_eq!(
        browser.get("/console/contexts/shipping").await.status,
        StatusCode::NOT_FOUND
    );
    let anonymous = Browser::new(&app);
    assert_eq!(
        anonymous.get("/console/contexts/orders").await.status,
        StatusCode::SEE_OTHER
    );
}

testkit::backend_tests!(
    only_administrators_get_a_session,
    forms_from_other_sites_are_refused,
    console_logins_count_against_the_login_limits,
    parked_events_are_retried_and_discarded_from_the_console,
    edge_counters_move_with_an_order,
    parked_orders_are_retried_from_the_console,
    each_context_has_its_page
);

/// `docs/contexts/<context>.md` is what the console's context page says, rendered as
/// Markdown from the same canvas. `UPDATE_CANVASES=1` rewrites the files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_canvases_in_docs_are_generated_from_the_code() {
    let app = crate::helpers::spawn_app(TestStore::new(testkit::Backend::Sqlite).await).await;
    let map = Map::load();
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("docs")
        .join("contexts");
    let update = std::env::var_os("UPDATE_CANVASES").is_some();
    let mut stale = Vec::new();
    for canvas in &map.contexts {
        let (_, db) = app
            .contexts
            .stores
            .iter()
            .find(|(context, _)| *context == canvas.name)
            .expect("every context runs here");
        let tables = canvas::tables(db).await.expect("tables");
        let rendered = canvas.markdown(&tables);
        let path = docs.join(format!("{}.md", canvas.name));
        if update {
            std::fs::create_dir_all(&docs).expect("docs/contexts");
            std::fs::write(&path, &rendered).expect("write the canvas");
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(rendered.as_str()) {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "out of date: {stale:?}; run UPDATE_CANVASES=1 cargo nextest run -p shop-tests canvases"
    );
}

/// Every committed event contract is on the console, and notifications' consumer takes
/// exactly the events the console says it takes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_knows_every_event_and_subscription() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../contracts/events");
    let mut committed: Vec<String> = std::fs::read_dir(&dir)
        .expect("contracts/events")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .trim_end_matches(".json")
                .to_owned()
        })
        .collect();
    committed.sort();
    let mut shown: Vec<String> = canvas::events()
        .into_iter()
        .map(|event| event.name)
        .collect();
    shown.sort();
    assert_eq!(
        shown, committed,
        "add the new event type to the console (canvas.rs)"
    );

    let app = crate::helpers::spawn_app(TestStore::new(testkit::Backend::Sqlite).await).await;
    let consumer = app.contexts.notifications_module().consumer();
    assert_eq!(
        (consumer.name(), consumer.subscriptions()),
        (
            notifications::CONSUMER,
            &notifications::NotificationsModule::SUBSCRIPTIONS[..]
        )
    );
}
