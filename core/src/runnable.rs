//! Composition: the [`Runnable`] trait and its combinators.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt};
use serde_json::{Map as JsonMap, Value};

use crate::{Error, Result, RunContext};

/// An asynchronous step from `I` to `O`: the unit catena chains are built from.
///
/// Implement [`invoke`](Runnable::invoke); [`batch`](Runnable::batch) and
/// [`stream`](Runnable::stream) have defaults that are right for most steps:
///
/// * `batch` runs the inputs concurrently, at most `ctx.limits().max_concurrency` at a time, and
///   returns one result per input in input order. One failure does not stop the others.
/// * `stream` yields the single output of `invoke`. Steps that produce output incrementally (chat
///   models) override it to yield partial outputs as they come.
///
/// Implementations must be cheap to call concurrently through `&self`: state that changes per call
/// lives in the call, shared state behind a lock or in a worker the implementation owns.
#[async_trait]
pub trait Runnable<I, O>: Send + Sync
where
    I: Send + 'static,
    O: Send + 'static,
{
    /// Runs the step once.
    async fn invoke(&self, input: I, ctx: &RunContext) -> Result<O>;

    /// Runs the step on every input, at most `ctx.limits().max_concurrency` at once.
    async fn batch(&self, inputs: Vec<I>, ctx: &RunContext) -> Vec<Result<O>> {
        let cap = ctx.limits().max_concurrency.max(1);
        stream::iter(inputs).map(|input| self.invoke(input, ctx)).buffered(cap).collect().await
    }

    /// Runs the step, yielding output as it is produced (by default: once, at the end).
    fn stream<'a>(&'a self, input: I, ctx: &'a RunContext) -> BoxStream<'a, Result<O>> {
        Box::pin(stream::once(self.invoke(input, ctx)))
    }

    /// Consumes a stream of inputs (the partial outputs of a streaming step before this one in a
    /// [`pipe`](RunnableExt::pipe)) and yields outputs as it can.
    ///
    /// Item-wise steps ([`map`](RunnableExt::map), [`StrOutputParser`](crate::StrOutputParser))
    /// override it to pass each item through, which is what lets `prompt | model | parser` stream.
    /// The default waits for the input stream to end: with exactly one item it streams on it; an
    /// error is passed on; several items cannot be merged generically, so that is an
    /// [`Error::InvalidInput`] telling where to put the step instead.
    fn transform<'a>(
        &'a self,
        inputs: BoxStream<'a, Result<I>>,
        ctx: &'a RunContext,
    ) -> BoxStream<'a, Result<O>> {
        Box::pin(
            stream::once(async move {
                let items: Vec<Result<I>> = inputs.collect().await;
                let mut items = items.into_iter().collect::<Result<Vec<I>>>()?;
                match (items.pop(), items.is_empty()) {
                    (Some(one), true) => Ok(self.stream(one, ctx)),
                    (None, _) => Err(Error::invalid_input("a pipe's previous step produced no output")),
                    (Some(_), false) => Err(Error::invalid_input(format!(
                        "this step cannot consume a stream of partial outputs of type {}; run the \
                         streaming step last, or put an item-wise step (map, StrOutputParser) after it",
                        std::any::type_name::<I>()
                    ))),
                }
            })
            .map(|r| match r {
                Ok(s) => s,
                Err(e) => Box::pin(stream::once(async move { Err(e) })) as BoxStream<'a, Result<O>>,
            })
            .flatten(),
        )
    }
}

#[async_trait]
impl<I, O, R> Runnable<I, O> for Arc<R>
where
    I: Send + 'static,
    O: Send + 'static,
    R: Runnable<I, O> + ?Sized,
{
    async fn invoke(&self, input: I, ctx: &RunContext) -> Result<O> {
        (**self).invoke(input, ctx).await
    }

    async fn batch(&self, inputs: Vec<I>, ctx: &RunContext) -> Vec<Result<O>> {
        (**self).batch(inputs, ctx).await
    }

    fn stream<'a>(&'a self, input: I, ctx: &'a RunContext) -> BoxStream<'a, Result<O>> {
        (**self).stream(input, ctx)
    }

    fn transform<'a>(
        &'a self,
        inputs: BoxStream<'a, Result<I>>,
        ctx: &'a RunContext,
    ) -> BoxStream<'a, Result<O>> {
        (**self).transform(inputs, ctx)
    }
}

