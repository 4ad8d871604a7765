//! The compatibility rules: which differences between a committed contract and the one the code
//! generates now are breaking. This comment is the reference; `docs/CONTRACTS.md` explains the
//! same rules with an example each.
//!
//! # Why the rules are symmetric
//!
//! A contract is read and written by different versions of the code at the same time, in both
//! directions. Events sit in outboxes and inboxes and are replayed long after they were written,
//! so a new consumer reads what an old publisher wrote, and an old consumer (another process
//! not yet deployed) reads what a new publisher writes. Port DTOs cross between processes of
//! different versions as requests and as answers. So a change is compatible only if *old readers
//! accept what new writers send* **and** *new readers accept what old writers send*. Widening a
//! type is as breaking as narrowing it.
//!
//! # How schemas are compared
//!
//! Old and new are compared structurally, from the contract's roots (the event type; every DTO
//! of a port), following `$ref`s on both sides. Each pair of referenced schemas is compared once
//! per contract, which ends cycles and reports a change of a shared type (such as `Money`) once,
//! at the first path that reaches it. Type names never go on the wire, so a type renamed with
//! the same shape is not a change (the file is stale, nothing breaks). A port's DTOs are
//! matched by name; a DTO that disappears while another of the same shape appears is a rename.
//!
//! Paths name the field as a reader finds it: `OrderPaymentFailed.reason`, `lines[]` for the
//! items of an array, `[0]` for a tuple element, `{}` for the values of a map,
//! `[code=unavailable]` for the variant of a tagged enum, `<…>` for a variant matched by shape.
//!
//! # Rules
//!
//! Objects (`properties`, `required`, `additionalProperties`):
//! - a property removed is **breaking** (a rename is a removal plus an addition): old readers
//!   still expect it and old writers still send it;
//! - a property added as required is **breaking**: old writers do not send it;
//! - a property added as optional is compatible, unless the old schema refused unknown
//!   properties (`additionalProperties: false`, from `#[serde(deny_unknown_fields)]`): then
//!   old readers refuse messages carrying it, **breaking**;
//! - optional → required and required → optional are both **breaking**;
//! - `additionalProperties: false` added or removed is compatible by itself (the file changes;
//!   once it is there, every new field is breaking); map value schemas are compared.
//!
//! Values:
//! - `type` changed is **breaking** (nothing under a changed type is compared further);
//! - `format` changed is **breaking** (`int32` → `int64`, `date` → `date-time`);
//! - becoming nullable or no longer nullable is **breaking** (`type: [T, "null"]`, or a
//!   `oneOf` with a `{"type": "null"}` variant, as utoipa emits for `Option<T>`);
//! - an `enum` value added or removed is **breaking**: serde enums are closed, so an old
//!   reader cannot decode a new value, and a new reader cannot decode a removed one that an old
//!   writer still sends;
//! - a numeric, length or pattern constraint changed (`minimum`, `maxLength`, `pattern`, ...)
//!   is **breaking**: one version accepts values the other refuses, whichever way it moved;
//! - array `items` are compared; a tuple's (`prefixItems`) length changed is **breaking**.
//!
//! Variants (`oneOf`/`anyOf`, from serde enums and `Option<T>`):
//! - if every variant on both sides has a property whose schema is a single constant (the
//!   `code` of `#[serde(tag = "code")]` error enums), variants are matched by that constant:
//!   a variant added or removed is **breaking**, matched variants are compared;
//! - otherwise they are matched by shape: identical variants pair up; if one variant is left
//!   on each side they are compared, else every one left over is added or removed, **breaking**.
//!
//! Not changes: `description`, `title`, `example(s)`, `default`, `deprecated`, `readOnly`,
//! `writeOnly`, `xml`, `discriminator`, `$comment`, `x-` extensions, key and list order.
//! Any other keyword the check does not understand is **breaking** when it changes, so a
//! change is never waved through unexamined.

use std::collections::{BTreeSet, HashSet};
use std::fmt;

use serde_json::{Map, Value};

/// One difference between the committed and the generated contract, at a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Where, as a reader of the message finds it (`OrderPaymentFailed.reason`).
    pub path: String,
    pub kind: ChangeKind,
}

