//! Tool calling for local models, in one of two kinds of format:
//!
//! - **Native**: the model's own syntax, which it was trained on. The chat template renders the
//!   tools and the history (calls and tool-result turns); the model writes its calls in that
//!   syntax, which [`ToolFormat`] names: Hermes/Qwen `<tool_call>` blocks ([`ToolFormat::Hermes`],
//!   several per reply), Llama 3.x `{"name": ..., "parameters": ...}` after an optional
//!   `<|python_tag|>` ([`ToolFormat::Llama3`], one per reply, as its template allows), or Mistral's
//!   `[TOOL_CALLS]` and a JSON array of calls ([`ToolFormat::Mistral`], several). The grammar of a
//!   call engages lazily, when the model starts one (from the first token when a call is
//!   required), so a free answer is never forced through a JSON wrapper, and a call, once
//!   started, is always well formed: a known tool, arguments per its schema.
//! - **Generic** ([`ToolFormat::Generic`]): for templates with no tool syntax (SmolLM2's), every
//!   reply is one JSON object, `{"tool_call": {"name": ..., "arguments": {...}}}` or
//!   `{"response": "..."}` (llama.cpp's generic format), under a grammar from the first token;
//!   the tools and the format are described in the system message, and the history is rewritten in
//!   the same format so the model sees a consistent conversation.
//!
//! Either way a string argument without a `maxLength` gets one, small enough for the call to
//! close within the request's `max_tokens`: a small model rambling inside a string would
//! otherwise leave a call cut in half.

use catena_core::{ChatRequest, Error, Message, Result, Role, ToolCall, ToolChoice, ToolSpec};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::decode::schema_grammar;

/// How a local model writes tool calls: detected from its chat template, or set with
/// [`LlamaOptions::tool_format`](super::LlamaOptions::tool_format).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ToolFormat {
    /// One JSON object per reply (a call or a response), described in the system message: for
    /// models whose template has no tool syntax.
    Generic,
    /// Hermes / Qwen 2.5 and their fine-tunes: `<tool_call>` blocks after any text, rendered by
    /// the model's own template.
    Hermes,
    /// Llama 3.1 to 3.3: one `{"name": ..., "parameters": {...}}` object per reply, after the
    /// `<|python_tag|>` token or bare; results come back in `ipython` turns. Llama's templates
    /// refuse several calls in one message, so one call per reply.
    Llama3,
    /// Mistral (v3 tokenizer and Nemo templates): `[TOOL_CALLS]` then a JSON array of calls;
    /// the history's call ids are rewritten to the nine alphanumerics these templates demand.
    Mistral,
}

impl ToolFormat {
    /// The format a chat template implies, from the tool syntax it writes: `<tool_call>` blocks
    /// (Hermes), `[TOOL_CALLS]` (Mistral), `<|python_tag|>` or `ipython` turns with
    /// `"parameters"` (Llama 3.x); anything else is generic. Mistral's newer
    /// `[TOOL_CALLS]name[ARGS]{...}` syntax is not one of these and gets the generic format.
    #[must_use]
    pub(crate) fn detect(template: Option<&str>) -> Self {
        let Some(t) = template.filter(|t| t.contains("tools")) else { return Self::Generic };
        if t.contains(HERMES_OPEN) {
            Self::Hermes
        } else if t.contains(MISTRAL_OPEN) && !t.contains("[ARGS]") {
            Self::Mistral
        } else if t.contains(LLAMA3_OPEN) || (t.contains("ipython") && t.contains("\"parameters\"")) {
            Self::Llama3
        } else {
            Self::Generic
        }
    }

    /// Whether the model's own template renders the tools (every format but the generic one).
    #[must_use]
    pub(crate) fn is_native(self) -> bool {
        self != Self::Generic
    }

    /// The text that opens the calls section of a reply.
    fn marker(self) -> &'static str {
        match self {
            Self::Generic | Self::Hermes => HERMES_OPEN,
            Self::Llama3 => LLAMA3_OPEN,
            Self::Mistral => MISTRAL_OPEN,
        }
    }

    /// The key a call's arguments go under.
    fn arguments_key(self) -> &'static str {
        if self == Self::Llama3 { "parameters" } else { "arguments" }
    }
}

/// The most calls one reply may make when parallel calls are allowed.
pub(crate) const MAX_PARALLEL_CALLS: usize = 8;

/// Longest string argument a local model may write when the schema sets no `maxLength`.
const MAX_ARGUMENT_CHARS: usize = 300;

const HERMES_OPEN: &str = "<tool_call>";
const HERMES_CLOSE: &str = "</tool_call>";
const LLAMA3_OPEN: &str = "<|python_tag|>";
const MISTRAL_OPEN: &str = "[TOOL_CALLS]";

/// What a request with tools turns into for the local model.
pub(crate) struct ToolPlan {
    /// The reply format.
    pub format: ToolFormat,
    /// The conversation to render (rewritten for the generic format, and where a native template
    /// needs its history in a particular shape).
    pub messages: Vec<Message>,
    /// The tools the template renders (native formats; none for the generic one).
    pub tools: Vec<ToolSpec>,
    /// The GBNF every reply (generic), or every call (native), must match.
    pub grammar: String,
    /// For a lazy grammar: the patterns (regular expressions, llama.cpp's trigger semantics)
    /// that engage it; empty for a grammar that holds from the first token.
    pub triggers: Vec<String>,
}

/// `None` when the request offers no tools or forbids calling them.
pub(crate) fn plan(request: &ChatRequest, format: ToolFormat) -> Result<Option<ToolPlan>> {
    if request.tools.is_empty() || request.tool_choice == ToolChoice::None {
        return Ok(None);
    }
    let callable: Vec<&ToolSpec> = match &request.tool_choice {
        ToolChoice::Tool(name) => {
            let tool = request.tools.iter().find(|t| &t.name == name).ok_or_else(|| {
                Error::invalid_input(format!(
                    "tool_choice names `{name}`, which is not among the request's tools"
                ))
            })?;
            vec![tool]
        }
        _ => request.tools.iter().collect(),
    };
    let may_answer = request.tool_choice == ToolChoice::Auto;
    let max_chars = request
        .sampling
        .max_tokens
        .map_or(MAX_ARGUMENT_CHARS, |t| usize::try_from(t).unwrap_or(usize::MAX).saturating_mul(2))
        .clamp(16, MAX_ARGUMENT_CHARS);
    let max_calls = match format {
        _ if request.parallel_tool_calls == Some(false) => 1,
        ToolFormat::Llama3 => 1,
        _ => MAX_PARALLEL_CALLS,
    };
    let grammar = match format {
        ToolFormat::Generic => schema_grammar(&generic_reply_schema(&callable, may_answer, max_chars)),
        ToolFormat::Hermes => hermes_grammar(&callable, max_chars, max_calls),
        ToolFormat::Llama3 | ToolFormat::Mistral => marked_grammar(format, &callable, max_chars, max_calls),
    }
    .map_err(|e| grammar_error(&callable, e))?;
    let messages = match format {
        ToolFormat::Generic => rewrite_history(&request.messages, &callable, may_answer),
        ToolFormat::Hermes => request.messages.clone(),
        ToolFormat::Llama3 => one_call_per_message(&request.messages),
        ToolFormat::Mistral => with_mistral_ids(&request.messages),
    };
    Ok(Some(ToolPlan {
        format,
        messages,
        tools: if format.is_native() { request.tools.clone() } else { Vec::new() },
        grammar,
        triggers: if format.is_native() && may_answer { triggers(format) } else { Vec::new() },
    }))
}

