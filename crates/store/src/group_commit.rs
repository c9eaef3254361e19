//! Group commit: many concurrent single-job inserts become one transaction per batch.
//!
//! Every request's `insert` sends its jobs to one writer task over a bounded channel and waits
//! for that batch's commit. While one transaction commits, new writes queue up; the next batch
//! takes everything queued (up to `max_batch_jobs`), so a burst of thousands of requests costs a
//! few transactions without adding a delay when the server is idle. A full channel makes callers
//! wait: that is the backpressure on the request path.

use std::sync::Arc;

use async_trait::async_trait;
use inference_engine_core::job::{Job, JobId};
use std::time::Duration;

use chrono::{DateTime, Utc};
use inference_engine_core::ports::{
    CancelOutcome, Claim, ClaimRequest, CommitReport, JobFilter, JobStore, PendingCommit,
    PendingCount, SettleRequest, StoreError, Submitted,
};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

#[derive(Debug, Clone)]
pub struct GroupCommitConfig {
    /// Jobs per transaction at most.
    pub max_batch_jobs: usize,
    /// Writes that may wait for the writer before callers are made to wait.
    pub queue_capacity: usize,
}

impl Default for GroupCommitConfig {
    fn default() -> Self {
        Self {
            max_batch_jobs: 512,
            queue_capacity: 8_192,
        }
    }
}

/// What a job writer receives: one caller's jobs, or the order to close.
pub(crate) enum WriterCommand {
    Write {
        jobs: Vec<Job>,
        committed: CommitReport,
    },
    /// Commit everything already queued, refuse anything later, then stop.
    Close { closed: oneshot::Sender<()> },
}

/// The callers' side of a writer's queue. Shared by the writer task here and the SQLite writer
/// thread ([`crate::sqlite`]).
#[derive(Debug, Clone)]
pub(crate) struct WriterQueue(mpsc::Sender<WriterCommand>);

impl WriterQueue {
    /// A queue of `capacity` commands (at least one); a full queue makes callers wait.
    pub(crate) fn bounded(capacity: usize) -> (Self, mpsc::Receiver<WriterCommand>) {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        (Self(sender), receiver)
    }

    /// Queues `jobs` at once, on the calling thread, if the queue has room, and returns the
    /// wait for the commit of the batch that takes them. With the queue full, the future waits
    /// for room first: the caller is held back, never the thread that queued.
    pub(crate) fn queue(&self, jobs: Vec<Job>) -> PendingCommit {
        let (committed, is_committed) = futures_channel::oneshot::channel();
        let waiting_for_room = self
            .queue_reporting(jobs, committed)
            .err()
            .map(|(jobs, committed)| (self.0.clone(), WriterCommand::Write { jobs, committed }));
        Box::pin(async move {
            if let Some((sender, command)) = waiting_for_room {
                sender.send(command).await.map_err(|_| StoreError::Closed)?;
            }
            is_committed.await.map_err(|_| StoreError::Closed)?
        })
    }

    /// Queues `jobs` if the queue has room, for the writer to report their commit to
    /// `report`; hands both back when it is full (see `JobStore::queue_insert_reporting`).
    pub(crate) fn queue_reporting(
        &self,
        jobs: Vec<Job>,
        report: CommitReport,
    ) -> Result<(), (Vec<Job>, CommitReport)> {
        if jobs.is_empty() {
            // Nothing to commit, and a batch without jobs answers nobody (see `commit`).
            let _ = report.send(Ok(()));
            return Ok(());
        }
        let write = WriterCommand::Write {
            jobs,
            committed: report,
        };
        match self.0.try_send(write) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(WriterCommand::Write { jobs, committed })) => {
                Err((jobs, committed))
            }
            Err(refused) => {
                if let WriterCommand::Write { committed, .. } = refused.into_inner() {
                    let _ = committed.send(Err(StoreError::Closed));
                }
                Ok(())
            }
        }
    }

    /// Asks the writer to commit everything queued and refuse later writes; returns once it
    /// has (at once if it already stopped).
    pub(crate) async fn close(&self) {
        let (closed, is_closed) = oneshot::channel();
        if self.0.send(WriterCommand::Close { closed }).await.is_ok() {
            let _ = is_closed.await;
        }
    }
}

