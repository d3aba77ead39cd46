//! The store `catena ingest` writes and `catena query` reads, named by `--store`: a LanceDB
//! folder (or an object-store URI LanceDB supports), or a PostgreSQL database with pgvector
//! (`postgres://...`), which many machines can share.

use std::sync::Arc;

use catena::core::{Error, Result, Retriever, VectorStore};
use catena::retrievers::{LanceDbStore, LanceKeywordRetriever, VectorIndex};

/// An opened store, with what each kind needs after ingestion and for keyword search.
pub(crate) enum Store {
    Lance(Arc<LanceDbStore>),
    #[cfg(feature = "postgres")]
    Postgres(Arc<catena::retrievers::PgVectorStore>),
}

/// Whether `--store` names a PostgreSQL database rather than a LanceDB location.
pub(crate) fn is_postgres(store: &str) -> bool {
    store.starts_with("postgres://") || store.starts_with("postgresql://")
}

/// `--store` as it may be shown: a URL's password replaced.
pub(crate) fn shown(store: &str) -> String {
    match (store.find("://"), store.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let authority = &store[scheme + 3..at];
            match authority.split_once(':') {
                Some((user, _password)) => format!("{}{user}:***{}", &store[..scheme + 3], &store[at..]),
                None => store.to_owned(),
            }
        }
        _ => store.to_owned(),
    }
}

impl Store {
    /// Opens the store for writing; the collection is created by the first write.
    pub(crate) async fn connect(store: &str, collection: &str) -> Result<Self> {
        if is_postgres(store) {
            return Self::postgres(store, collection, false).await;
        }
        if !store.contains("://") {
            std::fs::create_dir_all(store).map_err(|e| Error::io(store, e))?;
        }
        Ok(Self::Lance(Arc::new(LanceDbStore::connect(store, collection).await?)))
    }

    /// Opens an existing collection for reading.
    pub(crate) async fn open(store: &str, collection: &str) -> Result<Self> {
        if is_postgres(store) {
            return Self::postgres(store, collection, true).await;
        }
        Ok(Self::Lance(Arc::new(LanceDbStore::open(store, collection).await?)))
    }

    #[cfg(feature = "postgres")]
    async fn postgres(url: &str, collection: &str, existing: bool) -> Result<Self> {
        use catena::retrievers::PgVectorStore;
        let store = if existing {
            PgVectorStore::open(url, collection).await?
        } else {
            PgVectorStore::connect(url, collection).await?
        };
        Ok(Self::Postgres(Arc::new(store)))
    }

    #[cfg(not(feature = "postgres"))]
    async fn postgres(_url: &str, _collection: &str, _existing: bool) -> Result<Self> {
        Err(Error::invalid_input(
            "this catena was built without the `postgres` feature; a PostgreSQL store needs it",
        ))
    }

    pub(crate) fn vectors(&self) -> Arc<dyn VectorStore> {
        match self {
            Self::Lance(store) => store.clone(),
            #[cfg(feature = "postgres")]
            Self::Postgres(store) => store.clone(),
        }
    }

    /// Keyword search inside the store (LanceDB's full-text index, PostgreSQL's full-text search).
    pub(crate) fn keywords(&self, k: usize) -> Arc<dyn Retriever> {
        match self {
            Self::Lance(store) => Arc::new(LanceKeywordRetriever::new(store.clone()).with_k(k)),
            #[cfg(feature = "postgres")]
            Self::Postgres(store) => {
                Arc::new(catena::retrievers::PgKeywordRetriever::new(store.clone()).with_k(k))
            }
        }
    }

    /// The indexes searches need after a write: LanceDB's full-text index, rebuilt, and an ANN
    /// index once the collection is large enough; PostgreSQL keeps its keyword column current by
    /// itself and an HNSW index, built once, up to date on every insert.
    pub(crate) async fn build_indexes(&self) -> Result<()> {
        match self {
            Self::Lance(store) => {
                store.create_fts_index().await?;
                store.create_index(VectorIndex::Auto).await?;
            }
            #[cfg(feature = "postgres")]
            Self::Postgres(store) => {
                if store.count().await? >= catena::retrievers::EXACT_SEARCH_ROWS && !store.has_index().await?
                {
                    store.create_index(catena::retrievers::PgIndex::HNSW).await?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(shown("postgres://app:s3cret@db:5432/rag"), "postgres://app:***@db:5432/rag");
        assert_eq!(shown("postgres://app@db/rag"), "postgres://app@db/rag");
        assert_eq!(shown("./store"), "./store");
        assert!(is_postgres("postgresql://x/y") && !is_postgres("s3://bucket/x"));
    }
}
