//! Facts read from a crate's Rust files with `syn`, in one pass per file: `#[path]` modules,
//! `include!`-family paths, `pub use`/`pub extern crate` re-exports and private aliases, sea-orm
//! entity attributes, `DeriveIden` enums, `Alias::new(..)` arguments, every string literal
//! (including those inside macro calls), and trait definitions and `PORT` constants outside test
//! code. The rules interpret the facts; this module only reads.

use std::path::{Component, Path, PathBuf};

use proc_macro2::{Span, TokenStream, TokenTree};
use syn::ext::IdentExt;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::visit::{self, Visit};
use syn::{Expr, ExprCall, Lit, LitStr, Meta, Token, UseTree, Visibility};
use walkdir::WalkDir;

use crate::diagnostic::Location;
use crate::workspace::relative;

/// A position inside one source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    /// 1-based line.
    pub line: usize,
    /// 1-based column in characters.
    pub column: usize,
    /// Characters to underline.
    pub width: usize,
}

impl Pos {
    fn of(span: Span) -> Self {
        Self::between(span, span)
    }

    /// From the start of `start` to the end of `end` (to the end of the line if they differ).
    fn between(start: Span, end: Span) -> Self {
        let (begin, finish) = (start.start(), end.end());
        let width = if begin.line == finish.line {
            finish.column.saturating_sub(begin.column)
        } else {
            1
        };
        Self {
            line: begin.line,
            column: begin.column + 1,
            width: width.max(1),
        }
    }
}

/// A string value written in the source, with where it is.
#[derive(Debug, Clone)]
pub struct Named {
    pub value: String,
    pub pos: Pos,
}

/// A string literal: its value and its exact source text (to find positions inside it).
#[derive(Debug, Clone)]
pub struct StringLiteral {
    pub value: String,
    pub repr: String,
    pub pos: Pos,
}

/// A `#[path = ".."]` or `include*!("..")` and the file it resolves to.
#[derive(Debug, Clone)]
pub struct PathReference {
    /// `#[path]`, `include!`, `include_str!` or `include_bytes!`.
    pub via: &'static str,
    /// The path as written (with `CARGO_MANIFEST_DIR` spelled out when used).
    pub written: String,
    /// Lexically normalised absolute path.
    pub resolved: PathBuf,
    pub pos: Pos,
}

/// A `pub use` or `pub extern crate`, by the first segment of its path.
#[derive(Debug, Clone)]
pub struct Reexport {
    /// The first path segment: a crate name or a local alias.
    pub root: String,
    /// The re-exported path as written (`catalog_api::Product`, `catalog_api::*`).
    pub path: String,
    pub pos: Pos,
}

/// A sea-orm entity (`#[sea_orm(table_name = "..", schema_name = "..")]`).
#[derive(Debug, Clone, Default)]
pub struct Entity {
    pub table: Option<Named>,
    pub schema: Option<Named>,
}

/// A trait defined outside test code, with the name of every `fn` in it.
#[derive(Debug, Clone)]
pub struct TraitDef {
    pub name: Named,
    /// Every `fn` item, with or without a default body, by its name without `r#`.
    pub methods: Vec<Named>,
}

/// A `const PORT` outside test code, read as far as it is written literally.
#[derive(Debug, Clone)]
pub struct PortConst {
    /// Where `PORT` is named.
    pub pos: Pos,
    /// The type as written (`PortSpec`, `kernel::PortSpec`) and where.
    pub ty: Named,
    /// Whether the type is a path ending in `PortSpec`.
    pub is_port_spec: bool,
    /// Where the value is (`PortSpec {` for a struct literal).
    pub value_pos: Pos,
    /// `None` when the value is not a `PortSpec { .. }` literal.
    pub value: Option<PortValue>,
}

/// The fields of a `PortSpec { .. }` literal that must match the trait and `arch.toml`.
#[derive(Debug, Clone)]
pub struct PortValue {
    pub context: Field<Named>,
    pub trait_name: Field<Named>,
    pub methods: Field<Vec<MethodEntry>>,
}

/// A field of a `PortSpec { .. }` literal.
#[derive(Debug, Clone)]
pub enum Field<T> {
    Read(T),
    /// Written, but not in the literal shape the lint can read (a constant, a call, ...).
    Unreadable(Pos),
    /// Not written (a `..base` supplies it).
    Missing,
}

/// One element of `PORT.methods`.
#[derive(Debug, Clone)]
pub enum MethodEntry {
    /// `MethodSpec::idempotent("name")` or `MethodSpec::not_idempotent("name")`.
    Read { name: Named, idempotent: bool },
    /// Anything else; `text` is the source with its whitespace collapsed.
    Unreadable { text: String, pos: Pos },
}

