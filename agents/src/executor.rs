//! [`AgentExecutor`]: the loop that runs an [`Agent`], its tools and its limits.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use catena_core::security::{Defences, Guard, LeakSite};
use catena_core::{
    ChatModel, ChatRequest, ChatResponse, Error, ErrorKind, Event, FinishReason, Memory, Message, Result,
    Role, RunContext, Runnable, ToolCall, ToolSpec, Usage, async_trait,
};
use catena_tools::ToolRegistry;
use serde::{Deserialize, Serialize};

use crate::agent::{Agent, AgentState, AgentStep, Next, Plan};
use crate::middleware::{Conversation, Middleware, RunStats, ToolNext};
use crate::selection::ToolSelector;

/// What to answer when a limit stops a run before the agent finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EarlyStopping {
    /// A fixed message naming the limit (LangChain's `force`). The default: it costs nothing.
    #[default]
    Force,
    /// One more model call, without tools, asked to answer from the steps so far
    /// (LangChain's `generate`). Falls back to the fixed message if that call fails.
    Generate,
}

/// Why a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The agent gave a final answer.
    Finished,
    /// A tool marked `return_direct` answered.
    ReturnDirect,
    /// `max_iterations` model calls were made.
    MaxIterations,
    /// `max_time` passed.
    MaxTime,
    /// The model kept making the same call.
    Looping,
    /// The model's replies could not be read `max_parse_errors` times in a row.
    ParseErrors,
    /// The conversation outgrew the model's context window.
    ContextLength,
    /// A middleware's budget was spent ([`TokenBudget`](crate::TokenBudget)).
    Budget,
}

impl StopReason {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Self::Finished | Self::ReturnDirect => "it finished",
            Self::MaxIterations => "the iteration limit",
            Self::MaxTime => "the time limit",
            Self::Looping => "repeating the same tool call",
            Self::ParseErrors => "replies that could not be read",
            Self::ContextLength => "the model's context window filling up",
            Self::Budget => "its budget running out",
        }
    }
}

/// The result of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentOutput {
    /// The answer.
    pub answer: String,
    /// Every step, oldest first: what was called, what came back.
    pub steps: Vec<AgentStep>,
    /// Why the run ended.
    pub stop: StopReason,
    /// Tokens spent by every model call of the run.
    pub usage: Usage,
    /// Model calls made.
    pub iterations: usize,
}

/// Limits and recovery rules of an [`AgentExecutor`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecutorConfig {
    /// Most model calls per run (LangChain's default, 15).
    pub max_iterations: usize,
    /// Longest a run may take, model calls and tools together; `None` for no limit.
    pub max_time: Option<Duration>,
    /// What to answer when a limit stops the run.
    pub early_stopping: EarlyStopping,
    /// Unreadable replies in a row before the run stops (each is shown to the model first).
    /// 0 makes the first one an [`Error::Parse`] instead.
    pub max_parse_errors: usize,
    /// Times the same call (tool and arguments) may be repeated before the run stops as
    /// [`StopReason::Looping`]. A repeat is not run again: the model is shown the earlier result
    /// and told to use it.
    pub max_repeats: usize,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        Self {
            max_iterations: 15,
            max_time: None,
            early_stopping: EarlyStopping::Force,
            max_parse_errors: 3,
            max_repeats: 2,
        }
    }
}

