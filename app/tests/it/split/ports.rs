//! Every port's contract suite (`port-suites`), run (c): through the generated client against
//! separate `shop serve --contexts ...` processes — catalog's and payments' own processes, and
//! the shop process that runs auth, orders and notifications. The same suites run in process
//! and on a loopback listener in `tests/api/ports.rs`; here the fixtures set up data over the
//! public HTTP API, as any client of the deployment would.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use auth_api::Role;
use catalog_api::NewProduct;
use kernel::{ProductId, UserId};
use port_suites::Customer;
use port_suites::auth::AuthFixture;
use port_suites::catalog::CatalogFixture;
use port_suites::notifications::NotificationsFixture;
use port_suites::orders::OrdersFixture;
use port_suites::payments::NoSetup;
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{Value, json};
use testkit::Backend;

use crate::split::harness::{
    ADMIN_EMAIL, ADMIN_PASSWORD, Layout, Process, SERVICE_TOKEN, SIGNING_KEY, Split,
};

const CALLER: &str = "suite";
const PASSWORD: &str = "suite password";

/// Sets up what the suites need through the shop's public port.
struct OverHttp<'a> {
    split: &'a Split,
}

impl OverHttp<'_> {
    async fn me(&self, token: &str, email: &str) -> Customer {
        let me = self.split.get_json("/api/auth/me", Some(token)).await;
        Customer {
            user_id: serde_json::from_value(me["id"].clone()).expect("user id"),
            email: email.to_owned(),
            display_name: me["display_name"].as_str().expect("name").to_owned(),
            access_token: token.to_owned(),
        }
    }

    async fn register(&self) -> Customer {
        let email = format!("{}@example.com", port_suites::unique("suite-"));
        let response = self
            .split
            .http
            .post(format!("{}/api/auth/register", self.split.shop.public))
            .json(&json!({"email": email, "password": PASSWORD, "display_name": "Suite Customer"}))
            .send()
            .await
            .expect("register");
        assert_eq!(response.status(), StatusCode::CREATED, "register");
        let token = self.split.login(&email, PASSWORD).await;
        self.me(&token, &email).await
    }
}

#[async_trait]
impl AuthFixture for OverHttp<'_> {
    async fn customer(&self) -> Customer {
        self.register().await
    }

    async fn admin(&self) -> Customer {
        let token = self.split.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
        self.me(&token, ADMIN_EMAIL).await
    }

    async fn expired_token(&self) -> String {
        let customer = self.register().await;
        let now = chrono::Utc::now().timestamp();
        signed_token(customer.user_id, Role::Customer, now - 7200, now - 3600)
    }
}

#[async_trait]
impl CatalogFixture for OverHttp<'_> {
    async fn create_product(&self, product: NewProduct) -> ProductId {
        create_product(self.split, product).await
    }
}

#[async_trait]
impl OrdersFixture for OverHttp<'_> {
    async fn customer(&self) -> Customer {
        self.register().await
    }

    async fn create_product(&self, product: NewProduct) -> ProductId {
        create_product(self.split, product).await
    }
}

#[async_trait]
impl NotificationsFixture for OverHttp<'_> {
    async fn customer(&self) -> Customer {
        self.register().await
    }

    /// The shop process delivers events in the background; the suite polls for them.
    async fn deliver_events(&self) {}
}

/// An administrator's `POST /api/catalog/products` on the shop's public port, which sends it
/// on to catalog's process.
async fn create_product(split: &Split, product: NewProduct) -> ProductId {
    let admin = split.admin().await;
    let response = split
        .http
        .post(format!("{}/api/catalog/products", split.shop.public))
        .bearer_auth(admin)
        .json(&product)
        .send()
        .await
        .expect("create product");
    assert_eq!(response.status(), StatusCode::CREATED, "create product");
    let body: Value = response.json().await.expect("json");
    serde_json::from_value(body["id"].clone()).expect("product id")
}

/// A token auth's key signs, with claims of the caller's choosing (an expired one here).
fn signed_token(user: UserId, role: Role, iat: i64, exp: i64) -> String {
    let auth = shop::Settings::defaults().auth;
    let claims = json!({
        "sub": user, "role": role, "iat": iat, "exp": exp,
        "iss": auth.issuer, "aud": auth.audience,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SIGNING_KEY.as_bytes()),
    )
    .expect("sign a token")
}

/// The endpoint of a process's internal listener, with the service credential.
fn endpoint(process: &Process) -> remote::Endpoint {
    remote::Endpoint {
        url: process.internal.parse().expect("url"),
        token: remote::ServiceToken::new(SecretString::from(SERVICE_TOKEN)),
    }
}

/// Generous, so that a slow shared machine is not mistaken for an unavailable port.
fn policy() -> remote::CallPolicy {
    remote::CallPolicy {
        deadline: Duration::from_secs(30),
        ..remote::CallPolicy::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_port_passes_its_contract_suite_against_separate_processes() {
    let split = Split::start(Backend::Postgres, Layout::CatalogAndPayments, &[]).await;
    let catalog = split.catalog.as_ref().expect("catalog runs apart");
    let fixture = OverHttp { split: &split };

    let api = remote::catalog::Client::new(CALLER, endpoint(catalog), policy());
    port_suites::catalog::suite(Arc::new(api), &fixture).await;

    let api = remote::payments::Client::new(CALLER, endpoint(&split.payments), policy());
    port_suites::payments::suite(Arc::new(api), &NoSetup).await;

    // auth, orders and notifications run in the shop's process.
    let api = remote::auth::Client::new(CALLER, endpoint(&split.shop), policy());
    port_suites::auth::suite(Arc::new(api), &fixture).await;

    let api = remote::orders::Client::new(CALLER, endpoint(&split.shop), policy());
    port_suites::orders::suite(Arc::new(api), &fixture).await;

    let api = remote::notifications::Client::new(CALLER, endpoint(&split.shop), policy());
    port_suites::notifications::suite(Arc::new(api), &fixture).await;
}
