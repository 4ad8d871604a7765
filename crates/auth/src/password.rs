//! Password hashing with argon2id, off the async runtime.
//!
//! Hashing takes tens of milliseconds of CPU and 19 MiB of memory by design, so it runs on
//! the blocking pool, and a semaphore bounds how many hashes run at once: a burst of logins
//! queues instead of exhausting memory.

use std::sync::Arc;

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

/// OWASP's recommended minimum for argon2id: 19 MiB, 2 passes, 1 lane.
const MEMORY_KIB: u32 = 19_456;
const PASSES: u32 = 2;
const LANES: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("the hashing task did not complete")]
    Join(#[from] tokio::task::JoinError),
}

#[derive(Debug, Clone)]
pub struct PasswordHashing {
    permits: Arc<Semaphore>,
    /// A real hash of a random password, verified against when the email is unknown so
    /// that "no such user" takes as long as "wrong password".
    decoy: Arc<String>,
}

fn argon2() -> Argon2<'static> {
    let params = Params::new(MEMORY_KIB, PASSES, LANES, None).expect("argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

impl PasswordHashing {
    pub async fn new() -> Self {
        let parallelism = std::thread::available_parallelism().map_or(2, |n| n.get());
        let hashing = Self {
            permits: Arc::new(Semaphore::new(parallelism * 2)),
            decoy: Arc::new(String::new()),
        };
        let decoy = hashing
            .hash(uuid::Uuid::new_v4().to_string())
            .await
            .unwrap_or_default();
        Self {
            decoy: Arc::new(decoy),
            ..hashing
        }
    }

    /// A PHC string (`$argon2id$v=19$m=19456,t=2,p=1$...`) with a fresh random salt.
    pub async fn hash(&self, password: String) -> Result<String, HashError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .expect("semaphore is never closed");
        tokio::task::spawn_blocking(move || {
            argon2()
                .hash_password(password.as_bytes())
                .map(|hash| hash.to_string())
                .map_err(|error| HashError::Hash(error.to_string()))
        })
        .await?
    }

    /// True when `password` matches `stored`. A malformed stored hash never matches.
    pub async fn verify(&self, password: String, stored: String) -> Result<bool, HashError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .expect("semaphore is never closed");
        tokio::task::spawn_blocking(move || {
            let Ok(parsed) = PasswordHash::new(&stored) else {
                return false;
            };
            argon2()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .await
        .map_err(HashError::from)
    }

    /// Spends the time a real verification would, and always fails.
    pub async fn verify_decoy(&self, password: String) -> Result<bool, HashError> {
        self.verify(password, self.decoy.as_ref().clone()).await?;
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_argon2id_at_the_required_cost_and_verify() {
        let hashing = PasswordHashing::new().await;
        let hash = hashing.hash("correct horse".into()).await.expect("hash");
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(
            hashing
                .verify("correct horse".into(), hash.clone())
                .await
                .expect("verify")
        );
        assert!(
            !hashing
                .verify("wrong horse".into(), hash)
                .await
                .expect("verify")
        );
        assert!(
            !hashing
                .verify("x".into(), "not a hash".into())
                .await
                .expect("verify")
        );
        assert!(
            !hashing
                .verify_decoy("anything".into())
                .await
                .expect("verify")
        );
    }
}
