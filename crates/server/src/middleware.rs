//! Cross-cutting request handling, in the order docs/api.md documents: request id → auth → scope →
//! (rate limit) → body size → body validation (in the extractors) → handler.
//!
//! Two layers do all of it. [`RequestContextLayer`] is the outermost: it assigns the request
//! id, authenticates the key, turns a handler's panic into a 500, renders every error body (so
//! each one carries that id), stamps `X-Request-ID` on every response and writes the one
//! access-log line per request. [`RouteGuard`] guards each route group: scope, rate limit and
//! body limit, in that order; it wraps each handler of the group ([`RouteGuard::protect`]),
//! or, for a router built elsewhere, the group as a route layer. Few layers matter: each one
//! costs allocations and a dynamic call on every request. Both are plain tower services rather
//! than `axum::middleware::from_fn`, which on every request clones the state, boxes the
//! service under it and boxes that service's future again (measured: `BENCHMARKS.md`,
//! predict_echo).

use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request};
use axum::handler::Handler;
use axum::http::{Extensions, HeaderMap, HeaderName, HeaderValue, Method, Uri, header};
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt;
use http_body_util::BodyExt;
use inference_engine_app::telemetry::{self, AccessRecord};
use inference_engine_core::auth::{ApiKeyTable, Scope, TenantId};
use inference_engine_core::config::RateLimitGroup;
use inference_engine_core::error::ErrorKind;
use inference_engine_core::job::{Job, JobId, RequestId};
use inference_engine_core::model::{ModelKey, ModelName, ModelVersion};
use inference_engine_core::observe;
use inference_engine_core::request_scope::in_request;

use crate::error::{
    ApiError, ErrorStyle, PendingErrorBody, fallback_code, grpc_code_line, render_error_body,
};
use crate::extract::Authenticated;
use crate::ratelimit::{RATELIMIT_LIMIT, RateLimitHeaders, charge};
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

/// What a request's access-log line says beyond its method, path, status and latency: what its
/// handler knows (job, model, version) and the route template it matched (set by its route
/// guard). One response extension carries all of it: each extension costs an allocation.
#[derive(Debug, Clone, Default)]
pub struct AccessLogFields {
    pub job_id: Option<JobId>,
    pub model: Option<ModelName>,
    pub version: Option<ModelVersion>,
    /// The route template (`/jobs/{job_id}`), for metrics that must not have a label value per
    /// raw path.
    route: Option<MatchedPath>,
}

impl AccessLogFields {
    pub fn for_job(job: &Job) -> Self {
        Self {
            job_id: Some(job.id),
            model: Some(job.model.clone()),
            version: job.version.clone(),
            route: None,
        }
    }

    /// A prediction's job, if one was recorded, and the model version that served it.
    pub fn for_prediction(job_id: Option<JobId>, model: Option<&ModelKey>) -> Self {
        Self {
            job_id,
            model: model.map(|key| key.name.clone()),
            version: model.map(|key| key.version.clone()),
            route: None,
        }
    }
}

/// The API keys a listener checks; `None` on the internal listener, which serves without
/// authentication.
#[derive(Debug, Clone)]
pub struct Authentication(pub Option<Arc<ApiKeyTable>>);

/// A service that answers HTTP requests: a listener's whole stack, or the part of it under a
/// layer.
pub trait HttpService:
    tower::Service<Request, Response = Response, Error = Infallible, Future: Send>
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> HttpService for S where
    S: tower::Service<Request, Response = Response, Error = Infallible, Future: Send>
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// What a layer's `call` returns: the boxed future of its async body (one allocation per
/// request and layer; the services under it are called directly, not boxed again).
pub type LayerFuture = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

/// The services under a layer, taken out of the layer for one request.
#[derive(Debug)]
pub struct Rest<S>(S);

impl<S> Rest<S>
where
    S: HttpService,
{
    /// Tower's contract: `call` the instance `poll_ready` said was ready, and leave a clone in
    /// the layer for the next request.
    fn take(ready: &mut S) -> Self {
        let fresh = ready.clone();
        Self(std::mem::replace(ready, fresh))
    }

    async fn run(mut self, request: Request) -> Response {
        match self.0.call(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }

    /// [`Self::run`], with a panic in the services under it answered as a 500 (its body is
    /// rendered by `request_context` like every other error's).
    async fn run_catching_panics(mut self, request: Request) -> Response {
        let called = std::panic::catch_unwind(AssertUnwindSafe(|| self.0.call(request)));
        let finished = match called {
            Ok(future) => AssertUnwindSafe(future).catch_unwind().await,
            Err(panic) => Err(panic),
        };
        match finished {
            Ok(Ok(response)) => response,
            Ok(Err(never)) => match never {},
            Err(panic) => panic_response(&*panic),
        }
    }
}

fn panic_response(panic: &(dyn std::any::Any + Send)) -> Response {
    let message = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("unknown panic payload");
    ApiError::internal(format!("handler panicked: {message}")).into_response()
}

/// What a layer does around the services under it, once per request.
pub trait AroundRest: Clone + Send + Sync + 'static {
    fn around<S: HttpService>(
        self,
        request: Request,
        rest: Rest<S>,
    ) -> impl Future<Output = Response> + Send;
}

