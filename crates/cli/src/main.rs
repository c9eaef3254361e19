//! The `inference-engine` binary: parses the command line and hands over to `app` and
//! `server`. Nothing else lives here.

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use inference_engine_app::settings::load_dotenv;
use inference_engine_app::{AppContext, Role, Settings, check, keys, shutdown_signal, telemetry};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Validate settings, engine.toml, API keys, the model repository and connectivity; exit 0
    /// only if `serve` would start. One `ok`/`WARN`/`FAIL` line per check on stdout.
    Check {
        /// Also load every ONNX model, as warm-up would; a load failure is a warning.
        #[arg(long)]
        load_models: bool,
    },
    /// API key tools.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Model repository tools.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
}

impl Command {
    /// `check` and `keys` write their report (or the key) to stdout, where log lines would get
    /// in the way; everything they have to say is in that output.
    fn writes_logs(&self) -> bool {
        !matches!(self, Self::Check { .. } | Self::Keys { .. })
    }
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Print a new random key (32 bytes from the OS, hex) and, on the next line, its
    /// `API_KEYS` entry `key:tenant:scopes`, checked against the production guards.
    Generate {
        #[arg(long, default_value = keys::DEFAULT_TENANT)]
        tenant: String,
        /// Comma-separated: predict, read_models, admin.
        #[arg(long, default_value = keys::DEFAULT_SCOPES)]
        scopes: String,
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
    let _telemetry = if cli.command.writes_logs() {
        match telemetry::init(&cli.settings.log_level, cli.settings.log_format) {
            Ok(guard) => Some(guard),
            Err(message) => {
                eprintln!("error: {message}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
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
            // Once, on stderr, and not again as a log line: logs go to stdout, so a log line
            // would put the same sentence twice in front of whoever reads the terminal or the
            // container's output; the exit status tells supervisors the start failed.
            eprintln!("error: {}", error_line(&err));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, each cause once: most errors already say their
/// cause in their own sentence (`job store: <the store's error>`), which `{:#}` would repeat.
fn error_line(err: &anyhow::Error) -> String {
    let mut line = err.to_string();
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    line
}

/// Writes `text` and a newline to stdout. A reader that closed the pipe (`| head -1`) has
/// read all it wanted: the rest is dropped and the command still succeeds, where `println!`
/// would panic.
fn print_line(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{text}").and_then(|()| stdout.flush()) {
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        written => written.map_err(|err| anyhow::anyhow!("cannot write to stdout: {err}")),
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
            // The worker's own metrics (the jobs it runs) on its internal listener.
            let internal = match ctx.settings.admin_listen_addr {
                Some(address) => {
                    Some(inference_engine_server::serve_internal(address, Arc::clone(&ctx)).await?)
                }
                None => None,
            };
            inference_engine_worker::run(ctx, shutdown_signal()).await;
            if let Some(internal) = internal {
                internal.abort();
            }
            Ok(())
        }
        Command::Models {
            command: ModelsCommand::Inspect { path },
        } => {
            let report = inference_engine_app::repository::inspect_model(&path, &cli.settings)
                .map_err(|err| anyhow::anyhow!("{}: {err}", path.display()))?;
            print_line(&report)?;
            Ok(())
        }
        Command::Migrate => {
            let report = AppContext::migrate(&cli.settings).await?;
            tracing::info!("job store: {report}");
            Ok(())
        }
        Command::Check { load_models } => {
            let report = check::run(&cli.settings, check::CheckOptions { load_models }, |line| {
                // A reader that stopped reading still gets the exit status.
                let _ = print_line(&line.to_string());
            })
            .await;
            print_line(&report.summary())?;
            if report.passed() {
                Ok(())
            } else {
                Err(anyhow::anyhow!(
                    "{} check(s) failed: see the FAIL lines on stdout",
                    report.count(check::Outcome::Fail)
                ))
            }
        }
        Command::Keys {
            command: KeysCommand::Generate { tenant, scopes },
        } => {
            let generated = keys::generate(&tenant, &scopes)
                .map_err(|err| anyhow::anyhow!("no key generated: {err}"))?;
            print_line(&format!("{}\n{}", generated.key, generated.entry))?;
            Ok(())
        }
    }
}