/// A shareable, type-erased runnable.
pub type BoxRunnable<I, O> = Arc<dyn Runnable<I, O>>;

/// The combinators, available on every [`Runnable`].
///
/// A `Runnable<I, O>` turns an `I` into an `O`, asynchronously, under a [`RunContext`]. Every
/// catena component is one (a chat model is a `Runnable<ChatRequest, ChatResponse>`, a retriever a
/// `Runnable<String, Vec<ScoredDocument>>`, a prompt a `Runnable<Value, ChatRequest>`), so chains are
/// built by joining runnables with the methods of [`RunnableExt`]:
///
/// | combinator | does |
/// |---|---|
/// | [`pipe`](RunnableExt::pipe) | feeds one runnable's output into the next (streaming through item-wise steps) |
/// | [`map`](RunnableExt::map) | applies a plain function to the output |
/// | [`Parallel`] | runs named branches on the same input, collecting a JSON object |
/// | [`Passthrough`] / [`Assign`] | forwards the input / adds keys computed from it |
/// | [`with_retry`](RunnableExt::with_retry) | retries transient failures with exponential backoff and jitter |
/// | [`with_fallbacks`](RunnableExt::with_fallbacks) | tries alternatives in order when one fails |
/// | [`with_timeout`](RunnableExt::with_timeout) | gives up (dropping the inner future) after a deadline |
///
/// ```
/// use catena_core::{RunContext, Runnable, RunnableExt, from_fn};
///
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// # rt.block_on(async {
/// let double = from_fn(|x: i32, _ctx| async move { Ok(x * 2) });
/// let chain = double.pipe(from_fn(|x: i32, _ctx| async move { Ok(x + 1) })).map(|x| x.to_string());
/// let ctx = RunContext::new();
/// assert_eq!(chain.invoke(20, &ctx).await.unwrap(), "41");
/// let outs: Vec<_> = chain.batch(vec![1, 2, 3], &ctx).await.into_iter().map(Result::unwrap).collect();
/// assert_eq!(outs, ["3", "5", "7"]);
/// # });
/// ```
pub trait RunnableExt<I, O>: Runnable<I, O> + Sized
where
    I: Send + 'static,
    O: Send + 'static,
{
    /// Feeds this step's output into `next`.
    ///
    /// Streaming a pipe streams this step into [`Runnable::transform`] of `next`, so
    /// `prompt.pipe(model).pipe(StrOutputParser)` yields the model's text as it is generated.
    fn pipe<P, R>(self, next: R) -> Pipe<Self, R, O>
    where
        P: Send + 'static,
        R: Runnable<O, P>,
    {
        Pipe { first: self, second: next, _middle: PhantomData }
    }

    /// Applies `f` to the output (to every streamed item when streaming).
    fn map<P, F>(self, f: F) -> Map<Self, F, O>
    where
        P: Send + 'static,
        F: Fn(O) -> P + Send + Sync,
    {
        Map { inner: self, f, _from: PhantomData }
    }

    /// Retries failures that `policy` deems retryable (transient ones by default).
    fn with_retry(self, policy: RetryPolicy) -> Retry<Self> {
        Retry { inner: self, policy }
    }

    /// On failure, tries each fallback in order and returns the first success. If all fail, the
    /// last error is returned. Cancellation is never "handled" by a fallback.
    fn with_fallbacks(self, fallbacks: Vec<BoxRunnable<I, O>>) -> Fallbacks<I, O>
    where
        I: Clone,
        Self: 'static,
    {
        let mut chain: Vec<BoxRunnable<I, O>> = vec![Arc::new(self)];
        chain.extend(fallbacks);
        Fallbacks { chain }
    }

    /// Fails with [`Error::Timeout`] when a call takes longer than `limit`; the inner future is
    /// dropped, which cancels its work at its next await point.
    fn with_timeout(self, limit: Duration) -> Timeout<Self> {
        Timeout { inner: self, limit }
    }

    /// Erases the type, for storing different runnables side by side.
    fn boxed(self) -> BoxRunnable<I, O>
    where
        Self: 'static,
    {
        Arc::new(self)
    }
}

