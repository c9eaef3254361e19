//! `async-submit`: N `POST /predict/async` echo jobs from `concurrency` keep-alive connections.
//!
//! Each job carries distinct data (`{"run": <run id>, "seq": <n>}`), so no two submissions
//! look alike. Every answer is counted: a 202 with a `job_id` is accepted (its id is written
//! out); anything else is a non-202, a 202 without a readable id, or a transport error. No
//! submission is retried: the accepted ids are exactly the jobs the engine promised to run.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::json;

use crate::latency::Latencies;

/// Error answers shown in full (status and body) before the rest are only counted.
const ERROR_SAMPLES: usize = 5;
/// Longest part of an unexpected body kept in an error sample.
const SAMPLE_BODY_CHARS: usize = 300;

#[derive(Debug, clap::Args)]
pub(crate) struct AsyncSubmitArgs {
    /// Base URL of the engine (`http://127.0.0.1:8000`).
    #[arg(long)]
    url: String,
    /// API key sent as `X-API-Key`.
    #[arg(long, env = "LOADGEN_API_KEY", default_value = "dev-key")]
    key: String,
    /// Jobs to submit.
    #[arg(long, default_value_t = 10_000)]
    jobs: usize,
    /// Requests in flight at once (one keep-alive connection each).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    #[arg(long, default_value = "echo")]
    model: String,
    #[arg(long, default_value = "v1")]
    version: String,
    /// Where to write the accepted job ids, one per line; `-` for stdout.
    #[arg(long, default_value = "-")]
    ids_out: String,
    /// Tag put in every job's data; default: derived from the clock and the process id.
    #[arg(long)]
    run_id: Option<String>,
    /// Per-request timeout in seconds (a timeout counts as a transport error).
    #[arg(long, default_value_t = 30)]
    timeout_s: u64,
}

/// The body of a 202.
#[derive(Debug, Deserialize)]
struct Accepted {
    job_id: String,
}

/// What one connection's task saw.
#[derive(Debug, Default)]
struct Tally {
    ids: Vec<String>,
    latencies: Vec<Duration>,
    /// Non-202 answers by status code.
    non_accepted: BTreeMap<u16, usize>,
    /// 202 answers whose body held no readable `job_id`.
    bad_bodies: usize,
    transport_errors: usize,
    samples: Vec<String>,
}

impl Tally {
    fn sample(&mut self, text: String) {
        if self.samples.len() < ERROR_SAMPLES {
            self.samples.push(text);
        }
    }

    fn merge(&mut self, other: Self) {
        self.ids.extend(other.ids);
        self.latencies.extend(other.latencies);
        for (status, count) in other.non_accepted {
            *self.non_accepted.entry(status).or_default() += count;
        }
        self.bad_bodies += other.bad_bodies;
        self.transport_errors += other.transport_errors;
        for sample in other.samples {
            self.sample(sample);
        }
    }

    fn failures(&self) -> usize {
        self.non_accepted.values().sum::<usize>() + self.bad_bodies + self.transport_errors
    }
}

/// Everything a connection task needs, shared.
#[derive(Debug)]
struct Target {
    client: reqwest::Client,
    endpoint: String,
    key: String,
    model: String,
    version: String,
    run_id: String,
    jobs: usize,
    /// The next job number to submit; tasks take numbers until `jobs` is reached.
    next: AtomicUsize,
}

pub(crate) async fn run(args: AsyncSubmitArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::ensure!(args.jobs >= 1, "--jobs must be at least 1");
    anyhow::ensure!(args.concurrency >= 1, "--concurrency must be at least 1");
    // Open the output first: a bad path should fail before any job is submitted.
    let mut ids_out: Box<dyn Write> = if args.ids_out == "-" {
        Box::new(BufWriter::new(std::io::stdout()))
    } else {
        let path = PathBuf::from(&args.ids_out);
        let file = File::create(&path)
            .with_context(|| format!("cannot create --ids-out {}", path.display()))?;
        Box::new(BufWriter::new(file))
    };

    let client = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(args.concurrency)
        .timeout(Duration::from_secs(args.timeout_s.max(1)))
        .build()
        .context("cannot build the HTTP client")?;
    let concurrency = args.concurrency.min(args.jobs);
    let target = Arc::new(Target {
        client,
        endpoint: format!("{}/predict/async", args.url.trim_end_matches('/')),
        key: args.key,
        model: args.model,
        version: args.version,
        run_id: args.run_id.unwrap_or_else(default_run_id),
        jobs: args.jobs,
        next: AtomicUsize::new(0),
    });

    eprintln!(
        "loadgen: submitting {} async jobs to {} with {concurrency} connections",
        target.jobs, target.endpoint
    );
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        tasks.spawn(submit_until_done(Arc::clone(&target)));
    }
    let mut tally = Tally::default();
    while let Some(joined) = tasks.join_next().await {
        tally.merge(joined.context("a submit task panicked")?);
    }
    let elapsed = started.elapsed();

    for id in &tally.ids {
        writeln!(ids_out, "{id}").context("cannot write the job ids")?;
    }
    ids_out.flush().context("cannot write the job ids")?;

    report(&tally, target.jobs, concurrency, elapsed);
    Ok(if tally.failures() == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}

