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

    // Models may declare larger bodies than MAX_BODY_BYTES; the handlers check each model's.
    let predict_guard =
        guard(Some(Scope::Predict), Some(RateLimitGroup::Predict)).with_model_body_limits();
    let predict = Router::new()
        .route("/predict", post(predict_guard.protect(predict::predict)))
        .route(
            "/predict/batch",
            post(predict_guard.protect(predict::predict_batch)),
        )
        .route(
            "/predict/async",
            post(predict_guard.protect(async_jobs::predict_async)),
        )
        .route(
            "/predict/async/batch",
            post(predict_guard.protect(async_jobs::predict_async_batch)),
        )
        .route(
            "/predict/async/{job_id}",
            get(predict_guard.protect(async_jobs::get_async_job)),
        )
        .route(
            "/v2/models/{name}/infer",
            post(predict_guard.protect(v2::infer)),
        )
        .route(
            "/v2/models/{name}/versions/{version}/infer",
            post(predict_guard.protect(v2::infer_version)),
        );
    let jobs_guard = guard(Some(Scope::Predict), Some(RateLimitGroup::Jobs));
    let jobs = Router::new()
        .route("/jobs", get(jobs_guard.protect(jobs::list_jobs)))
        .route("/jobs/{job_id}", get(jobs_guard.protect(jobs::get_job)))
        .route(
            "/jobs/{job_id}/cancel",
            post(jobs_guard.protect(jobs::cancel_job)),
        );
    let models_guard = guard(Some(Scope::ReadModels), Some(RateLimitGroup::Models));
    let models = Router::new()
        .route("/models", get(models_guard.protect(models::list_models)))
        .route(
            "/models/{name}/{version}",
            get(models_guard.protect(models::model_details)),
        )
        .route("/v2", get(models_guard.protect(v2::server_metadata)))
        .route(
            "/v2/models/{name}",
            get(models_guard.protect(v2::model_metadata)),
        )
        .route(
            "/v2/models/{name}/ready",
            get(models_guard.protect(v2::model_ready)),
        )
        .route(
            "/v2/models/{name}/versions/{version}",
            get(models_guard.protect(v2::version_metadata)),
        )
        .route(
            "/v2/models/{name}/versions/{version}/ready",
            get(models_guard.protect(v2::version_ready)),
        );
    let admin_guard = guard(Some(Scope::Admin), None);
    let admin = internal_routes(&admin_guard)
        .route(
            "/admin/models/memory",
            get(admin_guard.protect(models::memory)),
        )
        .route(
            "/admin/models/{name}/{version}/reload",
            post(admin_guard.protect(models::reload_model)),
        )
        .route(
            "/admin/models/{name}/{version}/unload",
            post(admin_guard.protect(models::unload_model)),
        )
        .route(
            "/admin/reload",
            post(admin_guard.protect(models::reload_configuration)),
        );
    // Public and rarely called; the Swagger UI's router is built by utoipa, so this group's
    // guard is its route layer.
    let public = Router::new()
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .route("/v2/health/live", get(v2::live))
        .route("/v2/health/ready", get(v2::ready))
        .merge(playground::router())
        .merge(docs::router());

    let authentication = Authentication(Some(Arc::clone(&ctx.api_keys)));
    let routes = Router::new()
        .merge(predict)
        .merge(jobs)
        .merge(models)
        .merge(admin)
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
/// `admin`): `/metrics` and `/debug/*`, behind `guard`.
fn internal_routes(guard: &RouteGuard) -> Router<AppState> {
    Router::new()
        .route("/metrics", get(guard.protect(health::metrics)))
        .route(
            "/debug/models/loaded",
            get(guard.protect(models::loaded_models)),
        )
}

/// The internal listener's router: [`internal_routes`] with request ids, JSON errors and the
/// access log, and no authentication. Bind it to an address only operators can reach.
pub fn internal_router(ctx: AppState) -> RequestContext<impl HttpService> {
    let routes = internal_routes(&RouteGuard::new(&ctx, None, None))
        .fallback(unknown_route)
        .with_state(ctx);
    with_request_context(routes, Authentication(None))
}

async fn unknown_route() -> ApiError {
    ApiError::not_found("no route matches this path")
}
