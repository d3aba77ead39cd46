//! Per-document access control: a run's principal limits what every retriever returns, inside
//! the store's query, on the exact in-memory store, LanceDB on disk and BM25 alike; documents
//! without an access list are hidden from principals; hostile names are refused.
#![cfg(feature = "lancedb")]
#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]

use std::sync::Arc;

use catena_core::security::{Principal, access_list};
use catena_core::testing::DeterministicEmbedder;
use catena_core::{Document, Embedded, Embedder, Retriever, RunContext, VectorStore};
use catena_retrievers::{
    Bm25Retriever, InMemoryVectorStore, LanceDbStore, LanceKeywordRetriever, MmrRetriever,
    VectorStoreRetriever,
};

/// Four notes about the same topic with different readers.
fn documents() -> Vec<Document> {
    let doc = |id: &str, text: &str, access: Option<&[&str]>| {
        let d = Document::new(text).with_id(id).with_metadata("source", format!("{id}.md"));
        match access {
            Some(names) => d.with_metadata("access", access_list(names.iter().copied()).unwrap()),
            None => d,
        }
    };
    vec![
        doc("alice-only", "salary review notes for alice", Some(&["alice"])),
        doc("hr", "salary bands of the company", Some(&["hr"])),
        doc("public", "salary policy overview for everyone", Some(&["*"])),
        doc("unlabelled", "salary spreadsheet without an access list", None),
    ]
}

fn ids(hits: &[catena_core::ScoredDocument]) -> Vec<String> {
    let mut ids: Vec<String> = hits.iter().map(|h| h.document.id.clone().unwrap()).collect();
    ids.sort();
    ids
}

async fn stores() -> (tempfile::TempDir, Vec<(&'static str, Arc<dyn VectorStore>)>, Arc<dyn Embedder>) {
    let embedder: Arc<dyn Embedder> = Arc::new(DeterministicEmbedder::new(32));
    let texts: Vec<String> = documents().iter().map(|d| d.content.clone()).collect();
    let vectors = embedder.embed(&texts, &RunContext::new()).await.unwrap();
    let records: Vec<Embedded> = documents()
        .into_iter()
        .zip(vectors)
        .map(|(document, vector)| Embedded { document, vector })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let lance = LanceDbStore::connect(dir.path().to_string_lossy(), "notes").await.unwrap();
    lance.upsert(records.clone()).await.unwrap();
    let memory = InMemoryVectorStore::new();
    memory.upsert(records).await.unwrap();
    (dir, vec![("memory", Arc::new(memory)), ("lancedb", Arc::new(lance))], embedder)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_retriever_returns_only_what_the_principal_may_read() {
    let (_dir, stores, embedder) = stores().await;
    let alice = RunContext::new().with_extension(Principal::new("alice").unwrap());
    let hr = RunContext::new().with_extension(Principal::new("carol").unwrap().with_group("hr").unwrap());
    let bob = RunContext::new().with_extension(Principal::new("bob").unwrap());
    let anyone = RunContext::new();

    let mut retrievers: Vec<(String, Arc<dyn Retriever>)> =
        vec![("bm25".into(), Arc::new(Bm25Retriever::from_documents(documents()).unwrap().with_k(10)))];
    for (name, store) in &stores {
        retrievers.push((
            format!("{name} similarity"),
            Arc::new(VectorStoreRetriever::new(Arc::clone(store), Arc::clone(&embedder)).with_k(10)),
        ));
        retrievers.push((
            format!("{name} mmr"),
            Arc::new(MmrRetriever::new(Arc::clone(store), Arc::clone(&embedder)).with_k(10)),
        ));
    }
    for (name, retriever) in &retrievers {
        let got = |ctx: RunContext| {
            let retriever = Arc::clone(retriever);
            async move { ids(&retriever.retrieve("salary", &ctx).await.unwrap()) }
        };
        assert_eq!(got(alice.clone()).await, ["alice-only", "public"], "{name}");
        assert_eq!(got(hr.clone()).await, ["hr", "public"], "{name}");
        assert_eq!(got(bob.clone()).await, ["public"], "{name}");
        assert_eq!(got(anyone.clone()).await.len(), 4, "{name}: no principal, no filter");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keyword_retriever_on_lancedb_filters_too_and_names_cannot_forge_entries() {
    let dir = tempfile::tempdir().unwrap();
    let lance = Arc::new(LanceDbStore::connect(dir.path().to_string_lossy(), "notes").await.unwrap());
    let embedder = DeterministicEmbedder::new(8);
    let records: Vec<Embedded> = documents()
        .into_iter()
        .map(|d| Embedded { vector: embedder.vector(&d.content), document: d })
        .collect();
    lance.upsert(records).await.unwrap();
    lance.create_fts_index().await.unwrap();
    let keywords = LanceKeywordRetriever::new(lance).with_k(10);
    let alice = RunContext::new().with_extension(Principal::new("alice").unwrap());
    assert_eq!(ids(&keywords.retrieve("salary", &alice).await.unwrap()), ["alice-only", "public"]);

    // A name with a comma could pose as two entries; quotes and LIKE wildcards are plain text.
    assert!(Principal::new("bob,alice").is_err());
    assert!(Principal::new("").is_err());
    assert!(access_list(Vec::<String>::new()).is_err());
    for hostile in ["%", "_", "' OR 1=1 --", "alice'", "*x"] {
        let ctx = RunContext::new().with_extension(Principal::new(hostile).unwrap());
        assert_eq!(ids(&keywords.retrieve("salary", &ctx).await.unwrap()), ["public"], "{hostile}");
    }
}
