//! [`SummaryMemory`] and [`SummaryBufferMemory`]: the model keeps a running summary.

use std::fmt::Write as _;
use std::sync::Arc;

use catena_core::{
    ChatModel, ChatRequest, Error, Memory, Message, Result, Role, RunContext, Tokenizer, async_trait,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Mutex;

use super::message_tokens;

/// The summary as it is put before the next turn.
pub(crate) fn summary_message(summary: &str) -> Message {
    Message::system(format!("Summary of the conversation so far:\n{summary}"))
}

/// Asks `model` to extend `summary` with `lines`: progressive summarisation, so the cost of each
/// update is the new lines plus the summary, never the whole conversation.
pub(crate) async fn extend_summary(
    model: &dyn ChatModel,
    summary: &str,
    lines: &[Message],
    max_tokens: u32,
    ctx: &RunContext,
) -> Result<String> {
    let mut transcript = String::new();
    for m in lines.iter().filter(|m| !m.content.trim().is_empty()) {
        let who = match m.role {
            Role::User => "Human",
            Role::Assistant => "AI",
            Role::Tool => "Tool",
            Role::System => "System",
        };
        let _ = writeln!(transcript, "{who}: {}", m.content.trim());
    }
    let current = if summary.trim().is_empty() { "(nothing yet)" } else { summary.trim() };
    let prompt = format!(
        "Update the summary of a conversation with its new lines. Keep every fact, name, number and \
         decision from both; drop greetings and repetition; write a few plain sentences.\n\n\
         Current summary:\n{current}\n\nNew lines:\n{transcript}\nUpdated summary:"
    );
    let request =
        ChatRequest::new(vec![Message::user(prompt)]).with_temperature(0.0).with_max_tokens(max_tokens);
    let reply = model.chat(request, ctx).await?;
    let text = reply.message.content.trim().to_owned();
    if text.is_empty() {
        return Err(Error::model_permanent("the summarising model returned an empty summary"));
    }
    Ok(text)
}

/// Remembers a summary only: after every turn the model folds the new lines into it
/// (LangChain's `ConversationSummaryMemory`). Costs one model call per turn; the context stays
/// small however long the conversation. The summariser can be a cheaper model than the agent's,
/// and on the local model it reuses the evaluated prefix of its prompt.
#[derive(Debug)]
pub struct SummaryMemory {
    model: Arc<dyn ChatModel>,
    summary: Mutex<String>,
    max_summary_tokens: u32,
}

impl SummaryMemory {
    /// Summarises with `model`, at most 256 tokens per summary.
    #[must_use]
    pub fn new(model: Arc<dyn ChatModel>) -> Self {
        Self { model, summary: Mutex::new(String::new()), max_summary_tokens: 256 }
    }

    /// Most tokens the summary may have.
    #[must_use]
    pub fn with_max_summary_tokens(mut self, max_summary_tokens: u32) -> Self {
        self.max_summary_tokens = max_summary_tokens;
        self
    }

    /// The current summary.
    pub async fn summary(&self) -> String {
        self.summary.lock().await.clone()
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct SummaryState {
    summary: String,
    #[serde(default)]
    buffer: Vec<Message>,
}

fn parse_state(snapshot: Value) -> Result<SummaryState> {
    serde_json::from_value(snapshot).map_err(|e| {
        Error::parse("memory snapshot", format!("expected {{\"summary\": ..., \"buffer\": [...]}}: {e}"))
    })
}

#[async_trait]
impl Memory for SummaryMemory {
    async fn messages(&self) -> Result<Vec<Message>> {
        let summary = self.summary.lock().await;
        Ok(if summary.is_empty() { Vec::new() } else { vec![summary_message(&summary)] })
    }

    async fn add(&self, messages: &[Message], ctx: &RunContext) -> Result<()> {
        // Held across the model call so concurrent turns fold in one after the other.
        let mut summary = self.summary.lock().await;
        *summary =
            extend_summary(self.model.as_ref(), &summary, messages, self.max_summary_tokens, ctx).await?;
        Ok(())
    }

    async fn clear(&self) -> Result<()> {
        self.summary.lock().await.clear();
        Ok(())
    }

    async fn snapshot(&self) -> Result<Value> {
        Ok(serde_json::json!({"summary": *self.summary.lock().await, "buffer": []}))
    }

    async fn restore(&self, snapshot: Value) -> Result<()> {
        let state = parse_state(snapshot)?;
        *self.summary.lock().await = state.summary;
        Ok(())
    }
}

/// Recent turns verbatim under a token budget, and a summary of everything older
/// (LangChain's `ConversationSummaryBufferMemory`): when the buffer grows past `max_tokens`, the
/// oldest messages are moved out of it (whole exchanges, so no tool result loses its call) and
/// folded into the summary by the model. No model call is made while the buffer fits.
///
/// If summarising fails, the moved messages go back into the buffer and the error is returned:
/// nothing is lost, the next turn tries again.
#[derive(Debug)]
pub struct SummaryBufferMemory {
    model: Arc<dyn ChatModel>,
    tokenizer: Arc<dyn Tokenizer>,
    max_tokens: usize,
    max_summary_tokens: u32,
    state: Mutex<SummaryState>,
}

impl SummaryBufferMemory {
    /// Keeps up to `max_tokens` tokens (counted with `tokenizer`) verbatim; summarises the rest
    /// with `model`.
    #[must_use]
    pub fn new(model: Arc<dyn ChatModel>, tokenizer: Arc<dyn Tokenizer>, max_tokens: usize) -> Self {
        Self {
            model,
            tokenizer,
            max_tokens,
            max_summary_tokens: 256,
            state: Mutex::new(SummaryState { summary: String::new(), buffer: Vec::new() }),
        }
    }

    /// The current summary (empty until the buffer first overflows).
    pub async fn summary(&self) -> String {
        self.state.lock().await.summary.clone()
    }
}

#[async_trait]
impl Memory for SummaryBufferMemory {
    async fn messages(&self) -> Result<Vec<Message>> {
        let state = self.state.lock().await;
        let mut out = Vec::with_capacity(state.buffer.len() + 1);
        if !state.summary.is_empty() {
            out.push(summary_message(&state.summary));
        }
        out.extend(state.buffer.iter().cloned());
        Ok(out)
    }

    async fn add(&self, messages: &[Message], ctx: &RunContext) -> Result<()> {
        let mut state = self.state.lock().await;
        state.buffer.extend_from_slice(messages);
        // Each message is tokenized once; moving one out subtracts its cost.
        let costs = state
            .buffer
            .iter()
            .map(|m| message_tokens(self.tokenizer.as_ref(), m))
            .collect::<Result<Vec<usize>>>()?;
        let mut total: usize = costs.iter().sum();
        if total <= self.max_tokens {
            return Ok(());
        }
        let mut cut = 0;
        while total > self.max_tokens && cut < costs.len() {
            total -= costs.get(cut).copied().unwrap_or(0);
            cut += 1;
        }
        // Finish the exchange that was cut, so the buffer starts at a user message.
        while state.buffer.get(cut).is_some_and(|m| m.role != Role::User) {
            cut += 1;
        }
        let mut pruned: Vec<Message> = state.buffer.drain(..cut).collect();
        match extend_summary(self.model.as_ref(), &state.summary, &pruned, self.max_summary_tokens, ctx).await
        {
            Ok(summary) => {
                state.summary = summary;
                Ok(())
            }
            Err(e) => {
                pruned.append(&mut state.buffer);
                state.buffer = pruned;
                Err(e)
            }
        }
    }

    async fn clear(&self) -> Result<()> {
        let mut state = self.state.lock().await;
        state.summary.clear();
        state.buffer.clear();
        Ok(())
    }

    async fn snapshot(&self) -> Result<Value> {
        let state = self.state.lock().await;
        serde_json::to_value(&*state).map_err(|e| Error::parse("memory snapshot", e.to_string()))
    }

    async fn restore(&self, snapshot: Value) -> Result<()> {
        *self.state.lock().await = parse_state(snapshot)?;
        Ok(())
    }
}
