//! `RedisJobQueue`: the `JobQueue` port on one Redis stream and one consumer group.
//!
//! An entry is a job id (`job` field). `XREADGROUP >` hands a new entry to exactly one consumer
//! and records it in the group's pending list; `XACK` + `XDEL` remove it for good. An entry whose
//! worker died stays pending and idle; once idle longer than the visibility timeout,
//! `XAUTOCLAIM` hands it to whichever consumer asks next (`redelivered`). `extend` resets the
//! idle time of a delivery still being worked on. Retries with a delay wait in a sorted set and
//! are moved into the stream by whichever worker receives once they are due.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use inference_engine_core::job::JobId;
use inference_engine_core::ports::{Delivery, JobQueue, QueueError};
use inference_engine_core::sync::lock;
use redis::FromRedisValue;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::config::{CONSUMER_GROUP, RedisQueueConfig};
use crate::connection::{
    Connections, Request, is_connection_failure, is_existing_group, is_missing_group,
};
use crate::scripts::{EXTEND_OWNED, PROMOTE_DUE, SCHEDULE};

/// Most delayed entries one `receive` moves into the stream; the rest follow on the next calls,
/// so one script run stays short even after a burst of retries.
const PROMOTE_BATCH: usize = 256;

/// Most deliveries one `receive` hands out, whatever `max` says: bounds one reply's size.
const MAX_BATCH: usize = 1_024;

/// Where an `XAUTOCLAIM` scan of the pending list starts, and what it returns once complete.
const SCAN_START: &str = "0-0";

/// The `JobQueue` on Redis Streams. One per process: its consumer name identifies the process's
/// deliveries. `receive` calls on one queue take turns on its blocking-read connection; run one
/// receive loop per process and fan deliveries out to tasks.
pub struct RedisJobQueue {
    conns: Connections,
    stream: String,
    delayed: String,
    consumer: String,
    visibility_timeout: Duration,
    /// Where the next `XAUTOCLAIM` resumes its scan of the pending list. A std mutex: it is
    /// only read or replaced, never held across an `.await`.
    claim_cursor: std::sync::Mutex<String>,
    /// Set when a command failed for want of a connection; the next success counts a recovery.
    in_outage: AtomicBool,
    /// [`JobQueue::recoveries`].
    recoveries: AtomicU64,
}

impl fmt::Debug for RedisJobQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisJobQueue")
            .field("stream", &self.stream)
            .field("consumer", &self.consumer)
            .field("visibility_timeout", &self.visibility_timeout)
            .finish_non_exhaustive()
    }
}

impl RedisJobQueue {
    /// Connects, creates the consumer group if needed and opens the blocking-read connection.
    /// Fails within about `connect_timeout` when Redis is unreachable, with a message that
    /// names the host and never the password.
    pub async fn connect(config: RedisQueueConfig) -> Result<Self, QueueError> {
        if config.visibility_timeout < Duration::from_millis(1) {
            return Err(QueueError::Unavailable(
                "the queue's visibility timeout must be at least 1 ms".to_owned(),
            ));
        }
        if config.consumer.is_empty() {
            return Err(QueueError::Unavailable(
                "the queue's consumer name must not be empty".to_owned(),
            ));
        }
        let conns = Connections::open(&config).await?;
        let queue = Self {
            conns,
            stream: config.stream_key(),
            delayed: config.delayed_key(),
            consumer: config.consumer,
            visibility_timeout: config.visibility_timeout,
            claim_cursor: std::sync::Mutex::new(SCAN_START.to_owned()),
            in_outage: AtomicBool::new(false),
            recoveries: AtomicU64::new(0),
        };
        queue.create_group().await?;
        // Opened now rather than at the first read so that a refused second connection
        // (`maxclients`, ACLs) shows at start, where the operator is looking.
        let blocking = queue.conns.open_blocking().await?;
        *queue.conns.blocking.lock().await = Some(blocking);
        Ok(queue)
    }

    /// `XGROUP CREATE … 0 MKSTREAM`: from `0`, not `$`, so entries added while the group did
    /// not exist (enqueued right after a Redis restart, before any worker asked) are delivered.
    async fn create_group(&self) -> Result<(), QueueError> {
        let mut cmd = redis::cmd("XGROUP");
        cmd.arg("CREATE")
            .arg(&self.stream)
            .arg(CONSUMER_GROUP)
            .arg("0")
            .arg("MKSTREAM");
        match self.conns.run_once::<()>(&Request::Cmd(&cmd)).await {
            Ok(()) => {}
            Err(err) if is_existing_group(&err) => {}
            Err(err) => {
                return Err(self
                    .conns
                    .describe
                    .error("creating the consumer group", &err));
            }
        }
        // A new group's pending list starts empty; a scan position in the old one means nothing.
        self.set_cursor(SCAN_START.to_owned());
        Ok(())
    }

