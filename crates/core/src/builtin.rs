//! Built-in pipelines: `echo` (identity, versions v1 and v2) and `sleep` (for exercising
//! timeouts, cancellation and load; never registered in production).

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cancel;
use crate::pipeline::{Pipeline, PipelineError};
use crate::tensor::Tensor;

/// Returns its input unchanged.
#[derive(Debug, Clone, Copy, Default)]
pub struct EchoPipeline;

impl Pipeline for EchoPipeline {
    type Input = Value;
    type Output = Value;

    fn preprocess(&self, data: Value) -> Result<Value, PipelineError> {
        Ok(data)
    }

    fn infer(&self, input: Value) -> Result<Value, PipelineError> {
        Ok(input)
    }

    fn postprocess(&self, output: Value) -> Result<Value, PipelineError> {
        Ok(output)
    }

    /// Tensors come back as they came, so protocol clients can test a connection with it.
    fn infer_tensors(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, PipelineError> {
        Ok(inputs)
    }
}

/// The longest a `sleep` call may block its executor thread.
pub const MAX_SLEEP_MS: u64 = 60_000;

/// How often a sleeping call looks at its job's cancellation.
const CANCEL_CHECK: Duration = Duration::from_millis(10);

/// Input `{"ms": n}`: blocks its executor thread for `n` ms (at most [`MAX_SLEEP_MS`]), then
/// returns its input. A cancelled job's sleep ends within [`CANCEL_CHECK`] of the worker
/// raising its flag, freeing the thread.
#[derive(Debug, Clone, Copy, Default)]
pub struct SleepPipeline;

impl Pipeline for SleepPipeline {
    type Input = (Duration, Value);
    type Output = Value;

    fn preprocess(&self, data: Value) -> Result<Self::Input, PipelineError> {
        let ms = data
            .as_object()
            .and_then(|object| object.get("ms"))
            .and_then(Value::as_u64)
            .ok_or_else(|| {
                PipelineError::InvalidInput(
                    "sleep expects an object {\"ms\": n} with n a non-negative integer".into(),
                )
            })?;
        Ok((Duration::from_millis(ms.min(MAX_SLEEP_MS)), data))
    }

    fn check(&self, data: &Value) -> Result<(), PipelineError> {
        self.preprocess(data.clone()).map(drop)
    }

    fn infer(&self, (duration, data): Self::Input) -> Result<Value, PipelineError> {
        let until = Instant::now() + duration;
        loop {
            if cancel::requested() {
                return Err(PipelineError::Inference(
                    "cancelled before the sleep ended".into(),
                ));
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(data);
            }
            std::thread::sleep(left.min(CANCEL_CHECK));
        }
    }

    fn postprocess(&self, output: Value) -> Result<Value, PipelineError> {
        Ok(output)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::pipeline::{Model, PipelineModel};

    #[test]
    fn echo_returns_any_json_unchanged() {
        let echo = PipelineModel::new(EchoPipeline);
        let data = json!({"nested": [1, "two", null, {"x": 3.5}]});
        assert_eq!(echo.predict(data.clone()), Ok(data));
    }

    #[test]
    fn sleep_caps_its_duration_and_rejects_bad_input() {
        let (duration, _) = SleepPipeline.preprocess(json!({"ms": 10_000_000})).unwrap();
        assert_eq!(duration, Duration::from_millis(MAX_SLEEP_MS));
        assert!(SleepPipeline.preprocess(json!({"ms": -1})).is_err());
        assert!(SleepPipeline.preprocess(json!("10")).is_err());
        let sleep = PipelineModel::new(SleepPipeline);
        assert_eq!(sleep.predict(json!({"ms": 1})), Ok(json!({"ms": 1})));
    }

    #[test]
    fn a_cancelled_sleep_ends_at_once() {
        let sleep = PipelineModel::new(SleepPipeline);
        let flag = cancel::CancelFlag::new();
        flag.raise();
        let started = Instant::now();
        let outcome = cancel::within(Some(flag), || sleep.predict(json!({"ms": 60_000})));
        assert!(
            matches!(outcome, Err(PipelineError::Inference(_))),
            "{outcome:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(30), "it slept on");
    }
}
