//! The agent loop as a state graph: [`AgentExecutor::into_graph`]. Same decisions, limits and
//! recovery as [`AgentExecutor::run`], plus what graphs give: a checkpoint after every step, runs
//! that survive the process, and calls of tools that need approval paused for a person.

use std::collections::BTreeMap;
use std::sync::Arc;

use catena_core::{Error, ErrorKind, Message, Result, RunContext, ToolCall, ToolSpec, Usage};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::agent::{AgentState, AgentStep, Next};
use crate::executor::{AgentExecutor, AgentOutput, StopReason, call_key, with_call_ids};
use crate::graph::{CompiledGraph, END, Goto, GraphState, NodeContext, START, StateGraph};
use crate::middleware::RunStats;

/// The state of an agent run on the graph runtime: the question, the conversation before it,
/// the steps so far, the calls waiting to run, and, once it ends, the answer.
///
/// A thread holds one conversation: each run appends its question and answer to `history`, so
/// the next [`AgentRun::ask`] on the same thread continues it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, GraphState)]
pub struct AgentRun {
    /// The question of the current run.
    pub input: String,
    /// The conversation before it (each finished run appends its question and answer).
    #[state(append)]
    pub history: Vec<Message>,
    /// The tools offered in this run (chosen once per run when tool selection is on).
    pub tools: Vec<ToolSpec>,
    /// Every step of the current run; an empty update starts a new run's list.
    #[state(reducer = extend_or_reset)]
    pub steps: Vec<AgentStep>,
    /// Calls the model made that have not run yet, and the reasoning that came with them.
    pub pending: Vec<ToolCall>,
    /// The text the model wrote with the pending calls.
    pub log: String,
    /// Model calls made in this run.
    pub iterations: usize,
    /// Unreadable replies in a row.
    pub parse_errors: usize,
    /// Tokens spent in this run.
    pub usage: Usage,
    /// When the run started (ms since the Unix epoch), for `max_time`.
    pub started_at_ms: u64,
    /// The answer, once the run ended.
    pub answer: Option<String>,
    /// Why it ended.
    pub stop: Option<StopReason>,
}

/// Appends, or starts over when given an empty list (what a new run's input sends).
fn extend_or_reset(steps: &mut Vec<AgentStep>, more: Vec<AgentStep>) {
    if more.is_empty() {
        steps.clear();
    } else {
        steps.extend(more);
    }
}

impl AgentRun {
    /// The input that starts a run answering `question` (the thread's conversation so far stays).
    #[must_use]
    pub fn ask(question: impl Into<String>) -> AgentRunUpdate {
        AgentRunUpdate::default()
            .input(question.into())
            .steps(Vec::new())
            .pending(Vec::new())
            .log(String::new())
            .iterations(0usize)
            .parse_errors(0usize)
            .usage(Usage::default())
            .started_at_ms(crate::graph::now_ms())
            .answer(None)
            .stop(None)
            .tools(Vec::new())
    }

    /// The run's result, once it ended.
    #[must_use]
    pub fn output(&self) -> Option<AgentOutput> {
        Some(AgentOutput {
            answer: self.answer.clone()?,
            steps: self.steps.clone(),
            stop: self.stop?,
            usage: self.usage,
            iterations: self.iterations,
        })
    }
}

/// What a run paused for: the calls of tools that need approval. The interrupt's payload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApprovalRequest {
    /// The calls waiting, with their ids, tools and arguments.
    pub calls: Vec<ToolCall>,
}

/// A person's decision on one call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "lowercase")]
pub enum Decision {
    /// Run it as the model wrote it.
    Approve,
    /// Run it with these arguments instead.
    Edit {
        /// The new arguments.
        arguments: Value,
    },
    /// Do not run it; the model sees `message` as the call's result.
    Reject {
        /// What the model is told.
        message: String,
    },
}

/// The answer to an [`ApprovalRequest`]: a decision per call id. The resume value.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    /// The decision for each call, by id.
    pub decisions: BTreeMap<String, Decision>,
}

