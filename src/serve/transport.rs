//! The connection loop: accepts TCP connections and serves HTTP/1.1 and HTTP/2 on each, with
//! the limits that keep slow or abusive clients from holding the server.
//!
//! `axum::serve` has no timeouts at all: a client that sends one header line a second keeps its
//! connection (and a file descriptor) forever. hyper has the limits, reachable only through
//! hyper-util's connection builder, so the loop is ours: hyper-util's builder with a timer (for
//! the header-read timeout), a cap on open connections (beyond it, connections wait in the
//! kernel's accept queue instead of exhausting descriptors), and hyper-util's graceful shutdown.
//! The body-read deadline is a middleware on the router ([`read_body_within`]), so an
//! application that embeds the router keeps it.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;

use super::error::ApiError;

/// How much of the server one client connection may hold, and for how long.
///
/// The defaults suit a server on loopback or behind a proxy: 10 s to send a request's headers,
/// 30 s to send its body, 1,024 connections at once, 64 KiB of headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Time a client has to send a request's headers, from their first byte (on a kept-alive
    /// connection, from the end of the previous response); a new connection also has this long
    /// to send its first byte. Past it the connection is closed: the slowloris defence.
    pub header_read_timeout: Duration,
    /// Time a client has to send a request's whole body once its headers are in; past it the
    /// request gets 408 and the connection is closed.
    pub body_read_timeout: Duration,
    /// Connections served at once. Further clients wait in the listen queue until one closes.
    pub max_connections: usize,
    /// Largest request head (request line and headers) in bytes, at least 8 KiB; a larger one
    /// gets 431.
    pub max_header_bytes: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            max_connections: 1024,
            max_header_bytes: 64 * 1024,
        }
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then lets the requests in flight
/// finish.
pub(super) async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // hyper-util exposes the read buffer's bound, not hyper's header-size one: a head that
        // does not fit the buffer gets 431 all the same (8 KiB is hyper's minimum).
        .max_buf_size(limits.max_header_bytes.max(8 * 1024));
    builder.http2().timer(TokioTimer::new()).max_header_list_size(saturating_u32(limits.max_header_bytes));
    let open = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&open).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break, // the semaphore is never closed
            },
            () = &mut shutdown => break,
        };
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors or a connection reset before it was accepted: the
                    // listener itself is fine, so wait a moment (the descriptors may come back)
                    // rather than spin or stop serving.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Streamed tokens should leave as soon as they are written, not wait for Nagle.
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone().layer(axum::Extension(ConnectInfo(remote))));
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let header_read_timeout = limits.header_read_timeout;
        tokio::spawn(async move {
            // hyper's header timer starts at a request's first byte: a client that connects and
            // sends nothing would hold its connection (and a place under the cap) forever.
            let mut first = [0u8; 1];
            if !matches!(
                tokio::time::timeout(header_read_timeout, stream.peek(&mut first)).await,
                Ok(Ok(1..))
            ) {
                return;
            }
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!(%remote, error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

fn saturating_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// What [`read_body_within`] allows a request body.
#[derive(Debug, Clone, Copy)]
pub(super) struct BodyLimits {
    pub(super) max_bytes: usize,
    pub(super) timeout: Duration,
}

/// Reads each request's whole body, at most `max_bytes` of it, within `timeout` of its headers
/// arriving, before any handler runs: 408 when the body is late, 413 when it is too large.
///
/// A total deadline, not an idle one: tower-http's body timeout restarts at every frame, so a
/// client dripping a byte a second would hold its request forever. Every route reads a JSON
/// body whole anyway, so buffering it here costs nothing.
pub(super) async fn read_body_within(
    axum::extract::State(limits): axum::extract::State<BodyLimits>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let too_large = || {
        ApiError::refused(StatusCode::PAYLOAD_TOO_LARGE, "The request body is too large.", "body_too_large")
    };
    // A declared length over the limit is refused before a byte of the body is read.
    if axum::body::HttpBody::size_hint(request.body()).lower() > limits.max_bytes as u64 {
        return too_large().into_response();
    }
    let (parts, body) = request.into_parts();
    let read = axum::body::to_bytes(body, limits.max_bytes);
    let bytes = match tokio::time::timeout(limits.timeout, read).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) => {
            let over_limit =
                std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            return if over_limit {
                too_large()
            } else {
                ApiError::invalid(format!("could not read the request body: {e}"))
            }
            .into_response();
        }
        Err(_) => {
            let message =
                format!("The request body took longer than {:.0} s to arrive.", limits.timeout.as_secs_f64());
            return ApiError::refused(StatusCode::REQUEST_TIMEOUT, message, "body_timeout").into_response();
        }
    };
    next.run(axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes))).await
}
