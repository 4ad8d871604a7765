//! Catalog's tables, in catalog's own schema, and every query over them. The rest of the
//! catalog never writes SQL: `service` and `stock` orchestrate, `domain` decides, and these
//! functions read and write (on the connection or the caller's transaction).

use std::collections::HashMap;
use std::sync::{LazyLock, OnceLock};

use catalog_api::{Product, ProductPatch, ReservationStatus, StockLevel, StockLine};
use chrono::{DateTime, Utc};
use kernel::{Currency, Money, OrderId, Page, PageRequest, ProductId};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::{Expr, ExprTrait, Func, LikeExpr, Query};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, Condition, DatabaseTransaction, DbBackend, FromQueryResult,
    IntoActiveModel, QueryOrder, QuerySelect, Statement, TransactionTrait,
};

use crate::domain::{self, ValidProduct};

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
        /// `name` folded for search (`domain::fold`); NULL until folded (see `fold_products`).
        pub name_folded: Option<String>,
        /// `description` folded for search; NULL until folded.
        pub description_folded: Option<String>,
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

/// How a reservation status is stored: its wire name.
fn status_code(status: ReservationStatus) -> &'static str {
    status.into()
}

fn decode_status(stored: &str) -> Result<ReservationStatus, DbErr> {
    stored
        .parse()
        .map_err(|_| DbErr::Type(format!("unknown reservation status {stored:?}")))
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

fn to_product(row: products::Model, stock: Option<&stock::Model>) -> Result<Product, DbErr> {
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
async fn with_stock<C: ConnectionTrait>(
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

/// What a product search filters on; the values are already valid.
#[derive(Debug, Default)]
pub struct SearchFilter {
    pub text: Option<String>,
    pub category: Option<String>,
    pub min_price: Option<i64>,
    pub max_price: Option<i64>,
}

/// The text folded for search (`domain::fold`), with `%`, `_` and the escape character
/// escaped, so user text is matched literally.
fn like_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in domain::fold(text).chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// Active products matching `filter`, by name, one page of them.
pub async fn search<C: ConnectionTrait>(
    db: &C,
    filter: &SearchFilter,
    page: PageRequest,
) -> Result<Page<Product>, DbErr> {
    let mut select = products::Entity::find().filter(products::Column::Active.eq(true));
    if let Some(text) = &filter.text {
        let pattern = like_pattern(text);
        let like = || LikeExpr::new(pattern.clone()).escape('\\');
        let folded = |column: products::Column| Expr::col(column).like(like());
        // Skus are ASCII (`domain::parse_sku`), which `lower()` folds on every store.
        let lowered =
            |column: products::Column| Expr::expr(Func::lower(Expr::col(column))).like(like());
        select = select.filter(
            Condition::any()
                .add(folded(products::Column::NameFolded))
                .add(folded(products::Column::DescriptionFolded))
                .add(lowered(products::Column::Sku))
                // A row not folded yet (written by an older shop during an upgrade) is
                // matched as before, ASCII-insensitively, until the next start folds it.
                .add(
                    Condition::all()
                        .add(products::Column::NameFolded.is_null())
                        .add(
                            Condition::any()
                                .add(lowered(products::Column::Name))
                                .add(lowered(products::Column::Description)),
                        ),
                ),
        );
    }
    if let Some(category) = &filter.category {
        select = select.filter(products::Column::Category.eq(category.as_str()));
    }
    if let Some(min) = filter.min_price {
        select = select.filter(products::Column::PriceMinor.gte(min));
    }
    if let Some(max) = filter.max_price {
        select = select.filter(products::Column::PriceMinor.lte(max));
    }
    let select = select
        .order_by_asc(products::Column::Name)
        .order_by_asc(products::Column::Id);
    let Page { items, total, .. } = db_kit::fetch_page(db, select, page).await?;
    let items = with_stock(db, items).await?;
    Ok(Page::new(items, total, page))
}

/// The columns of a product page, products joined with their stock, as [`ProductRow`]
/// reads them. One statement per read: a product and its stock never take two round trips
/// (nor two pooled connections).
const PRODUCT_PAGE: &str = "SELECT p.id, p.sku, p.name, p.description, p.price_minor, \
     p.currency, p.category, p.active, p.created_at, p.updated_at, \
     s.available, s.reserved \
     FROM products p LEFT JOIN stock s ON s.product_id = p.id";

/// A row of [`PRODUCT_PAGE`]: the product's columns and its stock (NULL without a stock
/// row, which reads as none available).
#[derive(Debug, FromQueryResult)]
struct ProductRow {
    id: Uuid,
    sku: String,
    name: String,
    description: String,
    price_minor: i64,
    currency: String,
    category: String,
    active: bool,
    created_at: DateTimeUtc,
    updated_at: DateTimeUtc,
    available: Option<i64>,
    reserved: Option<i64>,
}

impl ProductRow {
    fn into_product(self) -> Result<Product, DbErr> {
        let currency =
            Currency::parse(&self.currency).map_err(|error| DbErr::Type(error.to_string()))?;
        let price = Money::new(self.price_minor, currency)
            .map_err(|error| DbErr::Type(error.to_string()))?;
        Ok(Product {
            id: ProductId::from_uuid(self.id),
            sku: self.sku,
            name: self.name,
            description: self.description,
            price,
            category: self.category,
            active: self.active,
            stock: StockLevel {
                available: quantity(self.available.unwrap_or(0))?,
                reserved: quantity(self.reserved.unwrap_or(0))?,
            },
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// `p.id = <one parameter>` in the placeholder syntax of `backend`.
fn find_product_sql(backend: DbBackend) -> &'static str {
    static POSTGRES: LazyLock<String> = LazyLock::new(|| format!("{PRODUCT_PAGE} WHERE p.id = $1"));
    static SQLITE: LazyLock<String> = LazyLock::new(|| format!("{PRODUCT_PAGE} WHERE p.id = ?"));
    match backend {
        DbBackend::Postgres => POSTGRES.as_str(),
        _ => SQLITE.as_str(),
    }
}

/// The statement text of a product read by id on Postgres, for the `read_path` bench, which
/// runs the same text through sqlx alone to tell what sea-orm adds. Not part of the port.
pub fn product_read_sql() -> &'static str {
    find_product_sql(DbBackend::Postgres)
}

/// A product with its stock, in one statement whose text never changes, so that each
/// pooled connection prepares it once and reuses it (sqlx caches prepared statements per
/// connection, keyed by their text).
pub async fn find_product<C: ConnectionTrait>(
    db: &C,
    id: ProductId,
) -> Result<Option<Product>, DbErr> {
    let backend = db.get_database_backend();
    let statement = Statement::from_sql_and_values(
        backend,
        find_product_sql(backend),
        [Value::from(id.as_uuid())],
    );
    ProductRow::find_by_statement(statement)
        .one(db)
        .await?
        .map(ProductRow::into_product)
        .transpose()
}

/// How many ids one batch statement takes: the batch's size rounded up to a power of two
/// (the last id repeats to fill it), so that a handful of statement texts serve every batch
/// size up to `domain::MAX_BATCH` and each stays prepared on its connection.
fn batch_slots(ids: usize) -> usize {
    ids.max(1).next_power_of_two()
}

/// `p.id IN (<slots> parameters) ORDER BY p.id`, in the placeholder syntax of `backend`;
/// built once per (backend, size).
fn find_products_sql(backend: DbBackend, slots: usize) -> &'static str {
    const SIZES: usize = usize::BITS as usize;
    static POSTGRES: [OnceLock<String>; SIZES] = [const { OnceLock::new() }; SIZES];
    static SQLITE: [OnceLock<String>; SIZES] = [const { OnceLock::new() }; SIZES];
    let postgres = backend == DbBackend::Postgres;
    let cells = if postgres { &POSTGRES } else { &SQLITE };
    cells[slots.trailing_zeros() as usize].get_or_init(|| {
        let placeholders: Vec<String> = (1..=slots)
            .map(|n| {
                if postgres {
                    format!("${n}")
                } else {
                    "?".to_owned()
                }
            })
            .collect();
        format!(
            "{PRODUCT_PAGE} WHERE p.id IN ({}) ORDER BY p.id",
            placeholders.join(", ")
        )
    })
}

/// The products among `ids` that exist, in id order, with their stock: one statement.
pub async fn find_products<C: ConnectionTrait>(
    db: &C,
    ids: Vec<ProductId>,
) -> Result<Vec<Product>, DbErr> {
    let Some(&last) = ids.last() else {
        return Ok(Vec::new());
    };
    let slots = batch_slots(ids.len());
    let values: Vec<Value> = ids
        .iter()
        .chain(std::iter::repeat_n(&last, slots - ids.len()))
        .map(|id| Value::from(id.as_uuid()))
        .collect();
    let backend = db.get_database_backend();
    let statement =
        Statement::from_sql_and_values(backend, find_products_sql(backend, slots), values);
    ProductRow::find_by_statement(statement)
        .all(db)
        .await?
        .into_iter()
        .map(ProductRow::into_product)
        .collect()
}

/// The Postgres channel on which every write of a product announces it, the product's id
/// as the payload, so that other processes drop their cached page (`cache.rs`).
pub const CHANGES_CHANNEL: &str = "catalog_changed";

/// The `application_name` of the connection that listens on [`CHANGES_CHANNEL`] (its
/// own, not one of the pool's).
pub const LISTENER_NAME: &str = "shop:catalog:listener";

/// Announces on [`CHANGES_CHANNEL`] that `id` changed, in the caller's transaction: Postgres
/// delivers it when (and only if) the transaction commits. Nothing on SQLite, whose other
/// processes rely on the cache's time to live alone.
pub async fn notify_changed<C: ConnectionTrait>(db: &C, id: ProductId) -> Result<(), DbErr> {
    if db.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT pg_notify($1, $2)",
        [Value::from(CHANGES_CHANNEL), Value::from(id.to_string())],
    ))
    .await?;
    Ok(())
}

/// What the listening connection heard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// This product changed.
    Product(ProductId),
    /// A notification whose payload is not a product id: anything may have changed.
    Unreadable,
    /// The connection was lost and made again (listening again): notifications sent
    /// meanwhile are lost, so anything may have changed.
    Reconnected,
}

/// A connection of its own (outside the context's pool, so it takes none of its
/// connections), LISTENing on [`CHANGES_CHANNEL`].
#[derive(Debug)]
pub struct ChangeListener {
    listener: sqlx::postgres::PgListener,
}

impl ChangeListener {
    /// Connects and listens, with the options of catalog's pool (server, user, role);
    /// `None` on SQLite.
    pub async fn connect(db: &DatabaseConnection) -> Result<Option<Self>, sqlx::Error> {
        if db.get_database_backend() != DbBackend::Postgres {
            return Ok(None);
        }
        let options = db
            .get_postgres_connection_pool()
            .connect_options()
            .as_ref()
            .clone()
            .application_name(LISTENER_NAME);
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .max_lifetime(None)
            .idle_timeout(None)
            .connect_lazy_with(options);
        let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await?;
        // Its pool is its own: nothing closes it but dropping the listener.
        listener.ignore_pool_close_event(true);
        listener.listen(CHANGES_CHANNEL).await?;
        Ok(Some(Self { listener }))
    }

    /// Waits for the next notification. After a lost connection it connects and listens
    /// again before answering [`Change::Reconnected`]; an error means it could not.
    pub async fn next(&mut self) -> Result<Change, sqlx::Error> {
        Ok(match self.listener.try_recv().await? {
            Some(notification) => notification
                .payload()
                .parse::<Uuid>()
                .map_or(Change::Unreadable, |id| {
                    Change::Product(ProductId::from_uuid(id))
                }),
            None => Change::Reconnected,
        })
    }
}

/// Whether each of `ids` that exists is active.
pub async fn sellable<C: ConnectionTrait>(
    db: &C,
    ids: &[ProductId],
) -> Result<Vec<(ProductId, bool)>, DbErr> {
    let found: Vec<(Uuid, bool)> = products::Entity::find()
        .select_only()
        .column(products::Column::Id)
        .column(products::Column::Active)
        .filter(products::Column::Id.is_in(ids.iter().map(ProductId::as_uuid)))
        .into_tuple()
        .all(db)
        .await?;
    Ok(found
        .into_iter()
        .map(|(id, active)| (ProductId::from_uuid(id), active))
        .collect())
}

pub async fn count_products<C: ConnectionTrait>(db: &C) -> Result<u64, DbErr> {
    products::Entity::find().count(db).await
}

/// Categories of active products, with how many each has, by name.
pub async fn categories<C: ConnectionTrait>(db: &C) -> Result<Vec<(String, u64)>, DbErr> {
    let rows: Vec<(String, i64)> = products::Entity::find()
        .select_only()
        .column(products::Column::Category)
        .column_as(products::Column::Id.count(), "product_count")
        .filter(products::Column::Active.eq(true))
        .group_by(products::Column::Category)
        .order_by_asc(products::Column::Category)
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(name, count)| (name, u64::try_from(count).unwrap_or_default()))
        .collect())
}

