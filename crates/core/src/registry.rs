//! The model registry: which models exist, which version a request gets, and which are loaded.
//!
//! Everything a request needs to find and run a model (the catalogue of models, the routing
//! rules, the SLA timeouts, the executor pools) lives in one immutable [`Serving`] snapshot that
//! a reload replaces in a single swap, so a request never sees half of an old configuration and
//! half of a new one.
//!
//! Models load lazily: the first request starts one load on a dedicated loader thread and every
//! concurrent request for the same model awaits that same load (single flight). The load
//! finishes even if the request that started it goes away. Loads are serialised process-wide,
//! so that the growth of the process's resident memory across a load measures what that model
//! costs (floored by the source's size hint). Two caps, `max_loaded` (models) and
//! `max_memory_mb` (their summed measured sizes), evict the least recently used models that are
//! not pinned, preferring idle ones; a request already running holds its own [`ModelLease`], so
//! eviction only drops the registry's reference and the model is freed when its last request
//! finishes.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};

use crate::batcher::Batcher;
use crate::builtin::{EchoPipeline, SleepPipeline};
use crate::config::{ExecutionPolicy, RateLimitPolicy, RegistryPolicy, SlaPolicy};
use crate::error::{Classified, ErrorKind};
use crate::executor::{ExecutorConfig, ExecutorPool};
use crate::model::{ModelKey, ModelName, ModelVersion};
use crate::observe;
use crate::pipeline::{Model, PipelineModel};
use crate::resident;
use crate::routing::{Bucket, RoutingRule, RoutingTable};
pub use crate::source::Backend;
use crate::source::{LoadContext, LoadError, ModelDescription, ModelSource, ReadySource};
use crate::steps::{PipelineDescription, PipelineStep};
use crate::sync::lock;

/// One line of `GET /models`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelStatus {
    pub key: ModelKey,
    pub backend: Backend,
    /// In memory now.
    pub loaded: bool,
    /// Can serve requests: loaded, or loadable on first use. `false` once a load failed.
    pub ready: bool,
    pub error: Option<String>,
}

/// One line of `GET /debug/models/loaded`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedStatus {
    pub key: ModelKey,
    /// Time since the model last served a request (or finished loading).
    pub idle_for: Duration,
    pub in_flight: usize,
    pub pinned: bool,
    /// Loads of this model since the process started.
    pub loads: u64,
    /// What the model costs in memory, measured when it was loaded (0 for built-ins).
    pub memory_bytes: u64,
}

/// Everything `GET /models/{name}/{version}` shows.
#[derive(Debug, Clone)]
pub struct ModelDetails {
    pub status: ModelStatus,
    pub description: Option<ModelDescription>,
    /// The rule that picks a version when a request omits it, if the model has one.
    pub routing: Option<RoutingRule>,
    pub timeout: Option<Duration>,
    pub executor: String,
    pub pinned: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("model \"{name}\" is not served here")]
    UnknownModel { name: ModelName },
    #[error("model \"{name}\" has no version \"{version}\"")]
    UnknownVersion {
        name: ModelName,
        version: ModelVersion,
    },
    #[error(
        "model \"{name}\" has several versions ({available}) and no routing rule: give \"version\""
    )]
    VersionRequired { name: ModelName, available: String },
    #[error("model {key} is not ready: {reason}")]
    NotReady { key: ModelKey, reason: String },
}

impl Classified for ResolveError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::UnknownModel { .. } | Self::UnknownVersion { .. } => ErrorKind::NotFound,
            Self::VersionRequired { .. } => ErrorKind::InvalidInput,
            Self::NotReady { .. } => ErrorKind::NotReady,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::UnknownModel { .. } | Self::UnknownVersion { .. } => "model_not_found",
            Self::VersionRequired { .. } => "version_required",
            Self::NotReady { .. } => "not_ready",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("model {0} is registered twice")]
    Duplicate(ModelKey),
    #[error("unknown built-in model {0:?}; built-ins are: echo, sleep")]
    UnknownBuiltin(String),
    #[error("cannot start the executor threads of pool {pool:?}: {reason}")]
    Executor { pool: String, reason: String },
    #[error("model {0} is not served here")]
    UnknownModel(ModelKey),
    #[error("reloading {key} failed, the previous version keeps serving: {reason}")]
    ReloadFailed { key: ModelKey, reason: String },
    #[error("the model repository cannot be read: {0}")]
    Repository(String),
}

impl Classified for RegistryError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::UnknownModel(_) => ErrorKind::NotFound,
            Self::ReloadFailed { .. } | Self::Repository(_) | Self::Duplicate(_) => {
                ErrorKind::InvalidInput
            }
            Self::UnknownBuiltin(_) => ErrorKind::InvalidInput,
            Self::Executor { .. } => ErrorKind::Internal,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::UnknownModel(_) => "model_not_found",
            Self::ReloadFailed { .. } => "reload_failed",
            Self::Repository(_) => "repository_unreadable",
            Self::Duplicate(_) | Self::UnknownBuiltin(_) => "invalid_configuration",
            Self::Executor { .. } => "internal",
        }
    }
}

/// Which built-in pipelines to register (`BUILTIN_MODELS=echo,sleep`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuiltinSet {
    pub echo: bool,
    pub sleep: bool,
}

impl BuiltinSet {
    /// `echo` always; `sleep` only outside production, where it could tie up executor threads.
    pub fn default_for(production: bool) -> Self {
        Self {
            echo: true,
            sleep: !production,
        }
    }

    /// A comma-separated list; an empty value registers no built-in.
    pub fn parse(value: &str) -> Result<Self, RegistryError> {
        let mut set = Self {
            echo: false,
            sleep: false,
        };
        for name in value
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
        {
            match name {
                "echo" => set.echo = true,
                "sleep" => set.sleep = true,
                other => return Err(RegistryError::UnknownBuiltin(other.to_owned())),
            }
        }
        Ok(set)
    }

    /// The built-in models as sources, already "loaded" (they are plain Rust values).
    pub fn sources(self) -> Vec<ScannedModel> {
        let mut models = Vec::new();
        let mut add = |name: &str, version: &str, model: Arc<dyn Model>| {
            if let (Ok(name), Ok(version)) = (ModelName::parse(name), ModelVersion::parse(version))
            {
                let source: Arc<dyn ModelSource> =
                    Arc::new(ReadySource::new(ModelDescription::builtin(), model));
                models.push(ScannedModel {
                    key: ModelKey::new(name, version),
                    source: Ok(source),
                });
            }
        };
        if self.echo {
            add("echo", "v1", Arc::new(PipelineModel::new(EchoPipeline)));
            add("echo", "v2", Arc::new(PipelineModel::new(EchoPipeline)));
        }
        if self.sleep {
            add("sleep", "v1", Arc::new(PipelineModel::new(SleepPipeline)));
        }
        models
    }
}

/// A model found by a repository scan: its source, or why it cannot be used.
#[derive(Debug, Clone)]
pub struct ScannedModel {
    pub key: ModelKey,
    pub source: Result<Arc<dyn ModelSource>, LoadError>,
}

/// Where models come from besides the built-ins (the `MODELS_DIR` folder). Implemented by the
/// backend crates; scanning reads manifests only, it never loads a model.
pub trait ModelRepository: Send + Sync + fmt::Debug {
    fn scan(&self) -> Result<Vec<ScannedModel>, LoadError>;
}

/// The parts of the configuration that decide how requests are served.
#[derive(Debug, Clone, Default)]
pub struct ServingConfig {
    pub registry: RegistryPolicy,
    pub routing: RoutingTable,
    pub sla: SlaPolicy,
    pub execution: ExecutionPolicy,
    /// Per tenant and route group; swapped with the rest on reload.
    pub rate_limits: RateLimitPolicy,
    /// Requests that may wait in each pool's queue before new ones are refused with 503.
    pub executor_queue_capacity: usize,
}

/// The executor pools of one configuration, by name.
#[derive(Debug)]
pub struct Executors {
    pools: BTreeMap<String, Arc<ExecutorPool>>,
    policy: ExecutionPolicy,
}

