//! A split deployment of real `shop` processes on loopback, for the tests in this target.
//!
//! Every process is the `shop` binary started with `serve --contexts ...` and environment
//! variables, exactly as an operator would (docs/EXTRACTION.md). Ports are chosen up front,
//! so that a process can be killed and started again on the same addresses while the others
//! keep pointing at it.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::{Backend, TestStore};

const SHOP: &str = env!("CARGO_BIN_EXE_shop");
pub const SERVICE_TOKEN: &str = "split-test-service-token-0123456789abcdef";
pub const SIGNING_KEY: &str = "split-test-signing-key-0123456789abcdefgh";
pub const ADMIN_EMAIL: &str = "admin@example.com";
pub const ADMIN_PASSWORD: &str = "admin password";

/// How long a test waits for something that should happen promptly before it fails.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A free loopback port (bound, then released for the process that will use it), never
/// one this test process handed out before: the system may offer a port it released a
/// moment ago again, and two processes of one deployment would then be given the same
/// port (it happened: the shop's internal port was also payments' public one, and the shop
/// could not bind it).
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        if handed_out.insert(port) {
            return port;
        }
    }
}

/// The JSON log lines a process printed, and a way to wait for more.
#[derive(Debug, Default)]
struct Lines {
    lines: Mutex<Log>,
    arrived: Condvar,
}

#[derive(Debug, Default)]
struct Log {
    lines: Vec<Value>,
    /// How many times the process was started, and whether the latest start's output has
    /// ended (the process exited): a wait for a line that can no longer come fails at once.
    starts: u64,
    ended: bool,
}

/// One `shop serve` process.
#[derive(Debug)]
pub struct Process {
    pub name: &'static str,
    contexts: String,
    env: BTreeMap<String, String>,
    child: Option<Child>,
    logs: Arc<Lines>,
    pub public: String,
    pub internal: String,
}

impl Process {
    /// Starts `shop serve --contexts <contexts>` with `env` (which names its ports).
    pub fn start_with(name: &'static str, contexts: &str, env: BTreeMap<String, String>) -> Self {
        let public = format!("http://127.0.0.1:{}", env["SHOP__SERVER__PORT"]);
        let internal = format!("http://127.0.0.1:{}", env["SHOP__INTERNAL__PORT"]);
        let mut process = Self {
            name,
            contexts: contexts.to_owned(),
            env,
            child: None,
            logs: Arc::default(),
            public,
            internal,
        };
        process.spawn();
        process
    }

    fn command(&self) -> Command {
        let mut command = Command::new(SHOP);
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(&self.env);
        command
    }

    /// Starts the process (again) and waits until it listens.
    pub fn spawn(&mut self) {
        let mut child = self
            .command()
            .args(["serve", "--contexts", &self.contexts])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start shop serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let logs = self.logs.clone();
        let (start, started) = {
            let mut log = self.logs.lines.lock().expect("lock");
            log.starts += 1;
            log.ended = false;
            (log.starts, log.lines.len())
        };
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(value) = serde_json::from_str::<Value>(&line) {
                    logs.lines.lock().expect("lock").lines.push(value);
                    logs.arrived.notify_all();
                }
            }
            // An earlier start's output may end after the process was started again.
            let mut log = logs.lines.lock().expect("lock");
            if log.starts == start {
                log.ended = true;
            }
            logs.arrived.notify_all();
        });
        self.child = Some(child);
        self.wait_for_log_after(started, |line| line["fields"]["message"] == "listening");
    }

    /// Runs another `shop` command with this process's configuration (`admin create`).
    pub fn run(&self, args: &[&str], extra: &[(&str, &str)]) -> std::process::Output {
        let mut command = self.command();
        command.env("SHOP__PLACEMENT__CONTEXTS", &self.contexts);
        for (key, value) in extra {
            command.env(key, value);
        }
        command.args(args).output().expect("run shop")
    }

    pub fn env(&self) -> &BTreeMap<String, String> {
        &self.env
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILL: no shutdown, no flush, as a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill");
            child.wait().expect("reap");
        }
    }

    /// SIGSTOP: the process holds its sockets and answers nothing.
    pub fn freeze(&self) {
        signal(self.pid(), "STOP");
    }

    pub fn thaw(&self) {
        signal(self.pid(), "CONT");
    }

    /// Waits for a log line `found` accepts, among all lines since the process first started.
    pub fn wait_for_log(&self, found: impl Fn(&Value) -> bool) -> Value {
        self.wait_for_log_after(0, found)
    }

    fn wait_for_log_after(&self, from: usize, found: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + PATIENCE;
        let mut log = self.logs.lines.lock().expect("lock");
        loop {
            if let Some(line) = log.lines.iter().skip(from).find(|line| found(line)) {
                return line.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !log.ended && !left.is_zero(),
                "{}: the expected log line did not come ({}); last lines: {:#?}",
                self.name,
                if log.ended {
                    "the process exited"
                } else {
                    "timed out"
                },
                log.lines.iter().rev().take(10).collect::<Vec<_>>()
            );
            log = self.logs.arrived.wait_timeout(log, left).expect("lock").0;
        }
    }

    /// Whether some log line so far is accepted by `found`.
    pub fn logged(&self, found: impl Fn(&Value) -> bool) -> bool {
        self.logs
            .lines
            .lock()
            .expect("lock")
            .lines
            .iter()
            .any(found)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            // A frozen process does not die of SIGKILL until it runs again.
            signal(child.id(), "CONT");
        }
        self.kill();
    }
}

