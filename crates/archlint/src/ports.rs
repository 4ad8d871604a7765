//! `port-spec`: each context's `-api` crate publishes a `PORT: PortSpec` beside its port trait,
//! saying for every method whether it may be retried. A remote adapter trusts that data, so
//! this rule reads both the trait and the spec and reports every difference: a method the spec
//! forgets, an entry naming no method, a wrong context or trait name, or a spec written in a
//! shape the lint cannot read.

use std::collections::BTreeMap;

use crate::config::{ArchConfig, Context, CrateDecl, Role};
use crate::diagnostic::{Diagnostic, Violation};
use crate::rules::Rule;
use crate::source::{
    CrateSources, Field, FileFacts, MethodEntry, Named, PortConst, PortValue, TraitDef,
};
use crate::workspace::Member;

/// The two ways to write an entry, for help lines.
const ENTRY_SHAPES: &str = "`MethodSpec::idempotent(\"..\")` or `MethodSpec::not_idempotent(\"..\")` with a string literal";

/// Why a spec must be written literally.
const READ_FROM_SOURCE: &str =
    "archlint reads the spec from the source without compiling it, so it must be written literally";

/// `port-spec` for one `-api` member.
pub fn check(
    config: &ArchConfig,
    member: &Member,
    sources: &CrateSources,
    out: &mut Vec<Violation>,
) {
    let Some(decl) = config
        .krate(&member.name)
        .filter(|decl| decl.role == Role::Api)
    else {
        return;
    };
    let Some(context) = decl
        .context
        .as_deref()
        .and_then(|name| config.context(name))
    else {
        return;
    };
    let mut checker = Checker {
        config,
        decl,
        context,
        out,
    };
    checker.port(sources);
}

/// Reports the `port-spec` violations of one api crate.
struct Checker<'a> {
    config: &'a ArchConfig,
    decl: &'a CrateDecl,
    context: &'a Context,
    out: &'a mut Vec<Violation>,
}

/// Something found in a file, with the file to point into.
type InFile<'a, T> = (&'a FileFacts, &'a T);

impl<'a> Checker<'a> {
    fn report(&mut self, key: impl Into<String>, diagnostic: Diagnostic) {
        self.out
            .push(Violation::new(&self.decl.name, key, diagnostic));
    }

