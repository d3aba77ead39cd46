//! Entry points for catena's fuzz targets (the `catena-fuzz` crate): the parsers that read what a
//! model file and a model's reply bring in, which are crate-private otherwise. Hidden from the
//! docs and not a stable API: each function runs the code path the chat model runs, with the
//! model itself left out.

use catena_core::{ChatRequest, Message, ToolCall, ToolSpec};

use super::template::ChatTemplate;
use super::tools::{self, NativeReply, ToolFormat};

/// A reply as read: the text shown and the calls made, or the error that stopped the reading.
pub type ReadReply = Result<(String, Vec<ToolCall>), String>;

/// Renders `messages` and `tools` with the chat template `source`, as a model file brings it,
/// under the same limits as a model's own template (fuel for time and memory). `None` when the
/// template does not compile (the model would fall back to llama.cpp's built-in templates).
#[must_use]
pub fn render_chat_template(
    source: &str,
    messages: &[Message],
    tools: &[ToolSpec],
) -> Option<Result<String, String>> {
    let template = ChatTemplate::new(Some(source.to_owned()), "<s>".to_owned(), "</s>".to_owned());
    template.render_own(messages, tools).map(|rendered| rendered.map_err(|e| e.to_string()))
}

/// The tool format a chat template implies.
#[must_use]
pub fn detect_tool_format(template: &str) -> ToolFormat {
    ToolFormat::detect(Some(template))
}

/// A native-format reply fed to the reader piece by piece, as generation streams it: the text
/// shown and the calls made (ids `call_0`, `call_1`, ...), or the first error.
///
/// # Errors
/// A call that is not valid JSON, or a reply that ends inside a call.
pub fn read_native_reply(format: ToolFormat, pieces: &[&str]) -> ReadReply {
    let mut reader = NativeReply::new(format);
    let mut ids = 0_usize;
    let mut next_id = || {
        ids += 1;
        format!("call_{}", ids - 1)
    };
    let (mut text, mut calls) = (String::new(), Vec::new());
    for piece in pieces {
        let (shown, made) = reader.push(piece, &mut next_id).map_err(|e| e.to_string())?;
        text.push_str(&shown);
        calls.extend(made);
    }
    text.push_str(&reader.finish().map_err(|e| e.to_string())?);
    Ok((text, calls))
}

/// A generic-format reply read whole: the answer, or the call (id `call_0`).
///
/// # Errors
/// A reply that is neither an answer nor a call.
pub fn read_generic_reply(text: &str) -> ReadReply {
    tools::parse_reply(text, "call_0").map_err(|e| e.to_string())
}

/// What a generic-format reply generated up to `text` shows while it streams: the answer's text
/// so far, or `None` while it may still become a call.
#[must_use]
pub fn streamed_generic_answer(text: &str) -> Option<String> {
    tools::partial_response(text)
}

/// What a request with tools becomes for a model writing `format`: the GBNF grammar its replies
/// are held to (from llama.cpp's JSON-Schema converter) and the patterns that engage it. `None`
/// when the request offers no tools.
///
/// # Errors
/// A tool whose parameters cannot become a grammar, or a `tool_choice` naming no tool.
pub fn tool_grammar(
    request: &ChatRequest,
    format: ToolFormat,
) -> Result<Option<(String, Vec<String>)>, String> {
    tools::plan(request, format).map(|plan| plan.map(|p| (p.grammar, p.triggers))).map_err(|e| e.to_string())
}
