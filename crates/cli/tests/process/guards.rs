use inference_engine_testkit::{EngineProcess, run_to_exit};

use crate::binary;

const SECRET: &str = "prod-secret-key-0123456789";

/// Runs `serve` and expects a refusal: non-zero exit, one line on stderr, no secret in it.
fn assert_refuses(envs: &[(&str, &str)], must_mention: &str, secret: Option<&str>) {
    assert_refuses_in(&tempfile::tempdir().unwrap(), envs, must_mention, secret);
}

/// [`assert_refuses`] with `./engine.toml` holding `config`.
fn assert_refuses_with_config(config: &str, must_mention: &str) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("engine.toml"), config).unwrap();
    assert_refuses_in(&dir, &[], must_mention, None);
}

fn assert_refuses_in(
    dir: &tempfile::TempDir,
    envs: &[(&str, &str)],
    must_mention: &str,
    secret: Option<&str>,
) {
    let (status, stderr) =
        run_to_exit(binary(), &["serve", "--port", "0"], envs, dir.path()).unwrap();
    assert!(!status.success(), "must refuse to start; stderr: {stderr}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|line| !line.trim().is_empty())
        .collect();
    assert_eq!(lines.len(), 1, "one clear line on stderr, got: {stderr}");
    assert!(
        lines[0].contains(must_mention),
        "{:?} should mention {must_mention}",
        lines[0]
    );
    if let Some(secret) = secret {
        assert!(!stderr.contains(secret), "the key leaked: {stderr}");
    }
}

#[test]
fn production_without_api_keys_refuses_to_start() {
    assert_refuses(&[("ENV", "production")], "API_KEYS", None);
    assert_refuses(
        &[("ENV", "production"), ("API_KEYS", "  ")],
        "API_KEYS",
        None,
    );
}

#[test]
fn production_refuses_dev_keys_and_short_keys() {
    assert_refuses(
        &[
            ("ENV", "production"),
            ("API_KEYS", "dev-key:tenant_dev:predict"),
        ],
        "development key",
        Some("dev-key:"),
    );
    assert_refuses(
        &[
            ("ENV", "production"),
            ("API_KEYS", "short-secret:tenant_a:predict"),
        ],
        "shorter than 16",
        Some("short-secret"),
    );
}

#[test]
fn malformed_keys_never_fall_back_to_dev_keys() {
    for environment in ["production", "development"] {
        assert_refuses(
            &[
                ("ENV", environment),
                ("API_KEYS", &format!("{SECRET}:tenant_a")),
            ],
            "malformed",
            Some(SECRET),
        );
        assert_refuses(
            &[
                ("ENV", environment),
                ("API_KEYS", &format!("{SECRET}:tenant_a:superuser")),
            ],
            "unknown scope",
            Some(SECRET),
        );
    }
}

#[tokio::test]
async fn production_with_valid_keys_serves_them_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let api_keys = format!("{SECRET}:tenant_a:predict,read_models");
    let engine = EngineProcess::start(
        binary(),
        &[("ENV", "production"), ("API_KEYS", &api_keys)],
        dir.path(),
    )
    .unwrap();
    let client = reqwest::Client::new();
    let models: serde_json::Value = client
        .get(engine.url("/models"))
        .header("x-api-key", SECRET)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = models["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|model| model["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"echo"));
    assert!(!names.contains(&"sleep"), "no sleep model in production");
    let dev = client
        .get(engine.url("/models"))
        .header("x-api-key", "dev-key")
        .send()
        .await
        .unwrap();
    assert_eq!(dev.status(), 401);
    assert!(
        engine
            .stdout_lines()
            .iter()
            .all(|line| !line.contains(SECRET)),
        "keys are never logged"
    );
    assert!(
        dir.path().join("data/jobs.db").exists(),
        "default SQLite path"
    );
}

