//! Rate limits per key (a client's address, an account), on `governor`'s GCRA.
//!
//! A [`RateLimit`] lets a key make `burst` requests at once and then `per_minute` a minute;
//! past that, [`RateLimit::check`] answers `429 too_many_requests` with `Retry-After` (the
//! seconds until the key may try again). The state is in memory, per process: behind several
//! replicas each counts on its own, so the effective limit is the replicas times this one.
//!
//! Keys are hashed (SipHash with a per-process random key) into a `u64`, so whatever the
//! caller sends as an email, a limiter's memory per key is fixed. Keys whose allowance is
//! whole again are forgotten every [`RateLimit::FORGET_EVERY`] checks, so memory follows the
//! number of keys active within one refill period, not the number ever seen.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::HttpRequest;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::HttpError;

/// A sustained rate and the burst allowed on top of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateQuota {
    /// Requests a minute, once the burst is spent.
    pub per_minute: NonZeroU32,
    /// Requests allowed at once.
    pub burst: NonZeroU32,
}

/// One limit over many keys. Shared by every worker (wrap it in an `Arc` or `web::Data`).
pub struct RateLimit {
    limiter: DefaultKeyedRateLimiter<u64>,
    keys: RandomState,
    checks: AtomicU64,
}

impl std::fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimit")
            .field("keys", &self.limiter.len())
            .finish_non_exhaustive()
    }
}

impl RateLimit {
    /// How many checks pass between two sweeps of the keys that are whole again.
    pub const FORGET_EVERY: u64 = 1024;

    pub fn new(quota: RateQuota) -> Self {
        let quota = Quota::per_minute(quota.per_minute).allow_burst(quota.burst);
        Self {
            limiter: RateLimiter::keyed(quota),
            keys: RandomState::new(),
            checks: AtomicU64::new(0),
        }
    }

    /// Counts one request for `key`: `Ok` if it is within the limit, else
    /// `429 too_many_requests` saying when to come back.
    pub fn check<K: Hash + ?Sized>(&self, key: &K) -> Result<(), HttpError> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % Self::FORGET_EVERY
            == Self::FORGET_EVERY - 1
        {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        let key = self.keys.hash_one(key);
        self.limiter.check_key(&key).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            HttpError::too_many_requests(wait)
        })
    }

    /// How many keys the limit remembers now.
    pub fn remembered(&self) -> usize {
        self.limiter.len()
    }
}

/// The network address a request is counted against: the peer's IP address, IPv6 by its
/// `/64` prefix (one subscriber's usual allocation, which would otherwise give one client
/// 2^64 addresses). Behind a reverse proxy this is the proxy's address: no forwarding
/// header is trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientAddress(Option<IpAddr>);

impl ClientAddress {
    pub fn of(req: &HttpRequest) -> Self {
        Self(req.peer_addr().map(|peer| network(peer.ip())))
    }
}

fn network(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = v6.to_bits() & !((1_u128 << 64) - 1);
                IpAddr::V6(std::net::Ipv6Addr::from_bits(prefix))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use actix_web::ResponseError;
    use actix_web::http::StatusCode;

    use super::*;

    fn quota(per_minute: u32, burst: u32) -> RateQuota {
        RateQuota {
            per_minute: NonZeroU32::new(per_minute).expect("positive"),
            burst: NonZeroU32::new(burst).expect("positive"),
        }
    }

    #[test]
    fn a_key_gets_its_burst_then_a_429_and_other_keys_are_untouched() {
        // One a minute: nothing refills while the test runs.
        let limit = RateLimit::new(quota(1, 3));
        for _ in 0..3 {
            assert!(limit.check("ada@example.com").is_ok());
        }
        let refused = limit.check("ada@example.com").expect_err("over the burst");
        assert_eq!(refused.status_code(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.code(), "too_many_requests");
        let response = refused.error_response();
        let retry_after: u64 = response
            .headers()
            .get(actix_web::http::header::RETRY_AFTER)
            .expect("Retry-After")
            .to_str()
            .expect("ascii")
            .parse()
            .expect("seconds");
        assert!((1..=60).contains(&retry_after), "{retry_after}");
        assert!(limit.check("grace@example.com").is_ok());
    }

    #[test]
    fn keys_whose_allowance_is_whole_again_are_forgotten() {
        // Every key is used once; at 60,000 a minute its allowance is whole again a
        // millisecond later, and the next sweep forgets it. A bounded wait on that condition.
        let limit = RateLimit::new(quota(60_000, 1));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut used: u64 = 0;
        while limit.remembered() as u64 == used && std::time::Instant::now() < deadline {
            assert!(limit.check(&used).is_ok(), "a new key is within its burst");
            used += 1;
        }
        assert!(
            (limit.remembered() as u64) < used,
            "{} keys remembered after {used} checks",
            limit.remembered()
        );
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64_prefix() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().expect("ip");
        let other: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(network(a), network(b));
        assert_ne!(network(a), network(other));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().expect("ip");
        assert_eq!(network(mapped), "192.0.2.7".parse::<IpAddr>().expect("ip"));
        let v4: IpAddr = "192.0.2.7".parse().expect("ip");
        assert_eq!(network(v4), v4);
    }
}
