//! Every port's contract suite (`port-suites`) against the contexts as the shop wires them,
//! on both stores: in-process behind `remote::<context>::Local` (the boundary's span and
//! metrics included), and through the generated `remote::<context>::Client` against a
//! loopback internal listener serving `remote::<context>::server` behind the service
//! credential. Each test runs its suite twice on one shop, as a long-lived process sees it:
//! every run makes its own data.
//!
//! The fixtures here do over the contexts' modules what the port cannot; against a
//! separate `shop serve --contexts <context>` process, the same fixture traits are
//! implemented over the public HTTP API.

use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpServer};
use async_trait::async_trait;
use auth_api::{AuthApi, Login, Password, RegisterUser, Role};
use catalog_api::{CatalogApi, NewProduct};
use kernel::{ProductId, UserId};
use notifications_api::NotificationsApi;
use orders_api::OrdersApi;
use payments_api::PaymentsApi;
use port_suites::Customer;
use port_suites::auth::AuthFixture;
use port_suites::catalog::CatalogFixture;
use port_suites::notifications::NotificationsFixture;
use port_suites::orders::OrdersFixture;
use port_suites::payments::NoSetup;
use secrecy::SecretString;
use testkit::TestStore;

use crate::helpers::{JWT_SECRET, TestApp, spawn_app};

/// The `caller` label of the suites' calls (metrics and logs).
const CALLER: &str = "suite";

const PASSWORD: &str = "suite password";

/// The credential of the loopback listener (32 bytes or more, as the shop requires).
const SERVICE_TOKEN: &str = "port-suites-service-token-0123456789abcdef";

/// The fixtures of every suite, over the modules of a shop in this process.
struct InProcess {
    contexts: shop::Contexts,
}

impl InProcess {
    fn of(app: &TestApp) -> Self {
        Self {
            contexts: app.contexts.clone(),
        }
    }

    async fn login(&self, email: &str) -> String {
        self.contexts
            .auth_module()
            .service()
            .login(Login {
                email: email.to_owned(),
                password: Password::new(PASSWORD),
            })
            .await
            .expect("log in")
            .access_token
    }

    async fn register(&self) -> Customer {
        let request = RegisterUser {
            email: format!("{}@example.com", port_suites::unique("suite-")),
            password: Password::new(PASSWORD),
            display_name: "Suite Customer".into(),
        };
        let user = self
            .contexts
            .auth_module()
            .service()
            .register(request)
            .await
            .expect("register a customer");
        Customer {
            user_id: user.id,
            access_token: self.login(&user.email).await,
            email: user.email,
            display_name: user.display_name,
        }
    }

    async fn create_product(&self, product: NewProduct) -> ProductId {
        self.contexts
            .catalog_module()
            .service()
            .create_product(product)
            .await
            .expect("create a product")
            .id
    }
}

