//! The metrics the engine exports (listed in deploy/README.md), named in one place and recorded through the
//! `metrics` facade, so core records what happens without knowing who collects it (the app
//! installs a Prometheus recorder; without one, recording is a no-op).
//!
//! The names keep the Python engine's so its Grafana dashboard keeps working; [`ALL`] is the
//! list the dashboard in `deploy/` may use.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::LocalKey;
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram};

use crate::job::{JobMode, JobStatus};
use crate::model::ModelKey;
use crate::ports::PendingCount;

pub const INFERENCE_REQUESTS: &str = "inference_requests_total";
pub const INFERENCE_ERRORS: &str = "inference_errors_total";
pub const INFERENCE_LATENCY: &str = "inference_latency_seconds";
pub const EXECUTOR_INFLIGHT: &str = "executor_inflight";
pub const EXECUTOR_TIMEOUTS: &str = "executor_timeouts_total";
pub const JOB_QUEUE_DEPTH: &str = "job_queue_depth";
pub const HTTP_REQUESTS: &str = "http_requests_total";
pub const HTTP_REQUEST_DURATION: &str = "http_request_duration_seconds";
pub const RATE_LIMITED: &str = "rate_limited_total";
pub const RATE_LIMITER_FAILURES: &str = "rate_limiter_failures_total";
pub const MODELS_LOADED: &str = "models_loaded";
pub const MODELS_LOADED_BYTES: &str = "models_loaded_bytes";
pub const MODEL_LOAD_SECONDS: &str = "model_load_seconds";
pub const MODEL_EVICTIONS: &str = "model_evictions_total";
pub const BATCH_SIZE: &str = "batch_size";
pub const JOBS: &str = "jobs_total";
pub const JOB_STORE_WRITE_SECONDS: &str = "job_store_write_seconds";

/// Every metric name the engine exports.
pub const ALL: &[&str] = &[
    INFERENCE_REQUESTS,
    INFERENCE_ERRORS,
    INFERENCE_LATENCY,
    EXECUTOR_INFLIGHT,
    EXECUTOR_TIMEOUTS,
    JOB_QUEUE_DEPTH,
    HTTP_REQUESTS,
    HTTP_REQUEST_DURATION,
    RATE_LIMITED,
    RATE_LIMITER_FAILURES,
    MODELS_LOADED,
    MODELS_LOADED_BYTES,
    MODEL_LOAD_SECONDS,
    MODEL_EVICTIONS,
    BATCH_SIZE,
    JOBS,
    JOB_STORE_WRITE_SECONDS,
];

/// Histogram buckets per metric (seconds, or rows for `batch_size`).
pub fn buckets(metric: &str) -> Option<&'static [f64]> {
    const LATENCY: &[f64] = &[
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ];
    const LOADS: &[f64] = &[0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0];
    const ROWS: &[f64] = &[
        1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
    ];
    match metric {
        INFERENCE_LATENCY | HTTP_REQUEST_DURATION | JOB_STORE_WRITE_SECONDS => Some(LATENCY),
        MODEL_LOAD_SECONDS => Some(LOADS),
        BATCH_SIZE => Some(ROWS),
        _ => None,
    }
}

/// One model run of a request or a job, whatever its path (sync, batch, async).
pub fn inference(key: &ModelKey, tenant: &str, latency: Duration, error_type: Option<&str>) {
    let (model, version) = (key.name.as_str(), key.version.as_str());
    let (requests, latencies) = kept(
        &INFERENCE_SERIES,
        &[model.as_bytes(), version.as_bytes(), tenant.as_bytes()],
        || {
            (
                metrics::counter!(INFERENCE_REQUESTS, "model" => model.to_owned(), "version" => version.to_owned(), "tenant" => tenant.to_owned()),
                metrics::histogram!(INFERENCE_LATENCY, "model" => model.to_owned(), "version" => version.to_owned(), "tenant" => tenant.to_owned()),
            )
        },
    );
    requests.increment(1);
    latencies.record(latency.as_secs_f64());
    if let Some(error_type) = error_type {
        metrics::counter!(INFERENCE_ERRORS, "model" => model.to_owned(), "version" => version.to_owned(), "error_type" => error_type.to_owned(), "tenant" => tenant.to_owned())
            .increment(1);
    }
}

/// A request (or job) was released at its deadline while running on pool `device`.
pub fn executor_timeout(device: &str) {
    metrics::counter!(EXECUTOR_TIMEOUTS, "device" => device.to_owned()).increment(1);
}

