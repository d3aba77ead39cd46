//! The first end-to-end slice, on real components: this repository's docs, the recursive
//! splitter, the default local embedding model, the in-memory store, and the default local chat
//! model answering through a prompt template, streamed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

use std::path::Path;
use std::sync::Arc;

use catena::prelude::*;
use futures::StreamExt;
use serde_json::json;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docs_question_retrieves_the_splitting_guide_and_streams_a_grounded_answer() {
    let ctx = RunContext::new();
    let book = DirectoryLoader::new(root().join("docs")).with_extensions(["md"]);
    let mut documents: Vec<Document> = book.invoke((), &ctx).await.unwrap();
    documents.extend(TextLoader::new(root().join("README.md")).invoke((), &ctx).await.unwrap());
    assert!(documents.len() >= 5, "the README and the book's pages load");

    let chunks = RecursiveCharacterSplitter::new(800, 100).unwrap().split_documents(&documents).unwrap();
    let embedder: Arc<dyn Embedder> = Arc::new(LlamaEmbedder::load_default().await.unwrap());
    let store: Arc<dyn VectorStore> = Arc::new(InMemoryVectorStore::new());
    let ids = index_documents(&chunks, embedder.as_ref(), store.as_ref(), 32, &ctx).await.unwrap();
    assert_eq!(store.count().await.unwrap(), ids.len());

    // Retrieval: the guide that answers the question is among the hits.
    let retriever = VectorStoreRetriever::new(store, embedder).with_k(4);
    let hits = retriever.retrieve("How do I split documents?", &ctx).await.unwrap();
    assert_eq!(hits.len(), 4);
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score), "ranked by score");
    assert!(
        hits.iter().any(|h| h.document.source().unwrap().ends_with("guides/splitting.md")),
        "hits: {:?}",
        hits.iter().map(|h| (h.document.source(), h.score)).collect::<Vec<_>>()
    );

    // Answer: prompt -> local model -> parser, streamed; token events match the streamed text.
    let context: String = hits.iter().map(|h| h.document.content.as_str()).collect::<Vec<_>>().join("\n\n");
    let prompt = ChatPromptTemplate::new()
        .system("Answer from this context:\n{context}")
        .unwrap()
        .user("{question}")
        .unwrap();
    let chain = prompt.pipe(LlamaChatModel::load_default().await.unwrap()).pipe(StrOutputParser);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let ctx = RunContext::new().with_events(tx);
    let pieces: Vec<String> = chain
        .stream(json!({"context": context, "question": "How do I split documents?"}), &ctx)
        .map(Result::unwrap)
        .collect()
        .await;
    let answer = pieces.concat();
    assert!(pieces.len() > 3, "the answer streams in pieces");
    assert!(answer.split_whitespace().count() >= 3, "a real answer: {answer:?}");
    drop(ctx);
    let mut from_events = String::new();
    while let Ok(Event::Token { text }) = rx.try_recv() {
        from_events.push_str(&text);
    }
    assert_eq!(from_events, answer);
}

#[test]
fn the_rag_example_prints_a_streamed_answer_and_its_sources() {
    // Runs the example program itself, as `make demo` does. `cargo test --all-targets` builds it
    // next to this test's binary (target/debug/examples/rag).
    let exe = std::env::current_exe().unwrap();
    let example = exe.parent().and_then(Path::parent).unwrap().join("examples").join("rag");
    assert!(
        example.exists(),
        "{} is missing: run the tests with `cargo test --all-targets`",
        example.display()
    );
    let out = std::process::Command::new(&example)
        .arg("How do I split documents?")
        .current_dir(root())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let (answer, sources) = stdout.split_once("Sources:").expect("a Sources section");
    assert!(answer.split_whitespace().count() >= 3, "{answer:?}");
    assert!(sources.contains("docs/guides/splitting.md"), "{sources}");
    assert_eq!(sources.lines().filter(|l| l.trim_start().starts_with('[')).count(), 4);
}

#[tokio::test]
async fn an_unreadable_docs_folder_is_a_typed_error() {
    let err =
        DirectoryLoader::new(root().join("no-such-docs")).invoke((), &RunContext::new()).await.unwrap_err();
    assert_eq!(err.kind(), catena::core::ErrorKind::Io);
    assert!(err.to_string().contains("no-such-docs"), "{err}");
}
