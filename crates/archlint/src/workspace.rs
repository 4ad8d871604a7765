//! The workspace as Cargo sees it: members and every declared dependency (normal, dev, build,
//! optional, target-specific), from `cargo metadata --no-deps`, plus the manifest line that
//! declares each dependency.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use cargo_metadata::{DependencyKind, MetadataCommand};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::diagnostic::Location;

/// Why the workspace could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error("`cargo metadata` failed for the workspace at {root}")]
    Metadata {
        root: String,
        #[source]
        source: cargo_metadata::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// How a dependency is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DepKind {
    Normal,
    Dev,
    Build,
}

impl DepKind {
    /// The manifest table that declares this kind.
    fn table(self) -> &'static str {
        match self {
            DepKind::Normal => "dependencies",
            DepKind::Dev => "dev-dependencies",
            DepKind::Build => "build-dependencies",
        }
    }

    /// The legacy spelling cargo still accepts.
    fn legacy_table(self) -> &'static str {
        match self {
            DepKind::Normal => "dependencies",
            DepKind::Dev => "dev_dependencies",
            DepKind::Build => "build_dependencies",
        }
    }
}

impl fmt::Display for DepKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DepKind::Normal => "dependency",
            DepKind::Dev => "dev-dependency",
            DepKind::Build => "build-dependency",
        })
    }
}

/// One declared dependency of a member.
#[derive(Debug, Clone)]
pub struct Dependency {
    /// The package name (`catalog-api`), whatever it is renamed to.
    pub name: String,
    /// The name the code uses (`catalog_api`, or the rename).
    pub extern_name: String,
    pub kind: DepKind,
    pub optional: bool,
    /// `cfg(...)` or a target triple, for target-specific dependencies.
    pub target: Option<String>,
    /// The manifest line that declares it.
    pub location: Location,
}

impl Dependency {
    /// "dev-dependency", "optional dependency for cfg(unix)".
    pub fn describe_kind(&self) -> String {
        let mut text = String::new();
        if self.optional {
            text.push_str("optional ");
        }
        text.push_str(&self.kind.to_string());
        if let Some(target) = &self.target {
            text.push_str(" for ");
            text.push_str(target);
        }
        text
    }
}

/// One workspace member.
#[derive(Debug, Clone)]
pub struct Member {
    pub name: String,
    /// The folder holding its `Cargo.toml`.
    pub dir: PathBuf,
    /// `Cargo.toml`, relative to the workspace root.
    pub manifest: String,
    /// Where the manifest says `name = "..."`.
    pub name_location: Location,
    pub dependencies: Vec<Dependency>,
}

/// The members of a workspace.
#[derive(Debug, Clone)]
pub struct Workspace {
    pub root: PathBuf,
    pub members: Vec<Member>,
}

impl Workspace {
    /// Runs `cargo metadata --no-deps --offline` for the workspace whose root manifest is
    /// `<root>/Cargo.toml`. `--no-deps` lists every declared dependency without resolving, so
    /// it needs neither the network nor a lockfile, and is fast.
    pub fn load(root: &Path) -> Result<Self, WorkspaceError> {
        let metadata = MetadataCommand::new()
            .manifest_path(root.join("Cargo.toml"))
            .no_deps()
            .other_options(vec!["--offline".to_owned()])
            .exec()
            .map_err(|source| WorkspaceError::Metadata {
                root: root.display().to_string(),
                source,
            })?;
        let root = metadata.workspace_root.clone().into_std_path_buf();
        let mut members = Vec::new();
        for package in metadata.workspace_packages() {
            let manifest_path = package.manifest_path.clone().into_std_path_buf();
            let manifest = relative(&root, &manifest_path);
            let text =
                std::fs::read_to_string(&manifest_path).map_err(|source| WorkspaceError::Read {
                    path: manifest.clone(),
                    source,
                })?;
            let locator = ManifestLocator::new(&manifest, &text);
            let dependencies = package
                .dependencies
                .iter()
                .map(|dep| {
                    let kind = match dep.kind {
                        DependencyKind::Development => DepKind::Dev,
                        DependencyKind::Build => DepKind::Build,
                        _ => DepKind::Normal,
                    };
                    let key = dep.rename.clone().unwrap_or_else(|| dep.name.clone());
                    let target = dep.target.as_ref().map(ToString::to_string);
                    Dependency {
                        name: dep.name.clone(),
                        extern_name: key.replace('-', "_"),
                        kind,
                        optional: dep.optional,
                        location: locator.dependency(&key, kind, target.as_deref()),
                        target,
                    }
                })
                .collect();
            members.push(Member {
                name: package.name.to_string(),
                dir: manifest_path
                    .parent()
                    .map_or_else(|| root.clone(), Path::to_path_buf),
                name_location: locator.package_name(),
                manifest,
                dependencies,
            });
        }
        members.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Self { root, members })
    }

    pub fn member(&self, name: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.name == name)
    }

    /// `path` relative to the workspace root, `/`-separated.
    pub fn relative(&self, path: &Path) -> String {
        relative(&self.root, path)
    }
}

