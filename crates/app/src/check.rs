//! `inference-engine check`: every startup check of `serve`, run to the end and reported line by
//! line, without starting the server, the executor pools or the job loops.
//!
//! Each check yields `ok`, `WARN` or `FAIL` lines (`FAIL api keys: API_KEYS entry 2 ...`). A
//! `FAIL` is something that makes `serve` refuse to start, so the check passes exactly when
//! `serve` would start. A `WARN` is something `serve` starts with but an operator should see:
//! the development keys, a missing `MODELS_DIR`, a model whose manifest is broken (`serve` lists
//! it as not ready), a folder the repository scan skips, a routing rule or a pinned model naming
//! a version that is not in the catalogue, a model that fails to load (`--load-models`).
//!
//! The rules are the ones `AppContext::build` applies, called rather than copied:
//! [`setting_problems`], [`serving_config`], [`ApiKeyTable::from_config`], [`BuiltinSet`], the
//! repository scan, [`PostgresJobStore::connect`] and [`RedisJobQueue::connect`]. Connecting to
//! PostgreSQL is the same call `serve` makes, so it applies pending migrations (additive,
//! idempotent, and applied by `serve` at start anyway). Connecting to Redis creates the
//! consumer group if it is missing, as `serve` does. With SQLite, the check only proves the
//! database file could be created: it never creates it.
//!
//! Secrets never appear in a line: key errors name an entry's position and tenant, connection
//! URLs go through [`redact_url`], and the adapters' own errors name only the host.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use inference_engine_core::auth::{ApiKeyTable, KeySource};
use inference_engine_core::config::EngineConfig;
use inference_engine_core::model::ModelKey;
use inference_engine_core::ports::JobQueue;
use inference_engine_core::redact::redact_url;
use inference_engine_core::registry::{BuiltinSet, ModelRepository, ScannedModel, ServingConfig};
use inference_engine_core::source::{LoadContext, ModelSource, TensorSpec};
use inference_engine_core::steps::PipelineStep;
use inference_engine_onnx::Runtimes;
use inference_engine_redis::{RedisJobQueue, RedisQueueConfig};
use inference_engine_store::PostgresJobStore;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::{EnvFilter, Layer};

use crate::context::{StartupError, serving_config, setting_problems};
use crate::engine_config::{EngineConfigError, load_engine_config, resolve_config_path};
use crate::repository::{FolderRepository, describe_runtimes, onnx_runtimes};
use crate::settings::Settings;

/// What `check` does beyond the startup checks.
#[derive(Debug, Clone, Copy, Default)]
pub struct CheckOptions {
    /// Also load every ONNX model of the repository (what warm-up would do), one at a time on a
    /// blocking thread. A model that fails to load is a `WARN`: `serve` starts without it.
    pub load_models: bool,
}

/// The verdict of one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// `serve` starts, but something deserves a look.
    Warn,
    /// `serve` would refuse to start.
    Fail,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warn => "WARN",
            Self::Fail => "FAIL",
        }
    }
}

/// One reported line: `FAIL api keys: API_KEYS is required when ENV=production ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckLine {
    pub outcome: Outcome,
    /// What was checked (`config`, `api keys`, `model iris:v1`, `job store`, ...).
    pub subject: String,
    pub message: String,
}

impl fmt::Display for CheckLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<4} {}: {}",
            self.outcome.label(),
            self.subject,
            self.message
        )
    }
}

/// Every line of a run, in the order reported.
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    lines: Vec<CheckLine>,
}

impl CheckReport {
    pub fn lines(&self) -> &[CheckLine] {
        &self.lines
    }

    /// No `FAIL`: `serve` would start.
    pub fn passed(&self) -> bool {
        self.count(Outcome::Fail) == 0
    }

    pub fn count(&self, outcome: Outcome) -> usize {
        self.lines
            .iter()
            .filter(|line| line.outcome == outcome)
            .count()
    }

    /// The closing line, e.g. `check failed: 2 failures, 5 ok, 1 warning; serve would refuse
    /// to start`.
    pub fn summary(&self) -> String {
        let plural = |count: usize, word: &str| {
            format!("{count} {word}{}", if count == 1 { "" } else { "s" })
        };
        let ok = self.count(Outcome::Ok);
        let warnings = plural(self.count(Outcome::Warn), "warning");
        if self.passed() {
            format!("check passed: {ok} ok, {warnings}; serve would start")
        } else {
            format!(
                "check failed: {}, {ok} ok, {warnings}; serve would refuse to start",
                plural(self.count(Outcome::Fail), "failure")
            )
        }
    }
}

/// Collects the lines and hands each one to the caller as soon as it is known, so a slow
/// connection check does not hold back the lines before it.
struct Recorder<F> {
    report: CheckReport,
    on_line: F,
}

