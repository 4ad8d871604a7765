//! The completeness check: every type an `-api` crate puts on the wire is in a contract, so a
//! new event or DTO cannot escape the compatibility check by never being registered.
//!
//! It reads `crates/*-api/src/**/*.rs` with `syn` (no compilation): a type named in
//! `impl IntegrationEvent for X` must be a registered event, and every other `pub struct` or
//! `pub enum` deriving `Serialize` must appear in its context's port contract (as a DTO or as a
//! type a DTO refers to). Entries of the registry's pending list are accepted as known; an entry
//! that is registered already or names no type any more is reported, so the list only shrinks.

use std::path::{Path, PathBuf};

use proc_macro2::Span;
use syn::punctuated::Punctuated;
use syn::{Attribute, Item, Meta, Token, Visibility};
use walkdir::WalkDir;

use crate::contract::{Contract, Kind, PendingKind, Registry};
use crate::diagnostic::{Diagnostic, Location, Rule};

/// A wire type found in an `-api` crate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiType {
    /// The context: the crate folder without `-api`.
    pub context: String,
    /// The Rust type's name.
    pub name: String,
    /// Its path inside the crate (`refunds::RefundReason`), for the help text.
    pub path: String,
    /// An integration event (or else a serialized DTO).
    pub is_event: bool,
    pub location: Location,
}

/// Why the `-api` sources could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not valid Rust: {message}")]
    Parse { path: String, message: String },
}

/// Every event and serialized type of `crates/*-api/src` under `root`, in file order.
pub fn scan(root: &Path) -> Result<Vec<ApiType>, ScanError> {
    let crates_dir = root.join("crates");
    let mut api_crates: Vec<(String, PathBuf)> = match std::fs::read_dir(&crates_dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                let context = name.strip_suffix("-api")?.to_owned();
                let src = entry.path().join("src");
                src.is_dir().then_some((context, src))
            })
            .collect(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(source) => {
            return Err(ScanError::Read {
                path: relative(root, &crates_dir),
                source,
            });
        }
    };
    api_crates.sort();
    let mut found = Vec::new();
    for (context, src) in api_crates {
        for entry in WalkDir::new(&src).sort_by_file_name() {
            let entry = entry.map_err(|error| ScanError::Read {
                path: relative(root, &src),
                source: error.into(),
            })?;
            let path = entry.path();
            if !entry.file_type().is_file() || path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let file = relative(root, path);
            let text = std::fs::read_to_string(path).map_err(|source| ScanError::Read {
                path: file.clone(),
                source,
            })?;
            let parsed = syn::parse_file(&text).map_err(|error| ScanError::Parse {
                path: file.clone(),
                message: error.to_string(),
            });
            let mut scanner = Scanner {
                context: &context,
                file: &file,
                text: &text,
                modules: module_path(&src, path),
                found: &mut found,
            };
            if let Ok(ast) = &parsed {
                scanner.items(&ast.items);
            }
            // The fallback parser keeps every span's file in a thread-local map; drop it.
            proc_macro2::extra::invalidate_current_thread_spans();
            parsed?;
        }
    }
    Ok(found)
}

struct Scanner<'a> {
    context: &'a str,
    file: &'a str,
    text: &'a str,
    /// The module the items being read are in, from the crate root.
    modules: Vec<String>,
    found: &'a mut Vec<ApiType>,
}

/// The module a file is, from its place under `src/` (`src/a/b.rs` and `src/a/b/mod.rs` are
/// `a::b`; `src/lib.rs` is the root).
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src).unwrap_or(file).with_extension("");
    let mut modules: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        modules.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        modules.pop();
    }
    modules
}

impl Scanner<'_> {
    fn items(&mut self, items: &[Item]) {
        for item in items {
            match item {
                Item::Mod(module) if !is_test_only(&module.attrs) => {
                    if let Some((_, items)) = &module.content {
                        self.modules.push(module.ident.to_string());
                        self.items(items);
                        self.modules.pop();
                    }
                }
                Item::Impl(implementation) if !is_test_only(&implementation.attrs) => {
                    let Some((trait_path, _)) = &implementation.trait_ else {
                        continue;
                    };
                    let is_event = trait_path
                        .segments
                        .last()
                        .is_some_and(|s| s.ident == "IntegrationEvent");
                    if let (true, syn::Type::Path(self_type)) = (is_event, &*implementation.self_ty)
                        && let Some(segment) = self_type.path.segments.last()
                    {
                        self.push(&segment.ident, true);
                    }
                }
                Item::Struct(item) if is_wire_type(&item.vis, &item.attrs) => {
                    self.push(&item.ident, false);
                }
                Item::Enum(item) if is_wire_type(&item.vis, &item.attrs) => {
                    self.push(&item.ident, false);
                }
                _ => {}
            }
        }
    }

    fn push(&mut self, ident: &syn::Ident, is_event: bool) {
        let name = ident.to_string();
        let same = |t: &ApiType| t.context == self.context && t.name == name;
        // An event type also derives `Serialize`; its event contract covers it.
        if is_event {
            self.found.retain(|t| !same(t) || t.is_event);
        } else if self.found.iter().any(|t| same(t) && t.is_event) {
            return;
        }
        let path = self
            .modules
            .iter()
            .cloned()
            .chain(std::iter::once(name.clone()))
            .collect::<Vec<_>>()
            .join("::");
        self.found.push(ApiType {
            context: self.context.to_owned(),
            name,
            path,
            is_event,
            location: self.location(ident.span(), ident.to_string().chars().count()),
        });
    }

    fn location(&self, span: Span, width: usize) -> Location {
        let start = span.start();
        // proc-macro2 columns are 0-based characters.
        Location::from_line_column(self.file, self.text, start.line, start.column + 1, width)
    }
}

