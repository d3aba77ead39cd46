//! The web console of `catena serve --console`, driven in a real headless Chromium as a person
//! uses it: chat with the local model and watch the tokens stream, open the run's trace, ask the
//! agent for a side-effecting call and approve it, read an eval report; with the browser's
//! console empty throughout, screenshots that show something, nothing injected by what is shown,
//! and a page that fits a narrow window. A page with a deliberate error shows the console check
//! can fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/browser.rs"]
mod browser;
#[path = "common/console.rs"]
mod console_server;

use std::process::Command;
use std::time::Duration;

use browser::{Chromium, eval, painted_fraction, screenshot, wait_for};
use console_server::{Served, serve_console};

/// `catena serve --console` on the agent model with an agent folder and an eval folder; returns
/// the console's address. Greedy by default (`--temperature 0`): a sampled reply may be one short
/// word, and then "it streamed" cannot be seen.
fn serve(dir: &std::path::Path, extra: &[&str]) -> (Served, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_catena"));
    command
        .args([
            "serve",
            "--model",
            "agent",
            "--addr",
            "127.0.0.1:0",
            "--temperature",
            "0",
            "--console",
            "--agent",
        ])
        .arg(dir.join("agent"))
        .arg("--traces")
        .arg(dir.join("traces.db"))
        .arg("--evals")
        .arg(dir.join("evals"))
        .args(extra);
    serve_console(command)
}

/// An eval report as `catena eval rag --out` writes it, with a hostile name and content.
fn write_eval_report(dir: &std::path::Path) {
    let report = dir.join("evals").join("baseline <img src=x onerror=window.pwned=1>");
    std::fs::create_dir_all(&report).unwrap();
    std::fs::write(
        report.join("summary.json"),
        r#"{"means": {"faithfulness": 0.75, "context_recall": 0.5}, "counts": {}, "failed": 0, "samples": 4}"#,
    )
    .unwrap();
    std::fs::write(
        report.join("report.html"),
        "<!doctype html><h1>RAG report</h1><script>parent.window.pwned = 1</script><p>4 samples</p>",
    )
    .unwrap();
}

const LONG: Duration = Duration::from_secs(240);

