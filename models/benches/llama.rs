//! Local-inference benchmarks: catena against a bare llama-cpp-2 loop with identical parameters,
//! in the same process and run. `make bench` runs every part and the llama-cpp-python comparison;
//! by hand:
//!
//! ```text
//! cargo bench -p catena-models --bench llama -- chat-catena|chat-bare|chat|embed|reuse|concurrency
//! cargo bench -p catena-models --bench llama -- batch-cost|speculation-off|speculation-on [MODEL]
//! cargo bench -p catena-models --bench llama -- speculation-draft [MODEL [DRAFT]]
//! cargo bench -p catena-models --bench llama -- speculation-prompts > prompts.jsonl
//! ```
//!
//! `speculation-prompts` prints the speculation sets' conversations for
//! benches/reference/llama_cpp_python_bench.py, which replays them with and without
//! llama-cpp-python's prompt-lookup decoding.
//!
//! `MODEL` is a default's name (`chat`, `agent`) or a GGUF path; `DRAFT` likewise (default
//! `agent-small`, the draft model for `agent`).
//!
//! Each part prints JSON lines (one per measurement) that docs/benchmarks.md is written from.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic, missing_docs)]

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use catena_core::{ChatModel, ChatRequest, Embedder, Message, RunContext};
use catena_models::{LlamaChatModel, LlamaEmbedder, LlamaOptions, Speculation, files};
use futures::StreamExt;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::sampling::LlamaSampler;
use serde_json::json;

const THREADS: u32 = 2;
const N_CTX: u32 = 2048;
const N_BATCH: u32 = 512;
const GEN_TOKENS: u32 = 128;
const RUNS: usize = 5;

fn main() {
    // `cargo test --all-targets` runs bench binaries without `--bench`: do nothing then.
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") {
        return;
    }
    let part = args.iter().skip(1).find(|a| !a.starts_with("--")).cloned().unwrap_or_else(|| "chat".into());
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    match part.as_str() {
        "chat" => rt.block_on(chat("both")),
        "chat-catena" => rt.block_on(chat("catena")),
        "chat-bare" => rt.block_on(chat("bare")),
        "embed" => rt.block_on(embed()),
        "reuse" => rt.block_on(reuse()),
        "concurrency" => rt.block_on(concurrency()),
        "batch-cost" => batch_cost(&model_arg(&args)),
        "invariance" => invariance(&model_arg(&args)),
        "speculation-off" => rt.block_on(speculation(&model_arg(&args), Speculation::Off)),
        "speculation-on" => rt.block_on(speculation(&model_arg(&args), Speculation::PROMPT_LOOKUP)),
        "speculation-draft" => {
            let draft = args.iter().skip(1).filter(|a| !a.starts_with("--")).nth(2).cloned();
            let draft = files::resolve(draft.as_deref().unwrap_or("agent-small")).unwrap();
            rt.block_on(speculation(&model_arg(&args), Speculation::draft_model(draft)));
        }
        "speculation-prompts" => {
            for (set, requests) in speculation_prompts() {
                for (i, req) in requests.iter().enumerate() {
                    let messages: Vec<_> =
                        req.messages.iter().map(|m| json!({"role": m.role, "content": m.content})).collect();
                    println!("{}", json!({"set": set, "prompt": i, "messages": messages}));
                }
            }
            return;
        }
        other => panic!(
            "unknown part {other}: chat, chat-catena, chat-bare, embed, reuse, concurrency, batch-cost, \
             speculation-off, speculation-on, speculation-draft, speculation-prompts"
        ),
    }
    println!("{}", json!({"part": part, "peak_rss_mb": peak_rss_mb()}));
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A ~400-token user message; `run` varies its first words so no run reuses another's cache.
fn long_prompt(run: usize) -> String {
    let body = "Retrieval-augmented generation grounds a language model's answer in documents \
                retrieved for the question. A splitter cuts documents into chunks, an embedder \
                turns each chunk into a vector, and a vector store finds the chunks nearest to the \
                question. ";
    format!("Run {run}. {} Summarise the text above in detail.", body.repeat(8))
}

