//! The product cache: no stale read after a write of the same service, other services'
//! writes seen through notifications (Postgres) or at the latest after the time to live,
//! `Freshness::Fresh` (the route's `Cache-Control: no-cache`) reads the database, and
//! neither reservations nor the port's batch read ever consult the cache.
//!
//! Two services built on two pools of one store stand for two shop processes on one
//! database: each has its own cache. Time is a `ManualClock`: an entry expires only when a
//! test moves the clock, so every assertion holds however slow the machine is.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use catalog::{CacheConfig, CatalogModule, CatalogService, Freshness};
use catalog_api::{CatalogApi, CatalogError, Product, ProductPatch, StockLine};
use chrono::Utc;
use futures::future::join_all;
use kernel::{ManualClock, OrderId, ProductId};
use testkit::{Backend, TestStore};

use crate::{create, eur};

const TTL: Duration = Duration::from_secs(60);

fn config() -> CacheConfig {
    CacheConfig {
        enabled: true,
        capacity: 1_000,
        ttl: TTL,
    }
}

/// One "process": a service with its own pool and cache, on `clock`.
async fn process(store: &TestStore, clock: &Arc<ManualClock>) -> Arc<CatalogService> {
    let db = store.connect(catalog::CONTEXT).await;
    catalog::migrate(&db).await.expect("migrate");
    CatalogModule::with_cache(db, clock.clone(), config()).service()
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(Utc::now()))
}

async fn cached(catalog: &CatalogService, id: ProductId) -> Arc<Product> {
    catalog
        .read_product(id, Freshness::Cached)
        .await
        .expect("product")
}

fn price(cents: i64) -> ProductPatch {
    ProductPatch {
        price: Some(eur(cents)),
        ..ProductPatch::default()
    }
}

async fn set_price(catalog: &CatalogService, id: ProductId, cents: i64) {
    catalog
        .update_product(id, price(cents))
        .await
        .expect("update");
}

async fn a_write_is_seen_by_the_next_read_of_its_process(store: TestStore) {
    let clock = clock();
    let catalog = process(&store, &clock).await;
    let product = create(&catalog, "FRESH-1", 5).await;
    assert_eq!(*cached(&catalog, product.id).await, product);

    set_price(&catalog, product.id, 1234).await;
    assert_eq!(cached(&catalog, product.id).await.price, eur(1234));

    catalog
        .update_product(
            product.id,
            ProductPatch {
                name: Some("Renamed".into()),
                active: Some(false),
                ..ProductPatch::default()
            },
        )
        .await
        .expect("deactivate");
    let read = cached(&catalog, product.id).await;
    assert_eq!((read.name.as_str(), read.active), ("Renamed", false));

    catalog.adjust_stock(product.id, 3).await.expect("adjust");
    assert_eq!(cached(&catalog, product.id).await.stock.available, 8);

    // Reservation steps move the units a page shows: the page follows them too.
    let order = OrderId::new();
    catalog
        .update_product(
            product.id,
            ProductPatch {
                active: Some(true),
                ..ProductPatch::default()
            },
        )
        .await
        .expect("activate");
    catalog
        .reserve_stock(
            order,
            vec![StockLine {
                product_id: product.id,
                quantity: 2,
            }],
        )
        .await
        .expect("reserve");
    let stock = cached(&catalog, product.id).await.stock;
    assert_eq!((stock.available, stock.reserved), (6, 2));
    catalog.commit_reservation(order).await.expect("commit");
    let stock = cached(&catalog, product.id).await.stock;
    assert_eq!((stock.available, stock.reserved), (6, 0));
    catalog.restock_reservation(order).await.expect("restock");
    assert_eq!(cached(&catalog, product.id).await.stock.available, 8);
}

/// Readers race a writer that changes the price again and again. The property: a read that
/// starts after a write returned sees that write or a later one, never an older price,
/// however the reads, their fills and the invalidations interleave (the race of a fill
/// that read the old row before the commit and stores it after the invalidation
/// included). Nothing waits on time: every read checks what the writer had finished
/// before it started.
async fn concurrent_readers_never_see_a_price_older_than_a_finished_write(store: TestStore) {
    const WRITES: i64 = 60;
    const READERS: usize = 6;
    let clock = clock();
    let catalog = process(&store, &clock).await;
    let product = create(&catalog, "RACE-1", 1).await;
    let id = product.id;
    // The price (in cents) of the last write that returned.
    let finished = Arc::new(AtomicI64::new(product.price.amount_minor()));
    let done = Arc::new(AtomicI64::new(0));

    let readers = (0..READERS).map(|reader| {
        let catalog = catalog.clone();
        let finished = finished.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut reads = 0_u32;
            loop {
                let over = done.load(Ordering::SeqCst) == 1;
                let floor = finished.load(Ordering::SeqCst);
                // Every reader now and then refreshes the page too, as `no-cache` does.
                let freshness = if reads % 7 == reader as u32 % 7 {
                    Freshness::Fresh
                } else {
                    Freshness::Cached
                };
                let seen = catalog
                    .read_product(id, freshness)
                    .await
                    .expect("read")
                    .price
                    .amount_minor();
                assert!(
                    seen >= floor,
                    "read {seen} after the write of {floor} had returned (reader {reader})"
                );
                reads += 1;
                if over {
                    return reads;
                }
                tokio::task::yield_now().await;
            }
        })
    });
    let readers: Vec<_> = readers.collect();

    for cents in 1001..=1000 + WRITES {
        set_price(&catalog, id, cents).await;
        finished.store(cents, Ordering::SeqCst);
        tokio::task::yield_now().await;
    }
    done.store(1, Ordering::SeqCst);
    for reader in join_all(readers).await {
        assert!(reader.expect("reader") > 0);
    }
    assert_eq!(cached(&catalog, id).await.price, eur(1000 + WRITES));
}

