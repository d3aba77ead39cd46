//! Crash safety: a graph run on SQLite is killed with SIGKILL at every point of every node (before
//! its side effect, inside the effect's transaction, after the effect and before the node's
//! update is saved), then resumed by a new process. Every node's side effect happens exactly once
//! (effects are keyed on `NodeContext::task_key`, stable across re-runs), and the final state
//! equals an uninterrupted run's. The child processes are this test binary, re-run with
//! `CATENA_GRAPH_CRASH_CHILD` set. `CATENA_GRAPH_CRASH_RUNS` sets how many kills (default: one
//! per point; `make bench` runs more).
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic, missing_docs)]

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use catena_agents::graph::{
    END, GraphState, NodeContext, Resume, START, SqliteCheckpointer, StateGraph, Thread,
};
use catena_core::RunContext;
use serde::{Deserialize, Serialize};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};

const CHILD: &str = "CATENA_GRAPH_CRASH_CHILD";
const KILL_AT: &str = "CATENA_GRAPH_KILL_AT";
const NODES: [&str; 5] = ["a", "b", "c", "d", "e"];
const PHASES: [&str; 3] = ["start", "in-effect", "after-effect"];

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, GraphState)]
struct Flow {
    #[state(append)]
    visited: Vec<String>,
}

/// Kills this process with SIGKILL when `KILL_AT` names this point.
fn kill_point(node: &str, phase: &str) {
    if std::env::var(KILL_AT).ok().as_deref() == Some(&format!("{node}:{phase}")) {
        let _ = Command::new("kill").args(["-KILL", &std::process::id().to_string()]).status();
        std::thread::sleep(std::time::Duration::from_secs(30));
        unreachable!("SIGKILL did not arrive");
    }
}

async fn effects_pool(dir: &Path) -> SqlitePool {
    let options = SqliteConnectOptions::new().filename(dir.join("effects.db")).create_if_missing(true);
    let pool = SqlitePool::connect_with(options).await.unwrap();
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS effects (key TEXT PRIMARY KEY, node TEXT NOT NULL);
         CREATE TABLE IF NOT EXISTS counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL);
         INSERT OR IGNORE INTO counter (id, n) VALUES (1, 0);",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool
}

/// One node: records its effect under its task key (node `d` also bumps a counter, in the same
/// transaction, only when the effect is new), with kill points around it.
fn node(
    name: &'static str,
    pool: SqlitePool,
) -> impl Fn(Flow, NodeContext) -> std::pin::Pin<Box<dyn Future<Output = catena_core::Result<FlowUpdate>> + Send>>
+ Send
+ Sync {
    move |_, ctx| {
        let pool = pool.clone();
        Box::pin(async move {
            kill_point(name, "start");
            let mut tx = pool.begin().await.unwrap();
            let fresh = sqlx::query("INSERT OR IGNORE INTO effects (key, node) VALUES (?, ?)")
                .bind(ctx.task_key())
                .bind(name)
                .execute(&mut *tx)
                .await
                .unwrap()
                .rows_affected()
                == 1;
            if fresh && name == "d" {
                sqlx::query("UPDATE counter SET n = n + 1 WHERE id = 1").execute(&mut *tx).await.unwrap();
            }
            kill_point(name, "in-effect");
            tx.commit().await.unwrap();
            kill_point(name, "after-effect");
            Ok(FlowUpdate::default().visited(vec![name.to_owned()]))
        })
    }
}

/// The child: runs (or resumes) the graph in `CATENA_GRAPH_CRASH_CHILD`'s folder and prints the
/// final state. Does nothing in a normal test run.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD) else { return };
    let dir = Path::new(&dir).to_path_buf();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let pool = effects_pool(&dir).await;
        let saver = SqliteCheckpointer::open(dir.join("graph.db")).await.unwrap();
        // a, then b and c in parallel, then d (the counter), then e.
        let graph = StateGraph::<Flow>::new()
            .node("a", node("a", pool.clone()))
            .node("b", node("b", pool.clone()))
            .node("c", node("c", pool.clone()))
            .node("d", node("d", pool.clone()))
            .node("e", node("e", pool.clone()))
            .edge(START, "a")
            .edge("a", "b")
            .edge("a", "c")
            .edge("b", "d")
            .edge("c", "d")
            .edge("d", "e")
            .edge("e", END)
            .compile()
            .unwrap()
            .with_checkpointer(Arc::new(saver));
        let (thread, ctx) = (Thread::new("job"), RunContext::new());
        let outcome = match graph.state(&thread).await.unwrap() {
            None => graph.invoke(&thread, FlowUpdate::default(), &ctx).await.unwrap(),
            Some(_) => graph.resume(&thread, Resume::Continue, &ctx).await.unwrap(),
        };
        // On a line of its own: the test harness has written "test crash_child ... " before it.
        println!("\nFINAL_STATE {}", serde_json::to_string(outcome.state()).unwrap());
    });
}

fn run_child(dir: &Path, kill_at: Option<&str>) -> std::process::Output {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.args(["--exact", "crash_child", "--nocapture", "--test-threads=1"]).env(CHILD, dir);
    match kill_at {
        Some(point) => command.env(KILL_AT, point),
        None => command.env_remove(KILL_AT),
    };
    command.output().unwrap()
}

fn final_state(output: &std::process::Output) -> Flow {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("FINAL_STATE "))
        .unwrap_or_else(|| panic!("no final state: {stdout}\n{}", String::from_utf8_lossy(&output.stderr)));
    serde_json::from_str(line).unwrap()
}

async fn effects(dir: &Path) -> (Vec<(String, i64)>, i64) {
    let pool = effects_pool(dir).await;
    let per_node: Vec<(String, i64)> =
        sqlx::query_as("SELECT node, COUNT(*) FROM effects GROUP BY node ORDER BY node")
            .fetch_all(&pool)
            .await
            .unwrap();
    let counter: i64 =
        sqlx::query_scalar("SELECT n FROM counter WHERE id = 1").fetch_one(&pool).await.unwrap();
    (per_node, counter)
}

#[test]
fn sigkill_anywhere_then_resume_runs_every_effect_once_and_ends_in_the_same_state() {
    if std::env::var(CHILD).is_ok() {
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let reference_dir = tempfile::tempdir().unwrap();
    let reference = final_state(&run_child(reference_dir.path(), None));
    assert_eq!(reference.visited, ["a", "b", "c", "d", "e"]);
    let once: Vec<(String, i64)> = NODES.iter().map(|n| ((*n).to_owned(), 1)).collect();
    assert_eq!(rt.block_on(effects(reference_dir.path())), (once.clone(), 1));

    let points: Vec<String> =
        NODES.iter().flat_map(|n| PHASES.iter().map(move |p| format!("{n}:{p}"))).collect();
    let runs =
        std::env::var("CATENA_GRAPH_CRASH_RUNS").ok().and_then(|r| r.parse().ok()).unwrap_or(points.len());
    for run in 0..runs {
        let point = &points[run % points.len()];
        let dir = tempfile::tempdir().unwrap();
        let killed = run_child(dir.path(), Some(point));
        assert_eq!(killed.status.signal(), Some(9), "{point}: the child was not killed: {killed:?}");
        let resumed = run_child(dir.path(), None);
        assert!(resumed.status.success(), "{point}: {}", String::from_utf8_lossy(&resumed.stderr));
        assert_eq!(final_state(&resumed), reference, "{point}");
        assert_eq!(rt.block_on(effects(dir.path())), (once.clone(), 1), "{point}");
    }
}
