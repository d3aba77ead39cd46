//! Each composition semantic of `Runnable` has a test here that fails when the semantic breaks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use catena_core::testing::{DeterministicEmbedder, ScriptedChatModel, ScriptedReply};
use catena_core::{
    ChatModel, ChatPromptTemplate, ChatRequest, Error, ErrorKind, Event, Message, RetryPolicy, RunContext,
    Runnable, RunnableExt, StrOutputParser,
};
use catena_core::{Parallel, Passthrough, from_fn};
use futures::StreamExt;
use serde_json::{Value, json};

/// Counts how many calls are in flight at once and the peak.
#[derive(Default)]
struct Gauge {
    now: AtomicUsize,
    peak: AtomicUsize,
    calls: AtomicUsize,
}

fn gauged(gauge: Arc<Gauge>) -> impl Runnable<u32, u32> {
    from_fn(move |x: u32, _ctx| {
        let g = gauge.clone();
        async move {
            g.calls.fetch_add(1, Ordering::SeqCst);
            let now = g.now.fetch_add(1, Ordering::SeqCst) + 1;
            g.peak.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            g.now.fetch_sub(1, Ordering::SeqCst);
            Ok(x * 10)
        }
    })
}

#[tokio::test]
async fn batch_honours_max_concurrency_and_keeps_order() {
    let gauge = Arc::new(Gauge::default());
    let r = gauged(gauge.clone());
    let ctx = RunContext::new().with_max_concurrency(3);
    let out: Vec<u32> = r.batch((0..12).collect(), &ctx).await.into_iter().map(Result::unwrap).collect();
    assert_eq!(out, (0..12).map(|x| x * 10).collect::<Vec<_>>());
    assert_eq!(gauge.peak.load(Ordering::SeqCst), 3, "exactly the cap runs at once");

    let gauge = Arc::new(Gauge::default());
    let r = gauged(gauge.clone());
    let _ = r.batch((0..5).collect(), &RunContext::new().with_max_concurrency(1)).await;
    assert_eq!(gauge.peak.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn pipe_and_map_compose_and_batch_keeps_errors_in_place() {
    let halve = from_fn(|x: i32, _| async move {
        if x % 2 == 0 { Ok(x / 2) } else { Err(Error::invalid_input(format!("{x} is odd"))) }
    });
    let chain = halve.pipe(from_fn(|x: i32, _| async move { Ok(x + 100) })).map(|x| x.to_string());
    let out = chain.batch(vec![2, 3, 4], &RunContext::new()).await;
    assert_eq!(out[0].as_ref().unwrap(), "101");
    assert!(out[1].as_ref().unwrap_err().to_string().contains("3 is odd"));
    assert_eq!(out[2].as_ref().unwrap(), "102");
}

/// Fails with a transient error the first `fail_first` times it sees each input.
fn flaky(fail_first: usize, calls: Arc<AtomicUsize>, transient: bool) -> impl Runnable<u32, u32> {
    let seen = Arc::new(std::sync::Mutex::new(std::collections::HashMap::<u32, usize>::new()));
    from_fn(move |x: u32, _| {
        let (calls, seen) = (calls.clone(), seen.clone());
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            let n = {
                let mut s = seen.lock().unwrap();
                let n = s.entry(x).or_default();
                *n += 1;
                *n
            };
            // Input 0 always succeeds, so batch tests can see it is not retried.
            if x != 0 && n <= fail_first {
                if transient {
                    Err(Error::model_transient("503"))
                } else {
                    Err(Error::model_permanent("400"))
                }
            } else {
                Ok(x)
            }
        }
    })
}

fn fast_policy(attempts: u32) -> RetryPolicy {
    RetryPolicy::attempts(attempts).with_initial_backoff(Duration::from_millis(1))
}

#[tokio::test]
async fn retry_counts_attempts_and_only_retries_transient_errors() {
    let calls = Arc::new(AtomicUsize::new(0));
    let r = flaky(2, calls.clone(), true).with_retry(fast_policy(3));
    assert_eq!(r.invoke(7, &RunContext::new()).await.unwrap(), 7);
    assert_eq!(calls.load(Ordering::SeqCst), 3, "two failures then a success");

    let calls = Arc::new(AtomicUsize::new(0));
    let r = flaky(5, calls.clone(), true).with_retry(fast_policy(3));
    assert_eq!(r.invoke(7, &RunContext::new()).await.unwrap_err().kind(), ErrorKind::ModelTransient);
    assert_eq!(calls.load(Ordering::SeqCst), 3, "gives up after max_attempts");

    let calls = Arc::new(AtomicUsize::new(0));
    let r = flaky(5, calls.clone(), false).with_retry(fast_policy(3));
    assert_eq!(r.invoke(7, &RunContext::new()).await.unwrap_err().kind(), ErrorKind::ModelPermanent);
    assert_eq!(calls.load(Ordering::SeqCst), 1, "permanent errors are not retried by default");

    let calls = Arc::new(AtomicUsize::new(0));
    let r = flaky(1, calls.clone(), false).with_retry(fast_policy(3).retry_if(|_| true));
    assert_eq!(r.invoke(7, &RunContext::new()).await.unwrap(), 7, "a custom predicate widens retries");
}

#[tokio::test]
async fn retry_in_batch_retries_only_failed_items() {
    let calls = Arc::new(AtomicUsize::new(0));
    let r = flaky(1, calls.clone(), true).with_retry(fast_policy(3));
    let out: Vec<u32> =
        r.batch(vec![0, 1, 2], &RunContext::new()).await.into_iter().map(Result::unwrap).collect();
    assert_eq!(out, [0, 1, 2]);
    // 3 first attempts + 2 retries (inputs 1 and 2); input 0 succeeded and is not run again.
    assert_eq!(calls.load(Ordering::SeqCst), 5);
}

#[test]
fn backoff_grows_exponentially_within_jitter_bounds() {
    let p = RetryPolicy::attempts(5).with_initial_backoff(Duration::from_millis(100)).with_jitter(0.5);
    for retry in 1..=4u32 {
        let full = 100.0 * 2f64.powi(i32::try_from(retry).unwrap() - 1);
        for _ in 0..50 {
            let d = p.backoff(retry).as_secs_f64() * 1000.0;
            assert!(
                d <= full + 1e-6 && d >= full * 0.5 - 1e-6,
                "retry {retry}: {d} ms not in [{}, {full}]",
                full * 0.5
            );
        }
    }
    let no_jitter = p.clone().with_jitter(0.0);
    assert_eq!(no_jitter.backoff(3), Duration::from_millis(400));
    assert_eq!(no_jitter.backoff(30), Duration::from_secs(10), "capped at max_backoff");
}

#[tokio::test]
async fn fallbacks_are_tried_in_order() {
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let step = |name: &'static str, ok: bool| {
        let order = order.clone();
        from_fn(move |x: u32, _| {
            let order = order.clone();
            async move {
                order.lock().unwrap().push(name);
                if ok { Ok(format!("{name}:{x}")) } else { Err(Error::model_permanent(name)) }
            }
        })
    };
    let r = step("primary", false).with_fallbacks(vec![
        step("second", false).boxed(),
        step("third", true).boxed(),
        step("fourth", true).boxed(),
    ]);
    assert_eq!(r.invoke(1, &RunContext::new()).await.unwrap(), "third:1");
    assert_eq!(*order.lock().unwrap(), ["primary", "second", "third"]);

    let all_fail = step("a", false).with_fallbacks(vec![step("b", false).boxed()]);
    assert_eq!(
        all_fail.invoke(1, &RunContext::new()).await.unwrap_err().to_string(),
        "model error (permanent): b"
    );
}

