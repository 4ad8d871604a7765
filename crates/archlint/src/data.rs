//! Data ownership: each context reads and writes only its own Postgres schema and tables.
//! Table ownership is learned from the code (sea-orm entities' `table_name`, migrations'
//! `DeriveIden` enums); the rules then look at entity attributes, `Alias::new(..)` arguments,
//! string literals that read as SQL, and, in migrations, literals naming a schema.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::{ArchConfig, CrateDecl, Role};
use crate::diagnostic::{Diagnostic, Location, Violation};
use crate::rules::Rule;
use crate::source::{CrateSources, FileFacts, Pos, StringLiteral};
use crate::sql::{self, NameKind};

/// A context crate with its parsed sources.
pub struct ContextCrate<'a> {
    pub decl: &'a CrateDecl,
    pub sources: &'a CrateSources,
}

impl ContextCrate<'_> {
    fn context(&self) -> &str {
        self.decl.context.as_deref().unwrap_or_default()
    }

    fn holds_data(&self) -> bool {
        matches!(self.decl.role, Role::Implementation | Role::Migrations)
    }
}

/// Which contexts own which tables, and where that was learned.
#[derive(Debug, Default)]
pub struct Ownership {
    /// Entities are authoritative...
    entities: BTreeMap<String, BTreeMap<String, String>>,
    /// ...`DeriveIden` enums in migrations count only for tables no entity declares, because
    /// a migration also names other tables (a foreign key it should not have).
    idens: BTreeMap<String, BTreeMap<String, String>>,
}

impl Ownership {
    /// Learns from every implementation and migrations crate.
    pub fn learn(config: &ArchConfig, crates: &[ContextCrate<'_>]) -> Self {
        let mut ownership = Self::default();
        for krate in crates.iter().filter(|k| k.holds_data()) {
            for file in &krate.sources.files {
                for entity in &file.entities {
                    let Some(table) = &entity.table else { continue };
                    // An entity in another context's schema belongs to that context.
                    let owner = entity
                        .schema
                        .as_ref()
                        .and_then(|s| config.context_by_schema(&s.value))
                        .map_or(krate.context(), |c| c.name.as_str());
                    ownership
                        .entities
                        .entry(table.value.clone())
                        .or_default()
                        .entry(owner.to_owned())
                        .or_insert_with(|| evidence(file, table.pos));
                }
                if krate.decl.role == Role::Migrations {
                    for iden in &file.idens {
                        ownership
                            .idens
                            .entry(iden.value.clone())
                            .or_default()
                            .entry(krate.context().to_owned())
                            .or_insert_with(|| evidence(file, iden.pos));
                    }
                }
            }
        }
        ownership
    }

    /// The owners of `table` and where each was learned.
    pub fn owners(&self, table: &str) -> Option<&BTreeMap<String, String>> {
        self.entities.get(table).or_else(|| self.idens.get(table))
    }

    /// The contexts owning `table` if `context` is not one of them and the table is not shared.
    fn foreign(
        &self,
        config: &ArchConfig,
        table: &str,
        context: &str,
    ) -> Option<&BTreeMap<String, String>> {
        if config.is_shared_table(table) {
            return None;
        }
        let owners = self.owners(table)?;
        // Several owners: every one has its own copy (outbox, inbox), never foreign.
        (owners.len() == 1 && !owners.contains_key(context)).then_some(owners)
    }
}

fn evidence(file: &FileFacts, pos: Pos) -> String {
    format!("{}:{}", file.file, pos.line)
}

/// Checks every implementation and migrations crate.
pub fn check(config: &ArchConfig, crates: &[ContextCrate<'_>], out: &mut Vec<Violation>) {
    let ownership = Ownership::learn(config, crates);
    for krate in crates.iter().filter(|k| k.holds_data()) {
        let mut checker = Checker {
            config,
            ownership: &ownership,
            krate,
            seen: BTreeSet::new(),
            out: Vec::new(),
        };
        for file in &krate.sources.files {
            checker.file(file);
        }
        out.append(&mut checker.out);
    }
}

struct Checker<'a> {
    config: &'a ArchConfig,
    ownership: &'a Ownership,
    krate: &'a ContextCrate<'a>,
    /// (file, line, column, key): the same literal is both an `Alias::new` argument and a string.
    seen: BTreeSet<(String, usize, usize, String)>,
    out: Vec<Violation>,
}

impl<'a> Checker<'a> {
    fn context(&self) -> &'a str {
        self.krate.context()
    }

