//! orders' tables, in orders' own schema, and every query over them. The rest of orders
//! never writes SQL: `service` and `checkout` orchestrate, `domain` decides, and these
//! functions read and write (on the connection or the caller's transaction). orders'
//! `outbox` table belongs to `messaging`.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use kernel::{Currency, Money, OrderId, Page, PageRequest, ProductId, UserId};
use orders_api::{Order, OrderFailure, OrderLine, OrderStatus, ShippingAddress, Viewer};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, QueryOrder, QuerySelect};

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

/// Moves an order from `from` to `to` if it is still in `from`. Returns whether it moved:
/// when two runners race, exactly one moves it.
pub async fn move_status<C: ConnectionTrait>(
    db: &C,
    id: OrderId,
    from: OrderStatus,
    to: OrderStatus,
    failure_reason: Option<OrderFailure>,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let mut update = orders::Entity::update_many()
        .col_expr(orders::Column::Status, Expr::value(status_code(to)))
        .col_expr(orders::Column::UpdatedAt, Expr::value(now));
    if let Some(reason) = failure_reason {
        let reason: &'static str = reason.into();
        update = update.col_expr(orders::Column::FailureReason, Expr::value(reason));
    }
    let moved = update
        .filter(orders::Column::Id.eq(id.as_uuid()))
        .filter(orders::Column::Status.eq(status_code(from)))
        .exec(db)
        .await?;
    Ok(moved.rows_affected == 1)
}

/// Orders checkout has not finished, last touched before `before`, oldest first.
pub async fn unfinished<C: ConnectionTrait>(
    db: &C,
    before: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<OrderId>, DbErr> {
    let unfinished = [
        OrderStatus::Pending,
        OrderStatus::StockReserved,
        OrderStatus::PaymentCaptured,
        OrderStatus::Cancelling,
    ]
    .map(status_code);
    let ids: Vec<Uuid> = orders::Entity::find()
        .select_only()
        .column(orders::Column::Id)
        .filter(orders::Column::Status.is_in(unfinished))
        .filter(orders::Column::UpdatedAt.lte(before))
        .order_by_asc(orders::Column::UpdatedAt)
        .limit(limit)
        .into_tuple()
        .all(db)
        .await?;
    Ok(ids.into_iter().map(OrderId::from_uuid).collect())
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

/// Inserts a `pending` order and its lines. A second order with the same (customer, key)
/// is a unique violation, which the caller answers as a replay.
pub async fn insert_order<C: ConnectionTrait>(
    db: &C,
    order: NewOrder,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let address = serde_json::to_string(&order.shipping_address)
        .map_err(|error| DbErr::Json(error.to_string()))?;
    orders::ActiveModel {
        id: Set(order.id.as_uuid()),
        customer_id: Set(order.customer_id.as_uuid()),
        idempotency_key: Set(order.idempotency_key),
        request_hash: Set(order.fingerprint),
        status: Set(status_code(OrderStatus::Pending).to_owned()),
        total_minor: Set(order.total.amount_minor()),
        currency: Set(order.total.currency().to_string()),
        shipping_address: Set(address),
        payment_token: Set(order.payment_token),
        failure_reason: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(db)
    .await?;
    let lines = order
        .lines
        .into_iter()
        .enumerate()
        .map(|(line_no, line)| {
            Ok(order_lines::ActiveModel {
                order_id: Set(order.id.as_uuid()),
                line_no: Set(i32::try_from(line_no).map_err(corrupt)?),
                product_id: Set(line.product_id.as_uuid()),
                sku: Set(line.sku),
                name: Set(line.name),
                unit_price_minor: Set(line.unit_price.amount_minor()),
                quantity: Set(i32::try_from(line.quantity).map_err(corrupt)?),
            })
        })
        .collect::<Result<Vec<_>, DbErr>>()?;
    order_lines::Entity::insert_many(lines).exec(db).await?;
    Ok(())
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
