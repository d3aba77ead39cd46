//! Helpers shared by the integration tests that talk HTTP: the local models behind `catena serve`,
//! and a misbehaving server.
#![allow(clippy::unwrap_used, dead_code)]

use std::sync::Arc;

use catena::core::{ChatModel, Embedder};
use catena::models::{LlamaChatModel, LlamaEmbedder};
use catena::serve::Server;

/// `catena serve` with the local models ("chat", "embed"), behind `api_key` if given, on a free
/// loopback port; returns its `/v1` base and the local embedder. It stops with the test.
pub(crate) async fn serve_local(api_key: Option<&str>) -> (String, Arc<dyn Embedder>) {
    let chat: Arc<dyn ChatModel> = Arc::new(LlamaChatModel::load_default().await.unwrap());
    let embed: Arc<dyn Embedder> = Arc::new(LlamaEmbedder::load_default().await.unwrap());
    let server = Server::new()
        .with_chat_model("chat", chat)
        .with_embedder("embed", embed.clone())
        .with_api_key(api_key.map(str::to_owned))
        // Greedy unless a request says otherwise: replies asserted on must not depend on a
        // random seed (a sampled reply can end at once, or wander until its token limit).
        .with_default_sampling(Some(0.0), None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(server.serve(listener, std::future::pending()));
    (format!("http://{addr}/v1"), embed)
}

/// A fault-injecting OpenAI-shaped server: answer `n` (0-based) comes from `plan(n)` after its
/// delay. Returns the `/v1` base and the request counter.
pub(crate) async fn fault_server(
    plan: impl Fn(usize) -> (u64, axum::response::Response) + Send + Sync + 'static,
) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let hits = Arc::new(AtomicUsize::new(0));
    let plan = Arc::new(plan);
    let counter = hits.clone();
    let app = axum::Router::new().fallback(move || {
        let (hits, plan) = (counter.clone(), plan.clone());
        async move {
            let (delay, response) = plan(hits.fetch_add(1, Ordering::SeqCst));
            tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
            response
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/v1"), hits)
}

pub(crate) fn reply(
    status: u16,
    content_type: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> axum::response::Response {
    let mut response =
        axum::response::Response::builder().status(status).header("content-type", content_type);
    for (k, v) in headers {
        response = response.header(*k, *v);
    }
    response.body(axum::body::Body::from(body.to_owned())).unwrap()
}

pub(crate) const OK: &str = r#"{"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 3, "completion_tokens": 1}}"#;
pub(crate) const ERROR: &str =
    r#"{"error": {"message": "overloaded", "type": "server_error", "param": null, "code": null}}"#;
