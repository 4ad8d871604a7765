//! Store configuration and per-context connections.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use sea_orm::sqlx;
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr, Statement,
};
use secrecy::{ExposeSecret, SecretString};

use crate::{opened, postgres};

/// Where every context keeps its data.
#[derive(Debug, Clone)]
pub enum Backend {
    /// The embedded default: one SQLite file per context, `<data_dir>/<context>.db`.
    Sqlite { data_dir: PathBuf },
    /// One Postgres database, one schema per context. The URL's user is the administrator
    /// used for provisioning, and for the contexts unless they connect as their own role.
    Postgres { url: SecretString },
}

/// Per-context Postgres roles.
#[derive(Debug, Clone)]
pub struct RoleConfig {
    /// `shop migrate` creates one role per context, owning that context's schema only.
    pub provision: bool,
    /// Role names are `<prefix><context>`, `shop_catalog` by default.
    pub prefix: String,
    /// The roles' login password; without one they can only log in where the server trusts them.
    pub password: Option<SecretString>,
    /// Contexts log in as their role instead of the URL's user.
    pub connect_as_role: bool,
}

impl Default for RoleConfig {
    fn default() -> Self {
        Self {
            provision: false,
            prefix: "shop_".into(),
            password: None,
            connect_as_role: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub backend: Backend,
    /// Pool size per context on Postgres. SQLite pools always hold one connection: SQLite
    /// has one writer at a time, and a single connection makes that explicit instead of
    /// surfacing as `database is locked` errors under load.
    pub max_connections: u32,
    /// Contexts whose Postgres pool holds a different number of connections than
    /// `max_connections` (catalog's, which serves the public product reads).
    pub pool_sizes: BTreeMap<String, u32>,
    pub acquire_timeout: Duration,
    pub roles: RoleConfig,
    /// Log every SQL statement (debug aid).
    pub log_statements: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the data directory {path}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot connect the {context} context to its store")]
    Connect {
        context: String,
        #[source]
        source: DbErr,
    },
    #[error("cannot prepare the {context} schema")]
    Schema {
        context: String,
        #[source]
        source: DbErr,
    },
    #[error("cannot provision the role for the {context} context")]
    Provision {
        context: String,
        #[source]
        source: DbErr,
    },
    #[error("{0} is not a valid context name (lower-case letters, digits and `_`)")]
    InvalidContextName(String),
}

impl StoreConfig {
    /// The embedded default rooted at `data_dir`.
    pub fn sqlite(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            backend: Backend::Sqlite {
                data_dir: data_dir.into(),
            },
            max_connections: 1,
            pool_sizes: BTreeMap::new(),
            acquire_timeout: Duration::from_secs(10),
            roles: RoleConfig::default(),
            log_statements: false,
        }
    }

    pub fn postgres(url: SecretString, max_connections: u32) -> Self {
        Self {
            backend: Backend::Postgres { url },
            max_connections,
            pool_sizes: BTreeMap::new(),
            acquire_timeout: Duration::from_secs(10),
            roles: RoleConfig::default(),
            log_statements: false,
        }
    }

    /// How many connections `context`'s pool holds at most: on SQLite always one.
    pub fn pool_size(&self, context: &str) -> u32 {
        match self.backend {
            Backend::Sqlite { .. } => 1,
            Backend::Postgres { .. } => self
                .pool_sizes
                .get(context)
                .copied()
                .unwrap_or(self.max_connections),
        }
    }

    pub fn role_name(&self, context: &str) -> String {
        format!("{}{}", self.roles.prefix, context)
    }

    /// Where the data lives, for logs: never includes a password.
    pub fn describe(&self) -> String {
        match &self.backend {
            Backend::Sqlite { data_dir } => format!("sqlite files in {}", data_dir.display()),
            Backend::Postgres { url } => postgres::redacted(url.expose_secret()),
        }
    }

    /// Opens the pool of one context, creating its SQLite file or Postgres schema if needed.
    pub async fn connect(&self, context: &str) -> Result<DatabaseConnection, StoreError> {
        check_context_name(context)?;
        let connect_error = |source| StoreError::Connect {
            context: context.to_owned(),
            source,
        };
        match &self.backend {
            Backend::Sqlite { data_dir } => {
                std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir {
                    path: data_dir.clone(),
                    source,
                })?;
                let path = data_dir.join(format!("{context}.db"));
                let mut options = ConnectOptions::new(format!("sqlite://{}", path.display()));
                options
                    .max_connections(self.pool_size(context))
                    .min_connections(1)
                    .acquire_timeout(self.acquire_timeout)
                    .sqlx_logging(self.log_statements)
                    .map_sqlx_sqlite_opts(move |opts| {
                        opts.filename(&path)
                            .create_if_missing(true)
                            .journal_mode(SqliteJournalMode::Wal)
                            .synchronous(SqliteSynchronous::Normal)
                            .foreign_keys(true)
                            .busy_timeout(Duration::from_secs(5))
                    })
                    .map_sqlx_sqlite_pool_opts(note_opened(context));
                Database::connect(options).await.map_err(connect_error)
            }
            Backend::Postgres { url } => {
                let mut options = ConnectOptions::new(url.expose_secret().to_owned());
                options
                    .max_connections(self.pool_size(context))
                    .min_connections(0)
                    .acquire_timeout(self.acquire_timeout)
                    .idle_timeout(Duration::from_secs(60))
                    // No ping before handing a pooled connection out: it is a round trip
                    // per statement outside a transaction, the cost of a whole product
                    // read. A connection Postgres dropped fails its next statement, which
                    // closes it; the caller's error is the same as for any failed query.
                    .test_before_acquire(false)
                    .sqlx_logging(self.log_statements)
                    .set_application_name(format!("shop:{context}"))
                    .map_sqlx_postgres_pool_opts(note_opened(context));
                let role = self
                    .roles
                    .connect_as_role
                    .then(|| (self.role_name(context), self.roles.password.clone()));
                let schema = context.to_owned();
                options.map_sqlx_postgres_opts(move |opts| {
                    // Only the context's own schema: an unqualified name can never resolve
                    // to another context's table, not even by accident. A parameter of the
                    // connection's start-up, so no statement of its own (a `SET` after
                    // connecting would take the pool's one callback, which counts where
                    // connections are opened, and a round trip).
                    let opts = opts.options([("search_path", schema.as_str())]);
                    match &role {
                        None => opts,
                        Some((role, None)) => opts.username(role),
                        Some((role, Some(password))) => {
                            opts.username(role).password(password.expose_secret())
                        }
                    }
                });
                let db = Database::connect(options).await.map_err(connect_error)?;
                ensure_schema(&db, context)
                    .await
                    .map_err(|source| StoreError::Schema {
                        context: context.to_owned(),
                        source,
                    })?;
                Ok(db)
            }
        }
    }

