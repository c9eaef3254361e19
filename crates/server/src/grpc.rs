//! The Open Inference Protocol over gRPC on `GRPC_PORT`: `inference.GRPCInferenceService`
//! (health, metadata, `ModelInfer` with raw or typed contents, the repository RPCs) and the
//! standard `grpc.health.v1.Health`. Same keys (`x-api-key` or `authorization: Bearer`
//! metadata), scopes, rate limits, routing, SLA, job records, metrics, request ids and
//! access-log lines as the HTTP API; the handlers reuse the REST protocol module
//! (`routes::v2`) for model resolution and outputs.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::stream::BoxStream;
use inference_engine_core::auth::{Principal, Scope, TenantId};
use inference_engine_core::config::RateLimitGroup;
use inference_engine_core::executor::Priority;
use inference_engine_core::job::RequestId;
use inference_engine_core::model::ModelKey;
use inference_engine_core::request_scope::in_request;
use inference_engine_core::service::{Caller, TensorCommand};
use inference_engine_core::tensor::Tensor;
use inference_engine_v2::proto::health::health_check_response::ServingStatus;
use inference_engine_v2::proto::health::health_server::{Health, HealthServer};
use inference_engine_v2::proto::health::{HealthCheckRequest, HealthCheckResponse};
use inference_engine_v2::proto::inference::grpc_inference_service_server::{
    GrpcInferenceService, GrpcInferenceServiceServer,
};
use inference_engine_v2::proto::inference::model_infer_request::InferInputTensor;
use inference_engine_v2::proto::inference::model_infer_response::InferOutputTensor;
use inference_engine_v2::proto::inference::model_metadata_response::TensorMetadata;
use inference_engine_v2::proto::inference::repository_index_response::ModelIndex;
use inference_engine_v2::proto::inference::{
    InferParameter, ModelInferRequest, ModelInferResponse, ModelMetadataRequest,
    ModelMetadataResponse, ModelReadyRequest, ModelReadyResponse, RepositoryIndexRequest,
    RepositoryIndexResponse, RepositoryModelLoadRequest, RepositoryModelLoadResponse,
    RepositoryModelUnloadRequest, RepositoryModelUnloadResponse, ServerLiveRequest,
    ServerLiveResponse, ServerMetadataRequest, ServerMetadataResponse, ServerReadyRequest,
    ServerReadyResponse, infer_parameter::ParameterChoice,
};
use inference_engine_v2::wire::{self, WireError};
use tokio::net::TcpListener;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Request, Response, Status};

use crate::edge::{self, EdgeLimits};
use crate::error::{ApiError, grpc_code_for};
use crate::middleware::{AccessLog, AccessLogFields, Outcome, key_from};
use crate::ratelimit;
use crate::routes::AppState;
use crate::routes::v2::{self, EXTENSIONS, SERVER_NAME};

/// The service name `grpc.health.v1.Health` answers for, besides the server as a whole ("").
const INFERENCE_SERVICE: &str = "inference.GRPCInferenceService";

/// The HTTP/2 path of a method of [`INFERENCE_SERVICE`], as its access-log line names it.
macro_rules! method_path {
    ($method:literal) => {
        concat!("/inference.GRPCInferenceService/", $method)
    };
}

/// Serves both gRPC services on `listener` until `shutdown` resolves (in-flight calls finish).
pub async fn serve_grpc(
    listener: TcpListener,
    ctx: AppState,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    // Models may declare larger bodies (`max_body_bytes`, as of the start); each call is then
    // held to its own model's limit.
    let limit = ctx
        .registry
        .largest_body_limit()
        .map_or(ctx.settings.max_body_bytes, |largest| {
            largest.max(ctx.settings.max_body_bytes)
        });
    let inference = GrpcInferenceServiceServer::new(InferenceGrpc {
        ctx: Arc::clone(&ctx),
    })
    .max_decoding_message_size(limit)
    .max_encoding_message_size(usize::MAX);
    let limits = EdgeLimits::from_settings(&ctx.settings);
    let health = HealthServer::new(HealthGrpc { ctx });
    tonic::transport::Server::builder()
        // An idle HTTP/2 connection is pinged at the idle timeout; a peer that does not answer
        // (gone, or a client that never speaks) is dropped 20 s later.
        .http2_keepalive_interval(Some(limits.idle))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .layer(UnhandledCallLogLayer)
        .add_service(inference)
        .add_service(health)
        .serve_with_incoming_shutdown(
            edge::capped_incoming(listener, limits.max_connections),
            shutdown,
        )
        .await
}

