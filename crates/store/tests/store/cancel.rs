//! `cancel`: `pending | running → cancelled`; terminal jobs stay as they are.

use inference_engine_core::job::{Job, JobId, JobStatus};
use inference_engine_core::ports::CancelOutcome;

use crate::support::{Harness, job_in, now, seconds};

both_engines!(
    a_pending_job_is_cancelled,
    a_running_job_is_cancelled,
    a_terminal_job_is_reported_unchanged,
    an_unknown_job_is_not_found,
    cancelled_among_names_exactly_the_cancelled_jobs,
);

async fn cancels(harness: &Harness, status: JobStatus) {
    let original = job_in(status);
    harness.insert(std::slice::from_ref(&original)).await;
    let at = now() + seconds(5);

    let outcome = harness.store.cancel(original.id, at).await.unwrap();

    let CancelOutcome::Cancelled(cancelled) = outcome else {
        panic!("expected Cancelled, got {outcome:?}");
    };
    assert_eq!(cancelled.status, JobStatus::Cancelled);
    assert_eq!(cancelled.finished_at, Some(at));
    let failure = cancelled.failure.clone().expect("a cancelled job says why");
    assert_eq!(failure.error_type, "cancelled");
    assert!(failure.message.ends_with('.'), "{:?}", failure.message);
    // Nothing else changed.
    assert_eq!(
        *cancelled,
        Job {
            status: JobStatus::Cancelled,
            finished_at: Some(at),
            failure: Some(failure),
            ..original
        }
    );
    assert_eq!(harness.get(cancelled.id).await, *cancelled);
}

async fn a_pending_job_is_cancelled(harness: &Harness) {
    cancels(harness, JobStatus::Pending).await;
}

async fn a_running_job_is_cancelled(harness: &Harness) {
    cancels(harness, JobStatus::Running).await;
}

async fn a_terminal_job_is_reported_unchanged(harness: &Harness) {
    for status in [JobStatus::Succeeded, JobStatus::Failed] {
        let terminal = job_in(status);
        harness.insert(std::slice::from_ref(&terminal)).await;

        let outcome = harness.store.cancel(terminal.id, now()).await.unwrap();

        assert_eq!(
            outcome,
            CancelOutcome::AlreadyTerminal(Box::new(terminal.clone()))
        );
        assert_eq!(harness.get(terminal.id).await, terminal);
    }
    let pending = job_in(JobStatus::Pending);
    harness.insert(std::slice::from_ref(&pending)).await;
    let CancelOutcome::Cancelled(cancelled) =
        harness.store.cancel(pending.id, now()).await.unwrap()
    else {
        panic!("first cancel must succeed");
    };

    let again = harness
        .store
        .cancel(pending.id, now() + seconds(1))
        .await
        .unwrap();

    assert_eq!(again, CancelOutcome::AlreadyTerminal(cancelled));
}

async fn an_unknown_job_is_not_found(harness: &Harness) {
    assert_eq!(
        harness.store.cancel(JobId::new(), now()).await.unwrap(),
        CancelOutcome::NotFound
    );
}

async fn cancelled_among_names_exactly_the_cancelled_jobs(harness: &Harness) {
    let running = job_in(JobStatus::Running);
    let cancelled = job_in(JobStatus::Running);
    let done = job_in(JobStatus::Succeeded);
    harness
        .insert(&[running.clone(), cancelled.clone(), done.clone()])
        .await;
    harness
        .store
        .cancel(cancelled.id, now() + seconds(1))
        .await
        .unwrap();

    let found = harness
        .store
        .cancelled_among(&[running.id, cancelled.id, done.id, JobId::new()])
        .await
        .unwrap();
    assert_eq!(found, vec![cancelled.id]);
    assert!(harness.store.cancelled_among(&[]).await.unwrap().is_empty());
}