impl<I, O, R> RunnableExt<I, O> for R
where
    I: Send + 'static,
    O: Send + 'static,
    R: Runnable<I, O>,
{
}

/// See [`RunnableExt::pipe`].
pub struct Pipe<A, B, M> {
    first: A,
    second: B,
    _middle: PhantomData<fn() -> M>,
}

#[async_trait]
impl<I, M, O, A, B> Runnable<I, O> for Pipe<A, B, M>
where
    I: Send + 'static,
    M: Send + 'static,
    O: Send + 'static,
    A: Runnable<I, M>,
    B: Runnable<M, O>,
{
    async fn invoke(&self, input: I, ctx: &RunContext) -> Result<O> {
        let middle = self.first.invoke(input, ctx).await?;
        self.second.invoke(middle, ctx).await
    }

    async fn batch(&self, inputs: Vec<I>, ctx: &RunContext) -> Vec<Result<O>> {
        // Batch each stage so stages with a native batch (embedders) keep it; failed items skip
        // the second stage and keep their error in place.
        let firsts = self.first.batch(inputs, ctx).await;
        let mut slots: Vec<Option<Result<O>>> = Vec::with_capacity(firsts.len());
        let mut pending = Vec::new();
        let mut pending_at = Vec::new();
        for (i, r) in firsts.into_iter().enumerate() {
            match r {
                Ok(m) => {
                    pending.push(m);
                    pending_at.push(i);
                    slots.push(None);
                }
                Err(e) => slots.push(Some(Err(e))),
            }
        }
        let seconds = self.second.batch(pending, ctx).await;
        for (i, r) in pending_at.into_iter().zip(seconds) {
            if let Some(slot) = slots.get_mut(i) {
                *slot = Some(r);
            }
        }
        slots
            .into_iter()
            .map(|s| s.unwrap_or_else(|| Err(Error::invalid_input("batch stage returned too few results"))))
            .collect()
    }

    fn stream<'a>(&'a self, input: I, ctx: &'a RunContext) -> BoxStream<'a, Result<O>> {
        self.second.transform(self.first.stream(input, ctx), ctx)
    }

    fn transform<'a>(
        &'a self,
        inputs: BoxStream<'a, Result<I>>,
        ctx: &'a RunContext,
    ) -> BoxStream<'a, Result<O>> {
        self.second.transform(self.first.transform(inputs, ctx), ctx)
    }
}

/// See [`RunnableExt::map`].
pub struct Map<R, F, M> {
    inner: R,
    f: F,
    _from: PhantomData<fn() -> M>,
}

#[async_trait]
impl<I, M, O, R, F> Runnable<I, O> for Map<R, F, M>
where
    I: Send + 'static,
    M: Send + 'static,
    O: Send + 'static,
    R: Runnable<I, M>,
    F: Fn(M) -> O + Send + Sync,
{
    async fn invoke(&self, input: I, ctx: &RunContext) -> Result<O> {
        self.inner.invoke(input, ctx).await.map(&self.f)
    }

    async fn batch(&self, inputs: Vec<I>, ctx: &RunContext) -> Vec<Result<O>> {
        self.inner.batch(inputs, ctx).await.into_iter().map(|r| r.map(&self.f)).collect()
    }

    fn stream<'a>(&'a self, input: I, ctx: &'a RunContext) -> BoxStream<'a, Result<O>> {
        Box::pin(self.inner.stream(input, ctx).map(move |r| r.map(&self.f)))
    }

    fn transform<'a>(
        &'a self,
        inputs: BoxStream<'a, Result<I>>,
        ctx: &'a RunContext,
    ) -> BoxStream<'a, Result<O>> {
        Box::pin(self.inner.transform(inputs, ctx).map(move |r| r.map(&self.f)))
    }
}

