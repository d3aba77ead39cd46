//! Remote models over the OpenAI API (feature `openai`): OpenAI itself and every server that
//! speaks its chat-completions and embeddings endpoints (vLLM, TGI, llama.cpp's server, Ollama,
//! LM Studio, OpenRouter, Together, `catena serve`...).
//!
//! Built on async-openai's client (configuration, authentication, server-sent-event parsing,
//! error decoding) with catena's own request and response mapping, so every field catena has
//! reaches the wire and nothing is lost on the way back:
//! - messages with tool calls and tool results, tools, `tool_choice`, `response_format`
//!   (`json_object`, `json_schema`; raw GBNF grammars are refused: they are a llama.cpp feature);
//! - streaming: text deltas as they arrive, tool-call fragments reassembled into whole calls, usage
//!   from the final chunk (`stream_options.include_usage`);
//! - errors mapped to catena's kinds: 429, 5xx, timeouts and dropped connections are transient,
//!   `context_length_exceeded` is its own kind, other 4xx are permanent;
//! - limits: connect and total timeouts, a per-model concurrency limit, retries of transient
//!   failures with exponential backoff and jitter (a stream only before its first token).
//!
//! ```no_run
//! use catena_core::{ChatModel, ChatRequest, Message, RunContext};
//! use catena_models::openai::{OpenAiChatModel, OpenAiConfig};
//!
//! # async fn demo() -> catena_core::Result<()> {
//! // OPENAI_API_KEY, OPENAI_BASE_URL (e.g. http://127.0.0.1:8080/v1 for `catena serve`), CATENA_MODEL.
//! let model = OpenAiChatModel::new(OpenAiConfig::from_env()?)?;
//! let reply = model.chat(ChatRequest::new(vec![Message::user("Hello!")]), &RunContext::new()).await?;
//! println!("{}", reply.message.content);
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::middleware::HttpRequestFactory;
use catena_core::{
    ChatDelta, ChatModel, ChatRequest, ChatResponse, Embedder, Error, FinishReason, Message, ResponseFormat,
    Result, Role, RunContext, ToolCall, ToolChoice, Usage, async_trait,
};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

/// Where and how to reach an OpenAI-compatible server.
#[derive(Debug, Clone)]
pub struct OpenAiConfig {
    /// The API base, up to and including `/v1` (`None`: async-openai's default, OpenAI's API).
    pub base_url: Option<String>,
    /// The API key (empty for servers that need none).
    pub api_key: String,
    /// The model name sent with every request.
    pub model: String,
    /// `OpenAI-Organization`, when set.
    pub organization: Option<String>,
    /// Extra headers on every request.
    pub headers: Vec<(String, String)>,
    /// Connecting may take this long (default 10 s).
    pub connect_timeout: Duration,
    /// One whole request may take this long, streamed replies included (default 300 s).
    pub timeout: Duration,
    /// Requests in flight at once, per model (default 16); more wait their turn.
    pub max_concurrency: usize,
    /// Retries of a transient failure (default 3); 0 disables.
    pub max_retries: u32,
    /// First backoff delay (default 500 ms); doubles per retry, with jitter, up to 20 s.
    pub backoff: Duration,
    /// Texts per embeddings request (default 256; OpenAI accepts 2048).
    pub embed_batch: usize,
}

impl OpenAiConfig {
    /// A configuration for `model` with the defaults above.
    #[must_use]
    pub fn new(model: impl Into<String>) -> Self {
        Self {
            base_url: None,
            api_key: String::new(),
            model: model.into(),
            organization: None,
            headers: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(300),
            max_concurrency: 16,
            max_retries: 3,
            backoff: Duration::from_millis(500),
            embed_batch: 256,
        }
    }

    /// From the environment: `OPENAI_API_KEY`, `OPENAI_BASE_URL`, `OPENAI_ORG_ID`, and the model
    /// from `CATENA_MODEL` (chat) — required, since every server names its models differently.
    pub fn from_env() -> Result<Self> {
        let model = std::env::var("CATENA_MODEL").ok().filter(|m| !m.is_empty()).ok_or_else(|| {
            Error::invalid_input(
                "CATENA_MODEL is not set: name the model to use (e.g. CATENA_MODEL=gpt-4o-mini)",
            )
        })?;
        Ok(Self::from_env_for(model))
    }

