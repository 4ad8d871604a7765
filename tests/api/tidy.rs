//! House rules that can be checked, checked (in the spirit of rust-analyzer's `tidy`): every
//! module says what it is for, every crate takes its versions and lints from the workspace
//! and is never published, plain `cargo test` at the root tests every crate, only a
//! context's `store` writes SQL, no package, archive, binary or oversized file gets into the
//! repository, every repository path the docs name exists, and the configuration reference
//! lists every setting.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the workspace root")
}

/// The workspace's own source files, fixture workspaces and build output excluded.
fn rust_files() -> Vec<PathBuf> {
    ["app", "crates", "migrations", "tests"]
        .iter()
        .flat_map(|dir| walkdir::WalkDir::new(root().join(dir)))
        .filter_map(Result::ok)
        .map(walkdir::DirEntry::into_path)
        .filter(|path| path.extension().is_some_and(|ext| ext == "rs"))
        .filter(|path| {
            !path
                .components()
                .any(|c| c.as_os_str() == "fixtures" || c.as_os_str() == "target")
        })
        .collect()
}

fn metadata() -> cargo_metadata::Metadata {
    cargo_metadata::MetadataCommand::new()
        .manifest_path(root().join("Cargo.toml"))
        .no_deps()
        .exec()
        .expect("cargo metadata")
}

#[test]
fn every_module_starts_with_a_doc_line() {
    let files = rust_files();
    assert!(files.len() > 100, "found only {} files", files.len());
    let undocumented: Vec<_> = files
        .iter()
        .filter(|path| {
            let text = std::fs::read_to_string(path).expect("readable");
            !text.starts_with("//!")
        })
        .collect();
    assert!(
        undocumented.is_empty(),
        "modules without a `//!` line: {undocumented:#?}"
    );
}

#[test]
fn every_crate_takes_versions_and_lints_from_the_workspace() {
    let metadata = metadata();
    for package in metadata.workspace_packages() {
        let manifest = std::fs::read_to_string(&package.manifest_path).expect("readable");
        let manifest: toml::Table = manifest.parse().expect("valid TOML");
        let name = &package.name;
        assert_eq!(
            package.publish,
            Some(vec![]),
            "{name} must set publish = false"
        );
        assert_eq!(
            manifest["lints"]["workspace"].as_bool(),
            Some(true),
            "{name} must use [lints] workspace = true"
        );
        for table in ["dependencies", "dev-dependencies", "build-dependencies"] {
            let Some(dependencies) = manifest.get(table).and_then(toml::Value::as_table) else {
                continue;
            };
            for (dependency, spec) in dependencies {
                let pinned_here = match spec {
                    toml::Value::String(_) => true,
                    toml::Value::Table(spec) => spec.contains_key("version"),
                    _ => false,
                };
                assert!(
                    !pinned_here,
                    "{name}: pin `{dependency}` in [workspace.dependencies] and use `workspace = true`"
                );
            }
        }
    }
}

/// `cargo test` and `cargo build` at the root act on the default members; `cargo run` needs
/// exactly one binary among them. So every crate is a default member except tooling that
/// has a binary of its own (run with `-p`).
#[test]
fn plain_cargo_test_covers_every_crate() {
    let metadata = metadata();
    let mut missing: Vec<_> = metadata
        .workspace_packages()
        .into_iter()
        .filter(|package| !metadata.workspace_default_members.contains(&package.id))
        .map(|package| package.name.to_string())
        .collect();
    missing.sort();
    assert_eq!(
        missing,
        ["archlint", "contracts"],
        "not in default-members (root Cargo.toml)"
    );
    let binaries: Vec<_> = metadata
        .workspace_packages()
        .into_iter()
        .filter(|package| metadata.workspace_default_members.contains(&package.id))
        .flat_map(|package| package.targets.iter().filter(|target| target.is_bin()))
        .map(|target| target.name.clone())
        .collect();
    assert_eq!(binaries, ["shop"], "`cargo run` must find exactly the shop");
}

/// The contexts whose sources the "one internal shape" rule applies to.
const CONTEXT_CRATES: [&str; 5] = ["auth", "catalog", "orders", "payments", "notifications"];

/// What a context's modules other than `store` may take from sea-orm: a connection to pass
/// on, a transaction to begin and commit, and the error type. Queries, entities,
/// expressions and active models belong to `store`.
const SEA_ORM_OUTSIDE_STORE: [&str; 4] = [
    "DatabaseConnection",
    "DatabaseTransaction",
    "TransactionTrait",
    "DbErr",
];

