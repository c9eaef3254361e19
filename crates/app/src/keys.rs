//! `inference-engine keys generate`: a strong random API key and its `API_KEYS` entry.
//!
//! The key is 32 bytes (256 bits) from the operating system's generator (`getrandom`), written
//! as 64 lowercase hex digits: URL-safe, free of the `:` and `;` that `API_KEYS` uses as
//! separators, and far above the production minimum length. The entry is parsed back by
//! [`ApiKeyTable::from_config`] in production mode before it is returned, so what this prints
//! always passes the same guards `serve` applies.

use std::fmt::Write as _;

use inference_engine_core::auth::{ApiKeyTable, KeyConfigError};

/// Random bytes per key: 256 bits, as much as the SHA-256 digest the server keeps of it.
pub const KEY_BYTES: usize = 32;
/// The tenant of a generated key unless `--tenant` says otherwise.
pub const DEFAULT_TENANT: &str = "default";
/// The scopes of a generated key unless `--scopes` says otherwise.
pub const DEFAULT_SCOPES: &str = "predict,read_models";

/// A new key and the `API_KEYS` entry that grants it.
#[derive(Clone, PartialEq, Eq)]
pub struct GeneratedKey {
    /// What clients send in `X-API-Key` / `Authorization: Bearer`.
    pub key: String,
    /// `key:tenant:scope,scope`, to append to `API_KEYS` (entries are separated by `;`).
    pub entry: String,
}

impl std::fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is a secret: a debug print of this value must not leak it into a log.
        f.debug_struct("GeneratedKey").finish_non_exhaustive()
    }
}

/// Why no key was generated.
#[derive(Debug, thiserror::Error)]
pub enum GenerateKeyError {
    #[error("the operating system's random generator failed: {0}")]
    Random(getrandom::Error),
    /// The tenant or scopes are not valid in `API_KEYS`; the parser's own message.
    #[error("{0}")]
    InvalidEntry(#[from] KeyConfigError),
    /// The parser would read a `;` as the start of a second entry, not as an error.
    #[error("the tenant and scopes must not contain ';', which separates API_KEYS entries")]
    EntrySeparator,
}

/// A fresh key for `tenant` with `scopes` (comma-separated, e.g. `predict,read_models`).
pub fn generate(tenant: &str, scopes: &str) -> Result<GeneratedKey, GenerateKeyError> {
    let mut bytes = [0_u8; KEY_BYTES];
    getrandom::fill(&mut bytes).map_err(GenerateKeyError::Random)?;
    entry_for(&hex(&bytes), tenant, scopes)
}

/// The entry for an existing `key`, validated like `serve` validates `API_KEYS` in production.
fn entry_for(key: &str, tenant: &str, scopes: &str) -> Result<GeneratedKey, GenerateKeyError> {
    if tenant.contains(';') || scopes.contains(';') {
        return Err(GenerateKeyError::EntrySeparator);
    }
    let scopes = scopes
        .split(',')
        .map(str::trim)
        .filter(|scope| !scope.is_empty())
        .collect::<Vec<_>>()
        .join(",");
    let entry = format!("{key}:{}:{scopes}", tenant.trim());
    // A ':' in the tenant or scopes changes the entry's field count: the parser says so.
    ApiKeyTable::from_config(Some(&entry), true)?;
    Ok(GeneratedKey {
        key: key.to_owned(),
        entry,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut text, byte| {
            // Writing to a String cannot fail.
            let _ = write!(text, "{byte:02x}");
            text
        })
}

#[cfg(test)]
mod tests {
    use inference_engine_core::auth::Scope;

    use super::*;

    #[test]
    fn a_generated_key_is_64_hex_digits_and_its_entry_passes_the_production_guards() {
        let generated = generate(DEFAULT_TENANT, DEFAULT_SCOPES).expect("generated");

        assert_eq!(generated.key.len(), 2 * KEY_BYTES);
        assert!(
            generated
                .key
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        );
        assert_eq!(
            generated.entry,
            format!("{}:default:predict,read_models", generated.key)
        );
        let table = ApiKeyTable::from_config(Some(&generated.entry), true).expect("valid");
        let principal = table
            .authenticate(&generated.key)
            .expect("the key is known");
        assert_eq!(principal.tenant().as_str(), "default");
        assert!(principal.allows(Scope::Predict) && principal.allows(Scope::ReadModels));
        assert!(!principal.allows(Scope::Admin));
    }

    #[test]
    fn two_keys_differ() {
        let first = generate("tenant_a", "predict").expect("generated");
        let second = generate("tenant_a", "predict").expect("generated");

        assert_ne!(first.key, second.key);
    }

    #[test]
    fn tenant_and_scopes_are_taken_as_given_with_blanks_trimmed() {
        let generated = entry_for(&"k".repeat(64), " tenant_b ", "predict, admin,").expect("valid");

        assert_eq!(
            generated.entry,
            format!("{}:tenant_b:predict,admin", "k".repeat(64))
        );
    }

    #[test]
    fn an_invalid_tenant_or_scope_is_refused_with_the_parsers_message() {
        let bad_tenant = generate("no spaces", DEFAULT_SCOPES).expect_err("refused");
        assert!(
            bad_tenant
                .to_string()
                .contains("tenant \"no spaces\" is invalid"),
            "{bad_tenant}"
        );

        let bad_scope = generate(DEFAULT_TENANT, "predict,superuser").expect_err("refused");
        assert!(
            bad_scope
                .to_string()
                .contains("unknown scope \"superuser\""),
            "{bad_scope}"
        );

        let no_scope = generate(DEFAULT_TENANT, " , ").expect_err("refused");
        assert!(matches!(no_scope, GenerateKeyError::InvalidEntry(_)));

        let smuggled = generate("a:b", DEFAULT_SCOPES).expect_err("refused");
        assert!(smuggled.to_string().contains("malformed"), "{smuggled}");

        let second_entry = generate(
            DEFAULT_TENANT,
            &format!("predict;{}:t:admin", "x".repeat(20)),
        )
        .expect_err("refused");
        assert!(
            matches!(second_entry, GenerateKeyError::EntrySeparator),
            "{second_entry}"
        );
    }

    #[test]
    fn hex_is_lowercase_and_two_digits_per_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xab, 0xff]), "000fabff");
    }
}
