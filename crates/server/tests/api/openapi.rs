//! `/openapi.json` as a client generator reads it: every response described, every path
//! parameter declared where it is, human tags, inference first, and examples that a server
//! with the demo models answers with 200. (`tests/openapi/run.sh` validates the whole document
//! with `openapi-spec-validator` and fuzzes the server against it with schemathesis.)

use std::path::Path;

use inference_engine_testkit::{DEV_KEY, TestApp, demo_models_dir, json_body};
use serde_json::Value;

const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

/// The document's tags, in the order a reader meets them.
const TAGS: [&str; 6] = [
    "Inference",
    "Jobs",
    "Models",
    "Open Inference Protocol",
    "Health",
    "Admin",
];

async fn document() -> Value {
    let app = TestApp::spawn().await;
    json_body(app.get("/openapi.json", None).await).await
}

/// `(method, path, operation)` for every operation, in document order.
fn operations(openapi: &Value) -> Vec<(String, String, Value)> {
    let paths = openapi["paths"].as_object().expect("paths");
    paths
        .iter()
        .flat_map(|(path, item)| {
            METHODS.iter().filter_map(move |method| {
                item.get(*method)
                    .map(|operation| ((*method).to_owned(), path.clone(), operation.clone()))
            })
        })
        .collect()
}

#[tokio::test]
async fn every_response_has_a_description() {
    let openapi = document().await;
    let mut undescribed = Vec::new();
    for (method, path, operation) in operations(&openapi) {
        let responses = operation["responses"].as_object().expect("responses");
        assert!(!responses.is_empty(), "{method} {path} has no responses");
        for (status, response) in responses {
            let described = response["description"]
                .as_str()
                .is_some_and(|text| !text.trim().is_empty());
            if !described {
                undescribed.push(format!("{method} {path} {status}"));
            }
        }
    }
    assert!(
        undescribed.is_empty(),
        "responses without a description: {undescribed:?}"
    );
}

