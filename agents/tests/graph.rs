//! State graphs: shape checks at compile time, reducers, branches, loops, fan-out and joins,
//! interrupts and resume (in memory and across SQLite reopenings), re-running only unfinished
//! tasks, time travel, state edits, streaming, migrations, subgraphs.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use catena_agents::graph::{
    Checkpointer, CompiledGraph, END, Goto, GraphEvent, GraphState, MemoryCheckpointer, NodeContext, Outcome,
    PendingWrite, PostgresCheckpointer, Resume, Retention, START, SqliteCheckpointer, StateGraph, StreamMode,
    Subgraph, Thread,
};
use catena_core::testing::ScriptedChatModel;
use catena_core::{ChatModel, ChatRequest, ErrorKind, Message, Result, RunContext};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

fn add(total: &mut u64, more: u64) {
    *total += more;
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, GraphState)]
struct Work {
    #[state(append)]
    log: Vec<String>,
    #[state(reducer = add)]
    total: u64,
    topic: String,
    items: Vec<u64>,
}

fn log(line: &str) -> WorkUpdate {
    WorkUpdate::default().log(vec![line.to_owned()])
}

fn say(
    line: &'static str,
) -> impl Fn(Work, NodeContext) -> std::future::Ready<Result<WorkUpdate>> + Send + Sync {
    move |_, _| std::future::ready(Ok(log(line)))
}

fn memory() -> Arc<MemoryCheckpointer> {
    Arc::new(MemoryCheckpointer::new())
}

#[test]
fn compile_names_every_node_that_does_not_fit_the_graph() {
    let err = StateGraph::<Work>::new()
        .node("a", say("a"))
        .node("b", say("b"))
        .node("island", say("i"))
        .node("dead_end", say("d"))
        .node("a", say("again"))
        .edge(START, "a")
        .edge("a", "b")
        .edge("a", "dead_end")
        .edge("b", "nowhere")
        .edge("b", END)
        .conditional_edge("a", ["ghost", END], |_: &Work| vec![Goto::End])
        .compile()
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let message = err.to_string();
    for expected in [
        "node `a` is added twice",
        "the edge from `b` goes to unknown node `nowhere`",
        "the conditional edge from `a` may go to unknown node `ghost`",
        "node `island` is unreachable",
        "node `dead_end` has no path to END",
    ] {
        assert!(message.contains(expected), "{expected:?} missing from: {message}");
    }
    let err = StateGraph::<Work>::new().node("a", say("a")).edge("a", END).compile().err().unwrap();
    assert!(err.to_string().contains("add an edge from START"), "{err}");
}

#[tokio::test]
async fn reducers_merge_updates_and_a_thread_keeps_its_state_between_runs() {
    let graph = StateGraph::<Work>::new()
        .node("count", |work: Work, _ctx: NodeContext| async move {
            Ok(WorkUpdate::default()
                .total(work.items.iter().sum::<u64>())
                .log(vec![format!("counted {}", work.topic)]))
        })
        .edge(START, "count")
        .edge("count", END)
        .compile()
        .unwrap()
        .with_checkpointer(memory());
    let (thread, ctx) = (Thread::new("t"), RunContext::new());
    let first = graph
        .invoke(&thread, WorkUpdate::default().topic("apples").items(vec![1u64, 2]), &ctx)
        .await
        .unwrap();
    assert_eq!(first.state().total, 3);
    // The next run starts from the saved state: `total` adds up, `log` appends, `topic` is replaced.
    let second =
        graph.invoke(&thread, WorkUpdate::default().topic("pears").items(vec![10u64]), &ctx).await.unwrap();
    let state = second.into_state();
    assert_eq!(state.total, 13);
    assert_eq!(state.log, ["counted apples", "counted pears"]);
    assert_eq!(state.topic, "pears");
}

#[tokio::test]
async fn branches_loops_and_the_step_limit_names_the_looping_node() {
    // A loop that ends when the total reaches 5.
    let graph = || {
        StateGraph::<Work>::new()
            .node("inc", |_: Work, _: NodeContext| async { Ok(WorkUpdate::default().total(1u64)) })
            .edge(START, "inc")
            .conditional_edge("inc", ["inc", END], |w: &Work| {
                vec![if w.total >= 5 { Goto::End } else { Goto::to("inc") }]
            })
            .compile()
            .unwrap()
    };
    let ctx = RunContext::new();
    let done = graph().invoke(&Thread::new("t"), WorkUpdate::default(), &ctx).await.unwrap();
    assert_eq!(done.state().total, 5);
    let err =
        graph().with_step_limit(3).invoke(&Thread::new("t"), WorkUpdate::default(), &ctx).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LimitExceeded);
    assert!(err.to_string().contains("`inc` (ran 3 times in this run)"), "{err}");

    // A router that picks a node it did not declare is named.
    let liar = StateGraph::<Work>::new()
        .node("a", say("a"))
        .node("b", say("b"))
        .edge(START, "a")
        .conditional_edge("a", [END], |_: &Work| vec![Goto::to("b")])
        .edge("b", END)
        .edge(START, "b")
        .compile()
        .unwrap();
    let err = liar.invoke(&Thread::new("t"), WorkUpdate::default(), &ctx).await.unwrap_err();
    assert!(err.to_string().contains("routed to `b`, which it does not declare"), "{err}");
}