fn signal(pid: u32, name: &str) {
    let sent = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill -{name} {pid}");
}

/// Which contexts get a process of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// The shop (auth, orders, notifications), catalog and payments: three processes.
    CatalogAndPayments,
    /// The shop (auth, catalog, orders, notifications) and payments: two processes.
    PaymentsOnly,
    /// The shop (auth, catalog, orders), payments, and notifications, whose events come
    /// through the test's NATS server: three processes.
    PaymentsAndNotifications,
}

/// The processes of one split deployment, on one store.
#[derive(Debug)]
pub struct Split {
    pub shop: Process,
    pub catalog: Option<Process>,
    pub payments: Process,
    pub notifications: Option<Process>,
    pub http: reqwest::Client,
    pub store: TestStore,
}

impl Split {
    pub async fn start(backend: Backend, layout: Layout, extra: &[(&str, String)]) -> Self {
        let store = TestStore::new(backend).await;
        let mut common = BTreeMap::new();
        let data_dir = store.dir.path().join("data");
        common.insert("SHOP__DATA_DIR".to_owned(), data_dir.display().to_string());
        if let Some(url) = store.database_url() {
            common.insert("SHOP__DATABASE__URL".to_owned(), url);
        }
        for (key, value) in [
            ("SHOP__AUTH__JWT_SECRET", SIGNING_KEY),
            ("SHOP__INTERNAL__TOKEN", SERVICE_TOKEN),
            ("SHOP__CATALOG__SEED_DEMO", "false"),
            ("SHOP__LOG__FORMAT", "json"),
            (
                "SHOP__LOG__FILTER",
                "info,sqlx=warn,sea_orm=warn,actix_server=warn",
            ),
            ("SHOP__SERVER__WORKERS", "2"),
            ("SHOP__INTERNAL__WORKERS", "2"),
            ("SHOP__MESSAGING__POLL_INTERVAL_MS", "50"),
            ("SHOP__ORDERS__RECOVERY_INTERVAL_SECS", "1"),
            ("SHOP__ORDERS__RETRY_BASE_MS", "100"),
            ("SHOP__ORDERS__RETRY_MAX_MS", "1000"),
            ("SHOP__ORDERS__MAX_IN_FLIGHT_PER_CUSTOMER", "100"),
            ("SHOP__PAYMENTS__RECONCILE_INTERVAL_SECS", "1"),
            ("SHOP__PAYMENTS__RETRY_BASE_MS", "100"),
            ("SHOP__PAYMENTS__RETRY_MAX_MS", "1000"),
            // Every test client logs in from 127.0.0.1, many times.
            ("SHOP__AUTH__RATE_LIMITS__ADDRESS_BURST", "10000"),
            ("SHOP__AUTH__RATE_LIMITS__ACCOUNT_BURST", "10000"),
        ] {
            common.insert(key.to_owned(), value.to_owned());
        }
        if layout == Layout::PaymentsAndNotifications {
            // A stream and subjects of this test's own, on the run's NATS server.
            let url = std::env::var("SHOP_TEST_NATS_URL").unwrap_or_else(|_| {
                panic!("SHOP_TEST_NATS_URL is not set: run the tests with scripts/test.sh")
            });
            let name = uuid::Uuid::now_v7().simple().to_string();
            common.insert("SHOP__BROKER__URL".to_owned(), url);
            common.insert("SHOP__BROKER__STREAM".to_owned(), format!("TEST_{name}"));
            common.insert(
                "SHOP__BROKER__SUBJECT_PREFIX".to_owned(),
                format!("test.{name}"),
            );
            common.insert("SHOP__BROKER__BACKOFF_MS".to_owned(), "100".to_owned());
        }
        for (key, value) in extra {
            common.insert((*key).to_owned(), value.clone());
        }
        let ports = |name: &str| {
            let mut env = common.clone();
            env.insert("SHOP__SERVER__PORT".to_owned(), free_port().to_string());
            env.insert("SHOP__INTERNAL__PORT".to_owned(), free_port().to_string());
            env.insert(
                "SHOP__TELEMETRY__SERVICE_NAME".to_owned(),
                format!("shop-{name}"),
            );
            env
        };
        let mut shop_env = ports("shop");
        shop_env.insert(
            "SHOP__TELEMETRY__SERVICE_NAME".to_owned(),
            "shop".to_owned(),
        );
        let shop_internal = format!("http://127.0.0.1:{}", shop_env["SHOP__INTERNAL__PORT"]);

        // The extracted contexts check tokens through auth's port, in the shop process.
        let mut payments_env = ports("payments");
        payments_env.insert(
            "SHOP__PLACEMENT__AUTH_URL".to_owned(),
            shop_internal.clone(),
        );
        let payments = Process::start_with("payments", "payments", payments_env);
        shop_env.insert(
            "SHOP__PLACEMENT__PAYMENTS_URL".to_owned(),
            payments.internal.clone(),
        );
        shop_env.insert(
            "SHOP__ROUTING__PAYMENTS_URL".to_owned(),
            payments.public.clone(),
        );
        let mut notifications = None;
        let (catalog, shop_contexts) = match layout {
            Layout::CatalogAndPayments => {
                let mut catalog_env = ports("catalog");
                catalog_env.insert("SHOP__PLACEMENT__AUTH_URL".to_owned(), shop_internal);
                let catalog = Process::start_with("catalog", "catalog", catalog_env);
                shop_env.insert(
                    "SHOP__PLACEMENT__CATALOG_URL".to_owned(),
                    catalog.internal.clone(),
                );
                shop_env.insert(
                    "SHOP__ROUTING__CATALOG_URL".to_owned(),
                    catalog.public.clone(),
                );
                (Some(catalog), "auth,orders,notifications")
            }
            Layout::PaymentsOnly => (None, "auth,catalog,orders,notifications"),
            Layout::PaymentsAndNotifications => {
                let mut notifications_env = ports("notifications");
                notifications_env.insert("SHOP__PLACEMENT__AUTH_URL".to_owned(), shop_internal);
                let process =
                    Process::start_with("notifications", "notifications", notifications_env);
                shop_env.insert(
                    "SHOP__PLACEMENT__NOTIFICATIONS_URL".to_owned(),
                    process.internal.clone(),
                );
                shop_env.insert(
                    "SHOP__ROUTING__NOTIFICATIONS_URL".to_owned(),
                    process.public.clone(),
                );
                notifications = Some(process);
                (None, "auth,catalog,orders")
            }
        };
        let shop = Process::start_with("shop", shop_contexts, shop_env);
        let created = shop.run(
            &["admin", "create", "--email", ADMIN_EMAIL],
            &[("SHOP_ADMIN_PASSWORD", ADMIN_PASSWORD)],
        );
        assert!(
            created.status.success(),
            "admin create: {}",
            String::from_utf8_lossy(&created.stderr)
        );
        let split = Self {
            shop,
            catalog,
            payments,
            notifications,
            http: reqwest::Client::builder()
                .timeout(PATIENCE)
                .build()
                .expect("client"),
            store,
        };
        split.wait_until_ready(&split.shop).await;
        split
    }