impl Approval {
    /// The same decision for every call of `request`.
    #[must_use]
    pub fn all(request: &ApprovalRequest, decision: &Decision) -> Self {
        Self { decisions: request.calls.iter().map(|c| (c.id.clone(), decision.clone())).collect() }
    }
}

fn stop(update: AgentRunUpdate, answer: String, reason: StopReason, history: Vec<Message>) -> AgentRunUpdate {
    update.answer(Some(answer)).stop(Some(reason)).pending(Vec::new()).history(history)
}

/// The conversation turns a finished run adds: its question and answer, unless a limit stopped
/// it with a fixed message (an answer like "Agent stopped..." would only teach the model that
/// it failed).
fn turns(run: &AgentRun, answer: &str, reason: StopReason) -> Vec<Message> {
    if matches!(reason, StopReason::Finished | StopReason::ReturnDirect) {
        vec![Message::user(run.input.clone()), Message::assistant(answer.to_owned())]
    } else {
        Vec::new()
    }
}

impl AgentExecutor {
    /// The agent loop as a state graph of three nodes: `plan` (one model decision), `review`
    /// (calls of tools marked [`needs_confirmation`](catena_tools::ToolOptions::needs_confirmation)
    /// pause the run with an [`ApprovalRequest`]; resume it with an [`Approval`]), and `act`
    /// (the calls run, in parallel). The executor's limits, early stopping, unreadable-reply and
    /// repeat rules apply as in [`run`](Self::run); `max_time` counts wall-clock time since the
    /// run started, across pauses. Give the graph a checkpointer to keep conversations and
    /// paused runs; start each question with [`AgentRun::ask`]. The executor's memory is not
    /// used: the thread's `history` is the conversation.
    ///
    /// # Errors
    /// None in practice (the graph's shape is fixed); the graph compiler's errors otherwise.
    pub fn into_graph(self) -> Result<CompiledGraph<AgentRun>> {
        let executor = Arc::new(self);
        let (planner, reviewer, actor) =
            (Arc::clone(&executor), Arc::clone(&executor), Arc::clone(&executor));
        StateGraph::<AgentRun>::new()
            .node("plan", move |run: AgentRun, ctx: NodeContext| {
                let executor = Arc::clone(&planner);
                async move { executor.plan_node(run, ctx.run_context()).await }
            })
            .node("review", move |run: AgentRun, ctx: NodeContext| {
                let executor = Arc::clone(&reviewer);
                async move { executor.review_node(run, ctx).await }
            })
            .node("act", move |run: AgentRun, ctx: NodeContext| {
                let executor = Arc::clone(&actor);
                async move { executor.act_node(run, ctx.run_context()).await }
            })
            .edge(START, "plan")
            .conditional_edge("plan", ["review", "plan", END], |run: &AgentRun| {
                vec![match (&run.answer, run.pending.is_empty()) {
                    (Some(_), _) => Goto::End,
                    (None, false) => Goto::to("review"),
                    (None, true) => Goto::to("plan"),
                }]
            })
            .edge("review", "act")
            .conditional_edge("act", ["plan", END], |run: &AgentRun| {
                vec![if run.answer.is_some() { Goto::End } else { Goto::to("plan") }]
            })
            .compile()
            .map(|graph| {
                graph.with_step_limit(executor.config().max_iterations.saturating_mul(3).saturating_add(6))
            })
    }