#[tokio::test]
async fn fan_out_sends_one_task_per_item_and_the_join_runs_once() {
    let joined = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&joined);
    let graph = StateGraph::<Work>::new()
        .node("square", |_: Work, ctx: NodeContext| async move {
            let n: u64 = ctx.input()?;
            Ok(WorkUpdate::default().total(n * n).log(vec![format!("squared {n}")]))
        })
        .node("side", say("side branch"))
        .node("join", move |w: Work, _: NodeContext| {
            seen.fetch_add(1, Ordering::SeqCst);
            async move { Ok(log(&format!("joined at {}", w.total))) }
        })
        .conditional_edge(START, ["square"], |w: &Work| {
            w.items.iter().map(|n| Goto::send("square", n).unwrap()).collect()
        })
        .edge(START, "side")
        .edge("square", "join")
        .edge("side", "join")
        .edge("join", END)
        .compile()
        .unwrap();
    let out = graph
        .invoke(&Thread::new("t"), WorkUpdate::default().items(vec![1u64, 2, 3]), &RunContext::new())
        .await
        .unwrap();
    let state = out.into_state();
    assert_eq!(state.total, 14);
    // Updates apply in scheduling order (plain edges, then routes), whichever task finished first.
    assert_eq!(state.log, ["side branch", "squared 1", "squared 2", "squared 3", "joined at 14"]);
    assert_eq!(joined.load(Ordering::SeqCst), 1);
}

/// draft -> approve (asks a person) -> apply (counts its side effect).
fn approval_graph(effects: Arc<AtomicUsize>) -> StateGraph<Work> {
    StateGraph::<Work>::new()
        .node("draft", say("drafted"))
        .node("approve", |w: Work, ctx: NodeContext| async move {
            let approved: bool =
                ctx.interrupt(&serde_json::json!({"question": "apply?", "topic": w.topic}))?;
            Ok(log(if approved { "approved" } else { "rejected" }))
        })
        .node("apply", move |_: Work, _: NodeContext| {
            effects.fetch_add(1, Ordering::SeqCst);
            async { Ok(log("applied")) }
        })
        .edge(START, "draft")
        .edge("draft", "approve")
        .edge("approve", "apply")
        .edge("apply", END)
}

#[tokio::test]
async fn interrupts_pause_the_run_and_resume_with_a_typed_answer() {
    let effects = Arc::new(AtomicUsize::new(0));
    let graph = approval_graph(Arc::clone(&effects)).compile().unwrap().with_checkpointer(memory());
    let (thread, ctx) = (Thread::new("t"), RunContext::new());
    let paused = graph.invoke(&thread, WorkUpdate::default().topic("rename"), &ctx).await.unwrap();
    let Outcome::Interrupted { state, interrupts } = &paused else { panic!("{paused:?}") };
    assert_eq!(state.log, ["drafted"]);
    assert_eq!(interrupts[0].node, "approve");
    assert_eq!(interrupts[0].payload["topic"], "rename");
    assert_eq!(effects.load(Ordering::SeqCst), 0);
    assert_eq!(graph.state(&thread).await.unwrap().unwrap().interrupts.len(), 1);

    // A new run on a paused thread, a resume without the answer, or with one of the wrong
    // shape, are refused, naming what is pending; the interrupt stays.
    let err = graph.invoke(&thread, WorkUpdate::default(), &ctx).await.unwrap_err();
    assert!(err.to_string().contains("node `approve` (task `0:approve`) asked"), "{err}");
    let err = graph.resume(&thread, Resume::Continue, &ctx).await.unwrap_err();
    assert!(err.to_string().contains("waits for a value: node `approve`"), "{err}");
    let err = graph.resume(&thread, Resume::with(&"yes please").unwrap(), &ctx).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("does not fit what it expects"), "{err}");
    assert_eq!(graph.state(&thread).await.unwrap().unwrap().next, ["approve"]);

    let done = graph.resume(&thread, Resume::with(&true).unwrap(), &ctx).await.unwrap();
    assert_eq!(done.state().log, ["drafted", "approved", "applied"]);
    assert_eq!(effects.load(Ordering::SeqCst), 1);
    let err = graph.resume(&thread, Resume::with(&true).unwrap(), &ctx).await.unwrap_err();
    assert!(err.to_string().contains("has nothing to resume"), "{err}");
    let err = graph.resume(&Thread::new("unknown"), Resume::Continue, &ctx).await.unwrap_err();
    assert!(err.to_string().contains("thread `unknown` has no checkpoints"), "{err}");
}

