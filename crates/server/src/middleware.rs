//! Cross-cutting request handling, in the order of SPEC §4.1: request id → auth → scope →
//! (rate limit) → body size → body validation (in the extractors) → handler.
//!
//! Two layers do all of it. `request_context` is the outermost: it assigns the request id,
//! authenticates the key, renders every error body (so each one carries that id), stamps
//! `X-Request-ID` on every response and writes the one access-log line per request.
//! `guard_route` wraps each route group: scope, rate limit and body limit, in that order. Few
//! layers matter: each one costs allocations and a dynamic call on every request.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use inference_engine_app::telemetry::{self, AccessRecord};
use inference_engine_core::auth::{ApiKeyTable, Principal, Scope, TenantId};
use inference_engine_core::config::RateLimitGroup;
use inference_engine_core::error::ErrorKind;
use inference_engine_core::job::{Job, JobId, RequestId};
use inference_engine_core::model::ModelKey;
use inference_engine_core::observe;
use inference_engine_core::request_scope::in_request;

use crate::error::{
    ApiError, ErrorStyle, PendingErrorBody, fallback_code, grpc_code_line, render_error_body,
};
use crate::extract::RequestIdFromClient;
use crate::ratelimit::{RATELIMIT_LIMIT, charge};
use crate::routes::AppState;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// Paths served without an API key.
fn is_public(path: &str) -> bool {
    matches!(
        path,
        "/health" | "/ready" | "/openapi.json" | "/v2/health/live" | "/v2/health/ready"
    ) || path == "/docs"
        || path.starts_with("/docs/")
        || path == "/playground"
        || path.starts_with("/playground/")
}

/// What a handler knows about the request that belongs in its access-log line.
#[derive(Debug, Clone, Default)]
pub struct AccessLogFields {
    pub job_id: Option<String>,
    pub model: Option<String>,
    pub version: Option<String>,
}

impl AccessLogFields {
    pub fn for_job(job: &Job) -> Self {
        Self {
            job_id: Some(job.id.to_string()),
            model: Some(job.model.to_string()),
            version: job.version.as_ref().map(ToString::to_string),
        }
    }

    /// A prediction's job, if one was recorded, and the model version that served it.
    pub fn for_prediction(job_id: Option<JobId>, model: Option<&ModelKey>) -> Self {
        Self {
            job_id: job_id.map(|id| id.to_string()),
            model: model.map(|key| key.name.to_string()),
            version: model.map(|key| key.version.to_string()),
        }
    }
}

/// The API keys a listener checks; `None` on the internal listener, which serves without
/// authentication.
#[derive(Debug, Clone)]
pub struct Authentication(pub Option<Arc<ApiKeyTable>>);

/// Outermost layer: request id, authentication, error bodies, `X-Request-ID`, access log.
pub async fn request_context(
    State(Authentication(keys)): State<Authentication>,
    mut request: Request,
    next: Next,
) -> Response {
    let (request_id, from_client) = RequestId::sent_or_generated(
        request
            .headers()
            .get(&REQUEST_ID)
            .and_then(|value| value.to_str().ok()),
    );
    let request_id_from_client = RequestIdFromClient(from_client);
    let mut access = AccessLog::start(
        request_id.clone(),
        request.method().clone(),
        request.uri().clone(),
    );
    request.extensions_mut().insert(request_id.clone());
    request.extensions_mut().insert(request_id_from_client);

    // Every log line written for this request names it, on this thread and on the executor's.
    let mut response = match keys {
        Some(keys) => in_request(request_id.clone(), authenticate(&keys, request, next)).await,
        None => in_request(request_id.clone(), next.run(request)).await,
    };

    finish_error_body(
        &mut response,
        request_id.as_str(),
        ErrorStyle::for_path(access.uri.path()),
    );
    if let Ok(value) = HeaderValue::from_str(request_id.as_str()) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    access.log(&response);
    response
}

