//! `arch.toml`: the declared architecture (contexts and their crates, shared crates and their
//! roles, allowed edges with reasons, the `-api` dependency allow/deny lists, shared tables),
//! parsed with spans and validated into an [`ArchConfig`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;
use std::path::Path;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::diagnostic::{Diagnostic, Location};
use crate::rules::Rule;

/// The file name of the declaration, at the workspace root.
pub const FILE_NAME: &str = "arch.toml";

/// What a crate is for; decides which dependencies it may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Api,
    Implementation,
    Migrations,
    Kernel,
    Infrastructure,
    CompositionRoot,
    Tooling,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Api => "api",
            Role::Implementation => "implementation",
            Role::Migrations => "migrations",
            Role::Kernel => "kernel",
            Role::Infrastructure => "infrastructure",
            Role::CompositionRoot => "composition root",
            Role::Tooling => "tooling",
        })
    }
}

/// One crate named in `arch.toml`.
#[derive(Debug, Clone)]
pub struct CrateDecl {
    pub name: String,
    pub role: Role,
    /// The context it belongs to (api, implementation and migrations crates only).
    pub context: Option<String>,
    /// Where `arch.toml` names it.
    pub span: Range<usize>,
}

impl CrateDecl {
    /// "`orders` (implementation of context `orders`)", "`web-kit` (infrastructure)".
    pub fn describe(&self) -> String {
        match &self.context {
            Some(context) => format!("`{}` ({} of context `{context}`)", self.name, self.role),
            None => format!("`{}` ({})", self.name, self.role),
        }
    }
}

/// A bounded context: its crates, its database schema and the trait its `-api` crate exports.
#[derive(Debug, Clone)]
pub struct Context {
    pub name: String,
    pub schema: String,
    pub api: Option<String>,
    pub api_trait: Option<String>,
    /// Where `api_trait` is written, to point at it.
    pub api_trait_span: Option<Range<usize>>,
    pub implementation: Option<String>,
    pub migrations: Option<String>,
}

/// A declared, allowed edge: context to context (`[[edges]]`) or infrastructure crate to an
/// `-api` crate (`[[infrastructure_edges]]`).
#[derive(Debug, Clone)]
pub struct Edge {
    pub from: String,
    pub to: String,
    pub reason: String,
    /// Where the edge's `from` is written, to point at it.
    pub span: Range<usize>,
}

/// A crate-name pattern: a plain name or a glob with `*` (`actix-*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern(String);

impl Pattern {
    pub fn matches(&self, name: &str) -> bool {
        glob_match(&self.0, name)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn glob_match(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((prefix, rest)) => {
            let Some(tail) = name.strip_prefix(prefix) else {
                return false;
            };
            if rest.is_empty() {
                return true;
            }
            // Try every split point for the remainder (patterns are tiny).
            (0..=tail.len())
                .filter(|&i| tail.is_char_boundary(i))
                .any(|i| glob_match(rest, &tail[i..]))
        }
    }
}

/// A deny-list entry for `-api` crates: the category says *why* ("a database crate").
#[derive(Debug, Clone)]
pub struct DenyRule {
    pub category: String,
    pub pattern: Pattern,
}

/// The validated declaration.
#[derive(Debug, Clone)]
pub struct ArchConfig {
    /// The text of `arch.toml`, to point into it.
    pub text: String,
    crates: BTreeMap<String, CrateDecl>,
    contexts: BTreeMap<String, Context>,
    edges: Vec<Edge>,
    infrastructure_edges: Vec<Edge>,
    api_allow: Vec<Pattern>,
    api_deny: Vec<DenyRule>,
    shared_tables: BTreeSet<String>,
}

/// Why `arch.toml` (or the baseline) could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{} problem(s) in {FILE_NAME}", .0.len())]
    Invalid(Vec<Diagnostic>),
}

