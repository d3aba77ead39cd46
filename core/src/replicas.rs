//! Spreading requests over interchangeable replicas of one model, with failover.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::{self, BoxStream};

use crate::message::{ChatDelta, ChatRequest, ChatResponse};
use crate::{ChatModel, Embedder, Error, ErrorKind, Result, RunContext};

/// Checks whether a replica can serve (for an OpenAI-compatible server: `GET /v1/models`).
pub type HealthProbe = Arc<dyn Fn() -> BoxFuture<'static, Result<()>> + Send + Sync>;

/// One replica: a name for logs, the model(s) it serves, and how to check it.
#[derive(Clone)]
pub struct Replica {
    name: String,
    chat: Option<Arc<dyn ChatModel>>,
    embedder: Option<Arc<dyn Embedder>>,
    probe: Option<HealthProbe>,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica").field("name", &self.name).finish_non_exhaustive()
    }
}

impl Replica {
    /// A replica named `name` (an URL, a host) serving nothing yet.
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into(), chat: None, embedder: None, probe: None }
    }

    /// Serves chat with `model`.
    #[must_use]
    pub fn with_chat(mut self, model: Arc<dyn ChatModel>) -> Self {
        self.chat = Some(model);
        self
    }

    /// Serves embeddings with `embedder`.
    #[must_use]
    pub fn with_embedder(mut self, embedder: Arc<dyn Embedder>) -> Self {
        self.embedder = Some(embedder);
        self
    }

    /// Checked by `probe` during [`ReplicaSet::health_checks`].
    #[must_use]
    pub fn with_probe(mut self, probe: HealthProbe) -> Self {
        self.probe = Some(probe);
        self
    }
}

/// When a replica is taken out of rotation, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct EjectionPolicy {
    /// Consecutive failed requests (transient errors) that eject a replica (default 1: a
    /// refused connection is rarely alone).
    pub after_failures: u32,
    /// How long the first ejection lasts (default 1 s); each ejection in a row doubles it.
    pub base: Duration,
    /// The longest an ejection lasts (default 30 s).
    pub max: Duration,
}

impl Default for EjectionPolicy {
    fn default() -> Self {
        Self { after_failures: 1, base: Duration::from_secs(1), max: Duration::from_secs(30) }
    }
}

#[derive(Debug, Default)]
struct Health {
    /// Out of rotation until then.
    ejected_until: Option<Instant>,
    /// Ejections in a row (the next one lasts longer).
    ejections: u32,
}

struct Slot {
    replica: Replica,
    outstanding: AtomicUsize,
    failures: AtomicU32,
    served: AtomicUsize,
    health: Mutex<Health>,
}

struct Inner {
    slots: Vec<Slot>,
    policy: EjectionPolicy,
    /// Where ties start, so equally loaded replicas take turns.
    turn: AtomicUsize,
    chat_name: String,
    dimensions: usize,
}

/// A snapshot of one replica, for status pages and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplicaStatus {
    /// The replica's name.
    pub name: String,
    /// Requests in flight on it now.
    pub outstanding: usize,
    /// Requests it has answered (streams: those that produced a first delta).
    pub served: usize,
    /// Whether it is out of rotation now.
    pub ejected: bool,
}

/// Interchangeable replicas of one model behind one [`ChatModel`] and [`Embedder`]: many
/// inference servers (vLLM, TGI, llama.cpp's server, more `catena serve` processes) serving as
/// one, which is what `catena serve --upstream` is.
///
/// - **Routing**: each request goes to the replica with the fewest requests in flight (ties
///   take turns), which follows the replicas' real speed without measuring it.
/// - **Failover**: a transient failure (refused or dropped connection, 5xx, timeout, 429) is
///   retried at once on another replica, for streams while no delta has arrived yet (after
///   that the reply is under way and the error ends it). Errors about the request itself
///   (4xx, a prompt too long) return as they are: every replica would say the same.
/// - **Ejection**: a replica that fails ([`EjectionPolicy`]) leaves the rotation for a while,
///   doubling each time in a row; when that time is up it is tried again, and one success
///   readmits it. [`health_checks`](Self::health_checks) probes replicas in the background, so
///   a dead one is found before a request pays for it and a revived one comes back at once.
///
/// ```
/// use std::sync::Arc;
/// use catena_core::testing::{ScriptedChatModel, ScriptedReply};
/// use catena_core::{ChatModel, ChatRequest, Error, Message, Replica, ReplicaSet, RunContext};
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let down = ScriptedChatModel::from_replies([ScriptedReply::Fail(|| Error::model_transient("connection refused"))]);
/// let up = ScriptedChatModel::new(["hello"]);
/// let set = ReplicaSet::new(vec![
///     Replica::new("a").with_chat(Arc::new(down)),
///     Replica::new("b").with_chat(Arc::new(up)),
/// ])?;
/// let reply = set.chat(ChatRequest::new(vec![Message::user("hi")]), &RunContext::new()).await?;
/// assert_eq!(reply.message.content, "hello");
/// assert!(set.status()[0].ejected, "the failed replica left the rotation");
/// # Ok::<(), Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct ReplicaSet {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ReplicaSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaSet").field("replicas", &self.status()).finish_non_exhaustive()
    }
}

