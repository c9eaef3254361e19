//! The composition root: it reads the settings, builds every adapter, wires them into the core
//! services and owns the process lifecycle. Nothing else constructs adapters.
//!
//! It may depend on `core` and the adapter crates (`store`), never on `server` or `cli`.
//!
//! Layout:
//! - [`settings`]: `Settings`, from flags, the environment and `.env`.
//! - [`telemetry`]: JSON (or pretty) logs on a non-blocking stdout writer.
//! - [`context`]: `AppContext::build(&Settings)` and its orderly `shutdown`.
//! - [`lifecycle`]: readiness state and the SIGTERM/SIGINT shutdown signal.
//! - [`clock`]: the tokio-backed `Clock`.

pub mod clock;
pub mod context;
pub mod lifecycle;
pub mod settings;
pub mod telemetry;

pub use context::{AppContext, StartupError};
pub use lifecycle::{Lifecycle, shutdown_signal};
pub use settings::{Environment, LogFormat, Settings};
