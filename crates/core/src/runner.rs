//! Async jobs, the worker side: one testable step, [`JobRunner::process_next`], that receives a
//! batch of deliveries, claims the jobs in the store, runs them, records their outcomes and only
//! then acknowledges the deliveries. The `worker` process and the in-process runner of `serve`
//! are loops around this step; [`JobRunner::reconcile`] re-enqueues what a crash left behind.
//!
//! Safety comes from the store's conditional writes: a delivery can only start a job that is
//! `pending` (or `running` under a lost delivery), and only the current attempt can record an
//! outcome, so duplicates and late results are harmless.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use futures_util::future::{Either, join_all, select};

use crate::cancel::{self, CancelFlag};
use crate::executor::ExecutorError;
use crate::job::{Job, JobFailure, JobId, JobMode, JobStatus, Payload};
use crate::observe;
use crate::ports::{
    Claim, ClaimRequest, Delivery, JobQueue, JobStore, QueueError, SettleRequest, Settlement,
    StoreError,
};
use crate::routing::Bucket;
use crate::service::{InferenceError, InferenceService, RunFor};
use crate::steps::StepTiming;

/// What running one job gave: its result, or why it failed.
type RunResult = Result<serde_json::Value, InferenceError>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunnerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// Exponential backoff with jitter for retryable failures (`timeout`, `worker_lost`, a full
/// executor queue).
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// Delay before attempt `attempt + 1`: `base × 2^(attempt-1)`, capped, then scaled by a
    /// random factor in [0.5, 1) so retries of a burst do not arrive together.
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(20);
        let nominal = self
            .base_delay
            .saturating_mul(1_u32 << exponent)
            .min(self.max_delay);
        let jitter = 0.5 + (uuid::Uuid::new_v4().as_u128() % 1_000) as f64 / 2_000.0;
        nominal.mul_f64(jitter)
    }
}

/// [`RunnerConfig::cancel_poll`] by default: a cancel frees a `sleep`ing job's thread within
/// about a quarter of a second, for one indexed read per running batch.
pub const DEFAULT_CANCEL_POLL: Duration = Duration::from_millis(250);

#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Deliveries taken (and run concurrently) per step.
    pub batch: usize,
    /// How long one receive may wait for work.
    pub receive_wait: Duration,
    /// A delivery not acknowledged (or extended) for this long is considered lost.
    pub visibility_timeout: Duration,
    pub retry: RetryPolicy,
    /// A `pending` job older than this and not running is assumed missing from the queue.
    pub reconcile_grace: Duration,
    /// Set when this runner is the only one using the store since that time (the in-process
    /// runner on a SQLite file): a job left `running` before it was lost with its process.
    pub exclusive_since: Option<DateTime<Utc>>,
    /// Finished jobs older than this are deleted by [`JobRunner::purge_expired`]; `None` keeps
    /// them forever (`[jobs] result_ttl_days = 0`).
    pub result_ttl: Option<Duration>,
    /// How often running jobs' records are checked for a cancel, which raises the job's
    /// [`CancelFlag`] so its work can stop early (see [`crate::cancel`]).
    pub cancel_poll: Duration,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            batch: 32,
            receive_wait: Duration::from_secs(1),
            visibility_timeout: Duration::from_secs(300),
            retry: RetryPolicy::default(),
            reconcile_grace: Duration::from_secs(60),
            exclusive_since: None,
            result_ttl: None,
            cancel_poll: DEFAULT_CANCEL_POLL,
        }
    }
}

/// What one step did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StepOutcome {
    pub received: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub retried: usize,
    /// Deliveries for jobs that were finished, cancelled, running elsewhere or unknown.
    pub skipped: usize,
    /// Outcomes discarded because the job was cancelled (or taken over) meanwhile.
    pub discarded: usize,
}

impl StepOutcome {
    pub fn is_idle(&self) -> bool {
        self.received == 0
    }
}

/// Runs async jobs from a queue.
#[derive(Debug, Clone)]
pub struct JobRunner {
    inference: InferenceService,
    store: Arc<dyn JobStore>,
    queue: Arc<dyn JobQueue>,
    config: RunnerConfig,
}

fn failure(error_type: &str, message: impl Into<String>) -> JobFailure {
    JobFailure {
        error_type: error_type.to_owned(),
        message: message.into(),
    }
}

