//! The OpenAI API's chat-completions and embeddings wire format, as serde types, with the
//! conversions to and from catena's own types. One module for both directions: the
//! OpenAI-compatible client ([`openai`](crate::openai), feature `openai`) writes requests and
//! reads replies with it, and `catena serve` reads requests and writes replies with it, so a field
//! one side knows is a field the other side knows.
//!
//! Requests are strict (`deny_unknown_fields`: a misspelt option is an error, not silently
//! ignored); replies are lenient (a server's extra fields are ignored), as a client must be.
//!
//! ```
//! use catena_core::{ChatRequest, Message};
//! use catena_models::wire::ChatCompletionRequest;
//!
//! let request = ChatRequest::new(vec![Message::user("Hello!")]).with_max_tokens(16);
//! let body = ChatCompletionRequest::from_chat_request("gpt-4o-mini", &request, false)?;
//! let json = serde_json::to_value(&body).unwrap();
//! assert_eq!(json["messages"][0], serde_json::json!({"role": "user", "content": "Hello!"}));
//!
//! // And back, as a server reads it.
//! let read: ChatRequest = body.try_into().map_err(|e: catena_models::wire::WireError| e.into_error())?;
//! assert_eq!(read.messages, request.messages);
//! # Ok::<(), catena_core::Error>(())
//! ```

use catena_core::{
    ChatRequest, ChatResponse, Error, FinishReason, Message, ResponseFormat, Role, ToolCall as CoreToolCall,
    ToolChoice, ToolSpec, Usage,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A request the wire format cannot carry, or a wire request catena cannot run: the message and,
/// when one field is to blame, its path (`messages[2].tool_call_id`), as OpenAI's `param`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError {
    /// What is wrong, and what to send instead.
    pub message: String,
    /// The field to blame, when there is one.
    pub param: Option<String>,
}

impl WireError {
    fn new(message: impl Into<String>) -> Self {
        Self { message: message.into(), param: None }
    }

    fn at(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// As catena's error: invalid input.
    #[must_use]
    pub fn into_error(self) -> Error {
        match self.param {
            Some(param) => Error::invalid_input(format!("{} ({param})", self.message)),
            None => Error::invalid_input(self.message),
        }
    }
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for WireError {}

// ---- requests --------------------------------------------------------------------------------

/// `POST /v1/chat/completions`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct ChatCompletionRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Stop>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<Tool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<WireToolChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<WireResponseFormat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f32>,
}

/// `stream_options`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamOptions {
    /// Send a last chunk with the whole reply's usage.
    #[serde(default)]
    pub include_usage: bool,
}

/// `stop`: one string or several.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
#[allow(missing_docs)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

/// One message of a conversation. `role` is kept as written so that an unknown one is reported
/// with the field to blame.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct ChatMessage {
    pub role: String,
    /// A string or text parts; `null` for an assistant turn that only calls tools.
    #[serde(default)]
    pub content: Option<Content>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
}

/// Message content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Typed parts; catena reads the text ones.
    Parts(Vec<ContentPart>),
}

/// One part of a message's content (`{"type": "text", "text": ...}`; other types are refused).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContentPart {
    /// `text`, `image_url`, `input_audio`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// The text of a text part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// A tool call of an assistant message or reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolCall {
    /// The call's id, which its result names.
    pub id: String,
    /// Always `function`.
    #[serde(rename = "type", default = "function")]
    pub kind: String,
    /// What is called, with what.
    pub function: FunctionCall,
}

/// The function of a [`ToolCall`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionCall {
    /// The tool's name.
    pub name: String,
    /// The arguments, as a JSON text.
    pub arguments: String,
}

/// A tool offered to the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tool {
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The function.
    pub function: FunctionDefinition,
}

/// The function of a [`Tool`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct FunctionDefinition {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// A JSON Schema object; none means no arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    /// Accepted; catena always holds arguments to their schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// `tool_choice`: `"auto" | "none" | "required"`, or one named function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum WireToolChoice {
    /// `auto`, `none` or `required`.
    Mode(String),
    /// `{"type": "function", "function": {"name": ...}}`.
    Function(NamedToolChoice),
}

/// One function named in `tool_choice`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct NamedToolChoice {
    #[serde(rename = "type")]
    pub kind: String,
    pub function: FunctionName,
}

/// A function's name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct FunctionName {
    pub name: String,
}

/// `response_format`: `text`, `json_object`, or `json_schema` with its schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireResponseFormat {
    /// `text`, `json_object` or `json_schema`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The schema, for `json_schema`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_schema: Option<JsonSchemaFormat>,
}

