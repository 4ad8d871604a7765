//! orders' rules for a valid order request, and the order status machine. No I/O.

use kernel::{FieldError, FieldErrors};
use orders_api::{LineRequest, OrderRequest, OrderStatus, OrdersError, ShippingAddress};
use serde::Serialize;
use sha2::{Digest, Sha256};

pub const MAX_LINES: usize = 50;
pub const MAX_QUANTITY: u32 = 1_000;
pub const MAX_KEY_LEN: usize = 200;

/// A request that passed every check, ready to be priced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidRequest {
    pub idempotency_key: String,
    /// One line per product, in the order first mentioned.
    pub lines: Vec<LineRequest>,
    pub shipping_address: ShippingAddress,
    pub payment_token: String,
    /// Identifies the request's content: the same key with another body is refused.
    pub fingerprint: String,
}

pub fn check_idempotency_key(key: &str) -> Result<String, OrdersError> {
    let key = key.trim();
    if key.is_empty() {
        return Err(OrdersError::MissingIdempotencyKey);
    }
    if key.len() > MAX_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(OrdersError::ValidationFailed {
            fields: vec![FieldError::new(
                "Idempotency-Key",
                "invalid_idempotency_key",
                format!("must be 1 to {MAX_KEY_LEN} printable ASCII characters without spaces"),
            )],
        });
    }
    Ok(key.to_owned())
}

fn text(field: &str, value: &str, max: usize, required: bool) -> Result<String, FieldError> {
    let value = value.trim();
    if required && value.is_empty() {
        return Err(FieldError::new(field, "required", "must not be empty"));
    }
    if value.chars().count() > max {
        return Err(FieldError::new(
            field,
            "too_long",
            format!("must be at most {max} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(FieldError::new(
            field,
            "invalid_characters",
            "must not contain control characters",
        ));
    }
    Ok(value.to_owned())
}

fn address(address: &ShippingAddress, errors: &mut FieldErrors) -> Option<ShippingAddress> {
    let field = |name: &str| format!("shipping_address.{name}");
    let name = errors.check(text(&field("name"), &address.name, 100, true));
    let line1 = errors.check(text(&field("line1"), &address.line1, 200, true));
    let line2 = match address
        .line2
        .as_deref()
        .map(|line| text(&field("line2"), line, 200, false))
    {
        Some(result) => errors
            .check(result)
            .map(|line| Some(line).filter(|line| !line.is_empty())),
        None => Some(None),
    };
    let city = errors.check(text(&field("city"), &address.city, 100, true));
    let postal_code = errors.check(text(&field("postal_code"), &address.postal_code, 20, true));
    let country = address.country.trim().to_ascii_uppercase();
    let country = if country.len() == 2 && country.bytes().all(|b| b.is_ascii_uppercase()) {
        Some(country)
    } else {
        errors.push(FieldError::new(
            field("country"),
            "invalid_country",
            "must be an ISO 3166-1 alpha-2 code such as GB",
        ));
        None
    };
    Some(ShippingAddress {
        name: name?,
        line1: line1?,
        line2: line2?,
        city: city?,
        postal_code: postal_code?,
        country: country?,
    })
}

/// Checks a request; every problem is reported at once.
pub fn validate(idempotency_key: &str, request: OrderRequest) -> Result<ValidRequest, OrdersError> {
    let idempotency_key = check_idempotency_key(idempotency_key)?;
    let mut errors = FieldErrors::new();
    if request.lines.is_empty() {
        errors.push(FieldError::new(
            "lines",
            "required",
            "an order needs at least one line",
        ));
    }
    if request.lines.len() > MAX_LINES {
        errors.push(FieldError::new(
            "lines",
            "too_many",
            format!("at most {MAX_LINES} lines"),
        ));
    }
    let mut lines: Vec<LineRequest> = Vec::new();
    for (index, line) in request.lines.iter().enumerate() {
        if line.quantity == 0 || line.quantity > MAX_QUANTITY {
            errors.push(FieldError::new(
                format!("lines[{index}].quantity"),
                "invalid_quantity",
                format!("must be between 1 and {MAX_QUANTITY}"),
            ));
            continue;
        }
        match lines
            .iter_mut()
            .find(|merged| merged.product_id == line.product_id)
        {
            Some(merged) => {
                merged.quantity = merged
                    .quantity
                    .saturating_add(line.quantity)
                    .min(MAX_QUANTITY)
            }
            None => lines.push(*line),
        }
    }
    let shipping_address = address(&request.shipping_address, &mut errors);
    let payment_token = errors.check(text("payment_token", &request.payment_token, 64, true));
    let (Some(shipping_address), Some(payment_token)) = (shipping_address, payment_token) else {
        return Err(OrdersError::ValidationFailed {
            fields: errors.into_vec(),
        });
    };
    if !errors.is_empty() {
        return Err(OrdersError::ValidationFailed {
            fields: errors.into_vec(),
        });
    }
    let fingerprint = fingerprint(&request);
    Ok(ValidRequest {
        idempotency_key,
        lines,
        shipping_address,
        payment_token,
        fingerprint,
    })
}

/// SHA-256 of the request as sent (field order is fixed by the type), hex-encoded.
pub fn fingerprint(request: &OrderRequest) -> String {
    #[derive(Serialize)]
    struct Canonical<'a> {
        lines: &'a [LineRequest],
        shipping_address: &'a ShippingAddress,
        payment_token: &'a str,
    }
    let canonical = serde_json::to_vec(&Canonical {
        lines: &request.lines,
        shipping_address: &request.shipping_address,
        payment_token: &request.payment_token,
    })
    .unwrap_or_default();
    hex::encode(Sha256::digest(canonical))
}

