//! The synchronous predict use case: resolve the model, run it on an executor pool under an
//! optional deadline, and record the outcome as a job before anyone is told about it. A
//! pipeline of models runs its steps here, one after the other ([`pipelines`]).

mod pipelines;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use futures_util::future::{Either, select};
use serde_json::Value;

use crate::auth::TenantId;
use crate::deadline;
use crate::error::{Classified, ErrorKind};
use crate::executor::{Executed, ExecutorError, ExecutorPool, Priority};
use crate::job::{Job, JobFailure, JobId, JobMode, JobStatus, Payload, RequestId};
use crate::model::{ModelKey, ModelName, ModelVersion};
use crate::observe;
use crate::pipeline::{Model, PipelineError};
use crate::ports::{Clock, CommitReport, JobStore, PendingCommit, StoreError};
use crate::registry::{ModelRegistry, ResolveError, Serving};
use crate::routing::Bucket;
use crate::steps::StepTiming;
use crate::tensor::Tensor;

/// Who is asking, for the job record and the logs.
#[derive(Debug, Clone)]
pub struct Caller {
    pub tenant: TenantId,
    pub request_id: RequestId,
    /// The client sent the request id itself: it is then the routing key, so A/B and canary
    /// splits are sticky per id. Otherwise the split is random.
    pub request_id_from_client: bool,
}

impl Caller {
    /// The routing bucket of this request (the `ab` and `canary` rules).
    pub fn routing_bucket(&self) -> Bucket {
        Bucket::for_request(self.routing_key())
    }

    /// What routing splits on: the request id the client sent; `None` (a random split) when
    /// the id was generated.
    pub fn routing_key(&self) -> Option<&str> {
        self.request_id_from_client
            .then(|| self.request_id.as_str())
    }

    fn run_for(&self) -> RunFor<'_> {
        RunFor {
            tenant: &self.tenant,
            routing_key: self.routing_key(),
        }
    }
}

/// Whom a run is for, as the steps of a pipeline need it: each step is routed and counted in
/// the metrics like a request of its own.
#[derive(Debug, Clone, Copy)]
pub struct RunFor<'a> {
    pub tenant: &'a TenantId,
    /// The routing key of steps that name no version (sticky A/B and canary splits);
    /// `None` splits at random.
    pub routing_key: Option<&'a str>,
}

#[derive(Debug, Clone)]
pub struct PredictCommand {
    pub model: ModelName,
    /// `None` lets the registry choose.
    pub version: Option<ModelVersion>,
    pub payload: Payload,
    /// The caller's deadline for the model run; it can only shorten the model's SLA timeout.
    pub timeout: Option<Duration>,
}

/// The tensor form of a predict request (the Open Inference Protocol path).
#[derive(Debug, Clone)]
pub struct TensorCommand {
    pub model: ModelName,
    /// `None` lets the registry choose.
    pub version: Option<ModelVersion>,
    pub inputs: Vec<Tensor>,
    /// The caller's deadline; it can only shorten the model's SLA timeout.
    pub timeout: Option<Duration>,
    /// Which executor queue the run waits in.
    pub priority: Priority,
}

/// What a model run answers, and the JSON its job record keeps.
pub trait Answer: Send + 'static {
    fn to_record(&self) -> Value;
}

impl Answer for Value {
    fn to_record(&self) -> Value {
        self.clone()
    }
}

/// Output tensors are recorded as `[{"name", "datatype", "shape", "data"}]`.
impl Answer for Vec<Tensor> {
    fn to_record(&self) -> Value {
        Value::Array(self.iter().map(Tensor::to_json).collect())
    }
}

