//! [`index_documents`]: embed and store documents, with ids that do not change between runs.

use catena_core::{Document, Embedded, Embedder, Error, Result, RunContext, VectorStore};
use sha2::{Digest, Sha256};

/// A stable id for a document: its existing id, else a hash of its `source` and content, so
/// re-indexing the same chunk replaces it instead of adding a copy.
#[must_use]
pub fn document_id(document: &Document) -> String {
    if let Some(id) = &document.id {
        return id.clone();
    }
    let mut h = Sha256::new();
    h.update(document.source().unwrap_or("").as_bytes());
    h.update([0u8]);
    h.update(document.content.as_bytes());
    if let Some(start) = document.metadata.get("start_index") {
        h.update(start.to_string().as_bytes());
    }
    hex::encode(h.finalize().get(..16).unwrap_or_default())
}

/// One worker's part of a sharded ingestion: `N` workers, on as many machines, each take the
/// sources this says they own and fill one shared store (PostgreSQL with pgvector, LanceDB on
/// object storage). Ownership is a hash of the source's name, so every worker computes the same
/// partition without talking to the others, and since [`document_id`]s depend only on a chunk's
/// source and text, the workers together write exactly what one process would.
///
/// ```
/// use catena_retrievers::Shard;
///
/// let shards: Vec<Shard> = (1..=3).map(|k| format!("{k}/3").parse().unwrap()).collect();
/// let sources = ["docs/a.md", "docs/b.md", "docs/c.md", "docs/d.md"];
/// for source in sources {
///     // Every source belongs to exactly one shard.
///     assert_eq!(shards.iter().filter(|s| s.owns(source)).count(), 1);
/// }
/// ```
///
/// Cleanup under sharding: incremental cleanup is per source, so each worker's is right for its
/// own sources. A full cleanup needs every source at once: run it (with no shard) after the
/// workers finish; it embeds nothing already stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// 0-based index of this worker.
    index: u32,
    /// Number of workers.
    count: u32,
}

impl Shard {
    /// Worker `k` (1-based, as `--shard K/N` writes it) of `n`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] unless `1 <= k <= n`.
    pub fn new(k: u32, n: u32) -> Result<Self> {
        if n == 0 || k == 0 || k > n {
            return Err(Error::invalid_input(format!(
                "shard {k}/{n}: write K/N with 1 <= K <= N (worker K of N), e.g. 1/4"
            )));
        }
        Ok(Self { index: k - 1, count: n })
    }

    /// Whether this worker owns `source` (a file path as the workers all name it).
    #[must_use]
    pub fn owns(&self, source: &str) -> bool {
        let digest = Sha256::digest(source.as_bytes());
        let mut head = [0u8; 8];
        head.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
        u64::from_be_bytes(head) % u64::from(self.count) == u64::from(self.index)
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index + 1, self.count)
    }
}

impl std::str::FromStr for Shard {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::invalid_input(format!("shard {s:?}: write K/N (worker K of N), e.g. 1/4"));
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        Self::new(k.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?)
    }
}

/// Embeds `documents` in batches of `batch_size` and upserts them into `store`; returns their ids.
/// Documents with no text are skipped (they cannot be embedded meaningfully); the error for an
/// empty input list is [`Error::InvalidInput`].
pub async fn index_documents(
    documents: &[Document],
    embedder: &dyn Embedder,
    store: &dyn VectorStore,
    batch_size: usize,
    ctx: &RunContext,
) -> Result<Vec<String>> {
    if documents.is_empty() {
        return Err(Error::invalid_input("there are no documents to index"));
    }
    let mut ids = Vec::with_capacity(documents.len());
    let kept: Vec<&Document> = documents.iter().filter(|d| !d.content.trim().is_empty()).collect();
    let total = kept.len() as u64;
    for batch in kept.chunks(batch_size.max(1)) {
        let records = embed_documents(batch.iter().map(|d| (*d).clone()).collect(), embedder, ctx).await?;
        ids.extend(store.upsert(records).await?);
        ctx.emit(catena_core::Event::Progress {
            task: "index".into(),
            done: ids.len() as u64,
            total: Some(total),
        });
    }
    Ok(ids)
}