/// Tasks running on pool `device` changed by `delta`.
pub fn executor_inflight(device: &str, delta: f64) {
    kept(
        &INFLIGHT_SERIES,
        &[device.as_bytes()],
        || metrics::gauge!(EXECUTOR_INFLIGHT, "device" => device.to_owned()),
    )
    .increment(delta);
}

/// One HTTP response; `route` is the matched route template, never the raw path.
pub fn http_request(route: &str, status: u16, duration: Duration) {
    let (requests, durations) = kept(
        &HTTP_SERIES,
        &[route.as_bytes(), &status.to_le_bytes()],
        || {
            (
                metrics::counter!(HTTP_REQUESTS, "route" => route.to_owned(), "status" => status.to_string()),
                metrics::histogram!(HTTP_REQUEST_DURATION, "route" => route.to_owned()),
            )
        },
    );
    requests.increment(1);
    durations.record(duration.as_secs_f64());
}

pub fn rate_limited(group: &str, tenant: &str) {
    metrics::counter!(RATE_LIMITED, "group" => group.to_owned(), "tenant" => tenant.to_owned())
        .increment(1);
}

/// The shared rate limiter could not be asked; the request was let through.
pub fn rate_limiter_failure() {
    metrics::counter!(RATE_LIMITER_FAILURES).increment(1);
}

pub fn model_loaded(key: &ModelKey, load_time: Duration) {
    metrics::histogram!(MODEL_LOAD_SECONDS, "model" => key.name.to_string(), "version" => key.version.to_string())
        .record(load_time.as_secs_f64());
}

/// Models in memory now, and their summed measured sizes.
#[expect(
    clippy::cast_precision_loss,
    reason = "a model count is far below 2^52; a byte count above it loses only its last bits"
)]
pub fn models_loaded(count: usize, bytes: u64) {
    metrics::gauge!(MODELS_LOADED).set(count as f64);
    metrics::gauge!(MODELS_LOADED_BYTES).set(bytes as f64);
}

pub fn model_evicted() {
    metrics::counter!(MODEL_EVICTIONS).increment(1);
}

pub fn batch_size(key: &ModelKey, rows: usize) {
    #[expect(clippy::cast_precision_loss, reason = "a batch is far below 2^52 rows")]
    metrics::histogram!(BATCH_SIZE, "model" => key.name.to_string(), "version" => key.version.to_string())
        .record(rows as f64);
}

/// A job reached `status` (sync requests are recorded in their final state).
pub fn job(status: JobStatus, mode: JobMode) {
    let (status, mode) = (status.as_str(), mode.as_str());
    kept(
        &JOB_SERIES,
        &[status.as_bytes(), mode.as_bytes()],
        || metrics::counter!(JOBS, "status" => status, "mode" => mode),
    )
    .increment(1);
}

/// One write (a batch of job records) to the job store.
pub fn job_store_write(duration: Duration) {
    metrics::histogram!(JOB_STORE_WRITE_SECONDS).record(duration.as_secs_f64());
}

/// Whether series handles may be kept: only once the process's recorder is installed for good.
/// A handle resolved before that belongs to the no-op recorder and would never count.
static KEEP_HANDLES: AtomicBool = AtomicBool::new(false);

/// Lets the functions above keep the handles of the series they record on every request. Call
/// it once the global recorder is installed (it is set once per process and never replaced).
pub fn recorder_installed() {
    KEEP_HANDLES.store(true, Ordering::Release);
}

/// Label sets per family and thread whose handles are kept; past that, a call resolves its
/// handles again (still counted, only slower), so a flood of new tenants cannot grow it.
const MAX_KEPT_SERIES: usize = 1024;

/// The handles of one family of series on this thread, by their label values. Resolving a
/// series through the `metrics` macros allocates every label and hashes the key into the
/// recorder's registry on each call: on `POST /predict`, about 15 allocations per request.
struct KeptSeries<H> {
    /// foldhash: SipHash was a third of a lookup here, and the labels are bounded values
    /// (routes, statuses, model names already resolved), not arbitrary client input.
    by_labels: HashMap<Box<[u8]>, H, foldhash::fast::RandomState>,
    /// The lookup key being built: each label's length, then its bytes (so no two label
    /// lists share a key).
    key: Vec<u8>,
}

impl<H: Clone> KeptSeries<H> {
    fn new() -> Self {
        Self {
            by_labels: HashMap::default(),
            key: Vec::new(),
        }
    }

