//! The checkout saga: reserve stock → charge → confirm, compensating on failure; and the
//! cancellation of a confirmed order: refund → restock.
//!
//! The saga's state *is* the order's status, persisted after every step:
//!
//! ```text
//! pending ──reserve──▶ stock_reserved ──charge──▶ payment_captured ──commit──▶ confirmed
//!    │                      │                                                   │
//!    │ out of stock         │ declined / provider error / timeout               │ cancel
//!    ▼                      ▼ (void payment, release stock)                     ▼
//! rejected            payment_failed                       cancelled ◀──refund, restock── cancelling
//! ```
//!
//! Each step calls another context through its `-api` trait, and every one of those calls is
//! idempotent, keyed by the order id. So the saga can be re-run from any persisted status at
//! any time — after a crash, by a second process, by two runners at once — and it converges:
//! a step that already happened is answered with its first result, and the status moves by
//! conditional update, so exactly one runner records each transition and its event.
//!
//! Nothing here waits for a step to "finish elsewhere": a runner that cannot complete a
//! step now (a context unavailable) leaves the order where it is, and the recovery sweep
//! runs it again later.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use catalog_api::{CatalogApi, CatalogError, StockLine};
use kernel::{Clock, IdempotencyKey, IntegrationEvent, Money, OrderId};
use messaging::Outbox;
use orders_api::{
    Order, OrderCancelled, OrderConfirmed, OrderFailure, OrderPaymentFailed, OrderStatus,
    OrdersError,
};
use payments_api::{
    ChargeRequest, FailureReason, PaymentStatus, PaymentToken, PaymentsApi, PaymentsError,
};
use sea_orm::{DatabaseConnection, TransactionTrait};

use crate::domain::can_move;
use crate::store;

/// Orders that reached a terminal status, by status and failure reason.
pub const CHECKOUTS: &str = "shop_checkouts_total";

/// A point in the saga where a test can stop it, as if the process died there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    Reserve,
    Charge,
    CancelPayment,
    ReleaseStock,
    Confirm,
    Refund,
    Restock,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Moment {
    /// Before the step calls the other context.
    Before,
    /// After the other context answered, before the new status is persisted.
    After,
}

/// Fault injection for tests: returning `false` stops the saga at that point, leaving the
/// order exactly as a crash there would. Production uses [`NoFaults`].
pub trait CheckoutHook: Send + Sync + Debug + 'static {
    fn proceed(&self, order_id: OrderId, step: Step, moment: Moment) -> bool;
}

#[derive(Debug, Clone, Copy, Default)]
pub struct NoFaults;

impl CheckoutHook for NoFaults {
    fn proceed(&self, _: OrderId, _: Step, _: Moment) -> bool {
        true
    }
}

/// What a step decided.
enum Next {
    /// Move from the status the step started in to this one.
    Move {
        to: OrderStatus,
        reason: Option<OrderFailure>,
        /// What the payment refunded, for `OrderCancelled`.
        refunded: Option<Money>,
    },
    /// The step cannot complete now; leave the order for a later run.
    Later(String),
}

pub(crate) struct Checkout {
    pub db: DatabaseConnection,
    pub catalog: Arc<dyn CatalogApi>,
    pub payments: Arc<dyn PaymentsApi>,
    pub outbox: Outbox,
    pub clock: Arc<dyn Clock>,
    pub charge_timeout: Duration,
    pub hook: Arc<dyn CheckoutHook>,
}

impl Debug for Checkout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkout")
            .field("charge_timeout", &self.charge_timeout)
            .field("hook", &self.hook)
            .finish_non_exhaustive()
    }
}

impl Checkout {
    /// Runs the order's saga from its persisted status until it is terminal (or `confirmed`
    /// for a checkout), or until a step must be retried later.
    #[tracing::instrument(skip(self))]
    pub async fn run(&self, order_id: OrderId) -> Result<Order, OrdersError> {
        loop {
            let order = store::find_order(&self.db, order_id)
                .await
                .map_err(db_kit::internal)?
                .ok_or(OrdersError::OrderNotFound { order_id })?;
            let next = match order.status {
                OrderStatus::Pending => self.reserve(&order).await?,
                OrderStatus::StockReserved => self.charge(&order).await?,
                OrderStatus::PaymentCaptured => self.confirm(&order).await?,
                OrderStatus::Cancelling => self.refund_and_restock(&order).await?,
                OrderStatus::Confirmed
                | OrderStatus::Rejected
                | OrderStatus::PaymentFailed
                | OrderStatus::Cancelled => return Ok(order),
            };
            match next {
                Next::Move {
                    to,
                    reason,
                    refunded,
                } => self.record(&order, to, reason, refunded).await?,
                Next::Later(why) => {
                    tracing::warn!(order_id = %order_id, status = ?order.status, why, "checkout step postponed");
                    return Err(OrdersError::CheckoutIncomplete {
                        order_id,
                        status: order.status,
                    });
                }
            }
        }
    }

