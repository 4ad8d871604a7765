//! What the product read costs below HTTP: the database client alone, on Postgres
//! (`scripts/test.sh`'s server, or any: `SHOP_TEST_DATABASE_URL=postgres://… cargo bench -p
//! catalog --bench read_path`).
//!
//! It creates a test database, migrates catalog, creates 24 products, then reads them by id
//! from 64 concurrent tasks on a two-thread runtime (the shop's shape: 64 clients, two
//! cores), alternating rounds of:
//!
//! - `service`: `CatalogService::get_product`, the shop's own read (sea-orm, one prepared
//!   statement, `catalog::store::find_product`);
//! - `sqlx`: the same statement text (`catalog::product_read_sql`) through sqlx alone on the
//!   same pool, to tell what sea-orm adds.
//!
//! Each round prints reads per second and the CPU milliseconds per read of this process and
//! of Postgres (every process named `postgres` on the machine, so run it on a quiet one).
//! `READ_BENCH_POOL` (default 8, the shop's `database.max_connections`) sets the pool size,
//! `READ_BENCH_SECS` (default 5) a round's length. Compare with `pgbench -S -M prepared` on the
//! same server, in the same run (scripts/bench-perf.sh prints both for the shop over HTTP);
//! figures from another machine or another day do not compare. Results: docs/PERFORMANCE.md,
//! "The pool, and the read below HTTP".

#![expect(clippy::print_stdout, reason = "a benchmark's figures are its output")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use catalog::{CatalogModule, CatalogService};
use catalog_api::NewProduct;
use kernel::{Currency, Money, ProductId, SystemClock};
use sea_orm::DatabaseConnection;
use testkit::{Backend, TestStore};
use uuid::Uuid;

const TASKS: usize = 64;
const PRODUCTS: usize = 24;

/// The columns the statement returns, decoded as the shop decodes them.
#[derive(Debug)]
struct Row {
    id: Uuid,
    name: String,
    available: Option<i64>,
}

impl<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> for Row {
    fn from_row(row: &'r sqlx::postgres::PgRow) -> Result<Self, sqlx::Error> {
        use sqlx::Row as _;
        // Every column is decoded, as the service's row type does.
        let _sku: String = row.try_get(1)?;
        let _description: String = row.try_get(3)?;
        let _price: i64 = row.try_get(4)?;
        let _currency: String = row.try_get(5)?;
        let _category: String = row.try_get(6)?;
        let _active: bool = row.try_get(7)?;
        let _created: chrono::DateTime<chrono::Utc> = row.try_get(8)?;
        let _updated: chrono::DateTime<chrono::Utc> = row.try_get(9)?;
        let _reserved: Option<i64> = row.try_get(11)?;
        Ok(Self {
            id: row.try_get(0)?,
            name: row.try_get(2)?,
            available: row.try_get(10)?,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Service,
    Sqlx,
}

/// User and system CPU ticks (1/100 s) of one process.
fn ticks(pid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let field = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok());
    field(11).unwrap_or(0) + field(12).unwrap_or(0)
}

/// CPU ticks of every Postgres process on the machine.
fn postgres_ticks() -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| name.bytes().all(|b| b.is_ascii_digit()))
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim() == "postgres")
        })
        .map(|pid| ticks(&pid))
        .sum()
}

async fn read(
    path: Path,
    service: &CatalogService,
    pool: &sqlx::PgPool,
    id: ProductId,
) -> (Uuid, String, i64) {
    match path {
        Path::Service => {
            let product = service
                .get_product(id)
                .await
                .expect("read through the service");
            (
                product.id.as_uuid(),
                product.name,
                i64::from(product.stock.available),
            )
        }
        Path::Sqlx => {
            let row: Row = sqlx::query_as(catalog::product_read_sql())
                .bind(id.as_uuid())
                .fetch_one(pool)
                .await
                .expect("read through sqlx");
            (row.id, row.name, row.available.unwrap_or(0))
        }
    }
}

async fn round(
    path: Path,
    service: &Arc<CatalogService>,
    pool: &sqlx::PgPool,
    ids: &Arc<Vec<ProductId>>,
    length: Duration,
) {
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let me = std::process::id().to_string();
    let (cpu0, pg0, t0) = (ticks(&me), postgres_ticks(), Instant::now());
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let (service, pool, ids) = (service.clone(), pool.clone(), ids.clone());
            let (stop, reads) = (stop.clone(), reads.clone());
            tokio::spawn(async move {
                let mut next = task;
                while !stop.load(Ordering::Relaxed) {
                    read(path, &service, &pool, ids[next % ids.len()]).await;
                    next += 7;
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    tokio::time::sleep(length).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("reader task");
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let n = reads.load(Ordering::Relaxed) as f64;
    let per_read = |ticks: u64| ticks as f64 * 10.0 / n;
    println!(
        "{path:?}: {:.0} reads/s, CPU per read: this process {:.4} ms, Postgres {:.4} ms",
        n / elapsed,
        per_read(ticks(&me) - cpu0),
        per_read(postgres_ticks() - pg0),
    );
}

fn main() {
    let pool_size = std::env::var("READ_BENCH_POOL")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let length = Duration::from_secs(
        std::env::var("READ_BENCH_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(5),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async move {
        let mut store = TestStore::new(Backend::Postgres).await;
        store.config.max_connections = pool_size;
        let db: DatabaseConnection = store.connect(catalog::CONTEXT).await;
        catalog::migrate(&db).await.expect("migrate catalog");
        let service = CatalogModule::new(db.clone(), Arc::new(SystemClock)).service();
        let mut ids = Vec::new();
        for i in 0..PRODUCTS {
            let product = service
                .create_product(NewProduct {
                    sku: format!("BENCH-{i}"),
                    name: format!("Bench product {i}"),
                    description: "A product read over and over".into(),
                    price: Money::new(1999, Currency::EUR).expect("valid money"),
                    category: "bench".into(),
                    initial_stock: 100,
                    active: true,
                })
                .await
                .expect("create a product");
            ids.push(product.id);
        }
        let pool = db.get_postgres_connection_pool().clone();
        // Both paths read the same thing, and every connection has prepared the statement.
        for id in &ids {
            assert_eq!(
                read(Path::Service, &service, &pool, *id).await,
                read(Path::Sqlx, &service, &pool, *id).await
            );
        }
        let ids = Arc::new(ids);
        println!(
            "pool {pool_size}, {TASKS} tasks, {} s per round",
            length.as_secs()
        );
        for _ in 0..2 {
            for path in [Path::Service, Path::Sqlx] {
                round(path, &service, &pool, &ids, length).await;
            }
        }
        drop(service);
        db.close().await.expect("close the pool");
    });
}
