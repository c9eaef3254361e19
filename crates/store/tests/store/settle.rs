//! `settle`: only the current attempt of a running job records its outcome.

use std::time::Duration;

use inference_engine_core::job::{Job, JobFailure, JobId, JobStatus};
use inference_engine_core::model::{ModelKey, ModelName, ModelVersion};
use inference_engine_core::ports::{Claim, ClaimRequest, SettleRequest, Settlement};
use inference_engine_core::steps::StepTiming;
use serde_json::json;

use crate::support::{Harness, job, now, seconds};

both_engines!(
    success_records_the_result_and_clears_the_last_error,
    failure_records_the_error,
    retry_returns_the_job_to_pending_with_the_last_error,
    a_superseded_attempt_is_discarded,
    an_outcome_for_a_job_cancelled_meanwhile_is_discarded,
    a_batch_answers_per_request_in_order,
    a_pipelines_step_timings_are_recorded_with_every_outcome,
);

fn failure(error_type: &str) -> JobFailure {
    JobFailure {
        error_type: error_type.into(),
        message: format!("It failed with {error_type}."),
    }
}

/// A pending job, inserted and claimed once.
async fn running(harness: &Harness) -> Job {
    let pending = job();
    harness.insert(std::slice::from_ref(&pending)).await;
    claim(harness, pending.id, false).await
}

async fn claim(harness: &Harness, id: JobId, take_over_running: bool) -> Job {
    let outcome = harness
        .store
        .claim(
            &[ClaimRequest {
                id,
                take_over_if_heartbeat_before: take_over_running
                    .then(|| chrono::Utc::now() + chrono::TimeDelta::hours(1)),
            }],
            now(),
        )
        .await
        .unwrap();
    match outcome.as_slice() {
        [Claim::Started(job)] => (**job).clone(),
        other => panic!("expected Started, got {other:?}"),
    }
}

fn steps(versions: &[&str]) -> Vec<StepTiming> {
    versions
        .iter()
        .enumerate()
        .map(|(index, version)| StepTiming {
            model: ModelKey::new(
                ModelName::parse("echo").unwrap(),
                ModelVersion::parse(*version).unwrap(),
            ),
            queue_time: Duration::from_micros(10 * index as u64),
            inference_time: Duration::from_micros(1_000 + index as u64),
        })
        .collect()
}

async fn a_pipelines_step_timings_are_recorded_with_every_outcome(harness: &Harness) {
    let first = running(harness).await;
    // A retried attempt keeps its steps, as it keeps its error, until the next outcome.
    let retry = SettleRequest {
        steps: Some(steps(&["v1"])),
        ..settle(
            &first,
            Settlement::Retry {
                failure: failure("timeout"),
                not_before: now(),
            },
        )
    };
    assert_eq!(
        harness.store.settle(vec![retry], now()).await.unwrap(),
        vec![true]
    );
    assert_eq!(harness.get(first.id).await.steps, Some(steps(&["v1"])));

    let second = claim(harness, first.id, false).await;
    let succeeded = SettleRequest {
        steps: Some(steps(&["v1", "v2"])),
        ..settle(&second, Settlement::Succeeded(json!([1, 2])))
    };
    assert_eq!(
        harness.store.settle(vec![succeeded], now()).await.unwrap(),
        vec![true]
    );
    assert_eq!(
        harness.get(first.id).await.steps,
        Some(steps(&["v1", "v2"]))
    );

    let other = running(harness).await;
    let failed = SettleRequest {
        steps: Some(steps(&["v2"])),
        ..settle(&other, Settlement::Failed(failure("timeout")))
    };
    assert_eq!(
        harness.store.settle(vec![failed], now()).await.unwrap(),
        vec![true]
    );
    let failed = harness.get(other.id).await;
    assert_eq!(failed.status, JobStatus::Failed);
    assert_eq!(failed.steps, Some(steps(&["v2"])));
}

fn settle(job: &Job, settlement: Settlement) -> SettleRequest {
    SettleRequest {
        id: job.id,
        attempt: job.attempts,
        settlement,
        steps: None,
    }
}

