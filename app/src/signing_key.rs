//! Where the access-token signing key comes from.
//!
//! Production sets `auth.jwt_secret`. Without it, on the embedded default store only, a random
//! development key is generated once and kept with the data (`<data_dir>/jwt-dev-key`), so
//! tokens survive restarts of `cargo run`; a warning says so at every start. On Postgres (a
//! shared store, so possibly several replicas, each of which would generate its own key and
//! refuse the others' tokens) the key must be configured: `Settings::validate` refuses the
//! configuration, and `resolve` refuses too, for settings built in code.

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
    if settings.uses_postgres() {
        anyhow::bail!(
            "auth.jwt_secret must be set on Postgres: a generated development key is for the \
             embedded store only"
        );
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

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;

    #[test]
    fn no_development_key_is_generated_for_a_shared_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut settings = Settings::defaults();
        settings.data_dir = dir.path().join("data");
        settings.database.url = SecretString::from("postgres://shop@db/shop");
        let refused = resolve(&settings).expect_err("no key for Postgres");
        assert!(refused.to_string().contains("auth.jwt_secret"), "{refused}");
        assert!(!settings.data_dir.join(DEV_KEY_FILE).exists());

        settings.database.url = SecretString::from("");
        assert!(resolve(&settings).is_ok());
        assert!(settings.data_dir.join(DEV_KEY_FILE).exists());
    }
}
