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
use web_kit::StoreRuntime;

use crate::admin;
use crate::contexts::Contexts;
use crate::openapi;
use crate::ops::{self, Readiness};
use crate::routing::{self, Routing};
use crate::settings::Settings;

/// A built, bound, not yet running shop: its public listener and, when some context runs in
/// another process, its internal listener, which serves this process's ports to the others.
pub struct Application {
    address: String,
    port: u16,
    server: Server,
    internal: Option<(String, Server)>,
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
        if settings.catalog.seed_demo
            && let Some(catalog) = &contexts.catalog
        {
            catalog
                .seed_demo_if_empty()
                .await
                .map_err(|error| anyhow::anyhow!("seed the demo catalog: {error}"))?;
        }
        let listener = bind(&settings.server.host, settings.server.port)
            .with_context(|| format!("bind {}:{}", settings.server.host, settings.server.port))?;
        let local = listener.local_addr()?;
        let server = http_server(listener, settings, &contexts)?;
        // The internal listener exists only when some process may call this one: in a split
        // deployment, or when a service token is set (a whole shop serving its ports to a
        // context being extracted, during the move).
        let internal = if settings.serves_ports(&contexts.placement) {
            let host = settings.internal.host.as_str();
            let listener =
                TcpListener::bind((host, settings.internal.port)).with_context(|| {
                    format!(
                        "bind the internal listener {host}:{}",
                        settings.internal.port
                    )
                })?;
            let address = format!("http://{}", listener.local_addr()?);
            Some((address, internal_server(listener, settings, &contexts)?))
        } else {
            None
        };
        Ok(Self {
            address: format!("http://{local}"),
            port: local.port(),
            server,
            internal,
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

    /// The internal listener's base URL, which other processes call this process's ports
    /// on (`None` when every context runs here).
    pub fn internal_address(&self) -> Option<&str> {
        self.internal.as_ref().map(|(address, _)| address.as_str())
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
        tracing::info!(
            address = %self.address,
            docs = %format!("{}/docs/", self.address),
            placement = %self.contexts.placement,
            "listening"
        );
        let served = match self.internal {
            None => self.server.await,
            Some((address, internal)) => {
                tracing::info!(%address, "serving this process's ports to the others");
                // Both listeners stop on the same signal (actix handles it in each); the
                // first to end stops the other, so that no half of the process lingers.
                let public = self.server.handle();
                let private = internal.handle();
                let (served, internal_served) = tokio::join!(
                    async {
                        let served = self.server.await;
                        private.stop(true).await;
                        served
                    },
                    async {
                        let served = internal.await;
                        public.stop(true).await;
                        served
                    },
                );
                served.and(internal_served)
            }
        };
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
    /// unknown or unconfirmed; and the metrics' upkeep.
    fn spawn_background(&self, shutdown: &CancellationToken) -> Vec<JoinHandle<()>> {
        let mut tasks = vec![
            self.contexts.bus.clone().spawn(shutdown.clone()),
            crate::metrics::spawn_upkeep(crate::metrics::handle(), shutdown.clone()),
        ];
        if let Some(orders) = &self.contexts.orders {
            tasks.push(orders.spawn_recovery(shutdown.clone()));
        }
        if let Some(payments) = &self.contexts.payments {
            tasks.push(payments.spawn_reconciliation(shutdown.clone()));
        }
        tasks
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

/// A listening socket that a restarted process can open again at once: `SO_REUSEADDR`, so
/// the connections of the previous process, waiting out TIME_WAIT, do not hold the port.
fn bind(host: &str, port: u16) -> std::io::Result<TcpListener> {
    use std::net::ToSocketAddrs;
    let address = (host, port).to_socket_addrs()?.next().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::AddrNotAvailable, "no address to bind")
    })?;
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(address),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&address.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

fn http_server(
    listener: TcpListener,
    settings: &Settings,
    contexts: &Contexts,
) -> anyhow::Result<Server> {
    // Every protected route authenticates through auth's port; each local context's routes
    // call that context's own service.
    let auth = contexts.auth_port.clone();
    let accounts = contexts.auth.as_ref().map(auth::AuthModule::service);
    let catalog = contexts
        .catalog
        .as_ref()
        .map(catalog::CatalogModule::service);
    let payments = contexts.payments.is_some();
    let orders = contexts.orders.as_ref().map(orders::OrdersModule::service);
    let notifications = contexts
        .notifications
        .as_ref()
        .map(notifications::NotificationsModule::service);
    let bus = contexts.bus.clone();
    let payments_test_mode = settings.payments.test_mode;
    let readiness = Readiness {
        stores: contexts.stores.clone(),
        remotes: contexts.remotes.clone(),
        broker: contexts.broker.clone(),
        probe_timeout: Duration::from_millis(settings.remote.probe_timeout_ms),
    };
    let document = openapi::document();
    let metrics = crate::metrics::handle();
    let json_limit = settings.server.max_body_bytes;
    let limits = settings.request_limits();
    // One set of counters for every worker, so that a limit holds for the whole process.
    let attempts = Arc::new(auth::Attempts::new(settings.attempt_limits()));
    let routing = Arc::new(Routing::new(settings, &contexts.placement)?);
    let console = Arc::new(crate::console::Console::new(crate::console::Parts {
        placement: contexts.placement.clone(),
        bus: bus.clone(),
        orders: orders.clone(),
        accounts: accounts.clone(),
        attempts: attempts.clone(),
        stores: contexts.stores.clone(),
        metrics: metrics.clone(),
        refresh_ms: settings.console.refresh_ms,
        routes: crate::placement::ALL
            .into_iter()
            .map(|context| (context, settings.routing.target(context).0.to_owned()))
            .filter(|(_, url)| !url.is_empty())
            .collect(),
    }));
    for route in routing.routes() {
        tracing::info!(?route, "public routes sent to another process");
    }
    // Built on the runtime that built the contexts and runs the background work: handlers
    // hand their service calls to it, so that every pooled connection lives on one runtime
    // (web_kit::runtime).
    let store_runtime = StoreRuntime::new(tokio::runtime::Handle::current());
    let mut server = HttpServer::new(move || {
        // Runs on each worker's thread: a pool that opens a connection here is counted.
        db_kit::opened::mark_http_worker();
        App::new()
            // Innermost: a routed request goes away before any route of this process sees
            // it, inside its request span, so it keeps its request id and trace.
            .wrap(from_fn(routing::route))
            .wrap(Compress::default())
            .wrap(from_fn(web_kit::close_after_unread_body))
            .wrap(from_fn(web_kit::request_id_middleware))
            .wrap(from_fn(crate::telemetry::trace_context))
            // App-wide, because every context's protected routes authenticate through it.
            .app_data(web::Data::from(auth.clone()))
            .app_data(store_runtime.clone())
            .configure(|cfg| web_kit::configure_extractors(cfg, json_limit))
            .configure(|cfg| web_kit::configure_limits(cfg, limits))
            .configure(|cfg| {
                // The routes of the contexts this process runs; the others' are served where
                // those contexts run.
                if let Some(accounts) = &accounts {
                    auth::configure(accounts.clone(), attempts.clone())(cfg);
                }
                if let Some(catalog) = &catalog {
                    catalog::configure(catalog.clone())(cfg);
                }
                if payments {
                    payments::configure(payments_test_mode)(cfg);
                }
                if let Some(orders) = &orders {
                    orders::configure(orders.clone())(cfg);
                }
                if let Some(notifications) = &notifications {
                    notifications::configure(notifications.clone())(cfg);
                }
            })
            .configure(admin::configure(bus.clone()))
            .configure(routing::configure(routing.clone()))
            .configure(crate::console::configure(console.clone()))
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

/// The internal listener: this process's ports, for the processes that call them, behind the
/// service credential. Never mounted on the public listener.
fn internal_server(
    listener: TcpListener,
    settings: &Settings,
    contexts: &Contexts,
) -> anyhow::Result<Server> {
    let routes = remote::internal_routes(
        contexts.port_servers(),
        remote::InternalAuth::new(&settings.service_token()),
        Duration::from_millis(settings.internal.max_deadline_ms),
    );
    let json_limit = settings.server.max_body_bytes;
    let store_runtime = StoreRuntime::new(tokio::runtime::Handle::current());
    let mut server = HttpServer::new(move || {
        db_kit::opened::mark_http_worker();
        App::new()
            .app_data(store_runtime.clone())
            .configure(|cfg| web_kit::configure_extractors(cfg, json_limit))
            .configure(routes.clone())
            .default_service(web::to(web_kit::route_not_found))
    })
    .shutdown_timeout(settings.server.shutdown_timeout_secs)
    .client_request_timeout(Duration::from_millis(
        settings.server.client_request_timeout_ms,
    ));
    if settings.internal.workers > 0 {
        server = server.workers(settings.internal.workers);
    }
    Ok(server.listen(listener)?.run())
}