/// Without notifications (none on SQLite; a process that does not listen, or lost one),
/// another process's write is seen once the entry's time to live has passed.
async fn without_notifications_the_time_to_live_bounds_staleness(store: TestStore) {
    let (writer_clock, reader_clock) = (clock(), clock());
    let writer = process(&store, &writer_clock).await;
    let reader = process(&store, &reader_clock).await;
    let product = create(&writer, "TTL-1", 4).await;
    assert_eq!(cached(&reader, product.id).await.price, product.price);

    set_price(&writer, product.id, 777).await;
    writer.adjust_stock(product.id, -4).await.expect("adjust");
    assert_eq!(
        cached(&reader, product.id).await.price,
        product.price,
        "the reader's page is cached, and nothing told it"
    );
    reader_clock
        .advance(chrono::Duration::from_std(TTL).expect("ttl") - chrono::Duration::milliseconds(1));
    assert_eq!(cached(&reader, product.id).await.price, product.price);
    reader_clock.advance(chrono::Duration::milliseconds(1));
    let read = cached(&reader, product.id).await;
    assert_eq!((read.price, read.stock.available), (eur(777), 0));
}

/// `Freshness::Fresh` (`Cache-Control: no-cache`) reads the database and refreshes the page.
async fn a_fresh_read_bypasses_and_refreshes_the_cache(store: TestStore) {
    let (writer_clock, reader_clock) = (clock(), clock());
    let writer = process(&store, &writer_clock).await;
    let reader = process(&store, &reader_clock).await;
    let product = create(&writer, "BYPASS-1", 4).await;
    assert_eq!(cached(&reader, product.id).await.price, product.price);
    set_price(&writer, product.id, 555).await;
    assert_eq!(cached(&reader, product.id).await.price, product.price);

    let fresh = reader
        .read_product(product.id, Freshness::Fresh)
        .await
        .expect("fresh read");
    assert_eq!(fresh.price, eur(555));
    assert_eq!(
        cached(&reader, product.id).await.price,
        eur(555),
        "the fresh read refreshed the page"
    );

    let missing = ProductId::new();
    for freshness in [Freshness::Cached, Freshness::Fresh] {
        assert_eq!(
            reader.read_product(missing, freshness).await,
            Err(CatalogError::ProductNotFound {
                product_id: missing
            })
        );
    }
}

/// A cached page says there is stock; the database has none: the reservation reads the
/// database and is refused. The port's batch read (prices at checkout) reads it too.
async fn reservations_and_checkout_prices_never_consult_the_cache(store: TestStore) {
    let (writer_clock, reader_clock) = (clock(), clock());
    let writer = process(&store, &writer_clock).await;
    let reader = process(&store, &reader_clock).await;
    let product = create(&writer, "AUTH-1", 1).await;
    assert_eq!(cached(&reader, product.id).await.stock.available, 1);

    writer.adjust_stock(product.id, -1).await.expect("sell out");
    set_price(&writer, product.id, 4321).await;
    let page = cached(&reader, product.id).await;
    assert_eq!(
        (page.stock.available, page.price),
        (1, product.price),
        "the reader's page still shows the old stock and price"
    );

    assert_eq!(
        reader
            .reserve_stock(
                OrderId::new(),
                vec![StockLine {
                    product_id: product.id,
                    quantity: 1,
                }],
            )
            .await,
        Err(CatalogError::OutOfStock {
            product_ids: vec![product.id]
        })
    );
    let batch = reader
        .get_products(vec![product.id])
        .await
        .expect("batch read");
    assert_eq!((batch[0].price, batch[0].stock.available), (eur(4321), 0));
}

/// The cache turned off: every read is the database's.
async fn a_disabled_cache_reads_the_database_every_time(store: TestStore) {
    let clock = clock();
    let writer = process(&store, &clock).await;
    let db = store.connect(catalog::CONTEXT).await;
    let reader = CatalogModule::with_cache(db, clock.clone(), CacheConfig::OFF).service();
    let product = create(&writer, "OFF-1", 1).await;
    assert_eq!(cached(&reader, product.id).await.price, product.price);
    set_price(&writer, product.id, 999).await;
    assert_eq!(cached(&reader, product.id).await.price, eur(999));
    assert!(!reader.listen_for_changes().await, "nothing to listen for");
}

