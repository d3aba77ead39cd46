//! An OpenAI-compatible HTTP server for catena models and chains (`catena serve`).
//!
//! Any [`Runnable<ChatRequest, ChatResponse>`](crate::core::Runnable) (a model, a RAG chain, an
//! agent) is served under a model name at `POST /v1/chat/completions`, any
//! [`Embedder`](crate::core::Embedder) at `POST /v1/embeddings`; `GET /v1/models` lists them and
//! `GET /health` answers `{"status": "ok"}`. Request and response bodies follow the public OpenAI
//! API reference (chat completions with streaming over server-sent events, tools, `response_format`,
//! usage; embeddings as floats or base64), and so do errors:
//! `{"error": {"message", "type", "param", "code"}}` with the matching status.
//!
//! ```no_run
//! use std::sync::Arc;
//! use catena::core::{ChatModel, Embedder};
//! use catena::models::{LlamaChatModel, LlamaEmbedder};
//! use catena::serve::Server;
//!
//! # async fn demo() -> catena::core::Result<()> {
//! let chat: Arc<dyn ChatModel> = Arc::new(LlamaChatModel::load_default().await?);
//! let embed: Arc<dyn Embedder> = Arc::new(LlamaEmbedder::load_default().await?);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await.map_err(|e| catena::core::Error::io("127.0.0.1:8080", e))?;
//! Server::new().with_chat_model("chat", chat).with_embedder("embed", embed)
//!     .serve(listener, async { let _ = tokio::signal::ctrl_c().await; })
//!     .await
//! # }
//! ```
//!
//! Safety limits: request bodies over `max_body_bytes` (default 1 MiB) get 413, `max_tokens` over
//! `max_tokens_cap` (default 4096) gets 400, and a server bound beyond loopback refuses to start
//! without an API key (`Authorization: Bearer ...`, compared in constant time).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use futures::StreamExt;
use futures::stream::BoxStream;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::core::{
    ChatModel, ChatRequest, ChatResponse, Embedder, Error, ErrorKind, FinishReason, Message, ResponseFormat,
    Result, Role, RunContext, Runnable, ToolCall, ToolChoice, ToolSpec, async_trait,
};

/// A chat endpoint's implementation: a model, or any chain from requests to responses.
pub type ChatRunnable = Arc<dyn Runnable<ChatRequest, ChatResponse>>;

/// A shared chat model as a runnable (an `Arc<dyn ChatModel>` cannot be cast to one directly).
struct ModelRunnable(Arc<dyn ChatModel>);

#[async_trait]
impl Runnable<ChatRequest, ChatResponse> for ModelRunnable {
    async fn invoke(&self, input: ChatRequest, ctx: &RunContext) -> Result<ChatResponse> {
        self.0.chat(input, ctx).await
    }

    fn stream<'a>(&'a self, input: ChatRequest, ctx: &'a RunContext) -> BoxStream<'a, Result<ChatResponse>> {
        Runnable::stream(self.0.as_ref(), input, ctx)
    }
}

/// The server: named chat runnables and embedders, and its limits.
#[derive(Clone)]
pub struct Server {
    chat: BTreeMap<String, ChatRunnable>,
    embed: BTreeMap<String, Arc<dyn Embedder>>,
    api_key: Option<String>,
    max_body_bytes: usize,
    max_tokens_cap: u32,
}

impl Default for Server {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("chat", &self.chat.keys().collect::<Vec<_>>())
            .field("embed", &self.embed.keys().collect::<Vec<_>>())
            .field("auth", &self.api_key.is_some())
            .finish_non_exhaustive()
    }
}

/// An error in the OpenAI shape.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
    param: Option<String>,
    code: Option<&'static str>,
}

impl ApiError {
    fn invalid(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_request_error",
            message: message.into(),
            param: None,
            code: None,
        }
    }

    fn param(mut self, param: &str) -> Self {
        self.param = Some(param.to_owned());
        self
    }

    fn not_found_model(model: &str, available: Vec<&String>) -> Self {
        let list: Vec<&str> = available.iter().map(|s| s.as_str()).collect();
        Self {
            status: StatusCode::NOT_FOUND,
            kind: "invalid_request_error",
            message: format!("The model `{model}` does not exist. Available models: {}.", list.join(", ")),
            param: Some("model".to_owned()),
            code: Some("model_not_found"),
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
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "server_error", None),
        };
        Self { status, kind, message: e.to_string(), param: None, code }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}});
        (self.status, axum::Json(body)).into_response()
    }
}

