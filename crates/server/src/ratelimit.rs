//! Rate limiting on the HTTP path: after the scope check, before the body is read (docs/api.md
//! order), each route group charges the caller's tenant; batch routes charge the rest of their
//! items once the body is parsed. Every limited response carries `RateLimit-Limit`,
//! `RateLimit-Remaining`, `RateLimit-Reset` and `X-RateLimit-Mode`; a refusal is 429
//! `rate_limited` with `Retry-After`. A group without a configured limit is not limited and
//! gets no headers.

use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, header};
use axum::response::Response;
use inference_engine_core::auth::TenantId;
use inference_engine_core::config::RateLimitGroup;
use inference_engine_core::error::ErrorKind;
use inference_engine_core::observe;
use inference_engine_core::ratelimit::Decision;

use crate::error::ApiError;
use crate::routes::AppState;

/// The headers of one decision, for the response.
#[derive(Debug, Clone)]
pub struct RateLimitHeaders {
    decision: Decision,
    mode: &'static str,
}

/// The names as constants: `HeaderName::from_static` checks its argument, which a `const` does
/// once at compile time rather than on every response.
pub(crate) const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");
const RATELIMIT_MODE: HeaderName = HeaderName::from_static("x-ratelimit-mode");

impl RateLimitHeaders {
    /// Built from integers without formatting strings: these go on every limited response.
    fn pairs(&self) -> [(HeaderName, HeaderValue); 4] {
        [
            (RATELIMIT_LIMIT, HeaderValue::from(self.decision.limit)),
            (
                RATELIMIT_REMAINING,
                HeaderValue::from(self.decision.remaining),
            ),
            (
                RATELIMIT_RESET,
                HeaderValue::from(whole_seconds(self.decision.reset_after)),
            ),
            (RATELIMIT_MODE, HeaderValue::from_static(self.mode)),
        ]
    }

    pub fn apply(&self, response: &mut Response) {
        let headers = response.headers_mut();
        for (name, value) in self.pairs() {
            headers.insert(name, value);
        }
    }
}

/// Seconds, rounded up: a client told 0 would retry at once.
fn whole_seconds(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

/// Charges `cost` to `tenant` in `group`. `Ok(None)`: the group has no limit.
pub async fn charge(
    ctx: &AppState,
    tenant: &TenantId,
    group: RateLimitGroup,
    cost: u32,
) -> Result<Option<RateLimitHeaders>, ApiError> {
    let Some(limit) = ctx
        .registry
        .serving()
        .config
        .rate_limits
        .limit_for(group, tenant)
    else {
        return Ok(None);
    };
    let decision = ctx.rate_limiter.acquire(tenant, group, limit, cost).await;
    let headers = RateLimitHeaders {
        decision,
        mode: ctx.rate_limiter.mode().as_str(),
    };
    if decision.allowed {
        return Ok(Some(headers));
    }
    observe::rate_limited(group.as_str(), tenant.as_str());
    let mut refused = ApiError::new(
        ErrorKind::RateLimited,
        "rate_limited",
        format!(
            "rate limit of {} requests per second (burst {}) exceeded for {}; retry after {} s",
            limit.rate(),
            limit.burst(),
            group.as_str(),
            whole_seconds(decision.retry_after).max(1)
        ),
    )
    .with_header(
        header::RETRY_AFTER,
        whole_seconds(decision.retry_after).max(1),
    );
    for (name, value) in headers.pairs() {
        refused = refused.with_header(name, value);
    }
    Err(refused)
}

/// A batch costs its number of items: the layer charged one, this charges the rest. Returns
/// the headers to send (the fresher decision), or the 429.
pub async fn charge_batch_items(
    ctx: &AppState,
    tenant: &TenantId,
    items: usize,
) -> Result<Option<RateLimitHeaders>, ApiError> {
    match u32::try_from(items.saturating_sub(1)) {
        Ok(0) => Ok(None),
        Ok(rest) => charge(ctx, tenant, RateLimitGroup::Predict, rest).await,
        Err(_) => charge(ctx, tenant, RateLimitGroup::Predict, u32::MAX).await,
    }
}
