//! Stock levels and reservations.
//!
//! Stock never goes negative, under any concurrency, for two independent reasons: every
//! change is one conditional `UPDATE ... WHERE available >= n` (never read-then-write), and
//! the schema's `CHECK (available >= 0)` refuses any statement that would break it anyway.
//!
//! A reservation is keyed by the order it is for, which makes every operation idempotent:
//! reserving twice for one order takes stock once; committing, releasing or restocking
//! twice changes stock once. The states: reserved → committed (sold) or released; committed
//! → released again when a cancelled order's units are restocked. Status changes are conditional updates too, so when two callers race, exactly
//! one of them moves the units.

use catalog_api::{CatalogError, Reservation, ReservationStatus, StockLevel, StockLine};
use kernel::{FieldError, OrderId, ProductId};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait,
    QueryFilter, TransactionTrait,
};

use crate::domain::{self, MAX_STOCK};
use crate::service::CatalogService;
use crate::store::{self, products, reservation_lines, reservations, stock};

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
        let changed = stock::Entity::update_many()
            .col_expr(
                stock::Column::Available,
                Expr::col(stock::Column::Available).add(delta),
            )
            .filter(stock::Column::ProductId.eq(id.as_uuid()))
            .filter(Expr::col(stock::Column::Available).add(delta).gte(0))
            .filter(
                Expr::col(stock::Column::Available)
                    .add(delta)
                    .lte(MAX_STOCK),
            )
            .exec(&txn)
            .await
            .map_err(db_kit::internal)?
            .rows_affected;
        let level = store::find_stock(&txn, id)
            .await
            .map_err(db_kit::internal)?;
        let Some(level) = level else {
            return Err(CatalogError::ProductNotFound { product_id: id });
        };
        let level = store::stock_level(Some(&level)).map_err(db_kit::internal)?;
        if changed == 0 {
            return Err(if delta < 0 {
                CatalogError::InsufficientStock {
                    product_id: id,
                    available: level.available,
                }
            } else {
                CatalogError::ValidationFailed {
                    fields: vec![FieldError::new(
                        "delta",
                        "too_large",
                        format!("stock cannot exceed {MAX_STOCK} units"),
                    )],
                }
            });
        }
        txn.commit().await.map_err(db_kit::internal)?;
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
        if let Some(existing) = load(&self.db, order_id).await.map_err(db_kit::internal)? {
            return reserved_already(existing);
        }

        let txn = self.db.begin().await.map_err(db_kit::internal)?;
        let now = self.clock.now();
        // Claim the order id first: a concurrent reservation for the same order waits
        // here, then sees the duplicate and answers with the reservation that won.
        let claimed = reservations::ActiveModel {
            order_id: Set(order_id.as_uuid()),
            status: Set(store::status_to_str(ReservationStatus::Reserved).to_owned()),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&txn)
        .await;
        if let Err(error) = claimed {
            txn.rollback().await.map_err(db_kit::internal)?;
            if !db_kit::is_unique_violation(&error) {
                return Err(db_kit::internal(error));
            }
            let existing = load(&self.db, order_id).await.map_err(db_kit::internal)?;
            return existing.map_or_else(|| Err(db_kit::missing_row()), reserved_already);
        }

        check_sellable(&txn, &lines).await?;
        let mut short = Vec::new();
        for line in &lines {
            let quantity = i64::from(line.quantity);
            let taken = stock::Entity::update_many()
                .col_expr(
                    stock::Column::Available,
                    Expr::col(stock::Column::Available).sub(quantity),
                )
                .col_expr(
                    stock::Column::Reserved,
                    Expr::col(stock::Column::Reserved).add(quantity),
                )
                .filter(stock::Column::ProductId.eq(line.product_id.as_uuid()))
                .filter(stock::Column::Available.gte(quantity))
                .exec(&txn)
                .await
                .map_err(db_kit::internal)?
                .rows_affected;
            if taken == 0 {
                short.push(line.product_id);
            }
        }
        if !short.is_empty() {
            txn.rollback().await.map_err(db_kit::internal)?;
            tracing::info!(order_id = %order_id, ?short, "reservation refused: out of stock");
            return Err(CatalogError::OutOfStock { product_ids: short });
        }
        reservation_lines::Entity::insert_many(lines.iter().map(|line| {
            reservation_lines::ActiveModel {
                order_id: Set(order_id.as_uuid()),
                product_id: Set(line.product_id.as_uuid()),
                quantity: Set(i64::from(line.quantity)),
            }
        }))
        .exec(&txn)
        .await
        .map_err(db_kit::internal)?;
        txn.commit().await.map_err(db_kit::internal)?;
        tracing::info!(order_id = %order_id, "stock reserved");
        Ok(Reservation {
            order_id,
            status: ReservationStatus::Reserved,
            lines,
        })
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
    async fn transition(
        &self,
        order_id: OrderId,
        from: ReservationStatus,
        target: ReservationStatus,
    ) -> Result<Reservation, CatalogError> {
        for _ in 0..MAX_ATTEMPTS {
            let txn = self.db.begin().await.map_err(db_kit::internal)?;
            let Some(current) = load(&txn, order_id).await.map_err(db_kit::internal)? else {
                if from != ReservationStatus::Reserved || target != ReservationStatus::Released {
                    return Err(CatalogError::ReservationNotFound { order_id });
                }
                // Releasing an order that never reserved leaves a tombstone, so that a
                // reservation arriving late (a retried or delayed call) is refused instead
                // of holding stock for an order that already gave up.
                match self.insert_tombstone(&txn, order_id).await {
                    Ok(tombstone) => {
                        txn.commit().await.map_err(db_kit::internal)?;
                        return Ok(tombstone);
                    }
                    Err(error) if db_kit::is_unique_violation(&error) => {
                        txn.rollback().await.map_err(db_kit::internal)?;
                        continue;
                    }
                    Err(error) => return Err(db_kit::internal(error)),
                }
            };
            match current.status {
                status if status == target => return Ok(current),
                status if status == from => {}
                status => return Err(CatalogError::ReservationClosed { order_id, status }),
            }
            let moved = reservations::Entity::update_many()
                .col_expr(
                    reservations::Column::Status,
                    Expr::value(store::status_to_str(target)),
                )
                .col_expr(
                    reservations::Column::UpdatedAt,
                    Expr::value(self.clock.now()),
                )
                .filter(reservations::Column::OrderId.eq(order_id.as_uuid()))
                .filter(reservations::Column::Status.eq(store::status_to_str(from)))
                .exec(&txn)
                .await
                .map_err(db_kit::internal)?
                .rows_affected;
            if moved == 0 {
                // Someone else closed it between our read and our write; look again.
                txn.rollback().await.map_err(db_kit::internal)?;
                continue;
            }
            for line in &current.lines {
                let quantity = i64::from(line.quantity);
                let mut update = stock::Entity::update_many();
                if from == ReservationStatus::Reserved {
                    update = update.col_expr(
                        stock::Column::Reserved,
                        Expr::col(stock::Column::Reserved).sub(quantity),
                    );
                }
                if target == ReservationStatus::Released {
                    update = update.col_expr(
                        stock::Column::Available,
                        Expr::col(stock::Column::Available).add(quantity),
                    );
                }
                update
                    .filter(stock::Column::ProductId.eq(line.product_id.as_uuid()))
                    .exec(&txn)
                    .await
                    .map_err(db_kit::internal)?;
            }
            txn.commit().await.map_err(db_kit::internal)?;
            tracing::info!(order_id = %order_id, from = ?from, to = ?target, "reservation moved");
            return Ok(Reservation {
                status: target,
                ..current
            });
        }
        tracing::error!(order_id = %order_id, "reservation kept changing under us");
        Err(CatalogError::Internal)
    }

    async fn insert_tombstone<C: ConnectionTrait>(
        &self,
        db: &C,
        order_id: OrderId,
    ) -> Result<Reservation, DbErr> {
        let now = self.clock.now();
        reservations::ActiveModel {
            order_id: Set(order_id.as_uuid()),
            status: Set(store::status_to_str(ReservationStatus::Released).to_owned()),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(db)
        .await?;
        Ok(Reservation {
            order_id,
            status: ReservationStatus::Released,
            lines: Vec::new(),
        })
    }
}