/// The `json_schema` of a [`WireResponseFormat`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct JsonSchemaFormat {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

fn function() -> String {
    "function".to_owned()
}

impl From<&CoreToolCall> for ToolCall {
    fn from(call: &CoreToolCall) -> Self {
        let arguments = call.arguments.to_string();
        Self {
            id: call.id.clone(),
            kind: function(),
            function: FunctionCall { name: call.name.clone(), arguments },
        }
    }
}

impl From<&Message> for ChatMessage {
    fn from(m: &Message) -> Self {
        let text = || Some(Content::Text(m.content.clone()));
        match m.role {
            Role::System => Self { role: "system".into(), content: text(), ..Self::default() },
            Role::User => Self { role: "user".into(), content: text(), ..Self::default() },
            Role::Assistant => Self {
                role: "assistant".into(),
                // An assistant turn that only calls tools has no content (`null`).
                content: if m.content.is_empty() && !m.tool_calls.is_empty() { None } else { text() },
                tool_calls: m.tool_calls.iter().map(ToolCall::from).collect(),
                ..Self::default()
            },
            Role::Tool => Self {
                role: "tool".into(),
                content: text(),
                tool_call_id: Some(m.tool_call_id.clone().unwrap_or_default()),
                ..Self::default()
            },
        }
    }
}

impl ChatCompletionRequest {
    /// The body that asks `model` for `request` (with `stream`, usage in the last chunk).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a GBNF grammar (a llama.cpp feature the API does not carry).
    pub fn from_chat_request(model: &str, request: &ChatRequest, stream: bool) -> catena_core::Result<Self> {
        let s = &request.sampling;
        let response_format = match &request.response_format {
            None | Some(ResponseFormat::Text) => None,
            Some(ResponseFormat::JsonObject) => {
                Some(WireResponseFormat { kind: "json_object".into(), json_schema: None })
            }
            Some(ResponseFormat::JsonSchema { name, schema }) => Some(WireResponseFormat {
                kind: "json_schema".into(),
                json_schema: Some(JsonSchemaFormat {
                    name: Some(name.clone()),
                    description: None,
                    schema: Some(schema.clone()),
                    strict: None,
                }),
            }),
            Some(ResponseFormat::Grammar { .. }) => {
                return Err(Error::invalid_input(
                    "GBNF grammars are a llama.cpp feature; remote models take JSON Schema (ResponseFormat::JsonSchema)",
                ));
            }
        };
        let tools: Vec<Tool> = request
            .tools
            .iter()
            .map(|t| Tool {
                kind: function(),
                function: FunctionDefinition {
                    name: t.name.clone(),
                    description: t.description.clone(),
                    parameters: Some(t.parameters.clone()),
                    strict: None,
                },
            })
            .collect();
        let tool_choice = (!tools.is_empty()).then(|| match &request.tool_choice {
            ToolChoice::Auto => WireToolChoice::Mode("auto".into()),
            ToolChoice::None => WireToolChoice::Mode("none".into()),
            ToolChoice::Required => WireToolChoice::Mode("required".into()),
            ToolChoice::Tool(name) => WireToolChoice::Function(NamedToolChoice {
                kind: function(),
                function: FunctionName { name: name.clone() },
            }),
        });
        Ok(Self {
            model: model.to_owned(),
            messages: request.messages.iter().map(ChatMessage::from).collect(),
            stream,
            stream_options: stream.then_some(StreamOptions { include_usage: true }),
            temperature: s.temperature,
            top_p: s.top_p,
            max_tokens: s.max_tokens,
            stop: (!s.stop.is_empty()).then(|| Stop::Many(s.stop.clone())),
            seed: s.seed.map(i64::from),
            parallel_tool_calls: if tools.is_empty() { None } else { request.parallel_tool_calls },
            tools,
            tool_choice,
            response_format,
            ..Self::default()
        })
    }

    /// `max_completion_tokens`, or the older `max_tokens`.
    #[must_use]
    pub fn max_tokens(&self) -> Option<u32> {
        self.max_completion_tokens.or(self.max_tokens)
    }

    /// Whether the last streamed chunk should carry the usage.
    #[must_use]
    pub fn include_usage(&self) -> bool {
        self.stream_options.as_ref().is_some_and(|o| o.include_usage)
    }
}