testkit::backend_tests!(
    a_write_is_seen_by_the_next_read_of_its_process,
    concurrent_readers_never_see_a_price_older_than_a_finished_write,
    without_notifications_the_time_to_live_bounds_staleness,
    a_fresh_read_bypasses_and_refreshes_the_cache,
    reservations_and_checkout_prices_never_consult_the_cache,
    a_disabled_cache_reads_the_database_every_time,
);

/// How long a test waits for a notification to arrive before it fails. Not a timing
/// assertion: the poll ends as soon as the change is seen, and the deadline only turns a
/// lost notification into a failure instead of a hang.
const DEADLINE: Duration = Duration::from_secs(30);

/// Polls `reader`'s cached page until `seen` holds, or fails at the deadline.
async fn eventually(
    reader: &CatalogService,
    id: ProductId,
    what: &str,
    seen: impl Fn(&Product) -> bool,
) {
    let polled = tokio::time::timeout(DEADLINE, async {
        loop {
            if seen(&*cached(reader, id).await) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(polled.is_ok(), "{what}: not seen within {DEADLINE:?}");
}

/// Returns once `reader` has heard every notification committed before the call: it
/// caches a marker product's page, `writer` changes the marker, and the reader sees it.
async fn settle(reader: &CatalogService, writer: &Arc<CatalogService>) {
    let marker = create(writer, &format!("MARK-{}", ProductId::new()), 0).await;
    assert_eq!(cached(reader, marker.id).await.price, marker.price);
    set_price(writer, marker.id, 1001).await;
    eventually(reader, marker.id, "the marker's change", |page| {
        page.price == eur(1001)
    })
    .await;
}

/// On Postgres another process's write reaches this process's cache through
/// `pg_notify('catalog_changed', id)`, long before the time to live (which the reader's
/// clock never reaches here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_process_write_is_seen_through_its_notification() {
    let store = TestStore::new(Backend::Postgres).await;
    let (writer_clock, reader_clock) = (clock(), clock());
    let writer = process(&store, &writer_clock).await;
    let reader = process(&store, &reader_clock).await;
    assert!(reader.listen_for_changes().await, "the reader listens");
    assert!(writer.listen_for_changes().await, "the writer listens");
    let product = create(&writer, "NOTIFY-1", 3).await;
    assert_eq!(cached(&reader, product.id).await.price, product.price);

    set_price(&writer, product.id, 2222).await;
    eventually(&reader, product.id, "the new price", |page| {
        page.price == eur(2222)
    })
    .await;
    writer.adjust_stock(product.id, 7).await.expect("adjust");
    eventually(&reader, product.id, "the new stock", |page| {
        page.stock.available == 10
    })
    .await;
    // And the other way round.
    assert_eq!(cached(&writer, product.id).await.stock.available, 10);
    set_price(&reader, product.id, 3333).await;
    eventually(&writer, product.id, "the reader's price", |page| {
        page.price == eur(3333)
    })
    .await;
}

/// A change nobody was notified of (a notification lost while the listening connection
/// was down) is dropped from the cache when the listener connects again: the whole cache
/// is cleared then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_that_reconnects_clears_the_cache() {
    use sea_orm::{ConnectionTrait, DbBackend, Statement};

    let store = TestStore::new(Backend::Postgres).await;
    let clock = clock();
    let reader = process(&store, &clock).await;
    let writer = process(&store, &clock).await;
    assert!(reader.listen_for_changes().await, "the reader listens");
    let product = create(&writer, "LOST-1", 3).await;
    // The reader hears its creation (and drops the page, if it had one) at some point;
    // once it heard a later notification, it has heard that one (Postgres delivers them
    // in commit order), and the page it caches next stays until something drops it.
    settle(&reader, &writer).await;
    assert_eq!(cached(&reader, product.id).await.price, product.price);

    // A change that announces itself to nobody, as if its notification were lost.
    let admin = store.connect(catalog::CONTEXT).await;
    admin
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "UPDATE products SET price_minor = 6060 WHERE id = $1",
            [product.id.as_uuid().into()],
        ))
        .await
        .expect("update behind the cache's back");
    assert_eq!(cached(&reader, product.id).await.price, product.price);

    // Cut the listening connection (only this test's database's).
    let cut = admin
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = $1 AND datname = current_database()",
            [catalog::LISTENER_NAME.into()],
        ))
        .await
        .expect("terminate the listener");
    assert_eq!(cut.rows_affected(), 1, "one listening connection");
    eventually(
        &reader,
        product.id,
        "the price changed unannounced",
        |page| page.price == eur(6060),
    )
    .await;

    // It listens again: notified changes invalidate as before.
    set_price(&writer, product.id, 7070).await;
    eventually(&reader, product.id, "a price notified after", |page| {
        page.price == eur(7070)
    })
    .await;
}
