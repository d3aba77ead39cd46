//! llama.cpp in process (feature `llama`): [`LlamaChatModel`] and [`LlamaEmbedder`].
//!
//! llama.cpp contexts are not `Send`, and its backend initialises once per process. So each loaded
//! model lives on its own inference thread, which owns the model and its context and is fed jobs
//! through a channel; the public handles are `Send + Sync + Clone` and cheap to share. Dropping the
//! last handle ends the thread and frees the model.

mod chat;
mod decode;
mod embed;
#[doc(hidden)]
pub mod fuzzing;
mod perplexity;
mod scheduler;
mod speculate;
mod template;
mod tokenizer;
mod tools;

use std::sync::OnceLock;

use catena_core::{Error, Result};
use llama_cpp_2::llama_backend::LlamaBackend;

pub use chat::LlamaChatModel;
pub use embed::LlamaEmbedder;
pub use perplexity::{Perplexity, perplexity};
pub use tokenizer::LlamaTokenizer;
pub use tools::ToolFormat;

/// How a model is loaded and run. Every field has a default that works on a laptop CPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlamaOptions {
    /// CPU threads for generation (default: the number of cores).
    pub threads: Option<u32>,
    /// CPU threads for prompt processing (default: `threads`).
    pub threads_batch: Option<u32>,
    /// Context window in tokens, per request (default: 4096 for chat, capped at the model's
    /// training length; the model's length for embeddings).
    pub n_ctx: Option<u32>,
    /// Chat requests decoded together, each in its own sequence of one shared KV cache
    /// (default 4). Memory for the cache grows with `parallel * n_ctx`.
    pub parallel: Option<u32>,
    /// Most tokens submitted per decode call (default 512).
    pub n_batch: Option<u32>,
    /// Physical micro-batch size (default 512).
    pub n_ubatch: Option<u32>,
    /// Layers offloaded to the GPU (needs a GPU feature: `cuda`, `vulkan`, `metal`; default 0).
    pub n_gpu_layers: u32,
    /// Memory-map the model file (default true).
    pub use_mmap: bool,
    /// Lock the model in RAM (default false).
    pub use_mlock: bool,
    /// Reuse evaluated prompt prefixes between requests (default true). Off, every request
    /// evaluates its whole prompt: only useful to measure what reuse saves.
    pub reuse_prefix: bool,
    /// Flash attention: `None` lets llama.cpp decide (the default), or force it on or off.
    pub flash_attention: Option<bool>,
    /// Number format of the KV cache (default f16). Quantised caches save memory for long
    /// contexts; llama.cpp needs flash attention for a quantised V cache.
    pub kv_cache: KvCache,
    /// How the model writes tool calls (default: detected from its chat template, and logged at
    /// load; see [`ToolFormat`]).
    pub tool_format: Option<ToolFormat>,
    /// A Jinja chat template to use instead of the one in the model file (default: the file's
    /// `tokenizer.chat_template`). For GGUFs whose template is missing or broken, or to give a
    /// model another tool syntax; the tool format is then detected from this template.
    pub chat_template: Option<String>,
    /// Speculative decoding (default off); see [`Speculation`].
    pub speculation: Speculation,
}

