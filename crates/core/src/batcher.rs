//! Dynamic batching: concurrent single requests to one model become one model run.
//!
//! Each batched model has a collector thread. It takes the first waiting request, then keeps
//! taking requests until the batch is full (`max_batch_size`) or the first one has waited
//! `max_delay`, and hands the whole batch to the model's executor pool as one task. The model
//! runs it with [`Model::run_each`]: valid items share one run (an ONNX model stacks them
//! along the batch dimension) and every caller gets exactly its own result, or its own error.
//!
//! The collector never runs a model itself, so batching adds no threads to the pools' sizing
//! and keeps the execution policy. Its inbox is bounded: a full inbox is refused at once as
//! overloaded, like a full pool queue.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::executor::{Executed, ExecutorError, ExecutorPool};
use crate::model::ModelKey;
use crate::observe;
use crate::pipeline::{BatchAnswer, BatchItem, Model, PipelineError};
use crate::source::BatchingConfig;
use crate::tensor::Tensor;

type ItemOutcome = Result<Executed<Result<BatchAnswer, PipelineError>>, ExecutorError>;

struct Pending {
    item: BatchItem,
    pool: Arc<ExecutorPool>,
    submitted: Instant,
    reply: flume::Sender<ItemOutcome>,
}

/// The entry point of one model's batching.
#[derive(Debug)]
pub struct Batcher {
    inbox: flume::Sender<Pending>,
}

impl Batcher {
    /// Starts the collector thread; it exits when the batcher is dropped.
    pub fn start(
        key: &ModelKey,
        model: Arc<dyn Model>,
        config: BatchingConfig,
    ) -> std::io::Result<Self> {
        let max_batch_size = config.max_batch_size.max(1);
        // Room for a few full batches beyond the one being collected; more would only queue
        // latency that the pool's own bounded queue refuses anyway.
        let (inbox, pending) = flume::bounded::<Pending>(max_batch_size * 4);
        std::thread::Builder::new()
            .name(format!("batch-{}", key.name))
            .spawn({
                let key = key.clone();
                move || collect(&key, &pending, &model, config)
            })?;
        Ok(Self { inbox })
    }

    /// Runs one request's `data` as part of a batch on `pool`.
    pub async fn run(
        &self,
        data: Value,
        pool: Arc<ExecutorPool>,
    ) -> Result<Executed<Result<Value, PipelineError>>, ExecutorError> {
        let executed = self.run_item(BatchItem::Json(data), pool).await?;
        Ok(answered(executed, |answer| match answer {
            BatchAnswer::Json(value) => Some(value),
            BatchAnswer::Tensors(_) => None,
        }))
    }

    /// [`Batcher::run`] for a protocol request: named tensors in, the raw output tensors out.
    pub async fn run_tensors(
        &self,
        inputs: Vec<Tensor>,
        pool: Arc<ExecutorPool>,
    ) -> Result<Executed<Result<Vec<Tensor>, PipelineError>>, ExecutorError> {
        let executed = self.run_item(BatchItem::Tensors(inputs), pool).await?;
        Ok(answered(executed, |answer| match answer {
            BatchAnswer::Tensors(tensors) => Some(tensors),
            BatchAnswer::Json(_) => None,
        }))
    }

    async fn run_item(&self, item: BatchItem, pool: Arc<ExecutorPool>) -> ItemOutcome {
        let (reply, replied) = flume::bounded(1);
        let pool_name = pool.name().to_owned();
        let pending = Pending {
            item,
            pool,
            submitted: Instant::now(),
            reply,
        };
        self.inbox.try_send(pending).map_err(|err| match err {
            flume::TrySendError::Full(_) => ExecutorError::Overloaded {
                pool: pool_name.clone(),
            },
            flume::TrySendError::Disconnected(_) => ExecutorError::ShutDown {
                pool: pool_name.clone(),
            },
        })?;
        replied
            .recv_async()
            .await
            .unwrap_or(Err(ExecutorError::ShutDown { pool: pool_name }))
    }
}

/// How long the collector naps between looks at its inbox while a batch fills. Napping instead
/// of blocking on the channel means senders never have to wake it: one wake-up per batch, not
/// one per request.
const FILL_POLL: Duration = Duration::from_micros(200);