impl Executors {
    /// Starts the configured pools, reusing the running pool of the same name and size from the
    /// previous configuration so a reload does not restart threads for nothing.
    fn start(
        policy: &ExecutionPolicy,
        queue_capacity: usize,
        previous: Option<&Executors>,
    ) -> Result<Self, RegistryError> {
        let mut pools = BTreeMap::new();
        for (name, &threads) in policy.pools() {
            let reusable = previous
                .and_then(|previous| previous.pools.get(name))
                .filter(|pool| pool.threads() == threads.max(1))
                .cloned();
            let pool = match reusable {
                Some(pool) => pool,
                None => Arc::new(
                    ExecutorPool::start(&ExecutorConfig {
                        name: name.clone(),
                        threads,
                        queue_capacity,
                    })
                    .map_err(|err| RegistryError::Executor {
                        pool: name.clone(),
                        reason: err.to_string(),
                    })?,
                ),
            };
            pools.insert(name.clone(), pool);
        }
        Ok(Self {
            pools,
            policy: policy.clone(),
        })
    }

    /// The pool a model runs on. Validation guarantees the policy only names existing pools.
    pub fn pool_for(&self, key: &ModelKey) -> Option<&Arc<ExecutorPool>> {
        self.pools.get(self.policy.pool_for(key))
    }

    pub fn pools(&self) -> impl Iterator<Item = &Arc<ExecutorPool>> {
        self.pools.values()
    }
}

/// A loaded model and what serves it.
#[derive(Clone)]
pub struct LoadedModel {
    pub model: Arc<dyn Model>,
    /// Set for models whose manifest enables dynamic batching.
    pub batcher: Option<Arc<Batcher>>,
    /// Resident memory the load added (at least the source's size hint); what the model counts
    /// against `max_memory_mb`. 0 for built-ins, which are never measured.
    pub memory_bytes: u64,
}

impl fmt::Debug for LoadedModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedModel")
            .field("model", &self.model)
            .field("batched", &self.batcher.is_some())
            .field("memory_bytes", &self.memory_bytes)
            .finish()
    }
}

type LoadFuture = Shared<BoxFuture<'static, Result<LoadedModel, LoadError>>>;

enum SlotState {
    Unloaded,
    Loading(LoadFuture),
    Loaded(LoadedModel),
    Failed(LoadError),
}

struct SlotInner {
    source: Result<Arc<dyn ModelSource>, LoadError>,
    state: SlotState,
}

/// One `(name, version)` of the catalogue. Slots outlive reloads of the configuration when
/// their model is still in the repository, so a loaded model stays loaded.
struct Slot {
    key: ModelKey,
    /// Built-in pipelines and pipelines of models cost no memory: they do not count towards
    /// the caps, are never evicted or measured, and warm-up marks them loaded first.
    builtin: bool,
    /// Never held across an `.await`.
    inner: Mutex<SlotInner>,
    in_flight: AtomicUsize,
    /// Nanoseconds since the registry's epoch when the model was last handed out.
    last_used: AtomicU64,
    loads: AtomicU64,
}

impl fmt::Debug for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slot").field("key", &self.key).finish()
    }
}

impl Slot {
    fn new(scanned: ScannedModel) -> Self {
        let builtin = scanned
            .source
            .as_ref()
            .is_ok_and(|source| costs_nothing(source.description().backend));
        Self {
            key: scanned.key,
            builtin,
            inner: Mutex::new(SlotInner {
                source: scanned.source,
                state: SlotState::Unloaded,
            }),
            in_flight: AtomicUsize::new(0),
            last_used: AtomicU64::new(0),
            loads: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, SlotInner> {
        lock(&self.inner)
    }

    fn status(&self) -> ModelStatus {
        let inner = self.lock();
        let backend = match &inner.source {
            Ok(source) => source.description().backend,
            Err(_) => Backend::Onnx,
        };
        let (loaded, error) = match (&inner.source, &inner.state) {
            (Err(err), _) | (_, SlotState::Failed(err)) => (false, Some(err.to_string())),
            (Ok(_), SlotState::Loaded(_)) => (true, None),
            (Ok(_), SlotState::Unloaded | SlotState::Loading(_)) => (false, None),
        };
        ModelStatus {
            key: self.key.clone(),
            backend,
            loaded,
            ready: error.is_none(),
            error,
        }
    }

    fn is_ready(&self) -> bool {
        let inner = self.lock();
        inner.source.is_ok() && !matches!(inner.state, SlotState::Failed(_))
    }

    /// The measured size of the loaded model; `None` when it is not loaded.
    fn loaded_bytes(&self) -> Option<u64> {
        match &self.lock().state {
            SlotState::Loaded(loaded) => Some(loaded.memory_bytes),
            SlotState::Unloaded | SlotState::Loading(_) | SlotState::Failed(_) => None,
        }
    }
}

/// An immutable serving configuration: the catalogue and the policies that go with it.
#[derive(Debug)]
pub struct Serving {
    models: BTreeMap<ModelName, BTreeMap<ModelVersion, Arc<Slot>>>,
    /// The request body limits models declare (`max_body_bytes`), read from their sources
    /// once so a request does not lock slots to find its limit.
    body_limits: BTreeMap<ModelKey, usize>,
    /// The pipelines of the catalogue and what stops their steps from resolving, read from
    /// their sources once: a request for any model asks whether it is a pipeline.
    pipelines: BTreeMap<ModelKey, Arc<PipelinePlan>>,
    pub config: ServingConfig,
    pub executors: Executors,
}

/// A pipeline of the catalogue, as a request runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelinePlan {
    /// At least one, unless the pipeline was refused (then its load fails and nothing runs).
    pub steps: Vec<PipelineStep>,
    /// Why the pipeline cannot serve in this catalogue: the repository scan refused it (its
    /// requests get 503 `not_ready`), or a step cannot be resolved (an unknown model or
    /// version, another pipeline, several versions and no routing rule; a request fails at
    /// that step with the step's own error, 404 for an unknown model). The pipeline is listed
    /// not ready with this, and routing avoids it. `None` when it can serve.
    pub not_ready: Option<String>,
}

impl Serving {
    fn assemble(
        models: BTreeMap<ModelName, BTreeMap<ModelVersion, Arc<Slot>>>,
        config: ServingConfig,
        executors: Executors,
    ) -> Self {
        let body_limits = models
            .values()
            .flat_map(BTreeMap::values)
            .filter_map(|slot| {
                let inner = slot.lock();
                let source = inner.source.as_ref().ok()?;
                Some((slot.key.clone(), source.description().max_body_bytes?))
            })
            .collect();
        let declared: BTreeMap<ModelKey, PipelineDescription> = models
            .values()
            .flat_map(BTreeMap::values)
            .filter_map(|slot| {
                let inner = slot.lock();
                let pipeline = inner
                    .source
                    .as_ref()
                    .ok()?
                    .description()
                    .pipeline
                    .as_ref()?;
                Some((slot.key.clone(), pipeline.clone()))
            })
            .collect();
        let pipeline_keys: BTreeSet<ModelKey> = declared.keys().cloned().collect();
        let pipelines = declared
            .into_iter()
            .map(|(key, PipelineDescription { steps, refused })| {
                let not_ready = refused.or_else(|| {
                    steps.iter().enumerate().find_map(|(index, step)| {
                        unresolved_step(&models, &pipeline_keys, &config, step)
                            .map(|reason| format!("step {} ({step}): {reason}", index + 1))
                    })
                });
                (key, Arc::new(PipelinePlan { steps, not_ready }))
            })
            .collect();
        Self {
            models,
            body_limits,
            pipelines,
            config,
            executors,
        }
    }

    /// The pipeline `key` names, if it names one.
    pub fn pipeline(&self, key: &ModelKey) -> Option<&Arc<PipelinePlan>> {
        if self.pipelines.is_empty() {
            return None;
        }
        self.pipelines.get(key)
    }

    /// What is known about `key` without loading it (`None`: not in the catalogue, or its
    /// manifest is unusable).
    pub fn description(&self, key: &ModelKey) -> Option<ModelDescription> {
        let inner = self.slot(key)?.lock();
        inner
            .source
            .as_ref()
            .ok()
            .map(|source| source.description().clone())
    }

