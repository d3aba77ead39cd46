//! Speculative decoding (prompt lookup, and a draft model) on the real default models.
//!
//! What is exact, and asserted exactly: guesses are verified and rolled back so the sequence holds
//! exactly the reply (llama.cpp refuses a decode whose positions do not continue its sequence, so
//! a cell left behind fails the next step), and grammars, stop strings, token limits, streaming,
//! concurrent sequences and prefix reuse behave as without speculation. Replies whose every token
//! is pinned by a grammar make the comparison independent of floating point: llama.cpp computes a
//! multi-token batch with other kernels than a single token (tinyBLAS, flash-attention tiles), so
//! free-text greedy replies can part at near-ties (docs/benchmarks.md measures how often).
//!
//! Two instances of the model are loaded, one with `Speculation::Off`. Tests take a lock so no
//! test's requests share a batch with another's.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

use std::sync::{Mutex, MutexGuard, OnceLock};

use catena_core::{ChatModel, ChatRequest, ChatResponse, FinishReason, Message, ResponseFormat, RunContext};
use catena_models::{LlamaChatModel, LlamaOptions, Speculation, files};
use futures::StreamExt;

fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
    })
}

/// The model without and with speculation, and the lock every test holds while it uses them.
fn models() -> (MutexGuard<'static, ()>, LlamaChatModel, LlamaChatModel) {
    static MODELS: OnceLock<(LlamaChatModel, LlamaChatModel)> = OnceLock::new();
    static LOCK: Mutex<()> = Mutex::new(());
    let guard = LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let (off, on) = MODELS.get_or_init(|| {
        let path = files::resolve("chat").unwrap();
        let load = |speculation| {
            let options =
                LlamaOptions { n_ctx: Some(2048), parallel: Some(4), speculation, ..LlamaOptions::default() };
            LlamaChatModel::load_blocking(&path, options).unwrap()
        };
        (load(Speculation::Off), load(Speculation::PROMPT_LOOKUP))
    });
    (guard, off.clone(), on.clone())
}

const PASSAGE: &str = "The lighthouse keeper climbed the spiral stairs every evening at dusk. \
    He trimmed the wick, polished the great lens, and wrote the weather in a leather logbook. \
    Ships passing the rocky point saw the beam sweep across the water every twelve seconds.";

/// A reply that repeats itself, so prompt lookup finds guesses in it; "alpha beta" is followed by
/// "gamma" and "delta" in turn, so every guess after it is wrong once and some are rejected.
const PINNED: &str = "alpha beta gamma alpha beta delta alpha beta gamma alpha beta delta alpha beta gamma \
    alpha beta delta";

fn pinned(text: &str, max_tokens: u32) -> ChatRequest {
    ChatRequest::new(vec![Message::user("Say the words.")])
        .with_response_format(ResponseFormat::Grammar { gbnf: format!("root ::= \"{text}\"") })
        .with_max_tokens(max_tokens)
        .with_temperature(0.0)
}

/// Greedy, at most `max_tokens`: asks for `PASSAGE` back word for word, a reply that copies its
/// prompt.
fn copy_passage(max_tokens: u32) -> ChatRequest {
    let user = format!("Here is a passage:\n\n{PASSAGE}\n\nRepeat the passage exactly, word for word.");
    ChatRequest::new(vec![Message::user(user)]).with_max_tokens(max_tokens).with_temperature(0.0)
}

fn ask(model: &LlamaChatModel, req: ChatRequest) -> ChatResponse {
    rt().block_on(model.chat(req, &RunContext::new())).unwrap()
}

#[test]
fn guesses_are_confirmed_or_rolled_back_and_the_reply_is_unchanged() {
    let (_lock, off, on) = models();
    let (plain, spec) = (ask(&off, pinned(PINNED, 64)), ask(&on, pinned(PINNED, 64)));
    assert_eq!(plain.text(), PINNED);
    assert_eq!(spec.text(), PINNED);
    assert_eq!(spec.finish_reason, FinishReason::Stop);
    assert_eq!(plain.usage.draft_tokens, 0);
    let u = spec.usage;
    assert!(u.accepted_draft_tokens > 0 && u.accepted_draft_tokens < u.draft_tokens, "{u:?}");
    // The decodes after each rejection succeeded, so the removed cells were gone: llama.cpp
    // refuses a batch whose positions do not continue the sequence.
}