/// The collector loop: one batch at a time, handed to the pool of its first request.
fn collect(
    key: &ModelKey,
    pending: &flume::Receiver<Pending>,
    model: &Arc<dyn Model>,
    config: BatchingConfig,
) {
    let max_batch_size = config.max_batch_size.max(1);
    while let Ok(first) = pending.recv() {
        let deadline = first.submitted + config.max_delay;
        let mut batch = vec![first];
        loop {
            while batch.len() < max_batch_size {
                match pending.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            let now = Instant::now();
            if batch.len() >= max_batch_size || now >= deadline {
                break;
            }
            std::thread::sleep(FILL_POLL.min(deadline - now));
        }
        observe::batch_size(key, batch.len());
        dispatch(batch, model);
    }
}

fn dispatch(batch: Vec<Pending>, model: &Arc<dyn Model>) {
    let pool = Arc::clone(&batch[0].pool);
    // Kept outside the task so the callers can be told if the pool refuses it.
    let replies: Vec<flume::Sender<ItemOutcome>> =
        batch.iter().map(|item| item.reply.clone()).collect();
    let model = Arc::clone(model);
    let task = move || {
        let started = Instant::now();
        let mut submitted = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        let mut items = Vec::with_capacity(batch.len());
        for pending in batch {
            submitted.push(pending.submitted);
            replies.push(pending.reply);
            items.push(pending.item);
        }
        let count = items.len();
        let outcomes = catch_unwind(AssertUnwindSafe(|| model.run_each(items)));
        let run_time = started.elapsed();
        match outcomes {
            Ok(outcomes) if outcomes.len() == count => {
                for ((outcome, reply), submitted) in
                    outcomes.into_iter().zip(replies).zip(submitted)
                {
                    let _ = reply.send(Ok(Executed {
                        value: outcome,
                        queue_time: started.saturating_duration_since(submitted),
                        run_time,
                    }));
                }
            }
            _ => {
                for reply in replies {
                    let _ = reply.send(Err(ExecutorError::Panicked {
                        pool: "batch".into(),
                    }));
                }
            }
        }
    };
    if let Err(err) = pool.submit(task) {
        for reply in replies {
            let _ = reply.send(Err(err.clone()));
        }
    }
}

/// An item's answer in the form its caller expects (a model answers each item in the form it
/// came in; anything else is a model bug, reported as such).
fn answered<T>(
    executed: Executed<Result<BatchAnswer, PipelineError>>,
    expect: impl FnOnce(BatchAnswer) -> Option<T>,
) -> Executed<Result<T, PipelineError>> {
    Executed {
        value: executed.value.and_then(|answer| {
            expect(answer).ok_or_else(|| {
                PipelineError::Inference("the model answered in the wrong form".to_owned())
            })
        }),
        queue_time: executed.queue_time,
        run_time: executed.run_time,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use serde_json::json;

    use super::*;
    use crate::executor::ExecutorConfig;
    use crate::model::{ModelName, ModelVersion};
    use crate::pipeline::{Pipeline, PipelineModel};

    /// Negates numbers and remembers the size of every batch it ran.
    #[derive(Default)]
    struct Negate {
        batches: Mutex<Vec<usize>>,
    }

    impl Pipeline for Arc<Negate> {
        type Input = f64;
        type Output = f64;

        fn preprocess(&self, data: Value) -> Result<f64, PipelineError> {
            data.as_f64()
                .ok_or_else(|| PipelineError::InvalidInput("expected a number".into()))
        }

        fn infer(&self, input: f64) -> Result<f64, PipelineError> {
            Ok(-input)
        }

        fn infer_batch(&self, inputs: Vec<f64>) -> Result<Vec<f64>, PipelineError> {
            self.batches.lock().unwrap().push(inputs.len());
            Ok(inputs.into_iter().map(|x| -x).collect())
        }

        fn postprocess(&self, output: f64) -> Result<Value, PipelineError> {
            Ok(Value::from(output))
        }
    }

    fn key() -> ModelKey {
        ModelKey::new(
            ModelName::parse("negate").unwrap(),
            ModelVersion::parse("v1").unwrap(),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_share_runs_and_each_gets_its_own_answer() {
        let negate = Arc::new(Negate::default());
        let model: Arc<dyn Model> = Arc::new(PipelineModel::new(Arc::clone(&negate)));
        let config = BatchingConfig {
            max_batch_size: 8,
            // Long enough that the 16 requests share runs however slowly they arrive; full
            // batches go at once, so the test does not wait for it.
            max_delay: Duration::from_secs(2),
        };
        let batcher = Arc::new(Batcher::start(&key(), model, config).unwrap());
        let pool = Arc::new(
            ExecutorPool::start(&ExecutorConfig {
                name: "cpu".into(),
                threads: 1,
                queue_capacity: 8,
            })
            .unwrap(),
        );
        let calls = (0..16).map(|index| {
            let batcher = Arc::clone(&batcher);
            let pool = Arc::clone(&pool);
            let data = if index == 5 {
                json!("bad")
            } else {
                json!(index)
            };
            tokio::spawn(async move { batcher.run(data, pool).await })
        });
        let outcomes = futures_util::future::join_all(calls).await;
        for (index, outcome) in outcomes.into_iter().enumerate() {
            let value = outcome.unwrap().unwrap().value;
            if index == 5 {
                assert_eq!(
                    value,
                    Err(PipelineError::InvalidInput("expected a number".into()))
                );
            } else {
                assert_eq!(value, Ok(json!(-(index as f64))));
            }
        }
        let batches = negate.batches.lock().unwrap().clone();
        assert_eq!(batches.iter().sum::<usize>(), 15, "{batches:?}");
        assert!(batches.iter().all(|&size| size <= 8), "{batches:?}");
        assert!(
            batches.len() < 15,
            "no two requests shared a run: {batches:?}"
        );
    }
}
