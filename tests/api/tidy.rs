//! House rules that can be checked, checked (in the spirit of rust-analyzer's `tidy`): every
//! module says what it is for, every crate takes its versions and lints from the workspace
//! and is never published, and plain `cargo test` at the root tests every crate.

use std::path::{Path, PathBuf};

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
