//! Benchmark reference for the `predict_echo` scenario: a bare axum server that parses the same
//! predict JSON as the engine and answers `{"result": data}`, with no auth, job records or logging.
//!
//! Usage: `ref-axum [--port N]` (or env `PORT`); listens on 127.0.0.1, port 8001 by default.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

const DEFAULT_PORT: u16 = 8001;

/// The predict request body, same shape as the engine's.
#[derive(Debug, Deserialize)]
struct PredictRequest {
    #[expect(dead_code, reason = "parsed to match the engine's work, not used")]
    model: String,
    #[expect(dead_code, reason = "parsed to match the engine's work, not used")]
    version: Option<String>,
    data: Value,
}

async fn predict(Json(request): Json<PredictRequest>) -> Json<Value> {
    Json(json!({ "result": request.data }))
}

async fn health() -> &'static str {
    "ok"
}

/// The port from `--port N` / `--port=N`, else env `PORT`, else the default.
fn parse_port() -> Result<u16, String> {
    let mut args = std::env::args().skip(1);
    let mut from_args = None;
    while let Some(arg) = args.next() {
        if arg == "--port" {
            from_args = Some(args.next().ok_or("--port needs a value")?);
        } else if let Some(value) = arg.strip_prefix("--port=") {
            from_args = Some(value.to_owned());
        } else if arg == "--help" || arg == "-h" {
            return Err("usage: ref-axum [--port N]   (or env PORT)".to_owned());
        } else {
            return Err(format!(
                "unexpected argument {arg:?}; usage: ref-axum [--port N]"
            ));
        }
    }
    let raw = match from_args {
        Some(value) => value,
        None => match std::env::var("PORT") {
            Ok(value) => value,
            Err(std::env::VarError::NotPresent) => return Ok(DEFAULT_PORT),
            Err(err) => return Err(format!("PORT: {err}")),
        },
    };
    raw.trim()
        .parse()
        .map_err(|err| format!("invalid port {raw:?}: {err}"))
}

async fn serve(port: u16) -> std::io::Result<()> {
    let app = Router::new()
        .route("/predict", post(predict))
        .route("/health", get(health));
    let listener =
        tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await?;
    eprintln!("ref-axum listening on {}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
}

/// Resolves on SIGINT or SIGTERM (SIGTERM on Unix only).
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            eprintln!("ref-axum: cannot listen for ctrl-c: {err}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                eprintln!("ref-axum: cannot listen for SIGTERM: {err}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

fn main() -> ExitCode {
    let port = match parse_port() {
        Ok(port) => port,
        Err(message) => {
            eprintln!("ref-axum: {message}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("ref-axum: cannot build the tokio runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(port)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("ref-axum: {err}");
            ExitCode::FAILURE
        }
    }
}