/// What to delete after indexing, LangChain's indexing-API modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Cleanup {
    /// Delete nothing: unchanged chunks are skipped, new ones added.
    None,
    /// Also delete the chunks of every indexed `source` that this run did not produce (a
    /// changed file's old chunks). Every document needs a `source`.
    #[default]
    Incremental,
    /// Also delete every chunk in the store that this run did not produce (sources that
    /// disappeared included): the store ends up holding exactly this run's documents.
    Full,
}

impl std::str::FromStr for Cleanup {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "none" => Ok(Self::None),
            "incremental" => Ok(Self::Incremental),
            "full" => Ok(Self::Full),
            other => Err(Error::invalid_input(format!("cleanup {other:?}: use none, incremental or full"))),
        }
    }
}

/// `documents` with their vectors, each given its [`document_id`].
async fn embed_documents(
    documents: Vec<Document>,
    embedder: &dyn Embedder,
    ctx: &RunContext,
) -> Result<Vec<Embedded>> {
    ctx.check_cancelled()?;
    let texts: Vec<String> = documents.iter().map(|d| d.content.clone()).collect();
    let vectors = embedder.embed(&texts, ctx).await?;
    if vectors.len() != documents.len() {
        return Err(Error::model_permanent(format!(
            "the embedder returned {} vectors for {} texts",
            vectors.len(),
            documents.len()
        )));
    }
    Ok(documents
        .into_iter()
        .zip(vectors)
        .map(|(mut document, vector)| {
            document.id = Some(document_id(&document));
            Embedded { document, vector }
        })
        .collect())
}

/// A batch's write into the store, started by one [`Indexer::add`] and finished by the next (or
/// by [`Indexer::finish`]); yields how many chunks it wrote.
type PendingWrite<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<usize>> + Send + 'a>>;

/// What an indexing run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IndexReport {
    /// Chunks embedded and written.
    pub added: usize,
    /// Chunks already in the store unchanged (not embedded again).
    pub skipped: usize,
    /// Chunks deleted by the cleanup.
    pub deleted: usize,
}

/// Ids looked up per store call (keeps LanceDB's `IN (...)` filters short).
const LOOKUP_BATCH: usize = 512;

/// Idempotent indexing: feed it batches, then [`finish`](Indexer::finish) it. Ids are
/// [`document_id`]s (source + content hash), so a chunk already stored is recognised and not
/// embedded again, and re-running on unchanged files writes nothing.
///
/// A batch's write into the store runs while the next batch is embedded (on a 2-core machine,
/// ingesting into LanceDB spent about an eighth of its time writing, now hidden behind the
/// embedding), so a write's error is returned by the next [`add`](Indexer::add) or by
/// [`finish`](Indexer::finish), which must be called: the last batch is written there.
pub struct Indexer<'a> {
    embedder: &'a dyn Embedder,
    store: &'a dyn VectorStore,
    cleanup: Cleanup,
    seen: std::collections::HashSet<String>,
    sources: std::collections::BTreeSet<String>,
    report: IndexReport,
    writing: Option<PendingWrite<'a>>,
}

impl Drop for Indexer<'_> {
    fn drop(&mut self) {
        if self.writing.is_some() {
            tracing::warn!("an Indexer was dropped with its last batch not written: call finish()");
        }
    }
}

impl std::fmt::Debug for Indexer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Indexer")
            .field("cleanup", &self.cleanup)
            .field("report", &self.report)
            .finish_non_exhaustive()
    }
}

impl<'a> Indexer<'a> {
    /// Indexes into `store` with vectors from `embedder`.
    pub fn new(embedder: &'a dyn Embedder, store: &'a dyn VectorStore, cleanup: Cleanup) -> Self {
        Self {
            embedder,
            store,
            cleanup,
            seen: std::collections::HashSet::new(),
            sources: std::collections::BTreeSet::new(),
            report: IndexReport::default(),
            writing: None,
        }
    }

    /// Embeds the chunks of `batch` that the store does not hold yet and starts writing them,
    /// while the previous batch's write finishes; returns how many chunks it embedded. Empty
    /// chunks are ignored.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] in incremental mode for a document without `source`; embedder
    /// errors; the previous batch's store error. Neither batch is then written.
    pub async fn add(&mut self, batch: Vec<Document>, ctx: &RunContext) -> Result<usize> {
        let previous = self.writing.take();
        let finish_previous = async {
            match previous {
                Some(write) => write.await,
                None => Ok(0),
            }
        };
        let (written, embedded) = futures::join!(finish_previous, self.embed_new(batch, ctx));
        self.report.added += written?;
        let records = embedded?;
        let count = records.len();
        if count > 0 {
            let store = self.store;
            self.writing = Some(Box::pin(async move { Ok(store.upsert(records).await?.len()) }));
        }
        Ok(count)
    }

