//! Wire types of the HTTP API (requests, responses, views) and the OpenAPI document built
//! from them. Field names and order are part of the contract documented in `docs/api.md`.

use chrono::{DateTime, SecondsFormat, Utc};
use inference_engine_core::job::{Job, JobId, JobStatus};
use inference_engine_core::model::{ModelKey, ModelName, ModelVersion};
use inference_engine_core::registry::{LoadedStatus, ModelDetails, ModelStatus};
use inference_engine_core::source::{Preprocessing, TensorSpec};
use inference_engine_core::steps::{PipelineStep, StepTiming};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// `POST /predict`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"model": "iris", "version": "v1", "data": [5.1, 3.5, 1.4, 0.2]}))]
pub struct PredictRequest {
    /// Model name, e.g. `echo`.
    pub model: String,
    /// Omitted or empty: the routing rule (or the only version) decides.
    #[serde(default)]
    pub version: Option<String>,
    /// The model's input; any JSON.
    #[schema(value_type = Value)]
    pub data: Value,
    /// Deadline for the model run in milliseconds; it can only shorten the model's own SLA.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

/// `POST /predict/batch`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "model": "iris",
    "version": "v1",
    "items": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
}))]
pub struct BatchPredictRequest {
    pub model: String,
    #[serde(default)]
    pub version: Option<String>,
    /// 1 to 256 inputs; results come back in the same order.
    #[schema(value_type = Vec<Value>)]
    pub items: Vec<Value>,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

/// `POST /predict/async`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"model": "iris", "version": "v2", "data": [5.1, 3.5, 1.4, 0.2], "max_attempts": 3}))]
pub struct AsyncPredictRequest {
    pub model: String,
    #[serde(default)]
    pub version: Option<String>,
    #[schema(value_type = Value)]
    pub data: Value,
    /// 1 to 10; default `JOBS_MAX_ATTEMPTS`. Only timeouts and lost workers are retried.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// Deadline of each model run in milliseconds.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

/// `POST /predict/async/batch`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "model": "iris",
    "version": "v2",
    "items": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
}))]
pub struct AsyncBatchPredictRequest {
    pub model: String,
    #[serde(default)]
    pub version: Option<String>,
    #[schema(value_type = Vec<Value>)]
    pub items: Vec<Value>,
    #[serde(default)]
    pub max_attempts: Option<u32>,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

/// 202 of an async submission (also for an idempotent replay, with the job's current status).
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"job_id": "0197a3c2-6f1e-7cc0-9b1d-2f0a4c8e5d31", "status": "pending"}))]
pub struct AsyncAccepted {
    pub job_id: String,
    pub status: String,
}

