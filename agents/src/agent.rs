//! The [`Agent`] trait: one decision per call, given the question and the steps so far.

use catena_core::security::Guard;
use catena_core::{Message, Result, RunContext, ToolCall, ToolSpec, Usage, async_trait};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Decides the next move of a tool-using run: call tools, answer, or (when the model's reply
/// could not be read) report what was wrong with it.
///
/// An agent holds the model and the prompt, and nothing about the run: the
/// [`AgentExecutor`](crate::AgentExecutor) owns the loop, runs the tools, enforces the limits and
/// hands the agent everything it needs on every call, so one agent serves many runs at once.
///
/// Two agents come with catena: [`ReActAgent`](crate::ReActAgent), the text protocol any model can
/// follow, and [`ToolCallingAgent`](crate::ToolCallingAgent), for models with native tool calls
/// (including the local llama.cpp model, whose calls are decoded under a grammar).
#[async_trait]
pub trait Agent: Send + Sync {
    /// The next move. A reply that cannot be read is [`Next::Invalid`], not an error: the executor
    /// shows the problem to the model and lets it try again. Errors are for failures the model
    /// cannot fix (the model server is down, the run was cancelled).
    async fn plan(&self, state: AgentState<'_>, ctx: &RunContext) -> Result<Plan>;

    /// A final answer from the steps so far, without further tool calls: what the executor asks
    /// for when a limit stops the run and [`EarlyStopping::Generate`](crate::EarlyStopping) is set.
    async fn conclude(&self, state: AgentState<'_>, ctx: &RunContext) -> Result<Plan>;
}

/// Everything an [`Agent`] sees when it plans.
#[derive(Debug, Clone, Copy)]
pub struct AgentState<'a> {
    /// The user's input for this run.
    pub input: &'a str,
    /// Earlier conversation, from memory or the caller.
    pub history: &'a [Message],
    /// The steps taken so far in this run, oldest first.
    pub steps: &'a [AgentStep],
    /// The tools the agent may call.
    pub tools: &'a [ToolSpec],
    /// The defences of this decision: the agent appends [`Guard::system_prompt`]'s notes to its
    /// system prompt and shows each tool's result through [`Guard::mark`]. The executor makes a
    /// fresh one per decision ([`AgentExecutor::with_defences`](crate::AgentExecutor::with_defences)).
    pub guard: &'a Guard,
}

/// One decision of an [`Agent`].
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The model's text that led to the decision (its thought, for a ReAct agent).
    pub log: String,
    /// What to do.
    pub next: Next,
    /// Tokens the decision cost.
    pub usage: Usage,
}

/// What an [`Agent`] decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Run these tools (several at once when the model asked for several).
    Call(Vec<ToolCall>),
    /// The run is over; this is the answer.
    Finish(String),
    /// The reply could not be read; this says why, in words the model can act on.
    Invalid(String),
}

/// A step of a run: a tool call (or an unreadable reply) and what came of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentStep {
    /// Which model reply made the step (0-based). Parallel calls share it.
    pub turn: usize,
    /// The model's text for that reply.
    pub log: String,
    /// The call; `None` when the reply could not be read.
    pub call: Option<ToolCall>,
    /// What the model is shown next: the tool's output, or the error.
    pub observation: String,
    /// The tool's structured artifact, for the program (the model never sees it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<Value>,
    /// Whether the step failed (tool error, invalid arguments, unreadable reply, repeated call).
    pub failed: bool,
}
