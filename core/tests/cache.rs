//! The model-call cache: replies survive a restart, any change to the request is a miss, failures
//! are not cached, streams are cached once complete, and a damaged file loses only its bad line;
//! embeddings are cached text by text.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]

use std::sync::Arc;

use catena_core::testing::{DeterministicEmbedder, ScriptedChatModel, ScriptedReply};
use catena_core::{CachedChatModel, CachedEmbedder, ChatCache, EmbeddingCache};
use catena_core::{ChatModel, ChatRequest, Embedder, Error, ErrorKind, Message, RunContext, async_trait};
use futures::StreamExt;

fn ask(text: &str) -> ChatRequest {
    ChatRequest::new(vec![Message::user(text)])
}

/// A model with no replies left: any call that reaches it fails.
fn exhausted() -> ScriptedChatModel {
    ScriptedChatModel::new(Vec::<String>::new())
}

#[tokio::test]
async fn replies_survive_a_restart_and_only_identical_requests_hit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/calls.jsonl");
    let ctx = RunContext::new();
    let first = {
        let cache = ChatCache::open(&path).await.unwrap();
        let model = CachedChatModel::new(ScriptedChatModel::new(["four", "four, warmer"]), cache.clone());
        let first = model.chat(ask("2+2?"), &ctx).await.unwrap();
        // Another temperature is another request.
        let warm = model.chat(ask("2+2?").with_temperature(0.9), &ctx).await.unwrap();
        assert_eq!(warm.message.content, "four, warmer");
        assert_eq!((cache.hits(), cache.misses(), cache.len()), (0, 2, 2));
        first
    };
    assert_eq!(first.message.content, "four");

    let cache = ChatCache::open(&path).await.unwrap();
    assert_eq!((cache.len(), cache.skipped_lines()), (2, 0));
    let model = CachedChatModel::new(exhausted(), cache.clone());
    assert_eq!(model.chat(ask("2+2?"), &ctx).await.unwrap(), first);
    let err = model.chat(ask("3+3?"), &ctx).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ModelPermanent, "a new question reaches the model: {err}");
    assert_eq!((cache.hits(), cache.misses()), (1, 1));

    // The key includes the model's name: the same request to another model is a miss.
    let a = ChatCache::key("model-a", &ask("2+2?"));
    assert_ne!(a, ChatCache::key("model-b", &ask("2+2?")));
    assert_eq!(a, ChatCache::key("model-a", &ask("2+2?")));
    assert_eq!(a.len(), 64);
}

#[tokio::test]
async fn failures_are_not_cached() {
    let cache = ChatCache::in_memory();
    let model = CachedChatModel::new(
        ScriptedChatModel::from_replies([
            ScriptedReply::Fail(|| Error::model_transient("overloaded")),
            ScriptedReply::Text("fine now".into()),
        ]),
        cache.clone(),
    );
    let ctx = RunContext::new();
    assert!(model.chat(ask("hello"), &ctx).await.unwrap_err().is_transient());
    assert!(cache.is_empty());
    assert_eq!(model.chat(ask("hello"), &ctx).await.unwrap().message.content, "fine now");
    assert_eq!(model.chat(ask("hello"), &ctx).await.unwrap().message.content, "fine now");
    assert_eq!((cache.hits(), cache.misses()), (1, 2));
}

#[tokio::test]
async fn a_stream_is_cached_once_it_completes() {
    let cache = ChatCache::in_memory();
    let model = CachedChatModel::new(ScriptedChatModel::new(["one two three"]), cache.clone());
    let ctx = RunContext::new();
    let deltas: Vec<_> = model.chat_stream(ask("count"), &ctx).collect().await;
    assert_eq!(deltas.len(), 4, "three words and the final delta pass through as they come");
    let text: String = deltas.iter().map(|d| d.as_ref().unwrap().content.clone()).collect();
    assert_eq!(text, "one two three");
    assert_eq!(cache.len(), 1);

    let again: Vec<_> = model.chat_stream(ask("count"), &ctx).collect().await;
    assert_eq!(again.len(), 1, "a hit is one delta");
    assert_eq!(again[0].as_ref().unwrap().content, "one two three");
    // chat and chat_stream share entries.
    assert_eq!(model.chat(ask("count"), &ctx).await.unwrap().message.content, "one two three");

    // A stream that fails is passed on and not cached.
    let failing = CachedChatModel::new(
        ScriptedChatModel::from_replies([ScriptedReply::Fail(|| Error::model_permanent("bad key"))]),
        ChatCache::in_memory(),
    );
    let out: Vec<_> = failing.chat_stream(ask("count"), &ctx).collect().await;
    assert!(out[0].is_err());
    assert!(failing.cache().is_empty());
}

