//! The agent loop on the graph runtime (`AgentExecutor::into_graph`), on scripted models: the
//! executor's answers and limits, conversations kept on a thread, and calls of tools that need
//! approval paused, resumed in a new process (SQLite), approved, edited or rejected.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic, missing_docs)]

use std::sync::{Arc, Mutex};

use catena_agents::graph::{
    Checkpointer, CompiledGraph, MemoryCheckpointer, Outcome, Resume, SqliteCheckpointer, Thread,
};
use catena_agents::{
    AgentExecutor, AgentRun, Approval, ApprovalRequest, Decision, StopReason, ToolCallingAgent,
};
use catena_core::testing::{ScriptedChatModel, ScriptedReply};
use catena_core::{Result, Role, RunContext, ToolCall, ToolOutput, TypedTool, async_trait};
use catena_tools::{Calculator, ToolOptions, ToolRegistry};
use serde_json::json;

fn calc(id: &str, expression: &str) -> ToolCall {
    ToolCall { id: id.into(), name: "calculator".into(), arguments: json!({ "expression": expression }) }
}

fn save(id: &str, text: &str) -> ToolCall {
    ToolCall { id: id.into(), name: "save_note".into(), arguments: json!({ "text": text }) }
}

/// A side-effecting tool: records every note it saves.
#[derive(Default, Clone)]
struct SaveNote(Arc<Mutex<Vec<String>>>);

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct SaveArgs {
    text: String,
}

#[async_trait]
impl TypedTool for SaveNote {
    type Args = SaveArgs;
    const NAME: &'static str = "save_note";
    const DESCRIPTION: &'static str = "Saves a note.";
    async fn run(&self, args: SaveArgs, _: &RunContext) -> Result<ToolOutput> {
        self.0.lock().unwrap().push(args.text.clone());
        Ok(ToolOutput::text(format!("saved: {}", args.text)))
    }
}

fn agent_graph(
    replies: Vec<ScriptedReply>,
    notes: &SaveNote,
    saver: Arc<dyn Checkpointer>,
) -> (CompiledGraph<AgentRun>, Arc<ScriptedChatModel>) {
    let model = Arc::new(ScriptedChatModel::from_replies(replies));
    let tools = ToolRegistry::new()
        .with(Calculator)
        .unwrap()
        .with_options(notes.clone(), ToolOptions::default().needs_confirmation())
        .unwrap();
    let graph = AgentExecutor::new(ToolCallingAgent::new(model.clone()), tools)
        .with_max_iterations(4)
        .into_graph()
        .unwrap()
        .with_checkpointer(saver);
    (graph, model)
}

fn done(outcome: &Outcome<AgentRun>) -> catena_agents::AgentOutput {
    match outcome {
        Outcome::Done(run) => run.output().unwrap(),
        Outcome::Interrupted { interrupts, .. } => panic!("paused: {interrupts:?}"),
    }
}

fn request(outcome: &Outcome<AgentRun>) -> ApprovalRequest {
    serde_json::from_value(outcome.interrupts()[0].payload.clone()).unwrap()
}

#[tokio::test]
async fn the_graph_answers_like_the_executor_and_a_thread_keeps_the_conversation() {
    let notes = SaveNote::default();
    let replies = vec![
        ScriptedReply::ToolCalls(vec![calc("a", "2 + 3")]),
        ScriptedReply::Text("5".into()),
        ScriptedReply::Text("You asked about 2 + 3.".into()),
    ];
    let (graph, model) = agent_graph(replies, &notes, Arc::new(MemoryCheckpointer::new()));
    let (thread, ctx) = (Thread::new("chat"), RunContext::new());
    let out = done(&graph.invoke(&thread, AgentRun::ask("What is 2 + 3?"), &ctx).await.unwrap());
    assert_eq!((out.answer.as_str(), out.stop, out.iterations), ("5", StopReason::Finished, 2));
    assert_eq!(out.steps[0].observation, "5");
    // The next question on the thread sees the first question and answer, not its steps.
    let out = done(&graph.invoke(&thread, AgentRun::ask("What did I ask?"), &ctx).await.unwrap());
    assert_eq!(out.answer, "You asked about 2 + 3.");
    assert!(out.steps.is_empty());
    let third = &model.requests()[2];
    let roles: Vec<Role> = third.messages.iter().map(|m| m.role).collect();
    assert_eq!(&roles[roles.len() - 3..], [Role::User, Role::Assistant, Role::User]);
    assert_eq!(third.messages[roles.len() - 2].content, "5");
}