/// What engages a native format's lazy grammar (llama.cpp feeds the grammar from the first
/// capturing group, or from the whole match when there is none: one group around the whole
/// opening, the rest non-capturing).
fn triggers(format: ToolFormat) -> Vec<String> {
    // A bare JSON call opening the reply, as small models write them when they leave the
    // format's marker out (and as Llama 3.x writes its calls).
    let bare = r#"^\s*(\{(?: |\n[ \t]{0,8})?"name")[\s\S]*$"#.to_owned();
    match format {
        ToolFormat::Generic => Vec::new(),
        // A `<tool_call>` anywhere, a bare call, or a JSON call in a Markdown fence anywhere
        // (after some prose, as the 1.5B Qwen writes them).
        ToolFormat::Hermes => {
            vec![HERMES_OPEN.to_owned(), bare, r#"(```(?:json)?\n?\{(?: |\n[ \t]{0,8})?"name")"#.to_owned()]
        }
        ToolFormat::Llama3 => vec![regex_escape(LLAMA3_OPEN), bare],
        // The marker anywhere, or the array of calls opening the reply without it.
        ToolFormat::Mistral => {
            vec![regex_escape(MISTRAL_OPEN), r#"^\s*(\[\s?\{(?: |\n[ \t]{0,8})?"name")[\s\S]*$"#.to_owned()]
        }
    }
}

fn regex_escape(literal: &str) -> String {
    literal.chars().fold(String::new(), |mut out, c| {
        if "\\^$.|?*+()[]{}".contains(c) {
            out.push('\\');
        }
        out.push(c);
        out
    })
}

/// Names the tool, and the argument with its schema, that llama.cpp could not turn into a
/// grammar: its converter only returns an error code, which says neither.
fn grammar_error(tools: &[&ToolSpec], error: Error) -> Error {
    for tool in tools {
        if schema_grammar(&tool.parameters).is_ok() {
            continue;
        }
        let defs = tool.parameters.get("$defs").cloned();
        let argument = tool.parameters.get("properties").and_then(Value::as_object).and_then(|properties| {
            properties.iter().find(|(_, schema)| {
                let mut alone = (*schema).clone();
                if let (Some(defs), Some(obj)) = (&defs, alone.as_object_mut()) {
                    obj.insert("$defs".into(), defs.clone());
                }
                schema_grammar(&alone).is_err()
            })
        });
        let culprit = match argument {
            Some((name, schema)) => {
                let schema = schema.to_string();
                let shown: String = schema.chars().take(160).collect();
                let more = if shown.len() < schema.len() { "..." } else { "" };
                format!("argument `{name}` ({shown}{more})")
            }
            None => "its arguments schema".to_owned(),
        };
        return Error::invalid_input(format!(
            "tool `{}`: {culprit} cannot be decoded under a grammar by the local model (a `$ref` to \
             a URL, for one); simplify it, or leave the tool out for this model",
            tool.name
        ));
    }
    error
}

/// One tool call as JSON: `{"name": <pinned>, <arguments_key>: <the tool's schema>}` for each
/// tool, with every tool's `$defs` hoisted to the root so `$ref`s still resolve.
fn call_variants(
    tools: &[&ToolSpec],
    max_chars: usize,
    arguments_key: &str,
) -> (Vec<Value>, Map<String, Value>) {
    let mut defs = Map::new();
    let variants = tools
        .iter()
        .map(|t| {
            let mut params = t.parameters.clone();
            if let Some(obj) = params.as_object_mut() {
                obj.remove("$schema");
                for key in ["$defs", "definitions"] {
                    if let Some(Value::Object(d)) = obj.remove(key) {
                        defs.extend(d);
                    }
                }
            }
            if params.is_null() {
                params = json!({"type": "object"});
            }
            json!({
                "type": "object",
                "properties": {"name": {"const": t.name}, arguments_key: cap_strings(params, max_chars)},
                "required": ["name", arguments_key]
            })
        })
        .collect();
    let defs = match cap_strings(Value::Object(defs), max_chars) {
        Value::Object(d) => d,
        _ => Map::new(),
    };
    (variants, defs)
}

fn with_defs(mut schema: Value, defs: Map<String, Value>) -> Value {
    if !defs.is_empty()
        && let Some(obj) = schema.as_object_mut()
    {
        obj.insert("$defs".into(), Value::Object(defs));
    }
    schema
}

/// Generic format: `oneOf` a `{"tool_call": <call>}` per tool and, when allowed, a plain
/// `{"response": ...}`.
fn generic_reply_schema(tools: &[&ToolSpec], may_answer: bool, max_chars: usize) -> Value {
    let (calls, defs) = call_variants(tools, max_chars, "arguments");
    let mut variants: Vec<Value> = calls
        .into_iter()
        .map(|call| json!({"type": "object", "properties": {"tool_call": call}, "required": ["tool_call"]}))
        .collect();
    if may_answer {
        variants.push(json!({"type": "object", "properties": {"response": {"type": "string"}}, "required": ["response"]}));
    }
    with_defs(json!({"oneOf": variants}), defs)
}

/// The GBNF rules of one call's JSON in `format`, under the rule name `tool-call-json`. Calls may
/// be pretty-printed (one newline and a little indentation between tokens), as models write them
/// when they leave their format's marker out; a lazy grammar must accept what triggered it.
fn call_rules(format: ToolFormat, tools: &[&ToolSpec], max_chars: usize) -> Result<String> {
    let (calls, defs) = call_variants(tools, max_chars, format.arguments_key());
    let json = schema_grammar(&with_defs(json!({"oneOf": calls}), defs))?;
    // The converter's root becomes the call's rule; the caller writes the new root around it.
    Ok(json
        .lines()
        .map(|line| {
            if let Some(rule) = line.strip_prefix("root ::=") {
                format!("tool-call-json ::={rule}")
            } else if line.starts_with("space ::=") {
                r#"space ::= | " " | "\n" [ \t]{0,8}"#.to_owned()
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n"))
}

/// ` ( <separator> <rule> ){0,max-1}`: the further calls of a reply, or nothing for one call.
fn more_calls(separator: &str, rule: &str, max_calls: usize) -> String {
    match max_calls.saturating_sub(1) {
        0 => String::new(),
        more => format!(" ( {separator} {rule} ){{0,{more}}}"),
    }
}

/// Native Hermes format: one to `max_calls` `<tool_call>` blocks, each holding one call's JSON, or
/// as many bare JSON calls on their own lines, fenced as Markdown code or not (what small Qwen
/// models write when they leave the tags out).
fn hermes_grammar(tools: &[&ToolSpec], max_chars: usize, max_calls: usize) -> Result<String> {
    let json = call_rules(ToolFormat::Hermes, tools, max_chars)?;
    let newline = r#""\n""#;
    Ok(format!(
        "root ::= tool-call-block{} | tool-call-json{} | tool-call-fenced{}\n\
         tool-call-block ::= \"{HERMES_OPEN}\" \"\\n\"? tool-call-json \"\\n\"? \"{HERMES_CLOSE}\"\n\
         tool-call-fenced ::= \"```\" \"json\"? \"\\n\"? tool-call-json \"\\n\"? \"```\"\n{json}",
        more_calls(newline, "tool-call-block", max_calls),
        more_calls(newline, "tool-call-json", max_calls),
        more_calls(newline, "tool-call-fenced", max_calls)
    ))
}

/// Formats whose calls follow a marker: Llama 3.x's one call after an optional `<|python_tag|>`
/// (the special token, or its text), Mistral's JSON array of up to `max_calls` calls after an
/// optional `[TOOL_CALLS]` (a model may leave the marker out; the array is what counts).
fn marked_grammar(
    format: ToolFormat,
    tools: &[&ToolSpec],
    max_chars: usize,
    max_calls: usize,
) -> Result<String> {
    let json = call_rules(format, tools, max_chars)?;
    let marker = format.marker();
    let root = if format == ToolFormat::Mistral {
        format!(
            "root ::= \"{marker}\"? \"[\" space tool-call-json{} space \"]\"",
            more_calls(r#""," space"#, "tool-call-json", max_calls)
        )
    } else {
        format!(
            "root ::= \"{marker}\"? space tool-call-json{}",
            more_calls(r#"";" space"#, "tool-call-json", max_calls)
        )
    };
    Ok(format!("{root}\n{json}"))
}

/// Gives every open-ended string in an arguments schema a `maxLength`.
fn cap_strings(schema: Value, max_chars: usize) -> Value {
    catena_core::ModelSchema::from_value("arguments", schema).bounded_strings(max_chars).into_value()
}

fn instructions(tools: &[&ToolSpec], may_answer: bool) -> String {
    let mut out = String::from("You can call these tools:\n");
    for t in tools {
        out.push_str(&format!("- {}: {} Arguments (JSON Schema): {}\n", t.name, t.description, t.parameters));
    }
    out.push_str("Reply with one JSON object. To call a tool: {\"tool_call\": {\"name\": <tool name>, \"arguments\": {...}}}");
    if may_answer {
        out.push_str(". To answer directly: {\"response\": <your answer>}");
    }
    out.push('.');
    out
}

fn rewrite_history(messages: &[Message], tools: &[&ToolSpec], may_answer: bool) -> Vec<Message> {
    let guide = instructions(tools, may_answer);
    let mut out = Vec::with_capacity(messages.len() + 1);
    match messages.first() {
        Some(first) if first.role == Role::System => {
            out.push(Message::system(format!("{}\n\n{guide}", first.content)));
        }
        _ => out.push(Message::system(guide)),
    }
    let rest = if messages.first().is_some_and(|m| m.role == Role::System) {
        messages.get(1..)
    } else {
        Some(messages)
    };
    for m in rest.unwrap_or_default() {
        out.push(match m.role {
            Role::Assistant if !m.tool_calls.is_empty() => {
                let calls: Vec<String> = m
                    .tool_calls
                    .iter()
                    .map(|c| json!({"tool_call": {"name": c.name, "arguments": c.arguments}}).to_string())
                    .collect();
                Message::assistant(calls.join("\n"))
            }
            Role::Assistant => Message::assistant(json!({"response": m.content}).to_string()),
            // Chat templates rarely know a `tool` role: results go back as user turns.
            Role::Tool => Message::user(json!({"tool_response": m.content}).to_string()),
            _ => m.clone(),
        });
    }
    out
}

/// Llama 3.x templates refuse an assistant message with several calls: each call gets a message
/// of its own (the first keeps the text), the results follow as before.
fn one_call_per_message(messages: &[Message]) -> Vec<Message> {
    let mut out = Vec::with_capacity(messages.len());
    for m in messages {
        if m.role != Role::Assistant || m.tool_calls.len() < 2 {
            out.push(m.clone());
            continue;
        }
        for (i, call) in m.tool_calls.iter().enumerate() {
            let content = if i == 0 { m.content.clone() } else { String::new() };
            out.push(Message::assistant(content).with_tool_calls(vec![call.clone()]));
        }
    }
    out
}

/// Mistral templates refuse call ids that are not nine ASCII alphanumerics (what Mistral's own
/// API issues): every other id, in calls and in the results that answer them, is replaced by one
/// derived from it, the same on both sides.
fn with_mistral_ids(messages: &[Message]) -> Vec<Message> {
    messages
        .iter()
        .map(|m| {
            let mut m = m.clone();
            for call in &mut m.tool_calls {
                call.id = mistral_id(&call.id);
            }
            if let Some(id) = &mut m.tool_call_id {
                *id = mistral_id(id);
            }
            m
        })
        .collect()
}

fn mistral_id(id: &str) -> String {
    if id.len() == 9 && id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return id.to_owned();
    }
    // FNV-1a: stable across runs and processes (the std hasher is seeded per process), and
    // collisions among one conversation's ids are out of reach (62^9 values).
    let mut hash =
        id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    (0..9)
        .map(|_| {
            let digit = usize::try_from(hash % 62).unwrap_or(0);
            hash /= 62;
            char::from(ALPHABET.get(digit).copied().unwrap_or(b'0'))
        })
        .collect()
}

/// The text of a `{"response": "...` reply cut before its end, escapes decoded; `None` when the
/// reply is not an answer (a tool call, or not even its opening).
pub(crate) fn partial_response(text: &str) -> Option<String> {
    let rest = text.trim_start().strip_prefix('{')?.trim_start().strip_prefix("\"response\"")?;
    let rest = rest.trim_start().strip_prefix(':')?.trim_start().strip_prefix('"')?;
    // The cut may fall inside an escape (`\`, `\u00`): drop up to five trailing characters until
    // what is left decodes as a JSON string.
    let chars: Vec<char> = rest.chars().collect();
    (0..=chars.len().min(5)).find_map(|drop| {
        let kept: String = chars.get(..chars.len() - drop)?.iter().collect();
        serde_json::from_str::<String>(&format!("\"{kept}\"")).ok()
    })
}

/// A call as the model wrote it.
#[derive(Deserialize)]
struct WrittenCall {
    name: String,
    /// `parameters` in Llama 3.x's format.
    #[serde(default, alias = "parameters")]
    arguments: Option<Value>,
}

/// A generic-format reply.
#[derive(Deserialize)]
#[serde(untagged)]
enum GenericReply {
    Call { tool_call: WrittenCall },
    Response { response: String },
}

/// Reads a generic-format reply: the answer text, or the tool call.
pub(crate) fn parse_reply(text: &str, call_id: &str) -> Result<(String, Vec<ToolCall>)> {
    let shown = || text.chars().take(200).collect::<String>();
    let reply: GenericReply = serde_json::from_str(text.trim())
        .map_err(|e| Error::parse("tool-call reply", format!("{e} in {:?}", shown())))?;
    Ok(match reply {
        GenericReply::Call { tool_call } => (String::new(), vec![tool_call.into_call(call_id.to_owned())]),
        GenericReply::Response { response } => (response, Vec::new()),
    })
}

impl WrittenCall {
    fn into_call(self, id: String) -> ToolCall {
        ToolCall { id, name: self.name, arguments: self.arguments.unwrap_or_else(|| json!({})) }
    }
}

/// A native reply as it is generated: text is released as soon as it cannot be the start of a
/// call, each call as soon as it closes. Calls come after any text, behind the format's marker
/// (`<tool_call>` blocks, `<|python_tag|>`, `[TOOL_CALLS]`), or as bare JSON objects
/// (`{"name": ..., "arguments": ...}`, one after another, in a Markdown fence or a JSON array)
/// that begin the reply: how small models write them when they leave the marker out, and how
/// Llama 3.x and Mistral calls read once their marker, a special token, is left out of the text.
#[derive(Debug)]
pub(crate) struct NativeReply {
    format: ToolFormat,
    /// Text not released yet: a tail that may open a call, or the calls section.
    held: String,
    mode: Mode,
    /// Calls released so far.
    calls: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Nothing decided yet: the reply may begin with a bare JSON call.
    #[default]
    Start,
    /// Text, which a call may still follow.
    Text,
    /// `<tool_call>` blocks.
    Tagged,
    /// Bare JSON calls, one after another (behind a marker or not).
    Bare,
}

/// How a reply that begins with a bare JSON call starts.
const BARE_OPEN: &str = "\"name\"";

/// What the start of a reply says it is.
enum Opening {
    /// A bare JSON call (`{"name"`), in a Markdown fence or a JSON array or neither.
    Call,
    /// Too little text to tell.
    Undecided,
    /// Anything else (a marker among it: the text's own search finds those).
    Text,
}

/// How many backticks `text` starts with. A Markdown fence is a run of three or more, and the
/// whole run opens it: reading a fixed three would make what is read depend on where a streamed
/// piece happened to cut a longer run.
fn backticks(text: &str) -> usize {
    text.len() - text.trim_start_matches('`').len()
}

fn opening(text: &str) -> Opening {
    let start = text.trim_start();
    let ticks = backticks(start);
    // Nothing yet, or backticks that may still become (or lengthen) a fence.
    if start.len() == ticks {
        return Opening::Undecided;
    }
    let rest = match start.get(ticks..) {
        Some(after) if ticks >= 3 => {
            if after.len() < 4 && "json".starts_with(after) {
                return Opening::Undecided;
            }
            after.strip_prefix("json").unwrap_or(after).trim_start()
        }
        _ => start,
    };
    let rest = match rest.strip_prefix('[').map(str::trim_start) {
        Some("") => return Opening::Undecided,
        Some(inside) if inside.starts_with('{') => inside,
        Some(_) => return Opening::Text,
        None => rest,
    };
    if rest.is_empty() {
        return Opening::Undecided;
    }
    match rest.strip_prefix('{').map(str::trim_start) {
        Some(name) if name.starts_with(BARE_OPEN) => Opening::Call,
        Some(name) if BARE_OPEN.starts_with(name) => Opening::Undecided,
        _ => Opening::Text,
    }
}

impl NativeReply {
    pub(crate) fn new(format: ToolFormat) -> Self {
        Self { format, held: String::new(), mode: Mode::Start, calls: 0 }
    }

    /// Takes the next piece of text; returns the text that can be shown now and the calls that
    /// closed. A call that is not valid JSON is an error naming it.
    pub(crate) fn push(
        &mut self,
        piece: &str,
        next_id: &mut dyn FnMut() -> String,
    ) -> Result<(String, Vec<ToolCall>)> {
        self.held.push_str(piece);
        if self.mode == Mode::Start {
            match opening(&self.held) {
                Opening::Call => self.mode = Mode::Bare,
                Opening::Undecided => return Ok((String::new(), Vec::new())),
                Opening::Text => self.mode = Mode::Text,
            }
        }
        let mut text = String::new();
        let mut calls = Vec::new();
        // Text and calls may alternate (a model outside its grammar writes prose after calls).
        loop {
            let progress = (self.held.len(), self.calls + calls.len());
            if self.mode == Mode::Text {
                let (at, mode) = match find_call(&self.held, self.format) {
                    Found::Call(at, mode) => (at, Some(mode)),
                    // Hold back what may still open a call, and the whitespace before it.
                    Found::Maybe(at) => (at, None),
                };
                let released = self.held.get(..at).unwrap_or_default().trim_end().len();
                let (shown, rest) = self.held.split_at(if mode.is_some() { at } else { released });
                text.push_str(shown.trim_end_matches(|c: char| mode.is_some() && c.is_whitespace()));
                self.held = rest.to_owned();
                match mode {
                    Some(mode) => self.mode = mode,
                    None => break,
                }
            }
            match self.mode {
                Mode::Bare => self.bare_calls(&mut calls, next_id)?,
                Mode::Tagged => self.tagged_calls(&mut calls, next_id)?,
                Mode::Start | Mode::Text => {}
            }
            // Back in text after some calls: look for the next call in what follows them.
            if self.mode != Mode::Text || (self.held.len(), self.calls + calls.len()) == progress {
                break;
            }
        }
        self.calls += calls.len();
        Ok((text, calls))
    }

    /// Successive JSON objects, each maybe in a Markdown fence, between array brackets and
    /// separators, or behind the format's marker; an incomplete last one waits for more text.
    fn bare_calls(&mut self, calls: &mut Vec<ToolCall>, next_id: &mut dyn FnMut() -> String) -> Result<()> {
        let marker = (self.format != ToolFormat::Hermes).then(|| self.format.marker());
        let mut consumed = 0;
        loop {
            let rest = self.held.get(consumed..).unwrap_or_default();
            let trimmed = rest.trim_start();
            let skipped = rest.len() - trimmed.len();
            if let Some(marker) = marker {
                if trimmed.starts_with(marker) {
                    consumed += skipped + marker.len();
                    continue;
                }
                if !trimmed.is_empty() && marker.starts_with(trimmed) {
                    break;
                }
            }
            let ticks = backticks(trimmed);
            if let Some(after) = trimmed.get(ticks..).filter(|_| ticks >= 3) {
                if after.len() < 4 && "json".starts_with(after) && !after.contains('\n') {
                    break;
                }
                let lang = if after.starts_with("json") { 4 } else { 0 };
                consumed += skipped + ticks + lang;
                continue;
            }
            if let Some(punctuation) = trimmed.chars().next().filter(|c| "[,];".contains(*c)) {
                consumed += skipped + punctuation.len_utf8();
                continue;
            }
            // Nothing, or one or two backticks that may still become a fence.
            if trimmed.len() == ticks {
                break;
            }
            if !trimmed.starts_with('{') && self.calls + calls.len() > 0 {
                // Prose after the calls (a model outside its grammar): shown as text.
                consumed += skipped;
                self.mode = Mode::Text;
                break;
            }
            let mut stream = serde_json::Deserializer::from_str(trimmed).into_iter::<WrittenCall>();
            match stream.next() {
                Some(Ok(call)) => {
                    calls.push(call.into_call(next_id()));
                    consumed += skipped + stream.byte_offset();
                }
                Some(Err(e)) if e.is_eof() => break,
                Some(Err(e)) => return Err(malformed(&e, trimmed)),
                None => break,
            }
        }
        self.held = self.held.get(consumed..).unwrap_or_default().to_owned();
        Ok(())
    }

    /// Complete `<tool_call>` blocks.
    fn tagged_calls(&mut self, calls: &mut Vec<ToolCall>, next_id: &mut dyn FnMut() -> String) -> Result<()> {
        while let Some(end) = self.held.find(HERMES_CLOSE) {
            let block = self.held.get(..end).unwrap_or_default();
            let json = block.trim_start().strip_prefix(HERMES_OPEN).unwrap_or(block).trim();
            let call: WrittenCall = serde_json::from_str(json).map_err(|e| malformed(&e, json))?;
            calls.push(call.into_call(next_id()));
            self.held = self.held.get(end + HERMES_CLOSE.len()..).unwrap_or_default().to_owned();
        }
        Ok(())
    }

    /// Whether any call was made.
    pub(crate) fn made_calls(&self) -> bool {
        self.calls > 0
    }

    /// What is left when generation ends: held-back text to show, or an error when a call was
    /// left open (cut by `max_tokens`, or a model that stopped inside it).
    pub(crate) fn finish(self) -> Result<String> {
        match self.mode {
            Mode::Tagged | Mode::Bare => {
                // A closing Markdown fence may be all that is left.
                let rest = self.held.trim().trim_matches('`').trim();
                if rest.is_empty() {
                    return Ok(String::new());
                }
                Err(Error::parse(
                    "tool call",
                    format!(
                        "the reply ended inside a tool call ({:?}); raise max_tokens",
                        rest.chars().take(200).collect::<String>()
                    ),
                ))
            }
            Mode::Start => Ok(self.held.trim().to_owned()),
            // Held text follows what was shown: only its end is trimmed.
            Mode::Text => Ok(self.held.trim_end().to_owned()),
        }
    }
}

fn malformed(e: &serde_json::Error, json: &str) -> Error {
    Error::parse("tool call", format!("{e} in {:?}", json.chars().take(200).collect::<String>()))
}

/// Where a call opens in a reply's text.
enum Found {
    /// At this byte, in this form.
    Call(usize, Mode),
    /// No call yet; from this byte on, the text may still become one (or is whitespace).
    Maybe(usize),
}

fn find_call(text: &str, format: ToolFormat) -> Found {
    let marker = format.marker();
    let marked = text.find(marker);
    let mut maybe = text.len();
    // Where each run of three or more backticks starts.
    let fences = text
        .match_indices("```")
        .map(|(at, _)| at)
        .filter(|at| !text.get(..*at).is_some_and(|before| before.ends_with('`')));
    for at in fences {
        if marked.is_some_and(|t| t < at) {
            break;
        }
        match opening(text.get(at..).unwrap_or_default()) {
            Opening::Call => return Found::Call(at, Mode::Bare),
            Opening::Undecided => {
                maybe = at;
                break;
            }
            Opening::Text => {}
        }
    }
    if let Some(at) = marked {
        return Found::Call(at, if format == ToolFormat::Hermes { Mode::Tagged } else { Mode::Bare });
    }
    // A partial marker at the very end (`<tool_ca`, `[TOOL`), or one or two backticks.
    let partial = (1..marker.len())
        .rev()
        .find(|n| text.ends_with(marker.get(..*n).unwrap_or_default()))
        .or_else(|| [2, 1].into_iter().find(|n| text.ends_with("```".get(..*n).unwrap_or_default())))
        .unwrap_or(0);
    Found::Maybe(maybe.min(text.len() - partial))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str) -> ToolSpec {
        ToolSpec {
            name: name.into(),
            description: "Does things.".into(),
            parameters: json!({"$schema": "x", "type": "object", "properties": {"p": {"$ref": "#/$defs/P"}}, "$defs": {"P": {"type": "integer"}}}),
        }
    }

    #[test]
    fn schema_pins_names_hoists_defs_and_allows_answers_only_on_auto() {
        let a = spec("a");
        let s = generic_reply_schema(&[&a], true, 300);
        assert_eq!(s["oneOf"].as_array().map(Vec::len), Some(2));
        assert_eq!(s["oneOf"][0]["properties"]["tool_call"]["properties"]["name"]["const"], "a");
        assert_eq!(s["$defs"]["P"]["type"], "integer");
        assert!(s["oneOf"][0]["properties"]["tool_call"]["properties"]["arguments"].get("$schema").is_none());
        assert_eq!(generic_reply_schema(&[&a], false, 300)["oneOf"].as_array().map(Vec::len), Some(1));
        let text = ToolSpec {
            name: "t".into(),
            description: "d".into(),
            parameters: json!({"type": "object", "properties": {"q": {"type": "string"}, "k": {"type": "string", "enum": ["x"]}, "l": {"type": "array", "items": {"type": "string", "maxLength": 5}}}}),
        };
        let args = &generic_reply_schema(&[&text], true, 300)["oneOf"][0]["properties"]["tool_call"]["properties"]
            ["arguments"];
        assert_eq!(args["properties"]["q"]["maxLength"], 300);
        assert!(args["properties"]["k"].get("maxLength").is_none());
        assert_eq!(args["properties"]["l"]["items"]["maxLength"], 5);
    }

    #[test]
    fn string_arguments_are_bounded_by_the_token_budget() {
        let text = ToolSpec {
            name: "t".into(),
            description: "d".into(),
            parameters: json!({"type": "object", "properties": {"q": {"type": "string"}}}),
        };
        let request = ChatRequest::new(vec![Message::user("x")]).with_tools(vec![text]).with_max_tokens(20);
        let planned = plan(&request, ToolFormat::Generic).unwrap().unwrap();
        assert!(planned.grammar.contains("{0,40}"), "{}", planned.grammar);
    }

    #[test]
    fn history_is_rewritten_and_unknown_forced_tool_is_refused() {
        let req = ChatRequest::new(vec![
            Message::user("2+2?"),
            Message::assistant("").with_tool_calls(vec![ToolCall {
                id: "1".into(),
                name: "a".into(),
                arguments: json!({}),
            }]),
            Message::tool("1", "4"),
        ])
        .with_tools(vec![spec("a")]);
        let planned = plan(&req, ToolFormat::Generic).unwrap().unwrap();
        assert_eq!(planned.messages[0].role, Role::System);
        assert!(planned.messages[2].content.contains("\"tool_call\""));
        assert_eq!(planned.messages[3].role, Role::User);
        assert!(planned.triggers.is_empty() && planned.tools.is_empty());
        let mut forced = req.clone();
        forced.tool_choice = ToolChoice::Tool("zzz".into());
        assert!(plan(&forced, ToolFormat::Hermes).is_err());
        forced.tool_choice = ToolChoice::None;
        assert!(plan(&forced, ToolFormat::Hermes).unwrap().is_none());
    }

    #[test]
    fn a_schema_the_grammar_cannot_express_names_its_tool() {
        let unreadable = ToolSpec {
            name: "fetch_remote".into(),
            description: "x".into(),
            parameters: json!({"type": "object", "properties": {"p": {"$ref": "https://example.com/p.json"}}}),
        };
        let req = ChatRequest::new(vec![Message::user("hi")]).with_tools(vec![spec("a"), unreadable]);
        for format in [ToolFormat::Generic, ToolFormat::Hermes] {
            let Err(e) = plan(&req, format) else { panic!("{format:?}: the $ref to a URL was accepted") };
            let message = e.to_string();
            assert!(
                message.contains(
                    "tool `fetch_remote`: argument `p` ({\"$ref\":\"https://example.com/p.json\"})"
                ),
                "{message}"
            );
        }
    }

    #[test]
    fn native_plans_keep_the_history_and_engage_their_grammar_lazily_only_when_answers_are_allowed() {
        let req = ChatRequest::new(vec![Message::user("2+2?")]).with_tools(vec![spec("a"), spec("b")]);
        let auto = plan(&req, ToolFormat::Hermes).unwrap().unwrap();
        assert_eq!(auto.messages, req.messages);
        assert_eq!(auto.tools.len(), 2);
        assert_eq!(auto.triggers.first().map(String::as_str), Some("<tool_call>"));
        assert!(
            auto.grammar.starts_with(
                "root ::= tool-call-block ( \"\\n\" tool-call-block ){0,7} | tool-call-json ( \"\\n\" tool-call-json ){0,7} | tool-call-fenced"
            ),
            "{}",
            auto.grammar
        );
        assert!(auto.grammar.contains("tool-call-json ::="), "{}", auto.grammar);
        let mut single = req.clone();
        single.parallel_tool_calls = Some(false);
        single.tool_choice = ToolChoice::Required;
        let required = plan(&single, ToolFormat::Hermes).unwrap().unwrap();
        assert!(required.triggers.is_empty());
        assert!(
            required.grammar.starts_with("root ::= tool-call-block | tool-call-json | tool-call-fenced\n"),
            "{}",
            required.grammar
        );
    }

    #[test]
    fn formats_are_detected_from_the_template() {
        assert_eq!(ToolFormat::detect(None), ToolFormat::Generic);
        assert_eq!(ToolFormat::detect(Some("{{ messages }}")), ToolFormat::Generic);
        assert_eq!(
            ToolFormat::detect(Some("{% if tools %}...<tool_call>...{% endif %}")),
            ToolFormat::Hermes
        );
        // Llama 3.1/3.3 write `<|python_tag|>`; 3.2 only asks for "parameters" and has ipython turns.
        assert_eq!(ToolFormat::detect(Some("{% if tools %}<|python_tag|>{% endif %}")), ToolFormat::Llama3);
        assert_eq!(
            ToolFormat::detect(Some(
                r#"{% if tools %}{"name": ..., "parameters": ...}{% endif %}{% if m.role == "ipython" %}"#
            )),
            ToolFormat::Llama3
        );
        assert_eq!(
            ToolFormat::detect(Some("[AVAILABLE_TOOLS]{{ tools|tojson }}[/AVAILABLE_TOOLS] [TOOL_CALLS]")),
            ToolFormat::Mistral
        );
        // Mistral's newer `[TOOL_CALLS]name[ARGS]{...}` syntax is not the array one: generic.
        assert_eq!(ToolFormat::detect(Some("{{ tools }}[TOOL_CALLS]{{ name }}[ARGS]")), ToolFormat::Generic);
        // A marker in a template that never renders tools says nothing.
        assert_eq!(ToolFormat::detect(Some("<|python_tag|>")), ToolFormat::Generic);
    }

    #[test]
    fn llama3_plans_use_parameters_one_call_and_one_call_per_history_message() {
        let call = |id: &str| ToolCall { id: id.into(), name: "a".into(), arguments: json!({"p": 1}) };
        let req = ChatRequest::new(vec![
            Message::user("twice"),
            Message::assistant("Both.").with_tool_calls(vec![call("c1"), call("c2")]),
            Message::tool("c1", "1"),
            Message::tool("c2", "2"),
        ])
        .with_tools(vec![spec("a"), spec("b")]);
        let planned = plan(&req, ToolFormat::Llama3).unwrap().unwrap();
        assert!(
            planned.grammar.starts_with("root ::= \"<|python_tag|>\"? space tool-call-json\n"),
            "{}",
            planned.grammar
        );
        assert!(planned.grammar.contains("\"\\\"parameters\\\"\""), "{}", planned.grammar);
        assert!(!planned.grammar.contains("arguments"), "{}", planned.grammar);
        assert_eq!(planned.triggers[0], "<\\|python_tag\\|>");
        assert_eq!(planned.tools.len(), 2);
        let roles: Vec<(Role, usize, &str)> =
            planned.messages.iter().map(|m| (m.role, m.tool_calls.len(), m.content.as_str())).collect();
        assert_eq!(
            roles,
            [
                (Role::User, 0, "twice"),
                (Role::Assistant, 1, "Both."),
                (Role::Assistant, 1, ""),
                (Role::Tool, 0, "1"),
                (Role::Tool, 0, "2")
            ]
        );
        assert_eq!(planned.messages[2].tool_calls[0].id, "c2");
    }

    #[test]
    fn mistral_plans_allow_an_array_of_calls_and_give_the_history_nine_character_ids() {
        let req = ChatRequest::new(vec![
            Message::user("twice"),
            Message::assistant("").with_tool_calls(vec![
                ToolCall { id: "call_0".into(), name: "a".into(), arguments: json!({}) },
                ToolCall { id: "AbC123xyz".into(), name: "a".into(), arguments: json!({}) },
            ]),
            Message::tool("call_0", "1"),
            Message::tool("AbC123xyz", "2"),
        ])
        .with_tools(vec![spec("a")]);
        let planned = plan(&req, ToolFormat::Mistral).unwrap().unwrap();
        assert!(
            planned.grammar.starts_with(
                "root ::= \"[TOOL_CALLS]\"? \"[\" space tool-call-json ( \",\" space tool-call-json ){0,7} space \"]\"\n"
            ),
            "{}",
            planned.grammar
        );
        assert_eq!(planned.triggers[0], "\\[TOOL_CALLS\\]");
        let calls = &planned.messages[1].tool_calls;
        let fresh = calls[0].id.clone();
        assert!(fresh.len() == 9 && fresh.bytes().all(|b| b.is_ascii_alphanumeric()), "{fresh}");
        assert_eq!(planned.messages[2].tool_call_id.as_deref(), Some(fresh.as_str()));
        assert_eq!(calls[1].id, "AbC123xyz");
        assert_eq!(planned.messages[3].tool_call_id.as_deref(), Some("AbC123xyz"));
        // The same id maps to the same replacement in every request of a conversation.
        assert_eq!(mistral_id("call_0"), fresh);
        assert_ne!(mistral_id("call_1"), fresh);
        let mut one = req.clone();
        one.parallel_tool_calls = Some(false);
        assert!(!plan(&one, ToolFormat::Mistral).unwrap().unwrap().grammar.contains("{0,7}"));
    }

    /// Feeds `pieces` to a fresh reply in `format`: the text shown, the calls, the finish.
    fn replay(format: ToolFormat, pieces: &[&str]) -> (String, Vec<ToolCall>, Result<String>) {
        let mut n = 0;
        let mut id = || {
            n += 1;
            format!("call_{n}")
        };
        let mut reply = NativeReply::new(format);
        let (mut text, mut calls) = (String::new(), Vec::new());
        for piece in pieces {
            let (t, c) = reply.push(piece, &mut id).unwrap();
            text.push_str(&t);
            calls.extend(c);
        }
        (text, calls, reply.finish())
    }

    #[test]
    fn llama3_and_mistral_replies_stream_their_calls_with_or_without_the_marker() {
        // Llama 3.x: after the tag (as text when the model writes it so), or bare, `parameters`.
        for pieces in [
            &["<|python", "_tag|>{\"name\": \"a\", ", "\"parameters\": {\"p\": 1}}"][..],
            &["{\"name\"", ": \"a\", \"parameters\": {\"p\": 1}}"][..],
        ] {
            let (text, calls, rest) = replay(ToolFormat::Llama3, pieces);
            assert_eq!((text.as_str(), calls.len()), ("", 1), "{pieces:?}");
            assert_eq!((calls[0].name.as_str(), calls[0].arguments["p"].as_i64()), ("a", Some(1)));
            assert_eq!(rest.unwrap(), "");
        }
        let (text, calls, rest) = replay(ToolFormat::Llama3, &["Paris is ", "the capital <|python"]);
        assert_eq!((text.as_str(), calls.len()), ("Paris is the capital", 0));
        assert_eq!(rest.unwrap(), " <|python");

        // Mistral: the marker and an array, each call released as it closes.
        let mut reply = NativeReply::new(ToolFormat::Mistral);
        let mut id = || "x".to_owned();
        let mut seen = Vec::new();
        for piece in [
            "[",
            "TOOL_CALLS]",
            "[{\"name\": \"a\", \"arguments\": {\"p\": 1}}",
            ", {\"name\": \"b\", \"arguments\": {}}",
            "]",
        ] {
            let (t, c) = reply.push(piece, &mut id).unwrap();
            assert!(t.is_empty(), "{t:?}");
            seen.push(c.len());
        }
        assert_eq!(seen, [0, 0, 1, 1, 0]);
        assert_eq!(reply.finish().unwrap(), "");
        // Without the marker (a special token, not in the text), the array alone.
        let (text, calls, rest) = replay(
            ToolFormat::Mistral,
            &["[{\"name\": \"a\", \"arguments\": {}}, ", "{\"name\": \"b\", \"arguments\": {}}]"],
        );
        assert_eq!((text.as_str(), calls.len(), rest.unwrap().as_str()), ("", 2, ""));
        // Brackets that are not calls are text; a cut array is an error.
        let (text, calls, rest) = replay(ToolFormat::Mistral, &["[1", "] says so."]);
        assert_eq!((text + &rest.unwrap(), calls.len()), ("[1] says so.".to_owned(), 0));
        let (_, _, rest) = replay(ToolFormat::Mistral, &["[TOOL_CALLS][{\"name\": \"a\", \"argu"]);
        assert!(rest.unwrap_err().to_string().contains("ended inside a tool call"));
        // Text, then the marker: the text is shown, the calls follow.
        let (text, calls, _) = replay(
            ToolFormat::Mistral,
            &["Let me check. [TOOL_CALLS][{\"name\": \"a\", \"arguments\": {}}]"],
        );
        assert_eq!((text.as_str(), calls.len()), ("Let me check.", 1));
    }

    #[test]
    fn native_replies_release_text_then_each_call_as_it_closes() {
        let mut n = 0;
        let mut id = || {
            n += 1;
            format!("call_{n}")
        };
        let mut reply = NativeReply::new(ToolFormat::Hermes);
        let mut text = String::new();
        let mut calls = Vec::new();
        for piece in [
            "Let me ",
            "check.\n",
            "<tool",
            "_call>\n{\"name\": \"a\", ",
            "\"arguments\": {\"p\": 1}}\n</tool_call>",
            "\n<tool_call>\n{\"name\": \"b\", \"arguments\": {}}\n</tool_call>",
        ] {
            let (t, c) = reply.push(piece, &mut id).unwrap();
            assert!(!t.contains('<'), "a marker leaked: {t:?}");
            text.push_str(&t);
            calls.extend(c);
        }
        assert_eq!(text, "Let me check.");
        assert_eq!(calls.len(), 2);
        assert_eq!(
            (calls[0].id.as_str(), calls[0].name.as_str(), calls[0].arguments["p"].as_i64()),
            ("call_1", "a", Some(1))
        );
        assert_eq!(calls[1].name, "b");
        assert!(reply.made_calls());
        assert_eq!(reply.finish().unwrap(), "");

        // Plain answers pass through whole, and text that only looks like a marker is released.
        let mut plain = NativeReply::new(ToolFormat::Hermes);
        let (t, _) = plain.push("x < y and <tool", &mut || String::new()).unwrap();
        assert_eq!(t, "x < y and");
        let (t, _) = plain.push("s> are fine", &mut || String::new()).unwrap();
        assert_eq!(t, " <tools> are fine");
        assert_eq!(plain.finish().unwrap(), "");

        // Bare JSON calls at the start of a reply, as small models write them, one per line.
        let mut bare = NativeReply::new(ToolFormat::Hermes);
        let mut calls = Vec::new();
        for piece in
            ["  {", "\"name\": \"a\", \"arguments\": {\"p\": 2}}", "\n{\"name\": \"b\", \"arguments\": {}}"]
        {
            let (t, c) = bare.push(piece, &mut || "id".to_owned()).unwrap();
            assert!(t.is_empty());
            calls.extend(c);
        }
        assert_eq!(calls.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(bare.finish().unwrap(), "");
        // The same in Markdown fences, as larger Qwen models write them.
        let mut fenced = NativeReply::new(ToolFormat::Hermes);
        let mut calls = Vec::new();
        for piece in ["``", "`json\n{\n  \"name\": \"a\",\n  \"arguments\": {}\n}\n``", "`"] {
            let (t, c) = fenced.push(piece, &mut || "id".to_owned()).unwrap();
            assert!(t.is_empty(), "{t:?}");
            calls.extend(c);
        }
        assert_eq!(calls.len(), 1);
        assert_eq!(fenced.finish().unwrap(), "");
        // A fence of more than three backticks opens where its run starts: cut anywhere inside
        // the run, the reply reads as it does whole (fuzzing found a cut that turned a call into
        // a parse error: the reader took the last three backticks of a run for the fence).
        let reply = "Now:\n\n`````json\n{\"name\": \"a\", \"arguments\": {}}\n`````\n\n```` ``\n{\"name\"";
        let read = |pieces: &[&str]| {
            let mut reader = NativeReply::new(ToolFormat::Hermes);
            let (mut shown, mut names) = (String::new(), Vec::new());
            for piece in pieces {
                let (t, c) = reader.push(piece, &mut || "id".to_owned())?;
                shown.push_str(&t);
                names.extend(c.into_iter().map(|c| c.name));
            }
            Ok::<_, Error>((shown, names, reader.finish().map_err(|e| e.to_string())))
        };
        let whole = read(&[reply]).unwrap();
        // (What follows the call is prose to this reader: a run of four, then two backticks.)
        assert_eq!((whole.0.as_str(), whole.1.as_slice()), ("Now:``\n{\"name\"", &["a".to_owned()][..]));
        for cut in 1..reply.len() {
            let (head, tail) = reply.split_at(cut);
            assert_eq!(read(&[head, tail]).unwrap(), whole, "cut at {cut}");
        }
        // Prose, then a call in a fence: the prose is the text, the fenced call a call.
        let mut mixed = NativeReply::new(ToolFormat::Hermes);
        let (mut shown, mut calls) = (String::new(), Vec::new());
        for piece in [
            "To count them, use it:\n\n``",
            "`json\n{\n  \"name\": \"a\",\n  \"arguments\": {\"p\": 3}\n}\n```",
        ] {
            let (t, c) = mixed.push(piece, &mut || "id".to_owned()).unwrap();
            shown.push_str(&t);
            calls.extend(c);
        }
        assert_eq!(shown, "To count them, use it:");
        assert_eq!((calls.len(), calls[0].arguments["p"].as_i64()), (1, Some(3)));
        assert_eq!(mixed.finish().unwrap(), "");
        // A fence that holds code, not a call, is text.
        let mut code = NativeReply::new(ToolFormat::Hermes);
        let (t, _) = code.push("Run:\n```sh\ncatena ingest docs\n```\n", &mut || String::new()).unwrap();
        assert_eq!(t + &code.finish().unwrap(), "Run:\n```sh\ncatena ingest docs\n```");
        // A reply that opens with a brace but is not a call is text.
        let mut json_text = NativeReply::new(ToolFormat::Hermes);
        let (t, c) = json_text.push("{\"a\": 1} is JSON.", &mut || String::new()).unwrap();
        assert!(c.is_empty());
        assert_eq!(t + &json_text.finish().unwrap(), "{\"a\": 1} is JSON.");

        // A call left open is an error; a broken block names itself.
        let mut cut = NativeReply::new(ToolFormat::Hermes);
        cut.push("<tool_call>\n{\"name\": \"a\", \"argu", &mut || String::new()).unwrap();
        assert!(cut.finish().unwrap_err().to_string().contains("ended inside a tool call"));
        let mut broken = NativeReply::new(ToolFormat::Hermes);
        let err = broken.push("<tool_call>nope</tool_call>", &mut || String::new()).unwrap_err();
        assert_eq!(err.kind(), catena_core::ErrorKind::Parse);
    }

    #[test]
    fn answers_cut_at_the_limit_keep_their_text_and_cut_calls_do_not() {
        assert_eq!(partial_response(r#"{ "response": "Hello, wor"#).as_deref(), Some("Hello, wor"));
        assert_eq!(
            partial_response(r#"{"response":"a \"quote\" and \u00e9t\u00"#).as_deref(),
            Some("a \"quote\" and ét")
        );
        assert_eq!(
            partial_response(r#"{"response": "ends in a backslash \"#).as_deref(),
            Some("ends in a backslash ")
        );
        assert_eq!(partial_response(r#"{"tool_call": {"name": "a", "argu"#), None);
        assert_eq!(partial_response("{"), None);
    }

    #[test]
    fn replies_parse_into_calls_or_text() {
        let (text, calls) =
            parse_reply(r#"{"tool_call": {"name": "a", "arguments": {"p": 1}}}"#, "call-1").unwrap();
        assert!(text.is_empty());
        assert_eq!(calls[0].name, "a");
        assert_eq!(calls[0].arguments["p"], 1);
        assert_eq!(parse_reply(r#"{"response": "hi"}"#, "x").unwrap().0, "hi");
        assert!(parse_reply("nope", "x").is_err());
    }
}

/// The lazy grammar against the real tokenizer of the default agent model: every form of call
/// it triggers on, token by token as the model would produce it, is accepted (llama.cpp feeds the
/// grammar from the trigger's first capturing group; a wrong group threw mid-reply).
#[cfg(test)]
mod lazy_grammar {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_opening_the_grammar_triggers_on_is_accepted() {
        let path = crate::files::resolve(crate::files::AGENT.name).unwrap();
        let backend = super::super::backend().unwrap();
        let model =
            llama_cpp_2::model::LlamaModel::load_from_file(backend, &path, &Default::default()).unwrap();
        let tool = ToolSpec {
            name: "calculator".into(),
            description: "Arithmetic.".into(),
            parameters: json!({"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]}),
        };
        let request = ChatRequest::new(vec![Message::user("x")]).with_tools(vec![tool]);
        let call =
            "{\n  \"name\": \"calculator\",\n  \"arguments\": {\n    \"expression\": \"17 * 23\"\n  }\n}";
        let llama = r#"{"name": "calculator", "parameters": {"expression": "17 * 23"}}"#;
        let mistral = r#"[{"name": "calculator", "arguments": {"expression": "17 * 23"}}]"#;
        let cases = [
            (ToolFormat::Hermes, format!("<tool_call>\n{call}\n</tool_call>")),
            (ToolFormat::Hermes, format!("Let me compute it.\n<tool_call>\n{call}\n</tool_call>")),
            (ToolFormat::Hermes, call.to_owned()),
            (ToolFormat::Hermes, r#"{"name": "calculator", "arguments": {"expression": "2+2"}}"#.to_owned()),
            (ToolFormat::Hermes, format!("```json\n{call}\n```")),
            (ToolFormat::Hermes, format!("To compute it, I call the tool:\n\n```json\n{call}\n```")),
            (ToolFormat::Llama3, format!("<|python_tag|>{llama}")),
            (ToolFormat::Llama3, llama.to_owned()),
            (ToolFormat::Mistral, format!("[TOOL_CALLS]{mistral}")),
            (ToolFormat::Mistral, format!("I will compute it. [TOOL_CALLS]{mistral}")),
            (ToolFormat::Mistral, mistral.to_owned()),
        ];
        for (format, text) in cases {
            let plan = plan(&request, format).unwrap().unwrap();
            let mut sampler = llama_cpp_2::sampling::LlamaSampler::grammar_lazy_patterns(
                &model,
                &plan.grammar,
                "root",
                &plan.triggers,
                &[],
            )
            .unwrap();
            let vocab = model.vocab();
            for token in vocab.tokenize(text.as_bytes(), false, true) {
                let piece = String::from_utf8_lossy(&vocab.token_to_piece(token, false, None)).into_owned();
                assert!(sampler.try_accept(token).is_ok(), "{text:?}: refused at {piece:?}");
            }
        }
    }
}
