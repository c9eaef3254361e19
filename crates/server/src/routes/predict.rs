//! `POST /predict` and `POST /predict/batch`: run a model now and answer with its result once
//! the job record is committed.

use std::convert::identity;
use std::time::Duration;

use axum::Json;
use axum::extract::{FromRequest, Query, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use inference_engine_app::telemetry;
use inference_engine_core::error::ErrorKind;
use inference_engine_core::job::{JobId, Payload};
use inference_engine_core::model::{ModelKey, ModelName, ModelVersion};
use inference_engine_core::service::{Caller, PredictCommand, PredictFailure, Prediction};
use inference_engine_core::source::{IMAGE_FIELD, ModelDescription, Preprocessing};
use inference_engine_core::steps::StepTiming;
use inference_engine_core::tensor::{DataType, element_count, nest_json};
use inference_engine_v2::wire;
use serde::Deserialize;
use serde_json::Value;

use super::AppState;
use crate::api::{
    BatchPredictRequest, BatchPredictResponse, ErrorBody, PredictRequest, PredictResponse,
};
use crate::error::ApiError;
use crate::extract::{CallerContext, GuardedBody, SizedJson, parse_json};
use crate::middleware::{AccessLogFields, too_large_error};
use crate::ratelimit::charge_batch_items;

/// Items a batch may hold.
pub const MAX_BATCH_ITEMS: usize = 256;

pub(super) const MODEL_VERSION: HeaderName = HeaderName::from_static("x-model-version");
const INFERENCE_TIME: HeaderName = HeaderName::from_static("x-inference-time-ms");
const QUEUE_TIME: HeaderName = HeaderName::from_static("x-queue-time-ms");
/// A pipeline's inference time per step, `model:version=ms` in step order, comma-separated.
const INFERENCE_STEPS: HeaderName = HeaderName::from_static("x-inference-steps-ms");
/// A pipeline's queue time per step, in the form of [`INFERENCE_STEPS`].
const QUEUE_STEPS: HeaderName = HeaderName::from_static("x-queue-steps-ms");
const JOB_ID: HeaderName = HeaderName::from_static("x-job-id");
/// Headers of a successful prediction's response: content type, the four above, the four
/// rate-limit ones, `X-Request-ID` and `Content-Length`.
const RESPONSE_HEADERS: usize = 11;

/// Runs one example (or a list of them, as the model's input takes them). A model whose
/// manifest says `raw_input = true` also takes its one input's raw little-endian elements:
/// `Content-Type: application/octet-stream` with `?model=..&version=..` (and `&shape=..` when
/// the input has a dynamic dimension); an image model an encoded image (`image/png`,
/// `image/jpeg`, `image/webp`), a text model a `text/plain` text, with the same query.
/// the input has a dynamic dimension). A pipeline of models runs its steps in order; its
/// response also says what each step took (`X-Inference-Steps-Ms`, `X-Queue-Steps-Ms`).
#[utoipa::path(post, path = "/predict", tag = "Inference", request_body(content(
        (PredictRequest = "application/json"),
        (Vec<u8> = "application/octet-stream"),
        (Vec<u8> = "image/png"),
        (Vec<u8> = "image/jpeg"),
        (Vec<u8> = "image/webp"),
        (String = "text/plain"),
    )),
    params(RawPredictQuery),
    responses(
    (status = 200, description = "the model's answer, once its job record is committed", body = PredictResponse, headers(
        ("X-Model-Version" = String, description = "the version that answered"),
        ("X-Inference-Time-Ms" = String, description = "model time in ms; for a pipeline, the sum of its steps'"),
        ("X-Queue-Time-Ms" = String, description = "waiting for an executor or a batch, in ms; for a pipeline, the sum of its steps'"),
        ("X-Inference-Steps-Ms" = String, description = "pipelines only: each step's inference time, `model:version=ms` in step order, comma-separated, e.g. `embedder:v1=1.204, classifier:v2=0.311`"),
        ("X-Queue-Steps-Ms" = String, description = "pipelines only: each step's queue time, in the same form"),
    )),
    (status = 400, description = "malformed JSON", body = ErrorBody),
    (status = 404, description = "`model_not_found`", body = ErrorBody),
    (status = 413, description = "`payload_too_large`: over `MAX_BODY_BYTES` (or the model's `max_body_bytes`)", body = ErrorBody),
    (status = 422, description = "`invalid_request`, `version_required`, `invalid_input`", body = ErrorBody),
    (status = 503, description = "`overloaded`, `unavailable`", body = ErrorBody),
    (status = 504, description = "`inference_timeout`", body = ErrorBody),
))]
pub async fn predict(
    State(ctx): State<AppState>,
    CallerContext(caller): CallerContext,
    request: Request,
) -> Response {
    // Only a raw body needs the query (its model and shape).
    let raw = raw_body(request.headers()).map(|kind| (kind, request.uri().clone()));
    let command = match GuardedBody::from_request(request, &ctx).await {
        Ok(GuardedBody(bytes)) if let Some((kind, uri)) = &raw => {
            raw_command(&ctx, &caller, *kind, uri, &bytes)
        }
        Ok(GuardedBody(bytes)) => parse_json::<PredictRequest>(&bytes).and_then(|body| {
            command(
                &ctx,
                (body.model, body.version),
                bytes.len(),
                body.timeout_ms,
                Ok(Payload::Single(body.data)),
            )
        }),
        Err(err) => Err(err),
    };
    let command = match command {
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

/// What a non-JSON `/predict` body holds, by its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RawBody {
    /// `application/octet-stream`: the one input's little-endian elements.
    Elements,
    /// `image/png`, `image/jpeg`, `image/webp`: one encoded image.
    Image,
    /// `text/plain`: one text, UTF-8.
    Text,
}

/// The raw body kind of a request's `Content-Type` (parameters allowed), checked on the bytes:
/// it is asked of every `/predict`. `None` for JSON (and anything else, which then fails as
/// JSON).
fn raw_body(headers: &HeaderMap) -> Option<RawBody> {
    let value = headers.get(header::CONTENT_TYPE)?.as_bytes();
    let media = value
        .split(|&byte| matches!(byte, b';' | b' ' | b'\t'))
        .next()
        .unwrap_or_default();
    let is = |name: &[u8]| media.eq_ignore_ascii_case(name);
    if is(b"application/octet-stream") {
        Some(RawBody::Elements)
    } else if is(b"image/png") || is(b"image/jpeg") || is(b"image/webp") {
        Some(RawBody::Image)
    } else if is(b"text/plain") {
        Some(RawBody::Text)
    } else {
        None
    }
}

/// A raw body's request, turned into the `data` its JSON requests carry (so it is validated,
/// batched and recorded the same way): the model's one input as little-endian elements, an
/// encoded image (`{"image_base64": ..}`) or a text (a JSON string). For elements without
/// `shape`, the input's example shape must be fixed and the body holds whole examples:
/// exactly one is a single example (a single result), more are a list.
fn raw_command(
    ctx: &AppState,
    caller: &Caller,
    kind: RawBody,
    uri: &Uri,
    bytes: &[u8],
) -> Result<PredictCommand, ApiError> {
    let Query(query) = Query::<RawPredictQuery>::try_from_uri(uri).map_err(|err| {
        ApiError::invalid_request(format!(
            "a raw body needs ?model=NAME (and version, timeout_ms, shape): {}",
            err.body_text()
        ))
    })?;
    let (model, version) = checked_target(ctx, query.model, query.version, bytes.len())?;
    let serving = ctx.registry.serving();
    let key = serving
        .route(&model, version.as_ref(), || caller.routing_bucket())
        .map_err(|err| ApiError::from_classified(&err))?;
    let description = ctx
        .registry
        .details(&key)
        .and_then(|details| details.description)
        .ok_or_else(|| ApiError::not_found(format!("model {key} is not served here")))?;
    let invalid =
        |message: String| ApiError::new(ErrorKind::InvalidInput, "invalid_input", message);
    let data = match kind {
        RawBody::Elements => raw_elements(&key, &description, query.shape.as_deref(), bytes)?,
        RawBody::Image | RawBody::Text if query.shape.is_some() => {
            return Err(ApiError::invalid_request(
                "shape= is for application/octet-stream bodies",
            ));
        }
        RawBody::Image => {
            let Some(Preprocessing::Image { .. }) = description.preprocess else {
                return Err(ApiError::invalid_request(format!(
                    "model {key} takes no images (image bodies are for models with \
                     [preprocess.image] in model.toml)"
                )));
            };
            serde_json::json!({ IMAGE_FIELD: BASE64.encode(bytes) })
        }
        RawBody::Text => {
            let Some(Preprocessing::Text { .. }) = description.preprocess else {
                return Err(ApiError::invalid_request(format!(
                    "model {key} takes no text (text/plain bodies are for models with \
                     [preprocess] tokenizer in model.toml)"
                )));
            };
            let text = std::str::from_utf8(bytes)
                .map_err(|_| invalid("the text/plain body is not UTF-8".into()))?;
            Value::String(text.to_owned())
        }
    };
    Ok(PredictCommand {
        model,
        version: Some(key.version),
        timeout: timeout(query.timeout_ms)?,
        payload: Payload::Single(data),
    })
}

/// An `application/octet-stream` body: the model's one input as little-endian elements.
fn raw_elements(
    key: &ModelKey,
    description: &ModelDescription,
    shape: Option<&str>,
    bytes: &[u8],
) -> Result<Value, ApiError> {
    let (true, [input]) = (description.raw_input, description.inputs.as_slice()) else {
        return Err(ApiError::invalid_request(format!(
            "model {key} takes no application/octet-stream bodies (they are for models whose \
             model.toml says raw_input = true)"
        )));
    };
    let invalid =
        |message: String| ApiError::new(ErrorKind::InvalidInput, "invalid_input", message);
    let datatype = DataType::parse(&input.datatype)
        .ok_or_else(|| ApiError::internal(format!("input `{}` has no raw form", input.name)))?;
    let data = wire::data_from_raw(&input.name, datatype, bytes)
        .map_err(|err| invalid(err.to_string()))?;
    let (shape, single) = raw_shape(shape, &input.shape, data.len())
        .map_err(|message| invalid(format!("input `{}`: {message}", input.name)))?;
    let values = data.to_json_values();
    Ok(if single {
        nest_json(values, &shape[1..])
    } else {
        nest_json(values, &shape)
    })
}

/// The shape of a raw body of `elements` elements for an input declared `declared` (`-1`:
/// any size), and whether it is one bare example.
fn raw_shape(
    given: Option<&str>,
    declared: &[i64],
    elements: usize,
) -> Result<(Vec<usize>, bool), String> {
    let example = declared.get(1..).unwrap_or_default();
    if let Some(given) = given {
        let shape = given
            .split(',')
            .map(|dim| dim.trim().parse::<usize>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| format!("shape={given:?} is not a list of sizes such as 2,3,224,224"))?;
        let fits = shape.len() == declared.len()
            && shape[1..]
                .iter()
                .zip(example)
                .all(|(&size, &dim)| dim < 0 || usize::try_from(dim) == Ok(size));
        if !fits {
            return Err(format!(
                "shape={given} does not fit the input's shape {declared:?} (-1: any size)"
            ));
        }
        if element_count(&shape) != Some(elements) {
            return Err(format!(
                "shape={given} does not hold the body's {elements} elements"
            ));
        }
        return Ok((shape, false));
    }
    let sizes = example
        .iter()
        .map(|&dim| usize::try_from(dim).ok().filter(|&size| size > 0))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| {
            format!(
                "its shape {declared:?} has a dynamic dimension: give the body's shape as ?shape="
            )
        })?;
    let per_example = element_count(&sizes).unwrap_or(0);
    if per_example == 0 || elements == 0 || !elements.is_multiple_of(per_example) {
        return Err(format!(
            "the body holds {elements} elements, not a whole number of examples of {per_example}"
        ));
    }
    let rows = elements / per_example;
    let mut shape = vec![rows];
    shape.extend(sizes);
    Ok((shape, rows == 1))
}

