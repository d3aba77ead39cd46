//! The OpenAI-compatible backend against `catena serve` running the real local models, on
//! loopback: every request crosses real HTTP and the OpenAI wire format both ways.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic, missing_docs)]

use catena::core::{
    ChatModel, ChatRequest, Embedder, ErrorKind, FinishReason, Message, ResponseFormat, RunContext,
    ToolChoice, ToolSpec,
};
use std::time::Duration;

use catena::core::CallLimits;
use catena::core::RetryPolicy;
use catena::models::openai::{OpenAiChatModel, OpenAiConfig, OpenAiEmbedder};
use futures::StreamExt;
use serde_json::{Value, json};

mod common;
use common::{ERROR, OK, fault_server, reply, serve_local};

fn config(base: &str, model: &str) -> OpenAiConfig {
    OpenAiConfig::new(model).with_base_url(base).with_api_key("k")
}

#[tokio::test]
async fn chat_stream_tools_schema_and_embeddings_through_catena_serve() {
    let (base, local_embed) = serve_local(Some("k")).await;
    let ctx = RunContext::new();
    let model = OpenAiChatModel::new(config(&base, "chat")).unwrap();
    assert_eq!(model.model_name(), "chat");

    let reply = model
        .chat(ChatRequest::new(vec![Message::user("Say hello.")]).with_max_tokens(8), &ctx)
        .await
        .unwrap();
    assert!(!reply.message.content.is_empty());
    assert!((1..=8).contains(&reply.usage.completion_tokens), "{:?}", reply.usage);

    // Streaming: several text deltas, then one carrying the finish reason and usage.
    let deltas: Vec<_> = model
        .chat_stream(ChatRequest::new(vec![Message::user("Count to five.")]).with_max_tokens(16), &ctx)
        .collect()
        .await;
    let deltas: Vec<_> = deltas.into_iter().map(Result::unwrap).collect();
    assert!(deltas.len() >= 3, "{deltas:?}");
    let last = deltas.last().unwrap();
    assert!(last.finish_reason.is_some() && last.usage.as_ref().unwrap().completion_tokens >= 1, "{last:?}");
    assert!(!deltas.iter().map(|d| d.content.as_str()).collect::<String>().is_empty());

    // JSON Schema output.
    let schema = json!({"type": "object", "properties": {"name": {"type": "string", "maxLength": 40}}, "required": ["name"]});
    let request = ChatRequest::new(vec![Message::user("Invent a name.")])
        .with_max_tokens(64)
        .with_response_format(ResponseFormat::JsonSchema { name: "person".into(), schema });
    let reply = model.chat(request, &ctx).await.unwrap();
    let person: Value = serde_json::from_str(&reply.message.content).unwrap();
    assert!(person["name"].is_string(), "{person}");

    // A required tool call, plain and streamed (the stream reassembles it).
    let weather = ToolSpec {
        name: "get_weather".into(),
        description: "Weather for a city.".into(),
        parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
    };
    let mut request = ChatRequest::new(vec![Message::user("Weather in Paris?")])
        .with_max_tokens(64)
        .with_tools(vec![weather]);
    request.tool_choice = ToolChoice::Required;
    let reply = model.chat(request.clone(), &ctx).await.unwrap();
    assert_eq!(reply.finish_reason, FinishReason::ToolCalls);
    assert_eq!(reply.message.tool_calls[0].name, "get_weather");
    assert!(reply.message.tool_calls[0].arguments["city"].is_string());
    let streamed: Vec<_> = model.chat_stream(request, &ctx).collect().await;
    let calls: Vec<_> = streamed.into_iter().flat_map(|d| d.unwrap().tool_calls).collect();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].name, "get_weather");

    // Embeddings: the same vectors as the local embedder, batched across requests.
    let remote =
        OpenAiEmbedder::connect(OpenAiConfig { embed_batch: 2, ..config(&base, "embed") }).await.unwrap();
    assert_eq!(remote.dimensions(), 384);
    let texts: Vec<String> = ["a cat", "a dog", "a ship", "the sea", "rust"].map(String::from).to_vec();
    let got = remote.embed(&texts, &ctx).await.unwrap();
    let want = local_embed.embed(&texts, &ctx).await.unwrap();
    for (g, w) in got.iter().zip(&want) {
        assert!(g.iter().zip(w).all(|(a, b)| (a - b).abs() < 1e-5));
    }
}