    /// The slot's status, with a pipeline that cannot serve shown not ready
    /// ([`PipelinePlan::not_ready`]).
    fn status(&self, slot: &Slot) -> ModelStatus {
        let mut status = slot.status();
        if status.ready
            && let Some(reason) = self
                .pipeline(&slot.key)
                .and_then(|plan| plan.not_ready.as_ref())
        {
            status.ready = false;
            status.error = Some(reason.clone());
        }
        status
    }

    /// Whether routing may send requests to `slot`: it is ready, and if it is a pipeline, it
    /// can serve.
    fn is_ready(&self, slot: &Slot) -> bool {
        slot.is_ready()
            && self
                .pipeline(&slot.key)
                .is_none_or(|plan| plan.not_ready.is_none())
    }

    /// The body limit of a request for `name` (and `version`, when it names one): the
    /// model's own `max_body_bytes`, else `default`. Without a version, the largest of the
    /// model's versions' (routing picks the version later).
    pub fn body_limit(
        &self,
        name: &ModelName,
        version: Option<&ModelVersion>,
        default: usize,
    ) -> usize {
        let limit_of = |version: &ModelVersion| {
            let key = ModelKey::new(name.clone(), version.clone());
            self.body_limits.get(&key).copied().unwrap_or(default)
        };
        match version {
            Some(version) => limit_of(version),
            None => self
                .models
                .get(name)
                .and_then(|versions| versions.keys().map(limit_of).max())
                .unwrap_or(default),
        }
    }

    /// The largest body limit any model declares.
    fn largest_body_limit(&self) -> Option<usize> {
        self.body_limits.values().copied().max()
    }

    fn slot(&self, key: &ModelKey) -> Option<&Arc<Slot>> {
        self.models.get(&key.name)?.get(&key.version)
    }

    fn slots(&self) -> impl Iterator<Item = &Arc<Slot>> {
        self.models.values().flat_map(BTreeMap::values)
    }

    /// The loaded models that count towards the caps (not the built-ins), with their sizes.
    fn loaded_sizes(&self) -> Vec<(&Arc<Slot>, u64)> {
        self.slots()
            .filter(|slot| !slot.builtin)
            .filter_map(|slot| slot.loaded_bytes().map(|bytes| (slot, bytes)))
            .collect()
    }