fn is_retryable(error: &InferenceError) -> bool {
    // A pipeline's failed step is retried when the step's own error would be.
    matches!(
        error.cause(),
        InferenceError::Timeout(_)
            | InferenceError::Executor(ExecutorError::Overloaded { .. })
            | InferenceError::Executor(ExecutorError::ShutDown { .. })
    )
}

impl JobRunner {
    pub fn new(
        inference: InferenceService,
        store: Arc<dyn JobStore>,
        queue: Arc<dyn JobQueue>,
        config: RunnerConfig,
    ) -> Self {
        Self {
            inference,
            store,
            queue,
            config,
        }
    }

    pub fn config(&self) -> &RunnerConfig {
        &self.config
    }

    fn now(&self) -> DateTime<Utc> {
        self.inference.clock().now()
    }

    fn lease_cutoff(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now - TimeDelta::from_std(self.config.visibility_timeout).unwrap_or(TimeDelta::MAX)
    }

    /// Receives up to `batch` deliveries and takes each to a recorded outcome.
    pub async fn process_next(&self) -> Result<StepOutcome, RunnerError> {
        let deliveries = self
            .queue
            .receive(self.config.batch, self.config.receive_wait)
            .await?;
        let mut outcome = StepOutcome {
            received: deliveries.len(),
            ..StepOutcome::default()
        };
        if deliveries.is_empty() {
            return Ok(outcome);
        }

        let claims = self.claim(&deliveries).await?;
        let mut settlements = Vec::new();
        let mut runs = Vec::new();
        for (delivery, claim) in deliveries.iter().zip(claims) {
            match claim {
                Claim::Started(job) if job.attempts > job.max_attempts => {
                    settlements.push(SettleRequest {
                        id: job.id,
                        attempt: job.attempts,
                        settlement: Settlement::Failed(failure(
                            "worker_lost",
                            format!(
                                "the job was lost by its worker {} times; giving up",
                                job.attempts - 1
                            ),
                        )),
                        steps: None,
                    });
                }
                Claim::Started(job) => runs.push((delivery.clone(), *job)),
                Claim::NotRunnable(job) => {
                    tracing::debug!(job_id = %job.id, status = job.status.as_str(), "delivery skipped");
                    outcome.skipped += 1;
                }
                Claim::NotFound => {
                    tracing::warn!(job_id = %delivery.job_id, "delivery for an unknown job");
                    outcome.skipped += 1;
                }
            }
        }

        let results = self.run_all(&runs).await;
        let mut retries = Vec::new();
        for ((_, job), (result, steps)) in runs.iter().zip(results) {
            let settlement = match result {
                Ok(value) => Settlement::Succeeded(value),
                Err(error) if is_retryable(&error) && job.attempts < job.max_attempts => {
                    let delay = self.config.retry.delay_after(job.attempts);
                    retries.push((job.id, delay));
                    Settlement::Retry {
                        failure: failure(error.error_type(), error.to_string()),
                        not_before: self.now()
                            + TimeDelta::from_std(delay).unwrap_or(TimeDelta::zero()),
                    }
                }
                Err(error) => Settlement::Failed(failure(error.error_type(), error.to_string())),
            };
            settlements.push(SettleRequest {
                id: job.id,
                attempt: job.attempts,
                settlement,
                steps: (!steps.is_empty()).then_some(steps),
            });
        }

        let recorded = if settlements.is_empty() {
            Vec::new()
        } else {
            self.store.settle(settlements.clone(), self.now()).await?
        };
        let mut discarded = Vec::new();
        for (request, recorded) in settlements.iter().zip(recorded) {
            if !recorded {
                outcome.discarded += 1;
                discarded.push(request.id);
                continue;
            }
            match request.settlement {
                Settlement::Succeeded(_) => {
                    outcome.succeeded += 1;
                    observe::job(JobStatus::Succeeded, JobMode::Async);
                }
                Settlement::Failed(_) => {
                    outcome.failed += 1;
                    observe::job(JobStatus::Failed, JobMode::Async);
                }
                Settlement::Retry { .. } => outcome.retried += 1,
            }
        }
        // A retry whose settlement was discarded (the job was cancelled meanwhile) is not
        // scheduled.
        retries.retain(|(id, _)| !discarded.contains(id));
        for (id, delay) in retries {
            if let Err(err) = self.queue.enqueue_after(id, delay).await {
                // The job is pending in the store; the reconciler will enqueue it.
                tracing::warn!(job_id = %id, error = %err, "retry not scheduled in the queue");
            }
        }
        // Acknowledge only now that every outcome is durable.
        self.queue.ack(&deliveries).await?;
        Ok(outcome)
    }

