//! Rate limiting per tenant and route group: the GCRA algorithm, the [`RateLimiter`] port and
//! its in-process implementation.
//!
//! GCRA (the generic cell rate algorithm) keeps one number per key, the theoretical arrival
//! time (TAT) of the next request. With rate `r` per second and burst `b`, each request of cost
//! `n` moves the TAT `n / r` seconds later; it is refused when that would put the TAT more than
//! `b / r` seconds ahead of now. So a key can spend `b` at once, then `r` per second: over any
//! first second at most `b + r` requests pass. The same arithmetic runs in Redis (a Lua script
//! in the `redis` crate) for limits shared by every server process; this module's
//! [`LocalRateLimiter`] runs it in memory for one process. (Not governor: the response headers
//! need the remaining allowance and the reset time, and both modes must answer identically.)

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::auth::TenantId;
use crate::config::{RateLimit, RateLimitGroup};
use crate::sync::lock;

/// What a limiter decided for one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    pub allowed: bool,
    /// The burst: what a rested key may spend at once (`RateLimit-Limit`).
    pub limit: u32,
    /// What the key may still spend right now (`RateLimit-Remaining`).
    pub remaining: u32,
    /// Until the key is fully rested again (`RateLimit-Reset`).
    pub reset_after: Duration,
    /// For a refused request: when the same request would pass (`Retry-After`).
    pub retry_after: Duration,
}

/// The GCRA step in microseconds, shared by the in-memory and the Redis limiters.
///
/// `tat` is the key's stored theoretical arrival time (`None` for a new key); returns the
/// decision and, when allowed, the new TAT to store.
pub fn gcra(now_us: i64, tat: Option<i64>, limit: RateLimit, cost: u32) -> (Decision, Option<i64>) {
    let interval = interval_us(limit);
    let tolerance = tolerance_us(limit);
    let tat = tat.unwrap_or(now_us).max(now_us);
    let new_tat = tat + interval * i64::from(cost);
    let allow_at = new_tat - tolerance;
    if now_us < allow_at {
        let decision = decision(limit, false, tat - now_us, allow_at - now_us);
        (decision, None)
    } else {
        (decision(limit, true, new_tat - now_us, 0), Some(new_tat))
    }
}

/// Microseconds between two requests at the sustained rate.
pub fn interval_us(limit: RateLimit) -> i64 {
    #[expect(
        clippy::cast_possible_truncation,
        reason = "the rate is validated positive; a microsecond interval fits i64"
    )]
    let interval = (1_000_000.0 / limit.rate()).round() as i64;
    interval.max(1)
}

/// How far ahead of now the TAT may run: the burst's worth of intervals.
pub fn tolerance_us(limit: RateLimit) -> i64 {
    interval_us(limit) * i64::from(limit.burst())
}

/// Builds a decision from how far the key's TAT is ahead of now (`ahead_us`) and, for a refusal,
/// how long until the request would pass.
pub fn decision(limit: RateLimit, allowed: bool, ahead_us: i64, retry_us: i64) -> Decision {
    let interval = interval_us(limit);
    let spare = (tolerance_us(limit) - ahead_us).max(0) / interval;
    Decision {
        allowed,
        limit: limit.burst(),
        remaining: u32::try_from(spare).unwrap_or(u32::MAX).min(limit.burst()),
        reset_after: Duration::from_micros(u64::try_from(ahead_us.max(0)).unwrap_or(0)),
        retry_after: Duration::from_micros(u64::try_from(retry_us.max(0)).unwrap_or(0)),
    }
}

/// Where the limiter's state lives, for `X-RateLimit-Mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimiterMode {
    /// In this process only.
    Local,
    /// Shared by every process through Redis.
    Distributed,
}

impl LimiterMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Distributed => "distributed",
        }
    }
}

/// Charges requests against per-tenant, per-group limits.
#[async_trait]
pub trait RateLimiter: Send + Sync + fmt::Debug {
    fn mode(&self) -> LimiterMode;

    /// Charges `cost` to the tenant's allowance in `group`. Never fails: a limiter that cannot
    /// reach its state lets the request through (and says so in its logs and metrics).
    async fn acquire(
        &self,
        tenant: &TenantId,
        group: RateLimitGroup,
        limit: RateLimit,
        cost: u32,
    ) -> Decision;
}

/// GCRA in this process's memory; one TAT per tenant and group (tenants come from the key
/// table, so the map stays small).
#[derive(Debug)]
pub struct LocalRateLimiter {
    epoch: Instant,
    /// Never held across an `.await`. Hashed with foldhash: looked up on every request, and
    /// its keys come from the key table, not from clients.
    tats: Mutex<HashMap<(TenantId, RateLimitGroup), i64, foldhash::fast::RandomState>>,
}