/// The ChatML text catena renders for [system?, user] with SmolLM2's template.
fn chatml(user: &str) -> String {
    format!(
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
         <|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
    )
}

struct Timing {
    prompt_tokens: usize,
    generated: usize,
    /// Seconds from request to first generated token (prompt processing + one sample).
    first: f64,
    /// Seconds from first to last token.
    rest: f64,
}

impl Timing {
    fn pp_rate(&self) -> f64 {
        self.prompt_tokens as f64 / self.first
    }
    fn tg_rate(&self) -> f64 {
        (self.generated.saturating_sub(1)) as f64 / self.rest
    }
}

/// The bare loop's context: the benchmark's window, batch sizes and threads, llama.cpp's defaults
/// otherwise.
fn bare_params() -> LlamaContextParams {
    LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(N_CTX))
        .with_n_batch(N_BATCH)
        .with_n_ubatch(N_BATCH)
        .with_n_threads(THREADS as i32)
        .with_n_threads_batch(THREADS as i32)
}

/// The reference: llama-cpp-2 used directly, same parameters, greedy, no catena layers.
fn bare_generate(backend: &LlamaBackend, model: &LlamaModel, prompt: &str, max_new: usize) -> Timing {
    let params = bare_params();
    let mut ctx = model.new_context(backend, params).unwrap();
    let tokens = model.vocab().tokenize(prompt.as_bytes(), false, true);
    let start = Instant::now();
    let mut batch = LlamaBatch::new(N_BATCH as usize, 1);
    for (ci, chunk) in tokens.chunks(N_BATCH as usize).enumerate() {
        batch.clear();
        for (i, &t) in chunk.iter().enumerate() {
            let pos = ci * N_BATCH as usize + i;
            batch.add(t, pos as i32, &[0], pos + 1 == tokens.len()).unwrap();
        }
        ctx.decode(&mut batch).unwrap();
    }
    let mut sampler = LlamaSampler::greedy();
    let mut last = batch.n_tokens() - 1;
    let mut n = 0;
    let mut first = 0.0;
    let mut pos = tokens.len();
    let mut single = LlamaBatch::new(1, 1);
    while n < max_new {
        let token = sampler.sample(&ctx, last);
        if n == 0 {
            first = start.elapsed().as_secs_f64();
        }
        n += 1;
        if model.vocab().is_eog(token) || n >= max_new {
            break;
        }
        let _ = model.vocab().token_to_piece(token, false, None);
        single.clear();
        single.add(token, pos as i32, &[0], true).unwrap();
        ctx.decode(&mut single).unwrap();
        pos += 1;
        last = 0;
    }
    Timing { prompt_tokens: tokens.len(), generated: n, first, rest: start.elapsed().as_secs_f64() - first }
}

fn greedy(req: ChatRequest) -> ChatRequest {
    let mut req = req.with_temperature(0.0);
    req.sampling.repeat_penalty = Some(1.0);
    req
}

async fn catena_generate(model: &LlamaChatModel, user: &str, max_new: u32) -> Timing {
    let req = greedy(ChatRequest::new(vec![Message::user(user)]).with_max_tokens(max_new));
    let ctx = RunContext::new();
    let start = Instant::now();
    let mut stream = model.chat_stream(req, &ctx);
    let mut first = None;
    let mut usage = None;
    while let Some(delta) = stream.next().await {
        let d = delta.unwrap();
        if first.is_none() && !d.content.is_empty() {
            first = Some(start.elapsed().as_secs_f64());
        }
        usage = d.usage.or(usage);
    }
    let total = start.elapsed().as_secs_f64();
    let usage = usage.unwrap();
    let first = first.unwrap_or(total);
    Timing {
        prompt_tokens: usage.prompt_tokens as usize,
        generated: usage.completion_tokens as usize,
        first,
        rest: total - first,
    }
}

