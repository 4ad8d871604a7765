//! Typed configuration, layered with the `config` crate.
//!
//! Order, later wins: the defaults compiled in from `app/config/default.toml`, an optional
//! environment file (`--config FILE` / `SHOP_CONFIG`), then `SHOP__SECTION__KEY` environment
//! variables. Secrets are `SecretString`s: their `Debug` prints `[REDACTED]`, so logging the
//! settings cannot leak them.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use config::{Config, Environment, File, FileFormat};
use db_kit::{RoleConfig, StoreConfig};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

const DEFAULTS: &str = include_str!("../config/default.toml");

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
    pub log: LogSettings,
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
        let mut builder = Config::builder().add_source(File::from_str(DEFAULTS, FileFormat::Toml));
        if let Some(path) = environment_file {
            builder = builder.add_source(File::from(path).required(true));
        }
        let settings: Settings = builder
            .add_source(
                Environment::with_prefix("SHOP")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true),
            )
            .build()?
            .try_deserialize()?;
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
        if self.database.roles.connect_as_role && url.is_empty() {
            return Err(SettingsError::Invalid(
                "database.roles.connect_as_role needs a Postgres database.url".into(),
            ));
        }
        let secret = self.auth.jwt_secret.expose_secret();
        if secret.is_empty() && self.uses_postgres() {
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
        self.validate_payments()
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
        if payments.reconcile_interval_secs == 0 {
            return Err(SettingsError::Invalid(
                "payments.reconcile_interval_secs must be positive".into(),
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
        settings.payments.reconcile_interval_secs = 0;
        assert!(settings.validate().is_err());
        let mut settings = Settings::defaults();
        settings.server.handler_timeout_ms = 0;
        assert!(settings.validate().is_err());
        let mut settings = Settings::defaults();
        settings.auth.rate_limits.account_burst = 0;
        assert!(settings.validate().is_err());
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