/// One connection's loop: takes job numbers until all are taken.
async fn submit_until_done(target: Arc<Target>) -> Tally {
    let mut tally = Tally::default();
    loop {
        let seq = target.next.fetch_add(1, Ordering::Relaxed);
        if seq >= target.jobs {
            return tally;
        }
        submit_one(&target, seq, &mut tally).await;
    }
}

async fn submit_one(target: &Target, seq: usize, tally: &mut Tally) {
    let body = json!({
        "model": target.model,
        "version": target.version,
        "data": {"run": target.run_id, "seq": seq},
    });
    let sent = Instant::now();
    let response = target
        .client
        .post(&target.endpoint)
        .header("X-API-Key", &target.key)
        .json(&body)
        .send()
        .await;
    let response = match response {
        Ok(response) => response,
        Err(err) => {
            tally.transport_errors += 1;
            tally.sample(format!("job {seq}: transport error: {err}"));
            return;
        }
    };
    let status = response.status();
    let bytes = match response.bytes().await {
        Ok(bytes) => bytes,
        Err(err) => {
            tally.transport_errors += 1;
            tally.sample(format!("job {seq}: HTTP {status}, body not read: {err}"));
            return;
        }
    };
    tally.latencies.push(sent.elapsed());
    if status != StatusCode::ACCEPTED {
        *tally.non_accepted.entry(status.as_u16()).or_default() += 1;
        tally.sample(format!("job {seq}: HTTP {status}: {}", excerpt(&bytes)));
        return;
    }
    match serde_json::from_slice::<Accepted>(&bytes) {
        Ok(accepted) => tally.ids.push(accepted.job_id),
        Err(err) => {
            tally.bad_bodies += 1;
            tally.sample(format!(
                "job {seq}: 202 without a job_id ({err}): {}",
                excerpt(&bytes)
            ));
        }
    }
}

fn excerpt(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .take(SAMPLE_BODY_CHARS)
        .collect()
}

fn default_run_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    format!("{}-{nanos}", std::process::id())
}

fn report(tally: &Tally, jobs: usize, concurrency: usize, elapsed: Duration) {
    let latencies = Latencies::from_samples(tally.latencies.clone());
    let seconds = elapsed.as_secs_f64();
    let accepted = tally.ids.len();
    let per_second = if seconds > 0.0 {
        accepted as f64 / seconds
    } else {
        0.0
    };
    let non_accepted: usize = tally.non_accepted.values().sum();
    let by_status = tally
        .non_accepted
        .iter()
        .map(|(status, count)| format!("{status}:{count}"))
        .collect::<Vec<_>>()
        .join(",");
    let (p50, p99, max) = (
        latencies.percentile_ms(50.0),
        latencies.percentile_ms(99.0),
        latencies.max_ms(),
    );
    eprintln!(
        "loadgen: {accepted} of {jobs} accepted in {seconds:.3} s ({per_second:.1} submits/s), \
         submit latency p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms"
    );
    if tally.failures() > 0 {
        eprintln!(
            "loadgen: {non_accepted} non-202 ({by_status}), {} 202 without a job id, \
             {} transport errors; first ones:",
            tally.bad_bodies, tally.transport_errors
        );
        for sample in &tally.samples {
            eprintln!("    {sample}");
        }
    }
    eprintln!(
        "LOADGEN_RESULT jobs={jobs} concurrency={concurrency} accepted={accepted} \
         non202={non_accepted} bad_bodies={} transport_errors={} elapsed_s={seconds:.3} \
         submit_per_s={per_second:.1} p50_ms={p50:.2} p99_ms={p99:.2} max_ms={max:.2}",
        tally.bad_bodies, tally.transport_errors
    );
}
