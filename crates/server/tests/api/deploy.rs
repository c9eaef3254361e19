//! The deployment kit stays true to the engine: the Grafana dashboard only queries metrics the
//! engine exports, and the compose file validates.

use std::collections::BTreeSet;
use std::path::Path;

use inference_engine_core::observe;
use serde_json::Value;

fn repository() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// Every `expr` of every panel target.
fn expressions(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr", Value::String(expr)) => found.push(expr.clone()),
                    _ => expressions(value, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| expressions(item, found)),
        _ => {}
    }
}

/// The metric names a PromQL expression reads: identifiers outside label matchers, ranges and
/// grouping clauses, that are not functions or keywords.
fn metric_names(expr: &str) -> BTreeSet<String> {
    const KEYWORDS: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "and",
        "or",
        "unless",
        "offset",
        "bool",
        // Aggregations, which may take `by (...)` before their parenthesis.
        "sum",
        "min",
        "max",
        "avg",
        "count",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
        "group",
    ];
    // Blank out {...}, [...] and the label list after by/without.
    let mut text = String::with_capacity(expr.len());
    let mut depth = 0usize;
    for c in expr.chars() {
        match c {
            '{' | '[' => depth += 1,
            '}' | ']' => depth = depth.saturating_sub(1),
            _ if depth == 0 => text.push(c),
            _ => {}
        }
        if depth > 0 || c == '}' || c == ']' {
            text.push(' ');
        }
    }
    let mut names = BTreeSet::new();
    let mut rest = text.as_str();
    let mut skip_group = false;
    while let Some(start) = rest.find(|c: char| c.is_ascii_alphabetic() || c == '_') {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(tail.len());
        let word = &tail[..end];
        let after = tail[end..].trim_start();
        if skip_group {
            // Inside `by (...)`: label names until the closing parenthesis.
            if let Some(close) = tail.find(')') {
                rest = &tail[close + 1..];
                skip_group = false;
                continue;
            }
        }
        if matches!(word, "by" | "without") {
            skip_group = true;
        } else if !after.starts_with('(') && !KEYWORDS.contains(&word) {
            names.insert(word.to_owned());
        }
        rest = &tail[end..];
    }
    names
}

#[test]
fn the_grafana_dashboard_parses_and_queries_only_exported_metrics() {
    let path = repository().join("deploy/grafana/dashboards/inference-engine.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|err| panic!("{} is not JSON: {err}", path.display()));
    let mut exprs = Vec::new();
    expressions(&dashboard, &mut exprs);
    assert!(exprs.len() >= 10, "the dashboard has panels with queries");
    let exported: BTreeSet<&str> = observe::ALL.iter().copied().collect();
    let mut used = BTreeSet::new();
    for expr in &exprs {
        for name in metric_names(expr) {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .filter(|base| exported.contains(base))
                .unwrap_or(&name)
                .to_owned();
            assert!(
                exported.contains(base.as_str()),
                "the dashboard queries {name:?}, which the engine does not export: {expr}"
            );
            used.insert(base);
        }
    }
    assert!(used.contains("inference_requests_total") && used.contains("http_requests_total"));
}

#[test]
fn the_compose_file_validates_when_docker_compose_is_installed() {
    let compose = repository().join("deploy/docker-compose.yml");
    let output = std::process::Command::new("docker-compose")
        .arg("-f")
        .arg(&compose)
        .args(["config", "-q"])
        .env("API_KEYS", "compose-check-key-0123456789:tenant_a:predict")
        .output();
    match output {
        Ok(output) => assert!(
            output.status.success(),
            "docker-compose config failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(err) => eprintln!(
            "docker-compose not installed ({err}); apt-get install -y docker-compose to check {}",
            compose.display()
        ),
    }
}

#[test]
fn metric_names_are_read_from_promql() {
    let names = metric_names(
        r#"histogram_quantile(0.99, sum by (le, model) (rate(inference_latency_seconds_bucket{tenant=~"$tenant"}[$__rate_interval])))"#,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["inference_latency_seconds_bucket"]
    );
    let names = metric_names(
        "sum(rate(http_requests_total{status=~\"5..\"}[5m])) / sum(rate(http_requests_total[5m]))",
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["http_requests_total"]
    );
}
