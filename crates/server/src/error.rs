//! The one place that turns an [`ErrorKind`] into an HTTP status, and every error into the JSON
//! body `{"detail", "code", "request_id"}`.
//!
//! Handlers and middleware return [`ApiError`]. Its response carries the body parts in an
//! extension; the outermost middleware (which knows the request id) renders the JSON. Any other
//! error response that reaches it (an axum 405, a rejection we did not map) is rewritten into the
//! same shape, so a client never sees a plain-text or empty error.

use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use inference_engine_core::error::{Classified, ErrorKind};
use inference_engine_core::observe::LogEvery;
use serde_json::{Map, Value};

/// The status of each kind. The only such table in the code base.
pub fn status_for(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::MalformedRequest => StatusCode::BAD_REQUEST,
        ErrorKind::InvalidInput => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
        ErrorKind::UriTooLong => StatusCode::URI_TOO_LONG,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Overloaded | ErrorKind::NotReady | ErrorKind::Unavailable => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The gRPC status code of each kind (the protocol's gRPC endpoint), beside the HTTP table.
pub fn grpc_code_for(kind: ErrorKind) -> tonic::Code {
    match kind {
        ErrorKind::MalformedRequest
        | ErrorKind::InvalidInput
        | ErrorKind::PayloadTooLarge
        | ErrorKind::UriTooLong => tonic::Code::InvalidArgument,
        ErrorKind::RequestTimeout => tonic::Code::DeadlineExceeded,
        ErrorKind::NotFound => tonic::Code::NotFound,
        ErrorKind::MethodNotAllowed => tonic::Code::Unimplemented,
        ErrorKind::Conflict => tonic::Code::FailedPrecondition,
        ErrorKind::Unauthenticated => tonic::Code::Unauthenticated,
        ErrorKind::Forbidden => tonic::Code::PermissionDenied,
        ErrorKind::RateLimited | ErrorKind::Overloaded => tonic::Code::ResourceExhausted,
        ErrorKind::NotReady | ErrorKind::Unavailable => tonic::Code::Unavailable,
        ErrorKind::Timeout => tonic::Code::DeadlineExceeded,
        ErrorKind::Internal => tonic::Code::Internal,
    }
}

/// A gRPC status code's canonical name and its HTTP equivalent (the table of `google.rpc.Code`),
/// for the access-log line of a gRPC call.
pub fn grpc_code_line(code: tonic::Code) -> (&'static str, u16) {
    use tonic::Code;
    match code {
        Code::Ok => ("OK", 200),
        Code::Cancelled => ("CANCELLED", 499),
        Code::Unknown => ("UNKNOWN", 500),
        Code::InvalidArgument => ("INVALID_ARGUMENT", 400),
        Code::DeadlineExceeded => ("DEADLINE_EXCEEDED", 504),
        Code::NotFound => ("NOT_FOUND", 404),
        Code::AlreadyExists => ("ALREADY_EXISTS", 409),
        Code::PermissionDenied => ("PERMISSION_DENIED", 403),
        Code::ResourceExhausted => ("RESOURCE_EXHAUSTED", 429),
        Code::FailedPrecondition => ("FAILED_PRECONDITION", 400),
        Code::Aborted => ("ABORTED", 409),
        Code::OutOfRange => ("OUT_OF_RANGE", 400),
        Code::Unimplemented => ("UNIMPLEMENTED", 501),
        Code::Internal => ("INTERNAL", 500),
        Code::Unavailable => ("UNAVAILABLE", 503),
        Code::DataLoss => ("DATA_LOSS", 500),
        Code::Unauthenticated => ("UNAUTHENTICATED", 401),
    }
}

/// Seconds a client should wait before retrying, for kinds that are worth retrying.
fn retry_after_for(kind: ErrorKind) -> Option<u32> {
    match kind {
        ErrorKind::Overloaded | ErrorKind::NotReady | ErrorKind::Unavailable => Some(1),
        ErrorKind::RateLimited => Some(1),
        _ => None,
    }
}

/// An error on its way to the client.
#[derive(Debug, Clone)]
pub struct ApiError {
    kind: ErrorKind,
    code: &'static str,
    /// The full message; logged for 5xx, sent for everything else.
    message: String,
    /// Extra top-level body fields (e.g. `status` and `reason` of `/ready`).
    extra: Map<String, Value>,
    /// Response headers that belong to the error (`X-Job-ID` of a recorded failure).
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    pub fn new(kind: ErrorKind, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind,
            code,
            message: message.into(),
            extra: Map::new(),
            headers: Vec::new(),
        }
    }

    pub fn from_classified<E: Classified + std::fmt::Display>(err: &E) -> Self {
        Self::new(err.kind(), err.code(), err.to_string())
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, "invalid_request", message)
    }

    /// A configuration file that does not validate; nothing was changed.
    pub fn invalid_configuration(message: impl Into<String>) -> Self {
        Self::new(
            ErrorKind::MalformedRequest,
            "invalid_configuration",
            message,
        )
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, "not_found", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, "internal", message)
    }

    /// The Open Inference Protocol answers every invalid request with 400 Bad Request, where
    /// the engine's own API separates malformed (400) from invalid (422).
    pub fn for_protocol(mut self) -> Self {
        if self.kind == ErrorKind::InvalidInput {
            self.kind = ErrorKind::MalformedRequest;
        }
        self
    }

    pub fn with_field(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(name.to_owned(), value.into());
        self
    }

    /// Adds a response header; a value that is not a valid header value is left out.
    pub fn with_header(mut self, name: HeaderName, value: impl TryInto<HeaderValue>) -> Self {
        if let Ok(value) = value.try_into() {
            self.headers.push((name, value));
        }
        self
    }

    pub fn status(&self) -> StatusCode {
        status_for(self.kind)
    }

    pub fn code(&self) -> &'static str {
        self.code
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// What the client is told. Server faults keep their cause in the log.
    pub fn public_detail(&self) -> String {
        match self.kind {
            ErrorKind::Internal => {
                "the server failed to handle this request; the cause is in the server log under this request_id".to_owned()
            }
            ErrorKind::Unavailable => {
                "a service the engine depends on is unavailable; retry later".to_owned()
            }
            _ => self.message.clone(),
        }
    }
}