/// Runs a test's body under an overall limit, so that a browser that stops answering fails the
/// test instead of holding up the suite.
async fn within_limit(body: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(Duration::from_secs(900), body).await.expect("the test ran past 15 minutes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_chats_opens_the_trace_approves_a_tool_call_and_reads_an_eval_report() {
    within_limit(async {
    let dir = tempfile::tempdir().unwrap();
    write_eval_report(dir.path());
    let (_server, url) = serve(dir.path(), &[]);
    let chromium = Chromium::launch(1100, 900).await;
    let (page, console) = chromium.page().await;
    page.goto(url.as_str()).await.unwrap();
    wait_for(&page, "document.body.dataset.ready === '1'", LONG, "the console to start").await;

    // The empty console draws its header, tabs and composer.
    let empty = screenshot(&page).await;
    assert!(painted_fraction(&empty) > 0.01, "the empty console is blank");
    let options: Vec<String> = eval(&page, "[...document.querySelectorAll('#target option')].map(o => o.value)").await;
    assert_eq!(options, ["model:chat", "agent"]);

    // Chat with the model, by keyboard: the reply streams in token by token.
    let prompt = page.find_element("#prompt").await.unwrap();
    prompt.click().await.unwrap();
    prompt.type_str("Count from one to ten in words. <img src=x onerror=window.pwned=1>").await.unwrap();
    prompt.press_key("Enter").await.unwrap();
    let mut lengths = std::collections::BTreeSet::new();
    let started = std::time::Instant::now();
    let reply = loop {
        let (text, done): (String, bool) = eval(
            &page,
            "(() => { const r = [...document.querySelectorAll('.msg.assistant')].pop(); \
             return r ? [r.querySelector('.text').textContent, !!r.querySelector('.meta')] : ['', false]; })()",
        )
        .await;
        lengths.insert(text.len());
        if done {
            assert!(!text.trim().is_empty(), "an empty reply");
            break text;
        }
        assert!(started.elapsed() < LONG, "no reply after {LONG:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let partial = lengths.iter().filter(|&&n| n > 0).count();
    assert!(partial >= 3, "the reply appeared in {partial} steps, not streamed: {lengths:?} {reply:?}");
    assert!(reply.to_lowercase().contains("ten"), "the greedy reply counts to ten: {reply:?}");
    let shown: String = eval(&page, "document.querySelector('.msg.user .text').textContent").await;
    assert!(shown.contains("<img src=x"), "the message is shown as text: {shown}");

    // Its trace: the request, and under it the model call with its tokens.
    page.find_element(".msg.assistant .open-trace").await.unwrap().click().await.unwrap();
    wait_for(&page, "document.querySelector('#run-detail .span-row')", LONG, "the trace").await;
    let rows: Vec<String> =
        eval(&page, "[...document.querySelectorAll('#run-detail .span-row .label')].map(r => r.textContent)").await;
    assert!(rows[0].contains("chat chat"), "{rows:?}");
    assert!(rows.iter().any(|r| r.contains("LLM") && r.contains("tok")), "{rows:?}");
    page.find_element("#run-detail .span-row:nth-child(2)").await.unwrap().click().await.unwrap();
    let attributes: String = eval(&page, "document.querySelector('.attrs').textContent").await;
    assert!(attributes.contains("gen_ai.usage.output_tokens"), "{attributes}");
    let listed: usize = eval(&page, "document.querySelectorAll('#runs tbody tr').length").await;
    assert!(listed >= 1);
    let trace = screenshot(&page).await;
    assert!(painted_fraction(&trace) > 0.02, "the trace view is blank");

    // The agent: a note is saved only once the person approves the call.
    page.find_element("#tab-chat").await.unwrap().click().await.unwrap();
    let _: bool = eval(
        &page,
        "(() => { const t = document.querySelector('#target'); t.value = 'agent'; \
         t.dispatchEvent(new Event('change')); return true; })()",
    )
    .await;
    let prompt = page.find_element("#prompt").await.unwrap();
    prompt.click().await.unwrap();
    prompt.type_str("Save a note titled tickets that says: book the train").await.unwrap();
    page.find_element("#send").await.unwrap().click().await.unwrap();
    wait_for(&page, "document.querySelector('.approval button.approve')", LONG, "the approval request").await;
    let call: String = eval(&page, "document.querySelector('.approval .call').textContent").await;
    assert!(call.contains("save_note"), "{call}");
    let notes = dir.path().join("agent").join("notes");
    assert!(!notes.join("tickets.md").exists(), "nothing is saved before approval");
    page.find_element(".approval button.approve").await.unwrap().click().await.unwrap();
    wait_for(
        &page,
        // A new target starts a new conversation: the run's reply, then the resumed run's.
        "document.querySelectorAll('.msg.assistant').length === 2 && document.querySelectorAll('.msg.assistant')[1].querySelector('.meta')",
        LONG,
        "the answer after approval",
    )
    .await;
    let note = std::fs::read_to_string(notes.join("tickets.md")).unwrap();
    assert!(note.contains("train"), "{note}");
    let steps: String = eval(&page, "document.querySelectorAll('.msg.assistant')[1].textContent").await;
    assert!(steps.contains("save_note"), "the tool step is shown: {steps}");
    page.find_element(".msg.assistant:last-child .open-trace").await.unwrap().click().await.unwrap();
    wait_for(&page, "[...document.querySelectorAll('#run-detail .span-row')].some(r => r.textContent.includes('TOOL'))", LONG, "the resumed run's tool span").await;

    // The eval report: its name and scores as text, its page in an inert frame.
    page.find_element("#tab-evals").await.unwrap().click().await.unwrap();
    wait_for(&page, "document.querySelector('#eval-list button')", LONG, "the eval reports").await;
    page.find_element("#eval-list button").await.unwrap().click().await.unwrap();
    wait_for(&page, "document.querySelector('#eval-detail iframe')", LONG, "the eval report").await;
    let (sandbox, means): (String, String) = eval(
        &page,
        "[document.querySelector('#eval-detail iframe').getAttribute('sandbox'), document.querySelector('#eval-detail table').textContent]",
    )
    .await;
    assert_eq!(sandbox, "", "the report runs no script");
    assert!(means.contains("faithfulness") && means.contains("0.750"), "{means}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let injected: bool = eval(&page, "window.pwned === 1 || document.querySelectorAll('main img').length > 0").await;
    assert!(!injected, "something shown was run as HTML");

    // A narrow window: nothing wider than the screen.
    page.execute(
        chromiumoxide::cdp::browser_protocol::emulation::SetDeviceMetricsOverrideParams::new(360, 740, 1.0, true),
    )
    .await
    .unwrap();
    page.find_element("#tab-traces").await.unwrap().click().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let width: i64 = eval(&page, "document.documentElement.scrollWidth").await;
    assert!(width <= 360, "the page is {width} px wide in a 360 px window");
    assert!(painted_fraction(&screenshot(&page).await) > 0.02);

    // The one line expected: the browser saying the sandbox stopped the report's script.
    let (blocked, messages): (Vec<String>, Vec<String>) =
        console.messages().into_iter().partition(|m| m.contains("Blocked script execution in 'about:srcdoc'"));
    assert_eq!(blocked.len(), 1, "{blocked:?}");
    assert!(messages.is_empty(), "the browser console is not empty: {messages:#?}");
    })
    .await;
}

#[tokio::test]
async fn the_console_check_sees_a_script_error_and_a_blank_page() {
    within_limit(async {
        // What the test above asserts against can happen: a script error reaches the collected
        // console, and a blank page scores as blank.
        let chromium = Chromium::launch(400, 300).await;
        let (page, console) = chromium.page().await;
        page.goto("data:text/html,<!doctype html><body style='background:white'><script>missing()</script>")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let messages = console.messages();
        assert!(messages.iter().any(|m| m.contains("missing is not defined")), "{messages:?}");
        assert!(painted_fraction(&screenshot(&page).await) < 0.001);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_api_key_the_console_asks_for_it_and_the_routes_refuse_without_it() {
    within_limit(async {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("evals")).unwrap();
        let (_server, url) = serve(dir.path(), &["--api-key", "sesame"]);
        let client = reqwest::Client::new();
        let refused = client.get(format!("{url}api/runs")).send().await.unwrap();
        assert_eq!(refused.status(), 401);
        let runs: serde_json::Value = client
            .get(format!("{url}api/runs"))
            .bearer_auth("sesame")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(runs["runs"], serde_json::json!([]), "an empty store lists no runs");
        // Bad input gets a clear error.
        let bad =
            client.get(format!("{url}api/runs?status=maybe")).bearer_auth("sesame").send().await.unwrap();
        assert_eq!(bad.status(), 400);
        let missing = client.get(format!("{url}api/runs/nope")).bearer_auth("sesame").send().await.unwrap();
        assert_eq!(missing.status(), 404);
        let traversal = client
            .get(format!("{url}api/evals/..%2F..%2Fetc/report"))
            .bearer_auth("sesame")
            .send()
            .await
            .unwrap();
        assert_eq!(traversal.status(), 404);

        let chromium = Chromium::launch(900, 700).await;
        let (page, console) = chromium.page().await;
        page.goto(url.as_str()).await.unwrap();
        wait_for(&page, "document.querySelector('#key-dialog').open", LONG, "the key dialog").await;
        page.find_element("#key-input").await.unwrap().type_str("sesame").await.unwrap();
        page.find_element("#key-input").await.unwrap().press_key("Enter").await.unwrap();
        wait_for(&page, "document.body.dataset.ready === '1'", LONG, "the console to start").await;
        page.find_element("#tab-traces").await.unwrap().click().await.unwrap();
        wait_for(
            &page,
            "document.querySelector('#runs-note').textContent.includes('No runs yet')",
            LONG,
            "the empty runs list",
        )
        .await;
        // The 401 answers are the only console lines: the browser reports refused loads itself.
        let messages: Vec<String> = console.messages().into_iter().filter(|m| !m.contains("401")).collect();
        assert!(messages.is_empty(), "{messages:#?}");
    })
    .await;
}
