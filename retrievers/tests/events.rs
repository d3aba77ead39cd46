//! Every retriever tells the run's event sink what it found (`Event::Retrieved`), so a UI, a
//! trace or an evaluation sees each retrieval of a chain, nested ones included.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]

use std::sync::{Arc, Mutex};

use catena_core::testing::{DeterministicEmbedder, ScriptedChatModel};
use catena_core::{Document, Embedder, Event, Result, Retriever, RunContext, Splitter, VectorStore};
use catena_retrievers::{
    AttributeInfo, AttributeType, Bm25Retriever, EmbeddingsFilter, EnsembleRetriever, HydeRetriever,
    InMemoryVectorStore, MmrRetriever, MultiQueryRetriever, ParentDocumentRetriever, RerankingRetriever,
    SelfQueryRetriever, VectorStoreRetriever, index_documents,
};

/// Sentences as chunks: enough of a splitter for the parent-document retriever.
struct Sentences;

impl Splitter for Sentences {
    fn split_text(&self, text: &str) -> Result<Vec<String>> {
        Ok(text.split_inclusive('.').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect())
    }
}

fn docs() -> Vec<Document> {
    vec![
        Document::new("Rust has ownership and borrowing.")
            .with_metadata("source", "rust.md")
            .with_metadata("year", 2015),
        Document::new("Paris is the capital of France.")
            .with_metadata("source", "geo.md")
            .with_metadata("year", 2020),
    ]
}

/// Runs `retriever` under a context that records events; returns what it found and the
/// `Retrieved` events (query, count, sources) in order.
async fn observed(retriever: &dyn Retriever, query: &str) -> (usize, Vec<(String, usize, Vec<String>)>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let ctx = RunContext::new().with_events(move |event: Event| {
        if let Event::Retrieved { query, count, sources } = event {
            sink.lock().unwrap().push((query, count, sources));
        }
    });
    let hits = retriever.retrieve(query, &ctx).await.unwrap();
    let events = seen.lock().unwrap().clone();
    (hits.len(), events)
}

#[tokio::test]
async fn every_retriever_reports_what_it_retrieved() {
    let ctx = RunContext::new();
    let embedder: Arc<dyn Embedder> = Arc::new(DeterministicEmbedder::new(32));
    let store: Arc<dyn VectorStore> = Arc::new(InMemoryVectorStore::new());
    index_documents(&docs(), embedder.as_ref(), store.as_ref(), 8, &ctx).await.unwrap();
    let vector: Arc<dyn Retriever> =
        Arc::new(VectorStoreRetriever::new(store.clone(), embedder.clone()).with_k(2));
    let bm25: Arc<dyn Retriever> = Arc::new(Bm25Retriever::from_documents(docs()).unwrap().with_k(2));
    let parent = ParentDocumentRetriever::new(
        Arc::new(InMemoryVectorStore::new()),
        embedder.clone(),
        Arc::new(Sentences),
    )
    .with_k(1);
    parent.add_documents(&docs(), &ctx).await.unwrap();
    let scripted = |reply: &str| Arc::new(ScriptedChatModel::new(vec![reply.to_owned(); 4]));

    let cases: Vec<(&str, Box<dyn Retriever>)> = vec![
        ("vector", Box::new(VectorStoreRetriever::new(store.clone(), embedder.clone()).with_k(1))),
        ("mmr", Box::new(MmrRetriever::new(store.clone(), embedder.clone()).with_k(1))),
        ("bm25", Box::new(Bm25Retriever::from_documents(docs()).unwrap().with_k(1))),
        ("ensemble", Box::new(EnsembleRetriever::new(vec![bm25.clone(), vector.clone()]).with_k(1))),
        (
            "hyde",
            Box::new(
                HydeRetriever::new(scripted("Rust borrows."), embedder.clone(), store.clone()).with_k(1),
            ),
        ),
        (
            "multi-query",
            Box::new(
                MultiQueryRetriever::new(scripted(r#"{"queries": ["ownership in Rust"]}"#), bm25.clone())
                    .with_k(1),
            ),
        ),
        (
            "reranking",
            Box::new(
                RerankingRetriever::new(vector.clone(), Arc::new(EmbeddingsFilter::new(embedder.clone())))
                    .with_top_n(1),
            ),
        ),
        ("parent", Box::new(parent)),
        (
            "self-query",
            Box::new(SelfQueryRetriever::new(
                scripted(
                    r#"{"query": "borrowing", "conditions": [{"field": "year", "op": "lt", "value": 2018}]}"#,
                ),
                store.clone(),
                embedder.clone(),
                "notes",
                vec![AttributeInfo::new("year", "the year written", AttributeType::Integer)],
            )),
        ),
    ];
    for (name, retriever) in cases {
        let query = "borrowing in Rust";
        let (found, events) = observed(retriever.as_ref(), query).await;
        assert!(found >= 1, "{name} found nothing");
        // The outermost retriever reports last; composite ones also pass on their parts' reports.
        let (q, count, sources) = events.last().unwrap_or_else(|| panic!("{name} reported nothing"));
        assert_eq!((q.as_str(), *count), (query, found), "{name}: {events:?}");
        assert_eq!(sources.len(), found, "{name}");
        if name == "self-query" {
            assert_eq!(sources, &["rust.md"], "the filter kept only the 2015 note");
        }
    }
}
