//! The Open Inference Protocol's REST API (`/v2/...`) on the main port: server and model
//! metadata and readiness, and `infer` with JSON or binary tensors (the wire formats live in
//! the `inference-engine-v2` crate). Same keys, scopes, rate limits, job records, metrics and
//! SLA as `/predict`; errors are `{"error", "code", "request_id"}` (see `ErrorStyle`), and
//! invalid requests are 400 as the protocol says.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use inference_engine_core::error::ErrorKind;
use inference_engine_core::executor::Priority;
use inference_engine_core::model::{ModelKey, ModelName, ModelVersion};
use inference_engine_core::registry::{ModelDetails, ResolveError};
use inference_engine_core::routing::Bucket;
use inference_engine_core::service::TensorCommand;
use inference_engine_core::source::TensorSpec;
use inference_engine_core::tensor::Tensor;
use inference_engine_v2::rest::{self, InferRequest};
use serde_json::{Value, json};

use super::AppState;
use super::health;
use super::predict::{checked_target, respond, target};
use crate::error::ApiError;
use crate::extract::{CallerContext, GuardedBody};

/// What `GET /v2` and gRPC `ServerMetadata` call this server.
pub const SERVER_NAME: &str = "inference-engine";
/// Protocol extensions served on both transports.
pub const EXTENSIONS: [&str; 2] = ["binary_tensor_data", "model_repository"];

/// `GET /v2`.
#[utoipa::path(get, path = "/v2", tag = "Open Inference Protocol", responses(
    (status = 200, description = "server name, version and protocol extensions", body = crate::api::v2::V2ServerMetadata),
))]
pub async fn server_metadata() -> Json<Value> {
    Json(json!({
        "name": SERVER_NAME,
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": EXTENSIONS,
    }))
}

/// `GET /v2/health/live`: the process answers.
#[utoipa::path(get, path = "/v2/health/live", tag = "Open Inference Protocol", security(()), responses(
    (status = 200, description = "`{\"live\": true}`", body = crate::api::v2::V2Live),
))]
pub async fn live() -> Json<Value> {
    Json(json!({"live": true}))
}

/// `GET /v2/health/ready`: the same verdict as `/ready`.
#[utoipa::path(get, path = "/v2/health/ready", tag = "Open Inference Protocol", security(()), responses(
    (status = 200, description = "`{\"ready\": true}`", body = crate::api::v2::V2Ready),
    (status = 503, description = "`loading`, `draining`, `unavailable`", body = crate::api::v2::V2ErrorBody),
))]
pub async fn ready(State(ctx): State<AppState>) -> Result<Json<Value>, ApiError> {
    ctx.readiness().await.map_err(health::not_ready)?;
    Ok(Json(json!({"ready": true})))
}

/// `GET /v2/models/{name}`: the version the routing rule picks (else the latest).
#[utoipa::path(get, path = "/v2/models/{name}", tag = "Open Inference Protocol", params(("name" = String, Path, description = "model name", example = "iris")), responses(
    (status = 200, description = "the model's versions, platform and tensors", body = crate::api::v2::V2ModelMetadata),
    (status = 404, description = "`model_not_found`", body = crate::api::v2::V2ErrorBody),
))]
pub async fn model_metadata(
    State(ctx): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    metadata(&ctx, name, None).map(Json)
}

/// `GET /v2/models/{name}/versions/{version}`.
#[utoipa::path(get, path = "/v2/models/{name}/versions/{version}", tag = "Open Inference Protocol",
    params(
        ("name" = String, Path, description = "model name", example = "iris"),
        ("version" = String, Path, description = "model version", example = "v1"),
    ), responses(
    (status = 200, description = "the model's versions, platform and tensors", body = crate::api::v2::V2ModelMetadata),
    (status = 404, description = "`model_not_found`", body = crate::api::v2::V2ErrorBody),
))]
pub async fn version_metadata(
    State(ctx): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    metadata(&ctx, name, Some(version)).map(Json)
}

/// `GET /v2/models/{name}/ready`.
#[utoipa::path(get, path = "/v2/models/{name}/ready", tag = "Open Inference Protocol", params(("name" = String, Path, description = "model name", example = "iris")), responses(
    (status = 200, description = "the model is ready", body = crate::api::v2::V2ModelReady),
    (status = 404, description = "`model_not_found`", body = crate::api::v2::V2ErrorBody),
    (status = 503, description = "`not_ready`", body = crate::api::v2::V2ErrorBody),
))]
pub async fn model_ready(
    State(ctx): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    readiness(&ctx, name, None).map(Json)
}

/// `GET /v2/models/{name}/versions/{version}/ready`.
#[utoipa::path(get, path = "/v2/models/{name}/versions/{version}/ready", tag = "Open Inference Protocol",
    params(
        ("name" = String, Path, description = "model name", example = "iris"),
        ("version" = String, Path, description = "model version", example = "v1"),
    ), responses(
    (status = 200, description = "the model is ready", body = crate::api::v2::V2ModelReady),
    (status = 404, description = "`model_not_found`", body = crate::api::v2::V2ErrorBody),
    (status = 503, description = "`not_ready`", body = crate::api::v2::V2ErrorBody),
))]
pub async fn version_ready(
    State(ctx): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    readiness(&ctx, name, Some(version)).map(Json)
}

