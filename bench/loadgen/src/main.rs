//! `loadgen`: the HTTP load generator of the benchmarks in `bench/` (see `bench/README.md`).
//!
//! It drives the engine from outside, like a client would, and reports what the client saw;
//! the end-to-end figures of a scenario come from the job store, not from here.
//!
//! Subcommands:
//! - `async-submit`: submits N async echo jobs (`POST /predict/async`, distinct `data` per job)
//!   from a fixed number of concurrent keep-alive connections, counts non-202 answers and
//!   transport errors, prints the submit throughput and latency, and writes the accepted job
//!   ids, one per line. Used by `bench/async_jobs.sh`.
//! - `grpc-infer`: Open Inference Protocol `ModelInfer` calls (raw contents) from C concurrent
//!   clients for D seconds against any V2 gRPC server. Used by `bench/v2_grpc.sh`.
//!
//! The summary goes to stderr, ending with one machine-readable `LOADGEN_RESULT key=value ...`
//! line; the exit status is 1 when any submission was not accepted.
//!
//! Layout:
//! - `main.rs`: the command line and the runtime.
//! - `async_submit.rs`: the `async-submit` scenario.
//! - `grpc_infer.rs`: the `grpc-infer` scenario.
//! - `latency.rs`: percentiles of recorded latencies.

mod async_submit;
mod grpc_infer;
mod latency;

// The engine's allocator: on a 2-core machine the client shares the CPU with the server it
// measures, so its own allocation cost would come off the server's figure.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    about = "Load generator for the inference-engine benchmarks"
)]
struct Cli {
    /// Threads of the client's async runtime. The client shares the machine with the servers
    /// it measures, so it stays small by default.
    #[arg(long, default_value_t = 1, global = true)]
    threads: usize,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Submit N async jobs and write the accepted job ids.
    AsyncSubmit(async_submit::AsyncSubmitArgs),
    /// V2 gRPC ModelInfer load against any Open Inference Protocol server.
    GrpcInfer(grpc_infer::GrpcInferArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("loadgen: error: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(cli.threads >= 1, "--threads must be at least 1");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.threads)
        .enable_all()
        .build()?;
    match cli.command {
        Command::AsyncSubmit(args) => runtime.block_on(async_submit::run(args)),
        Command::GrpcInfer(args) => runtime.block_on(grpc_infer::run(args)),
    }
}