#[tokio::test]
async fn path_parameters_are_declared_and_query_parameters_are_in_the_query() {
    let openapi = document().await;
    let mut wrong = Vec::new();
    for (method, path, operation) in operations(&openapi) {
        let declared: Vec<(String, String)> = operation["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|parameter| {
                (
                    parameter["name"].as_str().unwrap_or_default().to_owned(),
                    parameter["in"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        let templated: Vec<&str> = path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        for name in &templated {
            if !declared.contains(&((*name).to_owned(), "path".to_owned())) {
                wrong.push(format!(
                    "{method} {path}: {{{name}}} is not declared in: path"
                ));
            }
        }
        for (name, place) in &declared {
            if place == "path" && !templated.contains(&name.as_str()) {
                wrong.push(format!(
                    "{method} {path}: {name} is declared in: path but is not in the path"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");

    let list = &openapi["paths"]["/jobs"]["get"]["parameters"];
    for name in ["status", "model", "limit", "cursor"] {
        let parameter = list
            .as_array()
            .expect("GET /jobs has parameters")
            .iter()
            .find(|parameter| parameter["name"] == name)
            .unwrap_or_else(|| panic!("GET /jobs does not declare {name}"));
        assert_eq!(parameter["in"], "query", "GET /jobs {name}");
        assert_ne!(parameter["required"], true, "GET /jobs {name} is optional");
    }
}

#[tokio::test]
async fn operations_carry_human_tags_and_inference_comes_first() {
    let app = TestApp::spawn().await;
    // The raw text: serde_json's `Value` sorts keys, which would hide the document's order.
    let text = app
        .get("/openapi.json", None)
        .await
        .text()
        .await
        .expect("body");
    let openapi: Value = serde_json::from_str(&text).expect("JSON");
    let declared: Vec<&str> = openapi["tags"]
        .as_array()
        .expect("top-level tags")
        .iter()
        .map(|tag| tag["name"].as_str().expect("tag name"))
        .collect();
    assert_eq!(declared, TAGS, "the document's tags, in order");
    for tag in openapi["tags"].as_array().into_iter().flatten() {
        assert!(
            tag["description"]
                .as_str()
                .is_some_and(|text| !text.is_empty()),
            "tag {} has no description",
            tag["name"]
        );
    }

    let mut operations = operations(&openapi);
    let position = |path: &str| text.find(&format!("\"{path}\":{{")).unwrap_or(usize::MAX);
    operations.sort_by_key(|(_, path, _)| position(path));
    let mut ranks = Vec::new();
    for (method, path, operation) in &operations {
        let tags: Vec<&str> = operation["tags"]
            .as_array()
            .unwrap_or_else(|| panic!("{method} {path} has no tags"))
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(tags.len(), 1, "{method} {path}: one tag each, not {tags:?}");
        let rank = TAGS
            .iter()
            .position(|tag| *tag == tags[0])
            .unwrap_or_else(|| panic!("{method} {path}: tag {:?} is not one of {TAGS:?}", tags[0]));
        ranks.push((rank, format!("{method} {path}")));
    }
    assert_eq!(
        ranks[0].1, "post /predict",
        "the document opens with /predict"
    );
    let out_of_order: Vec<_> = ranks
        .windows(2)
        .filter(|pair| pair[0].0 > pair[1].0)
        .map(|pair| format!("{} before {}", pair[0].1, pair[1].1))
        .collect();
    assert!(
        out_of_order.is_empty(),
        "operations are grouped by tag in the order {TAGS:?}: {out_of_order:?}"
    );
    for admin in ["/admin/reload", "/metrics", "/debug/models/loaded"] {
        let tag = operations
            .iter()
            .find(|(_, path, _)| path == admin)
            .map(|(_, _, operation)| operation["tags"][0].clone());
        assert_eq!(tag, Some(Value::from("Admin")), "{admin}");
    }
}

#[tokio::test]
async fn job_results_and_prediction_data_may_be_any_json() {
    let openapi = document().await;
    let schemas = &openapi["components"]["schemas"];
    // A result is whatever the model answers: a string from `echo`, a number from a
    // regressor, an object from a classifier. A `type` would forbid all but one.
    for (schema, field) in [
        ("JobView", "result"),
        ("PredictResponse", "result"),
        ("PredictRequest", "data"),
        ("AsyncPredictRequest", "data"),
    ] {
        let property = &schemas[schema]["properties"][field];
        assert!(property.is_object(), "{schema}.{field} is documented");
        assert!(
            property.get("type").is_none() && property.get("$ref").is_none(),
            "{schema}.{field} must accept any JSON value, not {property}"
        );
    }
    for (schema, field) in [
        ("BatchPredictRequest", "items"),
        ("BatchPredictResponse", "results"),
    ] {
        let items = &schemas[schema]["properties"][field]["items"];
        assert!(
            items.is_object() && items.get("type").is_none(),
            "{schema}.{field}[] must accept any JSON value, not {items}"
        );
    }
}

/// The request examples of the document, sent as they are to a server with the demo model
/// they name: a reader who copies one gets an answer, not a 404 for a placeholder model.
#[tokio::test]
async fn the_request_examples_are_real_requests() {
    let openapi = document().await;
    let models = tempfile::tempdir().expect("temp dir");
    let demo = demo_models_dir();
    copy_dir(&demo.path().join("iris"), &models.path().join("iris"));
    let app = TestApp::spawn_with(|settings| settings.models_dir = models.path().to_owned()).await;
    let schemas = &openapi["components"]["schemas"];
    for (schema, path, status) in [
        ("PredictRequest", "/predict", 200),
        ("BatchPredictRequest", "/predict/batch", 200),
        ("AsyncPredictRequest", "/predict/async", 202),
        ("AsyncBatchPredictRequest", "/predict/async/batch", 202),
        ("V2InferRequest", "/v2/models/iris/versions/v1/infer", 200),
    ] {
        let example = &schemas[schema]["example"];
        assert!(example.is_object(), "{schema} has an example");
        let text = example.to_string();
        assert!(
            !text.contains("\"string\""),
            "{schema}'s example is a placeholder: {text}"
        );
        let response = app.post(path, Some(DEV_KEY), example).await;
        let answered = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        assert_eq!(answered, status, "{schema}'s example on {path}: {body}");
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}
