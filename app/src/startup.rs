//! Builds the HTTP server around the assembled contexts.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::http::KeepAlive;
use actix_web::middleware::{Compress, from_fn};
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use utoipa_swagger_ui::SwaggerUi;

use crate::admin;
use crate::contexts::Contexts;
use crate::openapi;
use crate::ops::{self, Readiness};
use crate::settings::Settings;

/// A built, bound, not yet running shop.
pub struct Application {
    address: String,
    port: u16,
    server: Server,
    contexts: Contexts,
    background: bool,
}

impl Application {
    /// Opens and migrates every context's store, seeds the demo catalog if configured,
    /// and binds the listener (port 0 picks a free port).
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        let contexts = Contexts::open(settings).await?;
        Self::build_with(settings, contexts).await
    }

    /// Like `build`, around contexts the caller assembled (tests use a controlled clock).
    pub async fn build_with(settings: &Settings, contexts: Contexts) -> anyhow::Result<Self> {
        if settings.catalog.seed_demo {
            contexts
                .catalog
                .seed_demo_if_empty()
                .await
                .map_err(|error| anyhow::anyhow!("seed the demo catalog: {error}"))?;
        }
        let listener = TcpListener::bind((settings.server.host.as_str(), settings.server.port))
            .with_context(|| format!("bind {}:{}", settings.server.host, settings.server.port))?;
        let local = listener.local_addr()?;
        let server = http_server(listener, settings, &contexts)?;
        Ok(Self {
            address: format!("http://{local}"),
            port: local.port(),
            server,
            contexts,
            background: settings.messaging.background,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    pub fn contexts(&self) -> &Contexts {
        &self.contexts
    }

    /// Serves until SIGTERM or Ctrl-C, then lets in-flight requests finish and stops the
    /// background work (event delivery, checkout recovery, payments reconciliation) cleanly.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let shutdown = CancellationToken::new();
        let tasks = if self.background {
            self.spawn_background(&shutdown)
        } else {
            Vec::new()
        };
        tracing::info!(address = %self.address, docs = %format!("{}/docs/", self.address), "listening");
        let served = self.server.await;
        shutdown.cancel();
        for task in tasks {
            if let Err(error) = task.await {
                tracing::error!(error = %error, "a background task failed");
            }
        }
        served?;
        tracing::info!("shut down");
        Ok(())
    }

    /// The event bus (relay, handlers, purge), the checkout recovery sweep, which first
    /// finishes the checkouts a previous process left unfinished, and payments'
    /// reconciliation and refund sweeps, which first settle what a previous process left
    /// unknown or unconfirmed.
    fn spawn_background(&self, shutdown: &CancellationToken) -> Vec<JoinHandle<()>> {
        vec![
            self.contexts.bus.clone().spawn(shutdown.clone()),
            self.contexts.orders.spawn_recovery(shutdown.clone()),
            self.contexts
                .payments
                .spawn_reconciliation(shutdown.clone()),
        ]
    }
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("address", &self.address)
            .field("contexts", &self.contexts)
            .finish_non_exhaustive()
    }
}

fn http_server(
    listener: TcpListener,
    settings: &Settings,
    contexts: &Contexts,
) -> anyhow::Result<Server> {
    // Every protected route authenticates through auth's port; each context's routes call
    // that context's own service.
    let auth = contexts.auth_api();
    let accounts = contexts.auth.service();
    let catalog = contexts.catalog.service();
    let orders = contexts.orders.service();
    let notifications = contexts.notifications.service();
    let bus = contexts.bus.clone();
    let payments_test_mode = settings.payments.test_mode;
    let readiness = Readiness {
        stores: contexts.stores.clone(),
    };
    let document = openapi::document();
    let metrics = crate::metrics::handle();
    let json_limit = settings.server.max_body_bytes;
    let limits = settings.request_limits();
    // One set of counters for every worker, so that a limit holds for the whole process.
    let attempts = Arc::new(auth::Attempts::new(settings.attempt_limits()));
    let mut server = HttpServer::new(move || {
        App::new()
            .wrap(Compress::default())
            .wrap(from_fn(web_kit::close_after_unread_body))
            .wrap(from_fn(web_kit::request_id_middleware))
            // App-wide, because every context's protected routes authenticate through it.
            .app_data(web::Data::from(auth.clone()))
            .configure(|cfg| web_kit::configure_extractors(cfg, json_limit))
            .configure(|cfg| web_kit::configure_limits(cfg, limits))
            .configure(auth::configure(accounts.clone(), attempts.clone()))
            .configure(catalog::configure(catalog.clone()))
            .configure(payments::configure(payments_test_mode))
            .configure(orders::configure(orders.clone()))
            .configure(notifications::configure(notifications.clone()))
            .configure(admin::configure(bus.clone()))
            .configure(ops::configure(readiness.clone()))
            .configure(crate::metrics::configure(metrics.clone(), bus.clone()))
            .service(web::redirect("/docs", "/docs/"))
            .service(SwaggerUi::new("/docs/{_:.*}").url("/api-docs/openapi.json", document.clone()))
            .default_service(web::to(web_kit::route_not_found))
    })
    .shutdown_timeout(settings.server.shutdown_timeout_secs)
    // Slow clients: the request head must arrive in time (else 408, connection closed), an
    // idle connection is closed, and so is one whose client does not close its side.
    .client_request_timeout(Duration::from_millis(
        settings.server.client_request_timeout_ms,
    ))
    .client_disconnect_timeout(Duration::from_millis(
        settings.server.client_disconnect_timeout_ms,
    ))
    .keep_alive(match settings.server.keep_alive_secs {
        0 => KeepAlive::Disabled,
        secs => KeepAlive::Timeout(Duration::from_secs(secs)),
    });
    if settings.server.workers > 0 {
        server = server.workers(settings.server.workers);
    }
    Ok(server.listen(listener)?.run())
}
