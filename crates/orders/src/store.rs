//! orders' tables, in orders' own schema, and every query over them. The rest of orders
//! never writes SQL: `service` and `checkout` orchestrate, `domain` decides, and these
//! functions read and write (on the connection or the caller's transaction). orders'
//! `outbox` table belongs to `messaging`.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use kernel::{Currency, Money, OrderId, Page, PageRequest, ProductId, UserId};
use orders_api::{Order, OrderFailure, OrderLine, OrderStatus, ShippingAddress, Viewer};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::{Expr, InsertStatement, UpdateStatement};
use sea_orm::{
    Condition, DbBackend, IntoActiveModel, QueryOrder, QuerySelect, QueryTrait, Statement,
};

pub mod orders {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "orders")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub customer_id: Uuid,
        pub idempotency_key: String,
        pub request_hash: String,
        pub status: String,
        pub total_minor: i64,
        pub currency: String,
        pub shipping_address: String,
        pub payment_token: String,
        pub failure_reason: Option<String>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
        pub runner_id: Option<Uuid>,
        pub lease_until: Option<DateTimeUtc>,
        pub attempts: i32,
        pub next_attempt_at: Option<DateTimeUtc>,
        pub parked_at: Option<DateTimeUtc>,
        pub last_error: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod order_lines {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "order_lines")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub order_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub line_no: i32,
        pub product_id: Uuid,
        pub sku: String,
        pub name: String,
        pub unit_price_minor: i64,
        pub quantity: i32,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

fn corrupt(what: impl std::fmt::Display) -> DbErr {
    DbErr::Type(format!("corrupted order row: {what}"))
}

/// How a status is stored: its wire name.
fn status_code(status: OrderStatus) -> &'static str {
    status.into()
}

fn decode_status(stored: &str) -> Result<OrderStatus, DbErr> {
    stored.parse().map_err(|_| corrupt(stored))
}

/// The status of an order row.
pub fn status_of(row: &orders::Model) -> Result<OrderStatus, DbErr> {
    decode_status(&row.status)
}

fn decode_failure(stored: &str) -> Result<OrderFailure, DbErr> {
    stored.parse().map_err(|_| corrupt(stored))
}

fn money(amount: i64, currency: Currency) -> Result<Money, DbErr> {
    Money::new(amount, currency).map_err(corrupt)
}