    /// Polls `/readyz` until the process and every context it calls answer.
    pub async fn wait_until_ready(&self, process: &Process) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let response = self
                .http
                .get(format!("{}/readyz", process.public))
                .send()
                .await;
            if let Ok(response) = response {
                let status = response.status();
                let body: Value = response.json().await.expect("json");
                if status == StatusCode::OK {
                    return body;
                }
                assert!(
                    Instant::now() < deadline,
                    "{} never became ready: {body}",
                    process.name
                );
            }
            assert!(Instant::now() < deadline, "{} never answered", process.name);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn login(&self, email: &str, password: &str) -> String {
        let response = self
            .http
            .post(format!("{}/api/auth/login", self.shop.public))
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .expect("login");
        assert_eq!(response.status(), StatusCode::OK, "login {email}");
        let body: Value = response.json().await.expect("json");
        body["access_token"].as_str().expect("token").to_owned()
    }

    pub async fn admin(&self) -> String {
        self.login(ADMIN_EMAIL, ADMIN_PASSWORD).await
    }

    /// A page of the shop process's console, as its administrator sees it.
    pub async fn console_page(&self, path: &str) -> String {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        let login = client
            .post(format!("{}/console/login", self.shop.public))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(
                url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("email", ADMIN_EMAIL)
                    .append_pair("password", ADMIN_PASSWORD)
                    .finish(),
            )
            .send()
            .await
            .expect("console login");
        assert_eq!(login.status(), StatusCode::SEE_OTHER, "console login");
        let cookie = login
            .headers()
            .get("set-cookie")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .expect("a session cookie")
            .to_owned();
        let page = client
            .get(format!("{}{path}", self.shop.public))
            .header("Cookie", cookie)
            .send()
            .await
            .expect("console page");
        assert_eq!(page.status(), StatusCode::OK, "{path}");
        page.text().await.expect("html")
    }