/// Speculative decoding: guess the next tokens cheaply, then let the model check all the guesses
/// in one batched forward pass instead of one pass per token.
///
/// Every token is still chosen by the request's own sampler from the model's logits at its
/// position, and a guess counts only when it equals that choice; the first mismatch ends the
/// guess, and the KV cells of the guesses after it are removed. So the reply is drawn from the
/// model's own distribution (the guesses are deterministic, so "sample, then compare" is the
/// standard acceptance rule), one random draw per emitted token as without speculation, and
/// grammars, stop strings and penalties see only accepted tokens.
/// [`Usage::draft_tokens`](catena_core::Usage::draft_tokens) and
/// [`Usage::accepted_draft_tokens`](catena_core::Usage::accepted_draft_tokens) report how well it
/// guessed.
///
/// Two things decide where to use it, both measured in docs/benchmarks.md:
/// - Checking a guess is not free: on a 2-core CPU a batch of `n` tokens costs nearly `n` times
///   one token (about 0.6-0.8 of a forward pass per extra token), so only long runs of right
///   guesses (replies that quote their context) gain; on a GPU or a many-core CPU a short batch
///   costs about what one token does. Guesses therefore start at one token and double only while
///   they are confirmed whole.
/// - llama.cpp computes a batch of several tokens with other kernels than a single token
///   (tinyBLAS, flash attention), whose logits differ slightly (up to 0.85 measured on the default
///   model). A greedy reply is a greedy reply of the model under those kernels, and can part from
///   the one-token-at-a-time reply where two tokens nearly tie. Built with `GGML_LLAMAFILE=OFF`
///   and run with flash attention off, the logits of both paths were bit-identical.
///
/// Off by default; [`Speculation::PROMPT_LOOKUP`] or [`Speculation::draft_model`] turns it on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Speculation {
    /// One token per forward pass.
    #[default]
    Off,
    /// Prompt lookup: when the last `ngram_max` (down to `ngram_min`) tokens of the prompt and
    /// reply so far occurred earlier, guess that what followed them then follows again, up to
    /// `max_draft` tokens. Costs no second model, and pays where replies copy from their context.
    PromptLookup {
        /// Shortest n-gram that may start a guess (at least 1).
        ngram_min: u32,
        /// Longest n-gram tried first.
        ngram_max: u32,
        /// Most tokens guessed at once.
        max_draft: u32,
    },
    /// A smaller model of the same family guesses: it decodes greedily ahead of the model, one
    /// token per (cheap) forward pass, up to `max_draft` tokens, and the model checks the guess in
    /// one pass. Pays where the small model agrees with the large one and a forward pass of the
    /// large one is much dearer than the small one's several (a GPU, a large model).
    ///
    /// The draft model must share the model's tokenizer (same kind, same token texts, same
    /// BOS/EOS): loading refuses a pair that does not and says which token differs. It keeps its
    /// own KV cache, one sequence per request slot, with the same reuse of evaluated prefixes.
    DraftModel {
        /// The draft model's GGUF file.
        path: std::path::PathBuf,
        /// Most tokens guessed at once.
        max_draft: u32,
    },
}

impl Speculation {
    /// Prompt lookup with the settings catena measured: n-grams of 3 down to 2 tokens, up to 8
    /// tokens guessed.
    pub const PROMPT_LOOKUP: Self = Self::PromptLookup { ngram_min: 2, ngram_max: 3, max_draft: 8 };

    /// Drafting with the GGUF at `path`, up to 8 tokens guessed at once (guesses still start at
    /// one token and grow only while confirmed).
    pub fn draft_model(path: impl Into<std::path::PathBuf>) -> Self {
        Self::DraftModel { path: path.into(), max_draft: 8 }
    }
}

/// Number formats for the KV cache; see [`LlamaOptions::kv_cache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KvCache {
    /// 16-bit floats.
    #[default]
    F16,
    /// 8-bit quantised (about half the memory of f16).
    Q8_0,
    /// 4-bit quantised (about a quarter).
    Q4_0,
}

impl Default for LlamaOptions {
    fn default() -> Self {
        Self {
            threads: None,
            threads_batch: None,
            n_ctx: None,
            parallel: None,
            n_batch: None,
            n_ubatch: None,
            n_gpu_layers: 0,
            use_mmap: true,
            use_mlock: false,
            reuse_prefix: true,
            flash_attention: None,
            kv_cache: KvCache::F16,
            tool_format: None,
            chat_template: None,
            speculation: Speculation::default(),
        }
    }
}

impl LlamaOptions {
    pub(crate) fn threads(&self) -> i32 {
        let cores = std::thread::available_parallelism().map_or(4, std::num::NonZeroUsize::get);
        self.threads
            .map_or_else(|| i32::try_from(cores).unwrap_or(4), |t| i32::try_from(t.max(1)).unwrap_or(4))
    }

    pub(crate) fn threads_batch(&self) -> i32 {
        self.threads_batch.map_or_else(|| self.threads(), |t| i32::try_from(t.max(1)).unwrap_or(4))
    }

    /// Context parameters every context shares: threads, attention, cache format.
    pub(crate) fn context_params(&self) -> llama_cpp_2::context::params::LlamaContextParams {
        use llama_cpp_2::context::params::KvCacheType;
        let policy = match self.flash_attention {
            None => llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_AUTO,
            Some(true) => llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_ENABLED,
            Some(false) => llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_DISABLED,
        };
        let cache = match self.kv_cache {
            KvCache::F16 => KvCacheType::F16,
            KvCache::Q8_0 => KvCacheType::Q8_0,
            KvCache::Q4_0 => KvCacheType::Q4_0,
        };
        llama_cpp_2::context::params::LlamaContextParams::default()
            .with_n_threads(self.threads())
            .with_n_threads_batch(self.threads_batch())
            .with_flash_attention_policy(policy)
            .with_type_k(cache)
            .with_type_v(cache)
    }