#[test]
fn stop_strings_token_limits_and_streaming_hold_in_the_middle_of_a_guess() {
    let (_lock, off, on) = models();
    // The stop string lies where guesses are being confirmed.
    let spec = ask(&on, pinned(PINNED, 64).with_stop("delta alpha beta gamma"));
    assert_eq!(spec.text(), "alpha beta gamma alpha beta ");
    assert_eq!(spec.finish_reason, FinishReason::Stop);
    // A limit reached inside a guess: exactly the limit, and the same text as without guesses.
    for limit in [1, 4, 7, 11] {
        let (plain, spec) = (ask(&off, pinned(PINNED, limit)), ask(&on, pinned(PINNED, limit)));
        assert_eq!(spec.usage.completion_tokens, limit);
        assert_eq!(spec.finish_reason, FinishReason::Length);
        assert_eq!(spec.text(), plain.text(), "max_tokens {limit}");
    }
    // Confirmed guesses still stream one token at a time, not one block per decode.
    let deltas: Vec<_> =
        rt().block_on(on.chat_stream(pinned(PINNED, 64), &RunContext::new()).collect::<Vec<_>>());
    let deltas: Vec<_> = deltas.into_iter().map(Result::unwrap).collect();
    let usage = deltas.last().and_then(|d| d.usage).unwrap();
    let pieces = deltas.iter().filter(|d| !d.content.is_empty()).count();
    assert!(usage.accepted_draft_tokens > 0, "{usage:?}");
    assert!(pieces + 1 >= usage.completion_tokens as usize, "{pieces} pieces for {usage:?}");
    assert_eq!(deltas.iter().map(|d| d.content.as_str()).collect::<String>(), PINNED);
}

#[test]
fn concurrent_requests_each_keep_their_own_sequence() {
    let (_lock, _off, on) = models();
    let texts = [
        PINNED.to_owned(),
        "one two three one two three one two four one two three".to_owned(),
        "red green blue red green blue red green blue red".to_owned(),
    ];
    let replies = rt().block_on(futures::future::join_all(texts.iter().map(|t| {
        let (m, req) = (on.clone(), pinned(t, 64));
        async move { m.chat(req, &RunContext::new()).await.unwrap() }
    })));
    for (t, r) in texts.iter().zip(&replies) {
        assert_eq!(r.text(), t);
    }
    // (How a grammar-pinned reply is cut into tokens is the model's choice, and some cuts never
    // repeat an n-gram; the first reply's always do.)
    assert!(replies[0].usage.accepted_draft_tokens > 0, "{:?}", replies[0].usage);
}

#[test]
fn a_reply_that_copies_its_prompt_confirms_most_guesses() {
    let (_lock, off, on) = models();
    let req = || copy_passage(80);
    let (plain, spec) = (ask(&off, req()), ask(&on, req()));
    // Free text: the two replies may part at a near-tie (see the top of this file), but both copy.
    for r in [&plain, &spec] {
        assert!(r.text().contains("climbed the spiral stairs"), "{:?}", r.text());
    }
    let u = spec.usage;
    eprintln!("copying reply: {u:?}");
    assert!(u.accepted_draft_tokens * 2 >= u.draft_tokens && u.accepted_draft_tokens >= 20, "{u:?}");
    assert_eq!(plain.usage.draft_tokens, 0);
    // The next turn continues the sequence, which holds the reply exactly (rejected guesses
    // removed): the reply's tokens are reused, not evaluated again.
    let mut next = req();
    next.messages.push(spec.message.clone());
    next.messages.push(Message::user("Thank you."));
    let follow_up = ask(&on, next.with_max_tokens(8));
    assert!(
        follow_up.usage.cached_prompt_tokens >= u.prompt_tokens + u.completion_tokens / 2,
        "{:?} after {u:?}",
        follow_up.usage
    );
}

/// The default chat model with a draft model: itself. The draft decodes greedily with the same
/// weights but without the request's grammar, so it guesses right where the model would write the
/// same text freely, and wrong where the grammar forces something else: both paths run.
fn self_drafted() -> LlamaChatModel {
    static MODEL: OnceLock<LlamaChatModel> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let path = files::resolve("chat").unwrap();
            let speculation = Speculation::draft_model(&path);
            let options =
                LlamaOptions { n_ctx: Some(2048), parallel: Some(4), speculation, ..LlamaOptions::default() };
            LlamaChatModel::load_blocking(&path, options).unwrap()
        })
        .clone()
}

