//! Cancellation of the async job the current thread works for.
//!
//! `POST /jobs/{id}/cancel` only writes `cancelled` into the job's record; the worker running
//! the job learns of it by watching the record (`JobRunner`) and raises the job's
//! [`CancelFlag`]. Work done for the job reads the flag where it can stop early: the `sleep`
//! built-in between short naps, a pipeline between its steps. An ONNX run cannot be interrupted
//! once it has started (neither ONNX Runtime's `Run` nor tract checks anything mid-graph), so a
//! cancelled job holds its executor thread until its current model call returns, and no longer.
//!
//! The flag travels like the request id ([`crate::request_scope`]): a thread-local set while
//! the job's future is polled ([`watched`]) and carried by the executor onto the thread that
//! runs the job's model call, so the `Model` trait stays free of it. A dynamic batch runs for
//! several callers at once and is never cancelled for one of them (its collector thread has no
//! flag).

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

/// Raised once a job has been cancelled; shared by the runner and the job's work.
#[derive(Debug, Clone, Default)]
pub struct CancelFlag(Arc<AtomicBool>);

impl CancelFlag {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn raise(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_raised(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

thread_local! {
    static CURRENT: RefCell<Option<CancelFlag>> = const { RefCell::new(None) };
}

/// Whether the job the current thread works for has been cancelled (false outside a job).
pub fn requested() -> bool {
    CURRENT.with_borrow(|flag| flag.as_ref().is_some_and(CancelFlag::is_raised))
}

/// The current thread's flag, for handing work to another thread.
pub fn current() -> Option<CancelFlag> {
    CURRENT.with_borrow(Clone::clone)
}

/// Runs `call` with `flag` as the current thread's flag.
pub fn within<T>(flag: Option<CancelFlag>, call: impl FnOnce() -> T) -> T {
    if flag.is_none() && CURRENT.with_borrow(Option::is_none) {
        // The request path (no job, no flag): nothing to swap.
        return call();
    }
    let previous = CURRENT.replace(flag);
    let _restore = Restore(previous);
    call()
}

/// Puts the previous flag back, even when the call panicked.
struct Restore(Option<CancelFlag>);

impl Drop for Restore {
    fn drop(&mut self) {
        CURRENT.set(self.0.take());
    }
}

pin_project_lite::pin_project! {
    /// A future polled with its job's flag current: [`watched`].
    #[derive(Debug)]
    pub struct Watched<F> {
        flag: CancelFlag,
        #[pin]
        inner: F,
    }
}

/// Wraps `future` so that `flag` is current whenever it is polled.
pub fn watched<F: Future>(flag: CancelFlag, future: F) -> Watched<F> {
    Watched {
        flag,
        inner: future,
    }
}

impl<F: Future> Future for Watched<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let flag = Some(this.flag.clone());
        within(flag, || this.inner.poll(cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_is_seen_inside_the_call_only() {
        let flag = CancelFlag::new();
        assert!(!requested());
        assert!(!within(Some(flag.clone()), requested));
        flag.raise();
        assert!(within(Some(flag.clone()), requested));
        assert!(!requested(), "outside the call there is no job");
        let nested = within(Some(flag), || within(None, requested));
        assert!(!nested, "work handed on without a flag is not cancelled");
    }
}
