//! The network edge with raw TCP clients: slow clients are cut off, the connection cap refuses
//! newcomers at once while open connections are served, and the requests hyper rejects before
//! any route (unparsable heads) still get the JSON error contract.

use std::time::Duration;

use inference_engine_testkit::{DEV_KEY, TestApp};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

/// A generous bound for "at once" and "within the timeout" (the timeouts are far shorter).
const PROMPTLY: Duration = Duration::from_secs(10);

/// Reads until the peer closes (or resets) the connection; what it sent before.
async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buffer = [0; 8192];
    loop {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return received,
            Ok(n) => received.extend_from_slice(&buffer[..n]),
        }
    }
}

/// One response: status, lower-cased headers, body (by `content-length`).
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|err| {
            panic!(
                "not JSON ({err}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Reads one response off `stream`.
async fn read_answer(stream: &mut TcpStream) -> Answer {
    let mut received = Vec::new();
    let mut buffer = [0; 8192];
    let head_end = loop {
        if let Some(end) = received.windows(4).position(|window| window == b"\r\n\r\n") {
            break end;
        }
        let n = stream.read(&mut buffer).await.expect("read");
        assert!(
            n > 0,
            "closed before a response: {:?}",
            String::from_utf8_lossy(&received)
        );
        received.extend_from_slice(&buffer[..n]);
    };
    let head = String::from_utf8_lossy(&received[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(key, value)| (key.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(key, _)| key == "content-length")
        .map_or(0, |(_, value)| value.parse().unwrap());
    let mut body = received[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut buffer).await.expect("read");
        assert!(n > 0, "closed inside the body");
        body.extend_from_slice(&buffer[..n]);
    }
    Answer {
        status,
        headers,
        body,
    }
}

async fn health_on(stream: &mut TcpStream) -> Answer {
    stream
        .write_all(b"GET /health HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    timeout(PROMPTLY, read_answer(stream))
        .await
        .expect("answered")
}

#[tokio::test]
async fn a_client_sending_half_a_head_is_disconnected_within_the_header_timeout() {
    let app = TestApp::spawn_with(|settings| settings.http_header_read_timeout_ms = 300).await;
    let mut slow = TcpStream::connect(app.address).await.unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nhost: test\r\n")
        .await
        .unwrap();
    let received = timeout(PROMPTLY, read_to_close(&mut slow))
        .await
        .expect("the slow client is cut off, not held");
    assert!(received.is_empty(), "no answer to half a head");
    // A client that never sends a byte is held no longer.
    let mut silent = TcpStream::connect(app.address).await.unwrap();
    timeout(PROMPTLY, read_to_close(&mut silent))
        .await
        .expect("the silent client is cut off");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let app = TestApp::spawn_with(|settings| settings.http_idle_timeout_s = 1).await;
    let mut client = TcpStream::connect(app.address).await.unwrap();
    let started = Instant::now();
    assert_eq!(health_on(&mut client).await.status, 200);
    assert_eq!(health_on(&mut client).await.status, 200, "kept alive");
    timeout(PROMPTLY, read_to_close(&mut client))
        .await
        .expect("the idle connection is closed");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "not before the idle timeout"
    );
}

#[tokio::test]
async fn a_body_shorter_than_its_content_length_gets_a_json_408_within_the_body_timeout() {
    let app = TestApp::spawn_with(|settings| settings.http_body_read_timeout_s = 1).await;
    let mut client = TcpStream::connect(app.address).await.unwrap();
    let head = format!(
        "POST /predict HTTP/1.1\r\nhost: test\r\nx-api-key: {DEV_KEY}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"model\":"
    );
    client.write_all(head.as_bytes()).await.unwrap();
    let answer = timeout(PROMPTLY, read_answer(&mut client))
        .await
        .expect("answered within the body timeout");
    assert_eq!(answer.status, 408);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    let body = answer.json();
    assert_eq!(body["code"], "request_timeout", "{body}");
    assert_eq!(
        body["request_id"].as_str(),
        answer.header("x-request-id"),
        "{body}"
    );
    timeout(PROMPTLY, read_to_close(&mut client))
        .await
        .expect("then the connection is closed");
}

#[tokio::test]
async fn past_max_connections_a_new_connection_is_closed_at_once_and_the_open_ones_are_served() {
    let app = TestApp::spawn_with(|settings| settings.max_connections = 2).await;
    let mut first = TcpStream::connect(app.address).await.unwrap();
    let mut second = TcpStream::connect(app.address).await.unwrap();
    assert_eq!(health_on(&mut first).await.status, 200);
    assert_eq!(health_on(&mut second).await.status, 200);

    let mut third = TcpStream::connect(app.address).await.unwrap();
    let _ = third
        .write_all(b"GET /health HTTP/1.1\r\nhost: test\r\n\r\n")
        .await;
    let received = timeout(PROMPTLY, read_to_close(&mut third))
        .await
        .expect("refused at once, not left waiting");
    assert!(received.is_empty(), "refused without an answer");

    assert_eq!(health_on(&mut first).await.status, 200, "still served");
    assert_eq!(health_on(&mut second).await.status, 200, "still served");
    drop(first);
    // Its place is free again once the server has seen it close.
    let deadline = Instant::now() + PROMPTLY;
    loop {
        let mut next = TcpStream::connect(app.address).await.unwrap();
        // `connection: close`, so an accepted connection ends after its answer too.
        next.write_all(b"GET /health HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let received = timeout(PROMPTLY, read_to_close(&mut next)).await.unwrap();
        if received.starts_with(b"HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "the freed place was not reused");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_grpc_listener_applies_the_connection_cap_too() {
    use inference_engine_v2::proto::inference::ServerLiveRequest;
    use inference_engine_v2::proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;

    let app = TestApp::spawn_with(|settings| settings.max_connections = 1).await;
    let url = app.grpc_url().await;
    let mut client = GrpcInferenceServiceClient::connect(url.clone())
        .await
        .unwrap();
    assert!(
        client
            .server_live(ServerLiveRequest {})
            .await
            .unwrap()
            .into_inner()
            .live
    );

    let address = url.trim_start_matches("http://");
    let mut second = TcpStream::connect(address).await.unwrap();
    let received = timeout(PROMPTLY, read_to_close(&mut second))
        .await
        .expect("refused at once, not left waiting");
    assert!(
        received.is_empty(),
        "no HTTP/2 settings for a refused connection"
    );

    assert!(
        client
            .server_live(ServerLiveRequest {})
            .await
            .unwrap()
            .into_inner()
            .live,
        "the open connection is still served"
    );
}

/// Sends `request` on a fresh connection and reads the one answer.
async fn answer_to(app: &TestApp, request: &[u8]) -> Answer {
    let mut stream = TcpStream::connect(app.address).await.unwrap();
    // The server may answer and close before it read everything: a failed write is fine.
    let _ = stream.write_all(request).await;
    timeout(PROMPTLY, read_answer(&mut stream))
        .await
        .expect("answered")
}

fn assert_json_error(answer: &Answer, status: u16, code: &str) {
    assert_eq!(answer.status, status);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    let body = answer.json();
    assert_eq!(body["code"], code, "{body}");
    let request_id = answer.header("x-request-id").expect("x-request-id");
    assert!(!request_id.is_empty());
    assert_eq!(body["request_id"], request_id, "{body}");
    assert!(body["detail"].is_string(), "{body}");
}

#[tokio::test]
async fn requests_rejected_before_routing_get_json_errors_with_a_request_id() {
    let app = TestApp::spawn().await;

    let mut many = String::from("GET /health HTTP/1.1\r\nhost: test\r\n");
    for index in 0..200 {
        many.push_str(&format!("x-filler-{index}: 1\r\n"));
    }
    many.push_str("\r\n");
    assert_json_error(
        &answer_to(&app, many.as_bytes()).await,
        431,
        "headers_too_large",
    );

    let large = format!(
        "GET /health HTTP/1.1\r\nhost: test\r\nx-large: {}\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    assert_json_error(
        &answer_to(&app, large.as_bytes()).await,
        431,
        "headers_too_large",
    );

    let bad_length = b"POST /predict HTTP/1.1\r\nhost: test\r\ncontent-length: abc\r\n\r\n{}";
    assert_json_error(&answer_to(&app, bad_length).await, 400, "malformed_request");

    let long_uri = format!(
        "GET /health?{} HTTP/1.1\r\nhost: test\r\n\r\n",
        "q".repeat(20 * 1024)
    );
    assert_json_error(
        &answer_to(&app, long_uri.as_bytes()).await,
        414,
        "uri_too_long",
    );

    // The ordinary paths are untouched: a route's own 400 keeps its code.
    let ordinary = format!(
        "POST /predict HTTP/1.1\r\nhost: test\r\nx-api-key: {DEV_KEY}\r\ncontent-type: application/json\r\ncontent-length: 1\r\n\r\n{{"
    );
    assert_json_error(
        &answer_to(&app, ordinary.as_bytes()).await,
        400,
        "malformed_json",
    );
}
