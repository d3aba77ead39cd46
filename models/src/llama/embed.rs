//! [`LlamaEmbedder`]: a GGUF embedding model on its own inference thread.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use catena_core::{Embedder, Error, Event, Result, RunContext};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use tokio::sync::oneshot;

use super::{Jobs, LlamaOptions, Ready, load_model, new_context, off_runtime, or_report, spawn_worker};

/// Most sequences decoded together in one batch.
const MAX_SEQS: u32 = 32;

/// Sentence embeddings from a GGUF model through llama.cpp: pooled as the GGUF says (mean, CLS or
/// last token), L2-normalised, many texts per decode.
///
/// Inputs longer than the model's window are truncated (keeping the start and the closing
/// separator, as sentence-transformers does) and reported with an [`Event::Warning`].
///
/// ```no_run
/// use catena_core::{Embedder, RunContext};
/// use catena_models::LlamaEmbedder;
///
/// # async fn run() -> catena_core::Result<()> {
/// let embedder = LlamaEmbedder::load_default().await?;
/// let vectors = embedder.embed(&["hello".into(), "world".into()], &RunContext::new()).await?;
/// assert_eq!(vectors[0].len(), embedder.dimensions());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct LlamaEmbedder {
    inner: Arc<Inner>,
}

struct Inner {
    jobs: Jobs<Job>,
    dimensions: usize,
    max_tokens: usize,
}

impl std::fmt::Debug for LlamaEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlamaEmbedder")
            .field("dimensions", &self.inner.dimensions)
            .field("max_tokens", &self.inner.max_tokens)
            .finish()
    }
}

struct Job {
    texts: Vec<String>,
    reply: oneshot::Sender<Result<Embedded>>,
}

struct Embedded {
    vectors: Vec<Vec<f32>>,
    /// Indices of the texts that were truncated, with their token counts.
    truncated: Vec<(usize, usize)>,
}

struct Loaded {
    dimensions: usize,
    max_tokens: usize,
}

impl LlamaEmbedder {
    /// Loads the default embedding model (all-MiniLM-L6-v2), fetching and converting it first if
    /// needed.
    pub async fn load_default() -> Result<Self> {
        let path = off_runtime(|| crate::files::resolve(crate::files::EMBED.name)).await?;
        Self::load(&path, LlamaOptions::default()).await
    }

    /// Loads a GGUF embedding model.
    pub async fn load(path: &Path, options: LlamaOptions) -> Result<Self> {
        let path = path.to_path_buf();
        off_runtime(move || Self::load_blocking(&path, options)).await
    }

    /// Loads a GGUF embedding model, blocking until it is ready.
    pub fn load_blocking(path: &Path, options: LlamaOptions) -> Result<Self> {
        let path = path.to_path_buf();
        let (jobs, loaded) =
            spawn_worker("catena-llama-embed", move |ready, jobs| worker(&path, &options, &ready, &jobs))?;
        Ok(Self {
            inner: Arc::new(Inner { jobs, dimensions: loaded.dimensions, max_tokens: loaded.max_tokens }),
        })
    }

    /// The longest input, in tokens, embedded without truncation.
    #[must_use]
    pub fn max_tokens(&self) -> usize {
        self.inner.max_tokens
    }
}

#[async_trait]
impl Embedder for LlamaEmbedder {
    async fn embed(&self, texts: &[String], ctx: &RunContext) -> Result<Vec<Vec<f32>>> {
        ctx.check_cancelled()?;
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let span = catena_core::telemetry::embeddings_span(ctx, "llama.cpp", "embed", texts.len());
        let (reply, rx) = oneshot::channel();
        self.inner.jobs.send(Job { texts: texts.to_vec(), reply })?;
        let out = tokio::select! {
            r = rx => match r.map_err(|_| Error::model_permanent("the embedding thread dropped the request")) {
                Ok(Ok(out)) => out,
                Ok(Err(e)) | Err(e) => {
                    catena_core::telemetry::record_error(&span, &e);
                    return Err(e);
                }
            },
            () = ctx.cancellation().cancelled() => return Err(Error::Cancelled),
        };
        for (index, tokens) in out.truncated {
            ctx.emit(Event::Warning {
                message: format!(
                    "input {index} has {tokens} tokens; embedded its first {} (the model's window)",
                    self.inner.max_tokens
                ),
            });
        }
        Ok(out.vectors)
    }

    fn dimensions(&self) -> usize {
        self.inner.dimensions
    }
}