    fn at(&self, order: &Order, step: Step, moment: Moment) -> Result<(), OrdersError> {
        if self.hook.proceed(order.id, step, moment) {
            Ok(())
        } else {
            tracing::warn!(order_id = %order.id, ?step, ?moment, "checkout stopped by a fault hook");
            Err(OrdersError::CheckoutIncomplete {
                order_id: order.id,
                status: order.status,
            })
        }
    }

    async fn reserve(&self, order: &Order) -> Result<Next, OrdersError> {
        let lines = order
            .lines
            .iter()
            .map(|line| StockLine {
                product_id: line.product_id,
                quantity: line.quantity,
            })
            .collect();
        self.at(order, Step::Reserve, Moment::Before)?;
        let reserved = self.catalog.reserve_stock(order.id, lines).await;
        self.at(order, Step::Reserve, Moment::After)?;
        Ok(match reserved {
            Ok(_) => move_to(OrderStatus::StockReserved, None),
            Err(CatalogError::OutOfStock { .. } | CatalogError::InsufficientStock { .. }) => {
                move_to(OrderStatus::Rejected, Some(OrderFailure::OutOfStock))
            }
            Err(
                CatalogError::ProductNotFound { .. }
                | CatalogError::ProductInactive { .. }
                | CatalogError::ReservationClosed { .. }
                | CatalogError::ValidationFailed { .. },
            ) => move_to(
                OrderStatus::Rejected,
                Some(OrderFailure::ProductUnavailable),
            ),
            Err(error) => Next::Later(format!("catalog: {error}")),
        })
    }

    async fn charge(&self, order: &Order) -> Result<Next, OrdersError> {
        let token = store::find_row(&self.db, order.id)
            .await
            .map_err(db_kit::internal)?
            .map(|row| row.payment_token)
            .unwrap_or_default();
        // Parsed when the order was placed; a stored token that no longer parses is a
        // corrupted row, and the order cannot be charged.
        let Ok(payment_token) = PaymentToken::parse(&token) else {
            tracing::error!(order_id = %order.id, "stored payment token is not a token");
            return self
                .compensate(order, OrderFailure::PaymentRejected, true)
                .await;
        };
        // orders' own key for the charge: one charge per order, whoever runs the step.
        let idempotency_key =
            IdempotencyKey::parse(&format!("order:{}", order.id)).map_err(|error| {
                tracing::error!(%error, "an order's charge key is not a valid key");
                OrdersError::Internal
            })?;
        let request = ChargeRequest {
            order_id: order.id,
            customer_id: order.customer_id,
            amount: order.total,
            payment_token,
            idempotency_key,
        };
        self.at(order, Step::Charge, Moment::Before)?;
        let charged =
            tokio::time::timeout(self.charge_timeout, self.payments.charge(request)).await;
        self.at(order, Step::Charge, Moment::After)?;
        match charged {
            Ok(Ok(payment)) => match payment.status {
                PaymentStatus::Captured
                | PaymentStatus::PartiallyRefunded
                | PaymentStatus::Refunded => Ok(move_to(OrderStatus::PaymentCaptured, None)),
                PaymentStatus::Failed => {
                    let reason = payment
                        .failure_reason
                        .map_or(OrderFailure::Declined, order_failure);
                    self.compensate(order, reason, false).await
                }
                PaymentStatus::Voided => {
                    self.compensate(order, OrderFailure::PaymentTimedOut, false)
                        .await
                }
                PaymentStatus::Pending => Ok(Next::Later("the payment is still pending".into())),
            },
            Ok(Err(
                PaymentsError::ValidationFailed { .. } | PaymentsError::IdempotencyKeyReused,
            )) => {
                self.compensate(order, OrderFailure::PaymentRejected, true)
                    .await
            }
            Ok(Err(error)) => {
                tracing::warn!(order_id = %order.id, error = %error, "charge failed; giving up the payment");
                self.compensate(order, OrderFailure::PaymentUnavailable, true)
                    .await
            }
            Err(_elapsed) => {
                tracing::warn!(order_id = %order.id, timeout_ms = self.charge_timeout.as_millis() as u64, "charge timed out");
                self.compensate(order, OrderFailure::PaymentTimedOut, true)
                    .await
            }
        }
    }

    /// Undoes a checkout whose payment did not capture: give up the payment when its
    /// outcome is unknown (so it can never capture later), then return the stock.
    async fn compensate(
        &self,
        order: &Order,
        reason: OrderFailure,
        cancel_payment: bool,
    ) -> Result<Next, OrdersError> {
        if cancel_payment {
            self.at(order, Step::CancelPayment, Moment::Before)?;
            if let Err(error) = self.payments.cancel(order.id).await {
                return Ok(Next::Later(format!("payments: {error}")));
            }
            self.at(order, Step::CancelPayment, Moment::After)?;
        }
        self.at(order, Step::ReleaseStock, Moment::Before)?;
        let released = self.catalog.release_reservation(order.id).await;
        self.at(order, Step::ReleaseStock, Moment::After)?;
        Ok(match released {
            Ok(_) => move_to(OrderStatus::PaymentFailed, Some(reason)),
            Err(error) => Next::Later(format!("catalog: {error}")),
        })
    }

