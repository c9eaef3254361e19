//! API keys, tenants and scopes.
//!
//! Keys come from `API_KEYS=key:tenant:scope,scope;...`. They are kept only as SHA-256 digests and
//! every lookup compares the presented key's digest with *every* entry in constant time, so
//! neither the position of a match nor a shared prefix shows in the response time. Errors name
//! the entry's position and tenant, never the key.

use std::fmt;
use std::sync::Arc;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Keys shorter than this are refused in production.
pub const MIN_PRODUCTION_KEY_LEN: usize = 16;
const DEV_KEYS: [&str; 2] = ["dev-key", "admin-key"];
const MAX_TENANT_LEN: usize = 64;

/// The tenant a key (and every job it creates) belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct TenantId(Arc<str>);

serialize_as_str!(TenantId);

impl TenantId {
    pub fn parse(value: impl Into<String>) -> Result<Self, KeyConfigError> {
        let value = value.into();
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
        if value.is_empty() || value.len() > MAX_TENANT_LEN || !value.chars().all(allowed) {
            return Err(KeyConfigError::InvalidTenant { tenant: value });
        }
        Ok(Self(value.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TenantId {
    type Error = KeyConfigError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(value)
    }
}

impl From<TenantId> for String {
    fn from(value: TenantId) -> String {
        value.0.as_ref().to_owned()
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    Predict,
    ReadModels,
    /// Operator access; implies every other scope and lifts tenant isolation for reads.
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Predict => "predict",
            Self::ReadModels => "read_models",
            Self::Admin => "admin",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Self::Predict => 1,
            Self::ReadModels => 2,
            Self::Admin => 4,
        }
    }

    fn parse(value: &str) -> Option<Self> {
        match value {
            "predict" => Some(Self::Predict),
            "read_models" => Some(Self::ReadModels),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }
}

/// An authenticated caller: its tenant and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    tenant: TenantId,
    scope_bits: u8,
}

impl Principal {
    pub fn new(tenant: TenantId, scopes: &[Scope]) -> Self {
        let scope_bits = scopes.iter().fold(0, |bits, scope| bits | scope.bit());
        Self { tenant, scope_bits }
    }

    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    pub fn is_admin(&self) -> bool {
        self.scope_bits & Scope::Admin.bit() != 0
    }

    /// Admin implies every scope.
    pub fn allows(&self, scope: Scope) -> bool {
        self.is_admin() || self.scope_bits & scope.bit() != 0
    }

    /// Whether this caller may see a resource owned by `owner` (admins see everything).
    pub fn can_read_tenant(&self, owner: &TenantId) -> bool {
        self.is_admin() || &self.tenant == owner
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyConfigError {
    #[error("API_KEYS is required when ENV=production (format: key:tenant:scope,scope;...)")]
    MissingInProduction,
    #[error("API_KEYS has no valid entry (format: key:tenant:scope,scope;...)")]
    NoEntries,
    #[error(
        "API_KEYS entry {position} is malformed: expected key:tenant:scope[,scope...] ({reason})"
    )]
    MalformedEntry {
        position: usize,
        reason: &'static str,
    },
    #[error(
        "API_KEYS entry {position} (tenant {tenant}) has unknown scope {scope:?}; allowed: predict, read_models, admin"
    )]
    UnknownScope {
        position: usize,
        tenant: String,
        scope: String,
    },
    #[error("tenant {tenant:?} is invalid: use 1 to 64 ASCII letters, digits, '_', '-' or '.'")]
    InvalidTenant { tenant: String },
    #[error("API_KEYS entry {position} (tenant {tenant}) repeats a key used by an earlier entry")]
    DuplicateKey { position: usize, tenant: String },
    #[error(
        "API_KEYS entry {position} (tenant {tenant}) uses a development key, which is refused when ENV=production"
    )]
    DevKeyInProduction { position: usize, tenant: String },
    #[error(
        "API_KEYS entry {position} (tenant {tenant}) has a key shorter than {MIN_PRODUCTION_KEY_LEN} characters, which is refused when ENV=production"
    )]
    ShortKeyInProduction { position: usize, tenant: String },
}

/// Where the key table came from; dev keys deserve a warning at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    Configured,
    DevDefaults,
}

struct KeyEntry {
    digest: [u8; 32],
    principal: Principal,
}

/// The configured API keys, looked up in constant time.
pub struct ApiKeyTable {
    entries: Vec<KeyEntry>,
    source: KeySource,
}