    /// Runs a request on the shared connection. A dropped connection is retried once on the
    /// manager's new connection; a missing group (Redis restarted empty, key deleted) is
    /// recreated and the request retried once. Every request here may run twice: duplicates
    /// are what at-least-once allows, and the job store's conditional claim absorbs them.
    async fn exec<T: FromRedisValue>(
        &self,
        action: &str,
        request: Request<'_>,
    ) -> Result<T, QueueError> {
        let mut reconnected = false;
        let mut regrouped = false;
        loop {
            match self.conns.run_once(&request).await {
                Ok(value) => {
                    self.answered();
                    return Ok(value);
                }
                Err(err) if is_missing_group(&err) && !regrouped => {
                    regrouped = true;
                    self.lost_state();
                    self.create_group().await?;
                }
                Err(err) if is_connection_failure(&err) && !reconnected => {
                    reconnected = true;
                    debug!(error = %err, "Redis connection lost; retrying on a new one");
                }
                Err(err) => return Err(self.failed(action, &err)),
            }
        }
    }

    /// A command succeeded: if the previous ones failed for want of Redis, it is back.
    fn answered(&self) {
        if self.in_outage.swap(false, Ordering::AcqRel) {
            self.recoveries.fetch_add(1, Ordering::AcqRel);
            tracing::info!(stream = %self.stream, "Redis answers again; pending jobs are re-enqueued now");
        }
    }

    /// The consumer group is gone: Redis restarted without its data, and every entry with it.
    fn lost_state(&self) {
        self.recoveries.fetch_add(1, Ordering::AcqRel);
        warn!(stream = %self.stream, "consumer group missing (Redis restarted or the stream was deleted); recreating it and re-enqueueing pending jobs");
    }

    /// The error of a failed `action`, remembering an outage for [`Self::answered`].
    fn failed(&self, action: &str, err: &redis::RedisError) -> QueueError {
        if is_connection_failure(err) {
            self.in_outage.store(true, Ordering::Release);
        }
        self.conns.describe.error(action, err)
    }

    fn set_cursor(&self, cursor: String) {
        *lock(&self.claim_cursor) = cursor;
    }

    fn cursor(&self) -> String {
        lock(&self.claim_cursor).clone()
    }

    /// Moves due delayed jobs into the stream; returns how long until the next one is due.
    async fn promote_due(&self) -> Result<Option<Duration>, QueueError> {
        let mut invocation = PROMOTE_DUE.prepare_invoke();
        invocation
            .key(&self.delayed)
            .key(&self.stream)
            .arg(PROMOTE_BATCH);
        let (moved, next_due_ms): (u64, i64) = self
            .exec(
                "moving due delayed jobs to the stream",
                Request::Script(&invocation),
            )
            .await?;
        if moved > 0 {
            debug!(moved, "moved due delayed jobs to the stream");
        }
        Ok(u64::try_from(next_due_ms).ok().map(Duration::from_millis))
    }

    /// `XAUTOCLAIM`: deliveries idle longer than the visibility timeout, now ours.
    async fn claim_lost(&self, max: usize) -> Result<Vec<Delivery>, QueueError> {
        let min_idle_ms = u64::try_from(self.visibility_timeout.as_millis()).unwrap_or(u64::MAX);
        let mut cmd = redis::cmd("XAUTOCLAIM");
        cmd.arg(&self.stream)
            .arg(CONSUMER_GROUP)
            .arg(&self.consumer)
            .arg(min_idle_ms)
            .arg(self.cursor())
            .arg("COUNT")
            .arg(max);
        let reply: StreamAutoClaimReply = self
            .exec("reclaiming lost deliveries", Request::Cmd(&cmd))
            .await?;
        // `0-0` once the scan has covered the whole pending list: the next one starts over.
        self.set_cursor(reply.next_stream_id);
        // `reply.deleted_ids` were acked and deleted by their workers after going idle; Redis
        // has already dropped them from the pending list, so there is nothing to hand out.
        self.deliveries_from(reply.claimed, true).await
    }

