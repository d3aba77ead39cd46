//! Agents as tools of other agents: [`AgentTool`].

use std::sync::Arc;

use catena_core::{Result, RunContext, Tool, ToolOutput, async_trait};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use crate::executor::{AgentExecutor, StopReason};

/// An agent offered to another agent as a tool (a subagent): the caller writes a task, the
/// subagent runs it to an answer with its own model, tools, limits and middleware, and the
/// answer is the tool's result. A supervisor can so hand research, SQL or arithmetic to
/// specialists, each seeing only its own tools and a short task instead of the whole
/// conversation.
///
/// The subagent starts with no history (the task must say what it needs) and reports to the
/// caller's [`RunContext`] (its tokens and steps stream with the caller's; cancelling the caller
/// cancels it). It is [`read_only`](Tool::read_only) when all its tools are, so an agent graph
/// asks approval for a subagent that could change the world. A run stopped by a limit still
/// answers, with the stop named so the caller can decide what to do.
///
/// ```
/// use std::sync::Arc;
/// use catena_agents::{AgentExecutor, AgentTool, ToolCallingAgent};
/// use catena_core::testing::{ScriptedChatModel, ScriptedReply};
/// use catena_core::{RunContext, Tool, ToolCall};
/// use catena_tools::{Calculator, ToolRegistry};
///
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
/// # rt.block_on(async {
/// let call = ToolCall { id: "c".into(), name: "calculator".into(), arguments: serde_json::json!({"expression": "6 * 7"}) };
/// let model = ScriptedChatModel::from_replies([ScriptedReply::ToolCalls(vec![call]), ScriptedReply::Text("42".into())]);
/// let math = AgentExecutor::new(ToolCallingAgent::new(Arc::new(model)), ToolRegistry::new().with(Calculator).unwrap());
/// let tool = AgentTool::new(math, "math_expert", "Solves arithmetic word problems step by step.");
/// assert!(tool.read_only());
/// let out = tool.call(serde_json::json!({"task": "What is six times seven?"}), &RunContext::new()).await.unwrap();
/// assert_eq!(out.content, "42");
/// # });
/// ```
pub struct AgentTool {
    executor: Arc<AgentExecutor>,
    name: String,
    description: String,
}

impl std::fmt::Debug for AgentTool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentTool").field("name", &self.name).finish_non_exhaustive()
    }
}

/// Arguments of an [`AgentTool`].
#[derive(Debug, Deserialize, JsonSchema)]
pub struct AgentToolArgs {
    /// The task for the subagent, with everything it needs to know: it does not see the
    /// conversation.
    pub task: String,
}

impl AgentTool {
    /// `executor` offered as a tool called `name` (letters, digits, `_`, `-`), described to the
    /// calling model by `description` (say what the subagent is good at).
    pub fn new(executor: AgentExecutor, name: impl Into<String>, description: impl Into<String>) -> Self {
        Self::from_arc(Arc::new(executor), name, description)
    }

    /// Like [`new`](Self::new), for a shared executor.
    pub fn from_arc(
        executor: Arc<AgentExecutor>,
        name: impl Into<String>,
        description: impl Into<String>,
    ) -> Self {
        Self { executor, name: name.into(), description: description.into() }
    }
}

#[async_trait]
impl Tool for AgentTool {
    fn name(&self) -> &str {
        &self.name
    }

    fn description(&self) -> &str {
        &self.description
    }

    fn parameters(&self) -> Value {
        catena_core::model_schema::<AgentToolArgs>()
    }

    fn read_only(&self) -> bool {
        let tools = self.executor.tools();
        tools.specs().iter().all(|spec| tools.get(&spec.name).is_some_and(|t| t.read_only()))
    }

    async fn call(&self, arguments: Value, ctx: &RunContext) -> Result<ToolOutput> {
        let args: AgentToolArgs = serde_json::from_value(arguments)
            .map_err(|e| catena_core::Error::tool(&self.name, format!("invalid arguments: {e}")))?;
        if args.task.trim().is_empty() {
            return Err(catena_core::Error::tool(&self.name, "the task is empty: say what to do"));
        }
        let out = self.executor.run_with_history(&args.task, &[], ctx).await?;
        Ok(ToolOutput::text(match out.stop {
            StopReason::Finished | StopReason::ReturnDirect => out.answer,
            stop => format!("{} (the subagent stopped: {})", out.answer, stop.describe()),
        }))
    }
}