/// Message content as text: a string, or the concatenated text parts.
fn content_text(content: Option<Content>, param: &str) -> Result<String, WireError> {
    match content {
        None => Ok(String::new()),
        Some(Content::Text(s)) => Ok(s),
        Some(Content::Parts(parts)) => {
            let mut text = String::new();
            for part in parts {
                match (part.kind.as_str(), part.text) {
                    ("text", Some(t)) => text.push_str(&t),
                    (kind, _) => {
                        return Err(WireError::new(format!(
                            "content part of type {kind} is not supported; send text"
                        ))
                        .at(param));
                    }
                }
            }
            Ok(text)
        }
    }
}

/// What a server runs for a wire request. `model`, `stream` and `stream_options` are the
/// server's to read before converting; `max_tokens` is left for the server to cap.
impl TryFrom<ChatCompletionRequest> for ChatRequest {
    type Error = WireError;

    fn try_from(body: ChatCompletionRequest) -> Result<Self, WireError> {
        if body.messages.is_empty() {
            return Err(WireError::new("messages must contain at least one message").at("messages"));
        }
        if body.n.is_some_and(|n| n != 1) {
            return Err(WireError::new("only n = 1 is supported").at("n"));
        }
        let max_tokens = body.max_tokens();
        let mut messages = Vec::with_capacity(body.messages.len());
        for (i, m) in body.messages.into_iter().enumerate() {
            let text = content_text(m.content, &format!("messages[{i}].content"))?;
            let message = match m.role.as_str() {
                "system" | "developer" => Message::system(text),
                "user" => Message::user(text),
                "assistant" => {
                    let mut calls = Vec::with_capacity(m.tool_calls.len());
                    for call in m.tool_calls {
                        let param = format!("messages[{i}].tool_calls");
                        if call.kind != "function" {
                            return Err(WireError::new("tool calls must have type \"function\"").at(param));
                        }
                        let arguments = serde_json::from_str(&call.function.arguments).map_err(|e| {
                            WireError::new(format!("tool call arguments are not JSON: {e}")).at(param)
                        })?;
                        calls.push(CoreToolCall { id: call.id, name: call.function.name, arguments });
                    }
                    Message::assistant(text).with_tool_calls(calls)
                }
                "tool" => {
                    let id = m.tool_call_id.ok_or_else(|| {
                        WireError::new("tool messages need tool_call_id")
                            .at(format!("messages[{i}].tool_call_id"))
                    })?;
                    Message::tool(id, text)
                }
                other => {
                    return Err(WireError::new(format!(
                        "unknown role {other:?}; use system, developer, user, assistant or tool"
                    ))
                    .at(format!("messages[{i}].role")));
                }
            };
            // `name` and `refusal` are accepted so OpenAI clients can send them; catena's
            // messages have no such fields.
            messages.push(message);
        }
        // OpenAI's ranges: a value outside them is a mistake to report, not one to clamp.
        if let Some(t) = body.temperature.filter(|t| !(0.0..=2.0).contains(t)) {
            return Err(WireError::new(format!("temperature {t} is outside 0..=2")).at("temperature"));
        }
        if let Some(p) = body.top_p.filter(|p| !(0.0..=1.0).contains(p)) {
            return Err(WireError::new(format!("top_p {p} is outside 0..=1")).at("top_p"));
        }
        let mut request = ChatRequest::new(messages);
        request.sampling.max_tokens = max_tokens;
        request.sampling.temperature = body.temperature;
        request.sampling.top_p = body.top_p;
        // catena's seeds are 32-bit: larger ones keep their low bits.
        request.sampling.seed = body.seed.map(|s| (s & i64::from(u32::MAX)) as u32);
        request.sampling.stop = match body.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s],
            Some(Stop::Many(v)) => v,
        };
        for (i, tool) in body.tools.into_iter().enumerate() {
            request.tools.push(tool_spec(tool).map_err(|e| e.at(format!("tools[{i}]")))?);
        }
        request.tool_choice = match body.tool_choice {
            None => ToolChoice::Auto,
            Some(WireToolChoice::Mode(mode)) => match mode.as_str() {
                "auto" => ToolChoice::Auto,
                "none" => ToolChoice::None,
                "required" => ToolChoice::Required,
                _ => {
                    return Err(WireError::new("tool_choice must be auto, none, required or a function")
                        .at("tool_choice"));
                }
            },
            Some(WireToolChoice::Function(named))
                if request.tools.iter().any(|t| t.name == named.function.name) =>
            {
                ToolChoice::Tool(named.function.name)
            }
            Some(WireToolChoice::Function(_)) => {
                return Err(
                    WireError::new("tool_choice names a function that is not in tools").at("tool_choice")
                );
            }
        };
        request.response_format = match body.response_format {
            None => None,
            Some(format) => match (format.kind.as_str(), format.json_schema) {
                ("text", _) => None,
                ("json_object", _) => Some(ResponseFormat::JsonObject),
                ("json_schema", Some(JsonSchemaFormat { name, schema: Some(schema), .. }))
                    if schema.is_object() =>
                {
                    Some(ResponseFormat::JsonSchema {
                        name: name.unwrap_or_else(|| "response".into()),
                        schema,
                    })
                }
                ("json_schema", _) => {
                    return Err(WireError::new("json_schema needs a schema object").at("response_format"));
                }
                _ => {
                    return Err(WireError::new(
                        "response_format.type must be text, json_object or json_schema",
                    )
                    .at("response_format"));
                }
            },
        };
        request.parallel_tool_calls = body.parallel_tool_calls;
        // Accepted for compatibility and not applied: the local model has no OpenAI-style
        // frequency/presence penalties (its repeat penalty works differently), and `user` is an
        // end-user id for abuse monitoring.
        let _ = (body.user, body.frequency_penalty, body.presence_penalty);
        Ok(request)
    }
}

