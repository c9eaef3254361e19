//! The SQLite job writer: one OS thread with its own connection that commits every job record.
//!
//! Why a thread and not the sqlx pool: a record written through sqlx crosses from the runtime to
//! a writer task, then to sqlx's connection thread and back, and each batch builds, hashes and
//! binds a multi-row statement of its own size. Here callers hand their jobs to this thread,
//! which converts them, runs one prepared single-row `INSERT` per job inside one transaction
//! per batch, and answers. On `predict_echo` this cut the engine's CPU per request by a sixth
//! (BENCHMARKS.md). Reads and the other writes (claims, settlements, idempotent submissions)
//! stay on the pool; the two take turns on SQLite's write lock through the busy timeout.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use inference_engine_core::job::Job;
use inference_engine_core::ports::{CommitReport, PendingCommit, StoreError};
use inference_engine_core::sync::lock;
use rusqlite::{Connection, OpenFlags, Statement, params};
use tokio::sync::mpsc;

use crate::codec::JobColumns;
use crate::group_commit::{
    Batch, GATHER_ROUNDS, GroupCommitConfig, WriterCommand, WriterQueue, take_queued,
};
use crate::write_health::WriteHealth;

/// How the writer keeps the WAL bounded and the store's write health.
#[derive(Debug, Clone)]
pub(super) struct WalGuard {
    /// The `-wal` file beside the database (its size is read with `stat`, never opened).
    pub(super) wal_path: PathBuf,
    /// Past this size the writer finishes a checkpoint after its next transaction.
    pub(super) max_bytes: u64,
    pub(super) health: Arc<WriteHealth>,
}

const INSERT_JOB: &str = concat!(
    "INSERT INTO jobs (",
    job_columns!(),
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, \
     ?19, ?20, ?21, ?22)"
);