fn options() -> LlamaOptions {
    LlamaOptions {
        threads: Some(THREADS),
        n_ctx: Some(N_CTX),
        n_batch: Some(N_BATCH),
        n_ubatch: Some(N_BATCH),
        parallel: Some(1),
        ..LlamaOptions::default()
    }
}

/// `which`: "both" interleaves the two sides in one process; "catena" or "bare" runs one side
/// alone (llama.cpp's OpenMP thread teams of two sides in one process compete for 2 cores).
async fn chat(which: &str) {
    let path = files::resolve("chat").unwrap();
    let catena =
        if which == "bare" { None } else { Some(LlamaChatModel::load(&path, options()).await.unwrap()) };
    // llama.cpp initialises once per process: the bare loop shares catena's backend handle.
    let backend = catena_models::llama_backend().unwrap();
    let bare_model = (which != "catena")
        .then(|| LlamaModel::load_from_file(backend, &path, &LlamaModelParams::default()).unwrap());
    let (mut pp, mut tg) = ((vec![], vec![]), (vec![], vec![]));
    for run in 0..RUNS {
        let user = long_prompt(run);
        let mut line = json!({"run": run});
        let mut generated = GEN_TOKENS as usize;
        if let Some(model) = &catena {
            let c = catena_generate(model, &user, GEN_TOKENS).await;
            generated = c.generated;
            pp.0.push(c.pp_rate());
            tg.0.push(c.tg_rate());
            line["catena"] = json!({"prompt_tokens": c.prompt_tokens, "generated": c.generated, "pp": c.pp_rate(), "tg": c.tg_rate()});
        }
        if let Some(model) = &bare_model {
            let b = bare_generate(backend, model, &chatml(&user), generated);
            pp.1.push(b.pp_rate());
            tg.1.push(b.tg_rate());
            line["bare"] = json!({"prompt_tokens": b.prompt_tokens, "generated": b.generated, "pp": b.pp_rate(), "tg": b.tg_rate()});
        }
        println!("{line}");
    }
    let med = |v: &Vec<f64>| if v.is_empty() { None } else { Some(median(v.clone())) };
    println!(
        "{}",
        json!({"summary": "chat", "sides": which, "threads": THREADS, "catena_pp_tok_s": med(&pp.0), "bare_pp_tok_s": med(&pp.1),
               "catena_tg_tok_s": med(&tg.0), "bare_tg_tok_s": med(&tg.1)})
    );
}

/// ~256-token chunks of varied text.
fn chunks(n: usize) -> Vec<String> {
    let words = [
        "vector",
        "store",
        "query",
        "rust",
        "ownership",
        "borrow",
        "model",
        "token",
        "chunk",
        "embed",
        "retrieval",
        "agent",
        "tool",
        "memory",
        "prompt",
        "splitter",
    ];
    (0..n)
        .map(|i| {
            (0..230).map(|j| words[(i * 7 + j * 13 + j / 5) % words.len()]).collect::<Vec<_>>().join(" ")
        })
        .collect()
}

