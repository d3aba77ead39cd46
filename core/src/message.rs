//! Chat messages, requests, responses and streamed deltas: what flows into and out of a [`ChatModel`](crate::ChatModel).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Who said a [`Message`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions that frame the conversation.
    System,
    /// The human (or the program acting for one).
    User,
    /// The model.
    Assistant,
    /// The result of a tool call, answering an assistant's [`ToolCall`].
    Tool,
}

impl Role {
    /// The lowercase name chat templates use (`system`, `user`, `assistant`, `tool`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::User => "user",
            Self::Assistant => "assistant",
            Self::Tool => "tool",
        }
    }
}

/// A model's request to run a tool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// Identifies the call; the tool's answer carries it back in [`Message::tool_call_id`].
    pub id: String,
    /// The tool's name.
    pub name: String,
    /// The arguments, a JSON value matching the tool's schema.
    pub arguments: Value,
}

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Who said it.
    pub role: Role,
    /// The text (may be empty for an assistant turn that only calls tools).
    pub content: String,
    /// Tool calls an assistant turn makes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// For a [`Role::Tool`] message: the id of the call it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl Message {
    fn with_role(role: Role, content: impl Into<String>) -> Self {
        Self { role, content: content.into(), tool_calls: Vec::new(), tool_call_id: None }
    }

    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::with_role(Role::System, content)
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::with_role(Role::User, content)
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::with_role(Role::Assistant, content)
    }

    /// A tool result answering the call with id `tool_call_id`.
    pub fn tool(tool_call_id: impl Into<String>, content: impl Into<String>) -> Self {
        Self { tool_call_id: Some(tool_call_id.into()), ..Self::with_role(Role::Tool, content) }
    }

    /// Adds tool calls to an (assistant) message.
    #[must_use]
    pub fn with_tool_calls(mut self, calls: Vec<ToolCall>) -> Self {
        self.tool_calls = calls;
        self
    }
}

/// A tool as a model sees it: name, description, JSON Schema of the arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    /// The name the model calls it by.
    pub name: String,
    /// What it does and when to use it; models read this.
    pub description: String,
    /// JSON Schema of the arguments object.
    pub parameters: Value,
}

/// Whether and which tool the model must call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ToolChoice {
    /// The model decides (the default).
    #[default]
    Auto,
    /// The model must not call tools.
    None,
    /// The model must call some tool.
    Required,
    /// The model must call this tool.
    Tool(String),
}

/// The shape the model's reply must take.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    /// Free text (the default when no format is set).
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON matching this schema.
    JsonSchema {
        /// A name for the schema (some APIs require one).
        name: String,
        /// The JSON Schema.
        schema: Value,
    },
    /// A raw GBNF grammar (local llama.cpp models only).
    Grammar {
        /// The grammar text; its root rule is `root`.
        gbnf: String,
    },
}

/// How the next token is chosen. `None` fields use the backend's default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Sampling {
    /// Softmax temperature; 0 means greedy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Nucleus sampling mass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// Keep only the k most likely tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    /// Drop tokens less likely than `min_p` times the most likely one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_p: Option<f32>,
    /// Penalty for repeating recent tokens (1.0 = none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_penalty: Option<f32>,
    /// Most tokens to generate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Generation stops before any of these strings; they never appear in the output.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
    /// Seed for reproducible sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u32>,
}

/// Everything a [`ChatModel`](crate::ChatModel) needs for one reply.
///
/// ```
/// use catena_core::{ChatRequest, Message};
///
/// let req = ChatRequest::new(vec![Message::user("Hi!")]).with_temperature(0.0).with_max_tokens(32);
/// assert_eq!(req.sampling.max_tokens, Some(32));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ChatRequest {
    /// The conversation so far.
    pub messages: Vec<Message>,
    /// Tools the model may call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ToolSpec>,
    /// Whether it must call one.
    #[serde(default)]
    pub tool_choice: ToolChoice,
    /// Whether one reply may make several tool calls (`None`: yes, as the OpenAI API's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// The required shape of the reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
    /// Sampling parameters.
    #[serde(default)]
    pub sampling: Sampling,
}

impl ChatRequest {
    /// A request with these messages and default everything else.
    #[must_use]
    pub fn new(messages: Vec<Message>) -> Self {
        Self { messages, ..Self::default() }
    }

    /// Sets the temperature.
    #[must_use]
    pub fn with_temperature(mut self, temperature: f32) -> Self {
        self.sampling.temperature = Some(temperature);
        self
    }

    /// Sets the token limit.
    #[must_use]
    pub fn with_max_tokens(mut self, max_tokens: u32) -> Self {
        self.sampling.max_tokens = Some(max_tokens);
        self
    }

