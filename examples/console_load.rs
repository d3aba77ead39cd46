//! How long the console's trace explorer takes to open a 10,000-span run in headless Chromium
//! (`make bench` runs it; docs/benchmarks.md has the figures).
//!
//! The run is made the way catena's own code makes one, through `tracing` spans recorded by a
//! [`TraceStore`] layer: an agent span over 3,333 steps, each a graph step with a chat call and a
//! tool call under it, with tokens recorded on the calls. The console is served on loopback and
//! opened in headless Chromium; the time is from asking for the run to its span tree on screen
//! (the fetch of the spans' JSON, the tree's layout and its first paint), the median of 5 opens.
//!
//! Run it: `cargo run --example console_load`.

#[path = "../tests/common/browser.rs"]
mod browser;

use std::time::{Duration, Instant};

use catena::core::Result;
use catena::core::telemetry::TARGET;
use catena::serve::{Console, Server};
use catena::traces::{Retention, TraceStore};
use tracing_subscriber::layer::SubscriberExt as _;

const STEPS: usize = 3_333;

/// One agent run of `1 + 3 × STEPS` spans.
fn make_run(run_id: &str) {
    let agent = tracing::info_span!(target: TARGET, "invoke_agent", otel.name = "invoke_agent load",
        openinference.span.kind = "AGENT", catena.run.id = run_id);
    let _agent = agent.enter();
    for step in 0..STEPS {
        let node = tracing::info_span!(target: TARGET, "graph_step", otel.name = "agent step",
            openinference.span.kind = "CHAIN", catena.graph.step = step as i64);
        let _node = node.enter();
        drop(tracing::info_span!(target: TARGET, "chat", otel.name = "chat qwen2.5",
            openinference.span.kind = "LLM", gen_ai.usage.input_tokens = 512_i64,
            gen_ai.usage.output_tokens = 24_i64));
        drop(tracing::info_span!(target: TARGET, "execute_tool", otel.name = "execute_tool calculator",
            openinference.span.kind = "TOOL", gen_ai.tool.name = "calculator"));
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| catena::core::Error::io("a temporary folder", e))?;
    let store = TraceStore::open(dir.path().join("traces.db"), Retention::default()).await?;
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(store.layer()));
    let made = Instant::now();
    tracing::dispatcher::with_default(&dispatch, || make_run("load"));
    store.flush().await?;
    let spans = store.run("load").await?.map_or(0, |run| run.spans.len());
    println!("stored a run of {spans} spans in {:.0} ms", made.elapsed().as_secs_f64() * 1e3);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| catena::core::Error::io("127.0.0.1:0", e))?;
    let url =
        format!("http://{}/", listener.local_addr().map_err(|e| catena::core::Error::io("listener", e))?);
    let server = Server::new().with_traces(store).with_console(Console::default());
    tokio::spawn(server.serve(listener, std::future::pending()));

    let chromium = browser::Chromium::launch(1280, 900).await;
    let (page, console) = chromium.page().await;
    page.goto(url.as_str()).await.map_err(|e| catena::core::Error::invalid_input(e.to_string()))?;
    browser::wait_for(&page, "document.body.dataset.ready === '1'", Duration::from_secs(60), "the console")
        .await;
    let mut times = Vec::new();
    for _ in 0..5 {
        let _: bool =
            browser::eval(&page, "(document.querySelector('#run-detail').dataset.runId = '', true)").await;
        let started = Instant::now();
        let _: bool = browser::eval(&page, "(openTrace('load'), true)").await;
        // Rendered, and painted: the next animation frame comes after the layout and paint.
        browser::wait_for(
            &page,
            "document.querySelector('#run-detail').dataset.runId === 'load'",
            Duration::from_secs(120),
            "the trace",
        )
        .await;
        let _: bool = browser::eval(&page, "new Promise(r => requestAnimationFrame(() => r(true)))").await;
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    let rows: usize = browser::eval(&page, "document.querySelectorAll('#run-detail .span-row').length").await;
    times.sort_by(f64::total_cmp);
    let at = |i: usize| times.get(i).copied().unwrap_or(f64::NAN);
    println!(
        "console: a {rows}-span run opens in {:.0} ms (median of 5; min {:.0}, max {:.0}) in headless Chromium",
        at(2),
        at(0),
        at(4)
    );
    let messages = console.messages();
    if !messages.is_empty() {
        println!("browser console: {messages:?}");
    }
    Ok(())
}
