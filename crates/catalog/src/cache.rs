//! The in-process cache of product pages: what `GET /api/catalog/products/{id}` answers
//! without asking the database.
//!
//! Invariants:
//! - **No stale read after a write in this process.** Every write of the catalog's
//!   (create, update, stock adjustment, and each reservation step, whose units a page
//!   shows) invalidates its products after its transaction commits and before it returns.
//!   A fill can race with that: a reader misses, reads the old row, the writer commits and
//!   invalidates, then the reader would store the old row. So a fill carries a [`Ticket`],
//!   its shard's generation taken *before* the database read, and is stored only if no
//!   invalidation of that shard happened since (checked and stored under the shard's write
//!   lock, which every invalidation takes to bump the generation). An entry present after a
//!   write returned was therefore either removed by that write, or filled from a read that
//!   started after the write's invalidation, hence after its commit.
//! - **Other processes' writes are seen within a bound.** Their transactions
//!   `pg_notify('catalog_changed', product_id)` (Postgres), which `listen` turns into
//!   invalidations here; every entry also expires `catalog.cache.ttl_ms` after it was
//!   filled, the hard bound when a notification is lost, on SQLite, or for the stock that
//!   other processes' reservations move (they notify nobody). When the listening connection
//!   is lost and made again, the whole cache is cleared.
//! - **Cached stock never decides anything.** Reservations (`stock.rs`) and the port's
//!   `get_products` (prices at checkout) read the database; the cache only serves pages.
//!
//! Hits and misses are counted in `shop_catalog_cache_hits_total` and
//! `shop_catalog_cache_misses_total{reason}`, invalidations in
//! `shop_catalog_cache_invalidations_total{source}`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};
use std::time::Duration;

use catalog_api::Product;
use chrono::{DateTime, Utc};
use kernel::{Clock, ProductId};
use metrics::Counter;
use sea_orm::DatabaseConnection;

use crate::store::{Change, ChangeListener};

/// Served from the cache.
pub const HITS: &str = "shop_catalog_cache_hits_total";
/// Read from the database, by `reason`: `absent`, `expired`, or `bypassed` (the caller
/// asked for a fresh read: `Cache-Control: no-cache`).
pub const MISSES: &str = "shop_catalog_cache_misses_total";
/// Entries dropped, by `source`: `write` (in this process), `notification` (another
/// process's write), `cleared` (every entry at once: the listening connection was lost or
/// came back, or a write's outcome is unknown).
pub const INVALIDATIONS: &str = "shop_catalog_cache_invalidations_total";

/// The most shards the cache is split into (each its own lock and generation).
const MAX_SHARDS: usize = 32;

/// What the cache holds and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// Off: every read goes to the database.
    pub enabled: bool,
    /// Products held at most; 0 turns the cache off.
    pub capacity: usize,
    /// How long an entry is served after it was filled: the longest another process's
    /// write can go unseen here.
    pub ttl: Duration,
}

impl CacheConfig {
    /// No cache: every read goes to the database.
    pub const OFF: Self = Self {
        enabled: false,
        capacity: 0,
        ttl: Duration::ZERO,
    };

    fn is_on(&self) -> bool {
        self.enabled && self.capacity > 0 && !self.ttl.is_zero()
    }
}

impl Default for CacheConfig {
    /// As `app/config/default.toml` has it.
    fn default() -> Self {
        Self {
            enabled: true,
            capacity: 10_000,
            ttl: Duration::from_millis(5_000),
        }
    }
}

/// A fill's permission, taken before its database read: the fill is stored only if its
/// shard saw no invalidation since.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket {
    shard: usize,
    generation: u64,
}

#[derive(Debug)]
struct Entry {
    product: Arc<Product>,
    expires_at: DateTime<Utc>,
}

#[derive(Debug, Default)]
struct Shard {
    entries: HashMap<ProductId, Entry>,
    /// Bumped by every invalidation of the shard, under its write lock.
    generation: u64,
    capacity: usize,
}

struct Meters {
    hits: Counter,
    absent: Counter,
    expired: Counter,
    bypassed: Counter,
    by_write: Counter,
    by_notification: Counter,
    by_clearing: Counter,
}

impl Meters {
    /// Registered once, so that a hit costs an atomic add, not a registry lookup.
    fn register() -> Self {
        let miss = |reason: &'static str| metrics::counter!(MISSES, "reason" => reason);
        let invalidation =
            |source: &'static str| metrics::counter!(INVALIDATIONS, "source" => source);
        Self {
            hits: metrics::counter!(HITS),
            absent: miss("absent"),
            expired: miss("expired"),
            bypassed: miss("bypassed"),
            by_write: invalidation("write"),
            by_notification: invalidation("notification"),
            by_clearing: invalidation("cleared"),
        }
    }
}

/// Who invalidates an entry (for the metric).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    Write,
    Notification,
}

/// Product pages by id, bounded in size and in age, in shards.
pub(crate) struct ProductCache {
    on: bool,
    ttl: chrono::Duration,
    clock: Arc<dyn Clock>,
    shards: Box<[RwLock<Shard>]>,
    meters: Meters,
}