tokio::task_local! {
    /// Set once a handler has taken its call over (its [`Call`] writes the access line).
    static CALL_TAKEN: Arc<AtomicBool>;
}

/// Writes the access-log line of an inference call no handler took: one tonic answered
/// itself (a message that is not protobuf, too large, or an unknown method).
#[derive(Debug, Clone, Copy)]
struct UnhandledCallLogLayer;

impl<S> tower::Layer<S> for UnhandledCallLogLayer {
    type Service = UnhandledCallLog<S>;

    fn layer(&self, inner: S) -> Self::Service {
        UnhandledCallLog { inner }
    }
}

#[derive(Debug, Clone)]
struct UnhandledCallLog<S> {
    inner: S,
}

/// The access line of a call, unless its handler takes it over.
struct PendingLine {
    access: AccessLog,
    taken: Arc<AtomicBool>,
}

impl Drop for PendingLine {
    fn drop(&mut self) {
        if self.taken.load(Ordering::Acquire) {
            self.access.hand_over();
        }
    }
}

impl<S, B, R> tower::Service<axum::http::Request<B>> for UnhandledCallLog<S>
where
    S: tower::Service<axum::http::Request<B>, Response = axum::http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Send + 'static,
{
    type Response = axum::http::Response<R>;
    type Error = S::Error;
    type Future = futures_util::future::BoxFuture<'static, Result<Self::Response, S::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: axum::http::Request<B>) -> Self::Future {
        if !request.uri().path().starts_with(method_path!("")) {
            return Box::pin(self.inner.call(request));
        }
        let (request_id, _) = RequestId::sent_or_generated(
            request
                .headers()
                .get(REQUEST_ID_METADATA)
                .and_then(|value| value.to_str().ok()),
        );
        let taken = Arc::new(AtomicBool::new(false));
        let mut line = PendingLine {
            access: AccessLog::start_grpc_at(request_id, request.uri().clone()),
            taken: Arc::clone(&taken),
        };
        let call = CALL_TAKEN.scope(taken, self.inner.call(request));
        Box::pin(async move {
            let mut response = call.await?;
            if !line.taken.load(Ordering::Acquire) {
                // tonic answers such calls with the status in the headers (trailers-only).
                let code = response
                    .headers()
                    .get("grpc-status")
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| value.parse::<i32>().ok())
                    .map_or(tonic::Code::Unknown, tonic::Code::from_i32);
                if let Ok(value) =
                    axum::http::HeaderValue::from_str(line.access.request_id().as_str())
                {
                    response.headers_mut().insert(REQUEST_ID_METADATA, value);
                }
                line.access.write(Outcome::grpc(code), None, None, None);
            }
            Ok(response)
        })
    }
}

/// A gRPC status for an API error: the same classification as the HTTP statuses.
fn status(err: &ApiError) -> Status {
    if err.status().is_server_error() {
        tracing::error!(code = err.code(), cause = ?err, "grpc call failed");
    }
    Status::new(grpc_code_for(err.kind()), err.public_detail())
}

fn invalid(err: &WireError) -> Status {
    Status::invalid_argument(err.to_string())
}

/// The presented key: `x-api-key`, or `authorization: Bearer <key>`.
fn presented_key(metadata: &MetadataMap) -> Option<&str> {
    key_from(
        metadata.get("x-api-key").map(|value| value.to_str().ok()),
        metadata
            .get("authorization")
            .and_then(|value| value.to_str().ok()),
    )
}

#[derive(Debug, Clone)]
struct InferenceGrpc {
    ctx: AppState,
}

impl InferenceGrpc {
    /// The caller, if its key is valid and has `scope`; charged against `group`'s rate limit.
    async fn admit(
        &self,
        call: &mut Call,
        metadata: &MetadataMap,
        scope: Scope,
        group: Option<RateLimitGroup>,
    ) -> Result<Caller, Status> {
        let principal: Principal = presented_key(metadata)
            .and_then(|key| self.ctx.api_keys.authenticate(key))
            .cloned()
            .ok_or_else(|| {
                Status::unauthenticated(
                    "a valid API key is required: send it as x-api-key or authorization: Bearer metadata",
                )
            })?;
        call.tenant = Some(principal.tenant().clone());
        if !principal.allows(scope) {
            return Err(Status::permission_denied(format!(
                "this API key lacks the {:?} scope",
                scope.as_str()
            )));
        }
        if let Some(group) = group {
            ratelimit::charge(&self.ctx, principal.tenant(), group, 1)
                .await
                .map_err(|err| status(&err))?;
        }
        Ok(Caller {
            tenant: principal.tenant().clone(),
            request_id_from_client: call.request_id_from_client,
            request_id: call.access.request_id().clone(),
        })
    }