/// The first path segment of every `sea_orm::...` a source names, use trees included
/// (`sea_orm::{A, B::C}` names `A` and `B`).
fn sea_orm_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("sea_orm::") {
        rest = &rest[at + "sea_orm::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let first = item.trim().split("::").next().unwrap_or("").trim();
                if !first.is_empty() {
                    names.push(first.to_owned());
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            names.push(name);
        }
    }
    names
}

/// One internal shape per context: `store` owns the SQL (entities, queries, codecs),
/// `service` orchestrates, `domain` decides. So outside `store`, a context's source may name
/// sea-orm only for connections, transactions and errors.
#[test]
fn only_a_contexts_store_writes_sql() {
    let mut offences = Vec::new();
    for context in CONTEXT_CRATES {
        let src = root().join("crates").join(context).join("src");
        for entry in walkdir::WalkDir::new(&src)
            .into_iter()
            .filter_map(Result::ok)
        {
            let path = entry.path();
            let is_store = path.file_stem().is_some_and(|stem| stem == "store")
                || path.components().any(|c| c.as_os_str() == "store");
            if is_store || path.extension().is_none_or(|ext| ext != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(path).expect("readable");
            for name in sea_orm_names(&text) {
                if !SEA_ORM_OUTSIDE_STORE.contains(&name.as_str()) {
                    offences.push(format!(
                        "{}: sea_orm::{name}",
                        path.strip_prefix(root()).unwrap_or(path).display()
                    ));
                }
            }
        }
    }
    assert!(
        offences.is_empty(),
        "SQL outside a context's `store` module:\n  {}\nMove the query into the context's \
         store.rs as a function taking `&impl ConnectionTrait`, and call it from here.",
        offences.join("\n  ")
    );
}

#[test]
fn sea_orm_names_are_read_from_paths_and_use_trees() {
    assert_eq!(
        sea_orm_names(
            "use sea_orm::{DatabaseConnection, sea_query::Expr};\nlet t: sea_orm::DbErr;"
        ),
        ["DatabaseConnection", "sea_query", "DbErr"]
    );
}

/// The allow-list of the repository hygiene checks, at the workspace root.
const ALLOW_LIST: &str = "tidy.toml";

/// Larger files weigh on every clone forever; data that big is generated, not committed.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// How much of a file is searched for a NUL byte: what git itself looks at to call a file
/// binary.
const BINARY_PROBE_BYTES: u64 = 8 * 1024;

/// Endings of file names the project never makes: packages, archives and compressed files,
/// compiled code and libraries, databases. Longer endings come first, so that a message names
/// `.tar.gz` rather than `.gz`.
const FOREIGN_EXTENSIONS: &[&[&str]] = &[
    // Packages of languages and systems.
    &[
        ".whl", ".egg", ".gem", ".crate", ".jar", ".war", ".ear", ".nupkg", ".deb", ".rpm", ".apk",
        ".msi", ".dmg",
    ],
    // Archives and compressed files.
    &[
        ".tar.gz", ".tar.bz2", ".tar.xz", ".tar.zst", ".tgz", ".tbz2", ".txz", ".tar", ".zip",
        ".7z", ".rar", ".xz", ".bz2", ".gz", ".zst", ".lz4", ".lzma",
    ],
    // Compiled code and libraries.
    &[
        ".so", ".dylib", ".dll", ".exe", ".a", ".o", ".obj", ".lib", ".rlib", ".rmeta", ".pdb",
        ".pyc", ".pyo", ".class", ".wasm",
    ],
    // Databases.
    &[".db", ".db-wal", ".db-shm", ".sqlite", ".sqlite3"],
];

/// Every file git would commit, as `/`-separated paths relative to the root, sorted: the
/// tracked files and the untracked ones that are not ignored, so that a stray file fails
/// these checks before it is committed rather than after; tracked files deleted from the work
/// tree are left out. Without git, or outside a git checkout (a source archive), the tree is
/// walked instead, skipping build output, git's own folder and the local stores that
/// `.gitignore` keeps out (`target/`, `.git/`, `data/`, `.pg/`).
fn repository_files() -> Vec<String> {
    let mut files: Vec<String> = git_files()
        .unwrap_or_else(walked_files)
        .into_iter()
        .filter(|file| root().join(file).is_file())
        .collect();
    files.sort();
    files.dedup();
    assert!(
        files.len() > 100,
        "found only {} repository files",
        files.len()
    );
    files
}

fn git_files() -> Option<Vec<String>> {
    let output = Command::new("git")
        .current_dir(root())
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let listing = String::from_utf8(output.stdout).ok()?;
    Some(
        listing
            .split('\0')
            .filter(|file| !file.is_empty())
            .map(str::to_owned)
            .collect(),
    )
}

fn walked_files() -> Vec<String> {
    walkdir::WalkDir::new(root())
        .into_iter()
        .filter_entry(|entry| {
            let name = entry.file_name();
            let local_store = entry.depth() == 1 && (name == "data" || name == ".pg");
            !(name == "target" || name == ".git" || local_store)
        })
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_file())
        .map(|entry| {
            let relative = entry.path().strip_prefix(root()).expect("inside the root");
            relative
                .components()
                .map(|component| component.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/")
        })
        .collect()
}

/// The exceptions listed in `tidy.toml`, path to reason. The file must exist even when it
/// lists nothing, so that whoever meets a failure finds where exceptions go.
fn allowed_files() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(root().join(ALLOW_LIST)).unwrap_or_else(|error| {
        panic!(
            "{ALLOW_LIST} must exist at the workspace root: it lists the files allowed past the \
             package, binary and size checks, and may list none ({error})"
        )
    });
    let table: toml::Table = text
        .parse()
        .unwrap_or_else(|error| panic!("{ALLOW_LIST} is not valid TOML: {error}"));
    let mut allowed = BTreeMap::new();
    for (key, value) in &table {
        assert_eq!(
            key, "allow",
            "{ALLOW_LIST}: unknown key `{key}`; an exception is an [[allow]] entry with `path` and `reason`"
        );
        let entries = value.as_array().unwrap_or_else(|| {
            panic!("{ALLOW_LIST}: write exceptions as [[allow]] entries with `path` and `reason`")
        });
        for entry in entries {
            let field = |name: &str| {
                entry
                    .get(name)
                    .and_then(toml::Value::as_str)
                    .map(str::trim)
                    .filter(|text| !text.is_empty())
                    .unwrap_or_else(|| {
                        panic!("{ALLOW_LIST}: every [[allow]] entry needs a non-empty `{name}`: {entry}")
                    })
                    .to_owned()
            };
            allowed.insert(field("path"), field("reason"));
        }
    }
    allowed
}

