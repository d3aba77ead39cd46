//! Caching model calls: the same request to the same model is answered from the cache.
//!
//! Evaluation re-runs the same judge prompts again and again while metrics, datasets or reports
//! change; [`CachedChatModel`] answers every request it has seen before from a [`ChatCache`]
//! instead of the model, so a second run costs nothing and gives the same verdicts. The cache is
//! keyed by the model's name and the whole request (messages, tools, response format, sampling),
//! so a changed prompt or parameter is a miss, never a stale hit. Failed calls are not cached.
//!
//! A cached reply is returned whatever the sampling temperature: that is what makes repeated
//! evaluations reproducible, and it is why the cache is opt-in.
//!
//! ```
//! use catena_core::cache::{CachedChatModel, ChatCache};
//! use catena_core::testing::ScriptedChatModel;
//! use catena_core::{ChatModel, ChatRequest, Message, RunContext};
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let dir = std::env::temp_dir().join(format!("catena-cache-doc-{}", std::process::id()));
//! let cache = ChatCache::open(dir.join("calls.jsonl")).await?;
//! let model = CachedChatModel::new(ScriptedChatModel::new(["only one reply"]), cache.clone());
//! let request = ChatRequest::new(vec![Message::user("hi")]);
//! let ctx = RunContext::new();
//! let first = model.chat(request.clone(), &ctx).await?;
//! // The scripted model has no second reply: this one comes from the cache.
//! let again = model.chat(request, &ctx).await?;
//! assert_eq!(first, again);
//! assert_eq!((cache.hits(), cache.misses()), (1, 1));
//! # std::fs::remove_dir_all(dir).ok();
//! # Ok::<(), catena_core::Error>(())
//! # }).unwrap();
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::{self, BoxStream};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

use crate::message::{ChatDelta, ChatRequest, ChatResponse, DeltaAccumulator};
use crate::{ChatModel, Error, Result, RunContext};

/// One line of a cache file.
#[derive(Serialize, Deserialize)]
struct Entry {
    key: String,
    response: ChatResponse,
}

/// Replies by request, in memory and optionally appended to a JSON Lines file so they survive
/// the process. Cheap to clone; clones share the entries and the counters.
#[derive(Clone, Default)]
pub struct ChatCache {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: std::sync::RwLock<HashMap<String, ChatResponse>>,
    file: Option<Mutex<tokio::fs::File>>,
    path: Option<PathBuf>,
    hits: AtomicU64,
    misses: AtomicU64,
    skipped_lines: usize,
}

impl std::fmt::Debug for ChatCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatCache")
            .field("path", &self.inner.path)
            .field("entries", &self.len())
            .field("hits", &self.hits())
            .field("misses", &self.misses())
            .finish()
    }
}