    /// From the environment as [`from_env`](Self::from_env), for the named model.
    #[must_use]
    pub fn from_env_for(model: impl Into<String>) -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Self {
            base_url: var("OPENAI_BASE_URL"),
            api_key: var("OPENAI_API_KEY").unwrap_or_default(),
            organization: var("OPENAI_ORG_ID"),
            ..Self::new(model)
        }
    }

    /// Sets the API base (`http://127.0.0.1:8080/v1`).
    #[must_use]
    pub fn with_base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = Some(url.into());
        self
    }

    /// Sets the API key.
    #[must_use]
    pub fn with_api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = key.into();
        self
    }

    fn client(&self) -> Result<Client<OpenAIConfig>> {
        let mut config = OpenAIConfig::new().with_api_key(self.api_key.clone());
        if let Some(base) = &self.base_url {
            config = config.with_api_base(base.trim_end_matches('/'));
        }
        if let Some(org) = &self.organization {
            config = config.with_org_id(org.clone());
        }
        for (k, v) in &self.headers {
            let bad = |e: &dyn std::fmt::Display| Error::invalid_input(format!("bad header {k}: {e}"));
            let name = reqwest::header::HeaderName::from_bytes(k.as_bytes()).map_err(|e| bad(&e))?;
            config = config.with_header(name, v.clone()).map_err(|e| bad(&e))?;
        }
        let http = reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .timeout(self.timeout)
            .build()
            .map_err(|e| Error::model_permanent(format!("cannot build the HTTP client: {e}")))?;
        let (retries, backoff) = (self.max_retries, self.backoff);
        let service = tower::service_fn(move |factory: HttpRequestFactory| {
            let http = http.clone();
            async move { send_with_retries(&http, &factory, retries, backoff).await }
        });
        Ok(Client::with_config(config).with_http_service(service))
    }
}

/// A random delay up to `base * 2^attempt` (full jitter), at most 20 s.
fn backoff_delay(base: Duration, attempt: u32) -> Duration {
    base.saturating_mul(1 << attempt.min(10)).min(Duration::from_secs(20)).mul_f64(rand::random::<f64>())
}

/// The server's own wait, from `retry-after-ms` or `Retry-After` (seconds), at most 60 s.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let number =
        |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<f64>().ok().filter(|v| *v >= 0.0);
    let wait = number("retry-after-ms").map(|ms| ms / 1000.0).or_else(|| number("retry-after"))?;
    Some(Duration::from_secs_f64(wait.min(60.0)))
}

/// Sends one request, retrying what retrying can fix: connection failures, timeouts, 408, 429
/// and 5xx answers (waiting what `Retry-After` asks, else backing off with jitter). Other
/// answers, 4xx included, return at once.
async fn send_with_retries(
    http: &reqwest::Client,
    factory: &HttpRequestFactory,
    retries: u32,
    base: Duration,
) -> std::result::Result<reqwest::Response, OpenAIError> {
    let mut attempt = 0u32;
    loop {
        let outcome = http.execute(factory.build().await?).await;
        let wait = match &outcome {
            Ok(response) => {
                let status = response.status().as_u16();
                (status == 408 || status == 429 || status >= 500)
                    .then(|| retry_after(response.headers()).unwrap_or_else(|| backoff_delay(base, attempt)))
            }
            Err(e) if e.is_connect() || e.is_timeout() || e.is_request() => {
                Some(backoff_delay(base, attempt))
            }
            Err(_) => None,
        };
        match wait {
            Some(wait) if attempt < retries => {
                tracing::warn!(attempt = attempt + 1, ?wait, "transient HTTP failure; retrying");
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            _ => return outcome.map_err(OpenAIError::Reqwest),
        }
    }
}

/// Maps async-openai's errors onto catena's kinds (what retrying can and cannot fix).
fn map_error(e: OpenAIError) -> Error {
    match e {
        OpenAIError::ApiError(api) => {
            let status = api.status_code.as_u16();
            let message = format!("the server answered {status}: {}", api.api_error);
            if api.api_error.code.as_deref() == Some("context_length_exceeded") {
                Error::context_length(message)
            } else if status == 429 || status == 408 || status >= 500 {
                Error::model_transient(message)
            } else {
                Error::model_permanent(message)
            }
        }
        OpenAIError::Reqwest(e) if e.is_timeout() => {
            Error::model_transient(format!("the request timed out: {e}"))
        }
        OpenAIError::Reqwest(e) => Error::model_transient(format!("the connection failed: {e}")),
        OpenAIError::StreamError(e) => Error::model_transient(format!("the stream broke: {e}")),
        OpenAIError::JSONDeserialize(e, body) => {
            let shown: String = body.chars().take(200).collect();
            Error::model_permanent(format!("the server's reply is not the expected JSON ({e}): {shown}"))
        }
        other => Error::model_permanent(other.to_string()),
    }
}

fn message_json(m: &Message) -> Value {
    match m.role {
        Role::System => json!({"role": "system", "content": m.content}),
        Role::User => json!({"role": "user", "content": m.content}),
        Role::Assistant if m.tool_calls.is_empty() => json!({"role": "assistant", "content": m.content}),
        Role::Assistant => {
            let calls: Vec<Value> = m
                .tool_calls
                .iter()
                .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments.to_string()}}))
                .collect();
            let content = if m.content.is_empty() { Value::Null } else { json!(m.content) };
            json!({"role": "assistant", "content": content, "tool_calls": calls})
        }
        Role::Tool => {
            json!({"role": "tool", "tool_call_id": m.tool_call_id.clone().unwrap_or_default(), "content": m.content})
        }
    }
}

