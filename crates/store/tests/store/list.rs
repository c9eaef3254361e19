//! `list`: newest first, filtered, paged by cursor, one tenant at a time unless admin.

use inference_engine_core::job::{Job, JobId, JobStatus};
use inference_engine_core::ports::JobFilter;

use crate::support::{Harness, job, job_in, model, tenant};

both_engines!(
    jobs_are_listed_newest_first_up_to_the_limit,
    each_filter_narrows_the_list,
    the_cursor_pages_through_every_job_once,
    a_tenant_sees_only_its_own_jobs_and_no_tenant_filter_sees_all,
);

fn all() -> JobFilter {
    JobFilter {
        tenant: None,
        status: None,
        model: None,
        before: None,
        limit: 100,
    }
}

fn ids(jobs: &[Job]) -> Vec<JobId> {
    jobs.iter().map(|job| job.id).collect()
}

async fn jobs_are_listed_newest_first_up_to_the_limit(harness: &Harness) {
    let jobs: Vec<Job> = (0..5).map(|_| job()).collect();
    harness.insert(&jobs).await;

    let listed = harness
        .store
        .list(&JobFilter { limit: 3, ..all() })
        .await
        .unwrap();

    assert_eq!(ids(&listed), vec![jobs[4].id, jobs[3].id, jobs[2].id]);
    assert_eq!(listed[0], jobs[4]);
}

async fn each_filter_narrows_the_list(harness: &Harness) {
    let pending = job();
    let succeeded = job_in(JobStatus::Succeeded);
    let mut other_model = job();
    other_model.model = model("iris");
    harness
        .insert(&[pending.clone(), succeeded.clone(), other_model.clone()])
        .await;

    let by_status = harness
        .store
        .list(&JobFilter {
            status: Some(JobStatus::Succeeded),
            ..all()
        })
        .await
        .unwrap();
    let by_model = harness
        .store
        .list(&JobFilter {
            model: Some(model("iris")),
            ..all()
        })
        .await
        .unwrap();
    let by_both = harness
        .store
        .list(&JobFilter {
            status: Some(JobStatus::Pending),
            model: Some(model("echo")),
            ..all()
        })
        .await
        .unwrap();
    let before = harness
        .store
        .list(&JobFilter {
            before: Some(other_model.id),
            ..all()
        })
        .await
        .unwrap();

    assert_eq!(ids(&by_status), vec![succeeded.id]);
    assert_eq!(ids(&by_model), vec![other_model.id]);
    assert_eq!(ids(&by_both), vec![pending.id]);
    assert_eq!(ids(&before), vec![succeeded.id, pending.id]);
}

async fn the_cursor_pages_through_every_job_once(harness: &Harness) {
    let jobs: Vec<Job> = (0..5).map(|_| job()).collect();
    harness.insert(&jobs).await;

    let mut pages = Vec::new();
    let mut cursor = None;
    loop {
        let page = harness
            .store
            .list(&JobFilter {
                before: cursor,
                limit: 2,
                ..all()
            })
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        cursor = page.last().map(|job| job.id);
        pages.push(ids(&page));
    }

    let newest_first: Vec<JobId> = jobs.iter().rev().map(|job| job.id).collect();
    assert_eq!(
        pages,
        vec![
            newest_first[0..2].to_vec(),
            newest_first[2..4].to_vec(),
            newest_first[4..].to_vec()
        ]
    );
}

async fn a_tenant_sees_only_its_own_jobs_and_no_tenant_filter_sees_all(harness: &Harness) {
    let mine = job();
    let mut theirs = job();
    theirs.tenant_id = tenant("tenant_b");
    harness.insert(&[mine.clone(), theirs.clone()]).await;

    let for_a = harness
        .store
        .list(&JobFilter {
            tenant: Some(tenant("tenant_a")),
            ..all()
        })
        .await
        .unwrap();
    let for_b = harness
        .store
        .list(&JobFilter {
            tenant: Some(tenant("tenant_b")),
            ..all()
        })
        .await
        .unwrap();
    let for_c = harness
        .store
        .list(&JobFilter {
            tenant: Some(tenant("tenant_c")),
            ..all()
        })
        .await
        .unwrap();
    let for_admin = harness.store.list(&all()).await.unwrap();

    assert_eq!(ids(&for_a), vec![mine.id]);
    assert_eq!(ids(&for_b), vec![theirs.id]);
    assert!(for_c.is_empty());
    assert_eq!(ids(&for_admin), vec![theirs.id, mine.id]);
}