/// The writes taken from a writer's queue for one transaction. Shared by the writer task here
/// and the SQLite writer thread ([`crate::sqlite`]), so both answer callers by the same rules.
pub(crate) struct Batch {
    /// Every caller's jobs, in the order the callers queued them.
    pub(crate) jobs: Vec<Job>,
    /// Each caller's number of jobs in `jobs`, and where its outcome goes.
    callers: Vec<(usize, CommitReport)>,
    /// A `Close` was among the commands. The writer takes it, stops accepting, and answers it
    /// once the writes queued before the stop are committed.
    pub(crate) closing: Option<oneshot::Sender<()>>,
}

/// One caller's writes, to be retried in a transaction of their own.
pub(crate) struct SoloWrite {
    pub(crate) jobs: Vec<Job>,
    committed: CommitReport,
}

impl SoloWrite {
    pub(crate) fn answer(self, outcome: Result<(), StoreError>) {
        // The caller may have gone (its request was dropped); its jobs are committed anyway.
        let _ = self.committed.send(outcome);
    }
}

impl Batch {
    pub(crate) fn new(commands: impl IntoIterator<Item = WriterCommand>) -> Self {
        let mut batch = Self {
            jobs: Vec::new(),
            callers: Vec::new(),
            closing: None,
        };
        for command in commands {
            match command {
                WriterCommand::Write { jobs, committed } => {
                    batch.callers.push((jobs.len(), committed));
                    batch.jobs.extend(jobs);
                }
                WriterCommand::Close { closed } => batch.closing = Some(closed),
            }
        }
        batch
    }

    /// Answers the callers with the outcome of the batch's transaction, begun at `started`.
    /// When it failed and held several callers' writes, nobody is answered yet: each caller's
    /// own writes come back to be retried alone, so one bad job cannot fail the requests that
    /// happened to share its transaction. Unless the whole store is failing (unreachable, or
    /// unable to write): then every caller gets the error now, rather than a retry each that
    /// would wait out the acquire timeout again (one batch of 500 would stall for 40 minutes).
    pub(crate) fn settle(
        self,
        outcome: Result<(), StoreError>,
        started: std::time::Instant,
    ) -> Vec<SoloWrite> {
        let jobs = self.jobs.len();
        match outcome {
            Ok(()) => {
                inference_engine_core::observe::job_store_write(started.elapsed());
                tracing::trace!(
                    jobs,
                    elapsed_us = started.elapsed().as_micros(),
                    "batch committed"
                );
                for (_, committed) in self.callers {
                    let _ = committed.send(Ok(()));
                }
                Vec::new()
            }
            Err(err) if self.callers.len() <= 1 || err.is_store_wide() => {
                for (_, committed) in self.callers {
                    let _ = committed.send(Err(err.clone()));
                }
                Vec::new()
            }
            Err(err) => {
                tracing::warn!(jobs, error = %err, "batch commit failed; retrying writes one by one");
                let mut remaining = self.jobs.into_iter();
                self.callers
                    .into_iter()
                    .map(|(count, committed)| SoloWrite {
                        jobs: remaining.by_ref().take(count).collect(),
                        committed,
                    })
                    .collect()
            }
        }
    }
}

/// How often a writer lets other work run before committing, as long as each turn brought
/// more writes (see [`gather_while_busy`]).
pub(crate) const GATHER_ROUNDS: usize = 4;