/// `GET /jobs`.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobList {
    pub jobs: Vec<JobView>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "result": {"setosa": 0.979, "versicolor": 0.021, "virginica": 0.0},
    "model": "iris",
    "version": "v1",
    "job_id": "0197a3c2-6f1e-7cc0-9b1d-2f0a4c8e5d31"
}))]
pub struct PredictResponse {
    /// The model's answer; any JSON (a class and its probabilities, a number, a list, ...).
    #[schema(value_type = Value)]
    pub result: Value,
    #[schema(value_type = String)]
    pub model: ModelName,
    /// The version that answered (chosen by routing when the request gave none).
    #[schema(value_type = String)]
    pub version: ModelVersion,
    /// The job recording this request: `GET /jobs/{job_id}`.
    #[schema(value_type = String)]
    pub job_id: JobId,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchPredictResponse {
    /// One answer per item, in the order of `items`.
    #[schema(value_type = Vec<Value>)]
    pub results: Vec<Value>,
    #[schema(value_type = String)]
    pub model: ModelName,
    #[schema(value_type = String)]
    pub version: ModelVersion,
    #[schema(value_type = String)]
    pub job_id: JobId,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelInfo {
    pub name: String,
    pub version: String,
    /// `builtin`, `onnx`, `remote_v2` or `pipeline`.
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

/// One tensor of a model's signature; `-1` is a dimension of any size (the batch).
#[derive(Debug, Serialize, ToSchema)]
pub struct TensorView {
    pub name: String,
    /// Open Inference Protocol datatype (`FP32`, `INT64`, `BYTES`, ...), or `MAP` for an
    /// output of one map per example (a JSON object in `/predict` answers, `BYTES` holding
    /// that object's JSON text over the protocol).
    pub datatype: String,
    pub shape: Vec<i64>,
}

impl From<TensorSpec> for TensorView {
    fn from(spec: TensorSpec) -> Self {
        Self {
            name: spec.name,
            datatype: spec.datatype,
            shape: spec.shape,
        }
    }
}

/// One step of a pipeline of models, as its manifest declares it.
#[derive(Debug, Serialize, ToSchema)]
pub struct PipelineStepView {
    pub model: String,
    /// `null`: routed per request (the model's routing rule, or its only version).
    pub version: Option<String>,
    /// `{<input of this step>: <field of the previous step's answer>}`; empty: the answer is
    /// passed on whole.
    #[schema(value_type = HashMap<String, String>)]
    pub inputs: serde_json::Map<String, Value>,
}

impl From<PipelineStep> for PipelineStepView {
    fn from(step: PipelineStep) -> Self {
        Self {
            model: step.model.to_string(),
            version: step.version.map(|version| version.to_string()),
            inputs: step
                .inputs
                .into_iter()
                .map(|(input, field)| (input, Value::String(field)))
                .collect(),
        }
    }
}

/// What one step of a pipeline run took.
#[derive(Debug, Serialize, ToSchema)]
pub struct StepTimingView {
    pub model: String,
    /// The version that ran the step (routing's choice for a step without one).
    pub version: String,
    /// Waiting for an executor or a batch, in milliseconds (microsecond precision).
    pub queue_time_ms: f64,
    /// The step's model run, in milliseconds (microsecond precision).
    pub inference_time_ms: f64,
}

impl From<StepTiming> for StepTimingView {
    fn from(step: StepTiming) -> Self {
        let millis = |duration: std::time::Duration| duration.as_micros() as f64 / 1000.0;
        Self {
            model: step.model.name.to_string(),
            version: step.model.version.to_string(),
            queue_time_ms: millis(step.queue_time),
            inference_time_ms: millis(step.inference_time),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchingView {
    pub max_batch_size: usize,
    pub max_delay_ms: u128,
}

/// `GET /models/{name}/{version}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelDetailsView {
    #[serde(flatten)]
    pub status: ModelInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// What runs the graph of an ONNX model: `onnxruntime` or `tract`; absent for built-ins
    /// and remote models.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    /// Empty for models that take any JSON (the built-ins).
    pub inputs: Vec<TensorView>,
    pub outputs: Vec<TensorView>,
    /// Dynamic batching, when the model's manifest enables it.
    pub batching: Option<BatchingView>,
    /// The raw input the model turns into its tensors itself (text or images); absent when
    /// clients send the tensors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preprocess: Option<PreprocessView>,
    /// How the model's outputs become its answer (`raw`, `classification`, `embedding`,
    /// `token_classification`, `argmax`, `probabilities`); absent for built-ins.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postprocess: Option<String>,
    /// The steps of a pipeline of models, in order; absent for other models.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<PipelineStepView>>,
    /// The rule that picks a version when a request omits it (it applies to the model's name).
    pub routing: Option<String>,
    /// The SLA timeout in seconds; `null` for none.
    pub timeout_s: Option<f64>,
    /// The executor pool the model runs on.
    pub executor: String,
    /// Never evicted by the LRU cap.
    pub pinned: bool,
}

/// `preprocess` of a model's details: `{"kind": "text", "max_length": 64}` or
/// `{"kind": "image", "width": 224, "height": 224, "channels": "rgb"}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum PreprocessView {
    /// Strings (or sentence pairs) through the model's tokenizer.
    Text { max_length: usize },
    /// PNG, JPEG or WebP files (`{"image_base64": ..}`, an `image/*` body, a V2 BYTES tensor).
    Image {
        width: u32,
        height: u32,
        channels: String,
    },
}

impl From<Preprocessing> for PreprocessView {
    fn from(preprocessing: Preprocessing) -> Self {
        match preprocessing {
            Preprocessing::Text { max_length } => Self::Text { max_length },
            Preprocessing::Image {
                width,
                height,
                channels,
            } => Self::Image {
                width,
                height,
                channels: channels.to_owned(),
            },
        }
    }
}

impl From<ModelDetails> for ModelDetailsView {
    fn from(details: ModelDetails) -> Self {
        let runtime = details
            .description
            .as_ref()
            .and_then(|description| description.runtime)
            .map(str::to_owned);
        let preprocess = details
            .description
            .as_ref()
            .and_then(|description| description.preprocess.clone())
            .map(PreprocessView::from);
        let postprocess = details
            .description
            .as_ref()
            .and_then(|description| description.postprocess)
            .map(str::to_owned);
        let steps = details
            .description
            .as_ref()
            .and_then(|description| description.pipeline.as_ref())
            .map(|pipeline| {
                pipeline
                    .steps
                    .iter()
                    .cloned()
                    .map(PipelineStepView::from)
                    .collect()
            });
        let (description, inputs, outputs, batching) = match details.description {
            Some(description) => (
                description.description,
                description
                    .inputs
                    .into_iter()
                    .map(TensorView::from)
                    .collect(),
                description
                    .outputs
                    .into_iter()
                    .map(TensorView::from)
                    .collect(),
                description.batching.map(|batching| BatchingView {
                    max_batch_size: batching.max_batch_size,
                    max_delay_ms: batching.max_delay.as_millis(),
                }),
            ),
            None => (None, Vec::new(), Vec::new(), None),
        };
        Self {
            status: ModelInfo::from(details.status),
            description,
            runtime,
            inputs,
            outputs,
            batching,
            preprocess,
            postprocess,
            steps,
            routing: details.routing.map(|rule| rule.to_string()),
            timeout_s: details.timeout.map(|timeout| timeout.as_secs_f64()),
            executor: details.executor,
            pinned: details.pinned,
        }
    }
}

/// One loaded model.
#[derive(Debug, Serialize, ToSchema)]
pub struct LoadedModelView {
    pub name: String,
    pub version: String,
    /// When it last served a request (or finished loading), RFC 3339 UTC.
    pub last_used_at: String,
    pub in_flight: usize,
    pub pinned: bool,
    /// Loads of this model since the process started.
    pub loads: u64,
    /// What the model costs in memory: the growth of the process's resident set size across
    /// its load, at least its size hint (the graph file's size); 0 for built-ins.
    pub memory_bytes: u64,
}

impl From<LoadedStatus> for LoadedModelView {
    fn from(status: LoadedStatus) -> Self {
        let last_used_at = Utc::now()
            - chrono::TimeDelta::from_std(status.idle_for).unwrap_or(chrono::TimeDelta::zero());
        Self {
            name: status.key.name.to_string(),
            version: status.key.version.to_string(),
            last_used_at: last_used_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            in_flight: status.in_flight,
            pinned: status.pinned,
            loads: status.loads,
            memory_bytes: status.memory_bytes,
        }
    }
}

/// `GET /debug/models/loaded`, least recently used first.
#[derive(Debug, Serialize, ToSchema)]
pub struct LoadedModelList {
    pub loaded_models: Vec<LoadedModelView>,
}

/// `GET /admin/models/memory`.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemoryView {
    pub loaded: usize,
    /// The LRU cap on loaded models; `null` for none.
    pub max_loaded: Option<usize>,
    /// The summed `memory_bytes` of the loaded models (built-ins cost nothing).
    pub memory_bytes: u64,
    /// The LRU cap on `memory_bytes`, in MiB; `null` for none.
    pub max_memory_mb: Option<u64>,
    /// Least recently used first.
    pub models: Vec<LoadedModelView>,
}

/// Answer of the per-model admin actions.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelActionResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reloaded: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unloaded: Option<bool>,
    pub model: String,
    pub version: String,
}

impl ModelActionResponse {
    pub fn reloaded(key: &ModelKey) -> Self {
        Self {
            reloaded: Some(true),
            unloaded: None,
            model: key.name.to_string(),
            version: key.version.to_string(),
        }
    }

    /// `unloaded` says whether the model was in memory.
    pub fn unloaded(key: &ModelKey, was_loaded: bool) -> Self {
        Self {
            reloaded: None,
            unloaded: Some(was_loaded),
            model: key.name.to_string(),
            version: key.version.to_string(),
        }
    }
}

/// `POST /admin/reload`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReloadResponse {
    pub reloaded: bool,
    /// Models in the catalogue after the rescan.
    pub models: usize,
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
    /// The model's answer (any JSON: an object, a list, a string, a number); `null` unless
    /// the job succeeded.
    #[schema(value_type = Value)]
    pub result: Option<Value>,
    pub error_type: Option<String>,
    pub error_message: Option<String>,
    /// A pipeline's steps as they ran in the job's (last) attempt, in order, the failed step
    /// included; absent for other models.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<StepTimingView>>,
}

fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

impl From<Job> for JobView {
    fn from(job: Job) -> Self {
        // A pending job may carry the last error of a retried attempt; it is not the job's
        // outcome, so it is only shown once the job has failed or been cancelled.
        let shows_error = matches!(job.status, JobStatus::Failed | JobStatus::Cancelled);
        let (error_type, error_message) = job
            .failure
            .filter(|_| shows_error)
            .map(|failure| (Some(failure.error_type), Some(failure.message)))
            .unwrap_or_default();
        let result = job.result.filter(|_| job.status == JobStatus::Succeeded);
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
            result,
            error_type,
            error_message,
            steps: job
                .steps
                .map(|steps| steps.into_iter().map(StepTimingView::from).collect()),
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
#[schema(example = json!({
    "detail": "model iris:v9 is not served here",
    "code": "model_not_found",
    "request_id": "0197a3c2-7b40-7d12-a5e9-61c7f0b2d8aa"
}))]
pub struct ErrorBody {
    /// A human sentence.
    pub detail: String,
    /// Stable snake_case, e.g. `model_not_found`, `payload_too_large`.
    pub code: String,
    /// Same as the `X-Request-ID` response header.
    pub request_id: String,
}

