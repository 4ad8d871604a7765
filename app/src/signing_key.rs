//! Where the access-token signing key comes from.
//!
//! Production sets `auth.jwt_secret`. Without it, a random development key is generated once
//! and kept with the data (`<data_dir>/jwt-dev-key`), so tokens survive restarts of
//! `cargo run`; a warning says so at every start.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use auth::SigningKey;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::ExposeSecret;

use crate::settings::Settings;

const DEV_KEY_FILE: &str = "jwt-dev-key";

pub fn resolve(settings: &Settings) -> anyhow::Result<SigningKey> {
    let configured = settings.auth.jwt_secret.expose_secret();
    if !configured.is_empty() {
        return SigningKey::new(configured.as_bytes().to_vec()).map_err(anyhow::Error::msg);
    }
    let path = settings.data_dir.join(DEV_KEY_FILE);
    let key = if path.exists() {
        read_dev_key(&path)?
    } else {
        create_dev_key(&path)?
    };
    tracing::warn!(
        path = %path.display(),
        "auth.jwt_secret is not set; signing tokens with a development key kept in the data \
         directory. Set SHOP__AUTH__JWT_SECRET in production"
    );
    SigningKey::new(key).map_err(anyhow::Error::msg)
}

fn read_dev_key(path: &Path) -> anyhow::Result<Vec<u8>> {
    let encoded =
        std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    STANDARD.decode(encoded.trim()).with_context(|| {
        format!(
            "{} is not a base64 key; delete it to get a new one",
            path.display()
        )
    })
}

fn create_dev_key(path: &Path) -> anyhow::Result<Vec<u8>> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let key: [u8; 32] = rand::random();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(mut file) => {
            file.write_all(STANDARD.encode(key).as_bytes())
                .with_context(|| format!("write {}", path.display()))?;
            tracing::info!(path = %path.display(), "generated a development signing key");
            Ok(key.to_vec())
        }
        // Another process created it first; use theirs.
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => read_dev_key(path),
        Err(error) => Err(error).with_context(|| format!("create {}", path.display())),
    }
}
