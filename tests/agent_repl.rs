//! The `agent` example driven as a user would: scripted on stdin (answers on stdout, one per
//! question), across a restart (the session comes back), with a damaged sessions file (kept
//! aside, reported), and under a pseudo-terminal (prompt, slash commands, Ctrl-C cancels the
//! answer but not the REPL, Ctrl-D quits). Runs the real local models.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic, missing_docs)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The example's binary, built beside this test by `cargo test --all-targets` (what `make test` runs).
fn agent_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let debug = exe.parent().and_then(Path::parent).unwrap();
    let binary = debug.join("examples").join("agent");
    assert!(binary.exists(), "{} is missing: build it with `cargo build --example agent`", binary.display());
    binary
}

struct Run {
    stdout: String,
    stderr: String,
    ok: bool,
}

/// One REPL at a time in this binary: several 1.5B-model processes decoding at once on two cores
/// changed the default agent's greedy reply (it refused a SQL answer in full-suite runs and
/// answered it when run alone); issue 21 tracks why load changes a greedy decode.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs the agent with these arguments on a script of stdin lines, in `dir`, with no API key.
fn run_agent(dir: &Path, args: &[&str], script: &str) -> Run {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut child = Command::new(agent_binary())
        .args(args)
        .env("CATENA_AGENT_DIR", dir)
        .env_remove("OPENAI_API_KEY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    Run {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        ok: out.status.success(),
    }
}

/// Runs the REPL on the small `chat` model with the ReAct protocol (these tests are about the
/// REPL's mechanics; `a_new_user_gets_a_tool_answer_from_the_default_agent` runs the default).
fn run_script(dir: &Path, script: &str, args: &[&str]) -> Run {
    run_agent(dir, &[&["--model", "chat", "--protocol", "react"], args].concat(), script)
}

#[test]
fn scripted_sessions_resume_after_restart_and_damage_is_kept_aside() {
    let dir = tempfile::tempdir().unwrap();
    let first = run_script(
        dir.path(),
        "/tools\nWhat is 12 * 12?\n/unknown\n/memory\n/session\n",
        &["--max-iterations", "3"],
    );
    assert!(first.ok, "{}", first.stderr);
    let lines: Vec<&str> = first.stdout.lines().collect();
    // The tools, each on its line; the docs were indexed on this first start.
    for tool in ["calculator:", "current_datetime:", "search_catena_docs:", "sql_question:"] {
        assert!(lines.iter().any(|l| l.starts_with(tool)), "{tool} missing from {lines:#?}");
    }
    assert!(!first.stdout.contains("fetch_web_page"), "the web tool is opt-in");
    assert!(first.stderr.contains("indexed "), "{}", first.stderr);
    assert!(first.stdout.contains("unknown command /unknown"));
    assert!(lines.contains(&"default *"), "/session lists the current session: {}", first.stdout);
    let memory_then: Vec<&str> =
        lines.iter().copied().filter(|l| l.starts_with("user: ") || l.starts_with("assistant: ")).collect();

    // A restart: the docs index is reused, the session comes back as it was.
    let second = run_script(dir.path(), "/memory\n", &[]);
    assert!(second.ok, "{}", second.stderr);
    assert!(!second.stderr.contains("indexed "), "the index is reused: {}", second.stderr);
    let memory_now: Vec<&str> = second.stdout.lines().collect();
    assert_eq!(memory_now, memory_then);

    // Switch sessions, reset one, and the other is untouched.
    let third = run_script(dir.path(), "/session other\n/memory\n/reset\n/session default\n/memory\n", &[]);
    assert_eq!(
        third.stdout.lines().filter(|l| l.starts_with("user: ")).count(),
        memory_then.iter().filter(|l| l.starts_with("user: ")).count()
    );
    assert!(third.stdout.contains("memory cleared for session `other`"));

    // A damaged threads file is moved aside (bytes intact), reported, and a fresh one used.
    std::fs::write(
        dir.path().join("threads.db"),
        b"garbage that is not SQLite at all, long enough to be a header",
    )
    .unwrap();
    let fourth = run_script(dir.path(), "/memory\n", &[]);
    assert!(fourth.ok, "{}", fourth.stderr);
    assert!(fourth.stderr.contains("the threads file was unreadable"), "{}", fourth.stderr);
    let kept = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().starts_with("threads.db.corrupt-"))
        .expect("the damaged file is kept");
    assert!(std::fs::read(kept.path()).unwrap().starts_with(b"garbage"));
    assert!(fourth.stdout.trim().is_empty(), "a fresh thread remembers nothing: {}", fourth.stdout);

    // Sessions saved by earlier versions (sessions.db) are imported as threads, once.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let sessions = catena::agents::SessionStore::open(dir.path().join("sessions.db")).await.unwrap();
        let memory = catena::agents::BufferMemory::new();
        let turn =
            [catena::core::Message::user("my name is Ada"), catena::core::Message::assistant("Hello Ada!")];
        catena::core::Memory::add(&memory, &turn, &catena::core::RunContext::new()).await.unwrap();
        sessions.save("legacy", &memory, &turn).await.unwrap();
    });
    let fifth = run_script(dir.path(), "/session legacy\n/memory\n", &[]);
    assert!(fifth.stderr.contains("imported 1 saved session(s)"), "{}", fifth.stderr);
    assert!(fifth.stdout.contains("user: my name is Ada\nassistant: Hello Ada!"), "{}", fifth.stdout);
    assert!(dir.path().join("sessions.db.imported").exists() && !dir.path().join("sessions.db").exists());

    let help = Command::new(agent_binary()).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--session",
        "--protocol",
        "--max-iterations",
        "--web",
        "--yes",
        "--first-call",
        "--select-tools",
        "--json",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help: {help}");
    }
}

