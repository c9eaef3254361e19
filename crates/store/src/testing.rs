//! Fresh, isolated databases for tests (cargo feature `testing`): a SQLite file in a temporary
//! directory, or a PostgreSQL database created for one test and dropped after it.
//!
//! PostgreSQL comes from `TEST_DATABASE_URL`, or the local default below. An unreachable server
//! is an error, never a silent skip: a suite that quietly skipped its Postgres half would pass
//! while testing nothing.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use inference_engine_core::ports::StoreError;
use inference_engine_core::redact::url_host;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{AssertSqlSafe, Connection};
use uuid::Uuid;

use crate::{PostgresJobStore, SqliteJobStore};

/// The variable naming the PostgreSQL server tests create their databases on.
pub const TEST_DATABASE_URL_VAR: &str = "TEST_DATABASE_URL";
/// The server used when [`TEST_DATABASE_URL_VAR`] is unset: local, trust auth.
pub const DEFAULT_TEST_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// How long reaching the test server may take before the test fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A SQLite file of its own, removed with its directory when dropped.
#[derive(Debug)]
pub struct TestSqlite {
    // Held for its `Drop`, which deletes the directory.
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl TestSqlite {
    pub fn new() -> Result<Self, StoreError> {
        let dir = tempfile::tempdir()
            .map_err(|err| StoreError::Unavailable(format!("cannot create a temp dir: {err}")))?;
        let path = dir.path().join("jobs.db");
        Ok(Self { _dir: dir, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens (and on first use creates and migrates) the file.
    pub async fn open(&self) -> Result<SqliteJobStore, StoreError> {
        SqliteJobStore::open(&self.path).await
    }
}

/// A PostgreSQL database named `ie_test_<uuid>`, dropped (forcibly, best effort) when this
/// value is dropped, including when the test panics.
#[derive(Debug)]
pub struct TestPostgres {
    server_url: String,
    name: String,
    url: String,
}

impl TestPostgres {
    /// `TEST_DATABASE_URL`, or [`DEFAULT_TEST_DATABASE_URL`].
    pub fn server_url() -> String {
        std::env::var(TEST_DATABASE_URL_VAR)
            .ok()
            .filter(|url| !url.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_TEST_DATABASE_URL.to_owned())
    }

    /// Creates an empty database on the test server.
    pub async fn create() -> Result<Self, StoreError> {
        let server_url = Self::server_url();
        let name = format!("ie_test_{}", Uuid::new_v4().simple());
        let mut admin = admin_connection(&server_url).await?;
        let created = sqlx::query(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut admin)
            .await;
        let _ = admin.close().await;
        created.map_err(|err| {
            StoreError::Unavailable(format!(
                "cannot create test database {name} on {}: {err}",
                url_host(&server_url)
            ))
        })?;
        let url = with_database(&server_url, &name);
        Ok(Self {
            server_url,
            name,
            url,
        })
    }

    /// The URL of this test's database (the server's URL with the path replaced).
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Connects a store to this database (migrating it on first use).
    pub async fn connect(&self) -> Result<PostgresJobStore, StoreError> {
        PostgresJobStore::connect(&self.url).await
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        let server_url = self.server_url.clone();
        let name = self.name.clone();
        // `Drop` cannot await, and may run inside (or while unwinding out of) a runtime that
        // must not be blocked on: a thread with a runtime of its own does the dropping.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|err| err.to_string())?;
            runtime.block_on(drop_database(&server_url, &name))
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(err)) => eprintln!("warning: test database {} not dropped: {err}", self.name),
            Err(_) => eprintln!("warning: test database {} not dropped", self.name),
        }
    }
}

async fn admin_connection(server_url: &str) -> Result<PgConnection, StoreError> {
    let unreachable = |detail: String| {
        StoreError::Unavailable(format!(
            "test PostgreSQL at {} is unreachable ({detail}); start it or set \
             {TEST_DATABASE_URL_VAR}",
            url_host(server_url)
        ))
    };
    let options =
        PgConnectOptions::from_str(server_url).map_err(|err| unreachable(err.to_string()))?;
    tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options))
        .await
        .map_err(|_| unreachable(format!("no answer within {CONNECT_TIMEOUT:?}")))?
        .map_err(|err| unreachable(err.to_string()))
}

async fn drop_database(server_url: &str, name: &str) -> Result<(), String> {
    let mut admin = admin_connection(server_url)
        .await
        .map_err(|err| err.to_string())?;
    // FORCE ends the sessions a store's pool may still hold open.
    let dropped = sqlx::query(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await;
    let _ = admin.close().await;
    dropped.map(drop).map_err(|err| err.to_string())
}

/// `scheme://authority/old?query` → `scheme://authority/name?query`.
fn with_database(url: &str, name: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let query = tail.find(['?', '#']).map_or("", |start| &tail[start..]);
    format!("{scheme}://{authority}/{name}{query}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_name_replaces_the_path_and_keeps_the_parameters() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/postgres?sslmode=disable", "t1"),
            "postgres://u:p@h:5432/t1?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "t1"), "postgres://h/t1");
        assert_eq!(
            with_database("postgres://h?x=1", "t1"),
            "postgres://h/t1?x=1"
        );
    }
}
