//! Middleware on scripted models: budgets stop a run within one model call of the limit (on the
//! executor and on its graph), tool-call limits refuse calls past their cap, retries retry only
//! what their policy says, and middlewares run in the documented order.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic, missing_docs)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use catena_agents::graph::{MemoryCheckpointer, Outcome, Thread};
use catena_agents::{
    AgentExecutor, AgentRun, ApprovalPolicy, Conversation, EarlyStopping, Middleware, ModelCallLimit, Next,
    Pii, PiiAction, PiiRedaction, Plan, Price, RunStats, StopReason, Summarize, TokenBudget, ToolCallLimit,
    ToolCallingAgent, ToolNext, ToolRetry,
};
use catena_core::testing::{ScriptedChatModel, ScriptedReply};
use catena_core::{
    Error, Memory, Message, Result, RetryPolicy, RunContext, ToolCall, ToolOutput, TypedTool, async_trait,
};
use catena_tools::{Calculator, ToolRegistry};
use serde_json::json;

/// An executor without the prompt-injection defences: these tests compare prompts exactly, and
/// the defences (which add to them) have their own tests.
fn plain(agent: impl catena_agents::Agent + 'static, tools: ToolRegistry) -> AgentExecutor {
    AgentExecutor::new(agent, tools).with_defences(catena_core::security::Defences::off())
}

fn calc(i: usize) -> ToolCall {
    ToolCall {
        id: format!("c{i}"),
        name: "calculator".into(),
        arguments: json!({ "expression": format!("{i} + 1") }),
    }
}

/// Five calculator calls, then an answer.
fn long_script() -> Vec<ScriptedReply> {
    let mut replies: Vec<ScriptedReply> = (0..5).map(|i| ScriptedReply::ToolCalls(vec![calc(i)])).collect();
    replies.push(ScriptedReply::Text("done".into()));
    replies
}

fn executor(model: Arc<ScriptedChatModel>, tools: ToolRegistry) -> AgentExecutor {
    plain(ToolCallingAgent::new(model), tools).with_max_iterations(10)
}

fn calculator() -> ToolRegistry {
    ToolRegistry::new().with(Calculator).unwrap()
}

#[tokio::test]
async fn a_token_budget_stops_the_run_within_one_model_call_of_the_limit() {
    let ctx = RunContext::new();
    let model = Arc::new(ScriptedChatModel::from_replies(long_script()));
    let free = executor(model, calculator()).run("count", &ctx).await.unwrap();
    assert_eq!((free.stop, free.iterations), (StopReason::Finished, 6));

    // A budget just past two calls' worth: the third call is made (it crosses it), no fourth.
    let two_calls = {
        let model = Arc::new(ScriptedChatModel::from_replies(long_script()));
        let out = executor(model, calculator()).with_max_iterations(2).run("count", &ctx).await.unwrap();
        u64::from(out.usage.prompt_tokens) + u64::from(out.usage.completion_tokens)
    };
    for early in [EarlyStopping::Force, EarlyStopping::Generate] {
        let model = Arc::new(ScriptedChatModel::from_replies(long_script()));
        let out = executor(model.clone(), calculator())
            .with_early_stopping(early)
            .with_middleware(TokenBudget::tokens(two_calls + 1))
            .run("count", &ctx)
            .await
            .unwrap();
        assert_eq!(out.stop, StopReason::Budget, "{early:?}");
        assert_eq!((out.iterations, out.steps.len()), (3, 3), "{early:?}");
        // No closing model call past a spent budget, even with Generate.
        assert_eq!(model.requests().len(), 3, "{early:?}");
        assert!(out.answer.contains("budget"), "{}", out.answer);
        let spent = u64::from(out.usage.prompt_tokens) + u64::from(out.usage.completion_tokens);
        assert!(spent > two_calls, "{spent} {two_calls}");
    }

    // The same on the graph runtime.
    let model = Arc::new(ScriptedChatModel::from_replies(long_script()));
    let graph = executor(model.clone(), calculator())
        .with_middleware(TokenBudget::tokens(two_calls + 1))
        .into_graph()
        .unwrap()
        .with_checkpointer(Arc::new(MemoryCheckpointer::new()));
    let Outcome::Done(run) = graph.invoke(&Thread::new("t"), AgentRun::ask("count"), &ctx).await.unwrap()
    else {
        panic!("paused")
    };
    let out = run.output().unwrap();
    assert_eq!((out.stop, out.iterations, model.requests().len()), (StopReason::Budget, 3, 3));
}

