//! The `engine.toml` configuration (docs/configuration.md): its file model and its validation.
//!
//! Two layers, so that nothing downstream ever sees an unchecked value:
//! - the *file* types ([`EngineConfigFile`] and its sections) mirror the TOML one to one. Every
//!   table rejects unknown keys (`deny_unknown_fields`) so a typo fails loudly instead of being
//!   ignored; numbers are read wide (`i64`, `f64`) so that a negative or out-of-range value gets
//!   our message naming the key rather than a bare type error.
//! - the *validated* types ([`EngineConfig`] and its policies) hold domain values: model keys,
//!   durations, routing rules. [`EngineConfigFile::validate`] is the only way from one to the
//!   other, and every [`ConfigError`] it returns starts with the key path at fault, e.g.
//!   `routing.classifier.variants: weights sum to 90, must be 100`.
//!
//! Core does not depend on a TOML parser: the app deserializes the file (any serde format works,
//! which is how the tests here use JSON) and calls `validate`. An absent file means
//! [`EngineConfig::default`].

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::marker::PhantomData;
use std::num::NonZeroUsize;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{Deserializer, Error as _, MapAccess, Visitor};

use crate::auth::TenantId;
use crate::jobs::MAX_ATTEMPTS_LIMIT;
use crate::model::{ModelKey, ModelName, ModelVersion};
use crate::routing::{RoutingError, RoutingRule, RoutingTable};

/// The pool every model runs on unless the execution policy says otherwise.
pub const CPU_POOL: &str = "cpu";
/// The second pool every process has, for models the policy sends to it.
pub const GPU_POOL: &str = "gpu";
/// Threads of the `gpu` pool when neither the file nor the environment sizes it (`GPU_EXECUTOR_WORKERS`'s documented default).
pub const DEFAULT_GPU_THREADS: usize = 2;
/// A pool larger than this is almost certainly a typo; refuse it rather than spawn it.
pub const MAX_POOL_THREADS: usize = 1_024;
const MAX_POOL_NAME_LEN: usize = 32;
const DEFAULT_MAX_ATTEMPTS: u32 = 3;
const DEFAULT_VISIBILITY_TIMEOUT: Duration = Duration::from_secs(300);
const DEFAULT_RESULT_TTL_DAYS: u32 = 30;
const SECONDS_PER_DAY: u64 = 24 * 60 * 60;

/// An invalid `engine.toml`. Every message starts with (or is about) the key path at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{key}: {reason}")]
    Invalid { key: String, reason: String },
    #[error("{key} is required for strategy \"{strategy}\"")]
    MissingField { key: String, strategy: &'static str },
    #[error("{key}: {fields} not allowed with strategy \"{strategy}\" (it takes {allowed})")]
    FieldsNotAllowed {
        key: String,
        strategy: &'static str,
        fields: String,
        allowed: &'static str,
    },
    #[error("{key}: unknown executor \"{executor}\"; pools are {pools}")]
    UnknownExecutor {
        key: String,
        executor: String,
        pools: String,
    },
    #[error("{key} must be a non-negative number of seconds")]
    InvalidSeconds { key: String },
}

impl ConfigError {
    /// The key path at fault, e.g. `execution.policy."echo:v1"`.
    pub fn key(&self) -> &str {
        match self {
            Self::Invalid { key, .. }
            | Self::MissingField { key, .. }
            | Self::FieldsNotAllowed { key, .. }
            | Self::UnknownExecutor { key, .. }
            | Self::InvalidSeconds { key } => key,
        }
    }
}

fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        reason: reason.into(),
    }
}

/// `parent.segment`, quoting the segment as TOML would when it is not a bare key.
fn key_path(parent: &str, segment: &str) -> String {
    let bare = !segment.is_empty()
        && segment
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'));
    if bare {
        format!("{parent}.{segment}")
    } else {
        format!("{parent}.{segment:?}")
    }
}

/// Parses `name:version` as written in TOML keys and lists (`"echo:v1"`).
fn parse_model_key(key: &str, value: &str) -> Result<ModelKey, ConfigError> {
    let not_a_key = |detail: String| {
        invalid(
            key,
            format!(
                "{value:?} is not a model key ({detail}); write \"name:version\", e.g. \"echo:v1\""
            ),
        )
    };
    let Some((name, version)) = value.split_once(':') else {
        return Err(not_a_key("no ':'".to_owned()));
    };
    let name = ModelName::parse(name).map_err(|err| not_a_key(err.to_string()))?;
    let version = ModelVersion::parse(version).map_err(|err| not_a_key(err.to_string()))?;
    Ok(ModelKey::new(name, version))
}

/// A non-negative, finite number of seconds.
fn seconds(key: &str, value: f64) -> Result<Duration, ConfigError> {
    Duration::try_from_secs_f64(value).map_err(|_| ConfigError::InvalidSeconds {
        key: key.to_owned(),
    })
}

// ---------------------------------------------------------------------------------------------
// The file as written.
// ---------------------------------------------------------------------------------------------

/// `engine.toml` as written. Every section may be omitted.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfigFile {
    pub registry: RegistryFile,
    /// Model name → rule. Used only when a request omits `version`.
    pub routing: BTreeMap<String, RoutingRuleFile>,
    pub execution: ExecutionFile,
    pub sla: SlaFile,
    pub rate_limits: RateLimitsFile,
    pub jobs: JobsFile,
}

/// `[registry]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryFile {
    pub max_loaded: Option<i64>,
    /// MiB the loaded models may occupy together, by their measured sizes.
    pub max_memory_mb: Option<i64>,
    pub warmup: Option<bool>,
    /// `"name:version"` keys.
    pub pinned: Vec<String>,
}

/// `[routing.<model>]`: `strategy` and the fields of that strategy only.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingRuleFile {
    /// `static`, `canary` or `ab`.
    pub strategy: String,
    /// static
    pub version: Option<String>,
    /// canary
    pub primary: Option<String>,
    /// canary
    pub canary: Option<String>,
    /// canary, `0..=100`
    pub canary_percent: Option<i64>,
    /// ab: version → weight, in the order written.
    pub variants: Option<OrderedEntries<i64>>,
}