impl ChatCache {
    /// A cache that lives as long as the process.
    #[must_use]
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// Opens (or creates) a cache file, loading the replies already in it; new replies are
    /// appended. A line that cannot be read (a run killed mid-write) is skipped and counted in
    /// [`skipped_lines`](Self::skipped_lines); the rest of the file still serves.
    ///
    /// # Errors
    /// [`Error::Io`] when the file or its folder cannot be read or created.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(parent).await.map_err(|e| Error::io(parent, e))?;
        }
        let text = match tokio::fs::read_to_string(&path).await {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let mut entries = HashMap::new();
        let mut skipped_lines = 0;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            match serde_json::from_str::<Entry>(line) {
                Ok(entry) => {
                    entries.insert(entry.key, entry.response);
                }
                Err(_) => skipped_lines += 1,
            }
        }
        if skipped_lines > 0 {
            tracing::warn!(path = %path.display(), skipped_lines, "unreadable lines in the model-call cache were skipped");
        }
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .await
            .map_err(|e| Error::io(&path, e))?;
        // A file cut mid-line gets a newline first, so the next entry starts on its own line.
        if !text.is_empty() && !text.ends_with('\n') {
            file.write_all(b"\n").await.map_err(|e| Error::io(&path, e))?;
        }
        Ok(Self {
            inner: Arc::new(Inner {
                entries: std::sync::RwLock::new(entries),
                file: Some(Mutex::new(file)),
                path: Some(path),
                skipped_lines,
                ..Inner::default()
            }),
        })
    }

    /// The cache key of `request` sent to the model named `model`: a SHA-256 of both.
    #[must_use]
    pub fn key(model: &str, request: &ChatRequest) -> String {
        let mut hasher = Sha256::new();
        hasher.update(model.as_bytes());
        hasher.update([0]);
        // Serialising a request cannot fail (no maps with non-string keys); an empty string
        // would only make every request share one key, so fall back to its debug form.
        let body = serde_json::to_string(request).unwrap_or_else(|_| format!("{request:?}"));
        hasher.update(body.as_bytes());
        hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The reply stored under `key`, counting a hit or a miss.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<ChatResponse> {
        let found = self.inner.entries.read().ok().and_then(|entries| entries.get(key).cloned());
        let counter = if found.is_some() { &self.inner.hits } else { &self.inner.misses };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Stores `response` under `key` (and appends it to the file, if any).
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be written; the reply is still cached in memory.
    pub async fn put(&self, key: String, response: ChatResponse) -> Result<()> {
        let line = serde_json::to_string(&Entry { key: key.clone(), response: response.clone() })
            .map_err(|e| Error::parse("a cache entry", e.to_string()))?;
        if let Ok(mut entries) = self.inner.entries.write() {
            entries.insert(key, response);
        }
        if let (Some(file), Some(path)) = (&self.inner.file, &self.inner.path) {
            let mut file = file.lock().await;
            // One write per entry, so concurrent runs of the same cache file interleave whole lines.
            file.write_all(format!("{line}\n").as_bytes()).await.map_err(|e| Error::io(path, e))?;
            file.flush().await.map_err(|e| Error::io(path, e))?;
        }
        Ok(())
    }

    /// How many replies are cached.
    #[must_use]
    pub fn len(&self) -> usize {
        self.inner.entries.read().map_or(0, |e| e.len())
    }

    /// Whether nothing is cached.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Requests answered from the cache so far.
    #[must_use]
    pub fn hits(&self) -> u64 {
        self.inner.hits.load(Ordering::Relaxed)
    }

    /// Requests the cache did not have so far.
    #[must_use]
    pub fn misses(&self) -> u64 {
        self.inner.misses.load(Ordering::Relaxed)
    }

    /// Lines of the file that could not be read when it was opened.
    #[must_use]
    pub fn skipped_lines(&self) -> usize {
        self.inner.skipped_lines
    }

    /// The file behind the cache, if any.
    #[must_use]
    pub fn path(&self) -> Option<&Path> {
        self.inner.path.as_deref()
    }
}

/// A chat model whose replies are cached: see the [module docs](self).
#[derive(Debug)]
pub struct CachedChatModel<M: ?Sized> {
    model: Arc<M>,
    cache: ChatCache,
}

impl<M: ?Sized> Clone for CachedChatModel<M> {
    fn clone(&self) -> Self {
        Self { model: Arc::clone(&self.model), cache: self.cache.clone() }
    }
}

impl<M: ChatModel> CachedChatModel<M> {
    /// Wraps `model`; share one `cache` between several models if you like (keys include the
    /// model's name).
    pub fn new(model: M, cache: ChatCache) -> Self {
        Self::shared(Arc::new(model), cache)
    }
}

impl<M: ChatModel + ?Sized> CachedChatModel<M> {
    /// Wraps a model that is shared, e.g. an `Arc<dyn ChatModel>` also used uncached elsewhere.
    pub fn shared(model: Arc<M>, cache: ChatCache) -> Self {
        Self { model, cache }
    }

    /// The cache.
    pub fn cache(&self) -> &ChatCache {
        &self.cache
    }

    /// The wrapped model.
    pub fn inner(&self) -> &M {
        &self.model
    }

    /// Caches a reply; a failed write is logged, not returned, since the reply itself is good.
    async fn store(&self, key: String, response: ChatResponse) {
        if let Err(e) = self.cache.put(key, response).await {
            tracing::warn!(error = %e, "could not write the model-call cache");
        }
    }
}

#[async_trait]
impl<M: ChatModel + ?Sized> ChatModel for CachedChatModel<M> {
    async fn chat(&self, request: ChatRequest, ctx: &RunContext) -> Result<ChatResponse> {
        let key = ChatCache::key(self.model.model_name(), &request);
        if let Some(hit) = self.cache.get(&key) {
            return Ok(hit);
        }
        let response = self.model.chat(request, ctx).await?;
        self.store(key, response.clone()).await;
        Ok(response)
    }

    /// A hit is one delta with the whole reply; a miss streams the model's deltas and caches
    /// the reply they add up to once the stream ends without error.
    fn chat_stream<'a>(
        &'a self,
        request: ChatRequest,
        ctx: &'a RunContext,
    ) -> BoxStream<'a, Result<ChatDelta>> {
        let key = ChatCache::key(self.model.model_name(), &request);
        if let Some(hit) = self.cache.get(&key) {
            return Box::pin(stream::once(async move {
                Ok(ChatDelta {
                    content: hit.message.content,
                    tool_calls: hit.message.tool_calls,
                    finish_reason: Some(hit.finish_reason),
                    usage: Some(hit.usage),
                })
            }));
        }
        let inner = self.model.chat_stream(request, ctx);
        // State: the model's stream, what it has said so far (None after an error), and the key.
        let state = (inner, Some(DeltaAccumulator::default()), Some(key));
        Box::pin(stream::unfold(state, move |(mut inner, mut acc, mut key)| async move {
            match inner.next().await {
                Some(Ok(delta)) => {
                    if let Some(acc) = acc.as_mut() {
                        acc.push(delta.clone());
                    }
                    Some((Ok(delta), (inner, acc, key)))
                }
                Some(Err(e)) => Some((Err(e), (inner, None, key))),
                None => {
                    if let (Some(acc), Some(key)) = (acc.take(), key.take()) {
                        self.store(key, acc.finish()).await;
                    }
                    None
                }
            }
        }))
    }

    fn model_name(&self) -> &str {
        self.model.model_name()
    }
}
