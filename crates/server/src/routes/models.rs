//! Models: the catalogue (`GET /models`, `GET /models/{name}/{version}`), what is loaded
//! (`/debug/models/loaded`, `/admin/models/memory`) and the admin actions (reload, unload,
//! configuration reload).

use axum::Json;
use axum::extract::{Path, State};
use inference_engine_core::model::{ModelKey, ModelName, ModelVersion};

use super::AppState;
use crate::api::{
    ErrorBody, LoadedModelList, LoadedModelView, MemoryView, ModelActionResponse, ModelDetailsView,
    ModelInfo, ModelList, ReloadResponse,
};
use crate::error::ApiError;

/// Every model this server knows, by name then version.
#[utoipa::path(get, path = "/models", tag = "Models", responses(
    (status = 200, description = "every model with its backend, `loaded` and `ready`", body = ModelList),
))]
pub async fn list_models(State(ctx): State<AppState>) -> Json<ModelList> {
    let models = ctx
        .registry
        .statuses()
        .into_iter()
        .map(ModelInfo::from)
        .collect();
    Json(ModelList { models })
}

/// One model: backend, inputs and outputs, routing rule, SLA timeout and executor pool.
#[utoipa::path(get, path = "/models/{name}/{version}", tag = "Models",
    params(
        ("name" = String, Path, description = "model name", example = "iris"),
        ("version" = String, Path, description = "model version", example = "v1"),
    ),
    responses(
    (status = 200, description = "the model's signature, runtime, routing, SLA and pool", body = ModelDetailsView),
    (status = 404, description = "`model_not_found`", body = ErrorBody),
))]
pub async fn model_details(
    State(ctx): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<ModelDetailsView>, ApiError> {
    let key = model_key(name, version)?;
    let details = ctx.registry.details(&key).ok_or_else(|| unknown(&key))?;
    Ok(Json(ModelDetailsView::from(details)))
}

/// Loaded models, least recently used first.
#[utoipa::path(get, path = "/debug/models/loaded", tag = "Admin", responses(
    (status = 200, description = "loaded models, least recently used first", body = LoadedModelList),
))]
pub async fn loaded_models(State(ctx): State<AppState>) -> Json<LoadedModelList> {
    Json(LoadedModelList {
        loaded_models: ctx
            .registry
            .loaded()
            .into_iter()
            .map(LoadedModelView::from)
            .collect(),
    })
}

/// How many models are loaded, and how much memory they take, against the caps.
#[utoipa::path(get, path = "/admin/models/memory", tag = "Admin", responses(
    (status = 200, description = "the loaded models' memory against the LRU caps", body = MemoryView),
))]
pub async fn memory(State(ctx): State<AppState>) -> Json<MemoryView> {
    let loaded: Vec<LoadedModelView> = ctx
        .registry
        .loaded()
        .into_iter()
        .map(LoadedModelView::from)
        .collect();
    let serving = ctx.registry.serving();
    let caps = &serving.config.registry;
    Json(MemoryView {
        loaded: loaded.len(),
        max_loaded: caps.max_loaded,
        memory_bytes: loaded.iter().map(|model| model.memory_bytes).sum(),
        max_memory_mb: caps.max_memory_mb,
        models: loaded,
    })
}

/// Loads the model again from the repository. The old version serves until the new one is
/// ready, and keeps serving if the reload fails (422 `reload_failed` with the reason).
#[utoipa::path(post, path = "/admin/models/{name}/{version}/reload", tag = "Admin",
    params(
        ("name" = String, Path, description = "model name", example = "iris"),
        ("version" = String, Path, description = "model version", example = "v1"),
    ),
    responses(
    (status = 200, description = "`{\"reloaded\": true, \"model\", \"version\"}`", body = ModelActionResponse),
    (status = 404, description = "`model_not_found`", body = ErrorBody),
    (status = 422, description = "`reload_failed`: the previous version keeps serving", body = ErrorBody),
))]
pub async fn reload_model(
    State(ctx): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<ModelActionResponse>, ApiError> {
    let key = model_key(name, version)?;
    ctx.registry
        .reload_model(&key)
        .await
        .map_err(|err| ApiError::from_classified(&err))?;
    tracing::info!(model = %key, "model reloaded");
    Ok(Json(ModelActionResponse::reloaded(&key)))
}

/// Drops the model from memory; requests running on it finish first.
#[utoipa::path(post, path = "/admin/models/{name}/{version}/unload", tag = "Admin",
    params(
        ("name" = String, Path, description = "model name", example = "iris"),
        ("version" = String, Path, description = "model version", example = "v1"),
    ),
    responses(
    (status = 200, description = "`unloaded` says whether the model was in memory", body = ModelActionResponse),
    (status = 404, description = "`model_not_found`", body = ErrorBody),
))]
pub async fn unload_model(
    State(ctx): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<ModelActionResponse>, ApiError> {
    let key = model_key(name, version)?;
    let was_loaded = ctx
        .registry
        .unload(&key)
        .map_err(|err| ApiError::from_classified(&err))?;
    Ok(Json(ModelActionResponse::unloaded(&key, was_loaded)))
}

/// Re-reads `engine.toml` and rescans the model repository, atomically. An invalid file is
/// rejected with 400 and the running configuration keeps serving.
#[utoipa::path(post, path = "/admin/reload", tag = "Admin", responses(
    (status = 200, description = "the new configuration and model catalogue serve", body = ReloadResponse),
    (status = 400, description = "`invalid_configuration`: nothing changed", body = ErrorBody),
))]
pub async fn reload_configuration(
    State(ctx): State<AppState>,
) -> Result<Json<ReloadResponse>, ApiError> {
    ctx.reload().await.map_err(|err| {
        tracing::warn!(error = %err, "configuration reload rejected; the running configuration stays");
        ApiError::invalid_configuration(err.to_string())
    })?;
    Ok(Json(ReloadResponse {
        reloaded: true,
        models: ctx.registry.statuses().len(),
    }))
}

fn model_key(name: String, version: String) -> Result<ModelKey, ApiError> {
    let name = ModelName::parse(name).map_err(|err| ApiError::not_found(err.to_string()))?;
    let version =
        ModelVersion::parse(version).map_err(|err| ApiError::not_found(err.to_string()))?;
    Ok(ModelKey::new(name, version))
}

fn unknown(key: &ModelKey) -> ApiError {
    let err = inference_engine_core::registry::RegistryError::UnknownModel(key.clone());
    ApiError::from_classified(&err)
}