async fn embed() {
    let path = files::resolve("embed").unwrap();
    let texts = chunks(128);
    let catena =
        LlamaEmbedder::load(&path, LlamaOptions { threads: Some(THREADS), ..LlamaOptions::default() })
            .await
            .unwrap();
    let backend = catena_models::llama_backend().unwrap();
    let model = LlamaModel::load_from_file(backend, &path, &LlamaModelParams::default()).unwrap();
    let params = LlamaContextParams::default()
        .with_embeddings(true)
        .with_n_ctx(NonZeroU32::new(512))
        .with_n_batch(512)
        .with_n_ubatch(512)
        .with_n_threads(THREADS as i32)
        .with_n_threads_batch(THREADS as i32);
    let mut ctx = model.new_context(backend, params).unwrap();
    let tokens_per_text = model.vocab().tokenize(texts[0].as_bytes(), true, false).len();
    let (mut c_rates, mut b_rates) = (vec![], vec![]);
    for _ in 0..RUNS {
        let start = Instant::now();
        let v = catena.embed(&texts, &RunContext::new()).await.unwrap();
        assert_eq!(v.len(), texts.len());
        c_rates.push(texts.len() as f64 / start.elapsed().as_secs_f64());

        // The bare loop: one text per decode, as llama.cpp's embedding example does by default.
        let start = Instant::now();
        let mut batch = LlamaBatch::new(512, 1);
        for text in &texts {
            let tokens = model.vocab().tokenize(text.as_bytes(), true, false);
            batch.clear();
            for (i, &t) in tokens.iter().take(256).enumerate() {
                batch.add(t, i as i32, &[0], true).unwrap();
            }
            ctx.clear_kv_cache();
            ctx.decode(&mut batch).unwrap();
            let e = ctx.embeddings_seq_ith(0).unwrap();
            let norm = e.iter().map(|x| x * x).sum::<f32>().sqrt();
            std::hint::black_box(e.iter().map(|x| x / norm).collect::<Vec<_>>());
        }
        b_rates.push(texts.len() as f64 / start.elapsed().as_secs_f64());
    }
    let (c, b) = (median(c_rates), median(b_rates));
    println!(
        "{}",
        json!({"summary": "embed", "tokens_per_chunk": tokens_per_text, "chunks": texts.len(),
               "catena_chunks_s": c, "bare_chunks_s": b, "ratio": c / b})
    );
}

/// An agent-like conversation: 8 steps, each adding the model's step and an observation.
async fn agent_steps(model: &LlamaChatModel) -> (u32, u32, f64) {
    let mut messages = vec![
        Message::system("You are an agent. Think step by step and use tools."),
        Message::user("Find the population of the three largest cities in France and add them up."),
    ];
    let (mut evaluated, mut total) = (0, 0);
    let start = Instant::now();
    for step in 0..8 {
        let reply = model
            .chat(greedy(ChatRequest::new(messages.clone()).with_max_tokens(24)), &RunContext::new())
            .await
            .unwrap();
        evaluated += reply.usage.prompt_tokens - reply.usage.cached_prompt_tokens;
        total += reply.usage.prompt_tokens;
        messages.push(reply.message);
        messages.push(Message::user(format!(
            "Observation {step}: the tool returned a table with {} rows of city names and populations.",
            step + 3
        )));
    }
    (evaluated, total, start.elapsed().as_secs_f64())
}

async fn reuse() {
    let path = files::resolve("chat").unwrap();
    let with = LlamaChatModel::load(&path, options()).await.unwrap();
    let without =
        LlamaChatModel::load(&path, LlamaOptions { reuse_prefix: false, ..options() }).await.unwrap();
    let (e1, t1, s1) = agent_steps(&with).await;
    let (e0, t0, s0) = agent_steps(&without).await;
    println!(
        "{}",
        json!({"summary": "reuse", "steps": 8, "prompt_tokens_total": t1, "evaluated_with_reuse": e1,
               "evaluated_without_reuse": e0, "prompt_tokens_total_without": t0,
               "saved_share": 1.0 - f64::from(e1) / f64::from(e0), "wall_with_s": s1, "wall_without_s": s0,
               "wall_ratio": s1 / s0})
    );
}