/// `path` relative to `root` with `/` separators (absolute if it is outside `root`).
pub(crate) fn relative(root: &Path, path: &Path) -> String {
    let Ok(relative) = path.strip_prefix(root) else {
        return path.display().to_string();
    };
    relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// Finds the line that declares a dependency, using the spans of a span-preserving TOML parse
/// (handles `foo = ...`, `foo.workspace = true`, `[dependencies.foo]` and target tables).
struct ManifestLocator<'a> {
    file: &'a str,
    text: &'a str,
    table: Option<DeTable<'a>>,
}

impl<'a> ManifestLocator<'a> {
    fn new(file: &'a str, text: &'a str) -> Self {
        // Cargo already parsed the manifest successfully; a failure here only loses positions.
        let table = DeTable::parse(text).ok().map(Spanned::into_inner);
        Self { file, text, table }
    }

    fn location(&self, span: Range<usize>) -> Location {
        Location::from_span(self.file, self.text, span)
    }

    fn package_name(&self) -> Location {
        let span = self
            .table
            .as_ref()
            .and_then(|root| lookup(root, "package"))
            .and_then(|package| lookup_key(package, "name"))
            .unwrap_or(0..0);
        self.location(span)
    }

    fn dependency(&self, key: &str, kind: DepKind, target: Option<&str>) -> Location {
        let Some(root) = &self.table else {
            return self.location(0..0);
        };
        let in_table = |table: &DeTable<'_>| {
            [kind.table(), kind.legacy_table()]
                .into_iter()
                .filter_map(|name| lookup(table, name))
                .find_map(|deps| lookup_key(deps, key))
        };
        let span = match target {
            None => in_table(root),
            Some(target) => lookup(root, "target").and_then(|targets| {
                // Cargo prints the platform as written; fall back to any target table.
                lookup(targets, target).and_then(&in_table).or_else(|| {
                    targets
                        .values()
                        .find_map(|t| as_table(t).and_then(&in_table))
                })
            }),
        };
        self.location(span.unwrap_or(0..0))
    }
}

fn as_table<'b, 'a>(value: &'b Spanned<DeValue<'a>>) -> Option<&'b DeTable<'a>> {
    match value.get_ref() {
        DeValue::Table(table) => Some(table),
        _ => None,
    }
}

fn lookup<'b, 'a>(table: &'b DeTable<'a>, key: &str) -> Option<&'b DeTable<'a>> {
    table
        .iter()
        .find(|(k, _)| k.get_ref().as_ref() == key)
        .and_then(|(_, v)| as_table(v))
}

fn lookup_key(table: &DeTable<'_>, key: &str) -> Option<Range<usize>> {
    table
        .keys()
        .find(|k| k.get_ref().as_ref() == key)
        .map(Spanned::span)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = r#"[package]
name = "orders"

[dependencies]
kernel.workspace = true
catalog-api = { workspace = true }

[dependencies.payments-api]
path = "../payments-api"

[dev-dependencies]
testkit = { path = "../testkit" }

[target.'cfg(unix)'.build-dependencies]
cc = "1"
"#;

    fn line(key: &str, kind: DepKind, target: Option<&str>) -> (usize, usize, usize) {
        let locator = ManifestLocator::new("Cargo.toml", MANIFEST);
        let line = locator.dependency(key, kind, target).line.unwrap();
        (line.number, line.column, line.width)
    }

    #[test]
    fn finds_each_declaration_form() {
        assert_eq!(line("kernel", DepKind::Normal, None), (5, 1, 6));
        assert_eq!(line("catalog-api", DepKind::Normal, None), (6, 1, 11));
        assert_eq!(line("payments-api", DepKind::Normal, None), (8, 15, 12));
        assert_eq!(line("testkit", DepKind::Dev, None), (12, 1, 7));
        assert_eq!(line("cc", DepKind::Build, Some("cfg(unix)")), (15, 1, 2));
        assert_eq!(line("cc", DepKind::Build, Some("cfg(other)")), (15, 1, 2));
        let locator = ManifestLocator::new("Cargo.toml", MANIFEST);
        assert_eq!(locator.package_name().line_column(), Some((2, 1)));
    }
}