    /// The model a metadata or readiness request names, for a caller with `read_models`.
    async fn read_model<T>(
        &self,
        call: &mut Call,
        request: Request<T>,
        name_and_version: impl FnOnce(T) -> (String, String),
    ) -> Result<v2::Resolved, Status> {
        self.admit(
            call,
            request.metadata(),
            Scope::ReadModels,
            Some(RateLimitGroup::Models),
        )
        .await?;
        let (name, version) = name_and_version(request.into_inner());
        let version = (!version.is_empty()).then_some(version);
        v2::resolve(&self.ctx, name, version).map_err(|err| status(&err))
    }
}

/// The request id's metadata key, as HTTP's `X-Request-ID`.
const REQUEST_ID_METADATA: &str = "x-request-id";

/// One call of `inference.GRPCInferenceService`, handled like an HTTP request: its request id
/// (the client's `x-request-id` metadata if valid, else a new one) names every log line
/// written for it, here and on the executor thread, and comes back as `x-request-id`
/// metadata, errors included; the call leaves one access-log line (`request_completed`, its
/// `grpc_code` beside the HTTP equivalent in `status`), also when the client cancels it.
struct Call {
    request_id_from_client: bool,
    /// Holds the request id.
    access: AccessLog,
    /// Known once the key is checked.
    tenant: Option<TenantId>,
    /// The job, model and version of a prediction.
    fields: Option<AccessLogFields>,
}

impl Call {
    /// A call of the method at `path` (`/inference.GRPCInferenceService/ModelInfer`).
    fn start(path: &'static str, metadata: &MetadataMap) -> Self {
        let (request_id, from_client) = RequestId::sent_or_generated(
            metadata
                .get(REQUEST_ID_METADATA)
                .and_then(|value| value.to_str().ok()),
        );
        // The handler runs inside the edge layer's scope; from here its `Call` logs the call.
        let _ = CALL_TAKEN.try_with(|taken| taken.store(true, Ordering::Release));
        Self {
            access: AccessLog::start_grpc(request_id, path),
            request_id_from_client: from_client,
            tenant: None,
            fields: None,
        }
    }

    /// Runs `handler` as this call's request and answers with what it returns.
    async fn serve<T>(
        mut self,
        handler: impl AsyncFnOnce(&mut Self) -> Result<Response<T>, Status>,
    ) -> Result<Response<T>, Status> {
        let mut result = in_request(self.access.request_id().clone(), handler(&mut self)).await;
        let code = result
            .as_ref()
            .map_or_else(Status::code, |_| tonic::Code::Ok);
        if let Ok(value) = MetadataValue::try_from(self.access.request_id().as_str()) {
            let metadata = match &mut result {
                Ok(response) => response.metadata_mut(),
                Err(status) => status.metadata_mut(),
            };
            metadata.insert(REQUEST_ID_METADATA, value);
        }
        self.access.write(
            Outcome::grpc(code),
            None,
            self.tenant.as_ref(),
            self.fields.as_ref(),
        );
        result
    }
}

#[tonic::async_trait]
impl GrpcInferenceService for InferenceGrpc {
    async fn server_live(
        &self,
        request: Request<ServerLiveRequest>,
    ) -> Result<Response<ServerLiveResponse>, Status> {
        Call::start(method_path!("ServerLive"), request.metadata())
            .serve(async |_| Ok(Response::new(ServerLiveResponse { live: true })))
            .await
    }

    async fn server_ready(
        &self,
        request: Request<ServerReadyRequest>,
    ) -> Result<Response<ServerReadyResponse>, Status> {
        Call::start(method_path!("ServerReady"), request.metadata())
            .serve(async |_| {
                let ready = self.ctx.readiness().await.is_ok();
                Ok(Response::new(ServerReadyResponse { ready }))
            })
            .await
    }

