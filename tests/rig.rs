//! The rig-core adapter end to end: rig's own OpenAI-compatible provider (its llama.cpp dialect)
//! talks to `catena serve` running the real local models on loopback, and catena drives rig
//! through `RigChatModel` / `RigEmbedder`. Every message, tool call, schema and delta crosses
//! catena → rig → HTTP → catena serve and back. A fault-injecting server checks the retries.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic, missing_docs)]

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use catena::core::CallLimits;
use catena::core::RetryPolicy;
use catena::core::{
    ChatModel, ChatRequest, Embedder, ErrorKind, FinishReason, Message, ResponseFormat, RunContext,
    ToolChoice, ToolSpec,
};
use catena_models::rig::rig_core::providers::openai::{OpenAI, OpenAIConfig, wire::LLAMACPP};
use catena_models::rig::{RigChatModel, RigEmbedder};
use futures::StreamExt;
use serde_json::{Value, json};

mod common;
use common::{ERROR, OK, fault_server, reply, serve_local};

/// rig's client for an OpenAI-compatible server at `base`, as a user would build it.
fn rig_client(base: &str) -> OpenAI {
    OpenAIConfig::with_key(&LLAMACPP, "unused").with_base_url(base).client()
}

fn weather() -> ToolSpec {
    ToolSpec {
        name: "get_weather".into(),
        description: "Weather for a city.".into(),
        parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
    }
}

#[tokio::test]
async fn chat_stream_tools_schema_and_embeddings_through_rig_and_catena_serve() {
    let (base, local_embed) = serve_local(None).await;
    let ctx = RunContext::new();
    let model = RigChatModel::new(rig_client(&base).chat("chat"));
    assert_eq!(model.model_name(), "chat");

    // Plain chat, with a system message.
    let request =
        ChatRequest::new(vec![Message::system("Be brief."), Message::user("Say hello.")]).with_max_tokens(8);
    let reply = model.chat(request, &ctx).await.unwrap();
    assert!(!reply.message.content.is_empty(), "{reply:?}");
    assert!((1..=8).contains(&reply.usage.completion_tokens), "{:?}", reply.usage);
    assert!(reply.usage.prompt_tokens > 0);
    assert!(matches!(reply.finish_reason, FinishReason::Stop | FinishReason::Length));

    // Streaming: several text deltas as they come, then the finish reason and usage.
    let deltas: Vec<_> = model
        .chat_stream(ChatRequest::new(vec![Message::user("Count to five.")]).with_max_tokens(16), &ctx)
        .collect()
        .await;
    let deltas: Vec<_> = deltas.into_iter().map(Result::unwrap).collect();
    let last = deltas.last().unwrap();
    let tokens = last.usage.as_ref().unwrap().completion_tokens;
    assert!(last.finish_reason.is_some() && tokens >= 1, "{last:?}");
    // Token by token, not one block at the end (the model's reply length varies with sampling).
    let texts = deltas.iter().filter(|d| !d.content.is_empty()).count();
    assert!(texts >= 2 || tokens == 1, "{tokens} tokens in {texts} text deltas: {deltas:?}");

    // JSON Schema output becomes rig's output_schema, and catena serve constrains to it.
    let schema = json!({"type": "object", "properties": {"name": {"type": "string", "maxLength": 40}}, "required": ["name"]});
    let request = ChatRequest::new(vec![Message::user("Invent a name.")])
        .with_max_tokens(64)
        .with_response_format(ResponseFormat::JsonSchema { name: "person".into(), schema });
    let reply = model.chat(request, &ctx).await.unwrap();
    let person: Value = serde_json::from_str(&reply.message.content).unwrap();
    assert!(person["name"].is_string(), "{person}");

    // A required tool call, plain and streamed.
    let mut request = ChatRequest::new(vec![Message::user("Weather in Paris?")])
        .with_max_tokens(64)
        .with_tools(vec![weather()]);
    request.tool_choice = ToolChoice::Required;
    let reply = model.chat(request.clone(), &ctx).await.unwrap();
    assert_eq!(reply.finish_reason, FinishReason::ToolCalls);
    let call = reply.message.tool_calls[0].clone();
    assert_eq!(call.name, "get_weather");
    assert!(call.arguments["city"].is_string(), "{call:?}");
    assert!(!call.id.is_empty());
    let streamed: Vec<_> = model.chat_stream(request, &ctx).collect().await;
    let streamed: Vec<_> = streamed.into_iter().map(Result::unwrap).collect();
    let calls: Vec<_> = streamed.iter().flat_map(|d| d.tool_calls.clone()).collect();
    assert_eq!(calls.len(), 1, "{streamed:?}");
    assert_eq!(calls[0].name, "get_weather");
    assert_eq!(streamed.last().unwrap().finish_reason, Some(FinishReason::ToolCalls));

    // The tool's answer goes back as a tool result named after its call; the model answers.
    let mut follow_up = ChatRequest::new(vec![
        Message::user("Weather in Paris?"),
        Message::assistant("").with_tool_calls(vec![call.clone()]),
        Message::tool(&call.id, "Sunny, 21 °C."),
    ])
    .with_max_tokens(24)
    .with_tools(vec![weather()]);
    follow_up.tool_choice = ToolChoice::None;
    let reply = model.chat(follow_up, &ctx).await.unwrap();
    assert!(!reply.message.content.is_empty() && reply.message.tool_calls.is_empty(), "{reply:?}");

    // Embeddings: the same vectors as the local embedder, across several batches.
    let remote = RigEmbedder::connect(rig_client(&base).embedding("embed", None), CallLimits::default())
        .await
        .unwrap()
        .with_batch_size(2);
    assert_eq!(remote.dimensions(), 384);
    let texts: Vec<String> = ["a cat", "a dog", "a ship", "the sea", "rust"].map(String::from).to_vec();
    let got = remote.embed(&texts, &ctx).await.unwrap();
    let want = local_embed.embed(&texts, &ctx).await.unwrap();
    assert_eq!(got.len(), 5);
    for (g, w) in got.iter().zip(&want) {
        assert!(g.iter().zip(w).all(|(a, b)| (a - b).abs() < 1e-5));
    }
}