/// Inserts a product and its stock row. A taken sku is a unique violation, which the
/// caller turns into `sku_taken`.
pub async fn insert_product<C: ConnectionTrait>(
    db: &C,
    id: ProductId,
    product: ValidProduct,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    products::ActiveModel {
        id: Set(id.as_uuid()),
        sku: Set(product.sku),
        name_folded: Set(Some(domain::fold(&product.name))),
        description_folded: Set(Some(domain::fold(&product.description))),
        name: Set(product.name),
        description: Set(product.description),
        price_minor: Set(product.price.amount_minor()),
        currency: Set(product.price.currency().to_string()),
        category: Set(product.category),
        active: Set(product.active),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(db)
    .await?;
    stock::ActiveModel {
        product_id: Set(id.as_uuid()),
        available: Set(i64::from(product.initial_stock)),
        reserved: Set(0),
    }
    .insert(db)
    .await?;
    Ok(())
}

/// Applies a valid patch. Returns false when there is no such product.
pub async fn update_product<C: ConnectionTrait>(
    db: &C,
    id: ProductId,
    patch: ProductPatch,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let Some(row) = products::Entity::find_by_id(id.as_uuid()).one(db).await? else {
        return Ok(false);
    };
    let mut row = row.into_active_model();
    if let Some(name) = patch.name {
        row.name_folded = Set(Some(domain::fold(&name)));
        row.name = Set(name);
    }
    if let Some(description) = patch.description {
        row.description_folded = Set(Some(domain::fold(&description)));
        row.description = Set(description);
    }
    if let Some(price) = patch.price {
        row.price_minor = Set(price.amount_minor());
        row.currency = Set(price.currency().to_string());
    }
    if let Some(category) = patch.category {
        row.category = Set(category);
    }
    if let Some(active) = patch.active {
        row.active = Set(active);
    }
    row.updated_at = Set(now);
    row.update(db).await?;
    Ok(true)
}

/// Folds the name and description of up to `batch` products not folded yet. Returns how
/// many it looked at: 0 once every product is folded. Safe to run from several processes
/// at once (they write the same values) and beside writers (a row changed since it was
/// read is left to its writer, who folded it).
pub async fn fold_products<C: ConnectionTrait>(db: &C, batch: u64) -> Result<usize, DbErr> {
    let rows: Vec<(Uuid, String, String)> = products::Entity::find()
        .select_only()
        .column(products::Column::Id)
        .column(products::Column::Name)
        .column(products::Column::Description)
        .filter(
            Condition::any()
                .add(products::Column::NameFolded.is_null())
                .add(products::Column::DescriptionFolded.is_null()),
        )
        .order_by_asc(products::Column::Id)
        .limit(batch)
        .into_tuple()
        .all(db)
        .await?;
    for (id, name, description) in &rows {
        products::Entity::update_many()
            .col_expr(
                products::Column::NameFolded,
                Expr::value(domain::fold(name)),
            )
            .col_expr(
                products::Column::DescriptionFolded,
                Expr::value(domain::fold(description)),
            )
            .filter(products::Column::Id.eq(*id))
            // Unless the product changed since it was read: its writer folded it then.
            .filter(products::Column::Name.eq(name.as_str()))
            .filter(products::Column::Description.eq(description.as_str()))
            .exec(db)
            .await?;
    }
    Ok(rows.len())
}

pub async fn find_stock<C: ConnectionTrait>(
    db: &C,
    id: ProductId,
) -> Result<Option<stock::Model>, DbErr> {
    stock::Entity::find_by_id(id.as_uuid()).one(db).await
}

/// Adds `delta` to a product's available units if the result stays within `0..=max`, in
/// one conditional statement. Returns whether it changed.
pub async fn adjust_available<C: ConnectionTrait>(
    db: &C,
    id: ProductId,
    delta: i64,
    max: i64,
) -> Result<bool, DbErr> {
    let after = Expr::col(stock::Column::Available).add(delta);
    let changed = stock::Entity::update_many()
        .col_expr(stock::Column::Available, after.clone())
        .filter(stock::Column::ProductId.eq(id.as_uuid()))
        .filter(after.clone().gte(0))
        .filter(after.lte(max))
        .exec(db)
        .await?
        .rows_affected;
    Ok(changed == 1)
}

/// Moves `quantity` units from available to reserved if the product is active and that
/// many are available, in one conditional statement. Returns whether it did; when it did
/// not, [`sellable`] tells an unknown or inactive product from a short one.
pub async fn take_stock<C: ConnectionTrait>(db: &C, line: &StockLine) -> Result<bool, DbErr> {
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
        .filter(Expr::exists(
            Query::select()
                .expr(Expr::val(1))
                .from(products::Entity)
                .and_where(products::Column::Id.eq(line.product_id.as_uuid()))
                .and_where(products::Column::Active.eq(true))
                .to_owned(),
        ))
        .exec(db)
        .await?
        .rows_affected;
    Ok(taken == 1)
}

/// Moves a line's units out of `reserved` (when `from_reserved`) and into `available`
/// (when `to_available`): the unit movements of a reservation's transitions.
pub async fn move_units<C: ConnectionTrait>(
    db: &C,
    line: &StockLine,
    from_reserved: bool,
    to_available: bool,
) -> Result<(), DbErr> {
    let quantity = i64::from(line.quantity);
    let mut update = stock::Entity::update_many();
    if from_reserved {
        update = update.col_expr(
            stock::Column::Reserved,
            Expr::col(stock::Column::Reserved).sub(quantity),
        );
    }
    if to_available {
        update = update.col_expr(
            stock::Column::Available,
            Expr::col(stock::Column::Available).add(quantity),
        );
    }
    update
        .filter(stock::Column::ProductId.eq(line.product_id.as_uuid()))
        .exec(db)
        .await?;
    Ok(())
}

/// A reservation with its lines (sorted by product), if the order has one.
pub async fn find_reservation<C: ConnectionTrait>(
    db: &C,
    order_id: OrderId,
) -> Result<Option<catalog_api::Reservation>, DbErr> {
    let Some(row) = reservations::Entity::find_by_id(order_id.as_uuid())
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    Ok(Some(catalog_api::Reservation {
        order_id,
        status: decode_status(&row.status)?,
        lines: reservation_lines(db, order_id).await?,
    }))
}

/// A reservation's lines, sorted by product (the order its stock rows are locked in).
pub async fn reservation_lines<C: ConnectionTrait>(
    db: &C,
    order_id: OrderId,
) -> Result<Vec<StockLine>, DbErr> {
    let lines = reservation_lines::Entity::find()
        .filter(reservation_lines::Column::OrderId.eq(order_id.as_uuid()))
        .all(db)
        .await?;
    let mut lines = lines
        .into_iter()
        .map(|line| {
            Ok(StockLine {
                product_id: ProductId::from_uuid(line.product_id),
                quantity: quantity(line.quantity)?,
            })
        })
        .collect::<Result<Vec<_>, DbErr>>()?;
    lines.sort_by_key(|line| line.product_id);
    Ok(lines)
}

/// Claims `order_id` for a reservation in `status` (or a tombstone, `released`). A second
/// claim of the same order is a unique violation.
pub async fn insert_reservation<C: ConnectionTrait>(
    db: &C,
    order_id: OrderId,
    status: ReservationStatus,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    reservations::ActiveModel {
        order_id: Set(order_id.as_uuid()),
        status: Set(status_code(status).to_owned()),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(db)
    .await?;
    Ok(())
}

pub async fn insert_reservation_lines<C: ConnectionTrait>(
    db: &C,
    order_id: OrderId,
    lines: &[StockLine],
) -> Result<(), DbErr> {
    reservation_lines::Entity::insert_many(lines.iter().map(|line| {
        reservation_lines::ActiveModel {
            order_id: Set(order_id.as_uuid()),
            product_id: Set(line.product_id.as_uuid()),
            quantity: Set(i64::from(line.quantity)),
        }
    }))
    .exec(db)
    .await?;
    Ok(())
}

/// Moves a reservation from `from` to `to` if it is still in `from`. Returns whether it
/// moved: when two callers race, exactly one does.
pub async fn move_reservation<C: ConnectionTrait>(
    db: &C,
    order_id: OrderId,
    from: ReservationStatus,
    to: ReservationStatus,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let moved = reservations::Entity::update_many()
        .col_expr(reservations::Column::Status, Expr::value(status_code(to)))
        .col_expr(reservations::Column::UpdatedAt, Expr::value(now))
        .filter(reservations::Column::OrderId.eq(order_id.as_uuid()))
        .filter(reservations::Column::Status.eq(status_code(from)))
        .exec(db)
        .await?
        .rows_affected;
    Ok(moved == 1)
}

/// Reserves `lines` (normalised: one per product, sorted) for `order_id` in one
/// transaction: claims the order id, records the lines and takes each line's units from
/// `available` into `reserved`, if its product is active and has them. Commits and returns
/// no products when every line was taken; otherwise rolls back and returns the products that
/// were short (or inactive). Errors come back as the database gave them, after the rollback:
/// a unique violation when the order has a reservation already (or a tombstone), a foreign
/// key violation when a line names an unknown product.
///
/// On Postgres the claim, the lines and the units are one statement between `BEGIN` and
/// `COMMIT` (three round trips where one per step and per line take five or more); the stock
/// rows are locked in product order, as every reservation and transition locks them, and
/// last, so a hot product's row is held only for the end of the statement and the commit.
/// On SQLite it is one statement per step.
pub async fn reserve_units(
    db: &DatabaseConnection,
    order_id: OrderId,
    lines: &[StockLine],
    now: DateTime<Utc>,
) -> Result<Vec<ProductId>, DbErr> {
    let txn = db.begin().await?;
    let reserved = match db.get_database_backend() {
        DbBackend::Postgres => take_units_in_one_statement(&txn, order_id, lines, now).await,
        _ => take_units_step_by_step(&txn, order_id, lines, now).await,
    };
    match &reserved {
        Ok(short) if short.is_empty() => txn.commit().await?,
        Ok(_) | Err(_) => txn.rollback().await?,
    }
    reserved
}

async fn take_units_step_by_step(
    txn: &DatabaseTransaction,
    order_id: OrderId,
    lines: &[StockLine],
    now: DateTime<Utc>,
) -> Result<Vec<ProductId>, DbErr> {
    insert_reservation(txn, order_id, ReservationStatus::Reserved, now).await?;
    insert_reservation_lines(txn, order_id, lines).await?;
    let mut short = Vec::new();
    for line in lines {
        if !take_stock(txn, line).await? {
            short.push(line.product_id);
        }
    }
    Ok(short)
}

async fn take_units_in_one_statement(
    txn: &DatabaseTransaction,
    order_id: OrderId,
    lines: &[StockLine],
    now: DateTime<Utc>,
) -> Result<Vec<ProductId>, DbErr> {
    let mut values: Vec<Value> = vec![
        order_id.as_uuid().into(),
        status_code(ReservationStatus::Reserved).into(),
        now.into(),
    ];
    let mut rows = Vec::with_capacity(lines.len());
    for line in lines {
        let at = values.len();
        rows.push(format!("(${}::uuid, ${}::bigint)", at + 1, at + 2));
        values.push(line.product_id.as_uuid().into());
        values.push(i64::from(line.quantity).into());
    }
    let sql = format!(
        "WITH claimed AS (\
             INSERT INTO reservations (order_id, status, created_at, updated_at) \
             VALUES ($1, $2, $3, $3) RETURNING order_id), \
         lines AS (\
             INSERT INTO reservation_lines (order_id, product_id, quantity) \
             SELECT claimed.order_id, wanted.product_id, wanted.quantity \
             FROM claimed, (VALUES {}) AS wanted (product_id, quantity) \
             RETURNING product_id, quantity), \
         locked AS (\
             SELECT stock.product_id FROM stock JOIN lines USING (product_id) \
             ORDER BY stock.product_id FOR UPDATE OF stock), \
         taken AS (\
             UPDATE stock SET available = stock.available - lines.quantity, \
                 reserved = stock.reserved + lines.quantity \
             FROM lines JOIN locked USING (product_id) \
             WHERE stock.product_id = lines.product_id \
               AND stock.available >= lines.quantity \
               AND EXISTS (SELECT 1 FROM products \
                           WHERE products.id = lines.product_id AND products.active) \
             RETURNING stock.product_id) \
         SELECT lines.product_id FROM lines \
         WHERE lines.product_id NOT IN (SELECT product_id FROM taken) \
         ORDER BY lines.product_id",
        rows.join(", ")
    );
    let short = txn
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            values,
        ))
        .await?;
    short
        .iter()
        .map(|row| Ok(ProductId::from_uuid(row.try_get("", "product_id")?)))
        .collect()
}

