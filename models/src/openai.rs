//! Remote models over the OpenAI API (feature `openai`): OpenAI itself and every server that
//! speaks its chat-completions and embeddings endpoints (vLLM, TGI, llama.cpp's server, Ollama,
//! LM Studio, OpenRouter, Together, `catena serve`...).
//!
//! Built on async-openai's client (configuration, authentication, server-sent-event parsing,
//! error decoding) with catena's typed [wire format](crate::wire), the same one `catena serve`
//! speaks, so every field catena has reaches the wire and nothing is lost on the way back:
//! - messages with tool calls and tool results, tools, `tool_choice`, `response_format`
//!   (`json_object`, `json_schema`; raw GBNF grammars are refused: they are a llama.cpp feature);
//! - streaming: text deltas as they arrive, tool-call fragments reassembled into whole calls, usage
//!   from the final chunk (`stream_options.include_usage`);
//! - errors mapped to catena's kinds: 429, 5xx, timeouts and dropped connections are transient,
//!   `context_length_exceeded` is its own kind, other 4xx are permanent; an error the server
//!   sends in the middle of a stream arrives typed too;
//! - limits ([`CallLimits`]): a connect timeout, a timeout per attempt, a per-model concurrency
//!   limit, retries of transient failures with exponential backoff and jitter or the server's
//!   `Retry-After` (a stream only before its first token), every wait cancellable.
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

use std::cell::Cell;
use std::time::Duration;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::middleware::HttpRequestFactory;
use catena_core::{CallLimits, Failure, Limiter};
use catena_core::{
    ChatDelta, ChatModel, ChatRequest, ChatResponse, Embedder, Error, FinishReason, Result, RetryPolicy,
    RunContext, Usage, async_trait,
};
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::OwnedSemaphorePermit;

use crate::wire::{
    ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, EmbeddingInput, EmbeddingsReply,
    EmbeddingsRequest, StreamEvent, ToolCallAssembler,
};

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
    /// Timeout per attempt, retries, concurrency (default: 300 s per attempt, 4 attempts from
    /// 500 ms backoff doubling up to 20 s, 16 requests in flight per model).
    pub limits: CallLimits,
    /// Texts per embeddings request (default 256; OpenAI accepts 2048).
    pub embed_batch: usize,
}

impl OpenAiConfig {
    /// A configuration for `model` with the defaults above.
    #[must_use]
    pub fn new(model: impl Into<String>) -> Self {
        let mut retry = RetryPolicy::attempts(4).with_initial_backoff(Duration::from_millis(500));
        retry.max_backoff = Duration::from_secs(20);
        Self {
            base_url: None,
            api_key: String::new(),
            model: model.into(),
            organization: None,
            headers: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            limits: CallLimits::default().with_timeout(Duration::from_secs(300)).with_retry(retry),
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

    /// Sets the limits.
    #[must_use]
    pub fn with_limits(mut self, limits: CallLimits) -> Self {
        self.limits = limits;
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
        // No total timeout here: the limits time each attempt (a long stream is not cut), and a
        // stream that stops sending for that long is broken.
        let http = reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .read_timeout(self.limits.timeout)
            .build()
            .map_err(|e| Error::model_permanent(format!("cannot build the HTTP client: {e}")))?;
        let service = tower::service_fn(move |factory: HttpRequestFactory| {
            let http = http.clone();
            async move { send_once(&http, &factory).await }
        });
        Ok(Client::with_config(config).with_http_service(service))
    }
}

tokio::task_local! {
    /// The `Retry-After` of the answer the current attempt got: set by the HTTP service below
    /// async-openai, read by the attempt above it (async-openai's errors carry no headers).
    static RETRY_AFTER: Cell<Option<Duration>>;
}

/// The server's own wait, from `retry-after-ms` or `Retry-After` (seconds).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let number = |name: &str| {
        headers.get(name)?.to_str().ok()?.trim().parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0)
    };
    let wait = number("retry-after-ms").map(|ms| ms / 1000.0).or_else(|| number("retry-after"))?;
    Some(Duration::from_secs_f64(wait.min(86_400.0)))
}

/// Sends one request. Retrying is the [`Limiter`]'s; this only notes what the server asked.
async fn send_once(
    http: &reqwest::Client,
    factory: &HttpRequestFactory,
) -> std::result::Result<reqwest::Response, OpenAIError> {
    let response = http.execute(factory.build().await?).await.map_err(OpenAIError::Reqwest)?;
    let status = response.status().as_u16();
    if status == 408 || status == 429 || status >= 500 {
        let asked = retry_after(response.headers());
        // Outside an attempt's scope there is nobody to tell.
        let _ = RETRY_AFTER.try_with(|slot| slot.set(asked));
    }
    Ok(response)
}

