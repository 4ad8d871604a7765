//! Wiring: opens the store of each context this process runs, migrates it, builds the
//! context, and connects the contexts: synchronous calls through `-api` trait objects, events
//! through the bus.
//!
//! This is the only code in the workspace that names context implementation crates. Each
//! context receives its own connection (its own schema or SQLite file) and, where it needs
//! another context, that context's trait object, never its implementation. Whether that
//! trait object is the context itself (wrapped in `remote::<context>::Local`, which gives
//! the call its boundary span and metrics) or a client of another process
//! (`remote::<context>::Client`) is decided here, from the placement, and nowhere else:
//! the callers cannot tell.

use std::sync::Arc;

use anyhow::Context;
use auth::{AuthModule, TokenConfig};
use auth_api::AuthApi;
use catalog::CatalogModule;
use catalog_api::CatalogApi;
use db_kit::StoreConfig;
use kernel::{Clock, SystemClock};
use messaging::Bus;
use notifications::NotificationsModule;
use orders::{CheckoutHook, NoFaults, OrdersModule};
use payments::{PaymentProvider, PaymentsModule};
use payments_api::PaymentsApi;
use sea_orm::DatabaseConnection;
use url::Url;

use crate::placement::Placement;
use crate::settings::Settings;
use crate::signing_key;

pub use crate::placement::ALL;

/// The contexts this process runs (each `None` when it runs elsewhere), the ports it calls,
/// and the bus between them.
#[derive(Clone)]
pub struct Contexts {
    pub placement: Placement,
    pub auth: Option<AuthModule>,
    pub catalog: Option<CatalogModule>,
    pub payments: Option<PaymentsModule>,
    pub orders: Option<OrdersModule>,
    pub notifications: Option<NotificationsModule>,
    /// auth's port, through which every protected public route authenticates.
    pub auth_port: Arc<dyn AuthApi>,
    /// The contexts this process calls in other processes, for readiness.
    pub remotes: Vec<remote::Transport>,
    /// The broker, when this process's events cross processes (for readiness).
    pub broker: Option<messaging::Broker>,
    pub bus: Arc<Bus>,
    /// Each local context's connection, for readiness checks.
    pub stores: Vec<(&'static str, DatabaseConnection)>,
}

impl std::fmt::Debug for Contexts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Contexts")
            .field("placement", &self.placement)
            .field("remotes", &self.remotes)
            .finish_non_exhaustive()
    }
}

/// What tests may replace; production uses the defaults.
#[derive(Debug, Clone)]
pub struct Options {
    pub clock: Arc<dyn Clock>,
    /// Stops the checkout saga at chosen steps, as a crash would.
    pub checkout_hook: Arc<dyn CheckoutHook>,
    /// The payment provider; `None` is the built-in fake of the settings.
    pub payment_provider: Option<Arc<dyn PaymentProvider>>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            checkout_hook: Arc::new(NoFaults),
            payment_provider: None,
        }
    }
}

/// The `caller` label of authentication on the public routes.
const PUBLIC_ROUTES: &str = "http";

impl Contexts {
    pub async fn open(settings: &Settings) -> anyhow::Result<Self> {
        Self::open_with(settings, Options::default()).await
    }

