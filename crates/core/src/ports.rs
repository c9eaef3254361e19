//! Ports: what the domain needs from the outside world, implemented by adapter crates.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;

use crate::error::{Classified, ErrorKind};
use crate::job::{Job, JobId};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached or refused the write; the caller may retry.
    #[error("job store unavailable: {0}")]
    Unavailable(String),
    /// A stored row could not be read back into a job.
    #[error("job store returned an unreadable record: {0}")]
    Corrupt(String),
    /// The store is shutting down and accepts no more writes.
    #[error("job store is shutting down")]
    Closed,
}

impl Classified for StoreError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Unavailable(_) | Self::Closed => ErrorKind::Unavailable,
            Self::Corrupt(_) => ErrorKind::Internal,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::Unavailable(_) | Self::Closed => "unavailable",
            Self::Corrupt(_) => "internal",
        }
    }
}

/// Durable storage of jobs. `insert` returns only once the jobs are committed.
#[async_trait]
pub trait JobStore: Send + Sync + fmt::Debug {
    /// Commits all the jobs atomically.
    async fn insert(&self, jobs: Vec<Job>) -> Result<(), StoreError>;

    async fn get(&self, id: JobId) -> Result<Option<Job>, StoreError>;

    /// Cheap round trip used by readiness checks.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Time, injectable so tests can control it.
pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> DateTime<Utc>;

    /// Completes after `duration`; used for deadlines.
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()>;
}
