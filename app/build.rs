//! Copies the workspace's `arch.toml` into `$OUT_DIR`, where the console (`src/console/
//! canvas.rs`) includes it: the context map it draws is the one the architecture lint checks,
//! and a change to `arch.toml` rebuilds the binary.

use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let source = manifest.join("../arch.toml");
    println!("cargo:rerun-if-changed={}", source.display());
    let text = std::fs::read_to_string(&source)
        .unwrap_or_else(|error| panic!("{}: {error}", source.display()));
    let target = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it")).join("arch.toml");
    std::fs::write(&target, text).expect("write arch.toml into OUT_DIR");
}