#[tokio::test]
async fn a_node_that_asks_twice_gets_each_answer_in_order() {
    let graph = StateGraph::<Work>::new()
        .node("form", |_: Work, ctx: NodeContext| async move {
            let name: String = ctx.interrupt(&"name?")?;
            let age: u64 = ctx.interrupt(&"age?")?;
            Ok(WorkUpdate::default().topic(name).total(age))
        })
        .edge(START, "form")
        .edge("form", END)
        .compile()
        .unwrap()
        .with_checkpointer(memory());
    let (thread, ctx) = (Thread::new("t"), RunContext::new());
    let first = graph.invoke(&thread, WorkUpdate::default(), &ctx).await.unwrap();
    assert_eq!(first.interrupts()[0].payload, "name?");
    let second = graph.resume(&thread, Resume::with(&"Ada").unwrap(), &ctx).await.unwrap();
    assert_eq!((second.interrupts()[0].payload.as_str(), second.interrupts()[0].index), (Some("age?"), 1));
    let done = graph.resume(&thread, Resume::with(&36).unwrap(), &ctx).await.unwrap();
    assert_eq!((done.state().topic.as_str(), done.state().total), ("Ada", 36));
}

#[tokio::test]
async fn a_failed_step_resumes_by_running_only_its_unfinished_tasks() {
    let effects = Arc::new(AtomicUsize::new(0));
    let attempts = Arc::new(AtomicUsize::new(0));
    let (fx, tries) = (Arc::clone(&effects), Arc::clone(&attempts));
    let graph = StateGraph::<Work>::new()
        .node("effect", move |_: Work, _: NodeContext| {
            fx.fetch_add(1, Ordering::SeqCst);
            async { Ok(log("effect")) }
        })
        .node("flaky", move |_: Work, _: NodeContext| {
            let attempt = tries.fetch_add(1, Ordering::SeqCst);
            async move {
                if attempt == 0 {
                    Err(catena_core::Error::model_transient("overloaded"))
                } else {
                    Ok(log("flaky"))
                }
            }
        })
        .node("after", say("after"))
        .edge(START, "effect")
        .edge(START, "flaky")
        .edge("effect", "after")
        .edge("flaky", "after")
        .edge("after", END)
        .compile()
        .unwrap()
        .with_checkpointer(memory());
    let (thread, ctx) = (Thread::new("t"), RunContext::new());
    let err = graph.invoke(&thread, WorkUpdate::default(), &ctx).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ModelTransient);
    let err = graph.invoke(&thread, WorkUpdate::default(), &ctx).await.unwrap_err();
    assert!(err.to_string().contains("resume it with Resume::Continue"), "{err}");
    let done = graph.resume(&thread, Resume::Continue, &ctx).await.unwrap();
    assert_eq!(done.state().log, ["effect", "flaky", "after"]);
    assert_eq!((effects.load(Ordering::SeqCst), attempts.load(Ordering::SeqCst)), (1, 2));
}

#[tokio::test]
async fn history_lists_every_step_and_a_run_can_fork_from_an_earlier_one() {
    let effects = Arc::new(AtomicUsize::new(0));
    let graph = approval_graph(effects).compile().unwrap().with_checkpointer(memory());
    let (thread, ctx) = (Thread::new("t"), RunContext::new());
    graph.invoke(&thread, WorkUpdate::default().topic("x"), &ctx).await.unwrap();
    graph.resume(&thread, Resume::with(&true).unwrap(), &ctx).await.unwrap();
    let history = graph.history(&thread).await.unwrap();
    let steps: Vec<(i64, Vec<String>, usize)> =
        history.iter().map(|s| (s.step, s.next.clone(), s.state.log.len())).collect();
    assert_eq!(
        steps,
        [
            (2, vec![], 3),
            (1, vec!["apply".to_owned()], 2),
            (0, vec!["approve".to_owned()], 1),
            (-1, vec!["draft".to_owned()], 0),
        ]
    );
    // Back to the checkpoint before approval, answered differently: a new branch.
    let before = history[2].checkpoint;
    let fork = Thread::new("t").at(before);
    let paused = graph.resume(&fork, Resume::Continue, &ctx).await.unwrap();
    assert_eq!(paused.interrupts()[0].node, "approve");
    let done = graph.resume(&thread, Resume::with(&false).unwrap(), &ctx).await.unwrap();
    assert_eq!(done.state().log, ["drafted", "rejected", "applied"]);
    // The original branch is still there.
    let original = graph.state(&Thread::new("t").at(history[0].checkpoint)).await.unwrap().unwrap();
    assert_eq!(original.state.log, ["drafted", "approved", "applied"]);
    let err = graph.state(&Thread::new("t").at(999)).await.unwrap_err();
    assert!(err.to_string().contains("has no checkpoint 999"), "{err}");
}

