//! Middleware: rules that run around every model decision and every tool call of an agent run,
//! composable and ordered, on the [`AgentExecutor`](crate::AgentExecutor) and on its graph
//! ([`into_graph`](crate::AgentExecutor::into_graph)) alike.
//!
//! A middleware sees the run so far ([`RunStats`]) and may stop it before a model call (an
//! [`Error::Limit`] ends the run with [`StopReason::Budget`](crate::StopReason::Budget), its steps
//! kept), change a decision after it, and wrap each tool call (run it, retry it, refuse it). Built
//! in: [`TokenBudget`] (tokens, or money through a price per million tokens),
//! [`ModelCallLimit`], [`ToolCallLimit`], [`ToolRetry`], [`Summarize`] and
//! [`PiiRedaction`](crate::PiiRedaction). A middleware may also rewrite what the model is shown
//! of the conversation ([`Middleware::rewrite_conversation`]).
//!
//! Two rules of LangChain's middleware list live elsewhere in catena, where they serve more
//! than agents: model fallback is a model, [`FallbackChatModel`](catena_core::FallbackChatModel),
//! usable by every chain; human approval is the agent graph's `review` step, which must pause
//! the run with a checkpoint ([`ApprovalPolicy`](crate::ApprovalPolicy)); loop detection is the
//! executor's repeat rule ([`ExecutorConfig::max_repeats`](crate::ExecutorConfig::max_repeats)).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use catena_core::{
    ChatModel, Error, Message, Result, RetryPolicy, RunContext, Tokenizer, ToolCall, ToolOutput, Usage,
    async_trait,
};
use catena_tools::ToolRegistry;

use crate::agent::Plan;

/// What a middleware knows of the run so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunStats {
    /// Model decisions made so far.
    pub iterations: usize,
    /// Tokens spent so far.
    pub usage: Usage,
    /// Tool calls made so far, by tool.
    pub tool_calls: BTreeMap<String, usize>,
    /// Time since the run started.
    pub elapsed: Duration,
}

impl RunStats {
    /// The stats of a run with these counts and steps.
    pub(crate) fn of(iterations: usize, usage: Usage, steps: &[crate::AgentStep], elapsed: Duration) -> Self {
        let mut tool_calls = BTreeMap::new();
        for call in steps.iter().filter_map(|s| s.call.as_ref()) {
            *tool_calls.entry(call.name.clone()).or_default() += 1;
        }
        Self { iterations, usage, tool_calls, elapsed }
    }
}

/// What the model is shown of a run's question and the conversation before it: what
/// [`Middleware::rewrite_conversation`] may change.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Conversation {
    /// The run's question.
    pub input: String,
    /// The turns before it, oldest first.
    pub history: Vec<Message>,
}

/// One rule around an agent's model decisions and tool calls. Every hook has a default that
/// lets the call through; implement the ones the rule needs. Middlewares run in the order they
/// were added: `before_model` first to last, `after_model` last to first, `wrap_tool` as nested
/// layers (the first added is the outermost).
#[async_trait]
pub trait Middleware: Send + Sync {
    /// Before a run's model decisions: may rewrite what the model is shown of the question and
    /// the conversation before it (summarize old turns, redact). The stored conversation is
    /// not changed. An error is the run's error.
    async fn rewrite_conversation(&self, _conversation: &mut Conversation, _ctx: &RunContext) -> Result<()> {
        Ok(())
    }

    /// Before each model decision. An error stops the run: [`Error::Limit`] with
    /// [`StopReason::Budget`](crate::StopReason::Budget) and its steps kept; any other error is
    /// the run's error.
    async fn before_model(&self, _stats: &RunStats, _ctx: &RunContext) -> Result<()> {
        Ok(())
    }

    /// After each model decision (its tokens are in `plan.usage`); may change it.
    async fn after_model(&self, _plan: &mut Plan, _stats: &RunStats, _ctx: &RunContext) -> Result<()> {
        Ok(())
    }