pub fn status_to_str(status: OrderStatus) -> &'static str {
    match status {
        OrderStatus::Pending => "pending",
        OrderStatus::StockReserved => "stock_reserved",
        OrderStatus::PaymentCaptured => "payment_captured",
        OrderStatus::Confirmed => "confirmed",
        OrderStatus::Rejected => "rejected",
        OrderStatus::PaymentFailed => "payment_failed",
        OrderStatus::Cancelling => "cancelling",
        OrderStatus::Cancelled => "cancelled",
    }
}

pub fn status_from_str(status: &str) -> Option<OrderStatus> {
    Some(match status {
        "pending" => OrderStatus::Pending,
        "stock_reserved" => OrderStatus::StockReserved,
        "payment_captured" => OrderStatus::PaymentCaptured,
        "confirmed" => OrderStatus::Confirmed,
        "rejected" => OrderStatus::Rejected,
        "payment_failed" => OrderStatus::PaymentFailed,
        "cancelling" => OrderStatus::Cancelling,
        "cancelled" => OrderStatus::Cancelled,
        _ => return None,
    })
}

/// The status machine: every transition the checkout and cancellation may make.
pub fn can_move(from: OrderStatus, to: OrderStatus) -> bool {
    use OrderStatus::*;
    matches!(
        (from, to),
        (Pending, StockReserved)
            | (Pending, Rejected)
            | (StockReserved, PaymentCaptured)
            | (StockReserved, PaymentFailed)
            | (PaymentCaptured, Confirmed)
            | (Confirmed, Cancelling)
            | (Cancelling, Cancelled)
    )
}

#[cfg(test)]
mod tests {
    use kernel::ProductId;
    use proptest::prelude::*;

    use super::*;

    fn address() -> ShippingAddress {
        ShippingAddress {
            name: "Ada".into(),
            line1: "1 Main St".into(),
            line2: None,
            city: "London".into(),
            postal_code: "N1".into(),
            country: "gb".into(),
        }
    }

    fn request(lines: Vec<LineRequest>) -> OrderRequest {
        OrderRequest {
            lines,
            shipping_address: address(),
            payment_token: "tok_visa".into(),
        }
    }

    #[test]
    fn keys_are_required_and_bounded() {
        assert_eq!(
            check_idempotency_key("  "),
            Err(OrdersError::MissingIdempotencyKey)
        );
        assert_eq!(check_idempotency_key(" abc-1 "), Ok("abc-1".into()));
        assert!(matches!(
            check_idempotency_key(&"k".repeat(201)),
            Err(OrdersError::ValidationFailed { .. })
        ));
        assert!(matches!(
            check_idempotency_key("has space"),
            Err(OrdersError::ValidationFailed { .. })
        ));
    }

    #[test]
    fn lines_of_one_product_are_merged_and_quantities_checked() {
        let (a, b) = (ProductId::new(), ProductId::new());
        let valid = validate(
            "k",
            request(vec![
                LineRequest {
                    product_id: a,
                    quantity: 1,
                },
                LineRequest {
                    product_id: b,
                    quantity: 2,
                },
                LineRequest {
                    product_id: a,
                    quantity: 3,
                },
            ]),
        )
        .expect("valid");
        assert_eq!(
            valid.lines,
            [
                LineRequest {
                    product_id: a,
                    quantity: 4
                },
                LineRequest {
                    product_id: b,
                    quantity: 2
                }
            ]
        );
        assert_eq!(valid.shipping_address.country, "GB");

        let Err(OrdersError::ValidationFailed { fields }) = validate(
            "k",
            request(vec![LineRequest {
                product_id: a,
                quantity: 0,
            }]),
        ) else {
            panic!("expected a validation error");
        };
        assert_eq!(fields[0].field, "lines[0].quantity");
    }

    #[test]
    fn every_field_error_is_reported() {
        let mut bad = request(vec![]);
        bad.shipping_address.city = String::new();
        bad.shipping_address.country = "Britain".into();
        bad.payment_token = String::new();
        let Err(OrdersError::ValidationFailed { fields }) = validate("k", bad) else {
            panic!("expected a validation error");
        };
        let names: Vec<_> = fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(
            names,
            [
                "lines",
                "shipping_address.city",
                "shipping_address.country",
                "payment_token"
            ]
        );
    }

    #[test]
    fn the_fingerprint_follows_the_content() {
        let a = ProductId::new();
        let one = request(vec![LineRequest {
            product_id: a,
            quantity: 1,
        }]);
        let mut two = one.clone();
        assert_eq!(fingerprint(&one), fingerprint(&two));
        two.payment_token = "tok_declined".into();
        assert_ne!(fingerprint(&one), fingerprint(&two));
    }

    const ALL: [OrderStatus; 8] = [
        OrderStatus::Pending,
        OrderStatus::StockReserved,
        OrderStatus::PaymentCaptured,
        OrderStatus::Confirmed,
        OrderStatus::Rejected,
        OrderStatus::PaymentFailed,
        OrderStatus::Cancelling,
        OrderStatus::Cancelled,
    ];

    proptest! {
        /// Any walk through the status machine ends in a terminal state, never leaves one,
        /// and never comes back to a state it left.
        #[test]
        fn the_status_machine_only_moves_forward(choices in proptest::collection::vec(0usize..8, 0..20)) {
            let mut status = OrderStatus::Pending;
            let mut seen = vec![status];
            for choice in choices {
                let next = ALL[choice];
                if can_move(status, next) {
                    prop_assert!(!status.is_terminal() || status == OrderStatus::Confirmed);
                    prop_assert!(!seen.contains(&next), "{:?} came back", next);
                    seen.push(next);
                    status = next;
                }
            }
            for status in ALL {
                prop_assert_eq!(status_from_str(status_to_str(status)), Some(status));
            }
        }
    }
}
