//! The compatibility rules, one test each: an old and a new schema of a type `T` (with the
//! schemas it refers to), and what the comparison says, with the reason it gives.

use contracts::compat;
use serde_json::{Value, json};

/// An event-like document whose root is `T`, with `defs` as its definitions.
fn document(defs: Value) -> Value {
    json!({"$ref": "#/$defs/T", "$defs": defs})
}

/// A port-like document whose roots are `roots`.
fn port(roots: &[&str], defs: Value) -> Value {
    let roots: Vec<Value> = roots
        .iter()
        .map(|r| json!({"$ref": format!("#/$defs/{r}")}))
        .collect();
    json!({"anyOf": roots, "$defs": defs})
}

fn render(changes: &[compat::Change]) -> String {
    if changes.is_empty() {
        return "no change\n".to_owned();
    }
    changes
        .iter()
        .map(|change| {
            let class = if change.kind.is_breaking() {
                "breaking"
            } else {
                "compatible"
            };
            format!("{class} {change}\n    {}\n", change.kind.why())
        })
        .collect()
}

/// Compares two documents whose root type `T` has the schema `old` and `new`.
fn check(old: Value, new: Value) -> String {
    check_defs(json!({"T": old}), json!({"T": new}))
}

/// Compares two documents rooted at `T` with these definitions.
fn check_defs(old: Value, new: Value) -> String {
    render(&compat::compare(&document(old), &document(new)))
}

fn object(properties: Value, required: &[&str]) -> Value {
    json!({"type": "object", "properties": properties, "required": required})
}

#[test]
fn identical_schemas_have_no_change() {
    let t = object(json!({"a": {"type": "string"}}), &["a"]);
    insta::assert_snapshot!(check(t.clone(), t), @"no change");
}

