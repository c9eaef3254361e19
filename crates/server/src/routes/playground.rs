//! `GET /playground`: the web console (try a model, model details, benchmark, jobs, history,
//! health), public like `/docs`. Every API call the page makes carries the key the user types.
//!
//! The page is plain HTML, CSS and JavaScript from `crates/server/assets/playground/`, embedded
//! with `include_str!` so the binary needs no files beside it. It loads nothing from other hosts,
//! and a strict `Content-Security-Policy` (no inline scripts or styles, `connect-src 'self'`)
//! holds it to that. The HTML is revalidated on every load (`no-cache` + `ETag`); it names the
//! script and the stylesheet with a hash of their content, so those are cached for good
//! (`immutable`) under that name and a new binary's assets are fetched under a new one.

use std::sync::LazyLock;

use axum::Router;
use axum::body::Bytes;
use axum::extract::RawQuery;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::AppState;

const INDEX_HTML: &str = include_str!("../../assets/playground/index.html");
const SCRIPT: &str = include_str!("../../assets/playground/playground.js");
const STYLESHEET: &str = include_str!("../../assets/playground/playground.css");

/// Where the HTML names the hashed asset URLs.
const SCRIPT_PLACEHOLDER: &str = "{{script_version}}";
const STYLESHEET_PLACEHOLDER: &str = "{{stylesheet_version}}";

/// Only this origin's scripts, styles and connections; `data:` images for the empty favicon
/// (without it the browser asks for `/favicon.ico`); no plugins, frames, forms or `<base>`.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const REVALIDATE: &str = "no-cache";
const FOREVER: &str = "public, max-age=31536000, immutable";

/// The routes of the page and its assets (public: see `middleware::is_public`).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/playground", get(index))
        .route("/playground/", get(index))
        .route("/playground/playground.js", get(script))
        .route("/playground/playground.css", get(stylesheet))
}

/// One embedded file and how to serve it.
struct Asset {
    /// Cloning `Bytes` shares the buffer: no copy per response.
    body: Bytes,
    content_type: &'static str,
    /// FNV-1a of `body`: the `ETag`, and the `v` of the hashed asset URLs.
    version: String,
}

impl Asset {
    fn new(body: Bytes, content_type: &'static str) -> Self {
        Self {
            version: format!("{:016x}", fnv1a(&body)),
            body,
            content_type,
        }
    }

    fn respond(&self, cache_control: &'static str, request: &HeaderMap) -> Response {
        let etag = format!("\"{}\"", self.version);
        let unchanged = request
            .get(header::IF_NONE_MATCH)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|tags| {
                tags.split(',')
                    .any(|tag| tag.trim().trim_start_matches("W/") == etag)
            });
        let mut response = if unchanged {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            (
                [(header::CONTENT_TYPE, self.content_type)],
                self.body.clone(),
            )
                .into_response()
        };
        let headers = response.headers_mut();
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(cache_control),
        );
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        );
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        if let Ok(etag) = HeaderValue::from_str(&etag) {
            headers.insert(header::ETAG, etag);
        }
        response
    }

    /// Cached for good when asked for under its current hash, revalidated otherwise (an old
    /// page's URL, or none).
    fn respond_versioned(&self, query: Option<&str>, request: &HeaderMap) -> Response {
        let current = query.is_some_and(|query| {
            query
                .split('&')
                .any(|pair| pair.strip_prefix("v=") == Some(self.version.as_str()))
        });
        self.respond(if current { FOREVER } else { REVALIDATE }, request)
    }
}

static SCRIPT_ASSET: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        Bytes::from_static(SCRIPT.as_bytes()),
        "text/javascript; charset=utf-8",
    )
});
static STYLESHEET_ASSET: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        Bytes::from_static(STYLESHEET.as_bytes()),
        "text/css; charset=utf-8",
    )
});
/// The HTML with the assets' hashes filled in, rendered once.
static INDEX_ASSET: LazyLock<Asset> = LazyLock::new(|| {
    let html = INDEX_HTML
        .replace(SCRIPT_PLACEHOLDER, &SCRIPT_ASSET.version)
        .replace(STYLESHEET_PLACEHOLDER, &STYLESHEET_ASSET.version);
    Asset::new(Bytes::from(html), "text/html; charset=utf-8")
});

async fn index(request: HeaderMap) -> Response {
    INDEX_ASSET.respond(REVALIDATE, &request)
}

async fn script(RawQuery(query): RawQuery, request: HeaderMap) -> Response {
    SCRIPT_ASSET.respond_versioned(query.as_deref(), &request)
}

async fn stylesheet(RawQuery(query): RawQuery, request: HeaderMap) -> Response {
    STYLESHEET_ASSET.respond_versioned(query.as_deref(), &request)
}

/// 64-bit FNV-1a: a content hash for cache validation, not for security.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_its_assets_by_their_current_hash() {
        let html = std::str::from_utf8(&INDEX_ASSET.body).unwrap();
        assert!(!html.contains("{{"), "a placeholder was left in the page");
        assert!(html.contains(&format!(
            "/playground/playground.js?v={}",
            SCRIPT_ASSET.version
        )));
        assert!(html.contains(&format!(
            "/playground/playground.css?v={}",
            STYLESHEET_ASSET.version
        )));
    }

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
