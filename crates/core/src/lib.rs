//! The domain of the inference engine, free of transports, databases and runtimes.
//!
//! It owns what a model server *is*: validated identifiers, the pipeline contract every model
//! implements, the executor pools that keep model code off the async runtime, the registry that
//! resolves `(name, version)`, jobs and their lifecycle, API keys and scopes, and the ports
//! (traits) that adapter crates implement. It must never depend on axum, sqlx, redis, tract,
//! tonic or tokio: adapters depend on it, not the other way round.
//!
//! Layout:
//! - [`error`]: `ErrorKind`, the one classification every layer maps its errors to.
//! - [`model`]: `ModelName`, `ModelVersion`, `ModelKey` newtypes.
//! - [`auth`]: tenants, scopes, principals and the constant-time `ApiKeyTable`.
//! - [`pipeline`]: the `Pipeline` trait (preprocess → validate → infer → postprocess) and its
//!   type-erased form `Model`.
//! - [`builtin`]: the built-in `echo` and `sleep` pipelines.
//! - [`deadline`]: the SLA deadline of the model call on the current executor thread.
//! - [`cancel`]: `CancelFlag`, the cancellation of the async job the current thread works for.
//! - [`executor`]: `ExecutorPool`, bounded queues in front of named OS threads.
//! - [`observe`]: the metric names (listed in deploy/README.md) and the functions that record them.
//! - [`source`]: `ModelSource`, `ModelDescription`, `TensorSpec`: a model before it is loaded.
//! - [`steps`]: pipelines of models: `PipelineStep`, `PipelineSource`, `StepTiming` and the
//!   data-flow rule from one step's answer to the next step's `data` (run by [`service`]).
//! - [`resident`]: the process's resident set size, read around each model load.
//! - [`tensor`]: `Tensor`, `TensorData`, `DataType`: named tensors for protocol clients.
//! - [`batcher`]: `Batcher`, dynamic batching of concurrent requests into one model run.
//! - [`registry`]: `ModelRegistry`, which models exist and which version a request gets.
//! - [`job`]: `Job`, `JobId`, `JobStatus`, `JobMode`, `RequestId`.
//! - [`ports`]: `JobStore` and `Clock`, implemented by adapters.
//! - [`ratelimit`]: GCRA, the `RateLimiter` port and the in-process `LocalRateLimiter`.
//! - [`redact`]: connection URLs without their passwords.
//! - [`request_scope`]: the request the current thread works for, named by every log line.
//! - [`service`]: `InferenceService`, the synchronous predict use case.
//! - [`jobs`]: `AsyncJobService`: submit (idempotent), read, list and cancel async jobs.
//! - [`runner`]: `JobRunner`: the worker step `process_next` and the reconciler.
//! - [`routing`]: `Bucket`, `RoutingRule` (static / canary / ab) and `RoutingTable`: the
//!   version a request gets when it names none.
//! - [`sync`]: the one poison-tolerant `lock` every crate uses.
//! - [`config`]: the `engine.toml` model (`EngineConfigFile`) and its validation into
//!   `EngineConfig` (registry, routing, execution, SLA, rate-limit and job policies).

/// `Serialize` for a newtype over `Arc<str>` (as its text). The identifiers on the request path
/// hold their text in an `Arc<str>`, so that each of the copies a request makes (the caller, the
/// job record, the rate limiter's key, the access log) is a reference count, not an allocation.
macro_rules! serialize_as_str {
    ($name:ident) => {
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }
    };
}

pub mod auth;
pub mod batcher;
pub mod builtin;
pub mod cancel;
pub mod config;
pub mod deadline;
pub mod error;
pub mod executor;
pub mod job;
pub mod jobs;
pub mod model;
pub mod observe;
pub mod pipeline;
pub mod ports;
pub mod ratelimit;
pub mod redact;
pub mod registry;
pub mod request_scope;
pub mod resident;
pub mod routing;
pub mod runner;
pub mod service;
pub mod source;
pub mod steps;
pub mod sync;
pub mod tensor;