fn tool_spec(tool: Tool) -> Result<ToolSpec, WireError> {
    if tool.kind != "function" {
        return Err(WireError::new("tools must have type \"function\""));
    }
    let name = tool.function.name;
    let name_ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !name_ok {
        return Err(WireError::new("tool names are 1-64 letters, digits, '_' or '-'"));
    }
    let parameters =
        tool.function.parameters.unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}}));
    if !parameters.is_object() || parameters.get("type").is_some_and(|t| t != "object") {
        return Err(WireError::new("a tool's parameters must be a JSON Schema object"));
    }
    // Tool arguments are always schema-checked (the local model decodes them under a grammar),
    // so `strict` changes nothing.
    Ok(ToolSpec { name, description: tool.function.description, parameters })
}

// ---- replies ---------------------------------------------------------------------------------

/// Why a reply ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum WireFinishReason {
    Stop,
    Length,
    ToolCalls,
    ContentFilter,
    /// The pre-tools name of `tool_calls`.
    FunctionCall,
    /// A reason this version does not know.
    #[serde(other)]
    Other,
}

impl From<FinishReason> for WireFinishReason {
    fn from(reason: FinishReason) -> Self {
        match reason {
            // The API has no "cancelled": a reply cut short by its caller simply stopped.
            FinishReason::Stop | FinishReason::Cancelled => Self::Stop,
            FinishReason::Length => Self::Length,
            FinishReason::ToolCalls => Self::ToolCalls,
        }
    }
}

impl From<WireFinishReason> for FinishReason {
    fn from(reason: WireFinishReason) -> Self {
        match reason {
            WireFinishReason::Length => Self::Length,
            WireFinishReason::ToolCalls | WireFinishReason::FunctionCall => Self::ToolCalls,
            WireFinishReason::Stop | WireFinishReason::ContentFilter | WireFinishReason::Other => Self::Stop,
        }
    }
}

/// Token counts of a reply (`usage`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
#[serde(default)]
pub struct WireUsage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub total_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion_tokens_details: Option<CompletionTokensDetails>,
}

/// `usage.completion_tokens_details`: how speculative decoding's guesses fared, under the names
/// OpenAI uses for its predicted outputs (a guess of the reply checked by the model).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CompletionTokensDetails {
    /// Guessed tokens the model confirmed.
    pub accepted_prediction_tokens: u32,
    /// Guessed tokens the model did not confirm.
    pub rejected_prediction_tokens: u32,
}

/// `usage.prompt_tokens_details`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PromptTokensDetails {
    /// Prompt tokens served from the prefix cache.
    pub cached_tokens: u32,
}

impl From<Usage> for WireUsage {
    fn from(u: Usage) -> Self {
        Self {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.prompt_tokens + u.completion_tokens,
            prompt_tokens_details: Some(PromptTokensDetails { cached_tokens: u.cached_prompt_tokens }),
            // Only a reply that speculated has these: other servers' replies stay as they were.
            completion_tokens_details: (u.draft_tokens > 0).then(|| CompletionTokensDetails {
                accepted_prediction_tokens: u.accepted_draft_tokens,
                rejected_prediction_tokens: u.draft_tokens.saturating_sub(u.accepted_draft_tokens),
            }),
        }
    }
}

impl From<WireUsage> for Usage {
    fn from(u: WireUsage) -> Self {
        Self {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            cached_prompt_tokens: u.prompt_tokens_details.map_or(0, |d| d.cached_tokens),
            draft_tokens: u
                .completion_tokens_details
                .map_or(0, |d| d.accepted_prediction_tokens.saturating_add(d.rejected_prediction_tokens)),
            accepted_draft_tokens: u.completion_tokens_details.map_or(0, |d| d.accepted_prediction_tokens),
        }
    }
}