#[tokio::test]
async fn timeout_fails_and_cancels_the_inner_future() {
    struct SetOnDrop(Arc<AtomicBool>);
    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let dropped = Arc::new(AtomicBool::new(false));
    let finished = Arc::new(AtomicBool::new(false));
    let (d, f) = (dropped.clone(), finished.clone());
    let slow = from_fn(move |_: (), _| {
        let (d, f) = (d.clone(), f.clone());
        async move {
            let _guard = SetOnDrop(d);
            tokio::time::sleep(Duration::from_secs(30)).await;
            f.store(true, Ordering::SeqCst);
            Ok(())
        }
    });
    let r = slow.with_timeout(Duration::from_millis(20));
    let err = r.invoke((), &RunContext::new()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert!(dropped.load(Ordering::SeqCst), "the inner future was dropped");
    assert!(!finished.load(Ordering::SeqCst));
}

#[tokio::test]
async fn parallel_and_assign_build_objects() {
    let upper = from_fn(|v: Value, _| async move { Ok(json!(v["q"].as_str().unwrap_or("").to_uppercase())) });
    let p = Parallel::new().branch("orig", Passthrough).branch("upper", upper);
    assert_eq!(
        p.invoke(json!({"q": "hi"}), &RunContext::new()).await.unwrap(),
        json!({"orig": {"q": "hi"}, "upper": "HI"})
    );

    let len = from_fn(|v: Value, _| async move { Ok(json!(v["q"].as_str().map_or(0, str::len))) });
    let a = Passthrough::assign().with("len", len);
    assert_eq!(
        a.invoke(json!({"q": "abc"}), &RunContext::new()).await.unwrap(),
        json!({"q": "abc", "len": 3})
    );
    assert_eq!(a.invoke(json!("abc"), &RunContext::new()).await.unwrap_err().kind(), ErrorKind::InvalidInput);
}

#[tokio::test]
async fn chains_of_components_stream_tokens_and_emit_events() {
    let prompt = ChatPromptTemplate::new().user("{q}").unwrap();
    let model: Arc<dyn ChatModel> = Arc::new(ScriptedChatModel::new(["one two three"]));
    let chain = prompt.pipe(model).pipe(StrOutputParser);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
    let ctx = RunContext::new().with_events(tx);
    let pieces: Vec<String> = chain.stream(json!({"q": "count"}), &ctx).map(Result::unwrap).collect().await;
    assert_eq!(pieces.concat(), "one two three");
    assert!(pieces.len() >= 3, "streamed in pieces: {pieces:?}");
    drop(ctx);
    let mut tokens = 0;
    while let Ok(Event::Token { .. }) = rx.try_recv() {
        tokens += 1;
    }
    assert_eq!(tokens, 3);
}

#[tokio::test]
async fn component_trait_objects_are_runnables() {
    let embedder: Arc<dyn catena_core::Embedder> = Arc::new(DeterministicEmbedder::new(16));
    let v = embedder.invoke(vec!["a b".into(), "c".into()], &RunContext::new()).await.unwrap();
    assert_eq!(v.len(), 2);
    assert_eq!(v[0].len(), 16);

    let model = ScriptedChatModel::from_replies([
        ScriptedReply::Fail(|| Error::model_transient("overloaded")),
        ScriptedReply::Text("ok".into()),
    ]);
    let r = model.with_retry(fast_policy(2));
    let reply = r.invoke(ChatRequest::new(vec![Message::user("hi")]), &RunContext::new()).await.unwrap();
    assert_eq!(reply.text(), "ok");
}

#[tokio::test]
async fn cancelled_context_stops_retry_and_scripted_model() {
    let ctx = RunContext::new();
    ctx.cancel();
    let model = ScriptedChatModel::new(["never"]);
    let err = model.chat(ChatRequest::default(), &ctx).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled);
}