/// The writer thread and the queue in front of it.
#[derive(Debug)]
pub(super) struct JobWriter {
    queue: WriterQueue,
    /// Set by the background checkpoint: finish its copy between two transactions.
    checkpoint_requested: Arc<AtomicBool>,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl JobWriter {
    /// Opens the writer's connection to the (already migrated) database at `path` and starts
    /// its thread.
    pub(super) fn start(
        path: &Path,
        busy_timeout: Duration,
        config: &GroupCommitConfig,
        guard: WalGuard,
    ) -> Result<Self, StoreError> {
        let connection = open(path, busy_timeout, guard.max_bytes).map_err(|err| {
            StoreError::Unavailable(format!("cannot open {} for writing: {err}", path.display()))
        })?;
        let (queue, receiver) = WriterQueue::bounded(config.queue_capacity);
        let max_batch_jobs = config.max_batch_jobs.max(1);
        let checkpoint_requested = Arc::new(AtomicBool::new(false));
        let thread = {
            let checkpoint_requested = Arc::clone(&checkpoint_requested);
            std::thread::Builder::new()
                .name("sqlite-writer".into())
                .spawn(move || {
                    run(
                        &connection,
                        receiver,
                        max_batch_jobs,
                        &checkpoint_requested,
                        &guard,
                    );
                })
        }
        .map_err(|err| {
            StoreError::Unavailable(format!("cannot start the SQLite writer thread: {err}"))
        })?;
        Ok(Self {
            queue,
            checkpoint_requested,
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }

    /// Asks the thread to checkpoint the WAL after its current transaction: its copy is then
    /// complete, so the WAL starts over at the next commit (`checkpoint_periodically`).
    pub(super) fn request_checkpoint(&self) {
        self.checkpoint_requested.store(true, Ordering::Relaxed);
    }

    /// Commits `jobs` in a transaction, possibly shared with other callers' jobs.
    pub(super) fn queue(&self, jobs: Vec<Job>) -> PendingCommit {
        self.queue.queue(jobs)
    }

    /// [`Self::queue`], reporting the commit to `report`; hands both back when the queue is
    /// full.
    pub(super) fn queue_reporting(
        &self,
        jobs: Vec<Job>,
        report: CommitReport,
    ) -> Result<(), (Vec<Job>, CommitReport)> {
        self.queue.queue_reporting(jobs, report)
    }

    /// Commits every write queued so far, refuses later ones with [`StoreError::Closed`], and
    /// waits for the thread to close its connection.
    pub(super) async fn close(&self) {
        self.queue.close().await;
        let thread = lock(&self.thread).take();
        if let Some(thread) = thread {
            // The thread has answered `Close` and only drops its connection now: a short wait.
            let joined = tokio::task::spawn_blocking(move || thread.join()).await;
            if !matches!(joined, Ok(Ok(()))) {
                tracing::error!("the SQLite writer thread failed");
            }
        }
    }
}

fn open(path: &Path, busy_timeout: Duration, wal_max_bytes: u64) -> rusqlite::Result<Connection> {
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    connection.busy_timeout(busy_timeout)?;
    // The same settings as the pool's connections (see `SqliteJobStore::open`): these two are
    // per connection, and checkpoints belong to the pool's background task.
    connection.pragma_update(None, "synchronous", "NORMAL")?;
    connection.pragma_update(None, "wal_autocheckpoint", 0)?;
    // The WAL starts over at this thread's commits: that is when SQLite truncates it to the
    // limit, so a burst that grew it does not keep the disk space.
    connection.pragma_update(
        None,
        "journal_size_limit",
        i64::try_from(wal_max_bytes).unwrap_or(i64::MAX),
    )?;
    // SQLite compiles `CHECK (status IN (<five values>))` into a temporary b-tree that the
    // INSERT builds, fills and frees for every row: a sixth of this thread's CPU under load
    // (`perf`, predict_echo). The values written here come from the closed `JobStatus` and
    // `JobMode` enums, so the checks cannot fail; every other connection still enforces them.
    // Rewriting the constraint would mean rebuilding the table, which migrations never do.
    connection.pragma_update(None, "ignore_check_constraints", true)?;
    Ok(connection)
}

fn run(
    connection: &Connection,
    mut receiver: mpsc::Receiver<WriterCommand>,
    max_batch_jobs: usize,
    checkpoint_requested: &AtomicBool,
    guard: &WalGuard,
) {
    let mut statements = match Statements::prepare(connection) {
        Ok(statements) => Some(statements),
        Err(err) => {
            // Answered below, write by write: callers get the error rather than a hang.
            tracing::error!(error = %err, "cannot prepare the job writer's statements");
            None
        }
    };
    let mut commands = Vec::with_capacity(max_batch_jobs);
    let mut closing = None;
    while let Some(first) = receiver.blocking_recv() {
        commands.push(first);
        gather_while_busy(&mut receiver, &mut commands, max_batch_jobs);
        let mut batch = Batch::new(commands.drain(..));
        if let Some(closed) = batch.closing.take() {
            // Stop accepting; what is already queued is still drained by the next rounds.
            receiver.close();
            closing = Some(closed);
        }
        if batch.jobs.is_empty() {
            continue;
        }
        let started = Instant::now();
        let outcome = make_room(connection, guard, checkpoint_requested)
            .and_then(|()| commit(connection, statements.as_mut(), &batch.jobs));
        guard.health.record(&outcome);
        for write in batch.settle(outcome, started) {
            let outcome = commit(connection, statements.as_mut(), &write.jobs);
            guard.health.record(&outcome);
            write.answer(outcome);
        }
        if checkpoint_requested.load(Ordering::Relaxed) {
            finish_checkpoint(connection, checkpoint_requested);
        }
    }
    if let Some(closed) = closing {
        let _ = closed.send(());
    }
}

/// Keeps the WAL within its bound before a transaction appends to it.
///
/// Normally that only means asking for a checkpoint after this transaction once the WAL has
/// outgrown `max_bytes`. While the store cannot write (a full disk), nothing is appended until a
/// checkpoint has copied the whole WAL back and truncated it: otherwise the first writes after
/// space is freed would refill it with WAL frames, the database file could not grow to absorb
/// them, and the store would never recover. So freeing the WAL's bound (`SQLITE_WAL_MAX_MB`)
/// is always enough: the database file grows by at most what the WAL holds.
fn make_room(
    connection: &Connection,
    guard: &WalGuard,
    checkpoint_requested: &AtomicBool,
) -> Result<(), StoreError> {
    if guard.health.is_failing() {
        let busy = connection
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
                row.get::<_, i64>(0)
            })
            .map_err(|err| unavailable(&err))?;
        if busy != 0 {
            return guard.health.check();
        }
        return Ok(());
    }
    let wal_bytes = std::fs::metadata(&guard.wal_path).map_or(0, |wal| wal.len());
    if wal_bytes > guard.max_bytes {
        checkpoint_requested.store(true, Ordering::Relaxed);
    }
    Ok(())
}

/// Copies what is left of the WAL into the database. Between two of this thread's
/// transactions nothing else appends (the pool's rare writes aside), so the copy completes; when
/// another checkpoint holds the checkpointer's lock, the request stays for the next round.
fn finish_checkpoint(connection: &Connection, requested: &AtomicBool) {
    let outcome = connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        row.get::<_, i64>(0)
    });
    match outcome {
        Ok(busy) if busy != 0 => {}
        Ok(_) => requested.store(false, Ordering::Relaxed),
        Err(err) => {
            // The next background checkpoint asks again.
            requested.store(false, Ordering::Relaxed);
            tracing::warn!(error = %err, "SQLite WAL checkpoint by the job writer failed");
        }
    }
}