    /// The context owning `schema`, if it is another context's.
    fn foreign_schema(&self, schema: &str) -> Option<&'a str> {
        let own = self.context();
        self.config
            .context_by_schema(schema)
            .map(|c| c.name.as_str())
            .filter(|&c| c != own)
    }

    fn file(&mut self, file: &FileFacts) {
        for entity in &file.entities {
            if let Some(schema) = &entity.schema
                && let Some(owner) = self.foreign_schema(&schema.value)
            {
                let written = match &entity.table {
                    Some(table) => format!("{}.{}", schema.value, table.value),
                    None => schema.value.clone(),
                };
                let location = file.location(schema.pos);
                self.schema(location, &schema.value, owner, &written, "a sea-orm entity");
            }
        }
        if self.krate.decl.role == Role::Migrations {
            for iden in &file.idens {
                self.table(file.location(iden.pos), &iden.value, "a `DeriveIden` enum");
            }
        }
        for alias in &file.alias_names {
            let location = file.location(alias.pos);
            if let Some(owner) = self.foreign_schema(&alias.value) {
                self.schema(location, &alias.value, owner, &alias.value, "`Alias::new`");
            } else {
                self.table(location, &alias.value, "`Alias::new`");
            }
        }
        for literal in &file.strings {
            self.literal(file, literal);
        }
    }

    fn literal(&mut self, file: &FileFacts, literal: &StringLiteral) {
        // Migrations name schemas in plain literals (`.schema_name("auth")`, constants).
        if self.krate.decl.role == Role::Migrations
            && let Some(owner) = self.foreign_schema(&literal.value)
        {
            let value = literal.value.clone();
            self.schema(
                file.location(literal.pos),
                &value,
                owner,
                &value,
                "a string literal",
            );
        }
        let mut search_from = 0;
        for name in sql::names(&literal.value) {
            let location = locate_in_literal(file, literal, &name.written, &mut search_from);
            match (name.kind, name.schema.as_deref()) {
                (NameKind::Schema, Some(schema)) | (NameKind::Table, Some(schema)) => {
                    if let Some(owner) = self.foreign_schema(schema) {
                        let written = match name.kind {
                            NameKind::Table => format!("{schema}.{}", name.name),
                            NameKind::Schema => schema.to_owned(),
                        };
                        self.schema(location, schema, owner, &written, "SQL");
                    }
                }
                (NameKind::Table, None) => self.table(location, &name.name, "SQL"),
                (NameKind::Schema, None) => {}
            }
        }
    }

    fn push(&mut self, location: Location, key: &str, diagnostic: Diagnostic) {
        let (line, column) = location.line_column().unwrap_or_default();
        let seen = (location.file.clone(), line, column, key.to_owned());
        if !self.seen.insert(seen) {
            return;
        }
        self.out.push(Violation::new(
            &self.krate.decl.name,
            key,
            diagnostic.at(location),
        ));
    }

    fn help(&self, owner: &str) -> String {
        let via = self
            .config
            .context(owner)
            .and_then(|c| c.api_trait.as_deref())
            .map_or_else(|| "its api crate".to_owned(), |t| format!("`{t}`"));
        let edge = if self.config.edge(self.context(), owner).is_some() {
            String::new()
        } else {
            format!(" (declaring the edge {} -> {owner})", self.context())
        };
        format!(
            "ask `{owner}` through {via}{edge}, or keep a local copy in schema `{}` fed by `{owner}`'s integration events",
            self.own_schema()
        )
    }

    fn own_schema(&self) -> String {
        self.config
            .context(self.context())
            .map_or_else(|| self.context().to_owned(), |c| c.schema.clone())
    }

    fn schema(&mut self, location: Location, schema: &str, owner: &str, written: &str, via: &str) {
        let (name, context) = (&self.krate.decl.name, self.context());
        let message = if written == schema {
            format!("`{name}` names schema `{schema}`, which belongs to context `{owner}`")
        } else {
            format!(
                "`{name}` uses `{written}` in schema `{schema}`, which belongs to context `{owner}`"
            )
        };
        let diagnostic = Diagnostic::new(Rule::ForeignSchema, message)
        .label(format!("schema of context `{owner}`"))
        .note(format!(
            "found in {via}; context `{context}` owns only schema `{}` (arch.toml: [contexts.{owner}] schema = \"{schema}\")",
            self.own_schema()
        ))
        .help(self.help(owner));
        self.push(location, written, diagnostic);
    }

    fn table(&mut self, location: Location, table: &str, via: &str) {
        let Some(owners) = self.ownership.foreign(self.config, table, self.context()) else {
            return;
        };
        let Some((owner, learned)) = owners.iter().next() else {
            return;
        };
        let (owner, learned) = (owner.clone(), learned.clone());
        let (name, context) = (&self.krate.decl.name, self.context());
        let diagnostic = Diagnostic::new(
            Rule::ForeignTable,
            format!("`{name}` uses table `{table}`, which only context `{owner}` owns"),
        )
        .label(format!("table of context `{owner}`"))
        .note(format!(
            "found in {via}; `{table}` belongs to `{owner}` (declared at {learned}), and context `{context}` has no table of that name"
        ))
        .help(self.help(&owner));
        self.push(location, table, diagnostic);
    }
}

/// Where `written` appears inside the literal's source text, searching after `from`; the start of
/// the literal if escapes make it unfindable.
fn locate_in_literal(
    file: &FileFacts,
    literal: &StringLiteral,
    written: &str,
    from: &mut usize,
) -> Location {
    let Some(offset) = literal
        .repr
        .get(*from..)
        .and_then(|rest| rest.find(written))
        .map(|i| i + *from)
    else {
        return file.location(literal.pos);
    };
    *from = offset + written.len();
    let before = &literal.repr[..offset];
    let (line, column) = match before.rfind('\n') {
        Some(newline) => (
            literal.pos.line + before.matches('\n').count(),
            before[newline + 1..].chars().count() + 1,
        ),
        None => (
            literal.pos.line,
            literal.pos.column + before.chars().count(),
        ),
    };
    let pos = Pos {
        line,
        column,
        width: written.chars().count(),
    };
    file.location(pos)
}