    /// The chunks of `batch` neither seen in this run nor stored, embedded.
    async fn embed_new(&mut self, batch: Vec<Document>, ctx: &RunContext) -> Result<Vec<Embedded>> {
        let mut fresh: Vec<Document> = Vec::new();
        let mut ids: Vec<String> = Vec::new();
        for mut d in batch.into_iter().filter(|d| !d.content.trim().is_empty()) {
            if self.cleanup == Cleanup::Incremental {
                let source = d.source().ok_or_else(|| {
                    Error::invalid_input("incremental cleanup needs a `source` in every document's metadata")
                })?;
                self.sources.insert(source.to_owned());
            }
            let id = document_id(&d);
            if self.seen.insert(id.clone()) {
                d.id = Some(id.clone());
                ids.push(id);
                fresh.push(d);
            }
        }
        let mut existing = std::collections::HashSet::new();
        for chunk in ids.chunks(LOOKUP_BATCH) {
            existing.extend(self.store.get(chunk).await?.into_iter().filter_map(|d| d.id));
        }
        fresh.retain(|d| d.id.as_ref().is_none_or(|id| !existing.contains(id)));
        self.report.skipped += existing.len();
        if fresh.is_empty() {
            return Ok(Vec::new());
        }
        embed_documents(fresh, self.embedder, ctx).await
    }

    /// Runs the cleanup and returns the report.
    ///
    /// # Errors
    /// Store errors.
    pub async fn finish(mut self) -> Result<IndexReport> {
        if let Some(write) = self.writing.take() {
            self.report.added += write.await?;
        }
        let stale: Vec<String> = match self.cleanup {
            Cleanup::None => Vec::new(),
            Cleanup::Full => self
                .store
                .documents(None)
                .await?
                .into_iter()
                .filter_map(|d| d.id)
                .filter(|id| !self.seen.contains(id))
                .collect(),
            Cleanup::Incremental => {
                let mut stale = Vec::new();
                for source in &self.sources {
                    let docs = self
                        .store
                        .documents(Some(&catena_core::Filter::eq("source", source.as_str())))
                        .await?;
                    stale.extend(docs.into_iter().filter_map(|d| d.id).filter(|id| !self.seen.contains(id)));
                }
                stale
            }
        };
        for chunk in stale.chunks(LOOKUP_BATCH) {
            self.report.deleted += self.store.delete(chunk).await?;
        }
        Ok(self.report)
    }
}

