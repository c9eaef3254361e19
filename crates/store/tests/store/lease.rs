//! `heartbeat` and `stranded`: how lost and forgotten jobs are found again.

use inference_engine_core::job::{Job, JobId, JobStatus};

use crate::support::{Harness, job, job_in, now, seconds};

both_engines!(
    heartbeat_refreshes_running_jobs_only,
    stranded_selects_due_old_pending_and_expired_running_jobs_oldest_first,
    stranded_returns_at_most_the_limit,
);

async fn heartbeat_refreshes_running_jobs_only(harness: &Harness) {
    let running = job_in(JobStatus::Running);
    let pending = job();
    let done = job_in(JobStatus::Succeeded);
    harness
        .insert(&[running.clone(), pending.clone(), done.clone()])
        .await;
    let at = now() + seconds(10);

    harness
        .store
        .heartbeat(&[running.id, pending.id, done.id, JobId::new()], at)
        .await
        .unwrap();
    harness.store.heartbeat(&[], at).await.unwrap();

    assert_eq!(
        harness.get(running.id).await,
        Job {
            heartbeat_at: Some(at),
            ..running
        }
    );
    assert_eq!(harness.get(pending.id).await, pending);
    assert_eq!(harness.get(done.id).await, done);
}

async fn stranded_selects_due_old_pending_and_expired_running_jobs_oldest_first(harness: &Harness) {
    let now = now();
    let aged = |mut job: Job, age_s: i64| {
        job.created_at = now - seconds(age_s);
        job
    };
    let old_pending = aged(job(), 100);
    let old_pending_due = Job {
        not_before: Some(now - seconds(1)),
        ..aged(job(), 90)
    };
    let old_pending_due_now = Job {
        not_before: Some(now),
        ..aged(job(), 85)
    };
    let old_pending_delayed = Job {
        not_before: Some(now + seconds(30)),
        ..aged(job(), 80)
    };
    let young_pending = aged(job(), 5);
    let running_stale = Job {
        heartbeat_at: Some(now - seconds(120)),
        ..aged(job_in(JobStatus::Running), 70)
    };
    let running_never_beat = Job {
        heartbeat_at: None,
        ..aged(job_in(JobStatus::Running), 60)
    };
    let running_fresh = Job {
        heartbeat_at: Some(now - seconds(1)),
        ..aged(job_in(JobStatus::Running), 200)
    };
    let old_finished: Vec<Job> = [
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ]
    .into_iter()
    .map(|status| aged(job_in(status), 300))
    .collect();
    let mut all = vec![
        young_pending,
        running_never_beat.clone(),
        old_pending_delayed,
        running_fresh,
        old_pending.clone(),
        running_stale.clone(),
        old_pending_due.clone(),
        old_pending_due_now.clone(),
    ];
    all.extend(old_finished);
    harness.insert(&all).await;

    let stranded = harness
        .store
        .stranded(now, now - seconds(30), now - seconds(60), 100)
        .await
        .unwrap();

    assert_eq!(
        stranded,
        vec![
            old_pending,
            old_pending_due,
            old_pending_due_now,
            running_stale,
            running_never_beat
        ]
    );
}

async fn stranded_returns_at_most_the_limit(harness: &Harness) {
    let now = now();
    let jobs: Vec<Job> = (0..5)
        .map(|age| Job {
            created_at: now - seconds(100 - age),
            ..job()
        })
        .collect();
    harness.insert(&jobs).await;

    let stranded = harness.store.stranded(now, now, now, 2).await.unwrap();

    assert_eq!(stranded, jobs[..2].to_vec());
}