/// Everything the rules need from one file.
#[derive(Debug, Clone, Default)]
pub struct FileFacts {
    /// Relative to the workspace root.
    pub file: String,
    pub text: String,
    pub paths: Vec<PathReference>,
    pub reexports: Vec<Reexport>,
    /// Private `use x as y` / `use x::y` / `extern crate x as y`: local name to first segment.
    pub aliases: Vec<(String, String)>,
    pub entities: Vec<Entity>,
    /// Tables named by `#[derive(DeriveIden)] enum Users { Table, .. }`.
    pub idens: Vec<Named>,
    /// Arguments of `Alias::new("..")`.
    pub alias_names: Vec<Named>,
    pub strings: Vec<StringLiteral>,
    /// Traits outside test code.
    pub traits: Vec<TraitDef>,
    /// `const PORT` items outside test code.
    pub ports: Vec<PortConst>,
}

impl FileFacts {
    pub fn location(&self, pos: Pos) -> Location {
        Location::from_line_column(&self.file, &self.text, pos.line, pos.column, pos.width)
    }
}

/// The parsed Rust files of one crate.
#[derive(Debug, Clone, Default)]
pub struct CrateSources {
    pub files: Vec<FileFacts>,
    /// Files `syn` could not parse (the compiler reports those); relative paths.
    pub unparsed: Vec<String>,
}

/// Reads every `.rs` file under `dir` (skipping `target/`, hidden folders and nested packages),
/// in a stable order.
pub fn scan_crate(root: &Path, dir: &Path) -> std::io::Result<CrateSources> {
    let mut sources = CrateSources::default();
    let walker = WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|entry| {
            if entry.depth() == 0 || !entry.file_type().is_dir() {
                return true;
            }
            let name = entry.file_name().to_string_lossy();
            !(name.starts_with('.')
                || name == "target"
                || entry.path().join("Cargo.toml").is_file())
        });
    for entry in walker {
        let entry = entry.map_err(std::io::Error::other)?;
        if !entry.file_type().is_file() || entry.path().extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(entry.path())?;
        let file = relative(root, entry.path());
        match scan_file(dir, entry.path(), file.clone(), text) {
            Some(facts) => sources.files.push(facts),
            None => sources.unparsed.push(file),
        }
    }
    Ok(sources)
}

/// Parses one file; `None` if it is not valid Rust.
pub fn scan_file(crate_dir: &Path, path: &Path, file: String, text: String) -> Option<FileFacts> {
    let parsed = syn::parse_file(&text);
    let mut facts = FileFacts {
        file,
        ..FileFacts::default()
    };
    if let Ok(ast) = &parsed {
        let file_dir = path.parent().unwrap_or(crate_dir).to_path_buf();
        let mut collector = Collector {
            facts: &mut facts,
            mod_rs: is_mod_rs(crate_dir, path),
            stem: path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            file_dir,
            crate_dir: crate_dir.to_path_buf(),
            inline_modules: Vec::new(),
            // Files outside `src/` are tests, examples, benches or build scripts.
            test_modules: usize::from(!path.starts_with(crate_dir.join("src"))),
        };
        collector.visit_file(ast);
    }
    // Spans of the fallback parser live in a thread-local source map; drop them so scanning a
    // large workspace does not accumulate every file ever parsed.
    proc_macro2::extra::invalidate_current_thread_spans();
    parsed.ok()?;
    facts.text = text;
    Some(facts)
}

/// Crate roots and `mod.rs` files resolve `#[path]` inside inline modules differently from
/// other module files (see the Reference, "The path attribute").
fn is_mod_rs(crate_dir: &Path, path: &Path) -> bool {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    if matches!(name, "mod.rs" | "lib.rs" | "main.rs" | "build.rs") {
        return true;
    }
    let parent = path.parent().and_then(|p| p.strip_prefix(crate_dir).ok());
    matches!(
        parent.and_then(|p| p.to_str()),
        Some("tests" | "examples" | "benches" | "src/bin")
    )
}

/// Resolves `..` and `.` without touching the file system (the target may not exist).
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

struct Collector<'a> {
    facts: &'a mut FileFacts,
    file_dir: PathBuf,
    crate_dir: PathBuf,
    mod_rs: bool,
    stem: String,
    inline_modules: Vec<String>,
    /// How many `#[cfg(test)]` modules enclose the current item (1 for a whole file outside
    /// `src/`): a test's stand-in trait or `PORT` is not the port. `#[cfg(test)]` on the item
    /// itself is checked where it is read.
    test_modules: usize,
}