async fn success_records_the_result_and_clears_the_last_error(harness: &Harness) {
    let first = running(harness).await;
    let retry_at = now() + seconds(1);
    harness
        .store
        .settle(
            vec![settle(
                &first,
                Settlement::Retry {
                    failure: failure("timeout"),
                    not_before: retry_at,
                },
            )],
            now(),
        )
        .await
        .unwrap();
    let second = claim(harness, first.id, false).await;
    let at = now() + seconds(2);
    let value = json!({"label": "setosa", "scores": [0.9, 0.1]});

    let recorded = harness
        .store
        .settle(
            vec![settle(&second, Settlement::Succeeded(value.clone()))],
            at,
        )
        .await
        .unwrap();

    assert_eq!(recorded, vec![true]);
    assert_eq!(
        harness.get(first.id).await,
        Job {
            status: JobStatus::Succeeded,
            result: Some(value),
            failure: None,
            finished_at: Some(at),
            ..second
        }
    );
}

async fn failure_records_the_error(harness: &Harness) {
    let running = running(harness).await;
    let at = now() + seconds(2);

    let recorded = harness
        .store
        .settle(
            vec![settle(
                &running,
                Settlement::Failed(failure("invalid_input")),
            )],
            at,
        )
        .await
        .unwrap();

    assert_eq!(recorded, vec![true]);
    assert_eq!(
        harness.get(running.id).await,
        Job {
            status: JobStatus::Failed,
            failure: Some(failure("invalid_input")),
            finished_at: Some(at),
            ..running
        }
    );
}

async fn retry_returns_the_job_to_pending_with_the_last_error(harness: &Harness) {
    let running = running(harness).await;
    let not_before = now() + seconds(30);

    let recorded = harness
        .store
        .settle(
            vec![settle(
                &running,
                Settlement::Retry {
                    failure: failure("worker_lost"),
                    not_before,
                },
            )],
            now(),
        )
        .await
        .unwrap();

    assert_eq!(recorded, vec![true]);
    let retried = harness.get(running.id).await;
    assert_eq!(
        retried,
        Job {
            status: JobStatus::Pending,
            failure: Some(failure("worker_lost")),
            not_before: Some(not_before),
            heartbeat_at: None,
            ..running.clone()
        }
    );
    // The next delivery is attempt 2.
    assert_eq!(claim(harness, running.id, false).await.attempts, 2);
}

async fn a_superseded_attempt_is_discarded(harness: &Harness) {
    let first = running(harness).await;
    // The delivery was lost and taken over: attempt 2 is current now.
    let second = claim(harness, first.id, true).await;

    let late = harness
        .store
        .settle(
            vec![settle(&first, Settlement::Succeeded(json!("late")))],
            now(),
        )
        .await
        .unwrap();

    assert_eq!(late, vec![false]);
    assert_eq!(harness.get(first.id).await, second);
}

async fn an_outcome_for_a_job_cancelled_meanwhile_is_discarded(harness: &Harness) {
    let running = running(harness).await;
    harness.store.cancel(running.id, now()).await.unwrap();
    let cancelled = harness.get(running.id).await;

    let recorded = harness
        .store
        .settle(
            vec![settle(&running, Settlement::Succeeded(json!(1)))],
            now(),
        )
        .await
        .unwrap();

    assert_eq!(recorded, vec![false]);
    assert_eq!(harness.get(running.id).await, cancelled);
    assert_eq!(cancelled.status, JobStatus::Cancelled);
}

async fn a_batch_answers_per_request_in_order(harness: &Harness) {
    let succeeding = running(harness).await;
    let failing = running(harness).await;
    let retrying = running(harness).await;
    let at = now() + seconds(1);
    let unknown = Job {
        id: JobId::new(),
        ..succeeding.clone()
    };

    let recorded = harness
        .store
        .settle(
            vec![
                settle(
                    &retrying,
                    Settlement::Retry {
                        failure: failure("timeout"),
                        not_before: at,
                    },
                ),
                settle(&unknown, Settlement::Succeeded(json!(0))),
                settle(&succeeding, Settlement::Succeeded(json!({"b": 1, "a": 2}))),
                settle(&failing, Settlement::Failed(failure("inference_error"))),
                // A repeat of a settled job is never recorded twice.
                settle(&succeeding, Settlement::Failed(failure("late"))),
            ],
            at,
        )
        .await
        .unwrap();

    assert_eq!(recorded, vec![true, false, true, true, false]);
    assert_eq!(harness.get(retrying.id).await.status, JobStatus::Pending);
    let succeeded = harness.get(succeeding.id).await;
    assert_eq!(succeeded.status, JobStatus::Succeeded);
    assert_eq!(succeeded.result, Some(json!({"b": 1, "a": 2})));
    assert_eq!(harness.get(failing.id).await.status, JobStatus::Failed);
    assert_eq!(harness.store.get(unknown.id).await.unwrap(), None);
}