/// What changed. [`ChangeKind::is_breaking`] says whether it needs a new version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeKind {
    PropertyRemoved,
    RequiredPropertyAdded,
    PropertyAddedToClosedObject,
    BecameRequired,
    BecameOptional,
    TypeChanged {
        old: String,
        new: String,
    },
    FormatChanged {
        old: String,
        new: String,
    },
    BecameNullable,
    NoLongerNullable,
    EnumValueAdded(String),
    EnumValueRemoved(String),
    VariantAdded(String),
    VariantRemoved(String),
    ConstraintChanged {
        keyword: String,
        old: String,
        new: String,
    },
    TupleLengthChanged {
        old: usize,
        new: usize,
    },
    KeywordChanged(String),
    TypeRemoved,
    UnresolvedReference(String),
    OptionalPropertyAdded,
    TypeAdded,
    TypeRenamed {
        old: String,
        new: String,
    },
    NowAcceptsUnknownFields,
    NowRefusesUnknownFields,
}

impl ChangeKind {
    /// Whether old and new versions can no longer read each other's messages.
    pub fn is_breaking(&self) -> bool {
        !matches!(
            self,
            Self::OptionalPropertyAdded
                | Self::TypeAdded
                | Self::TypeRenamed { .. }
                | Self::NowAcceptsUnknownFields
                | Self::NowRefusesUnknownFields
        )
    }

    /// What happened, in a few words.
    pub fn describe(&self) -> String {
        match self {
            Self::PropertyRemoved => "field removed or renamed".into(),
            Self::RequiredPropertyAdded => "new required field".into(),
            Self::PropertyAddedToClosedObject => {
                "new field in an object that refuses unknown fields".into()
            }
            Self::BecameRequired => "optional field became required".into(),
            Self::BecameOptional => "required field became optional".into(),
            Self::TypeChanged { old, new } => format!("type changed from {old} to {new}"),
            Self::FormatChanged { old, new } => format!("format changed from {old} to {new}"),
            Self::BecameNullable => "can now be null".into(),
            Self::NoLongerNullable => "can no longer be null".into(),
            Self::EnumValueAdded(value) => format!("enum value {value} added"),
            Self::EnumValueRemoved(value) => format!("enum value {value} removed"),
            Self::VariantAdded(variant) => format!("variant {variant} added"),
            Self::VariantRemoved(variant) => format!("variant {variant} removed"),
            Self::ConstraintChanged { keyword, old, new } => {
                format!("constraint `{keyword}` changed from {old} to {new}")
            }
            Self::TupleLengthChanged { old, new } => {
                format!("tuple length changed from {old} to {new}")
            }
            Self::KeywordChanged(keyword) => format!("keyword `{keyword}` changed"),
            Self::TypeRemoved => "type removed from the contract".into(),
            Self::UnresolvedReference(reference) => {
                format!("reference `{reference}` does not resolve")
            }
            Self::OptionalPropertyAdded => "optional field added".into(),
            Self::TypeAdded => "type added to the contract".into(),
            Self::TypeRenamed { old, new } => {
                format!("type `{old}` renamed to `{new}`, same shape")
            }
            Self::NowAcceptsUnknownFields => "now accepts unknown fields".into(),
            Self::NowRefusesUnknownFields => {
                "now refuses unknown fields (`additionalProperties: false`)".into()
            }
        }
    }

    /// Why it is (or is not) breaking, as one sentence.
    pub fn why(&self) -> &'static str {
        match self {
            Self::PropertyRemoved => {
                "old readers still expect it and old writers still send it (on the wire a rename is a removal plus an addition)"
            }
            Self::RequiredPropertyAdded => {
                "old writers do not send it, so new readers refuse their messages"
            }
            Self::PropertyAddedToClosedObject => {
                "old readers refuse unknown fields (`additionalProperties: false`, `#[serde(deny_unknown_fields)]`), so they refuse messages that carry it"
            }
            Self::BecameRequired => "old writers may leave it out, and new readers refuse that",
            Self::BecameOptional => "new writers may leave it out, and old readers require it",
            Self::TypeChanged { .. } => {
                "readers of each version refuse what writers of the other send"
            }
            Self::FormatChanged { .. } => {
                "the two formats accept different values, so one version's readers refuse what the other's writers send"
            }
            Self::BecameNullable => "new writers may send null, which old readers refuse",
            Self::NoLongerNullable => "old writers may send null, which new readers refuse",
            Self::EnumValueAdded(_) | Self::VariantAdded(_) => {
                "old readers cannot decode it: serde enums are closed"
            }
            Self::EnumValueRemoved(_) | Self::VariantRemoved(_) => {
                "old writers may still send it, and new readers cannot decode it"
            }
            Self::ConstraintChanged { .. } => {
                "one version accepts values the other refuses: a looser limit lets new writers send what old readers refuse, a tighter one the reverse"
            }
            Self::TupleLengthChanged { .. } => {
                "readers of each version expect exactly their own number of elements"
            }
            Self::KeywordChanged(_) => {
                "the check does not understand this keyword, so it treats any change to it as breaking"
            }
            Self::TypeRemoved => "callers and consumers of the old version still send or expect it",
            Self::UnresolvedReference(_) => {
                "the schema is incomplete, so its compatibility cannot be judged"
            }
            Self::OptionalPropertyAdded => {
                "old readers ignore it, and new readers accept messages without it"
            }
            Self::TypeAdded => "nothing sends it yet, so no reader of the old version meets it",
            Self::TypeRenamed { .. } => "type names never go on the wire",
            Self::NowAcceptsUnknownFields => "old writers send nothing it does not know",
            Self::NowRefusesUnknownFields => {
                "old writers send nothing it does not know; from now on every added field is breaking"
            }
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}", self.path, self.kind.describe())
    }
}

