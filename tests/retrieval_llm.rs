//! The chat-model retrievers and rerankers on the real default models (SmolLM2 for generation,
//! MiniLM for embeddings) over an on-disk LanceDB store. A 135M model's judgement is weak, so
//! these tests hold what must hold whatever it thinks: every structured reply parses (the grammar
//! guarantees the shape), results come from the store, rankings are permutations, extracted text
//! is verbatim, and the retrievers' fixed parts (the original query in RAG-fusion) do their job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

use std::sync::Arc;

use catena::prelude::*;
use catena::retrievers::{
    AttributeInfo, AttributeType, HydeRetriever, LlmExtractor, LlmListwiseReranker, LlmRelevanceReranker,
    MultiQueryRetriever, SelfQueryRetriever,
};

const DOCS: [(&str, &str, i64); 6] = [
    (
        "rust.md",
        "Rust's borrow checker enforces ownership: each value has one owner, and references must not outlive it.",
        2015,
    ),
    (
        "rust-async.md",
        "Async Rust runs futures on an executor such as tokio; a future does nothing until it is polled.",
        2019,
    ),
    (
        "python.md",
        "Python manages memory with reference counting and a cycle-detecting garbage collector.",
        1991,
    ),
    ("paris.md", "Paris is the capital of France and sits on the river Seine.", 2000),
    ("bread.md", "Bread dough rises because yeast ferments sugars and releases carbon dioxide.", 2010),
    ("mars.md", "Mars has two small moons, Phobos and Deimos, and a thin carbon dioxide atmosphere.", 2021),
];

async fn setup() -> (Arc<dyn ChatModel>, Arc<dyn Embedder>, Arc<LanceDbStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LanceDbStore::connect(dir.path().to_string_lossy(), "docs").await.unwrap());
    let embedder: Arc<dyn Embedder> = Arc::new(LlamaEmbedder::load_default().await.unwrap());
    let docs: Vec<Document> = DOCS
        .iter()
        .map(|(source, text, year)| {
            Document::new(*text).with_metadata("source", *source).with_metadata("year", *year)
        })
        .collect();
    index_documents(&docs, embedder.as_ref(), store.as_ref(), 16, &RunContext::new()).await.unwrap();
    let chat: Arc<dyn ChatModel> = Arc::new(LlamaChatModel::load_default().await.unwrap());
    (chat, embedder, store, dir)
}

fn sources(hits: &[ScoredDocument]) -> Vec<&str> {
    hits.iter().map(|h| h.document.source().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expansion_retrievers_on_the_local_models() {
    let (chat, embedder, store, _dir) = setup().await;
    let ctx = RunContext::new();
    let similarity: Arc<dyn Retriever> =
        Arc::new(VectorStoreRetriever::new(store.clone(), embedder.clone()).with_k(2));

    let mq = MultiQueryRetriever::new(chat.clone(), similarity.clone());
    let rephrasings = mq.rephrasings("How does Rust manage memory safely?", &ctx).await.unwrap();
    assert!(!rephrasings.is_empty() && rephrasings.len() <= 3, "{rephrasings:?}");
    assert!(rephrasings.iter().all(|q| !q.trim().is_empty()));

    // RAG-fusion always searches with the question itself too, so its best answer is in the list.
    let fusion = MultiQueryRetriever::rag_fusion(chat.clone(), similarity.clone());
    let hits = fusion.retrieve("Who owns a value in Rust?", &ctx).await.unwrap();
    assert!(sources(&hits).contains(&"rust.md"), "{:?}", sources(&hits));

    let hyde = HydeRetriever::new(chat.clone(), embedder.clone(), store.clone())
        .with_k(3)
        .with_query_embedding(true);
    let passages = hyde.passages("What are the moons of Mars?", &ctx).await.unwrap();
    assert!(passages[0].split_whitespace().count() >= 3, "{passages:?}");
    let hits = hyde.retrieve("What are the moons of Mars?", &ctx).await.unwrap();
    assert_eq!(hits.len(), 3);
    assert!(sources(&hits).contains(&"mars.md"), "{:?}", sources(&hits));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rerankers_and_self_query_on_the_local_models() {
    let (chat, embedder, store, _dir) = setup().await;
    let ctx = RunContext::new();
    let candidates = VectorStoreRetriever::new(store.clone(), embedder.clone())
        .with_k(4)
        .retrieve("yeast and bread", &ctx)
        .await
        .unwrap();

    let rated = LlmRelevanceReranker::new(chat.clone())
        .with_min_rating(0)
        .rerank("yeast and bread", candidates.clone(), &ctx)
        .await
        .unwrap();
    assert_eq!(rated.len(), 4, "min_rating 0 keeps everything");
    assert!(rated.iter().all(|d| (0.0..=1.0).contains(&d.score)));
    assert!(rated.windows(2).all(|w| w[0].score >= w[1].score), "sorted by rating");

    let listed = LlmListwiseReranker::new(chat.clone())
        .rerank("yeast and bread", candidates.clone(), &ctx)
        .await
        .unwrap();
    let mut before = sources(&candidates);
    let mut after = sources(&listed);
    before.sort_unstable();
    after.sort_unstable();
    assert_eq!(before, after, "a permutation: nothing lost, nothing invented");

    let extracted = LlmExtractor::new(chat.clone())
        .rerank("What makes dough rise?", candidates.clone(), &ctx)
        .await
        .unwrap();
    for d in &extracted {
        let original = candidates.iter().find(|c| c.document.id == d.document.id).unwrap();
        for line in d.document.content.lines() {
            assert!(original.document.content.contains(line), "{line:?} is not verbatim");
        }
    }

    let sq = SelfQueryRetriever::new(
        chat,
        store,
        embedder,
        "short notes on programming, cities, cooking and planets",
        vec![AttributeInfo::new("year", "the year the note was written", AttributeType::Integer)],
    );
    // Whatever the model writes is either a valid query with typed conditions or a Parse error;
    // the grammar makes it the former.
    let structured = sq.structure("notes about planets written after 2020", &ctx).await.unwrap();
    if let Some(filter) = &structured.filter {
        assert!(filter.mentions("year"), "{filter:?}");
    }
    let hits = sq.retrieve("notes about planets written after 2020", &ctx).await.unwrap();
    assert!(hits.len() <= 4);
}