/// `POST /v2/models/{name}/infer`: the model's routing rule picks the version. Recorded as a
/// job like `/predict`; the binary tensor extension works both ways.
#[utoipa::path(post, path = "/v2/models/{name}/infer", tag = "Open Inference Protocol", params(("name" = String, Path, description = "model name", example = "iris")),
    request_body = crate::api::v2::V2InferRequest,
    responses(crate::api::v2::V2InferResponses))]
pub async fn infer(
    State(ctx): State<AppState>,
    CallerContext(caller): CallerContext,
    Path(name): Path<String>,
    headers: HeaderMap,
    GuardedBody(body): GuardedBody,
) -> Response {
    run_infer(&ctx, &caller, name, None, &headers, &body).await
}

/// `POST /v2/models/{name}/versions/{version}/infer`.
#[utoipa::path(post, path = "/v2/models/{name}/versions/{version}/infer", tag = "Open Inference Protocol",
    params(
        ("name" = String, Path, description = "model name", example = "iris"),
        ("version" = String, Path, description = "model version", example = "v1"),
    ),
    request_body = crate::api::v2::V2InferRequest,
    responses(crate::api::v2::V2InferResponses))]
pub async fn infer_version(
    State(ctx): State<AppState>,
    CallerContext(caller): CallerContext,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    GuardedBody(body): GuardedBody,
) -> Response {
    run_infer(&ctx, &caller, name, Some(version), &headers, &body).await
}

/// A model's protocol metadata: its versions, backend and tensor signature.
pub fn metadata_json(key: &ModelKey, versions: &[String], details: &ModelDetails) -> Value {
    let tensors = |specs: &[TensorSpec]| {
        specs
            .iter()
            .map(|spec| {
                json!({"name": spec.name, "datatype": spec.protocol_datatype(), "shape": spec.shape})
            })
            .collect::<Vec<_>>()
    };
    let (inputs, outputs) = details
        .description
        .as_ref()
        .map_or((Vec::new(), Vec::new()), |description| {
            (tensors(&description.inputs), tensors(&description.outputs))
        });
    json!({
        "name": key.name,
        "versions": versions,
        "platform": platform(details),
        "inputs": inputs,
        "outputs": outputs,
    })
}

/// The protocol's `platform`: what runs the model, in Triton's words for ONNX graphs
/// (`onnxruntime_onnx`, `tract_onnx`), else the backend (`builtin`, `remote_v2`).
pub fn platform(details: &ModelDetails) -> String {
    match details
        .description
        .as_ref()
        .and_then(|description| description.runtime)
    {
        Some(runtime) => format!("{runtime}_onnx"),
        None => details.status.backend.as_str().to_owned(),
    }
}

/// The model a protocol request names, its details and all its versions.
#[derive(Debug)]
pub struct Resolved {
    pub key: ModelKey,
    pub details: ModelDetails,
    pub versions: Vec<String>,
}

/// Resolves a protocol model reference for metadata and readiness: without a version the
/// routing rule decides, and a model with several versions and no rule answers for its latest
/// version (as Triton does).
pub fn resolve(
    ctx: &AppState,
    name: String,
    version: Option<String>,
) -> Result<Resolved, ApiError> {
    let (name, version) = target(name, version).map_err(ApiError::for_protocol)?;
    resolve_key(ctx, &name, version.as_ref())
}

fn resolve_key(
    ctx: &AppState,
    name: &ModelName,
    version: Option<&ModelVersion>,
) -> Result<Resolved, ApiError> {
    let serving = ctx.registry.serving();
    let key = match serving.route(name, version, || Bucket::for_request(None)) {
        Ok(key) => key,
        Err(ResolveError::VersionRequired { .. }) => versions_of(ctx, name)
            .pop()
            .ok_or_else(|| ApiError::not_found(format!("model \"{name}\" is not served here")))?,
        Err(err) => return Err(ApiError::from_classified(&err).for_protocol()),
    };
    let details = ctx
        .registry
        .details(&key)
        .ok_or_else(|| ApiError::not_found(format!("model {key} is not served here")))?;
    let versions = versions_of(ctx, &key.name)
        .into_iter()
        .map(|key| key.version.to_string())
        .collect();
    Ok(Resolved {
        key,
        details,
        versions,
    })
}

fn metadata(ctx: &AppState, name: String, version: Option<String>) -> Result<Value, ApiError> {
    let resolved = resolve(ctx, name, version)?;
    Ok(metadata_json(
        &resolved.key,
        &resolved.versions,
        &resolved.details,
    ))
}

fn readiness(ctx: &AppState, name: String, version: Option<String>) -> Result<Value, ApiError> {
    let resolved = resolve(ctx, name, version)?;
    if !resolved.details.status.ready {
        return Err(ApiError::new(
            ErrorKind::NotReady,
            "not_ready",
            format!(
                "model {} is not ready: {}",
                resolved.key,
                resolved
                    .details
                    .status
                    .error
                    .as_deref()
                    .unwrap_or("it cannot be loaded")
            ),
        ));
    }
    Ok(json!({"name": resolved.key.name, "version": resolved.key.version, "ready": true}))
}