impl ArchConfig {
    /// Reads and validates `<root>/arch.toml`.
    pub fn load(root: &Path) -> Result<Self, ConfigFileError> {
        let path = root.join(FILE_NAME);
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigFileError::Read {
            path: FILE_NAME.to_owned(),
            source,
        })?;
        Self::parse(text)
    }

    /// Parses and validates the text of an `arch.toml`.
    pub fn parse(text: String) -> Result<Self, ConfigFileError> {
        let raw: RawConfig = toml::from_str(&text).map_err(|error| {
            ConfigFileError::Invalid(vec![toml_error(FILE_NAME, &text, &error)])
        })?;
        Builder::new(&text).build(raw, text.clone())
    }

    pub fn crates(&self) -> impl Iterator<Item = &CrateDecl> {
        self.crates.values()
    }

    pub fn krate(&self, name: &str) -> Option<&CrateDecl> {
        self.crates.get(name)
    }

    pub fn contexts(&self) -> impl Iterator<Item = &Context> {
        self.contexts.values()
    }

    pub fn context(&self, name: &str) -> Option<&Context> {
        self.contexts.get(name)
    }

    /// The context whose schema is `schema`.
    pub fn context_by_schema(&self, schema: &str) -> Option<&Context> {
        self.contexts.values().find(|c| c.schema == schema)
    }

    pub fn edges(&self) -> &[Edge] {
        &self.edges
    }

    pub fn edge(&self, from: &str, to: &str) -> Option<&Edge> {
        self.edges.iter().find(|e| e.from == from && e.to == to)
    }

    pub fn infrastructure_edges(&self) -> &[Edge] {
        &self.infrastructure_edges
    }

    pub fn infrastructure_edge(&self, from: &str, to: &str) -> Option<&Edge> {
        self.infrastructure_edges
            .iter()
            .find(|e| e.from == from && e.to == to)
    }

    /// Whether an `-api` crate may use the third-party crate `name`.
    pub fn api_allows(&self, name: &str) -> bool {
        self.api_allow.iter().any(|p| p.matches(name))
    }

    /// The deny-list entry matching the third-party crate `name`, if any.
    pub fn api_denies(&self, name: &str) -> Option<&DenyRule> {
        self.api_deny.iter().find(|d| d.pattern.matches(name))
    }

    pub fn api_allow_list(&self) -> &[Pattern] {
        &self.api_allow
    }

    /// Tables every context has its own copy of (`outbox`, `inbox`, `seaql_migrations`).
    pub fn is_shared_table(&self, table: &str) -> bool {
        self.shared_tables.contains(table)
    }

    /// The location of a span of `arch.toml`.
    pub fn location(&self, span: Range<usize>) -> Location {
        Location::from_span(FILE_NAME, &self.text, span)
    }
}

