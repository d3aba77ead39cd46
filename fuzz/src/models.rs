//! What a local model brings in: the chat template of its model file, its replies read as tool
//! calls, and the grammars built from the tools' JSON schemas (llama.cpp's converter, C++ behind
//! FFI: not instrumented, so the engine steers by the Rust side only).

// Indexes here are char boundaries and moduli computed on the spot.
#![allow(clippy::indexing_slicing)]

use catena_core::{ChatRequest, Message, ToolCall, ToolChoice};
use catena_models::ToolFormat;
use catena_models::fuzzing::{
    detect_tool_format, read_generic_reply, read_native_reply, render_chat_template, streamed_generic_answer,
    tool_grammar,
};

const FORMATS: [ToolFormat; 4] =
    [ToolFormat::Generic, ToolFormat::Hermes, ToolFormat::Llama3, ToolFormat::Mistral];

/// `TEMPLATE \0 CONVERSATION`: the template as a model file carries it, and the conversation
/// (messages separated by `\x01`; roles cycle system, user, assistant, tool; each assistant
/// message also calls the calculator with its text, each tool message answers that call),
/// rendered with and without the tools. Properties: deterministic; the time and memory limits
/// hold (the template's fuel: the engine's 1 s and 512 MB would catch a template that escapes
/// it); the tool format detected from any template is one of the four.
pub(crate) fn chat_template(data: &[u8]) {
    let text = crate::text(data);
    let (source, conversation) = text.split_once('\0').unwrap_or((&text, "Hello"));
    let messages = conversation_messages(conversation);
    for tools in [&[][..], crate::parsers::tools()] {
        let first = render_chat_template(source, &messages, tools);
        assert_eq!(
            first,
            render_chat_template(source, &messages, tools),
            "the same template rendered differently twice"
        );
    }
    let format = detect_tool_format(source);
    assert!(FORMATS.contains(&format), "{format:?}");
}

fn conversation_messages(conversation: &str) -> Vec<Message> {
    conversation
        .split('\x01')
        .enumerate()
        .map(|(i, content)| match i % 4 {
            0 => Message::system(content),
            1 => Message::user(content),
            2 => Message::assistant(content).with_tool_calls(vec![ToolCall {
                id: format!("call_{i}"),
                name: "calculator".into(),
                arguments: serde_json::json!({"expression": content}),
            }]),
            _ => Message::tool(format!("call_{}", i - 1), content),
        })
        .collect()
}

/// `FORMAT STEP REPLY`: a model's reply in one of the four tool formats (the first byte), read
/// whole and streamed in pieces of STEP characters (the second byte). Properties: deterministic;
/// streaming does not change what is read (the same text and calls, or an error both ways); in the
/// generic format, the text shown while an answer streams is always a prefix of the final answer.
pub(crate) fn tool_call_reply(data: &[u8]) {
    let [format, step, reply @ ..] = data else { return };
    let format = FORMATS[usize::from(*format) % FORMATS.len()];
    let reply = crate::text(reply);
    let whole = read_native_reply(format, &[&reply]);
    assert_eq!(whole, read_native_reply(format, &[&reply]), "the same reply read differently twice");
    let pieces = pieces(&reply, usize::from(*step % 16) + 1);
    let streamed = read_native_reply(format, &pieces);
    assert_eq!(whole.is_ok(), streamed.is_ok(), "whole: {whole:?}\nstreamed: {streamed:?}");
    if let (Ok(whole), Ok(streamed)) = (&whole, &streamed) {
        assert_eq!(whole, streamed, "streaming in pieces of {} changed the reply", *step % 16 + 1);
    }

    let parsed = read_generic_reply(&reply);
    assert_eq!(parsed, read_generic_reply(&reply), "the same generic reply read differently twice");
    if let Ok((answer, calls)) = &parsed
        && calls.is_empty()
    {
        for (at, _) in reply.char_indices() {
            if let Some(shown) = streamed_generic_answer(&reply[..at]) {
                assert!(
                    answer.starts_with(&shown),
                    "shown {shown:?} while streaming, then answered {answer:?}"
                );
            }
        }
    }
}

/// The reply cut into pieces of `step` characters.
fn pieces(reply: &str, step: usize) -> Vec<&str> {
    let bounds: Vec<usize> =
        reply.char_indices().map(|(at, _)| at).step_by(step).chain([reply.len()]).collect();
    bounds.windows(2).map(|w| &reply[w[0]..w[1]]).collect()
}

/// `CHOICE SCHEMA`: a tool whose parameters are SCHEMA (any JSON), offered beside the calculator
/// with a tool choice (the first byte: auto, required, this tool, no parallel calls), turned into
/// each format's grammar. Properties: deterministic; a grammar, when built, defines `root`; a
/// schema llama.cpp's converter refuses is an error naming the tool, never a crash.
pub(crate) fn tool_grammar_from_schema(data: &[u8]) {
    let [choice, schema @ ..] = data else { return };
    let Ok(parameters) = serde_json::from_slice::<serde_json::Value>(schema) else { return };
    let mut tools = crate::parsers::tools().to_vec();
    tools.push(catena_core::ToolSpec { name: "fuzzed".into(), description: "Fuzzed.".into(), parameters });
    let mut request = ChatRequest::new(vec![Message::user("Go.")]).with_tools(tools);
    match choice % 4 {
        0 => {}
        1 => request.tool_choice = ToolChoice::Required,
        2 => request.tool_choice = ToolChoice::Tool("fuzzed".into()),
        _ => request.parallel_tool_calls = Some(false),
    }
    for format in FORMATS {
        let first = tool_grammar(&request, format);
        assert_eq!(first, tool_grammar(&request, format), "the same tools gave two grammars");
        match first {
            Ok(Some((grammar, _))) => assert!(grammar.contains("root ::="), "no root rule:\n{grammar}"),
            Ok(None) => panic!("a request with tools has no grammar"),
            Err(e) => {
                assert!(e.contains("fuzzed") || e.contains("calculator"), "an error naming no tool: {e}")
            }
        }
    }
}
