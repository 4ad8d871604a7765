//! Payments' tables, in payments' own schema, and the queries over them.

use kernel::{Currency, Money, OrderId, PaymentId, UserId};
use payments_api::{FailureReason, Payment, PaymentStatus};
use sea_orm::entity::prelude::*;

pub mod payments {
    use sea_orm::entity::prelude::*;

    /// One payment per order. `refunded_minor <= captured_minor <= amount_minor` is a
    /// `CHECK` in the schema.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "payments")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        #[sea_orm(unique)]
        pub order_id: Uuid,
        pub customer_id: Uuid,
        #[sea_orm(unique)]
        pub idempotency_key: String,
        pub fingerprint: String,
        pub amount_minor: i64,
        pub currency: String,
        pub status: String,
        pub captured_minor: i64,
        pub refunded_minor: i64,
        pub provider_reference: Option<String>,
        pub failure_reason: Option<String>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod refunds {
    use sea_orm::entity::prelude::*;

    /// One row per refund key. `provider_reference` is null until the provider confirmed.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "refunds")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub payment_id: Uuid,
        #[sea_orm(unique)]
        pub idempotency_key: String,
        pub amount_minor: i64,
        pub provider_reference: Option<String>,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub fn status_to_str(status: PaymentStatus) -> &'static str {
    match status {
        PaymentStatus::Pending => "pending",
        PaymentStatus::Captured => "captured",
        PaymentStatus::PartiallyRefunded => "partially_refunded",
        PaymentStatus::Refunded => "refunded",
        PaymentStatus::Failed => "failed",
        PaymentStatus::Voided => "voided",
    }
}

pub fn status_from_str(status: &str) -> Result<PaymentStatus, DbErr> {
    match status {
        "pending" => Ok(PaymentStatus::Pending),
        "captured" => Ok(PaymentStatus::Captured),
        "partially_refunded" => Ok(PaymentStatus::PartiallyRefunded),
        "refunded" => Ok(PaymentStatus::Refunded),
        "failed" => Ok(PaymentStatus::Failed),
        "voided" => Ok(PaymentStatus::Voided),
        other => Err(DbErr::Type(format!("unknown payment status {other:?}"))),
    }
}

pub fn reason_to_str(reason: FailureReason) -> &'static str {
    match reason {
        FailureReason::Declined => "declined",
        FailureReason::InsufficientFunds => "insufficient_funds",
        FailureReason::ProviderError => "provider_error",
        FailureReason::InvalidToken => "invalid_token",
    }
}

pub fn reason_from_str(reason: &str) -> Result<FailureReason, DbErr> {
    match reason {
        "declined" => Ok(FailureReason::Declined),
        "insufficient_funds" => Ok(FailureReason::InsufficientFunds),
        "provider_error" => Ok(FailureReason::ProviderError),
        "invalid_token" => Ok(FailureReason::InvalidToken),
        other => Err(DbErr::Type(format!("unknown failure reason {other:?}"))),
    }
}

/// The schema keeps amounts non-negative, so a failed conversion is a corrupted row.
fn money(amount_minor: i64, currency: Currency) -> Result<Money, DbErr> {
    Money::new(amount_minor, currency).map_err(|error| DbErr::Type(error.to_string()))
}

fn currency(code: &str) -> Result<Currency, DbErr> {
    Currency::parse(code).map_err(|error| DbErr::Type(error.to_string()))
}

/// A refund's amount, in its payment's currency.
pub fn refund_amount(payment: &payments::Model, refund: &refunds::Model) -> Result<Money, DbErr> {
    money(refund.amount_minor, currency(&payment.currency)?)
}

pub fn to_payment(row: payments::Model) -> Result<Payment, DbErr> {
    let currency = currency(&row.currency)?;
    Ok(Payment {
        id: PaymentId::from_uuid(row.id),
        order_id: OrderId::from_uuid(row.order_id),
        customer_id: UserId::from_uuid(row.customer_id),
        amount: money(row.amount_minor, currency)?,
        status: status_from_str(&row.status)?,
        captured: money(row.captured_minor, currency)?,
        refunded: money(row.refunded_minor, currency)?,
        provider_reference: row.provider_reference,
        failure_reason: row
            .failure_reason
            .as_deref()
            .map(reason_from_str)
            .transpose()?,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

pub async fn find_by_order<C: ConnectionTrait>(
    db: &C,
    order_id: OrderId,
) -> Result<Option<payments::Model>, DbErr> {
    payments::Entity::find()
        .filter(payments::Column::OrderId.eq(order_id.as_uuid()))
        .one(db)
        .await
}

pub async fn find_by_key<C: ConnectionTrait>(
    db: &C,
    key: &str,
) -> Result<Option<payments::Model>, DbErr> {
    payments::Entity::find()
        .filter(payments::Column::IdempotencyKey.eq(key))
        .one(db)
        .await
}

pub async fn find_refund_by_key<C: ConnectionTrait>(
    db: &C,
    key: &str,
) -> Result<Option<refunds::Model>, DbErr> {
    refunds::Entity::find()
        .filter(refunds::Column::IdempotencyKey.eq(key))
        .one(db)
        .await
}
