//! Test doubles for control-flow tests (feature `testing`): a [`ScriptedChatModel`] that replays
//! given replies and a [`DeterministicEmbedder`]. They make agent loops, retries and chains
//! testable without a model; features are also tested on the real local model.

use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use async_trait::async_trait;
use futures::stream::{self, BoxStream};

use crate::{
    ChatDelta, ChatModel, ChatRequest, ChatResponse, Embedder, Error, Event, FinishReason, Message, Result,
    RunContext, ToolCall, Usage,
};

/// One scripted reply.
#[derive(Debug, Clone)]
pub enum ScriptedReply {
    /// Reply with this text.
    Text(String),
    /// Reply with these tool calls.
    ToolCalls(Vec<ToolCall>),
    /// Fail with an error built by this function.
    Fail(fn() -> Error),
}

/// A [`ChatModel`] that replays its script, one reply per call, and records every request.
///
/// When the script runs out it fails with a permanent model error (so a test that makes one call
/// too many notices). Streaming splits a text reply into word-sized deltas.
///
/// ```
/// use catena_core::{ChatModel, ChatRequest, Message, RunContext, testing::ScriptedChatModel};
///
/// # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// # rt.block_on(async {
/// let model = ScriptedChatModel::new(["Hello there"]);
/// let reply = model.chat(ChatRequest::new(vec![Message::user("hi")]), &RunContext::new()).await.unwrap();
/// assert_eq!(reply.text(), "Hello there");
/// assert_eq!(model.requests().len(), 1);
/// # });
/// ```
#[derive(Debug, Default)]
pub struct ScriptedChatModel {
    script: Mutex<VecDeque<ScriptedReply>>,
    requests: Mutex<Vec<ChatRequest>>,
}

impl ScriptedChatModel {
    /// A model that replies with these texts, in order.
    pub fn new<S: Into<String>>(replies: impl IntoIterator<Item = S>) -> Self {
        Self::from_replies(replies.into_iter().map(|r| ScriptedReply::Text(r.into())))
    }

    /// A model with any scripted replies.
    pub fn from_replies(replies: impl IntoIterator<Item = ScriptedReply>) -> Self {
        Self { script: Mutex::new(replies.into_iter().collect()), requests: Mutex::new(Vec::new()) }
    }

    /// Every request received so far.
    #[must_use]
    pub fn requests(&self) -> Vec<ChatRequest> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }

    fn next(&self, request: ChatRequest) -> Result<ScriptedReply> {
        if let Ok(mut r) = self.requests.lock() {
            r.push(request);
        }
        self.script
            .lock()
            .ok()
            .and_then(|mut s| s.pop_front())
            .ok_or_else(|| Error::model_permanent("scripted model has no replies left"))
    }
}

fn usage(request: &ChatRequest, reply: &str) -> Usage {
    let count = |s: &str| u32::try_from(s.split_whitespace().count()).unwrap_or(u32::MAX);
    Usage {
        prompt_tokens: request.messages.iter().map(|m| count(&m.content)).sum(),
        cached_prompt_tokens: 0,
        completion_tokens: count(reply),
        ..Usage::default()
    }
}

#[async_trait]
impl ChatModel for ScriptedChatModel {
    async fn chat(&self, request: ChatRequest, ctx: &RunContext) -> Result<ChatResponse> {
        ctx.check_cancelled()?;
        let u = |text: &str| usage(&request, text);
        // Traced and counted as a real model's calls are (a free, local provider), so control-flow
        // tests and benchmarks see the spans and usage the real models produce.
        let reply = async {
            match self.next(request.clone())? {
                ScriptedReply::Text(text) => {
                    ctx.emit(Event::Token { text: text.clone() });
                    Ok(ChatResponse {
                        usage: u(&text),
                        message: Message::assistant(text),
                        finish_reason: FinishReason::Stop,
                    })
                }
                ScriptedReply::ToolCalls(calls) => Ok(ChatResponse {
                    usage: u(""),
                    message: Message::assistant("").with_tool_calls(calls),
                    finish_reason: FinishReason::ToolCalls,
                }),
                ScriptedReply::Fail(make) => Err(make()),
            }
        };
        crate::telemetry::observe_chat(ctx, "catena.testing", "scripted", &request, reply).await
    }

    fn chat_stream<'a>(
        &'a self,
        request: ChatRequest,
        ctx: &'a RunContext,
    ) -> BoxStream<'a, Result<ChatDelta>> {
        let reply = self.next(request.clone());
        let deltas: Vec<Result<ChatDelta>> = match reply {
            Err(e) => vec![Err(e)],
            Ok(ScriptedReply::Fail(make)) => vec![Err(make())],
            Ok(ScriptedReply::ToolCalls(calls)) => vec![Ok(ChatDelta {
                tool_calls: calls,
                finish_reason: Some(FinishReason::ToolCalls),
                usage: Some(usage(&request, "")),
                ..ChatDelta::default()
            })],
            Ok(ScriptedReply::Text(text)) => {
                let mut out: Vec<Result<ChatDelta>> = text
                    .split_inclusive(' ')
                    .map(|piece| {
                        ctx.emit(Event::Token { text: piece.to_owned() });
                        Ok(ChatDelta { content: piece.to_owned(), ..ChatDelta::default() })
                    })
                    .collect();
                out.push(Ok(ChatDelta {
                    finish_reason: Some(FinishReason::Stop),
                    usage: Some(usage(&request, &text)),
                    ..ChatDelta::default()
                }));
                out
            }
        };
        Box::pin(stream::iter(deltas))
    }

    fn model_name(&self) -> &str {
        "scripted"
    }
}

/// An [`Embedder`] that hashes lowercase words (and their character trigrams) into a fixed number
/// of buckets and L2-normalises: deterministic, fast, and similar texts get similar vectors.
#[derive(Debug, Clone, Copy)]
pub struct DeterministicEmbedder {
    dimensions: usize,
}

impl DeterministicEmbedder {
    /// Vectors of this length (at least 1).
    #[must_use]
    pub fn new(dimensions: usize) -> Self {
        Self { dimensions: dimensions.max(1) }
    }

    /// The vector of one text.
    #[must_use]
    pub fn vector(&self, text: &str) -> Vec<f32> {
        let mut v = vec![0f32; self.dimensions];
        let mut add = |feature: &str, weight: f32| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            feature.hash(&mut h);
            let bucket = usize::try_from(h.finish() % self.dimensions as u64).unwrap_or(0);
            if let Some(slot) = v.get_mut(bucket) {
                *slot += weight;
            }
        };
        for word in text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
            let word = word.to_lowercase();
            add(&word, 1.0);
            let chars: Vec<char> = format!("#{word}#").chars().collect();
            for tri in chars.windows(3) {
                add(&tri.iter().collect::<String>(), 0.3);
            }
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            v.iter_mut().for_each(|x| *x /= norm);
        }
        v
    }
}

#[async_trait]
impl Embedder for DeterministicEmbedder {
    async fn embed(&self, texts: &[String], ctx: &RunContext) -> Result<Vec<Vec<f32>>> {
        ctx.check_cancelled()?;
        Ok(texts.iter().map(|t| self.vector(t)).collect())
    }

    fn dimensions(&self) -> usize {
        self.dimensions
    }
}
