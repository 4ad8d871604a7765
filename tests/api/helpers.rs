//! `spawn_app` and the client-side helpers every test uses.

use std::sync::{Arc, Once};

use kernel::Clock;
use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::{Value, json};
use shop::{Application, Contexts, Options, Settings};
use testkit::TestStore;

pub const JWT_SECRET: &str = "a-test-signing-key-that-is-32-bytes-or-more";

/// A running shop on a free port, on the test's own store.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub contexts: Contexts,
    /// Kept alive for the test's duration: dropping it deletes the SQLite files.
    _store: TestStore,
}

/// Installs the shop's subscriber, as the binary does, so that spans carry trace contexts
/// across boundaries; `TEST_LOG=1` also shows the shop's logs while tests run.
fn init_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let defaults = Settings::defaults();
        let mut log = defaults.log;
        log.filter = if std::env::var_os("TEST_LOG").is_some() {
            "debug,sqlx=warn,sea_orm=info,hyper=info".into()
        } else {
            "off".into()
        };
        // The exporter is off by default; nothing to flush, so the guard may go.
        drop(shop::telemetry::init(&log, &defaults.telemetry));
    });
}

/// The settings a test shop starts from: port 0, one worker, the test's store, no demo data,
/// and no background event delivery: tests deliver events themselves with
/// [`TestApp::deliver_events`], so what they observe never depends on timing.
pub fn test_settings(store: &TestStore) -> Settings {
    let mut settings = Settings::defaults();
    settings.server.port = 0;
    settings.server.workers = 1;
    settings.data_dir = store.dir.path().join("data");
    settings.database.url = SecretString::from(store.database_url().unwrap_or_default());
    settings.database.max_connections = 4;
    settings.catalog.seed_demo = false;
    settings.auth.jwt_secret = SecretString::from(JWT_SECRET);
    settings.messaging.background = false;
    // Generous for a loaded CI machine; `tok_slow` answers after much longer.
    settings.orders.charge_timeout_ms = 3_000;
    settings.payments.slow_delay_ms = 60_000;
    // Payments' deadline on the provider comes first, as with the defaults: `tok_slow` is
    // answered `pending` (outcome unknown), orders gives the checkout up, and reconciliation
    // settles the charge.
    settings.payments.provider_timeout_ms = 1_500;
    settings.server.handler_timeout_ms = 120_000;
    // Tests register and log in many customers from one address; the limits themselves are
    // tested in `limits.rs` with small values.
    let limits = &mut settings.auth.rate_limits;
    limits.address_per_minute = 100_000;
    limits.address_burst = 100_000;
    limits.account_per_minute = 100_000;
    limits.account_burst = 100_000;
    settings
}

pub async fn spawn_app(store: TestStore) -> TestApp {
    spawn_app_with(store, |_| {}).await
}

pub async fn spawn_app_with(store: TestStore, configure: impl FnOnce(&mut Settings)) -> TestApp {
    let mut settings = test_settings(&store);
    configure(&mut settings);
    let application = Application::build(&settings).await.expect("build the shop");
    start(application, store)
}

/// A shop whose contexts run on `clock` (to issue tokens in the past, for instance).
pub async fn spawn_app_with_clock(store: TestStore, clock: Arc<dyn Clock>) -> TestApp {
    let options = Options {
        clock,
        ..Options::default()
    };
    spawn_app_with_options(store, |_| {}, options).await
}

/// A shop with replaced parts (a clock, a checkout fault hook).
pub async fn spawn_app_with_options(
    store: TestStore,
    configure: impl FnOnce(&mut Settings),
    options: Options,
) -> TestApp {
    init_logs();
    let mut settings = test_settings(&store);
    configure(&mut settings);
    let contexts = Contexts::open_with(&settings, options)
        .await
        .expect("open contexts");
    let application = Application::build_with(&settings, contexts)
        .await
        .expect("build the shop");
    start(application, store)
}

fn start(application: Application, store: TestStore) -> TestApp {
    init_logs();
    let address = application.address().to_owned();
    let contexts = application.contexts().clone();
    tokio::spawn(application.run_until_stopped());
    TestApp {
        address,
        client: reqwest::Client::new(),
        contexts,
        _store: store,
    }
}

