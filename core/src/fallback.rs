//! Falling back to another chat model when one fails.

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::{self, BoxStream};

use crate::message::{ChatDelta, ChatRequest, ChatResponse};
use crate::{ChatModel, Error, Result, RunContext};

/// Which errors send a request on to the next model.
type FallbackIf = Arc<dyn Fn(&Error) -> bool + Send + Sync>;

/// A chat model that falls back to the next of its models on failure.
///
/// [`FallbackChatModel`] tries its models in order and answers with the first that succeeds: a
/// remote model with a local one behind it keeps an app answering when the network, the
/// provider or the quota fails. Unlike the generic [`with_fallbacks`](crate::RunnableExt::with_fallbacks)
/// combinator, it is itself a [`ChatModel`], so it streams: a stream falls back only until its
/// first delta (after that the reply is under way and an error ends it, as with any model).
///
/// Which errors move on to the next model is a predicate; the default is every error except
/// cancellation, including a prompt that does not fit (the next model may have a larger
/// context) and a request the first cannot express (a GBNF grammar sent to a remote model).
///
/// ```
/// use std::sync::Arc;
/// use catena_core::FallbackChatModel;
/// use catena_core::testing::{ScriptedChatModel, ScriptedReply};
/// use catena_core::{ChatModel, ChatRequest, Error, Message, RunContext};
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let remote = ScriptedChatModel::from_replies([ScriptedReply::Fail(|| Error::model_transient("503"))]);
/// let local = ScriptedChatModel::new(["answered locally"]);
/// let model = FallbackChatModel::new(Arc::new(remote), vec![Arc::new(local)]);
/// let reply = model.chat(ChatRequest::new(vec![Message::user("hi")]), &RunContext::new()).await?;
/// assert_eq!(reply.message.content, "answered locally");
/// # Ok::<(), Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct FallbackChatModel {
    first: Arc<dyn ChatModel>,
    rest: Vec<Arc<dyn ChatModel>>,
    fallback_if: FallbackIf,
}

impl std::fmt::Debug for FallbackChatModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> =
            std::iter::once(&self.first).chain(&self.rest).map(|m| m.model_name()).collect();
        f.debug_struct("FallbackChatModel").field("models", &names).finish_non_exhaustive()
    }
}

impl FallbackChatModel {
    /// `primary` first, then each of `fallbacks` in order.
    pub fn new(primary: Arc<dyn ChatModel>, fallbacks: Vec<Arc<dyn ChatModel>>) -> Self {
        Self { first: primary, rest: fallbacks, fallback_if: Arc::new(|e| !matches!(e, Error::Cancelled)) }
    }

    /// Falls back only on the errors for which `predicate` is true (cancellation never falls
    /// back), e.g. `|e| e.is_transient()` to keep client errors visible.
    #[must_use]
    pub fn fallback_if(mut self, predicate: impl Fn(&Error) -> bool + Send + Sync + 'static) -> Self {
        self.fallback_if = Arc::new(predicate);
        self
    }

    fn falls_back(&self, error: &Error) -> bool {
        !matches!(error, Error::Cancelled) && (self.fallback_if)(error)
    }
}

#[async_trait]
impl ChatModel for FallbackChatModel {
    async fn chat(&self, request: ChatRequest, ctx: &RunContext) -> Result<ChatResponse> {
        let mut current = &self.first;
        for next in &self.rest {
            match current.chat(request.clone(), ctx).await {
                Ok(response) => return Ok(response),
                Err(e) if self.falls_back(&e) => {
                    tracing::warn!(model = current.model_name(), error = %e, "falling back to the next model");
                    current = next;
                }
                Err(e) => return Err(e),
            }
        }
        current.chat(request, ctx).await
    }

    fn chat_stream<'a>(
        &'a self,
        request: ChatRequest,
        ctx: &'a RunContext,
    ) -> BoxStream<'a, Result<ChatDelta>> {
        Box::pin(
            stream::once(async move {
                let mut current = &self.first;
                for next in &self.rest {
                    let mut deltas = current.chat_stream(request.clone(), ctx);
                    match deltas.next().await {
                        Some(Err(e)) if self.falls_back(&e) => {
                            tracing::warn!(model = current.model_name(), error = %e, "falling back to the next model");
                            current = next;
                        }
                        Some(first) => return stream::once(async move { first }).chain(deltas).boxed(),
                        None => return deltas,
                    }
                }
                current.chat_stream(request, ctx)
            })
            .flatten(),
        )
    }

    /// The first model's name.
    fn model_name(&self) -> &str {
        self.first.model_name()
    }
}
