//! Liveness, readiness and metrics.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use inference_engine_core::error::ErrorKind;

use super::AppState;
use crate::api::{ErrorBody, StatusBody};
use crate::error::ApiError;

/// The process is up.
#[utoipa::path(get, path = "/health", security(()), responses((status = 200, body = StatusBody)))]
pub async fn health() -> Json<StatusBody> {
    Json(StatusBody { status: "ok" })
}

/// Whether to send traffic here: 503 while warm-up loads the models, while draining for shutdown or when the job store or the
/// job queue is unreachable.
#[utoipa::path(get, path = "/ready", security(()), responses(
    (status = 200, body = StatusBody),
    (status = 503, description = "`status` is `loading`, `draining` or `degraded`, with a `reason`", body = ErrorBody),
))]
pub async fn ready(State(ctx): State<AppState>) -> Result<Json<StatusBody>, ApiError> {
    let not_ready = |status: &str, reason: &str| {
        ApiError::new(
            ErrorKind::NotReady,
            "not_ready",
            format!("not ready: {reason}"),
        )
        .with_field("status", status)
        .with_field("reason", reason)
    };
    if ctx.lifecycle.is_draining() {
        return Err(not_ready("draining", "the server is shutting down"));
    }
    if ctx.lifecycle.is_loading() {
        return Err(not_ready("loading", "the models are warming up"));
    }
    if let Err(err) = ctx.jobs.ping().await {
        tracing::warn!(error = %err, "readiness check: job store unreachable");
        return Err(not_ready("degraded", "the job store is unreachable"));
    }
    if let Err(err) = ctx.queue.ping().await {
        tracing::warn!(error = %err, "readiness check: job queue unreachable");
        return Err(not_ready("degraded", "the job queue is unreachable"));
    }
    Ok(Json(StatusBody { status: "ready" }))
}

/// Prometheus text exposition of every metric (SPEC §7). Needs `admin` here; served without
/// authentication on `ADMIN_LISTEN_ADDR`.
#[utoipa::path(get, path = "/metrics", responses(
    (status = 200, description = "Prometheus text format", content_type = "text/plain"),
    (status = 403, body = ErrorBody),
))]
pub async fn metrics(State(ctx): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        ctx.metrics.render(),
    )
}
