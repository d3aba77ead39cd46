//! [`ToolCallingAgent`]: the model's native tool calls.

use std::sync::Arc;

use catena_core::security::Guard;
use catena_core::{
    ChatModel, ChatRequest, Error, FinishReason, Message, Result, RunContext, ToolChoice, async_trait,
};

use crate::agent::{Agent, AgentState, AgentStep, Next, Plan};

/// An agent for models with native tool calling: OpenAI-compatible servers, rig providers, and
/// the local llama.cpp model, whose replies are decoded under a grammar built from the tools'
/// schemas (so every call names a real tool with arguments of the right shape).
///
/// The conversation it sends is the standard one: the system prompt, the history, the question,
/// then for each model turn the assistant message with its tool calls followed by one `tool`
/// message per call. Parallel calls in one reply run in parallel. A reply with no call and no text
/// is [`Next::Invalid`]; a reply cut at the token limit is too, so a half-written answer is never
/// returned as final.
#[derive(Debug)]
pub struct ToolCallingAgent {
    model: Arc<dyn ChatModel>,
    system: String,
    max_tokens: u32,
    temperature: f32,
    first_choice: ToolChoice,
    follow_through: bool,
}

impl ToolCallingAgent {
    /// An agent on `model`, temperature 0, 512 tokens per reply.
    #[must_use]
    pub fn new(model: Arc<dyn ChatModel>) -> Self {
        Self {
            model,
            system: "You are a helpful assistant. Use the tools when they help; answer plainly when you know the answer."
                .to_owned(),
            max_tokens: 512,
            temperature: 0.0,
            first_choice: ToolChoice::Auto,
            follow_through: false,
        }
    }

    /// Replaces the system prompt.
    #[must_use]
    pub fn with_system_prompt(mut self, system: impl Into<String>) -> Self {
        self.system = system.into();
        self
    }

    /// Most tokens per reply.
    #[must_use]
    pub fn with_max_tokens(mut self, max_tokens: u32) -> Self {
        self.max_tokens = max_tokens;
        self
    }

    /// The tool choice of a run's first reply (later replies use `Auto`). `Required` makes the
    /// agent act before it answers, e.g. always search the documents first; small models that
    /// would otherwise answer from thin air need it.
    #[must_use]
    pub fn with_first_tool_choice(mut self, choice: ToolChoice) -> Self {
        self.first_choice = choice;
        self
    }

    /// Makes the call a reply only describes. Small local models often answer a question that
    /// needs a tool with how to call it ("you can use the `search_docs` function with the query
    /// ...") instead of calling it. With this on, a reply without calls that names an offered
    /// tool the run has not called yet is asked again with that tool required, so its grammar
    /// writes the call from the first token; the described text is kept as the step's log. Costs
    /// one more model call, only when it happens. Off by default: capable models do not need it.
    #[must_use]
    pub fn follow_through_described_calls(mut self, on: bool) -> Self {
        self.follow_through = on;
        self
    }

    /// Sampling temperature (0 = greedy).
    #[must_use]
    pub fn with_temperature(mut self, temperature: f32) -> Self {
        self.temperature = temperature;
        self
    }

    fn messages(&self, state: &AgentState<'_>) -> Vec<Message> {
        let mut messages = Vec::with_capacity(state.history.len() + 2 + state.steps.len() * 2);
        // A system message in the history (a served conversation's) replaces the default one.
        // Either way the guard's instructions (what its data boundaries mean, its canary) close it.
        match state.history.split_first() {
            Some((system, rest)) if system.role == catena_core::Role::System => {
                messages.push(Message::system(state.guard.system_prompt(&system.content)));
                messages.extend(rest.iter().cloned());
            }
            _ => {
                messages.push(Message::system(state.guard.system_prompt(&self.system)));
                messages.extend(state.history.iter().cloned());
            }
        }
        messages.push(Message::user(state.input));
        messages.extend(transcript(state.steps, state.guard));
        messages
    }
}

/// The steps as chat messages: each turn's assistant message with its calls, then the results
/// (marked as data by `guard`).
fn transcript(steps: &[AgentStep], guard: &Guard) -> Vec<Message> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(first) = steps.get(i) {
        let turn: Vec<&AgentStep> =
            steps.get(i..).unwrap_or_default().iter().take_while(|s| s.turn == first.turn).collect();
        i += turn.len();
        let calls: Vec<_> = turn.iter().filter_map(|s| s.call.clone()).collect();
        if calls.is_empty() {
            // An unreadable reply: show it and what was wrong, as the user would.
            out.push(Message::assistant(first.log.clone()));
            out.push(Message::user(format!("Your reply could not be used: {}", first.observation)));
            continue;
        }
        out.push(Message::assistant(first.log.clone()).with_tool_calls(calls));
        for step in turn {
            if let Some(call) = &step.call {
                let shown = guard.mark(&format!("result of {}", call.name), &step.observation);
                out.push(Message::tool(call.id.clone(), shown));
            }
        }
    }
    out
}

