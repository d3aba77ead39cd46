//! Measures what `catena serve --upstream` adds to a request: the same requests sent to a
//! `catena serve` replica directly and through a gateway in front of it, alternated. Writes JSON
//! to the path given (or prints it).
//!
//! ```text
//! cargo run --release --no-default-features --features llama,serve,openai --example gateway_bench -- out.json
//! ```
//!
//! Both servers run in this process on loopback (the replica with the default local models,
//! the gateway with a `ReplicaSet` over the replica's URL, as `catena serve --upstream` builds
//! it); the client is catena's OpenAI-compatible one either way. Three request kinds: an
//! embedding of one sentence, a greedy 8-token chat reply, and the same reply streamed. For each:
//! p50 and p99 latency direct and through the gateway, and the ratio of the p50s.

use std::sync::Arc;
use std::time::{Duration, Instant};

use catena::core::{
    CallLimits, ChatModel, ChatRequest, Embedder, Message, Replica, ReplicaSet, Result, RetryPolicy,
    RunContext,
};
use catena::models::openai::{OpenAiChatModel, OpenAiConfig, OpenAiEmbedder};
use catena::models::{LlamaChatModel, LlamaEmbedder};
use catena::serve::Server;
use futures::StreamExt;
use serde_json::json;

const ROUNDS: usize = 60;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or(f64::NAN)
}

/// Starts `server` on a loopback port; returns its `/v1` base URL.
async fn start(server: Server) -> Result<String> {
    let listener =
        tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| catena::core::Error::io("bind", e))?;
    let addr = listener.local_addr().map_err(|e| catena::core::Error::io("bind", e))?;
    tokio::spawn(server.serve(listener, std::future::pending()));
    Ok(format!("http://{addr}/v1"))
}

fn config(base: &str, model: &str) -> OpenAiConfig {
    OpenAiConfig::new(model).with_base_url(base).with_limits(
        CallLimits::default().with_timeout(Duration::from_secs(120)).with_retry(RetryPolicy::attempts(1)),
    )
}

fn chat_request() -> ChatRequest {
    let mut request = ChatRequest::new(vec![Message::user("Name three colours.")]).with_max_tokens(8);
    request.sampling.temperature = Some(0.0);
    request
}

#[tokio::main]
async fn main() -> Result<()> {
    // The replica: the default local chat and embedding models behind `catena serve`.
    let chat: Arc<dyn ChatModel> = Arc::new(LlamaChatModel::load_default().await?);
    let embed: Arc<dyn Embedder> = Arc::new(LlamaEmbedder::load_default().await?);
    let replica = start(Server::new().with_chat_model("chat", chat).with_embedder("embed", embed)).await?;

    // The gateway: a replica set over it, one attempt per replica, as `--upstream` builds it.
    let upstream_chat = Arc::new(OpenAiChatModel::new(config(&replica, "chat"))?);
    let upstream_embed = Arc::new(OpenAiEmbedder::connect(config(&replica, "embed")).await?);
    let set = ReplicaSet::new(vec![
        Replica::new(replica.clone()).with_chat(upstream_chat).with_embedder(upstream_embed),
    ])?;
    let gateway = start(
        Server::new().with_chat_model("chat", Arc::new(set.clone())).with_embedder("embed", Arc::new(set)),
    )
    .await?;

    let clients = |base: &str| -> Result<(OpenAiChatModel, OpenAiEmbedder)> {
        Ok((
            OpenAiChatModel::new(config(base, "chat"))?,
            OpenAiEmbedder::with_dimensions(config(base, "embed"), 384)?,
        ))
    };
    let (direct_chat, direct_embed) = clients(&replica)?;
    let (gateway_chat, gateway_embed) = clients(&gateway)?;
    let ctx = RunContext::new();
    let text = vec!["The lighthouse keeper climbed the stairs at dusk.".to_owned()];

    let mut rows = Vec::new();
    for kind in ["embedding", "chat", "chat-stream"] {
        let (mut direct_ms, mut gateway_ms) = (Vec::with_capacity(ROUNDS), Vec::with_capacity(ROUNDS));
        // One warm-up each, then alternate which path goes first.
        for round in 0..=ROUNDS {
            for k in 0..2 {
                let through_gateway = (round + k) % 2 == 1;
                let (chat, embed) = if through_gateway {
                    (&gateway_chat, &gateway_embed)
                } else {
                    (&direct_chat, &direct_embed)
                };
                let started = Instant::now();
                match kind {
                    "embedding" => {
                        embed.embed(&text, &ctx).await?;
                    }
                    "chat" => {
                        chat.chat(chat_request(), &ctx).await?;
                    }
                    _ => {
                        let mut deltas = chat.chat_stream(chat_request(), &ctx);
                        while let Some(delta) = deltas.next().await {
                            delta?;
                        }
                    }
                }
                if round > 0 {
                    let ms = started.elapsed().as_secs_f64() * 1e3;
                    if through_gateway { gateway_ms.push(ms) } else { direct_ms.push(ms) }
                }
            }
        }
        direct_ms.sort_by(f64::total_cmp);
        gateway_ms.sort_by(f64::total_cmp);
        let (direct, via) = (percentile(&direct_ms, 0.5), percentile(&gateway_ms, 0.5));
        rows.push(json!({
            "request": kind, "rounds": ROUNDS,
            "direct_p50_ms": direct, "direct_p99_ms": percentile(&direct_ms, 0.99),
            "gateway_p50_ms": via, "gateway_p99_ms": percentile(&gateway_ms, 0.99),
            "overhead_p50": via / direct, "added_p50_ms": via - direct,
        }));
    }
    let out = serde_json::to_string_pretty(&json!({"bench": "gateway", "rows": rows}))
        .map_err(|e| catena::core::Error::invalid_input(e.to_string()))?;
    match std::env::args().nth(1) {
        Some(path) => std::fs::write(&path, &out).map_err(|e| catena::core::Error::io(path, e))?,
        None => println!("{out}"),
    }
    Ok(())
}