impl<F: FnMut(&CheckLine)> Recorder<F> {
    fn push(&mut self, outcome: Outcome, subject: impl Into<String>, message: impl Into<String>) {
        let line = CheckLine {
            outcome,
            subject: subject.into(),
            message: message.into(),
        };
        (self.on_line)(&line);
        self.report.lines.push(line);
    }

    fn ok(&mut self, subject: impl Into<String>, message: impl Into<String>) {
        self.push(Outcome::Ok, subject, message);
    }

    fn warn(&mut self, subject: impl Into<String>, message: impl Into<String>) {
        self.push(Outcome::Warn, subject, message);
    }

    fn fail(&mut self, subject: impl Into<String>, message: impl Into<String>) {
        self.push(Outcome::Fail, subject, message);
    }
}

/// Runs every check in order (settings, `engine.toml`, API keys, built-in models, model
/// repository, model loads with [`CheckOptions::load_models`], job store, job queue) and
/// reports each line to `on_line` as it is known. A failure never stops the checks after it.
/// Must run inside a tokio runtime.
pub async fn run(
    settings: &Settings,
    options: CheckOptions,
    on_line: impl FnMut(&CheckLine),
) -> CheckReport {
    let mut out = Recorder {
        report: CheckReport::default(),
        on_line,
    };
    check_settings(settings, &mut out);
    let serving = check_config(settings, &mut out);
    check_api_keys(settings, &mut out);
    let builtins = check_builtins(settings, &mut out);
    let runtimes = check_runtimes(settings, &mut out);
    let repository = check_repository(
        &settings.models_dir,
        runtimes,
        builtins.as_deref(),
        &mut out,
    )
    .await;
    if let (Some(serving), Some(builtins), Some(repository)) = (&serving, &builtins, &repository) {
        check_references(serving, builtins, repository, &mut out);
    }
    if options.load_models
        && let Some(repository) = &repository
    {
        load_models(repository, &mut out).await;
    }
    // Both may wait for a timeout (5 s for PostgreSQL, 3 s for Redis): run them together.
    let (store, queue) = tokio::join!(check_store(settings), check_queue(settings));
    for (subject, (outcome, message)) in [("job store", store), ("job queue", queue)] {
        out.push(outcome, subject, message);
    }
    out.report
}

fn check_settings<F: FnMut(&CheckLine)>(settings: &Settings, out: &mut Recorder<F>) {
    let mut problems: Vec<String> = setting_problems(settings)
        .iter()
        .map(ToString::to_string)
        .collect();
    // `serve` installs the log filter before anything else and stops if it is invalid.
    if let Err(err) = EnvFilter::try_new(&settings.log_level) {
        problems.push(format!(
            "LOG_LEVEL {:?} is not a valid log filter: {err}",
            settings.log_level
        ));
    }
    if problems.is_empty() {
        out.ok(
            "settings",
            format!(
                "ENV={}, MAX_BODY_BYTES={}, EXECUTOR_QUEUE_CAPACITY={}, LOG_LEVEL={}",
                if settings.is_production() {
                    "production"
                } else {
                    "development"
                },
                settings.max_body_bytes,
                settings.executor_queue_capacity,
                settings.log_level
            ),
        );
    }
    for problem in problems {
        out.fail("settings", problem);
    }
}

/// `engine.toml` and the execution policy with the environment's pool sizes, as `build` makes
/// them; `None` when either is invalid.
fn check_config<F: FnMut(&CheckLine)>(
    settings: &Settings,
    out: &mut Recorder<F>,
) -> Option<ServingConfig> {
    let loaded = resolve_config_path(settings.config.clone(), None).and_then(|path| match path {
        Some(path) => load_engine_config(&path).map(|config| (Some(path), config)),
        None => Ok((None, EngineConfig::default())),
    });
    let (path, file) = match loaded {
        Ok(loaded) => loaded,
        Err(err) => {
            out.fail("config", err.to_string());
            return None;
        }
    };
    match serving_config(settings, &file) {
        Ok(serving) => {
            let source = path.as_deref().map_or_else(
                || "no engine.toml, the defaults".to_owned(),
                |path| path.display().to_string(),
            );
            out.ok(
                "config",
                format!("{source} ({})", describe_serving(&serving)),
            );
            Some(serving)
        }
        Err(StartupError::Config(EngineConfigError::Combined(err))) => {
            out.fail(
                "config",
                format!(
                    "{err} (pools from engine.toml with CPU_EXECUTOR_WORKERS / GPU_EXECUTOR_WORKERS applied)"
                ),
            );
            None
        }
        Err(err) => {
            out.fail("config", err.to_string());
            None
        }
    }
}