#[tokio::test]
async fn server_refusals_map_to_typed_errors() {
    let (base, _) = serve_local(Some("k")).await;
    let ctx = RunContext::new();
    let hello = ChatRequest::new(vec![Message::user("hi")]).with_max_tokens(4);
    // Unknown model: 404, permanent, with the server's message.
    let err =
        OpenAiChatModel::new(config(&base, "gpt-nope")).unwrap().chat(hello.clone(), &ctx).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ModelPermanent, "{err}");
    assert!(err.to_string().contains("404") && err.to_string().contains("gpt-nope"), "{err}");
    // Wrong key: 401, permanent (retrying cannot help).
    let wrong = OpenAiChatModel::new(config(&base, "chat").with_api_key("nope")).unwrap();
    let err = wrong.chat(hello.clone(), &ctx).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ModelPermanent, "{err}");
    assert!(err.to_string().contains("401"), "{err}");
    // Grammars are a local-model feature: refused before anything is sent.
    let grammar =
        hello.clone().with_response_format(ResponseFormat::Grammar { gbnf: "root ::= \"x\"".into() });
    let model = OpenAiChatModel::new(config(&base, "chat")).unwrap();
    assert_eq!(model.chat(grammar, &ctx).await.unwrap_err().kind(), ErrorKind::InvalidInput);
    // A prompt over the model's context, plain or streamed: the server's 400 arrives typed.
    let huge = ChatRequest::new(vec![Message::user("word ".repeat(40_000))]).with_max_tokens(4);
    assert_eq!(model.chat(huge.clone(), &ctx).await.unwrap_err().kind(), ErrorKind::ContextLengthExceeded);
    let streamed: Vec<_> = model.chat_stream(huge, &ctx).collect().await;
    assert_eq!(streamed.len(), 1, "{streamed:?}");
    assert_eq!(streamed[0].as_ref().unwrap_err().kind(), ErrorKind::ContextLengthExceeded);
    // Nobody listening: transient after the retries, within the connect timeout.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let gone = config(&format!("http://127.0.0.1:{port}/v1"), "chat").with_limits(quick(2));
    let err = OpenAiChatModel::new(gone).unwrap().chat(hello, &ctx).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ModelTransient, "{err}");
}

/// Limits with `attempts` tries and 5 ms backoff.
fn quick(attempts: u32) -> CallLimits {
    CallLimits::default()
        .with_retry(RetryPolicy::attempts(attempts).with_initial_backoff(Duration::from_millis(5)))
}

fn fast(base: &str, retries: u32) -> OpenAiConfig {
    config(base, "m").with_limits(quick(retries + 1))
}