#[tokio::test]
async fn a_side_effecting_call_waits_for_approval_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.db");
    let notes = SaveNote::default();
    let replies = || {
        vec![
            ScriptedReply::ToolCalls(vec![save("n1", "buy milk"), calc("c1", "6 * 7")]),
            ScriptedReply::Text("Saved your note; 6 * 7 = 42.".into()),
        ]
    };
    let ctx = RunContext::new();
    let thread = Thread::new("notes");
    {
        let saver = Arc::new(SqliteCheckpointer::open(&path).await.unwrap());
        let (graph, _) = agent_graph(replies(), &notes, saver);
        let paused =
            graph.invoke(&thread, AgentRun::ask("Note 'buy milk' and compute 6*7"), &ctx).await.unwrap();
        let waiting = request(&paused);
        // Only the call that needs approval waits; nothing ran yet.
        assert_eq!(waiting.calls, [save("n1", "buy milk")]);
        assert!(notes.0.lock().unwrap().is_empty());
    }
    // A new process: the model is not asked again for the step it already took.
    let saver = Arc::new(SqliteCheckpointer::open(&path).await.unwrap());
    let (graph, model) = agent_graph(replies().split_off(1), &notes, saver);
    let pending = graph.state(&thread).await.unwrap().unwrap();
    assert_eq!(pending.next, ["review"]);

    // A decision for a call that does not wait, or none for one that does: refused, still waiting.
    let wrong = Approval { decisions: [("zz".to_owned(), Decision::Approve)].into() };
    let err = graph.resume(&thread, Resume::with(&wrong).unwrap(), &ctx).await.unwrap_err();
    assert!(err.to_string().contains("no decision for `n1` (save_note)"), "{err}");
    let err = graph.resume(&thread, Resume::with(&json!({"nope": 1})).unwrap(), &ctx).await.unwrap_err();
    assert!(err.to_string().contains("does not fit what it expects"), "{err}");
    assert_eq!(graph.state(&thread).await.unwrap().unwrap().interrupts.len(), 1);

    let approval = Approval::all(
        &request(&Outcome::Interrupted { state: pending.state, interrupts: pending.interrupts }),
        &Decision::Approve,
    );
    let out = done(&graph.resume(&thread, Resume::with(&approval).unwrap(), &ctx).await.unwrap());
    assert_eq!(out.answer, "Saved your note; 6 * 7 = 42.");
    assert_eq!(*notes.0.lock().unwrap(), ["buy milk"]);
    let observations: Vec<&str> = out.steps.iter().map(|s| s.observation.as_str()).collect();
    assert_eq!(observations, ["saved: buy milk", "42"]);
    assert_eq!(model.requests().len(), 1);
}

#[tokio::test]
async fn edits_change_the_arguments_and_rejections_reach_the_model() {
    let notes = SaveNote::default();
    let replies = vec![
        ScriptedReply::ToolCalls(vec![save("n1", "draft")]),
        ScriptedReply::ToolCalls(vec![save("n2", "second")]),
        ScriptedReply::Text("Done.".into()),
    ];
    let (graph, model) = agent_graph(replies, &notes, Arc::new(MemoryCheckpointer::new()));
    let (thread, ctx) = (Thread::new("t"), RunContext::new());
    graph.invoke(&thread, AgentRun::ask("Save two notes"), &ctx).await.unwrap();
    let edit = Approval {
        decisions: [("n1".to_owned(), Decision::Edit { arguments: json!({"text": "final"}) })].into(),
    };
    let paused = graph.resume(&thread, Resume::with(&edit).unwrap(), &ctx).await.unwrap();
    assert_eq!(request(&paused).calls[0].id, "n2");
    let reject = Approval {
        decisions: [(
            "n2".to_owned(),
            Decision::Reject { message: "Not this one: the user declined.".into() },
        )]
        .into(),
    };
    let out = done(&graph.resume(&thread, Resume::with(&reject).unwrap(), &ctx).await.unwrap());
    assert_eq!(out.answer, "Done.");
    assert_eq!(*notes.0.lock().unwrap(), ["final"]);
    // The model read the rejection as the call's result.
    let last = model.requests().last().unwrap().messages.last().unwrap().clone();
    assert_eq!((last.role, last.content.as_str()), (Role::Tool, "Not this one: the user declined."));
}

#[tokio::test]
async fn limits_stop_a_graph_run_as_they_stop_the_executor() {
    let notes = SaveNote::default();
    let replies: Vec<ScriptedReply> =
        (0..4).map(|i| ScriptedReply::ToolCalls(vec![calc(&format!("c{i}"), &format!("{i} + 1"))])).collect();
    let (graph, _) = agent_graph(replies, &notes, Arc::new(MemoryCheckpointer::new()));
    let out =
        done(&graph.invoke(&Thread::new("t"), AgentRun::ask("count"), &RunContext::new()).await.unwrap());
    assert_eq!(out.stop, StopReason::MaxIterations);
    assert_eq!(out.steps.len(), 4);
    assert!(out.answer.contains("stopped because of the iteration limit"), "{}", out.answer);

    // The same call again and again is a loop.
    let replies: Vec<ScriptedReply> =
        (0..4).map(|_| ScriptedReply::ToolCalls(vec![calc("x", "1 + 1")])).collect();
    let (graph, _) = agent_graph(replies, &notes, Arc::new(MemoryCheckpointer::new()));
    let out =
        done(&graph.invoke(&Thread::new("t"), AgentRun::ask("loop"), &RunContext::new()).await.unwrap());
    assert_eq!(out.stop, StopReason::Looping);
}

#[tokio::test]
async fn a_repeated_call_needs_no_second_approval_and_ids_stay_unique() {
    let notes = SaveNote::default();
    // The model repeats its approved call, reusing its id (as a restarted local model does).
    let replies = vec![
        ScriptedReply::ToolCalls(vec![save("call_0", "buy milk")]),
        ScriptedReply::ToolCalls(vec![save("call_0", "buy milk")]),
        ScriptedReply::Text("Saved.".into()),
    ];
    let (graph, model) = agent_graph(replies, &notes, Arc::new(MemoryCheckpointer::new()));
    let (thread, ctx) = (Thread::new("t"), RunContext::new());
    let paused = graph.invoke(&thread, AgentRun::ask("Note: buy milk"), &ctx).await.unwrap();
    let approval = Approval::all(&request(&paused), &Decision::Approve);
    let out = done(&graph.resume(&thread, Resume::with(&approval).unwrap(), &ctx).await.unwrap());
    assert_eq!(out.answer, "Saved.");
    assert_eq!(*notes.0.lock().unwrap(), ["buy milk"]);
    let ids: Vec<&str> = out.steps.iter().filter_map(|s| s.call.as_ref()).map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["call_0", "call_1_0"]);
    assert!(
        out.steps[1].observation.starts_with("You already called save_note"),
        "{}",
        out.steps[1].observation
    );
    assert_eq!(model.requests().len(), 3);
}