    /// Claims the delivered jobs. A `running` job is taken over only when its heartbeat is
    /// older than the visibility timeout (its worker is gone: killed, or its delivery lost with
    /// the queue's state), or older than this runner's exclusive ownership of the store.
    async fn claim(&self, deliveries: &[Delivery]) -> Result<Vec<Claim>, RunnerError> {
        let now = self.now();
        let mut cutoff = self.lease_cutoff(now);
        if let Some(since) = self.config.exclusive_since {
            cutoff = cutoff.max(since);
        }
        let requests: Vec<ClaimRequest> = deliveries
            .iter()
            .map(|delivery| ClaimRequest {
                id: delivery.job_id,
                take_over_if_heartbeat_before: Some(cutoff),
            })
            .collect();
        Ok(self.store.claim(&requests, now).await?)
    }

    /// Runs the jobs concurrently, keeping their deliveries and heartbeats alive meanwhile, and
    /// raising a job's cancel flag once its record says `cancelled`.
    async fn run_all(&self, runs: &[(Delivery, Job)]) -> Vec<(RunResult, Vec<StepTiming>)> {
        if runs.is_empty() {
            return Vec::new();
        }
        let flags: Vec<CancelFlag> = runs.iter().map(|_| CancelFlag::new()).collect();
        let work = join_all(
            runs.iter()
                .zip(&flags)
                .map(|((_, job), flag)| cancel::watched(flag.clone(), self.run_one(job))),
        );
        let mut work = Box::pin(work);
        let beat_every = (self.config.visibility_timeout / 3).max(Duration::from_millis(50));
        let tick_every = self
            .config
            .cancel_poll
            .clamp(Duration::from_millis(10), beat_every);
        let mut since_beat = Duration::ZERO;
        loop {
            let tick = self.inference.clock().sleep(tick_every);
            match select(work, tick).await {
                Either::Left((results, _)) => return results,
                Either::Right(((), pending)) => {
                    work = pending;
                    self.raise_cancelled(runs, &flags).await;
                    since_beat += tick_every;
                    if since_beat >= beat_every {
                        since_beat = Duration::ZERO;
                        self.keep_alive(runs).await;
                    }
                }
            }
        }
    }

    async fn raise_cancelled(&self, runs: &[(Delivery, Job)], flags: &[CancelFlag]) {
        let watched: Vec<JobId> = runs
            .iter()
            .zip(flags)
            .filter(|(_, flag)| !flag.is_raised())
            .map(|((_, job), _)| job.id)
            .collect();
        if watched.is_empty() {
            return;
        }
        match self.store.cancelled_among(&watched).await {
            Ok(cancelled) => {
                for ((_, job), flag) in runs.iter().zip(flags) {
                    if cancelled.contains(&job.id) {
                        tracing::info!(job_id = %job.id, "job cancelled while running; stopping its work");
                        flag.raise();
                    }
                }
            }
            // The job runs on; its settlement is discarded all the same.
            Err(err) => tracing::debug!(error = %err, "could not check running jobs for cancels"),
        }
    }

    async fn keep_alive(&self, runs: &[(Delivery, Job)]) {
        let deliveries: Vec<Delivery> = runs.iter().map(|(delivery, _)| delivery.clone()).collect();
        let ids: Vec<_> = runs.iter().map(|(_, job)| job.id).collect();
        if let Err(err) = self.queue.extend(&deliveries).await {
            tracing::warn!(error = %err, "could not extend deliveries of running jobs");
        }
        if let Err(err) = self.store.heartbeat(&ids, self.now()).await {
            tracing::warn!(error = %err, "could not record heartbeats of running jobs");
        }
    }