/// `3 routing rules, pools cpu=8 gpu=2, default executor cpu, max_loaded 8, warm-up on`, with
/// `max_memory_mb 512` after `max_loaded` when that cap is set.
fn describe_serving(serving: &ServingConfig) -> String {
    let rules = serving.routing.len();
    let pools = serving
        .execution
        .pools()
        .iter()
        .map(|(name, threads)| format!("{name}={threads}"))
        .collect::<Vec<_>>()
        .join(" ");
    let max_loaded = serving.registry.max_loaded.map_or_else(
        || "no max_loaded".to_owned(),
        |cap| format!("max_loaded {cap}"),
    );
    let max_memory = serving
        .registry
        .max_memory_mb
        .map_or_else(String::new, |cap| format!(", max_memory_mb {cap}"));
    format!(
        "{rules} routing rule{}, pools {pools}, default executor {}, {max_loaded}{max_memory}, warm-up {}",
        if rules == 1 { "" } else { "s" },
        serving.execution.default_executor(),
        if serving.registry.warmup { "on" } else { "off" }
    )
}

fn check_api_keys<F: FnMut(&CheckLine)>(settings: &Settings, out: &mut Recorder<F>) {
    match ApiKeyTable::from_config(settings.api_keys.as_deref(), settings.is_production()) {
        Ok(keys) if keys.source() == KeySource::DevDefaults => out.warn(
            "api keys",
            "API_KEYS is not set: serving with the development keys dev-key and admin-key (refused when ENV=production)",
        ),
        Ok(keys) => out.ok(
            "api keys",
            format!(
                "{} key{} configured",
                keys.len(),
                if keys.len() == 1 { "" } else { "s" }
            ),
        ),
        // The parser's messages name an entry's position and tenant, never the key.
        Err(err) => out.fail("api keys", err.to_string()),
    }
}