    pub async fn open_with(settings: &Settings, options: Options) -> anyhow::Result<Self> {
        // Before anything records: the remote clients set their breakers' gauges as they
        // are made.
        crate::metrics::handle();
        let placement = settings.placement()?;
        let store = settings.store();
        let clock = options.clock;
        tracing::info!(store = %store.describe(), %placement, "opening context stores");
        let mut stores = Vec::new();
        let mut remotes = Vec::new();
        let connect = Connect { settings };
        // The port `$caller` calls `$context` through: the local module behind
        // `remote::<context>::Local`, or a client of the process `placement.<context>_url`
        // names (whose transport `/readyz` then probes).
        macro_rules! port {
            ($context:ident, $module:expr, $caller:expr, $needed:literal) => {
                match (&$module, placement.url(remote::$context::PORT.context)) {
                    (Some(module), _) => {
                        Arc::new(remote::$context::Local::new($caller, module.api()))
                    }
                    (None, Some(url)) => {
                        let client = remote::$context::Client::new(
                            $caller,
                            connect.endpoint(url),
                            settings.call_policy(),
                        );
                        remotes.push(client.transport().clone());
                        Arc::new(client)
                    }
                    (None, None) => anyhow::bail!(concat!(
                        $needed,
                        ": placement.",
                        stringify!($context),
                        "_url is empty"
                    )),
                }
            };
        }

        let auth = if placement.is_local(auth::CONTEXT) {
            let db = open_store(&store, auth::CONTEXT).await?;
            auth::migrate(&db).await.context("migrate auth")?;
            let tokens = TokenConfig {
                key: signing_key::resolve(settings)?,
                issuer: settings.auth.issuer.clone(),
                audience: settings.auth.audience.clone(),
                ttl: std::time::Duration::from_secs(settings.auth.token_ttl_secs),
            };
            stores.push((auth::CONTEXT, db.clone()));
            Some(
                AuthModule::new(db, tokens, settings.hashing(), clock.clone())
                    .await
                    .context("start auth: cannot make the decoy password hash")?,
            )
        } else {
            None
        };

        let catalog = if placement.is_local(catalog::CONTEXT) {
            let db = open_store(&store, catalog::CONTEXT).await?;
            catalog::migrate(&db).await.context("migrate catalog")?;
            stores.push((catalog::CONTEXT, db.clone()));
            let catalog = CatalogModule::with_cache(db, clock.clone(), settings.catalog_cache());
            catalog.listen_for_changes().await;
            Some(catalog)
        } else {
            None
        };

        let payments = if placement.is_local(payments::CONTEXT) {
            let db = open_store(&store, payments::CONTEXT).await?;
            payments::migrate(&db).await.context("migrate payments")?;
            stores.push((payments::CONTEXT, db.clone()));
            Some(match options.payment_provider {
                Some(provider) => {
                    PaymentsModule::with_provider(db, clock.clone(), provider, settings.payments())
                }
                None => PaymentsModule::new(db, clock.clone(), settings.payments()),
            })
        } else {
            None
        };

        // orders calls catalog and payments synchronously, through their ports, wherever
        // they run.
        let orders = if placement.is_local(orders::CONTEXT) {
            let catalog_port: Arc<dyn CatalogApi> =
                port!(catalog, catalog, orders::CONTEXT, "orders needs catalog");
            let payments_port: Arc<dyn PaymentsApi> =
                port!(payments, payments, orders::CONTEXT, "orders needs payments");
            let db = open_store(&store, orders::CONTEXT).await?;
            orders::migrate(&db).await.context("migrate orders")?;
            stores.push((orders::CONTEXT, db.clone()));
            Some(OrdersModule::with_hook(
                db,
                clock.clone(),
                catalog_port,
                payments_port,
                settings.orders(),
                options.checkout_hook,
            ))
        } else {
            None
        };

        let notifications = if placement.is_local(notifications::CONTEXT) {
            let db = open_store(&store, notifications::CONTEXT).await?;
            notifications::migrate(&db)
                .await
                .context("migrate notifications")?;
            stores.push((notifications::CONTEXT, db.clone()));
            Some(NotificationsModule::new(
                db,
                clock.clone(),
                settings.notifications(),
            ))
        } else {
            None
        };

        // Every protected public route authenticates through auth's port.
        let auth_port: Arc<dyn AuthApi> =
            port!(auth, auth, PUBLIC_ROUTES, "the public routes need auth");

        // Events: auth, payments and orders publish; notifications listens. Between
        // processes they travel through the broker; within one, the bus hands them over.
        let publishes_away = placement.publishes_away();
        let consumes_from_away = placement.consumes_from_away();
        let broker = match settings.broker() {
            Some(config) if !publishes_away.is_empty() || !consumes_from_away.is_empty() => {
                let url = messaging::redact_url(&config.url);
                let broker = messaging::Broker::connect(config)
                    .await
                    .with_context(|| format!("connect to the broker at {url}"))?;
                for (publisher, consumer) in &publishes_away {
                    tracing::info!(publisher, consumer, broker = %url, "events relayed to the broker for another process");
                }
                for (consumer, publisher) in &consumes_from_away {
                    tracing::info!(consumer, publisher, broker = %url, "events taken from the broker, from another process");
                }
                Some(broker)
            }
            Some(config) => {
                tracing::info!(broker = %messaging::redact_url(&config.url), "broker.url is set but not used: no event of this process crosses processes");
                None
            }
            None => None,
        };
        for (publisher, consumer) in placement.delivers_here() {
            tracing::info!(
                publisher,
                consumer,
                "events handed over in this process, without a broker"
            );
        }
        let mut bus = Bus::builder(settings.messaging(), clock);
        let db_of = |context: &str| {
            stores
                .iter()
                .find(|(name, _)| *name == context)
                .map(|(_, db)| db.clone())
                .expect("every local context has a store")
        };
        if let Some(auth) = &auth {
            bus = bus.publisher(auth.outbox(), db_of(auth::CONTEXT));
        }
        if let Some(payments) = &payments {
            bus = bus.publisher(payments.outbox(), db_of(payments::CONTEXT));
        }
        if let Some(orders) = &orders {
            bus = bus.publisher(orders.outbox(), db_of(orders::CONTEXT));
        }
        if let Some(broker) = &broker
            && !publishes_away.is_empty()
        {
            bus = bus.publish_to(broker.clone());
        }
        if let Some(notifications) = &notifications {
            bus = match &broker {
                Some(broker) if !consumes_from_away.is_empty() => {
                    bus.consumer_of(broker.clone(), notifications.consumer())
                }
                _ => bus.consumer(notifications.consumer()),
            };
        }

        Ok(Self {
            placement,
            auth,
            catalog,
            payments,
            orders,
            notifications,
            auth_port,
            remotes,
            broker,
            bus: Arc::new(bus.build()),
            stores,
        })
    }

