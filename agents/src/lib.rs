//! # catena-agents
//!
//! Agents that use tools, the executor that runs them, and the memories that carry a conversation
//! from one turn to the next.
//!
//! An [`Agent`] makes one decision per call (call these tools, or answer); the [`AgentExecutor`]
//! runs the loop around it: tools through a [`ToolRegistry`](catena_tools::ToolRegistry), limits
//! (iterations, wall time, repeated calls, unreadable replies), events for streaming UIs, memory.
//!
//! ```
//! use std::sync::Arc;
//! use catena_agents::{AgentExecutor, StopReason, ToolCallingAgent};
//! use catena_core::testing::{ScriptedChatModel, ScriptedReply};
//! use catena_core::{RunContext, ToolCall};
//! use catena_tools::{Calculator, ToolRegistry};
//!
//! # let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
//! # rt.block_on(async {
//! // A scripted model stands in for a real one: it calls the calculator, then answers.
//! let call = ToolCall { id: "c1".into(), name: "calculator".into(), arguments: serde_json::json!({"expression": "23 * 7"}) };
//! let model = ScriptedChatModel::from_replies([
//!     ScriptedReply::ToolCalls(vec![call]),
//!     ScriptedReply::Text("23 × 7 = 161.".into()),
//! ]);
//! let agent = ToolCallingAgent::new(Arc::new(model));
//! let executor = AgentExecutor::new(agent, ToolRegistry::new().with(Calculator).unwrap());
//! let out = executor.run("What is 23 times 7?", &RunContext::new()).await.unwrap();
//! assert_eq!(out.answer, "23 × 7 = 161.");
//! assert_eq!(out.steps[0].observation, "161");
//! assert_eq!(out.stop, StopReason::Finished);
//! # });
//! ```
//!
//! ## Contents
//! - [`Agent`], [`AgentState`], [`Plan`], [`Next`], [`AgentStep`]: the decision interface.
//! - [`ReActAgent`]: Thought / Action / Action Input / Observation in text, for any model, with an
//!   optional grammar for local models ([`react_grammar`], [`parse_react`]).
//! - [`ToolCallingAgent`]: native tool calls (OpenAI-compatible servers, the local model).
//! - [`AgentExecutor`], [`ExecutorConfig`], [`EarlyStopping`], [`AgentOutput`], [`StopReason`];
//!   [`AgentChatModel`] serves an executor as a chat model; [`AgentTool`] offers one to another
//!   agent as a tool (subagents); [`ToolSelector`] narrows long tool lists to the few closest to
//!   the question.
//! - [`Middleware`] around every model decision and tool call: [`TokenBudget`] (tokens or money
//!   at a [`Price`]), [`ModelCallLimit`], [`ToolCallLimit`], [`ToolRetry`], [`Summarize`] (old
//!   turns summarized as the conversation nears the context), [`PiiRedaction`] (e-mails, phones,
//!   cards, IBANs); [`Conversation`], [`RunStats`], [`ToolNext`]. Model fallback is a model:
//!   [`FallbackChatModel`](catena_core::FallbackChatModel).
//! - Memories: [`BufferMemory`], [`WindowMemory`], [`TokenBufferMemory`], [`SummaryMemory`],
//!   [`SummaryBufferMemory`], [`VectorMemory`].
//! - [`SessionStore`] (feature `sqlite`): conversations saved in SQLite, resumed after a restart.
//! - [`graph`]: state graphs with checkpoints, interrupts and resume, time travel, streaming;
//!   [`AgentExecutor::into_graph`] runs an agent on them ([`AgentRun`]), pausing calls of tools
//!   that need approval ([`ApprovalPolicy`], [`ApprovalRequest`], [`Approval`], [`Decision`]).

// The GraphState derive names this crate by its path, which must resolve inside it too.
extern crate self as catena_agents;

mod agent;
mod durable;
mod executor;
pub mod graph;
mod memory;
mod middleware;
mod pii;
mod react;
mod selection;
#[cfg(feature = "sqlite")]
mod session;
mod subagent;
mod tool_calling;

pub use agent::{Agent, AgentState, AgentStep, Next, Plan};
pub use durable::{AgentRun, AgentRunUpdate, Approval, ApprovalRequest, Decision};
pub use executor::{
    AgentChatModel, AgentExecutor, AgentOutput, ApprovalPolicy, EarlyStopping, ExecutorConfig, StopReason,
};
pub use memory::{
    BufferMemory, SummaryBufferMemory, SummaryMemory, TokenBufferMemory, VectorMemory, WindowMemory,
};
pub use middleware::{
    Conversation, Middleware, ModelCallLimit, Price, RunStats, Summarize, TokenBudget, ToolCallLimit,
    ToolNext, ToolRetry,
};
pub use pii::{Pii, PiiAction, PiiMatch, PiiRedaction, find_pii};
pub use react::{OBSERVATION_STOP, ReActAgent, parse_react, react_grammar};
pub use selection::ToolSelector;
#[cfg(feature = "sqlite")]
pub use session::{Loaded, SessionInfo, SessionStore};
pub use subagent::{AgentTool, AgentToolArgs};
pub use tool_calling::ToolCallingAgent;