/// Runs one attempt of a call through async-openai, as a [`Failure`] the limiter understands.
async fn attempt<T>(
    call: impl Future<Output = std::result::Result<T, OpenAIError>>,
) -> std::result::Result<T, Failure> {
    RETRY_AFTER
        .scope(Cell::new(None), async {
            match call.await {
                Ok(value) => Ok(value),
                Err(e) => Err(Failure::from(map_error(e)).with_retry_after(RETRY_AFTER.with(Cell::get))),
            }
        })
        .await
}

/// Maps async-openai's errors onto catena's kinds (what retrying can and cannot fix).
fn map_error(e: OpenAIError) -> Error {
    let error = match &e {
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
    };
    error.with_source(e)
}

/// A server's client and the limits every call to it goes through: what both models share.
#[derive(Clone)]
struct Remote {
    client: Client<OpenAIConfig>,
    limiter: Limiter,
}

impl Remote {
    fn new(config: &OpenAiConfig) -> Result<Self> {
        Ok(Self { client: config.client()?, limiter: config.limits.clone().limiter() })
    }

    /// One request under the limits: a permit for its whole length, then attempts until one
    /// succeeds or the retry policy gives up.
    async fn call<T, F, Fut>(&self, ctx: &RunContext, what: &str, send: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = std::result::Result<T, OpenAIError>>,
    {
        let _permit = self.limiter.permit(ctx).await?;
        self.limiter.run(ctx, what, || attempt(send())).await
    }
}

/// A chat model behind an OpenAI-compatible API.
#[derive(Clone)]
pub struct OpenAiChatModel {
    remote: Remote,
    model: String,
    base_url: Option<String>,
}

impl std::fmt::Debug for OpenAiChatModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiChatModel")
            .field("model", &self.model)
            .field("base_url", &self.base_url)
            .finish()
    }
}

impl OpenAiChatModel {
    /// A model with `config`. Nothing is sent until the first request.
    pub fn new(config: OpenAiConfig) -> Result<Self> {
        Ok(Self { remote: Remote::new(&config)?, model: config.model, base_url: config.base_url })
    }

    /// Whether the server answers, with `GET /models` (which every OpenAI-compatible server
    /// has, and which costs it nothing): a health check. Any well-formed JSON reply passes.
    ///
    /// # Errors
    /// The request's error, classified as for a chat request (a refused connection is
    /// transient, a wrong API key permanent).
    pub async fn check(&self) -> Result<()> {
        self.remote.client.models().list_byot::<serde_json::Value>().await.map(|_| ()).map_err(map_error)
    }
}

#[async_trait]
impl ChatModel for OpenAiChatModel {
    async fn chat(&self, request: ChatRequest, ctx: &RunContext) -> Result<ChatResponse> {
        let call = async {
            let body = ChatCompletionRequest::from_chat_request(&self.model, &request, false)?;
            let reply = self
                .remote
                .call(ctx, "the chat completion", || {
                    let (chat, body) = (self.remote.client.chat(), body.clone());
                    async move { chat.create_byot::<_, ChatCompletion>(body).await }
                })
                .await?;
            ChatResponse::try_from(reply)
        };
        catena_core::telemetry::observe_chat(ctx, "openai", &self.model, &request, call).await
    }

    fn chat_stream<'a>(
        &'a self,
        request: ChatRequest,
        ctx: &'a RunContext,
    ) -> BoxStream<'a, Result<ChatDelta>> {
        let span = catena_core::telemetry::chat_span(ctx, "openai", &self.model, &request);
        let stream = Box::pin(
            futures::stream::once(async move {
                let body = ChatCompletionRequest::from_chat_request(&self.model, &request, true)?;
                let permit = self.remote.limiter.permit(ctx).await?;
                // A stream that breaks before its first event is as good as a failed request:
                // it is opened again under the retry policy. After that, errors end it.
                let (events, first) = self
                    .remote
                    .limiter
                    .run(ctx, "opening the chat stream", || {
                        let chat = self.remote.client.chat();
                        let body = body.clone();
                        async move {
                            let mut events = attempt(chat.create_stream_byot::<_, StreamEvent>(body)).await?;
                            match events.next().await {
                                Some(Err(e)) => Err(Failure::from(map_error(e))),
                                first => Ok((events, first)),
                            }
                        }
                    })
                    .await?;
                let events = futures::stream::iter(first).chain(events).map(|e| e.map_err(map_error));
                Ok::<_, Error>(fold_events(events, permit, ctx))
            })
            .flat_map(|opened| match opened {
                Ok(deltas) => deltas,
                Err(e) => Box::pin(futures::stream::once(async move { Err(e) })),
            }),
        );
        catena_core::telemetry::observe_chat_stream(span, ctx, "openai", &self.model, stream)
    }

    fn model_name(&self) -> &str {
        &self.model
    }
}

