//! The `remote_v2` backend: a model whose graph runs on another Open Inference Protocol
//! server (Triton, KServe, MLServer), over gRPC (raw tensor contents) or HTTP (JSON tensors).
//!
//! The manifest's pre- and postprocessing stay in the engine (`OnnxPipeline::remote`); this
//! module only carries tensors. Each call runs on the model's executor thread and blocks on a
//! small runtime of its own, bounded by the request's SLA deadline (sent as the gRPC deadline
//! or the HTTP timeout). Around the calls:
//! - a bounded pool of `connections` gRPC channels (or HTTP keep-alive connections);
//! - retries only where nothing can have reached the server: a connection that could not be
//!   established is retried (3 attempts), a request that was sent never is;
//! - a circuit breaker: after `failure_threshold` consecutive transport failures (refused,
//!   unavailable, deadline) calls fail at once with 503 `unavailable` for `open_ms`; then one
//!   request probes the server's `ModelReady` (HTTP `.../ready`), and traffic resumes when the
//!   model is ready again. Answers the server gave (a 4xx, `INVALID_ARGUMENT`) are not outages.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use inference_engine_core::deadline;
use inference_engine_core::pipeline::PipelineError;
use inference_engine_core::source::LoadError;
use inference_engine_core::sync::lock;
use inference_engine_core::tensor::Tensor;
use inference_engine_onnx::manifest::{RemoteManifest, RemoteProtocol};
use inference_engine_onnx::{RemoteConnector, RemoteModel};
use serde_json::{Value, json};
use tonic::transport::{Channel, Endpoint};

use crate::proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use crate::proto::inference::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use crate::proto::inference::{ModelInferRequest, ModelInferResponse, ModelReadyRequest};
use crate::wire;

/// Connection attempts per call (a refused connection never delivered the request).
const CONNECT_ATTEMPTS: u32 = 3;
const CONNECT_BACKOFF: Duration = Duration::from_millis(20);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Builds `remote_v2` models; one small runtime drives the calls of all of them.
#[derive(Debug, Default)]
pub struct RemoteV2Connector {
    runtime: OnceLock<Arc<CallRuntime>>,
}

/// The runtime the executor threads block on for remote calls. It may be dropped on the
/// server's own runtime (when the registry goes at shutdown), where a plain runtime's drop
/// would panic: it shuts down in the background instead.
#[derive(Debug)]
struct CallRuntime(Option<tokio::runtime::Runtime>);

impl CallRuntime {
    fn block_on<F: std::future::Future>(&self, future: F) -> Option<F::Output> {
        self.0.as_ref().map(|runtime| runtime.block_on(future))
    }
}

impl Drop for CallRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

impl RemoteV2Connector {
    pub fn new() -> Self {
        Self::default()
    }

    fn runtime(&self) -> Result<Arc<CallRuntime>, LoadError> {
        if let Some(runtime) = self.runtime.get() {
            return Ok(Arc::clone(runtime));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("remote-v2")
            .enable_all()
            .build()
            .map_err(|err| LoadError(format!("cannot start the remote_v2 runtime: {err}")))?;
        Ok(Arc::clone(
            self.runtime
                .get_or_init(|| Arc::new(CallRuntime(Some(runtime)))),
        ))
    }
}

impl RemoteConnector for RemoteV2Connector {
    fn connect(&self, remote: &RemoteManifest) -> Result<Arc<dyn RemoteModel>, LoadError> {
        let model = RemoteV2Model::new(remote.clone(), self.runtime()?)?;
        // Only a hint: the model loads either way, and the circuit breaker handles outages.
        match model
            .runtime
            .block_on(model.is_ready(CONNECT_TIMEOUT))
            .unwrap_or(Ok(false))
        {
            Ok(true) => {
                tracing::info!(url = %remote.url, model = %remote.model, "remote model ready")
            }
            Ok(false) => {
                tracing::warn!(url = %remote.url, model = %remote.model, "remote model is not ready yet")
            }
            Err(err) => {
                tracing::warn!(url = %remote.url, model = %remote.model, error = %err, "remote server unreachable; requests fail with 503 until it answers")
            }
        }
        Ok(Arc::new(model))
    }
}

/// One remote model.
#[derive(Debug)]
struct RemoteV2Model {
    target: RemoteManifest,
    runtime: Arc<CallRuntime>,
    transport: Transport,
    breaker: CircuitBreaker,
}

#[derive(Debug)]
enum Transport {
    Grpc {
        // Boxed: an endpoint is large and each model holds one transport.
        endpoint: Box<Endpoint>,
        /// Lazily connected; dropped after a transport failure so the next call reconnects.
        channels: Vec<Mutex<Option<Channel>>>,
        next: AtomicUsize,
    },
    Http {
        client: reqwest::Client,
        infer_url: String,
        ready_url: String,
    },
}

/// Why a call failed.
#[derive(Debug)]
enum CallError {
    /// The server could not be reached or did not answer in time: counts towards the circuit.
    Transport(String),
    /// The server answered with an error.
    Rejected {
        invalid_input: bool,
        message: String,
    },
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Transport(message) | Self::Rejected { message, .. } => f.write_str(message),
        }
    }
}

