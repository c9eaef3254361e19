//! Schema: migrations are idempotent, additive and safe to run from several processes; JSON is
//! stored as the exact text written; connection errors never show a password.

use inference_engine_core::ports::StoreError;
use inference_engine_store::testing::TestPostgres;
use inference_engine_store::{PostgresJobStore, postgres, sqlite};
use serde_json::json;
use sqlx::Connection;

use crate::support::{Database, Harness, job};

both_engines!(
    opening_an_existing_database_again_keeps_its_jobs,
    json_is_stored_as_the_exact_text_written,
);

async fn opening_an_existing_database_again_keeps_its_jobs(harness: &Harness) {
    let kept = job();
    harness.insert(std::slice::from_ref(&kept)).await;

    let second = harness.reopen().await;
    let third = harness.reopen().await;
    let later = job();
    second.insert(vec![later.clone()]).await.unwrap();

    assert_eq!(third.get(kept.id).await.unwrap(), Some(kept));
    assert_eq!(harness.get(later.id).await, later);
}

async fn json_is_stored_as_the_exact_text_written(harness: &Harness) {
    let mut stored = job();
    stored.result = Some(json!({"zeta": [1, 2.5], "alpha": {"k": "é"}}));
    harness.insert(std::slice::from_ref(&stored)).await;
    let written = serde_json::to_string(&stored.result).unwrap();

    let (text, column_type): (String, String) = match &harness.database {
        Database::Sqlite(database) => {
            let url = format!("sqlite://{}", database.path().display());
            let mut connection = sqlx::SqliteConnection::connect(&url).await.unwrap();
            sqlx::query_as("SELECT result, typeof(result) FROM jobs WHERE id = ?")
                .bind(stored.id.to_string())
                .fetch_one(&mut connection)
                .await
                .unwrap()
        }
        Database::Postgres(database) => {
            let mut connection = sqlx::PgConnection::connect(database.url()).await.unwrap();
            sqlx::query_as("SELECT result::text, pg_typeof(result)::text FROM jobs WHERE id = $1")
                .bind(stored.id.as_uuid())
                .fetch_one(&mut connection)
                .await
                .unwrap()
        }
    };

    assert_eq!(text, written);
    // JSON, not JSONB (which would reformat the text and reorder the keys).
    assert!(
        column_type == "json" || column_type == "text",
        "{column_type}"
    );
}

#[test]
fn no_migration_drops_or_deletes_anything() {
    for (engine, migrations) in [
        ("sqlite", &sqlite::MIGRATIONS[..]),
        ("postgres", &postgres::MIGRATIONS[..]),
    ] {
        for (version, _, sql) in migrations {
            let code: String = sql
                .lines()
                .filter(|line| !line.trim_start().starts_with("--"))
                .collect::<Vec<_>>()
                .join("\n")
                .to_ascii_uppercase();
            assert!(
                !code.contains("DROP ") && !code.contains("DELETE "),
                "{engine} migration {version} drops data"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_processes_starting_together_migrate_once() {
    let database = TestPostgres::create()
        .await
        .unwrap_or_else(|err| panic!("{err}"));

    let connects: Vec<_> = (0..4)
        .map(|_| {
            let url = database.url().to_owned();
            tokio::spawn(async move { PostgresJobStore::connect(&url).await })
        })
        .collect();
    for connect in connects {
        connect.await.unwrap().unwrap();
    }

    let mut connection = sqlx::PgConnection::connect(database.url()).await.unwrap();
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut connection)
            .await
            .unwrap();
    let expected: Vec<i64> = postgres::MIGRATIONS
        .iter()
        .map(|(version, _, _)| *version)
        .collect();
    assert_eq!(applied, expected);
}

#[tokio::test]
async fn postgres_connect_errors_name_the_host_and_never_the_password() {
    let url = "postgres://app:hunter2-very-secret@127.0.0.1:1/jobs";

    let error = PostgresJobStore::connect(url).await.unwrap_err();

    let StoreError::Unavailable(message) = &error else {
        panic!("expected Unavailable, got {error:?}");
    };
    assert!(message.contains("127.0.0.1:1"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
    assert!(!format!("{error:?}").contains("hunter2"));
}