/// A service behind one of the two layers: `around` runs for every request and calls `inner`.
#[derive(Debug, Clone)]
pub struct Layered<A, S> {
    around: A,
    inner: S,
}

impl<A: AroundRest, S: HttpService> tower::Service<Request> for Layered<A, S> {
    type Response = Response;
    type Error = Infallible;
    type Future = LayerFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> LayerFuture {
        let rest = Rest::take(&mut self.inner);
        let around = self.around.clone();
        Box::pin(async move { Ok(around.around(request, rest).await) })
    }
}

/// The outermost layer of a listener: [`request_context`] around everything under it.
#[derive(Debug, Clone)]
pub struct RequestContextLayer(pub Authentication);

/// A listener's whole stack.
pub type RequestContext<S> = Layered<Authentication, S>;

impl<S> tower::Layer<S> for RequestContextLayer {
    type Service = RequestContext<S>;

    fn layer(&self, inner: S) -> RequestContext<S> {
        Layered {
            around: self.0.clone(),
            inner,
        }
    }
}

impl AroundRest for Authentication {
    async fn around<S: HttpService>(self, request: Request, rest: Rest<S>) -> Response {
        request_context(self.0.as_deref(), request, rest).await
    }
}

/// The longest request URI (path and query) a route gets; nginx's default line buffer.
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// Request id, authentication, panics, error bodies, `X-Request-ID`, access log.
async fn request_context<S>(keys: Option<&ApiKeyTable>, request: Request, rest: Rest<S>) -> Response
where
    S: HttpService,
{
    let (request_id, from_client) = RequestId::sent_or_generated(
        request
            .headers()
            .get(&REQUEST_ID)
            .and_then(|value| value.to_str().ok()),
    );
    let mut access = AccessLog::start(
        request_id.clone(),
        request.method().clone(),
        request.uri().clone(),
    );

    // Every log line written for this request names it, on this thread and on the executor's.
    let uri_length = request
        .uri()
        .path_and_query()
        .map_or(0, |uri| uri.as_str().len());
    let (mut response, tenant) = match keys {
        _ if uri_length > MAX_URI_BYTES => (
            ApiError::new(
                ErrorKind::UriTooLong,
                "uri_too_long",
                format!("the request URI is longer than {MAX_URI_BYTES} bytes"),
            )
            .into_response(),
            None,
        ),
        Some(keys) => {
            let identified = (request_id.clone(), from_client);
            in_request(
                request_id.clone(),
                authenticate(keys, identified, request, rest),
            )
            .await
        }
        None => {
            let response = in_request(request_id.clone(), rest.run_catching_panics(request));
            (response.await, None)
        }
    };

    finish_error_body(
        &mut response,
        request_id.as_str(),
        ErrorStyle::for_path(access.uri.path()),
    );
    if let Ok(value) = HeaderValue::from_str(request_id.as_str()) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    access.log(&response, tenant.as_ref());
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

    /// A gRPC call at any `uri` (the methods tonic answers before a handler runs).
    pub(crate) fn start_grpc_at(request_id: RequestId, uri: Uri) -> Self {
        let mut access = Self::start(request_id, Method::POST, uri);
        access.grpc = true;
        access
    }

    /// Leaves the line to someone else (who took the call over), even when dropped.
    pub(crate) fn hand_over(&mut self) {
        self.logged = true;
    }

    pub(crate) fn request_id(&self) -> &RequestId {
        &self.request_id
    }

    fn log(&mut self, response: &Response, tenant: Option<&TenantId>) {
        let fields = response.extensions().get::<AccessLogFields>();
        let route = fields.and_then(|fields| fields.route.as_ref().map(MatchedPath::as_str));
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
            let mut job_id = [0; JobId::TEXT_LEN];
            let job_id = fields
                .and_then(|f| f.job_id)
                .map(|id| id.as_text(&mut job_id));
            telemetry::access_log(&AccessRecord {
                request_id: self.request_id.as_str(),
                tenant_id: tenant.map(TenantId::as_str),
                job_id,
                model: fields.and_then(|f| f.model.as_ref().map(ModelName::as_str)),
                version: fields.and_then(|f| f.version.as_ref().map(ModelVersion::as_str)),
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
            body_limit: BodyLimit {
                server: ctx.settings.max_body_bytes,
                per_model: false,
            },
            ctx: Arc::clone(ctx),
        }
    }

    /// Lets bodies up to the largest `max_body_bytes` a model declares through (still a
    /// streamed, enforced limit): for the routes that name a model, whose handlers then hold
    /// each body to its own model's limit.
    pub fn with_model_body_limits(mut self) -> Self {
        self.body_limit.per_model = true;
        self
    }

    /// `handler` behind this guard. The guard then runs inside the handler's own route: a
    /// request passes one axum route, where `Router::route_layer` would wrap each route in a
    /// second one that clones and boxes its services on every request (BENCHMARKS.md).
    pub fn protect<H>(&self, handler: H) -> Guarded<H> {
        Guarded {
            guard: self.clone(),
            handler,
        }
    }
}

/// A route group's guard as the layer of its routes (`Router::route_layer`): for routers built
/// elsewhere (the Swagger UI's), whose handlers [`RouteGuard::protect`] cannot reach.
impl<S> tower::Layer<S> for RouteGuard {
    type Service = Layered<RouteGuard, S>;

    fn layer(&self, inner: S) -> Layered<RouteGuard, S> {
        Layered {
            around: self.clone(),
            inner,
        }
    }
}

impl AroundRest for RouteGuard {
    async fn around<S: HttpService>(self, request: Request, rest: Rest<S>) -> Response {
        guard_route(&self, request, |request| rest.run(request)).await
    }
}

/// A handler behind its route group's guard ([`RouteGuard::protect`]).
#[derive(Debug, Clone)]
pub struct Guarded<H> {
    guard: RouteGuard,
    handler: H,
}

impl<H, T> Handler<T, AppState> for Guarded<H>
where
    H: Handler<T, AppState>,
    T: 'static,
{
    type Future = Pin<Box<dyn Future<Output = Response> + Send>>;

    fn call(self, request: Request, state: AppState) -> Self::Future {
        let Self { guard, handler } = self;
        Box::pin(async move {
            guard_route(&guard, request, |request| handler.call(request, state)).await
        })
    }
}

/// Scope (403) → rate limit (429) → body size (413), then `next` (the handler). Also hands
/// the matched route template out to `request_context` on the response.
async fn guard_route<F>(
    guard: &RouteGuard,
    request: Request,
    next: impl FnOnce(Request) -> F,
) -> Response
where
    F: Future<Output = Response>,
{
    let route = request.extensions().get::<MatchedPath>().cloned();
    let mut response = match admit(guard, request.extensions()).await {
        Err(refused) => refused,
        Ok(limit_headers) => {
            let limit = guard.body_limit.for_request(&guard.ctx);
            let timeout = Duration::from_secs(guard.ctx.settings.http_body_read_timeout_s.max(1));
            let mut response = enforce_body_limit(limit, timeout, request, next).await;
            if let Some(headers) = limit_headers {
                // A batch handler that charged its items set fresher headers already.
                if !response.headers().contains_key(RATELIMIT_LIMIT) {
                    headers.apply(&mut response);
                }
            }
            response
        }
    };
    if route.is_some() {
        let extensions = response.extensions_mut();
        match extensions.get_mut::<AccessLogFields>() {
            Some(fields) => fields.route = route,
            None => {
                extensions.insert(AccessLogFields {
                    route,
                    ..AccessLogFields::default()
                });
            }
        }
    }
    response
}

/// The scope check and the rate-limit charge: the headers of the charge, or the refusal.
async fn admit(
    guard: &RouteGuard,
    extensions: &Extensions,
) -> Result<Option<RateLimitHeaders>, Response> {
    let principal = extensions
        .get::<Authenticated>()
        .map(|authenticated| &authenticated.principal);
    if let Some(scope) = guard.scope
        && !principal.is_some_and(|principal| principal.allows(scope))
    {
        return Err(ApiError::new(
            ErrorKind::Forbidden,
            "forbidden",
            format!("this API key lacks the {:?} scope", scope.as_str()),
        )
        .into_response());
    }
    let tenant = principal.map(|principal| principal.tenant().clone());
    match (guard.rate_limit, tenant) {
        (Some(group), Some(tenant)) => charge(&guard.ctx, &tenant, group, 1)
            .await
            .map_err(IntoResponse::into_response),
        _ => Ok(None),
    }
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

/// Resolves the API key to a `Principal` (401 without a valid one, except on public paths)
/// and sets [`Authenticated`] on the request; returns the response and the tenant it
/// authenticated, for the access log. `(request_id, from_client)`: the request's id.
async fn authenticate<S>(
    keys: &ApiKeyTable,
    (request_id, request_id_from_client): (RequestId, bool),
    mut request: Request,
    rest: Rest<S>,
) -> (Response, Option<TenantId>)
where
    S: HttpService,
{
    if is_public(request.uri().path()) {
        return (rest.run_catching_panics(request).await, None);
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
        return (response, None);
    };
    let tenant = principal.tenant().clone();
    request.extensions_mut().insert(Authenticated {
        principal,
        request_id,
        request_id_from_client,
    });
    (rest.run_catching_panics(request).await, Some(tenant))
}

/// A route group's body limit: `MAX_BODY_BYTES`, or for routes that name a model, the
/// largest of it and the limits models declare.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit {
    pub server: usize,
    pub per_model: bool,
}

impl BodyLimit {
    fn for_request(self, ctx: &AppState) -> usize {
        match (self.per_model, ctx.registry.largest_body_limit()) {
            (true, Some(largest)) => largest.max(self.server),
            _ => self.server,
        }
    }
}

/// After a 413, read and discard up to this much more so the client can read the response
/// instead of having its connection reset under it.
const DRAIN_AT_MOST: usize = 4 << 20;
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Buffers the body, counting the bytes actually received: 413 past the limit whatever
/// `Content-Length` claims, and at once when `Content-Length` itself is over the limit.
async fn enforce_body_limit<F>(
    limit: usize,
    timeout: Duration,
    request: Request,
    next: impl FnOnce(Request) -> F,
) -> Response
where
    F: Future<Output = Response>,
{
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
    // Bounded as a whole, not per read: a client dripping a byte at a time (or sending less
    // than its Content-Length) would otherwise hold the request open for ever.
    let read = tokio::time::timeout(timeout, read_within(body, limit))
        .await
        .unwrap_or(Err(BodyReadError::TimedOut));
    match read {
        Ok(bytes) => next(Request::from_parts(parts, Body::from(bytes))).await,
        Err(BodyReadError::TooLarge) => too_large(limit),
        Err(BodyReadError::TimedOut) => {
            let mut response = ApiError::new(
                ErrorKind::RequestTimeout,
                "request_timeout",
                format!(
                    "the request body did not arrive within {} s (HTTP_BODY_READ_TIMEOUT_S)",
                    timeout.as_secs()
                ),
            )
            .into_response();
            // The rest of the body may still come; the connection cannot carry another request.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            response
        }
        Err(BodyReadError::Broken) => ApiError::new(
            ErrorKind::MalformedRequest,
            "malformed_request",
            "the request body could not be read to its end",
        )
        .into_response(),
    }
}

fn too_large(limit: usize) -> Response {
    too_large_error(limit).into_response()
}

/// 413 `payload_too_large`, naming the limit.
pub fn too_large_error(limit: usize) -> ApiError {
    ApiError::new(
        ErrorKind::PayloadTooLarge,
        "payload_too_large",
        format!("the request body exceeds the limit of {limit} bytes"),
    )
}

enum BodyReadError {
    TooLarge,
    Broken,
    TimedOut,
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
    use tower::{Layer, Service};

    fn panicking_service() -> impl tower::Service<
        Request,
        Response = Response,
        Error = Infallible,
        Future = impl Future<Output = Result<Response, Infallible>> + Send,
    > + Clone
    + Send
    + 'static {
        tower::service_fn(|request: Request| async move {
            if request.uri().path() == "/panic" {
                panic!("the handler broke");
            }
            Ok::<_, Infallible>(Response::new(Body::empty()))
        })
    }

    #[tokio::test]
    async fn a_panicking_handler_gets_a_json_500_with_the_request_id_and_the_server_goes_on() {
        let mut service = RequestContextLayer(Authentication(None)).layer(panicking_service());
        let request = Request::builder()
            .uri("/panic")
            .header(REQUEST_ID, "client-chosen-id")
            .body(Body::empty())
            .unwrap();
        let response = service.call(request).await.unwrap();
        assert_eq!(response.status(), 500);
        assert_eq!(response.headers()[REQUEST_ID], "client-chosen-id");
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["code"], "internal");
        assert_eq!(body["request_id"], "client-chosen-id");
        // The same service answers the next request normally.
        let request = Request::builder().uri("/fine").body(Body::empty()).unwrap();
        assert_eq!(service.call(request).await.unwrap().status(), 200);
    }

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