/// A successful, recorded prediction.
#[derive(Debug, Clone)]
pub struct Prediction<A = Value> {
    pub job_id: JobId,
    pub model: ModelKey,
    /// The single result, or the array of results in request order (tensors on the tensor path).
    pub output: A,
    /// For a pipeline, the sum of its steps' queue times.
    pub queue_time: Duration,
    /// For a pipeline, the sum of its steps' inference times.
    pub inference_time: Duration,
    /// A pipeline's steps, in order; empty for any other model.
    pub steps: Vec<StepTiming>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InferenceError {
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error(transparent)]
    Executor(#[from] ExecutorError),
    #[error("inference did not finish within {} ms", .0.as_millis())]
    Timeout(Duration),
    /// The outcome could not be recorded, so it is not reported as a success.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A step of a pipeline failed (`step` counts from 1, `model` as routed, or as the
    /// manifest names it when it could not be routed); the pipeline fails with the step's
    /// error, whose type, kind and code it keeps.
    #[error("step {step} ({model}): {source}")]
    Step {
        step: usize,
        model: String,
        source: Box<InferenceError>,
    },
}

impl InferenceError {
    /// The stable `error_type` stored on the job.
    pub fn error_type(&self) -> &'static str {
        match self.cause() {
            Self::Resolve(err) => err.code(),
            Self::Pipeline(PipelineError::InvalidInput(_)) => "invalid_input",
            Self::Pipeline(PipelineError::Inference(_)) => "inference_error",
            Self::Pipeline(PipelineError::Unavailable(_)) => "unavailable",
            Self::Executor(ExecutorError::Overloaded { .. }) => "overloaded",
            Self::Executor(ExecutorError::ShutDown { .. }) => "unavailable",
            Self::Executor(ExecutorError::Panicked { .. }) => "inference_error",
            Self::Timeout(_) => "timeout",
            Self::Store(_) => "unavailable",
            // `cause` never answers a step.
            Self::Step { .. } => "inference_error",
        }
    }

    /// The error itself: for a failed pipeline step, the step's own error.
    pub fn cause(&self) -> &Self {
        match self {
            Self::Step { source, .. } => source.cause(),
            other => other,
        }
    }
}

impl Classified for InferenceError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Resolve(err) => err.kind(),
            Self::Pipeline(err) => err.kind(),
            Self::Executor(err) => err.kind(),
            Self::Timeout(_) => ErrorKind::Timeout,
            Self::Store(err) => err.kind(),
            Self::Step { source, .. } => source.kind(),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::Resolve(err) => err.code(),
            Self::Pipeline(err) => err.code(),
            Self::Executor(err) => err.code(),
            Self::Timeout(_) => "inference_timeout",
            Self::Store(err) => err.code(),
            Self::Step { source, .. } => source.code(),
        }
    }
}

/// The parts of a sync job known before the model runs (cheap to clone: reference counts).
#[derive(Debug, Clone)]
struct JobDraft {
    id: JobId,
    tenant: TenantId,
    request_id: RequestId,
    name: ModelName,
    created_at: DateTime<Utc>,
}

impl JobDraft {
    fn finish<A: Answer>(
        &self,
        model: Option<&ModelKey>,
        result: &Result<A, InferenceError>,
        started_at: Option<DateTime<Utc>>,
        steps: &[StepTiming],
        now: DateTime<Utc>,
    ) -> Job {
        let (status, result, failure) = match result {
            Ok(output) => (JobStatus::Succeeded, Some(output.to_record()), None),
            Err(err) => (
                JobStatus::Failed,
                None,
                Some(JobFailure {
                    error_type: err.error_type().to_owned(),
                    message: err.to_string(),
                }),
            ),
        };
        Job {
            id: self.id,
            status,
            version: model.map(|key| key.version.clone()),
            result,
            failure,
            attempts: u32::from(started_at.is_some()),
            started_at,
            finished_at: Some(now),
            steps: (!steps.is_empty()).then(|| steps.to_vec()),
            ..Job::new(
                JobMode::Sync,
                self.tenant.clone(),
                self.request_id.clone(),
                self.name.clone(),
                self.created_at,
            )
        }
    }
}

/// Writes the job record of one sync run, from whichever side gets there first: the executor
/// thread, as soon as the model returns (the request is then woken once, by the commit, not
/// also by the model's result in between: see [`start_recorded`]), or the caller, at its SLA
/// deadline. Exactly one of them writes, so the record always says what the caller is told.
#[derive(Debug)]
struct RunRecorder {
    draft: JobDraft,
    key: ModelKey,
    store: Arc<dyn JobStore>,
    clock: Arc<dyn Clock>,
    taken: AtomicBool,
}

impl RunRecorder {
    /// True for the first caller only, which then writes the record.
    fn take(&self) -> bool {
        !self.taken.swap(true, Ordering::AcqRel)
    }

    /// Runs the model on the executor thread and, unless the caller has given up on the run,
    /// queues its record there, to report its commit to `report`.
    fn run<A: Answer>(
        &self,
        report: CommitReport,
        model: impl FnOnce() -> Result<A, PipelineError>,
    ) -> Finished<A> {
        let started_at = self.clock.now();
        let result = model().map_err(InferenceError::from);
        let ended = Instant::now();
        let committed = self
            .take()
            .then(|| self.queue(&result, Some(started_at), &[], Some(report)));
        Finished {
            result,
            committed,
            ended,
        }
    }

