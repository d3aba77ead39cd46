//! Memories and sessions: budgets, summaries (with a scripted summariser: the real model is
//! exercised in the workspace's agent tests), vector recall, SQLite sessions and their damage.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use std::sync::Arc;

use catena_agents::{
    BufferMemory, Loaded, SessionStore, SummaryBufferMemory, SummaryMemory, TokenBufferMemory, VectorMemory,
    WindowMemory,
};
use catena_core::testing::{DeterministicEmbedder, ScriptedChatModel, ScriptedReply};
use catena_core::{Error, ErrorKind, Memory, Message, Result, Role, RunContext, Tokenizer};
use catena_retrievers::InMemoryVectorStore;

/// One token per whitespace-separated word.
struct Words;

impl Tokenizer for Words {
    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(text.split_whitespace().map(|w| u32::try_from(w.len()).unwrap_or(0)).collect())
    }
    fn decode(&self, _: &[u32]) -> Result<String> {
        Ok(String::new())
    }
}

fn exchange(i: usize) -> [Message; 2] {
    [
        Message::user(format!("question {i} one two three")),
        Message::assistant(format!("answer {i} four five")),
    ]
}

fn contents(messages: &[Message]) -> Vec<String> {
    messages.iter().map(|m| m.content.clone()).collect()
}

#[tokio::test]
async fn token_buffer_keeps_the_recent_whole_exchanges_that_fit() {
    // Each message costs 4 + its words: user 9, assistant 8 => 17 per exchange.
    let memory = TokenBufferMemory::new(Arc::new(Words), 40);
    let ctx = RunContext::new();
    memory.add(&[Message::system("be brief")], &ctx).await.unwrap(); // 6
    for i in 0..4 {
        memory.add(&exchange(i), &ctx).await.unwrap();
    }
    let kept = memory.messages().await.unwrap();
    // 40 - 6 = 34 = two exchanges exactly.
    assert_eq!(
        contents(&kept),
        [
            "be brief",
            "question 2 one two three",
            "answer 2 four five",
            "question 3 one two three",
            "answer 3 four five"
        ]
    );
    // One token less and the older exchange's question no longer fits; its answer is dropped too.
    let tighter = TokenBufferMemory::new(Arc::new(Words), 39);
    for i in 0..4 {
        tighter.add(&exchange(i), &ctx).await.unwrap();
    }
    let kept = tighter.messages().await.unwrap();
    assert_eq!(kept.len(), 4, "{:?}", contents(&kept));
    let tiny = TokenBufferMemory::new(Arc::new(Words), 12);
    tiny.add(&exchange(0), &ctx).await.unwrap();
    assert!(tiny.messages().await.unwrap().is_empty(), "an answer without its question is not kept");
}

#[tokio::test]
async fn summary_memory_folds_each_turn_into_the_summary() {
    let model = Arc::new(ScriptedChatModel::new([
        "Ada introduced herself.",
        "Ada introduced herself and likes tea.",
    ]));
    let memory = SummaryMemory::new(model.clone());
    let ctx = RunContext::new();
    assert!(memory.messages().await.unwrap().is_empty());
    memory.add(&[Message::user("I am Ada"), Message::assistant("Hi Ada")], &ctx).await.unwrap();
    memory.add(&[Message::user("I like tea"), Message::assistant("Noted")], &ctx).await.unwrap();
    let kept = memory.messages().await.unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].role, Role::System);
    assert!(kept[0].content.ends_with("Ada introduced herself and likes tea."));
    let second_prompt = &model.requests()[1].messages[0].content;
    assert!(second_prompt.contains("Current summary:\nAda introduced herself."), "{second_prompt}");
    assert!(second_prompt.contains("Human: I like tea\nAI: Noted"), "{second_prompt}");
    let snapshot = memory.snapshot().await.unwrap();
    let restored = SummaryMemory::new(Arc::new(ScriptedChatModel::new(Vec::<String>::new())));
    restored.restore(snapshot).await.unwrap();
    assert_eq!(restored.summary().await, "Ada introduced herself and likes tea.");
    assert_eq!(restored.restore(serde_json::json!([1, 2])).await.unwrap_err().kind(), ErrorKind::Parse);
}

