//! [`LlamaChatModel`]: a GGUF chat model on its own inference thread.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use catena_core::{
    ChatDelta, ChatModel, ChatRequest, ChatResponse, DeltaAccumulator, Error, Event, FinishReason,
    ResponseFormat, Result, RunContext, Sampling, Usage,
};
use futures::stream::{BoxStream, StreamExt};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use super::template::ChatTemplate;
use super::{LlamaOptions, load_model, spawn_worker};

/// Sampling defaults for the local model when a request leaves a field unset. Small models loop
/// without a repeat penalty, so it is on by default.
const DEFAULT_TEMPERATURE: f32 = 0.7;
const DEFAULT_TOP_K: u32 = 40;
const DEFAULT_TOP_P: f32 = 0.95;
const DEFAULT_MIN_P: f32 = 0.05;
const DEFAULT_REPEAT_PENALTY: f32 = 1.1;
const REPEAT_WINDOW: i32 = 64;

/// A chat model running in this process through llama.cpp.
///
/// Loading starts an inference thread that owns the model and one context; requests queue on it
/// and stream their tokens back. The conversation evaluated last is kept in the context, so a
/// request that extends it (a chat's next turn, an agent's next step) evaluates only the new
/// tokens; [`Usage::cached_prompt_tokens`] reports how many were reused.
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
    jobs: Mutex<std::sync::mpsc::Sender<Job>>,
    name: String,
    n_ctx: u32,
}

impl std::fmt::Debug for LlamaChatModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlamaChatModel")
            .field("name", &self.inner.name)
            .field("n_ctx", &self.inner.n_ctx)
            .finish()
    }
}

struct Job {
    request: ChatRequest,
    deltas: UnboundedSender<Result<ChatDelta>>,
    cancel: CancellationToken,
}

struct Loaded {
    name: String,
    n_ctx: u32,
}

impl LlamaChatModel {
    /// Loads the default chat model (SmolLM2-135M-Instruct), fetching it first if needed.
    pub async fn load_default() -> Result<Self> {
        let path = tokio::task::spawn_blocking(|| crate::files::resolve(crate::files::CHAT.name))
            .await
            .map_err(|e| Error::model_permanent(format!("model fetch task failed: {e}")))??;
        Self::load(&path, LlamaOptions::default()).await
    }

