//! Process lifecycle: whether the server should receive traffic, when to stop, and when to
//! reload the configuration.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::AppContext;

/// Shared readiness state. Draining starts when shutdown begins, so load balancers stop sending
/// new requests while in-flight ones finish.
#[derive(Debug, Default)]
pub struct Lifecycle {
    draining: AtomicBool,
    /// Warm-up is loading the models.
    loading: AtomicBool,
}

impl Lifecycle {
    pub fn set_loading(&self, loading: bool) {
        self.loading.store(loading, Ordering::SeqCst);
    }

    pub fn is_loading(&self) -> bool {
        self.loading.load(Ordering::SeqCst)
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => tracing::info!(signal = "SIGINT", "shutdown requested"),
        () = terminate => tracing::info!(signal = "SIGTERM", "shutdown requested"),
    }
}

/// Reloads the configuration on every `SIGHUP`, as `POST /admin/reload` does, until the
/// returned future is dropped; an invalid file is logged and changes nothing. `serve` and
/// `worker` both run it: a worker runs async jobs under the same routing, SLA and execution
/// policy as the server, and without a handler `SIGHUP` would end the process mid-job.
///
/// The handler is installed when this is called, not when the future is first polled, so a
/// `SIGHUP` sent once the process has said it started is never fatal. Call it inside the
/// runtime.
pub fn reload_on_sighup(ctx: Arc<AppContext>) -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
    async move {
        #[cfg(unix)]
        {
            let mut hangups = match hangups {
                Ok(hangups) => hangups,
                Err(err) => {
                    tracing::error!(error = %err, "cannot listen for SIGHUP; reload with POST /admin/reload (serve) or a restart");
                    return;
                }
            };
            while hangups.recv().await.is_some() {
                tracing::info!(signal = "SIGHUP", "configuration reload requested");
                if let Err(err) = ctx.reload().await {
                    tracing::error!(error = %err, "configuration reload rejected; the running configuration stays");
                }
            }
        }
        #[cfg(not(unix))]
        drop(ctx);
    }
}
