//! Job storage: the `JobStore` port implemented on sqlx, and the group-commit writer in front of
//! it. This is the only crate that contains SQL. It depends on `core` and nothing above it.
//!
//! Layout:
//! - [`sqlite`]: `SqliteJobStore` (WAL, `synchronous=NORMAL`) and its embedded migrations.
//! - [`group_commit`]: `GroupCommitStore`, one writer task that turns a burst of single-job
//!   inserts into a few transactions.
//! - [`codec`]: conversions between domain values and column values shared by every engine.

pub mod codec;
pub mod group_commit;
pub mod sqlite;

pub use group_commit::{GroupCommitConfig, GroupCommitStore};
pub use sqlite::SqliteJobStore;