/// [`Indexer`] over a whole list: indexes `documents` in batches, then cleans up.
///
/// # Errors
/// See [`Indexer::add`] and [`Indexer::finish`].
pub async fn index_with_cleanup(
    documents: Vec<Document>,
    embedder: &dyn Embedder,
    store: &dyn VectorStore,
    batch_size: usize,
    cleanup: Cleanup,
    ctx: &RunContext,
) -> Result<IndexReport> {
    let mut indexer = Indexer::new(embedder, store, cleanup);
    let mut documents = documents.into_iter().peekable();
    while documents.peek().is_some() {
        let batch: Vec<Document> = documents.by_ref().take(batch_size.max(1)).collect();
        indexer.add(batch, ctx).await?;
    }
    indexer.finish().await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::InMemoryVectorStore;
    use catena_core::testing::DeterministicEmbedder;
    use catena_core::{Filter, ScoredDocument};

    fn doc(source: &str, text: &str) -> Document {
        Document::new(text).with_metadata("source", source)
    }

    #[tokio::test]
    async fn reindexing_is_idempotent_and_cleans_up_by_mode() {
        let e = DeterministicEmbedder::new(16);
        let s = InMemoryVectorStore::new();
        let ctx = RunContext::new();
        let v1 = vec![doc("a.md", "alpha one"), doc("a.md", "alpha two"), doc("b.md", "beta")];
        let r = index_with_cleanup(v1.clone(), &e, &s, 2, Cleanup::Incremental, &ctx).await.unwrap();
        assert_eq!(r, IndexReport { added: 3, skipped: 0, deleted: 0 });
        let r = index_with_cleanup(v1, &e, &s, 2, Cleanup::Incremental, &ctx).await.unwrap();
        assert_eq!(r, IndexReport { added: 0, skipped: 3, deleted: 0 }, "unchanged: nothing written");
        // a.md changed: one chunk kept, one replaced; b.md not part of this run stays.
        let r = index_with_cleanup(
            vec![doc("a.md", "alpha one"), doc("a.md", "alpha 2")],
            &e,
            &s,
            8,
            Cleanup::Incremental,
            &ctx,
        )
        .await
        .unwrap();
        assert_eq!(r, IndexReport { added: 1, skipped: 1, deleted: 1 });
        assert_eq!(s.count().await.unwrap(), 3);
        // Full: b.md disappeared.
        let r = index_with_cleanup(
            vec![doc("a.md", "alpha one"), doc("a.md", "alpha 2")],
            &e,
            &s,
            8,
            Cleanup::Full,
            &ctx,
        )
        .await
        .unwrap();
        assert_eq!(r, IndexReport { added: 0, skipped: 2, deleted: 1 });
        assert_eq!(s.count().await.unwrap(), 2);
        let err = index_with_cleanup(vec![Document::new("no source")], &e, &s, 8, Cleanup::Incremental, &ctx)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), catena_core::ErrorKind::InvalidInput);
        assert_eq!(s.count().await.unwrap(), 2, "nothing written");
    }

    /// A store whose writes fail from the `fail_from`-th on.
    struct FailingWrites {
        inner: InMemoryVectorStore,
        writes: std::sync::atomic::AtomicUsize,
        fail_from: usize,
    }

    #[async_trait::async_trait]
    impl VectorStore for FailingWrites {
        async fn upsert(&self, records: Vec<Embedded>) -> Result<Vec<String>> {
            if self.writes.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 >= self.fail_from {
                return Err(Error::store("disk full"));
            }
            self.inner.upsert(records).await
        }
        async fn search(
            &self,
            query: &[f32],
            k: usize,
            filter: Option<&Filter>,
        ) -> Result<Vec<ScoredDocument>> {
            self.inner.search(query, k, filter).await
        }
        async fn delete(&self, ids: &[String]) -> Result<usize> {
            self.inner.delete(ids).await
        }
        async fn count(&self) -> Result<usize> {
            self.inner.count().await
        }
        async fn get(&self, ids: &[String]) -> Result<Vec<Document>> {
            self.inner.get(ids).await
        }
    }

    #[tokio::test]
    async fn a_write_that_fails_behind_the_next_embedding_is_reported_not_lost() {
        let e = DeterministicEmbedder::new(8);
        let ctx = RunContext::new();
        let batch = |n: usize| vec![doc("a.md", &format!("chunk {n}"))];
        // The second write fails: the third add reports it.
        let s = FailingWrites { inner: InMemoryVectorStore::new(), writes: 0.into(), fail_from: 2 };
        let mut indexer = Indexer::new(&e, &s, Cleanup::None);
        assert_eq!(indexer.add(batch(1), &ctx).await.unwrap(), 1);
        assert_eq!(indexer.add(batch(2), &ctx).await.unwrap(), 1);
        let err = indexer.add(batch(3), &ctx).await.unwrap_err();
        assert_eq!(err.kind(), catena_core::ErrorKind::Store);
        drop(indexer);
        assert_eq!(s.inner.count().await.unwrap(), 1, "only the first batch was written");
        // The last batch's write fails: finish reports it.
        let s = FailingWrites { inner: InMemoryVectorStore::new(), writes: 0.into(), fail_from: 2 };
        let mut indexer = Indexer::new(&e, &s, Cleanup::None);
        indexer.add(batch(1), &ctx).await.unwrap();
        indexer.add(batch(2), &ctx).await.unwrap();
        assert_eq!(indexer.finish().await.unwrap_err().kind(), catena_core::ErrorKind::Store);
        // Without failures every batch is written by the time finish returns.
        let s = InMemoryVectorStore::new();
        let mut indexer = Indexer::new(&e, &s, Cleanup::None);
        for n in 0..5 {
            indexer.add(batch(n), &ctx).await.unwrap();
        }
        assert_eq!(indexer.finish().await.unwrap().added, 5);
        assert_eq!(s.count().await.unwrap(), 5);
    }
}
