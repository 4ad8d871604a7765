//! Stock levels and reservations.
//!
//! Stock never goes negative, under any concurrency, for two independent reasons: every
//! change is one conditional `UPDATE ... WHERE available >= n` (never read-then-write), and
//! the schema's `CHECK (available >= 0)` refuses any statement that would break it anyway.
//!
//! A reservation is keyed by the order it is for, which makes every operation idempotent:
//! reserving twice for one order takes stock once; committing, releasing or restocking
//! twice changes stock once. The states: reserved → committed (sold) or released; committed
//! → released again when a cancelled order's units are restocked. Status changes are
//! conditional updates too, so when two callers race, exactly one of them moves the units.
//! The SQL is in `store`; this module orchestrates the transactions.

use catalog_api::{CatalogError, Reservation, ReservationStatus, StockLevel, StockLine};
use kernel::{OrderId, ProductId};
use sea_orm::TransactionTrait;

use crate::domain::{self, MAX_STOCK};
use crate::service::CatalogService;
use crate::store;

/// How often a status change is retried after losing a race to a concurrent caller.
const MAX_ATTEMPTS: usize = 3;

impl CatalogService {
    #[tracing::instrument(skip(self))]
    pub(crate) async fn adjust(
        &self,
        id: ProductId,
        delta: i64,
    ) -> Result<StockLevel, CatalogError> {
        let delta = domain::check_delta(delta).map_err(|field| CatalogError::ValidationFailed {
            fields: vec![field],
        })?;
        let txn = self.db.begin().await.map_err(db_kit::internal)?;
        let changed = store::adjust_available(&txn, id, delta, MAX_STOCK)
            .await
            .map_err(db_kit::internal)?;
        let level = store::find_stock(&txn, id)
            .await
            .map_err(db_kit::internal)?;
        let Some(level) = level else {
            return Err(CatalogError::ProductNotFound { product_id: id });
        };
        let level = store::stock_level(Some(&level)).map_err(db_kit::internal)?;
        if !changed {
            return Err(if delta < 0 {
                CatalogError::InsufficientStock {
                    product_id: id,
                    available: level.available,
                }
            } else {
                CatalogError::StockLimitExceeded {
                    product_id: id,
                    available: level.available,
                    limit: u32::try_from(MAX_STOCK).unwrap_or(u32::MAX),
                }
            });
        }
        self.commit_changed(txn, id).await?;
        tracing::info!(product_id = %id, delta, available = level.available, "stock adjusted");
        Ok(level)
    }

    #[tracing::instrument(skip(self, lines), fields(lines = lines.len()))]
    pub(crate) async fn reserve(
        &self,
        order_id: OrderId,
        lines: Vec<StockLine>,
    ) -> Result<Reservation, CatalogError> {
        let lines = domain::normalise_lines(lines)
            .map_err(|fields| CatalogError::ValidationFailed { fields })?;

        // One transaction, whose stock updates come last (`store::reserve_units`). The order
        // id is claimed first: a repeated reservation (a replayed step) or a concurrent one
        // for the same order waits on it if need be, then sees the duplicate and answers with
        // the reservation that won. A reservation that goes through never pays for a separate
        // look at the products: a line of an unknown product fails its foreign key, and each
        // line's units are taken only from an active product that has them. A reservation
        // that fails is explained after the rollback: unknown or inactive products first,
        // then shortage.
        let short = match store::reserve_units(&self.db, order_id, &lines, self.clock.now()).await {
            Ok(short) => short,
            Err(error) if db_kit::is_unique_violation(&error) => {
                let existing = store::find_reservation(&self.db, order_id)
                    .await
                    .map_err(db_kit::internal)?;
                return existing
                    .map_or_else(|| Err(db_kit::missing_row()), domain::reserved_already);
            }
            Err(error) if db_kit::is_foreign_key_violation(&error) => {
                self.check_sellable(&lines).await?;
                return Err(db_kit::internal(error));
            }
            Err(error) => return Err(db_kit::internal(error)),
        };
        if !short.is_empty() {
            self.check_sellable(&lines).await?;
            tracing::info!(order_id = %order_id, ?short, "reservation refused: out of stock");
            return Err(CatalogError::OutOfStock { product_ids: short });
        }
        tracing::info!(order_id = %order_id, "stock reserved");
        Ok(Reservation {
            order_id,
            status: ReservationStatus::Reserved,
            lines,
        })
    }

