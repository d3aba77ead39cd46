//! Native tool calls on real decoding: the default `agent` model (Qwen2.5-Coder-1.5B-Instruct,
//! whose template writes `<tool_call>` blocks) chooses a tool, answers without one when none is
//! needed, makes several calls in one reply, and streams each call as it closes. Greedy decoding,
//! so the replies are the same on every run.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]

use catena_core::{
    ChatModel, ChatRequest, FinishReason, Message, RunContext, ToolCall, ToolChoice, ToolSpec,
};
use catena_models::{LlamaChatModel, LlamaOptions, ToolFormat};
use futures::StreamExt;
use serde_json::json;

fn tools() -> Vec<ToolSpec> {
    vec![
        ToolSpec {
            name: "calculator".into(),
            description: "Evaluates an arithmetic expression and returns the number.".into(),
            parameters: json!({"type": "object", "properties": {"expression": {"type": "string", "description": "e.g. 2 * (3 + 4)"}}, "required": ["expression"]}),
        },
        ToolSpec {
            name: "current_datetime".into(),
            description: "The current date and time in a time zone.".into(),
            parameters: json!({"type": "object", "properties": {"timezone": {"type": "string", "description": "IANA name, e.g. Europe/Paris"}}}),
        },
    ]
}

/// What an agent tells the model: when to call a tool, and to answer once it has the result.
const SYSTEM: &str = "You are a helpful assistant. Call a tool only when the question needs one. \
When a tool has answered, reply to the user in plain words using its result.";

fn ask(question: &str) -> ChatRequest {
    ChatRequest::new(vec![Message::system(SYSTEM), Message::user(question)])
        .with_tools(tools())
        .with_temperature(0.0)
        .with_max_tokens(96)
}

#[tokio::test]
async fn the_agent_model_calls_tools_in_its_own_syntax() {
    let model = LlamaChatModel::load_named("agent", LlamaOptions::default()).await.unwrap();
    let ctx = RunContext::new();

    // A question that needs a tool: one call of the right tool with its declared argument.
    let reply = model.chat(ask("What is 17 * 23?"), &ctx).await.unwrap();
    eprintln!("{reply:?}");
    assert_eq!(reply.finish_reason, FinishReason::ToolCalls);
    let call = &reply.message.tool_calls[0];
    assert_eq!(call.name, "calculator");
    let expression = call.arguments["expression"].as_str().unwrap();
    assert!(expression.contains("17") && expression.contains("23"), "{expression}");

    // The result goes back through the template's own tool-response turn; the model answers.
    let mut followup = ask("What is 17 * 23?");
    followup.messages.push(Message::assistant("").with_tool_calls(reply.message.tool_calls.clone()));
    followup.messages.push(Message::tool(&call.id, "391"));
    let answer = model.chat(followup, &ctx).await.unwrap();
    eprintln!("{answer:?}");
    assert_eq!(answer.finish_reason, FinishReason::Stop);
    assert!(answer.message.tool_calls.is_empty());
    assert!(answer.message.content.contains("391"), "{}", answer.message.content);

    // Several calls in one reply when allowed, streamed one by one with their ids.
    let mut both = ask("Use the calculator twice: compute 12 + 30 and 7 * 6.");
    both.tool_choice = ToolChoice::Required;
    let deltas: Vec<_> = model.chat_stream(both, &ctx).map(Result::unwrap).collect().await;
    let calls: Vec<&ToolCall> = deltas.iter().flat_map(|d| &d.tool_calls).collect();
    eprintln!("{deltas:?}");
    assert!(calls.len() >= 2, "{deltas:?}");
    assert!(calls.iter().all(|c| c.name == "calculator"), "{calls:?}");
    assert_ne!(calls[0].id, calls[1].id);
    assert_eq!(deltas.last().unwrap().finish_reason, Some(FinishReason::ToolCalls));
}

#[tokio::test]
async fn free_answers_are_not_forced_into_a_call_and_the_format_can_be_overridden() {
    let model = LlamaChatModel::load_named("agent", LlamaOptions::default()).await.unwrap();
    let ctx = RunContext::new();
    let reply = model.chat(ask("What is the capital of France? Answer in one word."), &ctx).await.unwrap();
    eprintln!("{reply:?}");
    assert!(reply.message.tool_calls.is_empty(), "{reply:?}");
    assert!(!reply.message.content.trim().is_empty() && !reply.message.content.contains('{'), "{reply:?}");

    // Forced to the generic JSON format, the same model still calls a tool (under that grammar).
    let generic = LlamaChatModel::load_named(
        "agent",
        LlamaOptions { tool_format: Some(ToolFormat::Generic), ..LlamaOptions::default() },
    )
    .await
    .unwrap();
    let mut request = ask("What is 17 * 23?");
    request.tool_choice = ToolChoice::Tool("calculator".into());
    let reply = generic.chat(request, &ctx).await.unwrap();
    assert_eq!(reply.message.tool_calls[0].name, "calculator");
}
