//! Typed configuration, layered with the `config` crate.
//!
//! Order, later wins: the defaults compiled in from `app/config/default.toml`, an optional
//! environment file (`--config FILE` / `SHOP_CONFIG`), then `SHOP__SECTION__KEY` environment
//! variables. Secrets are `SecretString`s: their `Debug` prints `[REDACTED]`, so logging the
//! settings cannot leak them.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use config::{Config, Environment, File, FileFormat};
use db_kit::{RoleConfig, StoreConfig};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::placement::Placement;

const DEFAULTS: &str = include_str!("../config/default.toml");

fn is_http_url(text: &str) -> bool {
    url::Url::parse(text)
        .is_ok_and(|url| matches!(url.scheme(), "http" | "https") && url.has_host())
}

/// The shortest service credential accepted (`internal.token`).
pub const MIN_SERVICE_TOKEN_BYTES: usize = 32;

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub auth: AuthSettings,
    pub catalog: CatalogSettings,
    pub orders: OrdersSettings,
    pub payments: PaymentsSettings,
    pub notifications: NotificationsSettings,
    pub messaging: MessagingSettings,
    pub placement: PlacementSettings,
    pub internal: InternalSettings,
    pub remote: RemoteSettings,
    pub routing: RoutingSettings,
    pub broker: BrokerSettings,
    pub log: LogSettings,
    pub telemetry: TelemetrySettings,
    pub console: ConsoleSettings,
}

/// The administrators' console at `/console`.
#[derive(Debug, Clone, Deserialize)]
pub struct ConsoleSettings {
    /// How often its pages refresh their figures, in milliseconds; 0: never (reload by hand).
    pub refresh_ms: u64,
}

/// Which contexts this process runs and where the others live (see `placement.rs`).
#[derive(Debug, Clone, Deserialize)]
pub struct PlacementSettings {
    /// `all`, or a comma-separated list of contexts.
    pub contexts: String,
    pub auth_url: String,
    pub catalog_url: String,
    pub payments_url: String,
    pub orders_url: String,
    pub notifications_url: String,
}

impl Default for PlacementSettings {
    fn default() -> Self {
        Self {
            contexts: "all".to_owned(),
            auth_url: String::new(),
            catalog_url: String::new(),
            payments_url: String::new(),
            orders_url: String::new(),
            notifications_url: String::new(),
        }
    }
}

impl PlacementSettings {
    /// `placement.<context>_url` (empty when not set or not a context).
    pub fn url(&self, context: &str) -> &str {
        match context {
            "auth" => &self.auth_url,
            "catalog" => &self.catalog_url,
            "payments" => &self.payments_url,
            "orders" => &self.orders_url,
            "notifications" => &self.notifications_url,
            _ => "",
        }
    }

    pub fn url_mut(&mut self, context: &str) -> Option<&mut String> {
        match context {
            "auth" => Some(&mut self.auth_url),
            "catalog" => Some(&mut self.catalog_url),
            "payments" => Some(&mut self.payments_url),
            "orders" => Some(&mut self.orders_url),
            "notifications" => Some(&mut self.notifications_url),
            _ => None,
        }
    }
}

/// The internal listener: the ports of this process's contexts, for other shop processes.
#[derive(Debug, Clone, Deserialize)]
pub struct InternalSettings {
    pub host: String,
    pub port: u16,
    pub token: SecretString,
    pub max_deadline_ms: u64,
    pub workers: usize,
}

/// How this process calls contexts that run elsewhere.
#[derive(Debug, Clone, Deserialize)]
pub struct RemoteSettings {
    pub deadline_ms: u64,
    pub connect_timeout_ms: u64,
    pub max_attempts: u32,
    pub backoff_ms: u64,
    pub max_backoff_ms: u64,
    pub retry_ratio: f32,
    pub min_retries_per_sec: u32,
    pub breaker_failure_rate: f32,
    pub breaker_window: usize,
    pub breaker_open_ms: u64,
    pub breaker_probes: usize,
    pub probe_timeout_ms: u64,
}

