//! Large inputs: a 224×224×3 FP32 image served without raising `MAX_BODY_BYTES`, as a raw
//! `application/octet-stream` body or as JSON within the model's own `max_body_bytes`, and
//! every other model still held to the server's limit.

use inference_engine_testkit::families::assert_json_close;
use inference_engine_testkit::{DEV_KEY, TestApp, json_body, reqwest};
use serde_json::{Value, json};

/// 1 × 3 × 224 × 224.
const PIXELS: usize = 3 * 224 * 224;

/// A server with `image_mean` (raw_input, max_body_bytes = 4000000) and `echo`, and the
/// default 1 MB `MAX_BODY_BYTES`.
async fn app() -> (TestApp, tempfile::TempDir) {
    let repository = tempfile::tempdir().unwrap();
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/models/image_mean/v1");
    let target = repository.path().join("image_mean/v1");
    std::fs::create_dir_all(&target).unwrap();
    for file in ["model.onnx", "model.toml"] {
        std::fs::copy(source.join(file), target.join(file)).unwrap();
    }
    let models = repository.path().to_owned();
    let app = TestApp::spawn_with(|settings| {
        settings.models_dir = models;
        settings.max_body_bytes = 1_000_000;
    })
    .await;
    (app, repository)
}

/// `images` images whose channel c of image i holds values around `i + c / 10`.
fn images(count: usize) -> Vec<f32> {
    (0..count * PIXELS)
        .map(|index| {
            let (image, rest) = (index / PIXELS, index % PIXELS);
            let channel = rest / (224 * 224);
            #[allow(clippy::cast_precision_loss)]
            let wobble = ((rest % 7) as f32 - 3.0) / 100.0;
            image as f32 + channel as f32 / 10.0 + wobble
        })
        .collect()
}

/// The per-channel means of `images`, computed here.
fn means(pixels: &[f32]) -> Vec<Value> {
    pixels
        .chunks(224 * 224)
        .map(|channel| {
            let sum: f64 = channel.iter().map(|&value| f64::from(value)).sum();
            #[allow(clippy::cast_precision_loss)]
            Value::from(sum / channel.len() as f64)
        })
        .collect()
}

fn raw_bytes(pixels: &[f32]) -> Vec<u8> {
    pixels
        .iter()
        .flat_map(|value| value.to_le_bytes())
        .collect()
}

async fn post_raw(app: &TestApp, query: &str, body: Vec<u8>) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/predict?{query}")))
        .header("x-api-key", DEV_KEY)
        .header("content-type", "application/octet-stream")
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn one_raw_image_is_a_single_example_and_two_with_a_shape_are_a_list() {
    let (app, _repository) = app().await;
    let one = images(1);
    let body = raw_bytes(&one);
    assert_eq!(body.len(), 602_112, "a 224x224x3 FP32 image");

    let response = post_raw(&app, "model=image_mean&version=v1", body).await;
    assert_eq!(response.status(), 200);
    let answer = json_body(response).await;
    assert_json_close(
        &answer["result"]["means"],
        &Value::Array(means(&one)),
        "one image",
    );

    let two = images(2);
    let response = post_raw(
        &app,
        "model=image_mean&version=v1&shape=2,3,224,224",
        raw_bytes(&two),
    )
    .await;
    assert_eq!(response.status(), 200);
    let answer = json_body(response).await;
    let results = answer["result"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    for (index, (result, image)) in results.iter().zip(two.chunks(PIXELS)).enumerate() {
        assert_json_close(
            &result["means"],
            &Value::Array(means(image)),
            &format!("image {index}"),
        );
    }
    // The raw request is recorded like a JSON one.
    let job = json_body(
        app.get(
            &format!("/jobs/{}", answer["job_id"].as_str().unwrap()),
            Some(DEV_KEY),
        )
        .await,
    )
    .await;
    assert_eq!(job["status"], "succeeded", "{job}");
}

#[tokio::test]
async fn a_json_image_above_max_body_bytes_is_served_within_the_models_own_limit() {
    let (app, _repository) = app().await;
    let pixels = images(1);
    let image = json!([pixels
        .chunks(224 * 224)
        .map(|channel| channel.chunks(224).collect::<Vec<_>>())
        .collect::<Vec<_>>()]);
    let body = json!({"model": "image_mean", "version": "v1", "data": image}).to_string();
    assert!(
        (1_000_000..4_000_000).contains(&body.len()),
        "{} bytes: above the server's limit, within the model's",
        body.len()
    );
    let response = app
        .client
        .post(app.url("/predict"))
        .header("x-api-key", DEV_KEY)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer = json_body(response).await;
    assert_json_close(
        &answer["result"][0]["means"],
        &Value::Array(means(&pixels)),
        "JSON image",
    );
}

#[tokio::test]
async fn other_models_keep_the_server_limit_and_the_image_model_its_own() {
    let (app, _repository) = app().await;
    // Echo has no limit of its own: 1 MB, even though the route lets 4 MB through.
    let padding = "a".repeat(1_500_000);
    let response = app
        .post(
            "/predict",
            Some(DEV_KEY),
            &json!({"model": "echo", "version": "v1", "data": padding}),
        )
        .await;
    assert_eq!(response.status(), 413);
    let error = json_body(response).await;
    assert_eq!(error["code"], "payload_too_large");
    assert!(
        error["detail"].as_str().unwrap().contains("1000000 bytes"),
        "{error}"
    );
    // Past the model's own 4 MB, as raw bytes (7 images) or protocol tensors.
    let response = post_raw(
        &app,
        "model=image_mean&version=v1&shape=7,3,224,224",
        raw_bytes(&images(7)),
    )
    .await;
    assert_eq!(response.status(), 413);
    let error = json_body(response).await;
    assert!(
        error["detail"].as_str().unwrap().contains("4000000 bytes"),
        "{error}"
    );
}

#[tokio::test]
async fn raw_bodies_that_do_not_fit_are_422_with_a_sentence() {
    let (app, _repository) = app().await;
    // Not a whole image.
    let response = post_raw(&app, "model=image_mean&version=v1", vec![0; 1000]).await;
    assert_eq!(response.status(), 422);
    let error = json_body(response).await;
    assert_eq!(error["code"], "invalid_input");
    assert_eq!(
        error["detail"],
        "input `image`: the body holds 250 elements, not a whole number of examples of 150528"
    );
    // A shape that is not the input's.
    let response = post_raw(
        &app,
        "model=image_mean&version=v1&shape=1,3,112,448",
        raw_bytes(&images(1)),
    )
    .await;
    assert_eq!(response.status(), 422);
    // A model without raw_input.
    let response = post_raw(&app, "model=echo&version=v1", vec![1, 2, 3]).await;
    assert_eq!(response.status(), 422);
    let error = json_body(response).await;
    assert_eq!(error["code"], "invalid_request");
    assert!(
        error["detail"]
            .as_str()
            .unwrap()
            .contains("raw_input = true"),
        "{error}"
    );
    // No model named.
    let response = post_raw(&app, "", vec![1, 2, 3]).await;
    assert_eq!(response.status(), 422);
}
