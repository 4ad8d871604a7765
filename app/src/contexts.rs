//! Wiring: opens each context's own store, migrates it, and builds the context.
//!
//! This is the only code in the workspace that names context implementation crates. Each
//! context receives its own connection (its own schema or SQLite file) and, where it needs
//! another context, that context's `-api` trait object, never its implementation.

use std::sync::Arc;

use anyhow::Context;
use auth::{AuthModule, TokenConfig};
use auth_api::AuthApi;
use catalog::CatalogModule;
use catalog_api::CatalogApi;
use db_kit::StoreConfig;
use kernel::{Clock, SystemClock};
use sea_orm::DatabaseConnection;

use crate::settings::Settings;
use crate::signing_key;

/// Every context of the shop, assembled.
#[derive(Debug, Clone)]
pub struct Contexts {
    pub auth: AuthModule,
    pub catalog: CatalogModule,
    /// Each context's connection, for readiness checks.
    pub stores: Vec<(&'static str, DatabaseConnection)>,
}

impl Contexts {
    pub async fn open(settings: &Settings) -> anyhow::Result<Self> {
        Self::open_with_clock(settings, Arc::new(SystemClock)).await
    }

    /// Like `open`, with a chosen clock (tests control time with it).
    pub async fn open_with_clock(
        settings: &Settings,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        let store = settings.store();
        tracing::info!(store = %store.describe(), "opening context stores");

        let auth_db = open_store(&store, auth::CONTEXT).await?;
        auth::migrate(&auth_db).await.context("migrate auth")?;
        let tokens = TokenConfig {
            key: signing_key::resolve(settings)?,
            issuer: settings.auth.issuer.clone(),
            audience: settings.auth.audience.clone(),
            ttl: std::time::Duration::from_secs(settings.auth.token_ttl_secs),
        };
        let auth = AuthModule::new(auth_db.clone(), tokens, clock.clone()).await;

        let catalog_db = open_store(&store, catalog::CONTEXT).await?;
        catalog::migrate(&catalog_db)
            .await
            .context("migrate catalog")?;
        let catalog = CatalogModule::new(catalog_db.clone(), clock);

        Ok(Self {
            auth,
            catalog,
            stores: vec![(auth::CONTEXT, auth_db), (catalog::CONTEXT, catalog_db)],
        })
    }

    pub fn auth_api(&self) -> Arc<dyn AuthApi> {
        self.auth.api()
    }

    pub fn catalog_api(&self) -> Arc<dyn CatalogApi> {
        self.catalog.api()
    }
}

/// Every context, in the order they are opened. `shop migrate` provisions roles for these.
pub const ALL: [&str; 2] = [auth::CONTEXT, catalog::CONTEXT];

async fn open_store(
    store: &StoreConfig,
    context: &'static str,
) -> anyhow::Result<DatabaseConnection> {
    store
        .connect(context)
        .await
        .with_context(|| format!("open the {context} store ({})", store.describe()))
}
