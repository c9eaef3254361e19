//! The HTTP API on axum: routes, wire types and OpenAPI, authentication, middleware, and the
//! one table that maps error kinds to HTTP statuses. Routes talk to the core services held by
//! the `AppContext`, never to SQL or Redis directly.
//!
//! Layout:
//! - [`routes`]: the router, one module per resource (`predict`, `jobs`, `models`, `health`,
//!   `docs`).
//! - [`api`]: request/response types and the OpenAPI document.
//! - [`middleware`]: request id and access log, authentication, scopes, body limit.
//! - [`ratelimit`]: per-tenant, per-group limits on the HTTP path and their headers.
//! - [`extract`]: `ApiJson<T>`, whose rejections are JSON errors.
//! - [`grpc`]: the Open Inference Protocol over gRPC (`GRPC_PORT`) and `grpc.health.v1`.
//! - [`edge`]: the accept loop, connection cap and slow-client timers of every listener.
//! - [`error`]: `ApiError`, `ErrorKind → StatusCode`, the JSON error body.

pub mod api;
pub mod edge;
pub mod error;
pub mod extract;
pub mod grpc;
pub mod middleware;
pub mod ratelimit;
pub mod routes;

use std::future::Future;
use std::sync::Arc;

use inference_engine_app::{AppContext, GrpcPort, QueueBackend, job_loops, reload_on_sighup};
use tokio::net::TcpListener;

pub use routes::router;

/// Serves the API on `listener` until `shutdown` resolves, then: flips `/ready` to draining,
/// stops accepting, lets in-flight requests finish, stops the in-process job loops (without
/// Redis), and flushes the job writer, all within `SHUTDOWN_TIMEOUT_S` of the signal. Every
/// request answered before it returns is durably recorded.
pub async fn serve(
    listener: TcpListener,
    ctx: Arc<AppContext>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // First, so a bad ADMIN_LISTEN_ADDR stops the start before anything runs.
    let internal = match ctx.settings.admin_listen_addr {
        Some(address) => Some(serve_internal(address, Arc::clone(&ctx)).await?),
        None => None,
    };
    let grpc_listener = match ctx.settings.grpc_port {
        GrpcPort::Port(port) => {
            let address = std::net::SocketAddr::new(listener.local_addr()?.ip(), port);
            let grpc = TcpListener::bind(address).await.map_err(|err| {
                std::io::Error::new(
                    err.kind(),
                    format!("GRPC_PORT {port}: cannot listen on {address}: {err}"),
                )
            })?;
            let bound = grpc.local_addr()?;
            let _ = ctx.grpc_address.set(bound);
            tracing::info!(address = %bound, "grpc listening");
            Some(grpc)
        }
        GrpcPort::Off => None,
    };
    let job_loops = match ctx.queue_backend {
        QueueBackend::InProcess(_) => {
            if let Err(err) = ctx.resume_unfinished_jobs().await {
                tracing::error!(error = %err, "could not resume unfinished jobs; the reconciler will retry");
            }
            Some(job_loops::start_for(&ctx))
        }
        QueueBackend::Redis => None,
    };
    let warm_up = {
        let ctx = Arc::clone(&ctx);
        tokio::spawn(async move { ctx.warm_up().await })
    };
    let reloads = tokio::spawn(reload_on_sighup(Arc::clone(&ctx)));
    let app = router(Arc::clone(&ctx));
    let lifecycle = Arc::clone(&ctx.lifecycle);
    // Set by the signal: when the whole drain must be over (`AppContext::drain_deadline`).
    let (signalled, on_signal) = tokio::sync::watch::channel(None);
    let start_draining = {
        let ctx = Arc::clone(&ctx);
        async move {
            shutdown.await;
            lifecycle.start_draining();
            let _ = signalled.send(Some(ctx.drain_deadline()));
        }
    };
    let grpc = grpc_listener.map(|grpc_listener| {
        let mut on_signal = on_signal.clone();
        tokio::spawn(grpc::serve_grpc(
            grpc_listener,
            Arc::clone(&ctx),
            async move {
                let _ = on_signal.wait_for(Option::is_some).await;
            },
        ))
    });
    let server = edge::serve_http(
        listener,
        app,
        edge::EdgeLimits::from_settings(&ctx.settings),
        start_draining,
    );
    let drain_over = {
        let mut on_signal = on_signal.clone();
        async move {
            let deadline = on_signal
                .wait_for(Option::is_some)
                .await
                .ok()
                .and_then(|deadline| *deadline);
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        }
    };
    let result = tokio::select! {
        result = server => result,
        () = drain_over => {
            tracing::warn!(
                shutdown_timeout_s = ctx.settings.shutdown_timeout_s,
                "in-flight requests did not finish in time; closing"
            );
            Ok(())
        }
    };
    // Everything below shares the signal's deadline (a server that failed starts one now).
    let deadline = (*on_signal.borrow()).unwrap_or_else(|| ctx.drain_deadline());
    reloads.abort();
    if let Some(grpc) = grpc {
        // In-flight gRPC calls finish like HTTP requests do, within the same drain.
        let abort = grpc.abort_handle();
        match tokio::time::timeout_at(deadline, grpc).await {
            Ok(Ok(Err(err))) => tracing::error!(error = %err, "the gRPC listener failed"),
            Err(_) => abort.abort(),
            _ => {}
        }
    }
    if let Some(internal) = internal {
        internal.abort();
    }
    warm_up.abort();
    if let Some(job_loops) = job_loops {
        job_loops.stop(deadline).await;
    }
    ctx.shutdown(deadline).await;
    result
}

/// Starts the internal listener (`/metrics`, `/debug/*`, no authentication) on `address`, for
/// `serve` and `worker` alike. It runs until the returned task is aborted.
pub async fn serve_internal(
    address: std::net::SocketAddr,
    ctx: Arc<AppContext>,
) -> std::io::Result<tokio::task::JoinHandle<std::io::Result<()>>> {
    let listener = TcpListener::bind(address).await.map_err(|err| {
        std::io::Error::new(
            err.kind(),
            format!("ADMIN_LISTEN_ADDR {address}: cannot listen: {err}"),
        )
    })?;
    tracing::info!(address = %listener.local_addr()?, "internal listener (/metrics, /debug) without authentication");
    let limits = edge::EdgeLimits::from_settings(&ctx.settings);
    Ok(tokio::spawn(edge::serve_http(
        listener,
        routes::internal_router(ctx),
        limits,
        std::future::pending(),
    )))
}
