//! `/playground`: public, embedded, small, and held to its own origin by the CSP.

use inference_engine_testkit::{TestApp, reqwest};

const PAYLOAD_LIMIT: usize = 200 * 1024;

/// The same-origin asset URLs the page names (`src="/playground/…"`, `href="/playground/…"`).
fn asset_urls(html: &str) -> Vec<String> {
    let mut urls = Vec::new();
    for attribute in ["src=\"", "href=\""] {
        for (start, _) in html.match_indices(attribute) {
            let rest = &html[start + attribute.len()..];
            let url = &rest[..rest.find('"').unwrap()];
            if url.starts_with("/playground/") {
                urls.push(url.to_owned());
            }
        }
    }
    urls
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

#[tokio::test]
async fn the_page_is_public_html_with_a_strict_csp() {
    let app = TestApp::spawn().await;
    for path in ["/playground", "/playground/"] {
        let response = app.get(path, None).await;
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(
            header(&response, "content-type"),
            "text/html; charset=utf-8"
        );
        assert_eq!(header(&response, "cache-control"), "no-cache");
        assert!(response.headers().contains_key("x-request-id"));
        let csp = header(&response, "content-security-policy");
        for directive in [
            "default-src 'self'",
            "script-src 'self'",
            "connect-src 'self'",
        ] {
            assert!(csp.contains(directive), "{csp}");
        }
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"));
        let html = response.text().await.unwrap();
        assert!(html.contains("<title>"));
        assert!(!html.contains("{{"), "a placeholder was left in the page");
    }
}

#[tokio::test]
async fn the_assets_are_served_with_their_types_and_the_whole_payload_is_under_200_kb() {
    let app = TestApp::spawn().await;
    let html = app.get("/playground", None).await.text().await.unwrap();
    let urls = asset_urls(&html);
    assert!(
        urls.iter().any(|url| url.contains("playground.js?v="))
            && urls.iter().any(|url| url.contains("playground.css?v=")),
        "{urls:?}"
    );
    let mut total = html.len();
    for url in &urls {
        let response = app.get(url, None).await;
        assert_eq!(response.status(), 200, "{url}");
        let expected = if url.contains(".js") {
            "text/javascript; charset=utf-8"
        } else {
            "text/css; charset=utf-8"
        };
        assert_eq!(header(&response, "content-type"), expected, "{url}");
        // Named by their content hash: cached for good.
        assert!(header(&response, "cache-control").contains("immutable"));
        assert_eq!(header(&response, "x-content-type-options"), "nosniff");
        total += response.bytes().await.unwrap().len();
    }
    assert!(total < PAYLOAD_LIMIT, "the playground weighs {total} bytes");
    // Without the current hash an asset is revalidated instead.
    let response = app.get("/playground/playground.js?v=old", None).await;
    assert_eq!(header(&response, "cache-control"), "no-cache");
}

#[tokio::test]
async fn an_unchanged_asset_is_answered_304_to_its_etag() {
    let app = TestApp::spawn().await;
    let first = app.get("/playground/playground.css", None).await;
    let etag = header(&first, "etag").to_owned();
    let again = app
        .client
        .get(app.url("/playground/playground.css"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(header(&again, "etag"), etag);
    assert!(again.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn the_assets_name_no_other_host() {
    let app = TestApp::spawn().await;
    let html = app.get("/playground", None).await.text().await.unwrap();
    let mut files = vec![("/playground".to_owned(), html.clone())];
    for url in asset_urls(&html) {
        let body = app.get(&url, None).await.text().await.unwrap();
        files.push((url, body));
    }
    for (url, body) in &files {
        for scheme in ["http://", "https://"] {
            if let Some(at) = body.find(scheme) {
                let context: String = body[at..].chars().take(60).collect();
                panic!("{url} names another host: {context}…");
            }
        }
        assert!(!body.contains("//cdn"), "{url} loads from a CDN");
    }
}

#[tokio::test]
async fn only_the_page_and_its_assets_are_public() {
    let app = TestApp::spawn().await;
    assert_eq!(
        app.get("/playground/unknown.js", None).await.status(),
        404,
        "an unknown asset is a 404, not a 401"
    );
    assert_eq!(app.get("/models", None).await.status(), 401);
}