    async fn model_ready(
        &self,
        request: Request<ModelReadyRequest>,
    ) -> Result<Response<ModelReadyResponse>, Status> {
        Call::start(method_path!("ModelReady"), request.metadata())
            .serve(async |call| {
                let resolved = self
                    .read_model(call, request, |request: ModelReadyRequest| {
                        (request.name, request.version)
                    })
                    .await?;
                Ok(Response::new(ModelReadyResponse {
                    ready: resolved.details.status.ready,
                }))
            })
            .await
    }

    async fn server_metadata(
        &self,
        request: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        Call::start(method_path!("ServerMetadata"), request.metadata())
            .serve(async |call| {
                self.admit(
                    call,
                    request.metadata(),
                    Scope::ReadModels,
                    Some(RateLimitGroup::Models),
                )
                .await?;
                Ok(Response::new(ServerMetadataResponse {
                    name: SERVER_NAME.to_owned(),
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    extensions: EXTENSIONS.map(str::to_owned).to_vec(),
                }))
            })
            .await
    }

    async fn model_metadata(
        &self,
        request: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        Call::start(method_path!("ModelMetadata"), request.metadata())
            .serve(async |call| {
                let resolved = self
                    .read_model(call, request, |request: ModelMetadataRequest| {
                        (request.name, request.version)
                    })
                    .await?;
                let tensors = |specs: &[inference_engine_core::source::TensorSpec]| {
                    specs
                        .iter()
                        .map(|spec| TensorMetadata {
                            name: spec.name.clone(),
                            datatype: spec.protocol_datatype().to_owned(),
                            shape: spec.shape.clone(),
                        })
                        .collect::<Vec<_>>()
                };
                let (inputs, outputs) = resolved
                    .details
                    .description
                    .as_ref()
                    .map_or((Vec::new(), Vec::new()), |description| {
                        (tensors(&description.inputs), tensors(&description.outputs))
                    });
                Ok(Response::new(ModelMetadataResponse {
                    name: resolved.key.name.to_string(),
                    versions: resolved.versions,
                    platform: crate::routes::v2::platform(&resolved.details),
                    inputs,
                    outputs,
                }))
            })
            .await
    }

    async fn model_infer(
        &self,
        request: Request<ModelInferRequest>,
    ) -> Result<Response<ModelInferResponse>, Status> {
        Call::start(method_path!("ModelInfer"), request.metadata())
            .serve(async |call| {
                let caller = self
                    .admit(
                        call,
                        request.metadata(),
                        Scope::Predict,
                        Some(RateLimitGroup::Predict),
                    )
                    .await?;
                let client_deadline = grpc_timeout(request.metadata());
                let request = request.into_inner();
                let version =
                    (!request.model_version.is_empty()).then_some(request.model_version.clone());
                // The message as it came on the wire, held to the model's body limit like an
                // HTTP body (the decoder's limit is the largest of them all).
                let length = prost::Message::encoded_len(&request);
                let (model, version) = crate::routes::predict::checked_target(
                    &self.ctx,
                    request.model_name.clone(),
                    version,
                    length,
                )
                .map_err(|err| status(&err.for_protocol()))?;
                let requested = request
                    .outputs
                    .iter()
                    .map(|output| output.name.clone())
                    .collect::<Vec<_>>();
                v2::check_requested_outputs(&self.ctx, &model, version.as_ref(), &requested)
                    .map_err(|err| status(&err))?;
                // The shorter of the `timeout` parameter and the call's own gRPC deadline.
                let timeout = match (timeout_parameter(&request)?, client_deadline) {
                    (Some(parameter), Some(deadline)) => Some(parameter.min(deadline)),
                    (parameter, deadline) => parameter.or(deadline),
                };
                let priority = Priority::from_level(unsigned_parameter(&request, "priority")?);
                let id = if request.id.is_empty() {
                    caller.request_id.as_str().to_owned()
                } else {
                    request.id.clone()
                };
                let inputs = decode_inputs(request.inputs, request.raw_input_contents)?;
                let prediction = self
                    .ctx
                    .infer_tensors(
                        &caller,
                        TensorCommand {
                            model,
                            version,
                            inputs,
                            timeout,
                            priority,
                        },
                    )
                    .await
                    .map_err(|failure| {
                        call.fields = Some(AccessLogFields::for_prediction(
                            failure.job_id,
                            failure.model.as_ref(),
                        ));
                        status(&ApiError::from_classified(&failure.error).for_protocol())
                    })?;
                call.fields = Some(AccessLogFields::for_prediction(
                    Some(prediction.job_id),
                    Some(&prediction.model),
                ));
                let outputs = v2::select_outputs(prediction.output, &requested)
                    .map_err(|err| status(&err))?;
                let mut response = Response::new(encode_outputs(
                    prediction.model.name.to_string(),
                    prediction.model.version.to_string(),
                    id,
                    outputs,
                ));
                if let Ok(value) = prediction.job_id.to_string().parse() {
                    response.metadata_mut().insert("x-job-id", value);
                }
                Ok(response)
            })
            .await
    }

