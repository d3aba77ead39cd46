//! The llama.cpp backend on the real default models (fetched by `catena models pull`, or on first
//! use). Every assertion is about behaviour, not wording: the 135M model's text varies.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

use std::sync::OnceLock;

use catena_core::{
    ChatModel, ChatRequest, Embedder, ErrorKind, Event, FinishReason, Message, ResponseFormat, RunContext,
};
use catena_models::{LlamaChatModel, LlamaEmbedder, LlamaOptions, files};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};

/// One runtime for the whole file: the models' handles are shared between tests.
fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
    })
}

fn chat() -> LlamaChatModel {
    static CHAT: OnceLock<LlamaChatModel> = OnceLock::new();
    CHAT.get_or_init(|| {
        let path = files::resolve("chat").unwrap();
        LlamaChatModel::load_blocking(&path, LlamaOptions { n_ctx: Some(2048), ..LlamaOptions::default() })
            .unwrap()
    })
    .clone()
}

fn embedder() -> LlamaEmbedder {
    static EMBED: OnceLock<LlamaEmbedder> = OnceLock::new();
    EMBED
        .get_or_init(|| {
            LlamaEmbedder::load_blocking(&files::resolve("embed").unwrap(), LlamaOptions::default()).unwrap()
        })
        .clone()
}

fn cosine(a: &[f32], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * y).sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    dot / (na * nb)
}

#[test]
fn converted_embeddings_match_an_independent_reference() {
    // tests/data/minilm_reference.json: NumPy BERT + HF tokenizers, see benches/reference/minilm_reference.py.
    let reference: Value =
        serde_json::from_str(include_str!("../../tests/data/minilm_reference.json")).unwrap();
    let rows = reference["sentences"].as_array().unwrap();
    let texts: Vec<String> = rows.iter().map(|r| r["text"].as_str().unwrap().to_owned()).collect();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let ctx = RunContext::new().with_events(tx);
    let e = embedder();
    let vectors = rt().block_on(e.embed(&texts, &ctx)).unwrap();
    assert_eq!(e.dimensions(), 384);
    let mut worst = 1.0f64;
    for (row, v) in rows.iter().zip(&vectors) {
        let want: Vec<f64> =
            row["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        let c = cosine(v, &want);
        assert!(c >= 0.999, "cosine {c} for {:?}", row["text"]);
        worst = worst.min(c);
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4);
    }
    eprintln!("worst cosine to reference: {worst:.6}");
    drop(ctx);
    let mut warned = false;
    while let Ok(ev) = rx.try_recv() {
        warned |= matches!(ev, Event::Warning { message } if message.contains("tokens"));
    }
    assert!(warned, "the 300-word input is longer than 256 tokens and must be reported as truncated");
    // Batching does not change results: one at a time equals all together.
    let one = rt().block_on(e.embed(&texts[2..3], &RunContext::new())).unwrap();
    assert!(cosine(&one[0], &vectors[2].iter().map(|x| f64::from(*x)).collect::<Vec<_>>()) > 0.99999);
}

#[test]
fn chat_streams_tokens_and_reports_usage() {
    let model = chat();
    let req = ChatRequest::new(vec![Message::user("Write one short sentence about the sea.")])
        .with_max_tokens(24)
        .with_temperature(0.0);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let ctx = RunContext::new().with_events(tx);
    let deltas: Vec<_> = rt().block_on(model.chat_stream(req, &ctx).collect::<Vec<_>>());
    let deltas: Vec<_> = deltas.into_iter().map(Result::unwrap).collect();
    assert!(deltas.len() > 2, "streamed in several deltas");
    let last = deltas.last().unwrap();
    let usage = last.usage.unwrap();
    assert!(usage.prompt_tokens > 5 && usage.completion_tokens > 0 && usage.completion_tokens <= 24);
    assert!(matches!(last.finish_reason, Some(FinishReason::Stop | FinishReason::Length)));
    let text: String = deltas.iter().map(|d| d.content.as_str()).collect();
    assert!(!text.trim().is_empty());
    drop(ctx);
    let mut streamed = String::new();
    while let Ok(Event::Token { text }) = rx.try_recv() {
        streamed.push_str(&text);
    }
    assert_eq!(streamed, text, "token events carry exactly the streamed text");
}