const INCLUDE_MACROS: [&str; 3] = ["include", "include_str", "include_bytes"];

impl Collector<'_> {
    /// The directory `#[path]` is relative to at the current nesting of inline modules.
    fn module_base(&self) -> PathBuf {
        let mut base = self.file_dir.clone();
        if !self.inline_modules.is_empty() && !self.mod_rs {
            base.push(&self.stem);
        }
        base.extend(&self.inline_modules);
        base
    }

    fn record_path(&mut self, via: &'static str, written: String, resolved: PathBuf, pos: Pos) {
        self.facts.paths.push(PathReference {
            via,
            written,
            resolved: normalize(&resolved),
            pos,
        });
    }

    fn string(&mut self, lit: &LitStr) {
        let span = lit.span();
        self.facts.strings.push(StringLiteral {
            value: lit.value(),
            repr: lit.token().to_string(),
            pos: Pos::of(span),
        });
    }

    /// Handles `include*!(..)` given the macro name, its argument tokens and where the
    /// invocation starts and ends.
    fn include(&mut self, name: &str, tokens: &TokenStream, start: Span, end: Span) {
        let pos = Pos::between(start, end);
        let via = match name {
            "include" => "include!",
            "include_str" => "include_str!",
            _ => "include_bytes!",
        };
        match include_argument(tokens) {
            Some(IncludeArgument::Relative(path)) => {
                let resolved = self.file_dir.join(&path);
                self.record_path(via, path, resolved, pos);
            }
            Some(IncludeArgument::ManifestDir(path)) => {
                let resolved = self.crate_dir.join(path.trim_start_matches(['/', '\\']));
                let written = format!("$CARGO_MANIFEST_DIR{path}");
                self.record_path(via, written, resolved, pos);
            }
            None => {}
        }
    }

    /// Records the path of an `include*!` invocation; other macros are ignored.
    fn include_macro(&mut self, node: &syn::Macro) {
        let name = last_segment(&node.path);
        if INCLUDE_MACROS.contains(&name.as_str()) {
            let start = node
                .path
                .segments
                .first()
                .map_or_else(Span::call_site, |s| s.ident.span());
            self.include(&name, &node.tokens, start, node.delimiter.span().close());
        }
    }

    /// String literals and nested `include*!` calls inside a macro's tokens, which `syn` does
    /// not parse (`format!("SELECT ..")`, `sqlx::query!(..)`, `vec![include_str!(..)]`).
    fn scan_tokens(&mut self, tokens: &TokenStream) {
        let trees: Vec<TokenTree> = tokens.clone().into_iter().collect();
        for (i, tree) in trees.iter().enumerate() {
            match tree {
                TokenTree::Literal(literal) => {
                    if let Lit::Str(lit) = Lit::new(literal.clone()) {
                        self.string(&lit);
                    }
                }
                TokenTree::Group(group) => {
                    let before = |n: usize| i.checked_sub(n).map(|j| &trees[j]);
                    let nested_include = match (before(2), before(1)) {
                        (Some(TokenTree::Ident(ident)), Some(TokenTree::Punct(bang)))
                            if bang.as_char() == '!'
                                && INCLUDE_MACROS.contains(&ident.to_string().as_str()) =>
                        {
                            Some(ident.clone())
                        }
                        _ => None,
                    };
                    if let Some(ident) = nested_include {
                        let (start, end) = (ident.span(), group.span_close());
                        self.include(&ident.to_string(), &group.stream(), start, end);
                    }
                    self.scan_tokens(&group.stream());
                }
                TokenTree::Ident(_) | TokenTree::Punct(_) => {}
            }
        }
    }

    fn use_tree(&mut self, tree: &UseTree, public: bool) {
        match tree {
            UseTree::Group(group) => {
                for item in &group.items {
                    self.use_tree(item, public);
                }
            }
            UseTree::Glob(_) => {}
            _ => {
                let root = use_root(tree);
                if root == "crate" || root == "self" || root == "super" {
                    return;
                }
                if public {
                    let (end, path) = use_path(tree);
                    self.facts.reexports.push(Reexport {
                        root: root.to_string(),
                        path,
                        pos: Pos::between(root.span(), end),
                    });
                } else {
                    let mut leaves = Vec::new();
                    use_leaves(tree, &root.to_string(), &mut leaves);
                    self.facts
                        .aliases
                        .extend(leaves.into_iter().map(|leaf| (leaf, root.to_string())));
                }
            }
        }
    }
}

/// The first ident of a use tree that is not a group or glob.
fn use_root(tree: &UseTree) -> &syn::Ident {
    match tree {
        UseTree::Path(path) => &path.ident,
        UseTree::Name(name) => &name.ident,
        UseTree::Rename(rename) => &rename.ident,
        UseTree::Glob(_) | UseTree::Group(_) => unreachable!("callers handle groups and globs"),
    }
}

