//! Rules every engine applies the same way, kept in one place so SQLite and PostgreSQL give
//! identical answers to the same calls.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use inference_engine_core::job::{Job, JobId};
use inference_engine_core::ports::{Claim, ClaimRequest, SettleRequest, Settlement, StoreError};

use crate::codec::{json_text, steps_text};

/// `error_type` of a job cancelled by its client.
pub(crate) const CANCELLED_ERROR_TYPE: &str = "cancelled";
/// `error_message` of a job cancelled by its client.
pub(crate) const CANCELLED_MESSAGE: &str = "The job was cancelled before it finished.";

/// How often `submit` re-reads the holder of a key after losing the insert race. A second
/// round is only needed when the winner gave the key up again in between (a zero TTL).
pub(crate) const SUBMIT_ROUNDS: usize = 3;

/// Creation times strictly before this lose their idempotency key to a new submission. A TTL
/// too large to represent never expires.
pub(crate) fn idempotency_cutoff(created_at: DateTime<Utc>, ttl: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(ttl)
        .ok()
        .and_then(|ttl| created_at.checked_sub_signed(ttl))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Where each request's answer comes from once repeated ids are folded into one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slot {
    /// Index into the distinct requests.
    index: usize,
    /// A later request for an id already in the batch.
    repeat: bool,
}

/// The distinct requests (first occurrence of each id wins, in request order) and one slot per
/// original request.
///
/// A batch naming one id twice is handled as "the first request acts, the repeats do not":
/// a SQL `UPDATE … FROM unnest(…)` touches each row once, so this is the only rule both engines
/// can honour in a constant number of statements.
pub(crate) fn distinct<T>(requests: Vec<T>, id: impl Fn(&T) -> JobId) -> (Vec<T>, Vec<Slot>) {
    let mut seen: HashMap<JobId, usize> = HashMap::with_capacity(requests.len());
    let mut unique = Vec::with_capacity(requests.len());
    let mut slots = Vec::with_capacity(requests.len());
    for request in requests {
        match seen.entry(id(&request)) {
            Entry::Occupied(first) => slots.push(Slot {
                index: *first.get(),
                repeat: true,
            }),
            Entry::Vacant(vacant) => {
                vacant.insert(unique.len());
                slots.push(Slot {
                    index: unique.len(),
                    repeat: false,
                });
                unique.push(request);
            }
        }
    }
    (unique, slots)
}

pub(crate) fn distinct_claims(requests: &[ClaimRequest]) -> (Vec<ClaimRequest>, Vec<Slot>) {
    distinct(requests.to_vec(), |request| request.id)
}

/// One outcome per original request: a repeat sees the job as the first request left it and is
/// never started a second time.
pub(crate) fn expand_claims(outcomes: Vec<Claim>, slots: &[Slot]) -> Vec<Claim> {
    if slots.iter().all(|slot| !slot.repeat) {
        return outcomes;
    }
    slots
        .iter()
        .map(|slot| match (&outcomes[slot.index], slot.repeat) {
            (outcome, false) => outcome.clone(),
            (Claim::Started(job) | Claim::NotRunnable(job), true) => {
                Claim::NotRunnable(job.clone())
            }
            (Claim::NotFound, true) => Claim::NotFound,
        })
        .collect()
}

/// One answer per original request: a repeat is never recorded (after the first settlement the
/// job is no longer `running` under that attempt, so this is also what running them one by one
/// would give).
pub(crate) fn expand_settled(recorded: &[bool], slots: &[Slot]) -> Vec<bool> {
    slots
        .iter()
        .map(|slot| !slot.repeat && recorded[slot.index])
        .collect()
}

/// Which transition a settlement makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SettleKind {
    Succeeded,
    Failed,
    Retry,
}

impl SettleKind {
    /// The status the job ends in.
    pub(crate) fn status(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Retry => "pending",
        }
    }
}

/// The column values a settlement writes.
#[derive(Debug, Clone)]
pub(crate) struct SettleColumns {
    pub(crate) id: JobId,
    pub(crate) attempt: i64,
    pub(crate) kind: SettleKind,
    pub(crate) result: Option<String>,
    pub(crate) error_type: Option<String>,
    pub(crate) error_message: Option<String>,
    pub(crate) not_before: Option<DateTime<Utc>>,
    /// A pipeline's step timings ([`steps_text`]), written with any outcome.
    pub(crate) steps: Option<String>,
}