/// Like the writer task's gathering (`group_commit`), with the thread's own yield: each yield
/// lets the request threads bring more writes, and an idle server commits at once.
fn gather_while_busy(
    receiver: &mut mpsc::Receiver<WriterCommand>,
    commands: &mut Vec<WriterCommand>,
    max_batch_jobs: usize,
) {
    take_queued(receiver, commands, max_batch_jobs);
    for _ in 0..GATHER_ROUNDS {
        if commands.len() >= max_batch_jobs {
            return;
        }
        std::thread::yield_now();
        if !take_queued(receiver, commands, max_batch_jobs) {
            return;
        }
    }
}

/// The writer's statements, prepared once: `execute_batch("BEGIN IMMEDIATE")` would parse and
/// compile its SQL again for every batch.
struct Statements<'c> {
    insert: Statement<'c>,
    begin: Statement<'c>,
    commit: Statement<'c>,
}

impl<'c> Statements<'c> {
    fn prepare(connection: &'c Connection) -> rusqlite::Result<Self> {
        Ok(Self {
            insert: connection.prepare(INSERT_JOB)?,
            begin: connection.prepare("BEGIN IMMEDIATE")?,
            commit: connection.prepare("COMMIT")?,
        })
    }
}

/// Inserts `jobs` in one transaction (a single row needs none: one statement is atomic).
fn commit(
    connection: &Connection,
    statements: Option<&mut Statements<'_>>,
    jobs: &[Job],
) -> Result<(), StoreError> {
    let statements = statements.ok_or_else(|| {
        StoreError::Unavailable("the SQLite writer could not prepare its statements".into())
    })?;
    let transaction = jobs.len() > 1;
    if transaction {
        statements
            .begin
            .execute([])
            .map_err(|err| unavailable(&err))?;
    }
    let outcome = jobs
        .iter()
        .try_for_each(|job| insert_row(&mut statements.insert, job))
        .and_then(|()| match transaction {
            true => statements.commit.execute([]).map(drop),
            false => Ok(()),
        });
    if outcome.is_err() && !connection.is_autocommit() {
        // Still inside the transaction (an INSERT or the COMMIT failed): undo it, or the next
        // batch's BEGIN would fail. A failed ROLLBACK means SQLite already rolled back.
        let _ = connection.execute_batch("ROLLBACK");
    }
    outcome.map_err(|err| unavailable(&err))
}

fn insert_row(insert: &mut Statement<'_>, job: &Job) -> rusqlite::Result<()> {
    let row = JobColumns::from(job);
    insert.execute(params![
        row.id(),
        row.tenant_id,
        row.request_id,
        row.mode,
        row.status,
        row.model,
        row.version,
        row.input,
        row.result,
        row.error_type,
        row.error_message,
        row.attempts,
        row.max_attempts,
        row.created_at,
        row.started_at,
        row.finished_at,
        row.timeout_ms,
        row.idempotency_key,
        row.request_fingerprint,
        row.heartbeat_at,
        row.not_before,
        row.steps,
    ])?;
    Ok(())
}