/// Moves a reservation from `from` to `to` if it is still in `from`, and its lines' units
/// with it: out of `reserved` when it leaves `reserved` (sold, or back on the shelf), into
/// `available` when it is `released`. Returns its lines when it moved, `None` when it was
/// not in `from` (moved already, closed or missing): when two callers race, exactly one
/// moves the units.
///
/// On Postgres this is one autocommit statement (one round trip where a transaction of the
/// status update, the lines and one update per line takes four or more): the status update
/// returns the reservation only if it moved, its lines are read through it, their stock
/// rows are locked in product order, as every reservation locks them (so two transitions
/// sharing products cannot deadlock), and their units move. On SQLite it is that
/// transaction.
pub async fn move_reservation_and_units(
    db: &DatabaseConnection,
    order_id: OrderId,
    from: ReservationStatus,
    to: ReservationStatus,
    now: DateTime<Utc>,
) -> Result<Option<Vec<StockLine>>, DbErr> {
    let from_reserved = from == ReservationStatus::Reserved;
    let to_available = to == ReservationStatus::Released;
    let backend = db.get_database_backend();
    if backend != DbBackend::Postgres {
        let txn = db.begin().await?;
        if !move_reservation(&txn, order_id, from, to, now).await? {
            txn.rollback().await?;
            return Ok(None);
        }
        let lines = reservation_lines(&txn, order_id).await?;
        for line in &lines {
            move_units(&txn, line, from_reserved, to_available).await?;
        }
        txn.commit().await?;
        return Ok(Some(lines));
    }
    let mut units = Vec::new();
    if from_reserved {
        units.push("reserved = stock.reserved - lines.quantity");
    }
    if to_available {
        units.push("available = stock.available + lines.quantity");
    }
    let sql = format!(
        "WITH moved AS (\
             UPDATE reservations SET status = $1, updated_at = $2 \
             WHERE order_id = $3 AND status = $4 RETURNING order_id), \
         lines AS (\
             SELECT reservation_lines.product_id, reservation_lines.quantity \
             FROM reservation_lines JOIN moved USING (order_id)), \
         locked AS (\
             SELECT stock.product_id FROM stock JOIN lines USING (product_id) \
             ORDER BY stock.product_id FOR UPDATE OF stock), \
         units AS (\
             UPDATE stock SET {} FROM lines JOIN locked USING (product_id) \
             WHERE stock.product_id = lines.product_id RETURNING stock.product_id) \
         SELECT lines.product_id, lines.quantity FROM moved LEFT JOIN lines ON true",
        units.join(", ")
    );
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            [
                status_code(to).into(),
                now.into(),
                order_id.as_uuid().into(),
                status_code(from).into(),
            ],
        ))
        .await?;
    if rows.is_empty() {
        return Ok(None);
    }
    let mut lines = Vec::with_capacity(rows.len());
    for row in rows {
        // A reservation without lines (none is made so) comes back as one row of NULLs.
        let product_id: Option<Uuid> = row.try_get("", "product_id")?;
        let count: Option<i64> = row.try_get("", "quantity")?;
        if let (Some(product_id), Some(count)) = (product_id, count) {
            lines.push(StockLine {
                product_id: ProductId::from_uuid(product_id),
                quantity: quantity(count)?,
            });
        }
    }
    lines.sort_by_key(|line| line.product_id);
    Ok(Some(lines))
}

#[cfg(test)]
mod tests {
    use super::like_pattern;

    #[test]
    fn like_patterns_match_user_text_literally() {
        assert_eq!(like_pattern("Tea"), "%tea%");
        assert_eq!(like_pattern("50%_off\\"), "%50\\%\\_off\\\\%");
    }
}