async fn concurrency() {
    let path = files::resolve("chat").unwrap();
    let model = LlamaChatModel::load(&path, LlamaOptions { parallel: Some(4), ..options() }).await.unwrap();
    for n in [1usize, 2, 4] {
        let start = Instant::now();
        let calls = (0..n).map(|i| {
            let m = model.clone();
            async move {
                let user = format!("Story {i}: tell me about a lighthouse keeper.");
                let req = greedy(ChatRequest::new(vec![Message::user(user)]).with_max_tokens(96));
                let ctx = RunContext::new();
                let mut stream = m.chat_stream(req, &ctx);
                let (mut first, mut tokens) = (None, 0);
                while let Some(d) = stream.next().await {
                    let d = d.unwrap();
                    if first.is_none() && !d.content.is_empty() {
                        first = Some(start.elapsed().as_secs_f64());
                    }
                    tokens = d.usage.map_or(tokens, |u| u.completion_tokens);
                }
                (tokens, first.unwrap_or(0.0), start.elapsed().as_secs_f64())
            }
        });
        let results = futures::future::join_all(calls).await;
        let secs = start.elapsed().as_secs_f64();
        let tokens: u32 = results.iter().map(|r| r.0).sum();
        let first: Vec<f64> = results.iter().map(|r| r.1).collect();
        let done: Vec<f64> = results.iter().map(|r| r.2).collect();
        println!(
            "{}",
            json!({"summary": "concurrency", "requests": n, "tokens": tokens, "seconds": secs,
                   "tok_s": f64::from(tokens) / secs, "first_token_s": first, "done_s": done})
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The model named after the part (`chat` by default).
fn model_arg(args: &[String]) -> String {
    args.iter().skip(1).filter(|a| !a.starts_with("--")).nth(1).cloned().unwrap_or_else(|| "chat".into())
}

/// What verifying a guess costs: seconds per decode of a batch of n tokens of one sequence (all
/// with logits), after a 443-token prompt, against one token. Speculation with n - 1 guesses pays
/// when more than (cost(n) / cost(1)) - 1 of them are confirmed on average.
fn batch_cost(reference: &str) {
    let path = files::resolve(reference).unwrap();
    let backend = catena_models::llama_backend().unwrap();
    let model = LlamaModel::load_from_file(backend, &path, &LlamaModelParams::default()).unwrap();
    let params = bare_params();
    let mut ctx = model.new_context(backend, params).unwrap();
    let tokens = model.vocab().tokenize(chatml(&long_prompt(0)).as_bytes(), false, true);
    let mut batch = LlamaBatch::new(N_BATCH as usize, 1);
    for (i, &t) in tokens.iter().enumerate() {
        batch.add(t, i as i32, &[0], i + 1 == tokens.len()).unwrap();
    }
    ctx.decode(&mut batch).unwrap();
    let p = tokens.len();
    let mut one = 0.0;
    for n in [1usize, 2, 3, 4, 6, 9, 12, 17] {
        let mut times = Vec::new();
        for _ in 0..15 {
            batch.clear();
            for i in 0..n {
                batch.add(tokens[(i * 7) % p], (p + i) as i32, &[0], true).unwrap();
            }
            let start = Instant::now();
            ctx.decode(&mut batch).unwrap();
            times.push(start.elapsed().as_secs_f64());
            ctx.clear_kv_cache_seq(Some(0), Some(p as u32), None).unwrap();
        }
        let t = median(times);
        if n == 1 {
            one = t;
        }
        println!(
            "{}",
            json!({"summary": "batch-cost", "model": reference, "tokens": n, "ms": t * 1e3, "vs_one": t / one})
        );
    }
}

/// Paragraphs of this repository's docs (the corpus of the docs dataset's questions).
fn doc_paragraphs() -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
    let mut files: Vec<_> = walk(&dir);
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        let name = f.strip_prefix(&dir).unwrap().display().to_string();
        for para in text.split("\n\n") {
            let para = para.trim();
            if para.len() > 200 && !para.starts_with('|') && !para.starts_with("```") {
                out.push((name.clone(), para.to_owned()));
            }
        }
    }
    out
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else if path.extension().is_some_and(|e| e == "md") && !path.ends_with("benchmarks.md") {
            out.push(path);
        }
    }
    out
}

fn words(s: &str) -> std::collections::HashSet<String> {
    s.split(|c: char| !c.is_alphanumeric()).filter(|w| w.len() > 3).map(str::to_lowercase).collect()
}

