use inference_engine_testkit::{ADMIN_KEY, DEV_KEY, TestApp, json_body};
use serde_json::json;

const PREDICT_ONLY: &str = "predict-key-0123456789";
const MODELS_ONLY: &str = "models-key-0123456789";

async fn app_with_scoped_keys() -> TestApp {
    TestApp::spawn_with(|settings| {
        settings.api_keys = Some(format!(
            "{PREDICT_ONLY}:tenant_a:predict;{MODELS_ONLY}:tenant_b:read_models"
        ));
    })
    .await
}

#[tokio::test]
async fn a_missing_or_unknown_key_is_401_with_json_and_a_request_id() {
    let app = TestApp::spawn().await;
    for key in [None, Some("wrong-key"), Some("")] {
        let response = app
            .post(
                "/predict",
                key,
                &json!({"model": "echo", "version": "v1", "data": 1}),
            )
            .await;
        assert_eq!(response.status(), 401, "key {key:?}");
        let request_id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let body = json_body(response).await;
        assert_eq!(body["code"], "unauthenticated");
        assert_eq!(body["request_id"], request_id);
        assert!(body["detail"].is_string());
    }
}

#[tokio::test]
async fn bearer_tokens_are_accepted_like_api_key_headers() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .get(app.url("/models"))
        .bearer_auth(DEV_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_key_without_the_scope_gets_403_never_500() {
    let app = app_with_scoped_keys().await;
    let models = app.get("/models", Some(PREDICT_ONLY)).await;
    assert_eq!(models.status(), 403);
    assert_eq!(json_body(models).await["code"], "forbidden");

    let predict = app
        .post(
            "/predict",
            Some(MODELS_ONLY),
            &json!({"model": "echo", "version": "v1", "data": 1}),
        )
        .await;
    assert_eq!(predict.status(), 403);
    let job = app
        .get(
            "/jobs/01890a5d-ac96-774b-bcce-b302099a8057",
            Some(MODELS_ONLY),
        )
        .await;
    assert_eq!(job.status(), 403);

    assert_eq!(app.get("/models", Some(MODELS_ONLY)).await.status(), 200);
}

#[tokio::test]
async fn scope_is_checked_before_the_body() {
    let app = app_with_scoped_keys().await;
    let response = app
        .client
        .post(app.url("/predict"))
        .header("x-api-key", MODELS_ONLY)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
}

#[tokio::test]
async fn the_admin_scope_implies_the_others() {
    let app = TestApp::spawn().await;
    assert_eq!(app.get("/models", Some(ADMIN_KEY)).await.status(), 200);
    let predict = app
        .post(
            "/predict",
            Some(ADMIN_KEY),
            &json!({"model": "echo", "version": "v1", "data": 1}),
        )
        .await;
    assert_eq!(predict.status(), 200);
}

#[tokio::test]
async fn public_paths_need_no_key() {
    let app = TestApp::spawn().await;
    assert_eq!(app.get("/health", None).await.status(), 200);
    assert_eq!(app.get("/ready", None).await.status(), 200);
    let openapi = json_body(app.get("/openapi.json", None).await).await;
    assert!(openapi["paths"]["/predict"]["post"].is_object());
    let docs = app.get("/docs/", None).await;
    assert_eq!(docs.status(), 200);
    assert!(docs.text().await.unwrap().contains("swagger"));
}

/// Every API route of the router, with its method (the playground, `/docs` and
/// `/openapi.json` itself aside): a route added without its `utoipa::path` fails here.
const DOCUMENTED_ROUTES: [(&str, &str); 27] = [
    ("get", "/health"),
    ("get", "/ready"),
    ("get", "/metrics"),
    ("post", "/predict"),
    ("post", "/predict/batch"),
    ("post", "/predict/async"),
    ("post", "/predict/async/batch"),
    ("get", "/predict/async/{job_id}"),
    ("get", "/jobs"),
    ("get", "/jobs/{job_id}"),
    ("post", "/jobs/{job_id}/cancel"),
    ("get", "/models"),
    ("get", "/models/{name}/{version}"),
    ("get", "/debug/models/loaded"),
    ("get", "/admin/models/memory"),
    ("post", "/admin/models/{name}/{version}/reload"),
    ("post", "/admin/models/{name}/{version}/unload"),
    ("post", "/admin/reload"),
    ("get", "/v2"),
    ("get", "/v2/health/live"),
    ("get", "/v2/health/ready"),
    ("get", "/v2/models/{name}"),
    ("get", "/v2/models/{name}/ready"),
    ("get", "/v2/models/{name}/versions/{version}"),
    ("get", "/v2/models/{name}/versions/{version}/ready"),
    ("post", "/v2/models/{name}/infer"),
    ("post", "/v2/models/{name}/versions/{version}/infer"),
];

#[tokio::test]
async fn the_openapi_document_lists_every_api_route() {
    let app = TestApp::spawn().await;
    let openapi = json_body(app.get("/openapi.json", None).await).await;
    let mut missing: Vec<String> = DOCUMENTED_ROUTES
        .iter()
        .filter(|(method, path)| !openapi["paths"][path][method].is_object())
        .map(|(method, path)| format!("{method} {path}"))
        .collect();
    missing.sort();
    assert!(missing.is_empty(), "not in /openapi.json: {missing:?}");
    // The wire shapes they refer to are in the document too.
    for schema in [
        "V2InferRequest",
        "V2InferResponse",
        "V2ModelMetadata",
        "V2ErrorBody",
    ] {
        assert!(
            openapi["components"]["schemas"][schema].is_object(),
            "{schema} is not in /openapi.json"
        );
    }
}

#[tokio::test]
async fn the_client_request_id_is_echoed_and_an_invalid_one_replaced() {
    let app = TestApp::spawn().await;
    let echoed = app
        .client
        .get(app.url("/health"))
        .header("x-request-id", "client-id-42")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "client-id-42");

    let too_long = "x".repeat(129);
    let replaced = app
        .client
        .get(app.url("/health"))
        .header("x-request-id", &too_long)
        .send()
        .await
        .unwrap();
    let id = replaced.headers()["x-request-id"].to_str().unwrap();
    assert_ne!(id, too_long);
    assert_eq!(id.len(), 36, "a generated UUID");
}
