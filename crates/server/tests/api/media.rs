//! Text and images over the API: strings and PNGs in JSON, as raw `text/plain` / `image/png`
//! bodies and as V2 `BYTES` tensors, answered like the Python references; bad images get 422
//! with a sentence (never a 5xx) and are recorded.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use inference_engine_testkit::families::assert_json_close;
use inference_engine_testkit::{DEV_KEY, TestApp, json_body, reqwest};
use inference_engine_v2::proto::inference::model_infer_request::InferInputTensor;
use inference_engine_v2::proto::inference::{InferTensorContents, ModelInferRequest};
use serde_json::{Value, json};

use crate::v2::{grpc, with_key};

async fn demo_app() -> TestApp {
    TestApp::spawn_with_demo_models(|_| {}).await
}

fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn expected(file: &str) -> Value {
    let path = root().join("testdata/expected").join(file);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Each committed digit PNG with the answer Python gets for it.
fn digits() -> Vec<(Vec<u8>, Value)> {
    expected("digits_cnn-v2.json")["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|case| {
            let file = case["file"].as_str().unwrap();
            let bytes = std::fs::read(root().join("testdata/images/digits").join(file)).unwrap();
            let label = case["label"].as_str().unwrap();
            let answer = json!({
                "label": label,
                "score": case["scores"][label],
                "scores": case["scores"],
            });
            (bytes, answer)
        })
        .collect()
}

async fn post_body(
    app: &TestApp,
    query: &str,
    content_type: &str,
    body: Vec<u8>,
) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/predict?{query}")))
        .header("x-api-key", DEV_KEY)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn model_details_say_what_text_and_image_models_take() {
    let app = demo_app().await;
    let digits = json_body(app.get("/models/digits_cnn/v2", Some(DEV_KEY)).await).await;
    assert_eq!(
        digits["preprocess"],
        json!({"kind": "image", "width": 8, "height": 8, "channels": "grayscale"})
    );
    assert_eq!(digits["postprocess"], "classification");
    let text = json_body(app.get("/models/text_classifier/v1", Some(DEV_KEY)).await).await;
    assert_eq!(
        text["preprocess"],
        json!({"kind": "text", "max_length": 64})
    );
    let iris = json_body(app.get("/models/iris/v1", Some(DEV_KEY)).await).await;
    assert!(iris.get("preprocess").is_none(), "{iris}");
}

#[tokio::test]
async fn a_png_is_answered_as_base64_json_and_as_a_raw_body() {
    let app = demo_app().await;
    for (index, (bytes, wanted)) in digits().into_iter().enumerate() {
        let what = format!("digit {index}");
        let body = json!({
            "model": "digits_cnn",
            "version": "v2",
            "data": {"image_base64": BASE64.encode(&bytes)},
        });
        let answer = app.post_ok("/predict", &body).await;
        assert_json_close(&answer["result"], &wanted, &what);

        let response = post_body(&app, "model=digits_cnn&version=v2", "image/png", bytes).await;
        assert_eq!(response.status(), 200, "{what}");
        let answer = json_body(response).await;
        assert_json_close(&answer["result"], &wanted, &format!("{what} raw"));
        let job_id = answer["job_id"].as_str().unwrap();
        let job = json_body(app.get(&format!("/jobs/{job_id}"), Some(DEV_KEY)).await).await;
        assert_eq!(job["status"], "succeeded", "{job}");
    }
}