/// A table whose entries keep the order they were written in (serde maps do not promise it).
///
/// It keeps whatever order the deserializer yields: `serde_json` yields document order; the
/// `toml` crate does only with its `preserve_order` feature, which the app enables. A key given
/// twice is rejected.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderedEntries<V>(pub Vec<(String, V)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for OrderedEntries<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor<V>(PhantomData<V>);

        impl<'de, V: Deserialize<'de>> Visitor<'de> for EntriesVisitor<V> {
            type Value = OrderedEntries<V>;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a table")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                // The hint comes from the input; cap it so a hostile one cannot force a huge
                // allocation.
                let mut entries: Vec<(String, V)> =
                    Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
                while let Some((key, value)) = map.next_entry::<String, V>()? {
                    if entries.iter().any(|(seen, _)| *seen == key) {
                        return Err(A::Error::custom(format!("duplicate key {key:?}")));
                    }
                    entries.push((key, value));
                }
                Ok(OrderedEntries(entries))
            }
        }

        deserializer.deserialize_map(EntriesVisitor(PhantomData))
    }
}

/// `[execution]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExecutionFile {
    /// Defaults to `cpu`.
    pub default_executor: Option<String>,
    /// Pool name → threads.
    pub pools: BTreeMap<String, i64>,
    /// `"name:version"` → pool name.
    pub policy: BTreeMap<String, String>,
}

/// `[sla]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SlaFile {
    /// Seconds; 0 or absent: no global timeout.
    pub default_timeout_s: Option<f64>,
    /// `"name:version"` → seconds; 0: no timeout for that model.
    pub timeouts: BTreeMap<String, f64>,
}

/// `[rate_limits]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitsFile {
    pub predict: Option<RateLimitFile>,
    pub models: Option<RateLimitFile>,
    pub jobs: Option<RateLimitFile>,
    pub tenants: BTreeMap<String, TenantRateLimitsFile>,
}

/// `[rate_limits.tenants.<tenant>]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenantRateLimitsFile {
    pub predict: Option<RateLimitFile>,
    pub models: Option<RateLimitFile>,
    pub jobs: Option<RateLimitFile>,
}

/// `{ rate = 100, burst = 200 }`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitFile {
    /// Requests per second.
    pub rate: f64,
    pub burst: i64,
}

/// `[jobs]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobsFile {
    pub max_attempts: Option<i64>,
    pub visibility_timeout_s: Option<f64>,
    pub result_ttl_days: Option<i64>,
}

// ---------------------------------------------------------------------------------------------
// The validated configuration.
// ---------------------------------------------------------------------------------------------

/// A validated `engine.toml`. `EngineConfig::default()` is what an absent file means.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EngineConfig {
    pub registry: RegistryPolicy,
    pub routing: RoutingTable,
    pub execution: ExecutionPolicy,
    pub sla: SlaPolicy,
    pub rate_limits: RateLimitPolicy,
    pub jobs: JobsPolicy,
}

impl EngineConfigFile {
    /// Checks every value and turns the file into domain values; the error names the key.
    pub fn validate(self) -> Result<EngineConfig, ConfigError> {
        Ok(EngineConfig {
            registry: self.registry.validate()?,
            routing: validate_routing(self.routing)?,
            execution: self.execution.validate()?,
            sla: self.sla.validate()?,
            rate_limits: self.rate_limits.validate()?,
            jobs: self.jobs.validate()?,
        })
    }
}

/// How the registry manages loaded models.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryPolicy {
    /// LRU cap on loaded models (at least 1); `None`: no cap.
    pub max_loaded: Option<usize>,
    /// LRU cap on the summed measured sizes of the loaded models, in MiB (at least 1); `None`:
    /// no cap. Applies together with `max_loaded` when both are set.
    pub max_memory_mb: Option<u64>,
    /// Load every model at start; `/ready` is 503 until done.
    pub warmup: bool,
    /// Never evicted. Without duplicates, in the order written.
    pub pinned: Vec<ModelKey>,
}

impl Default for RegistryPolicy {
    fn default() -> Self {
        Self {
            max_loaded: None,
            max_memory_mb: None,
            warmup: true,
            pinned: Vec::new(),
        }
    }
}

impl RegistryPolicy {
    /// `max_memory_mb` in bytes.
    pub fn max_memory_bytes(&self) -> Option<u64> {
        self.max_memory_mb.map(mib_to_bytes)
    }

    /// Whether `models` loaded models occupying `bytes` together are within both caps.
    pub fn fits(&self, models: usize, bytes: u64) -> bool {
        self.max_loaded.is_none_or(|cap| models <= cap)
            && self.max_memory_bytes().is_none_or(|cap| bytes <= cap)
    }
}

/// Mebibytes (`max_memory_mb` counts 2^20 bytes) as bytes; a cap beyond `u64::MAX` bytes is
/// no cap in practice.
fn mib_to_bytes(mib: u64) -> u64 {
    mib.saturating_mul(1 << 20)
}

impl RegistryFile {
    fn validate(self) -> Result<RegistryPolicy, ConfigError> {
        let max_loaded = self
            .max_loaded
            .map(|value| {
                usize::try_from(value)
                    .ok()
                    .filter(|cap| *cap >= 1)
                    .ok_or_else(|| {
                        invalid(
                            "registry.max_loaded",
                            format!("must be at least 1 (omit it for no cap), got {value}"),
                        )
                    })
            })
            .transpose()?;
        let max_memory_mb = self
            .max_memory_mb
            .map(|value| {
                u64::try_from(value)
                    .ok()
                    .filter(|cap| *cap >= 1)
                    .ok_or_else(|| {
                        invalid(
                            "registry.max_memory_mb",
                            format!("must be at least 1 MiB (omit it for no cap), got {value}"),
                        )
                    })
            })
            .transpose()?;
        let mut pinned = Vec::with_capacity(self.pinned.len());
        for (index, value) in self.pinned.iter().enumerate() {
            let key = parse_model_key(&format!("registry.pinned[{index}]"), value)?;
            if !pinned.contains(&key) {
                pinned.push(key);
            }
        }
        Ok(RegistryPolicy {
            max_loaded,
            max_memory_mb,
            warmup: self.warmup.unwrap_or(true),
            pinned,
        })
    }
}

#[derive(Debug, Clone, Copy)]
enum Strategy {
    Static,
    Canary,
    Ab,
}

impl Strategy {
    fn name(self) -> &'static str {
        match self {
            Self::Static => "static",
            Self::Canary => "canary",
            Self::Ab => "ab",
        }
    }

    fn fields(self) -> &'static [&'static str] {
        match self {
            Self::Static => &["version"],
            Self::Canary => &["primary", "canary", "canary_percent"],
            Self::Ab => &["variants"],
        }
    }

    fn fields_text(self) -> &'static str {
        match self {
            Self::Static => "version",
            Self::Canary => "primary, canary, canary_percent",
            Self::Ab => "variants",
        }
    }
}

