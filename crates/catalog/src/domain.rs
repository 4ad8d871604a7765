//! The catalog's rules for what a product is, checked before anything is stored.

use catalog_api::{
    CatalogError, NewProduct, ProductPatch, Reservation, ReservationStatus, StockLine,
};
use kernel::{FieldError, FieldErrors, Money, ProductId};
use unicode_normalization::UnicodeNormalization;

/// The largest price accepted, in minor units (100 million in major units). Keeps
/// `price * quantity` summed over an order far away from `i64` overflow.
pub const MAX_PRICE_MINOR: i64 = 10_000_000_000;
/// The largest number of units one product can have in stock or change in one adjustment.
pub const MAX_STOCK: i64 = 1_000_000_000;
/// Lines per reservation; an order is not a bulk import.
pub const MAX_RESERVATION_LINES: usize = 100;
/// Units per reservation line.
pub const MAX_LINE_QUANTITY: u32 = 10_000;
/// Ids per batch lookup.
pub const MAX_BATCH: usize = 500;

/// Text as search compares it: compatibility-normalised (NFKC: the `ﬁ` ligature is `fi`,
/// full-width `Ｃ` is `C`), then Unicode case-folded (`CAFÉ` and `Café` are `café`, `STRASSE`
/// and `Straße` are `strasse`, `Σ` and `ς` are `σ`), then normalised again, because folding
/// can leave text unnormalised. Search folds both the stored text and the query with this,
/// so matching is the same on SQLite (whose `lower()` folds ASCII only) and on Postgres.
pub fn fold(text: &str) -> String {
    let normalised: String = text.nfkc().collect();
    unicase::UniCase::unicode(normalised.as_str())
        .to_folded_case()
        .nfkc()
        .collect()
}

/// A stock keeping unit: letters, digits, `-`, `_` and `.`, stored upper-case.
pub fn parse_sku(raw: &str) -> Result<String, FieldError> {
    let sku = raw.to_ascii_uppercase();
    let valid_chars = sku
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if sku.is_empty() || sku.len() > 64 || !valid_chars {
        return Err(FieldError::new(
            "sku",
            "invalid_sku",
            "must be 1 to 64 letters, digits, '-', '_' or '.'",
        ));
    }
    Ok(sku)
}

/// A product name: the shop's rule for a line of text (`kernel::text::line`), 1 to 200
/// characters, stored trimmed.
pub fn parse_name(raw: &str) -> Result<String, FieldError> {
    kernel::text::line("name", raw, 200)
}

/// Free text of up to 5000 characters (counted before trimming, as the API document's
/// `maxLength` counts), stored trimmed.
pub fn parse_description(raw: &str) -> Result<String, FieldError> {
    if raw.chars().count() > 5_000 {
        return Err(FieldError::new(
            "description",
            "too_long",
            "must be at most 5000 characters",
        ));
    }
    Ok(raw.trim().to_owned())
}

/// Categories are lower-case words joined by `-` (`home-office`), so that `Books` and
/// `books` are the same category.
pub fn parse_category(raw: &str) -> Result<String, FieldError> {
    let category = raw.to_ascii_lowercase();
    let valid = !category.is_empty()
        && category.len() <= 64
        && category
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid {
        return Err(FieldError::new(
            "category",
            "invalid_category",
            "must be 1 to 64 lower-case letters, digits or '-'",
        ));
    }
    Ok(category)
}

pub fn check_price(price: Money) -> Result<Money, FieldError> {
    if price.amount_minor() == 0 || price.amount_minor() > MAX_PRICE_MINOR {
        return Err(FieldError::new(
            "price",
            "invalid_price",
            format!("amount_minor must be between 1 and {MAX_PRICE_MINOR}"),
        ));
    }
    Ok(price)
}

/// A product ready to be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidProduct {
    pub sku: String,
    pub name: String,
    pub description: String,
    pub price: Money,
    pub category: String,
    pub initial_stock: u32,
    pub active: bool,
}