    /// Loads a GGUF chat model.
    pub async fn load(path: &Path, options: LlamaOptions) -> Result<Self> {
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || Self::load_blocking(&path, options))
            .await
            .map_err(|e| Error::model_permanent(format!("model load task failed: {e}")))?
    }

    /// Loads a GGUF chat model, blocking the calling thread until it is ready.
    pub fn load_blocking(path: &Path, options: LlamaOptions) -> Result<Self> {
        let path = path.to_path_buf();
        let file_name = path.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let (jobs, loaded) = spawn_worker("catena-llama-chat", move |ready, jobs| {
            worker(&path, &options, &ready, &jobs);
        })?;
        let name = if loaded.name.is_empty() { file_name } else { loaded.name };
        Ok(Self { inner: Arc::new(Inner { jobs: Mutex::new(jobs), name, n_ctx: loaded.n_ctx }) })
    }

    /// The context window, in tokens.
    #[must_use]
    pub fn context_size(&self) -> u32 {
        self.inner.n_ctx
    }

    fn submit(
        &self,
        request: ChatRequest,
        cancel: CancellationToken,
    ) -> Result<tokio::sync::mpsc::UnboundedReceiver<Result<ChatDelta>>> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let jobs =
            self.inner.jobs.lock().map_err(|_| Error::model_permanent("model handle lock poisoned"))?;
        jobs.send(Job { request, deltas: tx, cancel })
            .map_err(|_| Error::model_permanent("the inference thread has stopped"))?;
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
        match self.submit(request, cancel) {
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
        }
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
fn worker(
    path: &Path,
    options: &LlamaOptions,
    ready: &std::sync::mpsc::SyncSender<Result<Loaded>>,
    jobs: &std::sync::mpsc::Receiver<Job>,
) {
    let setup = || -> Result<(LlamaModel, u32)> {
        let model = load_model(path, options)?;
        let n_ctx = options.n_ctx.unwrap_or(4096).min(model.n_ctx_train().max(256)).max(64);
        Ok((model, n_ctx))
    };
    let (model, n_ctx) = match setup() {
        Ok(v) => v,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let n_batch = options.n_batch.unwrap_or(512).clamp(32, n_ctx);
    let params = LlamaContextParams::default()
        .with_n_ctx(std::num::NonZeroU32::new(n_ctx))
        .with_n_batch(n_batch)
        .with_n_ubatch(options.n_ubatch.unwrap_or(512).clamp(32, n_batch))
        .with_n_threads(options.threads())
        .with_n_threads_batch(options.threads_batch());
    let backend = match super::backend() {
        Ok(b) => b,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let mut ctx = match model.new_context(backend, params) {
        Ok(c) => c,
        Err(e) => {
            let _ =
                ready.send(Err(Error::model_permanent(format!("cannot create a llama.cpp context: {e}"))));
            return;
        }
    };
    let vocab = model.vocab();
    let piece = |t: LlamaToken| String::from_utf8_lossy(&vocab.token_to_piece(t, true, None)).into_owned();
    let template = ChatTemplate::new(
        model.meta_val_str("tokenizer.chat_template").ok(),
        piece(vocab.bos()),
        piece(vocab.eos()),
    );
    let name = model.meta_val_str("general.name").unwrap_or_default();
    if ready.send(Ok(Loaded { name, n_ctx })).is_err() {
        return;
    }
    let mut session = Session { cached: Vec::new(), n_batch, calls: 0 };
    while let Ok(job) = jobs.recv() {
        let deltas = job.deltas.clone();
        if let Err(e) = session.run(&model, &mut ctx, &template, job) {
            let _ = deltas.send(Err(e));
        }
    }
}

/// The tokens currently evaluated in the context (sequence 0), for prefix reuse.
struct Session {
    cached: Vec<LlamaToken>,
    n_batch: u32,
    /// Tool calls made so far, for unique call ids.
    calls: u64,
}

impl Session {
    fn run(
        &mut self,
        model: &LlamaModel,
        ctx: &mut LlamaContext<'_>,
        template: &ChatTemplate,
        job: Job,
    ) -> Result<()> {
        let Job { request, deltas, cancel } = job;
        if request.messages.is_empty() {
            return Err(Error::invalid_input("a chat request needs at least one message"));
        }
        // With tools, the reply is decoded under a grammar of "call one of these tools" (or
        // "answer", when the model may choose); see tools.rs.
        let tool_plan = super::tools::plan(&request)?;
        let (prompt, kind) = match &tool_plan {
            Some(plan) => template.render(model, &plan.messages, &[]),
            None => template.render(model, &request.messages, &request.tools),
        };
        tracing::trace!(?kind, prompt_len = prompt.len(), "rendered chat prompt");
        let vocab = model.vocab();
        // Templates that write the BOS token themselves must not get a second one.
        let bos = String::from_utf8_lossy(&vocab.token_to_piece(vocab.bos(), true, None)).into_owned();
        let add_bos = vocab.should_add_bos() && !(bos.is_empty() || prompt.starts_with(&bos));
        let tokens = vocab.tokenize(prompt.as_bytes(), add_bos, true);
        let n_ctx = usize::try_from(ctx.n_ctx()).unwrap_or(usize::MAX);
        if tokens.is_empty() {
            return Err(Error::invalid_input("the rendered prompt has no tokens"));
        }
        if tokens.len() >= n_ctx {
            return Err(Error::context_length(format!(
                "the prompt has {} tokens but the context holds {n_ctx}; shorten the conversation \
                 (or use memory that summarises) or load the model with a larger n_ctx",
                tokens.len()
            )));
        }
        let grammar = match &tool_plan {
            Some(plan) => Some(schema_grammar(&plan.schema)?),
            None => format_grammar(request.response_format.as_ref())?,
        };
        let mut sampler = build_sampler(model, &request.sampling, grammar.as_deref())?;

        // Reuse the longest common prefix with what the context already holds; at least the last
        // prompt token is evaluated again, since its logits are needed.
        let common =
            self.cached.iter().zip(&tokens).take_while(|(a, b)| a == b).count().min(tokens.len() - 1);
        if ctx.clear_kv_cache_seq(Some(0), u32::try_from(common).ok(), None).ok() != Some(true) {
            ctx.clear_kv_cache();
            self.cached.clear();
        }
        let reused = self.cached.len().min(common);
        self.cached.truncate(reused);
        let mut logits_at = self.decode_prompt(ctx, &tokens, reused, &cancel)?;

        let max_new = request
            .sampling
            .max_tokens
            .map_or(n_ctx - tokens.len(), |m| usize::try_from(m).unwrap_or(usize::MAX))
            .min(n_ctx - tokens.len());
        let mut text = TextAssembler::new(request.sampling.stop.clone());
        let mut generated = 0usize;
        let mut held = String::new();
        let mut batch = LlamaBatch::new(1, 1);
        let finish = loop {
            if cancel.is_cancelled() {
                break FinishReason::Cancelled;
            }
            if generated >= max_new {
                break FinishReason::Length;
            }
            let token = sampler.sample(ctx, logits_at);
            if vocab.is_eog(token) {
                break FinishReason::Stop;
            }
            generated += 1;
            let (piece, stopped) = text.push(&vocab.token_to_piece(token, false, None));
            if tool_plan.is_some() {
                // A tool-mode reply is JSON: it is parsed whole at the end, not streamed.
                held.push_str(&piece);
            } else if !piece.is_empty()
                && deltas.send(Ok(ChatDelta { content: piece, ..ChatDelta::default() })).is_err()
            {
                // Nobody listens any more (client gone): stop spending compute.
                break FinishReason::Cancelled;
            }
            if stopped {
                break FinishReason::Stop;
            }
            batch.clear();
            let pos = i32::try_from(self.cached.len()).unwrap_or(i32::MAX);
            batch.add(token, pos, &[0], true).map_err(|e| Error::model_permanent(format!("batch: {e}")))?;
            if let Err(e) = ctx.decode(&mut batch) {
                self.reset(ctx);
                return Err(Error::model_transient(format!("llama.cpp decode failed: {e}")));
            }
            self.cached.push(token);
            logits_at = 0;
        };
        let tail = text.finish();
        let usage = Usage {
            prompt_tokens: u32::try_from(tokens.len()).unwrap_or(u32::MAX),
            cached_prompt_tokens: u32::try_from(reused).unwrap_or(u32::MAX),
            completion_tokens: u32::try_from(generated).unwrap_or(u32::MAX),
        };
        if finish == FinishReason::Cancelled && cancel.is_cancelled() {
            let _ = deltas.send(Err(Error::Cancelled));
            return Ok(());
        }
        if tool_plan.is_none() {
            let _ = deltas.send(Ok(ChatDelta {
                content: tail,
                finish_reason: Some(finish),
                usage: Some(usage),
                ..ChatDelta::default()
            }));
            return Ok(());
        }
        held.push_str(&tail);
        if finish == FinishReason::Length {
            return Err(Error::parse(
                "tool-call reply",
                format!(
                    "generation hit max_tokens before the JSON was complete ({held:?}); raise max_tokens"
                ),
            ));
        }
        let call_id = format!("call_{}", self.calls);
        self.calls += 1;
        let (content, tool_calls) = super::tools::parse_reply(&held, &call_id)?;
        let finish = if tool_calls.is_empty() { finish } else { FinishReason::ToolCalls };
        let _ = deltas.send(Ok(ChatDelta {
            content,
            tool_calls,
            finish_reason: Some(finish),
            usage: Some(usage),
        }));
        Ok(())
    }

    /// Evaluates `tokens[from..]` in `n_batch` chunks; returns the batch index of the last token's
    /// logits.
    fn decode_prompt(
        &mut self,
        ctx: &mut LlamaContext<'_>,
        tokens: &[LlamaToken],
        from: usize,
        cancel: &CancellationToken,
    ) -> Result<i32> {
        let n_batch = usize::try_from(self.n_batch).unwrap_or(512).max(1);
        let rest = tokens.get(from..).unwrap_or_default();
        let mut batch = LlamaBatch::new(n_batch, 1);
        let mut last_index = 0;
        let chunks = rest.chunks(n_batch).count();
        for (ci, chunk) in rest.chunks(n_batch).enumerate() {
            if cancel.is_cancelled() {
                self.reset(ctx);
                return Err(Error::Cancelled);
            }
            batch.clear();
            for (i, &t) in chunk.iter().enumerate() {
                let pos = i32::try_from(self.cached.len() + i).unwrap_or(i32::MAX);
                let is_last = ci + 1 == chunks && i + 1 == chunk.len();
                batch
                    .add(t, pos, &[0], is_last)
                    .map_err(|e| Error::model_permanent(format!("batch: {e}")))?;
                if is_last {
                    last_index = i32::try_from(i).unwrap_or(0);
                }
            }
            if let Err(e) = ctx.decode(&mut batch) {
                self.reset(ctx);
                return Err(Error::model_transient(format!("llama.cpp decode failed: {e}")));
            }
            self.cached.extend_from_slice(chunk);
        }
        Ok(last_index)
    }

    fn reset(&mut self, ctx: &mut LlamaContext<'_>) {
        ctx.clear_kv_cache();
        self.cached.clear();
    }
}

fn format_grammar(format: Option<&ResponseFormat>) -> Result<Option<String>> {
    Ok(match format {
        None | Some(ResponseFormat::Text) => None,
        Some(ResponseFormat::Grammar { gbnf }) => Some(gbnf.clone()),
        Some(ResponseFormat::JsonObject) => Some(schema_grammar(&serde_json::json!({"type": "object"}))?),
        Some(ResponseFormat::JsonSchema { schema, .. }) => Some(schema_grammar(schema)?),
    })
}

fn build_sampler(model: &LlamaModel, s: &Sampling, grammar: Option<&str>) -> Result<LlamaSampler> {
    let mut chain = Vec::new();
    if let Some(g) = grammar {
        chain.push(
            LlamaSampler::grammar(model, g, "root")
                .map_err(|e| Error::invalid_input(format!("invalid grammar: {e}")))?,
        );
    }
    let repeat = s.repeat_penalty.unwrap_or(DEFAULT_REPEAT_PENALTY);
    if (repeat - 1.0).abs() > f32::EPSILON {
        chain.push(LlamaSampler::penalties(model.n_vocab(), REPEAT_WINDOW, repeat, 0.0, 0.0));
    }
    let temperature = s.temperature.unwrap_or(DEFAULT_TEMPERATURE);
    if temperature <= 0.0 {
        chain.push(LlamaSampler::greedy());
    } else {
        chain.push(LlamaSampler::top_k(i32::try_from(s.top_k.unwrap_or(DEFAULT_TOP_K)).unwrap_or(40)));
        chain.push(LlamaSampler::top_p(s.top_p.unwrap_or(DEFAULT_TOP_P), 1));
        chain.push(LlamaSampler::min_p(s.min_p.unwrap_or(DEFAULT_MIN_P), 1));
        chain.push(LlamaSampler::temp(temperature));
        chain.push(LlamaSampler::dist(s.seed.unwrap_or_else(rand_seed)));
    }
    Ok(LlamaSampler::chain_simple(chain))
}

fn rand_seed() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64),
    );
    (h.finish() & 0xffff_ffff) as u32
}

