//! Liveness, readiness and metrics.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use inference_engine_app::NotReady;
use inference_engine_core::error::ErrorKind;
use inference_engine_core::observe;
use inference_engine_core::sync::lock;

use super::AppState;
use crate::api::{ErrorBody, StatusBody};
use crate::error::ApiError;

/// The process is up.
#[utoipa::path(get, path = "/health", tag = "Health", security(()), responses(
    (status = 200, description = "`{\"status\": \"ok\"}` while the process runs", body = StatusBody),
))]
pub async fn health() -> Json<StatusBody> {
    Json(StatusBody { status: "ok" })
}

/// Whether to send traffic here: 503 while warm-up loads the models, while draining for shutdown or when the job store or the
/// job queue is unreachable.
#[utoipa::path(get, path = "/ready", tag = "Health", security(()), responses(
    (status = 200, description = "`{\"status\": \"ready\"}`: send traffic here", body = StatusBody),
    (status = 503, description = "`status` is `loading`, `draining` or `degraded`, with a `reason`", body = ErrorBody),
))]
pub async fn ready(State(ctx): State<AppState>) -> Result<Json<StatusBody>, ApiError> {
    ctx.readiness().await.map_err(not_ready)?;
    Ok(Json(StatusBody { status: "ready" }))
}

/// 503 `not_ready` with the `status` and `reason` fields.
pub(super) fn not_ready(not_ready: NotReady) -> ApiError {
    ApiError::new(
        ErrorKind::NotReady,
        "not_ready",
        format!("not ready: {}", not_ready.reason),
    )
    .with_field("status", not_ready.status)
    .with_field("reason", not_ready.reason)
}

/// Prometheus text exposition of every metric (listed in `deploy/README.md`). Needs `admin` here; served without
/// authentication on `ADMIN_LISTEN_ADDR`. `job_queue_depth` is read from the job store on each
/// scrape, so it counts the pending jobs of every process.
#[utoipa::path(get, path = "/metrics", tag = "Admin", responses(
    (status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"),
))]
pub async fn metrics(State(ctx): State<AppState>) -> impl IntoResponse {
    refresh_job_queue_depth(&ctx).await;
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        ctx.metrics.render(),
    )
}

/// Sets `job_queue_depth` from the store. When the store cannot answer, the metrics are rendered
/// anyway and the gauge keeps the values of the last scrape that could read it: the other
/// metrics matter most exactly when the store is in trouble.
///
/// Two concurrent scrapes may apply their counts in the opposite order to their queries, so a
/// render can show the slightly older counts; the next scrape sets every series afresh, so
/// nothing stale outlives it.
async fn refresh_job_queue_depth(ctx: &AppState) {
    // A scrape must answer even when the store is slow: the gauge then keeps its last values.
    const STORE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(1);
    match tokio::time::timeout(STORE_DEADLINE, ctx.jobs.pending_by_model())
        .await
        .unwrap_or_else(|_| {
            Err(inference_engine_core::ports::StoreError::Unavailable(
                "no answer within 1 s".into(),
            ))
        }) {
        Ok(counts) => {
            let mut reported = lock(&ctx.queue_depth_series);
            observe::job_queue_depth(&counts, &mut reported);
        }
        Err(err) => {
            tracing::warn!(error = %err, "job_queue_depth not refreshed: the job store did not answer");
        }
    }
}