/// A runnable made from an async closure; see [`from_fn`].
pub struct FnRunnable<F, I> {
    f: F,
    _input: PhantomData<fn(I)>,
}

/// Makes a runnable from an async closure taking the input and an owned [`RunContext`] clone.
pub fn from_fn<I, O, F, Fut>(f: F) -> FnRunnable<F, I>
where
    F: Fn(I, RunContext) -> Fut + Send + Sync,
    Fut: Future<Output = Result<O>> + Send,
{
    FnRunnable { f, _input: PhantomData }
}

#[async_trait]
impl<I, O, F, Fut> Runnable<I, O> for FnRunnable<F, I>
where
    I: Send + 'static,
    O: Send + 'static,
    F: Fn(I, RunContext) -> Fut + Send + Sync,
    Fut: Future<Output = Result<O>> + Send,
{
    async fn invoke(&self, input: I, ctx: &RunContext) -> Result<O> {
        (self.f)(input, ctx.clone()).await
    }
}

/// Forwards its input unchanged. With [`Passthrough::assign`], adds computed keys to a JSON object.
#[derive(Debug, Clone, Copy, Default)]
pub struct Passthrough;

impl Passthrough {
    /// Starts an [`Assign`]: the input object passes through with the keys added.
    #[must_use]
    pub fn assign() -> Assign {
        Assign { parallel: Parallel::new() }
    }
}

#[async_trait]
impl<I: Send + 'static> Runnable<I, I> for Passthrough {
    async fn invoke(&self, input: I, _ctx: &RunContext) -> Result<I> {
        Ok(input)
    }

    fn transform<'a>(
        &'a self,
        inputs: BoxStream<'a, Result<I>>,
        _ctx: &'a RunContext,
    ) -> BoxStream<'a, Result<I>> {
        inputs
    }
}

/// Runs named branches concurrently on clones of the input and collects their outputs into a JSON
/// object keyed by branch name (LangChain's `RunnableParallel`).
///
/// ```
/// use catena_core::{Parallel, Passthrough, RunContext, Runnable, from_fn};
/// use serde_json::{json, Value};
///
/// # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// # rt.block_on(async {
/// let fan_out = Parallel::new()
///     .branch("question", Passthrough)
///     .branch("length", from_fn(|q: Value, _| async move { Ok(json!(q.as_str().map_or(0, str::len))) }));
/// let out = fan_out.invoke(json!("what is rust?"), &RunContext::new()).await.unwrap();
/// assert_eq!(out, json!({"question": "what is rust?", "length": 13}));
/// # });
/// ```
pub struct Parallel<I = Value> {
    branches: Vec<(String, BoxRunnable<I, Value>)>,
}

impl<I: Send + Clone + 'static> Default for Parallel<I> {
    fn default() -> Self {
        Self::new()
    }
}

impl<I: Send + Clone + 'static> Parallel<I> {
    /// No branches yet.
    #[must_use]
    pub fn new() -> Self {
        Self { branches: Vec::new() }
    }

    /// Adds a branch whose output is stored under `name`.
    #[must_use]
    pub fn branch(mut self, name: impl Into<String>, runnable: impl Runnable<I, Value> + 'static) -> Self {
        self.branches.push((name.into(), Arc::new(runnable)));
        self
    }

    async fn run(&self, input: I, ctx: &RunContext) -> Result<JsonMap<String, Value>> {
        let outputs =
            futures::future::join_all(self.branches.iter().map(|(_, r)| r.invoke(input.clone(), ctx))).await;
        let mut out = JsonMap::new();
        for ((name, _), value) in self.branches.iter().zip(outputs) {
            out.insert(name.clone(), value?);
        }
        Ok(out)
    }
}