/// The chat-completions request body for `request`.
fn request_json(model: &str, request: &ChatRequest, stream: bool) -> Result<Value> {
    let mut body = serde_json::Map::new();
    body.insert("model".into(), json!(model));
    body.insert("messages".into(), Value::Array(request.messages.iter().map(message_json).collect()));
    let s = &request.sampling;
    let mut put = |k: &str, v: Value| {
        body.insert(k.to_owned(), v);
    };
    if let Some(t) = s.temperature {
        put("temperature", json!(t));
    }
    if let Some(p) = s.top_p {
        put("top_p", json!(p));
    }
    if let Some(n) = s.max_tokens {
        put("max_tokens", json!(n));
    }
    if !s.stop.is_empty() {
        put("stop", json!(s.stop));
    }
    if let Some(seed) = s.seed {
        put("seed", json!(seed));
    }
    if !request.tools.is_empty() {
        let tools: Vec<Value> = request
            .tools
            .iter()
            .map(|t| json!({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}))
            .collect();
        put("tools", Value::Array(tools));
        put(
            "tool_choice",
            match &request.tool_choice {
                ToolChoice::Auto => json!("auto"),
                ToolChoice::None => json!("none"),
                ToolChoice::Required => json!("required"),
                ToolChoice::Tool(name) => json!({"type": "function", "function": {"name": name}}),
            },
        );
    }
    match &request.response_format {
        None | Some(ResponseFormat::Text) => {}
        Some(ResponseFormat::JsonObject) => put("response_format", json!({"type": "json_object"})),
        Some(ResponseFormat::JsonSchema { name, schema }) => put(
            "response_format",
            json!({"type": "json_schema", "json_schema": {"name": name, "schema": schema}}),
        ),
        Some(ResponseFormat::Grammar { .. }) => {
            return Err(Error::invalid_input(
                "GBNF grammars are a llama.cpp feature; remote models take JSON Schema (ResponseFormat::JsonSchema)",
            ));
        }
    }
    if stream {
        put("stream", json!(true));
        put("stream_options", json!({"include_usage": true}));
    }
    Ok(Value::Object(body))
}

fn finish_reason(reason: Option<&str>) -> FinishReason {
    match reason {
        Some("length") => FinishReason::Length,
        Some("tool_calls" | "function_call") => FinishReason::ToolCalls,
        _ => FinishReason::Stop,
    }
}

fn usage(value: Option<&Value>) -> Usage {
    let n = |k: &str| value.and_then(|u| u.get(k)).and_then(Value::as_u64).unwrap_or(0) as u32;
    Usage {
        prompt_tokens: n("prompt_tokens"),
        completion_tokens: n("completion_tokens"),
        cached_prompt_tokens: value
            .and_then(|u| u.pointer("/prompt_tokens_details/cached_tokens"))
            .and_then(Value::as_u64)
            .unwrap_or(0) as u32,
    }
}