#[tokio::test]
async fn an_edit_while_paused_is_what_the_run_continues_with() {
    let graph = approval_graph(Arc::new(AtomicUsize::new(0))).compile().unwrap().with_checkpointer(memory());
    let (thread, ctx) = (Thread::new("t"), RunContext::new());
    graph.invoke(&thread, WorkUpdate::default().topic("draft 1"), &ctx).await.unwrap();
    graph.update_state(&thread, WorkUpdate::default().topic("draft 2")).await.unwrap();
    let pending = graph.state(&thread).await.unwrap().unwrap();
    assert_eq!((pending.state.topic.as_str(), pending.interrupts.len()), ("draft 2", 1));
    let done = graph.resume(&thread, Resume::with(&true).unwrap(), &ctx).await.unwrap();
    assert_eq!(done.state().topic, "draft 2");
}

#[tokio::test]
async fn a_store_whose_ids_or_steps_are_at_the_end_of_their_range_is_an_error_not_a_panic() {
    // Found by fuzzing (fuzz/corpus/graph_checkpoints/extreme-ids.json, step-at-max.json): the
    // next id and step were `+ 1`, which overflowed (a panic in debug builds, ids reused in
    // release ones) on a damaged or hand-edited store.
    let effects = Arc::new(AtomicUsize::new(0));
    let (thread, ctx) = (Thread::new("t"), RunContext::new());
    let paused = memory();
    let graph = approval_graph(effects.clone()).compile().unwrap().with_checkpointer(paused.clone());
    graph.invoke(&thread, WorkUpdate::default().topic("draft"), &ctx).await.unwrap();
    let mut checkpoints = paused.checkpoints("t").await.unwrap();
    let last = checkpoints.pop().unwrap();
    let pending = paused.pending("t", last.id).await.unwrap();
    for (id, step) in [(u64::MAX, last.step), (last.id, i64::MAX)] {
        // The same paused thread, its last checkpoint damaged.
        let damaged = memory();
        for checkpoint in &checkpoints {
            damaged.put("t", checkpoint).await.unwrap();
        }
        let mut last = last.clone();
        (last.id, last.step) = (id, step);
        damaged.put("t", &last).await.unwrap();
        for write in &pending {
            damaged.put_pending("t", id, write).await.unwrap();
        }
        let graph = approval_graph(effects.clone()).compile().unwrap().with_checkpointer(damaged);
        let error = graph.resume(&thread, Resume::with(&true).unwrap(), &ctx).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Store, "{error}");
        assert!(error.to_string().contains("at the end of its range"), "{error}");
    }
    assert_eq!(effects.load(Ordering::SeqCst), 0, "nothing ran past the damage");
}

