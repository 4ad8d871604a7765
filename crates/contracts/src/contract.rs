//! Contracts and how they are made from Rust types: [`event`] and [`port`] collect the utoipa
//! schemas of a type and of everything it refers to, and [`Registry::contracts`] turns them into
//! standalone JSON Schema documents (draft 2020-12), one per contract.

use std::collections::BTreeMap;

use kernel::IntegrationEvent;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::json;

/// The JSON Schema dialect of every contract file.
pub const DIALECT: &str = "https://json-schema.org/draft/2020-12/schema";

/// Where contract files live, relative to the repository root.
pub const DIR: &str = "contracts";

const GENERATED: &str =
    "Generated from the Rust types by `cargo run -p contracts -- write`; do not edit.";

/// What a contract covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// One integration event, named by its `IntegrationEvent::NAME`.
    Event,
    /// The DTOs and the error enum of one context's `-api` crate.
    Port,
}

/// A generated contract: its name, its document, and the Rust types it covers.
#[derive(Debug, Clone)]
pub struct Contract {
    /// `auth.user_registered.v1`, `auth.port.v1`.
    pub name: String,
    pub kind: Kind,
    /// The bounded context that publishes it.
    pub context: String,
    /// The JSON Schema document.
    pub document: Value,
    /// The Rust type names registered for it: the event type, or the port's DTOs.
    pub roots: Vec<String>,
    /// Every type name whose schema is in the document: the roots (as Rust names) and every
    /// `$defs` key (for the completeness check).
    pub types: Vec<String>,
}

impl Contract {
    /// The file, relative to the repository root, `/`-separated.
    pub fn file(&self) -> String {
        file_of(self.kind, &self.name)
    }

    /// The file's exact content.
    pub fn text(&self) -> String {
        json::to_text(&self.document)
    }

    /// The name of the next version (`orders.order_placed.v2` after `.v1`).
    pub fn next_version(&self) -> String {
        next_version(&self.name)
    }
}

pub(crate) fn file_of(kind: Kind, name: &str) -> String {
    let folder = match kind {
        Kind::Event => "events",
        Kind::Port => "ports",
    };
    format!("{DIR}/{folder}/{name}.json")
}

pub(crate) fn next_version(name: &str) -> String {
    match name.rsplit_once(".v") {
        Some((stem, version)) => match version.parse::<u32>() {
            Ok(version) => format!("{stem}.v{}", version + 1),
            Err(_) => format!("{name}.v2"),
        },
        None => format!("{name}.v2"),
    }
}

/// The schemas of one Rust type: its own and every one it refers to, as utoipa names them.
#[derive(Debug, Clone)]
struct Collected {
    /// The Rust type's name without its path or generic arguments (`Page` for `Page<Order>`).
    type_name: String,
    /// The name utoipa gives its schema (the `$defs` key).
    schema_name: String,
    schemas: Vec<(String, Value)>,
}

fn collect<T: ToSchema>() -> Collected {
    let full = std::any::type_name::<T>();
    let without_generics = full.split_once('<').map_or(full, |(head, _)| head);
    let type_name = without_generics
        .rsplit_once("::")
        .map_or(without_generics, |(_, name)| name);
    let schema_name = T::name().into_owned();
    let mut dependencies = Vec::new();
    T::schemas(&mut dependencies);
    let mut schemas = vec![(schema_name.clone(), to_value(T::schema()))];
    schemas.extend(
        dependencies
            .into_iter()
            .map(|(name, schema)| (name, to_value(schema))),
    );
    Collected {
        type_name: type_name.to_owned(),
        schema_name,
        schemas,
    }
}

fn to_value(schema: utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>) -> Value {
    // utoipa's schema types are plain data; serializing them cannot fail.
    serde_json::to_value(schema).unwrap_or(Value::Null)
}

/// A published integration event; see [`event`].
#[derive(Debug, Clone)]
pub struct Event {
    name: &'static str,
    root: Collected,
    extra: Vec<Collected>,
}

/// The contract of the integration event `E`, named `E::NAME`.
pub fn event<E: IntegrationEvent + ToSchema>() -> Event {
    Event {
        name: E::NAME,
        root: collect::<E>(),
        extra: Vec::new(),
    }
}

impl Event {
    /// Adds the schema of `T`, for a type the event refers to that utoipa's own collection
    /// misses (it leaves out the argument `T` of a generic type such as `Page<T>`). Generation
    /// names such a type when it happens.
    #[must_use]
    pub fn with<T: ToSchema>(mut self) -> Self {
        self.extra.push(collect::<T>());
        self
    }
}

/// A context's port contract; see [`port`].
#[derive(Debug, Clone)]
pub struct Port {
    context: &'static str,
    version: u32,
    dtos: Vec<Collected>,
    extra: Vec<Collected>,
}