#[tokio::test]
async fn a_money_budget_prices_prompt_cached_and_completion_tokens() {
    let price = Price { input: 2.0, cached_input: 0.5, output: 8.0 };
    let usage = catena_core::Usage {
        prompt_tokens: 1_000_000,
        cached_prompt_tokens: 400_000,
        completion_tokens: 100_000,
        ..catena_core::Usage::default()
    };
    assert!((price.cost(&usage) - (1.2 + 0.2 + 0.8)).abs() < 1e-9);
    // Any positive spend exhausts a zero budget after the first call.
    let model = Arc::new(ScriptedChatModel::from_replies(long_script()));
    let out = executor(model.clone(), calculator())
        .with_middleware(TokenBudget::cost(0.0, price))
        .run("count", &RunContext::new())
        .await
        .unwrap();
    assert_eq!((out.stop, model.requests().len()), (StopReason::Budget, 0));
    let model = Arc::new(ScriptedChatModel::from_replies(long_script()));
    let out = executor(model.clone(), calculator())
        .with_middleware(TokenBudget::cost(1e-12, price))
        .run("count", &RunContext::new())
        .await
        .unwrap();
    assert_eq!((out.stop, model.requests().len()), (StopReason::Budget, 1));
}

/// Counts its runs; fails with a transient error the first `fail_first` times.
#[derive(Clone, Default)]
struct Flaky {
    runs: Arc<AtomicUsize>,
    fail_first: usize,
    permanent: bool,
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct FlakyArgs {
    text: String,
}

#[async_trait]
impl TypedTool for Flaky {
    type Args = FlakyArgs;
    const NAME: &'static str = "flaky";
    const DESCRIPTION: &'static str = "Echoes, after failing a few times.";
    async fn run(&self, args: FlakyArgs, _: &RunContext) -> Result<ToolOutput> {
        let run = self.runs.fetch_add(1, Ordering::SeqCst);
        if run < self.fail_first {
            return Err(if self.permanent {
                Error::tool("flaky", "bad input")
            } else {
                Error::model_transient("upstream overloaded")
            });
        }
        Ok(ToolOutput::text(format!("echo: {}", args.text)))
    }
}

fn flaky_call() -> ToolCall {
    ToolCall { id: "f".into(), name: "flaky".into(), arguments: json!({"text": "hi"}) }
}

#[tokio::test]
async fn tool_retries_retry_transient_failures_only_and_limits_refuse_calls_past_their_cap() {
    let fast = RetryPolicy::attempts(3).with_initial_backoff(Duration::from_millis(1));
    for (permanent, runs, observation) in
        [(false, 3, "echo: hi"), (true, 1, "Error: tool `flaky` failed: bad input")]
    {
        let flaky = Flaky { fail_first: 2, permanent, ..Flaky::default() };
        let model = Arc::new(ScriptedChatModel::from_replies([
            ScriptedReply::ToolCalls(vec![flaky_call()]),
            ScriptedReply::Text("ok".into()),
        ]));
        let out = executor(model, ToolRegistry::new().with(flaky.clone()).unwrap())
            .with_middleware(ToolRetry::new(fast.clone()))
            .run("go", &RunContext::new())
            .await
            .unwrap();
        assert_eq!(flaky.runs.load(Ordering::SeqCst), runs, "permanent: {permanent}");
        assert_eq!(out.steps[0].observation, observation);
    }

    // One calculator call per run; the second is refused, and the model is told why.
    let model = Arc::new(ScriptedChatModel::from_replies(long_script()));
    let out = executor(model, calculator())
        .with_middleware(ToolCallLimit::new().tool("calculator", 1))
        .run("count", &RunContext::new())
        .await
        .unwrap();
    assert_eq!(out.steps[0].observation, "1");
    assert!(
        out.steps[1].observation.starts_with("Not run: `calculator` may be called 1 times"),
        "{}",
        out.steps[1].observation
    );
    let model = Arc::new(ScriptedChatModel::from_replies(long_script()));
    let out = executor(model, calculator())
        .with_middleware(ToolCallLimit::new().total(2))
        .run("count", &RunContext::new())
        .await
        .unwrap();
    let refused = out.steps.iter().filter(|s| s.observation.starts_with("Not run")).count();
    assert_eq!(refused, 3);
}

/// Records the order its hooks run in.
struct Trace(&'static str, Arc<Mutex<Vec<String>>>);

#[async_trait]
impl Middleware for Trace {
    async fn before_model(&self, stats: &RunStats, _ctx: &RunContext) -> Result<()> {
        self.1.lock().unwrap().push(format!("{} before {}", self.0, stats.iterations));
        Ok(())
    }

    async fn after_model(&self, plan: &mut Plan, _stats: &RunStats, _ctx: &RunContext) -> Result<()> {
        self.1.lock().unwrap().push(format!("{} after", self.0));
        if let Next::Finish(answer) = &mut plan.next {
            *answer = answer.replace("secret", "[redacted]");
        }
        Ok(())
    }

    async fn wrap_tool(&self, call: ToolCall, next: ToolNext<'_>, _stats: &RunStats) -> Result<ToolOutput> {
        self.1.lock().unwrap().push(format!("{} enter", self.0));
        let out = next.run(call).await;
        self.1.lock().unwrap().push(format!("{} leave", self.0));
        out
    }
}

#[tokio::test]
async fn middlewares_run_in_order_and_may_change_a_decision() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let model = Arc::new(ScriptedChatModel::from_replies([
        ScriptedReply::ToolCalls(vec![calc(1)]),
        ScriptedReply::Text("the secret is 2".into()),
    ]));
    let out = executor(model, calculator())
        .with_middleware(Trace("a", Arc::clone(&seen)))
        .with_middleware(Trace("b", Arc::clone(&seen)))
        .run("go", &RunContext::new())
        .await
        .unwrap();
    assert_eq!(out.answer, "the [redacted] is 2");
    assert_eq!(
        *seen.lock().unwrap(),
        [
            "a before 0",
            "b before 0",
            "b after",
            "a after",
            "a enter",
            "b enter",
            "b leave",
            "a leave",
            "a before 1",
            "b before 1",
            "b after",
            "a after",
        ]
    );
}

#[tokio::test]
async fn a_model_call_limit_stops_the_run_with_its_steps_and_no_closing_call() {
    let model = Arc::new(ScriptedChatModel::from_replies(long_script()));
    let out = executor(model.clone(), calculator())
        .with_early_stopping(EarlyStopping::Generate)
        .with_middleware(ModelCallLimit::new(2))
        .run("count", &RunContext::new())
        .await
        .unwrap();
    assert_eq!((out.stop, out.iterations, out.steps.len()), (StopReason::Budget, 2, 2));
    assert_eq!(model.requests().len(), 2, "no third call, not even a closing one");
    assert!(out.answer.contains("budget"), "{}", out.answer);
}

/// One token per whitespace-separated word.
struct Words;

impl catena_core::Tokenizer for Words {
    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(text.split_whitespace().map(|_| 1).collect())
    }
    fn decode(&self, _: &[u32]) -> Result<String> {
        Ok(String::new())
    }
}