#[tokio::test]
async fn a_new_thread_can_be_seeded_and_an_abandoned_run_makes_way_for_a_new_one() {
    let effects = Arc::new(AtomicUsize::new(0));
    let graph = approval_graph(Arc::clone(&effects)).compile().unwrap().with_checkpointer(memory());
    let (thread, ctx) = (Thread::new("t"), RunContext::new());
    // Seeding a thread never run (importing a conversation): nothing pending, a run continues it.
    graph.update_state(&thread, log("imported")).await.unwrap();
    let seeded = graph.state(&thread).await.unwrap().unwrap();
    assert_eq!((seeded.state.log.as_slice(), seeded.next.len()), (&["imported".to_owned()][..], 0));
    assert_eq!(graph.abandon(&thread).await.unwrap(), None, "nothing unfinished");
    graph.invoke(&thread, WorkUpdate::default(), &ctx).await.unwrap();
    assert_eq!(graph.state(&thread).await.unwrap().unwrap().state.log, ["imported", "drafted"]);

    // Abandoned while paused: nothing pending any more, the effect never ran, a new run starts.
    assert!(graph.abandon(&thread).await.unwrap().is_some());
    let now = graph.state(&thread).await.unwrap().unwrap();
    assert!(now.next.is_empty() && now.interrupts.is_empty(), "{now:?}");
    let err = graph.resume(&thread, Resume::with(&true).unwrap(), &ctx).await.unwrap_err();
    assert!(err.to_string().contains("has nothing to resume"), "{err}");
    let paused = graph.invoke(&thread, WorkUpdate::default(), &ctx).await.unwrap();
    assert_eq!(paused.interrupts().len(), 1);
    assert_eq!(effects.load(Ordering::SeqCst), 0);
    // The abandoned run is still in the history: a fork from it runs its unfinished task again.
    let history = graph.history(&thread).await.unwrap();
    let before = history.iter().find(|s| s.next == ["approve"] && s.state.log.len() == 2).unwrap();
    let fork = Thread::new("t").at(before.checkpoint);
    let asked = graph.resume(&fork, Resume::Continue, &ctx).await.unwrap();
    assert_eq!(asked.interrupts().len(), 1);
    let done = graph.resume(&thread, Resume::with(&true).unwrap(), &ctx).await.unwrap();
    assert_eq!(done.state().log, ["imported", "drafted", "approved", "applied"]);
    assert_eq!(effects.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn streams_report_values_updates_tokens_and_custom_events_together() {
    let model = Arc::new(ScriptedChatModel::new(["Hello there", "Hello again"]));
    let graph = StateGraph::<Work>::new()
        .node("chat", move |_: Work, ctx: NodeContext| {
            let model = Arc::clone(&model);
            async move {
                ctx.emit(serde_json::json!({"progress": "asking"}));
                let reply =
                    model.chat(ChatRequest::new(vec![Message::user("hi")]), ctx.run_context()).await?;
                Ok(log(&reply.message.content))
            }
        })
        .edge(START, "chat")
        .edge("chat", END)
        .compile()
        .unwrap();
    let (thread, ctx) = (Thread::new("t"), RunContext::new());
    let modes = [StreamMode::Values, StreamMode::Updates, StreamMode::Custom, StreamMode::Messages];
    let events: Vec<GraphEvent<Work>> =
        graph.stream(&thread, WorkUpdate::default(), &modes, &ctx).map(Result::unwrap).collect().await;
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| match e {
            GraphEvent::Values { .. } => "values",
            GraphEvent::Update { .. } => "update",
            GraphEvent::Token { .. } => "token",
            GraphEvent::Custom { .. } => "custom",
            GraphEvent::Finished(_) => "finished",
        })
        .collect();
    assert_eq!(kinds.first(), Some(&"values"));
    assert_eq!(&kinds[kinds.len() - 3..], ["update", "values", "finished"]);
    assert!(kinds.contains(&"custom") && kinds.contains(&"token"), "{kinds:?}");
    let text: String = events
        .iter()
        .filter_map(|e| match e {
            GraphEvent::Token { node, text } if node == "chat" => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(text.trim(), "Hello there");
    let GraphEvent::Finished(Outcome::Done(state)) = events.last().unwrap() else { panic!() };
    assert_eq!(state.log, ["Hello there"]);
    // Only the modes asked for.
    let only: Vec<_> =
        graph.stream(&thread, WorkUpdate::default(), &[StreamMode::Updates], &ctx).collect().await;
    assert_eq!(only.len(), 2, "{only:?}");
}

#[tokio::test]
async fn a_panicking_node_fails_its_run_and_the_run_resumes_once_it_is_fixed() {
    let broken = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flag = Arc::clone(&broken);
    let graph = StateGraph::<Work>::new()
        .node("fine", say("fine"))
        .node("fragile", move |_: Work, _: NodeContext| {
            let broken = flag.load(Ordering::SeqCst);
            async move {
                assert!(!broken, "fragile node exploded");
                Ok(log("fragile"))
            }
        })
        .edge(START, "fine")
        .edge(START, "fragile")
        .edge("fine", END)
        .edge("fragile", END)
        .compile()
        .unwrap()
        .with_checkpointer(memory());
    let (thread, ctx) = (Thread::new("t"), RunContext::new());
    let err = graph.invoke(&thread, WorkUpdate::default(), &ctx).await.unwrap_err();
    assert!(err.to_string().contains("node `fragile` panicked: fragile node exploded"), "{err}");
    broken.store(false, Ordering::SeqCst);
    let done = graph.resume(&thread, Resume::Continue, &ctx).await.unwrap();
    assert_eq!(done.state().log, ["fine", "fragile"]);
}

#[tokio::test]
async fn a_subgraph_runs_as_one_node() {
    let inner = StateGraph::<Work>::new()
        .node("double", |w: Work, _: NodeContext| async move { Ok(WorkUpdate::default().total(w.total)) })
        .edge(START, "double")
        .edge("double", END)
        .compile()
        .unwrap();
    let outer = StateGraph::<Work>::new()
        .node(
            "sub",
            Subgraph::new(
                inner,
                |w: &Work| WorkUpdate::default().total(w.items.iter().sum::<u64>()),
                |done: Work| WorkUpdate::default().log(vec![format!("sub says {}", done.total)]),
            ),
        )
        .edge(START, "sub")
        .edge("sub", END)
        .compile()
        .unwrap();
    let out = outer
        .invoke(&Thread::new("t"), WorkUpdate::default().items(vec![2u64, 3]), &RunContext::new())
        .await
        .unwrap();
    assert_eq!(out.state().log, ["sub says 10"]);
}

async fn sqlite_graph(path: &std::path::Path, effects: Arc<AtomicUsize>) -> CompiledGraph<Work> {
    let saver = SqliteCheckpointer::open(path).await.unwrap();
    approval_graph(effects).compile().unwrap().with_checkpointer(Arc::new(saver))
}

#[tokio::test]
async fn an_interrupted_run_resumes_in_another_process_from_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("graph.db");
    let effects = Arc::new(AtomicUsize::new(0));
    let ctx = RunContext::new();
    {
        let graph = sqlite_graph(&path, Arc::clone(&effects)).await;
        let paused =
            graph.invoke(&Thread::new("t1"), WorkUpdate::default().topic("persist"), &ctx).await.unwrap();
        assert_eq!(paused.interrupts().len(), 1);
    }
    // A new store and graph on the same file: what a restarted process has.
    let graph = sqlite_graph(&path, Arc::clone(&effects)).await;
    let pending = graph.state(&Thread::new("t1")).await.unwrap().unwrap();
    assert_eq!(
        (pending.next.as_slice(), pending.interrupts[0].payload["topic"].as_str()),
        (&["approve".to_owned()][..], Some("persist"))
    );
    let done = graph.resume(&Thread::new("t1"), Resume::with(&true).unwrap(), &ctx).await.unwrap();
    assert_eq!(done.state().log, ["drafted", "approved", "applied"]);
    assert_eq!(effects.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn sqlite_stores_deltas_so_bytes_grow_linearly_and_bad_rows_are_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    let saver = Arc::new(SqliteCheckpointer::open(dir.path().join("g.db")).await.unwrap());
    let graph = StateGraph::<Work>::new()
        .node("turn", |w: Work, _: NodeContext| async move {
            Ok(log(&format!("turn {} of a long conversation", w.log.len())))
        })
        .edge(START, "turn")
        .edge("turn", END)
        .compile()
        .unwrap()
        .with_checkpointer(Arc::clone(&saver) as Arc<dyn Checkpointer>);
    let (thread, ctx) = (Thread::new("chat"), RunContext::new());
    let mut bytes = Vec::new();
    for turn in 1..=200 {
        graph.invoke(&thread, WorkUpdate::default(), &ctx).await.unwrap();
        if turn == 100 || turn == 200 {
            bytes.push(saver.stored_bytes("chat").await.unwrap());
        }
    }
    assert_eq!(graph.state(&thread).await.unwrap().unwrap().state.log.len(), 200);
    // Twice the turns, about twice the bytes (a whole-state copy per step would be about 4x).
    let ratio = bytes[1] as f64 / bytes[0] as f64;
    assert!((1.9..2.2).contains(&ratio), "{bytes:?}");

    // A corrupted row is moved aside; the thread's earlier checkpoints still read.
    let pool =
        sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.path().join("g.db").display())).await.unwrap();
    sqlx::query("UPDATE graph_checkpoints SET data = 'not json' WHERE thread = 'chat' AND id = 398")
        .execute(&pool)
        .await
        .unwrap();
    let err = graph.state(&thread).await.unwrap_err();
    assert!(err.to_string().contains("missing checkpoint"), "{err}");
    let moved: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM graph_quarantine").fetch_one(&pool).await.unwrap();
    assert_eq!(moved, 1);
    let earlier = graph.state(&Thread::new("chat").at(397)).await.unwrap().unwrap();
    assert_eq!(earlier.state.log.len(), 199);
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, GraphState)]
struct Renamed {
    #[state(append)]
    entries: Vec<String>,
}