type ApiResult<T> = std::result::Result<T, ApiError>;

impl Server {
    /// A server with nothing to serve yet, no API key, 1 MiB bodies, 4096 tokens per reply.
    #[must_use]
    pub fn new() -> Self {
        Self {
            chat: BTreeMap::new(),
            embed: BTreeMap::new(),
            api_key: None,
            max_body_bytes: 1 << 20,
            max_tokens_cap: 4096,
        }
    }

    /// Serves `runnable` (a chain, an agent, or a model) as chat model `name`.
    #[must_use]
    pub fn with_chat(mut self, name: impl Into<String>, runnable: ChatRunnable) -> Self {
        self.chat.insert(name.into(), runnable);
        self
    }

    /// Serves a chat model as `name`.
    #[must_use]
    pub fn with_chat_model(self, name: impl Into<String>, model: Arc<dyn ChatModel>) -> Self {
        self.with_chat(name, Arc::new(ModelRunnable(model)))
    }

    /// Serves `embedder` as embedding model `name`.
    #[must_use]
    pub fn with_embedder(mut self, name: impl Into<String>, embedder: Arc<dyn Embedder>) -> Self {
        self.embed.insert(name.into(), embedder);
        self
    }

    /// Requires `Authorization: Bearer KEY` on every `/v1` route (`None`: open).
    #[must_use]
    pub fn with_api_key(mut self, key: Option<String>) -> Self {
        self.api_key = key.filter(|k| !k.is_empty());
        self
    }

    /// The largest request body accepted (413 above it).
    #[must_use]
    pub fn with_max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// The largest `max_tokens` a request may ask for (400 above it); also the default.
    #[must_use]
    pub fn with_max_tokens_cap(mut self, tokens: u32) -> Self {
        self.max_tokens_cap = tokens.max(1);
        self
    }

    /// The routes, for embedding into an application's own axum server.
    pub fn router(self) -> Router {
        let limit = self.max_body_bytes;
        let state = Arc::new(self);
        let v1 = Router::new()
            .route("/v1/chat/completions", post(chat_completions))
            .route("/v1/embeddings", post(embeddings))
            .route("/v1/models", get(models))
            .route_layer(middleware::from_fn_with_state(state.clone(), authorize));
        Router::new()
            .merge(v1)
            .route("/health", get(|| async { axum::Json(json!({"status": "ok"})) }))
            .fallback(|| async {
                ApiError {
                    status: StatusCode::NOT_FOUND,
                    kind: "invalid_request_error",
                    message:
                        "Unknown endpoint; see GET /v1/models, POST /v1/chat/completions, POST /v1/embeddings"
                            .into(),
                    param: None,
                    code: Some("unknown_url"),
                }
            })
            .layer(DefaultBodyLimit::max(limit))
            .layer(middleware::from_fn(access_log))
            .with_state(state)
    }

    /// Serves on `listener` until `shutdown` completes, then finishes the requests in flight.
    /// Refuses to start on a non-loopback address without an API key.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        let addr = listener.local_addr().map_err(|e| Error::io("listener", e))?;
        if !addr.ip().is_loopback() && self.api_key.is_none() {
            return Err(Error::invalid_input(format!(
                "refusing to serve on {addr} without an API key: set CATENA_API_KEY (or bind 127.0.0.1)"
            )));
        }
        tracing::info!(%addr, chat = ?self.chat.keys().collect::<Vec<_>>(), "catena serve listening");
        axum::serve(listener, self.router().into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|e| Error::io(addr.to_string(), e))
    }
}

/// Constant-time comparison, so the key cannot be guessed byte by byte from response times.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn authorize(State(server): State<Arc<Server>>, request: Request, next: Next) -> Response {
    if let Some(key) = &server.api_key {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !same_secret(given.as_bytes(), key.as_bytes()) {
            return ApiError {
                status: StatusCode::UNAUTHORIZED,
                kind: "invalid_request_error",
                message: "Incorrect or missing API key: send Authorization: Bearer <key>".into(),
                param: None,
                code: Some("invalid_api_key"),
            }
            .into_response();
        }
    }
    next.run(request).await
}