    /// Registers a customer and logs in.
    pub async fn customer(&self, email: &str) -> String {
        let response = self
            .http
            .post(format!("{}/api/auth/register", self.shop.public))
            .json(&json!({"email": email, "password": "correct horse", "display_name": "Ada"}))
            .send()
            .await
            .expect("register");
        assert_eq!(response.status(), StatusCode::CREATED, "register {email}");
        self.login(email, "correct horse").await
    }

    /// Creates a product through the shop's public port (sent on to catalog's process when
    /// catalog runs there).
    pub async fn product(&self, admin: &str, sku: &str, price_minor: i64, stock: i64) -> String {
        let response = self
            .http
            .post(format!("{}/api/catalog/products", self.shop.public))
            .bearer_auth(admin)
            .json(&json!({
                "sku": sku,
                "name": format!("Product {sku}"),
                "price": {"amount_minor": price_minor, "currency": "EUR"},
                "category": "home",
                "initial_stock": stock,
            }))
            .send()
            .await
            .expect("create product");
        assert_eq!(response.status(), StatusCode::CREATED, "create {sku}");
        let body: Value = response.json().await.expect("json");
        body["id"].as_str().expect("id").to_owned()
    }

    /// The product's (available, reserved) units.
    pub async fn stock(&self, product: &str) -> (u64, u64) {
        let body = self
            .get_json(&format!("/api/catalog/products/{product}"), None)
            .await;
        (
            body["stock"]["available"].as_u64().expect("available"),
            body["stock"]["reserved"].as_u64().expect("reserved"),
        )
    }

    /// Places an order of one unit; the status and body of the answer.
    pub async fn checkout(&self, customer: &str, product: &str, key: &str) -> (StatusCode, Value) {
        self.checkout_with(customer, product, key, "tok_visa").await
    }