    /// Creates (or updates) the context's role and makes it the owner of the context's
    /// schema, with no access to anything else. Idempotent; safe to run concurrently.
    /// Needs the URL's user to be allowed to create roles. A no-op on SQLite.
    pub async fn provision_role(&self, context: &str) -> Result<(), StoreError> {
        check_context_name(context)?;
        let Backend::Postgres { url } = &self.backend else {
            return Ok(());
        };
        let provision_error = |source| StoreError::Provision {
            context: context.to_owned(),
            source,
        };
        let mut options = ConnectOptions::new(url.expose_secret().to_owned());
        // Never log this connection's statements, whatever `log_statements` says: one of
        // them carries the roles' password (`ALTER ROLE ... PASSWORD`).
        options.max_connections(1).sqlx_logging(false);
        let admin = Database::connect(options).await.map_err(provision_error)?;
        let role = self.role_name(context);
        let password = self
            .roles
            .password
            .as_ref()
            .map(|p| p.expose_secret().to_owned());
        let result = postgres::provision_role(&admin, context, &role, password.as_deref()).await;
        admin.close().await.map_err(provision_error)?;
        result.map_err(provision_error)?;
        tracing::info!(context, role = %role, "provisioned context role");
        Ok(())
    }
}

/// Context names become schema names, role names and file names; keep them boring.
fn check_context_name(context: &str) -> Result<(), StoreError> {
    let valid = !context.is_empty()
        && context.len() <= 40
        && context
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(StoreError::InvalidContextName(context.to_owned()))
    }
}

/// Creates the schema unless it exists. Checking first matters: a context role owns its
/// schema but may not create schemas, and `CREATE SCHEMA IF NOT EXISTS` checks that
/// privilege before it checks for existence.
async fn ensure_schema(db: &DatabaseConnection, schema: &str) -> Result<(), DbErr> {
    let exists = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT 1 AS present FROM pg_namespace WHERE nspname = $1",
            [schema.into()],
        ))
        .await?
        .is_some();
    if !exists {
        let sql = format!(
            "CREATE SCHEMA IF NOT EXISTS {}",
            postgres::quote_ident(schema)
        );
        db.execute_unprepared(&sql).await?;
    }
    Ok(())
}

/// A pool's callback for each connection it opens: notes where it was opened
/// (`opened::note`).
fn note_opened<DB: sqlx::Database>(
    context: &str,
) -> impl Fn(sqlx::pool::PoolOptions<DB>) -> sqlx::pool::PoolOptions<DB> + Send + Sync + 'static {
    let context: std::sync::Arc<str> = context.into();
    move |pool| {
        let context = context.clone();
        pool.after_connect(move |_, _| {
            let context = context.clone();
            Box::pin(async move {
                opened::note(&context);
                Ok(())
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_names_are_restricted() {
        assert!(check_context_name("catalog").is_ok());
        assert!(check_context_name("order_lines2").is_ok());
        for bad in ["", "Catalog", "cat-alog", "auth; drop", "a\"b"] {
            assert!(check_context_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn descriptions_never_show_passwords() {
        let config = StoreConfig::postgres(
            SecretString::from("postgres://shop:s3cret@db.internal:5432/shop"),
            5,
        );
        let described = config.describe();
        assert!(!described.contains("s3cret"), "{described}");
        assert!(described.contains("db.internal"), "{described}");
    }
}