fn starts_with_nul_byte(path: &Path) -> bool {
    let mut head = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(BINARY_PROBE_BYTES).read_to_end(&mut head))
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    head.contains(&0)
}

#[test]
fn the_allow_list_names_existing_files_with_reasons() {
    let files: BTreeSet<String> = repository_files().into_iter().collect();
    let stale: Vec<_> = allowed_files()
        .into_keys()
        .filter(|path| !files.contains(path))
        .collect();
    assert!(
        stale.is_empty(),
        "{ALLOW_LIST} allows files that are not in the repository: {stale:?}. Remove those \
         [[allow]] entries (paths are exact, relative to the workspace root)."
    );
}

/// Packages, archives, compiled code and databases are recognised by their name's ending
/// (`FOREIGN_EXTENSIONS`), any other binary by a NUL byte in its first 8 KiB.
#[test]
fn no_package_archive_or_binary_is_committed() {
    let allowed = allowed_files();
    let offenders: Vec<String> = repository_files()
        .into_iter()
        .filter(|file| !allowed.contains_key(file))
        .filter_map(|file| {
            let name = file
                .rsplit('/')
                .next()
                .unwrap_or(&file)
                .to_ascii_lowercase();
            let extension = FOREIGN_EXTENSIONS
                .iter()
                .flat_map(|group| group.iter())
                .find(|extension| name.ends_with(**extension));
            if let Some(extension) = extension {
                return Some(format!("{file} (a `{extension}` file)"));
            }
            starts_with_nul_byte(&root().join(&file))
                .then(|| format!("{file} (binary: a NUL byte in its first 8 KiB)"))
        })
        .collect();
    assert!(
        offenders.is_empty(),
        "packages, archives or binaries the project did not make are in the repository:\n  {}\n\
         Such files are almost always committed by mistake and stay in every clone. Delete \
         them (`git rm --cached FILE` if tracked) and add a .gitignore pattern if a tool makes \
         them; if the project really needs one, add an [[allow]] entry with a reason to \
         {ALLOW_LIST}.",
        offenders.join("\n  ")
    );
}

