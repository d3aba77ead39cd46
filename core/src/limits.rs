//! Limits on calls to remote services, in one place: every remote backend (the OpenAI-compatible

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{Error, Result, RetryPolicy, RunContext};

/// How calls to one remote model are limited. Every remote backend (the OpenAI-compatible client,
/// the rig adapter) runs its calls through a [`Limiter`] built from these.
///
/// What a call gets:
/// - a timeout per attempt (a stream's covers opening it and its first piece);
/// - retries of the failures the [`RetryPolicy`] deems retryable (transient ones by default),
///   with exponential backoff and jitter, or the wait the server asked for (`Retry-After`) when
///   that is longer; a server asking for more than [`CallLimits::max_retry_after`] gets its
///   error back at once instead of a caller left hanging;
/// - a concurrency limit shared by every clone of the model ([`Limiter::permit`]);
/// - cancellation through the [`RunContext`] at every wait: for a permit, for an attempt, between
///   attempts.
///
/// ```
/// use std::time::Duration;
/// use catena_core::{CallLimits, Failure};
/// use catena_core::{Error, RetryPolicy, RunContext};
///
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
/// # rt.block_on(async {
/// let limiter = CallLimits {
///     retry: RetryPolicy::attempts(3).with_initial_backoff(Duration::from_millis(1)),
///     ..CallLimits::default()
/// }
/// .limiter();
/// let mut calls = 0;
/// let reply = limiter
///     .run(&RunContext::new(), "the flaky call", || {
///         calls += 1;
///         let n = calls;
///         async move {
///             if n < 3 { Err(Failure::from(Error::model_transient("503"))) } else { Ok(n) }
///         }
///     })
///     .await
///     .unwrap();
/// assert_eq!(reply, 3);
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct CallLimits {
    /// One attempt may take this long (default 120 s). For a stream this covers opening it and
    /// its first piece; after that, a stream that stops sending for this long is broken.
    pub timeout: Duration,
    /// Which failures are tried again and how long to wait (default: 3 attempts, transient
    /// errors only, 200 ms doubling with jitter up to 10 s).
    pub retry: RetryPolicy,
    /// Calls in flight at once (default 16); the rest wait their turn.
    pub max_concurrency: usize,
    /// The longest `Retry-After` honoured (default 60 s): a server asking for more gets its
    /// error returned instead.
    pub max_retry_after: Duration,
}

impl Default for CallLimits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(120),
            retry: RetryPolicy::default(),
            max_concurrency: 16,
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl CallLimits {
    /// The limits with `timeout` per attempt.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The limits with this retry policy.
    #[must_use]
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The limits with at most `n` calls in flight (at least 1).
    #[must_use]
    pub fn with_max_concurrency(mut self, n: usize) -> Self {
        self.max_concurrency = n.max(1);
        self
    }

    /// These limits in force: a [`Limiter`] with its own permits.
    #[must_use]
    pub fn limiter(self) -> Limiter {
        let permits = Arc::new(Semaphore::new(self.max_concurrency.max(1)));
        Limiter { limits: Arc::new(self), permits }
    }
}

/// A failed attempt: the error, and how long the server asked to wait before the next one.
#[derive(Debug)]
pub struct Failure {
    /// What went wrong, in catena's kinds (its kind decides whether it is retried).
    pub error: Error,
    /// The server's `Retry-After`, when it sent one.
    pub retry_after: Option<Duration>,
}

impl Failure {
    /// A failure the server asked to wait `retry_after` after.
    #[must_use]
    pub fn with_retry_after(mut self, retry_after: Option<Duration>) -> Self {
        self.retry_after = retry_after;
        self
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Self { error, retry_after: None }
    }
}

/// [`CallLimits`] in force for one model: cheap to clone, and every clone shares the permits.
#[derive(Debug, Clone)]
pub struct Limiter {
    limits: Arc<CallLimits>,
    permits: Arc<Semaphore>,
}

impl Default for Limiter {
    fn default() -> Self {
        CallLimits::default().limiter()
    }
}

impl Limiter {
    /// The limits in force.
    #[must_use]
    pub fn limits(&self) -> &CallLimits {
        &self.limits
    }

    /// Waits for a turn under the concurrency limit; the turn ends when the permit is dropped
    /// (hold it for a stream's whole life).
    ///
    /// # Errors
    /// [`Error::Cancelled`] when the run is cancelled while waiting.
    pub async fn permit(&self, ctx: &RunContext) -> Result<OwnedSemaphorePermit> {
        tokio::select! {
            permit = self.permits.clone().acquire_owned() => {
                permit.map_err(|_| Error::model_permanent("the model was shut down"))
            }
            () = ctx.cancellation().cancelled() => Err(Error::Cancelled),
        }
    }