/// The query of a raw `POST /predict`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RawPredictQuery {
    /// Raw bodies only: the model (JSON bodies name it in the body).
    #[param(required = false)]
    model: String,
    version: Option<String>,
    timeout_ms: Option<u64>,
    /// The body's full shape, examples first (`2,3,224,224`); needed when the input has a
    /// dynamic dimension.
    shape: Option<String>,
}

/// Runs 1 to 256 examples in one model call; results come back in request order. A pipeline
/// runs each step on the whole batch, item by item answers passed on to the next step.
#[utoipa::path(post, path = "/predict/batch", tag = "Inference", request_body = BatchPredictRequest, responses(
    (status = 200, description = "one answer per item, in order, once the job record is committed", body = BatchPredictResponse, headers(
        ("X-Model-Version" = String, description = "the version that answered"),
        ("X-Inference-Time-Ms" = String, description = "model time in ms; for a pipeline, the sum of its steps'"),
        ("X-Queue-Time-Ms" = String, description = "waiting for an executor or a batch, in ms; for a pipeline, the sum of its steps'"),
        ("X-Inference-Steps-Ms" = String, description = "pipelines only: each step's inference time, `model:version=ms` in step order, comma-separated"),
        ("X-Queue-Steps-Ms" = String, description = "pipelines only: each step's queue time, in the same form"),
    )),
    (status = 400, description = "malformed JSON", body = ErrorBody),
    (status = 404, description = "`model_not_found`", body = ErrorBody),
    (status = 413, description = "`payload_too_large`: over `MAX_BODY_BYTES` (or the model's `max_body_bytes`)", body = ErrorBody),
    (status = 422, description = "`invalid_request`, `version_required`, `invalid_input`", body = ErrorBody),
    (status = 503, description = "`overloaded`, `unavailable`", body = ErrorBody),
    (status = 504, description = "`inference_timeout`", body = ErrorBody),
))]
pub async fn predict_batch(
    State(ctx): State<AppState>,
    CallerContext(caller): CallerContext,
    SizedJson { body, length }: SizedJson<BatchPredictRequest>,
) -> Response {
    let limit_headers = match charge_batch_items(&ctx, &caller.tenant, body.items.len()).await {
        Ok(headers) => headers,
        Err(refused) => return refused.into_response(),
    };
    let target = (body.model, body.version);
    let command = match command(&ctx, target, length, body.timeout_ms, batch(body.items)) {
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

/// Validates the parts shared by every predict body (`length` bytes long).
fn command(
    ctx: &AppState,
    (model, version): (String, Option<String>),
    length: usize,
    timeout_ms: Option<u64>,
    payload: Result<Payload, ApiError>,
) -> Result<PredictCommand, ApiError> {
    let (model, version) = checked_target(ctx, model, version, length)?;
    Ok(PredictCommand {
        model,
        version,
        timeout: timeout(timeout_ms)?,
        payload: payload?,
    })
}

/// [`target`], once the body (`length` bytes) is within the limit of the model it names: the
/// model's `max_body_bytes`, else `MAX_BODY_BYTES` (the route guard lets bodies up to the
/// largest model limit through).
pub(crate) fn checked_target(
    ctx: &AppState,
    model: String,
    version: Option<String>,
    length: usize,
) -> Result<(ModelName, Option<ModelVersion>), ApiError> {
    let (model, version) = target(model, version)?;
    check_body_limit(ctx, &model, version.as_ref(), length)?;
    Ok((model, version))
}

/// 413 when `length` is over the body limit of `model` (see [`checked_target`]).
pub(crate) fn check_body_limit(
    ctx: &AppState,
    model: &ModelName,
    version: Option<&ModelVersion>,
    length: usize,
) -> Result<(), ApiError> {
    // No model declares a limit: the route guard held the body to MAX_BODY_BYTES already.
    if ctx.registry.largest_body_limit().is_none() {
        return Ok(());
    }
    let limit = ctx
        .registry
        .serving()
        .body_limit(model, version, ctx.settings.max_body_bytes);
    if length > limit {
        return Err(too_large_error(limit));
    }
    Ok(())
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

/// `echo:v1=0.012, iris:v1=0.250`: one time per step of a pipeline, in step order (a model
/// may be a step twice, so this is a list, not a map). `None` for other models.
fn steps_header(
    steps: &[StepTiming],
    time: impl Fn(&StepTiming) -> Duration,
) -> Option<HeaderValue> {
    if steps.is_empty() {
        return None;
    }
    let mut text = String::new();
    let mut number = [0; telemetry::NUMBER_TEXT_LEN];
    for (index, step) in steps.iter().enumerate() {
        if index > 0 {
            text.push_str(", ");
        }
        text.push_str(step.model.name.as_str());
        text.push(':');
        text.push_str(step.model.version.as_str());
        text.push('=');
        text.push_str(telemetry::millis_text(time(step), &mut number));
    }
    // Model names and versions are ASCII letters, digits and `_-.`: always a valid value.
    HeaderValue::from_str(&text).ok()
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
            let inference_steps = steps_header(&prediction.steps, |step| step.inference_time);
            let queue_steps = steps_header(&prediction.steps, |step| step.queue_time);
            let version_header = HeaderValue::from_str(version.as_str()).ok();
            let job_header = HeaderValue::from_str(job_id.as_text(&mut [0; JobId::TEXT_LEN])).ok();
            let mut response = body(prediction, name, version, job_id).into_response();
            let headers = response.headers_mut();
            // Room for every header the layers add on the way out (rate limits, request id,
            // length): growing the map rehashes it, twice from its initial size.
            headers.reserve(RESPONSE_HEADERS);
            headers.insert(INFERENCE_TIME, inference_time);
            headers.insert(QUEUE_TIME, queue_time);
            if let Some(value) = inference_steps {
                headers.insert(INFERENCE_STEPS, value);
            }
            if let Some(value) = queue_steps {
                headers.insert(QUEUE_STEPS, value);
            }
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
