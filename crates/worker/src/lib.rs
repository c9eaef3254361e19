//! The worker process: job loops around `JobRunner::process_next` (see `core::runner`) fed by
//! the Redis queue, a reconciler, configuration reloads on SIGHUP, and an orderly drain on
//! SIGTERM. It depends on `app` (which builds the adapters) and nothing above it; the loops
//! themselves live in `app::job_loops` because `serve` runs the same loops in-process when
//! there is no Redis.

use std::future::Future;
use std::sync::Arc;

use inference_engine_app::{AppContext, job_loops, reload_on_sighup};

/// Runs job loops until `shutdown` resolves, then stops claiming work, lets running jobs finish
/// within `SHUTDOWN_TIMEOUT_S` (what is left is redelivered by the queue later), and closes the
/// store.
pub async fn run(ctx: Arc<AppContext>, shutdown: impl Future<Output = ()>) {
    let reloads = tokio::spawn(reload_on_sighup(Arc::clone(&ctx)));
    let loops = job_loops::start_for(&ctx);
    tracing::info!(
        loops = ctx.settings.worker_loops(),
        batch = ctx.settings.worker_batch,
        "worker started"
    );
    shutdown.await;
    let deadline = ctx.drain_deadline();
    reloads.abort();
    ctx.lifecycle.start_draining();
    loops.stop(deadline).await;
    ctx.shutdown(deadline).await;
    tracing::info!("worker stopped");
}