#[test]
fn no_file_is_larger_than_1_mib() {
    let allowed = allowed_files();
    let offenders: Vec<String> = repository_files()
        .into_iter()
        .filter(|file| !allowed.contains_key(file))
        .filter_map(|file| {
            let bytes = std::fs::metadata(root().join(&file))
                .unwrap_or_else(|error| panic!("cannot read {file}: {error}"))
                .len();
            (bytes > MAX_FILE_BYTES).then(|| format!("{file} ({bytes} bytes)"))
        })
        .collect();
    assert!(
        offenders.is_empty(),
        "files larger than 1 MiB are in the repository:\n  {}\n\
         Large files weigh on every clone forever. Generate such data where it is needed (in the \
         test or script) instead of committing it; if the file really must be committed, add \
         an [[allow]] entry with a reason to {ALLOW_LIST}.",
        offenders.join("\n  ")
    );
}

/// Every repository path named in `README.md`, in `docs/**/*.md` and in the comments of
/// `app/config/*.toml` exists, so the docs cannot point at files that moved or never were.
///
/// The matcher is deliberately simple:
/// - Markdown link targets (`[text](target)`, `[label]: target`) outside code blocks that are
///   relative paths are resolved against the Markdown file's folder after dropping any
///   `#anchor`; URLs (`scheme://`), `mailto:`, bare `#anchors` and paths starting with `/`
///   (URL paths such as `/api/catalog/products`) are skipped.
/// - Every other word is a candidate. Words are split at whitespace, non-ASCII characters,
///   backticks, quotes, brackets, parentheses, `|`, `=` and commas outside `{}`; a leading
///   `./` and trailing `.,;:!?` or `:LINE[:COLUMN]` are dropped. A candidate names a
///   repository path when it starts with `DIR/` for a top-level folder of the repository or,
///   outside fenced code blocks, is exactly the name of a top-level file (`Cargo.toml`,
///   `arch.toml`, `tidy.toml`, ...). Top-level entries come from the repository's files, so
///   a new folder is covered at once. Inside code blocks bare names are often arguments or
///   labels, so only `DIR/...` counts there. URL paths (`/api/...`), `../x` and
///   `<data_dir>/x` never start with a top-level entry and are not checked.
/// - In a path, `<...>` and `*` stand for any characters within one segment and `**` for any
///   number of segments; such a placeholder must match at least one existing file or folder.
///   `{a,b}` enumerates paths, so each alternative must exist.
#[test]
fn paths_named_in_the_docs_exist() {
    let files = repository_files();
    let top_level = TopLevel::of(&files);
    let paths = files_and_folders(&files);
    let sources: Vec<&String> = files
        .iter()
        .filter(|file| {
            *file == "README.md"
                || (file.starts_with("docs/") && file.ends_with(".md"))
                || file
                    .strip_prefix("app/config/")
                    .is_some_and(|name| !name.contains('/') && name.ends_with(".toml"))
        })
        .collect();
    assert!(
        sources.len() >= 7,
        "expected README.md, the docs and the config files, found {sources:?}"
    );
    let mut checked = 0;
    // A set, because a link whose text is its own target (`[docs/X.md](docs/X.md)`) names
    // the path several times on one line, and one report is enough.
    let mut broken = BTreeSet::new();
    for source in sources {
        let text = std::fs::read_to_string(root().join(source)).expect("readable");
        for reference in path_references(source, &text, &top_level) {
            checked += 1;
            if !reference.resolves(&paths) {
                broken.insert((source, reference.line, reference.written));
            }
        }
    }
    assert!(
        checked > 50,
        "only {checked} path references found; the matcher is broken"
    );
    assert!(
        broken.is_empty(),
        "the docs name repository paths that do not exist:\n  {}\n\
         Correct each reference to the path as it is now (or remove it). A placeholder \
         (`<ctx>`, `*`) must match at least one existing path; the matcher is described on \
         `paths_named_in_the_docs_exist` in tests/api/tidy.rs.",
        broken
            .iter()
            .map(|(source, line, written)| format!("{source}:{line}: `{written}`"))
            .collect::<Vec<_>>()
            .join("\n  ")
    );
}

