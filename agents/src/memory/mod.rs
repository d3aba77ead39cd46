//! Conversation memories: buffer, window, token budget, summary, summary + buffer, vector.

use async_trait::async_trait;
use catena_core::{Memory, Message, Result, Role, RunContext, Tokenizer};
use serde_json::Value;
use tokio::sync::Mutex;

pub(crate) mod summary;
mod token;
mod vector;

pub use summary::{SummaryBufferMemory, SummaryMemory};
pub use token::TokenBufferMemory;
pub use vector::VectorMemory;

/// Tokens a message costs in a prompt: its text and tool calls, plus a few for the role markers
/// every chat template adds.
pub(crate) fn message_tokens(tokenizer: &dyn Tokenizer, message: &Message) -> Result<usize> {
    let mut n = 4 + tokenizer.count(&message.content)?;
    for call in &message.tool_calls {
        n += tokenizer.count(&call.name)? + tokenizer.count(&call.arguments.to_string())?;
    }
    Ok(n)
}

/// Drops messages before the first user message, so a window never opens on a tool result or an
/// answer whose question fell out.
pub(crate) fn trim_to_exchange_start(messages: Vec<Message>) -> Vec<Message> {
    let start = messages.iter().position(|m| m.role == Role::User).unwrap_or(messages.len());
    messages.into_iter().skip(start).collect()
}

/// Remembers every message, in order.
#[derive(Debug, Default)]
pub struct BufferMemory {
    messages: Mutex<Vec<Message>>,
}

impl BufferMemory {
    /// An empty memory.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Memory for BufferMemory {
    async fn messages(&self) -> Result<Vec<Message>> {
        Ok(self.messages.lock().await.clone())
    }

    async fn add(&self, messages: &[Message], _ctx: &RunContext) -> Result<()> {
        self.messages.lock().await.extend_from_slice(messages);
        Ok(())
    }

    async fn clear(&self) -> Result<()> {
        self.messages.lock().await.clear();
        Ok(())
    }
}

/// Remembers the last `k` exchanges. An exchange starts at a user message and runs to the next
/// one, so tool calls and their results stay with the turn that made them. System messages are
/// always kept.
#[derive(Debug)]
pub struct WindowMemory {
    k: usize,
    all: BufferMemory,
}

impl WindowMemory {
    /// Keeps `k` exchanges.
    #[must_use]
    pub fn new(k: usize) -> Self {
        Self { k, all: BufferMemory::new() }
    }
}

#[async_trait]
impl Memory for WindowMemory {
    async fn messages(&self) -> Result<Vec<Message>> {
        let all = self.all.messages().await?;
        let starts: Vec<usize> =
            all.iter().enumerate().filter(|(_, m)| m.role == Role::User).map(|(i, _)| i).collect();
        // The first message of the k-th exchange from the end; with k = 0 nothing but system messages.
        let cut = match self.k {
            0 => all.len(),
            k if starts.len() > k => starts.get(starts.len() - k).copied().unwrap_or(all.len()),
            _ => 0,
        };
        Ok(all
            .into_iter()
            .enumerate()
            .filter(|(i, m)| *i >= cut || m.role == Role::System)
            .map(|(_, m)| m)
            .collect())
    }

    async fn add(&self, messages: &[Message], ctx: &RunContext) -> Result<()> {
        self.all.add(messages, ctx).await
    }

    async fn clear(&self) -> Result<()> {
        self.all.clear().await
    }

    /// Every message, not just the window: a resumed session may be shown with a wider one.
    async fn snapshot(&self) -> Result<Value> {
        self.all.snapshot().await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[tokio::test]
    async fn window_keeps_system_and_whole_exchanges() {
        let m = WindowMemory::new(2);
        let ctx = RunContext::new();
        m.add(&[Message::system("rules")], &ctx).await.unwrap();
        for i in 0..4 {
            m.add(&[Message::user(format!("q{i}")), Message::assistant(format!("a{i}"))], &ctx)
                .await
                .unwrap();
        }
        let kept: Vec<String> = m.messages().await.unwrap().into_iter().map(|m| m.content).collect();
        assert_eq!(kept, ["rules", "q2", "a2", "q3", "a3"]);
        assert_eq!(WindowMemory::new(0).messages().await.unwrap().len(), 0);
        let b = BufferMemory::new();
        b.add(&[Message::user("x")], &ctx).await.unwrap();
        b.clear().await.unwrap();
        assert!(b.messages().await.unwrap().is_empty());
    }
}