    /// `XREADGROUP … >`: new entries, blocking until `until` on the dedicated connection.
    async fn read_new(&self, count: usize, until: Instant) -> Result<Vec<Delivery>, QueueError> {
        let wait = until.saturating_duration_since(Instant::now());
        let entries = if wait < Duration::from_millis(1) {
            // Nothing to wait for: the shared connection answers without holding anyone up.
            let cmd = self.read_command(count, None);
            let reply: Option<StreamReadReply> =
                self.exec("reading new jobs", Request::Cmd(&cmd)).await?;
            stream_entries(reply)
        } else {
            self.read_blocking(count, until).await?
        };
        self.deliveries_from(entries, false).await
    }

    fn read_command(&self, count: usize, block_ms: Option<u64>) -> redis::Cmd {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(CONSUMER_GROUP)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(count);
        if let Some(block_ms) = block_ms {
            cmd.arg("BLOCK").arg(block_ms);
        }
        cmd.arg("STREAMS").arg(&self.stream).arg(">");
        cmd
    }

    /// The blocking read, with the same retry rules as [`exec`](Self::exec): a dead connection
    /// is dropped and reopened once (the read then waits only for what is left of the wait), a
    /// missing group is recreated once.
    async fn read_blocking(
        &self,
        count: usize,
        until: Instant,
    ) -> Result<Vec<StreamId>, QueueError> {
        let mut slot = self.conns.blocking.lock().await;
        let mut reconnected = false;
        let mut regrouped = false;
        loop {
            let wait = until.saturating_duration_since(Instant::now());
            // At least 1 ms: `BLOCK 0` means "wait forever".
            let block_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1);
            let cmd = self.read_command(count, Some(block_ms));
            let conn = match slot.as_mut() {
                Some(conn) => conn,
                None => match self.conns.open_blocking().await {
                    Ok(conn) => slot.insert(conn),
                    Err(err) => {
                        self.in_outage.store(true, Ordering::Release);
                        return Err(err);
                    }
                },
            };
            // The connection has no response timeout of its own; this one allows for the wait.
            let limit = wait + self.conns.command_timeout;
            let outcome =
                tokio::time::timeout(limit, cmd.query_async::<Option<StreamReadReply>>(conn)).await;
            match outcome {
                Ok(Ok(reply)) => {
                    self.answered();
                    return Ok(stream_entries(reply));
                }
                Ok(Err(err)) if is_missing_group(&err) && !regrouped => {
                    regrouped = true;
                    self.lost_state();
                    self.create_group().await?;
                }
                Ok(Err(err)) => {
                    let lost = is_connection_failure(&err);
                    if lost {
                        *slot = None;
                    }
                    if !lost || reconnected {
                        return Err(self.failed("reading new jobs", &err));
                    }
                    reconnected = true;
                    debug!(error = %err, "blocking-read connection lost; reopening it");
                }
                Err(_elapsed) => {
                    // Redis is alive enough to have accepted the read but did not answer: the
                    // connection's state is unknown, so it is not reused.
                    *slot = None;
                    return Err(self.conns.describe.timeout("reading new jobs", limit));
                }
            }
        }
    }

    /// Entries whose `job` field is not a job id cannot be run by anyone: they are acked and
    /// deleted (and logged) here instead of being redelivered forever.
    async fn deliveries_from(
        &self,
        entries: Vec<StreamId>,
        redelivered: bool,
    ) -> Result<Vec<Delivery>, QueueError> {
        let mut deliveries = Vec::with_capacity(entries.len());
        let mut unreadable = Vec::new();
        for entry in entries {
            let raw: Option<String> = entry.get("job");
            match raw.as_deref().map(str::parse::<JobId>) {
                Some(Ok(job_id)) => deliveries.push(Delivery {
                    job_id,
                    receipt: entry.id,
                    redelivered,
                }),
                Some(Err(err)) => {
                    warn!(entry = %entry.id, error = %err, "dropping a stream entry whose job id does not parse");
                    unreadable.push(entry.id);
                }
                None => {
                    warn!(entry = %entry.id, "dropping a stream entry without a job field");
                    unreadable.push(entry.id);
                }
            }
        }
        if !unreadable.is_empty() {
            let ids: Vec<&str> = unreadable.iter().map(String::as_str).collect();
            self.remove(&ids).await?;
        }
        Ok(deliveries)
    }

    /// `XACK` + `XDEL` in one transaction: acked entries are also deleted so the stream does not
    /// grow forever (nothing else trims it: trimming by length could drop unacked jobs).
    async fn remove(&self, entry_ids: &[&str]) -> Result<(), QueueError> {
        let mut pipeline = redis::pipe();
        pipeline
            .atomic()
            .cmd("XACK")
            .arg(&self.stream)
            .arg(CONSUMER_GROUP)
            .arg(entry_ids)
            .ignore()
            .cmd("XDEL")
            .arg(&self.stream)
            .arg(entry_ids)
            .ignore();
        self.exec("acknowledging deliveries", Request::Pipeline(&pipeline))
            .await
    }
}