/// The three prompt sets of the speculation benchmark, each a list of requests.
fn speculation_prompts() -> Vec<(&'static str, Vec<ChatRequest>)> {
    // (a) Cited answers: the docs dataset's questions, each with its three docs paragraphs
    // sharing the most words with it, in the prompt `catena eval rag` gives (CitedAnswer's).
    let paragraphs = doc_paragraphs();
    let questions = include_str!("../../benches/data/docs_qa.jsonl");
    let rag = questions
        .lines()
        .take(6)
        .map(|line| {
            let q = serde_json::from_str::<serde_json::Value>(line).unwrap()["question"]
                .as_str()
                .unwrap()
                .to_owned();
            let qw = words(&q);
            let mut ranked: Vec<_> =
                paragraphs.iter().map(|(f, p)| (words(p).intersection(&qw).count(), f, p)).collect();
            ranked.sort_by_key(|r| std::cmp::Reverse(r.0));
            let sources: Vec<String> = ranked
                .iter()
                .take(3)
                .enumerate()
                .map(|(i, (_, f, p))| format!("[{}] ({f})\n{p}", i + 1))
                .collect();
            ChatRequest::new(vec![
                Message::system(format!(
                    "Answer the question using only the numbered sources below. Cite the sources you use as \
                     [1], [2]. If they do not contain the answer, say that you do not know.\n\n{}",
                    sources.join("\n\n")
                )),
                Message::user(q),
            ])
        })
        .collect();
    // (b) Agent observations: a tool result the agent is asked to report on.
    let observations = paragraphs
        .iter()
        .step_by(paragraphs.len() / 4)
        .take(4)
        .map(|(f, p)| {
            ChatRequest::new(vec![
                Message::system("You are an agent. Report what your tools return, accurately."),
                Message::user(format!("Read {f} and tell me what its section says.")),
                Message::assistant(format!("I called read_file(\"{f}\"). Observation:\n{p}")),
                Message::user("Summarise the observation for me, quoting its key sentences."),
            ])
        })
        .collect();
    // (c) Code edits that repeat their input.
    let source = include_str!("../../examples/custom_tool.rs");
    let snippet: String =
        source.lines().filter(|l| !l.starts_with("//")).take(45).collect::<Vec<_>>().join("\n");
    let code = [
        "Rename every `ctx` to `run`",
        "Add a doc comment to every function",
        "Replace `anyhow` with `Box<dyn Error>`",
    ]
    .iter()
    .map(|task| {
        ChatRequest::new(vec![Message::user(format!(
            "{task} in this Rust file and print the whole edited file:\n\n```rust\n{snippet}\n```"
        ))])
    })
    .collect();
    vec![("cited-answers", rag), ("agent-observations", observations), ("code-edit", code)]
}

/// Greedy generation over the speculation prompt sets with one setting; each prompt's text is
/// printed so the runs with and without speculation can be compared byte for byte.
async fn speculation(reference: &str, speculation: Speculation) {
    let path = files::resolve(reference).unwrap();
    let label = match &speculation {
        Speculation::Off => "off",
        Speculation::DraftModel { .. } => "draft",
        _ => "on",
    };
    let options = LlamaOptions { n_ctx: Some(4096), speculation, ..options() };
    let model = LlamaChatModel::load(&path, options).await.unwrap();
    // Warm-up: the first decode pays one-off allocations.
    let _ = model
        .chat(greedy(ChatRequest::new(vec![Message::user("Hi")]).with_max_tokens(4)), &RunContext::new())
        .await;
    // `CATENA_BENCH_SETS=code-edit,...` runs some sets only (the 1.5B model takes minutes a set).
    let only = std::env::var("CATENA_BENCH_SETS").unwrap_or_default();
    for (set, requests) in speculation_prompts() {
        if !only.is_empty() && !only.split(',').any(|s| s == set) {
            continue;
        }
        // Generation time: from the first token to the last (prompt processing is the same work
        // with or without speculation).
        let (mut tokens, mut secs, mut drafted, mut accepted) = (0u32, 0.0, 0u32, 0u32);
        for (i, req) in requests.into_iter().enumerate() {
            let ctx = RunContext::new();
            let start = Instant::now();
            let mut stream = model.chat_stream(greedy(req.with_max_tokens(192)), &ctx);
            let (mut first, mut text, mut usage) = (None, String::new(), None);
            while let Some(delta) = stream.next().await {
                let d = delta.unwrap();
                if first.is_none() && !d.content.is_empty() {
                    first = Some(start.elapsed().as_secs_f64());
                }
                text.push_str(&d.content);
                usage = d.usage.or(usage);
            }
            let total = start.elapsed().as_secs_f64();
            let u = usage.unwrap();
            let generating = total - first.unwrap_or(total);
            tokens += u.completion_tokens.saturating_sub(1);
            secs += generating;
            drafted += u.draft_tokens;
            accepted += u.accepted_draft_tokens;
            println!(
                "{}",
                json!({"set": set, "prompt": i, "speculation": label, "model": reference, "prompt_tokens": u.prompt_tokens,
                       "tokens": u.completion_tokens, "generation_s": generating, "total_s": total, "drafted": u.draft_tokens,
                       "accepted": u.accepted_draft_tokens, "text": text})
            );
        }
        println!(
            "{}",
            json!({"summary": "speculation", "set": set, "speculation": label, "model": reference, "tokens": tokens,
                   "generation_s": secs, "tok_s": f64::from(tokens) / secs, "drafted": drafted, "accepted": accepted,
                   "acceptance": if drafted > 0 { f64::from(accepted) / f64::from(drafted) } else { 0.0 }})
        );
    }
}

