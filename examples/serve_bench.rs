//! Measures `catena serve`: streaming through HTTP against the same model called in process, and
//! a load of concurrent streaming clients. Writes JSON to the path given (or prints it).
//!
//! ```text
//! cargo run --release --no-default-features --features llama,serve,openai --example serve_bench -- out.json
//! ```
//!
//! 1. Overhead: the same greedy 128-token generation, in process (`chat_stream`) and through
//!    `catena serve` with the OpenAI-compatible client, alternating, 5 rounds each; tokens per
//!    second of each and their ratio.
//! 2. Load: 32 clients each streaming requests back to back for 60 s; completed requests,
//!    errors, time to first token (p50, p99), tokens per second overall.

use std::sync::Arc;
use std::time::{Duration, Instant};

use catena::core::{ChatModel, ChatRequest, Message, Result, RunContext};
use catena::models::LlamaChatModel;
use catena::models::openai::{OpenAiChatModel, OpenAiConfig};
use catena::serve::Server;
use futures::StreamExt;
use serde_json::json;

fn request(max_tokens: u32) -> ChatRequest {
    let mut r = ChatRequest::new(vec![Message::user("Write a story about a lighthouse keeper.")])
        .with_max_tokens(max_tokens);
    r.sampling.temperature = Some(0.0);
    r
}

/// Streams one reply; returns (completion tokens, seconds, seconds to first text).
async fn stream_once(model: &dyn ChatModel, max_tokens: u32) -> Result<(u32, f64, f64)> {
    let ctx = RunContext::new();
    let started = Instant::now();
    let mut first = None;
    let mut tokens = 0;
    let mut deltas = model.chat_stream(request(max_tokens), &ctx);
    while let Some(delta) = deltas.next().await {
        let delta = delta?;
        if first.is_none() && !delta.content.is_empty() {
            first = Some(started.elapsed().as_secs_f64());
        }
        if let Some(u) = delta.usage {
            tokens = u.completion_tokens;
        }
    }
    let total = started.elapsed().as_secs_f64();
    Ok((tokens, total, first.unwrap_or(total)))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or(f64::NAN)
}

#[tokio::main]
async fn main() -> Result<()> {
    let local = Arc::new(LlamaChatModel::load_default().await?);
    let listener =
        tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| catena::core::Error::io("bind", e))?;
    let addr = listener.local_addr().map_err(|e| catena::core::Error::io("bind", e))?;
    let served: Arc<dyn ChatModel> = local.clone();
    tokio::spawn(Server::new().with_chat_model("chat", served).serve(listener, std::future::pending()));
    let config = OpenAiConfig::new("chat").with_base_url(format!("http://{addr}/v1"));
    let config = OpenAiConfig { limits: config.limits.clone().with_max_concurrency(64), ..config };
    let remote = Arc::new(OpenAiChatModel::new(config)?);

    // 1. Overhead, alternating so drift hits both sides alike.
    stream_once(local.as_ref(), 16).await?; // warm-up
    let (mut direct, mut http) = ((0u32, 0f64), (0u32, 0f64));
    for _ in 0..5 {
        let (t, s, _) = stream_once(local.as_ref(), 128).await?;
        direct = (direct.0 + t, direct.1 + s);
        let (t, s, _) = stream_once(remote.as_ref(), 128).await?;
        http = (http.0 + t, http.1 + s);
    }
    let direct_tps = f64::from(direct.0) / direct.1;
    let http_tps = f64::from(http.0) / http.1;
    println!(
        "direct {direct_tps:.1} tok/s, through catena serve {http_tps:.1} tok/s, ratio {:.3}",
        http_tps / direct_tps
    );

    // 2. Load: 32 clients for 60 s.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut clients = Vec::new();
    for _ in 0..32 {
        let remote = remote.clone();
        clients.push(tokio::spawn(async move {
            let (mut done, mut errors, mut tokens, mut ttft) = (0u32, 0u32, 0u64, Vec::new());
            while Instant::now() < deadline {
                match stream_once(remote.as_ref(), 64).await {
                    Ok((t, _, first)) => {
                        done += 1;
                        tokens += u64::from(t);
                        ttft.push(first);
                    }
                    Err(e) => {
                        errors += 1;
                        eprintln!("error: {e}");
                    }
                }
            }
            (done, errors, tokens, ttft)
        }));
    }
    let started = Instant::now();
    let (mut done, mut errors, mut tokens, mut ttft) = (0u32, 0u32, 0u64, Vec::new());
    for client in clients {
        if let Ok((d, e, t, f)) = client.await {
            done += d;
            errors += e;
            tokens += t;
            ttft.extend(f);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    ttft.sort_by(f64::total_cmp);
    let (p50, p99) = (percentile(&ttft, 0.5), percentile(&ttft, 0.99));
    println!(
        "load: 32 clients, {elapsed:.0} s: {done} requests, {errors} errors, TTFT p50 {p50:.2} s p99 {p99:.2} s, {:.1} tok/s overall",
        tokens as f64 / elapsed
    );
    let report = json!({
        "overhead": {"direct_tokens_per_s": direct_tps, "http_tokens_per_s": http_tps, "ratio": http_tps / direct_tps,
                     "rounds": 5, "max_tokens": 128},
        "load": {"clients": 32, "seconds": elapsed, "requests": done, "errors": errors, "ttft_p50_s": p50,
                 "ttft_p99_s": p99, "tokens_per_s": tokens as f64 / elapsed, "max_tokens": 64},
    });
    match std::env::args().nth(1) {
        Some(path) => {
            std::fs::write(&path, report.to_string()).map_err(|e| catena::core::Error::io(&path, e))?
        }
        None => println!("{report}"),
    }
    Ok(())
}