impl RemoteV2Model {
    fn new(target: RemoteManifest, runtime: Arc<CallRuntime>) -> Result<Self, LoadError> {
        let base = target.url.trim_end_matches('/').to_owned();
        let transport = match target.protocol {
            RemoteProtocol::Grpc => {
                let endpoint = Endpoint::from_shared(base.clone())
                    .map_err(|err| LoadError(format!("remote.url {base:?}: {err}")))?
                    .connect_timeout(CONNECT_TIMEOUT)
                    .tcp_nodelay(true);
                Transport::Grpc {
                    endpoint: Box::new(endpoint),
                    channels: (0..target.connections).map(|_| Mutex::new(None)).collect(),
                    next: AtomicUsize::new(0),
                }
            }
            RemoteProtocol::Http => {
                let client = reqwest::Client::builder()
                    .pool_max_idle_per_host(target.connections)
                    .connect_timeout(CONNECT_TIMEOUT)
                    .build()
                    .map_err(|err| LoadError(format!("cannot build the HTTP client: {err}")))?;
                let model_path = match &target.version {
                    Some(version) if !version.is_empty() => {
                        format!("{base}/v2/models/{}/versions/{version}", target.model)
                    }
                    _ => format!("{base}/v2/models/{}", target.model),
                };
                Transport::Http {
                    client,
                    infer_url: format!("{model_path}/infer"),
                    ready_url: format!("{model_path}/ready"),
                }
            }
        };
        let breaker = CircuitBreaker::new(
            target.failure_threshold,
            Duration::from_millis(target.open_ms),
        );
        Ok(Self {
            target,
            runtime,
            transport,
            breaker,
        })
    }

    fn version(&self) -> String {
        self.target.version.clone().unwrap_or_default()
    }

    fn describe(&self) -> String {
        format!(
            "remote model {:?} at {}",
            self.target.model, self.target.url
        )
    }

