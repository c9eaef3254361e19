//! Pipelines of models (`backend = "pipeline"`): the answer of a pipeline is what running its
//! steps by hand gives, one deadline covers the whole pipeline, one job records it with the
//! steps' timings, each step is routed like a request of its own, and broken pipelines are
//! refused with a sentence naming the step.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use inference_engine_testkit::{Backend, DEV_KEY, TestApp, json_body};
use serde_json::{Value, json};

use crate::models::{Repository, assert_close, config_file};

/// A model repository with iris (v1) and the given pipelines (`("name/version", manifest)`).
fn repository(pipelines: &[(&str, &str)]) -> Repository {
    let repository = Repository::new();
    repository.copy("iris/v1", "iris/v1", "");
    for (folder, manifest) in pipelines {
        let dir = repository.path().join(folder);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("model.toml"), manifest).unwrap();
    }
    repository
}

/// The server on `repository`, with `engine.toml` saying `config`.
async fn app_on(repository: &Repository, config: &str) -> (TestApp, tempfile::TempDir) {
    app_on_backend(Backend::Local, repository, config).await
}

async fn app_on_backend(
    backend: Backend,
    repository: &Repository,
    config: &str,
) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), config);
    let models = repository.path();
    let app = TestApp::spawn_on_backend(backend, |settings| {
        settings.models_dir = models;
        settings.config = Some(config);
    })
    .await;
    (app, dir)
}

const ECHO_IRIS: &str = r#"
backend = "pipeline"
description = "echo, then iris"

[[steps]]
model = "echo:v1"

[[steps]]
model = "iris:v1"
"#;

/// echo → iris, taking iris' input from field `features` → echo again, taking the setosa
/// probability as `setosa_p`.
const MAPPED: &str = r#"
backend = "pipeline"

[[steps]]
model = "echo:v1"

[[steps]]
model = "iris:v1"
inputs = { input = "features" }

[[steps]]
model = "echo:v2"
inputs = { setosa_p = "setosa" }
"#;

const SETOSA: [f64; 4] = [5.1, 3.5, 1.4, 0.2];
const VIRGINICA: [f64; 4] = [6.7, 3.0, 5.2, 2.3];

/// `POST /predict` of `model` (and `version`) on `data`, which must answer 200: its result.
async fn predict(app: &TestApp, model: &str, version: &str, data: &Value) -> Value {
    let body = app
        .post_ok(
            "/predict",
            &json!({"model": model, "version": version, "data": data}),
        )
        .await;
    body["result"].clone()
}

async fn job(app: &TestApp, job_id: &str) -> Value {
    json_body(app.get(&format!("/jobs/{job_id}"), Some(DEV_KEY)).await).await
}

/// `model:version=ms, ...` → the `model:version` of each step, checking every time is a number.
fn step_models(header: &str) -> Vec<String> {
    header
        .split(", ")
        .map(|step| {
            let (model, millis) = step.split_once('=').unwrap();
            assert!(millis.parse::<f64>().is_ok(), "{header}");
            model.to_owned()
        })
        .collect()
}

