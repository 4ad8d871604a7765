//! Wiring: opens each context's own store, migrates it, builds the context, and connects
//! the contexts: synchronous calls through `-api` trait objects, events through the bus.
//!
//! This is the only code in the workspace that names context implementation crates. Each
//! context receives its own connection (its own schema or SQLite file) and, where it needs
//! another context, that context's trait object, never its implementation.

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
use notifications_api::NotificationsApi;
use orders::{CheckoutHook, NoFaults, OrdersModule};
use orders_api::OrdersApi;
use payments::{PaymentProvider, PaymentsModule};
use payments_api::PaymentsApi;
use sea_orm::DatabaseConnection;

use crate::settings::Settings;
use crate::signing_key;

/// Every context of the shop, assembled, and the bus between them.
#[derive(Debug, Clone)]
pub struct Contexts {
    pub auth: AuthModule,
    pub catalog: CatalogModule,
    pub payments: PaymentsModule,
    pub orders: OrdersModule,
    pub notifications: NotificationsModule,
    pub bus: Arc<Bus>,
    /// Each context's connection, for readiness checks.
    pub stores: Vec<(&'static str, DatabaseConnection)>,
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

/// Every context, in the order they are opened. `shop migrate` provisions roles for these.
pub const ALL: [&str; 5] = [
    auth::CONTEXT,
    catalog::CONTEXT,
    payments::CONTEXT,
    orders::CONTEXT,
    notifications::CONTEXT,
];

impl Contexts {
    pub async fn open(settings: &Settings) -> anyhow::Result<Self> {
        Self::open_with(settings, Options::default()).await
    }

    pub async fn open_with(settings: &Settings, options: Options) -> anyhow::Result<Self> {
        let store = settings.store();
        let clock = options.clock;
        tracing::info!(store = %store.describe(), "opening context stores");

        let auth_db = open_store(&store, auth::CONTEXT).await?;
        auth::migrate(&auth_db).await.context("migrate auth")?;
        let tokens = TokenConfig {
            key: signing_key::resolve(settings)?,
            issuer: settings.auth.issuer.clone(),
            audience: settings.auth.audience.clone(),
            ttl: std::time::Duration::from_secs(settings.auth.token_ttl_secs),
        };
        let auth = AuthModule::new(auth_db.clone(), tokens, settings.hashing(), clock.clone())
            .await
            .context("start auth: cannot make the decoy password hash")?;

        let catalog_db = open_store(&store, catalog::CONTEXT).await?;
        catalog::migrate(&catalog_db)
            .await
            .context("migrate catalog")?;
        let catalog = CatalogModule::new(catalog_db.clone(), clock.clone());

        let payments_db = open_store(&store, payments::CONTEXT).await?;
        payments::migrate(&payments_db)
            .await
            .context("migrate payments")?;
        let payments = match options.payment_provider {
            Some(provider) => PaymentsModule::with_provider(
                payments_db.clone(),
                clock.clone(),
                provider,
                settings.payments(),
            ),
            None => PaymentsModule::new(payments_db.clone(), clock.clone(), settings.payments()),
        };

        // orders calls catalog and payments synchronously, through their ports.
        let orders_db = open_store(&store, orders::CONTEXT).await?;
        orders::migrate(&orders_db)
            .await
            .context("migrate orders")?;
        let orders = OrdersModule::with_hook(
            orders_db.clone(),
            clock.clone(),
            catalog.api(),
            payments.api(),
            settings.orders(),
            options.checkout_hook,
        );

        let notifications_db = open_store(&store, notifications::CONTEXT).await?;
        notifications::migrate(&notifications_db)
            .await
            .context("migrate notifications")?;
        let notifications = NotificationsModule::new(
            notifications_db.clone(),
            clock.clone(),
            settings.notifications(),
        );

        // Events: auth, payments and orders publish; notifications listens.
        let bus = Bus::builder(settings.messaging(), clock)
            .publisher(auth.outbox(), auth_db.clone())
            .publisher(payments.outbox(), payments_db.clone())
            .publisher(orders.outbox(), orders_db.clone())
            .consumer(notifications.consumer())
            .build();

        Ok(Self {
            auth,
            catalog,
            payments,
            orders,
            notifications,
            bus: Arc::new(bus),
            stores: vec![
                (auth::CONTEXT, auth_db),
                (catalog::CONTEXT, catalog_db),
                (payments::CONTEXT, payments_db),
                (orders::CONTEXT, orders_db),
                (notifications::CONTEXT, notifications_db),
            ],
        })
    }

    pub fn auth_api(&self) -> Arc<dyn AuthApi> {
        self.auth.api()
    }

    pub fn catalog_api(&self) -> Arc<dyn CatalogApi> {
        self.catalog.api()
    }

    pub fn payments_api(&self) -> Arc<dyn PaymentsApi> {
        self.payments.api()
    }

    pub fn orders_api(&self) -> Arc<dyn OrdersApi> {
        self.orders.api()
    }

    pub fn notifications_api(&self) -> Arc<dyn NotificationsApi> {
        self.notifications.api()
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
