//! The routes' middleware: API-key authentication and the access log.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::Server;
use super::error::ApiError;

/// Constant-time comparison, so the key cannot be guessed byte by byte from response times.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Requires `Authorization: Bearer KEY` when the server has a key.
pub(super) async fn authorize(State(server): State<Arc<Server>>, request: Request, next: Next) -> Response {
    if let Some(key) = &server.api_key {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !same_secret(given.as_bytes(), key.as_bytes()) {
            return ApiError::refused(
                StatusCode::UNAUTHORIZED,
                "Incorrect or missing API key: send Authorization: Bearer <key>",
                "invalid_api_key",
            )
            .into_response();
        }
    }
    next.run(request).await
}

/// One structured log line per request: method, path, status, duration.
pub(super) async fn access_log(request: Request, next: Next) -> Response {
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    tracing::info!(
        target: "catena::serve::access",
        %method, %path, status = response.status().as_u16(), ms = started.elapsed().as_millis() as u64,
    );
    response
}