/// Runs the agent as `make demo` opens it (the default local model, no API key) on a script of
/// stdin lines; its exit must be clean. Returns stdout and stderr.
fn run_default_agent(args: &[&str], script: &str) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let run = run_agent(dir.path(), &[&["--max-iterations", "4"], args].concat(), script);
    assert!(run.ok, "{}", run.stderr);
    (run.stdout, run.stderr)
}

#[test]
fn a_new_user_gets_a_tool_answer_from_the_default_agent() {
    // What `make demo` opens: the default agent model, native tool calls, greedy decoding.
    let (stdout, stderr) = run_default_agent(&[], "/model\nWhat is 17 * 23?\n");
    let mut lines = stdout.lines();
    assert!(
        lines.next().is_some_and(|l| l.contains("Qwen2.5 Coder 1.5B") && l.contains("Native")),
        "{stdout}"
    );
    assert!(lines.next().is_some_and(|answer| answer.contains("391")), "{stdout}\n{stderr}");
}

#[test]
fn the_default_agent_answers_from_the_database_and_the_docs_through_the_right_tools() {
    // Two questions of the task suite that need the other tools, as `--json` reports them.
    let script =
        "How many customers does the music store have?\n/reset\nWhat is catena's default embedding model?\n";
    let (stdout, stderr) = run_default_agent(&["--json"], script);
    let answers: Vec<serde_json::Value> =
        stdout.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(answers.len(), 2, "{stdout}\n{stderr}");
    let (sql, docs) = (&answers[0], &answers[1]);
    assert_eq!(sql["tools"][0], "sql_question", "{sql}");
    assert!(sql["answer"].as_str().unwrap().contains("59"), "{sql}");
    assert_eq!(docs["tools"][0], "search_catena_docs", "{docs}");
    assert!(docs["answer"].as_str().unwrap().contains("MiniLM"), "{docs}");
}

