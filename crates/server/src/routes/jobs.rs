//! `GET /jobs/{job_id}`: a job of the caller's tenant (any job for `admin`).

use axum::Json;
use axum::extract::{Path, State};
use axum::{Extension, response::IntoResponse, response::Response};
use inference_engine_core::auth::Principal;
use inference_engine_core::error::ErrorKind;
use inference_engine_core::job::JobId;

use super::AppState;
use crate::api::{ErrorBody, JobView};
use crate::error::ApiError;
use crate::middleware::AccessLogFields;

/// A job. Unknown ids and other tenants' jobs are both 404, so existence is not revealed.
#[utoipa::path(get, path = "/jobs/{job_id}", params(("job_id" = String, Path, description = "UUID")), responses(
    (status = 200, body = JobView),
    (status = 404, description = "`job_not_found`", body = ErrorBody),
    (status = 422, description = "the id is not a UUID", body = ErrorBody),
))]
pub async fn get_job(
    State(ctx): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(job_id): Path<String>,
) -> Result<Response, ApiError> {
    let id: JobId = job_id
        .parse()
        .map_err(|err: inference_engine_core::job::InvalidJobId| {
            ApiError::invalid_request(err.to_string())
        })?;
    let job = ctx
        .jobs
        .get(id)
        .await
        .map_err(|err| ApiError::from_classified(&err))?
        .filter(|job| principal.can_read_tenant(&job.tenant_id))
        .ok_or_else(|| {
            ApiError::new(
                ErrorKind::NotFound,
                "job_not_found",
                format!("job {id} not found"),
            )
        })?;
    let fields = AccessLogFields {
        job_id: Some(id.to_string()),
        model: Some(job.model.to_string()),
        version: job.version.as_ref().map(ToString::to_string),
    };
    let mut response = Json(JobView::from(job)).into_response();
    response.extensions_mut().insert(fields);
    Ok(response)
}
