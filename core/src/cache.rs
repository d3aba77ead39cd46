//! Caching model calls: the same request to the same model is answered from the cache.

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
use crate::{ChatModel, Embedder, Error, Result, RunContext};

/// One line of a cache file.
#[derive(Serialize, Deserialize)]
struct Entry<V> {
    key: String,
    value: V,
}

/// Values by key, in memory and optionally appended to a JSON Lines file so they survive the
/// process. Cheap to clone; clones share the entries and the counters. Used as [`ChatCache`]
/// (replies by request) and [`EmbeddingCache`] (vectors by text).
pub struct Cache<V> {
    inner: Arc<Inner<V>>,
}

/// Chat replies by model and request, for [`CachedChatModel`].
pub type ChatCache = Cache<ChatResponse>;

/// Embedding vectors by embedder and text, for [`CachedEmbedder`].
pub type EmbeddingCache = Cache<Vec<f32>>;

impl<V> Clone for Cache<V> {
    fn clone(&self) -> Self {
        Self { inner: Arc::clone(&self.inner) }
    }
}

impl<V> Default for Cache<V> {
    fn default() -> Self {
        Self { inner: Arc::new(Inner::default()) }
    }
}

struct Inner<V> {
    entries: std::sync::RwLock<HashMap<String, V>>,
    file: Option<Mutex<tokio::fs::File>>,
    path: Option<PathBuf>,
    hits: AtomicU64,
    misses: AtomicU64,
    skipped_lines: usize,
}

impl<V> Default for Inner<V> {
    fn default() -> Self {
        Self {
            entries: std::sync::RwLock::new(HashMap::new()),
            file: None,
            path: None,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            skipped_lines: 0,
        }
    }
}

impl<V> std::fmt::Debug for Cache<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("path", &self.inner.path)
            .field("entries", &self.len())
            .field("hits", &self.hits())
            .field("misses", &self.misses())
            .finish()
    }
}

/// A SHA-256 of `parts`, each followed by a 0 byte, in hex.
fn digest(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
        hasher.update([0]);
    }
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

impl ChatCache {
    /// The cache key of `request` sent to the model named `model`: a SHA-256 of both.
    #[must_use]
    pub fn key(model: &str, request: &ChatRequest) -> String {
        // Serialising a request cannot fail (no maps with non-string keys); an empty string
        // would only make every request share one key, so fall back to its debug form.
        let body = serde_json::to_string(request).unwrap_or_else(|_| format!("{request:?}"));
        digest(&[model.as_bytes(), body.as_bytes()])
    }
}

impl EmbeddingCache {
    /// The cache key of `text` embedded by the embedder named `namespace`: a SHA-256 of both.
    #[must_use]
    pub fn key(namespace: &str, text: &str) -> String {
        digest(&[namespace.as_bytes(), text.as_bytes()])
    }
}

