//! `purge_finished`: retention deletes old finished jobs, never unfinished ones or recent ones.

use chrono::{DateTime, TimeDelta, Utc};
use inference_engine_core::job::{Job, JobId, JobStatus};

use crate::support::{Harness, job_in, now};

both_engines!(purge_deletes_only_finished_jobs_created_before_the_cutoff);

/// A job in `status` whose id says it was created at `at` (ids are UUIDv7).
fn created_at(status: JobStatus, at: DateTime<Utc>, nth: u8) -> Job {
    let mut job = job_in(status);
    let mut bytes = *JobId::first_at(at).as_uuid().as_bytes();
    bytes[15] = nth;
    job.id = JobId::from(uuid::Uuid::from_bytes(bytes));
    job.created_at = at;
    job
}

async fn purge_deletes_only_finished_jobs_created_before_the_cutoff(harness: &Harness) {
    let cutoff = now() - TimeDelta::days(30);
    let old = cutoff - TimeDelta::days(1);
    let recent = cutoff + TimeDelta::hours(1);
    let old_finished: Vec<Job> = [
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ]
    .into_iter()
    .enumerate()
    .map(|(nth, status)| created_at(status, old, u8::try_from(nth).unwrap()))
    .collect();
    let kept = vec![
        created_at(JobStatus::Pending, old, 10),
        created_at(JobStatus::Running, old, 11),
        created_at(JobStatus::Succeeded, recent, 12),
    ];
    harness.insert(&old_finished).await;
    harness.insert(&kept).await;

    let before = JobId::first_at(cutoff);
    // At most `limit` per call.
    assert_eq!(harness.store.purge_finished(before, 2).await.unwrap(), 2);
    assert_eq!(harness.store.purge_finished(before, 2).await.unwrap(), 1);
    assert_eq!(harness.store.purge_finished(before, 2).await.unwrap(), 0);

    for job in &old_finished {
        assert_eq!(
            harness.store.get(job.id).await.unwrap(),
            None,
            "{:?}",
            job.status
        );
    }
    for job in &kept {
        assert!(
            harness.store.get(job.id).await.unwrap().is_some(),
            "{:?} kept",
            job.status
        );
    }
}