    /// Runs `attempt` until it succeeds, fails for good, or the retry policy gives up: each
    /// attempt under the timeout, every wait under the run's cancellation. `what` names the call
    /// in logs and in the timeout's error ("the rig completion"). Takes no permit: callers hold
    /// one around the whole call.
    ///
    /// # Errors
    /// The last attempt's error; [`Error::ModelTransient`](crate::ErrorKind::ModelTransient) when
    /// an attempt timed out; [`Error::Cancelled`].
    pub async fn run<T, F, Fut>(&self, ctx: &RunContext, what: &str, mut attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = std::result::Result<T, Failure>>,
    {
        let limits = &self.limits;
        let mut tries = 0u32;
        loop {
            tries += 1;
            ctx.check_cancelled()?;
            let outcome = tokio::select! {
                outcome = tokio::time::timeout(limits.timeout, attempt()) => outcome,
                () = ctx.cancellation().cancelled() => return Err(Error::Cancelled),
            };
            let failure = match outcome {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(failure)) => failure,
                Err(_) => Failure::from(Error::model_transient(format!(
                    "{what} took longer than {:?}",
                    limits.timeout
                ))),
            };
            let Some(wait) = self.wait_before_retry(tries, &failure) else {
                return Err(failure.error);
            };
            tracing::warn!(error = %failure.error, retry = tries, ?wait, "{what} failed; retrying");
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = ctx.cancellation().cancelled() => return Err(Error::Cancelled),
            }
        }
    }

    /// The wait before attempt `tries + 1`, or `None` when `failure` ends the call: the policy
    /// does not retry it, the attempts are spent, or the server asked for too long a wait.
    fn wait_before_retry(&self, tries: u32, failure: &Failure) -> Option<Duration> {
        let limits = &self.limits;
        let policy = &limits.retry;
        if tries >= policy.max_attempts.max(1)
            || !policy.should_retry(&failure.error)
            || failure.retry_after.is_some_and(|wait| wait > limits.max_retry_after)
        {
            return None;
        }
        let backoff = policy.backoff(tries);
        Some(failure.retry_after.map_or(backoff, |asked| asked.max(backoff)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn quick(attempts: u32) -> Limiter {
        CallLimits {
            retry: RetryPolicy::attempts(attempts).with_initial_backoff(Duration::from_millis(1)),
            ..CallLimits::default()
        }
        .limiter()
    }

    #[tokio::test]
    async fn permanent_errors_and_spent_attempts_end_the_call() {
        let limiter = quick(3);
        let mut calls = 0;
        let e = limiter
            .run(&RunContext::new(), "x", || {
                calls += 1;
                async { Err::<(), _>(Failure::from(Error::model_permanent("400"))) }
            })
            .await
            .unwrap_err();
        assert_eq!((e.kind(), calls), (crate::ErrorKind::ModelPermanent, 1));
        let mut calls = 0;
        let e = limiter
            .run(&RunContext::new(), "x", || {
                calls += 1;
                async { Err::<(), _>(Failure::from(Error::model_transient("503"))) }
            })
            .await
            .unwrap_err();
        assert_eq!((e.kind(), calls), (crate::ErrorKind::ModelTransient, 3));
    }

    #[tokio::test]
    async fn a_retry_after_beyond_the_cap_is_not_waited_for() {
        let limiter = quick(3);
        let mut calls = 0;
        let e = limiter
            .run(&RunContext::new(), "x", || {
                calls += 1;
                async {
                    Err::<(), _>(
                        Failure::from(Error::model_transient("429"))
                            .with_retry_after(Some(Duration::from_secs(3600))),
                    )
                }
            })
            .await
            .unwrap_err();
        assert_eq!((e.kind(), calls), (crate::ErrorKind::ModelTransient, 1));
    }

    #[tokio::test]
    async fn a_slow_attempt_times_out_as_transient() {
        let limiter = CallLimits { timeout: Duration::from_millis(20), ..CallLimits::default() }
            .with_retry(RetryPolicy::attempts(1))
            .limiter();
        let e = limiter
            .run(&RunContext::new(), "the slow call", || async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok::<(), Failure>(())
            })
            .await
            .unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::ModelTransient);
        assert!(e.to_string().contains("the slow call took longer than"), "{e}");
    }

    #[tokio::test]
    async fn cancelling_during_a_retry_after_wait_returns_at_once() {
        let limiter = quick(3);
        let ctx = RunContext::new();
        let cancel = ctx.cancellation().clone();
        let started = std::time::Instant::now();
        let canceller = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            cancel.cancel();
        });
        let e = limiter
            .run(&ctx, "x", || async {
                Err::<(), _>(
                    Failure::from(Error::model_transient("429"))
                        .with_retry_after(Some(Duration::from_secs(30))),
                )
            })
            .await
            .unwrap_err();
        canceller.await.unwrap();
        assert!(matches!(e, Error::Cancelled), "{e}");
        assert!(started.elapsed() < Duration::from_secs(10), "waited {:?}", started.elapsed());
    }

    #[tokio::test]
    async fn cancelling_during_a_permit_wait_returns_at_once() {
        let limiter = CallLimits::default().with_max_concurrency(1).limiter();
        let held = limiter.permit(&RunContext::new()).await.unwrap();
        let ctx = RunContext::new();
        let cancel = ctx.cancellation().clone();
        let waiting = {
            let limiter = limiter.clone();
            tokio::spawn(async move { limiter.permit(&ctx).await.map(drop) })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "the only permit is held");
        cancel.cancel();
        let e = waiting.await.unwrap().unwrap_err();
        assert!(matches!(e, Error::Cancelled), "{e}");
        drop(held);
        let _again = limiter.permit(&RunContext::new()).await.unwrap();
    }
}
