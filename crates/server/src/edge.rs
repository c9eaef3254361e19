//! The network edge of every listener: the accept loop with its connection cap, and the
//! per-connection timers that cut off slow clients (`HTTP_HEADER_READ_TIMEOUT_MS`,
//! `HTTP_IDLE_TIMEOUT_S`, `MAX_CONNECTIONS`). The body timeout is the route guard's
//! (`middleware::enforce_body_limit`), where it can still answer a JSON 408.
//!
//! hyper's own header-read timer is not used: it restarts whenever hyper waits for a head, so
//! it would also close keep-alive connections after the header timeout and leave no room for
//! a longer idle timeout. Here a connection's clock distinguishes "idle between requests" from
//! "a head has begun to arrive".

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;
use futures_util::Stream;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use inference_engine_app::Settings;
use inference_engine_core::job::RequestId;
use inference_engine_core::observe::LogEvery;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;

use crate::error::{ErrorStyle, protocol_rejection_code, render_error_body};
use crate::middleware::HttpService;

/// hyper's default header count, kept: a request with more gets a JSON 431.
const MAX_HEADERS: usize = 100;
/// The request line and headers together, at most (nginx allows 4 × 8 KiB lines by default).
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// The edge settings of a listener.
#[derive(Debug, Clone, Copy)]
pub struct EdgeLimits {
    pub header_read: Duration,
    pub idle: Duration,
    pub max_connections: usize,
}

impl EdgeLimits {
    pub fn from_settings(settings: &Settings) -> Self {
        Self {
            header_read: Duration::from_millis(settings.http_header_read_timeout_ms.max(1)),
            idle: Duration::from_secs(settings.http_idle_timeout_s.max(1)),
            max_connections: settings.max_connections.max(1),
        }
    }
}

/// Closes a connection past the cap at once: a refused client learns it now instead of
/// waiting in the backlog, and the open ones keep their file descriptors.
fn refuse(stream: TcpStream) {
    static REFUSED: LogEvery = LogEvery::new(Duration::from_secs(10));
    if let Some(held_back) = REFUSED.admit() {
        tracing::warn!(
            similar_not_logged = held_back,
            "connection refused: MAX_CONNECTIONS connections are open"
        );
    }
    drop(stream);
}

/// Accept errors that concern one connection, not the listener.
fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Serves HTTP/1.1 on `listener` until `shutdown` resolves; then stops accepting, lets each
/// connection finish its in-flight request (idle ones close at once) and returns when all are
/// closed.
pub async fn serve_http<S: HttpService>(
    listener: TcpListener,
    service: S,
    limits: EdgeLimits,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let (close, closing) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) if is_connection_error(&err) => continue,
                Err(err) => {
                    // Out of file descriptors, typically: back off instead of spinning.
                    tracing::error!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            refuse(stream);
            continue;
        };
        // Without TCP_NODELAY, Nagle's algorithm can hold a small response back for a
        // delayed ACK.
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_connection(
            stream,
            service.clone(),
            limits,
            closing.clone(),
            permit,
        ));
    }
    drop(listener);
    let _ = close.send(true);
    drop(closing);
    close.closed().await;
    Ok(())
}

