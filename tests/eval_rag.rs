//! RAG metrics judged by the real default local model (SmolLM2-135M under JSON-Schema grammars,
//! MiniLM embeddings): the pipeline completes and every value is a valid score or explicitly
//! undefined. (The arithmetic is tested exactly with scripted judges in eval/tests/rag_metrics.rs.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

use std::sync::Arc;

use catena::core::RunContext;
use catena::eval::rag::{Judge, RagSample};
use catena::models::{LlamaChatModel, LlamaEmbedder};

#[tokio::test]
async fn the_local_model_judges_a_sample_with_valid_numbers() {
    let judge = Judge::new(Arc::new(LlamaChatModel::load_default().await.unwrap()))
        .with_embedder(Arc::new(LlamaEmbedder::load_default().await.unwrap()))
        .with_questions(2);
    let sample = RagSample {
        question: "What does RecursiveCharacterSplitter do?".into(),
        answer: "It splits documents into overlapping chunks.".into(),
        contexts: vec![
            "RecursiveCharacterSplitter splits documents into overlapping chunks of a given size.".into(),
            "LanceDbStore keeps vectors on disk.".into(),
        ],
        reference: Some("It splits text into overlapping chunks.".into()),
        ..RagSample::default()
    };
    let ctx = RunContext::new();
    let valid = |name: &str, v: Option<f64>| {
        eprintln!("{name}: {v:?}");
        if let Some(v) = v {
            assert!((0.0..=1.0 + 1e-9).contains(&v), "{name} = {v}");
        }
    };
    valid("faithfulness", judge.faithfulness(&sample, &ctx).await.unwrap().value);
    valid("answer_relevancy", judge.answer_relevancy(&sample, &ctx).await.unwrap().value);
    valid("context_precision", judge.context_precision(&sample, &ctx).await.unwrap().value);
    valid("context_recall", judge.context_recall(&sample, &ctx).await.unwrap().value);
}