#[tokio::test]
async fn a_changed_state_type_fails_clearly_unless_migrated() {
    let saver = memory();
    let old = StateGraph::<Work>::new()
        .node("a", say("written by the old type"))
        .edge(START, "a")
        .edge("a", END)
        .compile()
        .unwrap()
        .with_checkpointer(Arc::clone(&saver) as Arc<dyn Checkpointer>);
    let ctx = RunContext::new();
    old.invoke(&Thread::new("t"), WorkUpdate::default(), &ctx).await.unwrap();
    let new = || {
        StateGraph::<Renamed>::new()
            .node("a", |_: Renamed, _: NodeContext| async { Ok(RenamedUpdate::default()) })
            .edge(START, "a")
            .edge("a", END)
            .compile()
            .unwrap()
            .with_checkpointer(Arc::clone(&saver) as Arc<dyn Checkpointer>)
    };
    // Unknown fields are not an error for serde; a field of another type is.
    let other = StateGraph::<Other>::new()
        .node("a", |_: Other, _: NodeContext| async { Ok(OtherUpdate::default().entries(7u64)) })
        .edge(START, "a")
        .edge("a", END)
        .compile()
        .unwrap()
        .with_checkpointer(Arc::clone(&saver) as Arc<dyn Checkpointer>);
    other.invoke(&Thread::new("typed"), OtherUpdate::default(), &ctx).await.unwrap();
    let err = new().state(&Thread::new("typed")).await.unwrap_err();
    assert!(err.to_string().contains("no longer fits the state type"), "{err}");
    assert!(err.to_string().contains("with_migration"), "{err}");
    let migrated = new().with_migration(|_, update| {
        if let Some(obj) = update.as_object_mut() {
            if let Some(log) = obj.remove("log") {
                obj.insert("entries".into(), log);
            }
            obj.remove("total");
        }
        Ok(())
    });
    let state = migrated.state(&Thread::new("t")).await.unwrap().unwrap().state;
    assert_eq!(state.entries, ["written by the old type"]);
}