fn validate_routing(rules: BTreeMap<String, RoutingRuleFile>) -> Result<RoutingTable, ConfigError> {
    let mut table = RoutingTable::new();
    for (name, rule) in rules {
        let key = key_path("routing", &name);
        let model = ModelName::parse(name).map_err(|err| invalid(&key, err.to_string()))?;
        table.insert(model, rule.validate(&key)?);
    }
    Ok(table)
}

impl RoutingRuleFile {
    fn validate(self, key: &str) -> Result<RoutingRule, ConfigError> {
        let strategy = match self.strategy.as_str() {
            "static" => Strategy::Static,
            "canary" => Strategy::Canary,
            "ab" => Strategy::Ab,
            other => {
                return Err(invalid(
                    &format!("{key}.strategy"),
                    format!("unknown strategy {other:?}; use static, canary or ab"),
                ));
            }
        };
        let present = [
            ("version", self.version.is_some()),
            ("primary", self.primary.is_some()),
            ("canary", self.canary.is_some()),
            ("canary_percent", self.canary_percent.is_some()),
            ("variants", self.variants.is_some()),
        ];
        let foreign: Vec<&str> = present
            .iter()
            .filter(|(field, given)| *given && !strategy.fields().contains(field))
            .map(|(field, _)| *field)
            .collect();
        if !foreign.is_empty() {
            return Err(ConfigError::FieldsNotAllowed {
                key: key.to_owned(),
                strategy: strategy.name(),
                fields: foreign.join(", "),
                allowed: strategy.fields_text(),
            });
        }
        let require = |field: &str, value: Option<String>| {
            let field_key = format!("{key}.{field}");
            let value = value.ok_or_else(|| ConfigError::MissingField {
                key: field_key.clone(),
                strategy: strategy.name(),
            })?;
            ModelVersion::parse(value).map_err(|err| invalid(&field_key, err.to_string()))
        };
        match strategy {
            Strategy::Static => Ok(RoutingRule::Static {
                version: require("version", self.version)?,
            }),
            Strategy::Canary => {
                let primary = require("primary", self.primary)?;
                let canary = require("canary", self.canary)?;
                let percent_key = format!("{key}.canary_percent");
                let percent = self
                    .canary_percent
                    .ok_or_else(|| ConfigError::MissingField {
                        key: percent_key.clone(),
                        strategy: strategy.name(),
                    })?;
                let percent = u8::try_from(percent)
                    .ok()
                    .filter(|percent| *percent <= 100)
                    .ok_or_else(|| {
                        invalid(
                            &percent_key,
                            format!("must be between 0 and 100, got {percent}"),
                        )
                    })?;
                RoutingRule::canary(primary, canary, percent)
                    .map_err(|err| routing_error(key, &err))
            }
            Strategy::Ab => {
                let variants_key = format!("{key}.variants");
                let written = self.variants.ok_or_else(|| ConfigError::MissingField {
                    key: variants_key.clone(),
                    strategy: strategy.name(),
                })?;
                let mut variants = Vec::with_capacity(written.0.len());
                for (version, weight) in written.0 {
                    let variant_key = key_path(&variants_key, &version);
                    let version = ModelVersion::parse(version)
                        .map_err(|err| invalid(&variant_key, err.to_string()))?;
                    let weight = u8::try_from(weight)
                        .ok()
                        .filter(|weight| (1..=100).contains(weight))
                        .ok_or_else(|| {
                            invalid(
                                &variant_key,
                                format!("weight must be between 1 and 100, got {weight}"),
                            )
                        })?;
                    variants.push((version, weight));
                }
                RoutingRule::ab(variants).map_err(|err| routing_error(key, &err))
            }
        }
    }
}

/// Attaches the key path of the field a rule error is about.
fn routing_error(rule_key: &str, err: &RoutingError) -> ConfigError {
    let field = match err {
        RoutingError::PercentOutOfRange { .. } => "canary_percent",
        RoutingError::CanaryIsPrimary { .. } => "canary",
        RoutingError::NoVariants
        | RoutingError::ZeroWeight { .. }
        | RoutingError::DuplicateVariant { .. }
        | RoutingError::WeightSum { .. } => "variants",
    };
    invalid(&format!("{rule_key}.{field}"), err.to_string())
}

/// Which executor pool each model runs on, and how many threads each pool has.
///
/// Every process has the `cpu` and `gpu` pools: validating a file that does not size them adds
/// them with the documented defaults (`cpu`: one thread per core, `gpu`: [`DEFAULT_GPU_THREADS`]).
/// The file may resize them and add further pools. `default_executor` and every policy target
/// must name a pool.
///
/// The app applies `CPU_EXECUTOR_WORKERS` / `GPU_EXECUTOR_WORKERS` on top (the
/// environment over the file) by rebuilding with [`Self::new`] from [`Self::pools`] with those
/// sizes replaced, so the policy is checked again against the final pools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionPolicy {
    default_executor: String,
    pools: BTreeMap<String, usize>,
    policy: BTreeMap<ModelKey, String>,
}

impl Default for ExecutionPolicy {
    /// `cpu` (one thread per core) and `gpu` ([`DEFAULT_GPU_THREADS`]); everything on `cpu`.
    fn default() -> Self {
        Self {
            default_executor: CPU_POOL.to_owned(),
            pools: builtin_pools().into_iter().collect(),
            policy: BTreeMap::new(),
        }
    }
}

fn builtin_pools() -> [(String, usize); 2] {
    let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    [
        (CPU_POOL.to_owned(), cores),
        (GPU_POOL.to_owned(), DEFAULT_GPU_THREADS),
    ]
}