/// The built-in models `serve` would register, or `None` when `BUILTIN_MODELS` is invalid.
fn check_builtins<F: FnMut(&CheckLine)>(
    settings: &Settings,
    out: &mut Recorder<F>,
) -> Option<Vec<ModelKey>> {
    let set = match &settings.builtin_models {
        Some(list) => match BuiltinSet::parse(list) {
            Ok(set) => set,
            Err(err) => {
                out.fail("built-in models", format!("BUILTIN_MODELS: {err}"));
                return None;
            }
        },
        None => BuiltinSet::default_for(settings.is_production()),
    };
    let keys: Vec<ModelKey> = set.sources().into_iter().map(|model| model.key).collect();
    let listed = if keys.is_empty() {
        "none".to_owned()
    } else {
        keys.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    out.ok("built-in models", listed);
    Some(keys)
}

/// Loads ONNX Runtime as `serve` would and says which runtime ONNX models get: FAIL when
/// `ORT_DYLIB_PATH` names a library that does not load (`serve` stops), WARN when no library
/// is installed (models that need it are not ready). A failed `ORT_DYLIB_PATH` still lets the
/// repository be checked, as on tract.
fn check_runtimes<F: FnMut(&CheckLine)>(settings: &Settings, out: &mut Recorder<F>) -> Runtimes {
    match onnx_runtimes(settings) {
        Ok(runtimes) => {
            match describe_runtimes(&runtimes) {
                Ok(line) => out.ok("onnx runtime", line),
                Err(reason) => out.warn("onnx runtime", reason),
            }
            runtimes
        }
        Err(err) => {
            out.fail("onnx runtime", err.to_string());
            Runtimes::tract_only()
        }
    }
}

/// Scans `MODELS_DIR` like the registry does and lists every model; `None` when the folder
/// cannot be read (which stops `serve`).
async fn check_repository<F: FnMut(&CheckLine)>(
    dir: &Path,
    runtimes: Runtimes,
    builtins: Option<&[ModelKey]>,
    out: &mut Recorder<F>,
) -> Option<Vec<ScannedModel>> {
    match dir.try_exists() {
        Ok(true) => {}
        Ok(false) => {
            out.warn(
                "models",
                format!(
                    "MODELS_DIR {} does not exist: only the built-in models are served",
                    dir.display()
                ),
            );
            return Some(Vec::new());
        }
        Err(err) => {
            out.fail(
                "models",
                format!("MODELS_DIR {} cannot be read: {err}", dir.display()),
            );
            return None;
        }
    }
    let repository = FolderRepository::new(dir.to_owned(), runtimes);
    // Reading manifests is blocking file I/O.
    let scanned = tokio::task::spawn_blocking(move || scan_capturing_warnings(&repository)).await;
    let (scanned, skipped) = match scanned {
        Ok((Ok(scanned), skipped)) => (scanned, skipped),
        Ok((Err(err), _)) => {
            out.fail(
                "models",
                format!("MODELS_DIR {} cannot be scanned: {err}", dir.display()),
            );
            return None;
        }
        Err(err) => {
            out.fail(
                "models",
                format!(
                    "scanning MODELS_DIR {} was interrupted: {err}",
                    dir.display()
                ),
            );
            return None;
        }
    };
    let broken = scanned.iter().filter(|model| model.source.is_err()).count();
    out.ok(
        "models",
        format!(
            "MODELS_DIR {}: {} model version{} found, {broken} not ready",
            dir.display(),
            scanned.len(),
            if scanned.len() == 1 { "" } else { "s" }
        ),
    );
    for warning in skipped {
        out.warn("models", warning);
    }
    let builtins = builtins.unwrap_or_default();
    // What a pipeline's steps may name: the models `serve` would have.
    let known: Vec<ModelKey> = builtins
        .iter()
        .chain(scanned.iter().map(|model| &model.key))
        .cloned()
        .collect();
    let mut served = Vec::with_capacity(scanned.len());
    for model in scanned {
        let subject = format!("model {}", model.key);
        if builtins.contains(&model.key) {
            out.warn(
                subject,
                "a built-in model has this name and version: the built-in is served, this folder is ignored",
            );
            continue;
        }
        let refused = model.source.as_ref().ok().and_then(|source| {
            let pipeline = source.description().pipeline.as_ref()?;
            pipeline
                .refused
                .clone()
                .or_else(|| unknown_step(&pipeline.steps, &known))
        });
        match &model.source {
            Ok(_) if let Some(reason) = refused => out.warn(
                subject,
                format!("not ready ({reason}); serve lists it with this error"),
            ),
            Ok(source) => out.ok(subject, describe_model(source.as_ref())),
            Err(err) => out.warn(
                subject,
                format!("not ready ({err}); serve lists it with this error"),
            ),
        }
        served.push(model);
    }
    Some(served)
}

/// The first step of a pipeline that names a model (or version) `known` does not hold.
fn unknown_step(steps: &[PipelineStep], known: &[ModelKey]) -> Option<String> {
    steps.iter().enumerate().find_map(|(index, step)| {
        let served = known.iter().any(|key| {
            key.name == step.model
                && step
                    .version
                    .as_ref()
                    .is_none_or(|version| *version == key.version)
        });
        (!served).then(|| {
            format!(
                "step {} ({step}) names a model that is not served",
                index + 1
            )
        })
    })
}

/// `onnx, inputs input FP32[-1,4], outputs label INT64[-1], batching up to 32 within 2 ms`;
/// `pipeline of 2 steps: echo:v1, iris`.
fn describe_model(source: &dyn ModelSource) -> String {
    let description = source.description();
    if let Some(pipeline) = &description.pipeline {
        let steps: Vec<String> = pipeline.steps.iter().map(ToString::to_string).collect();
        return format!(
            "pipeline of {} step{}: {}",
            steps.len(),
            if steps.len() == 1 { "" } else { "s" },
            steps.join(", ")
        );
    }
    let tensors = |specs: &[TensorSpec]| {
        if specs.is_empty() {
            return "any JSON".to_owned();
        }
        specs
            .iter()
            .map(|spec| {
                let shape = spec
                    .shape
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(",");
                format!("{} {}[{shape}]", spec.name, spec.datatype)
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let backend = match description.runtime {
        Some(runtime) => format!("{} on {runtime}", description.backend.as_str()),
        None => description.backend.as_str().to_owned(),
    };
    let mut text = format!(
        "{backend}, inputs {}, outputs {}",
        tensors(&description.inputs),
        tensors(&description.outputs)
    );
    if let Some(batching) = description.batching {
        text.push_str(&format!(
            ", batching up to {} within {} ms",
            batching.max_batch_size,
            batching.max_delay.as_millis()
        ));
    }
    text
}

/// The repository's scan, with the warnings it logs about folders it skips (a folder that is
/// not a model name, a version folder without `model.toml`) captured as text: `serve` only
/// logs them, `check` reports them. Warnings about one model (a broken manifest) are left out:
/// the model's own line says it.
fn scan_capturing_warnings(
    repository: &FolderRepository,
) -> (
    Result<Vec<ScannedModel>, inference_engine_core::source::LoadError>,
    Vec<String>,
) {
    let warnings = Arc::new(Mutex::new(Vec::new()));
    let subscriber = tracing_subscriber::registry().with(WarningCapture {
        warnings: Arc::clone(&warnings),
    });
    let scanned = tracing::subscriber::with_default(subscriber, || repository.scan());
    let warnings = warnings
        .lock()
        .map(|mut warnings| std::mem::take(&mut *warnings))
        .unwrap_or_default();
    (scanned, warnings)
}

/// A tracing layer that keeps the text of WARN and ERROR events not about a single model.
struct WarningCapture {
    // A std mutex: pushed to from `on_event`, never held across an `.await`.
    warnings: Arc<Mutex<Vec<String>>>,
}

impl<S: tracing::Subscriber> Layer<S> for WarningCapture {
    fn on_event(&self, event: &tracing::Event<'_>, _context: Context<'_, S>) {
        // Levels compare by verbosity: INFO, DEBUG and TRACE are greater than WARN.
        if *event.metadata().level() > tracing::Level::WARN {
            return;
        }
        let mut text = EventText::default();
        event.record(&mut text);
        if text.about_a_model {
            return;
        }
        let line = if text.fields.is_empty() {
            text.message
        } else {
            format!("{} ({})", text.message, text.fields.join(", "))
        };
        if let Ok(mut warnings) = self.warnings.lock() {
            warnings.push(line);
        }
    }
}

#[derive(Default)]
struct EventText {
    message: String,
    fields: Vec<String>,
    about_a_model: bool,
}

impl tracing::field::Visit for EventText {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "model" => self.about_a_model = true,
            name => self.fields.push(format!("{name} {value:?}")),
        }
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        match field.name() {
            "message" => self.message = value.to_owned(),
            "model" => self.about_a_model = true,
            name => self.fields.push(format!("{name} {value}")),
        }
    }
}

/// Routing rules and pinned models that name a version not in the catalogue: `serve` starts,
/// but requests routed there (or the pin) cannot be served.
fn check_references<F: FnMut(&CheckLine)>(
    serving: &ServingConfig,
    builtins: &[ModelKey],
    repository: &[ScannedModel],
    out: &mut Recorder<F>,
) {
    let catalogue: BTreeSet<&ModelKey> = builtins
        .iter()
        .chain(repository.iter().map(|model| &model.key))
        .collect();
    for (name, rule) in serving.routing.iter() {
        let missing: Vec<String> = rule
            .versions()
            .into_iter()
            .filter(|version| !catalogue.contains(&ModelKey::new(name.clone(), (*version).clone())))
            .map(ToString::to_string)
            .collect();
        if !missing.is_empty() {
            out.warn(
                format!("routing.{name}"),
                format!(
                    "routes to {}, not in the catalogue (rule: {rule})",
                    missing
                        .iter()
                        .map(|version| format!("{name}:{version}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
    }
    for pinned in &serving.registry.pinned {
        if !catalogue.contains(pinned) {
            out.warn(
                "registry.pinned",
                format!("{pinned} is not in the catalogue"),
            );
        }
    }
}

/// Loads every ready repository model on a blocking thread, one after the other.
async fn load_models<F: FnMut(&CheckLine)>(repository: &[ScannedModel], out: &mut Recorder<F>) {
    for model in repository {
        let Ok(source) = &model.source else {
            continue;
        };
        // A pipeline has nothing of its own to load: its steps are the models above.
        if source.description().pipeline.is_some() {
            continue;
        }
        let source = Arc::clone(source);
        let loaded = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            source
                .load(&LoadContext::default())
                .map(|_| started.elapsed())
        })
        .await;
        let subject = format!("load {}", model.key);
        match loaded {
            Ok(Ok(elapsed)) => out.ok(subject, format!("loaded in {} ms", elapsed.as_millis())),
            Ok(Err(err)) => out.warn(subject, format!("{err}; serve would report it not ready")),
            Err(err) => out.warn(subject, format!("the load was interrupted: {err}")),
        }
    }
}

/// PostgreSQL when `DATABASE_URL` is set (reachable and migrated, as `serve` requires), else
/// the SQLite file's directory.
async fn check_store(settings: &Settings) -> (Outcome, String) {
    let Some(url) = &settings.database_url else {
        return match sqlite_location(&settings.sqlite_db_path) {
            Ok(message) => {
                // `check` never writes the file: it says what `serve` would apply.
                match inference_engine_store::sqlite::pending_migrations(&settings.sqlite_db_path)
                    .await
                {
                    Ok(pending) => (Outcome::Ok, format!("{message}; {pending}")),
                    Err(err) => (
                        Outcome::Warn,
                        format!("{message}; the schema cannot be read: {err}"),
                    ),
                }
            }
            Err(message) => (Outcome::Fail, message),
        };
    };
    // `connect` gives up after about 5 s; this bound only guards against a driver that hangs.
    match tokio::time::timeout(Duration::from_secs(30), PostgresJobStore::connect(url)).await {
        Ok(Ok(store)) => {
            store.close().await;
            (
                Outcome::Ok,
                format!(
                    "PostgreSQL at DATABASE_URL {} is reachable; {}",
                    redact_url(url),
                    store.migrations()
                ),
            )
        }
        Ok(Err(err)) => (
            Outcome::Fail,
            format!("DATABASE_URL {}: {err}", redact_url(url)),
        ),
        Err(_) => (
            Outcome::Fail,
            format!("DATABASE_URL {}: no answer within 30 s", redact_url(url)),
        ),
    }
}

/// Whether SQLite could create (or open) `path`, without creating it: the file, if it exists,
/// opens for writing, and its directory (or the nearest existing ancestor, which `serve` would
/// create the rest from) accepts new files, which SQLite needs for its `-wal` and `-shm` files.
fn sqlite_location(path: &Path) -> Result<String, String> {
    let shown = path.display();
    let exists = match path.try_exists() {
        Ok(exists) => exists,
        // A file where a folder should be: the ancestor walk below names it.
        Err(err) if err.kind() == std::io::ErrorKind::NotADirectory => false,
        Err(err) => return Err(format!("SQLITE_DB_PATH {shown} cannot be read: {err}")),
    };
    if exists {
        if path.is_dir() {
            return Err(format!("SQLITE_DB_PATH {shown} is a directory"));
        }
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|err| format!("SQLITE_DB_PATH {shown} cannot be opened for writing: {err}"))?;
    }
    let directory = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut existing: PathBuf = directory.to_owned();
    while !existing.exists() {
        existing = match existing.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
            _ => PathBuf::from("."),
        };
    }
    if !existing.is_dir() {
        return Err(format!(
            "SQLITE_DB_PATH {shown}: {} is not a directory",
            existing.display()
        ));
    }
    probe_writable(&existing).map_err(|err| {
        format!(
            "SQLITE_DB_PATH {shown}: cannot create files in {}: {err}",
            existing.display()
        )
    })?;
    Ok(if exists {
        format!("SQLite at SQLITE_DB_PATH {shown} (exists, writable)")
    } else if existing == directory {
        format!("SQLite at SQLITE_DB_PATH {shown} (created at start)")
    } else {
        format!(
            "SQLite at SQLITE_DB_PATH {shown} (created at start with {})",
            directory.display()
        )
    })
}

/// Creates and removes an empty file in `dir`: permissions, ACLs, a read-only mount and a full
/// inode table all show, which no metadata check covers.
fn probe_writable(dir: &Path) -> std::io::Result<()> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos());
    let probe = dir.join(format!(
        ".inference-engine-check-{}-{nanos}",
        std::process::id()
    ));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)?;
    std::fs::remove_file(&probe)
}