/// Keywords that describe a schema without constraining its values.
const ANNOTATIONS: &[&str] = &[
    "$comment",
    "$id",
    "$schema",
    "default",
    "deprecated",
    "description",
    "discriminator",
    "example",
    "examples",
    "externalDocs",
    "readOnly",
    "title",
    "writeOnly",
    "xml",
];

/// Keywords that limit the values of a type; any change to one is breaking.
const CONSTRAINTS: &[&str] = &[
    "exclusiveMaximum",
    "exclusiveMinimum",
    "maxContains",
    "maxItems",
    "maxLength",
    "maxProperties",
    "maximum",
    "minContains",
    "minItems",
    "minLength",
    "minProperties",
    "minimum",
    "multipleOf",
    "pattern",
    "uniqueItems",
];

/// Keywords the comparison handles itself.
const STRUCTURAL: &[&str] = &[
    "$defs",
    "$ref",
    "additionalProperties",
    "allOf",
    "anyOf",
    "const",
    "enum",
    "format",
    "items",
    "oneOf",
    "prefixItems",
    "properties",
    "propertyNames",
    "required",
    "type",
];

/// Deeper than any real schema: only a reference loop on one side gets here.
const MAX_DEPTH: usize = 128;

/// Every difference between two contract documents, in a stable order (roots by name, then
/// depth first in property-name order).
pub fn compare(old: &Value, new: &Value) -> Vec<Change> {
    let empty = Map::new();
    let mut comparer = Comparer {
        old_defs: defs(old).unwrap_or(&empty),
        new_defs: defs(new).unwrap_or(&empty),
        seen: HashSet::new(),
        changes: Vec::new(),
    };
    match (named_roots(old), named_roots(new)) {
        (Some(old_roots), Some(new_roots)) => comparer.roots(&old_roots, &new_roots),
        _ => {
            let path = root_name(new)
                .or_else(|| root_name(old))
                .unwrap_or_else(|| "$".to_owned());
            comparer.schema(&path, &root_schema(old), &root_schema(new), 0);
        }
    }
    comparer.changes
}

fn defs(document: &Value) -> Option<&Map<String, Value>> {
    document.get("$defs").and_then(Value::as_object)
}

/// The target name of a local reference (`#/$defs/X`, or utoipa's `#/components/schemas/X`).
fn ref_name(schema: &Value) -> Option<&str> {
    let reference = schema.get("$ref")?.as_str()?;
    reference
        .strip_prefix("#/$defs/")
        .or_else(|| reference.strip_prefix("#/components/schemas/"))
        .or(Some(reference))
}

/// A port's roots: a root `anyOf` whose every item is a reference, by target name.
fn named_roots(document: &Value) -> Option<Vec<(String, Value)>> {
    let items = document.get("anyOf")?.as_array()?;
    items
        .iter()
        .map(|item| ref_name(item).map(|name| (name.to_owned(), item.clone())))
        .collect()
}

/// The root of a single-root document (an event): the document without its definitions.
fn root_schema(document: &Value) -> Value {
    match document {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(key, _)| key.as_str() != "$defs")
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn root_name(document: &Value) -> Option<String> {
    ref_name(document).map(str::to_owned)
}

struct Comparer<'a> {
    old_defs: &'a Map<String, Value>,
    new_defs: &'a Map<String, Value>,
    /// Pairs of referenced schemas already compared (old name, new name).
    seen: HashSet<(String, String)>,
    changes: Vec<Change>,
}