    /// A connected channel of the pool, connecting (with retries) if needed.
    async fn channel(
        &self,
        endpoint: &Endpoint,
        slot: &Mutex<Option<Channel>>,
    ) -> Result<Channel, CallError> {
        if let Some(channel) = lock(slot).clone() {
            return Ok(channel);
        }
        let mut last_error = String::new();
        for attempt in 0..CONNECT_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(CONNECT_BACKOFF * attempt).await;
            }
            match endpoint.connect().await {
                Ok(channel) => {
                    *lock(slot) = Some(channel.clone());
                    return Ok(channel);
                }
                Err(err) => last_error = format!("{err}: {}", source_chain(&err)),
            }
        }
        Err(CallError::Transport(format!(
            "cannot connect to {} after {CONNECT_ATTEMPTS} attempts: {last_error}",
            self.target.url
        )))
    }

    async fn call(
        &self,
        inputs: Vec<Tensor>,
        outputs: &[String],
        timeout: Duration,
    ) -> Result<Vec<Tensor>, CallError> {
        match &self.transport {
            Transport::Grpc {
                endpoint,
                channels,
                next,
            } => {
                let slot = &channels[next.fetch_add(1, Ordering::Relaxed) % channels.len()];
                let channel = self.channel(endpoint, slot).await?;
                let mut client =
                    GrpcInferenceServiceClient::new(channel).max_decoding_message_size(usize::MAX);
                let mut request = tonic::Request::new(grpc_request(
                    &self.target.model,
                    self.version(),
                    inputs,
                    outputs,
                ));
                request.set_timeout(timeout);
                match client.model_infer(request).await {
                    Ok(response) => {
                        grpc_outputs(response.into_inner()).map_err(|err| CallError::Rejected {
                            invalid_input: false,
                            message: format!("{}: {err}", self.describe()),
                        })
                    }
                    Err(status) => {
                        let failure = self.grpc_failure(&status);
                        if matches!(failure, CallError::Transport(_)) {
                            *lock(slot) = None;
                        }
                        Err(failure)
                    }
                }
            }
            Transport::Http {
                client, infer_url, ..
            } => {
                let body = http_request(&inputs, outputs);
                let mut attempt = 0;
                let response = loop {
                    match client
                        .post(infer_url)
                        .timeout(timeout)
                        .json(&body)
                        .send()
                        .await
                    {
                        Ok(response) => break response,
                        Err(err) if err.is_connect() && attempt + 1 < CONNECT_ATTEMPTS => {
                            attempt += 1;
                            tokio::time::sleep(CONNECT_BACKOFF * attempt).await;
                        }
                        Err(err) => {
                            return Err(CallError::Transport(format!(
                                "{}: {err}: {}",
                                self.describe(),
                                source_chain(&err)
                            )));
                        }
                    }
                };
                let status = response.status();
                let text = response
                    .text()
                    .await
                    .map_err(|err| CallError::Transport(format!("{}: {err}", self.describe())))?;
                if status.is_success() {
                    return http_outputs(&text).map_err(|err| CallError::Rejected {
                        invalid_input: false,
                        message: format!("{}: {err}", self.describe()),
                    });
                }
                let reason = serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|body| body.get("error").and_then(Value::as_str).map(str::to_owned))
                    .unwrap_or(text);
                let message = format!("{} answered {status}: {reason}", self.describe());
                if status.is_server_error() && status.as_u16() != 500 {
                    Err(CallError::Transport(message))
                } else {
                    Err(CallError::Rejected {
                        invalid_input: status.as_u16() == 400 || status.as_u16() == 422,
                        message,
                    })
                }
            }
        }
    }

    fn grpc_failure(&self, status: &tonic::Status) -> CallError {
        let message = format!(
            "{}: {:?}: {}",
            self.describe(),
            status.code(),
            status.message()
        );
        match status.code() {
            tonic::Code::Unavailable
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Cancelled
            | tonic::Code::ResourceExhausted => CallError::Transport(message),
            tonic::Code::Unknown if status.message().contains("transport") => {
                CallError::Transport(message)
            }
            tonic::Code::InvalidArgument => CallError::Rejected {
                invalid_input: true,
                message,
            },
            _ => CallError::Rejected {
                invalid_input: false,
                message,
            },
        }
    }

    /// `ModelReady` (gRPC) or `GET .../ready` (HTTP).
    async fn is_ready(&self, timeout: Duration) -> Result<bool, CallError> {
        match &self.transport {
            Transport::Grpc {
                endpoint, channels, ..
            } => {
                let slot = &channels[0];
                let channel = self.channel(endpoint, slot).await?;
                let mut client = GrpcInferenceServiceClient::new(channel);
                let mut request = tonic::Request::new(ModelReadyRequest {
                    name: self.target.model.clone(),
                    version: self.version(),
                });
                request.set_timeout(timeout);
                match client.model_ready(request).await {
                    Ok(response) => Ok(response.into_inner().ready),
                    Err(status) => {
                        let failure = self.grpc_failure(&status);
                        match failure {
                            CallError::Transport(_) => {
                                *lock(slot) = None;
                                Err(failure)
                            }
                            CallError::Rejected { .. } => Ok(false),
                        }
                    }
                }
            }
            Transport::Http {
                client, ready_url, ..
            } => match client.get(ready_url).timeout(timeout).send().await {
                Ok(response) => Ok(response.status().is_success()),
                Err(err) => Err(CallError::Transport(format!("{}: {err}", self.describe()))),
            },
        }
    }
}