/// The first component of every repository path: folders (`crates`) and files (`Cargo.toml`).
#[derive(Debug)]
struct TopLevel {
    folders: BTreeSet<String>,
    files: BTreeSet<String>,
}

impl TopLevel {
    fn of(files: &[String]) -> Self {
        let mut top_level = Self {
            folders: BTreeSet::new(),
            files: BTreeSet::new(),
        };
        for file in files {
            match file.split_once('/') {
                Some((folder, _)) => top_level.folders.insert(folder.to_owned()),
                None => top_level.files.insert(file.clone()),
            };
        }
        top_level
    }
}

/// Every file and every folder that holds one, without a trailing `/`.
fn files_and_folders(files: &[String]) -> BTreeSet<String> {
    let mut paths = BTreeSet::new();
    for file in files {
        let mut path = file.as_str();
        paths.insert(path.to_owned());
        while let Some((parent, _)) = path.rsplit_once('/') {
            paths.insert(parent.to_owned());
            path = parent;
        }
    }
    paths
}

#[derive(Debug)]
struct PathReference {
    line: usize,
    /// As written in the doc, for the message.
    written: String,
    /// Relative to the root, placeholders kept; `None` when a link climbs out of the root.
    path: Option<String>,
}

impl PathReference {
    fn resolves(&self, paths: &BTreeSet<String>) -> bool {
        let Some(path) = &self.path else {
            return false;
        };
        expand_braces(path.trim_end_matches('/'))
            .iter()
            .all(|path| {
                let pattern = placeholders_as_stars(path);
                if pattern.contains('*') {
                    paths
                        .iter()
                        .any(|candidate| glob(pattern.as_bytes(), candidate.as_bytes()))
                } else {
                    paths.contains(&pattern)
                }
            })
    }
}

/// The path references of one doc: Markdown links and path-like words in Markdown files,
/// path-like words in the comments of TOML files.
fn path_references(source: &str, text: &str, top_level: &TopLevel) -> Vec<PathReference> {
    let markdown = source.ends_with(".md");
    let folder = source.rsplit_once('/').map_or("", |(folder, _)| folder);
    let mut references = Vec::new();
    let mut in_code_block = false;
    for (index, line) in text.lines().enumerate() {
        let line_number = index + 1;
        let searched = if markdown {
            let fence = line.trim_start();
            if fence.starts_with("```") || fence.starts_with("~~~") {
                in_code_block = !in_code_block;
                continue;
            }
            if !in_code_block {
                for target in link_targets(line) {
                    references.push(PathReference {
                        line: line_number,
                        written: target.to_owned(),
                        path: resolve_link(folder, target),
                    });
                }
            }
            line
        } else {
            match toml_comment(line) {
                Some(comment) => comment,
                None => continue,
            }
        };
        for word in words(searched) {
            let candidate = trim_path(word);
            let names_path = match candidate.split_once('/') {
                Some((first, _)) => top_level.folders.contains(first),
                None => !in_code_block && top_level.files.contains(candidate),
            };
            if names_path {
                references.push(PathReference {
                    line: line_number,
                    written: candidate.to_owned(),
                    path: Some(candidate.to_owned()),
                });
            }
        }
    }
    references
}

/// Relative targets of inline links `[text](target "title")` and of reference definitions
/// `[label]: target`, without their `#anchor`.
fn link_targets(line: &str) -> Vec<&str> {
    let mut targets = Vec::new();
    let mut rest = line;
    while let Some(start) = rest.find("](") {
        let after = &rest[start + 2..];
        let end = after.find(')').unwrap_or(after.len());
        targets.push(&after[..end]);
        rest = &after[end..];
    }
    let trimmed = line.trim_start();
    if trimmed.starts_with('[')
        && let Some((_, target)) = trimmed.split_once("]:")
    {
        targets.push(target);
    }
    targets
        .into_iter()
        .filter_map(|target| {
            let target = target.split_whitespace().next()?;
            let target = target.trim_start_matches('<').trim_end_matches('>');
            let skipped =
                target.contains("://") || target.starts_with("mailto:") || target.starts_with('/');
            let path = target.split('#').next().unwrap_or_default();
            (!skipped && !path.is_empty()).then_some(path)
        })
        .collect()
}