impl fmt::Debug for ApiKeyTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Digests are not secrets, but there is nothing useful in printing them either.
        f.debug_struct("ApiKeyTable")
            .field("entries", &self.entries.len())
            .field("source", &self.source)
            .finish()
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

impl ApiKeyTable {
    /// Builds the table from the `API_KEYS` value. Outside production an unset value gives the
    /// dev keys; a value that is set must be entirely valid everywhere, so a typo never silently
    /// changes who can call the server.
    pub fn from_config(api_keys: Option<&str>, production: bool) -> Result<Self, KeyConfigError> {
        let configured = api_keys.filter(|value| !value.trim().is_empty());
        let table = match configured {
            None if production => return Err(KeyConfigError::MissingInProduction),
            None => return Ok(Self::dev_defaults()),
            Some(value) => Self::parse(value)?,
        };
        if production {
            table.check_production(api_keys.unwrap_or_default())?;
        }
        Ok(table)
    }

    /// A table that accepts no key, for processes that serve no API (workers).
    pub fn none() -> Self {
        Self {
            entries: Vec::new(),
            source: KeySource::Configured,
        }
    }

    /// `dev-key` → `tenant_dev` (predict, read_models); `admin-key` → `tenant_admin` (all scopes).
    pub fn dev_defaults() -> Self {
        let entry = |key: &str, tenant: &str, scopes: &[Scope]| KeyEntry {
            digest: digest(key),
            principal: Principal::new(TenantId(tenant.into()), scopes),
        };
        Self {
            entries: vec![
                entry(
                    "dev-key",
                    "tenant_dev",
                    &[Scope::Predict, Scope::ReadModels],
                ),
                entry(
                    "admin-key",
                    "tenant_admin",
                    &[Scope::Predict, Scope::ReadModels, Scope::Admin],
                ),
            ],
            source: KeySource::DevDefaults,
        }
    }

    pub fn parse(value: &str) -> Result<Self, KeyConfigError> {
        let mut entries: Vec<KeyEntry> = Vec::new();
        for (index, raw) in split_entries(value) {
            let position = index + 1;
            let (key, tenant, scopes) = split_entry(raw, position)?;
            let tenant = TenantId::parse(tenant)?;
            let scopes = parse_scopes(scopes, position, &tenant)?;
            let digest = digest(key);
            if entries.iter().any(|existing| existing.digest == digest) {
                return Err(KeyConfigError::DuplicateKey {
                    position,
                    tenant: tenant.into(),
                });
            }
            entries.push(KeyEntry {
                digest,
                principal: Principal::new(tenant, &scopes),
            });
        }
        if entries.is_empty() {
            return Err(KeyConfigError::NoEntries);
        }
        Ok(Self {
            entries,
            source: KeySource::Configured,
        })
    }

    fn check_production(&self, raw: &str) -> Result<(), KeyConfigError> {
        for ((index, entry), parsed) in split_entries(raw).zip(&self.entries) {
            let key = entry.split(':').next().unwrap_or_default().trim();
            let position = index + 1;
            let tenant = parsed.principal.tenant.as_str().to_owned();
            if DEV_KEYS.contains(&key) {
                return Err(KeyConfigError::DevKeyInProduction { position, tenant });
            }
            if key.chars().count() < MIN_PRODUCTION_KEY_LEN {
                return Err(KeyConfigError::ShortKeyInProduction { position, tenant });
            }
        }
        Ok(())
    }

    pub fn source(&self) -> KeySource {
        self.source
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The principal a presented key belongs to. Every entry is compared, whatever matches.
    pub fn authenticate(&self, presented: &str) -> Option<&Principal> {
        let presented = digest(presented);
        let mut found: Option<&Principal> = None;
        for entry in &self.entries {
            let matches: bool = entry.digest.ct_eq(&presented).into();
            if matches {
                found = Some(&entry.principal);
            }
        }
        found
    }
}

/// Non-blank `;`-separated entries with their index among the non-blank ones.
fn split_entries(value: &str) -> impl Iterator<Item = (usize, &str)> {
    value
        .split(';')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .enumerate()
}

fn split_entry(raw: &str, position: usize) -> Result<(&str, &str, &str), KeyConfigError> {
    let malformed = |reason| KeyConfigError::MalformedEntry { position, reason };
    let mut parts = raw.split(':');
    let (Some(key), Some(tenant), Some(scopes), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("it needs exactly three ':'-separated fields"));
    };
    let key = key.trim();
    if key.is_empty() {
        return Err(malformed("the key is empty"));
    }
    if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(malformed(
            "the key contains whitespace or control characters",
        ));
    }
    Ok((key, tenant.trim(), scopes.trim()))
}

