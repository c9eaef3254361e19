//! Who writes a sync run's job record when the model returns right at its SLA deadline: the
//! core's `InferenceService` against the real SQLite store. The executor thread writes the
//! record when the model returns and the caller writes it when it gives up at the deadline;
//! exactly one of them may, and the caller's answer must be what the record says.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use inference_engine_core::auth::TenantId;
use inference_engine_core::job::{Job, JobId, JobStatus, Payload, RequestId};
use inference_engine_core::model::ModelName;
use inference_engine_core::ports::{
    CancelOutcome, Claim, ClaimRequest, Clock, CommitReport, JobFilter, JobStore, PendingCommit,
    PendingCount, SettleRequest, StoreError, Submitted,
};
use inference_engine_core::registry::{BuiltinSet, ModelRegistry};
use inference_engine_core::service::{Caller, InferenceError, InferenceService, PredictCommand};
use inference_engine_store::sqlite::SqliteJobStore;
use serde_json::json;
use tokio::sync::{Notify, mpsc as async_mpsc};

/// The SQLite store, except that `queue_insert` announces itself and then waits for a permit
/// from the test, on whatever thread called it; and that, with `held_reports`, the commits of
/// `queue_insert_reporting` are reported when the test says so.
#[derive(Debug)]
struct GatedStore {
    inner: SqliteJobStore,
    queue_insert_calls: AtomicUsize,
    entered: async_mpsc::UnboundedSender<()>,
    permits: Mutex<mpsc::Receiver<()>>,
    /// Each write's own report from the inner store, and the caller's report channel.
    held_reports: Option<Mutex<Vec<HeldReport>>>,
}

type HeldReport = (
    futures_channel::oneshot::Receiver<Result<(), StoreError>>,
    CommitReport,
);

#[async_trait]
impl JobStore for GatedStore {
    async fn insert(&self, jobs: Vec<Job>) -> Result<(), StoreError> {
        self.inner.insert(jobs).await
    }

    fn queue_insert(&self, jobs: Vec<Job>) -> PendingCommit {
        self.queue_insert_calls.fetch_add(1, Ordering::SeqCst);
        let _ = self.entered.send(());
        let permit = self.permits.lock().unwrap().recv();
        assert!(permit.is_ok(), "the test dropped its permits");
        self.inner.queue_insert(jobs)
    }

    fn queue_insert_reporting(
        &self,
        jobs: Vec<Job>,
        report: CommitReport,
    ) -> Result<(), (Vec<Job>, CommitReport)> {
        let Some(held) = &self.held_reports else {
            return Err((jobs, report));
        };
        let (inner_report, inner_reported) = futures_channel::oneshot::channel();
        match self.inner.queue_insert_reporting(jobs, inner_report) {
            Ok(()) => {
                held.lock().unwrap().push((inner_reported, report));
                Ok(())
            }
            Err((jobs, _)) => Err((jobs, report)),
        }
    }

    async fn get(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        self.inner.get(id).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }

    async fn submit(&self, job: Job, idempotency_ttl: Duration) -> Result<Submitted, StoreError> {
        self.inner.submit(job, idempotency_ttl).await
    }

    async fn list(&self, filter: &JobFilter) -> Result<Vec<Job>, StoreError> {
        self.inner.list(filter).await
    }

    async fn cancel(&self, id: JobId, now: DateTime<Utc>) -> Result<CancelOutcome, StoreError> {
        self.inner.cancel(id, now).await
    }

    async fn claim(
        &self,
        requests: &[ClaimRequest],
        now: DateTime<Utc>,
    ) -> Result<Vec<Claim>, StoreError> {
        self.inner.claim(requests, now).await
    }

    async fn settle(
        &self,
        settlements: Vec<SettleRequest>,
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>, StoreError> {
        self.inner.settle(settlements, now).await
    }

    async fn heartbeat(&self, ids: &[JobId], now: DateTime<Utc>) -> Result<(), StoreError> {
        self.inner.heartbeat(ids, now).await
    }

    async fn stranded(
        &self,
        now: DateTime<Utc>,
        pending_before: DateTime<Utc>,
        lease_expired_before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Job>, StoreError> {
        self.inner
            .stranded(now, pending_before, lease_expired_before, limit)
            .await
    }

    async fn purge_finished(&self, created_before: JobId, limit: u32) -> Result<u64, StoreError> {
        self.inner.purge_finished(created_before, limit).await
    }

    async fn pending_by_model(&self) -> Result<Vec<PendingCount>, StoreError> {
        self.inner.pending_by_model().await
    }
}

/// Wall time from the system; every SLA deadline passes when the test says so, and the test
/// hears when the service has seen it pass.
#[derive(Debug)]
struct DeadlineClock {
    pass: Arc<Notify>,
    seen: async_mpsc::UnboundedSender<()>,
}

impl Clock for DeadlineClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep(&self, _duration: Duration) -> BoxFuture<'static, ()> {
        let (pass, seen) = (Arc::clone(&self.pass), self.seen.clone());
        Box::pin(async move {
            pass.notified().await;
            let _ = seen.send(());
        })
    }
}