/// One structured log line per request: method, path, status, duration.
async fn access_log(request: Request, next: Next) -> Response {
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    tracing::info!(
        target: "catena::serve::access",
        %method, %path, status = response.status().as_u16(), ms = started.elapsed().as_millis() as u64,
    );
    response
}

/// Parses a JSON body, mapping size, syntax and shape problems to OpenAI-style 4xx errors.
fn parse_body<T: for<'de> Deserialize<'de>>(
    body: std::result::Result<Bytes, BytesRejection>,
) -> ApiResult<T> {
    let bytes = body.map_err(|rejection| {
        let mut e = ApiError::invalid(format!("could not read the request body: {rejection}"));
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            e.status = StatusCode::PAYLOAD_TOO_LARGE;
            e.message = "The request body is too large.".to_owned();
        }
        e
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChatBody {
    model: String,
    messages: Vec<MessageBody>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    max_tokens: Option<u32>,
    max_completion_tokens: Option<u32>,
    stop: Option<Stop>,
    seed: Option<i64>,
    n: Option<u32>,
    #[serde(default)]
    tools: Vec<ToolBody>,
    tool_choice: Option<Value>,
    parallel_tool_calls: Option<bool>,
    response_format: Option<Value>,
    user: Option<String>,
    frequency_penalty: Option<f32>,
    presence_penalty: Option<f32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageBody {
    role: String,
    #[serde(default)]
    content: Option<Value>,
    name: Option<String>,
    #[serde(default)]
    tool_calls: Vec<ToolCallBody>,
    tool_call_id: Option<String>,
    refusal: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ToolCallBody {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    function: FunctionCallBody,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FunctionCallBody {
    name: String,
    arguments: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ToolBody {
    #[serde(rename = "type")]
    kind: String,
    function: FunctionBody,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FunctionBody {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    parameters: Option<Value>,
    strict: Option<bool>,
}

/// Message content: a string, or text parts.
fn content_text(content: Option<&Value>, index: usize) -> ApiResult<String> {
    let param = format!("messages[{index}].content");
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for part in parts {
                match (part.get("type").and_then(Value::as_str), part.get("text").and_then(Value::as_str)) {
                    (Some("text"), Some(t)) => text.push_str(t),
                    (kind, _) => {
                        return Err(ApiError::invalid(format!(
                            "content part of type {} is not supported; send text",
                            kind.unwrap_or("(none)")
                        ))
                        .param(&param));
                    }
                }
            }
            Ok(text)
        }
        Some(_) => Err(ApiError::invalid("content must be a string or an array of text parts").param(&param)),
    }
}

impl ChatBody {
    fn into_request(self, cap: u32) -> ApiResult<(String, bool, bool, ChatRequest)> {
        if self.messages.is_empty() {
            return Err(ApiError::invalid("messages must contain at least one message").param("messages"));
        }
        if self.n.is_some_and(|n| n != 1) {
            return Err(ApiError::invalid("only n = 1 is supported").param("n"));
        }
        let mut messages = Vec::with_capacity(self.messages.len());
        for (i, m) in self.messages.into_iter().enumerate() {
            let text = content_text(m.content.as_ref(), i)?;
            let message = match m.role.as_str() {
                "system" | "developer" => Message::system(text),
                "user" => Message::user(text),
                "assistant" => {
                    let mut calls = Vec::new();
                    for call in m.tool_calls {
                        if call.kind != "function" {
                            return Err(ApiError::invalid("tool calls must have type \"function\"")
                                .param(&format!("messages[{i}].tool_calls")));
                        }
                        let arguments = serde_json::from_str(&call.function.arguments).map_err(|e| {
                            ApiError::invalid(format!("tool call arguments are not JSON: {e}"))
                                .param(&format!("messages[{i}].tool_calls"))
                        })?;
                        calls.push(ToolCall { id: call.id, name: call.function.name, arguments });
                    }
                    Message::assistant(text).with_tool_calls(calls)
                }
                "tool" => {
                    let id = m.tool_call_id.ok_or_else(|| {
                        ApiError::invalid("tool messages need tool_call_id")
                            .param(&format!("messages[{i}].tool_call_id"))
                    })?;
                    Message::tool(id, text)
                }
                other => {
                    return Err(ApiError::invalid(format!(
                        "unknown role {other:?}; use system, developer, user, assistant or tool"
                    ))
                    .param(&format!("messages[{i}].role")));
                }
            };
            // Accepted so OpenAI clients can send them; catena's messages have no such fields.
            let _ = (m.name, m.refusal);
            messages.push(message);
        }
        let mut request = ChatRequest::new(messages);
        let max_tokens = self.max_completion_tokens.or(self.max_tokens);
        if let Some(n) = max_tokens
            && (n == 0 || n > cap)
        {
            return Err(
                ApiError::invalid(format!("max_tokens must be between 1 and {cap}")).param("max_tokens")
            );
        }
        request.sampling.max_tokens = Some(max_tokens.unwrap_or(cap));
        request.sampling.temperature = self.temperature;
        request.sampling.top_p = self.top_p;
        request.sampling.seed = self.seed.map(|s| (s & i64::from(u32::MAX)) as u32);
        request.sampling.stop = match self.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s],
            Some(Stop::Many(v)) => v,
        };
        for (i, tool) in self.tools.into_iter().enumerate() {
            let param = format!("tools[{i}]");
            if tool.kind != "function" {
                return Err(ApiError::invalid("tools must have type \"function\"").param(&param));
            }
            let name_ok = !tool.function.name.is_empty()
                && tool.function.name.len() <= 64
                && tool.function.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !name_ok {
                return Err(
                    ApiError::invalid("tool names are 1-64 letters, digits, '_' or '-'").param(&param)
                );
            }
            let parameters =
                tool.function.parameters.unwrap_or_else(|| json!({"type": "object", "properties": {}}));
            if !parameters.is_object() || parameters.get("type").is_some_and(|t| t != "object") {
                return Err(
                    ApiError::invalid("a tool's parameters must be a JSON Schema object").param(&param)
                );
            }
            // Tool arguments are always schema-checked (the local model decodes them under a
            // grammar), so `strict` changes nothing.
            let _ = tool.function.strict;
            request.tools.push(ToolSpec {
                name: tool.function.name,
                description: tool.function.description,
                parameters,
            });
        }
        request.tool_choice = match self.tool_choice {
            None => ToolChoice::Auto,
            Some(Value::String(s)) => match s.as_str() {
                "auto" => ToolChoice::Auto,
                "none" => ToolChoice::None,
                "required" => ToolChoice::Required,
                _ => {
                    return Err(ApiError::invalid("tool_choice must be auto, none, required or a function")
                        .param("tool_choice"));
                }
            },
            Some(v) => match v.pointer("/function/name").and_then(Value::as_str) {
                Some(name) if request.tools.iter().any(|t| t.name == name) => {
                    ToolChoice::Tool(name.to_owned())
                }
                _ => {
                    return Err(ApiError::invalid("tool_choice names a function that is not in tools")
                        .param("tool_choice"));
                }
            },
        };
        request.response_format = match self.response_format {
            None => None,
            Some(format) => match format.get("type").and_then(Value::as_str) {
                Some("text") => None,
                Some("json_object") => Some(ResponseFormat::JsonObject),
                Some("json_schema") => {
                    let spec = format.get("json_schema");
                    let schema = spec
                        .and_then(|s| s.get("schema"))
                        .filter(|s| s.is_object())
                        .cloned()
                        .ok_or_else(|| {
                            ApiError::invalid("json_schema needs a schema object").param("response_format")
                        })?;
                    let name = spec
                        .and_then(|s| s.get("name"))
                        .and_then(Value::as_str)
                        .unwrap_or("response")
                        .to_owned();
                    Some(ResponseFormat::JsonSchema { name, schema })
                }
                _ => {
                    return Err(ApiError::invalid(
                        "response_format.type must be text, json_object or json_schema",
                    )
                    .param("response_format"));
                }
            },
        };
        // Accepted for compatibility and not applied: the local model has no OpenAI-style
        // frequency/presence penalties (its repeat penalty works differently), parallel calls
        // are the model's choice, and `user` is an end-user id for abuse monitoring.
        let _ = (self.parallel_tool_calls, self.user, self.frequency_penalty, self.presence_penalty);
        let include_usage = self.stream_options.is_some_and(|o| o.include_usage);
        Ok((self.model, self.stream, include_usage, request))
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn finish_reason(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop | FinishReason::Cancelled => "stop",
        FinishReason::Length => "length",
        FinishReason::ToolCalls => "tool_calls",
    }
}

/// Tool calls in the OpenAI shape, numbered from `first` (streamed calls keep counting).
fn tool_calls_json(calls: &[ToolCall], first: usize) -> Vec<Value> {
    calls
        .iter()
        .enumerate()
        .map(|(i, c)| {
            json!({"index": first + i, "id": c.id, "type": "function",
                   "function": {"name": c.name, "arguments": c.arguments.to_string()}})
        })
        .collect()
}

fn completion_id() -> String {
    format!("chatcmpl-{:x}", rand::random::<u64>())
}

async fn chat_completions(
    State(server): State<Arc<Server>>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let body: ChatBody = parse_body(body)?;
    let (model, stream, include_usage, request) = body.into_request(server.max_tokens_cap)?;
    let runnable = server
        .chat
        .get(&model)
        .cloned()
        .ok_or_else(|| ApiError::not_found_model(&model, server.chat.keys().collect()))?;
    if request.messages.iter().all(|m| m.role == Role::System) {
        return Err(
            ApiError::invalid("messages need at least one user, assistant or tool message").param("messages")
        );
    }
    let id = completion_id();
    let created = unix_now();
    if !stream {
        let response = runnable.invoke(request, &RunContext::new()).await?;
        let mut message = serde_json::Map::new();
        message.insert("role".into(), json!("assistant"));
        message.insert("content".into(), json!(response.message.content));
        message.insert("refusal".into(), Value::Null);
        if !response.message.tool_calls.is_empty() {
            message
                .insert("tool_calls".into(), Value::Array(tool_calls_json(&response.message.tool_calls, 0)));
        }
        let usage = &response.usage;
        return Ok(axum::Json(json!({
            "id": id, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": Value::Object(message), "logprobs": null,
                         "finish_reason": finish_reason(response.finish_reason)}],
            "usage": {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
                      "total_tokens": usage.prompt_tokens + usage.completion_tokens,
                      "prompt_tokens_details": {"cached_tokens": usage.cached_prompt_tokens}},
        }))
        .into_response());
    }
    // Streaming: the run is owned by the response stream; when the client goes away axum drops the
    // stream, which drops the run and with it the model's generation. A run that fails before its
    // first delta (a prompt over the context, say) is answered with an HTTP error, as OpenAI
    // does, not with a 200 whose stream holds the error.
    let (started_tx, started) = tokio::sync::oneshot::channel();
    let events = async_stream(runnable, request, id, created, model, include_usage, started_tx);
    match started.await {
        Ok(Err(error)) => Err(error),
        // Ok(Ok(())), or the run ended without a word: the stream says the rest.
        _ => Ok(Sse::new(events)
            .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
            .into_response()),
    }
}

/// The SSE events of one streamed completion, ending with `data: [DONE]`.
fn async_stream(
    runnable: ChatRunnable,
    request: ChatRequest,
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
    mut started: tokio::sync::oneshot::Sender<ApiResult<()>>,
) -> impl futures::Stream<Item = std::result::Result<SseEvent, Infallible>> + Send + 'static {
    let envelope = move |choices: Value, usage: Value| {
        json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
               "choices": choices, "usage": usage})
    };
    let chunk = {
        let envelope = envelope.clone();
        move |delta: Value, finish: Option<&str>| {
            envelope(
                json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]),
                Value::Null,
            )
        }
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<SseEvent>(64);
    tokio::spawn(async move {
        let ctx = RunContext::new();
        let send = |value: Value| SseEvent::default().data(value.to_string());
        let mut pieces = runnable.stream(request, &ctx);
        // The first piece decides between an HTTP error and a stream.
        let first = tokio::select! {
            first = pieces.next() => first,
            () = started.closed() => { ctx.cancel(); return; }
        };
        if let Some(Err(e)) = first {
            let _ = started.send(Err(ApiError::from(e)));
            return;
        }
        let _ = started.send(Ok(()));
        if tx.send(send(chunk(json!({"role": "assistant", "content": ""}), None))).await.is_err() {
            return;
        }
        let mut usage = None;
        let mut finish = FinishReason::Stop;
        let mut calls = 0usize;
        // The first piece, already read (None inside: the stream was empty).
        let mut pending = Some(first);
        loop {
            let next = match pending.take() {
                Some(first) => first,
                None => tokio::select! {
                    next = pieces.next() => next,
                    // The client hung up: stop generating now, not at the next token.
                    () = tx.closed() => { ctx.cancel(); return; }
                },
            };
            let Some(piece) = next else { break };
            match piece {
                Ok(response) => {
                    let mut delta = serde_json::Map::new();
                    if !response.message.content.is_empty() {
                        delta.insert("content".into(), Value::String(response.message.content.clone()));
                    }
                    if !response.message.tool_calls.is_empty() {
                        let json_calls = tool_calls_json(&response.message.tool_calls, calls);
                        calls += json_calls.len();
                        delta.insert("tool_calls".into(), Value::Array(json_calls));
                    }
                    finish = response.finish_reason;
                    if response.usage.prompt_tokens + response.usage.completion_tokens > 0 {
                        usage = Some(response.usage);
                    }
                    if !delta.is_empty() && tx.send(send(chunk(Value::Object(delta), None))).await.is_err() {
                        ctx.cancel();
                        return;
                    }
                }
                Err(e) => {
                    let api = ApiError::from(e);
                    let error = json!({"error": {"message": api.message, "type": api.kind, "param": null, "code": api.code}});
                    let _ = tx.send(send(error)).await;
                    let _ = tx.send(SseEvent::default().data("[DONE]")).await;
                    return;
                }
            }
        }
        let _ = tx.send(send(chunk(json!({}), Some(finish_reason(finish))))).await;
        if include_usage {
            let u = usage.unwrap_or_default();
            let usage = json!({"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
                               "total_tokens": u.prompt_tokens + u.completion_tokens});
            let _ = tx.send(send(envelope(json!([]), usage))).await;
        }
        let _ = tx.send(SseEvent::default().data("[DONE]")).await;
    });
    tokio_stream_from(rx)
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<SseEvent>,
) -> impl futures::Stream<Item = std::result::Result<SseEvent, Infallible>> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|e| e.map(Ok)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EmbeddingsBody {
    model: String,
    input: Value,
    encoding_format: Option<String>,
    dimensions: Option<usize>,
    user: Option<String>,
}

