//! FallbackChatModel: the next model answers when one fails, in `chat` and in streams (until
//! their first delta); cancellation and errors the predicate keeps never fall back.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]

use std::sync::Arc;

use catena_core::FallbackChatModel;
use catena_core::testing::{ScriptedChatModel, ScriptedReply};
use catena_core::{ChatModel, ChatRequest, Error, ErrorKind, Message, RunContext};
use futures::StreamExt;

fn ask() -> ChatRequest {
    ChatRequest::new(vec![Message::user("hi")])
}

fn failing(make: fn() -> Error) -> Arc<ScriptedChatModel> {
    Arc::new(ScriptedChatModel::from_replies([ScriptedReply::Fail(make)]))
}

#[tokio::test]
async fn the_next_model_answers_when_one_fails() {
    let ctx = RunContext::new();
    let second = failing(|| Error::model_permanent("quota exceeded"));
    let third = Arc::new(ScriptedChatModel::new(["third here"]));
    let model = FallbackChatModel::new(
        failing(|| Error::model_transient("503")),
        vec![second.clone(), third.clone()],
    );
    assert_eq!(model.chat(ask(), &ctx).await.unwrap().message.content, "third here");
    assert_eq!((second.requests().len(), third.requests().len()), (1, 1), "each model was asked once");
    assert_eq!(model.model_name(), "scripted");

    // Every model failing: the last error comes back.
    let model = FallbackChatModel::new(
        failing(|| Error::model_transient("503")),
        vec![failing(|| Error::context_length("too long"))],
    );
    assert_eq!(model.chat(ask(), &ctx).await.unwrap_err().kind(), ErrorKind::ContextLengthExceeded);
}

#[tokio::test]
async fn cancellation_and_kept_errors_do_not_fall_back() {
    let ctx = RunContext::new();
    let untouched = Arc::new(ScriptedChatModel::new(["never"]));
    let model = FallbackChatModel::new(failing(|| Error::Cancelled), vec![untouched.clone()]);
    assert_eq!(model.chat(ask(), &ctx).await.unwrap_err().kind(), ErrorKind::Cancelled);
    let model = FallbackChatModel::new(failing(|| Error::model_permanent("401")), vec![untouched.clone()])
        .fallback_if(Error::is_transient);
    assert_eq!(model.chat(ask(), &ctx).await.unwrap_err().kind(), ErrorKind::ModelPermanent);
    assert!(untouched.requests().is_empty());
}

#[tokio::test]
async fn a_stream_falls_back_before_its_first_delta() {
    let ctx = RunContext::new();
    let model = FallbackChatModel::new(
        failing(|| Error::model_transient("connection reset")),
        vec![Arc::new(ScriptedChatModel::new(["from the fallback"]))],
    );
    let deltas: Vec<_> = model.chat_stream(ask(), &ctx).collect().await;
    let text: String = deltas.iter().map(|d| d.as_ref().unwrap().content.clone()).collect();
    assert_eq!(text, "from the fallback");
    assert!(deltas.last().unwrap().as_ref().unwrap().finish_reason.is_some());

    // The primary streams fine: the fallback is never asked.
    let untouched = Arc::new(ScriptedChatModel::new(["never"]));
    let model =
        FallbackChatModel::new(Arc::new(ScriptedChatModel::new(["primary answer"])), vec![untouched.clone()]);
    let deltas: Vec<_> = model.chat_stream(ask(), &ctx).collect().await;
    assert_eq!(
        deltas.iter().map(|d| d.as_ref().unwrap().content.clone()).collect::<String>(),
        "primary answer"
    );
    assert!(untouched.requests().is_empty());
}
