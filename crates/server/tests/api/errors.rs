use inference_engine_testkit::{DEV_KEY, TestApp, json_body};
use serde_json::{Value, json};

/// Every error body has the three fields, and its request id matches the header.
async fn assert_error(
    response: inference_engine_testkit::reqwest::Response,
    status: u16,
    code: &str,
) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(response.headers()["content-type"], "application/json");
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body = json_body(response).await;
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["request_id"], request_id);
    assert!(!body["detail"].as_str().unwrap().is_empty());
    body
}

#[tokio::test]
async fn malformed_json_is_400() {
    let app = TestApp::spawn().await;
    for raw in ["{\"model\": \"echo\",", "", "not json"] {
        let response = app
            .client
            .post(app.url("/predict"))
            .header("x-api-key", DEV_KEY)
            .header("content-type", "application/json")
            .body(raw)
            .send()
            .await
            .unwrap();
        assert_error(response, 400, "malformed_json").await;
    }
}

#[tokio::test]
async fn unknown_or_invalid_fields_are_422_naming_the_field() {
    let app = TestApp::spawn().await;
    let typo = app
        .post(
            "/predict",
            Some(DEV_KEY),
            &json!({"model": "echo", "version": "v1", "dta": 1}),
        )
        .await;
    let body = assert_error(typo, 422, "invalid_request").await;
    assert!(body["detail"].as_str().unwrap().contains("dta"));

    let cases = [
        json!({"model": "echo", "version": "v1"}),
        json!({"model": 5, "version": "v1", "data": 1}),
        json!({"model": "../etc", "version": "v1", "data": 1}),
        json!({"model": "echo", "version": "v 1", "data": 1}),
        json!({"model": "echo", "version": "v1", "data": 1, "timeout_ms": 0}),
        json!({"model": "echo", "version": "v1", "data": 1, "timeout_ms": -5}),
        json!(["not", "an", "object"]),
    ];
    for case in cases {
        let response = app.post("/predict", Some(DEV_KEY), &case).await;
        assert_eq!(response.status(), 422, "{case}");
        assert_error(response, 422, "invalid_request").await;
    }
}

#[tokio::test]
async fn an_unknown_model_or_version_is_404_model_not_found() {
    let app = TestApp::spawn().await;
    for request in [
        json!({"model": "nope", "data": 1}),
        json!({"model": "echo", "version": "v9", "data": 1}),
    ] {
        let response = app.post("/predict", Some(DEV_KEY), &request).await;
        assert!(
            response.headers().contains_key("x-job-id"),
            "the failure is recorded"
        );
        assert_error(response, 404, "model_not_found").await;
    }
}

#[tokio::test]
async fn invalid_model_input_is_422_invalid_input() {
    let app = TestApp::spawn().await;
    let response = app
        .post(
            "/predict",
            Some(DEV_KEY),
            &json!({"model": "sleep", "data": "ten"}),
        )
        .await;
    assert_error(response, 422, "invalid_input").await;
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405_both_json() {
    let app = TestApp::spawn().await;
    assert_error(
        app.get("/no/such/route", Some(DEV_KEY)).await,
        404,
        "not_found",
    )
    .await;
    let wrong_method = app.get("/predict", Some(DEV_KEY)).await;
    assert_error(wrong_method, 405, "method_not_allowed").await;
    let delete = app.client.delete(app.url("/health")).send().await.unwrap();
    assert_error(delete, 405, "method_not_allowed").await;
}

#[tokio::test]
async fn unknown_routes_without_a_key_are_401_so_routes_are_not_revealed() {
    let app = TestApp::spawn().await;
    assert_error(
        app.get("/no/such/route", None).await,
        401,
        "unauthenticated",
    )
    .await;
}