    /// Runs one claimed job: its result, and what the steps took when it is a pipeline.
    async fn run_one(&self, job: &Job) -> (RunResult, Vec<StepTiming>) {
        let serving = self.inference.registry().serving();
        // The version was resolved at submission; routing only applies to jobs without one.
        let key = match serving.route(&job.model, job.version.as_ref(), Bucket::random) {
            Ok(key) => key,
            Err(err) => return (Err(err.into()), Vec::new()),
        };
        let payload = job
            .input
            .clone()
            .unwrap_or(Payload::Single(serde_json::Value::Null));
        let timeout = job.timeout_ms.map(Duration::from_millis);
        let started = std::time::Instant::now();
        // A pipeline's steps without a version are routed by the job's request id: sticky when
        // the client sent it, random when it was generated (a random UUID), like a sync call.
        let run_for = RunFor {
            tenant: &job.tenant_id,
            routing_key: Some(job.request_id.as_str()),
        };
        let run = self
            .inference
            .execute(&serving, &key, payload, timeout, run_for)
            .await;
        observe::inference(
            &key,
            job.tenant_id.as_str(),
            started.elapsed(),
            run.result.as_ref().err().map(InferenceError::error_type),
        );
        (run.result, run.steps)
    }

    /// Deletes finished jobs created more than `result_ttl` ago, `chunk` rows per statement and
    /// at most `max_chunks` statements per call (so one pass never holds the store for long;
    /// the next pass continues). Returns how many were deleted.
    pub async fn purge_expired(&self, chunk: u32, max_chunks: u32) -> Result<u64, RunnerError> {
        let Some(ttl) = self.config.result_ttl else {
            return Ok(0);
        };
        let cutoff = self.now() - TimeDelta::from_std(ttl).unwrap_or(TimeDelta::MAX);
        let before = JobId::first_at(cutoff);
        let mut purged = 0;
        for _ in 0..max_chunks {
            let deleted = self.store.purge_finished(before, chunk).await?;
            purged += deleted;
            if deleted < u64::from(chunk) {
                break;
            }
        }
        if purged > 0 {
            tracing::info!(
                purged,
                older_than_days = ttl.as_secs() / 86_400,
                "finished jobs past their retention deleted"
            );
        }
        Ok(purged)
    }

    /// Enqueues jobs a crash left behind: `pending` ones older than the grace period (committed
    /// but never enqueued, or lost with the queue's state) and `running` ones whose heartbeat
    /// expired. Duplicates are harmless. Returns how many were enqueued.
    pub async fn reconcile(&self, limit: u32) -> Result<usize, RunnerError> {
        let grace = TimeDelta::from_std(self.config.reconcile_grace).unwrap_or(TimeDelta::MAX);
        self.reconcile_pending_older_than(grace, limit).await
    }

    /// [`JobQueue::recoveries`] of the queue jobs are enqueued on.
    pub fn queue_recoveries(&self) -> u64 {
        self.queue.recoveries()
    }

    /// [`Self::reconcile`] once the queue came back ([`Self::queue_recoveries`] changed): any
    /// pending job, however recent, may have been enqueued into the outage or lost with the
    /// queue's state, so none waits out the grace period.
    pub async fn reconcile_after_queue_recovery(&self, limit: u32) -> Result<usize, RunnerError> {
        self.reconcile_pending_older_than(TimeDelta::zero(), limit)
            .await
    }

    async fn reconcile_pending_older_than(
        &self,
        grace: TimeDelta,
        limit: u32,
    ) -> Result<usize, RunnerError> {
        let now = self.now();
        let stranded = self
            .store
            .stranded(now, now - grace, self.lease_cutoff(now), limit)
            .await?;
        if stranded.is_empty() {
            return Ok(0);
        }
        let ids: Vec<_> = stranded.iter().map(|job| job.id).collect();
        tracing::info!(jobs = ids.len(), "re-enqueueing stranded jobs");
        self.queue.enqueue(&ids).await?;
        Ok(ids.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let policy = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1_000),
        };
        for _ in 0..100 {
            let first = policy.delay_after(1);
            assert!(first >= Duration::from_millis(50) && first < Duration::from_millis(100));
            let third = policy.delay_after(3);
            assert!(third >= Duration::from_millis(200) && third < Duration::from_millis(400));
            assert!(policy.delay_after(30) < Duration::from_millis(1_000));
        }
    }
}
