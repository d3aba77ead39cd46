//! [`LlamaChatModel`]: a GGUF chat model on its own inference thread.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use catena_core::{
    ChatDelta, ChatModel, ChatRequest, ChatResponse, DeltaAccumulator, Event, Result, RunContext,
};
use futures::stream::{BoxStream, StreamExt};
use llama_cpp_2::token::LlamaToken;
use tokio_util::sync::CancellationToken;

use super::scheduler::{Job, Scheduler};
use super::speculate::{Drafter, Shape};
use super::template::ChatTemplate;
use super::tools::ToolFormat;
use super::{
    Jobs, LlamaOptions, Ready, Speculation, load_model, new_context, off_runtime, or_report, spawn_worker,
};

/// Requests decoded together by default.
const DEFAULT_PARALLEL: u32 = 4;

/// A chat model running in this process through llama.cpp.
///
/// Loading starts an inference thread that owns the model and one context with
/// [`LlamaOptions::parallel`] sequences: up to that many requests are decoded together in shared
/// batches, the rest wait. Each sequence keeps the tokens it evaluated, and a request goes to the
/// sequence sharing the longest prefix with it, so a chat's next turn or an agent's next step
/// evaluates only the new tokens; `Usage::cached_prompt_tokens` reports how many were reused.
///
/// ```no_run
/// use catena_core::{ChatModel, ChatRequest, Message, RunContext};
/// use catena_models::LlamaChatModel;
///
/// # async fn run() -> catena_core::Result<()> {
/// let model = LlamaChatModel::load_default().await?;
/// let reply = model.chat(ChatRequest::new(vec![Message::user("Hi!")]), &RunContext::new()).await?;
/// println!("{}", reply.text());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct LlamaChatModel {
    inner: Arc<Inner>,
}

struct Inner {
    jobs: Jobs<Job>,
    name: String,
    n_ctx: u32,
    tool_format: ToolFormat,
}

impl std::fmt::Debug for LlamaChatModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlamaChatModel")
            .field("name", &self.inner.name)
            .field("n_ctx", &self.inner.n_ctx)
            .field("tool_format", &self.inner.tool_format)
            .finish()
    }
}

struct Loaded {
    name: String,
    n_ctx: u32,
    tool_format: ToolFormat,
}

impl LlamaChatModel {
    /// Loads the default chat model (SmolLM2-135M-Instruct), fetching it first if needed.
    pub async fn load_default() -> Result<Self> {
        Self::load_named(crate::files::CHAT.name, LlamaOptions::default()).await
    }

    /// Loads a model by reference: a default's name (`chat`, `agent`; see
    /// [`files`](crate::files)), fetched first if needed, or a path to a GGUF file.
    ///
    /// # Errors
    /// A name that is neither a default nor a readable GGUF file; the fetch's and the load's errors.
    pub async fn load_named(reference: &str, options: LlamaOptions) -> Result<Self> {
        let reference = reference.to_owned();
        let path = off_runtime(move || crate::files::resolve(&reference)).await?;
        Self::load(&path, options).await
    }

    /// Loads a GGUF chat model.
    pub async fn load(path: &Path, options: LlamaOptions) -> Result<Self> {
        let path = path.to_path_buf();
        off_runtime(move || Self::load_blocking(&path, options)).await
    }

    /// Loads a GGUF chat model, blocking the calling thread until it is ready.
    pub fn load_blocking(path: &Path, options: LlamaOptions) -> Result<Self> {
        let path = path.to_path_buf();
        let file_name = path.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let (jobs, loaded) = spawn_worker("catena-llama-chat", move |ready, jobs| {
            worker(&path, &options, &ready, &jobs);
        })?;
        let name = if loaded.name.is_empty() { file_name } else { loaded.name };
        Ok(Self {
            inner: Arc::new(Inner { jobs, name, n_ctx: loaded.n_ctx, tool_format: loaded.tool_format }),
        })
    }

    /// The context window, in tokens.
    #[must_use]
    pub fn context_size(&self) -> u32 {
        self.inner.n_ctx
    }

    /// How the model writes tool calls: detected from its chat template at load, or the
    /// [`LlamaOptions::tool_format`] it was loaded with.
    #[must_use]
    pub fn tool_format(&self) -> ToolFormat {
        self.inner.tool_format
    }

