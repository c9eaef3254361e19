//! `pending_by_model`: the queue depth per model and version, as the store sees it.

use inference_engine_core::job::{JobMode, JobStatus};
use inference_engine_core::model::ModelVersion;
use inference_engine_core::ports::PendingCount;

use crate::support::{Harness, job_in, model, now, seconds};

both_engines!(pending_counts_group_async_pending_jobs_by_model_and_version);

fn version(name: &str) -> Option<ModelVersion> {
    Some(ModelVersion::parse(name).unwrap())
}

async fn pending_counts_group_async_pending_jobs_by_model_and_version(harness: &Harness) {
    let pending_of = |name: &str, version: Option<ModelVersion>| {
        let mut job = job_in(JobStatus::Pending);
        job.model = model(name);
        job.version = version;
        job
    };
    let mut jobs = vec![
        pending_of("echo", version("v1")),
        pending_of("echo", version("v1")),
        pending_of("echo", version("v2")),
        pending_of("iris", version("v1")),
        pending_of("iris", version("v1")),
        pending_of("iris", version("v1")),
        // Recorded before a version was chosen.
        pending_of("echo", None),
    ];
    // Waiting for a retry is pending too.
    let mut retrying = pending_of("iris", version("v1"));
    retrying.attempts = 1;
    retrying.not_before = Some(now() + seconds(60));
    jobs.push(retrying);
    // Never counted: jobs that run, ran or were cancelled, and sync records (even pending ones,
    // which the engine never writes).
    for status in [
        JobStatus::Running,
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ] {
        let mut job = job_in(status);
        job.version = version("v1");
        jobs.push(job);
    }
    let mut sync = pending_of("echo", version("v1"));
    sync.mode = JobMode::Sync;
    jobs.push(sync);
    assert_eq!(harness.store.pending_by_model().await.unwrap(), vec![]);
    harness.insert(&jobs).await;

    let mut counts = harness.store.pending_by_model().await.unwrap();

    counts.sort();
    let count = |name: &str, version: Option<ModelVersion>, pending| PendingCount {
        model: model(name),
        version,
        pending,
    };
    assert_eq!(
        counts,
        vec![
            count("echo", None, 1),
            count("echo", version("v1"), 2),
            count("echo", version("v2"), 1),
            count("iris", version("v1"), 4),
        ]
    );
}
