//! [`ParentDocumentRetriever`]: search small chunks (precise embeddings), return the larger
//! documents they came from (enough context to answer).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use catena_core::{
    Document, Embedder, Error, Filter, Result, Retriever, RunContext, ScoredDocument, Splitter, VectorStore,
};
use tokio::sync::RwLock;

use crate::{document_id, index_documents};

/// The metadata key linking a child chunk to its parent.
pub const PARENT_ID: &str = "parent_id";

/// Splits documents into parents (optionally) and children, indexes the children in a vector
/// store with a `parent_id`, keeps the parents in memory (or anywhere, through [`ParentStore`]),
/// and answers a query with the parents of the best-matching children, in the order of their
/// best child, each once; a parent's score is its best child's.
///
/// This is LangChain's `ParentDocumentRetriever`, and with a custom child producer (summaries,
/// hypothetical questions) its `MultiVectorRetriever`: see [`add_children`](Self::add_children).
#[derive(Debug)]
pub struct ParentDocumentRetriever {
    store: Arc<dyn VectorStore>,
    embedder: Arc<dyn Embedder>,
    parents: Arc<dyn ParentStore>,
    child_splitter: Arc<dyn Splitter>,
    parent_splitter: Option<Arc<dyn Splitter>>,
    k: usize,
    fetch_k: usize,
    filter: Option<Filter>,
}

/// Where parent documents are kept, by id.
#[async_trait]
pub trait ParentStore: Send + Sync {
    /// Stores (or replaces) documents under these ids.
    async fn put(&self, documents: Vec<(String, Document)>) -> Result<()>;
    /// The documents with these ids, in order; unknown ids are left out.
    async fn get(&self, ids: &[String]) -> Result<Vec<Document>>;
}

impl std::fmt::Debug for dyn ParentStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dyn ParentStore")
    }
}

/// A [`ParentStore`] in memory.
#[derive(Debug, Default)]
pub struct InMemoryParentStore {
    documents: RwLock<HashMap<String, Document>>,
}

#[async_trait]
impl ParentStore for InMemoryParentStore {
    async fn put(&self, documents: Vec<(String, Document)>) -> Result<()> {
        self.documents.write().await.extend(documents);
        Ok(())
    }

    async fn get(&self, ids: &[String]) -> Result<Vec<Document>> {
        let map = self.documents.read().await;
        Ok(ids.iter().filter_map(|id| map.get(id).cloned()).collect())
    }
}

impl ParentDocumentRetriever {
    /// Children cut by `child_splitter` go to `store`; parents are kept in memory. k 4.
    pub fn new(
        store: Arc<dyn VectorStore>,
        embedder: Arc<dyn Embedder>,
        child_splitter: Arc<dyn Splitter>,
    ) -> Self {
        Self {
            store,
            embedder,
            parents: Arc::new(InMemoryParentStore::default()),
            child_splitter,
            parent_splitter: None,
            k: 4,
            fetch_k: 20,
            filter: None,
        }
    }

    /// Cut incoming documents into parents first (otherwise each whole document is a parent).
    #[must_use]
    pub fn with_parent_splitter(mut self, splitter: Arc<dyn Splitter>) -> Self {
        self.parent_splitter = Some(splitter);
        self
    }

    /// Keep parents somewhere else than in memory.
    #[must_use]
    pub fn with_parent_store(mut self, parents: Arc<dyn ParentStore>) -> Self {
        self.parents = parents;
        self
    }

    /// How many parents to return (default 4).
    #[must_use]
    pub fn with_k(mut self, k: usize) -> Self {
        self.k = k;
        self
    }

    /// How many children to search for them (default 20).
    #[must_use]
    pub fn with_fetch_k(mut self, fetch_k: usize) -> Self {
        self.fetch_k = fetch_k;
        self
    }

    /// Only children whose metadata match (children carry their parent's metadata).
    #[must_use]
    pub fn with_filter(mut self, filter: Filter) -> Self {
        self.filter = Some(filter);
        self
    }

    /// Splits, indexes the children, stores the parents; returns the parents' ids.
    ///
    /// # Errors
    /// Splitter, embedder and store errors; [`Error::InvalidInput`] for no documents.
    pub async fn add_documents(&self, documents: &[Document], ctx: &RunContext) -> Result<Vec<String>> {
        if documents.is_empty() {
            return Err(Error::invalid_input("there are no documents to add"));
        }
        let parents = match &self.parent_splitter {
            Some(s) => s.split_documents(documents)?,
            None => documents.to_vec(),
        };
        let mut children = Vec::new();
        let mut stored = Vec::with_capacity(parents.len());
        for parent in parents {
            let id = document_id(&parent);
            let chunks = self.child_splitter.split_documents(std::slice::from_ref(&parent))?;
            children.extend(chunks.into_iter().map(|c| c.with_metadata(PARENT_ID, id.clone())));
            stored.push((id, parent));
        }
        self.add_children(stored, children, ctx).await
    }

