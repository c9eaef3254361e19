//! `claim`: only runnable jobs start, each exactly once per delivery, answers in request order.

use std::collections::HashMap;
use std::sync::Arc;

use inference_engine_core::job::{Job, JobId, JobStatus};
use inference_engine_core::ports::{Claim, ClaimRequest};

use crate::support::{Harness, job, job_in, now, seconds};

both_engines!(
    a_pending_job_is_started_even_before_its_not_before,
    a_running_job_is_taken_over_only_when_allowed,
    a_running_job_with_a_fresh_heartbeat_is_never_taken_over,
    terminal_and_unknown_jobs_are_not_started,
    outcomes_follow_the_request_order,
    a_repeated_id_in_one_batch_is_started_once,
    concurrent_claims_of_one_job_start_it_exactly_once,
    overlapping_batches_in_opposite_orders_each_start_a_job_once,
);

fn request(id: JobId) -> ClaimRequest {
    ClaimRequest {
        id,
        take_over_if_heartbeat_before: None,
    }
}

/// Takes over any running job whose heartbeat is older than an hour from now.
fn take_over(id: JobId) -> ClaimRequest {
    ClaimRequest {
        id,
        take_over_if_heartbeat_before: Some(now() + seconds(3_600)),
    }
}

fn started(original: &Job, at: chrono::DateTime<chrono::Utc>) -> Job {
    Job {
        status: JobStatus::Running,
        attempts: original.attempts + 1,
        started_at: Some(at),
        heartbeat_at: Some(at),
        not_before: None,
        ..original.clone()
    }
}

async fn a_pending_job_is_started_even_before_its_not_before(harness: &Harness) {
    let mut pending = job();
    // The queue enforces delays; a job it delivered runs.
    pending.not_before = Some(now() + seconds(60));
    harness.insert(std::slice::from_ref(&pending)).await;
    let at = now() + seconds(1);

    let outcome = harness
        .store
        .claim(&[request(pending.id)], at)
        .await
        .unwrap();

    let expected = started(&pending, at);
    assert_eq!(outcome, vec![Claim::Started(Box::new(expected.clone()))]);
    assert_eq!(harness.get(pending.id).await, expected);
}

async fn a_running_job_is_taken_over_only_when_allowed(harness: &Harness) {
    let running = job_in(JobStatus::Running);
    harness.insert(std::slice::from_ref(&running)).await;
    let at = now() + seconds(1);

    let refused = harness
        .store
        .claim(&[request(running.id)], at)
        .await
        .unwrap();
    let taken = harness
        .store
        .claim(&[take_over(running.id)], at)
        .await
        .unwrap();

    assert_eq!(refused, vec![Claim::NotRunnable(Box::new(running.clone()))]);
    let expected = started(&running, at);
    assert_eq!(expected.attempts, 2);
    assert_eq!(taken, vec![Claim::Started(Box::new(expected.clone()))]);
    assert_eq!(harness.get(running.id).await, expected);
}

async fn a_running_job_with_a_fresh_heartbeat_is_never_taken_over(harness: &Harness) {
    let mut running = job_in(JobStatus::Running);
    running.heartbeat_at = Some(now());
    harness.insert(std::slice::from_ref(&running)).await;
    let lease_cutoff = now() - seconds(300);

    let outcome = harness
        .store
        .claim(
            &[ClaimRequest {
                id: running.id,
                take_over_if_heartbeat_before: Some(lease_cutoff),
            }],
            now(),
        )
        .await
        .unwrap();

    assert_eq!(outcome, vec![Claim::NotRunnable(Box::new(running.clone()))]);
    assert_eq!(harness.get(running.id).await, running);
}

