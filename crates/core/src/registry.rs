//! The model registry: which models exist and which version a request gets.
//!
//! Today it holds the built-in pipelines, all loaded at start. The model repository, lazy
//! single-flight loading, the LRU cap and routing rules extend this type without changing how
//! the service asks it for a model.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::builtin::{EchoPipeline, SleepPipeline};
use crate::error::{Classified, ErrorKind};
use crate::model::{ModelKey, ModelName, ModelVersion};
use crate::pipeline::{Model, PipelineModel};

/// Where a model's implementation comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A pipeline compiled into the binary.
    Builtin,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Builtin => "builtin",
        }
    }
}

/// A model ready to serve.
#[derive(Debug)]
pub struct ModelEntry {
    pub key: ModelKey,
    pub backend: Backend,
    pub model: Arc<dyn Model>,
}

/// One line of `GET /models`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelStatus {
    pub key: ModelKey,
    pub backend: Backend,
    pub loaded: bool,
    pub ready: bool,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("model {name:?} is not served here")]
    UnknownModel { name: ModelName },
    #[error("model {name:?} has no version {version:?}")]
    UnknownVersion {
        name: ModelName,
        version: ModelVersion,
    },
    #[error(
        "model {name:?} has several versions ({available}) and no routing rule: give \"version\""
    )]
    VersionRequired { name: ModelName, available: String },
}

impl Classified for ResolveError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::UnknownModel { .. } | Self::UnknownVersion { .. } => ErrorKind::NotFound,
            Self::VersionRequired { .. } => ErrorKind::InvalidInput,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::UnknownModel { .. } | Self::UnknownVersion { .. } => "model_not_found",
            Self::VersionRequired { .. } => "version_required",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("model {0} is registered twice")]
    Duplicate(ModelKey),
    #[error("unknown built-in model {0:?}; built-ins are: echo, sleep")]
    UnknownBuiltin(String),
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
}

/// All models this process serves, by name then version.
#[derive(Debug, Default)]
pub struct ModelRegistry {
    models: BTreeMap<ModelName, BTreeMap<ModelVersion, Arc<ModelEntry>>>,
}

impl ModelRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_builtins(set: BuiltinSet) -> Result<Self, RegistryError> {
        let mut registry = Self::new();
        let key = |name: &str, version: &str| -> Result<ModelKey, RegistryError> {
            let invalid = |_| RegistryError::UnknownBuiltin(name.to_owned());
            Ok(ModelKey::new(
                ModelName::parse(name).map_err(invalid)?,
                ModelVersion::parse(version).map_err(invalid)?,
            ))
        };
        if set.echo {
            for version in ["v1", "v2"] {
                registry.register(
                    key("echo", version)?,
                    Backend::Builtin,
                    Arc::new(PipelineModel::new(EchoPipeline)),
                )?;
            }
        }
        if set.sleep {
            registry.register(
                key("sleep", "v1")?,
                Backend::Builtin,
                Arc::new(PipelineModel::new(SleepPipeline)),
            )?;
        }
        Ok(registry)
    }

    pub fn register(
        &mut self,
        key: ModelKey,
        backend: Backend,
        model: Arc<dyn Model>,
    ) -> Result<(), RegistryError> {
        let versions = self.models.entry(key.name.clone()).or_default();
        if versions.contains_key(&key.version) {
            return Err(RegistryError::Duplicate(key));
        }
        let entry = Arc::new(ModelEntry {
            key: key.clone(),
            backend,
            model,
        });
        versions.insert(key.version, entry);
        Ok(())
    }

    /// The model a request gets: the exact version when given; otherwise the only version.
    pub fn resolve(
        &self,
        name: &ModelName,
        version: Option<&ModelVersion>,
    ) -> Result<Arc<ModelEntry>, ResolveError> {
        let versions = self
            .models
            .get(name)
            .ok_or_else(|| ResolveError::UnknownModel { name: name.clone() })?;
        match version {
            Some(version) => {
                versions
                    .get(version)
                    .cloned()
                    .ok_or_else(|| ResolveError::UnknownVersion {
                        name: name.clone(),
                        version: version.clone(),
                    })
            }
            None => {
                let mut all = versions.values();
                match (all.next(), all.next()) {
                    (Some(only), None) => Ok(Arc::clone(only)),
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
        }
    }

    /// Every model, by name then version.
    pub fn statuses(&self) -> Vec<ModelStatus> {
        self.models
            .values()
            .flat_map(BTreeMap::values)
            .map(|entry| ModelStatus {
                key: entry.key.clone(),
                backend: entry.backend,
                loaded: true,
                ready: true,
                error: None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(value: &str) -> ModelName {
        ModelName::parse(value).unwrap()
    }

    fn version(value: &str) -> ModelVersion {
        ModelVersion::parse(value).unwrap()
    }

    #[test]
    fn exact_versions_resolve_and_unknown_ones_are_not_found() {
        let registry = ModelRegistry::with_builtins(BuiltinSet::default_for(false)).unwrap();
        let entry = registry
            .resolve(&name("echo"), Some(&version("v2")))
            .unwrap();
        assert_eq!(entry.key.to_string(), "echo:v2");
        let missing = registry
            .resolve(&name("echo"), Some(&version("v9")))
            .unwrap_err();
        assert_eq!(missing.code(), "model_not_found");
        let unknown = registry.resolve(&name("nope"), None).unwrap_err();
        assert_eq!(unknown.code(), "model_not_found");
    }

    #[test]
    fn omitted_version_uses_the_only_version_or_asks_for_one() {
        let registry = ModelRegistry::with_builtins(BuiltinSet::default_for(false)).unwrap();
        assert_eq!(
            registry
                .resolve(&name("sleep"), None)
                .unwrap()
                .key
                .to_string(),
            "sleep:v1"
        );
        let ambiguous = registry.resolve(&name("echo"), None).unwrap_err();
        assert_eq!(ambiguous.code(), "version_required");
        assert!(ambiguous.to_string().contains("v1, v2"));
    }

    #[test]
    fn production_has_no_sleep_model_unless_asked() {
        let production = ModelRegistry::with_builtins(BuiltinSet::default_for(true)).unwrap();
        assert!(production.resolve(&name("sleep"), None).is_err());
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
}
