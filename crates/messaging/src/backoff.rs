//! When to try a failed delivery or handler again.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// `base * 2^(attempts - 1)`, capped at `max`: 1 s, 2 s, 4 s, ... with the defaults.
pub(crate) fn next_attempt(
    now: DateTime<Utc>,
    attempts: i32,
    base: Duration,
    max: Duration,
) -> DateTime<Utc> {
    let exponent = u32::try_from(attempts.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
    let delay = base.saturating_mul(2u32.saturating_pow(exponent)).min(max);
    now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_then_caps() {
        let now = Utc::now();
        let base = Duration::from_secs(1);
        let max = Duration::from_secs(10);
        let delays: Vec<i64> = (1..=6)
            .map(|attempts| (next_attempt(now, attempts, base, max) - now).num_seconds())
            .collect();
        assert_eq!(delays, [1, 2, 4, 8, 10, 10]);
    }
}