#[tokio::test]
async fn refusals_and_bad_requests_are_typed_errors() {
    let (base, _) = serve_local(None).await;
    let ctx = RunContext::new();
    let hello = ChatRequest::new(vec![Message::user("hi")]).with_max_tokens(4);
    // Unknown model: catena serve's 404, permanent, with its message, not retried.
    let err =
        RigChatModel::new(rig_client(&base).chat("gpt-nope")).chat(hello.clone(), &ctx).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ModelPermanent, "{err}");
    assert!(err.to_string().contains("gpt-nope"), "{err}");
    // A prompt over the local model's context: context_length_exceeded survives the trip.
    let huge = ChatRequest::new(vec![Message::user("word ".repeat(40_000))]).with_max_tokens(4);
    let err = RigChatModel::new(rig_client(&base).chat("chat")).chat(huge, &ctx).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ContextLengthExceeded, "{err}");

    // Requests catena cannot express to rig are refused before anything is sent.
    let model = RigChatModel::new(rig_client(&base).chat("chat"));
    let grammar =
        hello.clone().with_response_format(ResponseFormat::Grammar { gbnf: "root ::= \"x\"".into() });
    assert_eq!(model.chat(grammar, &ctx).await.unwrap_err().kind(), ErrorKind::InvalidInput);
    let orphan = ChatRequest::new(vec![Message::user("hi"), Message::tool("call-7", "42")]);
    let err = model.chat(orphan, &ctx).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("call-7"), "{err}");
    assert_eq!(model.chat(ChatRequest::new(vec![]), &ctx).await.unwrap_err().kind(), ErrorKind::InvalidInput);
}

fn quick() -> CallLimits {
    CallLimits {
        retry: RetryPolicy::attempts(3).with_initial_backoff(Duration::from_millis(5)),
        timeout: Duration::from_secs(10),
        ..CallLimits::default()
    }
}

#[tokio::test]
async fn transient_failures_are_retried_and_client_errors_are_not() {
    let ctx = RunContext::new();
    let hello = || ChatRequest::new(vec![Message::user("hi")]);
    let model =
        |base: &str, options: CallLimits| RigChatModel::with_limits(rig_client(base).chat("m"), options);

    // 429 with Retry-After: waits what the server asked (not the 5 ms backoff), then succeeds.
    let (base, hits) = fault_server(|n| match n {
        0 => (0, reply(429, "application/json", ERROR, &[("retry-after", "1")])),
        _ => (0, reply(200, "application/json", OK, &[])),
    })
    .await;
    let started = Instant::now();
    let answer = model(&base, quick()).chat(hello(), &ctx).await.unwrap();
    assert_eq!(answer.message.content, "ok");
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    assert!(started.elapsed() >= Duration::from_millis(950), "Retry-After ignored: {:?}", started.elapsed());

    // Always 503: three attempts, then a transient error.
    let (base, hits) = fault_server(|_| (0, reply(503, "application/json", ERROR, &[]))).await;
    let err = model(&base, quick()).chat(hello(), &ctx).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ModelTransient, "{err}");
    assert_eq!(hits.load(Ordering::SeqCst), 3);

    // A client error: one attempt, permanent.
    let bad =
        r#"{"error": {"message": "bad field", "type": "invalid_request_error", "param": "x", "code": null}}"#;
    let (base, hits) = fault_server(move |_| (0, reply(400, "application/json", bad, &[]))).await;
    let err = model(&base, quick()).chat(hello(), &ctx).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ModelPermanent, "{err}");
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    // Slow headers: the per-attempt timeout cuts each try; bounded, transient.
    let (base, hits) = fault_server(|_| (3000, reply(200, "application/json", OK, &[]))).await;
    let slow = CallLimits { timeout: Duration::from_millis(300), retry: RetryPolicy::attempts(2), ..quick() };
    let started = Instant::now();
    let err = model(&base, slow).chat(hello(), &ctx).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ModelTransient, "{err}");
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());

    // Cancellation ends a call that is waiting on the server.
    let (base, _) = fault_server(|_| (5000, reply(200, "application/json", OK, &[]))).await;
    let cancelled = RunContext::new();
    let canceller = cancelled.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        canceller.cancel();
    });
    let started = Instant::now();
    let err = model(&base, quick()).chat(hello(), &cancelled).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled, "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));
}
