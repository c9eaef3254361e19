//! `inference-engine check` and `inference-engine keys generate` as an operator runs them.

use std::path::Path;
use std::process::{Command, Stdio};

use inference_engine_testkit::{EngineProcess, with_test_library};

use crate::binary;

const SECRET: &str = "prod-secret-key-0123456789";

/// What a finished run printed.
struct Run {
    success: bool,
    stdout: String,
    stderr: String,
}

impl Run {
    fn lines_starting(&self, prefix: &str) -> Vec<&str> {
        self.stdout
            .lines()
            .filter(|line| line.starts_with(prefix))
            .collect()
    }
}

/// Runs the binary with `args` and exactly `envs` (plus PATH, and the test ONNX Runtime
/// library unless `envs` says otherwise: [`with_test_library`]) in `dir`.
fn run_in(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Run {
    let output = Command::new(binary())
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(with_test_library(envs))
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    Run {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `check` in a fresh folder holding `engine.toml` when `config` is given.
fn check_with(envs: &[(&str, &str)], config: Option<&str>) -> Run {
    let dir = tempfile::tempdir().unwrap();
    if let Some(config) = config {
        std::fs::write(dir.path().join("engine.toml"), config).unwrap();
    }
    run_in(dir.path(), &["check"], envs)
}

/// Expects a failed check whose FAIL lines include one starting with `expected`.
fn assert_check_fails(run: &Run, expected: &str) {
    assert!(!run.success, "the check must fail:\n{}", run.stdout);
    let failures = run.lines_starting("FAIL ");
    assert!(
        failures.iter().any(|line| line.starts_with(expected)),
        "no FAIL line starts with {expected:?}:\n{}",
        run.stdout
    );
    assert!(
        run.stdout
            .lines()
            .last()
            .is_some_and(|line| line.starts_with("check failed: ")),
        "a summary closes the report:\n{}",
        run.stdout
    );
    assert!(
        run.stderr.contains("check(s) failed"),
        "stderr: {}",
        run.stderr
    );
}

#[test]
fn check_passes_with_the_defaults_in_an_empty_folder_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();

    let run = run_in(dir.path(), &["check"], &[]);

    assert!(
        run.success,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    for line in run.stdout.lines() {
        assert!(
            ["ok   ", "WARN ", "check passed: "]
                .iter()
                .any(|prefix| line.starts_with(prefix)),
            "only report lines, no log lines: {line:?}"
        );
    }
    for subject in [
        "ok   settings: ",
        "ok   config: no engine.toml, the defaults",
        "WARN api keys: API_KEYS is not set",
        "ok   built-in models: echo:v1, echo:v2, sleep:v1",
        "ok   onnx runtime: ONNX Runtime 1.31.1 (",
        "WARN models: MODELS_DIR models does not exist",
        "ok   job store: SQLite at SQLITE_DB_PATH data/jobs.db",
        "ok   job queue: in-process",
    ] {
        assert!(
            run.stdout.lines().any(|line| line.starts_with(subject)),
            "missing {subject:?}:\n{}",
            run.stdout
        );
    }
    assert!(
        run.stdout
            .lines()
            .last()
            .unwrap()
            .starts_with("check passed: "),
        "{}",
        run.stdout
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "check creates no database, no folder, no leftover probe"
    );
}

#[test]
fn check_reports_the_runtime_each_way_it_can_be_set_up() {
    let run = check_with(&[("ONNX_RUNTIME", "tract")], None);
    assert!(run.success, "{}", run.stdout);
    assert!(
        run.stdout
            .contains("ok   onnx runtime: tract for every ONNX model (ONNX_RUNTIME=tract)"),
        "{}",
        run.stdout
    );

    let run = check_with(
        &[("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")],
        None,
    );
    assert_check_fails(
        &run,
        "FAIL onnx runtime: ONNX Runtime cannot be loaded from \
         ORT_DYLIB_PATH=/nonexistent/libonnxruntime.so: ",
    );

    // No ORT_DYLIB_PATH and no library in the default places: models that need it would not
    // be ready, which warns but does not stop `serve`.
    let run = check_with(&[("ORT_DYLIB_PATH", "")], None);
    assert!(run.success, "{}", run.stdout);
    assert!(
        run.stdout.lines().any(|line| line
            .starts_with("WARN onnx runtime: ONNX Runtime is not installed (")
            && line.contains("run scripts/install-onnxruntime.sh")),
        "{}",
        run.stdout
    );
}

#[test]
fn check_fails_in_production_without_api_keys() {
    let run = check_with(&[("ENV", "production")], None);

    assert_check_fails(
        &run,
        "FAIL api keys: API_KEYS is required when ENV=production",
    );
}

#[test]
fn check_fails_on_a_malformed_api_keys_entry_without_printing_the_key() {
    let api_keys = format!("{SECRET}:tenant_a:predict;{SECRET}-2:tenant_b");

    let run = check_with(&[("API_KEYS", &api_keys)], None);

    assert_check_fails(&run, "FAIL api keys: API_KEYS entry 2 is malformed");
    assert!(
        !run.stdout.contains(SECRET) && !run.stderr.contains(SECRET),
        "the key leaked"
    );
}

#[test]
fn check_fails_on_an_unknown_engine_toml_key_naming_it() {
    let run = check_with(&[], Some("[registry]\nmax_loded = 3\n"));

    assert_check_fails(&run, "FAIL config: engine.toml:2:1: ");
    assert!(run.stdout.contains("max_loded"), "{}", run.stdout);
}

#[test]
fn check_fails_on_an_unreachable_database_naming_the_host_never_the_password() {
    let run = check_with(
        &[("DATABASE_URL", "postgres://postgres:secret@127.0.0.1:1/db")],
        None,
    );

    assert_check_fails(
        &run,
        "FAIL job store: DATABASE_URL postgres://postgres:***@127.0.0.1:1/db: ",
    );
    assert!(
        !run.stdout.contains("secret") && !run.stderr.contains("secret"),
        "the password leaked:\n{}{}",
        run.stdout,
        run.stderr
    );
}

#[test]
fn check_fails_on_an_unreachable_redis() {
    let run = check_with(&[("REDIS_URL", "redis://127.0.0.1:1")], None);

    assert_check_fails(&run, "FAIL job queue: REDIS_URL redis://127.0.0.1:1: ");
    assert!(run.stdout.contains("Redis 127.0.0.1:1"), "{}", run.stdout);
}

#[test]
fn check_fails_on_a_zero_body_limit() {
    let run = check_with(&[("MAX_BODY_BYTES", "0")], None);

    assert_check_fails(&run, "FAIL settings: MAX_BODY_BYTES must be at least 1");
}

#[test]
fn check_reports_every_failure_in_one_run() {
    let run = check_with(
        &[
            ("MAX_BODY_BYTES", "0"),
            ("EXECUTOR_QUEUE_CAPACITY", "0"),
            ("ENV", "production"),
        ],
        Some("[sla]\ndefault_timeout_s = -1\n"),
    );

    for expected in [
        "FAIL settings: MAX_BODY_BYTES",
        "FAIL settings: EXECUTOR_QUEUE_CAPACITY",
        "FAIL config: engine.toml: sla.default_timeout_s",
        "FAIL api keys: API_KEYS is required",
    ] {
        assert_check_fails(&run, expected);
    }
    assert!(
        run.stdout.contains("check failed: 4 failures"),
        "{}",
        run.stdout
    );
    assert!(
        run.lines_starting("ok   job store: ").len() == 1,
        "later checks still run:\n{}",
        run.stdout
    );
}

#[test]
fn check_describes_pipelines_and_reports_the_ones_that_cannot_serve() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = |folder: &str, steps: &[&str]| {
        let path = dir.path().join("models").join(folder);
        std::fs::create_dir_all(&path).unwrap();
        let mut manifest = "backend = \"pipeline\"\n".to_owned();
        for step in steps {
            manifest.push_str(&format!("[[steps]]\nmodel = \"{step}\"\n"));
        }
        std::fs::write(path.join("model.toml"), manifest).unwrap();
    };
    pipeline("chain/v1", &["echo:v1", "sleep"]);
    pipeline("nested/v1", &["chain:v1"]);
    pipeline("dangling/v1", &["echo:v1", "nope:v3"]);

    let run = run_in(dir.path(), &["check"], &[]);

    // Pipelines that cannot serve are listed not ready, as a broken ONNX model is: serve starts.
    assert!(
        run.success,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    for expected in [
        "ok   model chain:v1: pipeline of 2 steps: echo:v1, sleep",
        "WARN model nested:v1: not ready (",
        "WARN model dangling:v1: not ready (step 2 (nope:v3) names a model that is not served)",
    ] {
        assert!(
            run.stdout.lines().any(|line| line.starts_with(expected)),
            "missing {expected:?}:\n{}",
            run.stdout
        );
    }
    assert!(
        run.stdout.contains("pipelines do not nest"),
        "{}",
        run.stdout
    );
    assert!(
        !run.stdout.contains("load chain:v1"),
        "a pipeline has nothing to load:\n{}",
        run.stdout
    );
}

#[tokio::test]
async fn a_generated_key_is_accepted_by_serve_in_production() {
    let dir = tempfile::tempdir().unwrap();
    let generate = || {
        let run = run_in(dir.path(), &["keys", "generate"], &[]);
        assert!(run.success, "{}", run.stderr);
        let lines: Vec<String> = run.stdout.lines().map(str::to_owned).collect();
        assert_eq!(lines.len(), 2, "the key, then the entry: {lines:?}");
        (lines[0].clone(), lines[1].clone())
    };

    let (key, entry) = generate();
    let (other_key, _) = generate();

    assert_ne!(key, other_key, "every run draws a new key");
    assert!(key.len() >= 43, "{key}");
    assert!(key.chars().all(|c| c.is_ascii_alphanumeric()), "{key}");
    assert_eq!(entry, format!("{key}:default:predict,read_models"));
    let production = [("ENV", "production"), ("API_KEYS", entry.as_str())];
    let checked = run_in(dir.path(), &["check"], &production);
    assert!(checked.success, "{}", checked.stdout);
    assert!(
        checked.stdout.contains("ok   api keys: 1 key configured"),
        "{}",
        checked.stdout
    );
    let engine = EngineProcess::start(binary(), &production, dir.path()).unwrap();
    let models = reqwest::Client::new()
        .get(engine.url("/models"))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(models.status(), 200);
}

#[test]
fn keys_generate_takes_a_tenant_and_scopes_and_refuses_invalid_ones() {
    let dir = tempfile::tempdir().unwrap();

    let admin = run_in(
        dir.path(),
        &[
            "keys",
            "generate",
            "--tenant",
            "ops",
            "--scopes",
            "predict,read_models,admin",
        ],
        &[],
    );
    assert!(admin.success, "{}", admin.stderr);
    assert!(
        admin
            .stdout
            .lines()
            .nth(1)
            .unwrap()
            .ends_with(":ops:predict,read_models,admin"),
        "{}",
        admin.stdout
    );

    let bad_tenant = run_in(
        dir.path(),
        &["keys", "generate", "--tenant", "no spaces"],
        &[],
    );
    assert!(!bad_tenant.success);
    assert!(bad_tenant.stdout.is_empty(), "no key for an invalid entry");
    assert!(
        bad_tenant
            .stderr
            .contains("tenant \"no spaces\" is invalid"),
        "{}",
        bad_tenant.stderr
    );

    let bad_scope = run_in(
        dir.path(),
        &["keys", "generate", "--scopes", "predict,superuser"],
        &[],
    );
    assert!(!bad_scope.success);
    assert!(
        bad_scope.stderr.contains("unknown scope \"superuser\""),
        "{}",
        bad_scope.stderr
    );
}

/// The `message` of each JSON log line a run printed.
fn log_messages(run: &Run) -> Vec<String> {
    run.stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|entry| entry["message"].as_str().map(str::to_owned))
        .collect()
}

/// `migrate` twice on one fresh store (`envs`), then `check`: what each said about the schema,
/// and every log line sqlx wrote.
fn migrate_twice_then_check(envs: &[(&str, &str)]) -> (Run, Run, Run) {
    let dir = tempfile::tempdir().unwrap();
    let first = run_in(dir.path(), &["migrate"], envs);
    assert!(first.success, "{}\n{}", first.stdout, first.stderr);
    let second = run_in(dir.path(), &["migrate"], envs);
    assert!(second.success, "{}\n{}", second.stdout, second.stderr);
    let check = run_in(dir.path(), &["check"], envs);
    (first, second, check)
}

fn assert_no_sqlx_lines(runs: &[&Run]) {
    for run in runs {
        let sqlx = run
            .stdout
            .lines()
            .filter(|line| line.contains("\"target\":\"sqlx"))
            .collect::<Vec<_>>();
        assert!(sqlx.is_empty(), "sqlx logged at INFO: {sqlx:?}");
    }
}

#[test]
fn migrate_names_the_migrations_it_applied_on_a_fresh_sqlite_file_then_says_none_were_needed() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("jobs.db");
    let (first, second, _) = migrate_twice_then_check(&[("SQLITE_DB_PATH", db.to_str().unwrap())]);
    let applied = "job store: applied 0001_jobs, 0002_async_jobs, 0003_pipeline_steps";
    assert!(
        log_messages(&first)
            .iter()
            .any(|message| message == applied),
        "{}",
        first.stdout
    );
    let current = "job store: schema is up to date (3 migrations)";
    assert!(
        log_messages(&second)
            .iter()
            .any(|message| message == current),
        "{}",
        second.stdout
    );
    assert_no_sqlx_lines(&[&first, &second]);
}

#[tokio::test]
async fn migrate_and_check_name_what_they_applied_on_a_fresh_postgres_database() {
    let postgres = inference_engine_testkit::TestPostgres::create()
        .await
        .unwrap();
    // Blocking is fine here: the test's runtime has nothing else to run.
    let (first, second, check) = migrate_twice_then_check(&[("DATABASE_URL", postgres.url())]);
    assert!(
        log_messages(&first)
            .iter()
            .any(|message| message == "job store: applied 0001_jobs, 0002_pipeline_steps"),
        "{}",
        first.stdout
    );
    assert!(
        log_messages(&second)
            .iter()
            .any(|message| message == "job store: schema is up to date (2 migrations)"),
        "{}",
        second.stdout
    );
    let store = check.lines_starting("ok ");
    assert!(
        store
            .iter()
            .any(|line| line.contains("is reachable; schema is up to date (2 migrations)")),
        "{}",
        check.stdout
    );
    // The migrator's `CREATE TABLE IF NOT EXISTS` draws a notice on every run after the first.
    assert_no_sqlx_lines(&[&first, &second]);
}
