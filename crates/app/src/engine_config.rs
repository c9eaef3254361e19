//! Finding and loading `engine.toml` (docs/configuration.md).
//!
//! Which file: `--config PATH`, else `ENGINE_CONFIG`, else `engine.toml` in the working
//! directory if there is one, else none (the defaults). A file named explicitly must exist: a
//! typo in a path must not silently start the server with the defaults. (When clap has already
//! merged the flag and the variable into one value, pass it as the flag and `None` as the
//! variable.)
//!
//! Errors are one line and start with the file's path. Syntax errors and unknown keys keep the
//! `toml` crate's own message (it names the key, e.g. ``unknown field `max_loded` ``) with the
//! line and column; invalid values carry the key path from [`ConfigError`], e.g.
//! `engine.toml: routing.classifier.variants: weights sum to 90, must be 100`.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

use inference_engine_core::config::{ConfigError, EngineConfig, EngineConfigFile};

/// The file looked for in the working directory when no path is given.
pub const DEFAULT_CONFIG_FILE: &str = "engine.toml";
/// The environment variable naming the file (same as `--config`).
pub const CONFIG_ENV_VAR: &str = "ENGINE_CONFIG";

#[derive(Debug, thiserror::Error)]
pub enum EngineConfigError {
    #[error("configuration file {} (given by {origin}) does not exist", path.display())]
    NotFound { path: PathBuf, origin: &'static str },
    #[error("cannot read configuration file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Not TOML, or not the shape of `engine.toml` (unknown key, wrong type, missing field).
    #[error("{}: {message}", location(path, *position))]
    Parse {
        path: PathBuf,
        /// Line and column (1-based) where the problem is, when the parser knows.
        position: Option<(usize, usize)>,
        /// The `toml` crate's message, which names the key.
        message: String,
    },
    #[error("{}: {source}", path.display())]
    Invalid {
        path: PathBuf,
        #[source]
        source: ConfigError,
    },
    /// The file's values combined with settings from the environment are invalid (for example
    /// an execution policy rebuilt with the environment's pool sizes).
    #[error(transparent)]
    Combined(#[from] ConfigError),
}

fn location(path: &Path, position: Option<(usize, usize)>) -> String {
    match position {
        Some((line, column)) => format!("{}:{line}:{column}", path.display()),
        None => path.display().to_string(),
    }
}

/// The configuration file to use, if any: `flag` (`--config`), else `env_value`
/// (`ENGINE_CONFIG`), else `engine.toml` in the current directory when it exists, else `None`
/// (the defaults). Empty values count as absent. An explicitly named file that does not exist
/// is an error.
pub fn resolve_config_path(
    flag: Option<PathBuf>,
    env_value: Option<OsString>,
) -> Result<Option<PathBuf>, EngineConfigError> {
    resolve_config_path_in(Path::new(""), flag, env_value)
}

/// [`resolve_config_path`] with relative paths taken from `working_dir` instead of the
/// process's current directory.
pub fn resolve_config_path_in(
    working_dir: &Path,
    flag: Option<PathBuf>,
    env_value: Option<OsString>,
) -> Result<Option<PathBuf>, EngineConfigError> {
    let explicit = flag
        .filter(|path| !path.as_os_str().is_empty())
        .map(|path| (path, "--config"))
        .or_else(|| {
            env_value
                .filter(|value| !value.is_empty())
                .map(|value| (PathBuf::from(value), CONFIG_ENV_VAR))
        });
    if let Some((path, origin)) = explicit {
        let path = working_dir.join(path);
        return match path.try_exists() {
            Ok(true) => Ok(Some(path)),
            Ok(false) => Err(EngineConfigError::NotFound { path, origin }),
            Err(source) => Err(EngineConfigError::Read { path, source }),
        };
    }
    let default = working_dir.join(DEFAULT_CONFIG_FILE);
    Ok(default.is_file().then_some(default))
}

/// Reads, parses and validates the file at `path`.
pub fn load_engine_config(path: &Path) -> Result<EngineConfig, EngineConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| EngineConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_engine_config(path, &text)
}

/// Parses and validates `text`; `path` is only used in error messages.
pub fn parse_engine_config(path: &Path, text: &str) -> Result<EngineConfig, EngineConfigError> {
    let file: EngineConfigFile = toml::from_str(text).map_err(|err| EngineConfigError::Parse {
        path: path.to_owned(),
        position: err.span().map(|span| line_and_column(text, span.start)),
        message: err.message().trim_end().to_owned(),
    })?;
    file.validate()
        .map_err(|source| EngineConfigError::Invalid {
            path: path.to_owned(),
            source,
        })
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use inference_engine_core::config::RateLimitGroup;
    use inference_engine_core::model::{ModelKey, ModelName, ModelVersion};
    use inference_engine_core::routing::RoutingRule;

    use super::*;

    /// Every section of `engine.toml`, as docs/configuration.md documents them.
    const DOCUMENTED_EXAMPLE: &str = r#"
[registry]
max_loaded = 8            # LRU cap; omit for no cap
warmup = true             # load every model at start; /ready is 503 until done
pinned = ["echo:v1"]      # never evicted

[routing.echo]            # used only when the request omits "version"
strategy = "canary"       # static | canary | ab
primary = "v1"
canary = "v2"
canary_percent = 10       # exactly 10% (fix: no off-by-one)

[routing.classifier]
strategy = "ab"
variants = { v1 = 70, v2 = 30 }   # must sum to 100; sticky per X-Request-ID

[routing.stable_model]
strategy = "static"
version = "v3"

[execution]
default_executor = "cpu"
pools = { cpu = 8, gpu = 2 }      # worker threads per pool
[execution.policy]
"echo:v1" = "gpu"

[sla]
default_timeout_s = 0             # 0 = no global timeout
[sla.timeouts]
"heavy_model:v1" = 30.0
"fast_model:v1" = 2.0

[rate_limits]                     # per tenant, per route group; requests per second, with burst
predict = { rate = 100, burst = 200 }   # /predict, /predict/batch (cost = items), /predict/async*
models  = { rate = 20,  burst = 40 }
jobs    = { rate = 100, burst = 200 }
[rate_limits.tenants.tenant_a]
predict = { rate = 1000, burst = 2000 }

[jobs]
max_attempts = 3                  # async default; per request override 1..=10
visibility_timeout_s = 300        # a claimed job not finished by then is redelivered
result_ttl_days = 30              # 0 = keep forever
"#;

    fn parse(text: &str) -> Result<EngineConfig, EngineConfigError> {
        parse_engine_config(Path::new("engine.toml"), text)
    }

    fn rejection(text: &str) -> String {
        parse(text).expect_err("the file is rejected").to_string()
    }

    fn model_key(name: &str, version: &str) -> ModelKey {
        ModelKey::new(
            ModelName::parse(name).expect("valid name"),
            ModelVersion::parse(version).expect("valid version"),
        )
    }

    fn variant_order(config: &EngineConfig, model: &str) -> Vec<String> {
        let name = ModelName::parse(model).expect("valid name");
        match config.routing.get(&name) {
            Some(RoutingRule::Ab { variants }) => variants
                .as_slice()
                .iter()
                .map(|(version, _)| version.to_string())
                .collect(),
            other => panic!("expected an ab rule, got {other:?}"),
        }
    }

    #[test]
    fn spec_example_toml_parses_and_validates() {
        let config = parse(DOCUMENTED_EXAMPLE).expect("the documented example is valid");

        assert_eq!(config.registry.max_loaded, Some(8));
        assert_eq!(config.registry.pinned, vec![model_key("echo", "v1")]);
        assert_eq!(
            config
                .routing
                .iter()
                .map(|(name, rule)| format!("{name} = {rule}"))
                .collect::<Vec<_>>(),
            [
                "classifier = ab: v1 70%, v2 30%",
                "echo = canary: v1, 10% to v2",
                "stable_model = static: v3",
            ]
        );
        assert_eq!(config.execution.pool_for(&model_key("echo", "v1")), "gpu");
        assert_eq!(config.execution.pools().get("cpu"), Some(&8));
        assert_eq!(config.sla.default_timeout(), None);
        assert_eq!(
            config.sla.timeout_for(&model_key("heavy_model", "v1")),
            Some(Duration::from_secs(30))
        );
        let tenant_a = inference_engine_core::auth::TenantId::parse("tenant_a").expect("valid");
        let predict = config
            .rate_limits
            .limit_for(RateLimitGroup::Predict, &tenant_a)
            .expect("tenant_a's limit");
        assert_eq!((predict.rate(), predict.burst()), (1000.0, 2000));
        assert_eq!(config.jobs.max_attempts, 3);
    }

    #[test]
    fn spec_example_loads_from_a_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("engine.toml");
        std::fs::write(&path, DOCUMENTED_EXAMPLE).expect("write the file");

        let config = load_engine_config(&path).expect("loads");

        assert_eq!(config, parse(DOCUMENTED_EXAMPLE).expect("valid"));
    }