    /// The kept handles of `labels`; leaves their key ready for [`Self::keep`].
    fn get(&mut self, labels: &[&[u8]]) -> Option<H> {
        self.key.clear();
        for label in labels {
            self.key.extend_from_slice(&label.len().to_le_bytes());
            self.key.extend_from_slice(label);
        }
        self.by_labels.get(self.key.as_slice()).cloned()
    }

    /// Keeps `handles` under the key of the last [`Self::get`].
    fn keep(&mut self, handles: H) {
        if self.by_labels.len() < MAX_KEPT_SERIES {
            self.by_labels
                .insert(self.key.clone().into_boxed_slice(), handles);
        }
    }
}

thread_local! {
    static HTTP_SERIES: RefCell<KeptSeries<(Counter, Histogram)>> = RefCell::new(KeptSeries::new());
    static INFERENCE_SERIES: RefCell<KeptSeries<(Counter, Histogram)>> = RefCell::new(KeptSeries::new());
    static JOB_SERIES: RefCell<KeptSeries<Counter>> = RefCell::new(KeptSeries::new());
    static INFLIGHT_SERIES: RefCell<KeptSeries<Gauge>> = RefCell::new(KeptSeries::new());
}

/// The handles of the series `labels` of `family`: kept ones when there are, else `resolve`d
/// (and kept, once the recorder is installed).
fn kept<H: Clone>(
    family: &'static LocalKey<RefCell<KeptSeries<H>>>,
    labels: &[&[u8]],
    resolve: impl FnOnce() -> H,
) -> H {
    if !KEEP_HANDLES.load(Ordering::Acquire) {
        return resolve();
    }
    // `try_`: not while the thread's locals are being destroyed, nor re-entered (neither
    // happens on the request path; both fall back to resolving).
    let found = family.try_with(|series| series.try_borrow_mut().ok()?.get(labels));
    if let Ok(Some(handles)) = found {
        return handles;
    }
    let handles = resolve();
    let _ = family.try_with(|series| {
        if let Ok(mut series) = series.try_borrow_mut() {
            series.keep(handles.clone());
        }
    });
    handles
}

/// The `(model, version)` labels of one `job_queue_depth` series; no version is `""`.
pub type QueueDepthSeries = (String, String);

/// Sets `job_queue_depth` from the store's pending counts (every process's jobs), and sets to 0
/// each series `previously` reported that has no pending jobs now: a model whose queue drained
/// must read 0, not its last non-zero depth. `previously` becomes the series reported now.
pub fn job_queue_depth(counts: &[PendingCount], previously: &mut BTreeSet<QueueDepthSeries>) {
    for ((model, version), depth) in queue_depth_changes(counts, previously) {
        #[expect(clippy::cast_precision_loss, reason = "a job count is far below 2^52")]
        metrics::gauge!(JOB_QUEUE_DEPTH, "model" => model, "version" => version).set(depth as f64);
    }
}