impl RemoteModel for RemoteV2Model {
    fn infer(&self, inputs: Vec<Tensor>, outputs: &[String]) -> Result<Vec<Tensor>, PipelineError> {
        let timeout =
            deadline::remaining().unwrap_or(Duration::from_millis(self.target.timeout_ms));
        if timeout.is_zero() {
            return Err(PipelineError::Inference(
                "the request's deadline passed before the remote call".to_owned(),
            ));
        }
        let admission = self.breaker.admit().map_err(|retry_in| {
            PipelineError::Unavailable(format!(
                "{} is failing; the circuit is open (next probe in {} ms)",
                self.describe(),
                retry_in.as_millis()
            ))
        })?;
        let outcome = self.runtime.block_on(async {
            if admission == Admission::Probe {
                match self.is_ready(timeout).await {
                    Ok(true) => {}
                    Ok(false) => {
                        return Err(CallError::Transport(format!(
                            "{} is not ready",
                            self.describe()
                        )));
                    }
                    Err(err) => return Err(err),
                }
            }
            match tokio::time::timeout(timeout, self.call(inputs, outputs, timeout)).await {
                Ok(outcome) => outcome,
                Err(_) => Err(CallError::Transport(format!(
                    "{} did not answer within {} ms",
                    self.describe(),
                    timeout.as_millis()
                ))),
            }
        });
        let outcome = outcome.unwrap_or_else(|| {
            Err(CallError::Transport(
                "the engine is shutting down".to_owned(),
            ))
        });
        match outcome {
            Ok(tensors) => {
                self.breaker.succeeded(&self.describe());
                Ok(tensors)
            }
            Err(CallError::Transport(message)) => {
                self.breaker.failed(&self.describe());
                Err(PipelineError::Unavailable(message))
            }
            Err(CallError::Rejected {
                invalid_input,
                message,
            }) => {
                // The server answered: it is up, whatever it thought of the request.
                self.breaker.succeeded(&self.describe());
                Err(if invalid_input {
                    PipelineError::InvalidInput(message)
                } else {
                    PipelineError::Inference(message)
                })
            }
        }
    }
}

fn source_chain(err: &dyn std::error::Error) -> String {
    let mut causes = Vec::new();
    let mut source = err.source();
    while let Some(cause) = source {
        causes.push(cause.to_string());
        source = cause.source();
    }
    causes.join(": ")
}

fn grpc_request(
    model: &str,
    version: String,
    inputs: Vec<Tensor>,
    outputs: &[String],
) -> ModelInferRequest {
    let mut raw = Vec::with_capacity(inputs.len());
    let described = inputs
        .into_iter()
        .map(|input| {
            raw.push(wire::to_raw(&input.data).into());
            InferInputTensor {
                datatype: input.datatype().as_str().to_owned(),
                shape: wire::wire_shape(&input.shape),
                name: input.name,
                parameters: Default::default(),
                contents: None,
            }
        })
        .collect();
    ModelInferRequest {
        model_name: model.to_owned(),
        model_version: version,
        id: String::new(),
        parameters: Default::default(),
        inputs: described,
        outputs: outputs
            .iter()
            .map(|name| InferRequestedOutputTensor {
                name: name.clone(),
                parameters: Default::default(),
            })
            .collect(),
        raw_input_contents: raw,
    }
}

fn grpc_outputs(response: ModelInferResponse) -> Result<Vec<Tensor>, wire::WireError> {
    let mut raw = response.raw_output_contents.into_iter();
    let use_raw = raw.len() > 0;
    response
        .outputs
        .into_iter()
        .map(|output| {
            let datatype = wire::datatype(&output.datatype, &output.name)?;
            let dims = wire::shape(&output.shape, &output.name)?;
            let data = if use_raw {
                let bytes = raw.next().ok_or_else(|| {
                    wire::WireError(format!(
                        "no raw_output_contents for output `{}`",
                        output.name
                    ))
                })?;
                wire::data_from_raw(&output.name, datatype, &bytes)?
            } else {
                wire::data_from_contents(
                    &output.name,
                    datatype,
                    output.contents.unwrap_or_default(),
                )?
            };
            wire::tensor(&output.name, dims, data)
        })
        .collect()
}

fn http_request(inputs: &[Tensor], outputs: &[String]) -> Value {
    json!({
        "inputs": inputs
            .iter()
            .map(|input| json!({
                "name": input.name,
                "shape": input.shape,
                "datatype": input.datatype().as_str(),
                "data": input.data.to_json_values(),
            }))
            .collect::<Vec<_>>(),
        "outputs": outputs.iter().map(|name| json!({"name": name})).collect::<Vec<_>>(),
    })
}