fn stream_entries(reply: Option<StreamReadReply>) -> Vec<StreamId> {
    reply
        .map(|reply| reply.keys.into_iter().flat_map(|key| key.ids).collect())
        .unwrap_or_default()
}

#[async_trait]
impl JobQueue for RedisJobQueue {
    /// One `XADD` per job, all in one pipeline (one round trip).
    async fn enqueue(&self, jobs: &[JobId]) -> Result<(), QueueError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let mut pipeline = redis::pipe();
        for job in jobs {
            pipeline
                .cmd("XADD")
                .arg(&self.stream)
                .arg("*")
                .arg("job")
                .arg(job.to_string())
                .ignore();
        }
        self.exec("adding jobs to the stream", Request::Pipeline(&pipeline))
            .await
    }

    /// Scored at Redis-now + `delay` (the `scripts` module says why Redis's clock); a zero
    /// delay goes straight to the stream.
    async fn enqueue_after(&self, job: JobId, delay: Duration) -> Result<(), QueueError> {
        if delay.is_zero() {
            return self.enqueue(&[job]).await;
        }
        let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut invocation = SCHEDULE.prepare_invoke();
        invocation
            .key(&self.delayed)
            .arg(delay_ms)
            .arg(job.to_string());
        self.exec("scheduling a delayed job", Request::Script(&invocation))
            .await
    }

    /// Due delayed jobs are moved to the stream, then lost deliveries are reclaimed
    /// (`redelivered`), then new entries are read, blocking for what is left of `wait` but no
    /// longer than until the next delayed job is due, so a retry is not held back by a long
    /// wait. A delayed job scheduled by another process while this one blocks may wait for the
    /// end of the block.
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        let max = max.min(MAX_BATCH);
        if max == 0 {
            return Ok(Vec::new());
        }
        let start = Instant::now();
        // A wait too long to represent is as good as a day: the caller will not outlive it.
        let deadline = start
            .checked_add(wait)
            .unwrap_or_else(|| start + Duration::from_secs(86_400));
        loop {
            let next_due = self.promote_due().await?;
            let mut deliveries = self.claim_lost(max).await?;
            if deliveries.len() < max {
                // +1 ms: due times are whole milliseconds on Redis's clock.
                let until = next_due.map_or(deadline, |due| {
                    deadline.min(Instant::now() + due + Duration::from_millis(1))
                });
                let fresh = self.read_new(max - deliveries.len(), until).await?;
                deliveries.extend(fresh);
            }
            // Going round again only when the read stopped early for a delayed job (or every
            // entry it got was unreadable) and the caller's wait is not over.
            if !deliveries.is_empty() || Instant::now() >= deadline {
                return Ok(deliveries);
            }
        }
    }

    /// Resets the idle time of the deliveries this consumer still owns; ones another consumer
    /// reclaimed meanwhile are left to it (see `scripts::EXTEND_OWNED`).
    async fn extend(&self, deliveries: &[Delivery]) -> Result<(), QueueError> {
        if deliveries.is_empty() {
            return Ok(());
        }
        let mut invocation = EXTEND_OWNED.prepare_invoke();
        invocation
            .key(&self.stream)
            .arg(CONSUMER_GROUP)
            .arg(&self.consumer);
        for delivery in deliveries {
            invocation.arg(&delivery.receipt);
        }
        let extended: usize = self
            .exec("extending deliveries", Request::Script(&invocation))
            .await?;
        if extended < deliveries.len() {
            debug!(
                requested = deliveries.len(),
                extended, "some deliveries are no longer this consumer's (reclaimed or gone)"
            );
        }
        Ok(())
    }

    async fn ack(&self, deliveries: &[Delivery]) -> Result<(), QueueError> {
        if deliveries.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = deliveries.iter().map(|d| d.receipt.as_str()).collect();
        self.remove(&ids).await
    }

    async fn ping(&self) -> Result<(), QueueError> {
        let cmd = redis::cmd("PING");
        let _pong: String = self.exec("pinging", Request::Cmd(&cmd)).await?;
        Ok(())
    }

    fn recoveries(&self) -> u64 {
        self.recoveries.load(Ordering::Acquire)
    }
}
