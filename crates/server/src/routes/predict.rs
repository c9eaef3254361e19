//! `POST /predict` and `POST /predict/batch`: run a model now and answer with its result once
//! the job record is committed.

use std::convert::identity;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use inference_engine_app::telemetry;
use inference_engine_core::job::{JobId, Payload};
use inference_engine_core::model::{ModelKey, ModelName, ModelVersion};
use inference_engine_core::service::{PredictCommand, PredictFailure, Prediction};

use super::AppState;
use crate::api::{
    BatchPredictRequest, BatchPredictResponse, ErrorBody, PredictRequest, PredictResponse,
};
use crate::error::ApiError;
use crate::extract::{ApiJson, CallerContext};
use crate::middleware::AccessLogFields;
use crate::ratelimit::charge_batch_items;

/// Items a batch may hold.
pub const MAX_BATCH_ITEMS: usize = 256;

pub(super) const MODEL_VERSION: HeaderName = HeaderName::from_static("x-model-version");
const INFERENCE_TIME: HeaderName = HeaderName::from_static("x-inference-time-ms");
const QUEUE_TIME: HeaderName = HeaderName::from_static("x-queue-time-ms");
const JOB_ID: HeaderName = HeaderName::from_static("x-job-id");
/// Headers of a successful prediction's response: content type, the four above, the four
/// rate-limit ones, `X-Request-ID` and `Content-Length`.
const RESPONSE_HEADERS: usize = 11;

/// Runs one example.
#[utoipa::path(post, path = "/predict", request_body = PredictRequest, responses(
    (status = 200, body = PredictResponse, headers(
        ("X-Model-Version" = String), ("X-Inference-Time-Ms" = String), ("X-Queue-Time-Ms" = String),
    )),
    (status = 400, description = "malformed JSON", body = ErrorBody),
    (status = 404, description = "`model_not_found`", body = ErrorBody),
    (status = 413, body = ErrorBody),
    (status = 422, description = "`invalid_request`, `version_required`, `invalid_input`", body = ErrorBody),
    (status = 503, description = "`overloaded`, `unavailable`", body = ErrorBody),
    (status = 504, description = "`inference_timeout`", body = ErrorBody),
))]
pub async fn predict(
    State(ctx): State<AppState>,
    CallerContext(caller): CallerContext,
    ApiJson(body): ApiJson<PredictRequest>,
) -> Response {
    let command = match command(
        body.model,
        body.version,
        body.timeout_ms,
        Ok(Payload::Single(body.data)),
    ) {
        Ok(command) => command,
        Err(err) => return err.into_response(),
    };
    respond(
        ctx.predict(&caller, command).await,
        |prediction, model, version, job_id| {
            Json(PredictResponse {
                result: prediction.output,
                model,
                version,
                job_id,
            })
        },
        identity,
    )
}

/// Runs 1 to 256 examples in one model call; results come back in request order.
#[utoipa::path(post, path = "/predict/batch", request_body = BatchPredictRequest, responses(
    (status = 200, body = BatchPredictResponse),
    (status = 400, description = "malformed JSON", body = ErrorBody),
    (status = 404, description = "`model_not_found`", body = ErrorBody),
    (status = 413, body = ErrorBody),
    (status = 422, description = "`invalid_request`, `version_required`, `invalid_input`", body = ErrorBody),
    (status = 503, description = "`overloaded`, `unavailable`", body = ErrorBody),
    (status = 504, description = "`inference_timeout`", body = ErrorBody),
))]
pub async fn predict_batch(
    State(ctx): State<AppState>,
    CallerContext(caller): CallerContext,
    ApiJson(body): ApiJson<BatchPredictRequest>,
) -> Response {
    let limit_headers = match charge_batch_items(&ctx, &caller.tenant, body.items.len()).await {
        Ok(headers) => headers,
        Err(refused) => return refused.into_response(),
    };
    let command = match command(body.model, body.version, body.timeout_ms, batch(body.items)) {
        Ok(command) => command,
        Err(err) => return err.into_response(),
    };
    let mut response = respond(
        ctx.predict(&caller, command).await,
        |prediction, model, version, job_id| {
            Json(BatchPredictResponse {
                results: match prediction.output {
                    serde_json::Value::Array(results) => results,
                    other => vec![other],
                },
                model,
                version,
                job_id,
            })
        },
        identity,
    );
    if let Some(headers) = limit_headers {
        headers.apply(&mut response);
    }
    response
}