#[async_trait]
impl<I: Send + Sync + Clone + 'static> Runnable<I, Value> for Parallel<I> {
    async fn invoke(&self, input: I, ctx: &RunContext) -> Result<Value> {
        self.run(input, ctx).await.map(Value::Object)
    }
}

/// See [`Passthrough::assign`]: the input JSON object, plus one key per branch.
pub struct Assign {
    parallel: Parallel<Value>,
}

impl Assign {
    /// Adds `name`, computed by `runnable` from the whole input object.
    #[must_use]
    pub fn with(mut self, name: impl Into<String>, runnable: impl Runnable<Value, Value> + 'static) -> Self {
        self.parallel = self.parallel.branch(name, runnable);
        self
    }
}

#[async_trait]
impl Runnable<Value, Value> for Assign {
    async fn invoke(&self, input: Value, ctx: &RunContext) -> Result<Value> {
        let Value::Object(mut object) = input.clone() else {
            return Err(Error::invalid_input(format!(
                "assign needs a JSON object as input, got {}",
                json_type_name(&input)
            )));
        };
        object.extend(self.parallel.run(input, ctx).await?);
        Ok(Value::Object(object))
    }
}

pub(crate) fn json_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// When and how [`Retry`] retries.
#[derive(Clone)]
pub struct RetryPolicy {
    /// Total attempts, the first one included (at least 1).
    pub max_attempts: u32,
    /// Delay before the second attempt.
    pub initial_backoff: Duration,
    /// Each further delay is the previous one times this.
    pub multiplier: f64,
    /// No delay exceeds this.
    pub max_backoff: Duration,
    /// Share of each delay that is randomised (0 = none, 1 = anywhere from 0 to the full delay),
    /// so that many clients failing together do not retry in lockstep.
    pub jitter: f64,
    retry_if: Arc<dyn Fn(&Error) -> bool + Send + Sync>,
}

impl std::fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("max_attempts", &self.max_attempts)
            .field("initial_backoff", &self.initial_backoff)
            .field("multiplier", &self.multiplier)
            .field("max_backoff", &self.max_backoff)
            .field("jitter", &self.jitter)
            .finish_non_exhaustive()
    }
}

impl Default for RetryPolicy {
    /// 3 attempts, 200 ms doubling up to 10 s, half of each delay jittered, transient errors only.
    fn default() -> Self {
        Self {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(200),
            multiplier: 2.0,
            max_backoff: Duration::from_secs(10),
            jitter: 0.5,
            retry_if: Arc::new(Error::is_transient),
        }
    }
}

impl RetryPolicy {
    /// The default policy with `max_attempts` attempts.
    #[must_use]
    pub fn attempts(max_attempts: u32) -> Self {
        Self { max_attempts: max_attempts.max(1), ..Self::default() }
    }

    /// Sets the first delay.
    #[must_use]
    pub fn with_initial_backoff(mut self, delay: Duration) -> Self {
        self.initial_backoff = delay;
        self
    }

    /// Sets the jitter share (clamped to 0..=1).
    #[must_use]
    pub fn with_jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter.clamp(0.0, 1.0);
        self
    }

    /// Retries the errors for which `predicate` is true instead of transient ones.
    #[must_use]
    pub fn retry_if(mut self, predicate: impl Fn(&Error) -> bool + Send + Sync + 'static) -> Self {
        self.retry_if = Arc::new(predicate);
        self
    }

    /// Whether `error` is retried under this policy. Cancellation never is.
    #[must_use]
    pub fn should_retry(&self, error: &Error) -> bool {
        !matches!(error, Error::Cancelled) && (self.retry_if)(error)
    }

    /// The delay before retry number `retry` (1 for the second attempt), jitter included.
    #[must_use]
    pub fn backoff(&self, retry: u32) -> Duration {
        let exp = i32::try_from(retry.saturating_sub(1)).unwrap_or(i32::MAX);
        let full = self.initial_backoff.as_secs_f64() * self.multiplier.max(1.0).powi(exp);
        let capped = full.min(self.max_backoff.as_secs_f64());
        let jitter = self.jitter.clamp(0.0, 1.0);
        let factor = 1.0 - jitter * rand::random::<f64>();
        Duration::from_secs_f64((capped * factor).max(0.0))
    }
}