/// A tool call's arguments: the JSON the model wrote; a string that is not JSON is kept as a
/// string so the caller can report it to the model.
fn arguments(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

fn parse_response(body: &Value) -> Result<ChatResponse> {
    let choice = body
        .pointer("/choices/0")
        .ok_or_else(|| Error::model_permanent(format!("the reply has no choices: {body}")))?;
    let message = choice.get("message").cloned().unwrap_or(Value::Null);
    let content = message.get("content").and_then(Value::as_str).unwrap_or_default().to_owned();
    let tool_calls: Vec<ToolCall> = message
        .get("tool_calls")
        .and_then(Value::as_array)
        .map(|calls| {
            calls
                .iter()
                .map(|c| ToolCall {
                    id: c.get("id").and_then(Value::as_str).unwrap_or_default().to_owned(),
                    name: c.pointer("/function/name").and_then(Value::as_str).unwrap_or_default().to_owned(),
                    arguments: arguments(
                        c.pointer("/function/arguments").and_then(Value::as_str).unwrap_or("{}"),
                    ),
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(ChatResponse {
        message: Message::assistant(content).with_tool_calls(tool_calls),
        usage: usage(body.get("usage")),
        finish_reason: finish_reason(choice.get("finish_reason").and_then(Value::as_str)),
    })
}

/// Tool-call fragments of a stream, by index, until the stream ends.
#[derive(Default)]
struct ToolCallParts {
    calls: BTreeMap<u64, (String, String, String)>,
}

impl ToolCallParts {
    fn add(&mut self, fragment: &Value) {
        let index = fragment.get("index").and_then(Value::as_u64).unwrap_or(0);
        let entry = self.calls.entry(index).or_default();
        if let Some(id) = fragment.get("id").and_then(Value::as_str) {
            entry.0.push_str(id);
        }
        if let Some(name) = fragment.pointer("/function/name").and_then(Value::as_str) {
            entry.1.push_str(name);
        }
        if let Some(args) = fragment.pointer("/function/arguments").and_then(Value::as_str) {
            entry.2.push_str(args);
        }
    }

    fn finish(self) -> Vec<ToolCall> {
        self.calls
            .into_values()
            .map(|(id, name, args)| ToolCall {
                id,
                name,
                arguments: arguments(if args.is_empty() { "{}" } else { &args }),
            })
            .collect()
    }
}

/// A chat model behind an OpenAI-compatible API.
#[derive(Clone)]
pub struct OpenAiChatModel {
    client: Client<OpenAIConfig>,
    config: Arc<OpenAiConfig>,
    permits: Arc<Semaphore>,
}

impl std::fmt::Debug for OpenAiChatModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiChatModel")
            .field("model", &self.config.model)
            .field("base_url", &self.config.base_url)
            .finish()
    }
}

impl OpenAiChatModel {
    /// A model with `config`. Nothing is sent until the first request.
    pub fn new(config: OpenAiConfig) -> Result<Self> {
        let client = config.client()?;
        let permits = Arc::new(Semaphore::new(config.max_concurrency.max(1)));
        Ok(Self { client, config: Arc::new(config), permits })
    }

    async fn permit(&self) -> Result<tokio::sync::SemaphorePermit<'_>> {
        self.permits.acquire().await.map_err(|_| Error::model_permanent("the model was shut down"))
    }
}

#[async_trait]
impl ChatModel for OpenAiChatModel {
    async fn chat(&self, request: ChatRequest, ctx: &RunContext) -> Result<ChatResponse> {
        let body = request_json(&self.config.model, &request, false)?;
        let _permit = self.permit().await?;
        let chat = self.client.chat();
        let call = chat.create_byot::<Value, Value>(body);
        let reply = tokio::select! {
            reply = call => reply.map_err(map_error)?,
            () = ctx.cancellation().cancelled() => return Err(Error::Cancelled),
        };
        parse_response(&reply)
    }

    fn chat_stream<'a>(
        &'a self,
        request: ChatRequest,
        ctx: &'a RunContext,
    ) -> BoxStream<'a, Result<ChatDelta>> {
        let stream = async_stream_deltas(self, request, ctx);
        Box::pin(stream)
    }

    fn model_name(&self) -> &str {
        &self.config.model
    }
}

/// The deltas of one streamed completion; reconnects (with backoff) only before the first one.
fn async_stream_deltas<'a>(
    model: &'a OpenAiChatModel,
    request: ChatRequest,
    ctx: &'a RunContext,
) -> impl futures::Stream<Item = Result<ChatDelta>> + Send + 'a {
    let opened = async move {
        let body = request_json(&model.config.model, &request, true)?;
        let permit = model.permit().await?;
        // HTTP failures were retried in the client's HTTP service. What remains is a stream that
        // breaks before its first event: as good as a failed request, so it is opened again.
        let mut tries = 0u32;
        let events = loop {
            ctx.check_cancelled()?;
            let chat = model.client.chat();
            let mut events =
                chat.create_stream_byot::<Value, Value>(body.clone()).await.map_err(map_error)?;
            match events.next().await.transpose() {
                Ok(first) => break (first, events),
                Err(e) if tries < model.config.max_retries => {
                    let wait = backoff_delay(model.config.backoff, tries);
                    tracing::warn!(error = %e, retry = tries + 1, ?wait, "stream broke before its first event; retrying");
                    tokio::time::sleep(wait).await;
                    tries += 1;
                }
                Err(e) => return Err(map_error(e)),
            }
        };
        Ok::<_, Error>((permit, events))
    };
    futures::stream::once(opened)
        .map_ok(move |(permit, (first, rest))| {
            let events = futures::stream::iter(first.map(Ok)).chain(rest.map(|e| e.map_err(map_error)));
            fold_events(events, permit, ctx)
        })
        .try_flatten()
}

