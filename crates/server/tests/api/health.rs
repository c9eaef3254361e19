use inference_engine_testkit::{TestApp, json_body};
use serde_json::json;

#[tokio::test]
async fn health_and_ready_report_ok() {
    let app = TestApp::spawn().await;
    assert_eq!(
        json_body(app.get("/health", None).await).await,
        json!({"status": "ok"})
    );
    assert_eq!(
        json_body(app.get("/ready", None).await).await,
        json!({"status": "ready"})
    );
}

#[tokio::test]
async fn ready_is_503_draining_once_shutdown_starts() {
    let app = TestApp::spawn().await;
    app.ctx.lifecycle.start_draining();
    let response = app.get("/ready", None).await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let body = json_body(response).await;
    assert_eq!(body["status"], "draining");
    assert_eq!(body["code"], "not_ready");
    assert!(body["reason"].is_string());
}