impl ExecutionPolicy {
    /// Exactly these pools (no built-in ones are added), checked like the file: pool names
    /// and sizes, and every executor named must be one of `pools`.
    pub fn new(
        default_executor: impl Into<String>,
        pools: BTreeMap<String, usize>,
        policy: BTreeMap<ModelKey, String>,
    ) -> Result<Self, ConfigError> {
        let default_executor = default_executor.into();
        for (name, threads) in &pools {
            let key = key_path("execution.pools", name);
            let valid_name = !name.is_empty()
                && name.len() <= MAX_POOL_NAME_LEN
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'));
            if !valid_name {
                return Err(invalid(
                    &key,
                    format!(
                        "pool names are 1 to {MAX_POOL_NAME_LEN} ASCII letters, digits, '_' or '-'"
                    ),
                ));
            }
            if !(1..=MAX_POOL_THREADS).contains(threads) {
                return Err(invalid(
                    &key,
                    format!("must be between 1 and {MAX_POOL_THREADS} threads, got {threads}"),
                ));
            }
        }
        let known = |key: String, executor: &str| {
            if pools.contains_key(executor) {
                Ok(())
            } else {
                Err(ConfigError::UnknownExecutor {
                    key,
                    executor: executor.to_owned(),
                    pools: pools
                        .keys()
                        .map(String::as_str)
                        .collect::<Vec<_>>()
                        .join(", "),
                })
            }
        };
        known("execution.default_executor".to_owned(), &default_executor)?;
        for (model, executor) in &policy {
            known(key_path("execution.policy", &model.to_string()), executor)?;
        }
        Ok(Self {
            default_executor,
            pools,
            policy,
        })
    }

    pub fn default_executor(&self) -> &str {
        &self.default_executor
    }

    /// Pool name → threads.
    pub fn pools(&self) -> &BTreeMap<String, usize> {
        &self.pools
    }

    /// Model → pool, for the models that do not use the default executor.
    pub fn policy(&self) -> &BTreeMap<ModelKey, String> {
        &self.policy
    }

    /// The pool `key` runs on: its policy entry, else the default executor. Always a pool of
    /// [`Self::pools`].
    pub fn pool_for(&self, key: &ModelKey) -> &str {
        self.policy
            .get(key)
            .map_or(self.default_executor.as_str(), String::as_str)
    }
}

impl ExecutionFile {
    fn validate(self) -> Result<ExecutionPolicy, ConfigError> {
        let mut pools = BTreeMap::new();
        for (name, threads) in self.pools {
            let key = key_path("execution.pools", &name);
            let threads = usize::try_from(threads).map_err(|_| {
                invalid(
                    &key,
                    format!("must be between 1 and {MAX_POOL_THREADS} threads, got {threads}"),
                )
            })?;
            pools.insert(name, threads);
        }
        for (name, threads) in builtin_pools() {
            pools.entry(name).or_insert(threads);
        }
        let mut policy = BTreeMap::new();
        for (model, executor) in self.policy {
            let key = key_path("execution.policy", &model);
            policy.insert(parse_model_key(&key, &model)?, executor);
        }
        let default_executor = self.default_executor.unwrap_or_else(|| CPU_POOL.to_owned());
        ExecutionPolicy::new(default_executor, pools, policy)
    }
}

/// SLA timeouts: per model, then the default, then none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlaPolicy {
    default_timeout: Option<Duration>,
    /// `None`: this model has no timeout, whatever the default.
    timeouts: BTreeMap<ModelKey, Option<Duration>>,
}

impl SlaPolicy {
    /// A zero duration, as the default or for a model, means "no timeout".
    pub fn new(
        default_timeout: Option<Duration>,
        timeouts: BTreeMap<ModelKey, Option<Duration>>,
    ) -> Self {
        let no_zero = |timeout: Option<Duration>| timeout.filter(|timeout| !timeout.is_zero());
        Self {
            default_timeout: no_zero(default_timeout),
            timeouts: timeouts
                .into_iter()
                .map(|(key, timeout)| (key, no_zero(timeout)))
                .collect(),
        }
    }

    pub fn default_timeout(&self) -> Option<Duration> {
        self.default_timeout
    }

    /// The per-model entries; `None` is an explicit "no timeout" (written as 0).
    pub fn timeouts(&self) -> &BTreeMap<ModelKey, Option<Duration>> {
        &self.timeouts
    }

    /// The model's SLA timeout: its own entry (where 0 means none, overriding the default),
    /// else the default, else none.
    pub fn timeout_for(&self, key: &ModelKey) -> Option<Duration> {
        match self.timeouts.get(key) {
            Some(timeout) => *timeout,
            None => self.default_timeout,
        }
    }

    /// The deadline a request gets: a `requested` timeout can shorten the SLA, never extend
    /// it; without an SLA timeout the request's own applies.
    pub fn effective_timeout(
        &self,
        key: &ModelKey,
        requested: Option<Duration>,
    ) -> Option<Duration> {
        match (self.timeout_for(key), requested) {
            (Some(sla), Some(requested)) => Some(sla.min(requested)),
            (sla, requested) => sla.or(requested),
        }
    }
}

impl SlaFile {
    fn validate(self) -> Result<SlaPolicy, ConfigError> {
        let default_timeout = self
            .default_timeout_s
            .map(|value| seconds("sla.default_timeout_s", value))
            .transpose()?;
        let mut timeouts = BTreeMap::new();
        for (model, value) in self.timeouts {
            let key = key_path("sla.timeouts", &model);
            let model = parse_model_key(&key, &model)?;
            timeouts.insert(model, Some(seconds(&key, value)?));
        }
        Ok(SlaPolicy::new(default_timeout, timeouts))
    }
}

/// The route groups that are rate limited separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RateLimitGroup {
    /// `/predict`, `/predict/batch` (cost = items), `/predict/async*`.
    Predict,
    Models,
    Jobs,
}

impl RateLimitGroup {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Predict => "predict",
            Self::Models => "models",
            Self::Jobs => "jobs",
        }
    }
}

/// A token bucket: `rate` requests per second (> 0, finite) with bursts of up to `burst` (>= 1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    rate: f64,
    burst: u32,
}

impl RateLimit {
    pub fn new(rate: f64, burst: u32) -> Option<Self> {
        (rate.is_finite() && rate > 0.0 && burst >= 1).then_some(Self { rate, burst })
    }

    pub fn rate(self) -> f64 {
        self.rate
    }

    pub fn burst(self) -> u32 {
        self.burst
    }
}

/// One limit per route group; `None`: the file sets no limit for that group.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GroupLimits {
    pub predict: Option<RateLimit>,
    pub models: Option<RateLimit>,
    pub jobs: Option<RateLimit>,
}

impl GroupLimits {
    pub fn get(&self, group: RateLimitGroup) -> Option<RateLimit> {
        match group {
            RateLimitGroup::Predict => self.predict,
            RateLimitGroup::Models => self.models,
            RateLimitGroup::Jobs => self.jobs,
        }
    }
}

/// Per-tenant rate limits: the top-level limits apply to every tenant, a tenant's own table
/// overrides them group by group.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RateLimitPolicy {
    pub defaults: GroupLimits,
    pub tenants: HashMap<TenantId, GroupLimits>,
}