/// Runs an [`Agent`]: asks it for the next move, runs the tools it calls (in parallel when it
/// calls several) through a [`ToolRegistry`], feeds the observations back, and stops at the final
/// answer or at a limit. Every step is emitted to the run context as an [`Event::Step`]
/// (`thought`, `action`, `observation`, `error`, `final_answer`); tokens stream as the model's
/// [`Event::Token`]s; cancellation stops the run between and during steps.
///
/// With a [`Memory`], each run starts from what the memory recalls for its input and records
/// the input and the answer (not the intermediate steps) when it finishes; a run stopped by a
/// limit is not recorded.
///
/// Bad model behaviour is bounded, never fatal: unreadable replies, unknown tools and invalid
/// arguments become observations the model can correct; a tool's error or panic becomes an
/// observation; repeated calls are answered from the earlier result and end the run as
/// [`StopReason::Looping`] when they persist; iteration and time limits end it with a clear
/// message. The steps are kept in every case.
pub struct AgentExecutor {
    agent: Arc<dyn Agent>,
    tools: ToolRegistry,
    memory: Option<Arc<dyn Memory>>,
    config: ExecutorConfig,
    selector: Option<Arc<ToolSelector>>,
    middleware: Vec<Arc<dyn Middleware>>,
    approval: ApprovalPolicy,
    defences: Defences,
}

/// Which tool calls an agent graph ([`AgentExecutor::into_graph`]) pauses for a person's
/// approval. The executor's own [`run`](AgentExecutor::run) asks the registry's
/// [`Confirm`](catena_tools::Confirm) hook instead, for tools marked
/// [`needs_confirmation`](catena_tools::ToolOptions::needs_confirmation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApprovalPolicy {
    /// Calls of tools marked `needs_confirmation`, and, when the graph has a checkpointer (so
    /// a pause can wait for a person), of every tool that is not
    /// [`read_only`](catena_core::Tool::read_only). The default: a tool that changes the world
    /// does not run unseen unless it is marked safe.
    #[default]
    SideEffecting,
    /// Only calls of tools marked `needs_confirmation`.
    Marked,
}

impl std::fmt::Debug for AgentExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentExecutor")
            .field("tools", &self.tools)
            .field("memory", &self.memory.is_some())
            .field("config", &self.config)
            .field("selector", &self.selector)
            .finish_non_exhaustive()
    }
}

impl AgentExecutor {
    /// An executor for `agent` with these tools and the default [`ExecutorConfig`].
    pub fn new(agent: impl Agent + 'static, tools: ToolRegistry) -> Self {
        Self::from_arc(Arc::new(agent), tools)
    }

    /// Like [`new`](Self::new), for a shared agent.
    #[must_use]
    pub fn from_arc(agent: Arc<dyn Agent>, tools: ToolRegistry) -> Self {
        Self {
            agent,
            tools,
            memory: None,
            config: ExecutorConfig::default(),
            selector: None,
            middleware: Vec::new(),
            approval: ApprovalPolicy::default(),
            defences: Defences::output_only(),
        }
    }

    /// Remembers conversations in `memory`.
    #[must_use]
    pub fn with_memory(mut self, memory: Arc<dyn Memory>) -> Self {
        self.memory = Some(memory);
        self
    }

    /// Replaces the limits and recovery rules.
    #[must_use]
    pub fn with_config(mut self, config: ExecutorConfig) -> Self {
        self.config = config;
        self
    }

    /// Most model calls per run.
    #[must_use]
    pub fn with_max_iterations(mut self, max_iterations: usize) -> Self {
        self.config.max_iterations = max_iterations;
        self
    }

    /// Longest a run may take.
    #[must_use]
    pub fn with_max_time(mut self, max_time: Duration) -> Self {
        self.config.max_time = Some(max_time);
        self
    }

    /// What to answer when a limit stops a run.
    #[must_use]
    pub fn with_early_stopping(mut self, early_stopping: EarlyStopping) -> Self {
        self.config.early_stopping = early_stopping;
        self
    }

    /// Offers each run only the tools the selector ranks closest to its input (see
    /// [`ToolSelector`]); the others stay registered but unseen for that run.
    #[must_use]
    pub fn with_tool_selection(mut self, selector: ToolSelector) -> Self {
        self.selector = Some(Arc::new(selector));
        self
    }

    /// Adds a [`Middleware`] around every model decision and tool call of a run (after the ones
    /// added before it: see [`Middleware`] for the order).
    #[must_use]
    pub fn with_middleware(mut self, middleware: impl Middleware + 'static) -> Self {
        self.middleware.push(Arc::new(middleware));
        self
    }