/// The parts of an error body, rendered by the outermost middleware once the request id is
/// known.
#[derive(Debug, Clone)]
pub struct PendingErrorBody {
    pub detail: String,
    pub code: &'static str,
    pub extra: Map<String, Value>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match self.kind {
            ErrorKind::Unavailable => {
                // A dependency that is down fails every request alike; its adapter logs the
                // incident (the SQLite store once per incident), so here a sample suffices.
                static UNAVAILABLE: LogEvery = LogEvery::new(std::time::Duration::from_secs(10));
                if let Some(held_back) = UNAVAILABLE.admit() {
                    tracing::warn!(code = self.code, cause = %self.message, similar_not_logged = held_back, "request failed: a dependency is unavailable");
                }
            }
            // `/ready` saying so is its job, not a failure; the readiness check logs the cause.
            ErrorKind::NotReady => {}
            _ if status.is_server_error() => {
                tracing::error!(code = self.code, cause = %self.message, "request failed");
            }
            _ => {}
        }
        let mut response = status.into_response();
        if let Some(seconds) = retry_after_for(self.kind) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        for (name, value) in &self.headers {
            response.headers_mut().insert(name, value.clone());
        }
        let detail = self.public_detail();
        response.extensions_mut().insert(PendingErrorBody {
            detail,
            code: self.code,
            extra: self.extra,
        });
        response
    }
}

/// The code of an error response that did not come from an [`ApiError`].
pub fn fallback_code(status: StatusCode) -> (&'static str, &'static str) {
    match status {
        StatusCode::BAD_REQUEST => ("malformed_request", "the request could not be read"),
        StatusCode::NOT_FOUND => ("not_found", "no such route"),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            "this route does not accept that method",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "the request body is too large"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported_media_type",
            "send the body as application/json",
        ),
        status if status.is_client_error() => ("invalid_request", "the request was rejected"),
        _ => (
            "internal",
            "the server failed to handle this request; the cause is in the server log under this request_id",
        ),
    }
}

/// The code of a request hyper refused before any route saw it (its head did not parse).
pub fn protocol_rejection_code(status: StatusCode) -> (&'static str, &'static str) {
    match status {
        StatusCode::BAD_REQUEST => (
            "malformed_request",
            "the request line or a header (such as Content-Length) could not be parsed",
        ),
        StatusCode::URI_TOO_LONG => ("uri_too_long", "the request URI is too long"),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => (
            "headers_too_large",
            "the request has more than 100 headers or more than 64 KiB of them",
        ),
        status => fallback_code(status),
    }
}

/// Which key carries the error sentence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorStyle {
    /// `{"detail", "code", "request_id"}`: the engine's own API.
    Detail,
    /// `{"error", "code", "request_id"}`: the Open Inference Protocol (`/v2/...`), whose
    /// clients read `error`.
    Protocol,
}

impl ErrorStyle {
    pub fn for_path(path: &str) -> Self {
        if path == "/v2" || path.starts_with("/v2/") {
            Self::Protocol
        } else {
            Self::Detail
        }
    }
}

/// The JSON body of every error response: the sentence (`detail`, or `error` on protocol
/// routes), `code`, `request_id`, then any extra fields.
pub fn render_error_body(
    style: ErrorStyle,
    detail: &str,
    code: &str,
    request_id: &str,
    extra: &Map<String, Value>,
) -> Vec<u8> {
    let mut body = Map::with_capacity(3 + extra.len());
    let sentence_key = match style {
        ErrorStyle::Detail => "detail",
        ErrorStyle::Protocol => "error",
    };
    body.insert(sentence_key.to_owned(), Value::from(detail));
    body.insert("code".to_owned(), Value::from(code));
    body.insert("request_id".to_owned(), Value::from(request_id));
    for (key, value) in extra {
        body.insert(key.clone(), value.clone());
    }
    // Serialising a JSON map cannot fail.
    serde_json::to_vec(&body).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_client_or_server_error_status() {
        let kinds = [
            (ErrorKind::MalformedRequest, 400),
            (ErrorKind::InvalidInput, 422),
            (ErrorKind::NotFound, 404),
            (ErrorKind::MethodNotAllowed, 405),
            (ErrorKind::Conflict, 409),
            (ErrorKind::PayloadTooLarge, 413),
            (ErrorKind::RequestTimeout, 408),
            (ErrorKind::UriTooLong, 414),
            (ErrorKind::Unauthenticated, 401),
            (ErrorKind::Forbidden, 403),
            (ErrorKind::RateLimited, 429),
            (ErrorKind::Overloaded, 503),
            (ErrorKind::NotReady, 503),
            (ErrorKind::Timeout, 504),
            (ErrorKind::Unavailable, 503),
            (ErrorKind::Internal, 500),
        ];
        for (kind, status) in kinds {
            assert_eq!(status_for(kind).as_u16(), status, "{kind:?}");
        }
    }

    #[test]
    fn server_faults_do_not_leak_their_cause() {
        let err = ApiError::internal("secret path /var/lib/x failed");
        assert!(!err.public_detail().contains("/var/lib"));
        let client = ApiError::invalid_request("items must not be empty");
        assert_eq!(client.public_detail(), "items must not be empty");
    }
}
