//! Catalog's tables, in catalog's own schema, and the queries over them.

use std::collections::HashMap;

use catalog_api::{Product, ReservationStatus, StockLevel};
use kernel::{Currency, Money, ProductId};
use sea_orm::entity::prelude::*;

pub mod products {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "products")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        #[sea_orm(unique)]
        pub sku: String,
        pub name: String,
        pub description: String,
        pub price_minor: i64,
        pub currency: String,
        pub category: String,
        pub active: bool,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod stock {
    use sea_orm::entity::prelude::*;

    /// `available` can be reserved now; `reserved` is held for orders. Both are
    /// `CHECK (>= 0)` in the schema.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "stock")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub product_id: Uuid,
        pub available: i64,
        pub reserved: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod reservations {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "reservations")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub order_id: Uuid,
        pub status: String,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod reservation_lines {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "reservation_lines")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub order_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub product_id: Uuid,
        pub quantity: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub fn status_to_str(status: ReservationStatus) -> &'static str {
    match status {
        ReservationStatus::Reserved => "reserved",
        ReservationStatus::Committed => "committed",
        ReservationStatus::Released => "released",
    }
}

pub fn status_from_str(status: &str) -> Result<ReservationStatus, DbErr> {
    match status {
        "reserved" => Ok(ReservationStatus::Reserved),
        "committed" => Ok(ReservationStatus::Committed),
        "released" => Ok(ReservationStatus::Released),
        other => Err(DbErr::Type(format!("unknown reservation status {other:?}"))),
    }
}

/// Quantities are `u32` at the boundary and `BIGINT` in the table; the schema keeps them
/// within range, so a failed conversion is a corrupted row.
pub fn quantity(value: i64) -> Result<u32, DbErr> {
    u32::try_from(value).map_err(|_| DbErr::Type(format!("quantity {value} out of range")))
}

pub fn stock_level(row: Option<&stock::Model>) -> Result<StockLevel, DbErr> {
    Ok(match row {
        Some(row) => StockLevel {
            available: quantity(row.available)?,
            reserved: quantity(row.reserved)?,
        },
        None => StockLevel {
            available: 0,
            reserved: 0,
        },
    })
}

pub fn to_product(row: products::Model, stock: Option<&stock::Model>) -> Result<Product, DbErr> {
    let currency =
        Currency::parse(&row.currency).map_err(|error| DbErr::Type(error.to_string()))?;
    let price =
        Money::new(row.price_minor, currency).map_err(|error| DbErr::Type(error.to_string()))?;
    Ok(Product {
        id: ProductId::from_uuid(row.id),
        sku: row.sku,
        name: row.name,
        description: row.description,
        price,
        category: row.category,
        active: row.active,
        stock: stock_level(stock)?,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

/// Attaches stock levels to product rows with one query, whatever the number of rows.
pub async fn with_stock<C: ConnectionTrait>(
    db: &C,
    rows: Vec<products::Model>,
) -> Result<Vec<Product>, DbErr> {
    let ids: Vec<Uuid> = rows.iter().map(|row| row.id).collect();
    let levels: HashMap<Uuid, stock::Model> = stock::Entity::find()
        .filter(stock::Column::ProductId.is_in(ids))
        .all(db)
        .await?
        .into_iter()
        .map(|level| (level.product_id, level))
        .collect();
    rows.into_iter()
        .map(|row| {
            let level = levels.get(&row.id);
            to_product(row, level)
        })
        .collect()
}

pub async fn find_product<C: ConnectionTrait>(
    db: &C,
    id: ProductId,
) -> Result<Option<Product>, DbErr> {
    let Some(row) = products::Entity::find_by_id(id.as_uuid()).one(db).await? else {
        return Ok(None);
    };
    Ok(with_stock(db, vec![row]).await?.pop())
}

pub async fn find_stock<C: ConnectionTrait>(
    db: &C,
    id: ProductId,
) -> Result<Option<stock::Model>, DbErr> {
    stock::Entity::find_by_id(id.as_uuid()).one(db).await
}