/// Turns chunk events into deltas: text at once, tool calls and usage at the end.
fn fold_events<'a, S>(
    events: S,
    permit: tokio::sync::SemaphorePermit<'a>,
    ctx: &'a RunContext,
) -> impl futures::Stream<Item = Result<ChatDelta>> + Send + 'a
where
    S: futures::Stream<Item = Result<Value>> + Send + 'a,
{
    struct State<'a, S> {
        events: std::pin::Pin<Box<S>>,
        parts: ToolCallParts,
        finish: Option<FinishReason>,
        usage: Usage,
        done: bool,
        _permit: tokio::sync::SemaphorePermit<'a>,
    }
    let state = State {
        events: Box::pin(events),
        parts: ToolCallParts::default(),
        finish: None,
        usage: Usage::default(),
        done: false,
        _permit: permit,
    };
    futures::stream::unfold(state, move |mut st| async move {
        if st.done {
            return None;
        }
        loop {
            if ctx.is_cancelled() {
                st.done = true;
                return Some((Err(Error::Cancelled), st));
            }
            match st.events.next().await {
                Some(Err(e)) => {
                    st.done = true;
                    return Some((Err(e), st));
                }
                Some(Ok(chunk)) => {
                    if let Some(u) = chunk.get("usage").filter(|u| u.is_object()) {
                        st.usage = usage(Some(u));
                    }
                    let Some(choice) = chunk.pointer("/choices/0") else { continue };
                    if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
                        st.finish = Some(finish_reason(Some(reason)));
                    }
                    if let Some(fragments) = choice.pointer("/delta/tool_calls").and_then(Value::as_array) {
                        for f in fragments {
                            st.parts.add(f);
                        }
                    }
                    let text = choice.pointer("/delta/content").and_then(Value::as_str).unwrap_or_default();
                    if !text.is_empty() {
                        let delta = ChatDelta { content: text.to_owned(), ..ChatDelta::default() };
                        return Some((Ok(delta), st));
                    }
                }
                None if st.finish.is_none() => {
                    // No finish_reason and no [DONE]: the connection ended mid-reply. The text
                    // already yielded stays with the caller; the reply is not complete.
                    st.done = true;
                    let e = Error::model_transient(
                        "the stream ended before the reply was complete (no finish_reason)",
                    );
                    return Some((Err(e), st));
                }
                None => {
                    st.done = true;
                    let parts = std::mem::take(&mut st.parts);
                    let delta = ChatDelta {
                        content: String::new(),
                        tool_calls: parts.finish(),
                        finish_reason: Some(st.finish.unwrap_or(FinishReason::Stop)),
                        usage: Some(st.usage),
                    };
                    return Some((Ok(delta), st));
                }
            }
        }
    })
}

/// An embedding model behind an OpenAI-compatible API.
#[derive(Clone)]
pub struct OpenAiEmbedder {
    client: Client<OpenAIConfig>,
    config: Arc<OpenAiConfig>,
    dimensions: usize,
    permits: Arc<Semaphore>,
}

impl std::fmt::Debug for OpenAiEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiEmbedder")
            .field("model", &self.config.model)
            .field("dimensions", &self.dimensions)
            .finish()
    }
}

impl OpenAiEmbedder {
    /// Connects and asks the server for one embedding, to learn the dimensions.
    pub async fn connect(config: OpenAiConfig) -> Result<Self> {
        let client = config.client()?;
        let permits = Arc::new(Semaphore::new(config.max_concurrency.max(1)));
        let mut embedder = Self { client, config: Arc::new(config), dimensions: 0, permits };
        let probe = embedder.embed(&["dimensions".to_owned()], &RunContext::new()).await?;
        embedder.dimensions = probe.first().map_or(0, Vec::len);
        Ok(embedder)
    }

