//! An OpenAI-compatible HTTP server for catena models and chains (`catena serve`).
//!
//! Any [`Runnable<ChatRequest, ChatResponse>`](crate::core::Runnable) (a model, a RAG chain, an
//! agent) is served under a model name at `POST /v1/chat/completions`, any
//! [`Embedder`] at `POST /v1/embeddings`; `GET /v1/models` lists them and
//! `GET /health` answers `{"status": "ok"}`. Request and response bodies follow the public OpenAI
//! API reference (chat completions with streaming over server-sent events, tools, `response_format`,
//! usage; embeddings as floats or base64), and so do errors:
//! `{"error": {"message", "type", "param", "code"}}` with the matching status. The bodies are
//! the [wire types](crate::models::wire) catena's own OpenAI client speaks. With
//! [`Server::with_agent`], an agent's threads are served too (`/v1/threads/{thread}`: runs that
//! pause for approval and resume later; see the serving guide for the routes).
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
//! without an API key (`Authorization: Bearer ...`, compared in constant time). Slow and greedy
//! clients are bounded by [`ConnectionLimits`]: 10 s to send the headers (slowloris), 30 s for the
//! body (408), 64 KiB of headers (431), 1,024 connections at once.

mod auth;
mod chat;
mod console;
mod embeddings;
mod error;
mod threads;
mod transport;

pub use self::transport::ConnectionLimits;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::middleware;
use axum::routing::{get, post};
use futures::stream::BoxStream;

pub use self::console::Console;
use self::error::ApiError;
use crate::agents::AgentRun;
use crate::agents::graph::CompiledGraph;
use crate::core::{
    ChatModel, ChatRequest, ChatResponse, Embedder, Error, Result, RunContext, Runnable, async_trait,
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

/// What `Server::with_default_sampling` fills in.
#[derive(Clone, Copy, Debug, Default)]
struct DefaultSampling {
    temperature: Option<f32>,
    seed: Option<u32>,
}

/// The server: named chat runnables and embedders, and its limits.
#[derive(Clone)]
pub struct Server {
    chat: BTreeMap<String, ChatRunnable>,
    embed: BTreeMap<String, Arc<dyn Embedder>>,
    api_key: Option<String>,
    max_body_bytes: usize,
    max_tokens_cap: u32,
    limits: ConnectionLimits,
    default_sampling: DefaultSampling,
    agent: Option<CompiledGraph<AgentRun>>,
    #[cfg(feature = "mcp")]
    mcp: Option<crate::tools::mcp::McpToolServer>,
    #[cfg(feature = "sqlite")]
    traces: Option<crate::traces::TraceStore>,
    console: Option<Console>,
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
            limits: ConnectionLimits::default(),
            default_sampling: DefaultSampling::default(),
            agent: None,
            #[cfg(feature = "mcp")]
            mcp: None,
            #[cfg(feature = "sqlite")]
            traces: None,
            console: None,
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

    /// How long a client may take to send a request, how many connections are served at once
    /// and how large a request head may be ([`ConnectionLimits`]; the defaults suit most uses).
    /// The body-read timeout also applies to [`router`](Self::router) embedded in another server;
    /// the others are the connection loop's, so they apply to [`serve`](Self::serve).
    #[must_use]
    pub fn with_connection_limits(mut self, limits: ConnectionLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The largest `max_tokens` a request may ask for (400 above it); also the default.
    #[must_use]
    pub fn with_max_tokens_cap(mut self, tokens: u32) -> Self {
        self.max_tokens_cap = tokens.max(1);
        self
    }

    /// Sampling for chat requests that leave it to the server (`temperature`, `seed`): a request's
    /// own values always win. Unset, the model's defaults apply (sampled, a fresh seed per
    /// request); `temperature: Some(0.0)` makes every such request greedy and repeatable, as
    /// llama.cpp's server `--temp 0` does.
    #[must_use]
    pub fn with_default_sampling(mut self, temperature: Option<f32>, seed: Option<u32>) -> Self {
        self.default_sampling = DefaultSampling { temperature, seed };
        self
    }

    /// Serves an agent's threads (`AgentExecutor::into_graph`, with a checkpointer so threads
    /// outlive requests): `POST /v1/threads/{thread}/runs` `{"input"}` runs a question,
    /// `POST /v1/threads/{thread}/resume` with an `Approval` (`{"decisions": {call id: {"decision":
    /// "approve" | "edit" | "reject", ...}}}`) continues a run that waits, `GET /v1/threads/{thread}`
    /// and `GET /v1/threads/{thread}/history` read it. With `"stream": true` a run or resume is
    /// answered as server-sent events (`updates`, `messages`, `values`, `custom` as chosen by
    /// `"stream_mode"`, then `end` or `error`). Same authentication as the other routes.
    #[must_use]
    pub fn with_agent(mut self, graph: CompiledGraph<AgentRun>) -> Self {
        self.agent = Some(graph);
        self
    }

    /// Serves MCP clients at `/mcp` (streamable HTTP), under the same API key as the other
    /// routes: a [`ToolRegistry`](crate::tools::ToolRegistry)'s tools, or a whole
    /// [`McpToolServer`](crate::tools::mcp::McpToolServer) with resources and prompts. Without a
    /// key (loopback only) the MCP transport also refuses requests whose `Host` is not a
    /// loopback name, against DNS rebinding.
    #[cfg(feature = "mcp")]
    #[must_use]
    pub fn with_mcp(mut self, server: impl Into<crate::tools::mcp::McpToolServer>) -> Self {
        self.mcp = Some(server.into());
        self
    }

    /// Serves the web console at `/`: a chat playground for the chat models and the agent, the
    /// trace explorer over [`with_traces`](Self::with_traces)'s store, and the eval reports in
    /// `console.evals`. Its JSON routes (`/api/...`) take the same API key as `/v1`.
    #[must_use]
    pub fn with_console(mut self, console: Console) -> Self {
        self.console = Some(console);
        self
    }

    /// The trace store the console's trace explorer reads (install its
    /// [`layer`](crate::traces::TraceStore::layer) in the program's subscriber so that it fills).
    #[cfg(feature = "sqlite")]
    #[must_use]
    pub fn with_traces(mut self, store: crate::traces::TraceStore) -> Self {
        self.traces = Some(store);
        self
    }

    /// The routes, for embedding into an application's own axum server.
    pub fn router(self) -> Router {
        let limit = self.max_body_bytes;
        let body_timeout = self.limits.body_read_timeout;
        let state = Arc::new(self);
        let v1 = Router::new()
            .route("/v1/chat/completions", post(chat::chat_completions))
            .route("/v1/embeddings", post(embeddings::embeddings))
            .route("/v1/models", get(embeddings::models))
            .route("/v1/threads/{thread}", get(threads::state))
            .route("/v1/threads/{thread}/history", get(threads::history))
            .route("/v1/threads/{thread}/runs", post(threads::run))
            .route("/v1/threads/{thread}/resume", post(threads::resume))
            .route("/api/console", get(console::about))
            .route("/api/runs", get(console::runs))
            .route("/api/runs/{run}", get(console::run))
            .route("/api/evals", get(console::evals))
            .route("/api/evals/{name}", get(console::eval))
            .route("/api/evals/{name}/report", get(console::eval_report))
            .route_layer(middleware::from_fn_with_state(state.clone(), auth::authorize));
        #[cfg(feature = "mcp")]
        let v1 = match state.mcp.clone() {
            Some(mcp) => v1.merge(
                mcp_routes(mcp, state.api_key.is_some())
                    .route_layer(middleware::from_fn_with_state(state.clone(), auth::authorize)),
            ),
            None => v1,
        };
        let pages = if state.console.is_some() {
            Router::new()
                .route("/", get(console::page))
                .route("/console.js", get(console::script))
                .route("/console.css", get(console::style))
        } else {
            Router::new()
        };
        Router::new()
            .merge(v1)
            .merge(pages)
            .route("/health", get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }))
            .fallback(|| async {
                ApiError::refused(
                    StatusCode::NOT_FOUND,
                    "Unknown endpoint; see GET /v1/models, POST /v1/chat/completions, POST /v1/embeddings",
                    "unknown_url",
                )
            })
            .layer(DefaultBodyLimit::max(limit))
            .layer(middleware::from_fn_with_state(
                transport::BodyLimits { max_bytes: limit, timeout: body_timeout },
                transport::read_body_within,
            ))
            .layer(middleware::from_fn(auth::access_log))
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
        let limits = self.limits;
        transport::serve(listener, self.router(), limits, shutdown).await;
        Ok(())
    }
}