/// Whether a position's logits depend on the batch they are computed in: the same 12 tokens
/// decoded one per call, then all in one call, after the same prompt.
fn invariance(reference: &str) {
    let path = files::resolve(reference).unwrap();
    let backend = catena_models::llama_backend().unwrap();
    let model = LlamaModel::load_from_file(backend, &path, &LlamaModelParams::default()).unwrap();
    for fa in
        [llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_DISABLED, llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_ENABLED]
    {
        let params = bare_params().with_flash_attention_policy(fa);
        let mut ctx = model.new_context(backend, params).unwrap();
        let tokens = model.vocab().tokenize(chatml(&long_prompt(0)).as_bytes(), false, true);
        let (prompt, tail) = tokens.split_at(tokens.len() - 12);
        let mut batch = LlamaBatch::new(N_BATCH as usize, 1);
        for (i, &t) in prompt.iter().enumerate() {
            batch.add(t, i as i32, &[0], false).unwrap();
        }
        ctx.decode(&mut batch).unwrap();
        let p = prompt.len();
        let mut single = Vec::new();
        for (i, &t) in tail.iter().enumerate() {
            batch.clear();
            batch.add(t, (p + i) as i32, &[0], true).unwrap();
            ctx.decode(&mut batch).unwrap();
            single.push(ctx.get_logits_ith(0).to_vec());
        }
        ctx.clear_kv_cache_seq(Some(0), Some(p as u32), None).unwrap();
        for split in [12usize, 4, 2] {
            let mut worst = 0f32;
            let mut argmax_same = true;
            let mut at = 0;
            for chunk in tail.chunks(12 / (12 / split).max(1)).take(12) {
                batch.clear();
                for (j, &t) in chunk.iter().enumerate() {
                    batch.add(t, (p + at + j) as i32, &[0], true).unwrap();
                }
                ctx.decode(&mut batch).unwrap();
                for j in 0..chunk.len() {
                    let l = ctx.get_logits_ith(j as i32);
                    let s = &single[at + j];
                    worst = worst.max(l.iter().zip(s).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max));
                    let am = |v: &[f32]| v.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
                    argmax_same &= am(l) == am(s);
                }
                at += chunk.len();
            }
            ctx.clear_kv_cache_seq(Some(0), Some(p as u32), None).unwrap();
            println!(
                "{}",
                json!({"summary": "invariance", "model": reference, "flash_attention": fa, "batch": split,
                                  "max_abs_logit_diff": worst, "argmax_same": argmax_same})
            );
        }
    }
}
