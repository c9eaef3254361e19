//! Extractors whose rejections are API errors: `ApiJson<T>` maps malformed JSON to 400 and
//! invalid or unknown fields to 422, with serde's sentence naming the field; `GuardedBody` is
//! the body the route guard read.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use http_body_util::BodyExt;
use inference_engine_core::auth::Principal;
use inference_engine_core::error::ErrorKind;
use inference_engine_core::job::RequestId;
use inference_engine_core::service::Caller;
use serde::de::DeserializeOwned;
use serde_json::error::Category;

use crate::error::ApiError;

/// An authenticated request: its key's principal, its id and whether that id came from the
/// client (`X-Request-ID`) or was generated here. The request-context layer sets it on the
/// request (one extension: each costs an allocation, and a fourth grows the map).
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub principal: Principal,
    pub request_id: RequestId,
    pub request_id_from_client: bool,
}

fn layers_did_not_run() -> ApiError {
    ApiError::internal("the request context layers did not run")
}

/// Who is calling: tenant, request id and whether that id can serve as a routing key. Built
/// from what the request-context and authentication layers stored on the request.
#[derive(Debug, Clone)]
pub struct CallerContext(pub Caller);

impl<S: Send + Sync> FromRequestParts<S> for CallerContext {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let authenticated = parts
            .extensions
            .get::<Authenticated>()
            .ok_or_else(layers_did_not_run)?;
        Ok(Self(Caller {
            tenant: authenticated.principal.tenant().clone(),
            request_id: authenticated.request_id.clone(),
            request_id_from_client: authenticated.request_id_from_client,
        }))
    }
}

/// The caller's principal (tenant and scopes).
#[derive(Debug, Clone)]
pub struct CallerPrincipal(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for CallerPrincipal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Authenticated>()
            .map(|authenticated| Self(authenticated.principal.clone()))
            .ok_or_else(layers_did_not_run)
    }
}

/// A JSON body, parsed whatever its content type.
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let SizedJson { body, .. } = SizedJson::from_request(request, state).await?;
        Ok(Self(body))
    }
}

/// A JSON body like [`ApiJson`], with its size: handlers of routes that name a model hold it to
/// that model's body limit.
#[derive(Debug, Clone)]
pub struct SizedJson<T> {
    pub body: T,
    pub length: usize,
}

impl<T, S> FromRequest<S> for SizedJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let GuardedBody(bytes) = GuardedBody::from_request(request, state).await?;
        Ok(Self {
            body: parse_json(&bytes)?,
            length: bytes.len(),
        })
    }
}

/// The request body, which the route guard has read in full within `MAX_BODY_BYTES` (so no
/// other limit applies here, and axum's `DefaultBodyLimit` is not needed).
#[derive(Debug, Clone)]
pub struct GuardedBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for GuardedBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, ApiError> {
        match request.into_body().collect().await {
            Ok(collected) => Ok(Self(collected.to_bytes())),
            Err(err) => Err(ApiError::new(
                ErrorKind::MalformedRequest,
                "malformed_request",
                format!("the request body could not be read: {err}"),
            )),
        }
    }
}

/// Parses a request body that must be a JSON object.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // serde lets a struct be read from an array by position; a body is only ever an object.
    if bytes.iter().find(|byte| !byte.is_ascii_whitespace()) == Some(&b'[') {
        return Err(ApiError::invalid_request(
            "invalid request body: expected a JSON object, found an array",
        ));
    }
    serde_json::from_slice(bytes).map_err(|err| match err.classify() {
        Category::Data => ApiError::invalid_request(format!("invalid request body: {err}")),
        Category::Io | Category::Syntax | Category::Eof => ApiError::new(
            ErrorKind::MalformedRequest,
            "malformed_json",
            format!("the request body is not valid JSON: {err}"),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::PredictRequest;

    #[test]
    fn syntax_errors_are_400_and_field_errors_are_422() {
        let malformed = parse_json::<PredictRequest>(b"{\"model\": ").unwrap_err();
        assert_eq!(malformed.status().as_u16(), 400);
        let empty = parse_json::<PredictRequest>(b"").unwrap_err();
        assert_eq!(empty.status().as_u16(), 400);
        let unknown =
            parse_json::<PredictRequest>(br#"{"model":"echo","data":1,"dta":2}"#).unwrap_err();
        assert_eq!(unknown.status().as_u16(), 422);
        let missing = parse_json::<PredictRequest>(br#"{"model":"echo"}"#).unwrap_err();
        assert_eq!(missing.status().as_u16(), 422);
        let wrong_type = parse_json::<PredictRequest>(br#"{"model":1,"data":1}"#).unwrap_err();
        assert_eq!(wrong_type.code(), "invalid_request");
        let array = parse_json::<PredictRequest>(br#" ["echo", "v1", 1]"#).unwrap_err();
        assert_eq!(array.status().as_u16(), 422);
        let null_data = parse_json::<PredictRequest>(br#"{"model":"echo","data":null}"#);
        assert!(null_data.is_ok());
    }
}