impl Default for LocalRateLimiter {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            tats: Mutex::new(HashMap::default()),
        }
    }
}

impl LocalRateLimiter {
    pub fn new() -> Self {
        Self::default()
    }

    fn acquire_at(
        &self,
        now_us: i64,
        tenant: &TenantId,
        group: RateLimitGroup,
        limit: RateLimit,
        cost: u32,
    ) -> Decision {
        let mut tats = lock(&self.tats);
        // One lookup (one hash) for the read and the write.
        let entry = tats.entry((tenant.clone(), group));
        let stored = match &entry {
            Entry::Occupied(stored) => Some(*stored.get()),
            Entry::Vacant(_) => None,
        };
        let (decision, new_tat) = gcra(now_us, stored, limit, cost);
        if let Some(new_tat) = new_tat {
            entry.insert_entry(new_tat);
        }
        decision
    }
}

#[async_trait]
impl RateLimiter for LocalRateLimiter {
    fn mode(&self) -> LimiterMode {
        LimiterMode::Local
    }

    async fn acquire(
        &self,
        tenant: &TenantId,
        group: RateLimitGroup,
        limit: RateLimit,
        cost: u32,
    ) -> Decision {
        let now_us = i64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(i64::MAX);
        self.acquire_at(now_us, tenant, group, limit, cost)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(rate: f64, burst: u32) -> RateLimit {
        RateLimit::new(rate, burst).unwrap()
    }

    fn tenant(name: &str) -> TenantId {
        TenantId::parse(name).unwrap()
    }

    #[test]
    fn a_rested_key_spends_its_burst_at_once_then_the_rate() {
        let limiter = LocalRateLimiter::new();
        let (a, rule) = (tenant("a"), limit(20.0, 5));
        let passed = (0..50)
            .filter(|_| {
                limiter
                    .acquire_at(0, &a, RateLimitGroup::Predict, rule, 1)
                    .allowed
            })
            .count();
        assert_eq!(passed, 5, "the burst, and nothing more at the same instant");
        // One interval later (50 ms at 20/s) exactly one more request passes.
        assert!(
            limiter
                .acquire_at(50_000, &a, RateLimitGroup::Predict, rule, 1)
                .allowed
        );
        assert!(
            !limiter
                .acquire_at(50_000, &a, RateLimitGroup::Predict, rule, 1)
                .allowed
        );
        // Over the first second: burst + rate at most.
        let total = 6
            + (1..=20)
                .filter(|step| {
                    limiter
                        .acquire_at(50_000 + step * 47_500, &a, RateLimitGroup::Predict, rule, 1)
                        .allowed
                })
                .count();
        assert!(total <= 5 + 20, "{total}");
    }

    #[test]
    fn refusals_say_when_to_retry_and_headers_count_down() {
        let limiter = LocalRateLimiter::new();
        let (a, rule) = (tenant("a"), limit(10.0, 3));
        let first = limiter.acquire_at(0, &a, RateLimitGroup::Predict, rule, 1);
        assert_eq!((first.allowed, first.limit, first.remaining), (true, 3, 2));
        limiter.acquire_at(0, &a, RateLimitGroup::Predict, rule, 1);
        let last = limiter.acquire_at(0, &a, RateLimitGroup::Predict, rule, 1);
        assert_eq!((last.allowed, last.remaining), (true, 0));
        assert_eq!(last.reset_after, Duration::from_millis(300));
        let refused = limiter.acquire_at(0, &a, RateLimitGroup::Predict, rule, 1);
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after, Duration::from_millis(100));
    }

    #[test]
    fn a_batch_costs_its_items_and_tenants_and_groups_are_separate() {
        let limiter = LocalRateLimiter::new();
        let rule = limit(1.0, 10);
        assert!(
            limiter
                .acquire_at(0, &tenant("a"), RateLimitGroup::Predict, rule, 8)
                .allowed
        );
        assert!(
            !limiter
                .acquire_at(0, &tenant("a"), RateLimitGroup::Predict, rule, 3)
                .allowed
        );
        assert!(
            limiter
                .acquire_at(0, &tenant("a"), RateLimitGroup::Jobs, rule, 3)
                .allowed
        );
        assert!(
            limiter
                .acquire_at(0, &tenant("b"), RateLimitGroup::Predict, rule, 10)
                .allowed
        );
        let too_big = limiter.acquire_at(0, &tenant("c"), RateLimitGroup::Predict, rule, 11);
        assert!(!too_big.allowed, "a cost above the burst never passes");
    }
}
