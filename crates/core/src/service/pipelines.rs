//! Pipelines of models, run by the service ([`crate::steps`] has the manifest side and the
//! data-flow rule).
//!
//! The steps run one after the other on the caller's task, each through its own model's usual
//! path: routed (a step without a version follows its model's routing rule with the caller's
//! routing key), loaded and leased, run on its own executor pool (through its batcher when it
//! batches). No executor thread ever waits for another model's executor, so a saturated pool
//! cannot deadlock on a pipeline. One deadline covers the whole pipeline: the pipeline's SLA
//! timeout, shortened by the request's; each step runs with what is left of it (or its own SLA,
//! if that is shorter). Steps write no records: the caller records the pipeline once, with the
//! steps' timings (`run_recorded`, or the job runner's settlement).

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{InferenceError, InferenceService, ModelRun, RunFor};
use crate::cancel;
use crate::deadline;
use crate::job::Payload;
use crate::model::ModelKey;
use crate::observe;
use crate::pipeline::PipelineError;
use crate::registry::{PipelinePlan, ResolveError, Serving};
use crate::routing::Bucket;
use crate::source::Backend;
use crate::steps::{PipelineStep, StepTarget, StepTiming, next_data};

impl InferenceService {
    /// Runs the steps of pipeline `key` (whose plan is `plan`) on `payload`: the first step
    /// gets the payload, each later step the previous step's answer as [`next_data`] turns it
    /// into `data` (item by item for a batch). The first failing step fails the pipeline with
    /// its error, prefixed with the step.
    pub(super) async fn run_pipeline(
        &self,
        serving: &Serving,
        key: &ModelKey,
        plan: &PipelinePlan,
        payload: Payload,
        requested: Option<Duration>,
        run_for: RunFor<'_>,
    ) -> ModelRun {
        let limit = serving.timeout_for(key, requested);
        let deadline = deadline::after(limit);
        // The pipeline's own lease counts it in flight and marks it used (it costs nothing, so
        // it is never evicted); a pipeline the repository scan refused fails here, with why.
        let _lease = match self.registry.acquire(serving, key).await {
            Ok(lease) => lease,
            Err(err) => return ModelRun::not_started(Err(err.into())),
        };
        let mut progress = Progress::new(self.clock.now());
        let mut data = payload;
        for (index, step) in plan.steps.iter().enumerate() {
            let number = index + 1;
            let failed = |model: String, error: InferenceError| InferenceError::Step {
                step: number,
                model,
                source: Box::new(error),
            };
            let step_key = match serving.route(&step.model, step.version.as_ref(), || {
                Bucket::for_request(run_for.routing_key)
            }) {
                Ok(step_key) => step_key,
                Err(err) => return progress.finish(Err(failed(step.to_string(), err.into()))),
            };
            let description = serving.description(&step_key);
            if description
                .as_ref()
                .is_some_and(|description| description.backend == Backend::Pipeline)
            {
                // The scan refuses a pipeline naming another one of its repository; this
                // holds whatever the catalogue's origin.
                let nested = ResolveError::NotReady {
                    key: key.clone(),
                    reason: format!(
                        "its step {number} names {step_key}, which is a pipeline: a pipeline's \
                         steps must be models (pipelines do not nest)"
                    ),
                };
                return progress.finish(Err(nested.into()));
            }
            if cancel::requested() {
                // The job was cancelled while the previous step ran; its answer is discarded,
                // so the remaining steps would only keep their executors busy.
                let cancelled = PipelineError::Inference("the job was cancelled".into()).into();
                return progress.finish(Err(failed(step_key.to_string(), cancelled)));
            }
            if index > 0 {
                // A model whose manifest is unusable has no description; its run below fails
                // with why, whatever its data.
                let target = description.as_ref().map_or(
                    StepTarget {
                        builtin: false,
                        inputs: &[],
                    },
                    StepTarget::of,
                );
                data = match step_data(data, step, target) {
                    Ok(data) => data,
                    Err(message) => {
                        let invalid = PipelineError::InvalidInput(message).into();
                        return progress.finish(Err(failed(step_key.to_string(), invalid)));
                    }
                };
            }
            let remaining =
                deadline.map(|deadline| deadline.saturating_duration_since(Instant::now()));
            if let (Some(limit), Some(Duration::ZERO)) = (limit, remaining) {
                let timeout = InferenceError::Timeout(limit);
                return progress.finish(Err(failed(step_key.to_string(), timeout)));
            }
            let batch = matches!(data, Payload::Batch(_));
            let submitted = Instant::now();
            let (run, _) = self
                .execute_model(serving, &step_key, data, remaining, None)
                .await;
            // Each step counts as a request to its model, so the model's own dashboards
            // include the traffic pipelines send it.
            observe::inference(
                &step_key,
                run_for.tenant.as_str(),
                run.ended.saturating_duration_since(submitted),
                run.result.as_ref().err().map(InferenceError::error_type),
            );
            progress.add(&step_key, &run);
            let output = match run.result {
                Ok(output) => output,
                // The pipeline's deadline cut the step short (not the step's own, shorter SLA):
                // the pipeline timed out, so say after how long.
                Err(InferenceError::Timeout(step_limit)) if remaining == Some(step_limit) => {
                    let timeout = InferenceError::Timeout(limit.unwrap_or(step_limit));
                    return progress.finish(Err(failed(step_key.to_string(), timeout)));
                }
                Err(err) => return progress.finish(Err(failed(step_key.to_string(), err))),
            };
            data = match (batch, output) {
                (true, Value::Array(items)) => Payload::Batch(items),
                // A batch run always answers a list; anything else is one answer.
                (true, other) => Payload::Batch(vec![other]),
                (false, output) => Payload::Single(output),
            };
        }
        let output = match data {
            Payload::Single(output) => output,
            Payload::Batch(items) => Value::Array(items),
        };
        progress.finish(Ok(output))
    }
}