fn http_outputs(text: &str) -> Result<Vec<Tensor>, wire::WireError> {
    let body: Value = serde_json::from_str(text)
        .map_err(|err| wire::WireError(format!("the answer is not JSON: {err}")))?;
    let outputs = body
        .get("outputs")
        .and_then(Value::as_array)
        .ok_or_else(|| wire::WireError::new("the answer has no `outputs` list"))?;
    outputs
        .iter()
        .map(|output| {
            let field = |key: &str| {
                output
                    .get(key)
                    .ok_or_else(|| wire::WireError(format!("an output has no `{key}`")))
            };
            let name = field("name")?.as_str().unwrap_or_default().to_owned();
            let datatype = wire::datatype(field("datatype")?.as_str().unwrap_or_default(), &name)?;
            let shape = field("shape")?
                .as_array()
                .map(|dims| dims.iter().filter_map(Value::as_i64).collect::<Vec<_>>())
                .unwrap_or_default();
            let dims = wire::shape(&shape, &name)?;
            let data = wire::data_from_json(&name, datatype, field("data")?)?;
            wire::tensor(&name, dims, data)
        })
        .collect()
}

/// Whether a call goes through as usual or first checks that the server is back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admission {
    Normal,
    Probe,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BreakerState {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One request is checking whether the server is back; the others fail fast.
    Probing,
}

/// Consecutive transport failures open the circuit; a probe after `open_for` closes it.
#[derive(Debug)]
struct CircuitBreaker {
    threshold: u32,
    open_for: Duration,
    // A std mutex: held for a state change only, never across an await.
    state: Mutex<BreakerState>,
}

impl CircuitBreaker {
    fn new(threshold: u32, open_for: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            open_for,
            state: Mutex::new(BreakerState::Closed { failures: 0 }),
        }
    }

    /// `Err(time until the next probe)` while open.
    fn admit(&self) -> Result<Admission, Duration> {
        let mut state = lock(&self.state);
        match *state {
            BreakerState::Closed { .. } => Ok(Admission::Normal),
            BreakerState::Open { until } => {
                let now = Instant::now();
                if now < until {
                    Err(until - now)
                } else {
                    *state = BreakerState::Probing;
                    Ok(Admission::Probe)
                }
            }
            BreakerState::Probing => Err(Duration::ZERO),
        }
    }

    fn succeeded(&self, what: &str) {
        let mut state = lock(&self.state);
        if !matches!(*state, BreakerState::Closed { .. }) {
            tracing::info!(remote = what, "remote server answers again; circuit closed");
        }
        *state = BreakerState::Closed { failures: 0 };
    }

    fn failed(&self, what: &str) {
        let mut state = lock(&self.state);
        let open = BreakerState::Open {
            until: Instant::now() + self.open_for,
        };
        *state = match *state {
            BreakerState::Closed { failures } if failures + 1 < self.threshold => {
                BreakerState::Closed {
                    failures: failures + 1,
                }
            }
            BreakerState::Closed { .. } => {
                tracing::warn!(
                    remote = what,
                    open_ms = self.open_for.as_millis() as u64,
                    "remote server failing; circuit opened"
                );
                open
            }
            BreakerState::Probing | BreakerState::Open { .. } => open,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_circuit_opens_after_the_threshold_and_one_probe_closes_it() {
        let breaker = CircuitBreaker::new(2, Duration::from_millis(0));
        assert_eq!(breaker.admit(), Ok(Admission::Normal));
        breaker.failed("r");
        assert_eq!(breaker.admit(), Ok(Admission::Normal));
        breaker.failed("r");
        // Open for 0 ms: the next caller probes, the others fail fast meanwhile.
        assert_eq!(breaker.admit(), Ok(Admission::Probe));
        assert_eq!(breaker.admit(), Err(Duration::ZERO));
        breaker.succeeded("r");
        assert_eq!(breaker.admit(), Ok(Admission::Normal));
    }

    #[test]
    fn an_open_circuit_refuses_until_its_time_is_up() {
        let breaker = CircuitBreaker::new(1, Duration::from_secs(60));
        breaker.failed("r");
        let wait = breaker.admit().unwrap_err();
        assert!(wait > Duration::from_secs(59));
        // A failed probe reopens it for the full period.
        *lock(&breaker.state) = BreakerState::Probing;
        breaker.failed("r");
        assert!(breaker.admit().is_err());
    }

    #[test]
    fn http_answers_decode_into_tensors() {
        let text = r#"{"outputs": [{"name": "predict", "datatype": "INT64", "shape": [2, 1], "data": [0, 2]}]}"#;
        let tensors = http_outputs(text).unwrap();
        assert_eq!(tensors[0].shape, vec![2, 1]);
        assert!(
            http_outputs(
                r#"{"outputs": [{"name": "p", "datatype": "FP32", "shape": [3], "data": [1]}]}"#
            )
            .is_err()
        );
    }
}