    /// Queues the run's record, finished now; its commit goes to `report` when the store can
    /// take it at once. Only whoever holds the record calls this.
    fn queue<A: Answer>(
        &self,
        result: &Result<A, InferenceError>,
        started_at: Option<DateTime<Utc>>,
        steps: &[StepTiming],
        report: Option<CommitReport>,
    ) -> Commit {
        let job = self
            .draft
            .finish(Some(&self.key), result, started_at, steps, self.clock.now());
        let jobs = match report {
            None => vec![job],
            Some(report) => match self.store.queue_insert_reporting(vec![job], report) {
                Ok(()) => return Commit::Reported,
                // The report channel closes with the dropped sender: its waiter moves on to
                // the run's reply, which carries this commit instead.
                Err((jobs, _report)) => jobs,
            },
        };
        Commit::Pending(self.store.queue_insert(jobs))
    }
}

/// A sync run's job record on its way to the store.
enum Commit {
    /// Queued; resolves at the commit.
    Pending(PendingCommit),
    /// Queued by the executor thread, which had the store report the commit to the channel
    /// the caller waits on ([`start_recorded`] turns it into `Done`).
    Reported,
    /// Committed, or failed to.
    Done(Result<(), StoreError>),
}

impl Commit {
    async fn outcome(self) -> Result<(), StoreError> {
        match self {
            Self::Pending(pending) => pending.await,
            Self::Done(outcome) => outcome,
            // `start_recorded` replaces it before anyone waits; had it not, nothing would
            // report this commit.
            Self::Reported => Err(StoreError::Closed),
        }
    }
}

/// What an executor thread hands back for a sync run.
struct Finished<A> {
    result: Result<A, InferenceError>,
    /// The commit of the job record the thread queued; `None` if it did not write one.
    committed: Option<Commit>,
    /// When the model returned.
    ended: Instant,
}

impl<A> Finished<A> {
    fn unrecorded(result: Result<A, PipelineError>) -> Self {
        Self {
            result: result.map_err(InferenceError::from),
            committed: None,
            ended: Instant::now(),
        }
    }
}

/// A failed prediction: the error, and the job it was recorded as (unless recording failed).
#[derive(Debug, Clone)]
pub struct PredictFailure {
    pub job_id: Option<JobId>,
    pub model: Option<ModelKey>,
    pub error: InferenceError,
}

/// What one run of a model produced (before anything was recorded).
#[derive(Debug, Clone)]
pub struct ModelRun<A = Value> {
    /// When an executor thread picked the work up; `None` if it never started.
    pub started_at: Option<DateTime<Utc>>,
    pub result: Result<A, InferenceError>,
    /// For a pipeline, the sum of its steps' queue times.
    pub queue_time: Duration,
    /// For a pipeline, the sum of its steps' inference times.
    pub inference_time: Duration,
    /// When the model returned, or the caller stopped waiting for it.
    pub ended: Instant,
    /// The steps of a pipeline that ran (the failed one included), in order; empty for any
    /// other model.
    pub steps: Vec<StepTiming>,
}

impl<A> ModelRun<A> {
    fn not_started(result: Result<A, InferenceError>) -> Self {
        Self {
            started_at: None,
            result,
            queue_time: Duration::ZERO,
            inference_time: Duration::ZERO,
            ended: Instant::now(),
            steps: Vec::new(),
        }
    }
}

/// Runs predictions and records each one as a job.
#[derive(Debug, Clone)]
pub struct InferenceService {
    registry: ModelRegistry,
    store: Arc<dyn JobStore>,
    clock: Arc<dyn Clock>,
}

impl InferenceService {
    pub fn new(registry: ModelRegistry, store: Arc<dyn JobStore>, clock: Arc<dyn Clock>) -> Self {
        Self {
            registry,
            store,
            clock,
        }
    }

    pub fn registry(&self) -> &ModelRegistry {
        &self.registry
    }