    async fn repository_index(
        &self,
        request: Request<RepositoryIndexRequest>,
    ) -> Result<Response<RepositoryIndexResponse>, Status> {
        Call::start(method_path!("RepositoryIndex"), request.metadata())
            .serve(async |call| {
                self.admit(call, request.metadata(), Scope::Admin, None)
                    .await?;
                let only_ready = request.into_inner().ready;
                let models = self
                    .ctx
                    .registry
                    .statuses()
                    .into_iter()
                    .filter(|status| !only_ready || status.ready)
                    .map(|status| {
                        let (state, reason) = match (&status.error, status.loaded) {
                            (Some(error), _) => ("UNAVAILABLE", error.clone()),
                            (None, true) => ("READY", String::new()),
                            (None, false) => (
                                "UNAVAILABLE",
                                "unloaded (loads on first request)".to_owned(),
                            ),
                        };
                        ModelIndex {
                            name: status.key.name.to_string(),
                            version: status.key.version.to_string(),
                            state: state.to_owned(),
                            reason,
                        }
                    })
                    .collect();
                Ok(Response::new(RepositoryIndexResponse { models }))
            })
            .await
    }

    /// Loads (or reloads from disk) every version of the model; a failed reload keeps the
    /// old version serving.
    async fn repository_model_load(
        &self,
        request: Request<RepositoryModelLoadRequest>,
    ) -> Result<Response<RepositoryModelLoadResponse>, Status> {
        Call::start(method_path!("RepositoryModelLoad"), request.metadata())
            .serve(async |call| {
                let name = &request.get_ref().model_name;
                for key in self
                    .versions_for_admin(call, request.metadata(), name)
                    .await?
                {
                    self.ctx
                        .registry
                        .reload_model(&key)
                        .await
                        .map_err(|err| status(&ApiError::from_classified(&err)))?;
                    tracing::info!(model = %key, "model loaded through RepositoryModelLoad");
                }
                Ok(Response::new(RepositoryModelLoadResponse {}))
            })
            .await
    }

    /// Drops every version of the model from memory; running requests finish first.
    async fn repository_model_unload(
        &self,
        request: Request<RepositoryModelUnloadRequest>,
    ) -> Result<Response<RepositoryModelUnloadResponse>, Status> {
        Call::start(method_path!("RepositoryModelUnload"), request.metadata())
            .serve(async |call| {
                let name = &request.get_ref().model_name;
                for key in self
                    .versions_for_admin(call, request.metadata(), name)
                    .await?
                {
                    self.ctx
                        .registry
                        .unload(&key)
                        .map_err(|err| status(&ApiError::from_classified(&err)))?;
                }
                Ok(Response::new(RepositoryModelUnloadResponse {}))
            })
            .await
    }
}

impl InferenceGrpc {
    /// What a repository RPC acts on: every version of the model `name`, for an `admin`
    /// caller.
    async fn versions_for_admin(
        &self,
        call: &mut Call,
        metadata: &MetadataMap,
        name: &str,
    ) -> Result<Vec<ModelKey>, Status> {
        self.admit(call, metadata, Scope::Admin, None).await?;
        self.versions_of(name)
    }

    fn versions_of(&self, name: &str) -> Result<Vec<ModelKey>, Status> {
        let keys = self
            .ctx
            .registry
            .statuses()
            .into_iter()
            .filter(|status| status.key.name.as_str() == name)
            .map(|status| status.key)
            .collect::<Vec<_>>();
        if keys.is_empty() {
            return Err(Status::not_found(format!(
                "model {name:?} is not served here"
            )));
        }
        Ok(keys)
    }
}

/// The `timeout` request parameter (microseconds, as Triton's clients send it); 0 means no
/// timeout, as in Triton.
fn timeout_parameter(request: &ModelInferRequest) -> Result<Option<Duration>, Status> {
    Ok(unsigned_parameter(request, "timeout")?
        .filter(|&micros| micros != 0)
        .map(Duration::from_micros))
}