impl Comparer<'_> {
    fn push(&mut self, path: &str, kind: ChangeKind) {
        self.changes.push(Change {
            path: path.to_owned(),
            kind,
        });
    }

    /// A copy that compares without reporting, to test whether two schemas are the same shape.
    fn trial(&self) -> Comparer<'_> {
        Comparer {
            old_defs: self.old_defs,
            new_defs: self.new_defs,
            seen: self.seen.clone(),
            changes: Vec::new(),
        }
    }

    /// Whether `old` and `new` have the same shape: comparing them finds nothing but renames.
    /// Pairs compared already count as matching (their changes are reported where they were).
    fn same_shape(&self, path: &str, old: &Value, new: &Value) -> bool {
        let mut trial = self.trial();
        trial.schema(path, old, new, 0);
        trial
            .changes
            .iter()
            .all(|c| matches!(c.kind, ChangeKind::TypeRenamed { .. }))
    }

    /// Port roots: matched by name; left-over pairs of the same shape are renames.
    fn roots(&mut self, old: &[(String, Value)], new: &[(String, Value)]) {
        let mut names: Vec<&String> = old.iter().chain(new).map(|(name, _)| name).collect();
        names.sort();
        names.dedup();
        let find = |roots: &[(String, Value)], name: &str| {
            roots
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, schema)| schema.clone())
        };
        let mut removed = Vec::new();
        let mut added = Vec::new();
        for name in names {
            match (find(old, name), find(new, name)) {
                (Some(o), Some(n)) => self.schema(name, &o, &n, 0),
                (Some(o), None) => removed.push((name.clone(), o)),
                (None, Some(n)) => added.push((name.clone(), n)),
                (None, None) => {}
            }
        }
        for (old_name, old_schema) in removed {
            let renamed = added
                .iter()
                .position(|(_, new_schema)| self.same_shape(&old_name, &old_schema, new_schema));
            match renamed {
                Some(index) => {
                    let (new_name, new_schema) = added.remove(index);
                    self.schema(&new_name, &old_schema, &new_schema, 0);
                }
                None => self.push(&old_name, ChangeKind::TypeRemoved),
            }
        }
        for (new_name, _) in added {
            self.push(&new_name, ChangeKind::TypeAdded);
        }
    }

    fn resolve(&mut self, path: &str, schema: &Value, old_side: bool) -> Option<Value> {
        let Some(name) = ref_name(schema) else {
            return Some(schema.clone());
        };
        let defs = if old_side {
            self.old_defs
        } else {
            self.new_defs
        };
        let Some(target) = defs.get(name) else {
            let reference = schema["$ref"].as_str().unwrap_or_default().to_owned();
            self.push(path, ChangeKind::UnresolvedReference(reference));
            return None;
        };
        // Keywords beside a `$ref` (utoipa puts a field's description there) apply too.
        let mut resolved = target.clone();
        if let (Value::Object(resolved), Value::Object(siblings)) = (&mut resolved, schema) {
            for (key, value) in siblings.iter().filter(|(key, _)| key.as_str() != "$ref") {
                resolved.insert(key.clone(), value.clone());
            }
        }
        Some(resolved)
    }

    fn schema(&mut self, path: &str, old: &Value, new: &Value, depth: usize) {
        if depth > MAX_DEPTH {
            return;
        }
        let (old_ref, new_ref) = (ref_name(old), ref_name(new));
        if old_ref.is_some() || new_ref.is_some() {
            if let (Some(o), Some(n)) = (old_ref, new_ref) {
                if !self.seen.insert((o.to_owned(), n.to_owned())) {
                    return;
                }
                if o != n {
                    let kind = ChangeKind::TypeRenamed {
                        old: o.to_owned(),
                        new: n.to_owned(),
                    };
                    self.push(path, kind);
                }
            }
            let Some(old) = self.resolve(path, old, true) else {
                return;
            };
            let Some(new) = self.resolve(path, new, false) else {
                return;
            };
            return self.schema(path, &old, &new, depth + 1);
        }

        let (old_nullable, old_inner) = split_null(old);
        let (new_nullable, new_inner) = split_null(new);
        if old_inner.is_some() || new_inner.is_some() {
            match (old_nullable, new_nullable) {
                (false, true) => self.push(path, ChangeKind::BecameNullable),
                (true, false) => self.push(path, ChangeKind::NoLongerNullable),
                _ => {}
            }
            let old = old_inner.unwrap_or_else(|| old.clone());
            let new = new_inner.unwrap_or_else(|| new.clone());
            return self.schema(path, &old, &new, depth + 1);
        }

        let (old_all, new_all) = (old.get("allOf"), new.get("allOf"));
        if old_all.is_some() || new_all.is_some() {
            let merged = (
                self.merge_all_of(old, true, depth),
                self.merge_all_of(new, false, depth),
            );
            if let (Some(old), Some(new)) = merged {
                return self.schema(path, &old, &new, depth + 1);
            }
            // Not a merge of objects: compare the parts in order.
            let empty = Vec::new();
            let old_parts = old_all.and_then(Value::as_array).unwrap_or(&empty);
            let new_parts = new_all.and_then(Value::as_array).unwrap_or(&empty);
            if old_parts.len() != new_parts.len() {
                self.push(path, ChangeKind::KeywordChanged("allOf".into()));
                return;
            }
            for (o, n) in old_parts.iter().zip(new_parts) {
                self.schema(path, o, n, depth + 1);
            }
            return;
        }

        let old_variants = variants(old);
        let new_variants = variants(new);
        if old_variants.is_some() || new_variants.is_some() {
            let old_variants = old_variants.unwrap_or_else(|| vec![old.clone()]);
            let new_variants = new_variants.unwrap_or_else(|| vec![new.clone()]);
            return self.variants(path, &old_variants, &new_variants, depth);
        }

        self.keywords(path, old, new, depth);
    }

    /// An `allOf` of objects (serde's `flatten`) as one object; `None` if a part is not one.
    fn merge_all_of(&mut self, schema: &Value, old_side: bool, depth: usize) -> Option<Value> {
        let mut merged = Map::new();
        merged.insert("type".into(), Value::String("object".into()));
        let mut properties = Map::new();
        let mut required = BTreeSet::new();
        let mut closed = false;
        let mut parts = vec![schema.clone()];
        let mut steps = 0;
        while let Some(part) = parts.pop() {
            steps += 1;
            if steps > MAX_DEPTH || depth > MAX_DEPTH {
                return None;
            }
            let part = if ref_name(&part).is_some() {
                let defs = if old_side {
                    self.old_defs
                } else {
                    self.new_defs
                };
                defs.get(ref_name(&part)?)?.clone()
            } else {
                part
            };
            let Value::Object(map) = &part else {
                return None;
            };
            if let Some(all) = map.get("allOf").and_then(Value::as_array) {
                parts.extend(all.iter().cloned());
            }
            match map.get("type").and_then(Value::as_str) {
                Some("object") | None => {}
                Some(_) => return None,
            }
            if map.contains_key("oneOf") || map.contains_key("anyOf") {
                return None;
            }
            if let Some(props) = map.get("properties").and_then(Value::as_object) {
                properties.extend(props.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            if let Some(names) = map.get("required").and_then(Value::as_array) {
                required.extend(names.iter().filter_map(Value::as_str).map(str::to_owned));
            }
            closed |= map.get("additionalProperties") == Some(&Value::Bool(false));
        }
        merged.insert("properties".into(), Value::Object(properties));
        merged.insert(
            "required".into(),
            Value::Array(required.into_iter().map(Value::String).collect()),
        );
        if closed {
            merged.insert("additionalProperties".into(), Value::Bool(false));
        }
        Some(Value::Object(merged))
    }

    fn variants(&mut self, path: &str, old: &[Value], new: &[Value], depth: usize) {
        let resolved = |defs: &Map<String, Value>, variants: &[Value]| -> Vec<Value> {
            variants
                .iter()
                .map(|v| match ref_name(v).and_then(|name| defs.get(name)) {
                    Some(target) => target.clone(),
                    None => v.clone(),
                })
                .collect()
        };
        let old_resolved = resolved(self.old_defs, old);
        let new_resolved = resolved(self.new_defs, new);
        if let Some(tag) = discriminator(&old_resolved, &new_resolved) {
            let keyed = |variants: &[Value], resolved: &[Value]| -> Vec<(String, Value)> {
                variants
                    .iter()
                    .zip(resolved)
                    .filter_map(|(v, r)| Some((tag_value(r, &tag)?, v.clone())))
                    .collect()
            };
            let old_keyed = keyed(old, &old_resolved);
            let new_keyed = keyed(new, &new_resolved);
            let mut keys: Vec<&String> =
                old_keyed.iter().chain(&new_keyed).map(|(k, _)| k).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                let find = |keyed: &[(String, Value)]| {
                    keyed.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
                };
                let label = format!("`{tag}={key}`");
                match (find(&old_keyed), find(&new_keyed)) {
                    (Some(o), Some(n)) => {
                        self.schema(&format!("{path}[{tag}={key}]"), &o, &n, depth + 1);
                    }
                    (Some(_), None) => self.push(path, ChangeKind::VariantRemoved(label)),
                    (None, Some(_)) => self.push(path, ChangeKind::VariantAdded(label)),
                    (None, None) => {}
                }
            }
            return;
        }

        // No discriminating constant: pair identical variants, then what is left.
        let mut new_left: Vec<usize> = (0..new.len()).collect();
        let mut old_left = Vec::new();
        for (i, o) in old.iter().enumerate() {
            let same = new_left
                .iter()
                .position(|&j| self.same_shape(path, o, &new[j]));
            match same {
                Some(at) => {
                    let j = new_left.remove(at);
                    self.schema(path, o, &new[j], depth + 1);
                }
                None => old_left.push(i),
            }
        }
        if let ([i], [j]) = (old_left.as_slice(), new_left.as_slice()) {
            let (i, j) = (*i, *j);
            let path = if old.len() > 1 || new.len() > 1 {
                format!("{path}<{}>", variant_key(&old[i], &old_resolved[i]))
            } else {
                path.to_owned()
            };
            self.schema(&path, &old[i], &new[j], depth + 1);
            return;
        }
        for i in old_left {
            let label = describe_variant(&old[i], &old_resolved[i]);
            self.push(path, ChangeKind::VariantRemoved(label));
        }
        for j in new_left {
            let label = describe_variant(&new[j], &new_resolved[j]);
            self.push(path, ChangeKind::VariantAdded(label));
        }
    }

    /// Plain schemas: type, format, values, object and array structure, constraints.
    fn keywords(&mut self, path: &str, old: &Value, new: &Value, depth: usize) {
        if types(old) != types(new) {
            let kind = ChangeKind::TypeChanged {
                old: describe_type(old),
                new: describe_type(new),
            };
            self.push(path, kind);
            return;
        }
        if old.get("format") != new.get("format") {
            let kind = ChangeKind::FormatChanged {
                old: describe_keyword(old.get("format")),
                new: describe_keyword(new.get("format")),
            };
            self.push(path, kind);
        }
        self.values(path, old, new);
        self.object(path, old, new, depth);
        self.array(path, old, new, depth);
        for keyword in CONSTRAINTS {
            let (o, n) = (old.get(*keyword), new.get(*keyword));
            if o != n {
                let kind = ChangeKind::ConstraintChanged {
                    keyword: (*keyword).to_owned(),
                    old: describe_keyword(o),
                    new: describe_keyword(n),
                };
                self.push(path, kind);
            }
        }
        let keys: BTreeSet<&String> = object_keys(old).chain(object_keys(new)).collect();
        for key in keys {
            let known = ANNOTATIONS.contains(&key.as_str())
                || CONSTRAINTS.contains(&key.as_str())
                || STRUCTURAL.contains(&key.as_str())
                || key.starts_with("x-");
            if !known && old.get(key) != new.get(key) {
                self.push(path, ChangeKind::KeywordChanged(key.clone()));
            }
        }
    }

    /// `enum` and `const`: the closed set of values.
    fn values(&mut self, path: &str, old: &Value, new: &Value) {
        match (allowed_values(old), allowed_values(new)) {
            (Some(old_values), Some(new_values)) => {
                for value in &old_values {
                    if !new_values.contains(value) {
                        self.push(path, ChangeKind::EnumValueRemoved(literal(value)));
                    }
                }
                for value in &new_values {
                    if !old_values.contains(value) {
                        self.push(path, ChangeKind::EnumValueAdded(literal(value)));
                    }
                }
            }
            (None, None) => {}
            (o, n) => {
                let show = |values: Option<Vec<Value>>| match values {
                    Some(values) => {
                        let shown: Vec<String> = values.iter().map(literal).collect();
                        shown.join(", ")
                    }
                    None => "any value".to_owned(),
                };
                let kind = ChangeKind::ConstraintChanged {
                    keyword: "enum".into(),
                    old: show(o),
                    new: show(n),
                };
                self.push(path, kind);
            }
        }
    }

    fn object(&mut self, path: &str, old: &Value, new: &Value, depth: usize) {
        let empty = Map::new();
        let old_properties = old
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let new_properties = new
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let old_required = required(old);
        let new_required = required(new);
        let old_closed = old.get("additionalProperties") == Some(&Value::Bool(false));
        let new_closed = new.get("additionalProperties") == Some(&Value::Bool(false));
        let names: BTreeSet<&String> = old_properties.keys().chain(new_properties.keys()).collect();
        for name in names {
            let field = format!("{path}.{name}");
            let is_old_required = old_required.contains(name.as_str());
            let is_new_required = new_required.contains(name.as_str());
            match (old_properties.get(name), new_properties.get(name)) {
                (Some(_), None) => self.push(&field, ChangeKind::PropertyRemoved),
                (None, Some(_)) if is_new_required => {
                    self.push(&field, ChangeKind::RequiredPropertyAdded);
                }
                (None, Some(_)) if old_closed => {
                    self.push(&field, ChangeKind::PropertyAddedToClosedObject);
                }
                (None, Some(_)) => self.push(&field, ChangeKind::OptionalPropertyAdded),
                (Some(o), Some(n)) => {
                    match (is_old_required, is_new_required) {
                        (false, true) => self.push(&field, ChangeKind::BecameRequired),
                        (true, false) => self.push(&field, ChangeKind::BecameOptional),
                        _ => {}
                    }
                    self.schema(&field, o, n, depth + 1);
                }
                (None, None) => {}
            }
        }
        match (old_closed, new_closed) {
            (true, false) => self.push(path, ChangeKind::NowAcceptsUnknownFields),
            (false, true) => self.push(path, ChangeKind::NowRefusesUnknownFields),
            _ => {}
        }
        // Map values (`HashMap<K, V>`): `additionalProperties` holds the schema of `V`.
        let (old_extra, new_extra) = (
            old.get("additionalProperties"),
            new.get("additionalProperties"),
        );
        match (
            old_extra.filter(|v| v.is_object()),
            new_extra.filter(|v| v.is_object()),
        ) {
            (Some(o), Some(n)) => self.schema(&format!("{path}{{}}"), o, n, depth + 1),
            (None, None) => {}
            _ => {
                let kind = ChangeKind::ConstraintChanged {
                    keyword: "additionalProperties".into(),
                    old: describe_keyword(old_extra),
                    new: describe_keyword(new_extra),
                };
                self.push(path, kind);
            }
        }
        match (old.get("propertyNames"), new.get("propertyNames")) {
            (Some(o), Some(n)) => self.schema(&format!("{path}{{key}}"), o, n, depth + 1),
            (None, None) => {}
            (o, n) => {
                let kind = ChangeKind::ConstraintChanged {
                    keyword: "propertyNames".into(),
                    old: describe_keyword(o),
                    new: describe_keyword(n),
                };
                self.push(path, kind);
            }
        }
    }

    fn array(&mut self, path: &str, old: &Value, new: &Value, depth: usize) {
        let empty = Vec::new();
        let old_prefix = old
            .get("prefixItems")
            .and_then(Value::as_array)
            .unwrap_or(&empty);
        let new_prefix = new
            .get("prefixItems")
            .and_then(Value::as_array)
            .unwrap_or(&empty);
        if old_prefix.len() != new_prefix.len() {
            let kind = ChangeKind::TupleLengthChanged {
                old: old_prefix.len(),
                new: new_prefix.len(),
            };
            self.push(path, kind);
        } else {
            for (i, (o, n)) in old_prefix.iter().zip(new_prefix).enumerate() {
                self.schema(&format!("{path}[{i}]"), o, n, depth + 1);
            }
        }
        match (old.get("items"), new.get("items")) {
            (Some(o), Some(n)) if o.is_object() && n.is_object() => {
                self.schema(&format!("{path}[]"), o, n, depth + 1);
            }
            (o, n) if o != n => {
                let kind = ChangeKind::ConstraintChanged {
                    keyword: "items".into(),
                    old: describe_keyword(o),
                    new: describe_keyword(n),
                };
                self.push(path, kind);
            }
            _ => {}
        }
    }
}

