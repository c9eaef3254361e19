//! The composition root: it reads the settings, builds every adapter, wires them into the core
//! services and owns the process lifecycle. Nothing else constructs adapters.
//!
//! It may depend on `core` and the adapter crates (`store`), never on `server` or `cli`.
//!
//! Layout:
//! - [`settings`]: `Settings`, from flags, the environment and `.env`.
//! - [`engine_config`]: finding, reading and validating `engine.toml`.
//! - [`telemetry`]: JSON (or pretty) logs on a non-blocking stdout writer.
//! - [`context`]: `AppContext::build(&Settings)` and its orderly `shutdown`.
//! - [`check`]: `inference-engine check`, every startup check run to the end and reported.
//! - [`keys`]: `inference-engine keys generate`, a random API key and its `API_KEYS` entry.
//! - [`lifecycle`]: readiness state and the SIGTERM/SIGINT shutdown signal.
//! - [`clock`]: the tokio-backed `Clock`.
//! - [`job_loops`]: the loops that run async jobs (worker process, or in-process in `serve`).
//! - [`repository`]: the `MODELS_DIR` folder as the registry's model repository.
//! - [`metrics`]: the process-wide Prometheus recorder.
//! - [`local_queue`]: `LocalJobQueue`, the in-process queue used without Redis.
//! - [`predictions`]: sync predictions that run to the end, and are recorded, when their
//!   caller leaves.

pub mod check;
pub mod clock;
pub mod context;
pub mod engine_config;
pub mod job_loops;
pub mod keys;
pub mod lifecycle;
pub mod local_queue;
pub mod metrics;
pub mod predictions;
pub mod repository;
pub mod settings;
#[cfg(test)]
mod sync_record_tests;
pub mod telemetry;

pub use context::{AppContext, NotReady, QueueBackend, Role, StartupError};
pub use lifecycle::{Lifecycle, reload_on_sighup, shutdown_signal};
pub use settings::{Environment, GrpcPort, LogFormat, Settings};
