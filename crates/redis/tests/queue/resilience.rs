//! Faults the product promise ("no accepted job is ever lost") must survive: connections killed
//! under the queue, Redis losing the stream and the group, Redis not being there at all.

use std::sync::Arc;
use std::time::Duration;

use inference_engine_core::job::JobId;
use inference_engine_core::ports::{JobQueue, QueueError};
use inference_engine_redis::RedisJobQueue;

use crate::support::{PrivateRedis, TestRedis, eventually};
use crate::{LONG, job_ids};

/// Waits until both of the queue's connections are open again and named after the test.
async fn both_connections_named(redis: &TestRedis) {
    eventually(
        "both queue connections to be named",
        Duration::from_secs(10),
        || async {
            let own = redis.own_connections().await;
            let blocking = own.iter().filter(|c| c.name.ends_with(":block")).count();
            (own.len() == 2 && blocking == 1).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn every_method_recovers_after_the_queue_connections_are_killed() {
    let redis = TestRedis::new().await;
    let queue = redis.queue("a", LONG).await;
    let job = JobId::new();
    both_connections_named(&redis).await;

    assert_eq!(redis.kill_own_connections().await, 2);
    queue.enqueue(&[job]).await.unwrap();

    assert!(redis.kill_own_connections().await >= 1);
    let deliveries = queue.receive(1, Duration::from_secs(5)).await.unwrap();
    assert_eq!(job_ids(&deliveries), vec![job]);

    // The names come back with the new connections, so the next kill finds them again.
    both_connections_named(&redis).await;
    assert_eq!(redis.kill_own_connections().await, 2);
    queue.extend(&deliveries).await.unwrap();

    assert!(redis.kill_own_connections().await >= 1);
    queue.ack(&deliveries).await.unwrap();
    assert_eq!(redis.stream_len().await, 0);

    assert!(redis.kill_own_connections().await >= 1);
    queue
        .enqueue_after(JobId::new(), Duration::from_millis(1))
        .await
        .unwrap();

    assert!(redis.kill_own_connections().await >= 1);
    queue.ping().await.unwrap();

    assert!(redis.kill_own_connections().await >= 1);
    let delayed = queue.receive(1, Duration::from_secs(5)).await.unwrap();
    assert_eq!(delayed.len(), 1, "the delayed job survived the kills");
}

#[tokio::test]
async fn a_receive_blocked_when_its_connection_is_killed_still_gets_the_job() {
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
            .any(|c| c.name.ends_with(":block") && c.flags.contains('b'))
            .then_some(())
    })
    .await;

    assert_eq!(redis.kill_own_connections().await, 2);
    let job = JobId::new();
    queue.enqueue(&[job]).await.unwrap();

    let deliveries = tokio::time::timeout(wait, receiver)
        .await
        .expect("the receive did not return")
        .unwrap()
        .unwrap();
    assert_eq!(job_ids(&deliveries), vec![job]);
}

#[tokio::test]
async fn queue_recovers_after_the_stream_and_group_are_deleted() {
    let redis = TestRedis::new().await;
    let queue = redis.queue("a", LONG).await;
    queue.enqueue(&[JobId::new()]).await.unwrap();
    let stale = queue.receive(1, Duration::ZERO).await.unwrap();
    assert_eq!(stale.len(), 1);

    // As after a Redis restart without persistence: stream, group and delayed set are gone.
    redis.delete_queue_keys().await;
    // Producers come back first: XADD recreates the stream without the group.
    let after_restart = JobId::new();
    queue.enqueue(&[after_restart]).await.unwrap();
    let deliveries = queue.receive(10, Duration::ZERO).await.unwrap();
    assert_eq!(
        job_ids(&deliveries),
        vec![after_restart],
        "an entry added before the group was recreated is delivered"
    );
    queue.ack(&deliveries).await.unwrap();

    // Deliveries from before the loss can still be extended and acked without errors.
    redis.delete_queue_keys().await;
    queue.extend(&stale).await.unwrap();
    queue.ack(&stale).await.unwrap();

    // A worker comes back first: its receive recreates the group, then a job arrives.
    redis.delete_queue_keys().await;
    assert!(queue.receive(1, Duration::ZERO).await.unwrap().is_empty());
    let next = JobId::new();
    queue.enqueue(&[next]).await.unwrap();
    assert_eq!(
        job_ids(&queue.receive(1, Duration::from_secs(5)).await.unwrap()),
        vec![next]
    );

    let groups: Vec<redis::Value> = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(redis.stream_key())
        .query_async(&mut redis.admin())
        .await
        .unwrap();
    assert_eq!(groups.len(), 1, "the workers group exists again");
}

#[tokio::test]
async fn a_receive_blocked_when_the_stream_is_deleted_recreates_the_group_and_gets_the_job() {
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
            .any(|c| c.name.ends_with(":block") && c.flags.contains('b'))
            .then_some(())
    })
    .await;

    // Redis answers the blocked read with `UNBLOCKED the stream key no longer exists`.
    redis.delete_queue_keys().await;
    let job = JobId::new();
    queue.enqueue(&[job]).await.unwrap();

    let deliveries = tokio::time::timeout(wait, receiver)
        .await
        .expect("the receive did not return")
        .unwrap()
        .unwrap();
    assert_eq!(job_ids(&deliveries), vec![job]);
}

