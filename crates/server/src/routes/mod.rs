//! The router: one module per resource, each group behind its scope and the body limit.

pub mod async_jobs;
pub mod docs;
pub mod health;
pub mod jobs;
pub mod models;
pub mod playground;
pub mod predict;
pub mod v2;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use inference_engine_app::AppContext;
use inference_engine_core::auth::Scope;
use inference_engine_core::config::RateLimitGroup;
use tower::Layer;

use crate::error::ApiError;
use crate::middleware::{
    Authentication, HttpService, RequestContext, RequestContextLayer, RouteGuard,
};

pub type AppState = Arc<AppContext>;

/// The whole HTTP API.
pub fn router(ctx: AppState) -> RequestContext<impl HttpService> {
    let guard = |scope: Option<Scope>, rate_limit: Option<RateLimitGroup>| {
        RouteGuard::new(&ctx, scope, rate_limit)
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
        .route("/v2/models/{name}/infer", post(v2::infer))
        .route(
            "/v2/models/{name}/versions/{version}/infer",
            post(v2::infer_version),
        );
    let jobs = Router::new()
        .route("/jobs", get(jobs::list_jobs))
        .route("/jobs/{job_id}", get(jobs::get_job))
        .route("/jobs/{job_id}/cancel", post(jobs::cancel_job));
    let models = Router::new()
        .route("/models", get(models::list_models))
        .route("/models/{name}/{version}", get(models::model_details))
        .route("/v2", get(v2::server_metadata))
        .route("/v2/models/{name}", get(v2::model_metadata))
        .route("/v2/models/{name}/ready", get(v2::model_ready))
        .route(
            "/v2/models/{name}/versions/{version}",
            get(v2::version_metadata),
        )
        .route(
            "/v2/models/{name}/versions/{version}/ready",
            get(v2::version_ready),
        );
    let admin = Router::new()
        .merge(internal_routes())
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
        .route("/v2/health/live", get(v2::live))
        .route("/v2/health/ready", get(v2::ready))
        .merge(playground::router())
        .merge(docs::router());

    let authentication = Authentication(Some(Arc::clone(&ctx.api_keys)));
    let routes = Router::new()
        .merge(predict.route_layer(guard(Some(Scope::Predict), Some(RateLimitGroup::Predict))))
        .merge(jobs.route_layer(guard(Some(Scope::Predict), Some(RateLimitGroup::Jobs))))
        .merge(models.route_layer(guard(Some(Scope::ReadModels), Some(RateLimitGroup::Models))))
        .merge(admin.route_layer(guard(Some(Scope::Admin), None)))
        .merge(public.route_layer(guard(None, None)))
        .fallback(unknown_route)
        .with_state(ctx);
    with_request_context(routes, authentication)
}

/// `routes` behind the layer every request passes: request context (id, authentication,
/// panics, error bodies, access log). It wraps the router once: `Router::layer` would wrap
/// every route, and each wrapped route clones (and allocates) the services under it on every
/// request. Handlers read bodies with `extract::GuardedBody` (the route guard's limit), not
/// axum's `Bytes`, which would apply axum's own 2 MB default.
fn with_request_context(
    routes: Router,
    authentication: Authentication,
) -> RequestContext<impl HttpService> {
    RequestContextLayer(authentication).layer(routes)
}

/// What `ADMIN_LISTEN_ADDR` serves without authentication (and the public listener with
/// `admin`): `/metrics` and `/debug/*`.
fn internal_routes() -> Router<AppState> {
    Router::new()
        .route("/metrics", get(health::metrics))
        .route("/debug/models/loaded", get(models::loaded_models))
}

/// The internal listener's router: [`internal_routes`] with request ids, JSON errors and the
/// access log, and no authentication. Bind it to an address only operators can reach.
pub fn internal_router(ctx: AppState) -> RequestContext<impl HttpService> {
    let routes = Router::new()
        .merge(internal_routes())
        .route_layer(RouteGuard::new(&ctx, None, None))
        .fallback(unknown_route)
        .with_state(ctx);
    with_request_context(routes, Authentication(None))
}

async fn unknown_route() -> ApiError {
    ApiError::not_found("no route matches this path")
}
