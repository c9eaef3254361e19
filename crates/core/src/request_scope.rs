//! The request the current thread is working for, so that every log line written on its behalf
//! names it (`"span":{"request_id":…}` in JSON lines, `request{request_id=…}:` in text).
//!
//! It is set while a request's future is polled ([`InRequest`], around the whole HTTP request)
//! and while an executor thread runs work that request queued (`ExecutorPool::submit`); the log
//! formatter reads it ([`current`]).
//!
//! Why not a `tracing` span per request, which gives the same lines: creating one takes a slot
//! in the subscriber's registry and formats a copy of its fields, and every enter and exit, on
//! each poll and on the executor thread, updates its reference count and looks it up in the
//! filter's map under a lock shared by every thread. On `predict_echo` that was about a tenth of
//! the engine's throughput (BENCHMARKS.md); this is a thread-local swapped in and out.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::job::RequestId;

thread_local! {
    static CURRENT: RefCell<Option<RequestId>> = const { RefCell::new(None) };
}

/// The request the current thread works for, if any.
pub fn current() -> Option<RequestId> {
    CURRENT.with_borrow(Clone::clone)
}

/// Makes `request` the current thread's request until the guard is dropped, which restores the
/// one before (a thread may run work for another request inside its own, e.g. in tests).
pub fn enter(request: Option<RequestId>) -> Entered {
    Entered {
        previous: CURRENT.replace(request),
    }
}

/// Returned by [`enter`].
#[must_use = "the request is current only while the guard lives"]
#[derive(Debug)]
pub struct Entered {
    previous: Option<RequestId>,
}

impl Drop for Entered {
    fn drop(&mut self) {
        CURRENT.set(self.previous.take());
    }
}

pin_project_lite::pin_project! {
    /// A future polled with its request current: [`in_request`].
    #[derive(Debug)]
    pub struct InRequest<F> {
        request: Option<RequestId>,
        #[pin]
        inner: F,
    }
}

/// Wraps `future` so that `request` is current whenever it is polled.
pub fn in_request<F: Future>(request: RequestId, future: F) -> InRequest<F> {
    InRequest {
        request: Some(request),
        inner: future,
    }
}

impl<F: Future> Future for InRequest<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        // Lent, not cloned: a poll costs two swaps and no reference count.
        let _lent = Lent {
            previous: CURRENT.replace(this.request.take()),
            home: this.request,
        };
        this.inner.poll(cx)
    }
}

/// Gives the request back to its future after a poll (even one that panicked).
struct Lent<'a> {
    home: &'a mut Option<RequestId>,
    previous: Option<RequestId>,
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        *self.home = CURRENT.replace(self.previous.take());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::task::Wake;

    use super::*;

    struct Noop;

    impl Wake for Noop {
        fn wake(self: Arc<Self>) {}
    }

    fn id(text: &str) -> RequestId {
        RequestId::parse(text).unwrap()
    }

    #[test]
    fn the_request_is_current_inside_the_guard_only_and_nests() {
        assert_eq!(current(), None);
        {
            let _outer = enter(Some(id("outer")));
            assert_eq!(current(), Some(id("outer")));
            {
                let _inner = enter(Some(id("inner")));
                assert_eq!(current(), Some(id("inner")));
            }
            assert_eq!(current(), Some(id("outer")));
        }
        assert_eq!(current(), None);
    }

    #[test]
    fn a_wrapped_future_sees_its_request_at_every_poll_and_the_thread_does_not_between() {
        let mut polls = 0;
        let future = in_request(
            id("req-1"),
            std::future::poll_fn(move |cx| {
                polls += 1;
                assert_eq!(current(), Some(id("req-1")), "poll {polls}");
                if polls < 3 {
                    cx.waker().wake_by_ref();
                    Poll::Pending
                } else {
                    Poll::Ready(polls)
                }
            }),
        );
        let mut future = std::pin::pin!(future);
        let waker = Arc::new(Noop).into();
        let mut cx = Context::from_waker(&waker);
        let _other = enter(Some(id("other")));
        for _ in 0..2 {
            assert!(future.as_mut().poll(&mut cx).is_pending());
            assert_eq!(current(), Some(id("other")));
        }
        assert_eq!(future.as_mut().poll(&mut cx), Poll::Ready(3));
        assert_eq!(current(), Some(id("other")));
    }
}