pub fn validate_new_product(product: NewProduct) -> Result<ValidProduct, Vec<FieldError>> {
    let mut errors = FieldErrors::new();
    let sku = errors.check(parse_sku(&product.sku));
    let name = errors.check(parse_name(&product.name));
    let description = errors.check(parse_description(&product.description));
    let price = errors.check(check_price(product.price));
    let category = errors.check(parse_category(&product.category));
    if i64::from(product.initial_stock) > MAX_STOCK {
        errors.push(FieldError::new(
            "initial_stock",
            "too_large",
            format!("must be at most {MAX_STOCK}"),
        ));
    }
    match (sku, name, description, price, category) {
        (Some(sku), Some(name), Some(description), Some(price), Some(category))
            if errors.is_empty() =>
        {
            Ok(ValidProduct {
                sku,
                name,
                description,
                price,
                category,
                initial_stock: product.initial_stock,
                active: product.active,
            })
        }
        _ => Err(errors.into_vec()),
    }
}

/// A patch whose present fields are valid.
pub fn validate_patch(patch: ProductPatch) -> Result<ProductPatch, Vec<FieldError>> {
    let mut errors = FieldErrors::new();
    let valid = ProductPatch {
        name: patch.name.and_then(|name| errors.check(parse_name(&name))),
        description: patch
            .description
            .and_then(|text| errors.check(parse_description(&text))),
        price: patch
            .price
            .and_then(|price| errors.check(check_price(price))),
        category: patch
            .category
            .and_then(|category| errors.check(parse_category(&category))),
        active: patch.active,
    };
    if errors.is_empty() {
        Ok(valid)
    } else {
        Err(errors.into_vec())
    }
}

/// A stock adjustment: at most `MAX_STOCK` units either way. Zero is a valid no-op, which
/// answers the current level.
pub fn check_delta(delta: i64) -> Result<i64, FieldError> {
    // `unsigned_abs`, because `i64::MIN.abs()` overflows.
    if delta.unsigned_abs() > MAX_STOCK.unsigned_abs() {
        return Err(FieldError::new(
            "delta",
            "invalid_delta",
            format!("must be between -{MAX_STOCK} and {MAX_STOCK}"),
        ));
    }
    Ok(delta)
}

/// Asking again for an order that already has a reservation: the same answer as before, or
/// a refusal if that reservation was closed (released, perhaps by a tombstone).
pub fn reserved_already(existing: Reservation) -> Result<Reservation, CatalogError> {
    match existing.status {
        ReservationStatus::Reserved | ReservationStatus::Committed => Ok(existing),
        status => Err(CatalogError::ReservationClosed {
            order_id: existing.order_id,
            status,
        }),
    }
}

/// Every line's product exists and is for sale; `found` holds (id, active) of the products
/// that exist.
pub fn check_sellable(
    lines: &[StockLine],
    found: &[(ProductId, bool)],
) -> Result<(), CatalogError> {
    for line in lines {
        match found.iter().find(|(id, _)| *id == line.product_id) {
            None => {
                return Err(CatalogError::ProductNotFound {
                    product_id: line.product_id,
                });
            }
            Some((_, false)) => {
                return Err(CatalogError::ProductInactive {
                    product_id: line.product_id,
                });
            }
            Some((_, true)) => {}
        }
    }
    Ok(())
}

