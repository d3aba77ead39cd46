//! Evaluate the RAG pipeline of `examples/rag.rs` on a small dataset about this repository's docs
//! (`examples/data/docs_eval.jsonl`, written for this example), judged by the local model, and
//! print the metric table.
//!
//! ```text
//! cargo run --example evaluate                      # the bundled dataset
//! cargo run --example evaluate -- my_dataset.jsonl  # {"question": ..., "reference": ...} per line
//! ```
//!
//! 1. Index the README and docs/ in memory (the default embedding model).
//! 2. The pipeline: retrieve 3 chunks, answer from them with the default chat model.
//! 3. The judge (the same local model, under JSON-Schema grammars) scores every answer with the
//!    Ragas metrics; per-sample problems are reported, not fatal.

use std::path::Path;
use std::sync::Arc;

use catena::core::{
    ChatModel, ChatRequest, Embedder, Loader, Message, Result, Retriever, RunContext, Runnable, Splitter,
    VectorStore, async_trait,
};
use catena::eval::rag::Judge;
use catena::eval::runner::{RagAnswer, RagEvaluation, RagMetric, read_dataset};
use catena::loaders::{DirectoryLoader, TextLoader};
use catena::models::{LlamaChatModel, LlamaEmbedder};
use catena::retrievers::{InMemoryVectorStore, VectorStoreRetriever, index_documents};
use catena::splitters::RecursiveCharacterSplitter;
use futures::StreamExt;

/// The pipeline under test: retrieve, then answer from what was retrieved.
struct DocsRag {
    retriever: VectorStoreRetriever,
    model: Arc<dyn ChatModel>,
}

#[async_trait]
impl Runnable<String, RagAnswer> for DocsRag {
    async fn invoke(&self, question: String, ctx: &RunContext) -> Result<RagAnswer> {
        let contexts = self.retriever.retrieve(&question, ctx).await?;
        let context: Vec<&str> = contexts.iter().map(|c| c.document.content.as_str()).collect();
        let request = ChatRequest::new(vec![
            Message::system(format!("Answer briefly from this context only:\n\n{}", context.join("\n\n"))),
            Message::user(question),
        ])
        .with_temperature(0.0)
        .with_max_tokens(96);
        let answer = self.model.chat(request, ctx).await?.message.content;
        Ok(RagAnswer { answer, contexts })
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dataset_path =
        std::env::args().nth(1).map_or_else(|| root.join("examples/data/docs_eval.jsonl"), Into::into);
    let text =
        std::fs::read_to_string(&dataset_path).map_err(|e| catena::core::Error::io(&dataset_path, e))?;
    let dataset = read_dataset(&text)?;
    let ctx = RunContext::new();

    // 1. Index.
    let mut documents: Vec<_> = TextLoader::new(root.join("README.md")).load(&ctx).collect().await;
    documents.extend(
        DirectoryLoader::new(root.join("docs")).with_extensions(["md"]).load(&ctx).collect::<Vec<_>>().await,
    );
    let documents: Vec<_> = documents.into_iter().filter_map(std::result::Result::ok).collect();
    let chunks = RecursiveCharacterSplitter::new(800, 100)?.split_documents(&documents)?;
    let embedder: Arc<dyn Embedder> = Arc::new(LlamaEmbedder::load_default().await?);
    let store: Arc<dyn VectorStore> = Arc::new(InMemoryVectorStore::new());
    index_documents(&chunks, embedder.as_ref(), store.as_ref(), 32, &ctx).await?;
    eprintln!("indexed {} chunks; evaluating {} questions", chunks.len(), dataset.len());

    // 2. The pipeline, and 3. the judge.
    let model: Arc<dyn ChatModel> = Arc::new(LlamaChatModel::load_default().await?);
    let pipeline = DocsRag {
        retriever: VectorStoreRetriever::new(store, Arc::clone(&embedder)).with_k(3),
        model: Arc::clone(&model),
    };
    let judge = Judge::new(model).with_embedder(embedder).with_questions(2);
    let metrics = vec![
        RagMetric::Faithfulness,
        RagMetric::AnswerRelevancy,
        RagMetric::ContextPrecision,
        RagMetric::ContextRecall,
        RagMetric::AnswerCorrectness,
    ];
    let report = RagEvaluation::new(Arc::new(pipeline), judge, metrics.clone())
        .with_concurrency(2)
        .run(&dataset, &ctx)
        .await?;

    println!("{:<22} {:>8} {:>8}", "metric", "mean", "defined");
    for metric in &metrics {
        let name = metric.name();
        let mean = report.means.get(name).copied().flatten().map_or("-".to_owned(), |m| format!("{m:.3}"));
        println!(
            "{name:<22} {mean:>8} {:>5}/{}",
            report.counts.get(name).copied().unwrap_or(0),
            dataset.len()
        );
    }
    for sample in &report.samples {
        for (metric, error) in &sample.errors {
            eprintln!("{:?}: {metric} not computed: {error}", sample.sample.question);
        }
    }
    for (question, error) in &report.failed {
        eprintln!("{question:?}: the pipeline failed: {error}");
    }
    Ok(())
}