/// The Open Inference Protocol's JSON shapes (`/v2/...`), for the OpenAPI document only: the
/// handlers build and parse these with `inference-engine-v2`, which also takes the binary tensor
/// extension (`Inference-Header-Content-Length`) that a JSON schema cannot describe.
pub mod v2 {
    use serde::Serialize;
    use serde_json::Value;
    use utoipa::{IntoResponses, ToSchema};

    /// `GET /v2`.
    #[derive(Debug, Serialize, ToSchema)]
    pub struct V2ServerMetadata {
        pub name: String,
        pub version: String,
        pub extensions: Vec<String>,
    }

    /// `GET /v2/health/live`.
    #[derive(Debug, Serialize, ToSchema)]
    pub struct V2Live {
        pub live: bool,
    }

    /// `GET /v2/health/ready`.
    #[derive(Debug, Serialize, ToSchema)]
    pub struct V2Ready {
        pub ready: bool,
    }

    /// `GET /v2/models/{name}[/versions/{version}]/ready`: 200 only when ready.
    #[derive(Debug, Serialize, ToSchema)]
    pub struct V2ModelReady {
        pub name: String,
        pub version: String,
        pub ready: bool,
    }

    /// A tensor's name, datatype and shape (`-1`: any size).
    #[derive(Debug, Serialize, ToSchema)]
    pub struct V2TensorMetadata {
        pub name: String,
        /// `BOOL`, `UINT8`…`UINT64`, `INT8`…`INT64`, `FP16`, `FP32`, `FP64`, `BYTES`.
        pub datatype: String,
        pub shape: Vec<i64>,
    }