/// The access-log line of one request, HTTP or gRPC. If the client goes away before the
/// response is ready, the request's future is dropped; the line is then written by `Drop` with
/// status 499 (client closed request), so even an abandoned request leaves its line. Its model
/// run goes on and its job is recorded all the same (`AppContext::predict`).
pub(crate) struct AccessLog {
    started: Instant,
    request_id: RequestId,
    method: Method,
    /// A clone shares the bytes hyper parsed the request line into; a `String` of the path
    /// would be one more allocation and copy per request.
    uri: Uri,
    /// A gRPC call: its `route` label is the method's path, and an abandoned call is
    /// `CANCELLED`.
    grpc: bool,
    logged: bool,
}

/// How a request ended, as its access-log line says it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outcome {
    pub status: u16,
    /// gRPC calls: the call's status code (`OK`, `NOT_FOUND`, ...); `status` is then its HTTP
    /// equivalent.
    pub grpc_code: Option<&'static str>,
}

impl Outcome {
    /// An HTTP request's end, by its response status.
    fn http(status: u16) -> Self {
        Self {
            status,
            grpc_code: None,
        }
    }

    /// A gRPC call's end, by its status code.
    pub(crate) fn grpc(code: tonic::Code) -> Self {
        let (name, status) = grpc_code_line(code);
        Self {
            status,
            grpc_code: Some(name),
        }
    }
}

impl AccessLog {
    fn start(request_id: RequestId, method: Method, uri: Uri) -> Self {
        Self {
            started: Instant::now(),
            request_id,
            method,
            uri,
            grpc: false,
            logged: false,
        }
    }

    /// The line of a gRPC call to `path` (`/inference.GRPCInferenceService/ModelInfer`): an
    /// HTTP/2 `POST` to that path.
    pub(crate) fn start_grpc(request_id: RequestId, path: &'static str) -> Self {
        let mut access = Self::start(request_id, Method::POST, Uri::from_static(path));
        access.grpc = true;
        access
    }

    pub(crate) fn request_id(&self) -> &RequestId {
        &self.request_id
    }

    fn log(&mut self, response: &Response) {
        let tenant = response.extensions().get::<TenantId>();
        let fields = response.extensions().get::<AccessLogFields>();
        let route = response
            .extensions()
            .get::<MatchedRoute>()
            .map(|route| route.0.as_str());
        self.write(
            Outcome::http(response.status().as_u16()),
            route,
            tenant,
            fields,
        );
    }

    /// Writes the line (once; `Drop` writes it otherwise). `route`: the route template the
    /// request matched, if any.
    pub(crate) fn write(
        &mut self,
        outcome: Outcome,
        route: Option<&str>,
        tenant: Option<&TenantId>,
        fields: Option<&AccessLogFields>,
    ) {
        self.logged = true;
        let route = route.unwrap_or(match self.grpc {
            true => self.uri.path(),
            false => UNMATCHED_ROUTE,
        });
        let latency = self.started.elapsed();
        observe::http_request(route, outcome.status, latency);
        if tracing::enabled!(tracing::Level::INFO) {
            telemetry::access_log(&AccessRecord {
                request_id: self.request_id.as_str(),
                tenant_id: tenant.map(TenantId::as_str),
                job_id: fields.and_then(|f| f.job_id.as_deref()),
                model: fields.and_then(|f| f.model.as_deref()),
                version: fields.and_then(|f| f.version.as_deref()),
                method: self.method.as_str(),
                path: self.uri.path(),
                status: outcome.status,
                grpc_code: outcome.grpc_code,
                latency,
            });
        }
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        if !self.logged {
            let outcome = match self.grpc {
                true => Outcome::grpc(tonic::Code::Cancelled),
                false => Outcome::http(CLIENT_CLOSED_REQUEST),
            };
            self.write(outcome, None, None, None);
        }
    }
}

/// The route template a request matched (`/jobs/{job_id}`), for metrics that must not have a
/// label value per raw path.
#[derive(Debug, Clone)]
pub struct MatchedRoute(pub MatchedPath);

