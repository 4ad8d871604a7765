//! `OrdersService`: orders' application service, the implementation of `OrdersApi`. It
//! orchestrates: `domain` decides, `store` holds the SQL, `checkout` runs the saga.

use std::collections::HashMap;
use std::sync::Arc;
use tracing::Instrument;

use async_trait::async_trait;
use catalog_api::{CatalogApi, CatalogError, Product};
use futures::StreamExt;
use kernel::{Clock, FieldError, Money, OrderId, Page, PageRequest, ProductId};
use messaging::Outbox;
use orders_api::{
    DetailSource, Order, OrderDetail, OrderPlaced, OrderRequest, OrderStatus, OrdersApi,
    OrdersError, ParkedOrder, PaymentState, PaymentView, PlaceOrder, Placed, ProductView, Viewer,
};
use payments_api::{PaymentStatus, PaymentsApi, PaymentsError};
use sea_orm::{DatabaseConnection, TransactionTrait};
use uuid::Uuid;

use crate::OrdersConfig;
use crate::checkout::{Checkout, Held, Ran, Start};
use crate::domain::{self, ValidRequest};
use crate::store::{self, NewLine, NewOrder, orders};

/// Order details answered without a part, by the part (`payments`, `catalog`).
pub const DEGRADED_DETAILS: &str = "shop_order_details_degraded_total";
/// Unfinished checkouts the sweep has given up on, now (a gauge).
pub const PARKED_NOW: &str = "shop_checkouts_parked";

pub struct OrdersService {
    pub(crate) db: DatabaseConnection,
    pub(crate) catalog: Arc<dyn CatalogApi>,
    pub(crate) payments: Arc<dyn PaymentsApi>,
    pub(crate) outbox: Outbox,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) checkout: Arc<Checkout>,
    pub(crate) config: OrdersConfig,
}

impl std::fmt::Debug for OrdersService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrdersService")
            .field("outbox", &self.outbox)
            .field("checkout", &self.checkout)
            .finish_non_exhaustive()
    }
}

fn unavailable(context: &str, error: impl std::fmt::Display) -> OrdersError {
    tracing::warn!(context, error = %error, "a context orders depends on failed");
    OrdersError::Unavailable {
        reason: format!("{context} did not answer"),
    }
}

/// orders' words for payments' statuses: the order detail is orders' own view, translated
/// here, so a change in payments' enum breaks this match, not orders' clients.
fn payment_state(status: PaymentStatus) -> PaymentState {
    match status {
        PaymentStatus::Pending => PaymentState::Pending,
        PaymentStatus::Captured => PaymentState::Captured,
        PaymentStatus::PartiallyRefunded => PaymentState::PartiallyRefunded,
        PaymentStatus::Refunded => PaymentState::Refunded,
        PaymentStatus::Failed => PaymentState::Failed,
        PaymentStatus::Voided => PaymentState::Voided,
    }
}

/// Snapshot lines of a new order: name and unit price as the catalog has them now.
struct Priced {
    lines: Vec<NewLine>,
    total: Money,
}

fn price(request: &ValidRequest, products: &[Product]) -> Result<Priced, OrdersError> {
    let by_id: HashMap<ProductId, &Product> = products
        .iter()
        .map(|product| (product.id, product))
        .collect();
    let mut fields = Vec::new();
    let mut lines = Vec::new();
    let mut currency = None;
    for (index, line) in request.lines.iter().enumerate() {
        let field = format!("lines[{index}].product_id");
        let Some(product) = by_id.get(&line.product_id) else {
            fields.push(FieldError::new(field, "unknown_product", "no such product"));
            continue;
        };
        if !product.active {
            fields.push(FieldError::new(
                field,
                "product_unavailable",
                "this product is not for sale",
            ));
            continue;
        }
        let product_currency = product.price.currency();
        if *currency.get_or_insert(product_currency) != product_currency {
            fields.push(FieldError::new(
                field,
                "mixed_currencies",
                "all products of an order must share a currency",
            ));
            continue;
        }
        lines.push(NewLine {
            product_id: product.id,
            sku: product.sku.clone(),
            name: product.name.clone(),
            unit_price: product.price,
            quantity: line.quantity,
        });
    }
    let Some(currency) = currency.filter(|_| fields.is_empty()) else {
        return Err(OrdersError::ValidationFailed { fields });
    };
    let total = lines.iter().try_fold(Money::zero(currency), |total, line| {
        total.checked_add(line.unit_price.checked_mul(line.quantity)?)
    });
    let total = total.map_err(|_| OrdersError::ValidationFailed {
        fields: vec![FieldError::new(
            "lines",
            "total_too_large",
            "the order total is too large",
        )],
    })?;
    Ok(Priced { lines, total })
}

