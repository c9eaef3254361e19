//! What a migration run applied, for `migrate`, `check` and the start log.

use std::collections::BTreeSet;
use std::fmt;

/// The migrations one run applied (`0001_jobs`, named like their files), of how many the
/// schema has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    pub applied: Vec<String>,
    pub total: usize,
}

impl MigrationReport {
    /// The migrations of `all` whose version is in `after` but was not in `before` (the
    /// versions the migrations table held around the run).
    pub(crate) fn between(
        all: &[(i64, &str, &str)],
        before: &BTreeSet<i64>,
        after: &BTreeSet<i64>,
    ) -> Self {
        let applied = all
            .iter()
            .filter(|(version, ..)| after.contains(version) && !before.contains(version))
            .map(|(version, description, _)| file_stem(*version, description))
            .collect();
        Self {
            applied,
            total: all.len(),
        }
    }
}

/// The migrations a schema lacks (what the next start applies), of how many there are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingMigrations {
    pub pending: Vec<String>,
    pub total: usize,
}

impl PendingMigrations {
    /// The migrations of `all` whose version is not in `applied`.
    pub(crate) fn after(all: &[(i64, &str, &str)], applied: &BTreeSet<i64>) -> Self {
        Self {
            pending: all
                .iter()
                .filter(|(version, ..)| !applied.contains(version))
                .map(|(version, description, _)| file_stem(*version, description))
                .collect(),
            total: all.len(),
        }
    }
}

impl fmt::Display for PendingMigrations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.pending.is_empty() {
            let plural = if self.total == 1 { "" } else { "s" };
            write!(f, "schema is up to date ({} migration{plural})", self.total)
        } else {
            write!(f, "the start applies {}", self.pending.join(", "))
        }
    }
}

/// `0002_async_jobs` for version 2, "async jobs": the migration's file name without `.sql`.
fn file_stem(version: i64, description: &str) -> String {
    format!("{version:04}_{}", description.replace(' ', "_"))
}

impl fmt::Display for MigrationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.applied.is_empty() {
            let plural = if self.total == 1 { "" } else { "s" };
            write!(f, "schema is up to date ({} migration{plural})", self.total)
        } else {
            write!(f, "applied {}", self.applied.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_what_was_applied_or_says_the_schema_is_current() {
        let all = [
            (1, "jobs", ""),
            (2, "async jobs", ""),
            (3, "pipeline steps", ""),
        ];
        let none = BTreeSet::new();
        let every: BTreeSet<i64> = [1, 2, 3].into();
        assert_eq!(
            MigrationReport::between(&all, &none, &every).to_string(),
            "applied 0001_jobs, 0002_async_jobs, 0003_pipeline_steps"
        );
        assert_eq!(
            MigrationReport::between(&all, &[1, 2].into(), &every).to_string(),
            "applied 0003_pipeline_steps"
        );
        assert_eq!(
            MigrationReport::between(&all, &every, &every).to_string(),
            "schema is up to date (3 migrations)"
        );
    }
}