#[test]
fn stop_strings_end_generation_and_never_appear() {
    // A grammar pins the reply, so the test does not depend on what the model would say; the stop
    // string spans a token boundary (" beta" | " gamma").
    let pinned = || {
        ChatRequest::new(vec![Message::user("Say something.")])
            .with_response_format(ResponseFormat::Grammar {
                gbnf: r#"root ::= "alpha beta gamma delta""#.into(),
            })
            .with_max_tokens(32)
    };
    let full = rt().block_on(chat().chat(pinned(), &RunContext::new())).unwrap();
    assert_eq!(full.text(), "alpha beta gamma delta");
    let cut = rt().block_on(chat().chat(pinned().with_stop("ta gam"), &RunContext::new())).unwrap();
    assert_eq!(cut.text(), "alpha be");
    assert_eq!(cut.finish_reason, FinishReason::Stop);
    let streamed: String = rt()
        .block_on(chat().chat_stream(pinned().with_stop("delta"), &RunContext::new()).collect::<Vec<_>>())
        .into_iter()
        .map(|d| d.unwrap().content)
        .collect();
    assert_eq!(streamed, "alpha beta gamma ");
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[allow(dead_code)]
struct City {
    name: String,
    population: u64,
    coastal: bool,
}

#[test]
fn json_schema_output_always_parses_into_the_type() {
    let model = chat();
    let schema = serde_json::to_value(schemars::schema_for!(City)).unwrap();
    for seed in [1, 2] {
        let req = ChatRequest::new(vec![Message::user("Describe a city as JSON.")])
            .with_response_format(ResponseFormat::JsonSchema { name: "city".into(), schema: schema.clone() })
            .with_max_tokens(96);
        let mut req = req;
        req.sampling.seed = Some(seed);
        let reply = rt().block_on(model.chat(req, &RunContext::new())).unwrap();
        let parsed: Result<City, _> = serde_json::from_str(reply.text());
        assert!(parsed.is_ok(), "seed {seed}: {:?} does not parse: {parsed:?}", reply.text());
    }
}

#[test]
fn a_follow_up_turn_reuses_the_evaluated_prefix() {
    let model = chat();
    let mut messages = vec![Message::system("You are terse."), Message::user("Name a fruit.")];
    let first = rt()
        .block_on(model.chat(ChatRequest::new(messages.clone()).with_max_tokens(8), &RunContext::new()))
        .unwrap();
    messages.push(first.message.clone());
    messages.push(Message::user("Another one?"));
    let second =
        rt().block_on(model.chat(ChatRequest::new(messages).with_max_tokens(8), &RunContext::new())).unwrap();
    let cached = second.usage.cached_prompt_tokens;
    assert!(
        cached >= first.usage.prompt_tokens.saturating_sub(1),
        "second turn reused {cached} tokens; the first prompt alone had {}",
        first.usage.prompt_tokens
    );
    assert!(cached < second.usage.prompt_tokens);
}

#[test]
fn cancellation_stops_generation() {
    let model = chat();
    let ctx = RunContext::new();
    let req = ChatRequest::new(vec![Message::user("Tell me a long story about dragons.")])
        .with_max_tokens(400)
        .with_temperature(0.0);
    let result = rt().block_on(async {
        let mut stream = model.chat_stream(req, &ctx);
        let mut got = 0;
        while let Some(delta) = stream.next().await {
            match delta {
                Ok(_) => {
                    got += 1;
                    if got == 3 {
                        ctx.cancel();
                    }
                }
                Err(e) => return (got, Some(e)),
            }
        }
        (got, None)
    });
    assert_eq!(result.1.map(|e| e.kind()), Some(ErrorKind::Cancelled), "after {} deltas", result.0);
    // The model keeps serving after a cancelled request.
    let ok = rt().block_on(
        model.chat(ChatRequest::new(vec![Message::user("Hi")]).with_max_tokens(4), &RunContext::new()),
    );
    assert!(ok.is_ok());
}

#[test]
fn bad_inputs_are_typed_errors_and_the_model_keeps_working() {
    let model = chat();
    let ctx = RunContext::new();
    // No messages.
    let err = rt().block_on(model.chat(ChatRequest::default(), &ctx)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    // A prompt longer than the context window.
    let long = "word ".repeat(3000);
    let err = rt().block_on(model.chat(ChatRequest::new(vec![Message::user(long)]), &ctx)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ContextLengthExceeded, "{err}");
    // An invalid grammar.
    let req = ChatRequest::new(vec![Message::user("hi")])
        .with_response_format(ResponseFormat::Grammar { gbnf: "root ::= (((".into() });
    let err = rt().block_on(model.chat(req, &ctx)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    // A schema the converter cannot turn into a grammar.
    let req = ChatRequest::new(vec![Message::user("hi")]).with_response_format(ResponseFormat::JsonSchema {
        name: "bad".into(),
        schema: json!({"$ref": "#/$defs/missing"}),
    });
    let err = rt().block_on(model.chat(req, &ctx)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    // A tool choice naming a tool the request does not offer.
    let mut req = ChatRequest::new(vec![Message::user("hi")]).with_tools(vec![add_tool()]);
    req.tool_choice = catena_core::ToolChoice::Tool("nope".into());
    let err = rt().block_on(model.chat(req, &ctx)).unwrap_err();
    assert!(err.to_string().contains("`nope`"), "{err}");
    // Still serving (greedy: a sampled reply may end before its first token).
    let reply =
        rt().block_on(model.chat(
            ChatRequest::new(vec![Message::user("Hi")]).with_max_tokens(4).with_temperature(0.0),
            &ctx,
        ))
        .unwrap();
    assert!(reply.usage.completion_tokens > 0);
}

#[test]
fn missing_non_gguf_and_truncated_model_files_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing =
        LlamaChatModel::load_blocking(&dir.path().join("absent.gguf"), LlamaOptions::default()).unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::ModelPermanent);
    assert!(missing.to_string().contains("absent.gguf"), "{missing}");

    let text = dir.path().join("notes.gguf");
    std::fs::write(&text, "just some text").unwrap();
    let err = LlamaEmbedder::load_blocking(&text, LlamaOptions::default()).unwrap_err();
    assert!(err.to_string().contains("not a GGUF file"), "{err}");

    // The first megabyte of the real model: a valid header with its tensors cut off.
    let real = std::fs::read(files::resolve("chat").unwrap()).unwrap();
    let truncated = dir.path().join("truncated.gguf");
    std::fs::write(&truncated, &real[..1 << 20]).unwrap();
    let err = LlamaChatModel::load_blocking(&truncated, LlamaOptions::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ModelPermanent, "{err}");
    assert!(err.to_string().contains("truncated"), "{err}");
}

#[test]
fn chat_template_comes_from_the_gguf() {
    // SmolLM2 ships a ChatML Jinja template; the rendered prompt must make the model answer as
    // the assistant, which shows up as a non-empty reply that does not echo the role markers.
    let reply = rt()
        .block_on(chat().chat(
            ChatRequest::new(vec![Message::user("Say yes.")]).with_temperature(0.0).with_max_tokens(8),
            &RunContext::new(),
        ))
        .unwrap();
    assert!(!reply.text().contains("<|im_start|>") && !reply.text().trim().is_empty(), "{:?}", reply.text());
    let _ = json!(null);
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[allow(dead_code)]
struct AddArgs {
    a: f64,
    b: f64,
}

fn add_tool() -> catena_core::ToolSpec {
    catena_core::ToolSpec {
        name: "add".into(),
        description: "Adds two numbers.".into(),
        parameters: serde_json::to_value(schemars::schema_for!(AddArgs)).unwrap(),
    }
}

#[test]
fn tool_calls_are_grammar_constrained_and_always_well_formed() {
    let model = chat();
    let weather = catena_core::ToolSpec {
        name: "weather".into(),
        description: "Current weather in a city.".into(),
        parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
    };
    for seed in [3, 4, 5] {
        let mut req = ChatRequest::new(vec![Message::user("What is 17 plus 25?")])
            .with_tools(vec![add_tool(), weather.clone()])
            .with_max_tokens(200);
        req.tool_choice = catena_core::ToolChoice::Required;
        req.sampling.seed = Some(seed);
        let reply = rt().block_on(model.chat(req, &RunContext::new())).unwrap();
        assert_eq!(reply.finish_reason, FinishReason::ToolCalls);
        let call = &reply.message.tool_calls[0];
        match call.name.as_str() {
            "add" => {
                serde_json::from_value::<AddArgs>(call.arguments.clone()).unwrap();
            }
            "weather" => assert!(call.arguments["city"].is_string()),
            other => panic!("unknown tool {other}"),
        }
    }
    // With `auto` the model may answer instead; either way the reply parsed. Greedy: a sampled
    // reply may end at once, and then it is neither a call nor text.
    let req = ChatRequest::new(vec![Message::user("Hello!")])
        .with_tools(vec![add_tool()])
        .with_max_tokens(64)
        .with_temperature(0.0);
    let reply = rt().block_on(model.chat(req, &RunContext::new())).unwrap();
    assert!(!reply.message.tool_calls.is_empty() || !reply.text().is_empty());
}

#[test]
fn structured_returns_a_typed_value() {
    let req = ChatRequest::new(vec![Message::user("Give two numbers to add.")]).with_max_tokens(48);
    let args: AddArgs = rt().block_on(catena_core::structured(&chat(), req, &RunContext::new())).unwrap();
    assert!(args.a.is_finite() && args.b.is_finite());
}

#[test]
fn concurrent_requests_are_decoded_together_and_all_complete() {
    // Its own instance: other tests share `chat()` and would take its sequences.
    let options = LlamaOptions { n_ctx: Some(512), parallel: Some(4), ..LlamaOptions::default() };
    let model = LlamaChatModel::load_blocking(&files::resolve("chat").unwrap(), options).unwrap();
    let prompts = [
        "Name a colour.",
        "Name an animal.",
        "Name a country.",
        "Name a fruit.",
        "Name a tool.",
        "Name a river.",
    ];
    let replies = rt().block_on(async {
        let ctx = RunContext::new();
        let calls = prompts.iter().map(|p| {
            let m = model.clone();
            let req = ChatRequest::new(vec![Message::user(*p)]).with_max_tokens(12).with_temperature(0.0);
            let ctx = ctx.clone();
            async move { m.chat(req, &ctx).await }
        });
        // Six requests against four sequences: two wait for a free one; none deadlocks.
        tokio::time::timeout(std::time::Duration::from_secs(120), futures::future::join_all(calls))
            .await
            .unwrap()
    });
    for (p, r) in prompts.iter().zip(&replies) {
        let r = r.as_ref().unwrap();
        assert!(r.usage.completion_tokens > 0, "{p}: {r:?}");
    }
    // Slots keep what they evaluated: after four different conversations, the first one's next
    // request still finds its prompt cached, all but the last token. (Greedy replies themselves
    // may differ slightly between batched and solo decoding, as in llama.cpp's server: the batch
    // shape changes floating-point summation order.)
    let ask = |q: &str| {
        let req = ChatRequest::new(vec![Message::user(q)]).with_max_tokens(4).with_temperature(0.0);
        rt().block_on(model.chat(req, &RunContext::new())).unwrap()
    };
    let first = ask("Name a planet.");
    for q in ["Name a metal.", "Name a bird.", "Name a tree."] {
        ask(q);
    }
    let again = ask("Name a planet.");
    assert_eq!(again.usage.prompt_tokens, first.usage.prompt_tokens);
    assert_eq!(again.usage.cached_prompt_tokens, again.usage.prompt_tokens - 1);
}

#[test]
fn perplexity_ranks_natural_text_below_scrambled_text() {
    let path = files::resolve("chat").unwrap();
    let text = "The quick brown fox jumps over the lazy dog. The dog sleeps in the sun while the fox runs \
                into the forest. Later that day, the fox returns home to its den and rests.";
    let mut words: Vec<&str> = text.split(' ').collect();
    words.reverse();
    let scrambled = words.join(" ");
    let opts = LlamaOptions::default();
    let natural = catena_models::perplexity(&path, text, 16, 8, &opts).unwrap();
    let chunked = catena_models::perplexity(&path, text, 16, 16, &opts).unwrap();
    let noise = catena_models::perplexity(&path, &scrambled, 16, 8, &opts).unwrap();
    assert_eq!(natural.scored, natural.tokens - 1, "every token after the first is scored once");
    // Non-overlapping windows cannot predict each window's first token.
    assert_eq!(chunked.scored, chunked.tokens - chunked.windows);
    assert!(natural.windows > chunked.windows, "a smaller stride evaluates more windows");
    assert!(natural.perplexity.is_finite() && natural.perplexity > 1.0);
    assert!(natural.perplexity < noise.perplexity, "{} vs {}", natural.perplexity, noise.perplexity);
    assert!(natural.perplexity <= chunked.perplexity * 1.05, "more context does not make it much worse");
    let err = catena_models::perplexity(&path, "x", 32, 64, &opts).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

#[test]
fn quantised_kv_cache_and_flash_attention_options_work() {
    let options = LlamaOptions {
        n_ctx: Some(512),
        parallel: Some(1),
        flash_attention: Some(true),
        kv_cache: catena_models::KvCache::Q8_0,
        ..LlamaOptions::default()
    };
    let model = LlamaChatModel::load_blocking(&files::resolve("chat").unwrap(), options).unwrap();
    let reply = rt()
        .block_on(
            model.chat(ChatRequest::new(vec![Message::user("Hi!")]).with_max_tokens(8), &RunContext::new()),
        )
        .unwrap();
    assert!(reply.usage.completion_tokens > 0);
}