/// The call's deadline from its `grpc-timeout` header (`<digits><H|M|S|m|u|n>`).
fn grpc_timeout(metadata: &MetadataMap) -> Option<Duration> {
    let text = metadata.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    let value: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(value.saturating_mul(3600)),
        "M" => Duration::from_secs(value.saturating_mul(60)),
        "S" => Duration::from_secs(value),
        "m" => Duration::from_millis(value),
        "u" => Duration::from_micros(value),
        "n" => Duration::from_nanos(value),
        _ => return None,
    })
}

/// A non-negative integer request parameter (`int64_param` or `uint64_param`).
fn unsigned_parameter(request: &ModelInferRequest, name: &str) -> Result<Option<u64>, Status> {
    match request.parameters.get(name) {
        None => Ok(None),
        Some(InferParameter {
            parameter_choice: Some(ParameterChoice::Int64Param(value)),
        }) if *value >= 0 => Ok(Some(value.unsigned_abs())),
        Some(InferParameter {
            parameter_choice: Some(ParameterChoice::Uint64Param(value)),
        }) => Ok(Some(*value)),
        Some(_) => Err(Status::invalid_argument(format!(
            "parameter {name} must be a non-negative integer"
        ))),
    }
}

/// Input tensors from typed contents, or from `raw_input_contents` (one entry per input).
fn decode_inputs(
    inputs: Vec<InferInputTensor>,
    raw: Vec<prost::bytes::Bytes>,
) -> Result<Vec<Tensor>, Status> {
    if inputs.is_empty() {
        return Err(Status::invalid_argument("the request has no inputs"));
    }
    if !raw.is_empty() && raw.len() != inputs.len() {
        return Err(Status::invalid_argument(format!(
            "raw_input_contents has {} entries for {} inputs; send one per input, in order",
            raw.len(),
            inputs.len()
        )));
    }
    let mut raw = raw.into_iter();
    inputs
        .into_iter()
        .map(|input| {
            let datatype =
                wire::datatype(&input.datatype, &input.name).map_err(|err| invalid(&err))?;
            let dims = wire::shape(&input.shape, &input.name).map_err(|err| invalid(&err))?;
            let data = match raw.next() {
                Some(bytes) => {
                    if input.contents.is_some() {
                        return Err(Status::invalid_argument(format!(
                            "tensor `{}` has both contents and raw_input_contents",
                            input.name
                        )));
                    }
                    wire::data_from_raw(&input.name, datatype, &bytes)
                }
                None => wire::data_from_contents(
                    &input.name,
                    datatype,
                    input.contents.unwrap_or_default(),
                ),
            }
            .map_err(|err| invalid(&err))?;
            wire::tensor(&input.name, dims, data).map_err(|err| invalid(&err))
        })
        .collect()
}

/// Outputs as `raw_output_contents`, as Triton answers (its clients decode raw contents).
fn encode_outputs(
    model_name: String,
    model_version: String,
    id: String,
    outputs: Vec<Tensor>,
) -> ModelInferResponse {
    let mut described = Vec::with_capacity(outputs.len());
    let mut raw = Vec::with_capacity(outputs.len());
    for output in outputs {
        raw.push(wire::to_raw(&output.data).into());
        described.push(InferOutputTensor {
            name: output.name,
            datatype: output.data.datatype().as_str().to_owned(),
            shape: wire::wire_shape(&output.shape),
            parameters: Default::default(),
            contents: None,
        });
    }
    ModelInferResponse {
        model_name,
        model_version,
        id,
        parameters: Default::default(),
        outputs: described,
        raw_output_contents: raw,
    }
}

#[derive(Debug, Clone)]
struct HealthGrpc {
    ctx: AppState,
}

#[tonic::async_trait]
impl Health for HealthGrpc {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let service = request.into_inner().service;
        if !service.is_empty() && service != INFERENCE_SERVICE {
            return Err(Status::not_found(format!("unknown service {service:?}")));
        }
        let serving = if self.ctx.readiness().await.is_ok() {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        Ok(Response::new(HealthCheckResponse {
            status: serving.into(),
        }))
    }

    type WatchStream = BoxStream<'static, Result<HealthCheckResponse, Status>>;

    async fn watch(
        &self,
        _request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented(
            "Watch is not served; poll Check instead",
        ))
    }
}