    /// Which calls an agent graph pauses for approval (default:
    /// [`ApprovalPolicy::SideEffecting`]).
    #[must_use]
    pub fn with_approval(mut self, approval: ApprovalPolicy) -> Self {
        self.approval = approval;
        self
    }

    /// The defences around each model decision. The default, [`Defences::output_only`], removes
    /// links and images to hosts not allowed from the answer. With
    /// [`Defences::default`], tool results also reach the model marked as data (spotlighting)
    /// and the system prompt carries a canary; a canary or secret in a reply's text, its
    /// tool-call arguments or its streamed tokens (filtered then) stops the run with
    /// [`Error::Blocked`] before the call runs. Not the default here: on the 1.5B local agent
    /// model the prompt-side defences made it refuse ordinary questions now and then
    /// (docs/security.md).
    /// [`Defences::off`] turns everything off.
    #[must_use]
    pub fn with_defences(mut self, defences: Defences) -> Self {
        self.defences = defences;
        self
    }

    /// A guard for one model decision.
    pub(crate) fn guard(&self) -> Guard {
        self.defences.begin()
    }

    /// One model decision (`closing`: the answer asked for when a limit stopped the run) under
    /// `state.guard`: streamed tokens filtered, the reply checked for leaks, the answer cleaned.
    pub(crate) async fn decide(
        &self,
        state: AgentState<'_>,
        closing: bool,
        ctx: &RunContext,
    ) -> Result<Plan> {
        // Streamed tokens are filtered when the prompt carries something to catch (a canary);
        // with the prompt untouched (`output_only`) the run's context is used as it is.
        let planned = if state.guard.canary().is_some() {
            let (watched, tokens) = catena_core::security::filter_tokens(ctx, state.guard);
            let planned = self.plan_or_conclude(state, closing, &watched).await;
            tokens.finish();
            planned
        } else {
            self.plan_or_conclude(state, closing, ctx).await
        };
        let mut plan = planned?;
        let guard = state.guard;
        guard.check(LeakSite::Answer, &plan.log)?;
        match &mut plan.next {
            Next::Call(calls) => guard.check_calls(calls)?,
            Next::Finish(answer) => {
                guard.check(LeakSite::Answer, answer)?;
                *answer = guard.clean(answer).text;
            }
            Next::Invalid(_) => {}
        }
        Ok(plan)
    }

    async fn plan_or_conclude(&self, state: AgentState<'_>, closing: bool, ctx: &RunContext) -> Result<Plan> {
        if closing { self.agent.conclude(state, ctx).await } else { self.agent.plan(state, ctx).await }
    }

    /// Whether an agent graph pauses `call` for approval; `resumable` when the graph has a
    /// checkpointer.
    pub(crate) fn needs_approval(&self, call: &ToolCall, resumable: bool) -> bool {
        let marked = self.tools.options(&call.name).is_some_and(|o| o.needs_confirmation);
        let side_effecting = self.tools.get(&call.name).is_some_and(|t| !t.read_only());
        marked || (resumable && self.approval == ApprovalPolicy::SideEffecting && side_effecting)
    }

    /// The tools.
    #[must_use]
    pub fn tools(&self) -> &ToolRegistry {
        &self.tools
    }

    /// The memory, if any.
    #[must_use]
    pub fn memory(&self) -> Option<&Arc<dyn Memory>> {
        self.memory.as_ref()
    }

    /// The limits and recovery rules.
    #[must_use]
    pub fn config(&self) -> ExecutorConfig {
        self.config
    }