/// A whole reply.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
#[serde(default)]
pub struct ChatCompletion {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<Choice>,
    pub usage: Option<WireUsage>,
}

/// One choice of a [`ChatCompletion`] (catena answers with one).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
#[serde(default)]
pub struct Choice {
    pub index: u32,
    pub message: ReplyMessage,
    /// Not produced by catena; opaque when a server sends it.
    pub logprobs: Option<Value>,
    pub finish_reason: Option<WireFinishReason>,
}

/// The assistant's message in a reply.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
#[serde(default)]
pub struct ReplyMessage {
    pub role: String,
    pub content: Option<String>,
    pub refusal: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
}

/// A tool call's arguments: the JSON the model wrote; a text that is not JSON is kept as a
/// string, so an agent can show the model its mistake.
fn arguments(text: &str) -> Value {
    let text = if text.trim().is_empty() { "{}" } else { text };
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

impl ChatCompletion {
    /// The reply `response` as `model` wrote it, under the completion `id`.
    #[must_use]
    pub fn new(id: String, created: u64, model: String, response: &ChatResponse) -> Self {
        Self {
            id,
            object: "chat.completion".into(),
            created,
            model,
            choices: vec![Choice {
                index: 0,
                message: ReplyMessage {
                    role: "assistant".into(),
                    content: Some(response.message.content.clone()),
                    refusal: None,
                    tool_calls: response.message.tool_calls.iter().map(ToolCall::from).collect(),
                },
                logprobs: None,
                finish_reason: Some(response.finish_reason.into()),
            }],
            usage: Some(response.usage.into()),
        }
    }
}

impl TryFrom<ChatCompletion> for ChatResponse {
    type Error = Error;

    fn try_from(reply: ChatCompletion) -> catena_core::Result<Self> {
        let Some(choice) = reply.choices.into_iter().next() else {
            return Err(Error::model_permanent("the reply has no choices"));
        };
        let calls: Vec<CoreToolCall> = choice
            .message
            .tool_calls
            .into_iter()
            .map(|c| CoreToolCall {
                id: c.id,
                name: c.function.name,
                arguments: arguments(&c.function.arguments),
            })
            .collect();
        Ok(Self {
            message: Message::assistant(choice.message.content.unwrap_or_default()).with_tool_calls(calls),
            usage: reply.usage.map(Usage::from).unwrap_or_default(),
            finish_reason: choice.finish_reason.map_or(FinishReason::Stop, FinishReason::from),
        })
    }
}

// ---- streamed replies ------------------------------------------------------------------------

/// One server-sent event of a streamed reply.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
#[serde(default)]
pub struct ChatCompletionChunk {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<ChunkChoice>,
    /// Only on the usage chunk; `null` on the others.
    pub usage: Option<WireUsage>,
}

/// One choice of a chunk.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
#[serde(default)]
pub struct ChunkChoice {
    pub index: u32,
    pub delta: Delta,
    pub logprobs: Option<Value>,
    pub finish_reason: Option<WireFinishReason>,
}

/// What a chunk adds to the reply.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
#[serde(default)]
pub struct Delta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCallChunk>,
}

/// A piece of a streamed tool call: the first piece of each call carries its id and name, the
/// rest more of its arguments; `index` says which call a piece belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
#[serde(default)]
pub struct ToolCallChunk {
    pub index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionCallChunk>,
}

/// The function part of a [`ToolCallChunk`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
#[serde(default)]
pub struct FunctionCallChunk {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
}

impl ChatCompletionChunk {
    /// A chunk of the completion `id` with one choice.
    #[must_use]
    pub fn new(id: &str, created: u64, model: &str, delta: Delta, finish: Option<FinishReason>) -> Self {
        let choice = ChunkChoice { index: 0, delta, logprobs: None, finish_reason: finish.map(Into::into) };
        Self { choices: vec![choice], ..Self::of(id, created, model) }
    }

    /// The last chunk when usage was asked for: no choices, the whole reply's usage.
    #[must_use]
    pub fn usage(id: &str, created: u64, model: &str, usage: Usage) -> Self {
        Self { usage: Some(usage.into()), ..Self::of(id, created, model) }
    }

    fn of(id: &str, created: u64, model: &str) -> Self {
        Self {
            id: id.to_owned(),
            object: "chat.completion.chunk".into(),
            created,
            model: model.to_owned(),
            choices: Vec::new(),
            usage: None,
        }
    }
}