/// Asking again for an order that already has a reservation: the same answer as before.
fn reserved_already(existing: Reservation) -> Result<Reservation, CatalogError> {
    match existing.status {
        ReservationStatus::Reserved | ReservationStatus::Committed => Ok(existing),
        status => Err(CatalogError::ReservationClosed {
            order_id: existing.order_id,
            status,
        }),
    }
}

/// Every product exists and is for sale.
async fn check_sellable<C: ConnectionTrait>(
    db: &C,
    lines: &[StockLine],
) -> Result<(), CatalogError> {
    let ids: Vec<_> = lines.iter().map(|line| line.product_id.as_uuid()).collect();
    let found = products::Entity::find()
        .filter(products::Column::Id.is_in(ids))
        .all(db)
        .await
        .map_err(db_kit::internal)?;
    for line in lines {
        match found
            .iter()
            .find(|product| product.id == line.product_id.as_uuid())
        {
            None => {
                return Err(CatalogError::ProductNotFound {
                    product_id: line.product_id,
                });
            }
            Some(product) if !product.active => {
                return Err(CatalogError::ProductInactive {
                    product_id: line.product_id,
                });
            }
            Some(_) => {}
        }
    }
    Ok(())
}

async fn load<C: ConnectionTrait>(db: &C, order_id: OrderId) -> Result<Option<Reservation>, DbErr> {
    let Some(row) = reservations::Entity::find_by_id(order_id.as_uuid())
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let lines = reservation_lines::Entity::find()
        .filter(reservation_lines::Column::OrderId.eq(order_id.as_uuid()))
        .all(db)
        .await?;
    let mut lines = lines
        .into_iter()
        .map(|line| {
            Ok(StockLine {
                product_id: ProductId::from_uuid(line.product_id),
                quantity: store::quantity(line.quantity)?,
            })
        })
        .collect::<Result<Vec<_>, DbErr>>()?;
    lines.sort_by_key(|line| line.product_id);
    Ok(Some(Reservation {
        order_id,
        status: store::status_from_str(&row.status)?,
        lines,
    }))
}