/// Strangler fig: which public routes this process sends to another process's public
/// listener, and what share of them (see `routing.rs`).
#[derive(Debug, Clone, Deserialize)]
pub struct RoutingSettings {
    pub auth_url: String,
    pub auth_share: u8,
    pub catalog_url: String,
    pub catalog_share: u8,
    pub payments_url: String,
    pub payments_share: u8,
    pub orders_url: String,
    pub orders_share: u8,
    pub notifications_url: String,
    pub notifications_share: u8,
    pub timeout_ms: u64,
}

impl RoutingSettings {
    /// `routing.<context>_url` and `routing.<context>_share`.
    pub fn target(&self, context: &str) -> (&str, u8) {
        match context {
            "auth" => (&self.auth_url, self.auth_share),
            "catalog" => (&self.catalog_url, self.catalog_share),
            "payments" => (&self.payments_url, self.payments_share),
            "orders" => (&self.orders_url, self.orders_share),
            "notifications" => (&self.notifications_url, self.notifications_share),
            _ => ("", 0),
        }
    }
}

/// The NATS JetStream server integration events cross processes through.
#[derive(Debug, Clone, Deserialize)]
pub struct BrokerSettings {
    /// `nats://host:port`; empty: no broker (events stay in process).
    pub url: String,
    pub stream: String,
    pub subject_prefix: String,
    pub duplicate_window_secs: u64,
    pub publish_timeout_ms: u64,
    pub ack_wait_ms: u64,
    pub max_deliver: u32,
    pub backoff_ms: u64,
    pub max_backoff_ms: u64,
    pub batch: usize,
}

/// Where traces go besides the log.
#[derive(Debug, Clone, Deserialize)]
pub struct TelemetrySettings {
    /// OTLP/HTTP traces endpoint; empty: no export.
    pub otlp_endpoint: String,
    pub otlp_protocol: OtlpProtocol,
    pub service_name: String,
    /// Records in-process boundary calls in traces too (about 3 µs a call instead of 0.2).
    pub trace_local_calls: bool,
}