#[test]
fn a_draft_model_guesses_and_grammar_pinned_replies_are_unchanged() {
    let (_lock, _off, _on) = models();
    let drafted = self_drafted();
    let spec = ask(&drafted, pinned(PINNED, 64));
    assert_eq!(spec.text(), PINNED);
    assert_eq!(spec.finish_reason, FinishReason::Stop);
    assert!(spec.usage.draft_tokens > 0, "{:?}", spec.usage);
    // Limits inside a guess, and several requests at once, each with its own draft sequence.
    for limit in [1, 5, 9] {
        let r = ask(&drafted, pinned(PINNED, limit));
        assert_eq!((r.usage.completion_tokens, r.finish_reason), (limit, FinishReason::Length));
        assert!(PINNED.starts_with(r.text()), "{:?}", r.text());
    }
    let texts = ["one two three one two three one two four", "red green blue red green blue red green"];
    let replies = rt().block_on(futures::future::join_all(texts.iter().map(|t| {
        let (m, req) = (drafted.clone(), pinned(t, 48));
        async move { m.chat(req, &RunContext::new()).await.unwrap() }
    })));
    for (t, r) in texts.iter().zip(&replies) {
        assert_eq!(r.text(), *t);
    }
}

#[test]
fn a_self_drafting_model_confirms_most_guesses_of_a_free_reply() {
    let (_lock, off, _on) = models();
    let drafted = self_drafted();
    let req = || copy_passage(64);
    let (plain, spec) = (ask(&off, req()), ask(&drafted, req()));
    for r in [&plain, &spec] {
        assert!(r.text().contains("climbed the spiral stairs"), "{:?}", r.text());
    }
    // Same weights, both greedy: a guess fails only where batched and single-token logits part
    // at a near-tie (and the rest of that guess with it). 47 of 56 confirmed when written.
    let u = spec.usage;
    eprintln!("self-drafted reply: {u:?}");
    assert!(u.accepted_draft_tokens * 10 >= u.draft_tokens * 6 && u.accepted_draft_tokens >= 20, "{u:?}");
}

#[test]
fn a_draft_model_with_another_tokenizer_is_refused_with_the_reason() {
    let chat = files::resolve("chat").unwrap();
    let load = |draft: &str| {
        let speculation = Speculation::draft_model(files::resolve(draft).unwrap());
        let options =
            LlamaOptions { n_ctx: Some(512), parallel: Some(1), speculation, ..LlamaOptions::default() };
        LlamaChatModel::load_blocking(&chat, options).expect_err("an incompatible pair must be refused")
    };
    // Same kind of tokenizer (byte-level BPE), another vocabulary.
    let qwen = load("agent-small");
    assert_eq!(qwen.kind(), catena_core::ErrorKind::InvalidInput, "{qwen}");
    assert!(qwen.to_string().contains("cannot draft") && qwen.to_string().contains("vocabulary"), "{qwen}");
    // Another kind of tokenizer altogether (WordPiece).
    let bert = load("embed");
    assert!(bert.to_string().contains("tokenizer is"), "{bert}");
}

#[test]
fn the_qwen_coder_pair_drafts_for_the_agent_model() {
    let (_lock, _off, _on) = models();
    let options = LlamaOptions {
        n_ctx: Some(1024),
        parallel: Some(1),
        speculation: Speculation::draft_model(files::resolve("agent-small").unwrap()),
        ..LlamaOptions::default()
    };
    let agent = LlamaChatModel::load_blocking(&files::resolve("agent").unwrap(), options).unwrap();
    let reply = ask(&agent, copy_passage(32));
    assert!(reply.text().contains("lighthouse keeper climbed"), "{:?}", reply.text());
    let u = reply.usage;
    eprintln!("Qwen2.5-Coder 1.5B drafted by 0.5B: {u:?}");
    assert!(u.accepted_draft_tokens * 2 >= u.draft_tokens && u.accepted_draft_tokens >= 10, "{u:?}");
}
