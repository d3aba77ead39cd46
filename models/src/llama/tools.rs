//! Tool calling for local models, in one of two formats:
//!
//! - **Native** ([`ToolFormat::Hermes`]): the model's own syntax, which it was trained on. The
//!   chat template renders the tools and the history (calls and `<tool_response>` turns); the
//!   model writes any text, then `<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>`
//!   blocks (several when parallel calls are allowed). The grammar of those blocks engages
//!   lazily, when the model starts one (from the first token when a call is required), so a free
//!   answer is never forced through a JSON wrapper, and a call, once started, is always well
//!   formed: a known tool, arguments per its schema.
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
pub enum ToolFormat {
    /// One JSON object per reply (a call or a response), described in the system message: for
    /// models whose template has no tool syntax.
    Generic,
    /// Hermes / Qwen 2.5 and their fine-tunes: `<tool_call>` blocks after any text, rendered by
    /// the model's own template.
    Hermes,
}

impl ToolFormat {
    /// The format a chat template implies: Hermes when it renders tools and `<tool_call>` blocks.
    #[must_use]
    pub(crate) fn detect(template: Option<&str>) -> Self {
        match template {
            Some(t) if t.contains("<tool_call>") && t.contains("tools") => Self::Hermes,
            _ => Self::Generic,
        }
    }
}

/// The most calls one reply may make when parallel calls are allowed.
pub(crate) const MAX_PARALLEL_CALLS: usize = 8;

/// Longest string argument a local model may write when the schema sets no `maxLength`.
const MAX_ARGUMENT_CHARS: usize = 300;

const CALL_OPEN: &str = "<tool_call>";
const CALL_CLOSE: &str = "</tool_call>";