/// `/mcp`: the MCP streamable-HTTP transport over `mcp`'s tools, one session per client.
#[cfg(feature = "mcp")]
fn mcp_routes(mcp: crate::tools::mcp::McpToolServer, keyed: bool) -> Router<Arc<Server>> {
    use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
    use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
    let mut config = StreamableHttpServerConfig::default();
    if keyed {
        // A keyed server may be reached by any host name; the key is the protection.
        config = config.disable_allowed_hosts();
    }
    let service = StreamableHttpService::new(
        move || Ok(mcp.session()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    Router::new().nest_service("/mcp", service)
}

/// The root span of one served run, and the run's id (`x-catena-run-id`; the trace store files
/// the run under it, so the console can open its trace).
fn request_span(route: &str, target: &str) -> (tracing::Span, String) {
    use tracing::field::Empty;
    let run_id = format!("{:032x}", rand::random::<u128>());
    let span = tracing::info_span!(
        target: crate::core::telemetry::TARGET, "request",
        otel.name = %format!("{route} {target}"), otel.kind = "server",
        otel.status_code = Empty, otel.status_description = Empty, error.type = Empty,
        openinference.span.kind = "CHAIN", http.route = route, catena.run.id = run_id.as_str(),
        catena.served = target,
    );
    (span, run_id)
}

/// Headers with a run's id and, when known, its tokens and cost.
fn run_headers(run_id: &str, usage: Option<&crate::core::UsageReport>) -> axum::http::HeaderMap {
    use axum::http::HeaderValue;
    let mut headers = axum::http::HeaderMap::new();
    let mut put = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    };
    put("x-catena-run-id", run_id.to_owned());
    if let Some(usage) = usage {
        put("x-catena-usage-input-tokens", usage.total.prompt_tokens.to_string());
        put("x-catena-usage-output-tokens", usage.total.completion_tokens.to_string());
        put("x-catena-usage-cached-tokens", usage.total.cached_prompt_tokens.to_string());
        put("x-catena-cost-usd", format!("{:.6}", usage.cost_usd));
    }
    headers
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