/// Validates the parts shared by every predict body.
fn command(
    model: String,
    version: Option<String>,
    timeout_ms: Option<u64>,
    payload: Result<Payload, ApiError>,
) -> Result<PredictCommand, ApiError> {
    let (model, version) = target(model, version)?;
    Ok(PredictCommand {
        model,
        version,
        timeout: timeout(timeout_ms)?,
        payload: payload?,
    })
}

/// The model and, unless omitted or empty, the version.
pub(crate) fn target(
    model: String,
    version: Option<String>,
) -> Result<(ModelName, Option<ModelVersion>), ApiError> {
    let model =
        ModelName::parse(model).map_err(|err| ApiError::invalid_request(err.to_string()))?;
    let version = version
        .filter(|version| !version.is_empty())
        .map(ModelVersion::parse)
        .transpose()
        .map_err(|err| ApiError::invalid_request(err.to_string()))?;
    Ok((model, version))
}

pub(super) fn timeout(timeout_ms: Option<u64>) -> Result<Option<Duration>, ApiError> {
    match timeout_ms {
        Some(0) => Err(ApiError::invalid_request("timeout_ms must be at least 1")),
        other => Ok(other.map(Duration::from_millis)),
    }
}

pub(super) fn batch(items: Vec<serde_json::Value>) -> Result<Payload, ApiError> {
    if items.is_empty() || items.len() > MAX_BATCH_ITEMS {
        return Err(ApiError::invalid_request(format!(
            "items must hold between 1 and {MAX_BATCH_ITEMS} examples, not {}",
            items.len()
        )));
    }
    Ok(Payload::Batch(items))
}

/// Milliseconds with three decimals.
fn millis_header(duration: Duration) -> HeaderValue {
    let mut text = [0; telemetry::NUMBER_TEXT_LEN];
    HeaderValue::from_str(telemetry::millis_text(duration, &mut text))
        .unwrap_or(HeaderValue::from_static("0"))
}

/// Success: the body plus timing and version headers. Failure: the mapped error, with the
/// `X-Job-ID` of the failed job when it was recorded.
pub(super) fn respond<A, B: IntoResponse>(
    outcome: Result<Prediction<A>, PredictFailure>,
    body: impl FnOnce(Prediction<A>, ModelName, ModelVersion, JobId) -> B,
    error: impl FnOnce(ApiError) -> ApiError,
) -> Response {
    match outcome {
        Ok(prediction) => {
            let job_id = prediction.job_id;
            let ModelKey { name, version } = prediction.model.clone();
            let fields = AccessLogFields::for_prediction(Some(job_id), Some(&prediction.model));
            let inference_time = millis_header(prediction.inference_time);
            let queue_time = millis_header(prediction.queue_time);
            let version_header = HeaderValue::from_str(version.as_str()).ok();
            let job_header = HeaderValue::from_str(job_id.as_text(&mut [0; JobId::TEXT_LEN])).ok();
            let mut response = body(prediction, name, version, job_id).into_response();
            let headers = response.headers_mut();
            // Room for every header the layers add on the way out (rate limits, request id,
            // length): growing the map rehashes it, twice from its initial size.
            headers.reserve(RESPONSE_HEADERS);
            headers.insert(INFERENCE_TIME, inference_time);
            headers.insert(QUEUE_TIME, queue_time);
            if let Some(value) = version_header {
                headers.insert(MODEL_VERSION, value);
            }
            if let Some(value) = job_header {
                headers.insert(JOB_ID, value);
            }
            response.extensions_mut().insert(fields);
            response
        }
        Err(failure) => {
            let mut error = error(ApiError::from_classified(&failure.error));
            if let Some(job_id) = failure.job_id {
                error = error.with_header(JOB_ID, job_id.to_string());
            }
            if let Some(model) = &failure.model {
                error = error.with_header(MODEL_VERSION, model.version.to_string());
            }
            let fields = AccessLogFields::for_prediction(failure.job_id, failure.model.as_ref());
            let mut response = error.into_response();
            response.extensions_mut().insert(fields);
            response
        }
    }
}