fn turns(range: std::ops::Range<usize>) -> Vec<Message> {
    range
        .flat_map(|i| {
            [
                Message::user(format!("question {i} about topic number {i}")),
                Message::assistant(format!("answer {i} with the fact {i}")),
            ]
        })
        .collect()
}

#[tokio::test]
async fn summarize_folds_old_turns_once_keeps_recent_ones_and_leaves_short_talks_alone() {
    let ctx = RunContext::new();
    let summarizer = Arc::new(ScriptedChatModel::new(["S1: facts 0 to 3", "S2: facts 0 to 5"]));
    // Each message is 4 framing tokens plus 6 words: 10 tokens; a budget of 45 keeps 2 messages.
    let summarize = Arc::new(Summarize::new(summarizer.clone(), Arc::new(Words), 45));
    let mut conversation = Conversation { input: "next?".into(), history: turns(0..2) };
    summarize.rewrite_conversation(&mut conversation, &ctx).await.unwrap();
    assert_eq!(conversation.history, turns(0..2), "40 tokens fit: untouched");
    assert!(summarizer.requests().is_empty());

    let mut conversation = Conversation { input: "next?".into(), history: turns(0..5) };
    summarize.rewrite_conversation(&mut conversation, &ctx).await.unwrap();
    assert_eq!(conversation.history.len(), 3, "{:?}", conversation.history);
    assert!(conversation.history[0].content.ends_with("S1: facts 0 to 3"));
    assert_eq!(conversation.history[1..], turns(4..5)[..], "the newest exchange verbatim");
    let asked = &summarizer.requests()[0].messages[0].content;
    assert!(asked.contains("question 3") && !asked.contains("question 4"), "{asked}");

    // The same conversation again: the summary is remembered, no model call.
    let mut again = Conversation { input: "next?".into(), history: turns(0..5) };
    summarize.rewrite_conversation(&mut again, &ctx).await.unwrap();
    assert_eq!((again, summarizer.requests().len()), (conversation, 1));

    // Two turns later only the new old turns are folded into the previous summary.
    let mut later = Conversation { input: "next?".into(), history: turns(0..7) };
    summarize.rewrite_conversation(&mut later, &ctx).await.unwrap();
    assert!(later.history[0].content.ends_with("S2: facts 0 to 5"));
    let asked = &summarizer.requests()[1].messages[0].content;
    assert!(asked.contains("S1: facts 0 to 3") && asked.contains("question 4"), "{asked}");
    assert!(!asked.contains("question 3") && !asked.contains("question 6"), "{asked}");

    // On an executor, the agent is shown the shortened conversation.
    let agent_model = Arc::new(ScriptedChatModel::new(["fine"]));
    let memory = Arc::new(catena_agents::BufferMemory::new());
    memory.add(&turns(0..5), &ctx).await.unwrap();
    let out = executor(agent_model.clone(), calculator())
        .with_memory(memory)
        .with_middleware(Summarize::new(
            Arc::new(ScriptedChatModel::new(["S: earlier facts"])),
            Arc::new(Words),
            45,
        ))
        .run("next?", &ctx)
        .await
        .unwrap();
    assert_eq!(out.answer, "fine");
    let seen: Vec<String> = agent_model.requests()[0].messages.iter().map(|m| m.content.clone()).collect();
    assert!(seen.iter().any(|m| m.ends_with("S: earlier facts")), "{seen:?}");
    assert!(!seen.iter().any(|m| m.contains("question 1")), "{seen:?}");
}