    async fn confirm(&self, order: &Order) -> Result<Next, OrdersError> {
        self.at(order, Step::Confirm, Moment::Before)?;
        let committed = self.catalog.commit_reservation(order.id).await;
        self.at(order, Step::Confirm, Moment::After)?;
        Ok(match committed {
            Ok(_) => move_to(OrderStatus::Confirmed, None),
            Err(error) => Next::Later(format!("catalog: {error}")),
        })
    }

    async fn refund_and_restock(&self, order: &Order) -> Result<Next, OrdersError> {
        self.at(order, Step::Refund, Moment::Before)?;
        // Keyed by the order on payments' side: a repeat of this step (after a crash, by a
        // second runner) answers the payment as the first refund left it.
        let refunded = match self.payments.refund_order(order.id).await {
            Ok(payment) => payment.refunded,
            Err(error) => return Ok(Next::Later(format!("payments: {error}"))),
        };
        self.at(order, Step::Refund, Moment::After)?;
        self.at(order, Step::Restock, Moment::Before)?;
        let restocked = self.catalog.restock_reservation(order.id).await;
        self.at(order, Step::Restock, Moment::After)?;
        Ok(match restocked {
            Ok(_) => Next::Move {
                to: OrderStatus::Cancelled,
                reason: None,
                refunded: Some(refunded),
            },
            Err(error) => Next::Later(format!("catalog: {error}")),
        })
    }

    /// Persists a transition and its event in one transaction. If another runner moved the
    /// order first, nothing is written and the caller's loop reads the new status.
    async fn record(
        &self,
        order: &Order,
        to: OrderStatus,
        reason: Option<OrderFailure>,
        refunded: Option<Money>,
    ) -> Result<(), OrdersError> {
        debug_assert!(can_move(order.status, to), "{:?} -> {to:?}", order.status);
        let now = self.clock.now();
        let txn = self.db.begin().await.map_err(db_kit::internal)?;
        let moved = store::move_status(&txn, order.id, order.status, to, reason, now)
            .await
            .map_err(db_kit::internal)?;
        if !moved {
            return Ok(());
        }
        match to {
            OrderStatus::Confirmed => {
                let event = OrderConfirmed {
                    order_id: order.id,
                    customer_id: order.customer_id,
                    total: order.total,
                    line_count: u32::try_from(order.lines.len()).unwrap_or(u32::MAX),
                    confirmed_at: now,
                };
                self.publish(txn, &event, now).await?;
            }
            OrderStatus::PaymentFailed => {
                let event = OrderPaymentFailed {
                    order_id: order.id,
                    customer_id: order.customer_id,
                    total: order.total,
                    reason: reason.unwrap_or(OrderFailure::PaymentRejected),
                    failed_at: now,
                };
                self.publish(txn, &event, now).await?;
            }
            OrderStatus::Cancelled => {
                let event = OrderCancelled {
                    order_id: order.id,
                    customer_id: order.customer_id,
                    refunded: refunded.unwrap_or(order.total),
                    cancelled_at: now,
                };
                self.publish(txn, &event, now).await?;
            }
            _ => txn.commit().await.map_err(db_kit::internal)?,
        }
        if to.is_terminal() {
            let outcome: &'static str = to.into();
            let reason: &'static str = reason.map_or("", Into::into);
            metrics::counter!(CHECKOUTS, "outcome" => outcome, "reason" => reason).increment(1);
        }
        tracing::info!(order_id = %order.id, from = ?order.status, to = ?to, reason = ?reason, "order moved");
        Ok(())
    }

    async fn publish<E: IntegrationEvent>(
        &self,
        txn: sea_orm::DatabaseTransaction,
        event: &E,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), OrdersError> {
        self.outbox
            .commit_with(txn, event, now)
            .await
            .map(|_| ())
            .map_err(db_kit::internal)
    }
}

fn move_to(to: OrderStatus, reason: Option<OrderFailure>) -> Next {
    Next::Move {
        to,
        reason,
        refunded: None,
    }
}

/// orders' words for payments' reasons: a new reason in payments breaks this match, not
/// orders' clients.
fn order_failure(reason: FailureReason) -> OrderFailure {
    match reason {
        FailureReason::Declined => OrderFailure::Declined,
        FailureReason::InsufficientFunds => OrderFailure::InsufficientFunds,
        FailureReason::ProviderError => OrderFailure::ProviderError,
        FailureReason::InvalidToken => OrderFailure::InvalidPaymentToken,
    }
}