impl Delta {
    /// Text and whole tool calls, the calls numbered from `first_index` (a stream keeps counting).
    #[must_use]
    pub fn new(content: &str, calls: &[CoreToolCall], first_index: usize) -> Self {
        Self {
            role: None,
            content: (!content.is_empty()).then(|| content.to_owned()),
            tool_calls: calls
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let call = ToolCall::from(c);
                    ToolCallChunk {
                        index: u32::try_from(first_index + i).unwrap_or(u32::MAX),
                        id: Some(call.id),
                        kind: Some(call.kind),
                        function: Some(FunctionCallChunk {
                            name: Some(call.function.name),
                            arguments: Some(call.function.arguments),
                        }),
                    }
                })
                .collect(),
        }
    }

    /// Whether it adds nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.role.is_none() && self.content.is_none() && self.tool_calls.is_empty()
    }
}

/// Tool-call pieces of a stream, gathered by index until the stream ends.
#[derive(Debug, Default)]
pub struct ToolCallAssembler {
    calls: std::collections::BTreeMap<u32, (String, String, String)>,
}

impl ToolCallAssembler {
    /// Adds one piece.
    pub fn add(&mut self, piece: &ToolCallChunk) {
        let entry = self.calls.entry(piece.index).or_default();
        if let Some(id) = &piece.id {
            entry.0.push_str(id);
        }
        if let Some(f) = &piece.function {
            if let Some(name) = &f.name {
                entry.1.push_str(name);
            }
            if let Some(args) = &f.arguments {
                entry.2.push_str(args);
            }
        }
    }

    /// The whole calls, in index order.
    #[must_use]
    pub fn finish(self) -> Vec<CoreToolCall> {
        self.calls
            .into_values()
            .map(|(id, name, args)| CoreToolCall { id, name, arguments: arguments(&args) })
            .collect()
    }
}

// ---- errors ----------------------------------------------------------------------------------

/// An error reply: `{"error": {...}}`, also sent as an event when a stream fails midway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// The error.
    pub error: ErrorObject,
}

/// The error of an [`ErrorReply`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct ErrorObject {
    pub message: String,
    /// `invalid_request_error`, `server_error`, ...
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub param: Option<String>,
    #[serde(default)]
    pub code: Option<String>,
}

impl ErrorObject {
    /// As catena's error: `context_length_exceeded` is its own kind, server errors are transient,
    /// the rest permanent.
    #[must_use]
    pub fn into_error(self) -> Error {
        let message = format!("the server reported: {}", self.message);
        if self.code.as_deref() == Some("context_length_exceeded") {
            Error::context_length(message)
        } else if matches!(self.kind.as_deref(), Some("server_error" | "rate_limit_error")) {
            Error::model_transient(message)
        } else {
            Error::model_permanent(message)
        }
    }
}

/// An event of a streamed reply as a client reads it: a chunk, or the error that ended it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum StreamEvent {
    /// The server's error.
    Error(ErrorReply),
    /// More of the reply.
    Chunk(ChatCompletionChunk),
}

// ---- embeddings and models -------------------------------------------------------------------

/// `POST /v1/embeddings`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct EmbeddingsRequest {
    pub model: String,
    pub input: EmbeddingInput,
    /// `float` (the default) or `base64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding_format: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// What to embed: texts, or token ids (which catena refuses with a clear error).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
#[allow(missing_docs)]
pub enum EmbeddingInput {
    One(String),
    Many(Vec<String>),
    Tokens(Vec<u32>),
    TokenLists(Vec<Vec<u32>>),
}

impl EmbeddingInput {
    /// The texts.
    ///
    /// # Errors
    /// An empty list, or token ids.
    pub fn into_texts(self) -> Result<Vec<String>, WireError> {
        match self {
            Self::One(text) => Ok(vec![text]),
            Self::Many(texts) if texts.is_empty() => {
                Err(WireError::new("input must not be empty").at("input"))
            }
            Self::Many(texts) => Ok(texts),
            Self::Tokens(_) | Self::TokenLists(_) => Err(WireError::new(
                "input must be a string or an array of strings (token arrays are not supported)",
            )
            .at("input")),
        }
    }
}

/// The reply to an [`EmbeddingsRequest`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
#[serde(default)]
pub struct EmbeddingsReply {
    pub object: String,
    pub data: Vec<EmbeddingData>,
    pub model: String,
    pub usage: EmbeddingsUsage,
}

/// One vector of an [`EmbeddingsReply`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct EmbeddingData {
    #[serde(default)]
    pub object: String,
    #[serde(default)]
    pub index: usize,
    pub embedding: EmbeddingVector,
}