/// The value of every series to set: each pair in `counts` (summed, should a pair repeat) and
/// 0 for each pair of `previously` missing from `counts`. Updates `previously`.
fn queue_depth_changes(
    counts: &[PendingCount],
    previously: &mut BTreeSet<QueueDepthSeries>,
) -> BTreeMap<QueueDepthSeries, u64> {
    let mut depths: BTreeMap<QueueDepthSeries, u64> = BTreeMap::new();
    for count in counts {
        let version = count
            .version
            .as_ref()
            .map_or_else(String::new, ToString::to_string);
        *depths
            .entry((count.model.to_string(), version))
            .or_default() += count.pending;
    }
    let now: BTreeSet<QueueDepthSeries> = depths.keys().cloned().collect();
    for drained in previously.difference(&now) {
        depths.insert(drained.clone(), 0);
    }
    *previously = now;
    depths
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ModelName, ModelVersion};

    thread_local! {
        static TEST_SERIES: RefCell<KeptSeries<u32>> = RefCell::new(KeptSeries::new());
    }

    #[test]
    fn a_label_set_is_resolved_once_and_label_lists_never_share_handles() {
        recorder_installed();
        let resolved = std::cell::Cell::new(0);
        let handle = |labels: &[&[u8]]| {
            kept(&TEST_SERIES, labels, || {
                resolved.set(resolved.get() + 1);
                resolved.get()
            })
        };
        let first = handle(&[b"ab", b"c"]);
        assert_eq!(handle(&[b"ab", b"c"]), first);
        assert_eq!(resolved.get(), 1);
        // The same bytes split differently are another series.
        let other = handle(&[b"a", b"bc"]);
        assert_ne!(other, first);
        assert_eq!(handle(&[b"a", b"bc"]), other);
        assert_eq!(handle(&[b"abc"]), 3);
        assert_eq!(resolved.get(), 3);
    }

    #[test]
    fn past_the_cap_label_sets_are_resolved_on_every_call() {
        recorder_installed();
        let resolved = std::cell::Cell::new(0);
        for index in 0..MAX_KEPT_SERIES {
            kept(&TEST_SERIES, &[&index.to_le_bytes(), b"cap"], || {
                resolved.set(resolved.get() + 1);
                0
            });
        }
        let before = resolved.get();
        for _ in 0..2 {
            kept(&TEST_SERIES, &[b"one too many"], || {
                resolved.set(resolved.get() + 1);
                0
            });
        }
        assert_eq!(resolved.get(), before + 2);
    }

    fn count(model: &str, version: Option<&str>, pending: u64) -> PendingCount {
        PendingCount {
            model: ModelName::parse(model).unwrap(),
            version: version.map(|version| ModelVersion::parse(version).unwrap()),
            pending,
        }
    }

    fn series(model: &str, version: &str) -> QueueDepthSeries {
        (model.to_owned(), version.to_owned())
    }

    #[test]
    fn every_pending_pair_is_reported_and_no_version_is_an_empty_label() {
        let mut previously = BTreeSet::new();

        let changes = queue_depth_changes(
            &[count("echo", Some("v1"), 3), count("iris", None, 1)],
            &mut previously,
        );

        assert_eq!(
            changes,
            BTreeMap::from([(series("echo", "v1"), 3), (series("iris", ""), 1)])
        );
        assert_eq!(
            previously,
            BTreeSet::from([series("echo", "v1"), series("iris", "")])
        );
    }

    #[test]
    fn a_drained_pair_is_set_to_zero_once_then_forgotten() {
        let mut previously = BTreeSet::from([series("echo", "v1"), series("echo", "v2")]);

        let changes = queue_depth_changes(&[count("echo", Some("v2"), 2)], &mut previously);

        assert_eq!(
            changes,
            BTreeMap::from([(series("echo", "v1"), 0), (series("echo", "v2"), 2)])
        );
        assert_eq!(previously, BTreeSet::from([series("echo", "v2")]));
        assert_eq!(
            queue_depth_changes(&[], &mut previously),
            BTreeMap::from([(series("echo", "v2"), 0)])
        );
        assert!(queue_depth_changes(&[], &mut previously).is_empty());
    }

    #[test]
    fn a_repeated_pair_is_summed() {
        let mut previously = BTreeSet::new();
        let changes = queue_depth_changes(
            &[count("echo", Some("v1"), 2), count("echo", Some("v1"), 5)],
            &mut previously,
        );
        assert_eq!(changes, BTreeMap::from([(series("echo", "v1"), 7)]));
    }
}

/// At most one log line per period for a failure that repeats with every request (a store or
/// queue that is down), counting the lines held back: an outage must not write one line per
/// request into the disk it may well have filled.
#[derive(Debug)]
pub struct LogEvery {
    period: Duration,
    /// When the last line was admitted, and how many were held back since.
    state: std::sync::Mutex<(Option<std::time::Instant>, u64)>,
}

impl LogEvery {
    pub const fn new(period: Duration) -> Self {
        Self {
            period,
            state: std::sync::Mutex::new((None, 0)),
        }
    }

    /// `Some(lines held back since the last one)` when a line may be written now.
    pub fn admit(&self) -> Option<u64> {
        let mut state = crate::sync::lock(&self.state);
        let (last, held_back) = &mut *state;
        let now = std::time::Instant::now();
        if last.is_some_and(|last| now.duration_since(last) < self.period) {
            *held_back += 1;
            return None;
        }
        *last = Some(now);
        Some(std::mem::take(held_back))
    }
}

#[cfg(test)]
mod log_every_tests {
    use super::*;

    #[test]
    fn one_line_per_period_with_the_count_held_back() {
        let log = LogEvery::new(Duration::from_secs(3_600));
        assert_eq!(log.admit(), Some(0));
        assert_eq!(log.admit(), None);
        assert_eq!(log.admit(), None);
        let passed = LogEvery::new(Duration::ZERO);
        assert_eq!(passed.admit(), Some(0));
        assert_eq!(passed.admit(), Some(0));
    }
}