impl RateLimitPolicy {
    /// The tenant's own limit for `group`, else the default one, else `None` (not configured).
    pub fn limit_for(&self, group: RateLimitGroup, tenant: &TenantId) -> Option<RateLimit> {
        self.tenants
            .get(tenant)
            .and_then(|limits| limits.get(group))
            .or_else(|| self.defaults.get(group))
    }
}

fn validate_group_limits(
    parent: &str,
    predict: Option<RateLimitFile>,
    models: Option<RateLimitFile>,
    jobs: Option<RateLimitFile>,
) -> Result<GroupLimits, ConfigError> {
    let limit = |group: RateLimitGroup, written: Option<RateLimitFile>| {
        written
            .map(|written| written.validate(&format!("{parent}.{}", group.as_str())))
            .transpose()
    };
    Ok(GroupLimits {
        predict: limit(RateLimitGroup::Predict, predict)?,
        models: limit(RateLimitGroup::Models, models)?,
        jobs: limit(RateLimitGroup::Jobs, jobs)?,
    })
}

impl RateLimitFile {
    fn validate(self, key: &str) -> Result<RateLimit, ConfigError> {
        if !(self.rate.is_finite() && self.rate > 0.0) {
            return Err(invalid(
                &format!("{key}.rate"),
                format!(
                    "must be a positive number of requests per second, got {}",
                    self.rate
                ),
            ));
        }
        let burst = u32::try_from(self.burst)
            .ok()
            .filter(|burst| *burst >= 1)
            .ok_or_else(|| {
                invalid(
                    &format!("{key}.burst"),
                    format!("must be between 1 and {}, got {}", u32::MAX, self.burst),
                )
            })?;
        Ok(RateLimit {
            rate: self.rate,
            burst,
        })
    }
}

impl RateLimitsFile {
    fn validate(self) -> Result<RateLimitPolicy, ConfigError> {
        let defaults = validate_group_limits("rate_limits", self.predict, self.models, self.jobs)?;
        let mut tenants = HashMap::with_capacity(self.tenants.len());
        for (tenant, limits) in self.tenants {
            let key = key_path("rate_limits.tenants", &tenant);
            let tenant = TenantId::parse(tenant).map_err(|err| invalid(&key, err.to_string()))?;
            let limits = validate_group_limits(&key, limits.predict, limits.models, limits.jobs)?;
            tenants.insert(tenant, limits);
        }
        Ok(RateLimitPolicy { defaults, tenants })
    }
}

/// Defaults for async jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobsPolicy {
    /// Attempts of a job whose request does not say, `1..=10`.
    pub max_attempts: u32,
    /// A claimed job not finished by then is redelivered. Never zero.
    pub visibility_timeout: Duration,
    /// Days a finished job's result is kept; 0 keeps it forever.
    pub result_ttl_days: u32,
}

impl Default for JobsPolicy {
    fn default() -> Self {
        Self {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            visibility_timeout: DEFAULT_VISIBILITY_TIMEOUT,
            result_ttl_days: DEFAULT_RESULT_TTL_DAYS,
        }
    }
}

impl JobsPolicy {
    /// How long a finished job's result is kept; `None`: forever.
    pub fn result_ttl(&self) -> Option<Duration> {
        (self.result_ttl_days > 0)
            .then(|| Duration::from_secs(u64::from(self.result_ttl_days) * SECONDS_PER_DAY))
    }
}