#[tokio::test]
async fn pii_is_redacted_in_what_the_model_reads_writes_and_passes_to_tools() {
    let ctx = RunContext::new();
    let call = ToolCall {
        id: "f".into(),
        name: "flaky".into(),
        arguments: json!({"text": "card 4111 1111 1111 1111"}),
    };
    let model = Arc::new(ScriptedChatModel::from_replies([
        ScriptedReply::ToolCalls(vec![call]),
        ScriptedReply::Text("Mail jane@example.com".into()),
    ]));
    let flaky = Flaky::default();
    let tools = ToolRegistry::new().with(flaky.clone()).unwrap();
    let out = executor(model.clone(), tools)
        .with_middleware(PiiRedaction::new(PiiAction::Redact))
        .run("I am +44 20 7946 0958, IBAN DE89 3704 0044 0532 0130 00", &ctx)
        .await
        .unwrap();
    let asked = &model.requests()[0].messages;
    let question = &asked.last().unwrap().content;
    assert_eq!(question, "I am [REDACTED_PHONE], IBAN [REDACTED_IBAN]");
    assert_eq!(out.steps[0].observation, "echo: card [REDACTED_CARD]", "the tool got redacted arguments");
    assert_eq!(out.answer, "Mail [REDACTED_EMAIL]");

    // Block: a question holding personal data fails the run before any model call.
    let model = Arc::new(ScriptedChatModel::new(["never"]));
    let err = executor(model.clone(), calculator())
        .with_middleware(PiiRedaction::new(PiiAction::Block).only([Pii::Email]))
        .run("write to jane@example.com", &ctx)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("an e-mail address"), "{err}");
    assert!(model.requests().is_empty());
    // ... and a tool call holding it is not made; the model is told.
    let call =
        ToolCall { id: "f".into(), name: "flaky".into(), arguments: json!({"text": "jane@example.com"}) };
    let model = Arc::new(ScriptedChatModel::from_replies([
        ScriptedReply::ToolCalls(vec![call]),
        ScriptedReply::Text("ok".into()),
    ]));
    let flaky = Flaky::default();
    let out = executor(model, ToolRegistry::new().with(flaky.clone()).unwrap())
        .with_middleware(PiiRedaction::new(PiiAction::Block))
        .run("echo my address", &ctx)
        .await;
    // The call's arguments come from the model's decision: blocked there, the run fails.
    assert!(out.unwrap_err().to_string().contains("blocks"));
    assert_eq!(flaky.runs.load(Ordering::SeqCst), 0, "the tool never ran");
}