/// A link target relative to the linking file's folder, as a normalised path from the root;
/// `None` when it climbs out of the repository.
fn resolve_link(folder: &str, target: &str) -> Option<String> {
    let mut components: Vec<&str> = folder.split('/').filter(|c| !c.is_empty()).collect();
    for component in target.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                components.pop()?;
            }
            name => components.push(name),
        }
    }
    Some(components.join("/"))
}

/// The comment of a TOML line: what follows the first `#` outside a quoted string.
fn toml_comment(line: &str) -> Option<&str> {
    let mut quote = None;
    for (index, c) in line.char_indices() {
        match (quote, c) {
            (None, '#') => return Some(&line[index + 1..]),
            (None, '"' | '\'') => quote = Some(c),
            (Some(open), c) if c == open => quote = None,
            _ => {}
        }
    }
    None
}

/// Splits a line into words at whitespace, non-ASCII characters, Markdown and quoting
/// punctuation and commas, except commas inside `{a,b}`.
fn words(line: &str) -> Vec<&str> {
    let mut words = Vec::new();
    let mut start = None;
    let mut braces = 0_usize;
    for (index, c) in line.char_indices() {
        let separator = match c {
            '{' => {
                braces += 1;
                false
            }
            '}' => {
                braces = braces.saturating_sub(1);
                false
            }
            ',' => braces == 0,
            c => c.is_whitespace() || !c.is_ascii() || "`'\"()[]|=".contains(c),
        };
        if separator {
            if let Some(start) = start.take() {
                words.push(&line[start..index]);
            }
            braces = 0;
        } else if start.is_none() {
            start = Some(index);
        }
    }
    if let Some(start) = start {
        words.push(&line[start..]);
    }
    words
}

/// Drops what surrounds a path in prose and tool output: a leading `./`, trailing sentence
/// punctuation, and a `:LINE` or `:LINE:COLUMN` suffix.
fn trim_path(word: &str) -> &str {
    let mut word = word.strip_prefix("./").unwrap_or(word);
    loop {
        let mut trimmed = word.trim_end_matches(['.', ',', ';', ':', '!', '?']);
        if let Some((head, tail)) = trimmed.rsplit_once(':')
            && !tail.is_empty()
            && tail.bytes().all(|b| b.is_ascii_digit())
        {
            trimmed = head;
        }
        if trimmed == word {
            return word;
        }
        word = trimmed;
    }
}

/// `crates/{auth,catalog}-api` becomes `crates/auth-api` and `crates/catalog-api`; a path
/// without a complete `{...}` is returned as it is.
fn expand_braces(path: &str) -> Vec<String> {
    let Some(open) = path.find('{') else {
        return vec![path.to_owned()];
    };
    let Some(close) = path[open..].find('}').map(|offset| open + offset) else {
        return vec![path.to_owned()];
    };
    path[open + 1..close]
        .split(',')
        .flat_map(|alternative| {
            expand_braces(&format!(
                "{}{}{}",
                &path[..open],
                alternative.trim(),
                &path[close + 1..]
            ))
        })
        .collect()
}

/// `crates/<ctx>-api` becomes `crates/*-api`.
fn placeholders_as_stars(path: &str) -> String {
    let mut pattern = String::with_capacity(path.len());
    let mut rest = path;
    while let Some(open) = rest.find('<') {
        let Some(close) = rest[open..].find('>').map(|offset| open + offset) else {
            break;
        };
        pattern.push_str(&rest[..open]);
        pattern.push('*');
        rest = &rest[close + 1..];
    }
    pattern.push_str(rest);
    pattern
}

/// Glob matching: `*` is any run of characters within a segment, `**` any run across
/// segments, and `**/` also matches no folder at all.
fn glob(pattern: &[u8], path: &[u8]) -> bool {
    match pattern {
        [] => path.is_empty(),
        [b'*', b'*', b'/', rest @ ..] => {
            glob(rest, path)
                || (0..path.len())
                    .any(|index| path[index] == b'/' && glob(rest, &path[index + 1..]))
        }
        [b'*', b'*', rest @ ..] => (0..=path.len()).any(|index| glob(rest, &path[index..])),
        [b'*', rest @ ..] => (0..=path.len())
            .take_while(|&index| index == 0 || path[index - 1] != b'/')
            .any(|index| glob(rest, &path[index..])),
        [first, rest @ ..] => path.first() == Some(first) && glob(rest, &path[1..]),
    }
}