#[tokio::test]
async fn a_damaged_file_loses_only_its_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("calls.jsonl");
    let ctx = RunContext::new();
    {
        let cache = ChatCache::open(&path).await.unwrap();
        let model = CachedChatModel::new(ScriptedChatModel::new(["kept"]), cache);
        model.chat(ask("keep me"), &ctx).await.unwrap();
    }
    // A run killed mid-write leaves half a line, and someone pasted junk.
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("not json at all\n{\"key\": \"abc\", \"respo");
    std::fs::write(&path, &text).unwrap();

    let cache = ChatCache::open(&path).await.unwrap();
    assert_eq!((cache.len(), cache.skipped_lines()), (1, 2));
    let model = CachedChatModel::new(ScriptedChatModel::new(["new"]), cache);
    assert_eq!(model.chat(ask("keep me"), &ctx).await.unwrap().message.content, "kept");
    assert_eq!(model.chat(ask("new one"), &ctx).await.unwrap().message.content, "new");

    // The new entry went on a line of its own, after the cut one: both good entries load.
    let cache = ChatCache::open(&path).await.unwrap();
    assert_eq!((cache.len(), cache.skipped_lines()), (2, 2));
    assert!(std::fs::read_to_string(&path).unwrap().starts_with(&text), "nothing was rewritten");
}

#[tokio::test]
async fn a_cache_path_that_cannot_be_a_file_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "x").unwrap();
    let err = ChatCache::open(blocker.join("calls.jsonl")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io, "{err}");
    assert!(err.to_string().contains("file"), "{err}");
}

/// Counts the texts that reach the embedder underneath.
struct Counting {
    inner: DeterministicEmbedder,
    seen: std::sync::Mutex<Vec<String>>,
}

#[async_trait]
impl Embedder for Counting {
    async fn embed(&self, texts: &[String], ctx: &RunContext) -> catena_core::Result<Vec<Vec<f32>>> {
        self.seen.lock().unwrap().extend(texts.iter().cloned());
        self.inner.embed(texts, ctx).await
    }

    fn dimensions(&self) -> usize {
        self.inner.dimensions()
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test]
async fn embeddings_are_cached_text_by_text_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vectors.jsonl");
    let ctx = RunContext::new();
    let reference = DeterministicEmbedder::new(8);
    let counting = Arc::new(Counting { inner: DeterministicEmbedder::new(8), seen: Default::default() });
    {
        let cache = EmbeddingCache::open(&path).await.unwrap();
        let embedder = CachedEmbedder::shared(counting.clone(), cache.clone(), "det-8");
        assert_eq!(embedder.dimensions(), 8);
        // A repeated text is embedded once; the vectors come back in order.
        let got = embedder.embed(&strings(&["a", "b", "a"]), &ctx).await.unwrap();
        assert_eq!(got, reference.embed(&strings(&["a", "b", "a"]), &ctx).await.unwrap());
        assert_eq!(*counting.seen.lock().unwrap(), strings(&["a", "b"]));
        // Only the new text reaches the embedder.
        let got = embedder.embed(&strings(&["b", "c"]), &ctx).await.unwrap();
        assert_eq!(got, reference.embed(&strings(&["b", "c"]), &ctx).await.unwrap());
        assert_eq!(*counting.seen.lock().unwrap(), strings(&["a", "b", "c"]));
        assert_eq!(cache.len(), 3);
    }
    // After a restart nothing is embedded again; another namespace is another embedder.
    let cache = EmbeddingCache::open(&path).await.unwrap();
    let embedder = CachedEmbedder::shared(counting.clone(), cache.clone(), "det-8");
    let got = embedder.embed(&strings(&["c", "a", "b"]), &ctx).await.unwrap();
    assert_eq!(got, reference.embed(&strings(&["c", "a", "b"]), &ctx).await.unwrap());
    assert_eq!(counting.seen.lock().unwrap().len(), 3, "all three came from the file");
    let other = CachedEmbedder::shared(counting.clone(), cache, "other-model");
    other.embed(&strings(&["a"]), &ctx).await.unwrap();
    assert_eq!(counting.seen.lock().unwrap().len(), 4);
}