/// The port contract `<context>.port.v<version>`; add its types with [`Port::dto`].
pub fn port(context: &'static str, version: u32) -> Port {
    Port {
        context,
        version,
        dtos: Vec::new(),
        extra: Vec::new(),
    }
}

impl Port {
    /// Publishes `T` (a DTO or the error enum) as one of the port's types.
    #[must_use]
    pub fn dto<T: ToSchema>(mut self) -> Self {
        self.dtos.push(collect::<T>());
        self
    }

    /// Adds the schema of `T` without publishing it as a type of its own; see [`Event::with`].
    #[must_use]
    pub fn with<T: ToSchema>(mut self) -> Self {
        self.extra.push(collect::<T>());
        self
    }

    fn name(&self) -> String {
        format!("{}.port.v{}", self.context, self.version)
    }
}

/// What a pending entry stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PendingKind {
    /// A type implementing `IntegrationEvent`, to register with [`event`].
    Event,
    /// A serialized type of an `-api` crate, to add to its port with [`Port::dto`].
    Dto,
    /// The context's error enum, to add to its port with [`Port::dto`].
    Error,
}

/// A type the completeness check accepts although no contract has it yet, because it does not
/// derive `ToSchema` yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    /// The context whose `-api` crate defines it.
    pub context: &'static str,
    /// The Rust type's name.
    pub name: &'static str,
    pub kind: PendingKind,
}

impl Pending {
    pub const fn event(context: &'static str, name: &'static str) -> Self {
        Self {
            context,
            name,
            kind: PendingKind::Event,
        }
    }

    pub const fn dto(context: &'static str, name: &'static str) -> Self {
        Self {
            context,
            name,
            kind: PendingKind::Dto,
        }
    }

    pub const fn error(context: &'static str, name: &'static str) -> Self {
        Self {
            context,
            name,
            kind: PendingKind::Error,
        }
    }
}

/// Everything published: events, ports, and the types still waiting for `ToSchema`.
#[derive(Debug, Clone)]
pub struct Registry {
    pub events: Vec<Event>,
    pub ports: Vec<Port>,
    pub pending: &'static [Pending],
}

/// The registry cannot produce valid contracts. A mistake in the code, not in a contract.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the registry is invalid: {}", .0.join("; "))]
pub struct RegistryError(pub Vec<String>);

impl Registry {
    /// Every contract, sorted by file.
    pub fn contracts(&self) -> Result<Vec<Contract>, RegistryError> {
        let mut problems = Vec::new();
        let mut contracts = Vec::new();
        for event in &self.events {
            if let Some(problem) = invalid_event_name(event.name) {
                problems.push(problem);
                continue;
            }
            let context = event.name.split('.').next().unwrap_or_default();
            let mut defs = Defs::new(event.name);
            defs.add(&event.root, true);
            for collected in &event.extra {
                defs.add(collected, false);
            }
            let description = format!(
                "Integration event `{}`, published by the {context} context. {GENERATED}",
                event.name
            );
            let mut document = header(event.name, &description);
            document.insert(
                "$ref".into(),
                Value::String(format!("#/$defs/{}", event.root.schema_name)),
            );
            contracts.push(defs.finish(document, Kind::Event, context, &mut problems));
        }
        for port in &self.ports {
            let name = port.name();
            if !is_identifier(port.context) || port.version == 0 {
                problems.push(format!(
                    "port `{name}`: the context must be lower-case snake_case and the version start at 1"
                ));
                continue;
            }
            let mut defs = Defs::new(&name);
            for collected in &port.dtos {
                defs.add(collected, true);
            }
            for collected in &port.extra {
                defs.add(collected, false);
            }
            let description = format!(
                "Port `{name}`: the DTOs and the error enum of the {} context's `-api` crate. {GENERATED}",
                port.context
            );
            let mut document = header(&name, &description);
            let mut roots: Vec<&str> = port.dtos.iter().map(|d| d.schema_name.as_str()).collect();
            roots.sort_unstable();
            roots.dedup();
            let roots = roots
                .into_iter()
                .map(|root| {
                    let mut reference = Map::new();
                    reference.insert("$ref".into(), Value::String(format!("#/$defs/{root}")));
                    Value::Object(reference)
                })
                .collect();
            document.insert("anyOf".into(), Value::Array(roots));
            contracts.push(defs.finish(document, Kind::Port, port.context, &mut problems));
        }
        contracts.sort_by_key(Contract::file);
        for pair in contracts.windows(2) {
            if pair[0].name == pair[1].name {
                problems.push(format!("`{}` is registered twice", pair[0].name));
            }
        }
        if problems.is_empty() {
            Ok(contracts)
        } else {
            Err(RegistryError(problems))
        }
    }
}

fn header(title: &str, description: &str) -> Map<String, Value> {
    let mut document = Map::new();
    document.insert("$schema".into(), Value::String(DIALECT.into()));
    document.insert("title".into(), Value::String(title.into()));
    document.insert("description".into(), Value::String(description.into()));
    document
}

