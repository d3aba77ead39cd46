//! The `catena` command line, run as a user would, on the real default models.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn catena(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_catena")).args(args).output().unwrap()
}

/// Runs `catena ARGS` with `input` on its standard input (not a terminal).
fn catena_with_stdin(args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_catena"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn help_lists_the_commands() {
    let out = catena(&["--help"]);
    assert!(out.status.success());
    for cmd in ["models", "chat", "embed", "eval"] {
        assert!(stdout(&out).contains(cmd), "{}", stdout(&out));
    }
    let out = catena(&["models", "pull", "--help"]);
    assert!(stdout(&out).contains("--force"));
    // Every command that runs a chat model takes any local one by name or path.
    for command in [&["chat"][..], &["query"], &["sql", "ask"], &["eval", "rag"], &["serve"]] {
        let out = catena(&[command, &["--help"]].concat());
        assert!(stdout(&out).contains("--model"), "{command:?}: {}", stdout(&out));
    }
    let out = catena(&["serve", "--help"]);
    for flag in ["--chat-template", "llama3", "mistral", "--agent", "--temperature", "--seed"] {
        assert!(stdout(&out).contains(flag), "{flag}: {}", stdout(&out));
    }
    // A model name that is neither a default nor a file says so before anything loads.
    let out = catena(&["chat", "--model", "no-such-model", "hi"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no-such-model"), "{}", stderr(&out));
}

#[test]
fn models_list_reports_every_default_verified() {
    let out = catena(&["models", "list", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let list: Vec<Value> = serde_json::from_str(&stdout(&out)).unwrap();
    let names: Vec<&str> = list.iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["chat", "embed", "agent", "agent-small"]);
    // `make test` pulls the three defaults first, so they are verified.
    assert!(list.iter().take(3).all(|m| m["sha256"].as_str().is_some_and(|s| s.len() == 64)), "{list:?}");
}

#[test]
fn embed_prints_one_json_object_per_text_from_args_or_stdin() {
    let out = catena(&["embed", "hello world", "vector search"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<Value> = stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["text"], "vector search");
    assert_eq!(lines[0]["embedding"].as_array().unwrap().len(), 384);

    let out = catena_with_stdin(&["embed"], b"one\ntwo\nthree\n");
    assert_eq!(stdout(&out).lines().count(), 3);
}

#[test]
fn chat_one_shot_streams_a_reply_and_json_schema_constrains_it() {
    let out = catena(&["chat", "--max-tokens", "12", "Say hello."]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stdout(&out).trim().is_empty());

    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("person.json");
    std::fs::write(
        &schema,
        // Bounded name and greedy decoding: a sampled reply once rambled inside an open string
        // until max_tokens cut it, which the grammar cannot prevent.
        r#"{"type":"object","properties":{"name":{"type":"string","maxLength":40},"age":{"type":"integer"}},"required":["name","age"]}"#,
    )
    .unwrap();
    let out = catena(&[
        "chat",
        "--temperature",
        "0",
        "--max-tokens",
        "64",
        "--json-schema",
        schema.to_str().unwrap(),
        "Invent a person.",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let person: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert!(person["name"].is_string() && person["age"].is_i64(), "{person}");
}

#[test]
fn chat_reads_turns_from_stdin_without_a_tty() {
    let out = catena_with_stdin(&["chat", "--max-tokens", "8"], b"Hi!\nName a colour.\n");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().filter(|l| !l.trim().is_empty()).count(), 2, "{}", stdout(&out));
}

#[test]
fn bad_inputs_exit_non_zero_with_a_message_that_names_the_problem() {
    let out = catena(&["chat", "--model", "/no/such/model.gguf", "hi"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("cannot open model file /no/such/model.gguf"), "{}", stderr(&out));

    let out = catena(&["eval", "perplexity", "/no/such/text.txt"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("/no/such/text.txt"), "{}", stderr(&out));

    let empty = tempfile::tempdir().unwrap();
    let target = empty.path().join("out.gguf");
    let out = catena(&["models", "convert", empty.path().to_str().unwrap(), target.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("config.json is missing"), "{}", stderr(&out));
    assert!(!target.exists(), "nothing is written on failure");

    let out = catena(&["chat", "--json-schema", "/no/schema.json", "hi"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("/no/schema.json"), "{}", stderr(&out));

    // A chat template that cannot be read stops serve before any model loads.
    let out = catena(&["serve", "--addr", "127.0.0.1:0", "--chat-template", "/no/template.jinja"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--chat-template /no/template.jinja"), "{}", stderr(&out));

    let out = catena(&["serve", "--addr", "127.0.0.1:0", "--temperature=-1"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("from 0 (greedy) up"), "{}", stderr(&out));

    let out = catena(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2), "clap's usage error");
}

#[test]
fn split_prints_json_chunks_and_reports_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("notes.md");
    std::fs::write(
        &good,
        "# Notes\n\nFirst paragraph of notes.\n\nSecond paragraph, a bit longer than the first one.",
    )
    .unwrap();
    let bad = dir.path().join("scan.pdf");
    std::fs::write(&bad, b"%PDF-1.4 truncated").unwrap();
    let out = catena(&[
        "split",
        "--chunk-size",
        "40",
        "--chunk-overlap",
        "0",
        "--add-start-index",
        good.to_str().unwrap(),
        bad.to_str().unwrap(),
    ]);
    assert!(!out.status.success(), "a failed file makes the exit status non-zero");
    let lines: Vec<serde_json::Value> =
        stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[0]["content"], "# Notes\n\nFirst paragraph of notes.");
    assert_eq!(lines[1]["content"], "Second paragraph, a bit longer than the");
    assert_eq!(lines[1]["metadata"]["start_index"], 36);
    assert_eq!(lines[1]["metadata"]["title"], "Notes");
    assert!(lines[1]["metadata"]["source"].as_str().unwrap().ends_with("notes.md"));
    assert!(stderr(&out).contains("scan.pdf is not a readable PDF"), "{}", stderr(&out));

    let bad_settings =
        catena(&["split", "--chunk-size", "10", "--chunk-overlap", "20", good.to_str().unwrap()]);
    assert!(stderr(&bad_settings).contains("chunk_overlap (20) is larger than chunk_size (10)"));
    let bad_language = catena(&["split", "--language", "klingon", good.to_str().unwrap()]);
    assert!(stderr(&bad_language).contains("choose one of: c, cpp"), "{}", stderr(&bad_language));
}

#[test]
fn ingest_embeds_stores_and_summarises_failures() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus");
    std::fs::create_dir(&corpus).unwrap();
    std::fs::write(corpus.join("a.md"), "Ownership moves values. Borrowing lends them.").unwrap();
    std::fs::write(corpus.join("b.html"), "<title>B</title><p>Lifetimes name how long borrows live.</p>")
        .unwrap();
    std::fs::write(corpus.join("c.csv"), "term,meaning\ncrate,a package\n").unwrap();
    std::fs::write(corpus.join("d.pdf"), b"not a pdf").unwrap();
    let store = dir.path().join("store");
    let out = catena(&["ingest", corpus.to_str().unwrap(), "--store", store.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let summary: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!((summary["files"].as_u64(), summary["files_ok"].as_u64()), (Some(4), Some(3)));
    assert!(summary["failures"][0].as_str().unwrap().contains("d.pdf"));
    assert_eq!(summary["chunks"], 3);
    assert_eq!(summary["stored"], 3);
    assert_eq!(summary["added"], 3);

    // Again, unchanged: nothing is embedded or written. Then one file changes: its old chunk goes.
    let again = catena(&["ingest", corpus.to_str().unwrap(), "--store", store.to_str().unwrap(), "--json"]);
    let summary: serde_json::Value = serde_json::from_str(stdout(&again).trim()).unwrap();
    assert_eq!((summary["added"].as_u64(), summary["skipped"].as_u64()), (Some(0), Some(3)));
    std::fs::write(corpus.join("a.md"), "Ownership moves values. Borrowing lends them for a while.").unwrap();
    let changed = catena(&["ingest", corpus.to_str().unwrap(), "--store", store.to_str().unwrap(), "--json"]);
    let summary: serde_json::Value = serde_json::from_str(stdout(&changed).trim()).unwrap();
    assert_eq!((summary["added"].as_u64(), summary["deleted"].as_u64()), (Some(1), Some(1)));
    assert_eq!(summary["stored"], 3);

    // Query it: every retriever that needs no chat model, with sources and scores.
    let s = store.to_str().unwrap();
    let query_json = |args: &[&str]| -> serde_json::Value {
        let mut all = vec!["query", "--store", s, "--json", "-k", "2"];
        all.extend_from_slice(args);
        let out = catena(&all);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        serde_json::from_str(stdout(&out).trim()).unwrap()
    };
    for retriever in ["similarity", "bm25", "hybrid", "mmr"] {
        let v = query_json(&["--retriever", retriever, "how long do borrows live?"]);
        let results = v["results"].as_array().unwrap();
        assert!(!results.is_empty() && results.len() <= 2, "{retriever}: {v}");
        assert!(results[0]["metadata"]["source"].as_str().unwrap().ends_with("b.html"), "{retriever}: {v}");
    }
    // --answer: the local chat model answers from the numbered results.
    let v = query_json(&["--answer", "--max-tokens", "48", "What do lifetimes name?"]);
    assert!(v["answer"].as_str().is_some_and(|a| a.split_whitespace().count() >= 2), "{v}");
    let text = catena(&["query", "--store", s, "lifetimes"]);
    assert!(stdout(&text).contains("[1]") && stdout(&text).contains("b.html"), "{}", stdout(&text));
    let missing = catena(&["query", "--store", dir.path().join("nowhere").to_str().unwrap(), "x"]);
    assert!(!missing.status.success());
    assert!(stderr(&missing).contains("catena ingest"), "{}", stderr(&missing));
    let zero = catena(&["query", "--store", s, "-k", "0", "x"]);
    assert!(stderr(&zero).contains("at least 1"), "{}", stderr(&zero));
    let empty = catena(&["query", "--store", s, "  "]);
    assert!(stderr(&empty).contains("empty"), "{}", stderr(&empty));

    // --queries: a question set in one process, as a TREC run that ranks what one-by-one
    // queries rank, documents named by file with --run-doc, readable by `catena eval retrieval`.
    let questions = dir.path().join("questions.jsonl");
    let asked = [("q1", "how long do borrows live?"), ("q2", "what is a crate?"), ("q3", "ownership")];
    let lines: Vec<String> =
        asked.iter().map(|(id, q)| serde_json::json!({"_id": id, "text": q}).to_string()).collect();
    std::fs::write(&questions, lines.join("\n")).unwrap();
    let run = dir.path().join("run.txt");
    let (questions_arg, run_arg) = (questions.to_str().unwrap(), run.to_str().unwrap());
    let batch = catena(&[
        "query",
        "--store",
        s,
        "-r",
        "similarity",
        "-k",
        "2",
        "--queries",
        questions_arg,
        "--run",
        run_arg,
    ]);
    assert!(batch.status.success(), "{}", stderr(&batch));
    assert!(stderr(&batch).contains("3 questions"), "{}", stderr(&batch));
    let written = std::fs::read_to_string(&run).unwrap();
    for (id, question) in asked {
        let one = query_json(&["--retriever", "similarity", question]);
        let expected: Vec<&str> =
            one["results"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
        let ranked: Vec<&str> = written
            .lines()
            .filter(|l| l.starts_with(&format!("{id} ")))
            .map(|l| l.split(' ').nth(2).unwrap())
            .collect();
        // Questions in flight together may be embedded in one batch, which moves scores by float
        // rounding: the best result must agree, the rest as a set.
        assert_eq!(ranked.first(), expected.first(), "{id}: {written}");
        let (mut ranked, mut expected) = (ranked, expected);
        ranked.sort_unstable();
        expected.sort_unstable();
        assert_eq!(ranked, expected, "{id}: {written}");
    }
    let qrels = dir.path().join("qrels.txt");
    std::fs::write(&qrels, "q1 0 x 1\n").unwrap();
    let by_file =
        catena(&["query", "--store", s, "-r", "bm25", "--queries", questions_arg, "--run-doc", "source"]);
    assert!(by_file.status.success(), "{}", stderr(&by_file));
    let q1: Vec<String> =
        stdout(&by_file).lines().filter(|l| l.starts_with("q1 ")).map(str::to_owned).collect();
    assert!(q1.first().is_some_and(|l| l.starts_with("q1 Q0 ") && l.contains("b.html")), "{q1:?}");
    assert!(q1.iter().all(|l| l.split(' ').count() == 6 && l.ends_with(" catena")), "{q1:?}");
    let scored = catena(&["eval", "retrieval", "--qrels", qrels.to_str().unwrap(), "--run", run_arg]);
    assert!(scored.status.success(), "{}", stderr(&scored));
    std::fs::write(&questions, "{\"_id\": \"q1\", \"text\": \"a\"}\n{\"_id\": \"q1\", \"text\": \"b\"}\n")
        .unwrap();
    let twice = catena(&["query", "--store", s, "--queries", questions_arg]);
    assert!(!twice.status.success());
    assert!(stderr(&twice).contains("line 2") && stderr(&twice).contains("twice"), "{}", stderr(&twice));
    let both = catena(&["query", "--store", s, "--queries", questions_arg, "a question too"]);
    assert!(!both.status.success(), "a question and --queries together are refused");
}

#[test]
fn sql_check_prints_what_would_run_or_refuses_with_exit_1() {
    let ok = catena(&["sql", "check", "--dialect", "sqlite", "SELECT Name FROM Artist -- all of them"]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert_eq!(stdout(&ok).trim(), "SELECT Name FROM Artist LIMIT 100");
    let refused = catena(&["sql", "check", "--dialect", "postgres", "SELECT 1; DROP TABLE Artist"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).contains("refused: 2 statements"), "{}", stderr(&refused));
    let listed = catena(&["sql", "check", "--tables", "Album", "SELECT * FROM Artist"]);
    assert_eq!(listed.status.code(), Some(1));
    assert!(stderr(&listed).contains("the tables are: album"), "{}", stderr(&listed));
    let piped = catena_with_stdin(
        &["sql", "check", "-", "--max-rows", "7"],
        b"WITH a AS (SELECT 1 AS x) SELECT x FROM a LIMIT 500",
    );
    assert_eq!(stdout(&piped).trim(), "WITH a AS (SELECT 1 AS x) SELECT x FROM a LIMIT 7");
}

#[test]
fn sql_load_chinook_then_ask_it_a_question_on_the_local_model() {
    let fixture = catena::query::sql::chinook::fixture_path();
    if !fixture.exists() {
        assert!(
            std::env::var_os("CATENA_REQUIRE_DATA").is_none(),
            "Chinook fixture missing: run scripts/fetch-data.sh"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("chinook.db").display());
    let load = catena(&["sql", "load-chinook", "--db", &url]);
    assert!(load.status.success(), "{}", stderr(&load));
    assert!(stderr(&load).contains("loaded 15607 rows"), "{}", stderr(&load));
    let ask = catena(&["sql", "ask", "--db", &url, "--json", "--tables", "2", "How many artists are there?"]);
    assert!(ask.status.success(), "{}", stderr(&ask));
    let answer: Value = serde_json::from_str(stdout(&ask).trim()).unwrap();
    let sql = answer["sql"].as_str().unwrap();
    assert!(sql.starts_with("SELECT ") && sql.contains(" LIMIT "), "{sql}");
    assert!(answer["result"]["columns"].as_array().is_some_and(|c| !c.is_empty()), "{answer}");
    assert!(answer["answer"].as_str().is_some_and(|a| !a.is_empty()), "{answer}");
    // A database that is not there: a message that names it, no file created.
    let missing = dir.path().join("nope.db");
    let err = catena(&["sql", "ask", "--db", &format!("sqlite://{}", missing.display()), "anything?"]);
    assert!(!err.status.success());
    assert!(stderr(&err).contains("cannot open SQLite database"), "{}", stderr(&err));
    assert!(!missing.exists());
}

/// A server process that is killed if the test fails before stopping it.
struct Served(std::process::Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `catena serve ARGS` with `env`; returns the child and its base URL (from the banner).
fn spawn_serve(
    args: &[&str],
    env: &[(&str, &str)],
) -> (Served, String, std::io::Lines<std::io::BufReader<std::process::ChildStderr>>) {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_catena"))
        .arg("serve")
        .args(args)
        .envs(env.iter().copied())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    // "catena serve: http://127.0.0.1:PORT/v1 (...)"
    let banner = lines.by_ref().map(Result::unwrap).find(|l| l.starts_with("catena serve: ")).unwrap();
    let base = banner.split_whitespace().nth(2).unwrap().trim_end_matches("/v1").to_owned();
    (Served(child), base, lines)
}

#[test]
fn serve_answers_on_loopback_proxies_a_remote_backend_and_stops_on_ctrl_c() {
    let (mut local, base, lines) = spawn_serve(&["--addr", "127.0.0.1:0"], &[]);
    // A second server in front of the first, as an OpenAI-compatible gateway.
    let upstream = format!("{base}/v1");
    let env = [
        ("OPENAI_BASE_URL", upstream.as_str()),
        ("OPENAI_API_KEY", ""),
        ("CATENA_MODEL", "chat"),
        ("CATENA_EMBED_MODEL", "embed"),
    ];
    // The gateway's stderr reader is dropped at once: a server whose log pipe breaks must keep
    // serving (it used to panic in every request writing its access log).
    let (mut gateway, gateway_base, _) = spawn_serve(&["--addr", "127.0.0.1:0", "--backend", "openai"], &env);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let health: Value = reqwest::get(format!("{base}/health")).await.unwrap().json().await.unwrap();
        assert_eq!(health["status"], "ok");
        let models: Value = reqwest::get(format!("{base}/v1/models")).await.unwrap().json().await.unwrap();
        assert_eq!(models["data"][0]["id"], "chat");
        let client = reqwest::Client::new();
        let body = serde_json::json!({"model": "chat", "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 4});
        let reply: Value = client.post(format!("{gateway_base}/v1/chat/completions")).json(&body).send().await.unwrap().json().await.unwrap();
        assert_eq!(reply["object"], "chat.completion", "{reply}");
        let body = serde_json::json!({"model": "embed", "input": "hello"});
        let reply: Value = client.post(format!("{gateway_base}/v1/embeddings")).json(&body).send().await.unwrap().json().await.unwrap();
        assert_eq!(reply["data"][0]["embedding"].as_array().unwrap().len(), 384, "{reply}");
    });
    // Ctrl-C: finish in-flight requests, then exit 0. The access log saw the requests.
    for Served(child) in [&mut gateway, &mut local] {
        assert!(Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success());
        let status = child.wait().unwrap();
        assert!(status.success(), "{status}");
    }
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    assert!(rest.iter().any(|l| l.contains("/v1/models") && l.contains("status=200")), "{rest:?}");
    assert!(rest.iter().any(|l| l.contains("/v1/chat/completions") && l.contains("status=200")), "{rest:?}");
}

#[test]
fn serve_refuses_prompts_over_its_context_before_any_work() {
    let (_server, base, _) = spawn_serve(&["--addr", "127.0.0.1:0", "--ctx", "256", "--parallel", "1"], &[]);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let client = reqwest::Client::new();
        let chat = format!("{base}/v1/chat/completions");
        let ask = |words: usize| {
            serde_json::json!({"model": "chat", "messages": [{"role": "user", "content": "word ".repeat(words)}], "max_tokens": 4})
        };
        let response = client.post(&chat).json(&ask(400)).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 400);
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], "context_length_exceeded", "{error}");
        assert!(error["error"]["message"].as_str().unwrap().contains("256"), "{error}");
        let reply: Value = client.post(&chat).json(&ask(20)).send().await.unwrap().json().await.unwrap();
        assert_eq!(reply["object"], "chat.completion", "{reply}");
    });
}

#[test]
fn serve_falls_back_to_the_local_model_when_the_remote_one_is_down() {
    // Nobody listens on the remote port: every remote call fails, the local model answers.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dead = format!("http://127.0.0.1:{port}/v1");
    let env = [("OPENAI_BASE_URL", dead.as_str()), ("OPENAI_API_KEY", "x"), ("CATENA_MODEL", "gpt-away")];
    let (_server, base, _) =
        spawn_serve(&["--addr", "127.0.0.1:0", "--backend", "openai", "--fallback", "local"], &env);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let client = reqwest::Client::new();
        let chat = format!("{base}/v1/chat/completions");
        // Greedy: a sampled reply may be an immediate end of text, and then empty.
        let body = serde_json::json!({"model": "chat", "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 4, "temperature": 0});
        let reply: Value = client.post(&chat).json(&body).send().await.unwrap().json().await.unwrap();
        assert_eq!(reply["object"], "chat.completion", "{reply}");
        assert!(!reply["choices"][0]["message"]["content"].as_str().unwrap().is_empty(), "{reply}");
        let mut streamed = body.clone();
        streamed["stream"] = Value::Bool(true);
        let text = client.post(&chat).json(&streamed).send().await.unwrap().text().await.unwrap();
        assert!(text.contains("chat.completion.chunk") && text.trim_end().ends_with("data: [DONE]"), "{text}");
    });
    let out = Command::new(env!("CARGO_BIN_EXE_catena"))
        .args(["serve", "--backend", "local", "--fallback", "local"])
        .output()
        .unwrap();
    assert!(!out.status.success() && stderr(&out).contains("same backend"), "{}", stderr(&out));
}

#[test]
fn eval_text_scores_files_like_the_reference_tools_and_refuses_misaligned_ones() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let hyps = write("hyps.txt", "The cat sat on the mat.\nIt is raining today.\n");
    let refs = write("refs.txt", "The cat is on the mat.\nToday it is raining.\n");
    let refs2 = write("refs2.txt", "A cat was on the mat.\nIt rains today.\n");
    let short = write("short.txt", "only one line\n");

    let out = catena(&["eval", "text", "-m", "bleu", "--hypotheses", &hyps, "--references", &refs, &refs2]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("BLEU = "), "{}", stdout(&out));
    let out = catena(&["eval", "text", "-m", "bleu", "--hypotheses", &hyps, "--references", &refs, "--json"]);
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert!(v["score"].as_f64().unwrap() > 0.0 && v["precisions"].as_array().unwrap().len() == 4);
    for metric in ["sentence-bleu", "rouge1", "rouge2", "rougeL", "rougeLsum", "em", "f1"] {
        let out =
            catena(&["eval", "text", "-m", metric, "--hypotheses", &hyps, "--references", &refs, "--json"]);
        assert!(out.status.success(), "{metric}: {}", stderr(&out));
        let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
        assert_eq!(v["metric"], metric);
    }
    // --stem: "raining" and "rains" both become "rain", as with rouge-score's use_stemmer=True.
    let rouge1 = |extra: &[&str]| {
        let mut args =
            vec!["eval", "text", "-m", "rouge1", "--hypotheses", &hyps, "--references", &refs2, "--json"];
        args.extend_from_slice(extra);
        let out = catena(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
        v["per_line_fmeasure"][1].as_f64().unwrap()
    };
    let (plain, stemmed) = (rouge1(&[]), rouge1(&["--stem"]));
    assert!((plain - 4.0 / 7.0).abs() < 1e-12 && (stemmed - 6.0 / 7.0).abs() < 1e-12, "{plain} {stemmed}");
    let out = catena(&["eval", "text", "-m", "f1", "--hypotheses", &hyps, "--references", &short]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("has 1 lines but"), "{}", stderr(&out));
    let out = catena(&["eval", "text", "-m", "meteor", "--hypotheses", &hyps, "--references", &refs]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("invalid value 'meteor'") && stderr(&out).contains("possible values: bleu"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn eval_retrieval_prints_trec_eval_layout_or_json_and_names_bad_lines() {
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("eval/tests/data");
    let qrels = data.join("trec_qrels.txt").display().to_string();
    let run = data.join("trec_run.txt").display().to_string();
    let out = catena(&["eval", "retrieval", "--qrels", &qrels, "--run", &run]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let names: Vec<&str> = text.lines().map(|l| l.split('\t').next().unwrap().trim()).collect();
    assert_eq!(names, ["map", "P_10", "recall_100", "ndcg_cut_10", "recip_rank"]);
    assert!(text.lines().all(|l| l.split('\t').nth(1) == Some("all")));

    let out = catena(&[
        "eval",
        "retrieval",
        "--qrels",
        &qrels,
        "--run",
        &run,
        "-m",
        "map",
        "ndcg_cut_10",
        "-q",
        "--json",
    ]);
    let v: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let reference: Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("trec_reference.json")).unwrap()).unwrap();
    let mean = |m: &str| {
        let per: Vec<f64> =
            reference["per_query"].as_object().unwrap().values().map(|q| q[m].as_f64().unwrap()).collect();
        per.iter().sum::<f64>() / per.len() as f64
    };
    assert!((v["all"]["map"].as_f64().unwrap() - mean("map")).abs() < 1e-12, "{v}");
    assert!((v["all"]["ndcg_cut_10"].as_f64().unwrap() - mean("ndcg_cut_10")).abs() < 1e-12);
    assert_eq!(v["per_query"].as_object().unwrap().len(), reference["per_query"].as_object().unwrap().len());

    let dir = tempfile::tempdir().unwrap();
    let dup = dir.path().join("dup.run");
    std::fs::write(&dup, "q1 Q0 d1 1 0.9 t\nq1 Q0 d1 2 0.8 t\n").unwrap();
    let out = catena(&["eval", "retrieval", "--qrels", &qrels, "--run", &dup.display().to_string()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("dup.run: run line 2: document d1 is listed twice for query q1"),
        "{}",
        stderr(&out)
    );
    let out = catena(&["eval", "retrieval", "--qrels", &qrels, "--run", &run, "-m", "bpref"]);
    assert!(stderr(&out).contains("unknown measure \"bpref\""), "{}", stderr(&out));
}

/// Each result line's scores, in order.
fn scores_of(results: &str) -> Vec<Value> {
    results.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["scores"].clone()).collect()
}

/// Renders `page` in headless Chromium (installed by scripts/setup.sh), saves a screenshot to
/// `png`, and returns what the page wrote to the browser's console (script errors included).
fn render_in_chromium(
    page: &std::path::Path,
    png: &std::path::Path,
    scratch: &std::path::Path,
) -> Vec<String> {
    let browser = ["chromium-headless-shell", "chromium"]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").output().is_ok_and(|o| o.status.success()))
        .expect("headless Chromium is missing: run scripts/setup.sh (make setup)");
    let out = Command::new("timeout")
        .args([
            "120",
            browser,
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--enable-logging=stderr",
        ])
        .arg(format!("--user-data-dir={}", scratch.join("chromium-profile").display()))
        .arg("--window-size=1000,1400")
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{browser}: {}", stderr(&out));
    stderr(&out).lines().filter(|l| l.contains(":CONSOLE")).map(str::to_owned).collect()
}

#[test]
fn chromium_console_check_sees_script_errors() {
    // The report test asserts an empty console; this shows the check can fail.
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("broken.html");
    std::fs::write(&page, "<!doctype html><p>hi</p><script>missing();</script>").unwrap();
    let console = render_in_chromium(&page, &dir.path().join("broken.png"), dir.path());
    assert!(console.iter().any(|l| l.contains("Uncaught ReferenceError")), "{console:?}");
}

#[test]
fn eval_rag_scores_an_ingested_store_and_writes_results_summary_and_an_escaped_report() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus");
    std::fs::create_dir(&corpus).unwrap();
    std::fs::write(corpus.join("paris.md"), "Paris is the capital of France. The Eiffel Tower is in Paris.")
        .unwrap();
    std::fs::write(corpus.join("rust.md"), "Rust checks borrows at compile time <b>safely</b>.").unwrap();
    let store = dir.path().join("store");
    let out = catena(&["ingest", corpus.to_str().unwrap(), "--store", store.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let dataset = dir.path().join("data.jsonl");
    std::fs::write(
        &dataset,
        "{\"question\": \"What is the capital of France?\", \"reference\": \"Paris.\", \"reference_contexts\": [\"Paris is the capital of France. The Eiffel Tower is in Paris.\"]}\n\
         {\"question\": \"Does Rust check <borrows>?\", \"reference\": \"Yes, at compile time.\"}\n",
    )
    .unwrap();
    let report = dir.path().join("report");
    let args = [
        "eval",
        "rag",
        "--dataset",
        dataset.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
        "-k",
        "2",
        "--metrics",
        "faithfulness,non_llm_context_recall",
        "--out",
        report.to_str().unwrap(),
    ];
    let out = catena(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("faithfulness"), "{}", stdout(&out));
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(report.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["samples"], 2);
    assert_eq!(summary["counts"]["non_llm_context_recall"], 1, "only the first line has reference contexts");
    assert_eq!(summary["means"]["non_llm_context_recall"], 1.0);
    let results = std::fs::read_to_string(report.join("results.jsonl")).unwrap();
    assert_eq!(results.lines().count(), 2);
    for line in results.lines() {
        let r: Value = serde_json::from_str(line).unwrap();
        assert!(r["sample"]["contexts"].as_array().unwrap().len() <= 2);
        // Every requested metric is either scored or has its reason recorded.
        assert!(
            r["scores"].get("faithfulness").is_some() || r["errors"].get("faithfulness").is_some(),
            "{r}"
        );
    }
    let html = std::fs::read_to_string(report.join("report.html")).unwrap();
    assert!(html.starts_with("<!doctype html>") && html.contains("<svg") && !html.contains("<script"));
    assert!(html.contains("Does Rust check &lt;borrows&gt;?"), "questions are escaped");
    assert!(!html.contains("<b>safely</b>"), "contexts are escaped");
    assert!(!html.contains("http://") && !html.contains("https://"), "nothing to fetch: it opens offline");
    let shot = dir.path().join("report.png");
    let console = render_in_chromium(&report.join("report.html"), &shot, dir.path());
    assert!(console.is_empty(), "the browser's console: {console:?}");
    let png = std::fs::read(&shot).unwrap();
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    assert!(png.starts_with(b"\x89PNG") && width == 1000, "a 1000-pixel-wide screenshot");
    assert!(png.len() > 20_000, "the page drew charts and tables, not a blank page ({} bytes)", png.len());

    // A second run over the same questions answers every model call from the cache.
    let first_results = results;
    let out = catena(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(", 0 made;") && stdout(&out).contains(", 0 embedded ("),
        "{}",
        stdout(&out)
    );
    let replayed = std::fs::read_to_string(report.join("results.jsonl")).unwrap();
    assert_eq!(scores_of(&replayed), scores_of(&first_results), "cached verdicts give the same scores");
    let mut uncached = args.to_vec();
    uncached.push("--no-cache");
    let out = catena(&uncached);
    assert!(out.status.success() && !stdout(&out).contains("model calls:"), "{}", stdout(&out));

    // A judge on an OpenAI-compatible server (here catena serve with the local model).
    let (_judge_server, judge_base, _) = spawn_serve(&["--addr", "127.0.0.1:0"], &[]);
    let remote = dir.path().join("remote-judge");
    let mut remote_args = args.to_vec();
    remote_args[11] = remote.to_str().unwrap();
    remote_args.extend(["--judge", "openai:chat"]);
    let out = Command::new(env!("CARGO_BIN_EXE_catena"))
        .args(&remote_args)
        .env("OPENAI_BASE_URL", format!("{judge_base}/v1"))
        .env("OPENAI_API_KEY", "unused")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(remote.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["samples"], 2, "{summary}");
    let mut unnamed = args.to_vec();
    unnamed.extend(["--judge", "openai:"]);
    assert!(stderr(&catena(&unnamed)).contains("needs a model name"));

    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"question\": \"ok\"}\nnot json\n").unwrap();
    let mut bad_args = args;
    bad_args[3] = bad.to_str().unwrap();
    let out = catena(&bad_args);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("bad.jsonl") && stderr(&out).contains("line 2"), "{}", stderr(&out));
    let mut unknown = args;
    unknown[9] = "bleu";
    let refused = stderr(&catena(&unknown));
    assert!(refused.contains("invalid value 'bleu'") && refused.contains("faithfulness"), "{refused}");
}