impl std::fmt::Debug for ProductCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProductCache")
            .field("on", &self.on)
            .field("ttl", &self.ttl)
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
}

impl ProductCache {
    pub(crate) fn new(config: CacheConfig, clock: Arc<dyn Clock>) -> Self {
        let on = config.is_on();
        let count = if on {
            config.capacity.min(MAX_SHARDS)
        } else {
            0
        };
        // The capacity spread over the shards, exactly: the first ones take the remainder.
        let shards = (0..count)
            .map(|index| {
                let extra = usize::from(index < config.capacity % count);
                RwLock::new(Shard {
                    capacity: config.capacity / count + extra,
                    ..Shard::default()
                })
            })
            .collect();
        Self {
            on,
            ttl: chrono::Duration::from_std(config.ttl).unwrap_or(chrono::Duration::MAX),
            clock,
            shards,
            meters: Meters::register(),
        }
    }

    pub(crate) fn is_on(&self) -> bool {
        self.on
    }

    fn shard_of(&self, id: ProductId) -> usize {
        // Product ids are random in their low bits (v4, and v7's `rand_b`).
        let low = id.as_uuid().as_u64_pair().1;
        usize::try_from(low % self.shards.len() as u64).unwrap_or(0)
    }

    fn read(&self, shard: usize) -> RwLockReadGuard<'_, Shard> {
        self.shards[shard]
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self, shard: usize) -> RwLockWriteGuard<'_, Shard> {
        self.shards[shard]
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The cached page, unless absent or expired.
    pub(crate) fn get(&self, id: ProductId) -> Option<Arc<Product>> {
        if !self.on {
            return None;
        }
        let shard = self.read(self.shard_of(id));
        match shard.entries.get(&id) {
            Some(entry) if self.clock.now() < entry.expires_at => {
                self.meters.hits.increment(1);
                Some(entry.product.clone())
            }
            Some(_) => {
                self.meters.expired.increment(1);
                None
            }
            None => {
                self.meters.absent.increment(1);
                None
            }
        }
    }

    /// Counts a read that did not consult the cache because its caller asked for a fresh
    /// one.
    pub(crate) fn bypassed(&self) {
        if self.on {
            self.meters.bypassed.increment(1);
        }
    }

    /// Take before reading the database for a fill.
    pub(crate) fn ticket(&self, id: ProductId) -> Option<Ticket> {
        if !self.on {
            return None;
        }
        let shard = self.shard_of(id);
        let generation = self.read(shard).generation;
        Some(Ticket { shard, generation })
    }

    /// Stores what a read that took `ticket` found, unless its shard was invalidated since
    /// (then the read may predate a write, and the next read fills again).
    pub(crate) fn fill(&self, ticket: Option<Ticket>, product: Arc<Product>) {
        let Some(ticket) = ticket else {
            return;
        };
        let expires_at = self.clock.now() + self.ttl;
        let mut shard = self.write(ticket.shard);
        if shard.generation != ticket.generation {
            return;
        }
        let id = product.id;
        if !shard.entries.contains_key(&id) && shard.entries.len() >= shard.capacity {
            let now = self.clock.now();
            shard.entries.retain(|_, entry| now < entry.expires_at);
            if shard.entries.len() >= shard.capacity {
                // Full of live entries: make room by dropping any one of them.
                if let Some(victim) = shard.entries.keys().next().copied() {
                    shard.entries.remove(&victim);
                }
            }
        }
        shard.entries.insert(
            id,
            Entry {
                product,
                expires_at,
            },
        );
    }

    /// Drops `id`'s page and refuses the fills that started before.
    pub(crate) fn invalidate(&self, id: ProductId, source: Source) {
        if !self.on {
            return;
        }
        let mut shard = self.write(self.shard_of(id));
        shard.generation = shard.generation.wrapping_add(1);
        shard.entries.remove(&id);
        drop(shard);
        match source {
            Source::Write => self.meters.by_write.increment(1),
            Source::Notification => self.meters.by_notification.increment(1),
        }
    }

    /// Drops every page and refuses every fill that started before.
    pub(crate) fn clear(&self) {
        for index in 0..self.shards.len() {
            let mut shard = self.write(index);
            shard.generation = shard.generation.wrapping_add(1);
            shard.entries.clear();
        }
        if self.on {
            self.meters.by_clearing.increment(1);
        }
    }
}

/// The background task that turns other processes' notifications into invalidations.
/// Aborted when dropped (with the service that owns it).
#[derive(Debug)]
pub(crate) struct Listening(tokio::task::JoinHandle<()>);