async fn terminal_and_unknown_jobs_are_not_started(harness: &Harness) {
    let terminal: Vec<Job> = [
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ]
    .into_iter()
    .map(job_in)
    .collect();
    harness.insert(&terminal).await;
    let unknown = JobId::new();
    let requests: Vec<ClaimRequest> = terminal
        .iter()
        .map(|job| take_over(job.id))
        .chain([take_over(unknown)])
        .collect();

    let outcomes = harness.store.claim(&requests, now()).await.unwrap();

    let mut expected: Vec<Claim> = terminal
        .iter()
        .cloned()
        .map(|job| Claim::NotRunnable(Box::new(job)))
        .collect();
    expected.push(Claim::NotFound);
    assert_eq!(outcomes, expected);
    for job in &terminal {
        assert_eq!(&harness.get(job.id).await, job);
    }
}

async fn outcomes_follow_the_request_order(harness: &Harness) {
    let first = job();
    let done = job_in(JobStatus::Succeeded);
    let second = job();
    harness
        .insert(&[first.clone(), done.clone(), second.clone()])
        .await;
    let unknown = JobId::new();
    let at = now();

    // Deliberately not in id order.
    let outcomes = harness
        .store
        .claim(
            &[
                request(second.id),
                request(unknown),
                request(done.id),
                request(first.id),
            ],
            at,
        )
        .await
        .unwrap();

    assert_eq!(
        outcomes,
        vec![
            Claim::Started(Box::new(started(&second, at))),
            Claim::NotFound,
            Claim::NotRunnable(Box::new(done)),
            Claim::Started(Box::new(started(&first, at))),
        ]
    );
}

async fn a_repeated_id_in_one_batch_is_started_once(harness: &Harness) {
    let pending = job();
    harness.insert(std::slice::from_ref(&pending)).await;
    let at = now();

    let outcomes = harness
        .store
        .claim(&[request(pending.id), take_over(pending.id)], at)
        .await
        .unwrap();

    let expected = started(&pending, at);
    assert_eq!(
        outcomes,
        vec![
            Claim::Started(Box::new(expected.clone())),
            Claim::NotRunnable(Box::new(expected.clone()))
        ]
    );
    assert_eq!(harness.get(pending.id).await.attempts, 1);
}

async fn concurrent_claims_of_one_job_start_it_exactly_once(harness: &Harness) {
    for _ in 0..5 {
        let pending = job();
        harness.insert(std::slice::from_ref(&pending)).await;
        let claims: Vec<_> = (0..8)
            .map(|_| {
                let store = Arc::clone(&harness.store);
                tokio::spawn(async move { store.claim(&[request(pending.id)], now()).await })
            })
            .collect();
        let mut winners = 0;
        for claim in claims {
            match claim.await.unwrap().unwrap().as_slice() {
                [Claim::Started(_)] => winners += 1,
                [Claim::NotRunnable(job)] => assert_eq!(job.status, JobStatus::Running),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(winners, 1);
        assert_eq!(harness.get(pending.id).await.attempts, 1);
    }
}

async fn overlapping_batches_in_opposite_orders_each_start_a_job_once(harness: &Harness) {
    let jobs: Vec<Job> = (0..50).map(|_| job()).collect();
    harness.insert(&jobs).await;
    let forward: Vec<ClaimRequest> = jobs.iter().map(|job| request(job.id)).collect();
    let backward: Vec<ClaimRequest> = forward.iter().rev().copied().collect();

    let batches: Vec<_> = [forward.clone(), backward, forward.clone(), forward]
        .into_iter()
        .map(|batch| {
            let store = Arc::clone(&harness.store);
            tokio::spawn(async move { store.claim(&batch, now()).await })
        })
        .collect();
    let mut starts: HashMap<JobId, usize> = HashMap::new();
    for batch in batches {
        for outcome in batch.await.unwrap().unwrap() {
            if let Claim::Started(job) = outcome {
                *starts.entry(job.id).or_default() += 1;
            }
        }
    }

    assert_eq!(starts.len(), jobs.len());
    assert!(starts.values().all(|count| *count == 1), "{starts:?}");
}