    /// A local context's module (tests and tools use these).
    ///
    /// # Panics
    /// If the context runs in another process.
    pub fn auth_module(&self) -> &AuthModule {
        local(&self.auth, auth::CONTEXT)
    }

    /// # Panics
    /// If the context runs in another process.
    pub fn catalog_module(&self) -> &CatalogModule {
        local(&self.catalog, catalog::CONTEXT)
    }

    /// # Panics
    /// If the context runs in another process.
    pub fn payments_module(&self) -> &PaymentsModule {
        local(&self.payments, payments::CONTEXT)
    }

    /// # Panics
    /// If the context runs in another process.
    pub fn orders_module(&self) -> &OrdersModule {
        local(&self.orders, orders::CONTEXT)
    }

    /// # Panics
    /// If the context runs in another process.
    pub fn notifications_module(&self) -> &NotificationsModule {
        local(&self.notifications, notifications::CONTEXT)
    }

    /// The port of a local context, as other contexts in this process call it (tests and
    /// tools use these).
    ///
    /// # Panics
    /// If the context runs in another process.
    pub fn orders_api(&self) -> Arc<dyn orders_api::OrdersApi> {
        local(&self.orders, orders::CONTEXT).api()
    }

    /// # Panics
    /// If the context runs in another process.
    pub fn payments_api(&self) -> Arc<dyn PaymentsApi> {
        local(&self.payments, payments::CONTEXT).api()
    }

    /// # Panics
    /// If the context runs in another process.
    pub fn catalog_api(&self) -> Arc<dyn CatalogApi> {
        local(&self.catalog, catalog::CONTEXT).api()
    }

    /// # Panics
    /// If the context runs in another process.
    pub fn notifications_api(&self) -> Arc<dyn notifications_api::NotificationsApi> {
        local(&self.notifications, notifications::CONTEXT).api()
    }

    /// The ports of the contexts this process runs, to serve on the internal listener.
    pub fn port_servers(&self) -> Vec<remote::PortServer> {
        let mut servers = Vec::new();
        if let Some(auth) = &self.auth {
            servers.push(remote::auth::server(auth.api()));
        }
        if let Some(catalog) = &self.catalog {
            servers.push(remote::catalog::server(catalog.api()));
        }
        if let Some(payments) = &self.payments {
            servers.push(remote::payments::server(payments.api()));
        }
        if let Some(orders) = &self.orders {
            servers.push(remote::orders::server(orders.api()));
        }
        if let Some(notifications) = &self.notifications {
            servers.push(remote::notifications::server(notifications.api()));
        }
        servers
    }
}

fn local<'a, M>(module: &'a Option<M>, context: &str) -> &'a M {
    module
        .as_ref()
        .unwrap_or_else(|| panic!("{context} runs in another process"))
}

/// Builds the endpoints of remote contexts.
struct Connect<'a> {
    settings: &'a Settings,
}

impl Connect<'_> {
    fn endpoint(&self, url: &Url) -> remote::Endpoint {
        remote::Endpoint {
            url: url.clone(),
            token: self.settings.service_token(),
        }
    }
}

async fn open_store(
    store: &StoreConfig,
    context: &'static str,
) -> anyhow::Result<DatabaseConnection> {
    store
        .connect(context)
        .await
        .with_context(|| format!("open the {context} store ({})", store.describe()))
}
