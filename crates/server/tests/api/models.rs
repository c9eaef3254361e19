//! Real models from a model repository: answers, lazy single-flight loading, the LRU cap,
//! warm-up and readiness, broken models, reloads and the admin endpoints.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use inference_engine_testkit::{
    ADMIN_KEY, DEV_KEY, TestApp, demo_model, expected_outputs, json_body,
};
use serde_json::{Value, json};

const TOLERANCE: f64 = 1e-4;

/// A model repository of the test's own, built from copies of the demo models.
pub(crate) struct Repository {
    dir: tempfile::TempDir,
}

impl Repository {
    pub(crate) fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub(crate) fn path(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    /// Copies demo model `from` (e.g. "iris/v1") to `to`, appending `extra` to its manifest.
    /// `extra = "unbatched"` drops the manifest's `[batching]` table; an `extra` with its own
    /// `[batching]` replaces it.
    pub(crate) fn copy(&self, from: &str, to: &str, extra: &str) -> &Self {
        let source = demo_model(from);
        let target = self.dir.path().join(to);
        std::fs::create_dir_all(&target).unwrap();
        std::fs::copy(source.join("model.onnx"), target.join("model.onnx")).unwrap();
        let manifest = std::fs::read_to_string(source.join("model.toml")).unwrap();
        // A `[batching]` of `extra` replaces the manifest's own.
        let manifest = if extra == "unbatched" || extra.contains("[batching]") {
            manifest.split("[batching]").next().unwrap_or_default()
        } else {
            manifest.as_str()
        };
        let extra = if extra == "unbatched" { "" } else { extra };
        let manifest = format!("{manifest}\n{extra}");
        std::fs::write(target.join("model.toml"), manifest).unwrap();
        self
    }

    fn corrupt(&self, model: &str) {
        std::fs::write(
            self.dir.path().join(model).join("model.onnx"),
            b"this is not an ONNX protobuf",
        )
        .unwrap();
    }

    /// Replaces the first `from` of `model`'s manifest with `to`.
    fn edit_manifest(&self, model: &str, from: &str, to: &str) {
        let path = self.dir.path().join(model).join("model.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{model}: {text}");
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    }

    /// Puts demo model `from`'s files (model and manifest) in place of `to`'s.
    fn replace(&self, from: &str, to: &str) {
        for file in ["model.onnx", "model.toml"] {
            std::fs::copy(
                demo_model(from).join(file),
                self.dir.path().join(to).join(file),
            )
            .unwrap();
        }
    }
}

/// An `engine.toml` of the test's own.
pub(crate) fn config_file(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("engine.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `actual` equals `expected`, numbers within the tolerance.
pub(crate) fn assert_close(actual: &Value, expected: &Value, context: &str) {
    match (actual, expected) {
        (Value::Array(actual), Value::Array(expected)) => {
            assert_eq!(actual.len(), expected.len(), "{context}: lengths differ");
            for (index, (a, e)) in actual.iter().zip(expected).enumerate() {
                assert_close(a, e, &format!("{context}[{index}]"));
            }
        }
        (Value::Object(actual), Value::Object(expected)) => {
            let keys =
                |map: &serde_json::Map<String, Value>| map.keys().cloned().collect::<Vec<_>>();
            assert_eq!(keys(actual), keys(expected), "{context}: keys differ");
            for (key, e) in expected {
                assert_close(&actual[key], e, &format!("{context}.{key}"));
            }
        }
        (Value::Number(actual), Value::Number(expected)) => {
            let (a, e) = (actual.as_f64().unwrap(), expected.as_f64().unwrap());
            assert!((a - e).abs() <= TOLERANCE, "{context}: {a} vs {e}");
        }
        _ => assert_eq!(actual, expected, "{context}"),
    }
}

async fn predict(app: &TestApp, body: Value) -> Value {
    app.post_ok("/predict", &body).await
}

const LABELS: [&str; 3] = ["setosa", "versicolor", "virginica"];

#[tokio::test]
async fn demo_models_answer_like_onnxruntime() {
    let app = TestApp::spawn_with_demo_models(|_| {}).await;
    for (model, version) in [("iris", "v1"), ("iris", "v2"), ("mlp", "v1")] {
        let reference = expected_outputs(model, version);
        for (index, case) in reference["cases"].as_array().unwrap().iter().enumerate() {
            let context = format!("{model}:{version} case {index}");
            let body = predict(
                &app,
                json!({"model": model, "version": version, "data": case["input"]}),
            )
            .await;
            let results = body["result"].as_array().unwrap();
            let labels = case["outputs"]["label"].as_array().unwrap();
            let probabilities = case["outputs"]["probabilities"].as_array().unwrap();
            assert_eq!(results.len(), labels.len(), "{context}");
            for (row, result) in results.iter().enumerate() {
                let label = usize::try_from(labels[row].as_u64().unwrap()).unwrap();
                match (model, version) {
                    ("iris", "v1") => {
                        let expected: serde_json::Map<String, Value> = LABELS
                            .iter()
                            .zip(probabilities[row].as_array().unwrap())
                            .map(|(name, p)| ((*name).to_owned(), p.clone()))
                            .collect();
                        assert_close(result, &Value::Object(expected), &context);
                    }
                    ("iris", "v2") => assert_eq!(result, LABELS[label], "{context} row {row}"),
                    _ => {
                        assert_eq!(result["label"], labels[row], "{context} row {row}");
                        assert_close(
                            &result["probabilities"],
                            &probabilities[row],
                            &format!("{context} row {row}"),
                        );
                    }
                }
            }
        }
    }
    // One example (not a list) gives one result.
    let single = predict(
        &app,
        json!({"model": "iris", "version": "v2", "data": [5.1, 3.5, 1.4, 0.2]}),
    )
    .await;
    assert_eq!(single["result"], "setosa");
}

#[tokio::test]
async fn invalid_input_is_422_with_a_sentence_naming_the_problem() {
    let app = TestApp::spawn_with_demo_models(|_| {}).await;
    for (data, fragment) in [
        (json!([5.1, 3.5, 1.4]), "4"),
        (json!([5.1, 3.5, 1.4, 1000.0]), "100"),
        (json!([5.1, "x", 1.4, 0.2]), "string"),
    ] {
        let response = app
            .post(
                "/predict",
                Some(DEV_KEY),
                &json!({"model": "iris", "version": "v1", "data": data}),
            )
            .await;
        assert_eq!(response.status(), 422);
        let body = json_body(response).await;
        assert_eq!(body["code"], "invalid_input");
        let detail = body["detail"].as_str().unwrap();
        assert!(detail.contains(fragment), "{data}: {detail}");
    }
}

#[tokio::test]
async fn sixteen_concurrent_first_requests_load_the_model_once() {
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_file(config_dir.path(), "[registry]\nwarmup = false\n");
    let app = TestApp::spawn_with_demo_models(|settings| {
        settings.config = Some(config);
    })
    .await;
    let requests: Vec<_> = (0..16)
        .map(|_| {
            app.spawn_post(
                "/predict",
                DEV_KEY,
                &json!({"model": "mlp", "version": "v1", "data": vec![0.5; 784]}),
            )
        })
        .collect();
    for request in requests {
        let (status, body) = request.await.unwrap();
        assert_eq!(status, 200, "{body}");
    }
    let memory = json_body(app.get("/admin/models/memory", Some(ADMIN_KEY)).await).await;
    let mlp = memory["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|model| model["name"] == "mlp")
        .expect("mlp is loaded");
    assert_eq!(mlp["loads"], 1, "{memory}");
}

async fn loaded(app: &TestApp) -> Vec<(String, u64)> {
    let body = json_body(app.get("/debug/models/loaded", Some(ADMIN_KEY)).await).await;
    repository_models(&body["loaded_models"], "in_flight")
}

/// `(name:version, model[field])` of the repository models of a model list (built-ins left
/// out), in its order.
fn repository_models(list: &Value, field: &str) -> Vec<(String, u64)> {
    list.as_array()
        .unwrap()
        .iter()
        .filter(|model| model["name"] != "echo" && model["name"] != "sleep")
        .map(|model| {
            (
                format!(
                    "{}:{}",
                    model["name"].as_str().unwrap(),
                    model["version"].as_str().unwrap()
                ),
                model[field].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn with_max_loaded_1_alternating_models_evict_each_other_and_in_flight_work_survives() {
    let repository = Repository::new();
    // The batcher holds a lone request for 1.5 s: a slow in-flight request on `slow`.
    repository
        .copy(
            "iris/v1",
            "slow/v1",
            "[batching]\nmax_batch_size = 8\nmax_delay_ms = 1000\n",
        )
        .copy("iris/v2", "fast/v1", "");
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_file(
        config_dir.path(),
        "[registry]\nwarmup = false\nmax_loaded = 1\n",
    );
    let app = TestApp::spawn_with(|settings| {
        settings.models_dir = repository.path();
        settings.config = Some(config);
    })
    .await;

    let slow = app.spawn_post(
        "/predict",
        DEV_KEY,
        &json!({"model": "slow", "version": "v1", "data": [5.1, 3.5, 1.4, 0.2]}),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while loaded(&app).await != [("slow:v1".to_owned(), 1)] {
        assert!(Instant::now() < deadline, "slow:v1 never became in flight");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    predict(
        &app,
        json!({"model": "fast", "version": "v1", "data": [5.1, 3.5, 1.4, 0.2]}),
    )
    .await;
    assert_eq!(
        loaded(&app).await,
        [("fast:v1".to_owned(), 0)],
        "slow:v1 was evicted"
    );

    let (status, body) = slow.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body["result"]["setosa"].as_f64().unwrap() > 0.9);

    predict(
        &app,
        json!({"model": "slow", "version": "v1", "data": [5.1, 3.5, 1.4, 0.2]}),
    )
    .await;
    assert_eq!(
        loaded(&app).await,
        [("slow:v1".to_owned(), 0)],
        "fast:v1 was evicted"
    );
    let memory = json_body(app.get("/admin/models/memory", Some(ADMIN_KEY)).await).await;
    assert_eq!(memory["max_loaded"], 1);
    let slow = memory["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|model| model["name"] == "slow")
        .unwrap();
    assert_eq!(
        slow["loads"], 2,
        "slow:v1 was loaded again after its eviction"
    );
}

const MIB: u64 = 1 << 20;

/// What `/admin/models/memory` says about the repository models.
struct MemoryUse {
    /// `name:version` and measured `memory_bytes`, least recently used first.
    models: Vec<(String, u64)>,
    /// The loaded models' summed `memory_bytes`, as the endpoint reports it.
    bytes: u64,
    max_memory_mb: Value,
}

impl MemoryUse {
    fn names(&self) -> Vec<String> {
        self.models.iter().map(|(name, _)| name.clone()).collect()
    }

    fn size_of(&self, model: &str) -> u64 {
        self.models
            .iter()
            .find(|(name, _)| name == model)
            .map(|(_, bytes)| *bytes)
            .unwrap_or_else(|| panic!("{model} is not loaded: {:?}", self.models))
    }
}

async fn memory_use(app: &TestApp) -> MemoryUse {
    let body = json_body(app.get("/admin/models/memory", Some(ADMIN_KEY)).await).await;
    let models = repository_models(&body["models"], "memory_bytes");
    let bytes = body["memory_bytes"].as_u64().unwrap();
    assert_eq!(
        bytes,
        models.iter().map(|(_, bytes)| bytes).sum::<u64>(),
        "{body}"
    );
    MemoryUse {
        models,
        bytes,
        max_memory_mb: body["max_memory_mb"].clone(),
    }
}

/// The registry's rule, from the outside: of `loaded` (least recently used first, all idle),
/// the front ones go until the sizes sum to at most `cap`; `kept` (the model just loaded)
/// never goes.
fn within_cap(loaded: &[(String, u64)], cap: u64, kept: Option<&str>) -> Vec<String> {
    let mut loaded = loaded.to_vec();
    while loaded.iter().map(|(_, bytes)| bytes).sum::<u64>() > cap {
        let Some(victim) = loaded
            .iter()
            .position(|(name, _)| Some(name.as_str()) != kept)
        else {
            break;
        };
        loaded.remove(victim);
    }
    loaded.into_iter().map(|(name, _)| name).collect()
}

/// Installs `[registry] max_memory_mb = cap_mb` (or no cap) through `POST /admin/reload`.
async fn set_memory_cap(app: &TestApp, config: &Path, cap_mb: Option<u64>) {
    let cap = cap_mb.map_or_else(String::new, |cap| format!("max_memory_mb = {cap}\n"));
    std::fs::write(config, format!("[registry]\nwarmup = false\n{cap}")).unwrap();
    let response = app.post("/admin/reload", Some(ADMIN_KEY), &json!({})).await;
    assert_eq!(response.status(), 200, "{}", json_body(response).await);
}

/// A `/predict/batch` call: it runs at once, past the model's batcher.
async fn predict_now(app: &TestApp, model: &str) {
    let (name, version) = model.split_once(':').unwrap();
    app.post_ok(
        "/predict/batch",
        &json!({"model": name, "version": version, "items": [vec![0.5; 784]]}),
    )
    .await;
}

#[tokio::test]
async fn with_max_memory_mb_models_are_evicted_by_measured_size_and_in_flight_work_survives() {
    let repository = Repository::new();
    // Three copies of the 3.3 MB MLP. A lone `/predict` waits 1 s in the batcher for company:
    // a slow in-flight request. `/predict/batch` skips the batcher and answers at once.
    let models = ["a:v1", "b:v1", "c:v1"];
    for model in models {
        repository.copy(
            "mlp/v1",
            &model.replace(':', "/"),
            "[batching]\nmax_batch_size = 8\nmax_delay_ms = 1000\n",
        );
    }
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_file(config_dir.path(), "[registry]\nwarmup = false\n");
    let app = TestApp::spawn_with(|settings| {
        settings.models_dir = repository.path();
        settings.config = Some(config.clone());
    })
    .await;

    // Measure: without a cap all three load, each costing what its load added.
    for model in models {
        predict_now(&app, model).await;
    }
    let measured = memory_use(&app).await;
    assert_eq!(measured.names(), models);
    assert_eq!(measured.max_memory_mb, Value::Null);
    let (victim, survivor, idle) = {
        let mut by_size = measured.models.clone();
        by_size.sort_by_key(|(_, bytes)| std::cmp::Reverse(*bytes));
        (by_size[0].clone(), by_size[1].clone(), by_size[2].0.clone())
    };
    assert!(
        victim.1 > MIB,
        "loading a copy of the 3.3 MB MLP added at most 1 MiB: {:?}",
        measured.models
    );

    // Two slow requests in flight, on the largest model first, then on another.
    let slow = |model: &str| {
        let (name, version) = model.split_once(':').unwrap();
        app.spawn_post(
            "/predict",
            DEV_KEY,
            &json!({"model": name, "version": version, "data": vec![0.5; 784]}),
        )
    };
    let on_victim = slow(&victim.0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !loaded(&app).await.contains(&(victim.0.clone(), 1)) {
        assert!(
            Instant::now() < deadline,
            "{} never became in flight",
            victim.0
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let on_survivor = slow(&survivor.0);
    while !loaded(&app).await.contains(&(survivor.0.clone(), 1)) {
        assert!(
            Instant::now() < deadline,
            "{} never became in flight",
            survivor.0
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A cap that only the survivor fits in: the idle model goes first, then the least
    // recently used busy one, whose request keeps its model.
    let one_fits = survivor.1.div_ceil(MIB).max(1);
    set_memory_cap(&app, &config, Some(one_fits)).await;
    let after = memory_use(&app).await;
    assert_eq!(
        after.names(),
        std::slice::from_ref(&survivor.0),
        "{idle} and {} were evicted",
        victim.0
    );
    assert!(after.bytes <= one_fits * MIB);
    assert_eq!(after.max_memory_mb, one_fits);
    for request in [on_victim, on_survivor] {
        let (status, body) = request.await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body["result"]["probabilities"].as_array().unwrap().len(),
            10
        );
    }

    // A cap the two smallest measured models fit in. Alternating requests: after each, the
    // loaded models fit (a model alone over the cap stays alone) and exactly the least
    // recently used ones were evicted, by the sizes the endpoint reports. How many loads evict
    // depends on what each load measures (one that reuses memory an evicted model freed adds
    // little resident memory), so the evictions certain to happen are the ones above.
    let two_fit = (survivor.1 + measured.size_of(&idle)).div_ceil(MIB);
    set_memory_cap(&app, &config, Some(two_fit)).await;
    let cap = two_fit * MIB;
    let mut before = memory_use(&app).await;
    assert_eq!(before.names(), within_cap(&after.models, cap, None));
    for model in [
        "a:v1", "b:v1", "c:v1", "a:v1", "b:v1", "b:v1", "c:v1", "a:v1", "c:v1", "b:v1",
    ] {
        predict_now(&app, model).await;
        let now = memory_use(&app).await;
        let mut used: Vec<(String, u64)> = before
            .models
            .iter()
            .filter(|(name, _)| name != model)
            .cloned()
            .collect();
        used.push((model.to_owned(), now.size_of(model)));
        let expected = within_cap(&used, cap, Some(model));
        assert_eq!(
            now.names(),
            expected,
            "after {model}, from {:?}",
            before.models
        );
        assert!(
            now.bytes <= cap || now.names() == [model],
            "after {model}: {} bytes over the {two_fit} MiB cap",
            now.bytes
        );
        before = now;
    }
}

#[tokio::test]
async fn ready_is_503_loading_until_warm_up_has_loaded_every_model() {
    let repository = Repository::new();
    for copy in ["a/v1", "b/v1", "c/v1", "d/v1"] {
        repository.copy("mlp/v1", copy, "");
    }
    let app = TestApp::spawn_warming_up(|settings| settings.models_dir = repository.path()).await;
    let first = app.get("/ready", None).await;
    assert_eq!(first.status(), 503);
    let body = json_body(first).await;
    assert_eq!(body["status"], "loading", "{body}");

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let response = app.get("/ready", None).await;
        if response.status() == 200 {
            break;
        }
        assert_eq!(json_body(response).await["status"], "loading");
        assert!(Instant::now() < deadline, "warm-up never finished");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let models = json_body(app.get("/models", Some(DEV_KEY)).await).await;
    for model in models["models"].as_array().unwrap() {
        assert_eq!(model["loaded"], true, "ready before {model} was loaded");
    }
}

#[tokio::test]
async fn a_corrupt_model_is_listed_not_ready_with_its_error_and_the_others_serve() {
    let repository = Repository::new();
    repository
        .copy("iris/v1", "iris/v1", "")
        .copy("iris/v1", "broken/v1", "");
    repository.corrupt("broken/v1");
    let app = TestApp::spawn_with(|settings| settings.models_dir = repository.path()).await;

    let models = json_body(app.get("/models", Some(DEV_KEY)).await).await;
    let broken = models["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|model| model["name"] == "broken")
        .unwrap()
        .clone();
    assert_eq!(broken["ready"], false, "{broken}");
    assert_eq!(broken["loaded"], false);
    assert_eq!(broken["backend"], "onnx");
    assert!(!broken["error"].as_str().unwrap().is_empty());

    let response = app
        .post(
            "/predict",
            Some(DEV_KEY),
            &json!({"model": "broken", "version": "v1", "data": [5.1, 3.5, 1.4, 0.2]}),
        )
        .await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(json_body(response).await["code"], "not_ready");
    predict(
        &app,
        json!({"model": "iris", "version": "v1", "data": [5.1, 3.5, 1.4, 0.2]}),
    )
    .await;
    assert_eq!(app.get("/ready", None).await.status(), 200);
}

#[tokio::test]
async fn models_that_cannot_load_are_not_ready_with_their_error_right_after_a_scan_or_reload() {
    // A corrupt graph, and a manifest naming an input the graph lacks, under `prefix`.
    let add_broken = |repository: &Repository, prefix: &str| {
        let corrupt = format!("{prefix}_corrupt/v1");
        repository.copy("iris/v1", &corrupt, "");
        repository.corrupt(&corrupt);
        let mismatch = format!("{prefix}_mismatch/v1");
        repository.copy("iris/v1", &mismatch, "");
        repository.edit_manifest(&mismatch, "name = \"input\"", "name = \"features\"");
    };
    let repository = Repository::new();
    repository.copy("iris/v1", "iris/v1", "");
    add_broken(&repository, "scanned");
    // Without warm-up nothing is loaded: only the scan can know.
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_file(config_dir.path(), "[registry]\nwarmup = false\n");
    let app = TestApp::spawn_with(|settings| {
        settings.models_dir = repository.path();
        settings.config = Some(config);
    })
    .await;
    let listed = |models: &Value, name: &str| {
        models["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|model| model["name"] == name)
            .unwrap_or_else(|| panic!("{name} is not listed: {models}"))
            .clone()
    };
    let assert_broken = |models: &Value, prefix: &str| {
        let corrupt = listed(models, &format!("{prefix}_corrupt"));
        assert_eq!(corrupt["ready"], false, "{corrupt}");
        assert_eq!(corrupt["loaded"], false, "{corrupt}");
        let error = corrupt["error"].as_str().unwrap();
        assert!(
            error.contains("model.onnx: not a readable ONNX model"),
            "{corrupt}"
        );
        let mismatch = listed(models, &format!("{prefix}_mismatch"));
        assert_eq!(mismatch["ready"], false, "{mismatch}");
        assert!(
            mismatch["error"]
                .as_str()
                .unwrap()
                .contains("input `features` is not an input of the graph (graph inputs: `input`)"),
            "{mismatch}"
        );
    };

    let models = json_body(app.get("/models", Some(DEV_KEY)).await).await;
    assert_broken(&models, "scanned");
    let iris = listed(&models, "iris");
    assert_eq!(
        (&iris["ready"], &iris["loaded"]),
        (&json!(true), &json!(false))
    );

    add_broken(&repository, "reloaded");
    let response = app.post("/admin/reload", Some(ADMIN_KEY), &json!({})).await;
    assert_eq!(response.status(), 200, "{}", json_body(response).await);
    let models = json_body(app.get("/models", Some(DEV_KEY)).await).await;
    assert_broken(&models, "scanned");
    assert_broken(&models, "reloaded");
    assert_eq!(listed(&models, "iris")["ready"], true);

    let response = app
        .post(
            "/predict",
            Some(DEV_KEY),
            &json!({"model": "reloaded_mismatch", "version": "v1", "data": [5.1, 3.5, 1.4, 0.2]}),
        )
        .await;
    assert_eq!(response.status(), 503);
    assert_eq!(json_body(response).await["code"], "not_ready");
    predict(
        &app,
        json!({"model": "iris", "version": "v1", "data": [5.1, 3.5, 1.4, 0.2]}),
    )
    .await;
}

#[tokio::test]
async fn a_reload_with_a_broken_file_keeps_the_old_version_serving() {
    let repository = Repository::new();
    repository.copy("iris/v2", "iris/v1", "");
    let app = TestApp::spawn_with(|settings| settings.models_dir = repository.path()).await;
    let input = json!({"model": "iris", "version": "v1", "data": [6.7, 3.0, 5.2, 2.3]});
    assert_eq!(predict(&app, input.clone()).await["result"], "virginica");

    repository.corrupt("iris/v1");
    let response = app
        .post("/admin/models/iris/v1/reload", Some(ADMIN_KEY), &json!({}))
        .await;
    assert_eq!(response.status(), 422);
    let body = json_body(response).await;
    assert_eq!(body["code"], "reload_failed");
    assert!(
        body["detail"].as_str().unwrap().contains("keeps serving"),
        "{body}"
    );
    assert_eq!(predict(&app, input.clone()).await["result"], "virginica");

    // A fixed file (now the logistic regression, with its own manifest) reloads fine.
    repository.replace("iris/v1", "iris/v1");
    let response = app
        .post("/admin/models/iris/v1/reload", Some(ADMIN_KEY), &json!({}))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        json_body(response).await,
        json!({"reloaded": true, "model": "iris", "version": "v1"})
    );
    // Now the logistic regression answers: probabilities, not a label.
    assert!(predict(&app, input).await["result"]["virginica"].is_number());
}

#[tokio::test]
async fn unload_frees_the_model_and_the_next_request_loads_it_again() {
    let app = TestApp::spawn_with_demo_models(|_| {}).await;
    let input = json!({"model": "iris", "version": "v2", "data": [5.1, 3.5, 1.4, 0.2]});
    predict(&app, input.clone()).await;
    let response = app
        .post("/admin/models/iris/v2/unload", Some(ADMIN_KEY), &json!({}))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        json_body(response).await,
        json!({"unloaded": true, "model": "iris", "version": "v2"})
    );
    assert!(!loaded(&app).await.iter().any(|(key, _)| key == "iris:v2"));
    predict(&app, input).await;
    assert!(loaded(&app).await.iter().any(|(key, _)| key == "iris:v2"));
}

#[tokio::test]
async fn model_details_show_signature_routing_sla_and_executor() {
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_file(
        config_dir.path(),
        r#"
[routing.iris]
strategy = "ab"
variants = { v1 = 70, v2 = 30 }

[execution]
pools = { big = 1 }
[execution.policy]
"mlp:v1" = "big"

[sla.timeouts]
"mlp:v1" = 2.5
"#,
    );
    let app = TestApp::spawn_with_demo_models(|settings| {
        settings.config = Some(config);
    })
    .await;
    let mlp = json_body(app.get("/models/mlp/v1", Some(DEV_KEY)).await).await;
    assert_eq!(mlp["backend"], "onnx");
    assert_eq!(
        mlp["inputs"],
        json!([{"name": "input", "datatype": "FP32", "shape": [-1, 784]}])
    );
    assert_eq!(mlp["outputs"][1]["name"], "probabilities");
    assert_eq!(
        mlp["batching"],
        json!({"max_batch_size": 32, "max_delay_ms": 2})
    );
    assert_eq!(mlp["executor"], "big");
    assert_eq!(mlp["timeout_s"], 2.5);
    let iris = json_body(app.get("/models/iris/v1", Some(DEV_KEY)).await).await;
    assert_eq!(iris["executor"], "cpu");
    assert!(iris["routing"].as_str().unwrap().contains("70"), "{iris}");
    assert_eq!(iris["timeout_s"], Value::Null);

    let missing = app.get("/models/iris/v9", Some(DEV_KEY)).await;
    assert_eq!(missing.status(), 404);
    assert_eq!(json_body(missing).await["code"], "model_not_found");
}

#[tokio::test]
async fn admin_endpoints_need_the_admin_scope() {
    let app = TestApp::spawn().await;
    for (method, path) in [
        ("GET", "/debug/models/loaded"),
        ("GET", "/admin/models/memory"),
        ("POST", "/admin/reload"),
        ("POST", "/admin/models/echo/v1/reload"),
        ("POST", "/admin/models/echo/v1/unload"),
    ] {
        let response = match method {
            "GET" => app.get(path, Some(DEV_KEY)).await,
            _ => app.post(path, Some(DEV_KEY), &json!({})).await,
        };
        assert_eq!(response.status(), 403, "{method} {path}");
        assert_eq!(json_body(response).await["code"], "forbidden");
    }
}
