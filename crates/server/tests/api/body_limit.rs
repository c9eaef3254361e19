use std::time::Duration;

use inference_engine_testkit::{DEV_KEY, TestApp, json_body, reqwest};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LIMIT: usize = 1_000;

async fn app() -> TestApp {
    TestApp::spawn_with(|settings| settings.max_body_bytes = LIMIT).await
}

/// Sends raw bytes and returns the status and JSON body of the first response.
async fn raw_exchange(app: &TestApp, request: &[u8]) -> (u16, Value) {
    let mut stream = TcpStream::connect(app.address).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut received = Vec::new();
    let mut buffer = [0_u8; 4096];
    let response = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let read = stream.read(&mut buffer).await.unwrap_or(0);
            if read == 0 {
                break;
            }
            received.extend_from_slice(&buffer[..read]);
            let text = String::from_utf8_lossy(&received).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .find_map(|line| line.strip_prefix("content-length: "))
                    .and_then(|value| value.trim().parse::<usize>().ok());
                if length.is_some_and(|length| body.len() >= length) {
                    return text;
                }
            }
        }
        String::from_utf8_lossy(&received).into_owned()
    })
    .await
    .expect("a response within the deadline");
    let status = response[9..12].parse().unwrap();
    let body = response.split_once("\r\n\r\n").unwrap().1;
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn body_of(size: usize) -> String {
    let padding = size - r#"{"model":"echo","version":"v1","data":""}"#.len();
    format!(
        r#"{{"model":"echo","version":"v1","data":"{}"}}"#,
        "a".repeat(padding)
    )
}

/// `POST /predict` with the dev key and a predict body of exactly `size` bytes.
async fn predict_of_size(app: &TestApp, size: usize) -> reqwest::Response {
    app.client
        .post(app.url("/predict"))
        .header("x-api-key", DEV_KEY)
        .body(body_of(size))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_body_at_the_limit_passes_and_one_byte_more_is_413() {
    let app = app().await;
    let at_limit = predict_of_size(&app, LIMIT).await;
    assert_eq!(at_limit.status(), 200);

    let over = predict_of_size(&app, LIMIT + 1).await;
    assert_eq!(over.status(), 413);
    assert!(over.headers().contains_key("x-request-id"));
    assert_eq!(json_body(over).await["code"], "payload_too_large");
}

/// `MAX_BODY_BYTES` is the only limit: bodies above axum's own 2 MB default pass on the routes
/// that read JSON and on the V2 REST route that reads raw bytes.
#[tokio::test]
async fn bodies_above_two_megabytes_pass_when_max_body_bytes_allows_them() {
    const BIG: usize = 3_000_000;
    let app = TestApp::spawn_with(|settings| settings.max_body_bytes = 4_000_000).await;
    let predict = predict_of_size(&app, BIG).await;
    assert_eq!(predict.status(), 200);
    let text = "a".repeat(BIG);
    let inputs = json!([{"name": "text", "shape": [1], "datatype": "BYTES", "data": [text]}]);
    let v2 = app
        .post_ok(
            "/v2/models/echo/versions/v1/infer",
            &json!({"inputs": inputs}),
        )
        .await;
    assert_eq!(
        v2["outputs"][0]["data"][0].as_str().map(str::len),
        Some(BIG)
    );
}

#[tokio::test]
async fn a_chunked_body_without_content_length_is_counted_as_it_streams() {
    let app = app().await;
    let mut request = format!(
        "POST /predict HTTP/1.1\r\nhost: x\r\nx-api-key: {DEV_KEY}\r\ntransfer-encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    let body = body_of(3 * LIMIT);
    for chunk in body.as_bytes().chunks(300) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let (status, body) = raw_exchange(&app, &request).await;
    assert_eq!(status, 413);
    assert_eq!(body["code"], "payload_too_large");
}

#[tokio::test]
async fn a_content_length_claiming_more_than_the_limit_is_413_at_once() {
    let app = app().await;
    // Claims 10 MB but sends 20 bytes: refused on the header, without waiting for the rest.
    let request = format!(
        "POST /predict HTTP/1.1\r\nhost: x\r\nx-api-key: {DEV_KEY}\r\ncontent-length: 10000000\r\n\r\n{{\"model\":\"echo\"}}   "
    );
    let (status, body) = raw_exchange(&app, request.as_bytes()).await;
    assert_eq!(status, 413);
    assert_eq!(body["code"], "payload_too_large");
}

#[tokio::test]
async fn the_limit_applies_whatever_the_method() {
    let app = app().await;
    let response = app
        .client
        .get(app.url("/models"))
        .header("x-api-key", DEV_KEY)
        .body("x".repeat(LIMIT + 1))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
}

#[tokio::test]
async fn auth_is_checked_before_the_body_size() {
    let app = app().await;
    let response = app
        .client
        .post(app.url("/predict"))
        .body(body_of(LIMIT + 1))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let _ = json!(null);
}