impl OrdersService {
    /// The answer to a repeated idempotency key: the same order if the request is the same.
    async fn replay(
        &self,
        existing: orders::Model,
        fingerprint: &str,
    ) -> Result<Placed, OrdersError> {
        if existing.request_hash != fingerprint {
            return Err(OrdersError::IdempotencyKeyReused);
        }
        let id = OrderId::from_uuid(existing.id);
        let order = self.finish(id, Uuid::now_v7(), Start::Resume, None).await?;
        Ok(Placed {
            order,
            replayed: true,
        })
    }

    /// Runs checkout (or cancellation) to its end in a task of its own, so that a client
    /// hanging up does not cancel it halfway; a step that cannot complete now leaves the
    /// order to the recovery sweep, and the caller gets the order as it stands. When another
    /// runner holds the order (a request still in flight), nothing runs: the caller gets
    /// `request_in_progress` with how long to wait.
    async fn finish(
        &self,
        id: OrderId,
        runner: Uuid,
        start: Start,
        held: Option<Held>,
    ) -> Result<Order, OrdersError> {
        let checkout = self.checkout.clone();
        // In the caller's span, so the checkout stays in the request's trace, across the
        // processes its calls reach.
        let ran = tokio::spawn(
            async move { checkout.run_as(id, runner, start, held).await }.in_current_span(),
        )
        .await;
        if !matches!(ran, Ok(Ok(Ran::Finished(_) | Ran::Busy { .. }))) {
            // Unfinished: due again later (a retry, or its lease's end); the sweep learns when.
            self.checkout.sweep.notify();
        }
        match ran {
            Ok(Ok(Ran::Finished(order) | Ran::Unfinished(order))) => Ok(order),
            Ok(Ok(Ran::Busy { retry_after })) => Err(OrdersError::RequestInProgress {
                order_id: id,
                retry_after_secs: retry_after.as_secs().max(1),
            }),
            Ok(Err(error)) => Err(error),
            Err(error) => {
                tracing::error!(order_id = %id, error = %error, "the checkout task died");
                store::find_order(&self.db, id)
                    .await
                    .map_err(db_kit::internal)?
                    .ok_or(OrdersError::OrderNotFound { order_id: id })
            }
        }
    }

    async fn visible_row(&self, viewer: Viewer, id: OrderId) -> Result<orders::Model, OrdersError> {
        store::find_row(&self.db, id)
            .await
            .map_err(db_kit::internal)?
            .filter(|row| viewer.admin || row.customer_id == viewer.user_id.as_uuid())
            .ok_or(OrdersError::OrderNotFound { order_id: id })
    }
}

