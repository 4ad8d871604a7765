//! orders' rules for a valid order request, and the order status machine. No I/O.

use kernel::{FieldError, FieldErrors, IdempotencyKey};
use orders_api::{LineRequest, OrderRequest, OrderStatus, OrdersError, ShippingAddress};
use payments_api::PaymentToken;
use serde::Serialize;
use sha2::{Digest, Sha256};

pub const MAX_LINES: usize = 50;
pub const MAX_QUANTITY: u32 = 1_000;

/// A request that passed every check, ready to be priced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidRequest {
    pub idempotency_key: IdempotencyKey,
    /// One line per product, in the order first mentioned.
    pub lines: Vec<LineRequest>,
    pub shipping_address: ShippingAddress,
    /// Parsed by payments' own rule before anything is reserved, so a token payments would
    /// refuse is a 422 here rather than a failed order later.
    pub payment_token: PaymentToken,
    /// Identifies the request's content: the same key with another body is refused.
    pub fingerprint: String,
}

/// A shipping address: every line by the shop's rule for a line of text
/// (`kernel::text::line`), the country as an ISO 3166-1 alpha-2 code, stored upper-case.
fn address(address: &ShippingAddress, errors: &mut FieldErrors) -> Option<ShippingAddress> {
    let field = |name: &str| format!("shipping_address.{name}");
    let name = errors.check(kernel::text::line(&field("name"), &address.name, 100));
    let line1 = errors.check(kernel::text::line(&field("line1"), &address.line1, 200));
    let line2 = match address.line2.as_deref() {
        Some(line) => errors.check(kernel::text::optional_line(&field("line2"), line, 200)),
        None => Some(None),
    };
    let city = errors.check(kernel::text::line(&field("city"), &address.city, 100));
    let postal_code = errors.check(kernel::text::line(
        &field("postal_code"),
        &address.postal_code,
        20,
    ));
    let country =
        if address.country.len() == 2 && address.country.bytes().all(|b| b.is_ascii_alphabetic()) {
            Some(address.country.to_ascii_uppercase())
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
pub fn validate(
    idempotency_key: IdempotencyKey,
    request: OrderRequest,
) -> Result<ValidRequest, OrdersError> {
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
                merged.quantity = merged.quantity.saturating_add(line.quantity);
                if merged.quantity > MAX_QUANTITY {
                    errors.push(FieldError::new(
                        format!("lines[{index}].quantity"),
                        "invalid_quantity",
                        format!(
                            "the lines of one product must add up to at most {MAX_QUANTITY} units"
                        ),
                    ));
                }
            }
            None => lines.push(*line),
        }
    }
    let shipping_address = address(&request.shipping_address, &mut errors);
    let payment_token = errors.check(PaymentToken::parse(&request.payment_token).map_err(
        |error| FieldError::new("payment_token", "invalid_payment_token", error.to_string()),
    ));
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

    fn key() -> IdempotencyKey {
        IdempotencyKey::parse("k").expect("a valid key")
    }

    #[test]
    fn payment_tokens_follow_payments_rule_before_anything_is_reserved() {
        let mut spaced = request(vec![LineRequest {
            product_id: ProductId::new(),
            quantity: 1,
        }]);
        spaced.payment_token = "tok visa".into();
        let Err(OrdersError::ValidationFailed { fields }) = validate(key(), spaced) else {
            panic!("expected a validation error");
        };
        assert_eq!(fields[0].field, "payment_token");
        assert_eq!(fields[0].code, "invalid_payment_token");
    }

    #[test]
    fn lines_of_one_product_add_up_to_the_limit_at_most() {
        let a = ProductId::new();
        let line = |quantity| LineRequest {
            product_id: a,
            quantity,
        };
        assert!(validate(key(), request(vec![line(600), line(400)])).is_ok());
        let Err(OrdersError::ValidationFailed { fields }) =
            validate(key(), request(vec![line(600), line(401)]))
        else {
            panic!("expected a validation error");
        };
        assert_eq!(fields[0].field, "lines[1].quantity");
    }

    #[test]
    fn lines_of_one_product_are_merged_and_quantities_checked() {
        let (a, b) = (ProductId::new(), ProductId::new());
        let valid = validate(
            key(),
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
            key(),
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
        let Err(OrdersError::ValidationFailed { fields }) = validate(key(), bad) else {
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
        }
    }
}