#[tokio::test]
async fn summary_buffer_summarises_only_what_overflows_and_loses_nothing_on_failure() {
    let model = Arc::new(ScriptedChatModel::from_replies([
        ScriptedReply::Text("Questions 0 and 1 were answered.".into()),
        ScriptedReply::Fail(|| Error::model_transient("summariser down")),
    ]));
    let memory = SummaryBufferMemory::new(model.clone(), Arc::new(Words), 40);
    let ctx = RunContext::new();
    memory.add(&exchange(0), &ctx).await.unwrap();
    memory.add(&exchange(1), &ctx).await.unwrap();
    assert!(model.requests().is_empty(), "34 tokens fit: no model call");
    memory.add(&exchange(2), &ctx).await.unwrap();
    // 51 > 40: the first exchange goes (34 fits), and the summary takes it.
    let kept = memory.messages().await.unwrap();
    assert_eq!(kept[0].content, "Summary of the conversation so far:\nQuestions 0 and 1 were answered.");
    assert_eq!(
        contents(&kept[1..]),
        ["question 1 one two three", "answer 1 four five", "question 2 one two three", "answer 2 four five"]
    );
    assert!(
        model.requests()[0].messages[0]
            .content
            .contains("Human: question 0 one two three\nAI: answer 0 four five")
    );
    // The next overflow fails to summarise: the error comes back and every message is still there.
    let err = memory.add(&exchange(3), &ctx).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ModelTransient);
    let kept = memory.messages().await.unwrap();
    assert_eq!(kept.len(), 7, "{:?}", contents(&kept));
    assert_eq!(kept[1].content, "question 1 one two three");
    // Snapshots carry summary and buffer exactly.
    let again = SummaryBufferMemory::new(model, Arc::new(Words), 40);
    again.restore(memory.snapshot().await.unwrap()).await.unwrap();
    assert_eq!(contents(&again.messages().await.unwrap()), contents(&kept));
}

#[tokio::test]
async fn vector_memory_recalls_the_relevant_exchanges_in_order() {
    let store = Arc::new(InMemoryVectorStore::new());
    let memory = VectorMemory::new(Arc::new(DeterministicEmbedder::new(64)), store.clone(), "ada").with_k(1);
    let ctx = RunContext::new();
    memory
        .add(&[Message::user("My favourite colour is green"), Message::assistant("Green, noted.")], &ctx)
        .await
        .unwrap();
    memory
        .add(&[Message::user("I was born in Lyon"), Message::assistant("Lyon, noted.")], &ctx)
        .await
        .unwrap();
    // An unfinished exchange waits for its answer.
    memory.add(&[Message::user("pending")], &ctx).await.unwrap();
    assert_eq!(catena_core::VectorStore::count(store.as_ref()).await.unwrap(), 2);
    let recalled = memory.messages_for("Which city was I born in?", &ctx).await.unwrap();
    assert_eq!(contents(&recalled), ["I was born in Lyon", "Lyon, noted."]);
    assert_eq!(memory.messages().await.unwrap().len(), 5);
    memory.clear().await.unwrap();
    assert_eq!(catena_core::VectorStore::count(store.as_ref()).await.unwrap(), 0);
    assert!(memory.messages_for("Lyon", &ctx).await.unwrap().is_empty());
}

#[tokio::test]
async fn sessions_resume_after_a_restart_and_damage_is_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested").join("sessions.db");
    let ctx = RunContext::new();
    {
        let store = SessionStore::open(&path).await.unwrap();
        assert!(store.moved_aside().is_none());
        let memory = WindowMemory::new(5);
        assert_eq!(store.load("work", &memory).await.unwrap(), Loaded::New);
        let turn = exchange(0);
        memory.add(&turn, &ctx).await.unwrap();
        store.save("work", &memory, &turn).await.unwrap();
        let turn = exchange(1);
        memory.add(&turn, &ctx).await.unwrap();
        store.save("work", &memory, &turn).await.unwrap();
    }
    // A new process: the session comes back, in memory and transcript.
    let store = SessionStore::open(&path).await.unwrap();
    let memory = BufferMemory::new();
    assert_eq!(store.load("work", &memory).await.unwrap(), Loaded::Resumed);
    assert_eq!(memory.messages().await.unwrap().len(), 4);
    assert_eq!(store.transcript("work").await.unwrap().len(), 4);
    let listed = store.list().await.unwrap();
    assert_eq!((listed[0].name.as_str(), listed[0].messages), ("work", 4));

    // A snapshot the memory cannot read: renamed, reported, memory left empty, nothing deleted.
    let summary = SummaryMemory::new(Arc::new(ScriptedChatModel::new(Vec::<String>::new())));
    match store.load("work", &summary).await.unwrap() {
        Loaded::MovedAside { renamed_to, reason } => {
            assert!(renamed_to.starts_with("work.corrupt-"), "{renamed_to}");
            assert!(reason.contains("memory snapshot"), "{reason}");
            assert_eq!(store.transcript(&renamed_to).await.unwrap().len(), 4);
        }
        other => panic!("{other:?}"),
    }
    assert!(summary.messages().await.unwrap().is_empty());
    assert_eq!(store.load("work", &memory).await.unwrap(), Loaded::New);
    assert!(store.delete(&store.list().await.unwrap()[0].name).await.unwrap());
    drop(store);

    // A file that is not a database: moved aside with its bytes intact, a fresh store opened.
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, b"this is not an SQLite database, it is a text file of some length....").unwrap();
    let store = SessionStore::open(&junk).await.unwrap();
    let aside = store.moved_aside().unwrap().to_path_buf();
    assert!(aside.to_string_lossy().contains("junk.db.corrupt-"), "{}", aside.display());
    assert!(std::fs::read(&aside).unwrap().starts_with(b"this is not an SQLite"));
    assert!(store.list().await.unwrap().is_empty());
}
