//! Payments (one per order), their refunds, and payments' outbox.
//!
//! The money invariants live in the schema as well as in the code: `CHECK` constraints make
//! a negative amount, a capture above what was asked, or refunds above what was captured
//! impossible even for a buggy statement. One payment per order and one row per
//! idempotency key are unique keys, so concurrent charges of one order cannot both insert.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Payments::Table)
                    .col(uuid(Payments::Id).primary_key())
                    .col(uuid_uniq(Payments::OrderId))
                    .col(uuid(Payments::CustomerId))
                    .col(string_len_uniq(Payments::IdempotencyKey, 200))
                    // Hex SHA-256 of the canonical charge request.
                    .col(string_len(Payments::Fingerprint, 64))
                    .col(
                        big_integer(Payments::AmountMinor)
                            .check(Expr::col(Payments::AmountMinor).gte(0)),
                    )
                    .col(char_len(Payments::Currency, 3))
                    .col(
                        string_len(Payments::Status, 32).check(Expr::col(Payments::Status).is_in(
                            [
                                "pending",
                                "captured",
                                "partially_refunded",
                                "refunded",
                                "failed",
                                "voided",
                            ],
                        )),
                    )
                    .col(
                        big_integer(Payments::CapturedMinor)
                            .check(Expr::col(Payments::CapturedMinor).gte(0)),
                    )
                    .col(big_integer(Payments::RefundedMinor))
                    .col(string_len_null(Payments::ProviderReference, 128))
                    .col(string_len_null(Payments::FailureReason, 32).check(
                        Expr::col(Payments::FailureReason).is_null().or(
                            Expr::col(Payments::FailureReason).is_in([
                                "declined",
                                "insufficient_funds",
                                "provider_error",
                                "invalid_token",
                            ]),
                        ),
                    ))
                    .col(timestamp_with_time_zone(Payments::CreatedAt))
                    .col(timestamp_with_time_zone(Payments::UpdatedAt))
                    // Multi-column rules are table constraints, named so a violation says
                    // which rule broke.
                    .check((
                        "payments_refunds_within_capture",
                        Expr::col(Payments::RefundedMinor).gte(0).and(
                            Expr::col(Payments::RefundedMinor)
                                .lte(Expr::col(Payments::CapturedMinor)),
                        ),
                    ))
                    .check((
                        "payments_capture_within_amount",
                        Expr::col(Payments::CapturedMinor).lte(Expr::col(Payments::AmountMinor)),
                    ))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Refunds::Table)
                    .col(uuid(Refunds::Id).primary_key())
                    .col(uuid(Refunds::PaymentId))
                    .col(string_len_uniq(Refunds::IdempotencyKey, 200))
                    .col(
                        big_integer(Refunds::AmountMinor)
                            .check(Expr::col(Refunds::AmountMinor).gt(0)),
                    )
                    // Null until the provider has confirmed the refund: the refund is
                    // recorded (and the money reserved) before the provider is asked.
                    .col(string_len_null(Refunds::ProviderReference, 128))
                    .col(timestamp_with_time_zone(Refunds::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Refunds::Table, Refunds::PaymentId)
                            .to(Payments::Table, Payments::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("refunds_payment_idx")
                    .table(Refunds::Table)
                    .col(Refunds::PaymentId)
                    .to_owned(),
            )
            .await?;

        messaging::migration::v1::create_outbox(manager).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Alias::new("outbox").into_iden(),
            Refunds::Table.into_iden(),
            Payments::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Payments {
    Table,
    Id,
    OrderId,
    CustomerId,
    IdempotencyKey,
    Fingerprint,
    AmountMinor,
    Currency,
    Status,
    CapturedMinor,
    RefundedMinor,
    ProviderReference,
    FailureReason,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Refunds {
    Table,
    Id,
    PaymentId,
    IdempotencyKey,
    AmountMinor,
    ProviderReference,
    CreatedAt,
}