/// `<context>.<event>.v<N>`, all lower-case snake_case, so that it makes a safe file name.
fn invalid_event_name(name: &str) -> Option<String> {
    let parts: Vec<&str> = name.split('.').collect();
    let valid = match parts.as_slice() {
        [context, event, version] => {
            is_identifier(context)
                && is_identifier(event)
                && version
                    .strip_prefix('v')
                    .and_then(|n| n.parse::<u32>().ok())
                    .is_some_and(|n| n > 0 && !version.starts_with("v0"))
        }
        _ => false,
    };
    (!valid).then(|| {
        format!("event name `{name}` is not `<context>.<event>.v<N>` in lower-case snake_case")
    })
}

fn is_identifier(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// The `$defs` of one contract while it is assembled.
struct Defs {
    contract: String,
    schemas: BTreeMap<String, Value>,
    roots: Vec<String>,
    types: Vec<String>,
    problems: Vec<String>,
}

impl Defs {
    fn new(contract: &str) -> Self {
        Self {
            contract: contract.to_owned(),
            schemas: BTreeMap::new(),
            roots: Vec::new(),
            types: Vec::new(),
            problems: Vec::new(),
        }
    }

    /// Adds a type's schemas; a root is a type registered as (one of) the contract's own.
    fn add(&mut self, collected: &Collected, root: bool) {
        if root {
            self.roots.push(collected.type_name.clone());
        }
        self.types.push(collected.type_name.clone());
        for (name, schema) in &collected.schemas {
            let schema = normalize(schema.clone());
            match self.schemas.get(name) {
                Some(existing) if *existing != schema => self.problems.push(format!(
                    "`{}`: two different schemas are both named `{name}` (a generic type such as `Page<T>` with two arguments, or two types of the same name); give one a `#[schema(as = ..)]` name",
                    self.contract
                )),
                Some(_) => {}
                None => {
                    self.schemas.insert(name.clone(), schema);
                }
            }
        }
    }

    fn finish(
        mut self,
        mut document: Map<String, Value>,
        kind: Kind,
        context: &str,
        problems: &mut Vec<String>,
    ) -> Contract {
        for (name, schema) in &self.schemas {
            let mut references = Vec::new();
            references_in(schema, &mut references);
            for reference in references {
                if !self.schemas.contains_key(&reference) {
                    self.problems.push(format!(
                        "`{}`: `{name}` refers to `{reference}`, whose schema utoipa did not collect; add `.with::<{reference}>()` to its registration",
                        self.contract
                    ));
                }
            }
        }
        self.problems.sort();
        self.problems.dedup();
        problems.append(&mut self.problems);
        self.roots.sort();
        self.roots.dedup();
        self.types.extend(self.schemas.keys().cloned());
        self.types.sort();
        self.types.dedup();
        document.insert(
            "$defs".into(),
            Value::Object(self.schemas.into_iter().collect()),
        );
        Contract {
            name: self.contract,
            kind,
            context: context.to_owned(),
            document: Value::Object(document),
            roots: self.roots,
            types: self.types,
        }
    }
}

/// utoipa writes OpenAPI references (`#/components/schemas/X`); a standalone JSON Schema keeps
/// its definitions under `$defs`. `required` is a set, so it is sorted: reordering a struct's
/// fields changes nothing on the wire and should not change the file.
fn normalize(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(key, value)| {
                    let value = match (key.as_str(), value) {
                        ("$ref", Value::String(reference)) => {
                            Value::String(match reference.strip_prefix("#/components/schemas/") {
                                Some(name) => format!("#/$defs/{name}"),
                                None => reference,
                            })
                        }
                        ("required", Value::Array(mut names)) => {
                            names.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
                            Value::Array(names)
                        }
                        (_, value) => normalize(value),
                    };
                    (key, value)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(normalize).collect()),
        other => other,
    }
}

fn references_in(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("$ref", Value::String(reference)) => {
                        if let Some(name) = reference.strip_prefix("#/$defs/") {
                            out.push(name.to_owned());
                        }
                    }
                    _ => references_in(value, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| references_in(item, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_versions() {
        assert_eq!(
            next_version("orders.order_payment_failed.v1"),
            "orders.order_payment_failed.v2"
        );
        assert_eq!(next_version("auth.port.v9"), "auth.port.v10");
    }

    #[test]
    fn event_names_make_safe_file_names() {
        assert_eq!(invalid_event_name("auth.user_registered.v1"), None);
        for bad in [
            "auth.user_registered",
            "Auth.UserRegistered.v1",
            "auth.user_registered.v0",
            "../x.y.v1",
            "a.b.c.v1",
        ] {
            assert!(invalid_event_name(bad).is_some(), "{bad}");
        }
    }
}