    /// Stores `parents` and indexes `children` made any way (summaries, questions a parent
    /// answers...), each with a [`PARENT_ID`] metadata entry naming its parent.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when a child has no or an unknown `parent_id`; embedder and store errors.
    pub async fn add_children(
        &self,
        parents: Vec<(String, Document)>,
        children: Vec<Document>,
        ctx: &RunContext,
    ) -> Result<Vec<String>> {
        let known: std::collections::HashSet<&str> = parents.iter().map(|(id, _)| id.as_str()).collect();
        if let Some(orphan) = children
            .iter()
            .find(|c| c.metadata.get(PARENT_ID).and_then(|v| v.as_str()).is_none_or(|p| !known.contains(p)))
        {
            return Err(Error::invalid_input(format!(
                "child {:?} has no `{PARENT_ID}` naming one of the parents given",
                orphan.content.chars().take(40).collect::<String>()
            )));
        }
        let ids: Vec<String> = parents.iter().map(|(id, _)| id.clone()).collect();
        // Children first: if embedding fails, no parent is stored without its children.
        if !children.is_empty() {
            index_documents(&children, self.embedder.as_ref(), self.store.as_ref(), 64, ctx).await?;
        }
        self.parents.put(parents).await?;
        Ok(ids)
    }
}

#[async_trait]
impl Retriever for ParentDocumentRetriever {
    async fn retrieve(&self, query: &str, ctx: &RunContext) -> Result<Vec<ScoredDocument>> {
        crate::check_query(query, self.k)?;
        let vector = self.embedder.embed_one(query, ctx).await?;
        let filter = catena_core::security::scoped_filter(self.filter.as_ref(), ctx);
        let children = self.store.search(&vector, self.fetch_k.max(self.k), filter.as_ref()).await?;
        let mut order: Vec<(String, f32)> = Vec::new();
        for child in children {
            let Some(parent) = child.document.metadata.get(PARENT_ID).and_then(|v| v.as_str()) else {
                continue;
            };
            if !order.iter().any(|(p, _)| p == parent) {
                order.push((parent.to_owned(), child.score));
            }
            if order.len() == self.k {
                break;
            }
        }
        let ids: Vec<String> = order.iter().map(|(id, _)| id.clone()).collect();
        let parents = self.parents.get(&ids).await?;
        // A parent is returned only when its own access list admits the caller too.
        let access = catena_core::security::access_filter(ctx);
        let by_id: HashMap<String, Document> = parents
            .into_iter()
            .filter(|d| access.as_ref().is_none_or(|a| a.matches_document(d)))
            .map(|d| (document_id(&d), d))
            .collect();
        let hits = order
            .into_iter()
            .filter_map(|(id, score)| by_id.get(&id).cloned().map(|d| ScoredDocument::new(d, score)))
            .collect();
        Ok(crate::retrieved(ctx, query, hits))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::InMemoryVectorStore;
    use catena_core::testing::DeterministicEmbedder;

    /// Splits on blank lines: enough to exercise the retriever without the splitters crate.
    struct Paragraphs;
    impl Splitter for Paragraphs {
        fn split_text(&self, text: &str) -> Result<Vec<String>> {
            Ok(text.split("\n\n").map(str::to_owned).collect())
        }
    }

    #[tokio::test]
    async fn returns_whole_parents_once_each() {
        let r = ParentDocumentRetriever::new(
            Arc::new(InMemoryVectorStore::new()),
            Arc::new(DeterministicEmbedder::new(64)),
            Arc::new(Paragraphs),
        )
        .with_k(2);
        let docs = vec![
            Document::new("rust borrow checker\n\nrust lifetimes").with_metadata("source", "rust.md"),
            Document::new("python generators\n\npython decorators").with_metadata("source", "py.md"),
        ];
        let ctx = RunContext::new();
        r.add_documents(&docs, &ctx).await.unwrap();
        let hits = r.retrieve("rust lifetimes", &ctx).await.unwrap();
        assert_eq!(hits[0].document, docs[0], "the whole parent, metadata kept");
        assert_eq!(hits.len(), 2);
        assert_ne!(hits[0].document, hits[1].document, "each parent once");
        let orphan = Document::new("x");
        assert!(r.add_children(vec![], vec![orphan], &ctx).await.is_err());
    }
}
