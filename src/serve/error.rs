//! Errors in the OpenAI shape: `{"error": {"message", "type", "param", "code"}}` with the
//! matching HTTP status.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use crate::core::{Error, ErrorKind};
use crate::models::wire::{ErrorObject, ErrorReply, WireError};

/// An error in the OpenAI shape.
#[derive(Debug)]
pub(super) struct ApiError {
    pub(super) status: StatusCode,
    kind: &'static str,
    message: String,
    param: Option<String>,
    code: Option<&'static str>,
}

pub(super) type ApiResult<T> = std::result::Result<T, ApiError>;

impl ApiError {
    /// A 400 `invalid_request_error`.
    pub(super) fn invalid(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_request_error",
            message: message.into(),
            param: None,
            code: None,
        }
    }

    /// Blames the request field `param`.
    pub(super) fn param(mut self, param: &str) -> Self {
        self.param = Some(param.to_owned());
        self
    }

    /// An `invalid_request_error` with its own status and code.
    pub(super) fn refused(status: StatusCode, message: impl Into<String>, code: &'static str) -> Self {
        Self { status, code: Some(code), ..Self::invalid(message) }
    }

    pub(super) fn not_found_model<'a>(model: &str, available: impl Iterator<Item = &'a String>) -> Self {
        let list: Vec<&str> = available.map(String::as_str).collect();
        Self::refused(
            StatusCode::NOT_FOUND,
            format!("The model `{model}` does not exist. Available models: {}.", list.join(", ")),
            "model_not_found",
        )
        .param("model")
    }

    /// The body, also sent as an event when a stream fails midway.
    pub(super) fn reply(&self) -> ErrorReply {
        ErrorReply {
            error: ErrorObject {
                message: self.message.clone(),
                kind: Some(self.kind.to_owned()),
                param: self.param.clone(),
                code: self.code.map(str::to_owned),
            },
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let (status, kind, code) = match e.kind() {
            ErrorKind::InvalidInput | ErrorKind::Parse => {
                (StatusCode::BAD_REQUEST, "invalid_request_error", None)
            }
            ErrorKind::ContextLengthExceeded => {
                (StatusCode::BAD_REQUEST, "invalid_request_error", Some("context_length_exceeded"))
            }
            ErrorKind::ModelTransient => (StatusCode::SERVICE_UNAVAILABLE, "server_error", None),
            ErrorKind::Timeout => (StatusCode::GATEWAY_TIMEOUT, "server_error", None),
            ErrorKind::LimitExceeded => {
                (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request_error", Some("limit_exceeded"))
            }
            // The answer leaked a canary or a secret: not the caller's fault, and not retryable.
            ErrorKind::Blocked => {
                (StatusCode::UNPROCESSABLE_ENTITY, "content_filter", Some("output_blocked"))
            }
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "server_error", None),
        };
        Self { status, kind, message: e.to_string(), param: None, code }
    }
}

impl From<WireError> for ApiError {
    fn from(e: WireError) -> Self {
        Self { param: e.param, ..Self::invalid(e.message) }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.reply())).into_response()
    }
}

/// Parses a JSON body, mapping size, syntax and shape problems to OpenAI-style 4xx errors.
pub(super) fn parse_body<T: DeserializeOwned>(
    body: std::result::Result<Bytes, BytesRejection>,
) -> ApiResult<T> {
    let bytes = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                ..ApiError::invalid("The request body is too large.")
            }
        } else {
            ApiError::invalid(format!("could not read the request body: {rejection}"))
        }
    })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        let message = if e.is_syntax() || e.is_eof() {
            format!("The request body is not valid JSON: {e}")
        } else {
            format!("Invalid request: {e}")
        };
        ApiError::invalid(message)
    })
}
