//! A partial index of the orders whose checkout has not finished, by customer: placing an
//! order counts the customer's unfinished checkouts (`orders.max_in_flight_per_customer`),
//! and without it that count read every order the customer ever placed. The predicate is the
//! literal `store::count_in_flight` writes.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX orders_in_flight_idx ON orders (customer_id) \
                 WHERE status IN ('pending', 'stock_reserved', 'payment_captured')",
            )
            .await
            .map(drop)
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(Index::drop().name("orders_in_flight_idx").to_owned())
            .await
    }
}
