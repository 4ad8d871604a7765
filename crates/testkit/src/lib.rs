//! Test support shared by every crate's integration tests.
//!
//! Each test gets a store of its own: a fresh temporary directory of SQLite files, or a fresh
//! Postgres database created on the server named by `SHOP_TEST_DATABASE_URL` (the README's
//! test command starts a throwaway server and sets it). Behaviour tests are written once and
//! run on both backends with [`backend_tests!`].
//!
//! There is no silent skip: without `SHOP_TEST_DATABASE_URL` the Postgres half of the suite
//! fails and says how to run it.

use std::time::Duration;

use db_kit::StoreConfig;
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection};
use secrecy::SecretString;
use tempfile::TempDir;

/// Names the administrator URL of the Postgres server tests create their databases on.
pub const DATABASE_URL_VAR: &str = "SHOP_TEST_DATABASE_URL";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A store that exists for one test. The SQLite files are deleted when it drops, and so is
/// the Postgres database (with `FORCE`, ending whatever connections the test left open), so
/// a whole run keeps a few test databases on disk at a time, not hundreds.
#[derive(Debug)]
pub struct TestStore {
    pub backend: Backend,
    pub config: StoreConfig,
    /// The test's own scratch directory (SQLite files, keys, outgoing mail).
    pub dir: TempDir,
    /// The Postgres database's name, to build URLs for other roles.
    pub database: Option<String>,
}

impl TestStore {
    pub async fn new(backend: Backend) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("shop-test-")
            .tempdir()
            .expect("create a temporary directory");
        match backend {
            Backend::Sqlite => Self {
                backend,
                config: StoreConfig::sqlite(dir.path().join("data")),
                dir,
                database: None,
            },
            Backend::Postgres => {
                let (url, database) = create_database().await;
                let mut config = StoreConfig::postgres(SecretString::from(url), 4);
                config.acquire_timeout = Duration::from_secs(30);
                Self {
                    backend,
                    config,
                    dir,
                    database: Some(database),
                }
            }
        }
    }

    /// Connects one context to this test's store.
    pub async fn connect(&self, context: &str) -> DatabaseConnection {
        self.config
            .connect(context)
            .await
            .unwrap_or_else(|error| panic!("connect {context}: {error:?}"))
    }

    /// The administrator URL of this test's Postgres database; `None` on SQLite.
    pub fn database_url(&self) -> Option<String> {
        self.database
            .as_ref()
            .map(|_| self.postgres_url_as("postgres"))
    }

    /// The URL of this test's Postgres database as `user` (trusted on the test server).
    pub fn postgres_url_as(&self, user: &str) -> String {
        let database = self.database.as_deref().expect("a Postgres test store");
        let mut url = url::Url::parse(&admin_url()).expect("valid admin url");
        url.set_username(user).expect("url takes a user");
        url.set_password(None).expect("url takes no password");
        url.set_path(database);
        url.to_string()
    }
}

impl Drop for TestStore {
    #[expect(
        clippy::print_stderr,
        reason = "a test's own output is where a leftover database is worth a line"
    )]
    fn drop(&mut self) {
        let Some(database) = self.database.take() else {
            return;
        };
        // Drop runs inside the test's runtime, which cannot be blocked on: the statement runs
        // on a thread of its own with a runtime of its own. A failure only leaves the
        // database to the throwaway server, so it is reported, never a panic (this may run
        // while a failed test unwinds).
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|error| error.to_string())?;
            runtime.block_on(drop_database(&database))
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(error)) => eprintln!("testkit: could not drop a test database: {error}"),
            Err(_) => eprintln!("testkit: dropping a test database panicked"),
        }
    }
}

async fn drop_database(name: &str) -> Result<(), String> {
    let mut options = ConnectOptions::new(admin_url());
    options.max_connections(1).sqlx_logging(false);
    let admin = Database::connect(options)
        .await
        .map_err(|error| error.to_string())?;
    let dropped = admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .await
        .map(|_| ())
        .map_err(|error| error.to_string());
    admin.close().await.map_err(|error| error.to_string())?;
    dropped
}

/// The administrator URL of the test server.
pub fn admin_url() -> String {
    std::env::var(DATABASE_URL_VAR).unwrap_or_else(|_| {
        panic!(
            "{DATABASE_URL_VAR} is not set. The Postgres half of the test suite needs a server: \
             run `./scripts/test.sh`, which starts a throwaway Postgres and sets it."
        )
    })
}

async fn create_database() -> (String, String) {
    let admin_url = admin_url();
    let mut options = ConnectOptions::new(admin_url.clone());
    options.max_connections(1).sqlx_logging(false);
    let admin = Database::connect(options)
        .await
        .unwrap_or_else(|error| panic!("connect to {DATABASE_URL_VAR}: {error}"));
    let name = format!("shop_test_{}", uuid::Uuid::new_v4().simple());
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .unwrap_or_else(|error| panic!("create test database: {error}"));
    admin.close().await.expect("close admin connection");
    let mut url = url::Url::parse(&admin_url).expect("valid admin url");
    url.set_path(&name);
    (url.to_string(), name)
}

/// A property test against a real store: one store and one runtime for the whole run, the
/// system under test built once, then one async case per generated input. Model-based
/// tests (random operation sequences checked against a simple model) use it on both
/// backends.
#[derive(Debug)]
pub struct PropertyTest {
    runtime: tokio::runtime::Runtime,
    store: TestStore,
}

impl PropertyTest {
    pub fn new(backend: Backend) -> Self {
        let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
        let store = runtime.block_on(TestStore::new(backend));
        Self { runtime, store }
    }

    pub fn store(&self) -> &TestStore {
        &self.store
    }

    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// Runs `case` on `cases` inputs from `strategy`, shrinking a failure to a minimal one.
    pub fn check<S: proptest::strategy::Strategy>(
        &self,
        cases: u32,
        strategy: S,
        case: impl Fn(S::Value) -> Result<(), proptest::test_runner::TestCaseError>,
    ) {
        let config = proptest::test_runner::Config {
            cases,
            failure_persistence: None,
            ..proptest::test_runner::Config::default()
        };
        if let Err(failure) = proptest::test_runner::TestRunner::new(config).run(&strategy, case) {
            panic!("{failure}");
        }
    }
}

/// Runs each named `async fn(TestStore)` twice: once on SQLite, once on Postgres.
///
/// ```text
/// async fn reserving_takes_stock(store: TestStore) { ... }
/// testkit::backend_tests!(reserving_takes_stock);
/// ```
#[macro_export]
macro_rules! backend_tests {
    ($($test:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test($crate::TestStore::new($crate::Backend::Sqlite).await).await
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test($crate::TestStore::new($crate::Backend::Postgres).await).await
                }
            )+
        }
    };
}