    pub fn store(&self) -> &Arc<dyn JobStore> {
        &self.store
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Runs the model and returns only after the outcome, success or failure, is committed to
    /// the job store: an answered request is never missing from the audit trail.
    pub async fn predict(
        &self,
        caller: &Caller,
        command: PredictCommand,
    ) -> Result<Prediction, PredictFailure> {
        let PredictCommand {
            model,
            version,
            payload,
            timeout,
        } = command;
        self.run_recorded(caller, model, version, async |serving, key, recorder| {
            self.execute_recorded(
                serving,
                key,
                payload,
                timeout,
                Some(recorder),
                caller.run_for(),
            )
            .await
        })
        .await
    }

    /// [`Self::predict`] for tensors: the model's own inputs and outputs, recorded the same way.
    pub async fn infer_tensors(
        &self,
        caller: &Caller,
        command: TensorCommand,
    ) -> Result<Prediction<Vec<Tensor>>, PredictFailure> {
        let TensorCommand {
            model,
            version,
            inputs,
            timeout,
            priority,
        } = command;
        self.run_recorded(caller, model, version, async |serving, key, recorder| {
            if serving.pipeline(key).is_some() {
                return (ModelRun::not_started(Err(pipelines::no_tensors(key))), None);
            }
            let limit = serving.timeout_for(key, timeout);
            let deadline = deadline::after(limit);
            let work = self.run_tensors_on_pool(serving, key, inputs, priority, deadline, recorder);
            self.within_deadline(serving, key, limit, work, Some(recorder))
                .await
        })
        .await
    }

    /// Routes the request, runs it with `run`, and waits for the job record's commit before
    /// returning.
    async fn run_recorded<A: Answer>(
        &self,
        caller: &Caller,
        name: ModelName,
        version: Option<ModelVersion>,
        run: impl AsyncFnOnce(&Serving, &ModelKey, &Arc<RunRecorder>) -> (ModelRun<A>, Option<Commit>),
    ) -> Result<Prediction<A>, PredictFailure> {
        let draft = JobDraft {
            id: JobId::new(),
            tenant: caller.tenant.clone(),
            request_id: caller.request_id.clone(),
            name,
            created_at: self.clock.now(),
        };
        let job_id = draft.id;

        let serving = self.registry.serving();
        let key = match serving.route(&draft.name, version.as_ref(), || caller.routing_bucket()) {
            Ok(key) => key,
            Err(err) => {
                let error = InferenceError::from(err);
                let failed: Result<A, _> = Err(error.clone());
                let job = draft.finish(None, &failed, None, &[], self.clock.now());
                await_commit(
                    job_id,
                    JobStatus::Failed,
                    Commit::Pending(self.store.queue_insert(vec![job])),
                )
                .await?;
                return Err(PredictFailure {
                    job_id: Some(job_id),
                    model: None,
                    error,
                });
            }
        };

        let recorder = Arc::new(RunRecorder {
            draft,
            key: key.clone(),
            store: Arc::clone(&self.store),
            clock: Arc::clone(&self.clock),
            taken: AtomicBool::new(false),
        });
        let started = Instant::now();
        let (outcome, committed) = run(&serving, &key, &recorder).await;
        observe::inference(
            &key,
            caller.tenant.as_str(),
            outcome.ended.saturating_duration_since(started),
            outcome
                .result
                .as_ref()
                .err()
                .map(InferenceError::error_type),
        );
        // Without a commit from the executor thread, nobody else writes this record: the
        // thread never ran the model (refused, panicked, batched), the caller took the record
        // at its deadline, or the model is a pipeline (its steps record nothing of their own).
        let committed = committed.unwrap_or_else(|| {
            recorder.queue(&outcome.result, outcome.started_at, &outcome.steps, None)
        });
        let status = if outcome.result.is_ok() {
            JobStatus::Succeeded
        } else {
            JobStatus::Failed
        };
        await_commit(job_id, status, committed)
            .await
            .map_err(|failure| PredictFailure {
                model: Some(key.clone()),
                ..failure
            })?;

        match outcome.result {
            Ok(output) => Ok(Prediction {
                job_id,
                model: key,
                output,
                queue_time: outcome.queue_time,
                inference_time: outcome.inference_time,
                steps: outcome.steps,
            }),
            Err(error) => Err(PredictFailure {
                job_id: Some(job_id),
                model: Some(key),
                error,
            }),
        }
    }

    /// Runs a model on its executor pool (through its batcher when it batches), loading it
    /// first if needed. The SLA timeout of the model, shortened by `requested`, covers all of
    /// it: the caller is released at the deadline (the model call itself cannot be interrupted;
    /// its late result is dropped). A pipeline runs its steps, each this way, under the
    /// pipeline's deadline.
    pub async fn execute(
        &self,
        serving: &Serving,
        key: &ModelKey,
        payload: Payload,
        requested: Option<Duration>,
        run_for: RunFor<'_>,
    ) -> ModelRun {
        let (run, _) = self
            .execute_recorded(serving, key, payload, requested, None, run_for)
            .await;
        run
    }

    /// [`Self::execute`], with the executor thread writing the job record when a `recorder`
    /// is given; the commit to wait for comes back with the run. A pipeline's record is left
    /// to the caller (no commit comes back): it is written once, after the last step.
    async fn execute_recorded(
        &self,
        serving: &Serving,
        key: &ModelKey,
        payload: Payload,
        requested: Option<Duration>,
        recorder: Option<&Arc<RunRecorder>>,
        run_for: RunFor<'_>,
    ) -> (ModelRun, Option<Commit>) {
        if let Some(plan) = serving.pipeline(key) {
            let run = self
                .run_pipeline(serving, key, plan, payload, requested, run_for)
                .await;
            return (run, None);
        }
        self.execute_model(serving, key, payload, requested, recorder)
            .await
    }

    /// [`Self::execute_recorded`] for a model that is not a pipeline (a pipeline's steps).
    async fn execute_model(
        &self,
        serving: &Serving,
        key: &ModelKey,
        payload: Payload,
        requested: Option<Duration>,
        recorder: Option<&Arc<RunRecorder>>,
    ) -> (ModelRun, Option<Commit>) {
        let limit = serving.timeout_for(key, requested);
        let work = self.run_on_pool(serving, key, payload, deadline::after(limit), recorder);
        self.within_deadline(serving, key, limit, work, recorder.map(Arc::as_ref))
            .await
    }

    /// Awaits `work` until `limit`, the model's SLA timeout (shortened by the caller's).
    async fn within_deadline<A>(
        &self,
        serving: &Serving,
        key: &ModelKey,
        limit: Option<Duration>,
        work: impl Future<Output = Result<Executed<Finished<A>>, InferenceError>>,
        recorder: Option<&RunRecorder>,
    ) -> (ModelRun<A>, Option<Commit>) {
        let submitted_at = self.clock.now();
        let executed = match limit {
            None => work.await,
            Some(limit) => {
                let deadline = self.clock.sleep(limit);
                match select(Box::pin(work), deadline).await {
                    Either::Left((executed, _)) => executed,
                    Either::Right(((), work)) => {
                        // The record decides: if the executor thread has already written the
                        // run's record, its answer is on the way and is the one to give.
                        let recorded_by_executor =
                            recorder.is_some_and(|recorder| !recorder.take());
                        if !recorded_by_executor {
                            observe::executor_timeout(serving.config.execution.pool_for(key));
                            let timed_out = ModelRun {
                                // It was submitted; whether a thread picked it up is unknown here.
                                started_at: Some(submitted_at),
                                result: Err(InferenceError::Timeout(limit)),
                                queue_time: Duration::ZERO,
                                inference_time: limit,
                                ended: Instant::now(),
                                steps: Vec::new(),
                            };
                            return (timed_out, None);
                        }
                        work.await
                    }
                }
            }
        };
        match executed {
            Ok(executed) => {
                let run = ModelRun {
                    started_at: Some(
                        submitted_at
                            + TimeDelta::from_std(executed.queue_time).unwrap_or(TimeDelta::zero()),
                    ),
                    result: executed.value.result,
                    queue_time: executed.queue_time,
                    inference_time: executed.run_time,
                    ended: executed.value.ended,
                    steps: Vec::new(),
                };
                (run, executed.value.committed)
            }
            Err(err) => (ModelRun::not_started(Err(err)), None),
        }
    }

    async fn run_tensors_on_pool(
        &self,
        serving: &Serving,
        key: &ModelKey,
        inputs: Vec<Tensor>,
        priority: Priority,
        deadline: Option<Instant>,
        recorder: &Arc<RunRecorder>,
    ) -> Result<Executed<Finished<Vec<Tensor>>>, InferenceError> {
        let lease = self.registry.acquire(serving, key).await?;
        let pool = pool_of(serving, key)?;
        if let Some(batcher) = lease.loaded.batcher.clone() {
            // Stacked with the model's other requests, JSON and tensors alike.
            let executed = batcher.run_tensors(inputs, Arc::clone(pool)).await?;
            drop(lease);
            return Ok(executed.map(Finished::unrecorded));
        }
        // The lease lives until the model returns, even if the caller left.
        start_recorded(pool, priority, recorder, move |recorder, report| {
            recorder.run(report, || {
                deadline::within(deadline, || lease.loaded.model.infer_tensors(inputs))
            })
        })
        .await
    }

    async fn run_on_pool(
        &self,
        serving: &Serving,
        key: &ModelKey,
        payload: Payload,
        deadline: Option<Instant>,
        recorder: Option<&Arc<RunRecorder>>,
    ) -> Result<Executed<Finished<Value>>, InferenceError> {
        let lease = self.registry.acquire(serving, key).await?;
        let pool = pool_of(serving, key)?;
        check(lease.loaded.model.as_ref(), &payload)?;
        match (payload, lease.loaded.batcher.clone()) {
            (Payload::Single(data), Some(batcher)) => {
                let executed = batcher.run(data, Arc::clone(pool)).await?;
                drop(lease);
                Ok(executed.map(Finished::unrecorded))
            }
            (payload, _) => {
                // The lease lives until the model returns, even if the caller left.
                let run = move || {
                    deadline::within(deadline, || match payload {
                        Payload::Single(data) => lease.loaded.model.predict(data),
                        Payload::Batch(items) => {
                            lease.loaded.model.predict_batch(items).map(Value::Array)
                        }
                    })
                };
                match recorder {
                    Some(recorder) => {
                        start_recorded(pool, Priority::Normal, recorder, move |recorder, report| {
                            recorder.run(report, run)
                        })
                        .await
                    }
                    None => Ok(pool.run(move || Finished::unrecorded(run())).await?),
                }
            }
        }
    }
}

/// Runs `work` on `pool` for a recorded sync run, handing it the channel on which the store
/// reports the commit of the record it queues (`RunRecorder::run`). The caller waits on that
/// channel first and only then looks at the executor's reply: the reply, sent while nobody
/// polls it, wakes nobody, so the request is woken once, by the commit, instead of once by the
/// reply and again by the commit. When the thread writes no record (the model panicked, the
/// caller took the record at its deadline, the pool dropped the work unrun) or the store could
/// not take it at once, the channel's sender is dropped and the wait ends at once.
async fn start_recorded<A: Send + 'static>(
    pool: &ExecutorPool,
    priority: Priority,
    recorder: &Arc<RunRecorder>,
    work: impl FnOnce(&RunRecorder, CommitReport) -> Finished<A> + Send + 'static,
) -> Result<Executed<Finished<A>>, InferenceError> {
    let (report, reported) = futures_channel::oneshot::channel();
    let recorder = Arc::clone(recorder);
    let running = pool.start_with(priority, move || work(&recorder, report))?;
    let reported = reported.await;
    let mut executed = running.await?;
    if matches!(executed.value.committed, Some(Commit::Reported)) {
        // A dropped report: the store let the write go unanswered (it closed).
        let outcome = reported.unwrap_or(Err(StoreError::Closed));
        executed.value.committed = Some(Commit::Done(outcome));
    }
    Ok(executed)
}