    /// Runs one question with the executor's memory (if any) as history.
    pub async fn run(&self, input: &str, ctx: &RunContext) -> Result<AgentOutput> {
        let history = match &self.memory {
            Some(memory) => memory.messages_for(input, ctx).await?,
            None => Vec::new(),
        };
        let output = self.run_with_history(input, &history, ctx).await?;
        // A run stopped by a limit has no answer worth recalling: remembering "Agent stopped..."
        // would only teach the model that it failed.
        let answered = matches!(output.stop, StopReason::Finished | StopReason::ReturnDirect);
        if let Some(memory) = self.memory.as_ref().filter(|_| answered) {
            memory.add(&[Message::user(input), Message::assistant(output.answer.clone())], ctx).await?;
        }
        Ok(output)
    }

    /// Runs one question after an explicit conversation (the memory is neither read nor written):
    /// what serving an agent over a stateless API needs.
    pub async fn run_with_history(
        &self,
        input: &str,
        history: &[Message],
        ctx: &RunContext,
    ) -> Result<AgentOutput> {
        use tracing::Instrument;
        // One `invoke_agent` span per run, the parent of its model and tool calls' spans.
        let span = catena_core::telemetry::agent_span(ctx, "agent", input);
        let traced = ctx.clone().with_span(span.clone());
        // The run's cost is the ledger's growth, read only when someone records the span.
        let cost_before = (!span.is_disabled()).then(|| ctx.usage().cost_usd);
        let result = self.run_steps(input, history, &traced).instrument(span.clone()).await;
        let cost = cost_before.map(|before| ctx.usage().cost_usd - before);
        match &result {
            Ok(out) => catena_core::telemetry::record_agent(
                &span,
                Ok((&out.answer, out.steps.len())),
                &out.usage,
                cost,
            ),
            Err(e) => catena_core::telemetry::record_agent(&span, Err(e), &Usage::default(), cost),
        }
        result
    }

    async fn run_steps(&self, input: &str, history: &[Message], ctx: &RunContext) -> Result<AgentOutput> {
        let started = Instant::now();
        let conversation = self.rewrite_conversation(input, history, ctx).await?;
        let (input, history) = (conversation.input.as_str(), conversation.history.as_slice());
        let specs = self.offered_tools(input, ctx).await?;
        let mut steps: Vec<AgentStep> = Vec::new();
        let mut usage = Usage::default();
        let mut iterations = 0;
        let mut parse_errors_in_a_row = 0;
        let stop = loop {
            ctx.check_cancelled()?;
            if iterations >= self.config.max_iterations {
                break StopReason::MaxIterations;
            }
            let remaining = match self.config.max_time {
                Some(limit) => match limit.checked_sub(started.elapsed()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => break StopReason::MaxTime,
                },
                None => None,
            };
            let stats = RunStats::of(iterations, usage, &steps, started.elapsed());
            match self.before_model(&stats, ctx).await {
                Err(e) if e.kind() == ErrorKind::LimitExceeded => break StopReason::Budget,
                other => other?,
            }
            let guard = self.guard();
            let state = AgentState { input, history, steps: &steps, tools: &specs, guard: &guard };
            let planned = match remaining {
                Some(left) => match tokio::time::timeout(left, self.decide(state, false, ctx)).await {
                    Ok(planned) => planned,
                    Err(_) => break StopReason::MaxTime,
                },
                None => self.decide(state, false, ctx).await,
            };
            // A conversation too long for the model ends the run with its steps kept; any other
            // model failure is the caller's to handle.
            let mut planned = match planned {
                Err(e) if e.kind() == ErrorKind::ContextLengthExceeded => break StopReason::ContextLength,
                other => other?,
            };
            self.after_model(&mut planned, &stats, ctx).await?;
            iterations += 1;
            usage += planned.usage;
            let turn = iterations - 1;
            self.emit_thought(&planned, ctx);
            match planned.next {
                Next::Finish(answer) => {
                    self.emit_answer(&answer, ctx);
                    return Ok(AgentOutput { answer, steps, stop: StopReason::Finished, usage, iterations });
                }
                Next::Invalid(problem) => {
                    parse_errors_in_a_row += 1;
                    if self.config.max_parse_errors == 0 {
                        return Err(Error::parse(
                            "agent reply",
                            format!("{problem}; the reply was: {}", planned.log),
                        ));
                    }
                    steps.push(self.invalid_step(turn, planned.log, problem, ctx));
                    if parse_errors_in_a_row >= self.config.max_parse_errors {
                        break StopReason::ParseErrors;
                    }
                }
                Next::Call(calls) => {
                    parse_errors_in_a_row = 0;
                    let calls = with_call_ids(turn, calls);
                    let stats = RunStats::of(iterations, usage, &steps, started.elapsed());
                    if let Some(answer) =
                        self.act(turn, &planned.log, calls, &mut steps, false, &stats, ctx).await?
                    {
                        self.emit_answer(&answer, ctx);
                        return Ok(AgentOutput {
                            answer,
                            steps,
                            stop: StopReason::ReturnDirect,
                            usage,
                            iterations,
                        });
                    }
                    if self.is_looping(&steps) {
                        break StopReason::Looping;
                    }
                }
            }
        };
        let guard = self.guard();
        let state = AgentState { input, history, steps: &steps, tools: &specs, guard: &guard };
        let (answer, _) = self.stopped_answer(stop, state, &mut usage, ctx).await?;
        self.emit_answer(&answer, ctx);
        Ok(AgentOutput { answer, steps, stop, usage, iterations })
    }