/// A `JobStore` whose inserts go through one batching writer task; reads go straight through.
#[derive(Debug)]
pub struct GroupCommitStore {
    inner: Arc<dyn JobStore>,
    queue: WriterQueue,
    writer: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl GroupCommitStore {
    /// Starts the writer task on the current tokio runtime.
    pub fn start(inner: Arc<dyn JobStore>, config: &GroupCommitConfig) -> Self {
        let (queue, receiver) = WriterQueue::bounded(config.queue_capacity);
        let writer = tokio::spawn(run_writer(
            Arc::clone(&inner),
            receiver,
            config.max_batch_jobs.max(1),
        ));
        Self {
            inner,
            queue,
            writer: std::sync::Mutex::new(Some(writer)),
        }
    }

    /// Commits every write queued so far, then refuses new ones with [`StoreError::Closed`].
    /// Called once the server has stopped taking requests.
    pub async fn close(&self) {
        self.queue.close().await;
        // No `.await` happens while the lock is held.
        let writer = self.writer.lock().ok().and_then(|mut slot| slot.take());
        if let Some(writer) = writer
            && let Err(err) = writer.await
        {
            tracing::error!(error = %err, "job writer task failed");
        }
    }
}

async fn run_writer(
    store: Arc<dyn JobStore>,
    mut receiver: mpsc::Receiver<WriterCommand>,
    max_batch_jobs: usize,
) {
    let mut commands = Vec::with_capacity(max_batch_jobs);
    let mut closing = None;
    loop {
        if receiver.recv_many(&mut commands, max_batch_jobs).await == 0 {
            break;
        }
        gather_while_busy(&mut receiver, &mut commands, max_batch_jobs).await;
        let mut batch = Batch::new(commands.drain(..));
        if let Some(closed) = batch.closing.take() {
            // Stop accepting; what is already queued is still drained by the next rounds.
            receiver.close();
            closing = Some(closed);
        }
        commit(store.as_ref(), batch).await;
    }
    if let Some(closed) = closing {
        let _ = closed.send(());
    }
}

/// Adds writes that arrive while the runtime still has other work ready: each yield lets the
/// requests already in progress reach their own `insert`. When nothing else is ready, a yield
/// returns at once and the batch commits without delay, so an idle server pays nothing. A
/// commit costs about the same for 5 or 50 rows (the same few WAL pages are written), so under
/// load this halved the SQLite thread's CPU per request (`predict_echo`, BENCHMARKS.md).
async fn gather_while_busy(
    receiver: &mut mpsc::Receiver<WriterCommand>,
    commands: &mut Vec<WriterCommand>,
    max_batch_jobs: usize,
) {
    for _ in 0..GATHER_ROUNDS {
        if commands.len() >= max_batch_jobs {
            return;
        }
        tokio::task::yield_now().await;
        if !take_queued(receiver, commands, max_batch_jobs) {
            return;
        }
    }
}

/// Moves what is queued into `commands`, up to `max_batch_jobs` in all; true if it took any.
pub(crate) fn take_queued(
    receiver: &mut mpsc::Receiver<WriterCommand>,
    commands: &mut Vec<WriterCommand>,
    max_batch_jobs: usize,
) -> bool {
    let before = commands.len();
    while commands.len() < max_batch_jobs {
        match receiver.try_recv() {
            Ok(command) => commands.push(command),
            Err(_) => break,
        }
    }
    commands.len() > before
}

/// Commits a batch (see [`Batch::settle`] for one that fails).
async fn commit(store: &dyn JobStore, batch: Batch) {
    if batch.jobs.is_empty() {
        return;
    }
    let started = std::time::Instant::now();
    // The clone keeps the jobs for the one-by-one retry of a failed batch.
    let outcome = store.insert(batch.jobs.clone()).await;
    for mut write in batch.settle(outcome, started) {
        let outcome = store.insert(std::mem::take(&mut write.jobs)).await;
        write.answer(outcome);
    }
}

#[async_trait]
impl JobStore for GroupCommitStore {
    async fn insert(&self, jobs: Vec<Job>) -> Result<(), StoreError> {
        self.queue.queue(jobs).await
    }