    /// `GET /v2/models/{name}[/versions/{version}]`.
    #[derive(Debug, Serialize, ToSchema)]
    pub struct V2ModelMetadata {
        pub name: String,
        pub versions: Vec<String>,
        /// The backend: `onnx`, `builtin`, `remote_v2` or `pipeline`.
        pub platform: String,
        pub inputs: Vec<V2TensorMetadata>,
        pub outputs: Vec<V2TensorMetadata>,
    }

    /// A tensor with its data: row-major, flat or nested JSON.
    #[derive(Debug, Serialize, ToSchema)]
    pub struct V2Tensor {
        pub name: String,
        pub shape: Vec<i64>,
        pub datatype: String,
        /// `binary_data_size` when the data follows the JSON header as bytes.
        #[schema(value_type = Option<Object>)]
        pub parameters: Option<Value>,
        /// Flat (row-major) or nested like the shape; numbers, booleans or strings (`BYTES`).
        #[schema(value_type = Vec<Value>)]
        pub data: Value,
    }

    /// An output the client asks for; `binary_data` asks for it as bytes after the JSON.
    #[derive(Debug, Serialize, ToSchema)]
    pub struct V2RequestedOutput {
        pub name: String,
        #[schema(value_type = Option<Object>)]
        pub parameters: Option<Value>,
    }

