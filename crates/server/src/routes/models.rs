//! `GET /models`.

use axum::Json;
use axum::extract::State;

use super::AppState;
use crate::api::{ErrorBody, ModelInfo, ModelList};

/// Every model this server knows, by name then version.
#[utoipa::path(get, path = "/models", responses(
    (status = 200, body = ModelList),
    (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody),
))]
pub async fn list_models(State(ctx): State<AppState>) -> Json<ModelList> {
    let models = ctx
        .inference
        .registry()
        .statuses()
        .into_iter()
        .map(ModelInfo::from)
        .collect();
    Json(ModelList { models })
}