/// An order row with its lines, as orders' published language shows it.
pub fn to_order(row: orders::Model, lines: Vec<order_lines::Model>) -> Result<Order, DbErr> {
    let currency = Currency::parse(&row.currency).map_err(corrupt)?;
    let status = decode_status(&row.status)?;
    let shipping_address: ShippingAddress =
        serde_json::from_str(&row.shipping_address).map_err(corrupt)?;
    let lines = lines
        .into_iter()
        .map(|line| {
            let quantity = u32::try_from(line.quantity).map_err(corrupt)?;
            let unit_price = money(line.unit_price_minor, currency)?;
            Ok(OrderLine {
                product_id: ProductId::from_uuid(line.product_id),
                sku: line.sku,
                name: line.name,
                unit_price,
                quantity,
                line_total: unit_price.checked_mul(quantity).map_err(corrupt)?,
            })
        })
        .collect::<Result<Vec<_>, DbErr>>()?;
    Ok(Order {
        id: OrderId::from_uuid(row.id),
        customer_id: UserId::from_uuid(row.customer_id),
        status,
        lines,
        total: money(row.total_minor, currency)?,
        shipping_address,
        failure_reason: row
            .failure_reason
            .as_deref()
            .map(decode_failure)
            .transpose()?,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

pub async fn find_row<C: ConnectionTrait>(
    db: &C,
    id: OrderId,
) -> Result<Option<orders::Model>, DbErr> {
    orders::Entity::find_by_id(id.as_uuid()).one(db).await
}

pub async fn find_by_key<C: ConnectionTrait>(
    db: &C,
    customer: UserId,
    key: &str,
) -> Result<Option<orders::Model>, DbErr> {
    orders::Entity::find()
        .filter(orders::Column::CustomerId.eq(customer.as_uuid()))
        .filter(orders::Column::IdempotencyKey.eq(key))
        .one(db)
        .await
}

/// Orders with their lines: one query for the orders' lines, whatever their number.
pub async fn with_lines<C: ConnectionTrait>(
    db: &C,
    rows: Vec<orders::Model>,
) -> Result<Vec<Order>, DbErr> {
    let ids: Vec<Uuid> = rows.iter().map(|row| row.id).collect();
    let mut lines: HashMap<Uuid, Vec<order_lines::Model>> = HashMap::new();
    for line in order_lines::Entity::find()
        .filter(order_lines::Column::OrderId.is_in(ids))
        .order_by_asc(order_lines::Column::LineNo)
        .all(db)
        .await?
    {
        lines.entry(line.order_id).or_default().push(line);
    }
    rows.into_iter()
        .map(|row| {
            let lines = lines.remove(&row.id).unwrap_or_default();
            to_order(row, lines)
        })
        .collect()
}

pub async fn find_order<C: ConnectionTrait>(db: &C, id: OrderId) -> Result<Option<Order>, DbErr> {
    let Some(row) = find_row(db, id).await? else {
        return Ok(None);
    };
    Ok(with_lines(db, vec![row]).await?.pop())
}

/// The statuses of a checkout (or cancellation) that has not finished.
pub const IN_FLIGHT: [OrderStatus; 4] = [
    OrderStatus::Pending,
    OrderStatus::StockReserved,
    OrderStatus::PaymentCaptured,
    OrderStatus::Cancelling,
];

/// What a recorded transition does with the runner's lease, in the same statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// The run goes on: the lease is extended to this instant.
    Until(DateTime<Utc>),
    /// The run ends with this transition: the lease is given back.
    Release,
}

/// Sets the lease columns of `update` as `lease` says.
fn with_lease(
    update: sea_orm::UpdateMany<orders::Entity>,
    lease: Lease,
) -> sea_orm::UpdateMany<orders::Entity> {
    match lease {
        Lease::Until(until) => update.col_expr(orders::Column::LeaseUntil, Expr::value(until)),
        Lease::Release => update
            .col_expr(orders::Column::RunnerId, Expr::value(Option::<Uuid>::None))
            .col_expr(
                orders::Column::LeaseUntil,
                Expr::value(Option::<DateTime<Utc>>::None),
            ),
    }
}

/// Moves an order from `from` to `to` if it is still in `from` and `runner` still holds its
/// lease, renewing or giving back the lease in the same statement. Returns whether it
/// moved: a runner that lost its lease records nothing.
#[allow(clippy::too_many_arguments)]
pub async fn move_status<C: ConnectionTrait>(
    db: &C,
    id: OrderId,
    runner: Uuid,
    from: OrderStatus,
    to: OrderStatus,
    failure_reason: Option<OrderFailure>,
    now: DateTime<Utc>,
    lease: Lease,
) -> Result<bool, DbErr> {
    let change = move_status_change(id, runner, from, to, failure_reason, now, lease);
    let moved = db.execute(&change).await?;
    Ok(moved.rows_affected() == 1)
}

/// The conditional `UPDATE` of [`move_status`], for a caller that writes it together with
/// the event announcing it (`Outbox::commit_change`).
#[allow(clippy::too_many_arguments)]
pub fn move_status_change(
    id: OrderId,
    runner: Uuid,
    from: OrderStatus,
    to: OrderStatus,
    failure_reason: Option<OrderFailure>,
    now: DateTime<Utc>,
    lease: Lease,
) -> UpdateStatement {
    let mut update = orders::Entity::update_many()
        .col_expr(orders::Column::Status, Expr::value(status_code(to)))
        .col_expr(orders::Column::UpdatedAt, Expr::value(now));
    if let Some(reason) = failure_reason {
        let reason: &'static str = reason.into();
        update = update.col_expr(orders::Column::FailureReason, Expr::value(reason));
    }
    with_lease(update, lease)
        .filter(orders::Column::Id.eq(id.as_uuid()))
        .filter(orders::Column::RunnerId.eq(runner))
        .filter(orders::Column::Status.eq(status_code(from)))
        .into_query()
}

/// Takes the order's lease for `runner` until `until`, if no live runner holds it (none, an
/// expired one, or `runner` itself). Returns whether `runner` holds it now. One conditional
/// statement, so of two runners trying at once exactly one wins, on both stores.
pub async fn acquire_lease<C: ConnectionTrait>(
    db: &C,
    id: OrderId,
    runner: Uuid,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let taken = orders::Entity::update_many()
        .col_expr(orders::Column::RunnerId, Expr::value(runner))
        .col_expr(orders::Column::LeaseUntil, Expr::value(until))
        .filter(orders::Column::Id.eq(id.as_uuid()))
        .filter(
            Condition::any()
                .add(orders::Column::RunnerId.is_null())
                .add(orders::Column::LeaseUntil.is_null())
                .add(orders::Column::LeaseUntil.lt(now))
                .add(orders::Column::RunnerId.eq(runner)),
        )
        .exec(db)
        .await?
        .rows_affected;
    Ok(taken == 1)
}

/// Gives the lease back after a run that finished the checkout.
pub async fn release_lease<C: ConnectionTrait>(
    db: &C,
    id: OrderId,
    runner: Uuid,
) -> Result<(), DbErr> {
    orders::Entity::update_many()
        .col_expr(orders::Column::RunnerId, Expr::value(Option::<Uuid>::None))
        .col_expr(
            orders::Column::LeaseUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .filter(orders::Column::Id.eq(id.as_uuid()))
        .filter(orders::Column::RunnerId.eq(runner))
        .exec(db)
        .await?;
    Ok(())
}

/// Gives the lease back after a run that could not finish, and books the attempt: when to try
/// again, why it stopped, and whether the sweep gives up on it (`parked_at`).
pub async fn release_after_attempt<C: ConnectionTrait>(
    db: &C,
    id: OrderId,
    runner: Uuid,
    attempt: Attempt,
) -> Result<(), DbErr> {
    orders::Entity::update_many()
        .col_expr(orders::Column::RunnerId, Expr::value(Option::<Uuid>::None))
        .col_expr(
            orders::Column::LeaseUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(orders::Column::Attempts, Expr::value(attempt.attempts))
        .col_expr(orders::Column::NextAttemptAt, Expr::value(attempt.next_at))
        .col_expr(orders::Column::ParkedAt, Expr::value(attempt.parked_at))
        .col_expr(orders::Column::LastError, Expr::value(attempt.error))
        .filter(orders::Column::Id.eq(id.as_uuid()))
        .filter(orders::Column::RunnerId.eq(runner))
        .exec(db)
        .await?;
    Ok(())
}

/// The bookkeeping of a run that did not finish its checkout.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub attempts: i32,
    pub next_at: DateTime<Utc>,
    pub parked_at: Option<DateTime<Utc>>,
    pub error: String,
}

/// Records the decision to give a checkout up, once: an order in `stock_reserved` without a
/// failure reason gets `reason`, if `runner` holds its lease. From then on every runner
/// compensates (void the payment, release the stock) and none charges or confirms it, so
/// no two runners can disagree about its fate. The lease is renewed to `lease_until` in the
/// same statement. Returns whether the decision was recorded.
pub async fn decide_failure<C: ConnectionTrait>(
    db: &C,
    id: OrderId,
    runner: Uuid,
    reason: OrderFailure,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let reason: &'static str = reason.into();
    let decided = orders::Entity::update_many()
        .col_expr(orders::Column::FailureReason, Expr::value(reason))
        .col_expr(orders::Column::UpdatedAt, Expr::value(now))
        .col_expr(orders::Column::LeaseUntil, Expr::value(lease_until))
        .filter(orders::Column::Id.eq(id.as_uuid()))
        .filter(orders::Column::RunnerId.eq(runner))
        .filter(orders::Column::Status.eq(status_code(OrderStatus::StockReserved)))
        .filter(orders::Column::FailureReason.is_null())
        .exec(db)
        .await?
        .rows_affected;
    Ok(decided == 1)
}

/// Unfinished orders the recovery sweep may run now: not parked, due, and held by no live
/// runner, the longest waiting first.
pub async fn due_for_recovery<C: ConnectionTrait>(
    db: &C,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<OrderId>, DbErr> {
    let ids: Vec<Uuid> = orders::Entity::find()
        .select_only()
        .column(orders::Column::Id)
        .filter(orders::Column::Status.is_in(IN_FLIGHT.map(status_code)))
        .filter(orders::Column::ParkedAt.is_null())
        .filter(
            Condition::any()
                .add(orders::Column::NextAttemptAt.is_null())
                .add(orders::Column::NextAttemptAt.lte(now)),
        )
        .filter(
            Condition::any()
                .add(orders::Column::LeaseUntil.is_null())
                .add(orders::Column::LeaseUntil.lt(now)),
        )
        .order_by_asc(orders::Column::NextAttemptAt)
        .order_by_asc(orders::Column::UpdatedAt)
        .limit(limit)
        .into_tuple()
        .all(db)
        .await?;
    Ok(ids.into_iter().map(OrderId::from_uuid).collect())
}

/// When the next unfinished order becomes due: its runner's lease ends or its next attempt
/// comes, whichever is later (possibly already past: it became due after the sweep looked).
/// `None` when every unfinished order is parked or there is none: the recovery sweep then
/// waits for a wake-up.
pub async fn next_due_for_recovery<C: ConnectionTrait>(
    db: &C,
) -> Result<Option<DateTime<Utc>>, DbErr> {
    const DUE: &str = "CASE WHEN lease_until IS NULL THEN next_attempt_at \
         WHEN next_attempt_at IS NULL THEN lease_until \
         WHEN lease_until > next_attempt_at THEN lease_until ELSE next_attempt_at END";
    orders::Entity::find()
        .select_only()
        .column_as(Expr::cust(format!("MIN({DUE})")), "due")
        .filter(orders::Column::Status.is_in(IN_FLIGHT.map(status_code)))
        .filter(orders::Column::ParkedAt.is_null())
        .into_tuple::<Option<DateTime<Utc>>>()
        .one(db)
        .await
        .map(Option::flatten)
}

/// How many orders are unfinished and not parked: in checkout now, or waiting for the sweep
/// to run them again.
pub async fn count_unfinished<C: ConnectionTrait>(db: &C) -> Result<u64, DbErr> {
    orders::Entity::find()
        .filter(orders::Column::ParkedAt.is_null())
        .filter(orders::Column::Status.is_in(IN_FLIGHT.map(status_code)))
        .count(db)
        .await
}

/// How many unfinished orders the sweep has given up on.
pub async fn count_parked<C: ConnectionTrait>(db: &C) -> Result<u64, DbErr> {
    orders::Entity::find()
        .filter(orders::Column::ParkedAt.is_not_null())
        .filter(orders::Column::Status.is_in(IN_FLIGHT.map(status_code)))
        .count(db)
        .await
}

/// Parked orders, the longest parked first, one page of them.
pub async fn parked<C: ConnectionTrait>(
    db: &C,
    page: PageRequest,
) -> Result<Page<orders::Model>, DbErr> {
    let select = orders::Entity::find()
        .filter(orders::Column::ParkedAt.is_not_null())
        .filter(orders::Column::Status.is_in(IN_FLIGHT.map(status_code)))
        .order_by_asc(orders::Column::ParkedAt)
        .order_by_asc(orders::Column::Id);
    db_kit::fetch_page(db, select, page).await
}

/// Puts a parked order back in line with a fresh set of attempts. Returns false when the
/// order is not parked (any more).
pub async fn unpark<C: ConnectionTrait>(db: &C, id: OrderId) -> Result<bool, DbErr> {
    let unparked = orders::Entity::update_many()
        .col_expr(
            orders::Column::ParkedAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(
            orders::Column::NextAttemptAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(orders::Column::Attempts, Expr::value(0))
        .filter(orders::Column::Id.eq(id.as_uuid()))
        .filter(orders::Column::ParkedAt.is_not_null())
        .exec(db)
        .await?
        .rows_affected;
    Ok(unparked == 1)
}

/// The statuses of a checkout that has not finished (pending, stock reserved, payment
/// captured) as a SQL literal rather than bound parameters, so that Postgres can prove
/// it implies the predicate of the partial index `orders_in_flight_idx` (migration m0004) and
/// counts a customer's unfinished checkouts without reading all of their orders (a unit test
/// holds it to the statuses' stored names).
const IN_CHECKOUT_SQL: &str =
    "\"orders\".\"status\" IN ('pending', 'stock_reserved', 'payment_captured')";

/// How many of `customer`'s checkouts have not finished.
pub async fn count_in_flight<C: ConnectionTrait>(db: &C, customer: UserId) -> Result<u64, DbErr> {
    orders::Entity::find()
        .filter(orders::Column::CustomerId.eq(customer.as_uuid()))
        .filter(Expr::cust(IN_CHECKOUT_SQL))
        .count(db)
        .await
}

/// Serialises the placing of `customer`'s orders until `txn` ends, so that counting their
/// orders in flight and inserting a new one cannot interleave with another request's. On
/// Postgres a transaction-scoped advisory lock keyed by the customer; SQLite has one writer
/// (the context's single connection), which serialises already.
pub async fn lock_customer<C: ConnectionTrait>(txn: &C, customer: UserId) -> Result<(), DbErr> {
    if txn.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    let (high, low) = customer.as_uuid().as_u64_pair();
    let key = i64::from_ne_bytes((high ^ low).to_ne_bytes());
    txn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT pg_advisory_xact_lock($1)",
        [key.into()],
    ))
    .await?;
    Ok(())
}

/// A new order as it is stored: its row's values and its priced lines.
#[derive(Debug)]
pub struct NewOrder {
    pub id: OrderId,
    pub customer_id: UserId,
    pub idempotency_key: String,
    pub fingerprint: String,
    pub total: Money,
    pub shipping_address: ShippingAddress,
    pub payment_token: String,
    pub lines: Vec<NewLine>,
    /// The request's runner, which holds the new order from the start.
    pub runner: Uuid,
    pub lease_until: DateTime<Utc>,
}

/// A line's snapshot of its product at purchase time.
#[derive(Debug)]
pub struct NewLine {
    pub product_id: ProductId,
    pub sku: String,
    pub name: String,
    pub unit_price: Money,
    pub quantity: u32,
}

/// A `pending` order and its lines as written: its row and its published form (so that the
/// runner holding it need not read it back), and the `INSERT`s that write them, which the
/// caller commits with `OrderPlaced` (`Outbox::commit_rows_with`). A second order with the
/// same (customer, key) is a unique violation, which the caller answers as a replay.
pub fn new_order_rows(
    order: NewOrder,
    now: DateTime<Utc>,
) -> Result<(orders::Model, Order, Vec<InsertStatement>), DbErr> {
    let address = serde_json::to_string(&order.shipping_address)
        .map_err(|error| DbErr::Json(error.to_string()))?;
    let row = orders::Model {
        id: order.id.as_uuid(),
        customer_id: order.customer_id.as_uuid(),
        idempotency_key: order.idempotency_key,
        request_hash: order.fingerprint,
        status: status_code(OrderStatus::Pending).to_owned(),
        total_minor: order.total.amount_minor(),
        currency: order.total.currency().to_string(),
        shipping_address: address,
        payment_token: order.payment_token,
        failure_reason: None,
        created_at: now,
        updated_at: now,
        runner_id: Some(order.runner),
        lease_until: Some(order.lease_until),
        attempts: 0,
        next_attempt_at: None,
        parked_at: None,
        last_error: None,
    };
    let lines = order
        .lines
        .into_iter()
        .enumerate()
        .map(|(line_no, line)| {
            Ok(order_lines::Model {
                order_id: order.id.as_uuid(),
                line_no: i32::try_from(line_no).map_err(corrupt)?,
                product_id: line.product_id.as_uuid(),
                sku: line.sku,
                name: line.name,
                unit_price_minor: line.unit_price.amount_minor(),
                quantity: i32::try_from(line.quantity).map_err(corrupt)?,
            })
        })
        .collect::<Result<Vec<_>, DbErr>>()?;
    let inserts = vec![
        orders::Entity::insert(row.clone().into_active_model()).into_query(),
        order_lines::Entity::insert_many(
            lines
                .iter()
                .cloned()
                .map(IntoActiveModel::into_active_model),
        )
        .into_query(),
    ];
    let written = to_order(row.clone(), lines)?;
    Ok((row, written, inserts))
}

/// The orders `viewer` may see (their own; all for administrators), newest first, one page.
pub async fn list_orders<C: ConnectionTrait>(
    db: &C,
    viewer: Viewer,
    page: PageRequest,
) -> Result<Page<Order>, DbErr> {
    let mut select = orders::Entity::find();
    if !viewer.admin {
        select = select.filter(orders::Column::CustomerId.eq(viewer.user_id.as_uuid()));
    }
    let select = select
        .order_by_desc(orders::Column::CreatedAt)
        .order_by_desc(orders::Column::Id);
    let Page { items, total, .. } = db_kit::fetch_page(db, select, page).await?;
    let items = with_lines(db, items).await?;
    Ok(Page::new(items, total, page))
}

#[cfg(test)]
mod in_checkout {
    use super::*;

    #[test]
    fn the_literal_names_exactly_the_statuses_of_an_unfinished_checkout() {
        let in_checkout = [
            OrderStatus::Pending,
            OrderStatus::StockReserved,
            OrderStatus::PaymentCaptured,
        ];
        let named: Vec<String> = in_checkout
            .iter()
            .map(|status| format!("'{}'", status_code(*status)))
            .collect();
        assert_eq!(
            IN_CHECKOUT_SQL,
            format!("\"orders\".\"status\" IN ({})", named.join(", "))
        );
    }
}