    async fn plan_node(&self, run: AgentRun, ctx: &RunContext) -> Result<AgentRunUpdate> {
        let mut update = AgentRunUpdate::default();
        let tools = if run.tools.is_empty() && run.iterations == 0 {
            let chosen = self.offered_tools(&run.input, ctx).await?;
            update = update.tools(chosen.clone());
            chosen
        } else {
            run.tools.clone()
        };
        // Rewritten (summarized, redacted) for the model on every decision; the thread keeps
        // the conversation as it was.
        let conversation = self.rewrite_conversation(&run.input, &run.history, ctx).await?;
        let guard = self.guard();
        let state = AgentState {
            input: &conversation.input,
            history: &conversation.history,
            steps: &run.steps,
            tools: &tools,
            guard: &guard,
        };
        let config = self.config();
        let elapsed =
            std::time::Duration::from_millis(crate::graph::now_ms().saturating_sub(run.started_at_ms));
        let limit = if run.iterations >= config.max_iterations {
            Some(StopReason::MaxIterations)
        } else if config.max_time.is_some_and(|max| elapsed >= max) {
            Some(StopReason::MaxTime)
        } else {
            None
        };
        if let Some(reason) = limit {
            return self.stop_run(&run, state, update, reason, ctx).await;
        }
        let stats = RunStats::of(run.iterations, run.usage, &run.steps, elapsed);
        match self.before_model(&stats, ctx).await {
            Err(e) if e.kind() == ErrorKind::LimitExceeded => {
                return self.stop_run(&run, state, update, StopReason::Budget, ctx).await;
            }
            other => other?,
        }
        let mut planned = match self.decide(state, false, ctx).await {
            Err(e) if e.kind() == ErrorKind::ContextLengthExceeded => {
                return self.stop_run(&run, state, update, StopReason::ContextLength, ctx).await;
            }
            other => other?,
        };
        self.after_model(&mut planned, &stats, ctx).await?;
        let mut usage = run.usage;
        usage += planned.usage;
        let turn = run.iterations;
        update = update.iterations(run.iterations + 1).usage(usage);
        self.emit_thought(&planned, ctx);
        Ok(match planned.next {
            Next::Finish(answer) => {
                self.emit_answer(&answer, ctx);
                let history = turns(&run, &answer, StopReason::Finished);
                stop(update, answer, StopReason::Finished, history)
            }
            Next::Invalid(problem) => {
                if config.max_parse_errors == 0 {
                    return Err(Error::parse(
                        "agent reply",
                        format!("{problem}; the reply was: {}", planned.log),
                    ));
                }
                let step = self.invalid_step(turn, planned.log, problem, ctx);
                let errors = run.parse_errors + 1;
                let update = update.steps(vec![step.clone()]).parse_errors(errors);
                if errors >= config.max_parse_errors {
                    let mut steps = run.steps.clone();
                    steps.push(step);
                    let state = AgentState { steps: &steps, ..state };
                    return self.stop_run(&run, state, update, StopReason::ParseErrors, ctx).await;
                }
                update
            }
            Next::Call(calls) => {
                update.pending(unique_ids(turn, calls, &run.steps)).log(planned.log).parse_errors(0usize)
            }
        })
    }

    async fn act_node(&self, run: AgentRun, ctx: &RunContext) -> Result<AgentRunUpdate> {
        let turn = run.iterations.saturating_sub(1);
        let mut steps = run.steps.clone();
        let before = steps.len();
        let elapsed =
            std::time::Duration::from_millis(crate::graph::now_ms().saturating_sub(run.started_at_ms));
        let stats = RunStats::of(run.iterations, run.usage, &run.steps, elapsed);
        let direct = self.act(turn, &run.log, run.pending.clone(), &mut steps, true, &stats, ctx).await?;
        let new_steps = steps.get(before..).unwrap_or_default().to_vec();
        let update = with_steps(AgentRunUpdate::default().pending(Vec::new()), new_steps);
        if let Some(answer) = direct {
            self.emit_answer(&answer, ctx);
            let history = turns(&run, &answer, StopReason::ReturnDirect);
            return Ok(stop(update, answer, StopReason::ReturnDirect, history));
        }
        if self.is_looping(&steps) {
            let tools = run.tools.clone();
            let guard = self.guard();
            let state = AgentState {
                input: &run.input,
                history: &run.history,
                steps: &steps,
                tools: &tools,
                guard: &guard,
            };
            return self.stop_run(&run, state, update, StopReason::Looping, ctx).await;
        }
        Ok(update)
    }