    pub(crate) fn model_params(&self) -> llama_cpp_2::model::params::LlamaModelParams {
        llama_cpp_2::model::params::LlamaModelParams::default()
            .with_n_gpu_layers(self.n_gpu_layers)
            .with_use_mmap(self.use_mmap)
            .with_use_mlock(self.use_mlock)
    }
}

/// The process-wide llama.cpp backend, initialised on first use, with llama.cpp's logging routed
/// to `tracing` (so it is silent unless a subscriber asks for it).
///
/// llama.cpp initialises once per process, so a program that also calls `llama-cpp-2` directly
/// must use this handle rather than `LlamaBackend::init()`.
pub fn backend() -> Result<&'static LlamaBackend> {
    static BACKEND: OnceLock<std::result::Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| Error::model_permanent(format!("cannot initialise llama.cpp: {e}")))
}

/// Loads a GGUF with llama.cpp after checking that it is one, mapping failures to typed errors.
pub(crate) fn load_model(
    path: &std::path::Path,
    options: &LlamaOptions,
) -> Result<llama_cpp_2::model::LlamaModel> {
    crate::files::check_gguf(path)?;
    let backend = backend()?;
    llama_cpp_2::model::LlamaModel::load_from_file(backend, path, &options.model_params()).map_err(|e| {
        Error::model_permanent(format!(
            "llama.cpp could not load {} ({e}); the file may be truncated or of an unsupported \
             architecture. For the defaults, `catena models pull --force` fetches them again",
            path.display()
        ))
    })
}

/// The sending end of an inference thread's job queue.
pub(crate) struct Jobs<J>(std::sync::Mutex<std::sync::mpsc::Sender<J>>);

impl<J> Jobs<J> {
    pub(crate) fn send(&self, job: J) -> Result<()> {
        let sender = self.0.lock().map_err(|_| Error::model_permanent("model handle lock poisoned"))?;
        sender.send(job).map_err(|_| Error::model_permanent("the inference thread has stopped"))
    }
}

/// Where an inference thread reports whether its model loaded.
pub(crate) type Ready<I> = std::sync::mpsc::SyncSender<Result<I>>;

/// Passes `result` on, or reports its error on `ready` (ending the thread's start) and gives `None`.
pub(crate) fn or_report<T, I>(ready: &Ready<I>, result: Result<T>) -> Option<T> {
    match result {
        Ok(v) => Some(v),
        Err(e) => {
            let _ = ready.send(Err(e));
            None
        }
    }
}

/// Creates a llama.cpp context, with a typed error.
pub(crate) fn new_context<'m>(
    model: &'m llama_cpp_2::model::LlamaModel,
    params: llama_cpp_2::context::params::LlamaContextParams,
) -> Result<llama_cpp_2::context::LlamaContext<'m>> {
    model
        .new_context(backend()?, params)
        .map_err(|e| Error::model_permanent(format!("cannot create a llama.cpp context: {e}")))
}

/// Runs blocking work (model loading, fetching) off the async runtime.
pub(crate) async fn off_runtime<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::model_permanent(format!("model loading task failed: {e}")))?
}

/// Starts a named inference thread running `body`, which first reports (through `ready`) whether
/// the model loaded, then serves jobs until every sender is dropped. Returns the job queue once
/// the model is ready.
pub(crate) fn spawn_worker<J, I>(
    name: &str,
    body: impl FnOnce(Ready<I>, std::sync::mpsc::Receiver<J>) + Send + 'static,
) -> Result<(Jobs<J>, I)>
where
    J: Send + 'static,
    I: Send + 'static,
{
    let (jobs_tx, jobs_rx) = std::sync::mpsc::channel::<J>();
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<Result<I>>(1);
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || body(ready_tx, jobs_rx))
        .map_err(|e| Error::model_permanent(format!("cannot start the inference thread: {e}")))?;
    let info = ready_rx
        .recv()
        .map_err(|_| Error::model_permanent("the inference thread ended while loading the model"))??;
    Ok((Jobs(std::sync::Mutex::new(jobs_tx)), info))
}