async fn serve_connection<S: HttpService>(
    stream: TcpStream,
    service: S,
    limits: EdgeLimits,
    mut closing: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    let clock = Arc::new(ConnectionClock::new());
    let io = TokioIo::new(EdgeIo::new(stream, Arc::clone(&clock)));
    let hyper_service = {
        let clock = Arc::clone(&clock);
        hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let busy = Busy::start(&clock);
            let mut service = service.clone();
            async move {
                let response = tower::Service::call(&mut service, request.map(Body::new)).await;
                drop(busy);
                response
            }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .header_read_timeout(None)
        .max_headers(MAX_HEADERS)
        .max_header_size(MAX_HEAD_BYTES);
    let connection = builder.serve_connection(io, hyper_service);
    let mut connection = std::pin::pin!(connection);
    let mut closing_down = false;
    loop {
        let deadline = clock.deadline(&limits, closing_down);
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(error = %err, "connection ended with an error");
                }
                return;
            }
            () = sleep_until(deadline) => match clock.expired(&limits, closing_down) {
                // A head that takes this long is slowloris or a broken client: no answer.
                Some(Expiry::Head) => return,
                Some(Expiry::Idle) => {
                    connection.as_mut().graceful_shutdown();
                    closing_down = true;
                }
                None => {}
            },
            () = clock.changed.notified() => {}
            _ = closing.changed(), if !closing_down => {
                connection.as_mut().graceful_shutdown();
                closing_down = true;
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// `head_since` when no head has begun.
const NO_HEAD: u64 = u64::MAX;

/// What one connection is doing, in milliseconds since it was accepted: shared by its IO (which
/// sees bytes arrive), its service (which sees requests start and end) and its timer.
struct ConnectionClock {
    accepted: Instant,
    /// Requests handed to the service and not yet answered.
    busy: AtomicU32,
    /// When the last request was answered (or the connection accepted).
    idle_since: AtomicU64,
    /// When the first byte of the next head arrived; a new connection's head is due from its
    /// accept.
    head_since: AtomicU64,
    changed: Notify,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    Head,
    Idle,
}

impl ConnectionClock {
    fn new() -> Self {
        Self {
            accepted: Instant::now(),
            busy: AtomicU32::new(0),
            idle_since: AtomicU64::new(0),
            head_since: AtomicU64::new(0),
            changed: Notify::new(),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.accepted.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }

    fn is_busy(&self) -> bool {
        self.busy.load(Ordering::Acquire) > 0
    }

    fn bytes_arrived(&self) {
        if !self.is_busy() && self.head_since.load(Ordering::Acquire) == NO_HEAD {
            self.head_since.store(self.now(), Ordering::Release);
            self.changed.notify_one();
        }
    }

    fn next(&self, limits: &EdgeLimits, closing_down: bool) -> Option<(Instant, Expiry)> {
        if self.is_busy() {
            return None;
        }
        let at = |millis: u64, after: Duration| {
            self.accepted + Duration::from_millis(millis).saturating_add(after)
        };
        match self.head_since.load(Ordering::Acquire) {
            NO_HEAD if closing_down => None,
            NO_HEAD => Some((
                at(self.idle_since.load(Ordering::Acquire), limits.idle),
                Expiry::Idle,
            )),
            since => Some((at(since, limits.header_read), Expiry::Head)),
        }
    }

    fn deadline(&self, limits: &EdgeLimits, closing_down: bool) -> Option<Instant> {
        self.next(limits, closing_down).map(|(at, _)| at)
    }

    fn expired(&self, limits: &EdgeLimits, closing_down: bool) -> Option<Expiry> {
        self.next(limits, closing_down)
            .filter(|(at, _)| *at <= Instant::now())
            .map(|(_, expiry)| expiry)
    }
}

/// A request in the service, from its head to its response (dropped with the future if the
/// client goes away).
struct Busy(Arc<ConnectionClock>);

impl Busy {
    fn start(clock: &Arc<ConnectionClock>) -> Self {
        clock.busy.fetch_add(1, Ordering::AcqRel);
        clock.head_since.store(NO_HEAD, Ordering::Release);
        clock.changed.notify_one();
        Self(Arc::clone(clock))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let clock = &self.0;
        clock.idle_since.store(clock.now(), Ordering::Release);
        clock.busy.fetch_sub(1, Ordering::AcqRel);
        clock.changed.notify_one();
    }
}

/// The connection's socket, which tells the clock when bytes arrive and turns hyper's own
/// bodiless rejections of unparsable heads (400, 414, 431) into the JSON error contract.
///
/// hyper answers those before any service runs, with no hook; its answer is the only thing
/// written on the connection then (it closes right after), and every response of ours carries
/// `x-request-id`, so the write is recognised exactly and replaced whole.
struct EdgeIo {
    stream: TcpStream,
    clock: Arc<ConnectionClock>,
    /// The replacement being written, and how much of it is out.
    replacement: Option<(Vec<u8>, usize)>,
}

impl EdgeIo {
    fn new(stream: TcpStream, clock: Arc<ConnectionClock>) -> Self {
        Self {
            stream,
            clock,
            replacement: None,
        }
    }

    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, written)) = &mut self.replacement {
            if *written == bytes.len() {
                self.replacement = None;
                break;
            }
            let n =
                std::task::ready!(Pin::new(&mut self.stream).poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        Poll::Ready(Ok(()))
    }

    /// Takes over `buf` if it is one of hyper's own rejections.
    fn intercept(&mut self, buf: &[u8]) -> bool {
        if self.clock.is_busy() {
            return false;
        }
        match json_rejection(buf) {
            Some(replacement) => {
                self.replacement = Some((replacement, 0));
                true
            }
            None => false,
        }
    }
}

/// The JSON version of a bodiless 4xx head hyper wrote for a request it could not parse.
fn json_rejection(head: &[u8]) -> Option<Vec<u8>> {
    if !head.starts_with(b"HTTP/1.1 4") || !head.ends_with(b"\r\n\r\n") || head.len() > 1024 {
        return None;
    }
    let head = std::str::from_utf8(head).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let status = StatusCode::from_bytes(status_line.get(9..12)?.as_bytes()).ok()?;
    let mut date = None;
    for line in lines {
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("x-request-id:") || lower.starts_with("content-type:") {
            return None;
        }
        if lower.starts_with("date:") {
            date = Some(line);
        }
    }
    let (code, detail) = protocol_rejection_code(status);
    let request_id = RequestId::generate();
    let body = render_error_body(
        ErrorStyle::Detail,
        detail,
        code,
        request_id.as_str(),
        &serde_json::Map::new(),
    );
    tracing::info!(
        status = status.as_u16(),
        code,
        request_id = request_id.as_str(),
        "request rejected before routing: its head could not be parsed"
    );
    let mut response = format!(
        "{status_line}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nx-request-id: {}\r\nconnection: close\r\n",
        body.len(),
        request_id.as_str()
    );
    if let Some(date) = date {
        response.push_str(date);
        response.push_str("\r\n");
    }
    response.push_str("\r\n");
    let mut response = response.into_bytes();
    response.extend_from_slice(&body);
    Some(response)
}

impl AsyncRead for EdgeIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.clock.bytes_arrived();
        }
        result
    }
}

