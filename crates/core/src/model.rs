//! Validated model identifiers.
//!
//! Names and versions end up in file paths, metric labels and log lines, so they are restricted
//! to a safe alphabet at the boundary and never re-checked afterwards.

use std::fmt;
use std::sync::Arc;

use serde::Deserialize;

const MAX_IDENTIFIER_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentifierError {
    #[error("{what} must not be empty")]
    Empty { what: &'static str },
    #[error("{what} is longer than {MAX_IDENTIFIER_LEN} characters")]
    TooLong { what: &'static str },
    #[error(
        "{what} may contain only ASCII letters, digits, '_', '-' and '.', and must not start with '.'"
    )]
    InvalidCharacters { what: &'static str },
}

fn validate_identifier(value: &str, what: &'static str) -> Result<(), IdentifierError> {
    if value.is_empty() {
        return Err(IdentifierError::Empty { what });
    }
    if value.len() > MAX_IDENTIFIER_LEN {
        return Err(IdentifierError::TooLong { what });
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    if value.starts_with('.') || !value.chars().all(allowed) {
        return Err(IdentifierError::InvalidCharacters { what });
    }
    Ok(())
}

macro_rules! identifier {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
        #[serde(try_from = "String")]
        pub struct $name(Arc<str>);

        serialize_as_str!($name);

        impl $name {
            pub fn parse(value: impl Into<String>) -> Result<Self, IdentifierError> {
                let value = value.into();
                validate_identifier(&value, $what)?;
                Ok(Self(value.into()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdentifierError;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0.as_ref().to_owned()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

identifier!(
    /// A model's name, e.g. `echo` or `iris_classifier`.
    ModelName,
    "model name"
);
identifier!(
    /// A model's version, e.g. `v1`.
    ModelVersion,
    "model version"
);

/// One concrete model: a name and a version.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ModelKey {
    pub name: ModelName,
    pub version: ModelVersion,
}

impl ModelKey {
    pub fn new(name: ModelName, version: ModelVersion) -> Self {
        Self { name, version }
    }
}

impl fmt::Display for ModelKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, self.version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_accept_the_safe_alphabet() {
        assert!(ModelName::parse("iris_rf-2.onnx").is_ok());
        assert!(ModelVersion::parse("v1").is_ok());
    }

    #[test]
    fn names_reject_paths_blanks_and_overlong_values() {
        assert_eq!(
            ModelName::parse(""),
            Err(IdentifierError::Empty { what: "model name" })
        );
        assert!(ModelName::parse("../etc").is_err());
        assert!(ModelName::parse(".hidden").is_err());
        assert!(ModelName::parse("a b").is_err());
        assert!(ModelVersion::parse("x".repeat(129)).is_err());
        assert!(ModelVersion::parse("x".repeat(128)).is_ok());
    }

    #[test]
    fn deserialising_validates() {
        let parsed: Result<ModelName, _> = serde_json::from_str("\"a/b\"");
        assert!(parsed.is_err());
    }
}