/// The first offered tool that `text` names as a word (`search_docs`, not `research_docs`) and
/// that this run has not called yet.
fn described_tool<'a>(text: &str, state: &AgentState<'a>) -> Option<&'a str> {
    let is_word = |c: char| c.is_alphanumeric() || c == '_' || c == '-';
    let named = |name: &str| {
        text.match_indices(name).any(|(at, _)| {
            let before = text.get(..at).and_then(|t| t.chars().next_back());
            let after = text.get(at + name.len()..).and_then(|t| t.chars().next());
            !before.is_some_and(is_word) && !after.is_some_and(is_word)
        })
    };
    let called = |name: &str| state.steps.iter().any(|s| s.call.as_ref().is_some_and(|c| c.name == name));
    state
        .tools
        .iter()
        .map(|t| t.name.as_str())
        .filter(|name| !name.is_empty() && named(name) && !called(name))
        .min_by_key(|name| text.find(name).unwrap_or(usize::MAX))
}

#[async_trait]
impl Agent for ToolCallingAgent {
    async fn plan(&self, state: AgentState<'_>, ctx: &RunContext) -> Result<Plan> {
        let mut request = ChatRequest::new(self.messages(&state))
            .with_tools(state.tools.to_vec())
            .with_temperature(self.temperature)
            .with_max_tokens(self.max_tokens);
        if state.tools.is_empty() {
            request.tool_choice = ToolChoice::None;
        } else if state.steps.is_empty() {
            request.tool_choice = self.first_choice.clone();
        }
        let mut response = match self.model.chat(request.clone(), ctx).await {
            Ok(response) => response,
            // A reply the model's own tool-call decoding could not read (a local model cut off
            // mid-call, say) is the model's to fix, like any unreadable reply.
            Err(Error::Parse { message, .. }) => {
                return Ok(Plan {
                    log: String::new(),
                    next: Next::Invalid(format!(
                        "your reply could not be read as a tool call or an answer: {message}"
                    )),
                    usage: catena_core::Usage::default(),
                });
            }
            Err(e) => return Err(e),
        };
        let text = response.message.content.trim().to_owned();
        let mut usage = response.usage;
        if self.follow_through
            && response.message.tool_calls.is_empty()
            && response.finish_reason == FinishReason::Stop
            && let Some(tool) = described_tool(&text, &state)
        {
            tracing::debug!(tool, "the reply described a call; asking for it");
            request.tool_choice = ToolChoice::Tool(tool.to_owned());
            match self.model.chat(request, ctx).await {
                Ok(forced) => {
                    usage += forced.usage;
                    if !forced.message.tool_calls.is_empty() {
                        response = forced;
                    }
                }
                Err(Error::Cancelled) => return Err(Error::Cancelled),
                // Any other failure leaves the described reply as it was: the answer it gave.
                Err(e) => tracing::debug!(error = %e, "following through a described call failed"),
            }
        }
        let next = if !response.message.tool_calls.is_empty() {
            Next::Call(response.message.tool_calls)
        } else if response.finish_reason == FinishReason::Length {
            Next::Invalid(format!(
                "the reply was cut off at the {}-token limit; answer more briefly or call a tool",
                self.max_tokens
            ))
        } else if text.is_empty() {
            Next::Invalid("the reply was empty; call a tool or answer the question".to_owned())
        } else {
            Next::Finish(text.clone())
        };
        Ok(Plan { log: text, next, usage })
    }

    async fn conclude(&self, state: AgentState<'_>, ctx: &RunContext) -> Result<Plan> {
        let mut messages = self.messages(&state);
        messages.push(Message::user(
            "Stop using tools now. Answer the question from what the tools returned above.",
        ));
        let mut request =
            ChatRequest::new(messages).with_temperature(self.temperature).with_max_tokens(self.max_tokens);
        // The history holds tool calls, so the tools stay declared; the model may not call them.
        request.tools = state.tools.to_vec();
        request.tool_choice = ToolChoice::None;
        let response = self.model.chat(request, ctx).await?;
        let text = response.message.content.trim().to_owned();
        Ok(Plan { log: text.clone(), next: Next::Finish(text), usage: response.usage })
    }
}