/// The `route` label of requests that matched no route (or were abandoned before answering).
const UNMATCHED_ROUTE: &str = "unmatched";

/// What a route group requires before its handler runs; [`guard_route`] checks it.
#[derive(Debug, Clone)]
pub struct RouteGuard {
    /// `None`: a public route.
    pub scope: Option<Scope>,
    /// `None`: not rate limited.
    pub rate_limit: Option<RateLimitGroup>,
    pub body_limit: BodyLimit,
    pub ctx: AppState,
}

impl RouteGuard {
    /// The guard of a route group; every group gets the `MAX_BODY_BYTES` limit.
    pub fn new(ctx: &AppState, scope: Option<Scope>, rate_limit: Option<RateLimitGroup>) -> Self {
        Self {
            scope,
            rate_limit,
            body_limit: BodyLimit(ctx.settings.max_body_bytes),
            ctx: Arc::clone(ctx),
        }
    }
}

/// Route layer: scope (403) → rate limit (429) → body size (413), then the handler. Also hands
/// the matched route template out to `request_context` on the response.
pub async fn guard_route(
    State(guard): State<RouteGuard>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| MatchedRoute(path.clone()));
    let mut response = guarded(&guard, request, next).await;
    if let Some(route) = route {
        response.extensions_mut().insert(route);
    }
    response
}

async fn guarded(guard: &RouteGuard, request: Request, next: Next) -> Response {
    let principal = request.extensions().get::<Principal>();
    if let Some(scope) = guard.scope
        && !principal.is_some_and(|principal| principal.allows(scope))
    {
        return ApiError::new(
            ErrorKind::Forbidden,
            "forbidden",
            format!("this API key lacks the {:?} scope", scope.as_str()),
        )
        .into_response();
    }
    let tenant = principal.map(|principal| principal.tenant().clone());
    let limit_headers = match (guard.rate_limit, tenant) {
        (Some(group), Some(tenant)) => match charge(&guard.ctx, &tenant, group, 1).await {
            Ok(headers) => headers,
            Err(refused) => return refused.into_response(),
        },
        _ => None,
    };
    let mut response = enforce_body_limit(guard.body_limit, request, next).await;
    if let Some(headers) = limit_headers {
        // A batch handler that charged its items set fresher headers already.
        if !response.headers().contains_key(RATELIMIT_LIMIT) {
            headers.apply(&mut response);
        }
    }
    response
}

/// nginx's status for a request whose client disconnected before the response.
const CLIENT_CLOSED_REQUEST: u16 = 499;

/// Renders a pending `ApiError` body, or replaces any other non-JSON error body.
fn finish_error_body(response: &mut Response, request_id: &str, style: ErrorStyle) {
    let body = if let Some(pending) = response.extensions_mut().remove::<PendingErrorBody>() {
        render_error_body(
            style,
            &pending.detail,
            pending.code,
            request_id,
            &pending.extra,
        )
    } else if response.status().is_client_error() || response.status().is_server_error() {
        let is_json = response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|value| value.as_bytes().starts_with(b"application/json"));
        if is_json {
            return;
        }
        let (code, detail) = fallback_code(response.status());
        render_error_body(style, detail, code, request_id, &serde_json::Map::new())
    } else {
        return;
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.remove(header::CONTENT_LENGTH);
    *response.body_mut() = Body::from(body);
}

/// The key from `X-API-Key`, or else from `Authorization: Bearer`.
fn presented_key(headers: &HeaderMap) -> Option<&str> {
    key_from(
        headers.get(&API_KEY).map(|value| value.to_str().ok()),
        headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok()),
    )
}

/// The presented key: the `x-api-key` value when there is one (`Some(None)`: present but not
/// text), else the token of `authorization: Bearer <key>`. HTTP headers and gRPC metadata alike.
pub(crate) fn key_from<'a>(
    api_key: Option<Option<&'a str>>,
    authorization: Option<&'a str>,
) -> Option<&'a str> {
    if let Some(key) = api_key {
        return key;
    }
    let (scheme, token) = authorization?.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Resolves the API key to a `Principal` (401 without a valid one, except on public paths).