impl<V: Clone + Serialize + serde::de::DeserializeOwned + Send + Sync> Cache<V> {
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
            match serde_json::from_str::<Entry<V>>(line) {
                Ok(entry) => {
                    entries.insert(entry.key, entry.value);
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

    /// The value stored under `key`, counting a hit or a miss.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<V> {
        let found = self.inner.entries.read().ok().and_then(|entries| entries.get(key).cloned());
        let counter = if found.is_some() { &self.inner.hits } else { &self.inner.misses };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Stores `value` under `key` (and appends it to the file, if any).
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be written; the value is still cached in memory.
    pub async fn put(&self, key: String, value: V) -> Result<()> {
        let line = serde_json::to_string(&Entry { key: key.clone(), value: &value })
            .map_err(|e| Error::parse("a cache entry", e.to_string()))?;
        if let Ok(mut entries) = self.inner.entries.write() {
            entries.insert(key, value);
        }
        if let (Some(file), Some(path)) = (&self.inner.file, &self.inner.path) {
            let mut file = file.lock().await;
            // One write per entry, so concurrent runs of the same cache file interleave whole lines.
            file.write_all(format!("{line}\n").as_bytes()).await.map_err(|e| Error::io(path, e))?;
            file.flush().await.map_err(|e| Error::io(path, e))?;
        }
        Ok(())
    }
}

impl<V> Cache<V> {
    /// How many values are cached.
    #[must_use]
    pub fn len(&self) -> usize {
        self.inner.entries.read().map_or(0, |e| e.len())
    }

    /// Whether nothing is cached.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Lookups answered from the cache so far.
    #[must_use]
    pub fn hits(&self) -> u64 {
        self.inner.hits.load(Ordering::Relaxed)
    }

    /// Lookups the cache could not answer so far.
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

/// A chat model whose replies are cached: the same request to the same model is answered from
/// the cache.
///
/// Evaluation re-runs the same judge prompts again and again while metrics, datasets or reports
/// change; [`CachedChatModel`] answers every request it has seen before from a [`ChatCache`]
/// instead of the model, so a second run costs nothing and gives the same verdicts. The cache is
/// keyed by the model's name and the whole request (messages, tools, response format, sampling),
/// so a changed prompt or parameter is a miss, never a stale hit. Failed calls are not cached.
/// [`CachedEmbedder`] does the same for embeddings, text by text, in an [`EmbeddingCache`]
/// (LangChain's `CacheBackedEmbeddings`): only the texts it has not seen reach the embedder.
///
/// A cached reply is returned whatever the sampling temperature: that is what makes repeated
/// evaluations reproducible, and it is why the cache is opt-in.
///
/// ```
/// use catena_core::{CachedChatModel, ChatCache};
/// use catena_core::testing::ScriptedChatModel;
/// use catena_core::{ChatModel, ChatRequest, Message, RunContext};
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let dir = std::env::temp_dir().join(format!("catena-cache-doc-{}", std::process::id()));
/// let cache = ChatCache::open(dir.join("calls.jsonl")).await?;
/// let model = CachedChatModel::new(ScriptedChatModel::new(["only one reply"]), cache.clone());
/// let request = ChatRequest::new(vec![Message::user("hi")]);
/// let ctx = RunContext::new();
/// let first = model.chat(request.clone(), &ctx).await?;
/// // The scripted model has no second reply: this one comes from the cache.
/// let again = model.chat(request, &ctx).await?;
/// assert_eq!(first, again);
/// assert_eq!((cache.hits(), cache.misses()), (1, 1));
/// # std::fs::remove_dir_all(dir).ok();
/// # Ok::<(), catena_core::Error>(())
/// # }).unwrap();
/// ```
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
            return Box::pin(stream::once(async move { Ok(ChatDelta::from(hit)) }));
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

/// An embedder whose vectors are cached text by text (see [`CachedChatModel`] for the cache's
/// rules).
///
/// Embedders have no name of their own, so the cache key includes a `namespace` you choose
/// (the model's name, say): two embedders sharing one cache must use different namespaces.
#[derive(Debug)]
pub struct CachedEmbedder<E: ?Sized> {
    embedder: Arc<E>,
    cache: EmbeddingCache,
    namespace: String,
}

impl<E: ?Sized> Clone for CachedEmbedder<E> {
    fn clone(&self) -> Self {
        Self {
            embedder: Arc::clone(&self.embedder),
            cache: self.cache.clone(),
            namespace: self.namespace.clone(),
        }
    }
}

impl<E: Embedder> CachedEmbedder<E> {
    /// Wraps `embedder`, keying its vectors under `namespace`.
    pub fn new(embedder: E, cache: EmbeddingCache, namespace: impl Into<String>) -> Self {
        Self::shared(Arc::new(embedder), cache, namespace)
    }
}

impl<E: Embedder + ?Sized> CachedEmbedder<E> {
    /// Wraps a shared embedder, e.g. an `Arc<dyn Embedder>` also used uncached elsewhere.
    pub fn shared(embedder: Arc<E>, cache: EmbeddingCache, namespace: impl Into<String>) -> Self {
        Self { embedder, cache, namespace: namespace.into() }
    }

    /// The cache.
    pub fn cache(&self) -> &EmbeddingCache {
        &self.cache
    }
}

#[async_trait]
impl<E: Embedder + ?Sized> Embedder for CachedEmbedder<E> {
    /// Looks every text up, embeds the ones missing in one call (each distinct text once), and
    /// caches them; the vectors come back in the order of `texts`.
    async fn embed(&self, texts: &[String], ctx: &RunContext) -> Result<Vec<Vec<f32>>> {
        let keys: Vec<String> = texts.iter().map(|t| EmbeddingCache::key(&self.namespace, t)).collect();
        let mut vectors: Vec<Option<Vec<f32>>> = keys.iter().map(|k| self.cache.get(k)).collect();
        // Each missing text once, even when it appears several times in the batch.
        let mut missing: Vec<usize> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (i, (vector, key)) in vectors.iter().zip(&keys).enumerate() {
            if vector.is_none() && seen.insert(key.as_str()) {
                missing.push(i);
            }
        }
        if !missing.is_empty() {
            let batch: Vec<String> = missing.iter().filter_map(|&i| texts.get(i).cloned()).collect();
            let fresh = self.embedder.embed(&batch, ctx).await?;
            if fresh.len() != batch.len() {
                return Err(Error::model_permanent(format!(
                    "the embedder returned {} vectors for {} texts",
                    fresh.len(),
                    batch.len()
                )));
            }
            let mut by_key: HashMap<&str, Vec<f32>> = HashMap::new();
            for (&i, vector) in missing.iter().zip(fresh) {
                if let Some(key) = keys.get(i) {
                    if let Err(e) = self.cache.put(key.clone(), vector.clone()).await {
                        tracing::warn!(error = %e, "could not write the embedding cache");
                    }
                    by_key.insert(key.as_str(), vector);
                }
            }
            for (slot, key) in vectors.iter_mut().zip(&keys) {
                if slot.is_none() {
                    *slot = by_key.get(key.as_str()).cloned();
                }
            }
        }
        vectors
            .into_iter()
            .map(|v| {
                v.ok_or_else(|| Error::model_permanent("the embedding cache lost a vector it just stored"))
            })
            .collect()
    }

    fn dimensions(&self) -> usize {
        self.embedder.dimensions()
    }
}