/// Turns stream events into deltas: text at once, tool calls and usage at the end.
fn fold_events<'a, S>(
    events: S,
    permit: OwnedSemaphorePermit,
    ctx: &'a RunContext,
) -> BoxStream<'a, Result<ChatDelta>>
where
    S: futures::Stream<Item = Result<StreamEvent>> + Send + 'a,
{
    struct State<S> {
        events: std::pin::Pin<Box<S>>,
        calls: ToolCallAssembler,
        finish: Option<FinishReason>,
        usage: Usage,
        done: bool,
        _permit: OwnedSemaphorePermit,
    }
    let state = State {
        events: Box::pin(events),
        calls: ToolCallAssembler::default(),
        finish: None,
        usage: Usage::default(),
        done: false,
        _permit: permit,
    };
    Box::pin(futures::stream::unfold(state, move |mut st| async move {
        if st.done {
            return None;
        }
        loop {
            let next = tokio::select! {
                next = st.events.next() => next,
                () = ctx.cancellation().cancelled() => {
                    st.done = true;
                    return Some((Err(Error::Cancelled), st));
                }
            };
            let chunk: ChatCompletionChunk = match next {
                Some(Err(e)) => {
                    st.done = true;
                    return Some((Err(e), st));
                }
                Some(Ok(StreamEvent::Error(reply))) => {
                    st.done = true;
                    return Some((Err(reply.error.into_error()), st));
                }
                Some(Ok(StreamEvent::Chunk(chunk))) => chunk,
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
                    let calls = std::mem::take(&mut st.calls);
                    let delta = ChatDelta {
                        content: String::new(),
                        tool_calls: calls.finish(),
                        finish_reason: st.finish,
                        usage: Some(st.usage),
                    };
                    return Some((Ok(delta), st));
                }
            };
            if let Some(usage) = chunk.usage {
                st.usage = usage.into();
            }
            let Some(choice) = chunk.choices.into_iter().next() else { continue };
            if let Some(reason) = choice.finish_reason {
                st.finish = Some(reason.into());
            }
            for piece in &choice.delta.tool_calls {
                st.calls.add(piece);
            }
            if let Some(text) = choice.delta.content.filter(|t| !t.is_empty()) {
                return Some((Ok(ChatDelta { content: text, ..ChatDelta::default() }), st));
            }
        }
    }))
}

/// An embedding model behind an OpenAI-compatible API.
#[derive(Clone)]
pub struct OpenAiEmbedder {
    remote: Remote,
    model: String,
    batch: usize,
    dimensions: usize,
}

impl std::fmt::Debug for OpenAiEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiEmbedder")
            .field("model", &self.model)
            .field("dimensions", &self.dimensions)
            .finish()
    }
}

impl OpenAiEmbedder {
    /// Connects and asks the server for one embedding, to learn the dimensions.
    pub async fn connect(config: OpenAiConfig) -> Result<Self> {
        let mut embedder = Self::with_dimensions(config, 0)?;
        let probe = embedder.embed(&["dimensions".to_owned()], &RunContext::new()).await?;
        embedder.dimensions = probe.first().map_or(0, Vec::len);
        Ok(embedder)
    }

    /// A model whose dimensions are known (no probe request).
    pub fn with_dimensions(config: OpenAiConfig, dimensions: usize) -> Result<Self> {
        let batch = config.embed_batch.max(1);
        Ok(Self { remote: Remote::new(&config)?, model: config.model, batch, dimensions })
    }
}

#[async_trait]
impl Embedder for OpenAiEmbedder {
    async fn embed(&self, texts: &[String], ctx: &RunContext) -> Result<Vec<Vec<f32>>> {
        use tracing::Instrument;
        let span = catena_core::telemetry::embeddings_span(ctx, "openai", &self.model, texts.len());
        let mut tokens = 0_u32;
        let result = self.embed_batches(texts, ctx, &mut tokens).instrument(span.clone()).await;
        match &result {
            Ok(_) => {
                catena_core::telemetry::record_embeddings(&span, ctx, "openai", &self.model, Some(tokens))
            }
            Err(e) => catena_core::telemetry::record_error(&span, e),
        }
        result
    }

    fn dimensions(&self) -> usize {
        self.dimensions
    }
}

impl OpenAiEmbedder {
    /// The requests of one `embed`, a batch at a time; `tokens` counts what the server billed.
    async fn embed_batches(
        &self,
        texts: &[String],
        ctx: &RunContext,
        tokens: &mut u32,
    ) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(texts.len());
        for batch in texts.chunks(self.batch) {
            let body = EmbeddingsRequest {
                model: self.model.clone(),
                input: EmbeddingInput::Many(batch.to_vec()),
                encoding_format: Some("float".into()),
                dimensions: None,
                user: None,
            };
            let reply = self
                .remote
                .call(ctx, "the embeddings request", || {
                    let (embeddings, body) = (self.remote.client.embeddings(), body.clone());
                    async move { embeddings.create_byot::<_, EmbeddingsReply>(body).await }
                })
                .await?;
            *tokens = tokens.saturating_add(u32::try_from(reply.usage.prompt_tokens).unwrap_or(u32::MAX));
            out.extend(reply.into_vectors(batch.len())?);
        }
        Ok(out)
    }
}