async fn embeddings(
    State(server): State<Arc<Server>>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let body: EmbeddingsBody = parse_body(body)?;
    let embedder = server
        .embed
        .get(&body.model)
        .cloned()
        .ok_or_else(|| ApiError::not_found_model(&body.model, server.embed.keys().collect()))?;
    let texts: Vec<String> = match &body.input {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_string) => {
            items.iter().filter_map(Value::as_str).map(str::to_owned).collect()
        }
        Value::Array(items) if items.is_empty() => {
            return Err(ApiError::invalid("input must not be empty").param("input"));
        }
        _ => {
            return Err(ApiError::invalid(
                "input must be a string or an array of strings (token arrays are not supported)",
            )
            .param("input"));
        }
    };
    if texts.len() > 2048 {
        return Err(ApiError::invalid("at most 2048 inputs per request").param("input"));
    }
    if let Some(d) = body.dimensions
        && d != embedder.dimensions()
    {
        return Err(ApiError::invalid(format!(
            "this model has {} dimensions; it cannot return {d}",
            embedder.dimensions()
        ))
        .param("dimensions"));
    }
    let base64 = match body.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(_) => {
            return Err(ApiError::invalid("encoding_format must be float or base64").param("encoding_format"));
        }
    };
    let _ = body.user; // an end-user id for abuse monitoring; nothing to do with it here
    let vectors = embedder.embed(&texts, &RunContext::new()).await?;
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    // Whitespace-separated words: a rough token count, which OpenAI clients only display.
    let tokens: usize = texts.iter().map(|t| t.split_whitespace().count()).sum();
    Ok(axum::Json(json!({"object": "list", "data": data, "model": body.model,
                         "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}))
    .into_response())
}

async fn models(State(server): State<Arc<Server>>) -> axum::Json<Value> {
    let created = unix_now();
    let data: Vec<Value> = server
        .chat
        .keys()
        .chain(server.embed.keys())
        .map(|id| json!({"id": id, "object": "model", "created": created, "owned_by": "catena"}))
        .collect();
    axum::Json(json!({"object": "list", "data": data}))
}