    /// The version a request gets (docs/configuration.md, `[routing.<model>]`): the exact version when given; otherwise the
    /// model's routing rule, or its only version. `bucket` is only evaluated when a rule needs
    /// it.
    pub fn route(
        &self,
        name: &ModelName,
        version: Option<&ModelVersion>,
        bucket: impl FnOnce() -> Bucket,
    ) -> Result<ModelKey, ResolveError> {
        let versions = self
            .models
            .get(name)
            .ok_or_else(|| ResolveError::UnknownModel { name: name.clone() })?;
        let key = |version: ModelVersion| ModelKey::new(name.clone(), version);
        if let Some(version) = version {
            return if versions.contains_key(version) {
                Ok(key(version.clone()))
            } else {
                Err(ResolveError::UnknownVersion {
                    name: name.clone(),
                    version: version.clone(),
                })
            };
        }
        if let Some(rule) = self.config.routing.get(name) {
            let is_ready = |version: &ModelVersion| {
                versions
                    .get(version)
                    .is_some_and(|slot| self.is_ready(slot))
            };
            let chosen = rule.route(bucket(), is_ready);
            return if versions.contains_key(&chosen) {
                Ok(key(chosen))
            } else {
                Err(ResolveError::UnknownVersion {
                    name: name.clone(),
                    version: chosen,
                })
            };
        }
        let mut all = versions.keys();
        match (all.next(), all.next()) {
            (Some(only), None) => Ok(key(only.clone())),
            _ => Err(ResolveError::VersionRequired {
                name: name.clone(),
                available: versions
                    .keys()
                    .map(ModelVersion::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// How the model will be called: by the threads of the pool its execution policy names.
    fn load_context(&self, key: &ModelKey) -> LoadContext {
        LoadContext {
            executor_threads: self
                .executors
                .pool_for(key)
                .map_or(1, |pool| pool.threads()),
        }
    }

    pub fn timeout_for(&self, key: &ModelKey, requested: Option<Duration>) -> Option<Duration> {
        self.config.sla.effective_timeout(key, requested)
    }
}

/// A model handed to one request. Holding it keeps the model alive (eviction and unload only
/// drop the registry's reference) and counts the request as in flight.
pub struct ModelLease {
    pub key: ModelKey,
    pub loaded: LoadedModel,
    slot: Arc<Slot>,
}

impl fmt::Debug for ModelLease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModelLease")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl Drop for ModelLease {
    fn drop(&mut self) {
        self.slot.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

struct RegistryInner {
    /// Read on every request, written on reload; never held across an `.await`.
    serving: RwLock<Arc<Serving>>,
    /// [`Serving::largest_body_limit`] of the current snapshot (0: none), for the route guard,
    /// which reads it on every request before it knows the model.
    largest_body_limit: AtomicUsize,
    builtins: Vec<ScannedModel>,
    repository: Option<Arc<dyn ModelRepository>>,
    epoch: Instant,
}

/// All models this process serves. Cheap to clone: clones share the same registry.
#[derive(Clone)]
pub struct ModelRegistry {
    inner: Arc<RegistryInner>,
}

impl fmt::Debug for ModelRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModelRegistry")
            .field("serving", &self.serving())
            .finish_non_exhaustive()
    }
}

impl ModelRegistry {
    /// Builds the catalogue from the built-ins and a first scan of the repository. Nothing is
    /// loaded yet (see [`Self::warm_up`]).
    pub fn new(
        builtins: BuiltinSet,
        repository: Option<Arc<dyn ModelRepository>>,
        config: ServingConfig,
    ) -> Result<Self, RegistryError> {
        let builtins = builtins.sources();
        let scanned = scan(&builtins, repository.as_deref())?;
        let executors = Executors::start(&config.execution, config.executor_queue_capacity, None)?;
        let serving = Serving::assemble(catalogue(scanned, None), config, executors);
        let largest_body_limit = AtomicUsize::new(serving.largest_body_limit().unwrap_or(0));
        Ok(Self {
            inner: Arc::new(RegistryInner {
                serving: RwLock::new(Arc::new(serving)),
                largest_body_limit,
                builtins,
                repository,
                epoch: Instant::now(),
            }),
        })
    }

    /// Only the built-in models, with default policies: for tests and tools.
    pub fn with_builtins(builtins: BuiltinSet) -> Result<Self, RegistryError> {
        Self::new(
            builtins,
            None,
            ServingConfig {
                executor_queue_capacity: 64,
                ..ServingConfig::default()
            },
        )
    }

    /// The largest request body limit a model of the current catalogue declares
    /// (`max_body_bytes`), if any: what the route guard lets through before the handler knows
    /// the model and checks its own limit.
    pub fn largest_body_limit(&self) -> Option<usize> {
        Some(self.inner.largest_body_limit.load(Ordering::Relaxed)).filter(|&limit| limit > 0)
    }

    /// The current serving configuration. A request takes it once and uses it throughout.
    pub fn serving(&self) -> Arc<Serving> {
        Arc::clone(
            &self
                .inner
                .serving
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Rescans the repository and installs `config` in one swap. Models still in the repository
    /// keep their slot (a loaded model stays loaded and serving; its new manifest is used by
    /// the next load); models that failed to load get another chance; removed models disappear
    /// for new requests while running ones finish. Nothing changes if anything fails.
    pub fn reconfigure(&self, config: ServingConfig) -> Result<(), RegistryError> {
        let scanned = scan(&self.inner.builtins, self.inner.repository.as_deref())?;
        let mut serving = self
            .inner
            .serving
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let executors = Executors::start(
            &config.execution,
            config.executor_queue_capacity,
            Some(&serving.executors),
        )?;
        let models = catalogue(scanned, Some(&serving));
        *serving = Arc::new(Serving::assemble(models, config, executors));
        self.inner
            .largest_body_limit
            .store(serving.largest_body_limit().unwrap_or(0), Ordering::Relaxed);
        drop(serving);
        self.enforce_caps(None);
        self.publish_loaded();
        Ok(())
    }

    /// Hands out the model, loading it first if needed (one load, however many callers).
    pub async fn acquire(
        &self,
        serving: &Serving,
        key: &ModelKey,
    ) -> Result<ModelLease, ResolveError> {
        let slot = serving
            .slot(key)
            .ok_or_else(|| ResolveError::UnknownVersion {
                name: key.name.clone(),
                version: key.version.clone(),
            })?;
        let loading = {
            let mut inner = slot.lock();
            match &inner.state {
                SlotState::Loaded(loaded) => return Ok(self.lease(slot, loaded.clone())),
                SlotState::Failed(err) => return Err(not_ready(key, err)),
                SlotState::Loading(loading) => loading.clone(),
                SlotState::Unloaded => match &inner.source {
                    Err(err) => return Err(not_ready(key, err)),
                    Ok(source) => {
                        let context = serving.load_context(key);
                        let loading =
                            self.start_load(Arc::clone(slot), Arc::clone(source), context);
                        inner.state = SlotState::Loading(loading.clone());
                        loading
                    }
                },
            }
        };
        match loading.await {
            Ok(loaded) => Ok(self.lease(slot, loaded)),
            Err(err) => Err(not_ready(key, &err)),
        }
    }

    fn lease(&self, slot: &Arc<Slot>, loaded: LoadedModel) -> ModelLease {
        slot.in_flight.fetch_add(1, Ordering::Relaxed);
        slot.last_used.store(self.ticks(), Ordering::Relaxed);
        ModelLease {
            key: slot.key.clone(),
            loaded,
            slot: Arc::clone(slot),
        }
    }

    fn ticks(&self) -> u64 {
        u64::try_from(self.inner.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Starts the one load of `slot`; its outcome is recorded in the slot by the loader thread.
    fn start_load(
        &self,
        slot: Arc<Slot>,
        source: Arc<dyn ModelSource>,
        context: LoadContext,
    ) -> LoadFuture {
        let registry = self.clone();
        let key = slot.key.clone();
        on_loader_thread(&key, move || {
            let outcome = load_model(&slot.key, source.as_ref(), &context);
            slot.loads.fetch_add(1, Ordering::Relaxed);
            {
                let mut inner = slot.lock();
                inner.state = match &outcome {
                    Ok(loaded) => SlotState::Loaded(loaded.clone()),
                    Err(err) => SlotState::Failed(err.clone()),
                };
            }
            if outcome.is_ok() {
                slot.last_used.store(registry.ticks(), Ordering::Relaxed);
                registry.enforce_caps(Some(&slot.key));
                registry.publish_loaded();
            }
            outcome
        })
        .map(Result::flatten)
        .boxed()
        .shared()
    }

    /// Evicts least recently used, unpinned models until the loaded ones are within both caps
    /// (`max_loaded` models, `max_memory_mb` of measured sizes). Idle models go first; a busy
    /// one is evicted only if nothing idle is left, and its running requests still finish on
    /// their own reference (its memory is freed when they do). `just_loaded` is never evicted:
    /// that would only make its next request load it again.
    fn enforce_caps(&self, just_loaded: Option<&ModelKey>) {
        let serving = self.serving();
        let policy = &serving.config.registry;
        let loaded = serving.loaded_sizes();
        let mut models = loaded.len();
        let mut bytes: u64 = loaded.iter().map(|(_, bytes)| bytes).sum();
        if policy.fits(models, bytes) {
            return;
        }
        let mut victims: Vec<&Arc<Slot>> = loaded
            .into_iter()
            .map(|(slot, _)| slot)
            .filter(|slot| !policy.pinned.contains(&slot.key) && Some(&slot.key) != just_loaded)
            .collect();
        victims.sort_by_key(|slot| {
            (
                slot.in_flight.load(Ordering::Relaxed) > 0,
                slot.last_used.load(Ordering::Relaxed),
            )
        });
        for victim in victims {
            if policy.fits(models, bytes) {
                break;
            }
            let mut inner = victim.lock();
            let SlotState::Loaded(evicted) = &inner.state else {
                continue;
            };
            let freed = evicted.memory_bytes;
            inner.state = SlotState::Unloaded;
            drop(inner);
            models -= 1;
            bytes = bytes.saturating_sub(freed);
            observe::model_evicted();
            tracing::info!(
                model = %victim.key,
                in_flight = victim.in_flight.load(Ordering::Relaxed),
                memory_bytes = freed,
                max_loaded = ?policy.max_loaded,
                max_memory_mb = ?policy.max_memory_mb,
                "model evicted (least recently used)"
            );
        }
        if !policy.fits(models, bytes) {
            tracing::warn!(
                loaded = models,
                memory_bytes = bytes,
                max_loaded = ?policy.max_loaded,
                max_memory_mb = ?policy.max_memory_mb,
                "the loaded models exceed max_loaded or max_memory_mb: the rest are pinned or just loaded"
            );
        }
    }

    /// Loads every ready model, pinned ones first, up to `max_loaded` (built-ins always).
    /// Failures are recorded on their model and never stop the others. `max_memory_mb` does not
    /// shorten the list (a model's size is known only once it is loaded): each load evicts what
    /// no longer fits, as it does for any request, so the models loaded last stay.
    pub async fn warm_up(&self) {
        let serving = self.serving();
        let pinned = &serving.config.registry.pinned;
        let mut order: Vec<&Arc<Slot>> = serving
            .slots()
            .filter(|slot| !slot.builtin && slot.is_ready())
            .collect();
        order.sort_by_key(|slot| !pinned.contains(&slot.key));
        if let Some(max_loaded) = serving.config.registry.max_loaded {
            order.truncate(max_loaded.max(pinned.len()));
        }
        // Built-ins are plain values: "loading" them only marks them loaded.
        for slot in serving.slots().filter(|slot| slot.builtin) {
            drop(self.acquire(&serving, &slot.key).await);
        }
        for slot in order {
            if let Err(err) = self.acquire(&serving, &slot.key).await {
                tracing::warn!(model = %slot.key, error = %err, "warm-up: model not ready");
            }
        }
    }

    /// Loads the model again from the repository; the old version serves until the new one is
    /// ready, and keeps serving if the new one fails to load.
    pub async fn reload_model(&self, key: &ModelKey) -> Result<(), RegistryError> {
        let serving = self.serving();
        let slot = serving
            .slot(key)
            .cloned()
            .ok_or_else(|| RegistryError::UnknownModel(key.clone()))?;
        // The rescan reads manifests and the load reads the graph: both on the loader thread.
        let registry = self.clone();
        let reloaded_key = key.clone();
        let (source, loaded) = on_loader_thread(key, move || registry.load_fresh(&reloaded_key))
            .await
            .map_err(|err| RegistryError::ReloadFailed {
                key: key.clone(),
                reason: err.to_string(),
            })??;
        slot.loads.fetch_add(1, Ordering::Relaxed);
        {
            let mut inner = slot.lock();
            inner.source = Ok(source);
            inner.state = SlotState::Loaded(loaded);
        }
        slot.last_used.store(self.ticks(), Ordering::Relaxed);
        self.enforce_caps(Some(key));
        self.publish_loaded();
        Ok(())
    }

    /// Rescans the repository for `key` and loads what it finds, without touching the slot.
    /// Blocking.
    fn load_fresh(
        &self,
        key: &ModelKey,
    ) -> Result<(Arc<dyn ModelSource>, LoadedModel), RegistryError> {
        let failed = |reason: String| RegistryError::ReloadFailed {
            key: key.clone(),
            reason,
        };
        let source = scan(&self.inner.builtins, self.inner.repository.as_deref())?
            .into_iter()
            .find(|scanned| &scanned.key == key)
            .ok_or_else(|| failed("it is no longer in the model repository".into()))?
            .source
            .map_err(|err| failed(err.to_string()))?;
        let context = self.serving().load_context(key);
        let loaded =
            load_model(key, source.as_ref(), &context).map_err(|err| failed(err.to_string()))?;
        Ok((source, loaded))
    }

    /// Sets the `models_loaded` and `models_loaded_bytes` gauges (built-ins excluded: they
    /// cost nothing).
    fn publish_loaded(&self) {
        let serving = self.serving();
        let loaded = serving.loaded_sizes();
        observe::models_loaded(loaded.len(), loaded.iter().map(|(_, bytes)| bytes).sum());
    }

    /// Drops the registry's reference; running requests finish on their own. Returns whether
    /// the model was loaded.
    pub fn unload(&self, key: &ModelKey) -> Result<bool, RegistryError> {
        let serving = self.serving();
        let slot = serving
            .slot(key)
            .ok_or_else(|| RegistryError::UnknownModel(key.clone()))?;
        let mut inner = slot.lock();
        let was_loaded = matches!(inner.state, SlotState::Loaded(_));
        if was_loaded {
            inner.state = SlotState::Unloaded;
            tracing::info!(model = %key, "model unloaded");
        }
        drop(inner);
        self.publish_loaded();
        Ok(was_loaded)
    }

    /// Every model, by name then version.
    pub fn statuses(&self) -> Vec<ModelStatus> {
        let serving = self.serving();
        serving.slots().map(|slot| serving.status(slot)).collect()
    }

    /// The loaded models, least recently used first.
    pub fn loaded(&self) -> Vec<LoadedStatus> {
        let serving = self.serving();
        let now = self.ticks();
        let mut loaded: Vec<(u64, LoadedStatus)> = serving
            .slots()
            .filter_map(|slot| {
                let memory_bytes = slot.loaded_bytes()?;
                let last_used = slot.last_used.load(Ordering::Relaxed);
                let status = LoadedStatus {
                    key: slot.key.clone(),
                    idle_for: Duration::from_nanos(now.saturating_sub(last_used)),
                    in_flight: slot.in_flight.load(Ordering::Relaxed),
                    pinned: serving.config.registry.pinned.contains(&slot.key),
                    loads: slot.loads.load(Ordering::Relaxed),
                    memory_bytes,
                };
                Some((last_used, status))
            })
            .collect();
        loaded.sort_by_key(|(last_used, _)| *last_used);
        loaded.into_iter().map(|(_, status)| status).collect()
    }

    pub fn details(&self, key: &ModelKey) -> Option<ModelDetails> {
        let serving = self.serving();
        let slot = serving.slot(key)?;
        let description = slot
            .lock()
            .source
            .as_ref()
            .ok()
            .map(|source| source.description().clone());
        Some(ModelDetails {
            status: serving.status(slot),
            description,
            routing: serving.config.routing.get(&key.name).cloned(),
            timeout: serving.config.sla.timeout_for(key),
            executor: serving.config.execution.pool_for(key).to_owned(),
            pinned: serving.config.registry.pinned.contains(key),
        })
    }
}

fn not_ready(key: &ModelKey, err: &LoadError) -> ResolveError {
    ResolveError::NotReady {
        key: key.clone(),
        reason: err.to_string(),
    }
}

/// Runs `work` on a new `model-load-*` thread (loads and repository scans block: file reads,
/// graph optimisation) and resolves to its result. The work finishes, and records whatever it
/// records, even if nobody awaits the result any more.
fn on_loader_thread<T: Send + 'static>(
    key: &ModelKey,
    work: impl FnOnce() -> T + Send + 'static,
) -> impl Future<Output = Result<T, LoadError>> + Send + 'static {
    let (done, finished) = flume::bounded(1);
    let spawned = std::thread::Builder::new()
        .name(format!("model-load-{}", key.name))
        .spawn(move || {
            let _ = done.send(work());
        });
    let spawn_error = spawned
        .err()
        .map(|err| LoadError(format!("cannot start a loader thread for {key}: {err}")));
    async move {
        if let Some(err) = spawn_error {
            return Err(err);
        }
        finished
            .recv_async()
            .await
            .map_err(|_| LoadError("the loader thread ended without an outcome".into()))
    }
}

/// Serialises the loads of repository models across the process (every registry in it), so
/// that the resident memory a load adds is that load's alone, not also another's running at the
/// same time. Held on loader threads only, never across an `.await`.
static LOADER_LOCK: Mutex<()> = Mutex::new(());

/// A model as one load made it, and what that load cost.
struct MeasuredLoad {
    model: Arc<dyn Model>,
    /// See [`LoadedModel::memory_bytes`].
    memory_bytes: u64,
    /// The load itself, without the wait for [`LOADER_LOCK`].
    load_time: Duration,
}

/// Loads and measures the model ([`load_measured`]) and starts its batcher.
fn load_model(
    key: &ModelKey,
    source: &dyn ModelSource,
    context: &LoadContext,
) -> Result<LoadedModel, LoadError> {
    match load_measured(source, context) {
        Ok(MeasuredLoad {
            model,
            memory_bytes,
            load_time,
        }) => {
            let batcher = match source.description().batching {
                Some(config) => Some(Arc::new(
                    Batcher::start(key, Arc::clone(&model), config)
                        .map_err(|err| LoadError(format!("cannot start the batcher: {err}")))?,
                )),
                None => None,
            };
            if !costs_nothing(source.description().backend) {
                observe::model_loaded(key, load_time);
                tracing::info!(model = %key, load_ms = load_time.as_millis(), memory_bytes, batching = batcher.is_some(), "model loaded");
            }
            Ok(LoadedModel {
                model,
                batcher,
                memory_bytes,
            })
        }
        Err(err) => {
            tracing::error!(model = %key, error = %err, "model failed to load");
            Err(err)
        }
    }
}

/// Loads under [`LOADER_LOCK`] and takes the growth of the process's resident set size across
/// the load as the model's cost, floored by the source's size hint: memory the allocator hands
/// out again after an eviction was already resident and does not show as growth. Without a
/// resident size (no `/proc`), the hint alone counts. Built-ins are plain values: never
/// measured, never serialised, free.
fn load_measured(
    source: &dyn ModelSource,
    context: &LoadContext,
) -> Result<MeasuredLoad, LoadError> {
    let load = || {
        let started = Instant::now();
        let model = catch_unwind(AssertUnwindSafe(|| source.load(context)))
            .unwrap_or_else(|_| Err(LoadError("the model loader panicked".into())))?;
        Ok::<_, LoadError>((model, started.elapsed()))
    };
    let description = source.description();
    if costs_nothing(description.backend) {
        let (model, load_time) = load()?;
        return Ok(MeasuredLoad {
            model,
            memory_bytes: 0,
            load_time,
        });
    }
    let serialised = lock(&LOADER_LOCK);
    let before = resident::resident_set_bytes();
    let loaded = load();
    let after = resident::resident_set_bytes();
    drop(serialised);
    let (model, load_time) = loaded?;
    let growth = before
        .zip(after)
        .map_or(0, |(before, after)| after.saturating_sub(before));
    Ok(MeasuredLoad {
        model,
        memory_bytes: growth.max(description.size_hint_bytes.unwrap_or(0)),
        load_time,
    })
}

/// Built-ins (plain Rust values) and pipelines (nothing of their own to load: their steps are
/// other models) take no memory worth measuring.
fn costs_nothing(backend: Backend) -> bool {
    matches!(backend, Backend::Builtin | Backend::Pipeline)
}

/// Why `step` of a pipeline cannot be resolved in `models` (`pipelines`: the keys of the
/// catalogue's pipelines), if it cannot: what a request would fail with at that step, or a
/// step that is itself a pipeline (pipelines do not nest).
fn unresolved_step(
    models: &BTreeMap<ModelName, BTreeMap<ModelVersion, Arc<Slot>>>,
    pipelines: &BTreeSet<ModelKey>,
    config: &ServingConfig,
    step: &PipelineStep,
) -> Option<String> {
    let Some(versions) = models.get(&step.model) else {
        return Some(format!("model \"{}\" is not served here", step.model));
    };
    let nested = |version: &ModelVersion| {
        let key = ModelKey::new(step.model.clone(), version.clone());
        pipelines.contains(&key).then(|| {
            format!(
                "{key} is a pipeline, and a pipeline's steps must be models (pipelines do not nest)"
            )
        })
    };
    match &step.version {
        Some(version) if !versions.contains_key(version) => Some(format!(
            "model \"{}\" has no version \"{version}\"",
            step.model
        )),
        Some(version) => nested(version),
        None => versions.keys().find_map(nested).or_else(|| {
            (versions.len() > 1 && config.routing.get(&step.model).is_none()).then(|| {
                format!(
                    "model \"{}\" has several versions ({}) and no routing rule: name a version",
                    step.model,
                    versions
                        .keys()
                        .map(ModelVersion::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
        }),
    }
}

/// Built-ins first; a repository model with a built-in's name and version is skipped.
fn scan(
    builtins: &[ScannedModel],
    repository: Option<&dyn ModelRepository>,
) -> Result<Vec<ScannedModel>, RegistryError> {
    let mut models = builtins.to_vec();
    if let Some(repository) = repository {
        let keys: BTreeSet<ModelKey> = builtins.iter().map(|model| model.key.clone()).collect();
        for scanned in repository
            .scan()
            .map_err(|err| RegistryError::Repository(err.to_string()))?
        {
            if keys.contains(&scanned.key) {
                tracing::warn!(model = %scanned.key, "a repository model has the name and version of a built-in; the built-in wins");
                continue;
            }
            models.push(scanned);
        }
    }
    Ok(models)
}

/// Builds the catalogue, keeping the slots of `previous` for models still present.
fn catalogue(
    scanned: Vec<ScannedModel>,
    previous: Option<&Serving>,
) -> BTreeMap<ModelName, BTreeMap<ModelVersion, Arc<Slot>>> {
    let mut models: BTreeMap<ModelName, BTreeMap<ModelVersion, Arc<Slot>>> = BTreeMap::new();
    for scanned in scanned {
        let slot = match previous.and_then(|previous| previous.slot(&scanned.key)) {
            Some(slot) => {
                let mut inner = slot.lock();
                if matches!(inner.state, SlotState::Failed(_)) {
                    inner.state = SlotState::Unloaded;
                }
                inner.source = scanned.source;
                drop(inner);
                Arc::clone(slot)
            }
            None => Arc::new(Slot::new(scanned)),
        };
        models
            .entry(slot.key.name.clone())
            .or_default()
            .insert(slot.key.version.clone(), slot);
    }
    models
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex as StdMutex;
    use std::sync::atomic::AtomicBool;

    use serde_json::{Value, json};

    use super::*;
    use crate::builtin::EchoPipeline;
    use crate::pipeline::{Pipeline, PipelineError};

    fn key(text: &str) -> ModelKey {
        let (name, version) = text.split_once(':').unwrap();
        ModelKey::new(
            ModelName::parse(name).unwrap(),
            ModelVersion::parse(version).unwrap(),
        )
    }

    /// A repository model that counts its loads, can be made slow, and can be broken.
    #[derive(Debug)]
    struct CountingSource {
        description: ModelDescription,
        loads: AtomicUsize,
        load_delay: Duration,
        broken: AtomicBool,
    }

    impl CountingSource {
        fn new(load_delay: Duration) -> Arc<Self> {
            Arc::new(Self {
                description: ModelDescription {
                    backend: Backend::Onnx,
                    ..ModelDescription::builtin()
                },
                loads: AtomicUsize::new(0),
                load_delay,
                broken: AtomicBool::new(false),
            })
        }
    }

    impl ModelSource for CountingSource {
        fn description(&self) -> &ModelDescription {
            &self.description
        }

        fn load(&self, _context: &LoadContext) -> Result<Arc<dyn Model>, LoadError> {
            self.loads.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(self.load_delay);
            if self.broken.load(Ordering::SeqCst) {
                return Err(LoadError("model.onnx: not a valid ONNX file".into()));
            }
            Ok(Arc::new(PipelineModel::new(EchoPipeline)))
        }
    }

    type SourceOrError = Result<Arc<dyn ModelSource>, LoadError>;

    /// A repository whose content the test controls.
    #[derive(Debug, Default)]
    struct FakeRepository {
        models: StdMutex<Vec<ScannedModel>>,
    }

    impl FakeRepository {
        fn with(models: Vec<(&str, SourceOrError)>) -> Arc<Self> {
            let repository = Self::default();
            *repository.models.lock().unwrap() = models
                .into_iter()
                .map(|(text, source)| ScannedModel {
                    key: key(text),
                    source,
                })
                .collect();
            Arc::new(repository)
        }
    }

    impl ModelRepository for FakeRepository {
        fn scan(&self) -> Result<Vec<ScannedModel>, LoadError> {
            Ok(self.models.lock().unwrap().clone())
        }
    }

    fn config(max_loaded: Option<usize>, pinned: &[&str]) -> ServingConfig {
        ServingConfig {
            registry: RegistryPolicy {
                max_loaded,
                max_memory_mb: None,
                warmup: false,
                pinned: pinned.iter().map(|text| key(text)).collect(),
            },
            executor_queue_capacity: 16,
            ..ServingConfig::default()
        }
    }

    fn registry(repository: Arc<FakeRepository>, config: ServingConfig) -> ModelRegistry {
        let builtins = BuiltinSet {
            echo: false,
            sleep: false,
        };
        ModelRegistry::new(builtins, Some(repository), config).unwrap()
    }

    fn name(value: &str) -> ModelName {
        ModelName::parse(value).unwrap()
    }

    fn version(value: &str) -> ModelVersion {
        ModelVersion::parse(value).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sixteen_concurrent_first_requests_cause_exactly_one_load() {
        let source = CountingSource::new(Duration::from_millis(100));
        let repository = FakeRepository::with(vec![("iris:v1", Ok(source.clone()))]);
        let registry = registry(repository, config(None, &[]));
        let serving = registry.serving();
        let requests = (0..16).map(|_| {
            let registry = registry.clone();
            let serving = Arc::clone(&serving);
            tokio::spawn(async move { registry.acquire(&serving, &key("iris:v1")).await.is_ok() })
        });
        let outcomes = futures_util::future::join_all(requests).await;
        assert!(outcomes.into_iter().all(|ok| ok.unwrap()));
        assert_eq!(source.loads.load(Ordering::SeqCst), 1);
        assert_eq!(registry.loaded()[0].loads, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_lru_cap_evicts_the_least_recently_used_and_in_flight_work_survives() {
        let a = CountingSource::new(Duration::ZERO);
        let b = CountingSource::new(Duration::ZERO);
        let repository =
            FakeRepository::with(vec![("a:v1", Ok(a.clone())), ("b:v1", Ok(b.clone()))]);
        let registry = registry(repository, config(Some(1), &[]));
        let serving = registry.serving();

        let held = registry.acquire(&serving, &key("a:v1")).await.unwrap();
        let _b = registry.acquire(&serving, &key("b:v1")).await.unwrap();
        let loaded: Vec<String> = registry
            .loaded()
            .iter()
            .map(|m| m.key.to_string())
            .collect();
        assert_eq!(loaded, ["b:v1"], "a was evicted when b loaded");
        // The evicted model still answers the request that holds it.
        assert_eq!(held.loaded.model.predict(json!(7)), Ok(json!(7)));
        drop(held);

        registry.acquire(&serving, &key("a:v1")).await.unwrap();
        assert_eq!(a.loads.load(Ordering::SeqCst), 2, "a was loaded again");
        let loaded: Vec<String> = registry
            .loaded()
            .iter()
            .map(|m| m.key.to_string())
            .collect();
        assert_eq!(loaded, ["a:v1"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pinned_models_are_never_evicted() {
        let repository = FakeRepository::with(vec![
            ("a:v1", Ok(CountingSource::new(Duration::ZERO))),
            ("b:v1", Ok(CountingSource::new(Duration::ZERO))),
            ("c:v1", Ok(CountingSource::new(Duration::ZERO))),
        ]);
        let registry = registry(repository, config(Some(2), &["a:v1"]));
        let serving = registry.serving();
        for model in ["a:v1", "b:v1", "c:v1", "b:v1"] {
            drop(registry.acquire(&serving, &key(model)).await.unwrap());
        }
        let mut loaded: Vec<String> = registry
            .loaded()
            .iter()
            .map(|m| m.key.to_string())
            .collect();
        loaded.sort();
        assert_eq!(loaded, ["a:v1", "b:v1"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_broken_model_is_not_ready_with_its_error_and_others_serve() {
        let broken = CountingSource::new(Duration::ZERO);
        broken.broken.store(true, Ordering::SeqCst);
        let repository = FakeRepository::with(vec![
            ("bad:v1", Ok(broken.clone())),
            (
                "bad:v2",
                Err(LoadError("model.toml: unknown field `shap`".into())),
            ),
            ("good:v1", Ok(CountingSource::new(Duration::ZERO))),
        ]);
        let registry = registry(repository, config(None, &[]));
        registry.warm_up().await;
        let serving = registry.serving();
        let err = registry
            .acquire(&serving, &key("bad:v1"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), "not_ready");
        assert!(err.to_string().contains("not a valid ONNX file"), "{err}");
        // A failed load is not retried on every request.
        assert_eq!(broken.loads.load(Ordering::SeqCst), 1);
        let statuses = registry.statuses();
        let bad = statuses.iter().find(|s| s.key == key("bad:v2")).unwrap();
        assert!(!bad.ready && bad.error.as_deref().unwrap().contains("shap"));
        assert!(registry.acquire(&serving, &key("good:v1")).await.is_ok());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_reload_keeps_the_old_version_serving() {
        let source = CountingSource::new(Duration::ZERO);
        let repository = FakeRepository::with(vec![("m:v1", Ok(source.clone()))]);
        let registry = registry(repository, config(None, &[]));
        let serving = registry.serving();
        drop(registry.acquire(&serving, &key("m:v1")).await.unwrap());

        source.broken.store(true, Ordering::SeqCst);
        let err = registry.reload_model(&key("m:v1")).await.unwrap_err();
        assert_eq!(err.code(), "reload_failed");
        let lease = registry.acquire(&serving, &key("m:v1")).await.unwrap();
        assert_eq!(
            lease.loaded.model.predict(json!("still")),
            Ok(json!("still"))
        );

        source.broken.store(false, Ordering::SeqCst);
        registry.reload_model(&key("m:v1")).await.unwrap();
        assert_eq!(source.loads.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn unload_drops_the_model_until_the_next_request_loads_it() {
        let source = CountingSource::new(Duration::ZERO);
        let repository = FakeRepository::with(vec![("m:v1", Ok(source.clone()))]);
        let registry = registry(repository, config(None, &[]));
        let serving = registry.serving();
        drop(registry.acquire(&serving, &key("m:v1")).await.unwrap());
        assert!(registry.unload(&key("m:v1")).unwrap());
        assert!(registry.loaded().is_empty());
        assert!(!registry.unload(&key("m:v1")).unwrap());
        drop(registry.acquire(&serving, &key("m:v1")).await.unwrap());
        assert_eq!(source.loads.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn exact_versions_resolve_and_unknown_ones_are_not_found() {
        let registry = ModelRegistry::with_builtins(BuiltinSet::default_for(false)).unwrap();
        let serving = registry.serving();
        let routed = serving
            .route(&name("echo"), Some(&version("v2")), Bucket::random)
            .unwrap();
        assert_eq!(routed.to_string(), "echo:v2");
        let missing = serving
            .route(&name("echo"), Some(&version("v9")), Bucket::random)
            .unwrap_err();
        assert_eq!(missing.code(), "model_not_found");
        let unknown = serving
            .route(&name("nope"), None, Bucket::random)
            .unwrap_err();
        assert_eq!(unknown.code(), "model_not_found");
    }

    #[test]
    fn omitted_version_uses_the_only_version_or_asks_for_one() {
        let registry = ModelRegistry::with_builtins(BuiltinSet::default_for(false)).unwrap();
        let serving = registry.serving();
        let only = serving.route(&name("sleep"), None, Bucket::random).unwrap();
        assert_eq!(only.to_string(), "sleep:v1");
        let ambiguous = serving
            .route(&name("echo"), None, Bucket::random)
            .unwrap_err();
        assert_eq!(ambiguous.code(), "version_required");
        assert!(ambiguous.to_string().contains("v1, v2"));
    }

    #[test]
    fn production_has_no_sleep_model_unless_asked() {
        let production = ModelRegistry::with_builtins(BuiltinSet::default_for(true)).unwrap();
        assert!(
            production
                .serving()
                .route(&name("sleep"), None, Bucket::random)
                .is_err()
        );
        let explicit = BuiltinSet::parse("echo, sleep").unwrap();
        assert!(explicit.sleep && explicit.echo);
        assert!(BuiltinSet::parse("echo,llama").is_err());
    }

    #[test]
    fn statuses_list_every_version_in_order() {
        let registry = ModelRegistry::with_builtins(BuiltinSet::default_for(false)).unwrap();
        let keys: Vec<String> = registry
            .statuses()
            .iter()
            .map(|status| status.key.to_string())
            .collect();
        assert_eq!(keys, ["echo:v1", "echo:v2", "sleep:v1"]);
    }

    const MIB: usize = 1 << 20;

    /// Held by every test that loads [`BallastSource`]s, for its whole run: a ballast freed by
    /// one test (an eviction, a registry dropped) while another measures a load would shrink
    /// the resident memory under that measurement.
    static MEMORY_TESTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    /// A repository model whose load allocates and touches `ballast_bytes` of memory, which
    /// the loaded model holds until it is dropped.
    #[derive(Debug)]
    struct BallastSource {
        description: ModelDescription,
        ballast_bytes: usize,
        loads: AtomicUsize,
        /// Loaded models of this source that were freed.
        drops: Arc<AtomicUsize>,
    }

    impl BallastSource {
        fn new(ballast_bytes: usize, size_hint_bytes: Option<u64>) -> Arc<Self> {
            Arc::new(Self {
                description: ModelDescription {
                    backend: Backend::Onnx,
                    size_hint_bytes,
                    ..ModelDescription::builtin()
                },
                ballast_bytes,
                loads: AtomicUsize::new(0),
                drops: Arc::new(AtomicUsize::new(0)),
            })
        }
    }

    impl ModelSource for BallastSource {
        fn description(&self) -> &ModelDescription {
            &self.description
        }

        fn load(&self, _context: &LoadContext) -> Result<Arc<dyn Model>, LoadError> {
            self.loads.fetch_add(1, Ordering::SeqCst);
            // Non-zero bytes: zeroed memory could come as untouched pages that are not resident.
            let ballast = vec![0xA5; self.ballast_bytes];
            Ok(Arc::new(PipelineModel::new(BallastPipeline {
                ballast,
                drops: Arc::clone(&self.drops),
            })))
        }
    }

    /// Echoes its input, with the size of the memory it holds.
    struct BallastPipeline {
        ballast: Vec<u8>,
        drops: Arc<AtomicUsize>,
    }

    impl Drop for BallastPipeline {
        fn drop(&mut self) {
            self.drops.fetch_add(1, Ordering::SeqCst);
        }
    }

    impl Pipeline for BallastPipeline {
        type Input = Value;
        type Output = Value;

        fn preprocess(&self, data: Value) -> Result<Value, PipelineError> {
            Ok(data)
        }

        fn infer(&self, input: Value) -> Result<Value, PipelineError> {
            Ok(json!({"input": input, "held": self.ballast.len()}))
        }

        fn postprocess(&self, output: Value) -> Result<Value, PipelineError> {
            Ok(output)
        }
    }

    fn memory_capped(max_memory_mb: u64, pinned: &[&str]) -> ServingConfig {
        let mut config = config(None, pinned);
        config.registry.max_memory_mb = Some(max_memory_mb);
        config
    }

    fn mib(bytes: usize) -> u64 {
        u64::try_from(bytes).unwrap()
    }

    /// The loaded models, least recently used first, and their summed measured sizes.
    fn loaded_and_bytes(registry: &ModelRegistry) -> (Vec<String>, u64) {
        let loaded = registry.loaded();
        let bytes = loaded.iter().map(|model| model.memory_bytes).sum();
        let keys = loaded.iter().map(|model| model.key.to_string()).collect();
        (keys, bytes)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_load_costs_the_resident_memory_it_adds_and_at_least_its_size_hint() {
        let _alone = MEMORY_TESTS.lock().await;
        let repository = FakeRepository::with(vec![
            ("grown:v1", Ok(BallastSource::new(40 * MIB, None))),
            (
                "hinted:v1",
                Ok(BallastSource::new(MIB, Some(mib(64 * MIB)))),
            ),
        ]);
        let registry = registry(repository, config(None, &[]));
        let serving = registry.serving();

        let grown = registry.acquire(&serving, &key("grown:v1")).await.unwrap();
        let hinted = registry.acquire(&serving, &key("hinted:v1")).await.unwrap();

        assert!(
            grown.loaded.memory_bytes >= mib(40 * MIB),
            "measured {} bytes for a model holding 40 MiB",
            grown.loaded.memory_bytes
        );
        assert!(
            hinted.loaded.memory_bytes >= mib(64 * MIB),
            "measured {} bytes for a model hinted at 64 MiB",
            hinted.loaded.memory_bytes
        );
        let statuses = registry.loaded();
        let status = |text: &str| statuses.iter().find(|s| s.key == key(text)).unwrap();
        assert_eq!(status("grown:v1").memory_bytes, grown.loaded.memory_bytes);
        assert_eq!(status("hinted:v1").memory_bytes, hinted.loaded.memory_bytes);
    }

    #[tokio::test]
    async fn built_ins_are_never_measured_and_cost_nothing() {
        let registry = ModelRegistry::with_builtins(BuiltinSet::default_for(false)).unwrap();
        let serving = registry.serving();
        drop(registry.acquire(&serving, &key("echo:v1")).await.unwrap());
        assert_eq!(registry.loaded()[0].memory_bytes, 0);
    }

    // The eviction tests below cost each model by its size hint (a 1 MiB ballast, a 40 MiB
    // hint): a load's RSS growth also counts what this process's other tests allocate
    // meanwhile, which can only add to it, and made a 40 MiB model look larger than the cap's
    // slack once. The test above measures the growth itself.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn with_max_memory_mb_alternating_models_stay_under_the_cap_and_the_lru_one_goes() {
        let _alone = MEMORY_TESTS.lock().await;
        let sources: Vec<(&str, Arc<BallastSource>)> = ["a:v1", "b:v1", "c:v1"]
            .into_iter()
            .map(|text| (text, BallastSource::new(MIB, Some(mib(40 * MIB)))))
            .collect();
        let repository = FakeRepository::with(
            sources
                .iter()
                .map(|(text, source)| {
                    let source: Arc<dyn ModelSource> = source.clone();
                    (*text, Ok(source))
                })
                .collect(),
        );
        let registry = registry(repository, memory_capped(100, &[]));
        let serving = registry.serving();

        // Two 40 MiB models fit in 100 MiB, three do not: the expected loaded set, least
        // recently used first.
        let mut expected: Vec<String> = Vec::new();
        for model in [
            "a:v1", "b:v1", "c:v1", "a:v1", "a:v1", "b:v1", "c:v1", "b:v1", "a:v1",
        ] {
            drop(registry.acquire(&serving, &key(model)).await.unwrap());
            expected.retain(|loaded| loaded != model);
            expected.push(model.to_owned());
            if expected.len() > 2 {
                expected.remove(0);
            }
            let (loaded, bytes) = loaded_and_bytes(&registry);
            assert!(
                bytes <= mib(100 * MIB),
                "after {model}: {bytes} bytes loaded"
            );
            assert_eq!(loaded, expected, "after {model}");
        }
        let loads: Vec<usize> = sources
            .iter()
            .map(|(_, source)| source.loads.load(Ordering::SeqCst))
            .collect();
        assert_eq!(loads, [3, 2, 2]);
        let frees: Vec<usize> = sources
            .iter()
            .map(|(_, source)| source.drops.load(Ordering::SeqCst))
            .collect();
        assert_eq!(frees, [2, 1, 2], "every evicted model was freed at once");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_model_evicted_by_the_memory_cap_while_in_flight_answers_and_is_freed_after() {
        let _alone = MEMORY_TESTS.lock().await;
        let a = BallastSource::new(MIB, Some(mib(40 * MIB)));
        let repository = FakeRepository::with(vec![
            ("a:v1", Ok(a.clone())),
            ("b:v1", Ok(BallastSource::new(MIB, Some(mib(40 * MIB))))),
            ("c:v1", Ok(BallastSource::new(MIB, Some(mib(40 * MIB))))),
        ]);
        let registry = registry(repository, memory_capped(100, &[]));
        let serving = registry.serving();

        let running_on_a = registry.acquire(&serving, &key("a:v1")).await.unwrap();
        let _running_on_b = registry.acquire(&serving, &key("b:v1")).await.unwrap();
        // Nothing is idle: the least recently used of the busy models makes room.
        drop(registry.acquire(&serving, &key("c:v1")).await.unwrap());

        let (loaded, bytes) = loaded_and_bytes(&registry);
        assert_eq!(loaded, ["b:v1", "c:v1"], "a:v1 was evicted");
        assert!(bytes <= mib(100 * MIB), "{bytes} bytes loaded");
        assert_eq!(
            running_on_a.loaded.model.predict(json!(7)),
            Ok(json!({"input": 7, "held": MIB}))
        );
        assert_eq!(a.drops.load(Ordering::SeqCst), 0, "in use: not freed yet");
        drop(running_on_a);
        assert_eq!(
            a.drops.load(Ordering::SeqCst),
            1,
            "freed with its last lease"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_memory_cap_never_evicts_pinned_models_even_when_they_alone_exceed_it() {
        let _alone = MEMORY_TESTS.lock().await;
        let repository = FakeRepository::with(vec![
            (
                "pinned:v1",
                Ok(BallastSource::new(MIB, Some(mib(40 * MIB)))),
            ),
            ("b:v1", Ok(BallastSource::new(MIB, Some(mib(40 * MIB))))),
            ("c:v1", Ok(BallastSource::new(MIB, Some(mib(40 * MIB))))),
        ]);
        let registry = registry(repository, memory_capped(100, &["pinned:v1"]));
        let serving = registry.serving();
        drop(registry.acquire(&serving, &key("pinned:v1")).await.unwrap());
        for model in ["b:v1", "c:v1", "b:v1", "c:v1"] {
            drop(registry.acquire(&serving, &key(model)).await.unwrap());
            let (loaded, _) = loaded_and_bytes(&registry);
            assert_eq!(loaded, ["pinned:v1", model], "after {model}");
        }

        // Lowered below what the pinned model alone costs: it stays, the others go.
        registry
            .reconfigure(memory_capped(10, &["pinned:v1"]))
            .unwrap();
        let (loaded, _) = loaded_and_bytes(&registry);
        assert_eq!(loaded, ["pinned:v1"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn with_both_caps_the_tighter_one_decides() {
        let _alone = MEMORY_TESTS.lock().await;
        let repository = FakeRepository::with(vec![
            ("a:v1", Ok(BallastSource::new(MIB, Some(mib(40 * MIB))))),
            ("b:v1", Ok(BallastSource::new(MIB, Some(mib(40 * MIB))))),
        ]);
        let mut both = memory_capped(60, &[]);
        both.registry.max_loaded = Some(2);
        let registry = registry(repository, both);
        let serving = registry.serving();
        for model in ["a:v1", "b:v1"] {
            drop(registry.acquire(&serving, &key(model)).await.unwrap());
        }
        let (loaded, _) = loaded_and_bytes(&registry);
        assert_eq!(
            loaded,
            ["b:v1"],
            "two may be loaded, but only one fits in 60 MiB"
        );
    }
}