/// JSON Schema to GBNF with llama.cpp's own converter.
pub(crate) fn schema_grammar(schema: &serde_json::Value) -> Result<String> {
    llama_cpp_2::json_schema_to_grammar(&schema.to_string())
        .map_err(|e| Error::invalid_input(format!("cannot turn the JSON schema into a grammar: {e}")))
}

/// Turns token bytes into text deltas: holds back incomplete UTF-8 sequences, and any tail that
/// could be the start of a stop string, so stop strings never leak into the output.
struct TextAssembler {
    bytes: Vec<u8>,
    pending: String,
    stops: Vec<String>,
}

impl TextAssembler {
    fn new(stops: Vec<String>) -> Self {
        Self {
            bytes: Vec::new(),
            pending: String::new(),
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
        }
    }

    /// Adds a token's bytes; returns the text safe to emit and whether a stop string was hit.
    fn push(&mut self, piece: &[u8]) -> (String, bool) {
        self.bytes.extend_from_slice(piece);
        // Everything up to an incomplete UTF-8 sequence at the very end can be released (invalid
        // bytes inside become U+FFFD); the incomplete tail waits for the next token.
        let mut valid = self.bytes.len();
        let mut start = 0;
        while let Some(rest) = self.bytes.get(start..) {
            match std::str::from_utf8(rest) {
                Ok(_) => break,
                Err(e) => match e.error_len() {
                    None => {
                        valid = start + e.valid_up_to();
                        break;
                    }
                    Some(n) => start += e.valid_up_to() + n,
                },
            }
        }
        let rest = self.bytes.split_off(valid);
        let done = std::mem::replace(&mut self.bytes, rest);
        self.pending.push_str(&String::from_utf8_lossy(&done));
        if let Some(at) = self.stops.iter().filter_map(|s| self.pending.find(s.as_str())).min() {
            let out: String = self.pending.get(..at).unwrap_or_default().to_owned();
            self.pending.clear();
            self.bytes.clear();
            return (out, true);
        }
        let hold = self.held_back();
        let cut = self.pending.len() - hold;
        let out = self.pending.get(..cut).unwrap_or_default().to_owned();
        self.pending = self.pending.get(cut..).unwrap_or_default().to_owned();
        (out, false)
    }