/// A vector, as floats or as base64 of little-endian `f32`s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
#[allow(missing_docs)]
pub enum EmbeddingVector {
    Float(Vec<f32>),
    Base64(String),
}

/// `usage` of an [`EmbeddingsReply`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
#[serde(default)]
pub struct EmbeddingsUsage {
    pub prompt_tokens: usize,
    pub total_tokens: usize,
}

impl EmbeddingsReply {
    /// The vectors in input order.
    ///
    /// # Errors
    /// A reply with another count than `expected`, or base64 vectors (catena asks for floats).
    pub fn into_vectors(self, expected: usize) -> catena_core::Result<Vec<Vec<f32>>> {
        if self.data.len() != expected {
            return Err(Error::model_permanent(format!(
                "asked for {expected} embeddings, got {}",
                self.data.len()
            )));
        }
        let mut data = self.data;
        data.sort_by_key(|d| d.index);
        data.into_iter()
            .map(|d| match d.embedding {
                EmbeddingVector::Float(v) => Ok(v),
                EmbeddingVector::Base64(_) => {
                    Err(Error::model_permanent("the server sent base64 vectors where floats were asked for"))
                }
            })
            .collect()
    }
}

/// `GET /v1/models`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct ModelList {
    pub object: String,
    pub data: Vec<ModelCard>,
}