    /// Adds a stop string.
    #[must_use]
    pub fn with_stop(mut self, stop: impl Into<String>) -> Self {
        self.sampling.stop.push(stop.into());
        self
    }

    /// Offers tools to the model.
    #[must_use]
    pub fn with_tools(mut self, tools: Vec<ToolSpec>) -> Self {
        self.tools = tools;
        self
    }

    /// Requires a reply of this shape.
    #[must_use]
    pub fn with_response_format(mut self, format: ResponseFormat) -> Self {
        self.response_format = Some(format);
        self
    }
}

impl From<Vec<Message>> for ChatRequest {
    fn from(messages: Vec<Message>) -> Self {
        Self::new(messages)
    }
}

/// Token counts of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Usage {
    /// Tokens in the prompt.
    pub prompt_tokens: u32,
    /// Of those, tokens whose evaluation was reused from an earlier call (prefix cache).
    #[serde(default)]
    pub cached_prompt_tokens: u32,
    /// Tokens generated.
    pub completion_tokens: u32,
    /// Tokens guessed by speculative decoding and checked by the model (0 without speculation).
    #[serde(default)]
    pub draft_tokens: u32,
    /// Of those, guesses the model confirmed: each saved one forward pass. Their share of
    /// `draft_tokens` is the acceptance rate.
    #[serde(default)]
    pub accepted_draft_tokens: u32,
}

/// Sums the counts of several calls (saturating), as a run's total.
impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, more: Self) {
        self.prompt_tokens = self.prompt_tokens.saturating_add(more.prompt_tokens);
        self.cached_prompt_tokens = self.cached_prompt_tokens.saturating_add(more.cached_prompt_tokens);
        self.completion_tokens = self.completion_tokens.saturating_add(more.completion_tokens);
        self.draft_tokens = self.draft_tokens.saturating_add(more.draft_tokens);
        self.accepted_draft_tokens = self.accepted_draft_tokens.saturating_add(more.accepted_draft_tokens);
    }
}

impl Usage {
    /// Prompt plus completion tokens.
    #[must_use]
    pub fn total_tokens(&self) -> u32 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }
}

/// Why a reply ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model ended its turn or hit a stop string.
    #[default]
    Stop,
    /// `max_tokens` or the context window was reached.
    Length,
    /// The model called tools.
    ToolCalls,
    /// The run was cancelled.
    Cancelled,
}

/// A complete reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    /// The assistant message.
    pub message: Message,
    /// Token counts.
    #[serde(default)]
    pub usage: Usage,
    /// Why it ended.
    #[serde(default)]
    pub finish_reason: FinishReason,
}

impl ChatResponse {
    /// The reply's text.
    #[must_use]
    pub fn text(&self) -> &str {
        &self.message.content
    }
}

/// One piece of a streamed reply. Concatenating the `content` of every delta gives the reply's text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ChatDelta {
    /// New text.
    #[serde(default)]
    pub content: String,
    /// Tool calls completed in this delta.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// Set on the last delta.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<FinishReason>,
    /// Set on the last delta.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

/// The whole reply as one delta: what a model that cannot stream yields from `chat_stream`.
impl From<ChatResponse> for ChatDelta {
    fn from(response: ChatResponse) -> Self {
        Self {
            content: response.message.content,
            tool_calls: response.message.tool_calls,
            finish_reason: Some(response.finish_reason),
            usage: Some(response.usage),
        }
    }
}

/// Folds streamed deltas back into a [`ChatResponse`].
#[derive(Debug, Default)]
pub struct DeltaAccumulator {
    content: String,
    tool_calls: Vec<ToolCall>,
    finish_reason: Option<FinishReason>,
    usage: Usage,
}

impl DeltaAccumulator {
    /// Adds one delta.
    pub fn push(&mut self, delta: ChatDelta) {
        self.content.push_str(&delta.content);
        self.tool_calls.extend(delta.tool_calls);
        if delta.finish_reason.is_some() {
            self.finish_reason = delta.finish_reason;
        }
        if let Some(usage) = delta.usage {
            self.usage = usage;
        }
    }

    /// The response the deltas add up to.
    #[must_use]
    pub fn finish(self) -> ChatResponse {
        let finish_reason = self.finish_reason.unwrap_or(if self.tool_calls.is_empty() {
            FinishReason::Stop
        } else {
            FinishReason::ToolCalls
        });
        ChatResponse {
            message: Message::assistant(self.content).with_tool_calls(self.tool_calls),
            usage: self.usage,
            finish_reason,
        }
    }
}