impl Listening {
    pub(crate) fn new(task: tokio::task::JoinHandle<()>) -> Self {
        Self(task)
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The longest wait between two attempts to listen again.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// Follows `listener` (already listening, when `Some`) until the cache is gone: every
/// notification invalidates its product; a lost connection clears the whole cache once it
/// listens again, since what changed meanwhile was announced to nobody here.
pub(crate) async fn follow(
    cache: Weak<ProductCache>,
    mut listener: Option<ChangeListener>,
    db: DatabaseConnection,
) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        let Some(current) = listener.as_mut() else {
            match ChangeListener::connect(&db).await {
                Ok(None) => return,
                Ok(Some(connected)) => {
                    let Some(cache) = cache.upgrade() else {
                        return;
                    };
                    cache.clear();
                    tracing::info!("listening for catalog changes again; product cache cleared");
                    listener = Some(connected);
                    backoff = FIRST_BACKOFF;
                }
                Err(error) => {
                    tracing::warn!(%error, retry_in_ms = backoff.as_millis(), "cannot listen for catalog changes");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
            continue;
        };
        let change = current.next().await;
        let Some(cache) = cache.upgrade() else {
            return;
        };
        match change {
            Ok(Change::Product(id)) => cache.invalidate(id, Source::Notification),
            Ok(Change::Unreadable) => cache.clear(),
            Ok(Change::Reconnected) => {
                cache.clear();
                tracing::info!("catalog change listener reconnected; product cache cleared");
            }
            Err(error) => {
                // Notifications may be lost until it listens again: drop what they would
                // have invalidated now, and again once it listens.
                cache.clear();
                tracing::warn!(%error, "catalog change listener failed; product cache cleared");
                listener = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use catalog_api::StockLevel;
    use kernel::{Currency, ManualClock, Money};

    use super::*;

    fn product(id: ProductId, cents: i64) -> Arc<Product> {
        let now = Utc::now();
        Arc::new(Product {
            id,
            sku: "SKU".into(),
            name: "Name".into(),
            description: String::new(),
            price: Money::new(cents, Currency::EUR).expect("money"),
            category: "things".into(),
            active: true,
            stock: StockLevel {
                available: 1,
                reserved: 0,
            },
            created_at: now,
            updated_at: now,
        })
    }

    fn cache(capacity: usize) -> (ProductCache, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(Utc::now()));
        let config = CacheConfig {
            enabled: true,
            capacity,
            ttl: Duration::from_secs(10),
        };
        (ProductCache::new(config, clock.clone()), clock)
    }

    fn price(cache: &ProductCache, id: ProductId) -> Option<i64> {
        cache.get(id).map(|product| product.price.amount_minor())
    }

    /// The classic race: the reader takes its ticket and reads the old row, the writer
    /// commits and invalidates, then the reader tries to store the old row.
    #[test]
    fn a_fill_that_started_before_an_invalidation_is_refused() {
        let (cache, _) = cache(100);
        let id = ProductId::new();
        let ticket = cache.ticket(id);
        cache.invalidate(id, Source::Write);
        cache.fill(ticket, product(id, 100));
        assert_eq!(price(&cache, id), None);

        let ticket = cache.ticket(id);
        cache.fill(ticket, product(id, 200));
        assert_eq!(price(&cache, id), Some(200));
        // A stale fill can also not replace a page filled after the invalidation.
        let stale = cache.ticket(id);
        cache.invalidate(id, Source::Notification);
        let fresh = cache.ticket(id);
        cache.fill(fresh, product(id, 300));
        cache.fill(stale, product(id, 200));
        assert_eq!(price(&cache, id), Some(300));

        let before = cache.ticket(id);
        cache.clear();
        assert_eq!(price(&cache, id), None);
        cache.fill(before, product(id, 300));
        assert_eq!(price(&cache, id), None);
    }

    #[test]
    fn entries_expire_after_the_time_to_live() {
        let (cache, clock) = cache(100);
        let id = ProductId::new();
        cache.fill(cache.ticket(id), product(id, 100));
        clock.advance(chrono::Duration::milliseconds(9_999));
        assert_eq!(price(&cache, id), Some(100));
        clock.advance(chrono::Duration::milliseconds(1));
        assert_eq!(price(&cache, id), None);
    }

    #[test]
    fn the_cache_holds_at_most_its_capacity() {
        for capacity in [1, 5, 32, 40] {
            let (cache, _) = cache(capacity);
            let ids: Vec<ProductId> = (0..capacity * 4).map(|_| ProductId::new()).collect();
            for id in &ids {
                cache.fill(cache.ticket(*id), product(*id, 1));
                assert_eq!(price(&cache, *id), Some(1), "the latest fill is kept");
            }
            let held = ids.iter().filter(|id| cache.get(**id).is_some()).count();
            assert!(held <= capacity, "{held} held, capacity {capacity}");
        }
    }

    #[test]
    fn a_cache_turned_off_holds_nothing() {
        for config in [
            CacheConfig::OFF,
            CacheConfig {
                capacity: 0,
                ..CacheConfig::default()
            },
            CacheConfig {
                enabled: false,
                ..CacheConfig::default()
            },
        ] {
            let cache = ProductCache::new(config, Arc::new(ManualClock::new(Utc::now())));
            let id = ProductId::new();
            cache.fill(cache.ticket(id), product(id, 1));
            assert_eq!(price(&cache, id), None);
            cache.invalidate(id, Source::Write);
            cache.clear();
        }
    }
}