#[test]
fn under_a_terminal_ctrl_c_cancels_the_answer_and_ctrl_d_quits() {
    let dir = tempfile::tempdir().unwrap();
    // Index the docs first, so the terminal session starts quickly.
    assert!(run_script(dir.path(), "", &[]).ok);
    let command = format!(
        "env CATENA_AGENT_DIR={} {} --model chat --protocol react",
        dir.path().display(),
        agent_binary().display()
    );
    let mut p = rexpect::spawn(&command, Some(120_000)).unwrap();
    p.exp_string("default> ").unwrap();
    p.send_line("/help").unwrap();
    p.exp_string("/reset forget this session").unwrap();
    p.exp_string("default> ").unwrap();
    p.send_line("/verbose").unwrap();
    p.exp_string("verbose off").unwrap();
    p.send_line("/verbose").unwrap();
    p.exp_string("verbose on").unwrap();
    p.exp_string("default> ").unwrap();
    // This question keeps the local model busy for about 25 s (greedy decoding: the same every
    // time); Ctrl-C goes as soon as its first tokens stream.
    p.send_line("Write a long story about the history of databases.").unwrap();
    p.exp_string("Thought:").unwrap();
    p.send_control('c').unwrap();
    p.exp_string("(cancelled)").unwrap();
    // Still running: the prompt comes back and answers commands.
    p.exp_string("default> ").unwrap();
    p.send_line("/model").unwrap();
    p.exp_string("React protocol, local").unwrap();
    p.exp_string("default> ").unwrap();
    p.send_control('d').unwrap();
    p.exp_eof().unwrap();
}