impl From<SettleRequest> for SettleColumns {
    fn from(request: SettleRequest) -> Self {
        let (kind, result, failure, not_before) = match request.settlement {
            Settlement::Succeeded(value) => {
                (SettleKind::Succeeded, json_text(Some(&value)), None, None)
            }
            Settlement::Failed(failure) => (SettleKind::Failed, None, Some(failure), None),
            Settlement::Retry {
                failure,
                not_before,
            } => (SettleKind::Retry, None, Some(failure), Some(not_before)),
        };
        let (error_type, error_message) = failure
            .map(|failure| (failure.error_type, failure.message))
            .unzip();
        Self {
            id: request.id,
            attempt: i64::from(request.attempt),
            kind,
            result,
            error_type,
            error_message,
            not_before,
            steps: steps_text(request.steps.as_ref()),
        }
    }
}

/// Outcome of one claim given the row after the conditional update (if it changed) or as it is.
pub(crate) fn claim_outcome(started: Option<Job>, current: Option<Job>) -> Claim {
    match (started, current) {
        (Some(job), _) => Claim::Started(Box::new(job)),
        (None, Some(job)) => Claim::NotRunnable(Box::new(job)),
        (None, None) => Claim::NotFound,
    }
}

/// A sqlx error as the store error that tells the caller what to do: whole-store failures
/// ([`StoreError::Unreachable`], [`StoreError::CannotWrite`]) apart from a refusal of this one
/// operation. Both engines' codes are recognised here, so they classify alike.
pub(crate) fn store_error(err: &sqlx::Error) -> StoreError {
    let message = err.to_string();
    match err {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_) => StoreError::Unreachable(message),
        sqlx::Error::Database(database) => match database.code().as_deref() {
            Some(code) if cannot_write_code(code) => StoreError::CannotWrite(message),
            // SQLSTATE class 08 (connection exception), 57P01-03 (the server shutting down or
            // starting up).
            Some(code) if code.starts_with("08") || code.starts_with("57P") => {
                StoreError::Unreachable(message)
            }
            _ => StoreError::Unavailable(message),
        },
        _ => StoreError::Unavailable(message),
    }
}

/// Whether a database error code means "nothing can be written now". PostgreSQL's codes are
/// five-character SQLSTATEs: `53100` disk_full, `25006` read_only_sql_transaction. SQLite's are
/// extended result codes of at most four digits, whose low byte is the primary code:
/// `SQLITE_READONLY` (8), `SQLITE_IOERR` (10), `SQLITE_FULL` (13).
fn cannot_write_code(code: &str) -> bool {
    if code.len() == 5 {
        return matches!(code, "53100" | "25006");
    }
    code.parse::<i64>().is_ok_and(sqlite_cannot_write)
}

/// [`cannot_write_code`] for an SQLite extended result code, as the writer thread's rusqlite
/// reports it.
pub(crate) fn sqlite_cannot_write(extended_code: i64) -> bool {
    const SQLITE_READONLY: i64 = 8;
    const SQLITE_IOERR: i64 = 10;
    const SQLITE_FULL: i64 = 13;
    matches!(
        extended_code & 0xff,
        SQLITE_READONLY | SQLITE_IOERR | SQLITE_FULL
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_ids_keep_the_first_request_and_point_back_to_it() {
        let [a, b] = [JobId::new(), JobId::new()];
        let (unique, slots) = distinct(vec![(a, 1), (b, 2), (a, 3)], |(id, _)| *id);
        assert_eq!(unique, vec![(a, 1), (b, 2)]);
        assert_eq!(
            expand_settled(&[true, true], &slots),
            vec![true, true, false]
        );
    }

    #[test]
    fn an_unrepresentable_ttl_never_expires() {
        let now = Utc::now();
        assert_eq!(
            idempotency_cutoff(now, Duration::MAX),
            DateTime::<Utc>::MIN_UTC
        );
        assert_eq!(
            idempotency_cutoff(now, Duration::from_secs(60)),
            now - TimeDelta::seconds(60)
        );
    }
}