fn is_wire_type(visibility: &Visibility, attrs: &[Attribute]) -> bool {
    matches!(visibility, Visibility::Public(_)) && !is_test_only(attrs) && derives_serialize(attrs)
}

fn derives_serialize(attrs: &[Attribute]) -> bool {
    attrs
        .iter()
        .filter(|a| a.path().is_ident("derive"))
        .filter_map(|a| {
            a.parse_args_with(Punctuated::<syn::Path, Token![,]>::parse_terminated)
                .ok()
        })
        .flatten()
        .any(|path| path.segments.last().is_some_and(|s| s.ident == "Serialize"))
}

/// `#[cfg(test)]`: test helpers are not published.
fn is_test_only(attrs: &[Attribute]) -> bool {
    attrs.iter().any(|attr| match &attr.meta {
        Meta::List(list) if list.path.is_ident("cfg") => list.tokens.to_string() == "test",
        _ => false,
    })
}

fn relative(root: &Path, path: &Path) -> String {
    let relative = path.strip_prefix(root).unwrap_or(path);
    relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// The completeness diagnostics for what `scan` found.
pub fn check(found: &[ApiType], registry: &Registry, contracts: &[Contract]) -> Vec<Diagnostic> {
    let mut diagnostics = Vec::new();
    let is_registered_event = |context: &str, name: &str| {
        contracts
            .iter()
            .filter(|c| c.kind == Kind::Event && c.context == context)
            .any(|c| c.roots.iter().any(|t| t == name))
    };
    let port = |context: &str| {
        contracts
            .iter()
            .filter(|c| c.kind == Kind::Port && c.context == context)
            .max_by_key(|c| c.file())
    };
    let in_port = |context: &str, name: &str| {
        port(context).is_some_and(|c| c.types.iter().any(|t| t == name))
    };
    let pending = |context: &str, name: &str| {
        registry
            .pending
            .iter()
            .any(|p| p.context == context && p.name == name)
    };

    for api_type in found {
        let (context, name) = (api_type.context.as_str(), api_type.name.as_str());
        if pending(context, name) {
            continue;
        }
        let crate_path = format!("{}_api::{}", context.replace('-', "_"), api_type.path);
        if api_type.is_event && !is_registered_event(context, name) {
            diagnostics.push(
                Diagnostic::new(
                    Rule::UnregisteredEvent,
                    format!("`{name}` is an integration event but no contract holds it"),
                )
                .at(api_type.location.clone())
                .label("implements `IntegrationEvent`")
                .note("an event outside the registry escapes the compatibility check")
                .help(format!(
                    "derive `ToSchema` on it and add `event::<{crate_path}>()` to `events()` in crates/contracts/src/registry.rs"
                )),
            );
        } else if !api_type.is_event && !in_port(context, name) {
            let port_name = port(context).map_or_else(
                || format!("`port(\"{context}\", 1)` (new)"),
                |c| format!("`{}`", c.name),
            );
            diagnostics.push(
                Diagnostic::new(
                    Rule::UnregisteredDto,
                    format!("`{name}` is serialized by `{context}-api` but is not in the {context} port contract"),
                )
                .at(api_type.location.clone())
                .label("derives `Serialize`")
                .note("a DTO outside the registry escapes the compatibility check")
                .help(format!(
                    "derive `ToSchema` on it and add `.dto::<{crate_path}>()` to {port_name} in crates/contracts/src/registry.rs"
                )),
            );
        }
    }

    for entry in registry.pending {
        let exists = found
            .iter()
            .any(|t| t.context == entry.context && t.name == entry.name);
        let registered = match entry.kind {
            PendingKind::Event => is_registered_event(entry.context, entry.name),
            PendingKind::Dto | PendingKind::Error => in_port(entry.context, entry.name),
        };
        let (name, context) = (entry.name, entry.context);
        let message = if registered {
            format!(
                "`{name}` of `{context}-api` is registered now, but `PENDING_TO_SCHEMA` still lists it"
            )
        } else if !exists {
            format!(
                "`{context}-api` has no type `{name}` any more, but `PENDING_TO_SCHEMA` still lists it"
            )
        } else {
            continue;
        };
        diagnostics.push(
            Diagnostic::new(Rule::StalePendingEntry, message)
                .at(Location::file("crates/contracts/src/registry.rs"))
                .note("the pending list only shrinks: an entry stays only while its type waits for `ToSchema`")
                .help("remove the entry from `PENDING_TO_SCHEMA`"),
        );
    }
    diagnostics
}