/// A PNG (signature, IHDR, a few bytes of IDAT, IEND, valid checksums) claiming `width` ×
/// `height`: what a decompression bomb looks like before its pixels are inflated.
fn png_header(width: u32, height: u32) -> Vec<u8> {
    let mut header = width.to_be_bytes().to_vec();
    header.extend(height.to_be_bytes());
    header.extend([8, 0, 0, 0, 0]); // 8-bit grayscale, deflate, no filter, no interlace
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, data) in [
        (b"IHDR", header),
        (b"IDAT", vec![0x78, 0x9c, 0x63, 0, 0, 0, 1, 0, 1]),
        (b"IEND", Vec::new()),
    ] {
        let mut chunk = kind.to_vec();
        chunk.extend(&data);
        png.extend(u32::try_from(data.len()).unwrap().to_be_bytes());
        png.extend(&chunk);
        png.extend(crc32(&chunk).to_be_bytes());
    }
    png
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[tokio::test]
async fn truncated_corrupt_empty_and_oversized_images_are_422_with_a_sentence() {
    let app = demo_app().await;
    let (png, _) = digits().remove(0);
    let mut corrupt = png.clone();
    let middle = corrupt.len() / 2;
    corrupt[middle..].iter_mut().for_each(|byte| *byte ^= 0x5a);
    let cases: [(&str, Vec<u8>, &str); 5] = [
        (
            "truncated",
            png[..png.len() / 2].to_vec(),
            "cannot decode the PNG",
        ),
        ("corrupt", corrupt, "cannot decode the PNG"),
        ("empty", Vec::new(), "the image is empty (0 bytes)"),
        (
            "not an image",
            b"GIF? no, plain text".to_vec(),
            "not a PNG, JPEG or WebP image",
        ),
        (
            "a bomb",
            png_header(50_000, 50_000),
            "the PNG is 50000×50000 = 2500000000 pixels; this model takes at most 40000000",
        ),
    ];
    for (what, bytes, message) in cases {
        // As JSON and as a raw body alike.
        let body = json!({
            "model": "digits_cnn",
            "version": "v2",
            "data": {"image_base64": BASE64.encode(&bytes)},
        });
        let response = app.post("/predict", Some(DEV_KEY), &body).await;
        assert_eq!(response.status(), 422, "{what}");
        let error = json_body(response).await;
        assert_eq!(error["code"], "invalid_input", "{what}: {error}");
        let text = error["detail"].as_str().unwrap_or_default();
        assert!(text.contains(message), "{what}: {error}");

        let response = post_body(&app, "model=digits_cnn&version=v2", "image/png", bytes).await;
        assert_eq!(response.status(), 422, "{what} raw");
        let error = json_body(response).await;
        assert!(
            error["detail"]
                .as_str()
                .unwrap_or_default()
                .contains(message),
            "{what} raw: {error}"
        );
    }
    let response = app
        .post(
            "/predict",
            Some(DEV_KEY),
            &json!({"model": "digits_cnn", "version": "v2", "data": {"image_base64": "@@not base64"}}),
        )
        .await;
    assert_eq!(response.status(), 422);
    // Image bodies are for image models only.
    let response = post_body(&app, "model=iris&version=v1", "image/png", png).await;
    assert_eq!(response.status(), 422);
    let error = json_body(response).await;
    assert!(
        error["detail"]
            .as_str()
            .unwrap()
            .contains("takes no images"),
        "{error}"
    );
}

