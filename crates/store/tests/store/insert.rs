//! `insert`, `get` and `ping`: what goes in comes back, all of it or none of it.

use inference_engine_core::job::{
    IdempotencyKey, JobFailure, JobId, JobMode, JobStatus, Payload, RequestId,
};
use std::time::Duration;

use inference_engine_core::model::{ModelKey, ModelVersion};
use inference_engine_core::steps::StepTiming;
use serde_json::json;

use crate::support::{Harness, job, job_in, now, seconds, tenant};

both_engines!(
    every_field_reads_back_exactly_as_written,
    a_job_without_optional_fields_reads_back_as_written,
    unknown_ids_read_back_as_none,
    a_batch_is_atomic_a_duplicate_id_commits_nothing,
    a_large_batch_is_committed_whole,
    ping_answers,
);

async fn every_field_reads_back_exactly_as_written(harness: &Harness) {
    let created = now();
    // Keys deliberately out of alphabetical (and JSONB's length-first) order.
    let result_text = r#"{"zeta":{"b":2,"aa":[1,2.5,"x",null]},"alpha":true,"mid":"é \"q\""}"#;
    let original = inference_engine_core::job::Job {
        id: JobId::new(),
        tenant_id: tenant("tenant_rt"),
        request_id: RequestId::parse("req-42").unwrap(),
        mode: JobMode::Async,
        status: JobStatus::Failed,
        model: crate::support::model("iris"),
        version: Some(ModelVersion::parse("v2").unwrap()),
        input: Some(Payload::Batch(vec![
            json!({"b": 1, "a": [1, 2]}),
            json!([0.25, -3]),
            json!("text"),
        ])),
        result: Some(serde_json::from_str(result_text).unwrap()),
        failure: Some(JobFailure {
            error_type: "timeout".into(),
            message: "The model did not answer within 250 ms.".into(),
        }),
        attempts: 2,
        max_attempts: 5,
        created_at: created,
        started_at: Some(created + seconds(1)),
        finished_at: Some(created + seconds(2)),
        timeout_ms: Some(250),
        idempotency_key: Some(IdempotencyKey::parse("key-1").unwrap()),
        request_fingerprint: Some("sha256:abcdef".into()),
        heartbeat_at: Some(created + seconds(1)),
        not_before: Some(created + seconds(3)),
        // Whole microseconds: what the column keeps.
        steps: Some(vec![
            StepTiming {
                model: ModelKey::new(
                    crate::support::model("echo"),
                    ModelVersion::parse("v1").unwrap(),
                ),
                queue_time: Duration::from_micros(12),
                inference_time: Duration::from_micros(3_456),
            },
            StepTiming {
                model: ModelKey::new(
                    crate::support::model("iris"),
                    ModelVersion::parse("v2").unwrap(),
                ),
                queue_time: Duration::ZERO,
                inference_time: Duration::from_micros(250_000),
            },
        ]),
    };

    harness.insert(std::slice::from_ref(&original)).await;
    let read = harness.get(original.id).await;

    assert_eq!(read, original);
    // Equal values could still differ in key order; the serialised text must not.
    assert_eq!(
        serde_json::to_string(&read.result).unwrap(),
        serde_json::to_string(&original.result).unwrap()
    );
    assert_eq!(
        serde_json::to_string(&read.input).unwrap(),
        serde_json::to_string(&original.input).unwrap()
    );
}

async fn a_job_without_optional_fields_reads_back_as_written(harness: &Harness) {
    let mut original = job_in(JobStatus::Succeeded);
    original.mode = JobMode::Sync;
    original.input = None;
    original.result = None;
    original.started_at = None;
    original.heartbeat_at = None;

    harness.insert(std::slice::from_ref(&original)).await;

    assert_eq!(harness.get(original.id).await, original);
}

async fn unknown_ids_read_back_as_none(harness: &Harness) {
    assert_eq!(harness.store.get(JobId::new()).await.unwrap(), None);
}

async fn a_batch_is_atomic_a_duplicate_id_commits_nothing(harness: &Harness) {
    let existing = job();
    harness.insert(std::slice::from_ref(&existing)).await;
    let fresh = job();

    let across_batches = harness
        .store
        .insert(vec![fresh.clone(), existing.clone()])
        .await;
    let within_batch = harness
        .store
        .insert(vec![fresh.clone(), fresh.clone()])
        .await;

    assert!(across_batches.is_err());
    assert!(within_batch.is_err());
    assert_eq!(harness.store.get(fresh.id).await.unwrap(), None);
    assert_eq!(harness.get(existing.id).await, existing);
}

async fn a_large_batch_is_committed_whole(harness: &Harness) {
    let jobs: Vec<_> = (0..1_100).map(|_| job()).collect();

    harness.insert(&jobs).await;

    for job in [&jobs[0], &jobs[511], &jobs[512], &jobs[1_099]] {
        assert_eq!(&harness.get(job.id).await, job);
    }
}

async fn ping_answers(harness: &Harness) {
    harness.store.ping().await.unwrap();
}
