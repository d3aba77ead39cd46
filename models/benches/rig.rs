//! What the rig adapter costs: the same chat request sent through rig alone (`DynModel::call`
//! with a rig request) and through catena's `RigChatModel` (catena's request mapped to rig's,
//! rig's reply mapped back, under the retry loop, timeout and concurrency permit), to a loopback
//! server that answers at once with a fixed OpenAI-shaped reply, so the HTTP round trip is the
//! only other cost. Blocks of calls alternate between the two; one JSON line per path.
//!
//! ```text
//! cargo bench -p catena-models --bench rig --features rig
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic, missing_docs)]

use std::time::{Duration, Instant};

use catena_core::{ChatModel, ChatRequest, Message, RunContext, ToolCall, ToolSpec};
use catena_models::rig::RigChatModel;
use catena_models::rig::rig_core::completion::{CompletionRequest, ToolDefinition};
use catena_models::rig::rig_core::message::{
    self as rm, AssistantContent, CallId, ToolFunction, ToolName, UserContent,
};
use catena_models::rig::rig_core::providers::openai::{OpenAIConfig, wire::LLAMACPP};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BLOCK: usize = 200;
const BLOCKS: usize = 10;

const REPLY: &str = r#"{"id":"x","object":"chat.completion","created":0,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"It is sunny in Paris."},"finish_reason":"stop"}],"usage":{"prompt_tokens":60,"completion_tokens":7,"total_tokens":67}}"#;

/// A keep-alive HTTP/1.1 server that answers every request with `REPLY` at once.
async fn server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 1 << 16];
                let mut pending = Vec::new();
                loop {
                    let n = match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    pending.extend_from_slice(&buf[..n]);
                    // One whole request: headers, then Content-Length bytes of body.
                    while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&pending[..end]).to_ascii_lowercase();
                        let length: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map_or(0, |v| v.trim().parse().unwrap());
                        if pending.len() < end + 4 + length {
                            break;
                        }
                        pending.drain(..end + 4 + length);
                        let response = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{REPLY}",
                            REPLY.len()
                        );
                        if socket.write_all(response.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    format!("http://{addr}/v1")
}

/// A realistic agent turn: instructions, a question, a tool call and its result, two tools.
fn catena_request() -> ChatRequest {
    let call =
        ToolCall { id: "call_1".into(), name: "get_weather".into(), arguments: json!({"city": "Paris"}) };
    let tool = |name: &str| ToolSpec {
        name: name.into(),
        description: format!("{name} for a city."),
        parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
    };
    ChatRequest::new(vec![
        Message::system("You are a helpful assistant. Answer in one sentence."),
        Message::user("What is the weather in Paris?"),
        Message::assistant("").with_tool_calls(vec![call]),
        Message::tool("call_1", "Sunny, 21 degrees."),
    ])
    .with_max_tokens(64)
    .with_tools(vec![tool("get_weather"), tool("get_time")])
}

/// The same turn built directly with rig's types.
fn rig_request() -> CompletionRequest {
    let name = |n: &str| ToolName::new(n).unwrap();
    let call =
        rm::ToolCall::from_wire("call_1", ToolFunction::new(name("get_weather"), json!({"city": "Paris"})));
    let result = UserContent::tool_result(
        CallId::from_wire("call_1"),
        name("get_weather"),
        vec![rm::ToolResultContent::text("Sunny, 21 degrees.")],
    );
    let tool = |n: &str| {
        ToolDefinition::new(
            name(n),
            format!("{n} for a city."),
            json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
        )
    };
    CompletionRequest::new(rm::Message::system("You are a helpful assistant. Answer in one sentence."))
        .messages([
            rm::Message::user("What is the weather in Paris?"),
            rm::AssistantMessage::new(vec![AssistantContent::ToolCall(call)]).into(),
            rm::Message::User { content: vec![result] },
        ])
        .tools(vec![tool("get_weather"), tool("get_time")])
        .max_tokens(64)
}

fn main() {
    // `cargo test --all-targets` runs bench binaries without `--bench`: do nothing then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let base = server().await;
        let rig = OpenAIConfig::with_key(&LLAMACPP, "x").with_base_url(&base).client().chat("m").erase();
        let catena = RigChatModel::new(rig.clone());
        let ctx = RunContext::new();
        // Warm both paths (connection pool, lazy statics).
        for _ in 0..50 {
            rig.call(rig_request()).await.unwrap();
            catena.chat(catena_request(), &ctx).await.unwrap();
        }
        let (mut rig_time, mut catena_time) = (Duration::ZERO, Duration::ZERO);
        for _ in 0..BLOCKS {
            let start = Instant::now();
            for _ in 0..BLOCK {
                let reply = rig.call(rig_request()).await.unwrap();
                assert!(!reply.choice.is_empty());
            }
            rig_time += start.elapsed();
            let start = Instant::now();
            for _ in 0..BLOCK {
                let reply = catena.chat(catena_request(), &ctx).await.unwrap();
                assert_eq!(reply.message.content, "It is sunny in Paris.");
            }
            catena_time += start.elapsed();
        }
        let calls = (BLOCK * BLOCKS) as f64;
        let per_call = |t: Duration| t.as_secs_f64() * 1e6 / calls;
        println!("{}", json!({"path": "rig DynModel::call, rig request", "calls": calls, "us_per_call": per_call(rig_time)}));
        println!(
            "{}",
            json!({"path": "catena RigChatModel::chat, catena request", "calls": calls, "us_per_call": per_call(catena_time),
                   "ratio_to_rig": catena_time.as_secs_f64() / rig_time.as_secs_f64()})
        );
    });
}
