//! `GET /jobs/{job_id}`, `GET /jobs` and `POST /jobs/{job_id}/cancel`. Another tenant's job is
//! 404 everywhere, so existence is not revealed; `admin` keys read any job.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use inference_engine_core::auth::{Principal, TenantId};
use inference_engine_core::job::{Job, JobId, JobStatus};
use inference_engine_core::jobs::TenantSelection;
use inference_engine_core::model::ModelName;
use inference_engine_core::ports::JobFilter;
use serde::Deserialize;
use utoipa::IntoParams;

use super::AppState;
use crate::api::{ErrorBody, JobList, JobView};
use crate::error::ApiError;
use crate::extract::CallerPrincipal;
use crate::middleware::AccessLogFields;

const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 500;

fn parse_job_id(raw: &str) -> Result<JobId, ApiError> {
    raw.parse()
        .map_err(|err: inference_engine_core::job::InvalidJobId| {
            ApiError::invalid_request(err.to_string())
        })
}

fn view_response(job: Job) -> Response {
    let fields = AccessLogFields::for_job(&job);
    let mut response = Json(JobView::from(job)).into_response();
    response.extensions_mut().insert(fields);
    response
}

/// The job view of `raw_id` for this caller (shared with `GET /predict/async/{job_id}`).
pub(super) async fn job_view_response(
    ctx: &AppState,
    principal: &Principal,
    raw_id: &str,
) -> Result<Response, ApiError> {
    let id = parse_job_id(raw_id)?;
    let job = ctx
        .async_jobs
        .get(principal, id)
        .await
        .map_err(|err| ApiError::from_classified(&err))?;
    Ok(view_response(job))
}

/// A job: any request, sync or async, of the caller's tenant.
#[utoipa::path(get, path = "/jobs/{job_id}", tag = "Jobs",
    params(("job_id" = String, Path, description = "the job's UUID", example = "0197a3c2-6f1e-7cc0-9b1d-2f0a4c8e5d31")),
    responses(
    (status = 200, description = "the job", body = JobView),
    (status = 404, description = "`job_not_found`", body = ErrorBody),
    (status = 422, description = "the id is not a UUID", body = ErrorBody),
))]
pub async fn get_job(
    State(ctx): State<AppState>,
    CallerPrincipal(principal): CallerPrincipal,
    Path(job_id): Path<String>,
) -> Result<Response, ApiError> {
    job_view_response(&ctx, &principal, &job_id).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `pending`, `running`, `succeeded`, `failed` or `cancelled`.
    status: Option<String>,
    model: Option<String>,
    /// 1 to 500, default 50.
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Whose jobs: a tenant id, or `*` for every tenant. Keys with the `admin` scope may name
    /// any; other keys only their own (else 403 `forbidden`). Default: the caller's tenant.
    #[param(example = "tenant_dev")]
    tenant: Option<String>,
}

/// The jobs of the caller's tenant (or, for admin keys, of `tenant`), newest first.
#[utoipa::path(get, path = "/jobs", tag = "Jobs", params(ListQuery), responses(
    (status = 200, description = "a page of jobs, newest first", body = JobList),
    (status = 403, description = "`forbidden`: another tenant's jobs without the admin scope", body = ErrorBody),
    (status = 422, description = "an invalid filter", body = ErrorBody),
))]
pub async fn list_jobs(
    State(ctx): State<AppState>,
    CallerPrincipal(principal): CallerPrincipal,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<JobList>, ApiError> {
    let Query(query) =
        query.map_err(|rejection| ApiError::invalid_request(rejection.body_text()))?;
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::invalid_request(format!(
            "limit must be between 1 and {MAX_PAGE}"
        )));
    }
    let status = query
        .status
        .filter(|status| !status.is_empty())
        .map(|status| status.parse::<JobStatus>())
        .transpose()
        .map_err(ApiError::invalid_request)?;
    let model = query
        .model
        .filter(|model| !model.is_empty())
        .map(ModelName::parse)
        .transpose()
        .map_err(|err| ApiError::invalid_request(err.to_string()))?;
    let before = query
        .cursor
        .filter(|cursor| !cursor.is_empty())
        .map(|cursor| parse_job_id(&cursor))
        .transpose()?;
    let tenants = match query.tenant.as_deref() {
        None | Some("") => TenantSelection::Own,
        Some("*") => TenantSelection::All,
        Some(tenant) => TenantSelection::Tenant(
            TenantId::parse(tenant).map_err(|err| ApiError::invalid_request(err.to_string()))?,
        ),
    };
    let jobs = ctx
        .async_jobs
        .list(
            &principal,
            tenants,
            JobFilter {
                tenant: None,
                status,
                model,
                before,
                limit,
            },
        )
        .await
        .map_err(|err| ApiError::from_classified(&err))?;
    let full_page = u32::try_from(jobs.len()).is_ok_and(|count| count == limit);
    let next_cursor = jobs
        .last()
        .filter(|_| full_page)
        .map(|job| job.id.to_string());
    Ok(Json(JobList {
        jobs: jobs.into_iter().map(JobView::from).collect(),
        next_cursor,
    }))
}

/// Cancels a pending or running job; a running job's late result is discarded.
#[utoipa::path(post, path = "/jobs/{job_id}/cancel", tag = "Jobs",
    params(("job_id" = String, Path, description = "the job's UUID", example = "0197a3c2-6f1e-7cc0-9b1d-2f0a4c8e5d31")),
    responses(
    (status = 200, description = "the job, now `cancelled`", body = JobView),
    (status = 404, description = "`job_not_found`", body = ErrorBody),
    (status = 409, description = "`job_not_cancellable`: already finished", body = ErrorBody),
))]
pub async fn cancel_job(
    State(ctx): State<AppState>,
    CallerPrincipal(principal): CallerPrincipal,
    Path(job_id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_job_id(&job_id)?;
    let job = ctx
        .async_jobs
        .cancel(&principal, id)
        .await
        .map_err(|err| ApiError::from_classified(&err))?;
    Ok(view_response(job))
}