fn parse_scopes(
    scopes: &str,
    position: usize,
    tenant: &TenantId,
) -> Result<Vec<Scope>, KeyConfigError> {
    let parsed = scopes
        .split(',')
        .map(str::trim)
        .filter(|scope| !scope.is_empty())
        .map(|scope| {
            Scope::parse(scope).ok_or_else(|| KeyConfigError::UnknownScope {
                position,
                tenant: tenant.as_str().to_owned(),
                scope: scope.to_owned(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if parsed.is_empty() {
        return Err(KeyConfigError::MalformedEntry {
            position,
            reason: "it lists no scope",
        });
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_TENANTS: &str = "key-a-0123456789abcdef:tenant_a:predict,read_models; key-b-0123456789abcdef:tenant_b:admin;";

    #[test]
    fn parses_entries_and_authenticates_each_key() {
        let table = ApiKeyTable::parse(TWO_TENANTS).expect("valid");
        assert_eq!(table.len(), 2);
        let a = table
            .authenticate("key-a-0123456789abcdef")
            .expect("known key");
        assert_eq!(a.tenant().as_str(), "tenant_a");
        assert!(a.allows(Scope::Predict) && a.allows(Scope::ReadModels));
        assert!(!a.allows(Scope::Admin));
        let b = table
            .authenticate("key-b-0123456789abcdef")
            .expect("known key");
        assert!(b.allows(Scope::Predict), "admin implies every scope");
        assert!(table.authenticate("key-a-0123456789abcde").is_none());
        assert!(table.authenticate("").is_none());
    }

    #[test]
    fn unset_keys_give_dev_keys_outside_production_only() {
        let dev = ApiKeyTable::from_config(None, false).expect("dev keys");
        assert_eq!(dev.source(), KeySource::DevDefaults);
        let admin = dev.authenticate("admin-key").expect("admin dev key");
        assert_eq!(admin.tenant().as_str(), "tenant_admin");
        assert!(admin.is_admin());
        assert!(!dev.authenticate("dev-key").expect("dev key").is_admin());
        assert_eq!(
            ApiKeyTable::from_config(Some("  "), true).unwrap_err(),
            KeyConfigError::MissingInProduction
        );
        assert_eq!(
            ApiKeyTable::from_config(None, true).unwrap_err(),
            KeyConfigError::MissingInProduction
        );
    }

    #[test]
    fn malformed_entries_are_errors_never_a_fallback_to_dev_keys() {
        for value in [
            "justakey",
            "k:t",
            "k:t:p:x",
            ":t:predict",
            "k:t:",
            "k:t:root",
            "k:bad tenant:predict",
        ] {
            assert!(
                ApiKeyTable::from_config(Some(value), false).is_err(),
                "{value:?} must be rejected"
            );
            assert!(ApiKeyTable::from_config(Some(value), true).is_err());
        }
        assert_eq!(
            ApiKeyTable::parse(";;").unwrap_err(),
            KeyConfigError::NoEntries
        );
    }

    #[test]
    fn production_refuses_dev_and_short_keys_without_printing_them() {
        let dev = ApiKeyTable::from_config(Some("dev-key:tenant_dev:predict"), true).unwrap_err();
        assert!(matches!(
            dev,
            KeyConfigError::DevKeyInProduction { position: 1, .. }
        ));
        let short = ApiKeyTable::from_config(
            Some("key-a-0123456789abcdef:a:predict;short-secret:b:predict"),
            true,
        )
        .unwrap_err();
        assert!(matches!(
            short,
            KeyConfigError::ShortKeyInProduction { position: 2, .. }
        ));
        assert!(!short.to_string().contains("short-secret"));
        assert!(ApiKeyTable::from_config(Some(TWO_TENANTS), true).is_ok());
    }

    #[test]
    fn duplicate_keys_are_rejected() {
        let err = ApiKeyTable::parse("k1:a:predict;k1:b:predict").unwrap_err();
        assert!(matches!(
            err,
            KeyConfigError::DuplicateKey { position: 2, .. }
        ));
    }

    #[test]
    fn tenant_isolation_rules() {
        let a = Principal::new(TenantId::parse("a").unwrap(), &[Scope::Predict]);
        let admin = Principal::new(TenantId::parse("ops").unwrap(), &[Scope::Admin]);
        let b = TenantId::parse("b").unwrap();
        assert!(!a.can_read_tenant(&b));
        assert!(a.can_read_tenant(&TenantId::parse("a").unwrap()));
        assert!(admin.can_read_tenant(&b));
    }
}