    /// `ProductNotFound` or `ProductInactive` for the first line whose product is unknown
    /// or not for sale; `Ok` when every product is sellable.
    async fn check_sellable(&self, lines: &[StockLine]) -> Result<(), CatalogError> {
        let ids: Vec<ProductId> = lines.iter().map(|line| line.product_id).collect();
        let found = store::sellable(&self.db, &ids)
            .await
            .map_err(db_kit::internal)?;
        domain::check_sellable(lines, &found)
    }

    #[tracing::instrument(skip(self))]
    pub(crate) async fn commit(&self, order_id: OrderId) -> Result<Reservation, CatalogError> {
        self.transition(
            order_id,
            ReservationStatus::Reserved,
            ReservationStatus::Committed,
        )
        .await
    }

    #[tracing::instrument(skip(self))]
    pub(crate) async fn release(&self, order_id: OrderId) -> Result<Reservation, CatalogError> {
        self.transition(
            order_id,
            ReservationStatus::Reserved,
            ReservationStatus::Released,
        )
        .await
    }

    #[tracing::instrument(skip(self))]
    pub(crate) async fn restock(&self, order_id: OrderId) -> Result<Reservation, CatalogError> {
        self.transition(
            order_id,
            ReservationStatus::Committed,
            ReservationStatus::Released,
        )
        .await
    }

    /// Moves a reservation from `from` to `target` exactly once, moving its units:
    /// reserved → committed takes them out of `reserved` (sold); reserved → released puts
    /// them back into `available`; committed → released (restock) puts sold units back.
    ///
    /// The common case first: the conditional update of the reservation's status with its
    /// lines' units (`store::move_reservation_and_units`, one statement on Postgres); the
    /// reservation is read whole only when the update finds it in another status (moved
    /// already, closed, or missing). A concurrent caller's update waits for ours and then
    /// finds the status changed, so exactly one of them moves the units.
    async fn transition(
        &self,
        order_id: OrderId,
        from: ReservationStatus,
        target: ReservationStatus,
    ) -> Result<Reservation, CatalogError> {
        for _ in 0..MAX_ATTEMPTS {
            let moved = store::move_reservation_and_units(
                &self.db,
                order_id,
                from,
                target,
                self.clock.now(),
            )
            .await
            .map_err(db_kit::internal)?;
            if let Some(lines) = moved {
                tracing::info!(order_id = %order_id, from = ?from, to = ?target, "reservation moved");
                return Ok(Reservation {
                    order_id,
                    status: target,
                    lines,
                });
            }
            let txn = self.db.begin().await.map_err(db_kit::internal)?;
            let Some(current) = store::find_reservation(&txn, order_id)
                .await
                .map_err(db_kit::internal)?
            else {
                if from != ReservationStatus::Reserved || target != ReservationStatus::Released {
                    return Err(CatalogError::ReservationNotFound { order_id });
                }
                // Releasing an order that never reserved leaves a tombstone, so that a
                // reservation arriving late (a retried or delayed call) is refused instead
                // of holding stock for an order that already gave up.
                let tombstone = store::insert_reservation(
                    &txn,
                    order_id,
                    ReservationStatus::Released,
                    self.clock.now(),
                )
                .await;
                match tombstone {
                    Ok(()) => {
                        txn.commit().await.map_err(db_kit::internal)?;
                        return Ok(Reservation {
                            order_id,
                            status: ReservationStatus::Released,
                            lines: Vec::new(),
                        });
                    }
                    Err(error) if db_kit::is_unique_violation(&error) => {
                        txn.rollback().await.map_err(db_kit::internal)?;
                        continue;
                    }
                    Err(error) => return Err(db_kit::internal(error)),
                }
            };
            txn.rollback().await.map_err(db_kit::internal)?;
            match current.status {
                status if status == target => return Ok(current),
                // Back in `from` after our update found it elsewhere: look again.
                status if status == from => {}
                status => return Err(CatalogError::ReservationClosed { order_id, status }),
            }
        }
        tracing::error!(order_id = %order_id, "reservation kept changing under us");
        Err(CatalogError::Internal)
    }
}
