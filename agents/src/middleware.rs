//! Middleware: rules that run around every model decision and every tool call of an agent run,
//! composable and ordered, on the [`AgentExecutor`](crate::AgentExecutor) and on its graph
//! ([`into_graph`](crate::AgentExecutor::into_graph)) alike.
//!
//! A middleware sees the run so far ([`RunStats`]) and may stop it before a model call (an
//! [`Error::Limit`] ends the run with [`StopReason::Budget`](crate::StopReason::Budget), its steps
//! kept), change a decision after it, and wrap each tool call (run it, retry it, refuse it). Built
//! in: [`TokenBudget`] (tokens, or money through a price per million tokens), [`ToolCallLimit`]
//! and [`ToolRetry`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use catena_core::{Error, Result, RetryPolicy, RunContext, ToolCall, ToolOutput, Usage, async_trait};
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

/// One rule around an agent's model decisions and tool calls. Every hook has a default that
/// lets the call through; implement the ones the rule needs. Middlewares run in the order they
/// were added: `before_model` first to last, `after_model` last to first, `wrap_tool` as nested
/// layers (the first added is the outermost).
#[async_trait]
pub trait Middleware: Send + Sync {
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

/// A price per million tokens, for budgets in money.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    /// Per million prompt tokens not served from a cache.
    pub input: f64,
    /// Per million prompt tokens served from the provider's cache.
    pub cached_input: f64,
    /// Per million completion tokens.
    pub output: f64,
}

impl Price {
    /// What `usage` costs at this price.
    #[must_use]
    pub fn cost(&self, usage: &Usage) -> f64 {
        let cached = f64::from(usage.cached_prompt_tokens);
        let fresh = f64::from(usage.prompt_tokens) - cached;
        (fresh.max(0.0) * self.input
            + cached * self.cached_input
            + f64::from(usage.completion_tokens) * self.output)
            / 1e6
    }
}

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