    /// Runs every middleware's `rewrite_conversation`, first to last.
    pub(crate) async fn rewrite_conversation(
        &self,
        input: &str,
        history: &[Message],
        ctx: &RunContext,
    ) -> Result<Conversation> {
        let mut conversation = Conversation { input: input.to_owned(), history: history.to_vec() };
        for middleware in &self.middleware {
            middleware.rewrite_conversation(&mut conversation, ctx).await?;
        }
        Ok(conversation)
    }

    /// Runs every middleware's `before_model`, first to last.
    pub(crate) async fn before_model(&self, stats: &RunStats, ctx: &RunContext) -> Result<()> {
        for middleware in &self.middleware {
            middleware.before_model(stats, ctx).await?;
        }
        Ok(())
    }

    /// Runs every middleware's `after_model`, last to first.
    pub(crate) async fn after_model(
        &self,
        plan: &mut Plan,
        stats: &RunStats,
        ctx: &RunContext,
    ) -> Result<()> {
        for middleware in self.middleware.iter().rev() {
            middleware.after_model(plan, stats, ctx).await?;
        }
        Ok(())
    }

    /// The tools offered for `input`: all, or the closest few when tool selection is on.
    pub(crate) async fn offered_tools(&self, input: &str, ctx: &RunContext) -> Result<Vec<ToolSpec>> {
        match &self.selector {
            Some(selector) => selector.select(input, &self.tools.specs(), ctx).await,
            None => Ok(self.tools.specs()),
        }
    }

    /// Reports the model's reasoning, unless it is the answer itself.
    pub(crate) fn emit_thought(&self, planned: &Plan, ctx: &RunContext) {
        let log_is_answer = matches!(&planned.next, Next::Finish(a) if a.trim() == planned.log.trim());
        if !planned.log.trim().is_empty() && !log_is_answer {
            ctx.emit(Event::Step { kind: "thought".into(), text: planned.log.trim().to_owned() });
        }
    }

    /// Reports the final answer.
    pub(crate) fn emit_answer(&self, answer: &str, ctx: &RunContext) {
        ctx.emit(Event::Step { kind: "final_answer".into(), text: answer.to_owned() });
    }

    /// The step recording a reply that could not be read (reported as an error).
    pub(crate) fn invalid_step(
        &self,
        turn: usize,
        log: String,
        problem: String,
        ctx: &RunContext,
    ) -> AgentStep {
        ctx.emit(Event::Step { kind: "error".into(), text: problem.clone() });
        AgentStep { turn, log, call: None, observation: problem, artifact: None, failed: true }
    }