#[tokio::test]
async fn text_goes_in_as_json_strings_and_as_a_text_plain_body() {
    let app = demo_app().await;
    let reference = expected("text_classifier-v1.json");
    for case in reference["cases"].as_array().unwrap() {
        let body = json!({"model": "text_classifier", "version": "v1", "data": case["data"]});
        let answer = app.post_ok("/predict", &body).await;
        assert_json_close(
            &answer["result"],
            &case["result"],
            case["name"].as_str().unwrap(),
        );
    }
    let single = &reference["cases"][0];
    let text = single["data"].as_str().unwrap().as_bytes().to_vec();
    let response = post_body(
        &app,
        "model=text_classifier&version=v1",
        "text/plain; charset=utf-8",
        text,
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_json_close(
        &json_body(response).await["result"],
        &single["result"],
        "text/plain",
    );
    // /predict/batch: one item per text.
    let items = reference["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|case| case["data"].clone())
        .collect::<Vec<_>>();
    let answer = app
        .post_ok(
            "/predict/batch",
            &json!({"model": "text_classifier", "version": "v1", "items": items}),
        )
        .await;
    for (result, case) in answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .zip(reference["cases"].as_array().unwrap())
    {
        assert_json_close(result, &case["result"], "batch");
    }
}

#[tokio::test]
async fn v2_clients_send_texts_and_images_as_bytes_tensors() {
    let app = demo_app().await;
    // Texts over REST: the graph's logits, the same labels as the JSON API.
    let reference = expected("text_classifier-v1.json");
    let list = reference["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|case| case["name"] == "list")
        .unwrap();
    let texts = list["data"].as_array().unwrap();
    let body = json!({"inputs": [{
        "name": "text", "datatype": "BYTES", "shape": [texts.len()], "data": texts,
    }]});
    let response = app
        .post(
            "/v2/models/text_classifier/versions/v1/infer",
            Some(DEV_KEY),
            &body,
        )
        .await;
    assert_eq!(response.status(), 200);
    let answer = json_body(response).await;
    let logits = &answer["outputs"][0];
    assert_eq!(logits["name"], "logits");
    assert_eq!(logits["shape"], json!([texts.len(), 2]));
    let values = logits["data"].as_array().unwrap();
    for (index, expected) in list["result"].as_array().unwrap().iter().enumerate() {
        let (negative, positive) = (
            values[2 * index].as_f64().unwrap(),
            values[2 * index + 1].as_f64().unwrap(),
        );
        let label = if positive > negative {
            "positive"
        } else {
            "negative"
        };
        assert_eq!(expected["label"], label, "text {index}");
    }

    // Images over gRPC: encoded PNG files as BYTES elements.
    let digits = digits();
    let mut client = grpc(&app).await;
    let request = ModelInferRequest {
        model_name: "digits_cnn".to_owned(),
        model_version: "v2".to_owned(),
        inputs: vec![InferInputTensor {
            name: "image".to_owned(),
            datatype: "BYTES".to_owned(),
            shape: vec![i64::try_from(digits.len()).unwrap()],
            contents: Some(InferTensorContents {
                bytes_contents: digits
                    .iter()
                    .map(|(bytes, _)| bytes.clone().into())
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    };
    let response = client
        .model_infer(with_key(request, DEV_KEY))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        response.outputs[0].shape,
        vec![i64::try_from(digits.len()).unwrap(), 10]
    );
    let logits: Vec<f32> = response.raw_output_contents[0]
        .chunks_exact(4)
        .map(|chunk| f32::from_le_bytes(chunk.try_into().unwrap()))
        .collect();
    for (index, ((_, wanted), row)) in digits.iter().zip(logits.chunks(10)).enumerate() {
        let best = row
            .iter()
            .enumerate()
            .max_by(|left, right| left.1.total_cmp(right.1))
            .map(|(digit, _)| digit.to_string())
            .unwrap();
        assert_eq!(wanted["label"], Value::from(best), "image {index}");
    }
}

/// The demo pipeline (sentence_embedder's embedding fed to topic_classifier) answers what
/// running the two models by hand in Python gives.
#[tokio::test]
async fn the_text_topic_pipeline_answers_as_its_steps_by_hand() {
    let app = demo_app().await;
    let reference = expected("text_topic-v1.json");
    for case in reference["cases"].as_array().unwrap() {
        let what = case["name"].as_str().unwrap();
        let body = json!({"model": "text_topic", "version": "v1", "data": case["data"]});
        let response = app.post("/predict", Some(DEV_KEY), &body).await;
        assert_eq!(response.status(), 200, "{what}");
        assert!(
            response.headers().contains_key("x-inference-steps-ms"),
            "{what}"
        );
        let answer = json_body(response).await;
        assert_json_close(&answer["result"], &case["result"], what);
        // And the same through the two models one after the other.
        let embedded = app
            .post_ok(
                "/predict",
                &json!({"model": "sentence_embedder", "version": "v1", "data": case["data"]}),
            )
            .await;
        let embeddings = match &embedded["result"] {
            Value::Array(items) => {
                Value::Array(items.iter().map(|item| item["embedding"].clone()).collect())
            }
            single => single["embedding"].clone(),
        };
        let classified = app
            .post_ok(
                "/predict",
                &json!({"model": "topic_classifier", "version": "v1", "data": embeddings}),
            )
            .await;
        assert_json_close(
            &classified["result"],
            &answer["result"],
            &format!("{what} by hand"),
        );
    }
}
