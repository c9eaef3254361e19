//! `RedisJobQueue` against the real Redis at `TEST_REDIS_URL` (default `redis://127.0.0.1:6379`),
//! one unique key prefix per test. Fails loudly when Redis is unreachable.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod resilience;
mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use inference_engine_core::job::JobId;
use inference_engine_core::ports::{Delivery, JobQueue};
use tokio::time::Instant;

use support::{TestRedis, eventually};

const LONG: Duration = Duration::from_secs(60);

fn job_ids(deliveries: &[Delivery]) -> Vec<JobId> {
    let mut ids: Vec<JobId> = deliveries.iter().map(|d| d.job_id).collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn enqueued_jobs_are_delivered_and_acked_entries_leave_the_stream() {
    let redis = TestRedis::new().await;
    let queue = redis.queue("a", LONG).await;
    let mut jobs = vec![JobId::new(), JobId::new(), JobId::new()];
    jobs.sort();

    queue.enqueue(&jobs).await.unwrap();
    let deliveries = queue.receive(10, Duration::ZERO).await.unwrap();

    assert_eq!(job_ids(&deliveries), jobs);
    assert!(deliveries.iter().all(|d| !d.redelivered));
    assert_eq!(redis.stream_len().await, 3);
    assert_eq!(redis.pending().await.len(), 3);

    queue.ack(&deliveries).await.unwrap();

    assert_eq!(redis.stream_len().await, 0, "acked entries are deleted");
    assert!(redis.pending().await.is_empty());
    assert!(queue.receive(10, Duration::ZERO).await.unwrap().is_empty());
}

#[tokio::test]
async fn receive_hands_out_at_most_max_and_keeps_the_rest() {
    let redis = TestRedis::new().await;
    let queue = redis.queue("a", LONG).await;
    let jobs: Vec<JobId> = (0..5).map(|_| JobId::new()).collect();
    queue.enqueue(&jobs).await.unwrap();

    let first = queue.receive(2, Duration::ZERO).await.unwrap();
    let rest = queue.receive(10, Duration::ZERO).await.unwrap();

    assert_eq!(first.len(), 2);
    assert_eq!(rest.len(), 3);
    let mut all = [job_ids(&first), job_ids(&rest)].concat();
    all.sort();
    let mut expected = jobs;
    expected.sort();
    assert_eq!(all, expected);
}

#[tokio::test]
async fn unacked_delivery_is_redelivered_to_another_consumer_only_after_the_visibility_timeout() {
    let redis = TestRedis::new().await;
    let timeout = Duration::from_millis(300);
    let first = redis.queue("a", timeout).await;
    let second = redis.queue("b", timeout).await;
    let job = JobId::new();
    first.enqueue(&[job]).await.unwrap();

    let delivered_at = Instant::now();
    let original = first.receive(1, Duration::ZERO).await.unwrap();
    assert_eq!(job_ids(&original), vec![job]);
    assert!(!original[0].redelivered);
    assert!(
        second.receive(1, Duration::ZERO).await.unwrap().is_empty(),
        "a fresh delivery is not handed to another consumer"
    );

    let redelivery = eventually("the redelivery", Duration::from_secs(10), || async {
        let got = second.receive(1, Duration::from_millis(50)).await.unwrap();
        (!got.is_empty()).then_some(got)
    })
    .await;

    assert!(
        delivered_at.elapsed() >= timeout,
        "redelivered after {:?}, before the visibility timeout",
        delivered_at.elapsed()
    );
    assert_eq!(job_ids(&redelivery), vec![job]);
    assert!(redelivery[0].redelivered);
    assert_eq!(redelivery[0].receipt, original[0].receipt);
    assert_eq!(redis.pending().await[0].1, format!("{}b", redis.prefix));

    second.ack(&redelivery).await.unwrap();
    first.ack(&original).await.unwrap(); // the late ack of the lost delivery is harmless
    assert_eq!(redis.stream_len().await, 0);
}

#[tokio::test]
async fn extended_delivery_is_not_redelivered_past_the_visibility_timeout() {
    let redis = TestRedis::new().await;
    let timeout = Duration::from_millis(600);
    let worker = redis.queue("a", timeout).await;
    let other = redis.queue("b", timeout).await;
    let job = JobId::new();
    worker.enqueue(&[job]).await.unwrap();
    let delivery = worker.receive(1, Duration::ZERO).await.unwrap();
    assert_eq!(job_ids(&delivery), vec![job]);

    // Heartbeat well inside the timeout for three timeouts' time; the ticks pace the
    // heartbeat, they do not synchronise anything.
    let started = Instant::now();
    let mut ticks = tokio::time::interval(Duration::from_millis(100));
    while started.elapsed() < timeout * 3 {
        ticks.tick().await;
        worker.extend(&delivery).await.unwrap();
        assert!(
            other.receive(1, Duration::ZERO).await.unwrap().is_empty(),
            "redelivered {:?} after delivery although extended",
            started.elapsed()
        );
    }

    // Once the heartbeat stops, the delivery is lost after all.
    let redelivery = eventually("the redelivery", Duration::from_secs(10), || async {
        let got = other.receive(1, Duration::from_millis(50)).await.unwrap();
        (!got.is_empty()).then_some(got)
    })
    .await;
    assert_eq!(job_ids(&redelivery), vec![job]);
    assert!(redelivery[0].redelivered);
}

#[tokio::test]
async fn extend_leaves_a_delivery_another_consumer_reclaimed_to_that_consumer() {
    let redis = TestRedis::new().await;
    let timeout = Duration::from_millis(300);
    let stalled = redis.queue("a", timeout).await;
    let other = redis.queue("b", timeout).await;
    stalled.enqueue(&[JobId::new()]).await.unwrap();
    let lost = stalled.receive(1, Duration::ZERO).await.unwrap();
    eventually("the reclaim", Duration::from_secs(10), || async {
        let got = other.receive(1, Duration::from_millis(50)).await.unwrap();
        (!got.is_empty()).then_some(())
    })
    .await;

    stalled.extend(&lost).await.unwrap();

    let owners: Vec<String> = redis.pending().await.into_iter().map(|p| p.1).collect();
    assert_eq!(owners, vec![format!("{}b", redis.prefix)]);
}

#[tokio::test]
async fn delayed_job_is_not_delivered_before_its_delay_and_is_after() {
    let redis = TestRedis::new().await;
    let queue = redis.queue("a", LONG).await;
    let job = JobId::new();
    let delay = Duration::from_millis(600);

    let scheduled_at = Instant::now();
    queue.enqueue_after(job, delay).await.unwrap();
    assert!(
        queue.receive(1, Duration::ZERO).await.unwrap().is_empty(),
        "delivered before its delay"
    );

    // One long receive: it must not sleep through the due time for the whole wait.
    let wait = Duration::from_secs(10);
    let deliveries = queue.receive(1, wait).await.unwrap();

    assert_eq!(job_ids(&deliveries), vec![job]);
    assert!(!deliveries[0].redelivered);
    let elapsed = scheduled_at.elapsed();
    assert!(elapsed >= delay, "delivered after {elapsed:?}");
    assert!(
        elapsed < wait,
        "the receive waited its whole wait ({elapsed:?})"
    );
    let delayed: usize = redis::cmd("ZCARD")
        .arg(redis.delayed_key())
        .query_async(&mut redis.admin())
        .await
        .unwrap();
    assert_eq!(delayed, 0);
}

#[tokio::test]
async fn enqueue_after_with_no_delay_is_delivered_at_once() {
    let redis = TestRedis::new().await;
    let queue = redis.queue("a", LONG).await;
    let job = JobId::new();

    queue.enqueue_after(job, Duration::ZERO).await.unwrap();

    let deliveries = queue.receive(1, Duration::ZERO).await.unwrap();
    assert_eq!(job_ids(&deliveries), vec![job]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consumers_receiving_concurrently_get_each_entry_exactly_once() {
    let redis = TestRedis::new().await;
    let jobs: Vec<JobId> = (0..200).map(|_| JobId::new()).collect();
    let first = Arc::new(redis.queue("a", LONG).await);
    let second = Arc::new(redis.queue("b", LONG).await);
    first.enqueue(&jobs).await.unwrap();

    let drain = |queue: Arc<inference_engine_redis::RedisJobQueue>| {
        tokio::spawn(async move {
            let mut received = Vec::new();
            loop {
                let batch = queue.receive(7, Duration::from_millis(200)).await.unwrap();
                if batch.is_empty() {
                    return received;
                }
                queue.ack(&batch).await.unwrap();
                received.extend(batch.into_iter().map(|d| d.job_id));
            }
        })
    };
    let (from_first, from_second) = tokio::join!(drain(first), drain(second));
    let (from_first, from_second) = (from_first.unwrap(), from_second.unwrap());

    let all: Vec<JobId> = from_first.iter().chain(&from_second).copied().collect();
    let unique: HashSet<JobId> = all.iter().copied().collect();
    assert_eq!(all.len(), 200, "an entry was delivered twice or not at all");
    assert_eq!(unique, jobs.iter().copied().collect::<HashSet<_>>());
    assert!(
        !from_first.is_empty() && !from_second.is_empty(),
        "both consumers took part"
    );
    assert_eq!(redis.stream_len().await, 0);
}

#[tokio::test]
async fn blocked_receive_returns_promptly_when_an_entry_arrives() {
    let redis = TestRedis::new().await;
    let queue = Arc::new(redis.queue("a", LONG).await);
    let wait = Duration::from_secs(20);
    let receiver = {
        let queue = Arc::clone(&queue);
        tokio::spawn(async move { queue.receive(1, wait).await })
    };
    eventually("the receive to block", Duration::from_secs(10), || async {
        redis
            .own_connections()
            .await
            .iter()
            .any(|c| c.name.ends_with(":block") && c.cmd == "xreadgroup" && c.flags.contains('b'))
            .then_some(())
    })
    .await;

    let job = JobId::new();
    let enqueued_at = Instant::now();
    queue.enqueue(&[job]).await.unwrap();
    let deliveries = tokio::time::timeout(wait, receiver)
        .await
        .expect("the blocked receive did not return")
        .unwrap()
        .unwrap();

    assert_eq!(job_ids(&deliveries), vec![job]);
    assert!(enqueued_at.elapsed() < wait);
}

#[tokio::test]
async fn an_entry_without_a_valid_job_id_is_dropped_not_delivered() {
    let redis = TestRedis::new().await;
    let queue = redis.queue("a", LONG).await;
    redis::cmd("XADD")
        .arg(redis.stream_key())
        .arg("*")
        .arg("job")
        .arg("not-a-uuid")
        .query_async::<String>(&mut redis.admin())
        .await
        .unwrap();
    redis::cmd("XADD")
        .arg(redis.stream_key())
        .arg("*")
        .arg("other")
        .arg("field")
        .query_async::<String>(&mut redis.admin())
        .await
        .unwrap();
    let job = JobId::new();
    queue.enqueue(&[job]).await.unwrap();

    let deliveries = queue.receive(10, Duration::ZERO).await.unwrap();

    assert_eq!(job_ids(&deliveries), vec![job]);
    assert_eq!(redis.stream_len().await, 1, "only the valid entry is left");
    assert_eq!(redis.pending().await.len(), 1);
}

#[tokio::test]
async fn ping_answers() {
    let redis = TestRedis::new().await;
    let queue = redis.queue("a", LONG).await;

    queue.ping().await.unwrap();
}