    fn api(&self) -> &'a str {
        &self.decl.name
    }

    fn port(&mut self, sources: &'a CrateSources) {
        let Some(trait_name) = self.context.api_trait.as_deref() else {
            self.no_api_trait();
            return;
        };
        let port_trait = sources
            .files
            .iter()
            .flat_map(|file| file.traits.iter().map(move |t| (file, t)))
            .find(|(_, t)| t.name.value == trait_name);
        if port_trait.is_none() {
            self.no_trait(trait_name, sources);
        }

        let consts: Vec<InFile<'a, PortConst>> = sources
            .files
            .iter()
            .flat_map(|file| file.ports.iter().map(move |p| (file, p)))
            .collect();
        let mut specs = consts.iter().filter(|(_, port)| port.is_port_spec);
        let Some(&port) = specs.next() else {
            self.no_port(trait_name, port_trait, consts.first().copied());
            return;
        };
        for &other in specs {
            self.second_port(port, other);
        }
        let (file, spec) = port;
        let Some(value) = &spec.value else {
            let diagnostic = Diagnostic::new(
                Rule::PortSpec,
                format!(
                    "`PORT` in `{}` is not a `PortSpec {{ .. }}` literal, so archlint cannot read it",
                    self.api()
                ),
            )
            .at(file.location(spec.value_pos))
            .label("not a `PortSpec { .. }` literal")
            .note(READ_FROM_SOURCE)
            .help(format!(
                "write `PORT` as the literal `{}`, with one entry per method of `{trait_name}`, each {ENTRY_SHAPES}",
                self.spec_literal(trait_name)
            ));
            self.report("PORT", diagnostic);
            return;
        };
        self.names(port, value, trait_name);
        match &value.methods {
            Field::Read(entries) => self.methods(port, entries, trait_name, port_trait),
            unreadable => self.unreadable(
                port,
                "methods",
                unreadable,
                "not a `&[..]` array literal",
                format!(
                    "write `methods: &[..]` with one entry per method of `{trait_name}`, each {ENTRY_SHAPES}"
                ),
            ),
        }
    }

    /// An `-api` crate without `api_trait` has no port the lint can compare the spec with.
    fn no_api_trait(&mut self) {
        let context = &self.context.name;
        let diagnostic = Diagnostic::new(
            Rule::PortSpec,
            format!(
                "context `{context}` has an api crate, but arch.toml names no `api_trait`, so its port cannot be checked"
            ),
        )
        .at(self.config.location(self.decl.span.clone()))
        .label("api crate without `api_trait`")
        .note("port-spec compares the port trait's methods with `PORT.methods` in the api crate")
        .help(format!(
            "add `api_trait = \"..\"` (the port trait of `{}`) to `[contexts.{context}]` in arch.toml",
            self.api()
        ));
        self.report("api_trait", diagnostic);
    }

    fn no_trait(&mut self, trait_name: &str, sources: &CrateSources) {
        let mut found: Vec<String> = sources
            .files
            .iter()
            .flat_map(|file| &file.traits)
            .map(|t| format!("`{}`", t.name.value))
            .collect();
        found.sort();
        found.dedup();
        let found = if found.is_empty() {
            format!("`{}` defines no trait outside test code", self.api())
        } else {
            format!("`{}` defines {}", self.api(), found.join(", "))
        };
        let mut diagnostic = Diagnostic::new(
            Rule::PortSpec,
            format!(
                "`{}` defines no trait `{trait_name}`, which arch.toml names as the port of context `{}`",
                self.api(),
                self.context.name
            ),
        );
        if let Some(span) = self.context.api_trait_span.clone() {
            diagnostic = diagnostic.at(self.config.location(span));
        }
        let diagnostic = diagnostic
            .label(format!("no such trait in `{}`", self.api()))
            .note(found)
            .help(format!(
                "define `pub trait {trait_name}` in `{}`, or make `api_trait` name its port trait",
                self.api()
            ));
        self.report(trait_name, diagnostic);
    }

    /// No `PORT` of type `PortSpec`: points at a `PORT` of another type, else at the trait,
    /// else at the api crate in arch.toml.
    fn no_port(
        &mut self,
        trait_name: &str,
        port_trait: Option<InFile<'a, TraitDef>>,
        other: Option<InFile<'a, PortConst>>,
    ) {
        let missing = format!("`{}` has no `PORT` constant of type `PortSpec`", self.api());
        let diagnostic = match (other, port_trait) {
            (Some((file, port)), _) => Diagnostic::new(
                Rule::PortSpec,
                format!(
                    "`PORT` in `{}` is a `{}`, not a `PortSpec`",
                    self.api(),
                    port.ty.value
                ),
            )
            .at(file.location(port.ty.pos))
            .label("expected `PortSpec`"),
            (None, Some((file, port_trait))) => Diagnostic::new(Rule::PortSpec, missing)
                .at(file.location(port_trait.name.pos))
                .label(format!("the port of context `{}`", self.context.name)),
            (None, None) => Diagnostic::new(Rule::PortSpec, missing)
                .at(self.config.location(self.decl.span.clone()))
                .label(format!("the api crate of context `{}`", self.context.name)),
        };
        let diagnostic = diagnostic
            .note("a remote adapter reads `PORT` to decide which methods it may retry after a lost answer")
            .help(format!(
                "every port method must say whether it may be retried; add `pub const PORT: PortSpec = {}` beside `{trait_name}`, with one entry per method, each {ENTRY_SHAPES}",
                self.spec_literal(trait_name)
            ));
        self.report("PORT", diagnostic);
    }

    fn second_port(
        &mut self,
        (file, first): InFile<'a, PortConst>,
        (other_file, other): InFile<'a, PortConst>,
    ) {
        let diagnostic = Diagnostic::new(
            Rule::PortSpec,
            format!("`{}` has more than one `PORT`", self.api()),
        )
        .at(other_file.location(other.pos))
        .label("another `PortSpec`")
        .note(format!(
            "archlint checks the first, at {}:{}",
            file.file, first.pos.line
        ))
        .help("keep one `PORT` per port: a remote adapter must not have to choose");
        self.report("PORT", diagnostic);
    }

    /// `PORT.context` and `PORT.trait_name` agree with arch.toml.
    fn names(&mut self, port: InFile<'a, PortConst>, value: &'a PortValue, trait_name: &str) {
        let context = self.context.name.as_str();
        let port_fields = [
            ("context", &value.context, context),
            ("trait_name", &value.trait_name, trait_name),
        ];
        for (field, written, expected) in port_fields {
            let Field::Read(written) = written else {
                let help = format!("write `{field}: \"{expected}\"`");
                self.unreadable(port, field, written, "not a string literal", help);
                continue;
            };
            if written.value == expected {
                continue;
            }
            let (message, note) = if field == "context" {
                (
                    format!(
                        "`PORT.context` is \"{}\", but `{}` is the api crate of context `{expected}`",
                        written.value,
                        self.api()
                    ),
                    format!(
                        "arch.toml declares `{}` in `[contexts.{expected}]`",
                        self.api()
                    ),
                )
            } else {
                (
                    format!(
                        "`PORT.trait_name` is \"{}\", but the port of context `{context}` is `{expected}`",
                        written.value
                    ),
                    format!(
                        "arch.toml declares `api_trait = \"{expected}\"` in `[contexts.{context}]`"
                    ),
                )
            };
            let diagnostic = Diagnostic::new(Rule::PortSpec, message)
                .at(port.0.location(written.pos))
                .label(format!("expected \"{expected}\""))
                .note(note)
                .help(format!(
                    "write `{field}: \"{expected}\"`: a remote adapter finds the port by these names"
                ));
            self.report(format!("PORT.{field}"), diagnostic);
        }
    }

    /// A field the lint cannot read: written in another shape, or left to a `..base`.
    fn unreadable<T>(
        &mut self,
        (file, port): InFile<'a, PortConst>,
        field: &str,
        written: &Field<T>,
        shape: &str,
        help: String,
    ) {
        let (pos, label) = match written {
            Field::Read(_) => return,
            Field::Unreadable(pos) => (*pos, shape.to_owned()),
            Field::Missing => (port.value_pos, format!("no `{field}` field")),
        };
        let diagnostic = Diagnostic::new(
            Rule::PortSpec,
            format!(
                "`PORT.{field}` in `{}` is not written out as a literal, so archlint cannot read it",
                self.api()
            ),
        )
        .at(file.location(pos))
        .label(label)
        .note(READ_FROM_SOURCE)
        .help(help);
        self.report(format!("PORT.{field}"), diagnostic);
    }

    /// Every trait method has exactly one readable entry, and every entry names a method.
    fn methods(
        &mut self,
        (file, port): InFile<'a, PortConst>,
        entries: &'a [MethodEntry],
        trait_name: &str,
        port_trait: Option<InFile<'a, TraitDef>>,
    ) {
        let mut listed: BTreeMap<&str, &Named> = BTreeMap::new();
        for entry in entries {
            let name = match entry {
                MethodEntry::Read { name, .. } => name,
                MethodEntry::Unreadable { text, pos } => {
                    let diagnostic = Diagnostic::new(
                        Rule::PortSpec,
                        format!(
                            "an entry of `PORT.methods` in `{}` is not {ENTRY_SHAPES}",
                            self.api()
                        ),
                    )
                    .at(file.location(*pos))
                    .label("archlint cannot read this entry")
                    .note(READ_FROM_SOURCE)
                    .help(format!(
                        "write the entry as {ENTRY_SHAPES}, naming a method of `{trait_name}`"
                    ));
                    self.report(text.clone(), diagnostic);
                    continue;
                }
            };
            let key = format!("{trait_name}::{}", name.value);
            if let Some(first) = listed.get(name.value.as_str()) {
                let diagnostic = Diagnostic::new(
                    Rule::PortSpec,
                    format!("`PORT.methods` lists `{}` twice", name.value),
                )
                .at(file.location(name.pos))
                .label("listed again")
                .note(format!("first listed at {}:{}", file.file, first.pos.line))
                .help("keep one entry: a method is either idempotent or not");
                self.report(key, diagnostic);
                continue;
            }
            listed.insert(&name.value, name);
            let Some((trait_file, port_trait)) = port_trait else {
                continue;
            };
            if port_trait.methods.iter().any(|m| m.value == name.value) {
                continue;
            }
            let diagnostic = Diagnostic::new(
                Rule::PortSpec,
                format!(
                    "`PORT.methods` lists `{}`, but `{trait_name}` has no such method",
                    name.value
                ),
            )
            .at(file.location(name.pos))
            .label(format!("not a method of `{trait_name}`"))
            .note(format!(
                "`{trait_name}` ({}:{}) has {}",
                trait_file.file,
                port_trait.name.pos.line,
                method_list(port_trait)
            ))
            .help("remove the entry, or rename it to the method it describes");
            self.report(key, diagnostic);
        }

        let Some((trait_file, port_trait)) = port_trait else {
            return;
        };
        for method in &port_trait.methods {
            let name = &method.value;
            if listed.contains_key(name.as_str()) {
                continue;
            }
            let diagnostic = Diagnostic::new(
                Rule::PortSpec,
                format!("`{trait_name}::{name}` is not in PORT: say whether it is idempotent"),
            )
            .at(trait_file.location(method.pos))
            .label("not in `PORT.methods`")
            .note(format!("`PORT` is at {}:{}", file.file, port.pos.line))
            .help(format!(
                "add `MethodSpec::idempotent(\"{name}\")` if calling it twice with the same arguments has the effect of calling it once (a remote caller may then retry it), otherwise `MethodSpec::not_idempotent(\"{name}\")`"
            ));
            self.report(format!("{trait_name}::{name}"), diagnostic);
        }
    }

    /// The `PortSpec { .. }` literal this context's `PORT` needs.
    fn spec_literal(&self, trait_name: &str) -> String {
        format!(
            "PortSpec {{ context: \"{}\", trait_name: \"{trait_name}\", version: 1, methods: &[..] }}",
            self.context.name
        )
    }
}

/// "the methods `get_products`, `reserve_stock`" or "no methods".
fn method_list(port_trait: &TraitDef) -> String {
    if port_trait.methods.is_empty() {
        return "no methods".to_owned();
    }
    let names: Vec<String> = port_trait
        .methods
        .iter()
        .map(|m| format!("`{}`", m.value))
        .collect();
    format!("the methods {}", names.join(", "))
}