/// The outputs a client asked for, in its order (all of them when it named none); a name
/// the model does not produce is an error.
pub fn select_outputs(outputs: Vec<Tensor>, requested: &[String]) -> Result<Vec<Tensor>, ApiError> {
    if requested.is_empty() {
        return Ok(outputs);
    }
    let mut outputs = outputs.into_iter().map(Some).collect::<Vec<_>>();
    requested
        .iter()
        .map(|name| {
            outputs
                .iter_mut()
                .find(|output| output.as_ref().is_some_and(|output| &output.name == name))
                .and_then(Option::take)
                .ok_or_else(|| unknown_output(name))
        })
        .collect()
}

fn unknown_output(name: &str) -> ApiError {
    ApiError::new(
        ErrorKind::MalformedRequest,
        "invalid_input",
        format!("the model has no output `{name}`"),
    )
}

/// Every version of a model, in order.
pub fn versions_of(ctx: &AppState, name: &ModelName) -> Vec<ModelKey> {
    ctx.registry
        .statuses()
        .into_iter()
        .filter(|status| &status.key.name == name)
        .map(|status| status.key)
        .collect()
}

/// Refuses, before anything runs, an output that the model cannot produce: one that the
/// requested version (or, without a version, every version routing may pick) does not
/// declare. Models without a declared signature (the built-ins) are checked after the run.
pub fn check_requested_outputs(
    ctx: &AppState,
    name: &ModelName,
    version: Option<&ModelVersion>,
    requested: &[String],
) -> Result<(), ApiError> {
    if requested.is_empty() {
        return Ok(());
    }
    let candidates = match version {
        Some(version) => vec![ModelKey::new(name.clone(), version.clone())],
        None => versions_of(ctx, name),
    };
    let mut declared = Vec::new();
    for key in &candidates {
        let Some(description) = ctx
            .registry
            .details(key)
            .and_then(|details| details.description)
        else {
            return Ok(());
        };
        if description.outputs.is_empty() {
            return Ok(());
        }
        declared.extend(description.outputs.into_iter().map(|output| output.name));
    }
    match requested.iter().find(|name| !declared.contains(name)) {
        Some(name) if !candidates.is_empty() => Err(unknown_output(name)),
        _ => Ok(()),
    }
}

async fn run_infer(
    ctx: &AppState,
    caller: &inference_engine_core::service::Caller,
    name: String,
    version: Option<String>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    // The model's body limit first: a body over it is not worth decoding.
    let (model, version) = match checked_target(ctx, name, version, body.len()) {
        Ok(target) => target,
        Err(err) => return err.for_protocol().into_response(),
    };
    let InferRequest {
        id,
        inputs,
        outputs: selection,
        timeout,
        priority,
    } = match decode(headers, body) {
        Ok(request) => request,
        Err(err) => return err.into_response(),
    };
    let requested = selection.names();
    if let Err(err) = check_requested_outputs(ctx, &model, version.as_ref(), &requested) {
        return err.into_response();
    }
    let id = id.unwrap_or_else(|| caller.request_id.as_str().to_owned());
    let command = TensorCommand {
        model,
        version,
        inputs,
        // The protocol's `timeout: 0` means no timeout (Triton), not an instant one.
        timeout: timeout.filter(|timeout| !timeout.is_zero()),
        priority: Priority::from_level(priority),
    };
    respond(
        ctx.infer_tensors(caller, command).await,
        |prediction, model, version, _job_id| {
            let outputs = match select_outputs(prediction.output, &requested) {
                Ok(outputs) => outputs,
                Err(err) => return err.into_response(),
            };
            let encoded = rest::encode_infer_response(
                model.as_str(),
                version.as_str(),
                Some(&id),
                &outputs,
                |name| selection.binary(name),
            );
            let mut response = encoded.body.into_response();
            let headers = response.headers_mut();
            match encoded.header_length {
                Some(length) => {
                    headers.insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/octet-stream"),
                    );
                    headers.insert(rest::HEADER_LENGTH, HeaderValue::from(length));
                }
                None => {
                    headers.insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    );
                }
            }
            response
        },
        ApiError::for_protocol,
    )
}

fn decode(headers: &HeaderMap, body: &Bytes) -> Result<InferRequest, ApiError> {
    let malformed =
        |message: String| ApiError::new(ErrorKind::MalformedRequest, "invalid_input", message);
    let header_length = headers
        .get(rest::HEADER_LENGTH)
        .map(|value| {
            value
                .to_str()
                .ok()
                .and_then(|text| text.trim().parse::<usize>().ok())
                .ok_or_else(|| malformed(format!("{} must be a byte count", rest::HEADER_LENGTH)))
        })
        .transpose()?;
    rest::parse_infer_request(body, header_length).map_err(|err| malformed(err.to_string()))
}