    /// `POST /v2/models/{name}[/versions/{version}]/infer`.
    #[derive(Debug, Serialize, ToSchema)]
    #[schema(example = json!({
        "inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]
    }))]
    pub struct V2InferRequest {
        /// Echoed in the response; defaults to the request id.
        pub id: Option<String>,
        /// `timeout` (ms; 0 = none), `priority` (1 = high), `binary_data_output`.
        #[schema(value_type = Option<Object>)]
        pub parameters: Option<Value>,
        pub inputs: Vec<V2Tensor>,
        /// A subset of the model's outputs, in this order; all of them when omitted.
        pub outputs: Option<Vec<V2RequestedOutput>>,
    }

    /// The answer to an infer request.
    #[derive(Debug, Serialize, ToSchema)]
    pub struct V2InferResponse {
        pub model_name: String,
        pub model_version: String,
        pub id: String,
        pub outputs: Vec<V2Tensor>,
    }

    /// What the two infer routes answer.
    #[derive(Debug, IntoResponses)]
    pub enum V2InferResponses {
        #[response(status = 200, description = "the outputs", headers(
            ("X-Model-Version" = String), ("X-Job-ID" = String)
        ))]
        Answered(V2InferResponse),
        #[response(status = 400, description = "invalid request or tensors")]
        Invalid(V2ErrorBody),
        #[response(status = 404, description = "`model_not_found`")]
        NotFound(V2ErrorBody),
        #[response(status = 429, description = "`rate_limited`")]
        RateLimited(V2ErrorBody),
        #[response(status = 503, description = "`overloaded`, `not_ready`, `unavailable`")]
        Unavailable(V2ErrorBody),
        #[response(status = 504, description = "`inference_timeout`")]
        TimedOut(V2ErrorBody),
    }

    /// Every `/v2` error (the protocol's `error` field, plus our `code` and `request_id`).
    #[derive(Debug, Serialize, ToSchema)]
    pub struct V2ErrorBody {
        pub error: String,
        pub code: String,
        pub request_id: String,
    }
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

/// The answers of the route guard (key, scope, rate limit), which every route with a key can
/// give before its handler runs: added to each such operation here, not to each annotation.
struct GuardResponses;