/// The encoding of exported spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum OtlpProtocol {
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    #[serde(rename = "http/json")]
    HttpJson,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    pub workers: usize,
    pub max_body_bytes: usize,
    pub shutdown_timeout_secs: u64,
    pub client_request_timeout_ms: u64,
    pub client_disconnect_timeout_ms: u64,
    pub keep_alive_secs: u64,
    pub body_read_timeout_ms: u64,
    pub handler_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseSettings {
    pub url: SecretString,
    pub max_connections: u32,
    /// Pool sizes of single contexts, over `max_connections` (`[database.pools]`).
    #[serde(default)]
    pub pools: BTreeMap<String, u32>,
    pub acquire_timeout_secs: u64,
    pub log_statements: bool,
    pub roles: RoleSettings,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RoleSettings {
    pub provision: bool,
    pub prefix: String,
    pub password: SecretString,
    pub connect_as_role: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AuthSettings {
    pub jwt_secret: SecretString,
    pub issuer: String,
    pub audience: String,
    pub token_ttl_secs: u64,
    pub hashing_concurrency: usize,
    pub hashing_queue: usize,
    pub rate_limits: RateLimitSettings,
}

/// Login and registration attempts allowed per client address and per account.
#[derive(Debug, Clone, Deserialize)]
pub struct RateLimitSettings {
    pub address_per_minute: u32,
    pub address_burst: u32,
    pub account_per_minute: u32,
    pub account_burst: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CatalogSettings {
    pub seed_demo: bool,
    pub cache: CatalogCacheSettings,
}

/// The in-process cache of product pages.
#[derive(Debug, Clone, Deserialize)]
pub struct CatalogCacheSettings {
    pub enabled: bool,
    pub capacity: usize,
    pub ttl_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OrdersSettings {
    pub charge_timeout_ms: u64,
    pub lease_secs: u64,
    pub recovery_interval_secs: u64,
    pub recovery_batch: u64,
    pub recovery_concurrency: usize,
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    pub max_attempts: u32,
    pub max_in_flight_per_customer: u32,
    pub detail_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PaymentsSettings {
    pub test_mode: bool,
    pub slow_delay_ms: u64,
    pub provider_timeout_ms: u64,
    pub reconcile_interval_secs: u64,
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SenderKind {
    File,
    Log,
}

#[derive(Debug, Clone, Deserialize)]
pub struct NotificationsSettings {
    pub sender: SenderKind,
}

#[derive(Debug, Clone, Deserialize)]
pub struct MessagingSettings {
    pub background: bool,
    pub poll_interval_ms: u64,
    pub batch_size: u64,
    pub max_attempts: i32,
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    pub retention_hours: u64,
    pub purge_interval_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LogSettings {
    pub filter: String,
    pub format: LogFormat,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The cause is the source, not part of the message: `{:#}` prints the chain once.
    #[error("invalid configuration")]
    Config(#[from] config::ConfigError),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Settings {
    /// Defaults, then `environment_file` (required when given), then `SHOP__*` variables.
    pub fn load(environment_file: Option<&Path>) -> Result<Self, SettingsError> {
        Self::load_with(environment_file, &[])
    }

    /// Like `load`, with `overrides` (key, value) over every layer: the command line's
    /// `shop serve --contexts` sets `placement.contexts` this way.
    pub fn load_with(
        environment_file: Option<&Path>,
        overrides: &[(&str, String)],
    ) -> Result<Self, SettingsError> {
        let mut builder = Config::builder().add_source(File::from_str(DEFAULTS, FileFormat::Toml));
        if let Some(path) = environment_file {
            builder = builder.add_source(File::from(path).required(true));
        }
        builder = builder.add_source(
            Environment::with_prefix("SHOP")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true),
        );
        for (key, value) in overrides {
            builder = builder.set_override(*key, value.clone())?;
        }
        let settings: Settings = builder.build()?.try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    /// The compiled-in defaults alone; tests start from these and change what they need.
    pub fn defaults() -> Self {
        Config::builder()
            .add_source(File::from_str(DEFAULTS, FileFormat::Toml))
            .build()
            .and_then(Config::try_deserialize)
            .expect("the compiled-in defaults are valid")
    }

    fn validate(&self) -> Result<(), SettingsError> {
        let url = self.database.url.expose_secret();
        if !url.is_empty() && !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
            return Err(SettingsError::Invalid(
                "database.url must be empty (embedded SQLite) or a postgres:// URL".into(),
            ));
        }
        if self.database.max_connections == 0 {
            return Err(SettingsError::Invalid(
                "database.max_connections must be at least 1".into(),
            ));
        }
        for (context, size) in &self.database.pools {
            if !crate::placement::ALL.contains(&context.as_str()) {
                return Err(SettingsError::Invalid(format!(
                    "database.pools.{context}: there is no context named {context}"
                )));
            }
            if *size == 0 {
                return Err(SettingsError::Invalid(format!(
                    "database.pools.{context} must be at least 1"
                )));
            }
        }
        if self.database.roles.connect_as_role && url.is_empty() {
            return Err(SettingsError::Invalid(
                "database.roles.connect_as_role needs a Postgres database.url".into(),
            ));
        }
        let placement = self.placement()?;
        let secret = self.auth.jwt_secret.expose_secret();
        if secret.is_empty() && self.uses_postgres() && placement.is_local(auth::CONTEXT) {
            return Err(SettingsError::Invalid(
                "auth.jwt_secret must be set when database.url is a Postgres URL: a shared \
                 database means several replicas, and each would sign tokens with its own \
                 generated development key (set SHOP__AUTH__JWT_SECRET, 32 bytes or more)"
                    .into(),
            ));
        }
        if !secret.is_empty() && secret.len() < auth::SigningKey::MIN_BYTES {
            return Err(SettingsError::Invalid(format!(
                "auth.jwt_secret must be at least {} bytes",
                auth::SigningKey::MIN_BYTES
            )));
        }
        if self.auth.token_ttl_secs == 0 {
            return Err(SettingsError::Invalid(
                "auth.token_ttl_secs must be positive".into(),
            ));
        }
        let limits = &self.auth.rate_limits;
        let server = &self.server;
        for (key, value) in [
            (
                "server.client_request_timeout_ms",
                server.client_request_timeout_ms,
            ),
            ("server.body_read_timeout_ms", server.body_read_timeout_ms),
            ("server.handler_timeout_ms", server.handler_timeout_ms),
            ("catalog.cache.ttl_ms", self.catalog.cache.ttl_ms),
            (
                "auth.rate_limits.address_per_minute",
                u64::from(limits.address_per_minute),
            ),
            (
                "auth.rate_limits.address_burst",
                u64::from(limits.address_burst),
            ),
            (
                "auth.rate_limits.account_per_minute",
                u64::from(limits.account_per_minute),
            ),
            (
                "auth.rate_limits.account_burst",
                u64::from(limits.account_burst),
            ),
        ] {
            if value == 0 {
                return Err(SettingsError::Invalid(format!("{key} must be positive")));
            }
        }
        self.validate_payments()?;
        self.validate_remote(&placement)?;
        self.validate_routing()?;
        self.validate_broker()?;
        self.validate_telemetry()
    }

    fn validate_broker(&self) -> Result<(), SettingsError> {
        let broker = &self.broker;
        if !broker.url.is_empty()
            && !url::Url::parse(&broker.url)
                .is_ok_and(|url| matches!(url.scheme(), "nats" | "tls") && url.has_host())
        {
            return Err(SettingsError::Invalid(
                "broker.url must be empty (no broker) or a nats:// URL".into(),
            ));
        }
        for (key, value) in [
            ("broker.duplicate_window_secs", broker.duplicate_window_secs),
            ("broker.publish_timeout_ms", broker.publish_timeout_ms),
            ("broker.ack_wait_ms", broker.ack_wait_ms),
            ("broker.max_deliver", u64::from(broker.max_deliver)),
            ("broker.backoff_ms", broker.backoff_ms),
            ("broker.batch", broker.batch as u64),
        ] {
            if value == 0 {
                return Err(SettingsError::Invalid(format!("{key} must be positive")));
            }
        }
        if broker.stream.is_empty()
            || !broker
                .stream
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(SettingsError::Invalid(
                "broker.stream must be a name of letters, digits, - and _".into(),
            ));
        }
        if broker.subject_prefix.is_empty()
            || broker
                .subject_prefix
                .split('.')
                .any(|token| token.is_empty() || token.contains(['*', '>', ' ']))
        {
            return Err(SettingsError::Invalid(
                "broker.subject_prefix must be dot-separated tokens without wildcards".into(),
            ));
        }
        Ok(())
    }

    /// How this process uses the broker, when one is configured.
    pub fn broker(&self) -> Option<messaging::BrokerConfig> {
        let broker = &self.broker;
        (!broker.url.is_empty()).then(|| messaging::BrokerConfig {
            url: broker.url.clone(),
            stream: broker.stream.clone(),
            subject_prefix: broker.subject_prefix.clone(),
            duplicate_window: Duration::from_secs(broker.duplicate_window_secs),
            max_age: Duration::from_secs(self.messaging.retention_hours.saturating_mul(3600)),
            publish_timeout: Duration::from_millis(broker.publish_timeout_ms),
            ack_wait: Duration::from_millis(broker.ack_wait_ms),
            max_deliver: i64::from(broker.max_deliver),
            backoff: Duration::from_millis(broker.backoff_ms),
            max_backoff: Duration::from_millis(broker.max_backoff_ms.max(broker.backoff_ms)),
            batch: broker.batch,
        })
    }

    fn validate_routing(&self) -> Result<(), SettingsError> {
        for context in crate::placement::ALL {
            let (url, share) = self.routing.target(context);
            if share > 100 {
                return Err(SettingsError::Invalid(format!(
                    "routing.{context}_share must be a percentage, 0 to 100"
                )));
            }
            if !url.is_empty() && !is_http_url(url) {
                return Err(SettingsError::Invalid(format!(
                    "routing.{context}_url must be an http:// or https:// base URL"
                )));
            }
        }
        if self.routing.timeout_ms == 0 {
            return Err(SettingsError::Invalid(
                "routing.timeout_ms must be positive".into(),
            ));
        }
        Ok(())
    }

    fn validate_telemetry(&self) -> Result<(), SettingsError> {
        let endpoint = &self.telemetry.otlp_endpoint;
        if !endpoint.is_empty() && !is_http_url(endpoint) {
            return Err(SettingsError::Invalid(
                "telemetry.otlp_endpoint must be empty (no export) or an http:// or https:// URL"
                    .into(),
            ));
        }
        if self.telemetry.service_name.trim().is_empty() {
            return Err(SettingsError::Invalid(
                "telemetry.service_name must not be empty".into(),
            ));
        }
        Ok(())
    }

    /// Where each context runs; refuses a placement that cannot work.
    pub fn placement(&self) -> Result<Placement, SettingsError> {
        Placement::resolve(&self.placement, !self.broker.url.is_empty())
            .map_err(|error| SettingsError::Invalid(error.to_string()))
    }

    /// Whether this process opens its internal listener: when it is part of a split
    /// deployment, or when `internal.token` is set.
    pub fn serves_ports(&self, placement: &Placement) -> bool {
        placement.is_split() || !self.internal.token.expose_secret().is_empty()
    }

    fn validate_remote(&self, placement: &Placement) -> Result<(), SettingsError> {
        if self.serves_ports(placement) {
            let token = self.internal.token.expose_secret();
            if token.len() < MIN_SERVICE_TOKEN_BYTES {
                return Err(SettingsError::Invalid(format!(
                    "internal.token must be at least {MIN_SERVICE_TOKEN_BYTES} bytes when \
                     contexts run in several processes (or the token is set): it is the \
                     credential every internal call carries (set SHOP__INTERNAL__TOKEN to the \
                     same value in every process)"
                )));
            }
        }
        let remote = &self.remote;
        for (key, value) in [
            ("remote.deadline_ms", remote.deadline_ms),
            ("remote.connect_timeout_ms", remote.connect_timeout_ms),
            ("remote.max_attempts", u64::from(remote.max_attempts)),
            ("remote.breaker_window", remote.breaker_window as u64),
            ("remote.breaker_open_ms", remote.breaker_open_ms),
            ("remote.breaker_probes", remote.breaker_probes as u64),
            ("remote.probe_timeout_ms", remote.probe_timeout_ms),
            ("internal.max_deadline_ms", self.internal.max_deadline_ms),
        ] {
            if value == 0 {
                return Err(SettingsError::Invalid(format!("{key} must be positive")));
            }
        }
        if !(0.0..=1.0).contains(&remote.retry_ratio) {
            return Err(SettingsError::Invalid(
                "remote.retry_ratio must be between 0 and 1".into(),
            ));
        }
        if !(remote.breaker_failure_rate > 0.0 && remote.breaker_failure_rate <= 1.0) {
            return Err(SettingsError::Invalid(
                "remote.breaker_failure_rate must be above 0 and at most 1".into(),
            ));
        }
        Ok(())
    }

    /// How calls to a remote context behave.
    pub fn call_policy(&self) -> remote::CallPolicy {
        let remote = &self.remote;
        remote::CallPolicy {
            deadline: Duration::from_millis(remote.deadline_ms),
            connect_timeout: Duration::from_millis(remote.connect_timeout_ms),
            max_attempts: remote.max_attempts,
            backoff: Duration::from_millis(remote.backoff_ms),
            max_backoff: Duration::from_millis(remote.max_backoff_ms.max(remote.backoff_ms)),
            retry_ratio: remote.retry_ratio,
            min_retries_per_sec: remote.min_retries_per_sec,
            breaker: remote::BreakerPolicy {
                failure_rate: remote.breaker_failure_rate,
                window: remote.breaker_window,
                open_for: Duration::from_millis(remote.breaker_open_ms),
                probes: remote.breaker_probes,
            },
        }
    }

    /// The credential of internal calls, sent and expected.
    pub fn service_token(&self) -> remote::ServiceToken {
        remote::ServiceToken::new(self.internal.token.clone())
    }

    fn validate_payments(&self) -> Result<(), SettingsError> {
        let payments = &self.payments;
        if payments.provider_timeout_ms == 0
            || payments.provider_timeout_ms >= self.orders.charge_timeout_ms
        {
            return Err(SettingsError::Invalid(
                "payments.provider_timeout_ms must be positive and shorter than \
                 orders.charge_timeout_ms, so that payments records an unknown outcome before \
                 orders gives up"
                    .into(),
            ));
        }
        Ok(())
    }

    /// The time limits of a request (body read, handler).
    pub fn request_limits(&self) -> web_kit::RequestLimits {
        web_kit::RequestLimits {
            body_read: Duration::from_millis(self.server.body_read_timeout_ms),
            handler: Duration::from_millis(self.server.handler_timeout_ms),
        }
    }

    /// How much password hashing may run and wait at once (0 concurrency: two per core).
    pub fn hashing(&self) -> auth::HashingLimits {
        let auth = &self.auth;
        if auth.hashing_concurrency == 0 {
            auth::HashingLimits::for_this_machine(auth.hashing_queue)
        } else {
            auth::HashingLimits {
                concurrency: auth.hashing_concurrency,
                queue: auth.hashing_queue,
            }
        }
    }

    /// Login and registration attempts per client address and per account. (A zero, which
    /// `validate` refuses, counts as one.)
    pub fn attempt_limits(&self) -> auth::AttemptLimits {
        let limits = &self.auth.rate_limits;
        let quota = |per_minute: u32, burst: u32| web_kit::RateQuota {
            per_minute: NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN),
            burst: NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN),
        };
        auth::AttemptLimits {
            per_address: quota(limits.address_per_minute, limits.address_burst),
            per_account: quota(limits.account_per_minute, limits.account_burst),
        }
    }

    /// The catalog's product cache (off when disabled or of no capacity).
    pub fn catalog_cache(&self) -> catalog::CacheConfig {
        let cache = &self.catalog.cache;
        if !cache.enabled || cache.capacity == 0 {
            return catalog::CacheConfig::OFF;
        }
        catalog::CacheConfig {
            enabled: true,
            capacity: cache.capacity,
            ttl: Duration::from_millis(cache.ttl_ms),
        }
    }

    pub fn orders(&self) -> orders::OrdersConfig {
        orders::OrdersConfig {
            charge_timeout: Duration::from_millis(self.orders.charge_timeout_ms),
            lease: Duration::from_secs(self.orders.lease_secs),
            recovery_interval: Duration::from_secs(self.orders.recovery_interval_secs),
            recovery_batch: self.orders.recovery_batch,
            recovery_concurrency: self.orders.recovery_concurrency,
            retry: orders::RetryPolicy {
                base: Duration::from_millis(self.orders.retry_base_ms),
                max: Duration::from_millis(self.orders.retry_max_ms),
                max_attempts: self.orders.max_attempts,
            },
            max_in_flight_per_customer: self.orders.max_in_flight_per_customer,
            detail_timeout: Duration::from_millis(self.orders.detail_timeout_ms),
        }
    }

    pub fn payments(&self) -> payments::PaymentsConfig {
        let payments = &self.payments;
        payments::PaymentsConfig {
            test_mode: payments.test_mode,
            slow_delay: Duration::from_millis(payments.slow_delay_ms),
            provider_timeout: Duration::from_millis(payments.provider_timeout_ms),
            reconcile_interval: Duration::from_secs(payments.reconcile_interval_secs),
            retry_base: Duration::from_millis(payments.retry_base_ms),
            retry_max: Duration::from_millis(payments.retry_max_ms.max(payments.retry_base_ms)),
        }
    }

    pub fn notifications(&self) -> notifications::NotificationsConfig {
        let sender = match self.notifications.sender {
            SenderKind::File => notifications::SenderConfig::File {
                dir: self.data_dir.join("mail"),
            },
            SenderKind::Log => notifications::SenderConfig::Log,
        };
        notifications::NotificationsConfig { sender }
    }

    pub fn messaging(&self) -> messaging::BusConfig {
        let messaging = &self.messaging;
        messaging::BusConfig {
            batch_size: messaging.batch_size,
            max_attempts: messaging.max_attempts,
            retry_base: Duration::from_millis(messaging.retry_base_ms),
            retry_max: Duration::from_millis(messaging.retry_max_ms.max(messaging.retry_base_ms)),
            poll_interval: Duration::from_millis(messaging.poll_interval_ms),
            retention: Duration::from_secs(messaging.retention_hours.saturating_mul(3600)),
            purge_interval: Duration::from_secs(messaging.purge_interval_secs),
        }
    }

    pub fn uses_postgres(&self) -> bool {
        !self.database.url.expose_secret().is_empty()
    }

    /// Where each context's data lives.
    pub fn store(&self) -> StoreConfig {
        let mut store = if self.uses_postgres() {
            StoreConfig::postgres(self.database.url.clone(), self.database.max_connections)
        } else {
            StoreConfig::sqlite(self.data_dir.clone())
        };
        store.pool_sizes = self.database.pools.clone();
        store.acquire_timeout = Duration::from_secs(self.database.acquire_timeout_secs);
        store.log_statements = self.database.log_statements;
        let roles = &self.database.roles;
        let password = roles.password.expose_secret();
        store.roles = RoleConfig {
            provision: roles.provision,
            prefix: roles.prefix.clone(),
            password: (!password.is_empty()).then(|| roles.password.clone()),
            connect_as_role: roles.connect_as_role,
        };
        store
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_embedded_store_on_localhost_8080() {
        let settings = Settings::defaults();
        assert_eq!(
            (settings.server.host.as_str(), settings.server.port),
            ("127.0.0.1", 8080)
        );
        assert!(!settings.uses_postgres());
        assert!(settings.validate().is_ok());
    }

    #[test]
    fn secrets_do_not_appear_in_debug_output() {
        let mut settings = Settings::defaults();
        settings.database.url = SecretString::from("postgres://shop:hunter2@db/shop");
        settings.auth.jwt_secret = SecretString::from("a".repeat(40));
        let printed = format!("{settings:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(!printed.contains(&"a".repeat(40)), "{printed}");
    }

    #[test]
    fn an_environment_file_overrides_the_defaults_and_must_exist() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("staging.toml");
        std::fs::write(&file, "[server]\nport = 9191\n\n[log]\nformat = \"json\"\n")
            .expect("write");
        let settings = Settings::load(Some(&file)).expect("valid file");
        assert_eq!(settings.server.port, 9191);
        assert_eq!(settings.log.format, LogFormat::Json);
        assert_eq!(
            settings.server.host, "127.0.0.1",
            "the rest stays as the defaults say"
        );

        let missing = Settings::load(Some(&dir.path().join("absent.toml")));
        assert!(missing.is_err(), "a file named explicitly must exist");
        std::fs::write(&file, "[server]\nport = \"not a port\"\n").expect("write");
        let invalid = Settings::load(Some(&file)).expect_err("a bad value is refused");
        let shown = format!("{:#}", anyhow::Error::new(invalid));
        assert!(shown.contains("port"), "{shown}");
        assert_eq!(
            shown.matches("expected an integer").count(),
            1,
            "the cause once: {shown}"
        );
    }

    #[test]
    fn bad_values_are_refused() {
        let mut settings = Settings::defaults();
        settings.auth.jwt_secret = SecretString::from("too short");
        assert!(settings.validate().is_err());
        let mut settings = Settings::defaults();
        settings.database.url = SecretString::from("mysql://nope");
        assert!(settings.validate().is_err());
        // Payments must give up on the provider before orders gives up on payments.
        let mut settings = Settings::defaults();
        settings.payments.provider_timeout_ms = settings.orders.charge_timeout_ms;
        assert!(settings.validate().is_err());
        let mut settings = Settings::defaults();
        settings.server.handler_timeout_ms = 0;
        assert!(settings.validate().is_err());
        let mut settings = Settings::defaults();
        settings.auth.rate_limits.account_burst = 0;
        assert!(settings.validate().is_err());
        let mut settings = Settings::defaults();
        settings.catalog.cache.ttl_ms = 0;
        assert!(settings.validate().is_err());
    }

    #[test]
    fn catalog_gets_a_larger_pool_and_any_context_can_be_sized() {
        let mut settings = Settings::defaults();
        settings.database.url = SecretString::from("postgres://shop@db/shop");
        settings.auth.jwt_secret = SecretString::from("k".repeat(32));
        assert!(settings.validate().is_ok());
        let store = settings.store();
        assert_eq!(store.pool_size(catalog::CONTEXT), 32);
        assert_eq!(
            store.pool_size(orders::CONTEXT),
            8,
            "the others: max_connections"
        );

        settings.database.pools.insert("orders".into(), 16);
        assert_eq!(settings.store().pool_size(orders::CONTEXT), 16);
        settings.database.pools.insert("inventory".into(), 4);
        let refused = settings.validate().expect_err("no such context");
        assert!(
            refused.to_string().contains("database.pools.inventory"),
            "{refused}"
        );
        settings.database.pools.remove("inventory");
        settings.database.pools.insert("orders".into(), 0);
        assert!(settings.validate().is_err(), "an empty pool serves nothing");
        settings.database.pools.remove("orders");
        settings.database.max_connections = 0;
        assert!(settings.validate().is_err());

        let sqlite = Settings::defaults().store();
        assert_eq!(
            sqlite.pool_size(catalog::CONTEXT),
            1,
            "SQLite: one connection"
        );
    }

    #[test]
    fn the_catalog_cache_is_on_by_default_and_can_be_turned_off() {
        let mut settings = Settings::defaults();
        assert_eq!(settings.catalog_cache(), catalog::CacheConfig::default());
        settings.catalog.cache.capacity = 0;
        assert_eq!(settings.catalog_cache(), catalog::CacheConfig::OFF);
        let mut settings = Settings::defaults();
        settings.catalog.cache.enabled = false;
        assert_eq!(settings.catalog_cache(), catalog::CacheConfig::OFF);
    }

    /// Test mode is on for the embedded default and off in the production example.
    #[test]
    fn payments_test_mode_is_a_development_default() {
        assert!(Settings::defaults().payments.test_mode);
        let production = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("config")
            .join("production.example.toml");
        // Layered as `load` does, without the environment the example expects (a Postgres
        // URL in SHOP__DATABASE__URL).
        let settings: Settings = Config::builder()
            .add_source(File::from_str(DEFAULTS, FileFormat::Toml))
            .add_source(File::from(production))
            .build()
            .and_then(Config::try_deserialize)
            .expect("the example layers over the defaults");
        assert!(!settings.payments.test_mode);
    }

    #[test]
    fn a_postgres_deployment_needs_its_own_signing_key() {
        let mut settings = Settings::defaults();
        settings.database.url = SecretString::from("postgres://shop@db/shop");
        let refused = settings.validate().expect_err("no key on a shared store");
        assert!(refused.to_string().contains("auth.jwt_secret"), "{refused}");
        settings.auth.jwt_secret = SecretString::from("k".repeat(32));
        assert!(settings.validate().is_ok());
        assert!(
            Settings::defaults().validate().is_ok(),
            "the embedded default generates a development key"
        );
    }
}