#[tokio::test]
async fn queue_recovers_after_a_real_redis_restart_that_loses_everything() {
    let mut server = PrivateRedis::start().await;
    let config = inference_engine_redis::RedisQueueConfig {
        visibility_timeout: LONG,
        ..inference_engine_redis::RedisQueueConfig::new(server.url(), "restart:")
    };
    let queue = Arc::new(RedisJobQueue::connect(config).await.unwrap());
    queue.enqueue(&[JobId::new()]).await.unwrap();
    let in_flight = queue.receive(1, Duration::ZERO).await.unwrap();
    let blocked = {
        let queue = Arc::clone(&queue);
        tokio::spawn(async move { queue.receive(1, Duration::from_secs(20)).await })
    };

    server.stop();

    // While Redis is down, calls fail fast with Unavailable instead of hanging.
    let outage = tokio::time::timeout(Duration::from_secs(10), queue.enqueue(&[JobId::new()]))
        .await
        .expect("enqueue hung while Redis was down");
    assert!(
        matches!(outage, Err(QueueError::Unavailable(_))),
        "{outage:?}"
    );
    let interrupted = tokio::time::timeout(Duration::from_secs(10), blocked)
        .await
        .expect("a blocked receive hung while Redis was down")
        .unwrap();
    assert!(interrupted.is_err() || interrupted.is_ok_and(|got| got.is_empty()));

    server.restart().await;

    // Back: producers and workers carry on with no intervention; the group is recreated.
    let job = JobId::new();
    queue.enqueue(&[job]).await.unwrap();
    let deliveries = queue.receive(1, Duration::from_secs(5)).await.unwrap();
    assert_eq!(job_ids(&deliveries), vec![job]);
    queue.ack(&deliveries).await.unwrap();
    queue.extend(&in_flight).await.unwrap();
    queue.ack(&in_flight).await.unwrap();
    queue.ping().await.unwrap();
}

#[tokio::test]
async fn connect_error_names_the_host_and_hides_the_password() {
    let redis = TestRedis::new().await;
    let mut config = redis.config("a", LONG);
    config.url = "redis://:sup3rs3cret@127.0.0.1:1/0".to_owned();

    let started = tokio::time::Instant::now();
    let err = RedisJobQueue::connect(config).await.unwrap_err();

    let QueueError::Unavailable(message) = &err else {
        panic!("expected Unavailable, got {err:?}");
    };
    assert!(message.contains("127.0.0.1:1"), "{message}");
    assert!(!message.contains("sup3rs3cret"), "{message}");
    assert!(!err.to_string().contains("sup3rs3cret"));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "an unreachable Redis must fail fast, took {:?}",
        started.elapsed()
    );
}