/// What the tensor path answers for a pipeline: its steps pass JSON from one to the next, so
/// it has no tensor signature of its own.
pub(super) fn no_tensors(key: &ModelKey) -> InferenceError {
    PipelineError::InvalidInput(format!(
        "model {key} is a pipeline of models: it takes JSON `data` (POST /predict, \
         /predict/batch, /predict/async), not tensors"
    ))
    .into()
}

/// The next step's payload from the previous step's answers: one `data`, or each item of a
/// batch on its own (an error names the item).
fn step_data(
    answers: Payload,
    step: &PipelineStep,
    target: StepTarget<'_>,
) -> Result<Payload, String> {
    match answers {
        Payload::Single(answer) => next_data(answer, step, target).map(Payload::Single),
        Payload::Batch(answers) => answers
            .into_iter()
            .enumerate()
            .map(|(index, answer)| {
                next_data(answer, step, target)
                    .map_err(|message| format!("items[{index}]: {message}"))
            })
            .collect::<Result<_, _>>()
            .map(Payload::Batch),
    }
}

/// The steps of one pipeline run so far.
struct Progress {
    started_at: DateTime<Utc>,
    steps: Vec<StepTiming>,
    queue_time: Duration,
    inference_time: Duration,
    ended: Option<Instant>,
}

impl Progress {
    fn new(started_at: DateTime<Utc>) -> Self {
        Self {
            started_at,
            steps: Vec::new(),
            queue_time: Duration::ZERO,
            inference_time: Duration::ZERO,
            ended: None,
        }
    }

    fn add(&mut self, model: &ModelKey, run: &ModelRun) {
        self.queue_time += run.queue_time;
        self.inference_time += run.inference_time;
        self.ended = Some(run.ended);
        self.steps.push(StepTiming {
            model: model.clone(),
            queue_time: run.queue_time,
            inference_time: run.inference_time,
        });
    }

    /// The pipeline's run: its times are the sums of its steps', so the per-step breakdown
    /// adds up to them. A pipeline no step of which ran did not start.
    fn finish(self, result: Result<Value, InferenceError>) -> ModelRun {
        ModelRun {
            started_at: (!self.steps.is_empty()).then_some(self.started_at),
            result,
            queue_time: self.queue_time,
            inference_time: self.inference_time,
            ended: self.ended.unwrap_or_else(Instant::now),
            steps: self.steps,
        }
    }
}