    async fn stop_run(
        &self,
        run: &AgentRun,
        state: AgentState<'_>,
        update: AgentRunUpdate,
        reason: StopReason,
        ctx: &RunContext,
    ) -> Result<AgentRunUpdate> {
        let mut usage = update.usage.unwrap_or(run.usage);
        let (answer, generated) = self.stopped_answer(reason, state, &mut usage, ctx).await?;
        self.emit_answer(&answer, ctx);
        // A closing answer the model wrote from the tools' results is an answer like any other.
        let history = if generated { turns(run, &answer, StopReason::Finished) } else { Vec::new() };
        Ok(stop(update.usage(usage), answer, reason, history))
    }
}

impl AgentExecutor {
    /// Pauses for the calls that need approval; applies the person's decisions when resumed.
    async fn review_node(&self, run: AgentRun, ctx: NodeContext) -> Result<AgentRunUpdate> {
        // A call that repeats an earlier successful one will not run (the model is shown the
        // earlier result): nothing to approve.
        let done: std::collections::HashSet<String> =
            run.steps.iter().filter(|s| !s.failed).filter_map(|s| s.call.as_ref()).map(call_key).collect();
        let waiting: Vec<ToolCall> = run
            .pending
            .iter()
            .filter(|c| self.needs_approval(c, ctx.resumable()))
            .filter(|c| !done.contains(&call_key(c)))
            .cloned()
            .collect();
        if waiting.is_empty() {
            return Ok(AgentRunUpdate::default());
        }
        let approval: Approval = ctx.interrupt(&ApprovalRequest { calls: waiting.clone() })?;
        let described = |calls: &[&ToolCall]| {
            calls.iter().map(|c| format!("`{}` ({})", c.id, c.name)).collect::<Vec<_>>().join(", ")
        };
        let missing: Vec<&ToolCall> =
            waiting.iter().filter(|c| !approval.decisions.contains_key(&c.id)).collect();
        if !missing.is_empty() {
            return Err(Error::invalid_input(format!(
                "the approval has no decision for {}; it needs one per waiting call: {}",
                described(&missing),
                described(&waiting.iter().collect::<Vec<_>>())
            )));
        }
        if let Some(unknown) = approval.decisions.keys().find(|id| !waiting.iter().any(|c| &c.id == *id)) {
            return Err(Error::invalid_input(format!(
                "the approval decides call `{unknown}`, which is not waiting; the waiting calls: {}",
                described(&waiting.iter().collect::<Vec<_>>())
            )));
        }
        let turn = run.iterations.saturating_sub(1);
        let mut pending = Vec::new();
        let mut steps = Vec::new();
        for call in run.pending {
            match approval.decisions.get(&call.id) {
                None | Some(Decision::Approve) => pending.push(call),
                Some(Decision::Edit { arguments }) => {
                    pending.push(ToolCall { arguments: arguments.clone(), ..call })
                }
                Some(Decision::Reject { message }) => {
                    steps.push(self.declined_step(turn, &run.log, call, message, ctx.run_context()));
                }
            }
        }
        Ok(with_steps(AgentRunUpdate::default().pending(pending), steps))
    }
}

/// Ids for the calls of this turn, unique in the run: a local model restarted with the process
/// numbers its calls from `call_0` again, and approvals and results are matched by id.
fn unique_ids(turn: usize, calls: Vec<ToolCall>, steps: &[AgentStep]) -> Vec<ToolCall> {
    let used: std::collections::HashSet<&str> =
        steps.iter().filter_map(|s| s.call.as_ref()).map(|c| c.id.as_str()).collect();
    let mut seen = std::collections::HashSet::new();
    with_call_ids(turn, calls)
        .into_iter()
        .enumerate()
        .map(|(i, mut call)| {
            if used.contains(call.id.as_str()) || !seen.insert(call.id.clone()) {
                call.id = format!("call_{turn}_{i}");
            }
            call
        })
        .collect()
}

/// Adds `steps` to an update (an empty list would start the run's steps over).
fn with_steps(update: AgentRunUpdate, steps: Vec<AgentStep>) -> AgentRunUpdate {
    if steps.is_empty() { update } else { update.steps(steps) }
}
