//! `submit`: an idempotency key names one job per tenant within the TTL.

use std::collections::HashSet;
use std::time::Duration;

use inference_engine_core::job::{IdempotencyKey, Job};
use inference_engine_core::ports::{JobFilter, Submitted};

use crate::support::{Harness, job, now, seconds, tenant};

const DAY: Duration = Duration::from_secs(24 * 3_600);

both_engines!(
    a_job_without_a_key_is_created,
    the_same_key_within_the_ttl_returns_the_existing_job_and_writes_nothing,
    another_tenant_may_use_the_same_key,
    an_expired_key_is_given_up_by_its_old_job_and_the_new_job_created,
    concurrent_submits_with_one_key_create_exactly_one_job,
);

fn keyed(key: &str) -> Job {
    let mut job = job();
    job.idempotency_key = Some(IdempotencyKey::parse(key).unwrap());
    job.request_fingerprint = Some(format!("fp-{}", job.id));
    job
}

async fn a_job_without_a_key_is_created(harness: &Harness) {
    let new = job();

    let outcome = harness.store.submit(new.clone(), DAY).await.unwrap();

    assert_eq!(outcome, Submitted::Created);
    assert_eq!(harness.get(new.id).await, new);
}

async fn the_same_key_within_the_ttl_returns_the_existing_job_and_writes_nothing(
    harness: &Harness,
) {
    let first = keyed("order-1");
    harness.store.submit(first.clone(), DAY).await.unwrap();
    let mut replay = keyed("order-1");
    replay.created_at = first.created_at + seconds(3_600);

    let outcome = harness.store.submit(replay.clone(), DAY).await.unwrap();

    assert_eq!(outcome, Submitted::Existing(Box::new(first.clone())));
    assert_eq!(harness.store.get(replay.id).await.unwrap(), None);
    assert_eq!(harness.get(first.id).await, first);
}

async fn another_tenant_may_use_the_same_key(harness: &Harness) {
    let first = keyed("shared");
    harness.store.submit(first.clone(), DAY).await.unwrap();
    let mut other = keyed("shared");
    other.tenant_id = tenant("tenant_b");

    let outcome = harness.store.submit(other.clone(), DAY).await.unwrap();

    assert_eq!(outcome, Submitted::Created);
    assert_eq!(harness.get(other.id).await, other);
    assert_eq!(harness.get(first.id).await, first);
}

async fn an_expired_key_is_given_up_by_its_old_job_and_the_new_job_created(harness: &Harness) {
    let mut old = keyed("order-2");
    old.created_at = now() - seconds(25 * 3_600);
    harness.store.submit(old.clone(), DAY).await.unwrap();
    let new = keyed("order-2");

    let outcome = harness.store.submit(new.clone(), DAY).await.unwrap();

    assert_eq!(outcome, Submitted::Created);
    assert_eq!(harness.get(new.id).await, new);
    let old_now = harness.get(old.id).await;
    assert_eq!(old_now.idempotency_key, None);
    assert_eq!(
        old_now,
        Job {
            idempotency_key: None,
            ..old
        }
    );
    // The key now resolves to the new job.
    let again = keyed("order-2");
    assert_eq!(
        harness.store.submit(again, DAY).await.unwrap(),
        Submitted::Existing(Box::new(new))
    );
}

async fn concurrent_submits_with_one_key_create_exactly_one_job(harness: &Harness) {
    let submits: Vec<_> = (0..16)
        .map(|_| {
            let store = std::sync::Arc::clone(&harness.store);
            tokio::spawn(async move { store.submit(keyed("race"), DAY).await })
        })
        .collect();
    let mut created = 0;
    let mut existing_ids = HashSet::new();
    for submit in submits {
        match submit.await.unwrap().unwrap() {
            Submitted::Created => created += 1,
            Submitted::Existing(job) => {
                existing_ids.insert(job.id);
            }
        }
    }

    let stored = harness
        .store
        .list(&JobFilter {
            tenant: Some(tenant("tenant_a")),
            status: None,
            model: None,
            before: None,
            limit: 100,
        })
        .await
        .unwrap();
    assert_eq!(created, 1);
    assert_eq!(stored.len(), 1);
    assert_eq!(
        existing_ids,
        HashSet::from([stored[0].id]),
        "every loser sees the winner"
    );
}
