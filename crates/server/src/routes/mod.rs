//! The router: one module per resource, each group behind its scope and the body limit.

pub mod async_jobs;
pub mod docs;
pub mod health;
pub mod jobs;
pub mod models;
pub mod predict;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use inference_engine_app::AppContext;
use inference_engine_core::auth::Scope;
use tower_http::catch_panic::CatchPanicLayer;

use crate::error::ApiError;
use crate::middleware::{
    BodyLimit, authenticate, enforce_body_limit, request_context, require_scope,
};

pub type AppState = Arc<AppContext>;

/// The whole HTTP API.
pub fn router(ctx: AppState) -> Router {
    let limit = BodyLimit(ctx.settings.max_body_bytes);
    let with_scope = |routes: Router<AppState>, scope: Scope| {
        routes
            .route_layer(from_fn_with_state(limit, enforce_body_limit))
            .route_layer(from_fn_with_state(scope, require_scope))
    };

    let predict = Router::new()
        .route("/predict", post(predict::predict))
        .route("/predict/batch", post(predict::predict_batch))
        .route("/predict/async", post(async_jobs::predict_async))
        .route(
            "/predict/async/batch",
            post(async_jobs::predict_async_batch),
        )
        .route("/predict/async/{job_id}", get(async_jobs::get_async_job))
        .route("/jobs", get(jobs::list_jobs))
        .route("/jobs/{job_id}", get(jobs::get_job))
        .route("/jobs/{job_id}/cancel", post(jobs::cancel_job));
    let models = Router::new()
        .route("/models", get(models::list_models))
        .route("/models/{name}/{version}", get(models::model_details));
    let admin = Router::new()
        .route("/debug/models/loaded", get(models::loaded_models))
        .route("/admin/models/memory", get(models::memory))
        .route(
            "/admin/models/{name}/{version}/reload",
            post(models::reload_model),
        )
        .route(
            "/admin/models/{name}/{version}/unload",
            post(models::unload_model),
        )
        .route("/admin/reload", post(models::reload_configuration));
    let public = Router::new()
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .route_layer(from_fn_with_state(limit, enforce_body_limit));

    Router::new()
        .merge(with_scope(predict, Scope::Predict))
        .merge(with_scope(models, Scope::ReadModels))
        .merge(with_scope(admin, Scope::Admin))
        .merge(public)
        .merge(docs::router())
        .fallback(unknown_route)
        .layer(DefaultBodyLimit::disable())
        .layer(from_fn_with_state(Arc::clone(&ctx.api_keys), authenticate))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(from_fn(request_context))
        .with_state(ctx)
}

async fn unknown_route() -> ApiError {
    ApiError::not_found("no route matches this path")
}

#[expect(
    clippy::needless_pass_by_value,
    reason = "the signature CatchPanicLayer::custom requires"
)]
fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<&str>()
        .map(|message| (*message).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic payload".to_owned());
    ApiError::internal(format!("handler panicked: {message}")).into_response()
}
