//! The Prometheus recorder behind core's `observe` metrics: installed once per process (the
//! `metrics` facade has one global recorder), rendered as text by the server's `/metrics`.

use std::sync::OnceLock;
use std::time::Duration;

use inference_engine_core::observe;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static RECORDER: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();

/// How often histograms drop samples nobody has scraped yet, so memory stays bounded when
/// nothing scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The process's Prometheus handle, installing the recorder on first use.
pub fn prometheus() -> Result<PrometheusHandle, String> {
    RECORDER.get_or_init(install).clone()
}

fn install() -> Result<PrometheusHandle, String> {
    let mut builder = PrometheusBuilder::new();
    for name in observe::ALL {
        if let Some(buckets) = observe::buckets(name) {
            builder = builder
                .set_buckets_for_metric(Matcher::Full((*name).to_owned()), buckets)
                .map_err(|err| format!("metric {name}: {err}"))?;
        }
    }
    let recorder = builder.build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder)
        .map_err(|err| format!("cannot install the metrics recorder: {err}"))?;
    observe::recorder_installed();
    Ok(handle)
}

/// Runs the recorder's periodic upkeep until the process ends. Call once, inside a runtime.
pub fn spawn_upkeep(handle: PrometheusHandle) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(UPKEEP_EVERY);
        loop {
            every.tick().await;
            handle.run_upkeep();
        }
    });
}