/// An access token signed with the test shop's key, issuer and audience, issued at `iat`
/// and expiring at `exp` (seconds since the epoch).
fn signed_token(user: UserId, role: Role, iat: i64, exp: i64) -> String {
    let auth = shop::Settings::defaults().auth;
    let claims = serde_json::json!({
        "sub": user,
        "role": role,
        "iat": iat,
        "exp": exp,
        "iss": auth.issuer,
        "aud": auth.audience,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .expect("sign a token")
}

#[async_trait]
impl AuthFixture for InProcess {
    async fn customer(&self) -> Customer {
        self.register().await
    }

    async fn admin(&self) -> Customer {
        let email = format!("{}@example.com", port_suites::unique("suite-admin-"));
        let user = self
            .contexts
            .auth_module()
            .create_admin(email, Password::new(PASSWORD), "Suite Admin".into())
            .await
            .expect("create an administrator");
        Customer {
            user_id: user.id,
            access_token: self.login(&user.email).await,
            email: user.email,
            display_name: user.display_name,
        }
    }

    async fn expired_token(&self) -> String {
        let now = chrono::Utc::now().timestamp();
        signed_token(UserId::new(), Role::Customer, now - 7200, now - 3600)
    }
}

#[async_trait]
impl CatalogFixture for InProcess {
    async fn create_product(&self, product: NewProduct) -> ProductId {
        InProcess::create_product(self, product).await
    }
}

#[async_trait]
impl OrdersFixture for InProcess {
    async fn customer(&self) -> Customer {
        self.register().await
    }

    async fn create_product(&self, product: NewProduct) -> ProductId {
        InProcess::create_product(self, product).await
    }
}

#[async_trait]
impl NotificationsFixture for InProcess {
    async fn customer(&self) -> Customer {
        self.register().await
    }

    async fn deliver_events(&self) {
        self.contexts
            .bus
            .run_until_idle()
            .await
            .expect("deliver events");
    }
}

/// An internal listener on loopback serving one port, as `shop serve` does on
/// `[internal]`; stopped when dropped.
struct Loopback {
    endpoint: remote::Endpoint,
    handle: ServerHandle,
}

impl Loopback {
    fn serve(port: remote::PortServer) -> Self {
        let token = remote::ServiceToken::new(SecretString::from(SERVICE_TOKEN));
        let routes = remote::internal_routes(
            vec![port],
            remote::InternalAuth::new(&token),
            Duration::from_secs(30),
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let address = listener.local_addr().expect("loopback address");
        let server = HttpServer::new(move || App::new().configure(routes.clone()))
            .workers(1)
            .disable_signals()
            .listen(listener)
            .expect("listen on loopback")
            .run();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            endpoint: remote::Endpoint {
                url: format!("http://{address}").parse().expect("a URL"),
                token,
            },
            handle,
        }
    }

    /// The policy of the suites' clients: the shop's, with a deadline generous enough for a
    /// loaded machine, so that a slow answer is never mistaken for a wrong one.
    fn policy() -> remote::CallPolicy {
        remote::CallPolicy {
            deadline: Duration::from_secs(30),
            ..remote::CallPolicy::default()
        }
    }
}

impl Drop for Loopback {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

/// Runs of each suite on one shop: more than one, as against a long-lived process.
const RUNS: usize = 2;

async fn auth_in_process(store: TestStore) {
    let app = spawn_app(store).await;
    let fixture = InProcess::of(&app);
    let api: Arc<dyn AuthApi> = Arc::new(remote::auth::Local::new(
        CALLER,
        app.contexts.auth_module().api(),
    ));
    for _ in 0..RUNS {
        port_suites::auth::suite(api.clone(), &fixture).await;
    }
}

async fn auth_through_the_client(store: TestStore) {
    let app = spawn_app(store).await;
    let fixture = InProcess::of(&app);
    let loopback = Loopback::serve(remote::auth::server(app.contexts.auth_module().api()));
    let api: Arc<dyn AuthApi> = Arc::new(remote::auth::Client::new(
        CALLER,
        loopback.endpoint.clone(),
        Loopback::policy(),
    ));
    for _ in 0..RUNS {
        port_suites::auth::suite(api.clone(), &fixture).await;
    }
}

async fn catalog_in_process(store: TestStore) {
    let app = spawn_app(store).await;
    let fixture = InProcess::of(&app);
    let api: Arc<dyn CatalogApi> = Arc::new(remote::catalog::Local::new(
        CALLER,
        app.contexts.catalog_api(),
    ));
    for _ in 0..RUNS {
        port_suites::catalog::suite(api.clone(), &fixture).await;
    }
}

async fn catalog_through_the_client(store: TestStore) {
    let app = spawn_app(store).await;
    let fixture = InProcess::of(&app);
    let loopback = Loopback::serve(remote::catalog::server(app.contexts.catalog_api()));
    let api: Arc<dyn CatalogApi> = Arc::new(remote::catalog::Client::new(
        CALLER,
        loopback.endpoint.clone(),
        Loopback::policy(),
    ));
    for _ in 0..RUNS {
        port_suites::catalog::suite(api.clone(), &fixture).await;
    }
}

async fn payments_in_process(store: TestStore) {
    let app = spawn_app(store).await;
    let api: Arc<dyn PaymentsApi> = Arc::new(remote::payments::Local::new(
        CALLER,
        app.contexts.payments_api(),
    ));
    for _ in 0..RUNS {
        port_suites::payments::suite(api.clone(), &NoSetup).await;
    }
}

async fn payments_through_the_client(store: TestStore) {
    let app = spawn_app(store).await;
    let loopback = Loopback::serve(remote::payments::server(app.contexts.payments_api()));
    let api: Arc<dyn PaymentsApi> = Arc::new(remote::payments::Client::new(
        CALLER,
        loopback.endpoint.clone(),
        Loopback::policy(),
    ));
    for _ in 0..RUNS {
        port_suites::payments::suite(api.clone(), &NoSetup).await;
    }
}

async fn orders_in_process(store: TestStore) {
    let app = spawn_app(store).await;
    let fixture = InProcess::of(&app);
    let api: Arc<dyn OrdersApi> = Arc::new(remote::orders::Local::new(
        CALLER,
        app.contexts.orders_api(),
    ));
    for _ in 0..RUNS {
        port_suites::orders::suite(api.clone(), &fixture).await;
    }
}

async fn orders_through_the_client(store: TestStore) {
    let app = spawn_app(store).await;
    let fixture = InProcess::of(&app);
    let loopback = Loopback::serve(remote::orders::server(app.contexts.orders_api()));
    let api: Arc<dyn OrdersApi> = Arc::new(remote::orders::Client::new(
        CALLER,
        loopback.endpoint.clone(),
        Loopback::policy(),
    ));
    for _ in 0..RUNS {
        port_suites::orders::suite(api.clone(), &fixture).await;
    }
}

async fn notifications_in_process(store: TestStore) {
    let app = spawn_app(store).await;
    let fixture = InProcess::of(&app);
    let api: Arc<dyn NotificationsApi> = Arc::new(remote::notifications::Local::new(
        CALLER,
        app.contexts.notifications_api(),
    ));
    for _ in 0..RUNS {
        port_suites::notifications::suite(api.clone(), &fixture).await;
    }
}

async fn notifications_through_the_client(store: TestStore) {
    let app = spawn_app(store).await;
    let fixture = InProcess::of(&app);
    let loopback = Loopback::serve(remote::notifications::server(
        app.contexts.notifications_api(),
    ));
    let api: Arc<dyn NotificationsApi> = Arc::new(remote::notifications::Client::new(
        CALLER,
        loopback.endpoint.clone(),
        Loopback::policy(),
    ));
    for _ in 0..RUNS {
        port_suites::notifications::suite(api.clone(), &fixture).await;
    }
}

testkit::backend_tests!(
    auth_in_process,
    auth_through_the_client,
    catalog_in_process,
    catalog_through_the_client,
    payments_in_process,
    payments_through_the_client,
    orders_in_process,
    orders_through_the_client,
    notifications_in_process,
    notifications_through_the_client,
);