#[test]
fn unreachable_services_refuse_to_start_naming_the_host_never_the_password() {
    let database = "postgresql://app:hunter2-db-secret@127.0.0.1:1/jobs";
    let redis = "redis://:hunter2-redis-secret@127.0.0.1:1/0";
    for args in [&["serve", "--port", "0"][..], &["worker"][..]] {
        let dir = tempfile::tempdir().unwrap();
        let (status, stderr) = run_to_exit(
            binary(),
            args,
            &[
                ("DATABASE_URL", database),
                ("REDIS_URL", "redis://127.0.0.1:6379"),
            ],
            dir.path(),
        )
        .unwrap();
        assert!(!status.success(), "{args:?} must refuse: {stderr}");
        assert!(stderr.contains("127.0.0.1:1"), "names the host: {stderr}");
        assert!(!stderr.contains("hunter2"), "leaks the password: {stderr}");

        let (status, stderr) =
            run_to_exit(binary(), args, &[("REDIS_URL", redis)], dir.path()).unwrap();
        assert!(!status.success(), "{args:?} must refuse: {stderr}");
        assert!(stderr.contains("127.0.0.1:1"), "names the host: {stderr}");
        assert!(!stderr.contains("hunter2"), "leaks the password: {stderr}");
    }
}

#[test]
fn a_worker_without_redis_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let (status, stderr) = run_to_exit(binary(), &["worker"], &[], dir.path()).unwrap();
    assert!(!status.success());
    assert!(stderr.contains("REDIS_URL"), "{stderr}");
}

#[test]
fn an_invalid_engine_toml_refuses_to_start_naming_the_key() {
    assert_refuses_with_config("[registry]\nmax_loded = 3\n", "max_loded");
    assert_refuses_with_config(
        "[routing.echo]\nstrategy = \"ab\"\nvariants = { v1 = 60, v2 = 30 }\n",
        "routing.echo.variants",
    );
    assert_refuses_with_config(
        "[execution.policy]\n\"echo:v1\" = \"tpu\"\n",
        "execution.policy",
    );
    assert_refuses_with_config("[sla]\ndefault_timeout_s = -1\n", "sla.default_timeout_s");
}

#[test]
fn an_explicit_config_file_that_does_not_exist_refuses_to_start() {
    assert_refuses(
        &[("ENGINE_CONFIG", "/nonexistent/engine.toml")],
        "/nonexistent/engine.toml",
        None,
    );
}

#[test]
fn an_ort_dylib_path_that_does_not_load_refuses_to_start_naming_the_setting_and_the_script() {
    assert_refuses(
        &[("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")],
        "ORT_DYLIB_PATH=/nonexistent/libonnxruntime.so",
        None,
    );
    // A file that is not ONNX Runtime.
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("libonnxruntime.so");
    std::fs::write(&fake, b"not a shared library").unwrap();
    let (status, stderr) = run_to_exit(
        binary(),
        &["serve", "--port", "0"],
        &[("ORT_DYLIB_PATH", fake.to_str().unwrap())],
        dir.path(),
    )
    .unwrap();
    assert!(!status.success(), "{stderr}");
    assert_eq!(
        stderr.matches("scripts/install-onnxruntime.sh").count(),
        1,
        "says how to install it, once: {stderr}"
    );
}

/// Runs `serve` until it exits and returns stdout and stderr together: a failed start must
/// say its error once in all the process prints, not again as a log line or a repeated cause.
fn failed_start_output(envs: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(binary())
        .args(["serve", "--port", "0"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(envs.iter().copied())
        .current_dir(dir.path())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success(), "must refuse to start");
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn assert_said_once(output: &str, message: &str) {
    assert_eq!(
        output.matches(message).count(),
        1,
        "{message:?} must appear exactly once in: {output}"
    );
}

#[test]
fn startup_errors_are_printed_once() {
    let output = failed_start_output(&[("ENV", "production")]);
    assert_said_once(&output, "API_KEYS is required when ENV=production");

    let output = failed_start_output(&[
        (
            "DATABASE_URL",
            "postgres://postgres@127.0.0.1:1/unreachable",
        ),
        ("GRPC_PORT", "0"),
    ]);
    assert_said_once(&output, "Connection refused");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let output = failed_start_output(&[("HOST", "127.0.0.1"), ("GRPC_PORT", &port)]);
    assert_said_once(&output, "Address already in use");
}