/// The span where the use path ends and its text (`a::b::{C, D}`).
fn use_path(tree: &UseTree) -> (Span, String) {
    match tree {
        UseTree::Path(path) => {
            let (end, rest) = use_path(&path.tree);
            (end, format!("{}::{rest}", path.ident))
        }
        UseTree::Name(name) => (name.ident.span(), name.ident.to_string()),
        UseTree::Rename(rename) => (
            rename.rename.span(),
            format!("{} as {}", rename.ident, rename.rename),
        ),
        UseTree::Glob(glob) => (glob.star_token.span, "*".to_owned()),
        UseTree::Group(group) => {
            let items: Vec<String> = group.items.iter().map(|t| use_path(t).1).collect();
            (
                group.brace_token.span.close(),
                format!("{{{}}}", items.join(", ")),
            )
        }
    }
}

/// The local names a private `use` introduces (`use a::b;` → `b`, `use a::{self as c}` → `c`).
fn use_leaves(tree: &UseTree, last: &str, out: &mut Vec<String>) {
    match tree {
        UseTree::Path(path) => use_leaves(&path.tree, &path.ident.to_string(), out),
        UseTree::Name(name) if name.ident == "self" => out.push(last.to_owned()),
        UseTree::Name(name) => out.push(name.ident.to_string()),
        UseTree::Rename(rename) => out.push(rename.rename.to_string()),
        UseTree::Glob(_) => {}
        UseTree::Group(group) => {
            for item in &group.items {
                use_leaves(item, last, out);
            }
        }
    }
}

enum IncludeArgument {
    /// Relative to the including file.
    Relative(String),
    /// `concat!(env!("CARGO_MANIFEST_DIR"), "..")`: relative to the crate root.
    ManifestDir(String),
}

/// Reads the argument of an `include*!`: a literal, or the manifest-dir `concat!` idiom. Other
/// forms (`env!("OUT_DIR")`, constants) are generated files or unknowable, and are skipped.
fn include_argument(tokens: &TokenStream) -> Option<IncludeArgument> {
    let trees: Vec<TokenTree> = tokens.clone().into_iter().collect();
    match trees.as_slice() {
        [TokenTree::Literal(literal), ..] => match Lit::new(literal.clone()) {
            Lit::Str(lit) => Some(IncludeArgument::Relative(lit.value())),
            _ => None,
        },
        [
            TokenTree::Ident(concat),
            TokenTree::Punct(bang),
            TokenTree::Group(args),
            ..,
        ] if concat == "concat" && bang.as_char() == '!' => {
            let parts: Vec<TokenTree> = args.stream().into_iter().collect();
            let [
                TokenTree::Ident(env),
                TokenTree::Punct(bang),
                TokenTree::Group(var),
                rest @ ..,
            ] = parts.as_slice()
            else {
                return None;
            };
            let var = var.stream().to_string();
            if env != "env" || bang.as_char() != '!' || var.trim() != "\"CARGO_MANIFEST_DIR\"" {
                return None;
            }
            let mut path = String::new();
            for tree in rest {
                if let TokenTree::Literal(literal) = tree
                    && let Lit::Str(lit) = Lit::new(literal.clone())
                {
                    path.push_str(&lit.value());
                }
            }
            Some(IncludeArgument::ManifestDir(path))
        }
        _ => None,
    }
}

fn last_segment(path: &syn::Path) -> String {
    path.segments
        .last()
        .map(|s| s.ident.to_string())
        .unwrap_or_default()
}

/// `#[path = ".."]`, also inside `#[cfg_attr(.., path = "..")]`.
fn path_attribute(attr: &syn::Attribute) -> Option<LitStr> {
    fn from_meta(meta: &Meta) -> Option<LitStr> {
        match meta {
            Meta::NameValue(nv) if nv.path.is_ident("path") => match &nv.value {
                Expr::Lit(syn::ExprLit {
                    lit: Lit::Str(lit), ..
                }) => Some(lit.clone()),
                _ => None,
            },
            Meta::List(list) if list.path.is_ident("cfg_attr") => list
                .parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)
                .ok()?
                .iter()
                .skip(1)
                .find_map(from_meta),
            _ => None,
        }
    }
    from_meta(&attr.meta)
}