struct Harness {
    service: InferenceService,
    store: Arc<GatedStore>,
    registry: ModelRegistry,
    /// Lets one `queue_insert` through.
    permits: mpsc::Sender<()>,
    queue_insert_entered: async_mpsc::UnboundedReceiver<()>,
    deadline: Arc<Notify>,
    deadline_seen: async_mpsc::UnboundedReceiver<()>,
    _dir: tempfile::TempDir,
}

impl Harness {
    async fn start() -> Self {
        Self::start_holding_reports(false).await
    }

    /// With `hold_reports`, the store reports the commits of the records executor threads
    /// queue only when [`Self::release_reports`] says so.
    async fn start_holding_reports(hold_reports: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let inner = SqliteJobStore::open(&dir.path().join("jobs.db"))
            .await
            .unwrap();
        let (entered, queue_insert_entered) = async_mpsc::unbounded_channel();
        let (permits, gate) = mpsc::channel();
        let store = Arc::new(GatedStore {
            inner,
            queue_insert_calls: AtomicUsize::new(0),
            entered,
            permits: Mutex::new(gate),
            held_reports: hold_reports.then(|| Mutex::new(Vec::new())),
        });
        let (seen, deadline_seen) = async_mpsc::unbounded_channel();
        let deadline = Arc::new(Notify::new());
        let clock = DeadlineClock {
            pass: Arc::clone(&deadline),
            seen,
        };
        let registry = ModelRegistry::with_builtins(BuiltinSet {
            echo: true,
            sleep: true,
        })
        .unwrap();
        let service = InferenceService::new(
            registry.clone(),
            Arc::clone(&store) as Arc<dyn JobStore>,
            Arc::new(clock),
        );
        Self {
            service,
            store,
            registry,
            permits,
            queue_insert_entered,
            deadline,
            deadline_seen,
            _dir: dir,
        }
    }

    /// `sleep:v1` for `ms`, with a caller's timeout (the deadline the test controls).
    fn predict_sleep(
        &self,
        ms: u64,
    ) -> tokio::task::JoinHandle<Result<serde_json::Value, InferenceError>> {
        tokio::spawn(self.sleep_prediction(ms))
    }

