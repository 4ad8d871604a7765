//! `OrdersService`: orders' application service, the implementation of `OrdersApi`. It
//! orchestrates: `domain` decides, `store` holds the SQL, `checkout` runs the saga.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use catalog_api::{CatalogApi, CatalogError, Product};
use kernel::{Clock, FieldError, Money, OrderId, Page, PageRequest, ProductId};
use messaging::Outbox;
use orders_api::{
    Order, OrderDetail, OrderPlaced, OrderRequest, OrderStatus, OrdersApi, OrdersError,
    PaymentState, PaymentView, PlaceOrder, Placed, ProductView, Viewer,
};
use payments_api::{PaymentStatus, PaymentsApi, PaymentsError};
use sea_orm::{DatabaseConnection, TransactionTrait};

use crate::checkout::Checkout;
use crate::domain::{self, ValidRequest};
use crate::store::{self, NewLine, NewOrder, orders};

pub struct OrdersService {
    pub(crate) db: DatabaseConnection,
    pub(crate) catalog: Arc<dyn CatalogApi>,
    pub(crate) payments: Arc<dyn PaymentsApi>,
    pub(crate) outbox: Outbox,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) checkout: Arc<Checkout>,
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
        let order = self.finish(id).await?;
        Ok(Placed {
            order,
            replayed: true,
        })
    }

    /// Runs checkout to its end in a task of its own, so that a client hanging up does not
    /// cancel it halfway; a step that cannot complete now leaves the order to the recovery
    /// sweep, and the caller gets the order as it stands.
    async fn finish(&self, id: OrderId) -> Result<Order, OrdersError> {
        let checkout = self.checkout.clone();
        let ran = tokio::spawn(async move { checkout.run(id).await }).await;
        if let Err(error) = &ran {
            tracing::error!(order_id = %id, error = %error, "the checkout task died");
        }
        match ran {
            Ok(Ok(order)) => Ok(order),
            Ok(Err(OrdersError::CheckoutIncomplete { .. })) | Err(_) => {
                store::find_order(&self.db, id)
                    .await
                    .map_err(db_kit::internal)?
                    .ok_or(OrdersError::OrderNotFound { order_id: id })
            }
            Ok(Err(error)) => Err(error),
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
        if let Some(existing) = store::find_by_key(&self.db, customer, &key)
            .await
            .map_err(db_kit::internal)?
        {
            return self.replay(existing, &valid.fingerprint).await;
        }

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
        let now = self.clock.now();
        let order = NewOrder {
            id: order_id,
            customer_id: customer,
            idempotency_key: key.clone(),
            fingerprint: valid.fingerprint.clone(),
            total,
            shipping_address: valid.shipping_address.clone(),
            payment_token: valid.payment_token.as_str().to_owned(),
            lines: priced.lines,
        };

        let txn = self.db.begin().await.map_err(db_kit::internal)?;
        if let Err(error) = store::insert_order(&txn, order, now).await {
            txn.rollback().await.map_err(db_kit::internal)?;
            if !db_kit::is_unique_violation(&error) {
                return Err(db_kit::internal(error));
            }
            // A concurrent request with the same key won the race: answer with its order.
            let existing = store::find_by_key(&self.db, customer, &key)
                .await
                .map_err(db_kit::internal)?
                .ok_or(OrdersError::Internal)?;
            return self.replay(existing, &valid.fingerprint).await;
        }
        let event = OrderPlaced {
            order_id,
            customer_id: customer,
            total,
            lines: valid.lines.clone(),
            placed_at: now,
        };
        self.outbox
            .commit_with(txn, &event, now)
            .await
            .map_err(db_kit::internal)?;
        tracing::info!(order_id = %order_id, %total, "order placed");

        let order = self.finish(order_id).await?;
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
        // One call per context, however many lines. When a context does not answer, the
        // detail is still served, without that context's part.
        let ids = order.lines.iter().map(|line| line.product_id).collect();
        let (payment, products) = tokio::join!(
            self.payments.get_payment(id),
            self.catalog.get_products(ids)
        );
        let payment = match payment {
            Ok(payment) => Some(PaymentView {
                status: payment_state(payment.status),
                captured: payment.captured,
                refunded: payment.refunded,
                provider_reference: payment.provider_reference,
            }),
            Err(PaymentsError::PaymentNotFound { .. }) => None,
            Err(error) => {
                tracing::warn!(error = %error, "order detail without its payment");
                None
            }
        };
        let products = match products {
            Ok(products) => products
                .into_iter()
                .map(|product| ProductView {
                    product_id: product.id,
                    name: product.name,
                    current_price: product.price,
                    active: product.active,
                    available: product.stock.available,
                })
                .collect(),
            Err(error) => {
                tracing::warn!(error = %error, "order detail without its products");
                Vec::new()
            }
        };
        Ok(OrderDetail {
            order,
            payment,
            products,
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
            OrderStatus::Confirmed => {
                let moved = store::move_status(
                    &self.db,
                    id,
                    OrderStatus::Confirmed,
                    OrderStatus::Cancelling,
                    None,
                    self.clock.now(),
                )
                .await
                .map_err(db_kit::internal)?;
                if moved {
                    tracing::info!(order_id = %id, "order cancellation started");
                }
            }
            OrderStatus::Cancelling | OrderStatus::Cancelled => {}
            status => return Err(OrdersError::NotCancellable { status }),
        }
        self.finish(id).await
    }
}

impl OrdersService {
    /// Runs every unfinished checkout last touched before `stuck_for` ago. Returns how many
    /// it looked at.
    pub(crate) async fn recover(&self, stuck_for: chrono::Duration) -> Result<usize, OrdersError> {
        let before = self.clock.now() - stuck_for;
        let ids = store::unfinished(&self.db, before, 500)
            .await
            .map_err(db_kit::internal)?;
        for id in &ids {
            match self.checkout.run(*id).await {
                Ok(order) => {
                    tracing::info!(order_id = %id, status = ?order.status, "recovered checkout")
                }
                Err(error) => {
                    tracing::warn!(order_id = %id, error = %error, "checkout still incomplete")
                }
            }
        }
        Ok(ids.len())
    }
}