    /// Around each tool call: `next.run(call)` runs it (through the later middlewares and the
    /// registry's own rules); a middleware may run it with other arguments, several times, or
    /// answer without running it. An error is shown to the model as the call's result.
    async fn wrap_tool(&self, call: ToolCall, next: ToolNext<'_>, _stats: &RunStats) -> Result<ToolOutput> {
        next.run(call).await
    }
}

/// The rest of the tool-call chain: the later middlewares, then the registry.
pub struct ToolNext<'a> {
    layers: &'a [Arc<dyn Middleware>],
    tools: &'a ToolRegistry,
    approved: bool,
    stats: &'a RunStats,
    ctx: &'a RunContext,
}

impl<'a> ToolNext<'a> {
    pub(crate) fn new(
        layers: &'a [Arc<dyn Middleware>],
        tools: &'a ToolRegistry,
        approved: bool,
        stats: &'a RunStats,
        ctx: &'a RunContext,
    ) -> Self {
        Self { layers, tools, approved, stats, ctx }
    }

    /// Runs `call` through the rest of the chain.
    ///
    /// # Errors
    /// What the later middlewares or the registry return.
    pub async fn run(self, call: ToolCall) -> Result<ToolOutput> {
        match self.layers.split_first() {
            Some((first, rest)) => {
                let next = ToolNext { layers: rest, ..self };
                first.wrap_tool(call, next, self.stats).await
            }
            None if self.approved => self.tools.call_approved(&call, self.ctx).await,
            None => self.tools.call(&call, self.ctx).await,
        }
    }

    /// The run's context.
    #[must_use]
    pub fn context(&self) -> &RunContext {
        self.ctx
    }
}

/// A price per million tokens, for budgets in money: the same [`ModelPrice`](catena_core::ModelPrice)
/// the run's usage report is costed by (`catena_core::PriceTable`).
pub type Price = catena_core::ModelPrice;

/// Stops a run before the model call that would start past its budget: in tokens, or in money
/// at a [`Price`]. The call that crosses the budget completes (its cost is only known after it),
/// so a run ends within one model call of the limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenBudget {
    max_tokens: Option<u64>,
    max_cost: Option<(f64, Price)>,
}

impl TokenBudget {
    /// At most `tokens` tokens (prompt and completion) per run.
    #[must_use]
    pub fn tokens(tokens: u64) -> Self {
        Self { max_tokens: Some(tokens), max_cost: None }
    }

    /// At most `amount` per run at `price` (in the price's currency).
    #[must_use]
    pub fn cost(amount: f64, price: Price) -> Self {
        Self { max_tokens: None, max_cost: Some((amount, price)) }
    }
}

#[async_trait]
impl Middleware for TokenBudget {
    async fn before_model(&self, stats: &RunStats, _ctx: &RunContext) -> Result<()> {
        let spent = u64::from(stats.usage.prompt_tokens) + u64::from(stats.usage.completion_tokens);
        if let Some(max) = self.max_tokens
            && spent >= max
        {
            return Err(Error::limit(format!(
                "the run's token budget of {max} is spent ({spent} tokens in {} model calls)",
                stats.iterations
            )));
        }
        if let Some((max, price)) = self.max_cost {
            let cost = price.cost(&stats.usage);
            if cost >= max {
                return Err(Error::limit(format!(
                    "the run's budget of {max:.4} is spent ({cost:.4} in {} model calls)",
                    stats.iterations
                )));
            }
        }
        Ok(())
    }
}

/// Caps how often tools may be called in a run: per tool, and in all. A call past a cap is not
/// run; the model is told the limit was reached and to answer with what it has.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolCallLimit {
    per_tool: BTreeMap<String, usize>,
    total: Option<usize>,
}

impl ToolCallLimit {
    /// No limits yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// At most `calls` calls of `tool` per run.
    #[must_use]
    pub fn tool(mut self, tool: impl Into<String>, calls: usize) -> Self {
        self.per_tool.insert(tool.into(), calls);
        self
    }

    /// At most `calls` tool calls per run, all tools together.
    #[must_use]
    pub fn total(mut self, calls: usize) -> Self {
        self.total = Some(calls);
        self
    }
}