#[tokio::test]
async fn graphs_with_a_checkpointer_pause_side_effecting_tools_and_not_read_only_ones() {
    let ctx = RunContext::new();
    let script = || {
        Arc::new(ScriptedChatModel::from_replies([
            ScriptedReply::ToolCalls(vec![calc(1), flaky_call()]),
            ScriptedReply::Text("done".into()),
        ]))
    };
    let tools = || ToolRegistry::new().with(Calculator).unwrap().with(Flaky::default()).unwrap();
    // Default policy, with a checkpointer: the side-effecting `flaky` waits, the calculator does not.
    let graph = executor(script(), tools())
        .into_graph()
        .unwrap()
        .with_checkpointer(Arc::new(MemoryCheckpointer::new()));
    let paused = graph.invoke(&Thread::new("t"), AgentRun::ask("go"), &ctx).await.unwrap();
    let waiting: catena_agents::ApprovalRequest =
        serde_json::from_value(paused.interrupts()[0].payload.clone()).unwrap();
    let names: Vec<&str> = waiting.calls.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["flaky"]);
    // Only marked tools under ApprovalPolicy::Marked; nothing pauses without a checkpointer.
    let marked = executor(script(), tools())
        .with_approval(ApprovalPolicy::Marked)
        .into_graph()
        .unwrap()
        .with_checkpointer(Arc::new(MemoryCheckpointer::new()));
    let done = marked.invoke(&Thread::new("t"), AgentRun::ask("go"), &ctx).await.unwrap();
    assert!(matches!(done, Outcome::Done(_)));
    let plain = executor(script(), tools()).into_graph().unwrap();
    let done = plain.invoke(&Thread::new("t"), AgentRun::ask("go"), &ctx).await.unwrap();
    assert_eq!(done.state().answer.as_deref(), Some("done"));
}

#[tokio::test]
async fn a_subagent_answers_a_task_as_a_tool_of_another_agent() {
    let ctx = RunContext::new();
    // The specialist: calls the calculator, answers.
    let specialist = Arc::new(ScriptedChatModel::from_replies([
        ScriptedReply::ToolCalls(vec![calc(41)]),
        ScriptedReply::Text("It is 42.".into()),
    ]));
    let math = catena_agents::AgentTool::new(
        executor(specialist.clone(), calculator()),
        "math_expert",
        "Solves arithmetic.",
    );
    assert!(catena_core::Tool::read_only(&math), "only read-only tools inside");
    // The supervisor hands the task over and answers from the subagent's result.
    let task = ToolCall { id: "s".into(), name: "math_expert".into(), arguments: json!({"task": "41 + 1?"}) };
    let supervisor = Arc::new(ScriptedChatModel::from_replies([
        ScriptedReply::ToolCalls(vec![task]),
        ScriptedReply::Text("The expert says 42.".into()),
    ]));
    let out = executor(supervisor.clone(), ToolRegistry::new().with(math).unwrap())
        .run("What is 41 + 1?", &ctx)
        .await
        .unwrap();
    assert_eq!(out.steps[0].observation, "It is 42.");
    assert_eq!(out.answer, "The expert says 42.");
    // The subagent saw only its task, not the supervisor's conversation.
    let seen = &specialist.requests()[0].messages;
    assert_eq!(seen.last().unwrap().content, "41 + 1?");
    assert!(!seen.iter().any(|m| m.content.contains("What is 41")), "{seen:?}");

    // A subagent with a side-effecting tool is side-effecting; a limit-stopped run says so.
    let busy = Arc::new(ScriptedChatModel::from_replies(long_script()));
    let worker = catena_agents::AgentTool::new(
        executor(busy, ToolRegistry::new().with(Flaky::default()).unwrap().with(Calculator).unwrap())
            .with_max_iterations(1),
        "worker",
        "Does things.",
    );
    assert!(!catena_core::Tool::read_only(&worker));
    let out = catena_core::Tool::call(&worker, json!({"task": "count"}), &ctx).await.unwrap();
    assert!(out.content.contains("the subagent stopped"), "{}", out.content);
    let err = catena_core::Tool::call(&worker, json!({"task": " "}), &ctx).await.unwrap_err();
    assert!(err.to_string().contains("the task is empty"), "{err}");
}