    /// The step recording a call a person declined: the model reads `message` as its result.
    pub(crate) fn declined_step(
        &self,
        turn: usize,
        log: &str,
        call: ToolCall,
        message: &str,
        ctx: &RunContext,
    ) -> AgentStep {
        ctx.emit(Event::Step { kind: "action".into(), text: format!("{}({})", call.name, call.arguments) });
        ctx.emit(Event::ToolEnd { name: call.name.clone(), output: message.to_owned() });
        ctx.emit(Event::Step { kind: "observation".into(), text: message.to_owned() });
        AgentStep {
            turn,
            log: log.to_owned(),
            call: Some(call),
            observation: message.to_owned(),
            artifact: None,
            failed: false,
        }
    }

    /// Runs one reply's calls in parallel and records them as steps. Returns the answer when a
    /// `return_direct` tool succeeded.
    /// `approved`: the calls were approved already (by a person, on the graph runtime), so the
    /// registry's confirmation hook is not asked again.
    #[allow(clippy::too_many_arguments)] // the step being recorded and the run it belongs to
    pub(crate) async fn act(
        &self,
        turn: usize,
        log: &str,
        calls: Vec<ToolCall>,
        steps: &mut Vec<AgentStep>,
        approved: bool,
        stats: &RunStats,
        ctx: &RunContext,
    ) -> Result<Option<String>> {
        let earlier: HashMap<String, &AgentStep> = steps
            .iter()
            .filter(|s| !s.failed)
            .filter_map(|s| s.call.as_ref().map(|c| (call_key(c), s)))
            .collect();
        let runs = calls.iter().map(|call| {
            let repeat = earlier.get(&call_key(call)).map(|s| s.observation.clone());
            async move {
                ctx.emit(Event::Step {
                    kind: "action".into(),
                    text: format!("{}({})", call.name, call.arguments),
                });
                if let Some(previous) = repeat {
                    let note = format!(
                        "You already called {} with these arguments; the result was:\n{previous}\nUse it to answer, or call a tool with different arguments.",
                        call.name
                    );
                    return Ok((note, None, true));
                }
                let result = ToolNext::new(&self.middleware, &self.tools, approved, stats, ctx).run(call.clone()).await;
                match result {
                    Ok(out) => Ok((out.content, out.artifact, false)),
                    Err(Error::Cancelled) => Err(Error::Cancelled),
                    Err(e) => Ok((format!("Error: {e}"), None, true)),
                }
            }
        });
        let results = futures::future::join_all(runs).await;
        let mut direct = None;
        for (call, result) in calls.into_iter().zip(results) {
            let (observation, artifact, failed) = result?;
            ctx.emit(Event::Step {
                kind: if failed { "error" } else { "observation" }.into(),
                text: observation.clone(),
            });
            if !failed && direct.is_none() && self.tools.options(&call.name).is_some_and(|o| o.return_direct)
            {
                direct = Some(observation.clone());
            }
            steps.push(AgentStep {
                turn,
                log: log.to_owned(),
                call: Some(call),
                observation,
                artifact,
                failed,
            });
        }
        Ok(direct)
    }

    /// Whether some call has now been repeated more than `max_repeats` times.
    pub(crate) fn is_looping(&self, steps: &[AgentStep]) -> bool {
        let mut seen: HashMap<String, usize> = HashMap::new();
        for call in steps.iter().filter_map(|s| s.call.as_ref()) {
            let count = seen.entry(call_key(call)).or_default();
            *count += 1;
            if *count > self.config.max_repeats + 1 {
                return true;
            }
        }
        false
    }