    /// Length of the longest suffix of `pending` that is a proper prefix of a stop string.
    fn held_back(&self) -> usize {
        let mut best = 0;
        for stop in &self.stops {
            for (i, _) in self.pending.char_indices() {
                let suffix = self.pending.get(i..).unwrap_or_default();
                if suffix.len() > best && stop.starts_with(suffix) {
                    best = suffix.len();
                }
            }
        }
        best
    }

    /// What is left when generation ends without a stop string.
    fn finish(self) -> String {
        let mut out = self.pending;
        out.push_str(&String::from_utf8_lossy(&self.bytes));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_strings_never_leak_even_across_tokens() {
        let mut t = TextAssembler::new(vec!["\nObservation:".into()]);
        let mut out = String::new();
        for piece in ["Action: x", "\nObs", "erv", "ation: 42"] {
            let (p, stop) = t.push(piece.as_bytes());
            out.push_str(&p);
            if stop {
                break;
            }
        }
        assert_eq!(out, "Action: x");
    }

    #[test]
    fn split_utf8_is_reassembled() {
        let mut t = TextAssembler::new(vec![]);
        let e = "é".as_bytes();
        let (a, _) = t.push(&e[..1]);
        let (b, _) = t.push(&e[1..]);
        assert_eq!((a.as_str(), b.as_str()), ("", "é"));
        let (c, _) = t.push(&[0xff, b'x']);
        assert_eq!(c, "\u{fffd}x");
    }

    #[test]
    fn held_text_is_released_when_it_stops_matching() {
        let mut t = TextAssembler::new(vec!["STOP".into()]);
        assert_eq!(t.push(b"ab ST").0, "ab ");
        assert_eq!(t.push(b"ar").0, "STar");
        assert_eq!(t.finish(), "");
    }
}