/// Turns a TOML syntax or shape error into an `invalid-config` diagnostic pointing into `file`.
pub(crate) fn toml_error(file: &str, text: &str, error: &toml::de::Error) -> Diagnostic {
    let diagnostic = Diagnostic::new(
        Rule::InvalidConfig,
        format!("{file} is malformed: {}", error.message().trim_end()),
    );
    match error.span() {
        Some(span) => diagnostic.at(Location::from_span(file, text, span)),
        None => diagnostic,
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    shared: RawShared,
    #[serde(default)]
    contexts: BTreeMap<String, RawContext>,
    #[serde(default)]
    edges: Vec<RawEdge>,
    #[serde(default)]
    infrastructure_edges: Vec<RawEdge>,
    #[serde(default)]
    api: RawApi,
    #[serde(default)]
    data: RawData,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawShared {
    #[serde(default)]
    kernel: Vec<Spanned<String>>,
    #[serde(default)]
    infrastructure: Vec<Spanned<String>>,
    #[serde(default)]
    composition_root: Vec<Spanned<String>>,
    #[serde(default)]
    tooling: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawContext {
    schema: Spanned<String>,
    api: Option<Spanned<String>>,
    api_trait: Option<Spanned<String>>,
    implementation: Option<Spanned<String>>,
    migrations: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEdge {
    from: Spanned<String>,
    to: Spanned<String>,
    reason: Spanned<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApi {
    #[serde(default)]
    allow: Vec<String>,
    /// Category ("database") to crate patterns.
    #[serde(default)]
    deny: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawData {
    #[serde(default)]
    shared_tables: Vec<String>,
}

/// Collects every problem instead of stopping at the first, so one run shows them all.
struct Builder<'a> {
    text: &'a str,
    problems: Vec<Diagnostic>,
    crates: BTreeMap<String, CrateDecl>,
}

impl<'a> Builder<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            text,
            problems: Vec::new(),
            crates: BTreeMap::new(),
        }
    }

    fn problem(&mut self, span: Range<usize>, message: String, help: Option<&str>) {
        let mut diagnostic = Diagnostic::new(Rule::InvalidConfig, message)
            .at(Location::from_span(FILE_NAME, self.text, span));
        if let Some(help) = help {
            diagnostic = diagnostic.help(help);
        }
        self.problems.push(diagnostic);
    }

    fn declare(&mut self, name: &Spanned<String>, role: Role, context: Option<&str>) {
        let span = name.span();
        let name = name.get_ref().trim().to_owned();
        if name.is_empty() {
            self.problem(span, "empty crate name".to_owned(), None);
            return;
        }
        if let Some(previous) = self.crates.get(&name) {
            let message = format!(
                "crate `{name}` is declared twice (first as {})",
                previous.describe()
            );
            self.problem(span, message, Some("a crate has exactly one role"));
            return;
        }
        self.crates.insert(
            name.clone(),
            CrateDecl {
                name,
                role,
                context: context.map(str::to_owned),
                span,
            },
        );
    }

    fn build(mut self, raw: RawConfig, text: String) -> Result<ArchConfig, ConfigFileError> {
        let shared = [
            (Role::Kernel, &raw.shared.kernel),
            (Role::Infrastructure, &raw.shared.infrastructure),
            (Role::CompositionRoot, &raw.shared.composition_root),
            (Role::Tooling, &raw.shared.tooling),
        ];
        for (role, names) in shared {
            for name in names {
                self.declare(name, role, None);
            }
        }

        let mut contexts = BTreeMap::new();
        let mut schemas: BTreeMap<String, String> = BTreeMap::new();
        for (name, context) in &raw.contexts {
            let roles = [
                (Role::Api, &context.api),
                (Role::Implementation, &context.implementation),
                (Role::Migrations, &context.migrations),
            ];
            for (role, krate) in roles {
                if let Some(krate) = krate {
                    self.declare(krate, role, Some(name));
                }
            }
            if roles.iter().all(|(_, krate)| krate.is_none()) {
                self.problem(
                    context.schema.span(),
                    format!("context `{name}` names no crate"),
                    Some("set at least one of `api`, `implementation`, `migrations`"),
                );
            }
            let schema = context.schema.get_ref().clone();
            if let Some(other) = schemas.insert(schema.clone(), name.clone()) {
                self.problem(
                    context.schema.span(),
                    format!("schema `{schema}` is declared by both `{other}` and `{name}`"),
                    Some("each context owns its own schema"),
                );
            }
            if context.api_trait.is_some() && context.api.is_none() {
                self.problem(
                    context.schema.span(),
                    format!("context `{name}` declares `api_trait` but no `api` crate"),
                    None,
                );
            }
            contexts.insert(
                name.clone(),
                Context {
                    name: name.clone(),
                    schema,
                    api: context.api.as_ref().map(|s| s.get_ref().clone()),
                    api_trait: context.api_trait.as_ref().map(|s| s.get_ref().clone()),
                    api_trait_span: context.api_trait.as_ref().map(Spanned::span),
                    implementation: context.implementation.as_ref().map(|s| s.get_ref().clone()),
                    migrations: context.migrations.as_ref().map(|s| s.get_ref().clone()),
                },
            );
        }

        let edges = self.context_edges(&raw.edges, &contexts);
        let infrastructure_edges = self.infrastructure_edges(&raw.infrastructure_edges);

        let api_allow = raw.api.allow.into_iter().map(Pattern).collect();
        let api_deny = raw
            .api
            .deny
            .into_iter()
            .flat_map(|(category, crates)| {
                crates.into_iter().map(move |name| DenyRule {
                    category: category.clone(),
                    pattern: Pattern(name),
                })
            })
            .collect();

        if !self.problems.is_empty() {
            // In file order, however the checks above happened to find them.
            self.problems
                .sort_by_key(|p| p.location.as_ref().and_then(Location::line_column));
            return Err(ConfigFileError::Invalid(self.problems));
        }
        Ok(ArchConfig {
            text,
            crates: self.crates,
            contexts,
            edges,
            infrastructure_edges,
            api_allow,
            api_deny,
            shared_tables: raw.data.shared_tables.into_iter().collect(),
        })
    }

    fn reason(&mut self, edge: &RawEdge) -> String {
        let reason = edge.reason.get_ref().trim().to_owned();
        if reason.is_empty() {
            self.problem(
                edge.reason.span(),
                "an edge needs a non-empty `reason`".to_owned(),
                Some("say which use case needs the edge, so reviewers can judge it"),
            );
        }
        reason
    }

    fn context_edges(
        &mut self,
        raw: &[RawEdge],
        contexts: &BTreeMap<String, Context>,
    ) -> Vec<Edge> {
        let mut edges: Vec<Edge> = Vec::new();
        for edge in raw {
            let reason = self.reason(edge);
            let (from, to) = (edge.from.get_ref(), edge.to.get_ref());
            for end in [&edge.from, &edge.to] {
                if !contexts.contains_key(end.get_ref()) {
                    let known = contexts.keys().cloned().collect::<Vec<_>>().join(", ");
                    self.problem(
                        end.span(),
                        format!("edge names unknown context `{}`", end.get_ref()),
                        Some(&format!("known contexts: {known}")),
                    );
                }
            }
            if from == to {
                self.problem(
                    edge.from.span(),
                    format!("edge from context `{from}` to itself"),
                    Some("a context may always use its own crates; remove the edge"),
                );
            }
            if edges.iter().any(|e| &e.from == from && &e.to == to) {
                self.problem(
                    edge.from.span(),
                    format!("edge {from} -> {to} is declared twice"),
                    None,
                );
            }
            edges.push(Edge {
                from: from.clone(),
                to: to.clone(),
                reason,
                span: edge.from.span(),
            });
        }
        edges.sort_by(|a, b| (&a.from, &a.to).cmp(&(&b.from, &b.to)));
        edges
    }

    fn infrastructure_edges(&mut self, raw: &[RawEdge]) -> Vec<Edge> {
        let mut edges: Vec<Edge> = Vec::new();
        for edge in raw {
            let reason = self.reason(edge);
            let (from, to) = (edge.from.get_ref(), edge.to.get_ref());
            let from_role = self.crates.get(from).map(|c| c.role);
            if from_role != Some(Role::Infrastructure) {
                self.problem(
                    edge.from.span(),
                    format!("`{from}` is not declared as an infrastructure crate"),
                    Some("`[[infrastructure_edges]]` start at a crate listed in `shared.infrastructure`"),
                );
            }
            let to_role = self.crates.get(to).map(|c| c.role);
            if to_role != Some(Role::Api) {
                self.problem(
                    edge.to.span(),
                    format!("`{to}` is not declared as the api crate of a context"),
                    Some("infrastructure may only be allowed to use a context's `-api` crate"),
                );
            }
            if edges.iter().any(|e| &e.from == from && &e.to == to) {
                self.problem(
                    edge.from.span(),
                    format!("edge {from} -> {to} is declared twice"),
                    None,
                );
            }
            edges.push(Edge {
                from: from.clone(),
                to: to.clone(),
                reason,
                span: edge.from.span(),
            });
        }
        edges.sort_by(|a, b| (&a.from, &a.to).cmp(&(&b.from, &b.to)));
        edges
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[shared]
kernel = ["kernel"]
infrastructure = ["web-kit"]

[contexts.auth]
schema = "auth"
api = "auth-api"
api_trait = "AuthApi"
implementation = "auth"

[contexts.orders]
schema = "orders"
implementation = "orders"

[[edges]]
from = "orders"
to = "auth"
reason = "verify tokens"

[[infrastructure_edges]]
from = "web-kit"
to = "auth-api"
reason = "bearer tokens"

[api]
allow = ["serde", "serde_*"]
deny.database = ["sea-orm", "sqlx"]
deny."web framework" = ["actix-*"]
"#;

    #[test]
    fn parses_roles_edges_and_lists() {
        let config = ArchConfig::parse(MINIMAL.to_owned()).unwrap();
        assert_eq!(config.krate("auth-api").unwrap().role, Role::Api);
        assert_eq!(
            config.krate("orders").unwrap().context.as_deref(),
            Some("orders")
        );
        assert_eq!(
            config.edge("orders", "auth").unwrap().reason,
            "verify tokens"
        );
        assert!(config.infrastructure_edge("web-kit", "auth-api").is_some());
        assert!(config.api_allows("serde_json"));
        assert!(!config.api_allows("tokio"));
        assert_eq!(
            config.api_denies("actix-web").unwrap().category,
            "web framework"
        );
        assert_eq!(config.context_by_schema("auth").unwrap().name, "auth");
    }

    #[test]
    fn reports_every_problem_with_a_location() {
        let text = r#"
[shared]
kernel = ["kernel", "kernel"]

[contexts.auth]
schema = "auth"
implementation = "auth"

[[edges]]
from = "auth"
to = "billing"
reason = ""
"#;
        let Err(ConfigFileError::Invalid(problems)) = ArchConfig::parse(text.to_owned()) else {
            panic!("expected problems");
        };
        let messages: Vec<_> = problems
            .iter()
            .map(|p| {
                let (line, _) = p.location.as_ref().unwrap().line_column().unwrap();
                (line, p.message.as_str())
            })
            .collect();
        assert_eq!(
            messages,
            [
                (
                    3,
                    "crate `kernel` is declared twice (first as `kernel` (kernel))"
                ),
                (11, "edge names unknown context `billing`"),
                (12, "an edge needs a non-empty `reason`"),
            ]
        );
    }

    #[test]
    fn unknown_keys_are_errors() {
        let Err(ConfigFileError::Invalid(problems)) =
            ArchConfig::parse("[contexts.auth]\nschema = \"auth\"\nimpl = \"auth\"\n".to_owned())
        else {
            panic!("expected problems");
        };
        assert!(
            problems[0].message.contains("unknown field `impl`"),
            "{problems:?}"
        );
    }

    #[test]
    fn globs() {
        assert!(glob_match("actix-*", "actix-web"));
        assert!(!glob_match("actix-*", "actix"));
        assert!(glob_match("*-sys", "openssl-sys"));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxbyy"));
    }
}