async fn authenticate(keys: &ApiKeyTable, mut request: Request, next: Next) -> Response {
    if is_public(request.uri().path()) {
        return next.run(request).await;
    }
    let principal = presented_key(request.headers()).and_then(|key| keys.authenticate(key));
    let Some(principal) = principal.cloned() else {
        let mut response = ApiError::new(
            ErrorKind::Unauthenticated,
            "unauthenticated",
            "a valid API key is required: send it as X-API-Key or Authorization: Bearer",
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    };
    let tenant = principal.tenant().clone();
    request.extensions_mut().insert(principal);
    let mut response = next.run(request).await;
    response.extensions_mut().insert(tenant);
    response
}

/// The `MAX_BODY_BYTES` limit.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// After a 413, read and discard up to this much more so the client can read the response
/// instead of having its connection reset under it.
const DRAIN_AT_MOST: usize = 4 << 20;
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Buffers the body, counting the bytes actually received: 413 past the limit whatever
/// `Content-Length` claims, and at once when `Content-Length` itself is over the limit.
async fn enforce_body_limit(BodyLimit(limit): BodyLimit, request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    let (parts, body) = request.into_parts();
    if let Some(declared) = declared.filter(|declared| *declared > limit as u64) {
        if declared <= (limit + DRAIN_AT_MOST) as u64 {
            drain(body).await;
        }
        return too_large(limit);
    }
    match read_within(body, limit).await {
        Ok(bytes) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(BodyReadError::TooLarge) => too_large(limit),
        Err(BodyReadError::Broken) => ApiError::new(
            ErrorKind::MalformedRequest,
            "malformed_request",
            "the request body could not be read to its end",
        )
        .into_response(),
    }
}

fn too_large(limit: usize) -> Response {
    ApiError::new(
        ErrorKind::PayloadTooLarge,
        "payload_too_large",
        format!("the request body exceeds the limit of {limit} bytes"),
    )
    .into_response()
}

enum BodyReadError {
    TooLarge,
    Broken,
}

async fn read_within(mut body: Body, limit: usize) -> Result<Bytes, BodyReadError> {
    let mut buffer: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| BodyReadError::Broken)?;
        if let Ok(data) = frame.into_data() {
            if buffer.len() + data.len() > limit {
                drain(body).await;
                return Err(BodyReadError::TooLarge);
            }
            if buffer.is_empty() && body_is_done(&body) {
                // The whole body arrived in one frame: keep it without copying.
                return Ok(data);
            }
            buffer.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(buffer))
}

fn body_is_done(body: &Body) -> bool {
    http_body::Body::is_end_stream(body)
}

async fn drain(mut body: Body) {
    let discard = async {
        let mut discarded = 0;
        while let Some(Ok(frame)) = body.frame().await {
            discarded += frame.data_ref().map_or(0, Bytes::len);
            if discarded > DRAIN_AT_MOST {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, discard).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_from_either_header() {
        let mut headers = HeaderMap::new();
        assert_eq!(presented_key(&headers), None);
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer abc"),
        );
        assert_eq!(presented_key(&headers), Some("abc"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(presented_key(&headers), None);
        headers.insert(API_KEY, HeaderValue::from_static("xyz"));
        assert_eq!(presented_key(&headers), Some("xyz"));
    }

    #[test]
    fn only_health_readiness_docs_and_playground_are_public() {
        for path in [
            "/health",
            "/ready",
            "/openapi.json",
            "/docs",
            "/docs/index.html",
            "/playground",
        ] {
            assert!(is_public(path), "{path}");
        }
        for path in [
            "/predict", "/models", "/jobs/x", "/healthz", "/docsx", "/metrics",
        ] {
            assert!(!is_public(path), "{path}");
        }
    }
}