    /// A model whose dimensions are known (no probe request).
    pub fn with_dimensions(config: OpenAiConfig, dimensions: usize) -> Result<Self> {
        let client = config.client()?;
        let permits = Arc::new(Semaphore::new(config.max_concurrency.max(1)));
        Ok(Self { client, config: Arc::new(config), dimensions, permits })
    }
}

#[async_trait]
impl Embedder for OpenAiEmbedder {
    async fn embed(&self, texts: &[String], ctx: &RunContext) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(texts.len());
        for batch in texts.chunks(self.config.embed_batch.max(1)) {
            let body = json!({"model": self.config.model, "input": batch, "encoding_format": "float"});
            let _permit = self
                .permits
                .acquire()
                .await
                .map_err(|_| Error::model_permanent("the model was shut down"))?;
            ctx.check_cancelled()?;
            let reply: Value =
                self.client.embeddings().create_byot::<Value, Value>(body).await.map_err(map_error)?;
            let mut data: Vec<(u64, Vec<f32>)> = reply
                .get("data")
                .and_then(Value::as_array)
                .ok_or_else(|| Error::model_permanent(format!("the embeddings reply has no data: {reply}")))?
                .iter()
                .map(|d| {
                    let index = d.get("index").and_then(Value::as_u64).unwrap_or(0);
                    let vector = d
                        .get("embedding")
                        .and_then(Value::as_array)
                        .map(|v| v.iter().filter_map(Value::as_f64).map(|f| f as f32).collect())
                        .unwrap_or_default();
                    (index, vector)
                })
                .collect();
            if data.len() != batch.len() {
                return Err(Error::model_permanent(format!(
                    "asked for {} embeddings, got {}",
                    batch.len(),
                    data.len()
                )));
            }
            data.sort_by_key(|(i, _)| *i);
            out.extend(data.into_iter().map(|(_, v)| v));
        }
        Ok(out)
    }

    fn dimensions(&self) -> usize {
        self.dimensions
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use catena_core::ToolSpec;

    #[test]
    fn requests_carry_every_field_and_refuse_grammars() {
        let mut request = ChatRequest::new(vec![
            Message::system("be brief"),
            Message::user("weather?"),
            Message::assistant("").with_tool_calls(vec![ToolCall {
                id: "c1".into(),
                name: "w".into(),
                arguments: json!({"city": "Oslo"}),
            }]),
            Message::tool("c1", "sunny"),
        ])
        .with_temperature(0.2)
        .with_max_tokens(50)
        .with_stop("END")
        .with_tools(vec![ToolSpec {
            name: "w".into(),
            description: "weather".into(),
            parameters: json!({"type": "object"}),
        }]);
        request.tool_choice = ToolChoice::Tool("w".into());
        let body = request_json("m", &request, true).unwrap();
        assert_eq!(body["messages"][2]["tool_calls"][0]["function"]["arguments"], "{\"city\":\"Oslo\"}");
        assert_eq!(body["messages"][2]["content"], Value::Null);
        assert_eq!(body["messages"][3], json!({"role": "tool", "tool_call_id": "c1", "content": "sunny"}));
        assert_eq!(body["tool_choice"], json!({"type": "function", "function": {"name": "w"}}));
        assert_eq!((body["max_tokens"].clone(), body["stop"].clone()), (json!(50), json!(["END"])));
        assert_eq!(body["stream_options"], json!({"include_usage": true}));
        let grammar = request.with_response_format(ResponseFormat::Grammar { gbnf: "root ::= \"x\"".into() });
        assert_eq!(
            request_json("m", &grammar, false).unwrap_err().kind(),
            catena_core::ErrorKind::InvalidInput
        );
    }

    #[test]
    fn streamed_tool_call_fragments_are_reassembled() {
        let mut parts = ToolCallParts::default();
        for f in [
            json!({"index": 0, "id": "call_1", "function": {"name": "get_", "arguments": ""}}),
            json!({"index": 1, "id": "call_2", "function": {"name": "time", "arguments": "{}"}}),
            json!({"index": 0, "function": {"name": "weather", "arguments": "{\"ci"}}),
            json!({"index": 0, "function": {"arguments": "ty\": \"Paris\"}"}}),
        ] {
            parts.add(&f);
        }
        let calls = parts.finish();
        assert_eq!(
            calls[0],
            ToolCall { id: "call_1".into(), name: "get_weather".into(), arguments: json!({"city": "Paris"}) }
        );
        assert_eq!(calls[1].name, "time");
    }
}