    fn sleep_prediction(
        &self,
        ms: u64,
    ) -> impl Future<Output = Result<serde_json::Value, InferenceError>> + Send + 'static {
        let service = self.service.clone();
        let caller = Caller {
            tenant: TenantId::parse("tenant-a").unwrap(),
            request_id: RequestId::parse("request-1").unwrap(),
            request_id_from_client: true,
        };
        let command = PredictCommand {
            model: ModelName::parse("sleep").unwrap(),
            version: None,
            payload: Payload::Single(json!({"ms": ms})),
            timeout: Some(Duration::from_secs(60)),
        };
        async move {
            service
                .predict(&caller, command)
                .await
                .map(|prediction| prediction.output)
                .map_err(|failure| failure.error)
        }
    }

    /// Reports every held commit once the inner store has committed it.
    async fn release_reports(&self) {
        let held = std::mem::take(&mut *self.store.held_reports.as_ref().unwrap().lock().unwrap());
        for (inner_reported, report) in held {
            let outcome = within_10s(inner_reported).await.unwrap();
            let _ = report.send(outcome);
        }
    }

    async fn only_job(&self) -> Job {
        let jobs = self
            .store
            .list(&JobFilter {
                tenant: Some(TenantId::parse("tenant-a").unwrap()),
                status: None,
                model: None,
                before: None,
                limit: 10,
            })
            .await
            .unwrap();
        assert_eq!(jobs.len(), 1, "{jobs:?}");
        jobs.into_iter().next().unwrap()
    }

    /// Waits until `runs` models are running on the executor threads.
    async fn models_running(&self, runs: usize) {
        let limit = Instant::now() + Duration::from_secs(10);
        loop {
            let serving = self.registry.serving();
            if serving
                .executors
                .pools()
                .map(|pool| pool.in_flight())
                .sum::<usize>()
                == runs
            {
                return;
            }
            assert!(Instant::now() < limit, "never {runs} models running");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

async fn within_10s<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), future)
        .await
        .expect("no progress within 10 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_that_passes_after_the_executor_recorded_the_run_gives_that_runs_answer() {
    let mut harness = Harness::start().await;
    let predicting = harness.predict_sleep(0);

    // The model has returned and its executor thread is queueing the run's record...
    within_10s(harness.queue_insert_entered.recv()).await;
    // ...when the caller's deadline passes, and the service sees it pass.
    harness.deadline.notify_one();
    within_10s(harness.deadline_seen.recv()).await;
    harness.permits.send(()).unwrap();

    let answer = within_10s(predicting).await.unwrap();
    assert_eq!(answer, Ok(json!({"ms": 0})), "the record says succeeded");
    let job = harness.only_job().await;
    assert_eq!(job.status, JobStatus::Succeeded);
    assert_eq!(job.result, Some(json!({"ms": 0})));
    assert_eq!(harness.store.queue_insert_calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_returns_after_its_deadline_leaves_the_timeout_record_alone() {
    let harness = Harness::start().await;
    for _ in 0..2 {
        harness.permits.send(()).unwrap();
    }
    let predicting = harness.predict_sleep(300);
    harness.models_running(1).await;
    harness.deadline.notify_one();

    let answer = within_10s(predicting).await.unwrap();
    assert!(
        matches!(answer, Err(InferenceError::Timeout(_))),
        "{answer:?}"
    );
    harness.models_running(0).await;
    let job = harness.only_job().await;
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(
        job.failure
            .as_ref()
            .map(|failure| failure.error_type.as_str()),
        Some("timeout")
    );
    // The late run wrote nothing: the caller had taken the record at the deadline.
    assert_eq!(harness.store.queue_insert_calls.load(Ordering::SeqCst), 1);
}

/// Counts the wake-ups of the task it belongs to.
#[derive(Debug, Default)]
struct CountingWaker(AtomicUsize);

impl std::task::Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_run_wakes_its_request_once_by_the_commit_not_by_the_model_returning() {
    let harness = Harness::start_holding_reports(true).await;
    let wakes = Arc::new(CountingWaker::default());
    let waker = std::task::Waker::from(Arc::clone(&wakes));
    let mut context = std::task::Context::from_waker(&waker);
    let mut predicting = Box::pin(harness.sleep_prediction(200));
    let held = harness.store.held_reports.as_ref().unwrap();
    let in_flight = || -> usize {
        let serving = harness.registry.serving();
        serving.executors.pools().map(|pool| pool.in_flight()).sum()
    };

    // Polled whenever woken, until the model runs on its executor thread.
    let mut polled_after = 0;
    assert!(predicting.as_mut().poll(&mut context).is_pending());
    let limit = Instant::now() + Duration::from_secs(10);
    loop {
        let woken = wakes.0.load(Ordering::SeqCst);
        if woken > polled_after {
            polled_after = woken;
            assert!(predicting.as_mut().poll(&mut context).is_pending());
        } else if in_flight() == 1 {
            break;
        }
        assert!(Instant::now() < limit, "the model never ran");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Not polled again until woken: the model returns, its executor thread queues the record
    // (whose commit the store holds) and sends its reply...
    while held.lock().unwrap().len() != 1 || in_flight() != 0 {
        assert!(Instant::now() < limit, "the run's record was never queued");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // ...which woke nobody: the request waits for the commit.
    assert_eq!(wakes.0.load(Ordering::SeqCst), polled_after);

    harness.release_reports().await;
    while wakes.0.load(Ordering::SeqCst) == polled_after {
        assert!(Instant::now() < limit, "the commit never woke the request");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let std::task::Poll::Ready(answer) = predicting.as_mut().poll(&mut context) else {
        panic!("woken by the commit, the request did not finish");
    };
    assert_eq!(answer, Ok(json!({"ms": 200})));
    assert_eq!(wakes.0.load(Ordering::SeqCst), polled_after + 1);
    assert_eq!(harness.only_job().await.status, JobStatus::Succeeded);
    // Through the report channel: the gated `queue_insert` was never called.
    assert_eq!(harness.store.queue_insert_calls.load(Ordering::SeqCst), 0);
}
