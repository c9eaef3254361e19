//! The SLA deadline of the model call running on the current executor thread.
//!
//! A model that waits on something else (the `remote_v2` backend waits on a remote server)
//! reads [`remaining`] to hand the caller's deadline on, as a gRPC deadline or an HTTP
//! timeout, instead of holding an executor thread past the moment its caller gave up. The
//! executor sets it around each call with [`within`]; the `Model` trait stays free of it.

use std::cell::Cell;
use std::time::{Duration, Instant};

thread_local! {
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Runs `call` with `deadline` as the current thread's deadline.
pub fn within<T>(deadline: Option<Instant>, call: impl FnOnce() -> T) -> T {
    let previous = DEADLINE.replace(deadline);
    let result = call();
    DEADLINE.set(previous);
    result
}

/// Time left before the current call's deadline (zero once passed); `None` without one.
pub fn remaining() -> Option<Duration> {
    DEADLINE
        .get()
        .map(|deadline| deadline.saturating_duration_since(Instant::now()))
}

/// The deadline `limit` from now.
pub fn after(limit: Option<Duration>) -> Option<Instant> {
    limit.and_then(|limit| Instant::now().checked_add(limit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deadline_holds_only_inside_the_call() {
        assert_eq!(remaining(), None);
        let left = within(after(Some(Duration::from_secs(60))), remaining);
        assert!(left.is_some_and(|left| left > Duration::from_secs(59)));
        assert_eq!(remaining(), None);
        let passed = within(
            Instant::now().checked_sub(Duration::from_secs(1)),
            remaining,
        );
        assert_eq!(passed, Some(Duration::ZERO));
    }
}