/// Awaits the commit of a sync job's record.
async fn await_commit(
    job_id: JobId,
    status: JobStatus,
    committed: Commit,
) -> Result<(), PredictFailure> {
    committed
        .outcome()
        .await
        .map(|()| observe::job(status, JobMode::Sync))
        .map_err(|err| {
            static STORE_WIDE: observe::LogEvery = observe::LogEvery::new(Duration::from_secs(10));
            if !err.is_store_wide() {
                tracing::error!(job_id = %job_id, error = %err, "job record could not be committed");
            } else if let Some(held_back) = STORE_WIDE.admit() {
                tracing::warn!(job_id = %job_id, error = %err, similar_not_logged = held_back, "job record could not be committed");
            }
            PredictFailure {
                job_id: None,
                model: None,
                error: err.into(),
            }
        })
}

/// [`Model::check`] on each item, before the payload waits for a thread.
fn check(model: &dyn Model, payload: &Payload) -> Result<(), PipelineError> {
    match payload {
        Payload::Single(data) => model.check(data),
        Payload::Batch(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(index, data)| model.check(data).map_err(|err| err.for_item(index))),
    }
}

/// The executor pool a model runs on.
fn pool_of<'a>(
    serving: &'a Serving,
    key: &ModelKey,
) -> Result<&'a Arc<ExecutorPool>, ExecutorError> {
    serving
        .executors
        .pool_for(key)
        .ok_or_else(|| ExecutorError::ShutDown {
            pool: serving.config.execution.pool_for(key).to_owned(),
        })
}