/// The settings reference and the defaults it documents, both from the root.
const CONFIGURATION_DOC: &str = "docs/CONFIGURATION.md";
const DEFAULTS_FILE: &str = "app/config/default.toml";
/// The section cell of keys at the top of `default.toml`, outside any `[section]`.
const TOP_LEVEL_SECTION: &str = "(top level)";

/// `docs/CONFIGURATION.md` has a table row `| section | key | default | meaning |` for every
/// key of `app/config/default.toml`, with the same default, and none for keys that are not
/// there, so the reference and the defaults cannot drift apart. Nested sections are dotted
/// (`database.roles`); cells may be in backticks; defaults are written as in TOML (`"data"`,
/// `8080`, `false`).
#[test]
fn the_configuration_reference_lists_every_setting() {
    let defaults: toml::Table = std::fs::read_to_string(root().join(DEFAULTS_FILE))
        .expect("readable")
        .parse()
        .expect("valid TOML");
    let mut expected = BTreeMap::new();
    collect_settings(&defaults, "", &mut expected);
    assert!(
        expected.len() > 30,
        "found only {} settings",
        expected.len()
    );
    let text = std::fs::read_to_string(root().join(CONFIGURATION_DOC))
        .unwrap_or_else(|error| panic!("{CONFIGURATION_DOC} must exist: {error}"));
    let documented = documented_settings(&text);

    let dotted = |(section, key): &(String, String)| {
        if section == TOP_LEVEL_SECTION {
            key.clone()
        } else {
            format!("{section}.{key}")
        }
    };
    let mut problems = Vec::new();
    for (setting, default) in &expected {
        let (section, key) = setting;
        match documented.get(setting) {
            None => problems.push(format!(
                "`{}` is not documented: add the row `| {section} | {key} | {default} | ... |`",
                dotted(setting)
            )),
            Some(written) if written != default => problems.push(format!(
                "`{}`: the documented default is {written}, {DEFAULTS_FILE} says {default}",
                dotted(setting)
            )),
            Some(_) => {}
        }
    }
    for setting in documented.keys().filter(|s| !expected.contains_key(*s)) {
        problems.push(format!(
            "`{}` is documented but {DEFAULTS_FILE} has no such key: remove or rename its row",
            dotted(setting)
        ));
    }
    assert!(
        problems.is_empty(),
        "{CONFIGURATION_DOC} and {DEFAULTS_FILE} disagree:\n  {}\n\
         The tables headed `| Section | Key | Default | Meaning |` in {CONFIGURATION_DOC} need \
         one row per key of {DEFAULTS_FILE} (section `{TOP_LEVEL_SECTION}` for keys outside \
         any [section]), with the default written exactly as in the TOML file.",
        problems.join("\n  ")
    );
}

/// Walks the TOML tables: every leaf value is a setting, keyed by (dotted section, key).
fn collect_settings(
    table: &toml::Table,
    section: &str,
    settings: &mut BTreeMap<(String, String), String>,
) {
    for (key, value) in table {
        match value {
            toml::Value::Table(nested) => {
                let nested_section = if section.is_empty() {
                    key.clone()
                } else {
                    format!("{section}.{key}")
                };
                collect_settings(nested, &nested_section, settings);
            }
            value => {
                let section = if section.is_empty() {
                    TOP_LEVEL_SECTION
                } else {
                    section
                };
                settings.insert((section.to_owned(), key.clone()), value.to_string());
            }
        }
    }
}

/// The rows of every Markdown table whose header starts `| Section | Key | Default |`, as
/// (section, key) to default, backticks removed.
fn documented_settings(text: &str) -> BTreeMap<(String, String), String> {
    let cells = |line: &str| -> Vec<String> {
        line.trim()
            .trim_matches('|')
            .split('|')
            .map(|cell| cell.trim().trim_matches('`').trim().to_owned())
            .collect()
    };
    let mut settings = BTreeMap::new();
    let mut in_table = false;
    for line in text.lines() {
        if !line.trim_start().starts_with('|') {
            in_table = false;
            continue;
        }
        let row = cells(line);
        if row.len() >= 3 && row[0] == "Section" && row[1] == "Key" && row[2] == "Default" {
            in_table = true;
        } else if in_table && row.len() >= 3 && !row[0].chars().all(|c| c == '-' || c == ':') {
            settings.insert((row[0].clone(), row[1].clone()), row[2].clone());
        }
    }
    settings
}