fn worker(path: &Path, options: &LlamaOptions, ready: &Ready<Loaded>, jobs: &std::sync::mpsc::Receiver<Job>) {
    let Some(model) = or_report(ready, load_model(path, options)) else { return };
    let n_ctx = options.n_ctx.unwrap_or_else(|| model.n_ctx_train()).clamp(8, 8192);
    // Non-causal models need each sequence within one micro-batch, so the batch sizes equal the window.
    let params = options
        .context_params()
        .with_embeddings(true)
        .with_n_ctx(std::num::NonZeroU32::new(n_ctx))
        .with_n_batch(n_ctx)
        .with_n_ubatch(n_ctx)
        .with_n_seq_max(MAX_SEQS)
        // Unified: every sequence may use the whole window (split, each would get n_ctx / MAX_SEQS).
        .with_kv_unified(true);
    let Some(mut ctx) = or_report(ready, new_context(&model, params)) else { return };
    let max_tokens = model
        .meta_val_str("catena.max_seq_length")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(usize::MAX)
        .min(usize::try_from(n_ctx).unwrap_or(512));
    let dimensions = usize::try_from(model.n_embd()).unwrap_or(0);
    if ready.send(Ok(Loaded { dimensions, max_tokens })).is_err() {
        return;
    }
    while let Ok(job) = jobs.recv() {
        let result = embed_all(&model, &mut ctx, &job.texts, max_tokens, n_ctx as usize, dimensions);
        let _ = job.reply.send(result);
    }
}

fn embed_all(
    model: &LlamaModel,
    ctx: &mut LlamaContext<'_>,
    texts: &[String],
    max_tokens: usize,
    n_batch: usize,
    dimensions: usize,
) -> Result<Embedded> {
    let vocab = model.vocab();
    let mut truncated = Vec::new();
    let mut sequences: Vec<Vec<LlamaToken>> = Vec::with_capacity(texts.len());
    for (i, text) in texts.iter().enumerate() {
        let mut tokens = vocab.tokenize(text.as_bytes(), true, false);
        if tokens.len() > max_tokens {
            truncated.push((i, tokens.len()));
            // Keep the first tokens and the closing separator, like sentence-transformers.
            let last = tokens.last().copied();
            tokens.truncate(max_tokens.saturating_sub(1));
            tokens.extend(last);
        }
        sequences.push(tokens);
    }
    let mut vectors = Vec::with_capacity(texts.len());
    let mut batch = LlamaBatch::new(n_batch, i32::try_from(MAX_SEQS).unwrap_or(1));
    let mut group: Vec<usize> = Vec::new();
    let mut group_tokens = 0;
    let mut flush =
        |group: &mut Vec<usize>, batch: &mut LlamaBatch, vectors: &mut Vec<Vec<f32>>| -> Result<()> {
            if group.is_empty() {
                return Ok(());
            }
            ctx.clear_kv_cache();
            ctx.decode(batch)
                .map_err(|e| Error::model_transient(format!("llama.cpp embedding decode failed: {e}")))?;
            for seq in 0..group.len() {
                let seq = i32::try_from(seq).unwrap_or(0);
                let raw = ctx.embeddings_seq_ith(seq).map_err(|e| {
                    Error::model_permanent(format!("no pooled embedding (is this an embedding model?): {e}"))
                })?;
                vectors.push(normalise(raw));
            }
            group.clear();
            batch.clear();
            Ok(())
        };
    for (i, tokens) in sequences.iter().enumerate() {
        if !group.is_empty() && (group_tokens + tokens.len() > n_batch || group.len() >= MAX_SEQS as usize) {
            flush(&mut group, &mut batch, &mut vectors)?;
            group_tokens = 0;
        }
        let seq = i32::try_from(group.len()).unwrap_or(0);
        for (pos, &t) in tokens.iter().enumerate() {
            batch
                .add(t, i32::try_from(pos).unwrap_or(0), &[seq], true)
                .map_err(|e| Error::model_permanent(format!("embedding batch: {e}")))?;
        }
        group.push(i);
        group_tokens += tokens.len();
    }
    flush(&mut group, &mut batch, &mut vectors)?;
    if vectors.iter().any(|v| v.len() != dimensions) {
        return Err(Error::model_permanent("the model returned vectors of an unexpected length"));
    }
    Ok(Embedded { vectors, truncated })
}

fn normalise(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 { v.iter().map(|x| x / norm).collect() } else { v.to_vec() }
}