/// Splits `Option<T>`'s forms into "nullable" and the schema of `T`: `type: [T, "null"]` and a
/// `oneOf`/`anyOf` with a `{"type": "null"}` variant. `(false, None)` if it is neither.
fn split_null(schema: &Value) -> (bool, Option<Value>) {
    let Value::Object(map) = schema else {
        return (false, None);
    };
    if let Some(Value::Array(types)) = map.get("type") {
        let null = Value::String("null".into());
        if types.contains(&null) && types.len() > 1 {
            let rest: Vec<Value> = types.iter().filter(|t| **t != null).cloned().collect();
            let mut inner = map.clone();
            let rest = match <[Value; 1]>::try_from(rest) {
                Ok([single]) => single,
                Err(rest) => Value::Array(rest),
            };
            inner.insert("type".into(), rest);
            return (true, Some(Value::Object(inner)));
        }
    }
    for keyword in ["oneOf", "anyOf"] {
        let Some(Value::Array(items)) = map.get(keyword) else {
            continue;
        };
        let is_null = |item: &Value| {
            item.get("type") == Some(&Value::String("null".into()))
                && object_keys(item).all(|k| k == "type" || ANNOTATIONS.contains(&k.as_str()))
        };
        if items.len() < 2 || !items.iter().any(is_null) {
            continue;
        }
        let rest: Vec<Value> = items.iter().filter(|i| !is_null(i)).cloned().collect();
        let mut inner = map.clone();
        inner.remove(keyword);
        let inner = match <[Value; 1]>::try_from(rest) {
            Ok([single]) => {
                // The outer keywords (a description) go with the single remaining variant.
                let mut single = single;
                if let Value::Object(single) = &mut single {
                    for (key, value) in inner {
                        single.entry(key).or_insert(value);
                    }
                }
                single
            }
            Err(rest) => {
                inner.insert(keyword.to_owned(), Value::Array(rest));
                Value::Object(inner)
            }
        };
        return (true, Some(inner));
    }
    (false, None)
}