#[tokio::test]
async fn a_pipelines_answer_equals_running_its_steps_by_hand() {
    let repository = repository(&[("echo_iris/v1", ECHO_IRIS)]);
    let (app, _dir) = app_on(&repository, "").await;

    // One example, a list of examples, and a list of objects keyed by iris' one input (which
    // becomes one object of lists, and then iris' bare list).
    let cases = [
        (json!(SETOSA), json!(SETOSA)),
        (json!([SETOSA, VIRGINICA]), json!([SETOSA, VIRGINICA])),
        (
            json!([{"input": SETOSA}, {"input": VIRGINICA}]),
            json!([SETOSA, VIRGINICA]),
        ),
        (json!({"input": VIRGINICA}), json!(VIRGINICA)),
    ];
    for (data, iris_data) in cases {
        let response = app
            .post(
                "/predict",
                Some(DEV_KEY),
                &json!({"model": "echo_iris", "data": data}),
            )
            .await;
        assert_eq!(response.status(), 200);
        let headers = response.headers().clone();
        let body = json_body(response).await;

        let echoed = predict(&app, "echo", "v1", &data).await;
        assert_eq!(echoed, data);
        let by_hand = predict(&app, "iris", "v1", &iris_data).await;
        assert_eq!(body["result"], by_hand, "data {data}");
        assert_eq!(
            (body["model"].as_str(), body["version"].as_str()),
            (Some("echo_iris"), Some("v1"))
        );

        // The totals, and the breakdown per step in step order.
        assert!(
            headers["x-inference-time-ms"]
                .to_str()
                .unwrap()
                .parse::<f64>()
                .is_ok()
        );
        let inference = headers["x-inference-steps-ms"].to_str().unwrap();
        assert_eq!(step_models(inference), ["echo:v1", "iris:v1"]);
        let queue = headers["x-queue-steps-ms"].to_str().unwrap();
        assert_eq!(step_models(queue), ["echo:v1", "iris:v1"]);

        // One job records the whole pipeline, with what each step took.
        let job_id = body["job_id"].as_str().unwrap();
        let record = job(&app, job_id).await;
        assert_eq!(record["status"], "succeeded");
        assert_eq!(
            (record["model"].as_str(), record["version"].as_str()),
            (Some("echo_iris"), Some("v1"))
        );
        assert_eq!(record["result"], by_hand);
        let steps = record["steps"].as_array().unwrap();
        let models: Vec<(&str, &str)> = steps
            .iter()
            .map(|step| {
                (
                    step["model"].as_str().unwrap(),
                    step["version"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(models, [("echo", "v1"), ("iris", "v1")]);
        for step in steps {
            assert!(step["queue_time_ms"].as_f64().is_some(), "{step}");
            assert!(step["inference_time_ms"].as_f64().is_some(), "{step}");
        }
    }
}

#[tokio::test]
async fn an_inputs_mapping_takes_fields_of_the_previous_answer_for_one_example_and_a_list() {
    let repository = repository(&[("mapped/v1", MAPPED)]);
    let (app, _dir) = app_on(&repository, "").await;

    let single = json!({"features": SETOSA, "id": 7});
    let list = json!([{"features": SETOSA, "id": 1}, {"features": VIRGINICA, "id": 2}]);
    for data in [single, list] {
        let answer = app
            .post_ok("/predict", &json!({"model": "mapped", "data": data}))
            .await;

        // By hand: echo, iris on the `features` (a list of objects gives a list of them),
        // echo again on `setosa` (likewise).
        let echoed = predict(&app, "echo", "v1", &data).await;
        let features = match &echoed {
            Value::Array(examples) => {
                Value::Array(examples.iter().map(|e| e["features"].clone()).collect())
            }
            example => example["features"].clone(),
        };
        let probabilities = predict(&app, "iris", "v1", &features).await;
        let setosa = match &probabilities {
            Value::Array(examples) => {
                Value::Array(examples.iter().map(|e| e["setosa"].clone()).collect())
            }
            example => example["setosa"].clone(),
        };
        let by_hand = predict(&app, "echo", "v2", &json!({"setosa_p": setosa})).await;
        assert_eq!(answer["result"], by_hand, "data {data}");
    }
}

#[tokio::test]
async fn a_batch_runs_every_step_on_each_item() {
    let repository = repository(&[("echo_iris/v1", ECHO_IRIS), ("mapped/v1", MAPPED)]);
    let (app, _dir) = app_on(&repository, "").await;

    let items = json!([SETOSA, [SETOSA, VIRGINICA]]);
    let answer = app
        .post_ok(
            "/predict/batch",
            &json!({"model": "echo_iris", "items": items}),
        )
        .await;
    let by_hand = app
        .post_ok(
            "/predict/batch",
            &json!({"model": "iris", "version": "v1", "items": items}),
        )
        .await;
    assert_eq!(answer["results"], by_hand["results"]);
    assert_eq!(answer["results"].as_array().unwrap().len(), 2);

    let items = json!([{"features": SETOSA}, {"features": VIRGINICA}]);
    let answer = app
        .post_ok(
            "/predict/batch",
            &json!({"model": "mapped", "items": items}),
        )
        .await;
    for (index, item) in items.as_array().unwrap().iter().enumerate() {
        let alone = app
            .post_ok("/predict", &json!({"model": "mapped", "data": item}))
            .await;
        // One graph run for both items, or one for each: equal up to float rounding.
        assert_close(
            &answer["results"][index],
            &alone["result"],
            &format!("item {index}"),
        );
    }
    let record = job(&app, answer["job_id"].as_str().unwrap()).await;
    assert_eq!(record["steps"].as_array().unwrap().len(), 3);
}

mod async_jobs {
    use inference_engine_testkit::Backend;

    #[tokio::test]
    async fn local() {
        super::an_async_pipeline_job_runs_its_steps_and_records_them(Backend::Local).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_and_redis() {
        super::an_async_pipeline_job_runs_its_steps_and_records_them(Backend::Distributed).await;
    }
}

async fn an_async_pipeline_job_runs_its_steps_and_records_them(backend: Backend) {
    let repository = repository(&[("echo_iris/v1", ECHO_IRIS)]);
    let (app, _dir) = app_on_backend(backend, &repository, "").await;

    let data = json!([SETOSA, VIRGINICA]);
    let response = app
        .post(
            "/predict/async",
            Some(DEV_KEY),
            &json!({"model": "echo_iris", "data": data}),
        )
        .await;
    assert_eq!(response.status(), 202);
    let job_id = json_body(response).await["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(15);
    let record = loop {
        let record = json_body(
            app.get(&format!("/predict/async/{job_id}"), Some(DEV_KEY))
                .await,
        )
        .await;
        if matches!(
            record["status"].as_str(),
            Some("succeeded" | "failed" | "cancelled")
        ) {
            break record;
        }
        assert!(
            Instant::now() < deadline,
            "the job never finished: {record}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    assert_eq!(record["status"], "succeeded", "{record}");
    assert_eq!(record["mode"], "async");
    assert_eq!(record["result"], predict(&app, "iris", "v1", &data).await);
    let steps: Vec<&str> = record["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| step["model"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["echo", "iris"]);

    // Async batches too.
    let response = app
        .post(
            "/predict/async/batch",
            Some(DEV_KEY),
            &json!({"model": "echo_iris", "items": [SETOSA, VIRGINICA]}),
        )
        .await;
    assert_eq!(response.status(), 202);
    let job_id = json_body(response).await["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let record = loop {
        let record = json_body(app.get(&format!("/jobs/{job_id}"), Some(DEV_KEY)).await).await;
        if record["status"] != "pending" && record["status"] != "running" {
            break record;
        }
        assert!(
            Instant::now() < deadline,
            "the batch never finished: {record}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(record["status"], "succeeded", "{record}");
    // The batch ran both items in one graph run, alone each in its own: equal up to float
    // rounding.
    let alone = json!([
        predict(&app, "iris", "v1", &json!(SETOSA)).await,
        predict(&app, "iris", "v1", &json!(VIRGINICA)).await
    ]);
    assert_close(&record["result"], &alone, "async batch");
}

const ECHO_SLEEP: &str = r#"
backend = "pipeline"

[[steps]]
model = "echo:v1"

[[steps]]
model = "sleep:v1"
"#;

#[tokio::test]
async fn a_step_that_times_out_fails_the_job_with_timeout_at_the_pipelines_deadline() {
    let repository = repository(&[("slow/v1", ECHO_SLEEP), ("unbounded/v1", ECHO_SLEEP)]);
    // The pipeline's own SLA is the deadline, not the steps' (which have none).
    let (app, _dir) = app_on(&repository, "[sla.timeouts]\n\"slow:v1\" = 0.3\n").await;

    let cases = [
        // The SLA of the pipeline; a longer timeout_ms cannot extend it.
        (
            json!({"model": "slow", "data": {"ms": 5_000}, "timeout_ms": 10_000}),
            300,
        ),
        // A pipeline without an SLA: the request's timeout_ms.
        (
            json!({"model": "unbounded", "data": {"ms": 5_000}, "timeout_ms": 150}),
            150,
        ),
    ];
    for (request, limit_ms) in cases {
        let response = app.post("/predict", Some(DEV_KEY), &request).await;
        assert_eq!(response.status(), 504);
        let job_id = response.headers()["x-job-id"].to_str().unwrap().to_owned();
        let body = json_body(response).await;
        assert_eq!(body["code"], "inference_timeout");
        // Which limit applied is in the message: the pipeline's, at step 2.
        let expected = format!("step 2 (sleep:v1): inference did not finish within {limit_ms} ms");
        assert_eq!(body["detail"], expected.as_str());

        let record = job(&app, &job_id).await;
        assert_eq!(record["status"], "failed");
        assert_eq!(record["error_type"], "timeout");
        assert_eq!(record["error_message"], expected.as_str());
        let steps: Vec<&str> = record["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|step| step["model"].as_str().unwrap())
            .collect();
        assert_eq!(steps, ["echo", "sleep"]);
    }
}

#[tokio::test]
async fn a_step_without_a_version_follows_the_routing_table_sticky_per_request_id() {
    let routed = r#"
backend = "pipeline"

[[steps]]
model = "echo"

[[steps]]
model = "iris:v1"
inputs = { input = "x" }
"#;
    let repository = repository(&[("routed/v1", routed)]);
    let (app, _dir) = app_on(
        &repository,
        "[routing.echo]\nstrategy = \"ab\"\nvariants = { v1 = 50, v2 = 50 }\n",
    )
    .await;

    let mut seen = HashSet::new();
    for index in 0..40 {
        let id = format!("pipeline-routing-{index}");
        let send = |model: &str| {
            app.client
                .post(app.url("/predict"))
                .header("x-api-key", DEV_KEY)
                .header("x-request-id", &id)
                .json(&json!({"model": model, "data": {"x": SETOSA}}))
                .send()
        };
        let direct = send("echo").await.unwrap();
        let direct_version = direct.headers()["x-model-version"]
            .to_str()
            .unwrap()
            .to_owned();
        let pipeline = send("routed").await.unwrap();
        assert_eq!(pipeline.status(), 200);
        let steps = step_models(pipeline.headers()["x-inference-steps-ms"].to_str().unwrap());
        // The same split as a direct request with the same id.
        assert_eq!(
            steps,
            [format!("echo:{direct_version}"), "iris:v1".to_owned()],
            "{id}"
        );
        let record = job(&app, json_body(pipeline).await["job_id"].as_str().unwrap()).await;
        assert_eq!(record["steps"][0]["version"], direct_version.as_str());
        seen.insert(direct_version);
    }
    // 40 ids split 50/50 use both versions (the chance of one alone is 2^-39).
    assert_eq!(seen.len(), 2, "{seen:?}");
}

#[tokio::test]
async fn models_lists_pipelines_with_their_steps() {
    let repository = repository(&[("mapped/v1", MAPPED)]);
    let (app, _dir) = app_on(&repository, "").await;

    let models = json_body(app.get("/models", Some(DEV_KEY)).await).await;
    let mapped = models["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|model| model["name"] == "mapped")
        .unwrap()
        .clone();
    assert_eq!(mapped["backend"], "pipeline");
    assert_eq!(mapped["ready"], true, "{mapped}");

    let details = json_body(app.get("/models/mapped/v1", Some(DEV_KEY)).await).await;
    assert_eq!(details["backend"], "pipeline");
    assert_eq!(
        details["steps"],
        json!([
            {"model": "echo", "version": "v1", "inputs": {}},
            {"model": "iris", "version": "v1", "inputs": {"input": "features"}},
            {"model": "echo", "version": "v2", "inputs": {"setosa_p": "setosa"}},
        ])
    );
}

#[tokio::test]
async fn broken_pipelines_are_refused_with_a_clear_error() {
    let missing =
        "backend = \"pipeline\"\n[[steps]]\nmodel = \"echo:v1\"\n[[steps]]\nmodel = \"nope:v1\"\n";
    let inner = "backend = \"pipeline\"\n[[steps]]\nmodel = \"echo:v1\"\n";
    let outer = "backend = \"pipeline\"\n[[steps]]\nmodel = \"inner\"\n";
    let empty = "backend = \"pipeline\"\ndescription = \"nothing to run\"\n";
    let malformed = "backend = \"pipeline\"\n[[steps]]\nmodel = \"echo:\"\n";
    let repository = repository(&[
        ("missing/v1", missing),
        ("inner/v1", inner),
        ("outer/v1", outer),
        ("empty/v1", empty),
        ("malformed/v1", malformed),
    ]);
    let (app, _dir) = app_on(&repository, "").await;
    let models = json_body(app.get("/models", Some(DEV_KEY)).await).await;
    let status = |name: &str| {
        models["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|model| model["name"] == name)
            .unwrap_or_else(|| panic!("{name} is not listed: {models}"))
            .clone()
    };

    // An unknown step: listed not ready, and a request fails at that step with a 404.
    let listed = status("missing");
    assert_eq!(
        (listed["backend"].as_str(), listed["ready"].as_bool()),
        (Some("pipeline"), Some(false))
    );
    let error = listed["error"].as_str().unwrap();
    assert!(error.contains("step 2 (nope:v1)"), "{error}");
    let response = app
        .post(
            "/predict",
            Some(DEV_KEY),
            &json!({"model": "missing", "data": 1}),
        )
        .await;
    assert_eq!(response.status(), 404);
    let job_id = response.headers()["x-job-id"].to_str().unwrap().to_owned();
    let body = json_body(response).await;
    assert_eq!(body["code"], "model_not_found");
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.starts_with("step 2 (nope:v1): "), "{detail}");
    let record = job(&app, &job_id).await;
    assert_eq!(
        (record["status"].as_str(), record["error_type"].as_str()),
        (Some("failed"), Some("model_not_found"))
    );

    // A step naming another pipeline, no steps, a malformed reference: refused by the scan,
    // listed with why, and 503 not_ready for requests, like a broken ONNX model.
    for (name, reason) in [
        ("outer", "pipelines do not nest"),
        ("empty", "at least one [[steps]]"),
        ("malformed", "steps[0]: model = \"echo:\""),
    ] {
        let listed = status(name);
        assert_eq!(
            (listed["backend"].as_str(), listed["ready"].as_bool()),
            (Some("pipeline"), Some(false)),
            "{listed}"
        );
        let error = listed["error"].as_str().unwrap();
        assert!(error.contains(reason), "{name}: {error}");
        let response = app
            .post(
                "/predict",
                Some(DEV_KEY),
                &json!({"model": name, "data": 1}),
            )
            .await;
        assert_eq!(response.status(), 503, "{name}");
        let body = json_body(response).await;
        assert_eq!(body["code"], "not_ready");
    }
    // The nested one itself is a fine pipeline.
    assert_eq!(status("inner")["ready"], true);

    // The tensor protocol has no pipelines: a clear refusal.
    let response = app
        .post(
            "/v2/models/inner/versions/v1/infer",
            Some(DEV_KEY),
            &json!({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}),
        )
        .await;
    assert_eq!(response.status(), 400);
    let body = json_body(response).await;
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("pipeline") && error.contains("JSON"),
        "{error}"
    );
}