/// Keeps a replica's in-flight count up while a request (or its stream) is alive.
struct InFlight {
    inner: Arc<Inner>,
    index: usize,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(slot) = self.inner.slots.get(self.index) {
            slot.outstanding.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// How a replica ranks for the next request (lower first): ejected, in flight, back at.
type RouteKey = (bool, usize, Option<Instant>);

/// Whether another replica might succeed where this one failed.
fn fails_over(error: &Error) -> bool {
    matches!(error.kind(), ErrorKind::ModelTransient | ErrorKind::Timeout)
}

impl ReplicaSet {
    /// Replicas of one model. Embedders, when given, must agree on their dimensions.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for no replicas, or embedders of different dimensions.
    pub fn new(replicas: Vec<Replica>) -> Result<Self> {
        Self::with_policy(replicas, EjectionPolicy::default())
    }

    /// Like [`new`](Self::new) with an ejection policy.
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn with_policy(replicas: Vec<Replica>, policy: EjectionPolicy) -> Result<Self> {
        if replicas.is_empty() {
            return Err(Error::invalid_input("a replica set needs at least one replica"));
        }
        let mut dims = replicas.iter().filter_map(|r| r.embedder.as_ref().map(|e| e.dimensions()));
        let dimensions = dims.next().unwrap_or(0);
        if dims.any(|d| d != dimensions) {
            return Err(Error::invalid_input(
                "the replicas' embedding models give vectors of different sizes: they are not replicas of one model",
            ));
        }
        let chat_name = replicas
            .iter()
            .find_map(|r| r.chat.as_ref().map(|c| c.model_name().to_owned()))
            .unwrap_or_else(|| "replicas".into());
        let slots = replicas
            .into_iter()
            .map(|replica| Slot {
                replica,
                outstanding: AtomicUsize::new(0),
                failures: AtomicU32::new(0),
                served: AtomicUsize::new(0),
                health: Mutex::new(Health::default()),
            })
            .collect();
        Ok(Self {
            inner: Arc::new(Inner { slots, policy, turn: AtomicUsize::new(0), chat_name, dimensions }),
        })
    }

    /// Every replica's state now.
    #[must_use]
    pub fn status(&self) -> Vec<ReplicaStatus> {
        let now = Instant::now();
        self.inner
            .slots
            .iter()
            .map(|s| ReplicaStatus {
                name: s.replica.name.clone(),
                outstanding: s.outstanding.load(Ordering::Relaxed),
                served: s.served.load(Ordering::Relaxed),
                ejected: s.health.lock().map(|h| h.ejected_until.is_some_and(|t| t > now)).unwrap_or(false),
            })
            .collect()
    }

    /// Probes every replica that has a probe, every `interval`, for as long as the set exists:
    /// a failed probe ejects, a passing one readmits. Spawn it (`tokio::spawn`); it ends by
    /// itself once the last clone of the set is dropped.
    pub fn health_checks(
        &self,
        interval: Duration,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        async move {
            loop {
                let Some(inner) = weak.upgrade() else { return };
                let probes: Vec<(usize, HealthProbe)> = inner
                    .slots
                    .iter()
                    .enumerate()
                    .filter_map(|(i, s)| s.replica.probe.clone().map(|p| (i, p)))
                    .collect();
                drop(inner);
                let results = futures::future::join_all(probes.into_iter().map(|(i, probe)| async move {
                    (i, tokio::time::timeout(interval.max(Duration::from_millis(100)), probe()).await)
                }))
                .await;
                let Some(inner) = weak.upgrade() else { return };
                for (i, result) in results {
                    let passed = matches!(result, Ok(Ok(())));
                    if passed {
                        inner.succeeded(i);
                    } else if !inner.is_ejected(i) {
                        inner.eject(i, "a health check failed");
                    }
                }
                drop(inner);
                tokio::time::sleep(interval).await;
            }
        }
    }

    /// Runs `attempt` on replicas in routing order until one succeeds or fails for good.
    async fn route<'a, T, F>(
        &'a self,
        what: &str,
        has: impl Fn(&Replica) -> bool,
        mut attempt: F,
    ) -> Result<T>
    where
        F: FnMut(&'a Replica) -> BoxFuture<'a, Result<T>>,
    {
        let mut tried = vec![false; self.inner.slots.len()];
        let mut last: Option<Error> = None;
        while let Some(index) = self.inner.pick(&tried, &has) {
            if let Some(t) = tried.get_mut(index) {
                *t = true;
            }
            let Some(slot) = self.inner.slots.get(index) else { break };
            let guard = self.inner.begin(index);
            let result = attempt(&slot.replica).await;
            drop(guard);
            match result {
                Ok(value) => {
                    self.inner.succeeded(index);
                    slot.served.fetch_add(1, Ordering::Relaxed);
                    return Ok(value);
                }
                Err(e) if fails_over(&e) => {
                    self.inner.failed(index, &e);
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::model_transient(format!("no replica serves {what}"))))
    }
}

impl Inner {
    fn is_ejected(&self, index: usize) -> bool {
        let now = Instant::now();
        self.slots
            .get(index)
            .and_then(|s| s.health.lock().ok().map(|h| h.ejected_until.is_some_and(|t| t > now)))
            .unwrap_or(false)
    }

    /// The replica for the next attempt: among those not yet tried that serve the request, the
    /// least loaded in rotation; when every one is ejected, the one whose ejection ends first
    /// (better a try than a certain failure).
    fn pick(&self, tried: &[bool], has: &dyn Fn(&Replica) -> bool) -> Option<usize> {
        let n = self.slots.len();
        let start = self.turn.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let candidates = (0..n).map(|k| (start + k) % n).filter(|&i| {
            !tried.get(i).copied().unwrap_or(true) && self.slots.get(i).is_some_and(|s| has(&s.replica))
        });
        // In rotation before ejected; then the fewest in flight; among the ejected, the one
        // back soonest.
        let mut best: Option<(usize, RouteKey)> = None;
        for i in candidates {
            let Some(slot) = self.slots.get(i) else { continue };
            let until = slot.health.lock().ok().and_then(|h| h.ejected_until).filter(|t| *t > now);
            let key = match until {
                None => (false, slot.outstanding.load(Ordering::Relaxed), None),
                Some(t) => (true, 0, Some(t)),
            };
            if best.as_ref().is_none_or(|(_, b)| key < *b) {
                best = Some((i, key));
            }
        }
        best.map(|(i, _)| i)
    }

    fn begin(self: &Arc<Self>, index: usize) -> InFlight {
        if let Some(slot) = self.slots.get(index) {
            slot.outstanding.fetch_add(1, Ordering::Relaxed);
        }
        InFlight { inner: Arc::clone(self), index }
    }

    fn succeeded(&self, index: usize) {
        let Some(slot) = self.slots.get(index) else { return };
        slot.failures.store(0, Ordering::Relaxed);
        if let Ok(mut health) = slot.health.lock()
            && health.ejected_until.is_some()
        {
            tracing::info!(replica = %slot.replica.name, "replica readmitted");
            *health = Health::default();
        }
    }

    fn failed(&self, index: usize, error: &Error) {
        let Some(slot) = self.slots.get(index) else { return };
        let failures = slot.failures.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::warn!(replica = %slot.replica.name, %error, "replica failed; trying another");
        if failures >= self.policy.after_failures.max(1) {
            self.eject(index, "requests failed");
        }
    }

    fn eject(&self, index: usize, why: &str) {
        let Some(slot) = self.slots.get(index) else { return };
        slot.failures.store(0, Ordering::Relaxed);
        if let Ok(mut health) = slot.health.lock() {
            let factor = 2u32.saturating_pow(health.ejections.min(16));
            let period = self.policy.base.saturating_mul(factor).min(self.policy.max);
            health.ejected_until = Some(Instant::now() + period);
            health.ejections = health.ejections.saturating_add(1);
            tracing::warn!(replica = %slot.replica.name, seconds = period.as_secs_f64(), why, "replica ejected");
        }
    }
}

#[async_trait]
impl ChatModel for ReplicaSet {
    async fn chat(&self, request: ChatRequest, ctx: &RunContext) -> Result<ChatResponse> {
        self.route(
            "chat",
            |r| r.chat.is_some(),
            |replica| {
                let request = request.clone();
                Box::pin(async move {
                    match &replica.chat {
                        Some(model) => model.chat(request, ctx).await,
                        None => Err(Error::model_permanent("this replica serves no chat model")),
                    }
                })
            },
        )
        .await
    }

    fn chat_stream<'a>(
        &'a self,
        request: ChatRequest,
        ctx: &'a RunContext,
    ) -> BoxStream<'a, Result<ChatDelta>> {
        Box::pin(
            stream::once(async move {
                let mut tried = vec![false; self.inner.slots.len()];
                let mut last: Option<Error> = None;
                let has = |r: &Replica| r.chat.is_some();
                while let Some(index) = self.inner.pick(&tried, &has) {
                    if let Some(t) = tried.get_mut(index) {
                        *t = true;
                    }
                    let Some(slot) = self.inner.slots.get(index) else { break };
                    let Some(model) = slot.replica.chat.as_ref() else { break };
                    let guard = self.inner.begin(index);
                    let mut deltas = model.chat_stream(request.clone(), ctx);
                    match deltas.next().await {
                        Some(Err(e)) if fails_over(&e) => {
                            self.inner.failed(index, &e);
                            last = Some(e);
                        }
                        Some(first) => {
                            if first.is_ok() {
                                self.inner.succeeded(index);
                                slot.served.fetch_add(1, Ordering::Relaxed);
                            }
                            // The replica counts as busy until the reply ends: the guard lives
                            // in the stream.
                            let rest = deltas.map(move |delta| {
                                let _busy = &guard;
                                delta
                            });
                            return stream::once(async move { first }).chain(rest).boxed();
                        }
                        None => return stream::empty().boxed(),
                    }
                }
                let error = last.unwrap_or_else(|| Error::model_transient("no replica serves chat"));
                stream::once(async move { Err(error) }).boxed()
            })
            .flatten(),
        )
    }

    fn model_name(&self) -> &str {
        &self.inner.chat_name
    }
}

#[async_trait]
impl Embedder for ReplicaSet {
    async fn embed(&self, texts: &[String], ctx: &RunContext) -> Result<Vec<Vec<f32>>> {
        self.route(
            "embeddings",
            |r| r.embedder.is_some(),
            |replica| {
                Box::pin(async move {
                    match &replica.embedder {
                        Some(embedder) => embedder.embed(texts, ctx).await,
                        None => Err(Error::model_permanent("this replica serves no embedding model")),
                    }
                })
            },
        )
        .await
    }