/// The same field name as [`Renamed`], another type.
#[derive(Clone, Debug, Default, Serialize, Deserialize, GraphState)]
struct Other {
    entries: u64,
}

/// A database of its own in the server `scripts/with-postgres.sh` started (`None`, skipped, when
/// the tests run without one and do not require it).
async fn postgres_checkpointer(name: &str) -> Option<PostgresCheckpointer> {
    let Ok(admin) = std::env::var("CATENA_PG_URL") else {
        assert!(
            std::env::var_os("CATENA_REQUIRE_DATA").is_none(),
            "CATENA_PG_URL is not set; run the tests through scripts/with-postgres.sh"
        );
        eprintln!("CATENA_PG_URL not set (scripts/with-postgres.sh): PostgreSQL checkpointer skipped");
        return None;
    };
    let server = sqlx::PgPool::connect(&admin).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name}")))
        .execute(&server)
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&server).await.unwrap();
    let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    Some(PostgresCheckpointer::connect(&url).await.unwrap())
}

#[tokio::test]
async fn every_checkpointer_keeps_runs_forks_and_pending_writes_alike() {
    let dir = tempfile::tempdir().unwrap();
    let mut savers: Vec<(&str, Arc<dyn Checkpointer>)> = vec![
        ("memory", memory()),
        ("sqlite", Arc::new(SqliteCheckpointer::open(dir.path().join("c.db")).await.unwrap())),
    ];
    if let Some(pg) = postgres_checkpointer("catena_graph_test").await {
        savers.push(("postgres", Arc::new(pg)));
    }
    for (name, saver) in savers {
        let effects = Arc::new(AtomicUsize::new(0));
        let graph =
            approval_graph(Arc::clone(&effects)).compile().unwrap().with_checkpointer(Arc::clone(&saver));
        let ctx = RunContext::new();
        for thread in ["one", "two"] {
            let paused =
                graph.invoke(&Thread::new(thread), WorkUpdate::default().topic(thread), &ctx).await.unwrap();
            assert_eq!(paused.interrupts()[0].payload["topic"], thread, "{name}");
        }
        let done = graph.resume(&Thread::new("one"), Resume::with(&true).unwrap(), &ctx).await.unwrap();
        assert_eq!(done.state().log, ["drafted", "approved", "applied"], "{name}");
        // Thread two is untouched by thread one's run, and still waits.
        let two = graph.state(&Thread::new("two")).await.unwrap().unwrap();
        assert_eq!((two.state.topic.as_str(), two.interrupts.len()), ("two", 1), "{name}");
        assert_eq!(saver.threads().await.unwrap(), ["one", "two"], "{name}");
        // A fork of thread one before approval, rejected this time; the fork is the latest.
        let history = graph.history(&Thread::new("one")).await.unwrap();
        let before = history.iter().find(|s| s.next == ["approve"]).unwrap().checkpoint;
        graph.resume(&Thread::new("one").at(before), Resume::Continue, &ctx).await.unwrap();
        let rejected = graph.resume(&Thread::new("one"), Resume::with(&false).unwrap(), &ctx).await.unwrap();
        assert_eq!(rejected.state().log, ["drafted", "rejected", "applied"], "{name}");
        assert_eq!(effects.load(Ordering::SeqCst), 2, "{name}");
        // A later pending write of a task replaces its earlier one; a checkpoint absorbs them.
        let write = |update: &str| {
            PendingWrite::Done(catena_agents::graph::Write {
                node: "n".into(),
                task: "0:n".into(),
                update: serde_json::json!({"topic": update}),
            })
        };
        saver.put_pending("three", 7, &write("first")).await.unwrap();
        saver.put_pending("three", 7, &write("second")).await.unwrap();
        assert_eq!(saver.pending("three", 7).await.unwrap(), [write("second")], "{name}");
        saver.delete_thread("two").await.unwrap();
        assert!(graph.state(&Thread::new("two")).await.unwrap().is_none(), "{name}");

        // Trimming keeps the state: the oldest kept checkpoint carries everything before it.
        let counter = counting_graph(Arc::clone(&saver), Retention::All);
        for _ in 0..12 {
            counter.invoke(&Thread::new("long"), WorkUpdate::default(), &ctx).await.unwrap();
        }
        let before = counter.history(&Thread::new("long")).await.unwrap();
        assert_eq!(before.len(), 24, "{name}");
        let deleted = counter.prune(&Thread::new("long"), Retention::KeepLast(5)).await.unwrap();
        assert_eq!(deleted, 19, "{name}");
        let after = counter.history(&Thread::new("long")).await.unwrap();
        assert_eq!(after.len(), 5, "{name}");
        assert_eq!(after[0].state, before[0].state, "{name}");
        assert_eq!(after[4].state, before[4].state, "{name}");
        let oldest_deleted = before[5].checkpoint;
        assert!(counter.state(&Thread::new("long").at(oldest_deleted)).await.is_err(), "{name}");
        // And the thread goes on from its state.
        let next = counter.invoke(&Thread::new("long"), WorkUpdate::default(), &ctx).await.unwrap();
        assert_eq!(next.state().total, 13, "{name}");
    }
}

