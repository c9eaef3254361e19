//! The distributed `RateLimiter`: GCRA in one Lua script, so every server process sharing this
//! Redis charges the same allowance atomically, on Redis's clock (the processes' clocks never
//! enter the decision).
//!
//! If Redis cannot be asked, the request is let through (fail open): a limiter outage must not
//! become an API outage. Each such request counts in `rate_limiter_failures_total`, and a
//! warning is logged at most once a minute.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use inference_engine_core::auth::TenantId;
use inference_engine_core::config::{RateLimit, RateLimitGroup};
use inference_engine_core::observe;
use inference_engine_core::ports::QueueError;
use inference_engine_core::ratelimit::{
    Decision, LimiterMode, RateLimiter, decision, interval_us, tolerance_us,
};
use redis::Script;

use crate::config::RedisQueueConfig;
use crate::connection::{Connections, Request};

/// KEYS[1]: the key's TAT. ARGV: interval µs, tolerance µs, cost.
/// Returns {allowed (0|1), µs the TAT is ahead of now, µs until a refused request would pass}.
static GCRA: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local new_tat = tat + interval * cost
local allow_at = new_tat - tolerance
if now < allow_at then
  return {0, tat - now, allow_at - now}
end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return {1, new_tat - now, 0}
",
    )
});

/// How often an ongoing outage is logged.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// GCRA state in Redis, shared by every process using the same key prefix.
#[derive(Debug)]
pub struct RedisRateLimiter {
    connections: Connections,
    prefix: String,
    /// Seconds since the epoch of the last outage warning.
    last_warning: AtomicU64,
}

impl RedisRateLimiter {
    /// Connects (failing within the configured timeout, naming the host, never the password).
    pub async fn connect(config: &RedisQueueConfig) -> Result<Self, QueueError> {
        Ok(Self {
            connections: Connections::open(config).await?,
            prefix: config.key_prefix.clone(),
            last_warning: AtomicU64::new(0),
        })
    }

    fn key(&self, tenant: &TenantId, group: RateLimitGroup) -> String {
        format!("{}rl:{}:{}", self.prefix, group.as_str(), tenant.as_str())
    }

    fn warn_outage(&self, error: &str) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        let last = self.last_warning.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= WARN_EVERY.as_secs()
            && self
                .last_warning
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                error,
                "rate limiter: Redis unreachable; requests pass unlimited (fail open)"
            );
        }
    }
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    fn mode(&self) -> LimiterMode {
        LimiterMode::Distributed
    }

    async fn acquire(
        &self,
        tenant: &TenantId,
        group: RateLimitGroup,
        limit: RateLimit,
        cost: u32,
    ) -> Decision {
        let mut invocation = GCRA.key(self.key(tenant, group));
        invocation
            .arg(interval_us(limit))
            .arg(tolerance_us(limit))
            .arg(cost);
        let outcome = tokio::time::timeout(
            self.connections.command_timeout,
            self.connections
                .run_once::<(i64, i64, i64)>(&Request::Script(&invocation)),
        )
        .await;
        match outcome {
            Ok(Ok((allowed, ahead_us, retry_us))) => {
                decision(limit, allowed == 1, ahead_us, retry_us)
            }
            Ok(Err(err)) => {
                observe::rate_limiter_failure();
                self.warn_outage(
                    &self
                        .connections
                        .describe
                        .error("rate limiting", &err)
                        .to_string(),
                );
                decision(limit, true, 0, 0)
            }
            Err(_) => {
                observe::rate_limiter_failure();
                self.warn_outage("the Redis command timed out");
                decision(limit, true, 0, 0)
            }
        }
    }
}