/// See [`RunnableExt::with_retry`].
pub struct Retry<R> {
    inner: R,
    policy: RetryPolicy,
}

#[async_trait]
impl<I, O, R> Runnable<I, O> for Retry<R>
where
    I: Send + Sync + Clone + 'static,
    O: Send + 'static,
    R: Runnable<I, O>,
{
    async fn invoke(&self, input: I, ctx: &RunContext) -> Result<O> {
        let mut attempt = 1;
        loop {
            match self.inner.invoke(input.clone(), ctx).await {
                Err(e) if attempt < self.policy.max_attempts && self.policy.should_retry(&e) => {
                    tracing::debug!(attempt, error = %e, "retrying");
                    sleep_or_cancel(self.policy.backoff(attempt), ctx).await?;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Only the items that failed with a retryable error are retried, as one smaller batch.
    async fn batch(&self, inputs: Vec<I>, ctx: &RunContext) -> Vec<Result<O>> {
        let mut results = self.inner.batch(inputs.clone(), ctx).await;
        for attempt in 1..self.policy.max_attempts {
            let failed: Vec<usize> = results
                .iter()
                .enumerate()
                .filter(|(_, r)| r.as_ref().err().is_some_and(|e| self.policy.should_retry(e)))
                .map(|(i, _)| i)
                .collect();
            if failed.is_empty() {
                break;
            }
            if sleep_or_cancel(self.policy.backoff(attempt), ctx).await.is_err() {
                // Cancelled while waiting to retry: the items still failing end as cancelled.
                for i in failed {
                    if let Some(slot) = results.get_mut(i) {
                        *slot = Err(Error::Cancelled);
                    }
                }
                break;
            }
            let retry_inputs = failed.iter().filter_map(|&i| inputs.get(i).cloned()).collect();
            let retried = self.inner.batch(retry_inputs, ctx).await;
            for (i, r) in failed.into_iter().zip(retried) {
                if let Some(slot) = results.get_mut(i) {
                    *slot = r;
                }
            }
        }
        results
    }
}

async fn sleep_or_cancel(delay: Duration, ctx: &RunContext) -> Result<()> {
    tokio::select! {
        () = tokio::time::sleep(delay) => Ok(()),
        () = ctx.cancellation().cancelled() => Err(Error::Cancelled),
    }
}

/// See [`RunnableExt::with_fallbacks`].
pub struct Fallbacks<I, O> {
    chain: Vec<BoxRunnable<I, O>>,
}

#[async_trait]
impl<I, O> Runnable<I, O> for Fallbacks<I, O>
where
    I: Send + Sync + Clone + 'static,
    O: Send + 'static,
{
    async fn invoke(&self, input: I, ctx: &RunContext) -> Result<O> {
        let mut last = Error::invalid_input("with_fallbacks has no runnable to try");
        for (i, runnable) in self.chain.iter().enumerate() {
            match runnable.invoke(input.clone(), ctx).await {
                Ok(out) => return Ok(out),
                Err(Error::Cancelled) => return Err(Error::Cancelled),
                Err(e) => {
                    tracing::debug!(runnable = i, error = %e, "falling back");
                    last = e;
                }
            }
        }
        Err(last)
    }
}

/// See [`RunnableExt::with_timeout`].
pub struct Timeout<R> {
    inner: R,
    limit: Duration,
}

#[async_trait]
impl<I, O, R> Runnable<I, O> for Timeout<R>
where
    I: Send + 'static,
    O: Send + 'static,
    R: Runnable<I, O>,
{
    async fn invoke(&self, input: I, ctx: &RunContext) -> Result<O> {
        match tokio::time::timeout(self.limit, self.inner.invoke(input, ctx)).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout(self.limit)),
        }
    }
}
