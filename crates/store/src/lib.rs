//! Job storage: the `JobStore` port implemented on sqlx, and the batching writers that commit
//! job records. This is the only crate that contains SQL. It depends on `core` and nothing above
//! it.
//!
//! Layout:
//! - [`sqlite`]: `SqliteJobStore` (WAL, `synchronous=NORMAL`; job records committed by a
//!   writer thread on rusqlite) and its embedded migrations (`migrations/sqlite/`).
//! - [`postgres`]: `PostgresJobStore` (a pool, array-bound batch statements) and its embedded
//!   migrations (`migrations/postgres/`).
//! - [`group_commit`]: `GroupCommitStore`, one writer task that turns a burst of single-job
//!   inserts into a few transactions (in front of PostgreSQL), and the batch rules it shares
//!   with the SQLite writer thread.
//! - [`codec`]: conversions between domain values and column values shared by every engine.
//! - `common`: the batch and idempotency rules both engines apply identically, and the one
//!   classification of driver errors into store errors.
//! - `write_health`: the SQLite store's "cannot write" incidents (full disk), logged once each.
//! - [`testing`] (feature `testing`): a fresh SQLite file or PostgreSQL database per test.

pub mod codec;
mod common;
pub mod group_commit;
mod migrations;
pub mod postgres;
pub mod sqlite;
#[cfg(feature = "testing")]
pub mod testing;
mod write_health;

pub use group_commit::{GroupCommitConfig, GroupCommitStore};
pub use migrations::{MigrationReport, PendingMigrations};
pub use postgres::PostgresJobStore;
pub use sqlite::{SqliteJobStore, WalCheckpoints};
