//! Wire types of the HTTP API (requests, responses, views) and the OpenAPI document built
//! from them. Field names and order are part of the contract (SPEC §4).

use chrono::{DateTime, SecondsFormat, Utc};
use inference_engine_core::job::Job;
use inference_engine_core::registry::ModelStatus;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// `POST /predict`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PredictRequest {
    /// Model name, e.g. `echo`.
    pub model: String,
    /// Omitted or empty: the routing rule (or the only version) decides.
    #[serde(default)]
    pub version: Option<String>,
    /// The model's input; any JSON.
    #[schema(value_type = Object)]
    pub data: Value,
    /// Deadline for the model run in milliseconds; it can only shorten the model's own SLA.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

/// `POST /predict/batch`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchPredictRequest {
    pub model: String,
    #[serde(default)]
    pub version: Option<String>,
    /// 1 to 256 inputs; results come back in the same order.
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<Value>,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PredictResponse {
    #[schema(value_type = Object)]
    pub result: Value,
    pub model: String,
    /// The version that answered (chosen by routing when the request gave none).
    pub version: String,
    /// The job recording this request: `GET /jobs/{job_id}`.
    pub job_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchPredictResponse {
    #[schema(value_type = Vec<Object>)]
    pub results: Vec<Value>,
    pub model: String,
    pub version: String,
    pub job_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelInfo {
    pub name: String,
    pub version: String,
    /// `builtin`, `onnx` or `remote_v2`.
    pub backend: String,
    pub loaded: bool,
    pub ready: bool,
    /// Why the model is not ready, when it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl From<ModelStatus> for ModelInfo {
    fn from(status: ModelStatus) -> Self {
        Self {
            name: status.key.name.to_string(),
            version: status.key.version.to_string(),
            backend: status.backend.as_str().to_owned(),
            loaded: status.loaded,
            ready: status.ready,
            error: status.error,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelList {
    pub models: Vec<ModelInfo>,
}

/// A job as clients see it. Timestamps are RFC 3339 UTC with `Z`; `result` is set only for
/// succeeded jobs and `error_*` only for failed or cancelled ones.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobView {
    pub job_id: String,
    /// `pending`, `running`, `succeeded`, `failed` or `cancelled`.
    pub status: String,
    /// `sync` or `async`.
    pub mode: String,
    pub model: String,
    pub version: Option<String>,
    pub tenant_id: String,
    pub request_id: String,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub attempts: u32,
    pub max_attempts: u32,
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    pub error_type: Option<String>,
    pub error_message: Option<String>,
}

fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

impl From<Job> for JobView {
    fn from(job: Job) -> Self {
        let (error_type, error_message) = job
            .failure
            .map(|failure| (Some(failure.error_type), Some(failure.message)))
            .unwrap_or_default();
        Self {
            job_id: job.id.to_string(),
            status: job.status.as_str().to_owned(),
            mode: job.mode.as_str().to_owned(),
            model: job.model.to_string(),
            version: job.version.map(|version| version.to_string()),
            tenant_id: job.tenant_id.to_string(),
            request_id: job.request_id.to_string(),
            created_at: timestamp(job.created_at),
            started_at: job.started_at.map(timestamp),
            finished_at: job.finished_at.map(timestamp),
            attempts: job.attempts,
            max_attempts: job.max_attempts,
            result: job.result,
            error_type,
            error_message,
        }
    }
}

/// `GET /health` and a ready `GET /ready`.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusBody {
    pub status: &'static str,
}

/// Every 4xx and 5xx response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// A human sentence.
    pub detail: String,
    /// Stable snake_case, e.g. `model_not_found`, `payload_too_large`.
    pub code: String,
    /// Same as the `X-Request-ID` response header.
    pub request_id: String,
}

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "Inference Engine", description = "Production ML inference server."),
    paths(
        crate::routes::health::health,
        crate::routes::health::ready,
        crate::routes::predict::predict,
        crate::routes::predict::predict_batch,
        crate::routes::models::list_models,
        crate::routes::jobs::get_job,
    ),
    components(schemas(
        PredictRequest,
        BatchPredictRequest,
        PredictResponse,
        BatchPredictResponse,
        ModelInfo,
        ModelList,
        JobView,
        StatusBody,
        ErrorBody
    )),
    modifiers(&SecuritySchemes),
    security(("api_key" = []), ("bearer" = []))
)]
pub struct ApiDoc;