#[async_trait]
impl OrdersApi for OrdersService {
    #[tracing::instrument(skip(self, request), fields(customer_id = %request.customer_id))]
    async fn place_order(&self, request: PlaceOrder) -> Result<Placed, OrdersError> {
        let customer = request.customer_id;
        let valid = domain::validate(
            request.idempotency_key,
            OrderRequest {
                lines: request.lines,
                shipping_address: request.shipping_address,
                payment_token: request.payment_token,
            },
        )?;
        let key = valid.idempotency_key.as_str().to_owned();

        // Prices and names come from the catalog, in one call, never from the client.
        let ids = valid.lines.iter().map(|line| line.product_id).collect();
        let products = self
            .catalog
            .get_products(ids)
            .await
            .map_err(|error| match error {
                CatalogError::InvalidQuery { fields }
                | CatalogError::ValidationFailed { fields } => {
                    OrdersError::ValidationFailed { fields }
                }
                error => unavailable("catalog", error),
            })?;
        let order_id = OrderId::new();
        let priced = price(&valid, &products)?;
        let total = priced.total;
        let now = kernel::stored_precision(self.clock.now());
        // This request runs the checkout: the order is born held by its runner, so neither
        // the recovery sweep nor a replay can start a second run meanwhile.
        let runner = Uuid::now_v7();
        let lease = chrono::Duration::from_std(self.config.lease).unwrap_or(chrono::Duration::MAX);
        let order = NewOrder {
            id: order_id,
            customer_id: customer,
            idempotency_key: key.clone(),
            fingerprint: valid.fingerprint.clone(),
            total,
            shipping_address: valid.shipping_address.clone(),
            payment_token: valid.payment_token.as_str().to_owned(),
            lines: priced.lines,
            runner,
            lease_until: now + lease,
        };

        let txn = self.db.begin().await.map_err(db_kit::internal)?;
        // No one holds all the stock: a customer's unfinished checkouts are bounded, counted
        // and inserted under a per-customer lock so that concurrent requests cannot both pass.
        store::lock_customer(&txn, customer)
            .await
            .map_err(db_kit::internal)?;
        let in_flight = store::count_in_flight(&txn, customer)
            .await
            .map_err(db_kit::internal)?;
        let limit = self.config.max_in_flight_per_customer;
        if in_flight >= u64::from(limit) {
            // A repeated request for an order of this key is answered as a replay, whatever
            // the customer has in flight; the first request of a key is refused.
            let existing = store::find_by_key(&txn, customer, &key)
                .await
                .map_err(db_kit::internal)?;
            txn.rollback().await.map_err(db_kit::internal)?;
            if let Some(existing) = existing {
                return self.replay(existing, &valid.fingerprint).await;
            }
            tracing::info!(
                in_flight,
                limit,
                "order refused: too many checkouts in flight"
            );
            return Err(OrdersError::TooManyOrdersInFlight {
                limit,
                retry_after_secs: self.config.charge_timeout.as_secs().max(1),
            });
        }
        let (row, written, rows) = store::new_order_rows(order, now).map_err(db_kit::internal)?;
        let event = OrderPlaced {
            order_id,
            customer_id: customer,
            total,
            lines: valid.lines.clone(),
            placed_at: now,
        };
        // A key used before is a unique violation here (the common case pays no lookup):
        // the request is answered as a replay of that key's order.
        if let Err(error) = self.outbox.commit_rows_with(txn, rows, &event, now).await {
            if !db_kit::is_unique_violation(&error) {
                return Err(db_kit::internal(error));
            }
            let existing = store::find_by_key(&self.db, customer, &key)
                .await
                .map_err(db_kit::internal)?
                .ok_or(OrdersError::Internal)?;
            return self.replay(existing, &valid.fingerprint).await;
        }
        tracing::info!(order_id = %order_id, %total, "order placed");

        let held = Held {
            order: written,
            payment_token: row.payment_token,
        };
        let order = self
            .finish(order_id, runner, Start::Resume, Some(held))
            .await?;
        Ok(Placed {
            order,
            replayed: false,
        })
    }

    #[tracing::instrument(skip(self))]
    async fn get_order(&self, viewer: Viewer, id: OrderId) -> Result<OrderDetail, OrdersError> {
        let row = self.visible_row(viewer, id).await?;
        let order = store::with_lines(&self.db, vec![row])
            .await
            .map_err(db_kit::internal)?
            .pop()
            .ok_or(OrdersError::Internal)?;
        // One call per context, however many lines, each with a deadline. When a context
        // does not answer in time, the detail is still served without that part, and says
        // which part is missing: a payment that could not be asked for is never shown as no
        // payment.
        let ids = order.lines.iter().map(|line| line.product_id).collect();
        let deadline = self.config.detail_timeout;
        let (payment, products) = tokio::join!(
            tokio::time::timeout(deadline, self.payments.get_payment(id)),
            tokio::time::timeout(deadline, self.catalog.get_products(ids))
        );
        let mut unavailable = Vec::new();
        let payment = match payment {
            Ok(Ok(payment)) => Some(PaymentView {
                status: payment_state(payment.status),
                captured: payment.captured,
                refunded: payment.refunded,
                provider_reference: payment.provider_reference,
            }),
            Ok(Err(PaymentsError::PaymentNotFound { .. })) => None,
            Ok(Err(error)) => {
                tracing::warn!(error = %error, "order detail without its payment");
                unavailable.push(DetailSource::Payments);
                None
            }
            Err(_elapsed) => {
                tracing::warn!(
                    timeout_ms = deadline.as_millis() as u64,
                    "order detail without its payment: no answer in time"
                );
                unavailable.push(DetailSource::Payments);
                None
            }
        };
        let products = match products {
            Ok(Ok(products)) => products
                .into_iter()
                .map(|product| ProductView {
                    product_id: product.id,
                    name: product.name,
                    current_price: product.price,
                    active: product.active,
                    available: product.stock.available,
                })
                .collect(),
            Ok(Err(error)) => {
                tracing::warn!(error = %error, "order detail without its products");
                unavailable.push(DetailSource::Catalog);
                Vec::new()
            }
            Err(_elapsed) => {
                tracing::warn!(
                    timeout_ms = deadline.as_millis() as u64,
                    "order detail without its products: no answer in time"
                );
                unavailable.push(DetailSource::Catalog);
                Vec::new()
            }
        };
        for source in &unavailable {
            let source: &'static str = source.into();
            metrics::counter!(DEGRADED_DETAILS, "source" => source).increment(1);
        }
        Ok(OrderDetail {
            order,
            payment,
            products,
            unavailable,
        })
    }