/// Validates reservation lines and merges lines of the same product. The result is sorted
/// by product id: every transaction then locks stock rows in the same order, so two
/// concurrent reservations can never deadlock on each other.
pub fn normalise_lines(lines: Vec<StockLine>) -> Result<Vec<StockLine>, Vec<FieldError>> {
    let mut errors = FieldErrors::new();
    if lines.is_empty() {
        errors.push(FieldError::new(
            "lines",
            "required",
            "at least one line is needed",
        ));
    }
    if lines.len() > MAX_RESERVATION_LINES {
        errors.push(FieldError::new(
            "lines",
            "too_many",
            format!("at most {MAX_RESERVATION_LINES} lines"),
        ));
    }
    let mut merged: std::collections::BTreeMap<ProductId, u32> = Default::default();
    for (index, line) in lines.iter().enumerate() {
        if line.quantity == 0 || line.quantity > MAX_LINE_QUANTITY {
            errors.push(FieldError::new(
                format!("lines[{index}].quantity"),
                "invalid_quantity",
                format!("must be between 1 and {MAX_LINE_QUANTITY}"),
            ));
        }
        let total = merged.entry(line.product_id).or_default();
        *total = total.saturating_add(line.quantity);
    }
    if !errors.is_empty() {
        return Err(errors.into_vec());
    }
    Ok(merged
        .into_iter()
        .map(|(product_id, quantity)| StockLine {
            product_id,
            quantity,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use kernel::Currency;

    use super::*;

    fn check<T: std::fmt::Debug + PartialEq>(
        parsed: Result<T, FieldError>,
        expected: Result<T, &str>,
    ) {
        match (parsed, expected) {
            (Ok(got), Ok(want)) => assert_eq!(got, want),
            (Err(error), Err(code)) => assert_eq!(error.code, code, "{error:?}"),
            (got, want) => panic!("got {got:?}, wanted {want:?}"),
        }
    }

    #[test]
    fn skus() {
        check(parse_sku("kb-001"), Ok("KB-001".to_owned()));
        check(parse_sku(" kb-001"), Err("invalid_sku"));
        check(parse_sku("A.B_C-1"), Ok("A.B_C-1".to_owned()));
        check(parse_sku(""), Err("invalid_sku"));
        check(parse_sku("has space"), Err("invalid_sku"));
        check(parse_sku(&"X".repeat(65)), Err("invalid_sku"));
    }

    #[test]
    fn categories_are_normalised() {
        check(parse_category("Home-Office"), Ok("home-office".to_owned()));
        check(parse_category(" home"), Err("invalid_category"));
        check(parse_category("books & more"), Err("invalid_category"));
        check(parse_category(""), Err("invalid_category"));
    }

    #[test]
    fn names_and_prices() {
        check(parse_name("  Tea pot "), Ok("Tea pot".to_owned()));
        check(parse_name(" "), Err("required"));
        check(parse_name(&"n".repeat(201)), Err("too_long"));
        let eur = |amount| Money::new(amount, Currency::EUR).expect("valid");
        check(check_price(eur(1)), Ok(eur(1)));
        check(check_price(eur(0)), Err("invalid_price"));
        check(check_price(eur(MAX_PRICE_MINOR + 1)), Err("invalid_price"));
    }

    #[test]
    fn deltas() {
        check(check_delta(-3), Ok(-3));
        check(check_delta(0), Ok(0));
        check(check_delta(MAX_STOCK + 1), Err("invalid_delta"));
        check(check_delta(-MAX_STOCK), Ok(-MAX_STOCK));
        check(check_delta(i64::MIN), Err("invalid_delta"));
        check(check_delta(i64::MAX), Err("invalid_delta"));
    }

    #[test]
    fn reservation_lines_are_merged_and_sorted() {
        let a = ProductId::new();
        let b = ProductId::new();
        let lines = vec![
            StockLine {
                product_id: b,
                quantity: 1,
            },
            StockLine {
                product_id: a,
                quantity: 2,
            },
            StockLine {
                product_id: b,
                quantity: 3,
            },
        ];
        assert_eq!(
            normalise_lines(lines),
            Ok(vec![
                StockLine {
                    product_id: a,
                    quantity: 2
                },
                StockLine {
                    product_id: b,
                    quantity: 4
                },
            ])
        );
        let errors = normalise_lines(vec![StockLine {
            product_id: a,
            quantity: 0,
        }])
        .expect_err("invalid");
        assert_eq!(errors[0].field, "lines[0].quantity");
        assert_eq!(
            normalise_lines(vec![]).expect_err("empty")[0].code,
            "required"
        );
    }

    #[test]
    fn search_folds_case_and_compatibility_forms_beyond_ascii() {
        for (text, folded) in [
            ("CAFÉ", "café"),
            ("Café", "café"),
            ("Cafe\u{301}", "café"),
            ("ÄRGER ÜBER ÖL", "ärger über öl"),
            ("Straße", "strasse"),
            ("STRASSE", "strasse"),
            ("ΟΔΟΣ", "οδοσ"),
            ("οδός", "οδόσ"),
            ("ПРИВЕТ", "привет"),
            ("ﬁne Ｃoffee", "fine coffee"),
            ("İstanbul", "i\u{307}stanbul"),
            ("100% Tea_", "100% tea_"),
        ] {
            assert_eq!(fold(text), folded, "{text:?}");
        }
    }
}