/// A response, read completely: status, headers and JSON body (`Null` when empty).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    /// Asserts an error response of the house shape and returns its `error` object.
    #[track_caller]
    pub fn error(&self, status: StatusCode, code: &str) -> &Value {
        assert_eq!(self.status, status, "{:#}", self.body);
        assert_eq!(self.body["error"]["code"], code, "{:#}", self.body);
        assert!(self.body["error"]["message"].is_string(), "{:#}", self.body);
        &self.body["error"]
    }

    #[track_caller]
    pub fn ok(&self, status: StatusCode) -> &Value {
        assert_eq!(self.status, status, "{:#}", self.body);
        &self.body
    }
}

impl TestApp {
    /// Relays and handles every event committed so far, as the background bus would.
    pub async fn deliver_events(&self) {
        self.contexts
            .bus
            .run_until_idle()
            .await
            .expect("deliver events");
    }

    pub fn store(&self) -> &TestStore {
        &self._store
    }

    /// Events named `name` in `context`'s outbox (read on that context's own connection).
    pub async fn count_events(&self, context: &str, name: &str) -> i64 {
        use sea_orm::ConnectionTrait;
        let db = &self
            .contexts
            .stores
            .iter()
            .find(|(store, _)| *store == context)
            .expect("a context store")
            .1;
        let sql = format!("SELECT COUNT(*) AS n FROM outbox WHERE name = '{name}'");
        let row = db
            .query_one_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                sql,
            ))
            .await
            .expect("query")
            .expect("row");
        row.try_get::<i64>("", "n").expect("count")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let response = request.send().await.expect("request sent");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("body read");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Answer {
            status,
            headers,
            body,
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.send(request).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Answer {
        self.call(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Answer {
        self.call(Method::POST, path, token, Some(body)).await
    }

    pub async fn patch(&self, path: &str, token: Option<&str>, body: Value) -> Answer {
        self.call(Method::PATCH, path, token, Some(body)).await
    }

    pub async fn register(&self, email: &str, password: &str, display_name: &str) -> Answer {
        self.post(
            "/api/auth/register",
            None,
            json!({"email": email, "password": password, "display_name": display_name}),
        )
        .await
    }

    pub async fn login(&self, email: &str, password: &str) -> Answer {
        self.post(
            "/api/auth/login",
            None,
            json!({"email": email, "password": password}),
        )
        .await
    }

    /// Registers a fresh customer and returns their access token.
    pub async fn customer_token(&self) -> String {
        let email = format!("customer-{}@example.com", uuid::Uuid::new_v4().simple());
        self.register(&email, "customer password", "Customer")
            .await
            .ok(StatusCode::CREATED);
        self.token(&email, "customer password").await
    }

    /// Creates an administrator the way the operator does, and logs them in.
    pub async fn admin_token(&self) -> String {
        let email = format!("admin-{}@example.com", uuid::Uuid::new_v4().simple());
        self.contexts
            .auth_module()
            .create_admin(
                email.clone(),
                auth_api::Password::new("admin password"),
                "Admin".into(),
            )
            .await
            .expect("create admin");
        self.token(&email, "admin password").await
    }

    pub async fn token(&self, email: &str, password: &str) -> String {
        let answer = self.login(email, password).await;
        answer.ok(StatusCode::OK)["access_token"]
            .as_str()
            .expect("a token")
            .to_owned()
    }

    /// Creates a product as an administrator and returns its JSON.
    pub async fn create_product(
        &self,
        admin: &str,
        sku: &str,
        cents: i64,
        category: &str,
        stock: u32,
    ) -> Value {
        self.post(
            "/api/catalog/products",
            Some(admin),
            json!({
                "sku": sku,
                "name": format!("Product {sku}"),
                "description": "A product made for a test.",
                "price": {"amount_minor": cents, "currency": "EUR"},
                "category": category,
                "initial_stock": stock,
            }),
        )
        .await
        .ok(StatusCode::CREATED)
        .clone()
    }
}