/// One entry of a [`ModelList`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct ModelCard {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub owned_by: String,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use serde_json::json;

    fn full_request() -> ChatRequest {
        let mut request = ChatRequest::new(vec![
            Message::system("be brief"),
            Message::user("weather?"),
            Message::assistant("").with_tool_calls(vec![CoreToolCall {
                id: "c1".into(),
                name: "w".into(),
                arguments: json!({"city": "Oslo"}),
            }]),
            Message::tool("c1", "sunny"),
        ])
        .with_temperature(0.25)
        .with_max_tokens(50)
        .with_stop("END")
        .with_tools(vec![ToolSpec {
            name: "w".into(),
            description: "weather".into(),
            parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}}),
        }])
        .with_response_format(ResponseFormat::JsonSchema {
            name: "r".into(),
            schema: json!({"type": "object"}),
        });
        request.tool_choice = ToolChoice::Tool("w".into());
        request.sampling.top_p = Some(0.5);
        request.sampling.seed = Some(7);
        request
    }

    #[test]
    fn a_request_survives_the_round_trip_through_json() {
        let request = full_request();
        let body = ChatCompletionRequest::from_chat_request("m", &request, true).unwrap();
        let text = serde_json::to_string(&body).unwrap();
        let json: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["messages"][2]["tool_calls"][0]["function"]["arguments"], "{\"city\":\"Oslo\"}");
        assert_eq!(json["messages"][2]["content"], Value::Null);
        assert_eq!(json["messages"][3], json!({"role": "tool", "tool_call_id": "c1", "content": "sunny"}));
        assert_eq!(json["tool_choice"], json!({"type": "function", "function": {"name": "w"}}));
        assert_eq!(json["stream_options"], json!({"include_usage": true}));
        let read: ChatCompletionRequest = serde_json::from_str(&text).unwrap();
        assert!(read.include_usage() && read.stream);
        let back = ChatRequest::try_from(read).unwrap();
        assert_eq!(back, request);
    }

    #[test]
    fn grammars_and_bad_wire_requests_are_refused_with_the_field_to_blame() {
        let grammar = ChatRequest::new(vec![Message::user("x")])
            .with_response_format(ResponseFormat::Grammar { gbnf: "root ::= \"x\"".into() });
        assert_eq!(
            ChatCompletionRequest::from_chat_request("m", &grammar, false).unwrap_err().kind(),
            catena_core::ErrorKind::InvalidInput
        );
        let bad = |body: Value| {
            let body: ChatCompletionRequest = serde_json::from_value(body).unwrap();
            ChatRequest::try_from(body).unwrap_err()
        };
        let user = json!([{"role": "user", "content": "hi"}]);
        let e = bad(json!({"model": "m", "messages": [{"role": "wizard", "content": "x"}]}));
        assert_eq!(e.param.as_deref(), Some("messages[0].role"));
        let e = bad(json!({"model": "m", "messages": [{"role": "tool", "content": "x"}]}));
        assert_eq!(e.param.as_deref(), Some("messages[0].tool_call_id"));
        let e = bad(json!({"model": "m", "messages": user, "response_format": {"type": "xml"}}));
        assert!(e.message.contains("response_format.type"), "{e}");
        let e = bad(
            json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}),
        );
        assert!(e.message.contains("image_url"), "{e}");
        assert!(
            serde_json::from_value::<ChatCompletionRequest>(
                json!({"model": "m", "messages": user, "temprature": 1})
            )
            .unwrap_err()
            .to_string()
            .contains("unknown field `temprature`")
        );
    }

    #[test]
    fn a_reply_survives_the_round_trip_with_usage_and_finish_reason() {
        let response = ChatResponse {
            message: Message::assistant("").with_tool_calls(vec![CoreToolCall {
                id: "c9".into(),
                name: "time".into(),
                arguments: json!({}),
            }]),
            usage: Usage {
                prompt_tokens: 12,
                cached_prompt_tokens: 8,
                completion_tokens: 3,
                draft_tokens: 5,
                accepted_draft_tokens: 2,
            },
            finish_reason: FinishReason::ToolCalls,
        };
        let wire = ChatCompletion::new("id".into(), 1, "m".into(), &response);
        let json = serde_json::to_value(&wire).unwrap();
        assert_eq!(json["usage"]["prompt_tokens_details"]["cached_tokens"], 8);
        assert_eq!(json["usage"]["total_tokens"], 15);
        assert_eq!(json["usage"]["completion_tokens_details"]["accepted_prediction_tokens"], 2);
        assert_eq!(json["usage"]["completion_tokens_details"]["rejected_prediction_tokens"], 3);
        assert_eq!(json["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(json["choices"][0]["logprobs"], Value::Null);
        let back = ChatResponse::try_from(serde_json::from_value::<ChatCompletion>(json).unwrap()).unwrap();
        assert_eq!(back, response);
        let unknown: ChatCompletion = serde_json::from_value(
            json!({"choices": [{"message": {"content": "x"}, "finish_reason": "weird"}]}),
        )
        .unwrap();
        assert_eq!(ChatResponse::try_from(unknown).unwrap().finish_reason, FinishReason::Stop);
        assert!(ChatResponse::try_from(ChatCompletion::default()).is_err());
    }

    #[test]
    fn streamed_pieces_reassemble_into_calls_and_errors_are_recognised() {
        let mut parts = ToolCallAssembler::default();
        for piece in [
            json!({"index": 0, "id": "call_1", "function": {"name": "get_", "arguments": ""}}),
            json!({"index": 1, "id": "call_2", "function": {"name": "time", "arguments": "{}"}}),
            json!({"index": 0, "function": {"name": "weather", "arguments": "{\"ci"}}),
            json!({"index": 0, "function": {"arguments": "ty\": \"Paris\"}"}}),
        ] {
            parts.add(&serde_json::from_value(piece).unwrap());
        }
        let calls = parts.finish();
        assert_eq!(
            calls[0],
            CoreToolCall {
                id: "call_1".into(),
                name: "get_weather".into(),
                arguments: json!({"city": "Paris"})
            }
        );
        assert_eq!(calls[1].name, "time");
        let event: StreamEvent = serde_json::from_value(json!({"error": {"message": "too long", "type": "invalid_request_error", "param": null, "code": "context_length_exceeded"}})).unwrap();
        let StreamEvent::Error(reply) = event else { panic!("not an error: {event:?}") };
        assert_eq!(reply.error.into_error().kind(), catena_core::ErrorKind::ContextLengthExceeded);
        let usage = ChatCompletionChunk::usage(
            "id",
            1,
            "m",
            Usage { prompt_tokens: 2, cached_prompt_tokens: 1, completion_tokens: 3, ..Usage::default() },
        );
        let json = serde_json::to_value(&usage).unwrap();
        assert_eq!(json["usage"]["prompt_tokens_details"]["cached_tokens"], 1);
        assert!(matches!(serde_json::from_value::<StreamEvent>(json).unwrap(), StreamEvent::Chunk(_)));
    }

    #[test]
    fn embedding_inputs_and_replies() {
        let read = |v: Value| serde_json::from_value::<EmbeddingsRequest>(v).unwrap().input.into_texts();
        assert_eq!(read(json!({"model": "e", "input": "a"})).unwrap(), ["a"]);
        assert!(read(json!({"model": "e", "input": []})).unwrap_err().message.contains("must not be empty"));
        assert!(read(json!({"model": "e", "input": [[1, 2]]})).unwrap_err().message.contains("token arrays"));
        let reply: EmbeddingsReply = serde_json::from_value(json!({"data": [
            {"index": 1, "embedding": [0.5]}, {"index": 0, "embedding": [0.25]}]}))
        .unwrap();
        assert_eq!(reply.clone().into_vectors(2).unwrap(), vec![vec![0.25], vec![0.5]]);
        assert!(reply.into_vectors(3).is_err());
    }
}
