//! Whether the store can write, one incident at a time.
//!
//! A full disk fails every write alike: logging each failure would write one ERROR line per
//! request (125,901 in one probe) into the same full disk. So the first failure opens an
//! incident and is logged once, the failures after it are only counted, and the first success
//! closes the incident with one line saying how long it lasted. While an incident is open the
//! store's `ping` fails, so `/ready` says `degraded` instead of `ready`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use inference_engine_core::ports::StoreError;
use inference_engine_core::sync::lock;

/// The open incident of a store that cannot write, if any.
#[derive(Debug, Default)]
pub(crate) struct WriteHealth {
    /// Mirrors `incident.is_some()`: the success path reads only this.
    failing: AtomicBool,
    incident: Mutex<Option<Incident>>,
}

#[derive(Debug)]
struct Incident {
    since: Instant,
    error: StoreError,
    failures: u64,
}

impl WriteHealth {
    /// Records the outcome of a write. Only [`StoreError::CannotWrite`] opens an incident: any
    /// other error belongs to its own operation.
    pub(crate) fn record(&self, outcome: &Result<(), StoreError>) {
        match outcome {
            Ok(()) => self.recovered(),
            Err(err @ StoreError::CannotWrite(_)) => self.failed(err),
            Err(_) => {}
        }
    }

    pub(crate) fn failed(&self, err: &StoreError) {
        let mut incident = lock(&self.incident);
        match incident.as_mut() {
            Some(open) => open.failures += 1,
            None => {
                tracing::error!(
                    error = %err,
                    "the job store cannot write: requests that record a job fail with 503 until \
                     it recovers; further failures are counted, not logged"
                );
                *incident = Some(Incident {
                    since: Instant::now(),
                    error: err.clone(),
                    failures: 1,
                });
                self.failing.store(true, Ordering::Release);
            }
        }
    }

    pub(crate) fn recovered(&self) {
        if !self.failing.load(Ordering::Acquire) {
            return;
        }
        if let Some(closed) = lock(&self.incident).take() {
            self.failing.store(false, Ordering::Release);
            tracing::warn!(
                failed_writes = closed.failures,
                seconds = closed.since.elapsed().as_secs(),
                "the job store writes again"
            );
        }
    }

    pub(crate) fn is_failing(&self) -> bool {
        self.failing.load(Ordering::Acquire)
    }

    /// The error that opened the current incident.
    pub(crate) fn check(&self) -> Result<(), StoreError> {
        if !self.is_failing() {
            return Ok(());
        }
        lock(&self.incident)
            .as_ref()
            .map_or(Ok(()), |open| Err(open.error.clone()))
    }
}