impl AsyncWrite for EdgeIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.poll_replacement(cx))?;
        if self.intercept(buf) {
            // The replacement stands for all of hyper's bytes; flush and shutdown send it.
            return match self.poll_replacement(cx) {
                Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
                _ => Poll::Ready(Ok(buf.len())),
            };
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.poll_replacement(cx))?;
        let mut non_empty = bufs.iter().filter(|buf| !buf.is_empty());
        if let (Some(only), None) = (non_empty.next(), non_empty.next())
            && self.intercept(only)
        {
            let written = only.len();
            return match self.poll_replacement(cx) {
                Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
                _ => Poll::Ready(Ok(written)),
            };
        }
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_replacement(cx))?;
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_replacement(cx))?;
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// A gRPC connection holding its place under `MAX_CONNECTIONS`.
#[derive(Debug)]
pub struct CappedStream {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl tonic::transport::server::Connected for CappedStream {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for CappedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for CappedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The gRPC listener's connections, at most `max_connections` open at once (past it, closed at
/// once like the HTTP listener's).
pub fn capped_incoming(
    listener: TcpListener,
    max_connections: usize,
) -> impl Stream<Item = io::Result<CappedStream>> {
    let permits = Arc::new(Semaphore::new(max_connections.max(1)));
    futures_util::stream::unfold((listener, permits), |(listener, permits)| async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                        refuse(stream);
                        continue;
                    };
                    // Without TCP_NODELAY, Nagle's algorithm holds small responses back
                    // for a delayed ACK (tens of milliseconds per call).
                    let _ = stream.set_nodelay(true);
                    let capped = CappedStream {
                        stream,
                        _permit: permit,
                    };
                    return Some((Ok(capped), (listener, permits)));
                }
                Err(err) if is_connection_error(&err) => {}
                Err(err) => {
                    tracing::error!(error = %err, "grpc accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    })
}