impl JobsFile {
    fn validate(self) -> Result<JobsPolicy, ConfigError> {
        let defaults = JobsPolicy::default();
        let max_attempts = match self.max_attempts {
            None => defaults.max_attempts,
            Some(value) => u32::try_from(value)
                .ok()
                .filter(|attempts| (1..=MAX_ATTEMPTS_LIMIT).contains(attempts))
                .ok_or_else(|| {
                    invalid(
                        "jobs.max_attempts",
                        format!("must be between 1 and {MAX_ATTEMPTS_LIMIT}, got {value}"),
                    )
                })?,
        };
        let visibility_timeout = match self.visibility_timeout_s {
            None => defaults.visibility_timeout,
            Some(value) => {
                let key = "jobs.visibility_timeout_s";
                let timeout = seconds(key, value)?;
                if timeout.is_zero() {
                    return Err(invalid(key, "must be a positive number of seconds, got 0"));
                }
                timeout
            }
        };
        let result_ttl_days = match self.result_ttl_days {
            None => defaults.result_ttl_days,
            Some(value) => u32::try_from(value).map_err(|_| {
                invalid(
                    "jobs.result_ttl_days",
                    format!("must be a non-negative number of days (0 keeps results forever), got {value}"),
                )
            })?,
        };
        Ok(JobsPolicy {
            max_attempts,
            visibility_timeout,
            result_ttl_days,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documented `engine.toml` example, as JSON (the TOML round trip is tested in the app).
    const DOCUMENTED_EXAMPLE: &str = r#"{
        "registry": { "max_loaded": 8, "warmup": true, "pinned": ["echo:v1"] },
        "routing": {
            "echo": { "strategy": "canary", "primary": "v1", "canary": "v2", "canary_percent": 10 },
            "classifier": { "strategy": "ab", "variants": { "v1": 70, "v2": 30 } },
            "stable_model": { "strategy": "static", "version": "v3" }
        },
        "execution": {
            "default_executor": "cpu",
            "pools": { "cpu": 8, "gpu": 2 },
            "policy": { "echo:v1": "gpu" }
        },
        "sla": {
            "default_timeout_s": 0,
            "timeouts": { "heavy_model:v1": 30.0, "fast_model:v1": 2.0 }
        },
        "rate_limits": {
            "predict": { "rate": 100, "burst": 200 },
            "models": { "rate": 20, "burst": 40 },
            "jobs": { "rate": 100, "burst": 200 },
            "tenants": { "tenant_a": { "predict": { "rate": 1000, "burst": 2000 } } }
        },
        "jobs": { "max_attempts": 3, "visibility_timeout_s": 300, "result_ttl_days": 30 }
    }"#;

    fn parse(json: &str) -> EngineConfigFile {
        serde_json::from_str(json).expect("the file deserializes")
    }

    fn validate(json: &str) -> Result<EngineConfig, ConfigError> {
        parse(json).validate()
    }

    fn rejection(json: &str) -> String {
        validate(json)
            .expect_err("the file is rejected")
            .to_string()
    }

    fn model_key(value: &str) -> ModelKey {
        parse_model_key("test", value).expect("valid model key")
    }

    fn name(value: &str) -> ModelName {
        ModelName::parse(value).expect("valid name")
    }

    fn version(value: &str) -> ModelVersion {
        ModelVersion::parse(value).expect("valid version")
    }

    fn tenant(value: &str) -> TenantId {
        TenantId::parse(value).expect("valid tenant")
    }

    #[test]
    fn spec_example_parses_and_validates() {
        let config = validate(DOCUMENTED_EXAMPLE).expect("the documented example is valid");

        assert_eq!(
            config.registry,
            RegistryPolicy {
                max_loaded: Some(8),
                max_memory_mb: None,
                warmup: true,
                pinned: vec![model_key("echo:v1")],
            }
        );

        assert_eq!(config.routing.len(), 3);
        assert_eq!(
            config.routing.get(&name("echo")).map(RoutingRule::describe),
            Some("canary: v1, 10% to v2".to_owned())
        );
        assert_eq!(
            config
                .routing
                .get(&name("classifier"))
                .map(RoutingRule::describe),
            Some("ab: v1 70%, v2 30%".to_owned())
        );
        assert_eq!(
            config.routing.get(&name("stable_model")),
            Some(&RoutingRule::Static {
                version: version("v3")
            })
        );

        let execution = &config.execution;
        assert_eq!(execution.default_executor(), "cpu");
        assert_eq!(
            execution.pools(),
            &BTreeMap::from([("cpu".to_owned(), 8), ("gpu".to_owned(), 2)])
        );
        assert_eq!(execution.pool_for(&model_key("echo:v1")), "gpu");
        assert_eq!(execution.pool_for(&model_key("echo:v2")), "cpu");

        assert_eq!(config.sla.default_timeout(), None);
        assert_eq!(
            config.sla.timeout_for(&model_key("heavy_model:v1")),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            config.sla.timeout_for(&model_key("fast_model:v1")),
            Some(Duration::from_secs(2))
        );
        assert_eq!(config.sla.timeout_for(&model_key("echo:v1")), None);

        let limits = &config.rate_limits;
        let predict = limits
            .limit_for(RateLimitGroup::Predict, &tenant("tenant_b"))
            .expect("a predict limit");
        assert_eq!((predict.rate(), predict.burst()), (100.0, 200));
        let tenant_a = limits
            .limit_for(RateLimitGroup::Predict, &tenant("tenant_a"))
            .expect("tenant_a's predict limit");
        assert_eq!((tenant_a.rate(), tenant_a.burst()), (1000.0, 2000));
        let models = limits
            .limit_for(RateLimitGroup::Models, &tenant("tenant_a"))
            .expect("the default models limit");
        assert_eq!((models.rate(), models.burst()), (20.0, 40));

        assert_eq!(config.jobs, JobsPolicy::default());
        assert_eq!(config.jobs.max_attempts, 3);
        assert_eq!(config.jobs.visibility_timeout, Duration::from_secs(300));
        assert_eq!(
            config.jobs.result_ttl(),
            Some(Duration::from_secs(30 * 86_400))
        );
    }

    #[test]
    fn an_empty_file_means_the_defaults() {
        let config = validate("{}").expect("an empty file is valid");

        assert_eq!(config, EngineConfig::default());
        assert_eq!(
            config,
            EngineConfigFile::default().validate().expect("valid")
        );
        assert!(config.registry.warmup);
        assert_eq!(config.registry.max_loaded, None);
        assert!(config.routing.is_empty());
        assert_eq!(config.execution.default_executor(), "cpu");
        assert_eq!(
            config.execution.pools().keys().collect::<Vec<_>>(),
            ["cpu", "gpu"]
        );
        assert_eq!(
            config.execution.pools().get("gpu"),
            Some(&DEFAULT_GPU_THREADS)
        );
        assert_eq!(config.sla.timeout_for(&model_key("echo:v1")), None);
        assert_eq!(
            config
                .rate_limits
                .limit_for(RateLimitGroup::Predict, &tenant("tenant_a")),
            None
        );
        assert_eq!(config.jobs.result_ttl_days, 30);
    }

    #[test]
    fn ab_variants_keep_the_order_written() {
        let config = validate(
            r#"{"routing": {"classifier": {"strategy": "ab", "variants": {"v2": 30, "v1": 70}}}}"#,
        )
        .expect("valid");
        let Some(RoutingRule::Ab { variants }) = config.routing.get(&name("classifier")) else {
            panic!("an ab rule");
        };
        assert_eq!(
            variants.as_slice(),
            [(version("v2"), 30), (version("v1"), 70)]
        );
    }

    #[test]
    fn a_variant_written_twice_is_rejected() {
        let parsed: Result<EngineConfigFile, _> = serde_json::from_str(
            r#"{"routing": {"c": {"strategy": "ab", "variants": {"v1": 50, "v1": 50}}}}"#,
        );
        let message = parsed.expect_err("duplicate key").to_string();
        assert!(message.contains("duplicate key \"v1\""), "{message}");
    }

    #[test]
    fn unknown_keys_are_rejected_naming_them() {
        for json in [
            r#"{"registry": {"max_loded": 3}}"#,
            r#"{"max_loded": 3}"#,
            r#"{"routing": {"echo": {"strategy": "static", "version": "v1", "max_loded": 1}}}"#,
            r#"{"rate_limits": {"predict": {"rate": 1, "burst": 1, "max_loded": 1}}}"#,
            r#"{"rate_limits": {"tenants": {"t": {"max_loded": 1}}}}"#,
            r#"{"jobs": {"max_loded": 1}}"#,
        ] {
            let parsed: Result<EngineConfigFile, _> = serde_json::from_str(json);
            let message = parsed.expect_err("unknown key").to_string();
            assert!(message.contains("max_loded"), "{json}: {message}");
        }
    }

    #[test]
    fn weights_summing_to_90_are_rejected_naming_the_variants() {
        assert_eq!(
            rejection(
                r#"{"routing": {"classifier": {"strategy": "ab", "variants": {"v1": 70, "v2": 20}}}}"#
            ),
            "routing.classifier.variants: weights sum to 90, must be 100"
        );
    }

    #[test]
    fn zero_negative_and_missing_weights_are_rejected_naming_the_variant() {
        assert_eq!(
            rejection(
                r#"{"routing": {"c": {"strategy": "ab", "variants": {"v1": 100, "v2": 0}}}}"#
            ),
            "routing.c.variants.v2: weight must be between 1 and 100, got 0"
        );
        assert_eq!(
            rejection(r#"{"routing": {"c": {"strategy": "ab", "variants": {"v1": -5}}}}"#),
            "routing.c.variants.v1: weight must be between 1 and 100, got -5"
        );
        assert_eq!(
            rejection(r#"{"routing": {"c": {"strategy": "ab", "variants": {}}}}"#),
            "routing.c.variants: at least one variant is required"
        );
        assert_eq!(
            rejection(r#"{"routing": {"c": {"strategy": "ab"}}}"#),
            "routing.c.variants is required for strategy \"ab\""
        );
    }

    #[test]
    fn fields_of_another_strategy_are_rejected_naming_them() {
        assert_eq!(
            rejection(
                r#"{"routing": {"stable_model": {"strategy": "static", "version": "v3", "variants": {"v3": 100}}}}"#
            ),
            "routing.stable_model: variants not allowed with strategy \"static\" (it takes version)"
        );
        assert_eq!(
            rejection(
                r#"{"routing": {"echo": {"strategy": "canary", "primary": "v1", "canary": "v2", "canary_percent": 10, "version": "v1", "variants": {}}}}"#
            ),
            "routing.echo: version, variants not allowed with strategy \"canary\" (it takes primary, canary, canary_percent)"
        );
    }

    #[test]
    fn canary_rules_need_valid_fields() {
        assert_eq!(
            rejection(
                r#"{"routing": {"echo": {"strategy": "canary", "primary": "v1", "canary": "v2"}}}"#
            ),
            "routing.echo.canary_percent is required for strategy \"canary\""
        );
        assert_eq!(
            rejection(
                r#"{"routing": {"echo": {"strategy": "canary", "primary": "v1", "canary": "v2", "canary_percent": 150}}}"#
            ),
            "routing.echo.canary_percent: must be between 0 and 100, got 150"
        );
        assert_eq!(
            rejection(
                r#"{"routing": {"echo": {"strategy": "canary", "primary": "v1", "canary": "v1", "canary_percent": 10}}}"#
            ),
            "routing.echo.canary: primary and canary are the same version \"v1\""
        );
        assert_eq!(
            rejection(r#"{"routing": {"stable": {"strategy": "static"}}}"#),
            "routing.stable.version is required for strategy \"static\""
        );
    }

    #[test]
    fn unknown_strategies_and_invalid_names_are_rejected_naming_the_key() {
        assert_eq!(
            rejection(r#"{"routing": {"echo": {"strategy": "round_robin"}}}"#),
            "routing.echo.strategy: unknown strategy \"round_robin\"; use static, canary or ab"
        );
        let message = rejection(r#"{"routing": {"a b": {"strategy": "static", "version": "v1"}}}"#);
        assert!(
            message.starts_with("routing.\"a b\": model name may contain"),
            "{message}"
        );
        let message =
            rejection(r#"{"routing": {"echo": {"strategy": "static", "version": "../v1"}}}"#);
        assert!(
            message.starts_with("routing.echo.version: model version"),
            "{message}"
        );
    }

    #[test]
    fn unknown_executor_in_the_policy_is_rejected_listing_the_pools() {
        assert_eq!(
            rejection(r#"{"execution": {"policy": {"echo:v1": "tpu"}}}"#),
            "execution.policy.\"echo:v1\": unknown executor \"tpu\"; pools are cpu, gpu"
        );
        assert_eq!(
            rejection(r#"{"execution": {"default_executor": "tpu", "pools": {"npu": 1}}}"#),
            "execution.default_executor: unknown executor \"tpu\"; pools are cpu, gpu, npu"
        );
    }

    #[test]
    fn pools_need_a_sane_size_and_name() {
        assert_eq!(
            rejection(r#"{"execution": {"pools": {"cpu": 0}}}"#),
            "execution.pools.cpu: must be between 1 and 1024 threads, got 0"
        );
        assert_eq!(
            rejection(r#"{"execution": {"pools": {"gpu": -2}}}"#),
            "execution.pools.gpu: must be between 1 and 1024 threads, got -2"
        );
        let message = rejection(r#"{"execution": {"pools": {"my pool": 2}}}"#);
        assert!(
            message.starts_with("execution.pools.\"my pool\": pool names"),
            "{message}"
        );
    }

    #[test]
    fn file_pools_are_added_to_the_builtin_ones_and_can_be_used() {
        let config = validate(
            r#"{"execution": {"pools": {"cpu": 3, "npu": 1}, "policy": {"big:v1": "npu"}}}"#,
        )
        .expect("valid");
        let execution = &config.execution;

        assert_eq!(
            execution.pools(),
            &BTreeMap::from([
                ("cpu".to_owned(), 3),
                ("gpu".to_owned(), DEFAULT_GPU_THREADS),
                ("npu".to_owned(), 1)
            ])
        );
        assert_eq!(execution.pool_for(&model_key("big:v1")), "npu");
        assert_eq!(execution.pool_for(&model_key("small:v1")), "cpu");
    }

    #[test]
    fn execution_policy_new_checks_against_exactly_the_given_pools() {
        let pools = BTreeMap::from([("cpu".to_owned(), 2)]);
        let policy = BTreeMap::from([(model_key("echo:v1"), "gpu".to_owned())]);
        let err = ExecutionPolicy::new("cpu", pools.clone(), policy).expect_err("no gpu pool");
        assert_eq!(
            err.to_string(),
            "execution.policy.\"echo:v1\": unknown executor \"gpu\"; pools are cpu"
        );
        assert_eq!(err.key(), "execution.policy.\"echo:v1\"");

        let execution = ExecutionPolicy::new("cpu", pools, BTreeMap::new()).expect("valid");
        assert_eq!(execution.pools().len(), 1);
        assert_eq!(execution.pool_for(&model_key("echo:v1")), "cpu");
    }

    #[test]
    fn malformed_model_keys_are_rejected_naming_the_key() {
        assert_eq!(
            rejection(r#"{"execution": {"policy": {"echov1": "gpu"}}}"#),
            "execution.policy.echov1: \"echov1\" is not a model key (no ':'); write \"name:version\", e.g. \"echo:v1\""
        );
        let message = rejection(r#"{"registry": {"pinned": ["echo:v1", "echo:"]}}"#);
        assert!(
            message.starts_with(
                "registry.pinned[1]: \"echo:\" is not a model key (model version must not be empty)"
            ),
            "{message}"
        );
        let message = rejection(r#"{"sla": {"timeouts": {"a/b:v1": 1}}}"#);
        assert!(
            message.starts_with("sla.timeouts.\"a/b:v1\": "),
            "{message}"
        );
    }

    #[test]
    fn negative_and_non_finite_timeouts_are_rejected_naming_the_key() {
        assert_eq!(
            rejection(r#"{"sla": {"timeouts": {"heavy_model:v1": -1.5}}}"#),
            "sla.timeouts.\"heavy_model:v1\" must be a non-negative number of seconds"
        );
        assert_eq!(
            rejection(r#"{"sla": {"default_timeout_s": -1}}"#),
            "sla.default_timeout_s must be a non-negative number of seconds"
        );
        for value in [f64::NAN, f64::INFINITY] {
            let file = EngineConfigFile {
                sla: SlaFile {
                    default_timeout_s: None,
                    timeouts: BTreeMap::from([("heavy_model:v1".to_owned(), value)]),
                },
                ..EngineConfigFile::default()
            };
            assert_eq!(
                file.validate().expect_err("rejected").key(),
                "sla.timeouts.\"heavy_model:v1\""
            );
        }
    }

    #[test]
    fn sla_timeout_is_per_model_then_default_then_none() {
        let config = validate(
            r#"{"sla": {"default_timeout_s": 5, "timeouts": {"heavy:v1": 30, "free:v1": 0}}}"#,
        )
        .expect("valid");
        let sla = &config.sla;

        assert_eq!(
            sla.timeout_for(&model_key("heavy:v1")),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            sla.timeout_for(&model_key("other:v1")),
            Some(Duration::from_secs(5))
        );
        // 0 for a model means "no timeout for this model", overriding the default.
        assert_eq!(sla.timeout_for(&model_key("free:v1")), None);
        assert_eq!(sla.timeouts().get(&model_key("free:v1")), Some(&None));

        let no_default = SlaPolicy::new(Some(Duration::ZERO), BTreeMap::new());
        assert_eq!(no_default.timeout_for(&model_key("other:v1")), None);
    }

    #[test]
    fn a_requested_timeout_can_shorten_the_sla_but_never_extend_it() {
        let sla = SlaPolicy::new(
            None,
            BTreeMap::from([(model_key("heavy:v1"), Some(Duration::from_secs(30)))]),
        );
        let heavy = model_key("heavy:v1");
        let free = model_key("free:v1");
        let secs = Duration::from_secs;

        assert_eq!(sla.effective_timeout(&heavy, Some(secs(2))), Some(secs(2)));
        assert_eq!(
            sla.effective_timeout(&heavy, Some(secs(60))),
            Some(secs(30))
        );
        assert_eq!(sla.effective_timeout(&heavy, None), Some(secs(30)));
        assert_eq!(sla.effective_timeout(&free, Some(secs(60))), Some(secs(60)));
        assert_eq!(sla.effective_timeout(&free, None), None);
    }

    #[test]
    fn registry_values_are_checked() {
        assert_eq!(
            rejection(r#"{"registry": {"max_loaded": 0}}"#),
            "registry.max_loaded: must be at least 1 (omit it for no cap), got 0"
        );
        for cap in [0, -512] {
            assert_eq!(
                rejection(&format!(r#"{{"registry": {{"max_memory_mb": {cap}}}}}"#)),
                format!(
                    "registry.max_memory_mb: must be at least 1 MiB (omit it for no cap), got {cap}"
                )
            );
        }
        let capped = validate(r#"{"registry": {"max_loaded": 2, "max_memory_mb": 100}}"#)
            .expect("valid")
            .registry;
        assert_eq!(capped.max_memory_bytes(), Some(100 << 20));
        assert!(capped.fits(2, 100 << 20));
        assert!(!capped.fits(2, (100 << 20) + 1), "over the memory cap");
        assert!(!capped.fits(3, 0), "over the count cap");
        assert!(RegistryPolicy::default().fits(usize::MAX, u64::MAX));
        let config = validate(r#"{"registry": {"warmup": false, "pinned": ["a:v1", "a:v1"]}}"#)
            .expect("valid");
        assert!(!config.registry.warmup);
        assert_eq!(config.registry.pinned, vec![model_key("a:v1")]);
    }

    #[test]
    fn rate_limits_must_be_positive_and_name_valid_tenants() {
        assert_eq!(
            rejection(r#"{"rate_limits": {"predict": {"rate": 0, "burst": 10}}}"#),
            "rate_limits.predict.rate: must be a positive number of requests per second, got 0"
        );
        assert_eq!(
            rejection(r#"{"rate_limits": {"jobs": {"rate": 1, "burst": 0}}}"#),
            "rate_limits.jobs.burst: must be between 1 and 4294967295, got 0"
        );
        assert_eq!(
            rejection(
                r#"{"rate_limits": {"tenants": {"tenant_a": {"models": {"rate": -1, "burst": 1}}}}}"#
            ),
            "rate_limits.tenants.tenant_a.models.rate: must be a positive number of requests per second, got -1"
        );
        let message = rejection(r#"{"rate_limits": {"tenants": {"bad tenant": {}}}}"#);
        assert!(
            message.starts_with("rate_limits.tenants.\"bad tenant\": tenant"),
            "{message}"
        );
        assert_eq!(RateLimit::new(f64::NAN, 1), None);
        assert_eq!(RateLimit::new(1.0, 0), None);
    }

    #[test]
    fn job_defaults_are_checked() {
        assert_eq!(
            rejection(r#"{"jobs": {"max_attempts": 0}}"#),
            "jobs.max_attempts: must be between 1 and 10, got 0"
        );
        assert_eq!(
            rejection(r#"{"jobs": {"max_attempts": 11}}"#),
            "jobs.max_attempts: must be between 1 and 10, got 11"
        );
        assert_eq!(
            rejection(r#"{"jobs": {"visibility_timeout_s": 0}}"#),
            "jobs.visibility_timeout_s: must be a positive number of seconds, got 0"
        );
        assert_eq!(
            rejection(r#"{"jobs": {"visibility_timeout_s": -3}}"#),
            "jobs.visibility_timeout_s must be a non-negative number of seconds"
        );
        let message = rejection(r#"{"jobs": {"result_ttl_days": -1}}"#);
        assert!(message.starts_with("jobs.result_ttl_days: "), "{message}");

        let config = validate(
            r#"{"jobs": {"max_attempts": 10, "visibility_timeout_s": 0.5, "result_ttl_days": 0}}"#,
        )
        .expect("valid");
        assert_eq!(config.jobs.max_attempts, 10);
        assert_eq!(config.jobs.visibility_timeout, Duration::from_millis(500));
        assert_eq!(config.jobs.result_ttl(), None);
    }
}
