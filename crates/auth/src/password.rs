//! Password hashing with argon2id, off the async runtime.
//!
//! Hashing takes tens of milliseconds of CPU and 19 MiB of memory by design, so it runs on
//! the blocking pool, and a semaphore bounds how many hashes run at once: a burst of logins
//! queues instead of exhausting memory. The queue is bounded too ([`HashingLimits`]): a hash
//! that would find it full fails at once with [`HashError::Busy`] (503 with `Retry-After`)
//! instead of waiting behind an unbounded crowd.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

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
    #[error("every hashing slot and queue place is taken")]
    Busy,
}

/// How much hashing may be going on at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashingLimits {
    /// Hashes that run at once (at least one).
    pub concurrency: usize,
    /// Hashes that may wait for a free slot; one more fails with [`HashError::Busy`].
    pub queue: usize,
}

impl HashingLimits {
    /// Two hashes per CPU core at once, as many waiting: the shop's default.
    pub fn for_this_machine(queue: usize) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            concurrency: cores * 2,
            queue,
        }
    }
}

#[derive(Debug, Clone)]
pub struct PasswordHashing {
    permits: Arc<Semaphore>,
    /// Hashes running or waiting, at most `capacity`.
    admitted: Arc<AtomicUsize>,
    capacity: usize,
    /// A real hash of a random password, verified against when the email is unknown so
    /// that "no such user" takes as long as "wrong password".
    decoy: Arc<String>,
}

/// A place among the running and waiting hashes, given back on drop.
struct Admission<'a>(&'a AtomicUsize);

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn argon2() -> Argon2<'static> {
    let params = Params::new(MEMORY_KIB, PASSES, LANES, None).expect("argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

impl PasswordHashing {
    /// Hashing within `limits`, with its decoy hash made. Without a decoy, logins for unknown
    /// emails would answer faster than wrong passwords and tell which accounts exist, so a
    /// decoy that cannot be made is an error, never an empty string.
    pub async fn new(limits: HashingLimits) -> Result<Self, HashError> {
        Self::without_decoy(limits)
            .with_decoy(
                |hashing| async move { hashing.hash(uuid::Uuid::new_v4().to_string()).await },
            )
            .await
    }

    fn without_decoy(limits: HashingLimits) -> Self {
        let concurrency = limits.concurrency.max(1);
        Self {
            permits: Arc::new(Semaphore::new(concurrency)),
            admitted: Arc::new(AtomicUsize::new(0)),
            capacity: concurrency.saturating_add(limits.queue),
            decoy: Arc::new(String::new()),
        }
    }

    async fn with_decoy<F, Fut>(self, make: F) -> Result<Self, HashError>
    where
        F: FnOnce(Self) -> Fut,
        Fut: Future<Output = Result<String, HashError>>,
    {
        let decoy = make(self.clone()).await?;
        Ok(Self {
            decoy: Arc::new(decoy),
            ..self
        })
    }

    /// A place among the running and waiting hashes, or `Busy` at once when all are taken.
    fn admit(&self) -> Result<Admission<'_>, HashError> {
        let before = self.admitted.fetch_add(1, Ordering::AcqRel);
        let admission = Admission(&self.admitted);
        if before >= self.capacity {
            return Err(HashError::Busy);
        }
        Ok(admission)
    }

    /// A PHC string (`$argon2id$v=19$m=19456,t=2,p=1$...`) with a fresh random salt.
    pub async fn hash(&self, password: String) -> Result<String, HashError> {
        let _admission = self.admit()?;
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
        let _admission = self.admit()?;
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

    fn limits(concurrency: usize, queue: usize) -> HashingLimits {
        HashingLimits { concurrency, queue }
    }

    #[tokio::test]
    async fn hashes_are_argon2id_at_the_required_cost_and_verify() {
        let hashing = PasswordHashing::new(limits(2, 2)).await.expect("decoy");
        assert!(hashing.decoy.starts_with("$argon2id$"), "a real decoy");
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

    #[tokio::test]
    async fn past_the_running_and_waiting_hashes_a_hash_is_refused_at_once() {
        let hashing = PasswordHashing::new(limits(1, 1)).await.expect("decoy");
        // Two places: one running, one waiting. Take both, as two slow hashes would.
        let running = hashing.admit().expect("a free slot");
        let waiting = hashing.admit().expect("a place in the queue");
        assert!(matches!(
            hashing.hash("correct horse".into()).await,
            Err(HashError::Busy)
        ));
        assert!(matches!(
            hashing.verify_decoy("correct horse".into()).await,
            Err(HashError::Busy)
        ));
        drop(waiting);
        let hash = hashing.hash("correct horse".into()).await;
        assert!(hash.is_ok(), "a place came free: {hash:?}");
        drop(running);
        assert_eq!(
            hashing.admitted.load(Ordering::Acquire),
            0,
            "every place came back"
        );
    }

    #[tokio::test]
    async fn a_decoy_that_cannot_be_made_is_an_error_not_an_empty_hash() {
        let made = PasswordHashing::without_decoy(limits(1, 0))
            .with_decoy(|_| async { Err(HashError::Hash("out of memory".into())) })
            .await;
        assert!(matches!(made, Err(HashError::Hash(_))), "{made:?}");
    }
}