    /// The answer of a run a limit stopped: the fixed message, or (with `Generate`) one closing
    /// model call.
    pub(crate) async fn stopped_answer(
        &self,
        stop: StopReason,
        state: AgentState<'_>,
        usage: &mut Usage,
        ctx: &RunContext,
    ) -> Result<(String, bool)> {
        let fixed = format!(
            "Agent stopped because of {} before it found an answer ({} steps taken).",
            stop.describe(),
            state.steps.len()
        );
        ctx.emit(Event::Warning { message: fixed.clone() });
        // A spent budget allows no closing model call.
        if self.config.early_stopping == EarlyStopping::Force || stop == StopReason::Budget {
            return Ok((fixed, false));
        }
        // The closing call answers from what the tools returned: the notices shown for repeated
        // calls are left out (a small model tends to hand the last notice back as its answer).
        let mut succeeded = std::collections::HashSet::new();
        let kept: Vec<AgentStep> = state
            .steps
            .iter()
            .filter(|step| {
                let Some(call) = &step.call else { return true };
                let key = call_key(call);
                if step.failed {
                    return !succeeded.contains(&key);
                }
                succeeded.insert(key);
                true
            })
            .cloned()
            .collect();
        let state = AgentState { steps: &kept, ..state };
        match self.decide(state, true, ctx).await {
            Ok(plan) => {
                *usage += plan.usage;
                match plan.next {
                    Next::Finish(answer) if !answer.trim().is_empty() => Ok((answer, true)),
                    _ => Ok((fixed, false)),
                }
            }
            Err(Error::Cancelled) => Err(Error::Cancelled),
            Err(e) if e.kind() == ErrorKind::Blocked => Err(e),
            Err(e) => {
                ctx.emit(Event::Warning { message: format!("the closing model call failed: {e}") });
                Ok((fixed, false))
            }
        }
    }

    /// The executor as a chat model: the last user message is the input, the messages before it
    /// the history (system messages included). What `catena serve` needs to serve an agent.
    #[must_use]
    pub fn into_chat_model(self, name: impl Into<String>) -> AgentChatModel {
        AgentChatModel { executor: self, name: name.into() }
    }
}

/// A call's identity for repeat detection: the tool and its arguments (object keys sorted, which
/// `serde_json` does for its default map).
/// What makes two calls the same call: the tool and its arguments.
pub(crate) fn call_key(call: &ToolCall) -> String {
    format!("{}\u{0}{}", call.name, call.arguments)
}

#[async_trait]
impl Runnable<String, AgentOutput> for AgentExecutor {
    async fn invoke(&self, input: String, ctx: &RunContext) -> Result<AgentOutput> {
        self.run(&input, ctx).await
    }
}

/// An [`AgentExecutor`] behind the [`ChatModel`] face, made by
/// [`AgentExecutor::into_chat_model`]. Stateless: the conversation comes with each request.
pub struct AgentChatModel {
    executor: AgentExecutor,
    name: String,
}

impl std::fmt::Debug for AgentChatModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentChatModel").field("name", &self.name).field("executor", &self.executor).finish()
    }
}

#[async_trait]
impl ChatModel for AgentChatModel {
    async fn chat(&self, request: ChatRequest, ctx: &RunContext) -> Result<ChatResponse> {
        let last_user = request.messages.iter().rposition(|m| m.role == Role::User).ok_or_else(|| {
            Error::invalid_input("the conversation has no user message for the agent to answer")
        })?;
        let (history, rest) = request.messages.split_at(last_user);
        let input = rest.first().map(|m| m.content.as_str()).unwrap_or_default();
        let output = self.executor.run_with_history(input, history, ctx).await?;
        Ok(ChatResponse {
            message: Message::assistant(output.answer),
            usage: output.usage,
            finish_reason: FinishReason::Stop,
        })
    }

    fn model_name(&self) -> &str {
        &self.name
    }
}

/// Ids for calls that came without one (scripted and some local models): the history needs one
/// per call.
pub(crate) fn with_call_ids(turn: usize, calls: Vec<ToolCall>) -> Vec<ToolCall> {
    calls
        .into_iter()
        .enumerate()
        .map(|(i, mut call)| {
            if call.id.trim().is_empty() {
                call.id = format!("call_{turn}_{i}");
            }
            call
        })
        .collect()
}