/// What a request with tools turns into for the local model.
pub(crate) struct ToolPlan {
    /// The reply format.
    pub format: ToolFormat,
    /// The conversation to render (rewritten for the generic format).
    pub messages: Vec<Message>,
    /// The tools the template renders (native format; none for the generic one).
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
    let plan = match format {
        ToolFormat::Generic => ToolPlan {
            format,
            messages: rewrite_history(&request.messages, &callable, may_answer),
            tools: Vec::new(),
            grammar: schema_grammar(&generic_reply_schema(&callable, may_answer, max_chars))
                .map_err(|e| grammar_error(&callable, e))?,
            triggers: Vec::new(),
        },
        ToolFormat::Hermes => {
            let max_calls = if request.parallel_tool_calls == Some(false) { 1 } else { MAX_PARALLEL_CALLS };
            ToolPlan {
                format,
                messages: request.messages.clone(),
                tools: request.tools.clone(),
                grammar: hermes_grammar(&callable, max_chars, max_calls)
                    .map_err(|e| grammar_error(&callable, e))?,
                // A `<tool_call>` anywhere, a reply that opens with a bare JSON call, or a JSON
                // call in a Markdown fence anywhere (after some prose, as the 1.5B writes them).
                triggers: if may_answer {
                    vec![
                        CALL_OPEN.to_owned(),
                        // llama.cpp feeds the grammar from the first capturing group: one group
                        // around the whole opening, the rest non-capturing.
                        r#"^\s*(\{(?: |\n[ \t]{0,8})?"name")[\s\S]*$"#.to_owned(),
                        r#"(```(?:json)?\n?\{(?: |\n[ \t]{0,8})?"name")"#.to_owned(),
                    ]
                } else {
                    Vec::new()
                },
            }
        }
    };
    Ok(Some(plan))
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

/// One tool call as JSON: `{"name": <pinned>, "arguments": <the tool's schema>}` for each tool,
/// with every tool's `$defs` hoisted to the root so `$ref`s still resolve.
fn call_variants(tools: &[&ToolSpec], max_chars: usize) -> (Vec<Value>, Map<String, Value>) {
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
                "properties": {"name": {"const": t.name}, "arguments": cap_strings(params, max_chars)},
                "required": ["name", "arguments"]
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
    let (calls, defs) = call_variants(tools, max_chars);
    let mut variants: Vec<Value> = calls
        .into_iter()
        .map(|call| json!({"type": "object", "properties": {"tool_call": call}, "required": ["tool_call"]}))
        .collect();
    if may_answer {
        variants.push(json!({"type": "object", "properties": {"response": {"type": "string"}}, "required": ["response"]}));
    }
    with_defs(json!({"oneOf": variants}), defs)
}

/// Native Hermes format: one to `max_calls` `<tool_call>` blocks, each holding one call's JSON, or
/// as many bare JSON calls on their own lines, fenced as Markdown code or not (what small Qwen
/// models write when they leave the tags out).
fn hermes_grammar(tools: &[&ToolSpec], max_chars: usize, max_calls: usize) -> Result<String> {
    let (calls, defs) = call_variants(tools, max_chars);
    let json = schema_grammar(&with_defs(json!({"oneOf": calls}), defs))?;
    // The converter's root becomes the call's rule; the blocks around it are the new root. Calls
    // may be pretty-printed (one newline and a little indentation between tokens), as models
    // write them when they leave the tags out; the lazy grammar must accept what triggered it.
    let json = json
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
        .join("\n");
    let more = max_calls.saturating_sub(1);
    let repeat =
        |rule: &str| if more == 0 { String::new() } else { format!(" ( \"\\n\" {rule} ){{0,{more}}}") };
    Ok(format!(
        "root ::= tool-call-block{} | tool-call-json{} | tool-call-fenced{}\n\
         tool-call-block ::= \"{CALL_OPEN}\" \"\\n\"? tool-call-json \"\\n\"? \"{CALL_CLOSE}\"\n\
         tool-call-fenced ::= \"```\" \"json\"? \"\\n\"? tool-call-json \"\\n\"? \"```\"\n{json}",
        repeat("tool-call-block"),
        repeat("tool-call-json"),
        repeat("tool-call-fenced")
    ))
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
    #[serde(default)]
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

/// A native (Hermes) reply as it is generated: text is released as soon as it cannot be the start
/// of a call, each call as soon as it closes. Calls come in `<tool_call>` blocks after any text,
/// or, as small models often write them, as bare JSON objects (`{"name": ..., "arguments": ...}`)
/// that begin the reply.
#[derive(Debug, Default)]
pub(crate) struct HermesReply {
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
    /// Text, which a `<tool_call>` block may still follow.
    Text,
    /// `<tool_call>` blocks.
    Tagged,
    /// Bare JSON calls, one after another.
    Bare,
}

/// How a reply that begins with a bare JSON call starts.
const BARE_OPEN: &str = "\"name\"";

/// What the start of a reply says it is.
enum Opening {
    /// A bare JSON call (`{"name"`), in a Markdown fence or not.
    Call,
    /// Too little text to tell.
    Undecided,
    /// Anything else.
    Text,
}

fn opening(text: &str) -> Opening {
    let start = text.trim_start();
    if start.is_empty() || (start.len() < 3 && "```".starts_with(start)) {
        return Opening::Undecided;
    }
    let rest = match start.strip_prefix("```") {
        Some(after) if after.len() < 4 && "json".starts_with(after) => return Opening::Undecided,
        Some(after) => after.strip_prefix("json").unwrap_or(after).trim_start(),
        None => start,
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

impl HermesReply {
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
        if self.mode == Mode::Text {
            let (at, mode) = match find_call(&self.held) {
                Found::Call(at, mode) => (at, Some(mode)),
                // Hold back what may still open a call, and the whitespace before it.
                Found::Maybe(at) => (at, None),
            };
            let released = self.held.get(..at).unwrap_or_default().trim_end().len();
            let (shown, rest) = self.held.split_at(if mode.is_some() { at } else { released });
            text = shown.trim_end_matches(|c: char| mode.is_some() && c.is_whitespace()).to_owned();
            self.held = rest.to_owned();
            match mode {
                Some(mode) => self.mode = mode,
                None => return Ok((text, Vec::new())),
            }
        }
        let mut calls = Vec::new();
        if self.mode == Mode::Bare {
            // Successive JSON objects, each maybe in a Markdown fence; an incomplete last one (or
            // fence) waits for more text.
            let mut consumed = 0;
            loop {
                let rest = self.held.get(consumed..).unwrap_or_default();
                let trimmed = rest.trim_start();
                let skipped = rest.len() - trimmed.len();
                if let Some(after) = trimmed.strip_prefix("```") {
                    if after.len() < 4 && "json".starts_with(after) && !after.contains('\n') {
                        break;
                    }
                    let lang = if after.starts_with("json") { 4 } else { 0 };
                    consumed += skipped + 3 + lang;
                    continue;
                }
                if trimmed.is_empty() || (trimmed.len() < 3 && "```".starts_with(trimmed)) {
                    break;
                }
                if !trimmed.starts_with('{') && self.calls + calls.len() > 0 {
                    // Prose after the calls (a model outside its grammar): shown as text.
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
        }
        while self.mode == Mode::Tagged
            && let Some(end) = self.held.find(CALL_CLOSE)
        {
            let block = self.held.get(..end).unwrap_or_default();
            let json = block.trim_start().strip_prefix(CALL_OPEN).unwrap_or(block).trim();
            let call: WrittenCall = serde_json::from_str(json).map_err(|e| malformed(&e, json))?;
            calls.push(call.into_call(next_id()));
            self.held = self.held.get(end + CALL_CLOSE.len()..).unwrap_or_default().to_owned();
        }
        self.calls += calls.len();
        Ok((text, calls))
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

fn find_call(text: &str) -> Found {
    let tagged = text.find(CALL_OPEN);
    let mut maybe = text.len();
    for (at, _) in text.match_indices("```") {
        if tagged.is_some_and(|t| t < at) {
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
    if let Some(at) = tagged {
        return Found::Call(at, Mode::Tagged);
    }
    // A partial marker at the very end: `<tool_ca`, or one or two backticks.
    let marker = (1..CALL_OPEN.len())
        .rev()
        .find(|n| text.ends_with(CALL_OPEN.get(..*n).unwrap_or_default()))
        .or_else(|| [2, 1].into_iter().find(|n| text.ends_with("```".get(..*n).unwrap_or_default())))
        .unwrap_or(0);
    Found::Maybe(maybe.min(text.len() - marker))
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
    }

    #[test]
    fn native_replies_release_text_then_each_call_as_it_closes() {
        let mut n = 0;
        let mut id = || {
            n += 1;
            format!("call_{n}")
        };
        let mut reply = HermesReply::default();
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
        let mut plain = HermesReply::default();
        let (t, _) = plain.push("x < y and <tool", &mut || String::new()).unwrap();
        assert_eq!(t, "x < y and");
        let (t, _) = plain.push("s> are fine", &mut || String::new()).unwrap();
        assert_eq!(t, " <tools> are fine");
        assert_eq!(plain.finish().unwrap(), "");

        // Bare JSON calls at the start of a reply, as small models write them, one per line.
        let mut bare = HermesReply::default();
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
        let mut fenced = HermesReply::default();
        let mut calls = Vec::new();
        for piece in ["``", "`json\n{\n  \"name\": \"a\",\n  \"arguments\": {}\n}\n``", "`"] {
            let (t, c) = fenced.push(piece, &mut || "id".to_owned()).unwrap();
            assert!(t.is_empty(), "{t:?}");
            calls.extend(c);
        }
        assert_eq!(calls.len(), 1);
        assert_eq!(fenced.finish().unwrap(), "");
        // Prose, then a call in a fence: the prose is the text, the fenced call a call.
        let mut mixed = HermesReply::default();
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
        let mut code = HermesReply::default();
        let (t, _) = code.push("Run:\n```sh\ncatena ingest docs\n```\n", &mut || String::new()).unwrap();
        assert_eq!(t + &code.finish().unwrap(), "Run:\n```sh\ncatena ingest docs\n```");
        // A reply that opens with a brace but is not a call is text.
        let mut json_text = HermesReply::default();
        let (t, c) = json_text.push("{\"a\": 1} is JSON.", &mut || String::new()).unwrap();
        assert!(c.is_empty());
        assert_eq!(t + &json_text.finish().unwrap(), "{\"a\": 1} is JSON.");

        // A call left open is an error; a broken block names itself.
        let mut cut = HermesReply::default();
        cut.push("<tool_call>\n{\"name\": \"a\", \"argu", &mut || String::new()).unwrap();
        assert!(cut.finish().unwrap_err().to_string().contains("ended inside a tool call"));
        let mut broken = HermesReply::default();
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
        let plan = plan(&request, ToolFormat::Hermes).unwrap().unwrap();
        let call =
            "{\n  \"name\": \"calculator\",\n  \"arguments\": {\n    \"expression\": \"17 * 23\"\n  }\n}";
        for text in [
            format!("<tool_call>\n{call}\n</tool_call>"),
            format!("Let me compute it.\n<tool_call>\n{call}\n</tool_call>"),
            call.to_owned(),
            r#"{"name": "calculator", "arguments": {"expression": "2+2"}}"#.to_owned(),
            format!("```json\n{call}\n```"),
            format!("To compute it, I call the tool:\n\n```json\n{call}\n```"),
        ] {
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