/// A server process killed when the test ends.
struct Served(std::process::Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn with_an_api_key_the_repl_uses_the_remote_model_with_native_tool_calls() {
    use std::io::{BufRead, BufReader};
    // The "remote" model: catena serve on loopback, serving the local default model.
    let mut server = Command::new(env!("CARGO_BIN_EXE_catena"))
        .args(["serve", "--addr", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stderr.take().unwrap()).lines();
    let banner = lines.by_ref().map(Result::unwrap).find(|l| l.starts_with("catena serve: ")).unwrap();
    let base_url = banner.split_whitespace().nth(2).unwrap().to_owned();
    let _server = Served(server);
    std::thread::spawn(move || lines.for_each(drop));

    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(agent_binary())
        .args(["--max-iterations", "3"])
        .env("CATENA_AGENT_DIR", dir.path())
        .env("OPENAI_API_KEY", "")
        .env("OPENAI_BASE_URL", &base_url)
        .env("CATENA_MODEL", "chat")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"/model\nWhat is 12 * 12?\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let mut answers = stdout.lines();
    assert_eq!(answers.next(), Some("chat (Native protocol, remote)"), "{stdout}");
    assert!(answers.next().is_some_and(|a| !a.trim().is_empty()), "an answer line: {stdout}\n{stderr}");
    assert!(!stderr.contains("error:"), "{stderr}");
}

/// The approval round trip a person makes, on the default agent model, in both front ends that
/// share an agent folder: the REPL stops before saving a note, quits, starts again, and the note
/// is saved on `/approve` (and not on `/reject`); `catena serve --agent` does the same over its
/// thread endpoints with the server restarted in between.
#[tokio::test]
async fn a_side_effecting_call_waits_for_approval_across_restarts_of_the_repl_and_the_server() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let notes = dir.path().join("notes");
    let args = ["--max-iterations", "4"];
    let first = run_agent(dir.path(), &args, "Save a note titled groceries that says: buy milk and eggs\n");
    assert!(first.ok, "{}", first.stderr);
    assert!(first.stdout.contains("waiting for approval: save_note("), "{}\n{}", first.stdout, first.stderr);
    assert!(first.stdout.contains("/approve"), "{}", first.stdout);
    assert!(!notes.join("groceries.md").exists(), "nothing is saved before approval");

    // A new process: what waits is shown again; a question is refused until it is decided.
    let second = run_agent(dir.path(), &args, "What is 2 + 2?\n/approve\n/memory\n");
    assert!(second.ok, "{}", second.stderr);
    assert!(second.stdout.starts_with("waiting for approval: save_note("), "{}", second.stdout);
    assert!(second.stdout.contains("a tool call is waiting for your decision"), "{}", second.stdout);
    let note = std::fs::read_to_string(notes.join("groceries.md")).unwrap();
    assert!(note.contains("milk"), "{note}");
    assert!(second.stdout.contains("user: Save a note titled groceries"), "remembered: {}", second.stdout);

    // Rejected: nothing saved; the model reads the message and says so.
    let third =
        run_agent(dir.path(), &args, "Save a note titled plans that says: call Bob\n/reject Not now.\n");
    assert!(third.ok, "{}", third.stderr);
    assert!(third.stdout.contains("waiting for approval: save_note("), "{}", third.stdout);
    assert!(!notes.join("plans.md").exists());

    // Over HTTP: `catena serve --agent` on the same folder, restarted between run and resume.
    let serve = || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_catena"))
            .args(["serve", "--model", "agent", "--addr", "127.0.0.1:0", "--agent"])
            .arg(dir.path())
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let banner = lines.by_ref().map(Result::unwrap).find(|l| l.starts_with("catena serve: ")).unwrap();
        // The banner names the OpenAI base URL (`.../v1`).
        let base = banner.split_whitespace().nth(2).unwrap().trim_end_matches("/v1").to_owned();
        std::thread::spawn(move || lines.for_each(drop));
        (Served(child), base)
    };
    let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(300)).build().unwrap();
    let (server, base) = serve();
    let body: serde_json::Value = client
        .post(format!("{base}/v1/threads/web/runs"))
        .json(&serde_json::json!({"input": "Save a note titled tickets that says: book the train"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["status"], "interrupted", "{body}");
    let call = &body["interrupts"][0]["payload"]["calls"][0];
    assert_eq!(call["name"], "save_note", "{body}");
    drop(server);
    assert!(!notes.join("tickets.md").exists());

    let (_server, base) = serve();
    let state: serde_json::Value =
        client.get(format!("{base}/v1/threads/web")).send().await.unwrap().json().await.unwrap();
    assert_eq!(state["interrupts"][0]["payload"]["calls"][0]["id"], call["id"], "{state}");
    let id = call["id"].as_str().unwrap();
    let body: serde_json::Value = client
        .post(format!("{base}/v1/threads/web/resume"))
        .json(&serde_json::json!({"decisions": {id: {"decision": "approve"}}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["status"], "done", "{body}");
    assert!(!body["answer"].as_str().unwrap().trim().is_empty(), "{body}");
    let note = std::fs::read_to_string(notes.join("tickets.md")).unwrap();
    assert!(note.contains("train"), "{note}");
}

#[test]
fn mcp_servers_from_a_config_file_add_their_tools_named_by_server() {
    let data = std::env::var_os("CATENA_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/catena/data"));
    let server = data.join("mcp/node_modules/.bin/mcp-server-everything");
    if !server.exists() {
        assert!(std::env::var_os("CATENA_REQUIRE_DATA").is_none(), "run scripts/fetch-data.sh");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mcp.json");
    let json = serde_json::json!({"mcpServers": {"everything": {"command": server, "args": ["stdio"]}}});
    std::fs::write(&config, json.to_string()).unwrap();
    let run = run_script(dir.path(), "/tools\n", &["--mcp", config.to_str().unwrap()]);
    assert!(run.ok, "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(lines.iter().any(|l| l.starts_with("echo [MCP: everything]: ")), "{lines:#?}");
    // Read-only by the server's hint: no approval; otherwise, approval.
    assert!(lines.iter().any(|l| l.starts_with("toggle-simulated-logging [MCP: everything] (asks first)")));
    assert!(run.stderr.contains("tools from 1 MCP server(s)"), "{}", run.stderr);
    // A bad file stops the REPL with a message that names the problem.
    std::fs::write(&config, r#"{"mcpServers": {"x": {}}}"#).unwrap();
    let bad = run_script(dir.path(), "", &["--mcp", config.to_str().unwrap()]);
    assert!(!bad.ok && bad.stderr.contains("server `x` has neither `command`"), "{}", bad.stderr);
}