#[tokio::test]
async fn transient_failures_are_retried_and_client_errors_are_not() {
    use std::sync::atomic::Ordering;
    use std::time::Instant;
    let ctx = RunContext::new();
    let hello = || ChatRequest::new(vec![Message::user("hi")]);

    // 429 with Retry-After: waits what the server asked (not the 5 ms backoff), then succeeds.
    let (base, hits) = fault_server(|n| match n {
        0 => (0, reply(429, "application/json", ERROR, &[("retry-after", "1")])),
        _ => (0, reply(200, "application/json", OK, &[])),
    })
    .await;
    let started = Instant::now();
    let answer = OpenAiChatModel::new(fast(&base, 3)).unwrap().chat(hello(), &ctx).await.unwrap();
    assert_eq!(answer.message.content, "ok");
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    assert!(started.elapsed() >= Duration::from_millis(950), "Retry-After ignored: {:?}", started.elapsed());

    // 500, 503, then success.
    let (base, hits) = fault_server(|n| match n {
        0 => (0, reply(500, "application/json", ERROR, &[])),
        1 => (0, reply(503, "application/json", ERROR, &[])),
        _ => (0, reply(200, "application/json", OK, &[])),
    })
    .await;
    OpenAiChatModel::new(fast(&base, 3)).unwrap().chat(hello(), &ctx).await.unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 3);

    // Always 503: one try plus two retries, then a transient error with the server's message.
    let (base, hits) = fault_server(|_| (0, reply(503, "application/json", ERROR, &[]))).await;
    let err = OpenAiChatModel::new(fast(&base, 2)).unwrap().chat(hello(), &ctx).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ModelTransient, "{err}");
    assert!(err.to_string().contains("overloaded"), "{err}");
    assert_eq!(hits.load(Ordering::SeqCst), 3);

    // Client errors and broken bodies: no retry, permanent.
    let bad_request =
        r#"{"error": {"message": "bad field", "type": "invalid_request_error", "param": "x", "code": null}}"#;
    for (status, content_type, body) in [
        (400, "application/json", bad_request),
        (200, "application/json", "{\"choices\": [ {\"mess"),
        (200, "text/html", "<html>maintenance</html>"),
    ] {
        let (base, hits) = fault_server(move |_| (0, reply(status, content_type, body, &[]))).await;
        let err = OpenAiChatModel::new(fast(&base, 3)).unwrap().chat(hello(), &ctx).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ModelPermanent, "{status} {body}: {err}");
        assert_eq!(hits.load(Ordering::SeqCst), 1, "{status} {body}");
    }
    let (base, _) = fault_server(|_| {
        let body = r#"{"error": {"message": "too long", "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}}"#;
        (0, reply(400, "application/json", body, &[]))
    })
    .await;
    let err = OpenAiChatModel::new(fast(&base, 3)).unwrap().chat(hello(), &ctx).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ContextLengthExceeded, "{err}");

    // Slow headers: the total timeout cuts each try; retried, then transient, in bounded time.
    let (base, hits) = fault_server(|_| (3000, reply(200, "application/json", OK, &[]))).await;
    let slow = config(&base, "m").with_limits(quick(2).with_timeout(Duration::from_millis(300)));
    let started = Instant::now();
    let err = OpenAiChatModel::new(slow).unwrap().chat(hello(), &ctx).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ModelTransient, "{err}");
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn a_stream_cut_mid_reply_is_an_error_after_the_text_it_got() {
    let chunk = |text: &str| {
        format!(
            r#"data: {{"id": "x", "object": "chat.completion.chunk", "choices": [{{"index": 0, "delta": {{"content": "{text}"}}, "finish_reason": null}}]}}"#
        )
    };
    let body = format!("{}\n\n{}\n\n", chunk("Hel"), chunk("lo"));
    let (base, _) = fault_server(move |_| (0, reply(200, "text/event-stream", &body, &[]))).await;
    let ctx = RunContext::new();
    let model = OpenAiChatModel::new(fast(&base, 0)).unwrap();
    let items: Vec<_> = model.chat_stream(ChatRequest::new(vec![Message::user("hi")]), &ctx).collect().await;
    let text: String = items.iter().filter_map(|d| d.as_ref().ok()).map(|d| d.content.as_str()).collect();
    assert_eq!(text, "Hello");
    let err = items.last().unwrap().as_ref().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ModelTransient, "{err}");
    assert!(err.to_string().contains("ended before the reply was complete"), "{err}");
}

/// A run context its caller cancels after `delay`.
fn cancelled_after(delay: Duration) -> RunContext {
    let ctx = RunContext::new();
    let canceller = ctx.clone();
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        canceller.cancel();
    });
    ctx
}

#[tokio::test]
async fn cancelling_ends_the_wait_for_a_retry_after_and_for_a_permit() {
    use std::time::Instant;
    // The server asks for 30 s; the caller cancels after 100 ms and gets Cancelled at once.
    let (base, hits) =
        fault_server(|_| (0, reply(429, "application/json", ERROR, &[("retry-after", "30")]))).await;
    let model = OpenAiChatModel::new(fast(&base, 3)).unwrap();
    let ctx = cancelled_after(Duration::from_millis(100));
    let started = Instant::now();
    let err = model.chat(ChatRequest::new(vec![Message::user("hi")]), &ctx).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled, "{err}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);

    // One permit, held by a slow request: a second caller waiting for it can be cancelled.
    let (base, _) = fault_server(|_| (3000, reply(200, "application/json", OK, &[]))).await;
    let model =
        OpenAiChatModel::new(config(&base, "m").with_limits(quick(1).with_max_concurrency(1))).unwrap();
    let busy = {
        let model = model.clone();
        tokio::spawn(async move {
            model.chat(ChatRequest::new(vec![Message::user("slow")]), &RunContext::new()).await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ctx = cancelled_after(Duration::from_millis(100));
    let started = Instant::now();
    let err = model.chat(ChatRequest::new(vec![Message::user("waits")]), &ctx).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled, "{err}");
    assert!(started.elapsed() < Duration::from_secs(2), "waited for the permit: {:?}", started.elapsed());
    assert_eq!(busy.await.unwrap().unwrap().message.content, "ok");
}