impl Modify for GuardResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::content::ContentBuilder;
        use utoipa::openapi::{Ref, RefOr, Response, ResponseBuilder};
        let error = |schema: &str, description: &str| -> RefOr<Response> {
            let body = ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(schema)))
                .build();
            ResponseBuilder::new()
                .description(description)
                .content("application/json", body)
                .into()
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            // The protocol's clients read `error`, not `detail` (see `ErrorStyle`).
            let schema = if path == "/v2" || path.starts_with("/v2/") {
                "V2ErrorBody"
            } else {
                "ErrorBody"
            };
            // Admin routes have no rate-limit group.
            let rate_limited =
                !path.starts_with("/admin/") && !path.starts_with("/debug/") && path != "/metrics";
            let operations = [&mut item.get, &mut item.post];
            // An operation's own `security(())` marks a public route: no key, none of these.
            for operation in operations
                .into_iter()
                .flatten()
                .filter(|operation| operation.security.is_none())
            {
                let mut answers = vec![
                    ("401", "`unauthenticated`: no key, or an unknown one"),
                    ("403", "`forbidden`: the key lacks the route's scope"),
                ];
                if rate_limited {
                    answers.push((
                        "429",
                        "`rate_limited`: over the tenant's limit for this route group; \
                         `Retry-After` says when to retry",
                    ));
                }
                for (status, description) in answers {
                    operation
                        .responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| error(schema, description));
                }
            }
        }
    }
}

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Inference Engine",
        description = "Serves ML models over HTTP: synchronous and asynchronous predictions \
            recorded as jobs, model metadata, the Open Inference Protocol (KServe V2) and \
            operations routes. Authenticate with `X-API-Key: KEY` or `Authorization: Bearer KEY`; \
            every error is `{\"detail\", \"code\", \"request_id\"}` (`{\"error\", \"code\", \
            \"request_id\"}` under `/v2`). The reference with every error code, job state and \
            header is `docs/api.md` in the repository."
    ),
    tags(
        (name = "Inference", description = "Run a model now, or queue the work as an async job."),
        (name = "Jobs", description = "Every request is a job: read, list and cancel them."),
        (name = "Models", description = "The models this server serves, and their signatures."),
        (name = "Open Inference Protocol", description = "KServe V2 / Triton REST API (`/v2`)."),
        (name = "Health", description = "Liveness and readiness; no key needed."),
        (name = "Admin", description = "Operations: metrics, loaded models, reloads (scope `admin`)."),
    ),
    paths(
        crate::routes::predict::predict,
        crate::routes::predict::predict_batch,
        crate::routes::async_jobs::predict_async,
        crate::routes::async_jobs::predict_async_batch,
        crate::routes::async_jobs::get_async_job,
        crate::routes::jobs::list_jobs,
        crate::routes::jobs::get_job,
        crate::routes::jobs::cancel_job,
        crate::routes::models::list_models,
        crate::routes::models::model_details,
        crate::routes::v2::infer,
        crate::routes::v2::infer_version,
        crate::routes::v2::server_metadata,
        crate::routes::v2::model_metadata,
        crate::routes::v2::version_metadata,
        crate::routes::v2::model_ready,
        crate::routes::v2::version_ready,
        crate::routes::v2::live,
        crate::routes::v2::ready,
        crate::routes::health::health,
        crate::routes::health::ready,
        crate::routes::health::metrics,
        crate::routes::models::loaded_models,
        crate::routes::models::memory,
        crate::routes::models::reload_model,
        crate::routes::models::unload_model,
        crate::routes::models::reload_configuration,
    ),
    components(schemas(
        PredictRequest,
        BatchPredictRequest,
        PredictResponse,
        BatchPredictResponse,
        AsyncPredictRequest,
        AsyncBatchPredictRequest,
        AsyncAccepted,
        JobList,
        ModelInfo,
        ModelList,
        ModelDetailsView,
        TensorView,
        BatchingView,
        PreprocessView,
        PipelineStepView,
        StepTimingView,
        LoadedModelView,
        LoadedModelList,
        MemoryView,
        ModelActionResponse,
        ReloadResponse,
        JobView,
        StatusBody,
        ErrorBody,
        v2::V2ServerMetadata,
        v2::V2Live,
        v2::V2Ready,
        v2::V2ModelReady,
        v2::V2TensorMetadata,
        v2::V2ModelMetadata,
        v2::V2Tensor,
        v2::V2RequestedOutput,
        v2::V2InferRequest,
        v2::V2InferResponse,
        v2::V2ErrorBody
    )),
    modifiers(&SecuritySchemes, &GuardResponses),
    security(("api_key" = []), ("bearer" = []))
)]
pub struct ApiDoc;