    #[tracing::instrument(skip(self))]
    async fn list_orders(
        &self,
        viewer: Viewer,
        page: PageRequest,
    ) -> Result<Page<Order>, OrdersError> {
        store::list_orders(&self.db, viewer, page)
            .await
            .map_err(db_kit::internal)
    }

    #[tracing::instrument(skip(self))]
    async fn cancel_order(&self, viewer: Viewer, id: OrderId) -> Result<Order, OrdersError> {
        let row = self.visible_row(viewer, id).await?;
        match store::status_of(&row).map_err(db_kit::internal)? {
            // Moved to `cancelling` by the runner, under the order's lease.
            OrderStatus::Confirmed | OrderStatus::Cancelling | OrderStatus::Cancelled => {
                self.finish(id, Uuid::now_v7(), Start::Cancel, None).await
            }
            status => Err(OrdersError::NotCancellable { status }),
        }
    }
}

impl OrdersService {
    /// One round of the recovery sweep: runs up to `recovery_batch` unfinished checkouts
    /// that are due and held by no live runner, `recovery_concurrency` at a time. Orders that
    /// keep failing back off and finally park, so they never hide newer ones. Returns how
    /// many runs it made.
    pub(crate) async fn recover_due(&self) -> Result<usize, OrdersError> {
        let ids = store::due_for_recovery(&self.db, self.clock.now(), self.config.recovery_batch)
            .await
            .map_err(db_kit::internal)?;
        let count = ids.len();
        futures::stream::iter(ids)
            .for_each_concurrent(self.config.recovery_concurrency.max(1), |id| async move {
                match self.checkout.run(id).await {
                    Ok(Ran::Finished(order)) => {
                        tracing::info!(order_id = %id, status = ?order.status, "recovered checkout");
                    }
                    Ok(Ran::Unfinished(order)) => {
                        tracing::warn!(order_id = %id, status = ?order.status, "checkout still unfinished");
                    }
                    Ok(Ran::Busy { .. }) => {
                        tracing::debug!(order_id = %id, "checkout taken by another runner");
                    }
                    Err(error) => {
                        tracing::warn!(order_id = %id, error = %error, "checkout recovery failed");
                    }
                }
            })
            .await;
        let parked = store::count_parked(&self.db)
            .await
            .map_err(db_kit::internal)?;
        #[allow(clippy::cast_precision_loss)]
        metrics::gauge!(PARKED_NOW).set(parked as f64);
        Ok(count)
    }

    /// How many orders are unfinished and not parked: in checkout now, or waiting for the
    /// recovery sweep to run them again (an operator's view; `parked_orders` lists the rest).
    pub async fn unfinished_count(&self) -> Result<u64, OrdersError> {
        store::count_unfinished(&self.db)
            .await
            .map_err(db_kit::internal)
    }

    /// Unfinished checkouts the sweep gave up on, the longest parked first.
    #[tracing::instrument(skip(self))]
    pub async fn parked_orders(&self, page: PageRequest) -> Result<Page<ParkedOrder>, OrdersError> {
        let rows = store::parked(&self.db, page)
            .await
            .map_err(db_kit::internal)?;
        let Page { items, total, .. } = rows;
        let bookkeeping: Vec<_> = items
            .iter()
            .map(|row| (row.attempts, row.last_error.clone(), row.parked_at))
            .collect();
        let orders = store::with_lines(&self.db, items)
            .await
            .map_err(db_kit::internal)?;
        let parked = orders
            .into_iter()
            .zip(bookkeeping)
            .map(|(order, (attempts, last_error, parked_at))| ParkedOrder {
                order,
                attempts: u32::try_from(attempts).unwrap_or(0),
                last_error,
                parked_at: parked_at.unwrap_or_default(),
            })
            .collect();
        Ok(Page::new(parked, total, page))
    }

    /// Puts a parked order back in line with a fresh set of attempts and runs it now; the
    /// order as it stands afterwards.
    #[tracing::instrument(skip(self))]
    pub async fn retry_parked(&self, id: OrderId) -> Result<Order, OrdersError> {
        if !store::unpark(&self.db, id)
            .await
            .map_err(db_kit::internal)?
        {
            return match store::find_row(&self.db, id)
                .await
                .map_err(db_kit::internal)?
            {
                Some(_) => Err(OrdersError::OrderNotParked { order_id: id }),
                None => Err(OrdersError::OrderNotFound { order_id: id }),
            };
        }
        tracing::info!(order_id = %id, "parked checkout replayed");
        self.finish(id, Uuid::now_v7(), Start::Resume, None).await
    }
}