/// Classified by the pool's rule (`common::store_error`): a full disk, a read-only file or an
/// I/O error fail every write alike.
fn unavailable(err: &rusqlite::Error) -> StoreError {
    let message = format!("SQLite: {err}");
    match err {
        rusqlite::Error::SqliteFailure(failure, _)
            if crate::common::sqlite_cannot_write(i64::from(failure.extended_code)) =>
        {
            StoreError::CannotWrite(message)
        }
        _ => StoreError::Unavailable(message),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use inference_engine_core::ports::JobStore;

    use super::*;
    use crate::SqliteJobStore;
    use crate::group_commit::GroupCommitConfig;
    use crate::group_commit::tests::{
        closing_commits_queued_writes_and_refuses_later_ones,
        inserts_from_many_tasks_are_all_committed, job,
        queued_writes_from_plain_threads_are_all_committed,
    };

    async fn store(dir: &tempfile::TempDir) -> SqliteJobStore {
        SqliteJobStore::open(&dir.path().join("jobs.db"))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn the_insert_builds_no_temporary_btree_per_row() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs.db");
        store(&dir).await.close().await;
        let connection = open(&path, Duration::from_secs(1), 64 << 20).unwrap();
        let mut plan = connection
            .prepare(&format!("EXPLAIN {INSERT_JOB}"))
            .unwrap();
        let unbound = [rusqlite::types::Null; 22];
        let opcodes: Vec<String> = plan
            .query_map(unbound, |row| row.get::<_, String>(1))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert!(
            opcodes.iter().any(|opcode| opcode == "Insert"),
            "{opcodes:?}"
        );
        assert!(
            !opcodes.iter().any(|opcode| opcode == "OpenEphemeral"),
            "{opcodes:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_inserts_are_all_committed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(store(&dir).await);
        inserts_from_many_tasks_are_all_committed(store.clone(), store.as_ref()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_queued_from_plain_threads_are_committed_even_when_the_queue_is_full() {
        let dir = tempfile::tempdir().unwrap();
        let tiny_queue = GroupCommitConfig {
            max_batch_jobs: 4,
            queue_capacity: 2,
        };
        let store = Arc::new(
            SqliteJobStore::open_with(&dir.path().join("jobs.db"), &tiny_queue)
                .await
                .unwrap(),
        );
        queued_writes_from_plain_threads_are_all_committed(store.clone(), store.as_ref()).await;
    }

    #[tokio::test]
    async fn a_bad_write_fails_alone_when_batched_with_good_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let duplicate = job();
        store.insert(vec![duplicate.clone()]).await.unwrap();
        let good = job();
        // Both writes are queued before the loop runs, so they share its first batch.
        let (commands, receiver) = mpsc::channel(8);
        let (bad_committed, bad_outcome) = futures_channel::oneshot::channel();
        let (good_committed, good_outcome) = futures_channel::oneshot::channel();
        for (jobs, committed) in [
            (vec![duplicate], bad_committed),
            (vec![good.clone()], good_committed),
        ] {
            assert!(
                commands
                    .try_send(WriterCommand::Write { jobs, committed })
                    .is_ok()
            );
        }
        drop(commands);
        let path = dir.path().join("jobs.db");
        tokio::task::spawn_blocking(move || {
            let connection = open(&path, Duration::from_secs(5), 64 << 20).unwrap();
            let guard = WalGuard {
                wal_path: path.with_file_name("jobs.db-wal"),
                max_bytes: 64 << 20,
                health: Arc::default(),
            };
            run(&connection, receiver, 512, &AtomicBool::new(false), &guard);
        })
        .await
        .unwrap();
        assert!(matches!(
            bad_outcome.await.unwrap(),
            Err(StoreError::Unavailable(_))
        ));
        good_outcome.await.unwrap().unwrap();
        assert!(store.get(good.id).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn close_commits_queued_writes_and_refuses_later_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(store(&dir).await);
        closing_commits_queued_writes_and_refuses_later_ones(
            store.clone(),
            store.as_ref(),
            store.writer.close(),
        )
        .await;
    }
}
