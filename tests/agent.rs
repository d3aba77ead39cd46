//! Agents on the real default local model (SmolLM2-135M-Instruct through llama.cpp): a calculator
//! question answered through a tool call that parsed, a docs question answered through the
//! search tool with a citation, and the summary memory on the real model. The assertions are on
//! the protocol (the tool was called with valid arguments, the format held, the run ended
//! cleanly), never on the wording of a 135M model's answers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic, missing_docs)]

use std::sync::Arc;

use catena::agents::{AgentExecutor, ReActAgent, StopReason, SummaryMemory, ToolCallingAgent};
use catena::core::{ChatModel, Document, Embedder, Memory, Message, RunContext, ToolChoice, VectorStore};
use catena::models::{LlamaChatModel, LlamaEmbedder};
use catena::retrievers::{InMemoryVectorStore, VectorStoreRetriever, index_documents};
use catena::tools::{Calculator, RetrieverTool, ToolRegistry};
use tokio::sync::OnceCell;

async fn model() -> Arc<dyn ChatModel> {
    static MODEL: OnceCell<Arc<LlamaChatModel>> = OnceCell::const_new();
    let m = MODEL.get_or_init(|| async { Arc::new(LlamaChatModel::load_default().await.unwrap()) }).await;
    m.clone()
}

fn calculator() -> ToolRegistry {
    ToolRegistry::new().with(Calculator).unwrap()
}

#[tokio::test]
async fn native_tool_calls_on_the_local_model_always_parse() {
    let agent = ToolCallingAgent::new(model().await)
        .with_system_prompt("You are a calculator assistant. Use the calculator tool for arithmetic.")
        .with_first_tool_choice(ToolChoice::Required)
        .with_max_tokens(160);
    let executor = AgentExecutor::new(agent, calculator()).with_max_iterations(4);
    let out = executor.run("What is 23 * 7?", &RunContext::new()).await.unwrap();
    eprintln!("{out:#?}");
    let first = out.steps.first().expect("the model called a tool");
    let call = first.call.as_ref().expect("the reply parsed as a call");
    assert_eq!(call.name, "calculator");
    assert!(call.arguments.get("expression").is_some_and(|e| e.is_string()), "{:?}", call.arguments);
    // Every reply was readable: decoded under the tools' grammar, no step is an unreadable reply.
    assert!(out.steps.iter().all(|s| s.call.is_some()), "{:#?}", out.steps);
    assert!(matches!(out.stop, StopReason::Finished | StopReason::Looping | StopReason::MaxIterations));
    assert!(!out.answer.trim().is_empty());
}

#[tokio::test]
async fn constrained_react_on_the_local_model_keeps_the_format() {
    let agent = ReActAgent::new(model().await).constrained(true).with_max_tokens(96);
    let executor = AgentExecutor::new(agent, calculator()).with_max_iterations(3);
    let out = executor.run("What is 23 * 7? Use the calculator.", &RunContext::new()).await.unwrap();
    eprintln!("{out:#?}");
    // Under the grammar every reply is either an action on a real tool or a final answer: never
    // an unreadable reply.
    assert!(out.steps.iter().all(|s| s.call.is_some()), "{:#?}", out.steps);
    assert_ne!(out.stop, StopReason::ParseErrors);
    if let Some(step) = out.steps.first() {
        assert_eq!(step.call.as_ref().unwrap().name, "calculator");
        assert!(step.log.starts_with("Thought: "), "{}", step.log);
    }
}

#[tokio::test]
async fn a_docs_question_is_answered_through_the_search_tool_with_a_citation() {
    let docs = vec![
        Document::new("RecursiveCharacterSplitter splits documents into overlapping chunks of a given size.")
            .with_metadata("source", "docs/guides/splitting.md"),
        Document::new("LanceDbStore keeps vectors on disk in a LanceDB table.")
            .with_metadata("source", "docs/guides/stores.md"),
    ];
    // Vector search with the default embedder, as the `agent` example's docs tool does: whatever
    // query the model writes, the nearest passage comes back with its source.
    let embedder: Arc<dyn Embedder> = Arc::new(LlamaEmbedder::load_default().await.unwrap());
    let store: Arc<dyn VectorStore> = Arc::new(InMemoryVectorStore::new());
    index_documents(&docs, embedder.as_ref(), store.as_ref(), 8, &RunContext::new()).await.unwrap();
    let search = RetrieverTool::new(Arc::new(VectorStoreRetriever::new(store, embedder).with_k(1)));
    let tools = ToolRegistry::new().with(search).unwrap();
    let agent = ToolCallingAgent::new(model().await)
        .with_system_prompt(
            "You answer questions about the catena library. Always search the documents first, then answer and cite the source like [1].",
        )
        .with_first_tool_choice(ToolChoice::Required)
        .with_max_tokens(128);
    let executor = AgentExecutor::new(agent, tools).with_max_iterations(3);
    let out = executor.run("How do I split documents?", &RunContext::new()).await.unwrap();
    eprintln!("{out:#?}");
    let step = out.steps.first().expect("the model searched");
    assert_eq!(step.call.as_ref().unwrap().name, "search_documents");
    // The observation the model answered from carries the numbered, cited snippet.
    assert!(out.steps.iter().any(|s| s.observation.starts_with("[1] (docs/guides/")), "{:#?}", out.steps);
    assert!(step.artifact.is_some(), "the hits travel as the artifact");
}

#[tokio::test]
async fn summary_memory_on_the_local_model_produces_a_summary() {
    let memory = SummaryMemory::new(model().await).with_max_summary_tokens(64);
    let ctx = RunContext::new();
    memory
        .add(
            &[
                Message::user("My name is Ada and I live in Lyon."),
                Message::assistant("Nice to meet you, Ada."),
            ],
            &ctx,
        )
        .await
        .unwrap();
    let summary = memory.summary().await;
    eprintln!("summary: {summary}");
    assert!(!summary.trim().is_empty());
    assert_eq!(memory.messages().await.unwrap().len(), 1);
}