    #[test]
    fn an_empty_file_means_the_defaults() {
        assert_eq!(parse("").expect("valid"), EngineConfig::default());
    }

    #[test]
    fn ab_variants_keep_the_order_written() {
        let written = "[routing.classifier]\nstrategy = \"ab\"\nvariants = { v1 = 70, v2 = 30 }\n";
        let reversed = "[routing.classifier]\nstrategy = \"ab\"\nvariants = { v2 = 30, v1 = 70 }\n";

        let written = parse(written).expect("valid");
        let reversed = parse(reversed).expect("valid");

        assert_eq!(variant_order(&written, "classifier"), ["v1", "v2"]);
        assert_eq!(variant_order(&reversed, "classifier"), ["v2", "v1"]);
    }

    #[test]
    fn an_unknown_key_is_rejected_naming_it_and_its_line() {
        let message = rejection("[registry]\nmax_loded = 3\n");

        assert!(message.starts_with("engine.toml:2:1: "), "{message}");
        assert!(message.contains("unknown field `max_loded`"), "{message}");
        assert!(!message.contains('\n'), "one line: {message}");
    }

    #[test]
    fn weights_summing_to_90_are_rejected_naming_the_key() {
        let message =
            rejection("[routing.classifier]\nstrategy = \"ab\"\nvariants = { v1 = 70, v2 = 20 }\n");

        assert_eq!(
            message,
            "engine.toml: routing.classifier.variants: weights sum to 90, must be 100"
        );
    }