fn variants(schema: &Value) -> Option<Vec<Value>> {
    ["oneOf", "anyOf"]
        .iter()
        .find_map(|keyword| schema.get(*keyword)?.as_array().cloned())
}

/// The single constant a variant's property stands for (`{"enum": ["x"]}` or `{"const": "x"}`).
fn constant(schema: &Value) -> Option<&Value> {
    if let Some(value) = schema.get("const") {
        return Some(value);
    }
    match schema.get("enum")?.as_array()?.as_slice() {
        [value] => Some(value),
        _ => None,
    }
}

fn tag_value(variant: &Value, tag: &str) -> Option<String> {
    let value = constant(variant.get("properties")?.get(tag)?)?;
    Some(match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

/// A property that is a distinct constant in every variant on both sides, if there is one.
fn discriminator(old: &[Value], new: &[Value]) -> Option<String> {
    let first = old.first().or(new.first())?;
    let candidates: BTreeSet<&String> = first.get("properties")?.as_object()?.keys().collect();
    candidates.into_iter().find_map(|tag| {
        let distinct = |variants: &[Value]| {
            let values: Option<Vec<String>> = variants.iter().map(|v| tag_value(v, tag)).collect();
            values.is_some_and(|values| {
                let unique: BTreeSet<&String> = values.iter().collect();
                unique.len() == values.len()
            })
        };
        (distinct(old) && distinct(new)).then(|| tag.clone())
    })
}

/// A variant as a path segment: its type name, its properties, its values or its type.
fn variant_key(variant: &Value, resolved: &Value) -> String {
    if let Some(name) = ref_name(variant) {
        return name.to_owned();
    }
    if let Some(properties) = resolved.get("properties").and_then(Value::as_object) {
        let names: Vec<&str> = properties.keys().map(String::as_str).collect();
        return names.join(",");
    }
    if let Some(values) = allowed_values(resolved) {
        let shown: Vec<String> = values
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .collect();
        return shown.join("|");
    }
    types(resolved).map_or_else(
        || "any".to_owned(),
        |t| t.into_iter().collect::<Vec<_>>().join("|"),
    )
}

/// A variant in a message: its type name, its properties, its values or its type.
fn describe_variant(variant: &Value, resolved: &Value) -> String {
    if let Some(name) = ref_name(variant) {
        return format!("`{name}`");
    }
    if let Some(properties) = resolved.get("properties").and_then(Value::as_object) {
        let names: Vec<String> = properties.keys().map(|k| format!("`{k}`")).collect();
        return format!("object with {}", names.join(", "));
    }
    if let Some(values) = allowed_values(resolved) {
        let shown: Vec<String> = values.iter().map(literal).collect();
        return shown.join(" | ");
    }
    describe_type(resolved)
}

/// The set of types, `None` for "any".
fn types(schema: &Value) -> Option<BTreeSet<String>> {
    match schema.get("type")? {
        Value::String(t) => Some(BTreeSet::from([t.clone()])),
        Value::Array(ts) => Some(
            ts.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
        ),
        _ => None,
    }
}

fn describe_type(schema: &Value) -> String {
    let mut text = match types(schema) {
        None => "any value".to_owned(),
        Some(types) => {
            let shown: Vec<String> = types.iter().map(|t| format!("`{t}`")).collect();
            shown.join(" or ")
        }
    };
    if let Some(format) = schema.get("format").and_then(Value::as_str) {
        text.push_str(&format!(" ({format})"));
    }
    text
}

fn describe_keyword(value: Option<&Value>) -> String {
    match value {
        None => "none".to_owned(),
        Some(value) => literal(value),
    }
}

fn literal(value: &Value) -> String {
    format!(
        "`{}`",
        value
            .as_str()
            .map_or_else(|| value.to_string(), str::to_owned)
    )
}

fn allowed_values(schema: &Value) -> Option<Vec<Value>> {
    if let Some(value) = schema.get("const") {
        return Some(vec![value.clone()]);
    }
    schema.get("enum")?.as_array().cloned()
}

fn required(schema: &Value) -> BTreeSet<&str> {
    schema
        .get("required")
        .and_then(Value::as_array)
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn object_keys(schema: &Value) -> impl Iterator<Item = &String> {
    schema.as_object().into_iter().flat_map(Map::keys)
}
