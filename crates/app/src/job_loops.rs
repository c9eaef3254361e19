//! The loops that run async jobs: `concurrency` copies of `JobRunner::process_next` plus one
//! reconciler, in the `worker` process or (without Redis) inside `serve`.

use std::sync::Arc;
use std::time::Duration;

use inference_engine_core::runner::JobRunner;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Pause after a failed step (store or queue unreachable) before trying again.
const ERROR_BACKOFF: Duration = Duration::from_secs(1);
/// Finished jobs deleted per statement, and statements per reconciler pass, by the retention
/// purge (`[jobs] result_ttl_days`).
const PURGE_CHUNK: u32 = 1_000;
const PURGE_CHUNKS_PER_PASS: u32 = 10;

/// Jobs looked at per reconciler pass.
const RECONCILE_BATCH: u32 = 1_000;

/// Running job loops; stop them with [`JobLoops::stop`].
#[derive(Debug)]
pub struct JobLoops {
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl JobLoops {
    /// Starts `loops` job loops and a reconciler that runs every `reconcile_every`.
    pub fn start(runner: &JobRunner, loops: usize, reconcile_every: Duration) -> Self {
        let (stop, stopped) = watch::channel(false);
        let mut tasks = JoinSet::new();
        for index in 0..loops.max(1) {
            tasks.spawn(run_loop(runner.clone(), stopped.clone(), index));
        }
        tasks.spawn(reconcile_loop(runner.clone(), stopped, reconcile_every));
        Self { stop, tasks }
    }

    /// Stops taking new work and waits until `deadline` for the steps in progress to record
    /// their outcomes. Steps still running then are abandoned: their deliveries are not
    /// acknowledged, so the queue hands them out again after the visibility timeout.
    pub async fn stop(mut self, deadline: Instant) {
        let _ = self.stop.send(true);
        let drained = tokio::time::timeout_at(deadline, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("jobs still running at the end of the drain; they will be redelivered");
            self.tasks.abort_all();
        }
    }
}

async fn run_loop(runner: JobRunner, mut stopped: watch::Receiver<bool>, index: usize) {
    while !*stopped.borrow() {
        match runner.process_next().await {
            Ok(outcome) if !outcome.is_idle() => {
                tracing::debug!(loop_index = index, ?outcome, "job step");
            }
            Ok(_) => {}
            Err(err) => {
                tracing::warn!(loop_index = index, error = %err, "job step failed; retrying");
                tokio::select! {
                    () = tokio::time::sleep(ERROR_BACKOFF) => {}
                    _ = stopped.changed() => {}
                }
            }
        }
    }
}

async fn reconcile_loop(runner: JobRunner, mut stopped: watch::Receiver<bool>, every: Duration) {
    // Spread the passes of many processes started together.
    let offset = every.mul_f64(f64::from(random_fraction()));
    let mut wait = offset;
    let mut recoveries_seen = runner.queue_recoveries();
    loop {
        let queue_recovered = tokio::select! {
            () = tokio::time::sleep(wait) => false,
            () = queue_recovery(&runner, recoveries_seen) => true,
            _ = stopped.changed() => return,
        };
        if *stopped.borrow() {
            return;
        }
        if queue_recovered {
            recoveries_seen = runner.queue_recoveries();
            match runner.reconcile_after_queue_recovery(RECONCILE_BATCH).await {
                Ok(enqueued) => {
                    tracing::info!(
                        enqueued,
                        "pending jobs re-enqueued after the queue recovered"
                    );
                }
                Err(err) => {
                    tracing::warn!(error = %err, "re-enqueueing after the queue recovered failed")
                }
            }
            // The periodic passes go on as before.
            continue;
        }
        if let Err(err) = runner.reconcile(RECONCILE_BATCH).await {
            tracing::warn!(error = %err, "reconciler pass failed");
        }
        if let Err(err) = runner
            .purge_expired(PURGE_CHUNK, PURGE_CHUNKS_PER_PASS)
            .await
        {
            tracing::warn!(error = %err, "retention pass failed");
        }
        wait = every;
    }
}

/// Completes once the queue has recovered since `seen` ([`JobRunner::queue_recoveries`]). A
/// cheap atomic read, polled: the queue notices a recovery only on its next command anyway.
async fn queue_recovery(runner: &JobRunner, seen: u64) {
    const POLL: Duration = Duration::from_millis(250);
    while runner.queue_recoveries() == seen {
        tokio::time::sleep(POLL).await;
    }
}

/// A pseudo-random number in [0, 1) without another dependency.
fn random_fraction() -> f32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos());
    (nanos % 1_000) as f32 / 1_000.0
}

/// Starts the job loops of a context.
pub fn start_for(ctx: &Arc<crate::AppContext>) -> JobLoops {
    JobLoops::start(
        &ctx.runner,
        ctx.settings.worker_loops(),
        Duration::from_secs(ctx.settings.jobs_reconcile_interval_s.max(1)),
    )
}