/// The `name = "value"` pairs of `#[sea_orm(..)]` attributes.
fn sea_orm_values(attrs: &[syn::Attribute]) -> Vec<(String, LitStr)> {
    let mut values = Vec::new();
    for attr in attrs.iter().filter(|a| a.path().is_ident("sea_orm")) {
        let Ok(metas) = attr.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)
        else {
            continue;
        };
        for meta in metas {
            if let Meta::NameValue(nv) = meta
                && let Expr::Lit(syn::ExprLit {
                    lit: Lit::Str(lit), ..
                }) = nv.value
                && let Some(name) = nv.path.get_ident()
            {
                values.push((name.to_string(), lit));
            }
        }
    }
    values
}

fn derives(attrs: &[syn::Attribute], wanted: &[&str]) -> bool {
    attrs
        .iter()
        .filter(|a| a.path().is_ident("derive"))
        .filter_map(|a| {
            a.parse_args_with(Punctuated::<syn::Path, Token![,]>::parse_terminated)
                .ok()
        })
        .flatten()
        .any(|path| wanted.contains(&last_segment(&path).as_str()))
}

/// sea-orm's `DeriveIden` naming: `UserRoles` → `user_roles`, `HTTPLogs` → `http_logs`.
pub fn snake_case(ident: &str) -> String {
    let chars: Vec<char> = ident.chars().collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() {
            let prev = i.checked_sub(1).map(|j| chars[j]);
            let next = chars.get(i + 1);
            let boundary = match prev {
                Some(p) if p.is_lowercase() || p.is_ascii_digit() => true,
                Some(p) if p.is_uppercase() => next.is_some_and(|n| n.is_lowercase()),
                _ => false,
            };
            if boundary && !out.ends_with('_') {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// `#[cfg(test)]`.
fn is_cfg_test(attr: &syn::Attribute) -> bool {
    attr.path().is_ident("cfg")
        && attr
            .parse_args::<Meta>()
            .is_ok_and(|meta| meta.path().is_ident("test"))
}

fn named_ident(ident: &syn::Ident) -> Named {
    Named {
        value: ident.unraw().to_string(),
        pos: Pos::of(ident.span()),
    }
}

/// The source text of a node with runs of whitespace collapsed to one space, so that it reads
/// on one line and does not change when the code is reformatted.
fn source_text(node: &impl Spanned) -> String {
    node.span()
        .source_text()
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn last_is(path: &syn::Path, name: &str) -> bool {
    path.segments.last().is_some_and(|s| s.ident == name)
}

/// Reads a `const PORT: PortSpec = PortSpec { .. }` as far as it is written literally.
fn port_const(node: &syn::ItemConst) -> PortConst {
    let is_port_spec = matches!(
        &*node.ty,
        syn::Type::Path(ty) if ty.qself.is_none() && last_is(&ty.path, "PortSpec")
    );
    // A multi-line literal is pointed at by its `PortSpec {`.
    let value_pos = match &*node.expr {
        Expr::Struct(literal) => Pos::between(literal.path.span(), literal.brace_token.span.open()),
        other => Pos::of(other.span()),
    };
    let value = match &*node.expr {
        Expr::Struct(literal) if literal.qself.is_none() && last_is(&literal.path, "PortSpec") => {
            Some(PortValue {
                context: struct_field(literal, "context", string_field),
                trait_name: struct_field(literal, "trait_name", string_field),
                methods: struct_field(literal, "methods", methods_field),
            })
        }
        _ => None,
    };
    PortConst {
        pos: Pos::of(node.ident.span()),
        ty: Named {
            value: source_text(&node.ty),
            pos: Pos::of(node.ty.span()),
        },
        is_port_spec,
        value_pos,
        value,
    }
}

/// The field `name` of a struct literal, read by `read` (`None`: not in a readable shape).
fn struct_field<T>(
    literal: &syn::ExprStruct,
    name: &str,
    read: impl Fn(&Expr) -> Option<T>,
) -> Field<T> {
    let field = literal
        .fields
        .iter()
        .find(|f| matches!(&f.member, syn::Member::Named(ident) if ident == name));
    match field {
        None => Field::Missing,
        Some(field) => read(&field.expr).map_or_else(
            || Field::Unreadable(Pos::of(field.expr.span())),
            Field::Read,
        ),
    }
}

fn string_field(expr: &Expr) -> Option<Named> {
    match expr {
        Expr::Lit(syn::ExprLit {
            lit: Lit::Str(lit), ..
        }) => Some(Named {
            value: lit.value(),
            pos: Pos::of(lit.span()),
        }),
        _ => None,
    }
}

/// `&[entry, ..]`; each entry is read on its own, so one odd entry does not hide the others.
fn methods_field(expr: &Expr) -> Option<Vec<MethodEntry>> {
    let Expr::Reference(reference) = expr else {
        return None;
    };
    let Expr::Array(array) = &*reference.expr else {
        return None;
    };
    Some(array.elems.iter().map(method_entry).collect())
}

fn method_entry(expr: &Expr) -> MethodEntry {
    if let Expr::Call(call) = expr
        && let Expr::Path(func) = &*call.func
        && func.qself.is_none()
        && let [.., ty, constructor] = Vec::from_iter(&func.path.segments).as_slice()
        && ty.ident == "MethodSpec"
        && (constructor.ident == "idempotent" || constructor.ident == "not_idempotent")
        && let [
            Expr::Lit(syn::ExprLit {
                lit: Lit::Str(lit), ..
            }),
        ] = Vec::from_iter(&call.args).as_slice()
    {
        return MethodEntry::Read {
            name: Named {
                value: lit.value(),
                pos: Pos::of(lit.span()),
            },
            idempotent: constructor.ident == "idempotent",
        };
    }
    MethodEntry::Unreadable {
        text: source_text(expr),
        pos: Pos::of(expr.span()),
    }
}

impl<'ast> Visit<'ast> for Collector<'_> {
    // Attributes are read by the items that own them; descending would scan doc comments
    // (`#[doc = ".."]`) as string literals. Only `#[doc = include_str!("..")]` matters here.
    fn visit_attribute(&mut self, node: &'ast syn::Attribute) {
        if let Meta::NameValue(nv) = &node.meta
            && let Expr::Macro(mac) = &nv.value
        {
            self.include_macro(&mac.mac);
        }
    }

    fn visit_item_mod(&mut self, node: &'ast syn::ItemMod) {
        for lit in node.attrs.iter().filter_map(path_attribute) {
            let resolved = self.module_base().join(lit.value());
            self.record_path("#[path]", lit.value(), resolved, Pos::of(lit.span()));
        }
        let test = node.attrs.iter().any(is_cfg_test);
        self.test_modules += usize::from(test);
        if node.content.is_some() {
            self.inline_modules.push(node.ident.to_string());
            visit::visit_item_mod(self, node);
            self.inline_modules.pop();
        } else {
            visit::visit_item_mod(self, node);
        }
        self.test_modules -= usize::from(test);
    }

    fn visit_item_trait(&mut self, node: &'ast syn::ItemTrait) {
        if self.test_modules == 0 && !node.attrs.iter().any(is_cfg_test) {
            let methods = node
                .items
                .iter()
                .filter_map(|item| match item {
                    syn::TraitItem::Fn(method) => Some(named_ident(&method.sig.ident)),
                    _ => None,
                })
                .collect();
            self.facts.traits.push(TraitDef {
                name: named_ident(&node.ident),
                methods,
            });
        }
        visit::visit_item_trait(self, node);
    }

    fn visit_item_const(&mut self, node: &'ast syn::ItemConst) {
        if self.test_modules == 0 && node.ident == "PORT" && !node.attrs.iter().any(is_cfg_test) {
            self.facts.ports.push(port_const(node));
        }
        visit::visit_item_const(self, node);
    }

    fn visit_item_use(&mut self, node: &'ast syn::ItemUse) {
        self.use_tree(&node.tree, matches!(node.vis, Visibility::Public(_)));
        visit::visit_item_use(self, node);
    }

    fn visit_item_extern_crate(&mut self, node: &'ast syn::ItemExternCrate) {
        let root = node.ident.to_string();
        if matches!(node.vis, Visibility::Public(_)) {
            let end = node
                .rename
                .as_ref()
                .map_or(node.ident.span(), |(_, r)| r.span());
            self.facts.reexports.push(Reexport {
                path: format!("extern crate {root}"),
                pos: Pos::between(node.extern_token.span, end),
                root,
            });
        } else if let Some((_, rename)) = &node.rename {
            self.facts.aliases.push((rename.to_string(), root));
        }
        visit::visit_item_extern_crate(self, node);
    }

    fn visit_item_struct(&mut self, node: &'ast syn::ItemStruct) {
        let mut entity = Entity::default();
        for (name, lit) in sea_orm_values(&node.attrs) {
            let named = Named {
                value: lit.value(),
                pos: Pos::of(lit.span()),
            };
            match name.as_str() {
                "table_name" => entity.table = Some(named),
                "schema_name" => entity.schema = Some(named),
                _ => {}
            }
        }
        if entity.table.is_some() || entity.schema.is_some() {
            self.facts.entities.push(entity);
        }
        visit::visit_item_struct(self, node);
    }

    fn visit_item_enum(&mut self, node: &'ast syn::ItemEnum) {
        if derives(&node.attrs, &["DeriveIden", "Iden"])
            && let Some(table) = node.variants.iter().find(|v| v.ident == "Table")
        {
            let renamed = sea_orm_values(&table.attrs)
                .into_iter()
                .chain(sea_orm_values(&node.attrs))
                .find(|(name, _)| name == "iden")
                .map(|(_, lit)| lit);
            let named = match renamed {
                Some(lit) => Named {
                    value: lit.value(),
                    pos: Pos::of(lit.span()),
                },
                None => Named {
                    value: snake_case(&node.ident.to_string()),
                    pos: Pos::of(node.ident.span()),
                },
            };
            self.facts.idens.push(named);
        }
        visit::visit_item_enum(self, node);
    }

    fn visit_expr_call(&mut self, node: &'ast ExprCall) {
        if let Expr::Path(path) = &*node.func {
            let segments: Vec<String> = path
                .path
                .segments
                .iter()
                .map(|s| s.ident.to_string())
                .collect();
            if segments.ends_with(&["Alias".to_owned(), "new".to_owned()])
                && let Some(Expr::Lit(syn::ExprLit {
                    lit: Lit::Str(lit), ..
                })) = node.args.first()
            {
                self.facts.alias_names.push(Named {
                    value: lit.value(),
                    pos: Pos::of(lit.span()),
                });
            }
        }
        visit::visit_expr_call(self, node);
    }

    fn visit_macro(&mut self, node: &'ast syn::Macro) {
        self.include_macro(node);
        self.scan_tokens(&node.tokens);
        visit::visit_macro(self, node);
    }

    fn visit_lit_str(&mut self, node: &'ast LitStr) {
        self.string(node);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(path: &str, text: &str) -> FileFacts {
        let dir = Path::new("/ws/crates/orders");
        scan_file(dir, &dir.join(path), path.to_owned(), text.to_owned()).unwrap()
    }

    #[test]
    fn path_attributes_and_includes_are_resolved() {
        let facts = scan(
            "src/lib.rs",
            r#"
#[path = "../../other/src/x.rs"]
mod x;
#[cfg_attr(unix, path = "unix.rs")]
mod sys;
mod inline {
    #[path = "deep.rs"]
    mod deep;
}
const A: &str = include_str!("../../../secrets.txt");
const B: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/data/b.bin"));
static C: &[&str] = &[include_str!("local.sql")];
#[doc = include_str!("../../../README.md")]
struct D;
"#,
        );
        let paths: Vec<_> = facts
            .paths
            .iter()
            .map(|p| (p.via, p.resolved.display().to_string()))
            .collect();
        assert_eq!(
            paths,
            [
                ("#[path]", "/ws/crates/other/src/x.rs".to_owned()),
                ("#[path]", "/ws/crates/orders/src/unix.rs".to_owned()),
                ("#[path]", "/ws/crates/orders/src/inline/deep.rs".to_owned()),
                ("include_str!", "/ws/secrets.txt".to_owned()),
                ("include_bytes!", "/ws/crates/orders/data/b.bin".to_owned()),
                ("include_str!", "/ws/crates/orders/src/local.sql".to_owned()),
                ("include_str!", "/ws/README.md".to_owned()),
            ]
        );
        assert_eq!(facts.paths[0].pos.line, 2);
    }

    #[test]
    fn non_mod_rs_files_nest_inline_modules_under_their_stem() {
        let facts = scan("src/a.rs", "mod inner { #[path = \"x.rs\"] mod x; }");
        assert_eq!(
            facts.paths[0].resolved,
            Path::new("/ws/crates/orders/src/a/inner/x.rs")
        );
    }

    #[test]
    fn reexports_and_aliases() {
        let facts = scan(
            "src/lib.rs",
            r#"
pub use catalog_api::Product;
pub use {kernel::Money, catalog_api::*};
pub(crate) use catalog_api::Hidden;
use catalog_api as cat;
use catalog_api::types::{self as t, Price};
pub extern crate catalog_api as catalog;
pub use crate::local::Thing;
"#,
        );
        let reexports: Vec<_> = facts
            .reexports
            .iter()
            .map(|r| (r.root.as_str(), r.path.as_str()))
            .collect();
        assert_eq!(
            reexports,
            [
                ("catalog_api", "catalog_api::Product"),
                ("kernel", "kernel::Money"),
                ("catalog_api", "catalog_api::*"),
                ("catalog_api", "extern crate catalog_api"),
            ]
        );
        let aliases: Vec<_> = facts
            .aliases
            .iter()
            .map(|(a, r)| (a.as_str(), r.as_str()))
            .collect();
        assert_eq!(
            aliases,
            [
                ("Hidden", "catalog_api"),
                ("cat", "catalog_api"),
                ("t", "catalog_api"),
                ("Price", "catalog_api"),
            ]
        );
        let first = facts.reexports[0].pos;
        assert_eq!((first.line, first.column, first.width), (2, 9, 20));
    }

    #[test]
    fn sea_orm_entities_idens_aliases_and_strings() {
        let facts = scan(
            "src/entity.rs",
            r#"
/// SELECT * FROM doc_comments_are_not_scanned
#[derive(Clone, Debug, DeriveEntityModel)]
#[sea_orm(table_name = "users", schema_name = "auth")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: i32,
}

#[derive(DeriveIden)]
enum OrderLines { Table, Id }

#[derive(sea_orm::DeriveIden)]
enum Renamed { #[sea_orm(iden = "things")] Table }

fn f() {
    let _ = Alias::new("auth");
    let _ = format!("SELECT * FROM {} WHERE x = 1", "t");
    let _ = "user not found";
}
"#,
        );
        let entity = &facts.entities[0];
        assert_eq!(entity.table.as_ref().unwrap().value, "users");
        assert_eq!(entity.schema.as_ref().unwrap().value, "auth");
        let idens: Vec<_> = facts.idens.iter().map(|n| n.value.as_str()).collect();
        assert_eq!(idens, ["order_lines", "things"]);
        assert_eq!(facts.alias_names[0].value, "auth");
        let strings: Vec<_> = facts.strings.iter().map(|s| s.value.as_str()).collect();
        assert_eq!(
            strings,
            [
                "auth",
                "SELECT * FROM {} WHERE x = 1",
                "t",
                "user not found"
            ]
        );
    }

    #[test]
    fn traits_and_port_specs_outside_test_code() {
        let facts = scan(
            "src/lib.rs",
            r#"
pub trait OrdersApi: Send {
    async fn place_order(&self);
    fn r#type(&self) -> u8 { 0 }
    const LIMIT: u8;
}

pub const PORT: kernel::PortSpec = kernel::PortSpec {
    context: "orders",
    trait_name: NAME,
    version: 1,
    methods: &[
        MethodSpec::idempotent("type"),
        MethodSpec::not_idempotent("place_order"),
        MethodSpec::idempotent(
            PLACE
        ),
    ],
};

#[cfg(test)]
mod tests {
    trait OrdersApi {}
    const PORT: PortSpec = PortSpec { context: "test", trait_name: "T", version: 1, methods: &[] };
}

#[cfg(test)]
const PORT: u8 = 0;
"#,
        );
        let traits: Vec<(&str, Vec<&str>)> = facts
            .traits
            .iter()
            .map(|t| {
                let methods = t.methods.iter().map(|m| m.value.as_str()).collect();
                (t.name.value.as_str(), methods)
            })
            .collect();
        assert_eq!(traits, [("OrdersApi", vec!["place_order", "type"])]);
        let [port] = facts.ports.as_slice() else {
            panic!("one PORT outside tests: {:?}", facts.ports);
        };
        assert!(port.is_port_spec);
        assert_eq!(port.ty.value, "kernel::PortSpec");
        let value = port.value.as_ref().unwrap();
        assert!(matches!(&value.context, Field::Read(n) if n.value == "orders"));
        assert!(matches!(value.trait_name, Field::Unreadable(pos) if pos.line == 10));
        let Field::Read(entries) = &value.methods else {
            panic!("methods are readable");
        };
        let entries: Vec<String> = entries
            .iter()
            .map(|entry| match entry {
                MethodEntry::Read { name, idempotent } => format!("{} {idempotent}", name.value),
                MethodEntry::Unreadable { text, .. } => format!("? {text}"),
            })
            .collect();
        assert_eq!(
            entries,
            [
                "type true",
                "place_order false",
                "? MethodSpec::idempotent( PLACE )"
            ]
        );
    }

    #[test]
    fn files_outside_src_are_test_code() {
        let facts = scan(
            "tests/port.rs",
            "trait CatalogApi {}
const PORT: u8 = 0;",
        );
        assert!(facts.traits.is_empty() && facts.ports.is_empty());
    }

    #[test]
    fn snake_case_matches_sea_orm() {
        assert_eq!(snake_case("Users"), "users");
        assert_eq!(snake_case("OrderLines"), "order_lines");
        assert_eq!(snake_case("HTTPLogs"), "http_logs");
        assert_eq!(snake_case("Table2Name"), "table2_name");
    }

    #[test]
    fn invalid_rust_is_reported_as_unparsed() {
        let dir = Path::new("/ws/crates/orders");
        assert!(scan_file(dir, &dir.join("src/lib.rs"), "x".into(), "fn (".into()).is_none());
    }
}
