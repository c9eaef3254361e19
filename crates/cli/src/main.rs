//! The `inference-engine` binary: parses the command line and hands over to `app` and
//! `server`. Nothing else lives here.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use inference_engine_app::settings::load_dotenv;
use inference_engine_app::{AppContext, Role, Settings, shutdown_signal, telemetry};

#[derive(Debug, Parser)]
#[command(
    name = "inference-engine",
    version,
    about = "Production ML inference server"
)]
struct Cli {
    #[command(flatten)]
    settings: Settings,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API.
    Serve {
        #[arg(long, env = "HOST", default_value = "0.0.0.0")]
        host: String,
        #[arg(long, env = "PORT", default_value_t = 8000)]
        port: u16,
    },
    /// Consume async jobs from Redis (needs REDIS_URL); run as many as you like.
    Worker,
    /// Create or upgrade the job-store schema (also done at every start), then exit.
    Migrate,
    /// Model repository tools.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ModelsCommand {
    /// Print an ONNX file's inputs, outputs and opsets, and a suggested `model.toml`.
    Inspect {
        /// The `.onnx` file.
        path: std::path::PathBuf,
    },
}

fn main() -> ExitCode {
    if let Err(message) = load_dotenv() {
        eprintln!("error: {message}");
        return ExitCode::FAILURE;
    }
    let cli = Cli::parse();
    let _telemetry = match telemetry::init(&cli.settings.log_level, cli.settings.log_format) {
        Ok(guard) => guard,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("runtime")
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %format!("{err:#}"), "exiting");
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { host, port } => {
            let ctx = Arc::new(AppContext::build(&cli.settings, Role::Server).await?);
            let address: SocketAddr = tokio::net::lookup_host((host.as_str(), port))
                .await?
                .next()
                .ok_or_else(|| anyhow::anyhow!("--host {host:?} resolves to no address"))?;
            let listener = tokio::net::TcpListener::bind(address)
                .await
                .map_err(|err| anyhow::anyhow!("cannot listen on {address}: {err}"))?;
            tracing::info!(address = %listener.local_addr()?, "listening");
            inference_engine_server::serve(listener, ctx, shutdown_signal()).await?;
            tracing::info!("stopped");
            Ok(())
        }
        Command::Worker => {
            let ctx = Arc::new(AppContext::build(&cli.settings, Role::Worker).await?);
            inference_engine_worker::run(ctx, shutdown_signal()).await;
            Ok(())
        }
        Command::Models {
            command: ModelsCommand::Inspect { path },
        } => {
            let report = inference_engine_app::repository::inspect_model(&path)
                .map_err(|err| anyhow::anyhow!("{}: {err}", path.display()))?;
            println!("{report}");
            Ok(())
        }
        Command::Migrate => {
            AppContext::migrate(&cli.settings).await?;
            tracing::info!("job store schema is up to date");
            Ok(())
        }
    }
}
