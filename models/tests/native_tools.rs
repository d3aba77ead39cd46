//! Native tool calls on real decoding: the default `agent` model (Qwen2.5-Coder-1.5B-Instruct,
//! whose template writes `<tool_call>` blocks) chooses a tool, answers without one when none is
//! needed, makes several calls in one reply, and streams each call as it closes. The Llama 3.x and
//! Mistral formats run on the same weights under test templates in those conventions
//! (`tests/templates/`, given with `LlamaOptions::chat_template`): the format is detected from the
//! template, calls are written and parsed in its syntax, results go back through its own turns.
//! Greedy decoding, so the replies are the same on every run.
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
    assert_eq!(model.tool_format(), ToolFormat::Hermes);
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

fn with_template(template: &str) -> LlamaOptions {
    LlamaOptions { chat_template: Some(template.to_owned()), ..LlamaOptions::default() }
}

/// Asks 17 * 23: the model must call the calculator on 17 and 23; the result goes back through
/// the template's own tool-result turn and the model must answer 391.
async fn calls_the_calculator_and_answers_from_its_result(model: &LlamaChatModel, ctx: &RunContext) {
    let reply = model.chat(ask("What is 17 * 23?"), ctx).await.unwrap();
    eprintln!("{reply:?}");
    assert_eq!(reply.finish_reason, FinishReason::ToolCalls, "{reply:?}");
    let call = reply.message.tool_calls[0].clone();
    assert_eq!(call.name, "calculator");
    let expression = call.arguments["expression"].as_str().unwrap();
    assert!(expression.contains("17") && expression.contains("23"), "{expression}");

    let mut followup = ask("What is 17 * 23?");
    followup.messages.push(Message::assistant("").with_tool_calls(vec![call.clone()]));
    followup.messages.push(Message::tool(&call.id, "391"));
    let answer = model.chat(followup, ctx).await.unwrap();
    eprintln!("{answer:?}");
    assert_eq!(answer.finish_reason, FinishReason::Stop);
    assert!(answer.message.content.contains("391"), "{}", answer.message.content);
}

#[tokio::test]
async fn llama3_format_calls_with_parameters_and_reads_results_from_ipython_turns() {
    let template = include_str!("templates/llama3-tools.jinja");
    let model = LlamaChatModel::load_named("agent", with_template(template)).await.unwrap();
    assert_eq!(model.tool_format(), ToolFormat::Llama3);
    let ctx = RunContext::new();

    calls_the_calculator_and_answers_from_its_result(&model, &ctx).await;

    // One call per reply in this format, even when two are asked for; a history with two calls
    // in one message (which the template refuses) is split, one message per call.
    let mut both = ask("Use the calculator twice: compute 12 + 30 and 7 * 6.");
    both.tool_choice = ToolChoice::Required;
    let reply = model.chat(both.clone(), &ctx).await.unwrap();
    eprintln!("{reply:?}");
    assert_eq!(reply.message.tool_calls.len(), 1, "{reply:?}");
    let calls = vec![
        ToolCall {
            id: "call_a".into(),
            name: "calculator".into(),
            arguments: json!({"expression": "12 + 30"}),
        },
        ToolCall {
            id: "call_b".into(),
            name: "calculator".into(),
            arguments: json!({"expression": "7 * 6"}),
        },
    ];
    both.tool_choice = ToolChoice::Auto;
    both.messages.push(Message::assistant("").with_tool_calls(calls));
    both.messages.push(Message::tool("call_a", "42"));
    both.messages.push(Message::tool("call_b", "42"));
    let answer = model.chat(both, &ctx).await.unwrap();
    eprintln!("{answer:?}");
    assert!(answer.message.content.contains("42"), "{answer:?}");
}

#[tokio::test]
async fn mistral_format_makes_parallel_calls_and_keeps_its_templates_call_ids() {
    let template = include_str!("templates/mistral-tools.jinja");
    let model = LlamaChatModel::load_named("agent", with_template(template)).await.unwrap();
    assert_eq!(model.tool_format(), ToolFormat::Mistral);
    let ctx = RunContext::new();

    // The call's id (`call_N`) is not what Mistral's templates accept; it is rewritten on the way
    // in, the same in the call and in its result, so the template renders the pair.
    calls_the_calculator_and_answers_from_its_result(&model, &ctx).await;

    // Several calls in one array, streamed one by one.
    let mut both = ask("Use the calculator twice: compute 12 + 30 and 7 * 6.");
    both.tool_choice = ToolChoice::Required;
    let deltas: Vec<_> = model.chat_stream(both, &ctx).map(Result::unwrap).collect().await;
    eprintln!("{deltas:?}");
    let calls: Vec<&ToolCall> = deltas.iter().flat_map(|d| &d.tool_calls).collect();
    assert!(calls.len() >= 2, "{deltas:?}");
    assert!(calls.iter().all(|c| c.name == "calculator"), "{calls:?}");
    assert_eq!(deltas.last().unwrap().finish_reason, Some(FinishReason::ToolCalls));
}