    #[test]
    fn an_unknown_executor_is_rejected_naming_the_key() {
        let message = rejection("[execution.policy]\n\"echo:v1\" = \"tpu\"\n");

        assert_eq!(
            message,
            "engine.toml: execution.policy.\"echo:v1\": unknown executor \"tpu\"; pools are cpu, gpu"
        );
    }

    #[test]
    fn a_negative_timeout_is_rejected_naming_the_key() {
        let message = rejection("[sla.timeouts]\n\"heavy_model:v1\" = -30.0\n");

        assert_eq!(
            message,
            "engine.toml: sla.timeouts.\"heavy_model:v1\" must be a non-negative number of seconds"
        );
    }

    #[test]
    fn the_memory_cap_is_read_and_zero_or_negative_is_rejected_naming_the_key() {
        let config = parse("[registry]\nmax_memory_mb = 512\n").expect("valid");
        assert_eq!(config.registry.max_memory_mb, Some(512));
        assert_eq!(config.registry.max_memory_bytes(), Some(512 << 20));

        for cap in ["0", "-1"] {
            assert_eq!(
                rejection(&format!("[registry]\nmax_memory_mb = {cap}\n")),
                format!(
                    "engine.toml: registry.max_memory_mb: must be at least 1 MiB (omit it for no cap), got {cap}"
                )
            );
        }
    }

    #[test]
    fn invalid_toml_is_rejected_with_its_position() {
        let message = rejection("[registry\n");

        assert!(message.starts_with("engine.toml:1:"), "{message}");
    }

    #[test]
    fn a_missing_or_unreadable_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("temp dir");

        let missing = load_engine_config(&dir.path().join("absent.toml")).expect_err("missing");
        assert!(
            matches!(missing, EngineConfigError::Read { .. }),
            "{missing}"
        );
        assert!(missing.to_string().contains("absent.toml"), "{missing}");

        let directory = load_engine_config(dir.path()).expect_err("a directory");
        assert!(
            matches!(directory, EngineConfigError::Read { .. }),
            "{directory}"
        );
    }

    #[test]
    fn the_flag_wins_over_the_environment_and_both_must_exist() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("a.toml"), "").expect("write");
        std::fs::write(dir.path().join("b.toml"), "").expect("write");

        let chosen =
            resolve_config_path_in(dir.path(), Some("a.toml".into()), Some("b.toml".into()))
                .expect("both exist");
        assert_eq!(chosen, Some(dir.path().join("a.toml")));

        let from_env =
            resolve_config_path_in(dir.path(), None, Some("b.toml".into())).expect("exists");
        assert_eq!(from_env, Some(dir.path().join("b.toml")));

        let absolute = dir.path().join("a.toml");
        let chosen = resolve_config_path(Some(absolute.clone()), None).expect("exists");
        assert_eq!(chosen, Some(absolute));

        let missing_flag = resolve_config_path_in(dir.path(), Some("typo.toml".into()), None)
            .expect_err("an explicitly named missing file is an error");
        assert_eq!(
            missing_flag.to_string(),
            format!(
                "configuration file {} (given by --config) does not exist",
                dir.path().join("typo.toml").display()
            )
        );

        let missing_env = resolve_config_path_in(dir.path(), None, Some("typo.toml".into()))
            .expect_err("an explicitly named missing file is an error");
        assert!(
            matches!(
                missing_env,
                EngineConfigError::NotFound {
                    origin: "ENGINE_CONFIG",
                    ..
                }
            ),
            "{missing_env}"
        );
    }

    #[test]
    fn without_an_explicit_path_engine_toml_is_used_only_when_present() {
        let dir = tempfile::tempdir().expect("temp dir");

        let nothing = resolve_config_path_in(dir.path(), None, Some(OsString::new()))
            .expect("no file is fine");
        assert_eq!(nothing, None);

        std::fs::write(dir.path().join(DEFAULT_CONFIG_FILE), "").expect("write");
        let found = resolve_config_path_in(dir.path(), Some(PathBuf::new()), None).expect("found");
        assert_eq!(found, Some(dir.path().join(DEFAULT_CONFIG_FILE)));
    }

    #[test]
    fn positions_are_one_based_lines_and_character_columns() {
        assert_eq!(line_and_column("abc", 0), (1, 1));
        assert_eq!(line_and_column("a\nbé\nc", 5), (2, 3));
        assert_eq!(line_and_column("a\n", 99), (2, 1));
    }
}