/// One node that adds 1 to `total` per run.
fn counting_graph(saver: Arc<dyn Checkpointer>, retention: Retention) -> CompiledGraph<Work> {
    StateGraph::<Work>::new()
        .node("count", |_: Work, _: NodeContext| async { Ok(WorkUpdate::default().total(1u64)) })
        .edge(START, "count")
        .edge("count", END)
        .compile()
        .unwrap()
        .with_checkpointer(saver)
        .with_retention(retention)
}

#[tokio::test]
async fn retention_bounds_a_long_threads_storage_without_losing_its_state() {
    let dir = tempfile::tempdir().unwrap();
    let saver = Arc::new(SqliteCheckpointer::open(dir.path().join("r.db")).await.unwrap());
    let graph = counting_graph(Arc::clone(&saver) as Arc<dyn Checkpointer>, Retention::KeepLast(10));
    let (thread, ctx) = (Thread::new("t"), RunContext::new());
    let mut bytes = Vec::new();
    for turn in 1..=200 {
        graph.invoke(&thread, WorkUpdate::default(), &ctx).await.unwrap();
        if turn % 50 == 0 {
            bytes.push(saver.stored_bytes("t").await.unwrap());
        }
    }
    assert_eq!(graph.state(&thread).await.unwrap().unwrap().state.total, 200);
    // Trimmed when past twice the kept count: never more than 20 checkpoints, flat bytes.
    let kept = graph.history(&thread).await.unwrap().len();
    assert!((10..=20).contains(&kept), "{kept}");
    assert!(bytes.iter().max().unwrap() < &(bytes.iter().min().unwrap() * 2), "{bytes:?}");
    // A zero age keeps only what was written this millisecond (this run's two checkpoints at most).
    let aged = counting_graph(
        Arc::clone(&saver) as Arc<dyn Checkpointer>,
        Retention::MaxAge(std::time::Duration::ZERO),
    );
    aged.invoke(&thread, WorkUpdate::default(), &ctx).await.unwrap();
    let history = aged.history(&thread).await.unwrap();
    assert!(history.len() <= 2, "{}", history.len());
    assert_eq!(history[0].state.total, 201);
}