    fn dimensions(&self) -> usize {
        self.inner.dimensions
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::Message;
    use crate::testing::{ScriptedChatModel, ScriptedReply};
    use std::sync::atomic::AtomicBool;

    fn ask() -> ChatRequest {
        ChatRequest::new(vec![Message::user("hi")])
    }

    fn refused() -> Error {
        Error::model_transient("connection refused")
    }

    #[tokio::test]
    async fn requests_take_turns_and_fail_over_on_transient_errors_only() {
        let a = Arc::new(ScriptedChatModel::new(["a1", "a2", "a3"]));
        let b = Arc::new(ScriptedChatModel::new(["b1", "b2", "b3"]));
        let set =
            ReplicaSet::new(vec![Replica::new("a").with_chat(a), Replica::new("b").with_chat(b)]).unwrap();
        let ctx = RunContext::new();
        let mut replies = Vec::new();
        for _ in 0..4 {
            replies.push(set.chat(ask(), &ctx).await.unwrap().message.content);
        }
        replies.sort();
        assert_eq!(replies, ["a1", "a2", "b1", "b2"], "idle replicas take turns");

        let bad_request = Arc::new(ScriptedChatModel::from_replies([ScriptedReply::Fail(|| {
            Error::model_permanent("400: bad request")
        })]));
        let other = Arc::new(ScriptedChatModel::new(["never asked"]));
        let set = ReplicaSet::new(vec![
            Replica::new("x").with_chat(bad_request),
            Replica::new("y").with_chat(other),
        ])
        .unwrap();
        // Whichever replica goes first: a request error is the caller's, not retried elsewhere.
        let first = set.chat(ask(), &ctx).await;
        let second = set.chat(ask(), &ctx).await;
        assert!(first.is_err() != second.is_err(), "exactly one of the two reached the failing replica");
        assert!(set.status().iter().all(|s| !s.ejected), "a bad request ejects nobody");
    }

    #[tokio::test]
    async fn a_failed_replica_is_ejected_then_tried_again_and_readmitted() {
        let flaky = Arc::new(ScriptedChatModel::from_replies([
            ScriptedReply::Fail(refused),
            ScriptedReply::Text("back".into()),
        ]));
        let steady = Arc::new(ScriptedChatModel::new(["s1", "s2", "s3", "s4"]));
        let policy = EjectionPolicy { base: Duration::from_millis(100), ..EjectionPolicy::default() };
        let set = ReplicaSet::with_policy(
            vec![Replica::new("flaky").with_chat(flaky), Replica::new("steady").with_chat(steady)],
            policy,
        )
        .unwrap();
        let ctx = RunContext::new();
        // Until flaky has failed once, requests may land on either; every one succeeds.
        while !set.status()[0].ejected {
            assert!(set.chat(ask(), &ctx).await.is_ok());
        }
        let served_before = set.status()[0].served;
        assert_eq!(
            set.chat(ask(), &ctx).await.unwrap().message.content.chars().next(),
            Some('s'),
            "ejected: skipped"
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(!set.status()[0].ejected, "the ejection ran out");
        let mut answers = Vec::new();
        for _ in 0..2 {
            answers.push(set.chat(ask(), &ctx).await.unwrap().message.content);
        }
        assert!(answers.contains(&"back".to_owned()), "{answers:?}: tried again and readmitted");
        assert_eq!(set.status()[0].served, served_before + 1);
    }

    #[tokio::test]
    async fn streams_fail_over_before_their_first_delta() {
        let down = Arc::new(ScriptedChatModel::from_replies([ScriptedReply::Fail(refused)]));
        let up = Arc::new(ScriptedChatModel::new(["streamed reply"]));
        let set =
            ReplicaSet::new(vec![Replica::new("down").with_chat(down), Replica::new("up").with_chat(up)])
                .unwrap();
        let ctx = RunContext::new();
        for _ in 0..2 {
            let mut text = String::new();
            let mut deltas = set.chat_stream(ask(), &ctx);
            while let Some(delta) = deltas.next().await {
                text.push_str(&delta.unwrap().content);
            }
            if !text.is_empty() {
                assert_eq!(text, "streamed reply");
                break;
            }
        }
        assert!(set.status().iter().all(|s| s.outstanding == 0), "streams release their replica when done");
    }

    #[tokio::test]
    async fn health_checks_eject_and_readmit_without_a_request() {
        let alive = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&alive);
        let probe: HealthProbe = Arc::new(move || {
            let up = flag.load(Ordering::Relaxed);
            Box::pin(async move { if up { Ok(()) } else { Err(Error::model_transient("down")) } })
        });
        let set = ReplicaSet::new(vec![
            Replica::new("probed").with_chat(Arc::new(ScriptedChatModel::new(["p"]))).with_probe(probe),
            Replica::new("other").with_chat(Arc::new(ScriptedChatModel::new(["o"]))),
        ])
        .unwrap();
        let checks = tokio::spawn(set.health_checks(Duration::from_millis(20)));
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(set.status()[0].ejected, "a failing probe ejects");
        alive.store(true, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(!set.status()[0].ejected, "a passing probe readmits");
        drop(set);
        tokio::time::timeout(Duration::from_secs(1), checks).await.unwrap().unwrap();
    }

    #[test]
    fn embedders_must_agree() {
        let e = |d| Replica::new("e").with_embedder(Arc::new(crate::testing::DeterministicEmbedder::new(d)));
        assert!(ReplicaSet::new(vec![e(8), e(8)]).is_ok());
        assert_eq!(ReplicaSet::new(vec![e(8), e(16)]).unwrap_err().kind(), ErrorKind::InvalidInput);
        assert_eq!(ReplicaSet::new(vec![]).unwrap_err().kind(), ErrorKind::InvalidInput);
    }
}