    fn queue_insert(&self, jobs: Vec<Job>) -> PendingCommit {
        self.queue.queue(jobs)
    }

    fn queue_insert_reporting(
        &self,
        jobs: Vec<Job>,
        report: CommitReport,
    ) -> Result<(), (Vec<Job>, CommitReport)> {
        self.queue.queue_reporting(jobs, report)
    }

    async fn get(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        self.inner.get(id).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }

    async fn submit(&self, job: Job, idempotency_ttl: Duration) -> Result<Submitted, StoreError> {
        // Without an idempotency key a submission is a plain insert, so it can share a
        // transaction with other requests' records; with one it needs its own conflict check.
        if job.idempotency_key.is_none() {
            self.insert(vec![job]).await?;
            return Ok(Submitted::Created);
        }
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

    async fn cancelled_among(&self, ids: &[JobId]) -> Result<Vec<JobId>, StoreError> {
        self.inner.cancelled_among(ids).await
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

#[cfg(test)]
pub(crate) mod tests {
    use chrono::Utc;
    use inference_engine_core::auth::TenantId;
    use inference_engine_core::job::{JobMode, JobStatus, RequestId};
    use inference_engine_core::model::ModelName;

    use super::*;
    use crate::SqliteJobStore;

    /// A finished sync job, as a request records it.
    pub(crate) fn job() -> Job {
        Job {
            status: JobStatus::Succeeded,
            result: Some(serde_json::json!(1)),
            attempts: 1,
            ..Job::new(
                JobMode::Sync,
                TenantId::parse("t").unwrap(),
                RequestId::parse("r").unwrap(),
                ModelName::parse("echo").unwrap(),
                Utc::now(),
            )
        }
    }

    #[tokio::test]
    async fn a_reported_write_comes_back_when_the_queue_is_full_and_fails_when_it_is_closed() {
        let (queue, receiver) = WriterQueue::bounded(1);
        let (report, mut reported) = futures_channel::oneshot::channel();
        assert!(queue.queue_reporting(vec![job()], report).is_ok());
        let (report, _) = futures_channel::oneshot::channel();
        let kept = job();
        let Err((jobs, _report)) = queue.queue_reporting(vec![kept.clone()], report) else {
            panic!("a full queue took the write");
        };
        assert_eq!(jobs.iter().map(|job| job.id).collect::<Vec<_>>(), [kept.id]);
        // Nobody commits the queued write: its report is still open.
        assert!(matches!(reported.try_recv(), Ok(None)));

        drop(receiver);
        let (report, reported) = futures_channel::oneshot::channel();
        assert!(queue.queue_reporting(vec![job()], report).is_ok());
        assert!(matches!(reported.await, Ok(Err(StoreError::Closed))));
    }

    async fn sqlite(dir: &tempfile::TempDir) -> Arc<SqliteJobStore> {
        Arc::new(
            SqliteJobStore::open(&dir.path().join("jobs.db"))
                .await
                .unwrap(),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_inserts_are_all_committed() {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = sqlite(&dir).await;
        let store = Arc::new(GroupCommitStore::start(
            sqlite.clone(),
            &GroupCommitConfig::default(),
        ));
        inserts_from_many_tasks_are_all_committed(store, sqlite.as_ref()).await;
    }

    /// 500 single-job inserts into `store` from as many tasks: each succeeds, and `reader`
    /// finds every job.
    pub(crate) async fn inserts_from_many_tasks_are_all_committed(
        store: Arc<dyn JobStore>,
        reader: &dyn JobStore,
    ) {
        let jobs: Vec<Job> = (0..500).map(|_| job()).collect();
        let writes: Vec<_> = jobs
            .iter()
            .cloned()
            .map(|job| {
                let store = Arc::clone(&store);
                tokio::spawn(async move { store.insert(vec![job]).await })
            })
            .collect();
        for write in writes {
            write.await.unwrap().unwrap();
        }
        for job in &jobs {
            assert!(reader.get(job.id).await.unwrap().is_some());
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_queued_from_plain_threads_are_committed_even_when_the_queue_is_full() {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = sqlite(&dir).await;
        let tiny_queue = GroupCommitConfig {
            max_batch_jobs: 4,
            queue_capacity: 2,
        };
        let store = Arc::new(GroupCommitStore::start(sqlite.clone(), &tiny_queue));
        queued_writes_from_plain_threads_are_all_committed(store, sqlite.as_ref()).await;
    }

    /// 200 jobs queued with `queue_insert` from 4 threads outside the runtime (as executor
    /// threads do), more than the queue holds: every commit resolves `Ok` and `reader` finds
    /// every job. An empty write resolves `Ok` at once.
    pub(crate) async fn queued_writes_from_plain_threads_are_all_committed(
        store: Arc<dyn JobStore>,
        reader: &dyn JobStore,
    ) {
        store.queue_insert(Vec::new()).await.unwrap();
        let jobs: Vec<Job> = (0..200).map(|_| job()).collect();
        let commits: Vec<PendingCommit> = std::thread::scope(|scope| {
            let threads: Vec<_> = jobs
                .chunks(50)
                .map(|chunk| {
                    let store = Arc::clone(&store);
                    scope.spawn(move || {
                        chunk
                            .iter()
                            .map(|job| store.queue_insert(vec![job.clone()]))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            threads
                .into_iter()
                .flat_map(|thread| thread.join().unwrap())
                .collect()
        });
        for commit in commits {
            commit.await.unwrap();
        }
        for job in &jobs {
            assert!(reader.get(job.id).await.unwrap().is_some());
        }
    }

    #[tokio::test]
    async fn a_bad_write_fails_alone_when_batched_with_good_ones() {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = sqlite(&dir).await;
        let duplicate = job();
        sqlite.insert(vec![duplicate.clone()]).await.unwrap();
        let store = Arc::new(GroupCommitStore::start(
            sqlite.clone(),
            &GroupCommitConfig::default(),
        ));
        let good = job();
        // Both writes are queued before the writer task first runs, so they share a batch.
        let bad_write = tokio::spawn({
            let store = Arc::clone(&store);
            async move { store.insert(vec![duplicate]).await }
        });
        let good_write = tokio::spawn({
            let store = Arc::clone(&store);
            let good = good.clone();
            async move { store.insert(vec![good]).await }
        });
        assert!(bad_write.await.unwrap().is_err());
        good_write.await.unwrap().unwrap();
        assert!(sqlite.get(good.id).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn close_commits_queued_writes_and_refuses_later_ones() {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = sqlite(&dir).await;
        let store = Arc::new(GroupCommitStore::start(
            sqlite.clone(),
            &GroupCommitConfig::default(),
        ));
        closing_commits_queued_writes_and_refuses_later_ones(
            store.clone(),
            sqlite.as_ref(),
            store.close(),
        )
        .await;
    }

    /// A write queued before `close` runs is committed (`reader` finds it); a later one is
    /// refused with [`StoreError::Closed`].
    pub(crate) async fn closing_commits_queued_writes_and_refuses_later_ones(
        store: Arc<dyn JobStore>,
        reader: &dyn JobStore,
        close: impl Future<Output = ()>,
    ) {
        let queued = job();
        let write = tokio::spawn({
            let store = Arc::clone(&store);
            let queued = queued.clone();
            async move { store.insert(vec![queued]).await }
        });
        tokio::task::yield_now().await;
        close.await;
        write.await.unwrap().unwrap();
        assert!(reader.get(queued.id).await.unwrap().is_some());
        assert_eq!(store.insert(vec![job()]).await, Err(StoreError::Closed));
    }
}