    fn submit(
        &self,
        request: ChatRequest,
        cancel: CancellationToken,
    ) -> Result<tokio::sync::mpsc::UnboundedReceiver<Result<ChatDelta>>> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        self.inner.jobs.send(Job { request, deltas: tx, cancel })?;
        Ok(rx)
    }
}

#[async_trait]
impl ChatModel for LlamaChatModel {
    async fn chat(&self, request: ChatRequest, ctx: &RunContext) -> Result<ChatResponse> {
        let mut stream = self.chat_stream(request, ctx);
        let mut acc = DeltaAccumulator::default();
        while let Some(delta) = stream.next().await {
            acc.push(delta?);
        }
        Ok(acc.finish())
    }

    /// Streams tokens as they are generated. Dropping the stream cancels generation.
    fn chat_stream<'a>(
        &'a self,
        request: ChatRequest,
        ctx: &'a RunContext,
    ) -> BoxStream<'a, Result<ChatDelta>> {
        let cancel = ctx.cancellation().child_token();
        let guard = cancel.clone().drop_guard();
        let span = catena_core::telemetry::chat_span(ctx, "llama.cpp", &self.inner.name, &request);
        let stream: BoxStream<'a, Result<ChatDelta>> = match self.submit(request, cancel) {
            Err(e) => Box::pin(futures::stream::once(async move { Err(e) })),
            Ok(rx) => Box::pin(tokio_stream_from(rx).map(move |delta| {
                let _keep_until_stream_dropped = &guard;
                if let Ok(d) = &delta
                    && !d.content.is_empty()
                {
                    ctx.emit(Event::Token { text: d.content.clone() });
                }
                delta
            })),
        };
        catena_core::telemetry::observe_chat_stream(span, ctx, "llama.cpp", &self.inner.name, stream)
    }

    fn model_name(&self) -> &str {
        &self.inner.name
    }
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<T>,
) -> BoxStream<'static, T> {
    Box::pin(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)))
}

/// The inference thread: loads, reports, then serves jobs until the handle is dropped.
fn worker(path: &Path, options: &LlamaOptions, ready: &Ready<Loaded>, jobs: &std::sync::mpsc::Receiver<Job>) {
    let Some(model) = or_report(ready, load_model(path, options)) else { return };
    let seq_ctx = options.n_ctx.unwrap_or(4096).min(model.n_ctx_train().max(256)).max(64);
    let n_seq = options.parallel.unwrap_or(DEFAULT_PARALLEL).clamp(1, 64);
    let n_batch = options.n_batch.unwrap_or(512).clamp(32, seq_ctx);
    // One KV cache shared by all sequences, sized so each can hold a full window.
    let params = options
        .context_params()
        .with_n_ctx(std::num::NonZeroU32::new(seq_ctx.saturating_mul(n_seq)))
        .with_n_seq_max(n_seq)
        .with_kv_unified(true)
        .with_n_batch(n_batch)
        .with_n_ubatch(options.n_ubatch.unwrap_or(512).clamp(32, n_batch));
    let Some(mut ctx) = or_report(ready, new_context(&model, params)) else { return };
    let vocab = model.vocab();
    let piece = |t: LlamaToken| String::from_utf8_lossy(&vocab.token_to_piece(t, true, None)).into_owned();
    let template = ChatTemplate::new(
        options.chat_template.clone().or_else(|| model.meta_val_str("tokenizer.chat_template").ok()),
        piece(vocab.bos()),
        piece(vocab.eos()),
    );
    let name = model.meta_val_str("general.name").unwrap_or_default();
    let tool_format = options.tool_format.unwrap_or_else(|| ToolFormat::detect(template.source()));
    tracing::info!(
        model = %name,
        ?tool_format,
        overridden = options.tool_format.is_some(),
        template_overridden = options.chat_template.is_some(),
        "tool-call format"
    );
    let draft_model = match &options.speculation {
        Speculation::DraftModel { path, .. } => {
            let Some(draft) = or_report(ready, load_model(path, options)) else { return };
            Some(draft)
        }
        _ => None,
    };
    let shape = Shape { n_seq, seq_ctx, n_batch };
    let Some(drafter) = or_report(ready, Drafter::new(&model, draft_model.as_ref(), options, &shape)) else {
        return;
    };
    if ready.send(Ok(Loaded { name, n_ctx: seq_ctx, tool_format })).is_err() {
        return;
    }
    Scheduler::new(&model, &template, &shape, options, tool_format, drafter).run(&mut ctx, jobs);
}