#[async_trait]
impl Middleware for ToolCallLimit {
    async fn wrap_tool(&self, call: ToolCall, next: ToolNext<'_>, stats: &RunStats) -> Result<ToolOutput> {
        let made = stats.tool_calls.get(&call.name).copied().unwrap_or(0);
        let all: usize = stats.tool_calls.values().sum();
        let refused = match (self.per_tool.get(&call.name), self.total) {
            (Some(max), _) if made >= *max => {
                Some(format!("`{}` may be called {max} times per question", call.name))
            }
            (_, Some(max)) if all >= max => Some(format!("tools may be called {max} times per question")),
            _ => None,
        };
        match refused {
            Some(why) => Ok(ToolOutput::text(format!(
                "Not run: {why}, and that limit is reached. Answer with what you have."
            ))),
            None => next.run(call).await,
        }
    }
}

/// Retries failed tool calls under a [`RetryPolicy`] (by default, transient errors: three
/// attempts, backoff from 200 ms).
#[derive(Debug, Clone, Default)]
pub struct ToolRetry {
    policy: RetryPolicy,
}

impl ToolRetry {
    /// Retries under `policy`.
    #[must_use]
    pub fn new(policy: RetryPolicy) -> Self {
        Self { policy }
    }
}

#[async_trait]
impl Middleware for ToolRetry {
    async fn wrap_tool(&self, call: ToolCall, next: ToolNext<'_>, _stats: &RunStats) -> Result<ToolOutput> {
        let ToolNext { layers, tools, approved, stats, ctx } = next;
        let mut attempt = 1;
        loop {
            let next = ToolNext { layers, tools, approved, stats, ctx };
            match next.run(call.clone()).await {
                Err(e) if attempt < self.policy.max_attempts && self.policy.should_retry(&e) => {
                    let delay = self.policy.backoff(attempt);
                    tracing::debug!(tool = %call.name, attempt, ?delay, error = %e, "retrying a tool call");
                    let sleep = Box::pin(tokio::time::sleep(delay));
                    let cancelled = Box::pin(ctx.cancellation().cancelled());
                    if let futures::future::Either::Right(_) = futures::future::select(sleep, cancelled).await
                    {
                        return Err(Error::Cancelled);
                    }
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

/// Caps the model calls of a run, all kinds together; the run then stops as
/// [`StopReason::Budget`](crate::StopReason::Budget) with its steps kept and no closing call
/// (unlike [`ExecutorConfig::max_iterations`](crate::ExecutorConfig::max_iterations), whose
/// [`EarlyStopping::Generate`](crate::EarlyStopping::Generate) makes one more).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelCallLimit {
    max: usize,
}

impl ModelCallLimit {
    /// At most `calls` model decisions per run.
    #[must_use]
    pub fn new(calls: usize) -> Self {
        Self { max: calls }
    }
}

#[async_trait]
impl Middleware for ModelCallLimit {
    async fn before_model(&self, stats: &RunStats, _ctx: &RunContext) -> Result<()> {
        if stats.iterations >= self.max {
            return Err(Error::limit(format!("the run's limit of {} model calls is reached", self.max)));
        }
        Ok(())
    }
}

/// Summaries already made, by the conversation prefix they fold: (messages, hash, summary).
type SummaryCache = std::sync::Mutex<std::collections::VecDeque<(usize, u64, String)>>;

/// How many summaries [`Summarize`] remembers (one or two per conversation it serves).
const SUMMARY_CACHE: usize = 256;

/// Keeps the conversation a model is shown under a token budget: when the turns before the
/// question pass `max_tokens`, the older ones (whole exchanges) are replaced by a summary the
/// model writes, and the newest turns, up to half the budget, stay verbatim. The thread keeps
/// every turn; only what the model reads is shortened.
///
/// Summaries are progressive and remembered: the next time the conversation is too long, only
/// the turns since the last summary are folded into it, so a long conversation costs one short
/// summarising call now and then, not one per question. The memory of summaries lives in the
/// process; after a restart the first long question summarises once again. If summarising
/// fails, the run fails with that error and nothing is lost.
pub struct Summarize {
    model: Arc<dyn ChatModel>,
    tokenizer: Arc<dyn Tokenizer>,
    max_tokens: usize,
    max_summary_tokens: u32,
    cache: SummaryCache,
}

impl std::fmt::Debug for Summarize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Summarize")
            .field("model", &self.model.model_name())
            .field("max_tokens", &self.max_tokens)
            .finish_non_exhaustive()
    }
}

impl Summarize {
    /// Summarises with `model` once the conversation passes `max_tokens` (counted by
    /// `tokenizer`, the model's own for local models); summaries of at most 256 tokens.
    #[must_use]
    pub fn new(model: Arc<dyn ChatModel>, tokenizer: Arc<dyn Tokenizer>, max_tokens: usize) -> Self {
        Self { model, tokenizer, max_tokens, max_summary_tokens: 256, cache: SummaryCache::default() }
    }

    /// Most tokens a summary may have.
    #[must_use]
    pub fn with_max_summary_tokens(mut self, tokens: u32) -> Self {
        self.max_summary_tokens = tokens;
        self
    }

    fn cached(&self, split: usize, hashes: &[u64]) -> (usize, String) {
        let cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        cache
            .iter()
            .filter(|(n, hash, _)| *n <= split && hashes.get(*n) == Some(hash))
            .max_by_key(|(n, _, _)| *n)
            .map_or((0, String::new()), |(n, _, summary)| (*n, summary.clone()))
    }

    fn remember(&self, split: usize, hash: u64, summary: String) {
        let mut cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.len() >= SUMMARY_CACHE {
            cache.pop_front();
        }
        cache.push_back((split, hash, summary));
    }
}

/// Hashes of every prefix of `messages` (index n: the first n messages).
fn prefix_hashes(messages: &[Message]) -> Vec<u64> {
    use std::hash::{Hash, Hasher};
    let mut out = vec![0];
    let mut last = 0u64;
    for m in messages {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        last.hash(&mut hasher);
        m.role.as_str().hash(&mut hasher);
        m.content.hash(&mut hasher);
        for call in &m.tool_calls {
            call.name.hash(&mut hasher);
            call.arguments.to_string().hash(&mut hasher);
        }
        last = hasher.finish();
        out.push(last);
    }
    out
}

#[async_trait]
impl Middleware for Summarize {
    async fn rewrite_conversation(&self, conversation: &mut Conversation, ctx: &RunContext) -> Result<()> {
        let history = &conversation.history;
        let mut sizes = Vec::with_capacity(history.len());
        for message in history {
            sizes.push(crate::memory::message_tokens(self.tokenizer.as_ref(), message)?);
        }
        if sizes.iter().sum::<usize>() <= self.max_tokens {
            return Ok(());
        }
        // Keep the newest turns within half the budget, starting at a question so no answer or
        // tool result is cut from what led to it.
        let mut kept = 0;
        let mut split = history.len();
        while split > 0 && kept + sizes.get(split - 1).copied().unwrap_or(0) <= self.max_tokens / 2 {
            split -= 1;
            kept += sizes.get(split).copied().unwrap_or(0);
        }
        while history.get(split).is_some_and(|m| m.role != catena_core::Role::User) {
            split += 1;
        }
        let split = split.max(1);
        let hashes = prefix_hashes(history.get(..split).unwrap_or_default());
        let (done, summary) = self.cached(split, &hashes);
        let summary = if done == split {
            summary
        } else {
            let lines = history.get(done..split).unwrap_or_default();
            let summary = crate::memory::summary::extend_summary(
                self.model.as_ref(),
                &summary,
                lines,
                self.max_summary_tokens,
                ctx,
            )
            .await?;
            self.remember(split, hashes.last().copied().unwrap_or_default(), summary.clone());
            summary
        };
        let mut shortened = vec![crate::memory::summary::summary_message(&summary)];
        shortened.extend_from_slice(history.get(split..).unwrap_or_default());
        conversation.history = shortened;
        Ok(())
    }
}
