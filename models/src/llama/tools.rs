//! Tool calling for local models: a grammar built from the tools' schemas makes every reply either
//! a well-formed call of a known tool with valid arguments, or a plain response, so even a 135M
//! model never emits a malformed call.
//!
//! The reply format is one JSON object, `{"tool_call": {"name": ..., "arguments": {...}}}` or
//! `{"response": "..."}` (llama.cpp's "generic" tool format). The tools and the format are
//! described in the system message, and earlier calls and results in the history are written in the
//! same format, so the model sees a consistent conversation whatever its chat template supports.

use catena_core::{ChatRequest, Error, Message, Result, Role, ToolCall, ToolChoice, ToolSpec};
use serde_json::{Map, Value, json};

/// What a request with tools turns into for the local model.
pub(crate) struct ToolPlan {
    /// The conversation with the tool instructions and the history rewritten.
    pub messages: Vec<Message>,
    /// The JSON Schema every reply must match.
    pub schema: Value,
}

/// `None` when the request offers no tools or forbids calling them.
pub(crate) fn plan(request: &ChatRequest) -> Result<Option<ToolPlan>> {
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
    let schema = reply_schema(&callable, may_answer);
    Ok(Some(ToolPlan { messages: rewrite_history(&request.messages, &callable, may_answer), schema }))
}

/// `oneOf` the call of each tool (name pinned, arguments per its schema) and, when allowed, a
/// plain response. Each tool's `$defs` are hoisted to the root so `$ref`s still resolve.
fn reply_schema(tools: &[&ToolSpec], may_answer: bool) -> Value {
    let mut defs = Map::new();
    let mut variants: Vec<Value> = tools
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
            cap_strings(&mut params);
            json!({
                "type": "object",
                "properties": {"tool_call": {
                    "type": "object",
                    "properties": {"name": {"const": t.name}, "arguments": params},
                    "required": ["name", "arguments"]
                }},
                "required": ["tool_call"]
            })
        })
        .collect();
    if may_answer {
        variants.push(json!({"type": "object", "properties": {"response": {"type": "string"}}, "required": ["response"]}));
    }
    let mut defs_value = Value::Object(defs);
    cap_strings(&mut defs_value);
    let defs = match defs_value {
        Value::Object(d) => d,
        _ => Map::new(),
    };
    let mut schema = json!({"oneOf": variants});
    if !defs.is_empty()
        && let Some(obj) = schema.as_object_mut()
    {
        obj.insert("$defs".into(), Value::Object(defs));
    }
    schema
}

/// Longest string argument a local model may write when the schema sets no `maxLength`.
const MAX_ARGUMENT_CHARS: usize = 300;

/// Gives every open-ended string in an arguments schema a `maxLength`, so the grammar forces a
/// small model that starts rambling inside a string to close it (and the call) long before the
/// token limit, instead of leaving a call cut in half.
fn cap_strings(schema: &mut Value) {
    let capped = catena_core::ModelSchema::from_value("arguments", std::mem::take(schema))
        .bounded_strings(MAX_ARGUMENT_CHARS);
    *schema = capped.into_value();
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

/// Reads a reply produced under the plan's grammar: the answer text, or the tool call.
pub(crate) fn parse_reply(text: &str, call_id: &str) -> Result<(String, Vec<ToolCall>)> {
    let value: Value = serde_json::from_str(text.trim()).map_err(|e| {
        Error::parse("tool-call reply", format!("{e} in {:?}", text.chars().take(200).collect::<String>()))
    })?;
    if let Some(call) = value.get("tool_call") {
        let name = call.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
        let arguments = call.get("arguments").cloned().unwrap_or_else(|| json!({}));
        return Ok((String::new(), vec![ToolCall { id: call_id.to_owned(), name, arguments }]));
    }
    if let Some(response) = value.get("response").and_then(Value::as_str) {
        return Ok((response.to_owned(), Vec::new()));
    }
    Err(Error::parse("tool-call reply", format!("neither a tool_call nor a response: {text:?}")))
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
        let s = reply_schema(&[&a], true);
        assert_eq!(s["oneOf"].as_array().map(Vec::len), Some(2));
        assert_eq!(s["oneOf"][0]["properties"]["tool_call"]["properties"]["name"]["const"], "a");
        assert_eq!(s["$defs"]["P"]["type"], "integer");
        assert!(s["oneOf"][0]["properties"]["tool_call"]["properties"]["arguments"].get("$schema").is_none());
        assert_eq!(reply_schema(&[&a], false)["oneOf"].as_array().map(Vec::len), Some(1));
        let text = ToolSpec {
            name: "t".into(),
            description: "d".into(),
            parameters: json!({"type": "object", "properties": {"q": {"type": "string"}, "k": {"type": "string", "enum": ["x"]}, "l": {"type": "array", "items": {"type": "string", "maxLength": 5}}}}),
        };
        let args =
            &reply_schema(&[&text], true)["oneOf"][0]["properties"]["tool_call"]["properties"]["arguments"];
        assert_eq!(args["properties"]["q"]["maxLength"], 300);
        assert!(args["properties"]["k"].get("maxLength").is_none());
        assert_eq!(args["properties"]["l"]["items"]["maxLength"], 5);
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
        let planned = plan(&req).unwrap().unwrap();
        assert_eq!(planned.messages[0].role, Role::System);
        assert!(planned.messages[2].content.contains("\"tool_call\""));
        assert_eq!(planned.messages[3].role, Role::User);
        let mut forced = req.clone();
        forced.tool_choice = ToolChoice::Tool("zzz".into());
        assert!(plan(&forced).is_err());
        forced.tool_choice = ToolChoice::None;
        assert!(plan(&forced).unwrap().is_none());
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
