//! `POST /predict/async`, `POST /predict/async/batch` and `GET /predict/async/{job_id}`:
//! accept work with 202 once it is committed, and let the client poll it.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use inference_engine_core::job::{IdempotencyKey, Payload};
use inference_engine_core::jobs::{MAX_ATTEMPTS_LIMIT, SubmitCommand};
use inference_engine_core::service::Caller;

use super::AppState;
use super::jobs::job_view_response;
use super::predict::{MODEL_VERSION, batch, checked_target, timeout};
use crate::api::{
    AsyncAccepted, AsyncBatchPredictRequest, AsyncPredictRequest, ErrorBody, JobView,
};
use crate::error::ApiError;
use crate::extract::{CallerContext, CallerPrincipal, SizedJson};
use crate::middleware::AccessLogFields;
use crate::ratelimit::charge_batch_items;

const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Queues one example. With `Idempotency-Key`, resending the same request returns the
/// original job.
#[utoipa::path(post, path = "/predict/async", tag = "Inference", request_body = AsyncPredictRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "up to 255 characters; kept 24 h")),
    responses(
        (status = 202, description = "committed to the job store (or the original job of a replayed `Idempotency-Key`)", body = AsyncAccepted, headers(("Location" = String, description = "`/predict/async/{job_id}`"))),
        (status = 404, description = "`model_not_found`", body = ErrorBody),
        (status = 409, description = "`idempotency_conflict`", body = ErrorBody),
        (status = 422, description = "`invalid_request`, `version_required`", body = ErrorBody),
))]
pub async fn predict_async(
    State(ctx): State<AppState>,
    CallerContext(caller): CallerContext,
    headers: HeaderMap,
    SizedJson { body, length }: SizedJson<AsyncPredictRequest>,
) -> Result<Response, ApiError> {
    let command = submit_command(
        &ctx,
        &headers,
        length,
        body.model,
        body.version,
        body.max_attempts,
        body.timeout_ms,
        Payload::Single(body.data),
    )?;
    submit(&ctx, &caller, command).await
}

/// Queues 1 to 256 examples as one job; its result is the array of results.
#[utoipa::path(post, path = "/predict/async/batch", tag = "Inference", request_body = AsyncBatchPredictRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "up to 255 characters; kept 24 h")),
    responses(
        (status = 202, description = "committed to the job store (or the original job of a replayed `Idempotency-Key`)", body = AsyncAccepted, headers(("Location" = String, description = "`/predict/async/{job_id}`"))),
        (status = 404, description = "`model_not_found`", body = ErrorBody),
        (status = 409, description = "`idempotency_conflict`", body = ErrorBody),
        (status = 422, description = "`invalid_request`, `version_required`", body = ErrorBody),
))]
pub async fn predict_async_batch(
    State(ctx): State<AppState>,
    CallerContext(caller): CallerContext,
    headers: HeaderMap,
    SizedJson { body, length }: SizedJson<AsyncBatchPredictRequest>,
) -> Result<Response, ApiError> {
    let limit_headers = charge_batch_items(&ctx, &caller.tenant, body.items.len()).await?;
    let command = submit_command(
        &ctx,
        &headers,
        length,
        body.model,
        body.version,
        body.max_attempts,
        body.timeout_ms,
        batch(body.items)?,
    )?;
    let mut response = submit(&ctx, &caller, command).await?;
    if let Some(headers) = limit_headers {
        headers.apply(&mut response);
    }
    Ok(response)
}

/// An async job of the caller's tenant.
#[utoipa::path(get, path = "/predict/async/{job_id}", tag = "Jobs",
    params(("job_id" = String, Path, description = "the job's UUID", example = "0197a3c2-6f1e-7cc0-9b1d-2f0a4c8e5d31")),
    responses(
    (status = 200, description = "the job", body = JobView),
    (status = 404, description = "`job_not_found`", body = ErrorBody),
    (status = 422, description = "the id is not a UUID", body = ErrorBody),
))]
pub async fn get_async_job(
    State(ctx): State<AppState>,
    CallerPrincipal(principal): CallerPrincipal,
    Path(job_id): Path<String>,
) -> Result<Response, ApiError> {
    job_view_response(&ctx, &principal, &job_id).await
}

/// The submission of a body `length` bytes long (held to its model's body limit).
#[allow(clippy::too_many_arguments)]
fn submit_command(
    ctx: &AppState,
    headers: &HeaderMap,
    length: usize,
    model: String,
    version: Option<String>,
    max_attempts: Option<u32>,
    timeout_ms: Option<u64>,
    payload: Payload,
) -> Result<SubmitCommand, ApiError> {
    let (model, version) = checked_target(ctx, model, version, length)?;
    if max_attempts.is_some_and(|attempts| !(1..=MAX_ATTEMPTS_LIMIT).contains(&attempts)) {
        return Err(ApiError::invalid_request(format!(
            "max_attempts must be between 1 and {MAX_ATTEMPTS_LIMIT}"
        )));
    }
    let idempotency_key = headers
        .get(IDEMPOTENCY_KEY)
        .map(|value| {
            value
                .to_str()
                .map_err(|_| "Idempotency-Key must be visible ASCII".to_owned())
                .and_then(IdempotencyKey::parse)
                .map_err(ApiError::invalid_request)
        })
        .transpose()?;
    Ok(SubmitCommand {
        model,
        version,
        payload,
        max_attempts,
        timeout: timeout(timeout_ms)?,
        idempotency_key,
    })
}

async fn submit(
    ctx: &AppState,
    caller: &Caller,
    command: SubmitCommand,
) -> Result<Response, ApiError> {
    let submission = ctx
        .async_jobs
        .submit(caller, command)
        .await
        .map_err(|err| ApiError::from_classified(&err))?;
    let job = submission.job();
    let job_id = job.id.to_string();
    let fields = AccessLogFields::for_job(job);
    let location = HeaderValue::from_str(&format!("/predict/async/{job_id}")).ok();
    let version = job
        .version
        .as_ref()
        .and_then(|version| HeaderValue::from_str(version.as_str()).ok());
    let body = AsyncAccepted {
        job_id,
        status: job.status.as_str().to_owned(),
    };
    let mut response = (StatusCode::ACCEPTED, Json(body)).into_response();
    if let Some(location) = location {
        response.headers_mut().insert(header::LOCATION, location);
    }
    if let Some(version) = version {
        response.headers_mut().insert(MODEL_VERSION, version);
    }
    response.extensions_mut().insert(fields);
    Ok(response)
}