    pub async fn checkout_with(
        &self,
        customer: &str,
        product: &str,
        key: &str,
        token: &str,
    ) -> (StatusCode, Value) {
        let response = self
            .http
            .post(format!("{}/api/orders", self.shop.public))
            .bearer_auth(customer)
            .header("Idempotency-Key", key)
            .json(&order_body(product, token))
            .send()
            .await
            .expect("place order");
        let status = response.status();
        (status, response.json().await.expect("json"))
    }

    /// Places `n` orders of one unit, keys `<prefix>-0`, ..., each of which must be confirmed.
    pub async fn confirmed_checkouts(&self, customer: &str, product: &str, prefix: &str, n: usize) {
        for i in 0..n {
            let (status, order) = self
                .checkout(customer, product, &format!("{prefix}-{i}"))
                .await;
            assert_eq!(status, StatusCode::CREATED, "{order}");
            assert_eq!(order["status"], "confirmed", "{order}");
        }
    }

    /// Polls the customer's notification kinds (through the shop's public port) until `done`
    /// accepts them.
    pub async fn notifications_until(
        &self,
        customer: &str,
        done: impl Fn(&[String]) -> bool,
    ) -> Vec<String> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let listed = self
                .get_json("/api/notifications?per_page=100", Some(customer))
                .await;
            let kinds: Vec<String> = listed["items"]
                .as_array()
                .expect("items")
                .iter()
                .filter_map(|item| item["kind"].as_str().map(str::to_owned))
                .collect();
            if done(&kinds) {
                return kinds;
            }
            assert!(
                Instant::now() < deadline,
                "notifications never got there: {kinds:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn get_json(&self, path: &str, token: Option<&str>) -> Value {
        let mut request = self.http.get(format!("{}{path}", self.shop.public));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("get");
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response.json().await.expect("json")
    }

    pub async fn metrics(&self, process: &Process) -> String {
        self.http
            .get(format!("{}/metrics", process.public))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }

    /// Polls the order until `done` accepts it.
    pub async fn wait_for_order(
        &self,
        customer: &str,
        order: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let detail = self
                .get_json(&format!("/api/orders/{order}"), Some(customer))
                .await;
            if done(&detail) {
                return detail;
            }
            assert!(
                Instant::now() < deadline,
                "order {order} never got there: {detail}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub fn order_body(product: &str, token: &str) -> Value {
    json!({
        "lines": [{"product_id": product, "quantity": 1}],
        "payment_token": token,
        "shipping_address": {"name": "Ada", "line1": "1 Main St", "city": "London",
                             "postal_code": "N1", "country": "GB"},
    })
}

/// The value of one sample in Prometheus text (`name{labels} value`) whose line contains
/// every one of `labels`.
pub fn sample(metrics: &str, name: &str, labels: &[&str]) -> Option<f64> {
    metrics
        .lines()
        .filter(|line| {
            line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} "))
        })
        .find(|line| labels.iter().all(|label| line.contains(label)))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

/// A NATS server of a test's own, to stop and start again (the binary `scripts/test.sh`
/// names in `SHOP_TEST_NATS_SERVER`), keeping its streams on disk in between.
#[derive(Debug)]
pub struct Nats {
    pub port: u16,
    store: tempfile::TempDir,
    child: Option<Child>,
}

impl Nats {
    pub fn start() -> Self {
        let mut nats = Self {
            port: free_port(),
            store: tempfile::tempdir().expect("tempdir"),
            child: None,
        };
        nats.spawn();
        nats
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) and waits until it accepts connections.
    pub fn spawn(&mut self) {
        let server = std::env::var("SHOP_TEST_NATS_SERVER").unwrap_or_else(|_| {
            panic!("SHOP_TEST_NATS_SERVER is not set: run the tests with scripts/test.sh")
        });
        let child = Command::new(server)
            .args(["--jetstream", "--addr", "127.0.0.1", "--port"])
            .arg(self.port.to_string())
            .arg("--store_dir")
            .arg(self.store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        let deadline = Instant::now() + PATIENCE;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server never listened");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill");
            child.wait().expect("reap");
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill();
    }
}
