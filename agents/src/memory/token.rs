//! [`TokenBufferMemory`]: the most recent turns that fit a token budget.

use std::sync::Arc;

use catena_core::{Memory, Message, Result, Role, RunContext, Tokenizer, async_trait};
use serde_json::Value;

use super::{BufferMemory, message_tokens, trim_to_exchange_start};

/// Keeps the most recent messages whose tokens, counted with the model's own tokenizer, fit in
/// `max_tokens`; older ones are dropped (nothing is summarised: see
/// [`SummaryBufferMemory`](crate::SummaryBufferMemory) for that). The kept window always starts
/// at a user message, so a tool result is never kept without the call it answers. System messages
/// are always kept and count against the budget.
#[derive(Debug)]
pub struct TokenBufferMemory {
    tokenizer: Arc<dyn Tokenizer>,
    max_tokens: usize,
    all: BufferMemory,
}

impl TokenBufferMemory {
    /// Keeps what fits in `max_tokens` tokens of `tokenizer`.
    #[must_use]
    pub fn new(tokenizer: Arc<dyn Tokenizer>, max_tokens: usize) -> Self {
        Self { tokenizer, max_tokens, all: BufferMemory::new() }
    }
}

#[async_trait]
impl Memory for TokenBufferMemory {
    async fn messages(&self) -> Result<Vec<Message>> {
        let all = self.all.messages().await?;
        let (system, rest): (Vec<Message>, Vec<Message>) =
            all.into_iter().partition(|m| m.role == Role::System);
        let mut budget = self.max_tokens;
        for m in &system {
            budget = budget.saturating_sub(message_tokens(self.tokenizer.as_ref(), m)?);
        }
        let mut kept = Vec::new();
        for m in rest.iter().rev() {
            let cost = message_tokens(self.tokenizer.as_ref(), m)?;
            if cost > budget {
                break;
            }
            budget -= cost;
            kept.push(m.clone());
        }
        kept.reverse();
        let mut out = system;
        out.extend(trim_to_exchange_start(kept));
        Ok(out)
    }

    async fn add(&self, messages: &[Message], ctx: &RunContext) -> Result<()> {
        self.all.add(messages, ctx).await
    }

    async fn clear(&self) -> Result<()> {
        self.all.clear().await
    }

    async fn snapshot(&self) -> Result<Value> {
        self.all.snapshot().await
    }
}