/// Redis when `REDIS_URL` is set: the connection `serve` opens (consumer group included) and
/// a `PING`.
async fn check_queue(settings: &Settings) -> (Outcome, String) {
    let Some(url) = &settings.redis_url else {
        return (
            Outcome::Ok,
            "in-process (REDIS_URL is not set: serve runs async jobs itself)".to_owned(),
        );
    };
    let config = RedisQueueConfig::new(url.clone(), settings.redis_key_prefix.clone());
    let checked = async {
        let queue = RedisJobQueue::connect(config).await?;
        queue.ping().await
    };
    match tokio::time::timeout(Duration::from_secs(30), checked).await {
        Ok(Ok(())) => (
            Outcome::Ok,
            format!(
                "Redis at REDIS_URL {} is reachable (key prefix {:?})",
                redact_url(url),
                settings.redis_key_prefix
            ),
        ),
        Ok(Err(err)) => (
            Outcome::Fail,
            format!("REDIS_URL {}: {err}", redact_url(url)),
        ),
        Err(_) => (
            Outcome::Fail,
            format!("REDIS_URL {}: no answer within 30 s", redact_url(url)),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings_in(dir: &Path) -> Settings {
        let mut settings = Settings::for_tests(dir.join("data/jobs.db"));
        settings.models_dir = dir.join("models");
        settings.config = None;
        settings
    }

    async fn run_quietly(settings: &Settings) -> CheckReport {
        run(settings, CheckOptions::default(), |_| {}).await
    }

    fn lines_about<'a>(report: &'a CheckReport, subject: &str) -> Vec<&'a CheckLine> {
        report
            .lines()
            .iter()
            .filter(|line| line.subject == subject)
            .collect()
    }

    #[test]
    fn lines_align_their_outcome_labels() {
        let line = |outcome| CheckLine {
            outcome,
            subject: "config".into(),
            message: "engine.toml".into(),
        };
        assert_eq!(line(Outcome::Ok).to_string(), "ok   config: engine.toml");
        assert_eq!(line(Outcome::Warn).to_string(), "WARN config: engine.toml");
        assert_eq!(line(Outcome::Fail).to_string(), "FAIL config: engine.toml");
    }

    #[test]
    fn the_summary_counts_each_outcome_and_says_what_serve_would_do() {
        let mut report = CheckReport::default();
        for outcome in [Outcome::Ok, Outcome::Ok, Outcome::Warn] {
            report.lines.push(CheckLine {
                outcome,
                subject: "x".into(),
                message: "y".into(),
            });
        }
        assert!(report.passed());
        assert_eq!(
            report.summary(),
            "check passed: 2 ok, 1 warning; serve would start"
        );
        report.lines.push(CheckLine {
            outcome: Outcome::Fail,
            subject: "x".into(),
            message: "y".into(),
        });
        assert!(!report.passed());
        assert_eq!(
            report.summary(),
            "check failed: 1 failure, 2 ok, 1 warning; serve would refuse to start"
        );
    }

    #[tokio::test]
    async fn defaults_in_an_empty_folder_pass_with_warnings_and_create_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let settings = settings_in(dir.path());
        let mut streamed = Vec::new();

        let report = run(&settings, CheckOptions::default(), |line| {
            streamed.push(line.clone());
        })
        .await;

        assert!(report.passed(), "{:#?}", report.lines());
        assert_eq!(streamed, report.lines(), "every line is streamed, in order");
        assert_eq!(lines_about(&report, "api keys")[0].outcome, Outcome::Warn);
        assert_eq!(lines_about(&report, "models")[0].outcome, Outcome::Warn);
        let store = lines_about(&report, "job store")[0];
        assert_eq!(store.outcome, Outcome::Ok, "{store}");
        assert!(!dir.path().join("data").exists(), "nothing is created");
        assert_eq!(
            std::fs::read_dir(dir.path()).expect("read").count(),
            0,
            "the probe file is removed"
        );
    }

    #[tokio::test]
    async fn every_broken_setting_is_reported_in_one_run() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut settings = settings_in(dir.path());
        settings.max_body_bytes = 0;
        settings.worker_batch = 0;
        settings.log_level = "info,=nonsense[".into();
        settings.api_keys = Some("short:tenant_a".into());
        settings.builtin_models = Some("echo,gpt".into());
        settings.max_loaded_memory_mb = Some(0);

        let report = run_quietly(&settings).await;

        assert!(!report.passed());
        let failures: Vec<String> = report
            .lines()
            .iter()
            .filter(|line| line.outcome == Outcome::Fail)
            .map(ToString::to_string)
            .collect();
        let expected = [
            "FAIL settings: MAX_BODY_BYTES must be at least 1",
            "FAIL settings: MAX_LOADED_MEMORY_MB must be at least 1",
            "FAIL settings: WORKER_BATCH must be at least 1",
            "FAIL settings: LOG_LEVEL",
            "FAIL api keys: API_KEYS entry 1 is malformed",
            "FAIL built-in models: BUILTIN_MODELS: unknown built-in model \"gpt\"",
        ];
        assert_eq!(failures.len(), expected.len(), "{failures:#?}");
        for (failure, expected) in failures.iter().zip(expected) {
            assert!(failure.starts_with(expected), "{failure} / {expected}");
        }
        assert!(
            report
                .lines()
                .iter()
                .all(|line| !line.message.contains("short:")),
            "the key is never printed"
        );
    }

    #[tokio::test]
    async fn an_invalid_engine_toml_or_pool_override_fails_naming_the_key_and_dangling_names_warn()
    {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("engine.toml");
        std::fs::write(&config, "[registry]\nmax_loded = 3\n").expect("write");
        let mut settings = settings_in(dir.path());
        settings.config = Some(config.clone());

        let report = run_quietly(&settings).await;
        let line = lines_about(&report, "config")[0];
        assert_eq!(line.outcome, Outcome::Fail);
        assert!(line.message.contains("max_loded"), "{line}");

        std::fs::write(&config, "[execution.policy]\n\"echo:v1\" = \"fast\"\n").expect("write");
        let report = run_quietly(&settings).await;
        let line = lines_about(&report, "config")[0];
        assert_eq!(line.outcome, Outcome::Fail);
        assert!(line.message.contains("execution.policy"), "{line}");

        std::fs::write(&config, "").expect("write");
        let mut oversized = settings.clone();
        oversized.cpu_executor_workers = Some(100_000);
        let report = run_quietly(&oversized).await;
        let line = lines_about(&report, "config")[0];
        assert_eq!(line.outcome, Outcome::Fail);
        assert!(line.message.contains("execution.pools.cpu"), "{line}");
        assert!(line.message.contains("CPU_EXECUTOR_WORKERS"), "{line}");

        std::fs::write(
            &config,
            "[routing.echo]\nstrategy = \"canary\"\nprimary = \"v1\"\ncanary = \"v9\"\ncanary_percent = 5\n\n[registry]\npinned = [\"ghost:v1\"]\n",
        )
        .expect("write");
        let report = run_quietly(&settings).await;
        assert!(report.passed(), "{:#?}", report.lines());
        let line = lines_about(&report, "config")[0];
        assert!(line.message.contains("1 routing rule,"), "{line}");
        assert!(!line.message.contains("max_memory_mb"), "{line}");
        let routing = lines_about(&report, "routing.echo")[0];
        assert_eq!(routing.outcome, Outcome::Warn);
        assert!(routing.message.contains("echo:v9"), "{routing}");
        let pinned = lines_about(&report, "registry.pinned")[0];
        assert!(pinned.message.contains("ghost:v1"), "{pinned}");
    }

    #[tokio::test]
    async fn the_config_line_names_the_memory_cap_and_the_variable_overrides_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("engine.toml");
        std::fs::write(&config, "[registry]\nmax_loaded = 4\nmax_memory_mb = 256\n")
            .expect("write");
        let mut settings = settings_in(dir.path());
        settings.config = Some(config);

        let report = run_quietly(&settings).await;
        let line = lines_about(&report, "config")[0];
        assert!(
            line.message
                .contains("max_loaded 4, max_memory_mb 256, warm-up on"),
            "{line}"
        );

        settings.max_loaded_memory_mb = Some(128);
        let report = run_quietly(&settings).await;
        let line = lines_about(&report, "config")[0];
        assert!(line.message.contains("max_memory_mb 128,"), "{line}");
    }

    #[tokio::test]
    async fn broken_models_and_skipped_folders_are_warnings_naming_them() {
        let dir = tempfile::tempdir().expect("temp dir");
        let models = dir.path().join("models");
        std::fs::create_dir_all(models.join("broken/v1")).expect("mkdir");
        std::fs::write(models.join("broken/v1/model.toml"), "nonsense = [").expect("write");
        std::fs::create_dir_all(models.join("empty/v1")).expect("mkdir");
        std::fs::create_dir_all(models.join("echo/v1")).expect("mkdir");
        std::fs::write(models.join("echo/v1/model.toml"), "").expect("write");
        let settings = settings_in(dir.path());

        let report = run(&settings, CheckOptions { load_models: true }, |_| {}).await;

        assert!(report.passed(), "{:#?}", report.lines());
        let broken = lines_about(&report, "model broken:v1")[0];
        assert_eq!(broken.outcome, Outcome::Warn);
        assert!(broken.message.contains("model.toml"), "{broken}");
        let shadowed = lines_about(&report, "model echo:v1")[0];
        assert!(shadowed.message.contains("built-in"), "{shadowed}");
        let skipped: Vec<&CheckLine> = lines_about(&report, "models")
            .into_iter()
            .filter(|line| line.outcome == Outcome::Warn)
            .collect();
        assert_eq!(skipped.len(), 1, "{skipped:#?}");
        assert!(skipped[0].message.contains("empty"), "{}", skipped[0]);
        assert!(
            report
                .lines()
                .iter()
                .all(|line| !line.subject.starts_with("load ")),
            "only ready models are loaded"
        );
    }

    #[test]
    fn a_sqlite_path_under_a_file_or_naming_a_folder_fails_and_nothing_is_created() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("file");
        std::fs::write(&file, "").expect("write");

        let under_a_file = sqlite_location(&file.join("jobs.db")).expect_err("refused");
        assert!(
            under_a_file.contains("is not a directory"),
            "{under_a_file}"
        );

        let a_directory = sqlite_location(dir.path()).expect_err("refused");
        assert!(a_directory.contains("is a directory"), "{a_directory}");

        let fine = sqlite_location(&dir.path().join("a/b/jobs.db")).expect("fine");
        assert!(fine.contains("created at start with"), "{fine}");
        assert!(!dir.path().join("a").exists());
    }

    #[tokio::test]
    async fn unreachable_services_fail_naming_the_host_not_the_password() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut settings = settings_in(dir.path());
        settings.database_url = Some("postgres://postgres:secret@127.0.0.1:1/db".into());
        settings.redis_url = Some("redis://:secret@127.0.0.1:1".into());

        let report = run_quietly(&settings).await;

        for subject in ["job store", "job queue"] {
            let line = lines_about(&report, subject)[0];
            assert_eq!(line.outcome, Outcome::Fail, "{line}");
            assert!(line.message.contains("127.0.0.1:1"), "{line}");
            assert!(!line.message.contains("secret"), "{line}");
        }
    }
}
