//! The `grpc-infer` scenario: Open Inference Protocol `ModelInfer` calls with
//! `raw_input_contents` (what Triton's clients and perf_analyzer send) from a fixed number of
//! concurrent clients for a fixed time, against any V2 gRPC server (the engine, MLServer,
//! Triton). Each client sends one request at a time; the clients share `--connections`
//! HTTP/2 channels.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use inference_engine_v2::proto::inference::ModelInferRequest;
use inference_engine_v2::proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use inference_engine_v2::proto::inference::model_infer_request::{
    InferInputTensor, InferRequestedOutputTensor,
};
use tonic::transport::{Channel, Endpoint};

use crate::latency::Latencies;

#[derive(Debug, Args)]
pub(crate) struct GrpcInferArgs {
    /// `http://host:port` of the gRPC endpoint.
    #[arg(long)]
    url: String,
    #[arg(long)]
    model: String,
    #[arg(long, default_value = "")]
    version: String,
    /// Input tensor name (MLServer ignores it).
    #[arg(long, default_value = "input")]
    input: String,
    /// Values per row (FP32).
    #[arg(long, default_value_t = 784)]
    features: usize,
    /// Rows per request.
    #[arg(long, default_value_t = 1)]
    rows: usize,
    /// Outputs to ask for (comma-separated); none: the server's default.
    #[arg(long, value_delimiter = ',')]
    outputs: Vec<String>,
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Seconds of measured load, after `--warmup` seconds of unmeasured load.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Sent as `x-api-key` metadata.
    #[arg(long)]
    key: Option<String>,
}

pub(crate) async fn run(args: GrpcInferArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::ensure!(
        args.concurrency >= 1 && args.connections >= 1,
        "concurrency and connections must be at least 1"
    );
    let endpoint = Endpoint::from_shared(args.url.clone())?.tcp_nodelay(true);
    let mut channels = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        channels.push(
            endpoint
                .connect()
                .await
                .with_context(|| format!("connecting to {}", args.url))?,
        );
    }
    let request = Arc::new(request(&args));
    let key = args.key.clone();

    // Warm-up: first loads, connection windows, caches.
    let warmup = Instant::now() + Duration::from_secs(args.warmup);
    drive(&args, &channels, &request, key.as_deref(), warmup, None).await;

    let ok = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let until = started + Duration::from_secs(args.duration);
    let (samples, errors) =
        drive(&args, &channels, &request, key.as_deref(), until, Some(&ok)).await;
    let elapsed = started.elapsed().as_secs_f64();
    let completed = ok.load(Ordering::Relaxed);
    let latencies = Latencies::from_samples(samples);
    let throughput = completed as f64 / elapsed;
    eprintln!(
        "grpc-infer {} {}: {completed} ok, {errors} errors in {elapsed:.1} s = {throughput:.0} req/s ({:.0} rows/s); p50 {:.2} ms, p99 {:.2} ms",
        args.url,
        args.model,
        throughput * args.rows as f64,
        latencies.percentile_ms(50.0),
        latencies.percentile_ms(99.0),
    );
    eprintln!(
        "LOADGEN_RESULT requests_per_s={throughput:.1} ok={completed} errors={errors} p50_ms={:.3} p99_ms={:.3} concurrency={} rows={}",
        latencies.percentile_ms(50.0),
        latencies.percentile_ms(99.0),
        args.concurrency,
        args.rows,
    );
    Ok(if errors == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}

/// Runs the clients until `until`; returns the latencies of successful calls and the error
/// count (the first error is printed).
async fn drive(
    args: &GrpcInferArgs,
    channels: &[Channel],
    request: &Arc<ModelInferRequest>,
    key: Option<&str>,
    until: Instant,
    ok: Option<&Arc<AtomicU64>>,
) -> (Vec<Duration>, u64) {
    let mut clients = Vec::with_capacity(args.concurrency);
    for index in 0..args.concurrency {
        let channel = channels[index % channels.len()].clone();
        let request = Arc::clone(request);
        let key = key.map(str::to_owned);
        let ok = ok.cloned();
        clients.push(tokio::spawn(async move {
            let mut client =
                GrpcInferenceServiceClient::new(channel).max_decoding_message_size(usize::MAX);
            let mut samples = Vec::new();
            let mut errors = 0_u64;
            while Instant::now() < until {
                let mut call = tonic::Request::new((*request).clone());
                if let Some(key) = &key
                    && let Ok(value) = key.parse()
                {
                    call.metadata_mut().insert("x-api-key", value);
                }
                let sent = Instant::now();
                match client.model_infer(call).await {
                    Ok(_) => {
                        samples.push(sent.elapsed());
                        if let Some(ok) = &ok {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(status) => {
                        if errors == 0 {
                            eprintln!("grpc-infer: {:?}: {}", status.code(), status.message());
                        }
                        errors += 1;
                    }
                }
            }
            (samples, errors)
        }));
    }
    let mut samples = Vec::new();
    let mut errors = 0;
    for client in clients {
        if let Ok((client_samples, client_errors)) = client.await {
            samples.extend(client_samples);
            errors += client_errors;
        }
    }
    (samples, errors)
}

fn request(args: &GrpcInferArgs) -> ModelInferRequest {
    let values = args.rows * args.features;
    let raw = (0..values)
        .flat_map(|index| ((index % 97) as f32 / 97.0).to_le_bytes())
        .collect::<Vec<u8>>();
    ModelInferRequest {
        model_name: args.model.clone(),
        model_version: args.version.clone(),
        id: String::new(),
        parameters: Default::default(),
        inputs: vec![InferInputTensor {
            name: args.input.clone(),
            datatype: "FP32".to_owned(),
            shape: vec![args.rows as i64, args.features as i64],
            parameters: Default::default(),
            contents: None,
        }],
        outputs: args
            .outputs
            .iter()
            .map(|name| InferRequestedOutputTensor {
                name: name.clone(),
                parameters: Default::default(),
            })
            .collect(),
        raw_input_contents: vec![raw.into()],
    }
}