#[test]
fn property_removed_is_breaking() {
    let old = object(
        json!({"a": {"type": "string"}, "b": {"type": "string"}}),
        &["a", "b"],
    );
    let new = object(json!({"a": {"type": "string"}}), &["a"]);
    insta::assert_snapshot!(check(old, new), @r"
    breaking `T.b`: field removed or renamed
        old readers still expect it and old writers still send it (on the wire a rename is a removal plus an addition)
    ");
}

#[test]
fn optional_property_removed_is_breaking_too() {
    let old = object(json!({"a": {"type": ["string", "null"]}}), &[]);
    let new = object(json!({}), &[]);
    insta::assert_snapshot!(check(old, new), @r"
    breaking `T.a`: field removed or renamed
        old readers still expect it and old writers still send it (on the wire a rename is a removal plus an addition)
    ");
}

#[test]
fn required_property_added_is_breaking() {
    let old = object(json!({"a": {"type": "string"}}), &["a"]);
    let new = object(
        json!({"a": {"type": "string"}, "b": {"type": "integer"}}),
        &["a", "b"],
    );
    insta::assert_snapshot!(check(old, new), @r"
    breaking `T.b`: new required field
        old writers do not send it, so new readers refuse their messages
    ");
}

#[test]
fn optional_property_added_is_compatible() {
    let old = object(json!({"a": {"type": "string"}}), &["a"]);
    let new = object(
        json!({"a": {"type": "string"}, "b": {"type": ["string", "null"]}}),
        &["a"],
    );
    insta::assert_snapshot!(check(old, new), @r"
    compatible `T.b`: optional field added
        old readers ignore it, and new readers accept messages without it
    ");
}

#[test]
fn optional_property_added_where_old_readers_refuse_unknown_fields_is_breaking() {
    let mut old = object(json!({"a": {"type": "string"}}), &["a"]);
    old["additionalProperties"] = json!(false);
    let mut new = object(
        json!({"a": {"type": "string"}, "b": {"type": ["string", "null"]}}),
        &["a"],
    );
    new["additionalProperties"] = json!(false);
    insta::assert_snapshot!(check(old, new), @r"
    breaking `T.b`: new field in an object that refuses unknown fields
        old readers refuse unknown fields (`additionalProperties: false`, `#[serde(deny_unknown_fields)]`), so they refuse messages that carry it
    ");
}

#[test]
fn refusing_or_accepting_unknown_fields_is_compatible_by_itself() {
    let open = object(json!({"a": {"type": "string"}}), &["a"]);
    let mut closed = open.clone();
    closed["additionalProperties"] = json!(false);
    insta::assert_snapshot!(check(open.clone(), closed.clone()), @r"
    compatible `T`: now refuses unknown fields (`additionalProperties: false`)
        old writers send nothing it does not know; from now on every added field is breaking
    ");
    insta::assert_snapshot!(check(closed, open), @r"
    compatible `T`: now accepts unknown fields
        old writers send nothing it does not know
    ");
}

#[test]
fn optional_and_required_swapping_is_breaking_both_ways() {
    let old = object(
        json!({"a": {"type": "string"}, "b": {"type": "string"}}),
        &["a"],
    );
    let new = object(
        json!({"a": {"type": "string"}, "b": {"type": "string"}}),
        &["b"],
    );
    insta::assert_snapshot!(check(old, new), @r"
    breaking `T.a`: required field became optional
        new writers may leave it out, and old readers require it
    breaking `T.b`: optional field became required
        old writers may leave it out, and new readers refuse that
    ");
}

#[test]
fn type_changed_is_breaking_and_ends_the_comparison_there() {
    let old = object(
        json!({"reason": object(json!({"code": {"type": "string"}}), &["code"])}),
        &["reason"],
    );
    let new = object(json!({"reason": {"type": "string"}}), &["reason"]);
    insta::assert_snapshot!(check(old, new), @r"
    breaking `T.reason`: type changed from `object` to `string`
        readers of each version refuse what writers of the other send
    ");
}

#[test]
fn format_changed_is_breaking() {
    let old = object(json!({"n": {"type": "integer", "format": "int32"}}), &["n"]);
    let new = object(json!({"n": {"type": "integer", "format": "int64"}}), &["n"]);
    insta::assert_snapshot!(check(old, new), @r"
    breaking `T.n`: format changed from `int32` to `int64`
        the two formats accept different values, so one version's readers refuse what the other's writers send
    ");
}

#[test]
fn nullability_changed_is_breaking_in_both_of_utoipas_forms() {
    // `Option<String>` is `type: [string, null]`; `Option<Money>` a `oneOf` with a null variant.
    let old = json!({
        "T": object(json!({"note": {"type": "string"}, "total": {"$ref": "#/$defs/Money"}}), &["note", "total"]),
        "Money": object(json!({"amount": {"type": "integer"}}), &["amount"]),
    });
    let new = json!({
        "T": object(json!({
            "note": {"type": ["string", "null"]},
            "total": {"oneOf": [{"$ref": "#/$defs/Money"}, {"type": "null"}]},
        }), &["note", "total"]),
        "Money": object(json!({"amount": {"type": "integer"}}), &["amount"]),
    });
    insta::assert_snapshot!(check_defs(old.clone(), new.clone()), @r"
    breaking `T.note`: can now be null
        new writers may send null, which old readers refuse
    breaking `T.total`: can now be null
        new writers may send null, which old readers refuse
    ");
    insta::assert_snapshot!(check_defs(new, old), @r"
    breaking `T.note`: can no longer be null
        old writers may send null, which new readers refuse
    breaking `T.total`: can no longer be null
        old writers may send null, which new readers refuse
    ");
}

#[test]
fn enum_values_added_or_removed_are_breaking() {
    let old = json!({"type": "string", "enum": ["pending", "captured", "voided"]});
    let new = json!({"type": "string", "enum": ["pending", "captured", "refunded"]});
    insta::assert_snapshot!(check(old, new), @r"
    breaking `T`: enum value `voided` removed
        old writers may still send it, and new readers cannot decode it
    breaking `T`: enum value `refunded` added
        old readers cannot decode it: serde enums are closed
    ");
}

#[test]
fn enum_order_is_not_a_change() {
    let old = json!({"type": "string", "enum": ["a", "b"]});
    let new = json!({"type": "string", "enum": ["b", "a"]});
    insta::assert_snapshot!(check(old, new), @"no change");
}

#[test]
fn restricting_a_string_to_values_is_breaking() {
    let old = json!({"type": "string"});
    let new = json!({"type": "string", "enum": ["declined", "expired"]});
    insta::assert_snapshot!(check(old, new), @r"
    breaking `T`: constraint `enum` changed from any value to `declined`, `expired`
        one version accepts values the other refuses: a looser limit lets new writers send what old readers refuse, a tighter one the reverse
    ");
}

/// A variant of a `#[serde(tag = "code")]` enum as utoipa writes it.
fn tagged(code: &str, fields: Value) -> Value {
    let mut properties = fields.as_object().cloned().unwrap_or_default();
    properties.insert("code".into(), json!({"type": "string", "enum": [code]}));
    let mut required: Vec<String> = properties.keys().cloned().collect();
    required.sort();
    json!({"type": "object", "properties": properties, "required": required})
}

#[test]
fn tagged_variants_are_matched_by_their_code() {
    let old = json!({"oneOf": [
        tagged("not_found", json!({"order_id": {"type": "string"}})),
        tagged("unavailable", json!({"reason": {"type": "string"}})),
        tagged("internal", json!({})),
    ]});
    // Reordered, one variant gone, one new, one with a new required field.
    let new = json!({"oneOf": [
        tagged("internal", json!({})),
        tagged("out_of_stock", json!({"product_ids": {"type": "array", "items": {"type": "string"}}})),
        tagged("unavailable", json!({"reason": {"type": "string"}, "retry_after": {"type": "integer"}})),
    ]});
    insta::assert_snapshot!(check(old, new), @r"
    breaking `T`: variant `code=not_found` removed
        old writers may still send it, and new readers cannot decode it
    breaking `T`: variant `code=out_of_stock` added
        old readers cannot decode it: serde enums are closed
    breaking `T[code=unavailable].retry_after`: new required field
        old writers do not send it, so new readers refuse their messages
    ");
}

#[test]
fn untagged_variants_are_matched_by_shape() {
    let a = object(json!({"A": {"type": "string"}}), &["A"]);
    let b = object(json!({"B": {"type": "integer"}}), &["B"]);
    let b_wider = object(
        json!({"B": {"type": "integer"}, "note": {"type": ["string", "null"]}}),
        &["B"],
    );
    let c = object(json!({"C": {"type": "boolean"}}), &["C"]);
    // Reordering is nothing; one changed variant on each side is compared.
    insta::assert_snapshot!(
        check(json!({"oneOf": [a.clone(), b.clone()]}), json!({"oneOf": [b_wider, a.clone()]})),
        @r"
    compatible `T<B>.note`: optional field added
        old readers ignore it, and new readers accept messages without it
    "
    );
    // More than one left over: each is added or removed.
    insta::assert_snapshot!(
        check(json!({"oneOf": [a.clone(), b]}), json!({"oneOf": [a, c.clone(), c]})),
        @r"
    breaking `T`: variant object with `B` removed
        old writers may still send it, and new readers cannot decode it
    breaking `T`: variant object with `C` added
        old readers cannot decode it: serde enums are closed
    breaking `T`: variant object with `C` added
        old readers cannot decode it: serde enums are closed
    "
    );
}

#[test]
fn array_items_are_compared() {
    let old = json!({
        "T": object(json!({"lines": {"type": "array", "items": {"$ref": "#/$defs/Line"}}}), &["lines"]),
        "Line": object(json!({"quantity": {"type": "integer", "format": "int32", "minimum": 0}}), &["quantity"]),
    });
    let new = json!({
        "T": object(json!({"lines": {"type": "array", "items": {"$ref": "#/$defs/Line"}}}), &["lines"]),
        "Line": object(json!({"quantity": {"type": "integer", "format": "int64", "minimum": 0}}), &["quantity"]),
    });
    insta::assert_snapshot!(check_defs(old, new), @r"
    breaking `T.lines[].quantity`: format changed from `int32` to `int64`
        the two formats accept different values, so one version's readers refuse what the other's writers send
    ");
}

#[test]
fn map_values_and_tuple_elements_are_compared() {
    let old = object(
        json!({
            "counts": {"type": "object", "additionalProperties": {"type": "integer"}, "propertyNames": {"type": "string"}},
            "pair": {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}], "items": false},
        }),
        &["counts", "pair"],
    );
    let new = object(
        json!({
            "counts": {"type": "object", "additionalProperties": {"type": "string"}, "propertyNames": {"type": "string"}},
            "pair": {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "boolean"}], "items": false},
        }),
        &["counts", "pair"],
    );
    insta::assert_snapshot!(check(old, new), @r"
    breaking `T.counts{}`: type changed from `integer` to `string`
        readers of each version refuse what writers of the other send
    breaking `T.pair[1]`: type changed from `string` to `boolean`
        readers of each version refuse what writers of the other send
    ");
}

#[test]
fn descriptions_examples_and_defaults_are_not_changes() {
    let old = json!({"type": "object", "description": "old", "example": {"a": "x"},
        "properties": {"a": {"type": "string", "description": "old", "default": "x", "deprecated": false}},
        "required": ["a"]});
    let new = json!({"type": "object", "description": "new", "title": "T",
        "properties": {"a": {"type": "string", "examples": ["y"], "x-note": "new"}},
        "required": ["a"]});
    insta::assert_snapshot!(check(old, new), @"no change");
}

#[test]
fn constraint_changes_are_breaking_either_way() {
    let old = object(
        json!({
            "amount": {"type": "integer", "minimum": 0},
            "code": {"type": "string", "maxLength": 3, "pattern": "^[A-Z]{3}$"},
        }),
        &["amount", "code"],
    );
    let new = object(
        json!({
            "amount": {"type": "integer", "minimum": 1},
            "code": {"type": "string", "maxLength": 8},
        }),
        &["amount", "code"],
    );
    insta::assert_snapshot!(check(old, new), @r"
    breaking `T.amount`: constraint `minimum` changed from `0` to `1`
        one version accepts values the other refuses: a looser limit lets new writers send what old readers refuse, a tighter one the reverse
    breaking `T.code`: constraint `maxLength` changed from `3` to `8`
        one version accepts values the other refuses: a looser limit lets new writers send what old readers refuse, a tighter one the reverse
    breaking `T.code`: constraint `pattern` changed from `^[A-Z]{3}$` to none
        one version accepts values the other refuses: a looser limit lets new writers send what old readers refuse, a tighter one the reverse
    ");
}

#[test]
fn a_renamed_type_of_the_same_shape_is_not_a_change_on_the_wire() {
    let money = object(
        json!({"amount_minor": {"type": "integer"}}),
        &["amount_minor"],
    );
    let old = json!({
        "T": object(json!({"total": {"$ref": "#/$defs/Money"}}), &["total"]),
        "Money": money.clone(),
    });
    let new = json!({
        "T": object(json!({"total": {"$ref": "#/$defs/Amount"}}), &["total"]),
        "Amount": money,
    });
    insta::assert_snapshot!(check_defs(old, new), @r"
    compatible `T.total`: type `Money` renamed to `Amount`, same shape
        type names never go on the wire
    ");
}

#[test]
fn a_shared_type_is_reported_once_at_the_first_path_that_reaches_it() {
    let old = json!({
        "T": object(json!({"price": {"$ref": "#/$defs/Money"}, "total": {"$ref": "#/$defs/Money"}}), &["price", "total"]),
        "Money": object(json!({"amount_minor": {"type": "integer"}}), &["amount_minor"]),
    });
    let new = json!({
        "T": object(json!({"price": {"$ref": "#/$defs/Money"}, "total": {"$ref": "#/$defs/Money"}}), &["price", "total"]),
        "Money": object(json!({"amount_minor": {"type": "integer"}, "currency": {"type": "string"}}), &["amount_minor", "currency"]),
    });
    insta::assert_snapshot!(check_defs(old, new), @r"
    breaking `T.price.currency`: new required field
        old writers do not send it, so new readers refuse their messages
    ");
}

#[test]
fn recursive_types_terminate() {
    let node = |extra: Value| {
        let mut properties = json!({"next": {"oneOf": [{"$ref": "#/$defs/T"}, {"type": "null"}]}});
        if let (Some(p), Some(extra)) = (properties.as_object_mut(), extra.as_object()) {
            p.extend(extra.clone());
        }
        json!({"type": "object", "properties": properties})
    };
    let old = node(json!({}));
    let new = node(json!({"label": {"type": "string"}}));
    insta::assert_snapshot!(check(old, new), @r"
    compatible `T.label`: optional field added
        old readers ignore it, and new readers accept messages without it
    ");
}

#[test]
fn an_unknown_keyword_that_changes_is_breaking() {
    let old = json!({"type": "string", "contentEncoding": "base64"});
    let new = json!({"type": "string", "contentEncoding": "base32"});
    insta::assert_snapshot!(check(old, new), @r"
    breaking `T`: keyword `contentEncoding` changed
        the check does not understand this keyword, so it treats any change to it as breaking
    ");
}

#[test]
fn a_reference_that_does_not_resolve_is_breaking() {
    let old = json!({"T": object(json!({"a": {"$ref": "#/$defs/Gone"}}), &["a"])});
    let new = json!({"T": object(json!({"a": {"$ref": "#/$defs/Gone"}}), &["a"])});
    insta::assert_snapshot!(check_defs(old, new), @r"
    breaking `T.a`: reference `#/$defs/Gone` does not resolve
        the schema is incomplete, so its compatibility cannot be judged
    ");
}

#[test]
fn port_types_are_matched_by_name_and_renames_found_by_shape() {
    let user = object(json!({"id": {"type": "string"}}), &["id"]);
    let role = json!({"type": "string", "enum": ["customer", "admin"]});
    let token = object(
        json!({"access_token": {"type": "string"}}),
        &["access_token"],
    );
    let old = port(
        &["Role", "User", "Token"],
        json!({"Role": role, "User": user.clone(), "Token": token}),
    );
    let new = port(
        &["Account", "Login"],
        json!({"Account": user, "Login": object(json!({"email": {"type": "string"}}), &["email"])}),
    );
    insta::assert_snapshot!(render(&compat::compare(&old, &new)), @r"
    breaking `Role`: type removed from the contract
        callers and consumers of the old version still send or expect it
    breaking `Token`: type removed from the contract
        callers and consumers of the old version still send or expect it
    compatible `Account`: type `User` renamed to `Account`, same shape
        type names never go on the wire
    compatible `Login`: type added to the contract
        nothing sends it yet, so no reader of the old version meets it
    ");
}
