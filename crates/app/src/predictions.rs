//! Sync predictions run to the end. A caller that stops waiting (a client that disconnects:
//! hyper and tonic then drop the request's future) must not cut a model run off from its job
//! record. The prediction is polled in place, at no extra cost, while the caller waits; dropped
//! unfinished, it moves to a task of its own, which runs it on, commits the record and drops
//! only the answer. Shutdown waits for those tasks before it closes the job store.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::Instrument;

/// The predictions whose callers left and which still run.
#[derive(Debug, Default)]
pub struct Predictions {
    running: AtomicUsize,
    all_finished: Notify,
}

/// One detached prediction; dropping it (when its task ends) counts it out.
struct Running(Arc<Predictions>);

impl Drop for Running {
    fn drop(&mut self) {
        if self.0.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.all_finished.notify_waiters();
        }
    }
}

impl Predictions {
    /// `work` (an `InferenceService` call, which commits its job record before it returns),
    /// run to the end even if the returned future is dropped first.
    pub fn run_to_end<F>(self: &Arc<Self>, work: F) -> RunToEnd<F>
    where
        F: Future + Send + 'static,
    {
        RunToEnd {
            work: Some(Box::pin(work)),
            predictions: Arc::clone(self),
        }
    }

    /// How many detached predictions are running now.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Acquire)
    }

    /// Waits until no detached prediction runs, or until `deadline`; returns how many still do.
    pub async fn wait_until_finished(&self, deadline: Instant) -> usize {
        loop {
            // Created before the count is read, so a last prediction ending in between still
            // wakes it.
            let finished = self.all_finished.notified();
            let running = self.running();
            if running == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, finished).await.is_err() {
                return self.running();
            }
        }
    }
}

/// See [`Predictions::run_to_end`]. Boxed so that dropping this moves only a pointer to the
/// task; polling it is one indirect call.
pub struct RunToEnd<F: Future + Send + 'static> {
    /// `None` once it finished.
    work: Option<Pin<Box<F>>>,
    predictions: Arc<Predictions>,
}

impl<F: Future + Send + 'static> std::fmt::Debug for RunToEnd<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunToEnd")
            .field("finished", &self.work.is_none())
            .finish_non_exhaustive()
    }
}

impl<F: Future + Send + 'static> Future for RunToEnd<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let Some(work) = self.work.as_mut() else {
            // Polled again after it finished, which `.await` never does.
            return Poll::Pending;
        };
        let output = std::task::ready!(work.as_mut().poll(cx));
        self.work = None;
        Poll::Ready(output)
    }
}

impl<F: Future + Send + 'static> Drop for RunToEnd<F> {
    fn drop(&mut self) {
        let Some(work) = self.work.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!("a prediction was dropped outside the runtime; its job record is lost");
            return;
        };
        self.predictions.running.fetch_add(1, Ordering::AcqRel);
        let running = Running(Arc::clone(&self.predictions));
        // The request's span is current here (`Instrumented` enters it to drop what it wraps),
        // so the rest of the run logs with the request id.
        runtime.spawn(
            async move {
                let _running = running;
                work.await;
                tracing::debug!(
                    "the caller left before the prediction finished; it ran to the end"
                );
            }
            .in_current_span(),
        );
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_prediction_whose_caller_stopped_waiting_runs_to_the_end() {
        let predictions = Arc::new(Predictions::default());
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let (finished, has_finished) = tokio::sync::oneshot::channel::<()>();
        let caller = tokio::spawn(predictions.run_to_end(async move {
            let _ = released.await;
            let _ = finished.send(());
        }));
        tokio::task::yield_now().await;
        caller.abort();
        assert!(caller.await.unwrap_err().is_cancelled());
        assert_eq!(predictions.running(), 1);
        release.send(()).unwrap();
        has_finished.await.expect("the work ran to the end");
        assert_eq!(
            predictions
                .wait_until_finished(Instant::now() + Duration::from_secs(10))
                .await,
            0
        );
    }

    #[tokio::test]
    async fn a_prediction_that_finishes_in_place_is_never_detached() {
        let predictions = Arc::new(Predictions::default());
        assert_eq!(predictions.run_to_end(async { 7 }).await, 7);
        assert_eq!(predictions.running(), 0);
    }

    #[tokio::test]
    async fn waiting_for_the_detached_ones_gives_up_at_the_limit() {
        let predictions = Arc::new(Predictions::default());
        let (_hold, held) = tokio::sync::oneshot::channel::<()>();
        drop(predictions.run_to_end(async move {
            let _ = held.await;
        }));
        assert_eq!(predictions.running(), 1);
        assert_eq!(
            predictions
                .wait_until_finished(Instant::now() + Duration::from_millis(20))
                .await,
            1
        );
    }
}
