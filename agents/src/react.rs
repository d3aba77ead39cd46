//! [`ReActAgent`]: the Thought / Action / Action Input / Observation text protocol.

use std::fmt::Write as _;
use std::sync::Arc;

use catena_core::security::Guard;
use catena_core::{
    ChatModel, ChatRequest, FinishReason, Message, ResponseFormat, Result, RunContext, ToolCall, ToolSpec,
    async_trait,
};
use serde_json::Value;

use crate::agent::{Agent, AgentState, AgentStep, Next, Plan};

/// The stop sequence: the model must not write the observation itself.
pub const OBSERVATION_STOP: &str = "\nObservation:";

/// An agent that reasons in text, in the format of the ReAct paper as LangChain's ReAct agent
/// uses it, so any model that follows instructions can use tools, native tool calling or not:
///
/// ```text
/// Thought: I need to compute this.
/// Action: calculator
/// Action Input: {"expression": "23 * 7"}
/// Observation: 161            <- written by the executor, not the model
/// Thought: I now know the final answer
/// Final Answer: 161
/// ```
///
/// Generation stops at `\nObservation:`. A reply that has neither a well-formed action nor a
/// final answer, or has both, is [`Next::Invalid`] with LangChain's messages, so the executor can
/// show the model what to fix. An `Action Input` that is not a JSON object is accepted for a tool
/// with one required string argument (LangChain's single-input tools) and refused otherwise.
///
/// For local llama.cpp models, [`constrained`](ReActAgent::constrained) decodes every reply under
/// a grammar of the format itself (the action limited to the tools' names, the input to a JSON
/// object), so even a 135M model stays in format.
#[derive(Debug)]
pub struct ReActAgent {
    model: Arc<dyn ChatModel>,
    instructions: String,
    examples: String,
    constrained: bool,
    max_tokens: u32,
}

impl ReActAgent {
    /// A ReAct agent on `model`.
    #[must_use]
    pub fn new(model: Arc<dyn ChatModel>) -> Self {
        Self {
            model,
            instructions: "Answer the question as well as you can.".to_owned(),
            examples: String::new(),
            constrained: false,
            max_tokens: 512,
        }
    }

    /// Text put before the tool list (who the agent is, how to behave).
    #[must_use]
    pub fn with_instructions(mut self, instructions: impl Into<String>) -> Self {
        self.instructions = instructions.into();
        self
    }

    /// Worked examples of the format on your tools, shown after the format description
    /// (few-shot prompting: small models follow a worked example far better than a description).
    #[must_use]
    pub fn with_examples(mut self, examples: impl Into<String>) -> Self {
        self.examples = examples.into();
        self
    }

    /// Decodes replies under a grammar of the format (llama.cpp models only: remote APIs do not
    /// accept grammars).
    #[must_use]
    pub fn constrained(mut self, constrained: bool) -> Self {
        self.constrained = constrained;
        self
    }

    /// Most tokens per reply (default 512).
    #[must_use]
    pub fn with_max_tokens(mut self, max_tokens: u32) -> Self {
        self.max_tokens = max_tokens;
        self
    }

    fn system_prompt(&self, tools: &[ToolSpec]) -> String {
        let mut out = format!("{}\n\nYou have access to these tools:\n\n", self.instructions.trim());
        for tool in tools {
            let _ = writeln!(out, "{}: {} Arguments: {}", tool.name, tool.description, tool.parameters);
        }
        let names: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
        let _ = write!(
            out,
            "\nUse the following format:\n\n\
             Question: the input question you must answer\n\
             Thought: you should always think about what to do\n\
             Action: the action to take, should be one of [{}]\n\
             Action Input: the input to the action, a JSON object\n\
             Observation: the result of the action\n\
             ... (this Thought/Action/Action Input/Observation can repeat N times)\n\
             Thought: I now know the final answer\n\
             Final Answer: the final answer to the original input question\n\n",
            names.join(", ")
        );
        if !self.examples.trim().is_empty() {
            let _ = write!(out, "For example:\n\n{}\n\n", self.examples.trim());
        }
        out.push_str("Begin!");
        out
    }

    fn request(&self, state: &AgentState<'_>, closing: bool) -> ChatRequest {
        let mut messages = vec![Message::system(state.guard.system_prompt(&self.system_prompt(state.tools)))];
        messages.extend(state.history.iter().filter(|m| m.role != catena_core::Role::System).cloned());
        let mut transcript = format!("Question: {}\n", state.input);
        transcript.push_str(&scratchpad(state.steps, state.guard));
        if closing {
            transcript.push_str(
                "Thought: I must stop using tools now and answer from the observations above.\nFinal Answer:",
            );
        }
        messages.push(Message::user(transcript));
        let mut request = ChatRequest::new(messages).with_temperature(0.0).with_max_tokens(self.max_tokens);
        if !closing {
            request = request.with_stop(OBSERVATION_STOP);
            if self.constrained {
                request = request
                    .with_response_format(ResponseFormat::Grammar { gbnf: react_grammar(state.tools) });
            }
        }
        request
    }
}

/// The steps so far in the protocol's own format, ending where the model continues. What the
/// tools returned is marked as data by `guard`.
fn scratchpad(steps: &[AgentStep], guard: &Guard) -> String {
    let mut out = String::new();
    let mut last_turn = None;
    for step in steps {
        // Parallel calls cannot happen in this protocol, but a step list may come from another agent.
        if last_turn != Some(step.turn) {
            out.push_str(step.log.trim_end());
            out.push('\n');
            last_turn = Some(step.turn);
        }
        let observation = step.observation.trim_end();
        let shown = match &step.call {
            Some(call) => guard.mark(&format!("result of {}", call.name), observation),
            None => observation.to_owned(),
        };
        let _ = writeln!(out, "Observation: {shown}");
    }
    out
}

#[async_trait]
impl Agent for ReActAgent {
    async fn plan(&self, state: AgentState<'_>, ctx: &RunContext) -> Result<Plan> {
        let response = self.model.chat(self.request(&state, false), ctx).await?;
        let text = response.message.content.trim().to_owned();
        // A reply cut at the token limit may still look complete (a truncated action input can
        // be valid text), so it is never acted on.
        let next = if response.finish_reason == FinishReason::Length {
            Next::Invalid(format!(
                "Invalid Format: the reply was cut off at the {}-token limit; keep the thought short",
                self.max_tokens
            ))
        } else {
            parse_react(&text, state.tools, state.steps.len())
        };
        Ok(Plan { log: text, next, usage: response.usage })
    }

    async fn conclude(&self, state: AgentState<'_>, ctx: &RunContext) -> Result<Plan> {
        let response = self.model.chat(self.request(&state, true), ctx).await?;
        let text = response.message.content.trim();
        let answer = text.rsplit_once("Final Answer:").map_or(text, |(_, a)| a.trim()).to_owned();
        Ok(Plan { log: text.to_owned(), next: Next::Finish(answer), usage: response.usage })
    }
}

/// Reads one ReAct reply. `step` numbers the call id.
#[must_use]
pub fn parse_react(text: &str, tools: &[ToolSpec], step: usize) -> Next {
    let final_at = text.find("Final Answer:");
    let action = find_action(text);
    match (action, final_at) {
        (Some(_), Some(_)) => Next::Invalid(
            "Invalid Format: the reply has both a final answer and an action; give one of them".to_owned(),
        ),
        (None, Some(at)) => {
            let answer = text.get(at + "Final Answer:".len()..).unwrap_or_default().trim();
            if answer.is_empty() {
                Next::Invalid("Invalid Format: 'Final Answer:' is empty".to_owned())
            } else {
                Next::Finish(answer.to_owned())
            }
        }
        (None, None) => {
            if !text.contains("Action") {
                Next::Invalid(
                    "Invalid Format: Missing 'Action:' after 'Thought:'. Either call a tool with 'Action:' and 'Action Input:', or answer with 'Final Answer:'"
                        .to_owned(),
                )
            } else {
                Next::Invalid("Invalid Format: Missing 'Action Input:' after 'Action:'".to_owned())
            }
        }
        (Some((name, input)), None) => {
            let Some(tool) = tools.iter().find(|t| t.name == name) else {
                let names: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
                return Next::Invalid(format!(
                    "{name} is not a valid tool, try one of [{}].",
                    names.join(", ")
                ));
            };
            match arguments(&input, tool) {
                Ok(arguments) => Next::Call(vec![ToolCall {
                    id: format!("react_{step}"),
                    name: tool.name.clone(),
                    arguments,
                }]),
                Err(problem) => Next::Invalid(problem),
            }
        }
    }
}

/// `(tool name, raw input)` of the first `Action:` followed by an `Action Input:`.
fn find_action(text: &str) -> Option<(String, String)> {
    let at = text.find("Action:")?;
    let rest = text.get(at + "Action:".len()..)?;
    let input_at = rest.find("Action Input:")?;
    let name = rest.get(..input_at)?.trim().trim_matches(|c| c == '`' || c == '"' || c == '\'').trim();
    let input = rest.get(input_at + "Action Input:".len()..)?;
    // The model may go on after the input (a hallucinated "Observation:"); the stop sequence
    // usually prevents it, but a model without stop support would not.
    let input = input.split("\nObservation").next().unwrap_or(input).trim();
    Some((name.to_owned(), input.to_owned()))
}

/// The arguments object of an action input.
fn arguments(input: &str, tool: &ToolSpec) -> std::result::Result<Value, String> {
    let unfenced =
        input.trim().trim_start_matches("```json").trim_start_matches("```").trim_end_matches("```").trim();
    match serde_json::from_str::<Value>(unfenced) {
        Ok(value @ Value::Object(_)) => return Ok(value),
        Err(e) if unfenced.starts_with('{') => {
            return Err(format!(
                "Invalid Format: 'Action Input:' is not valid JSON ({e}); write one JSON object"
            ));
        }
        _ => {}
    }
    // A single-input tool takes the raw text as its one required string argument.
    let required = required_arguments(tool);
    if let [only] = required.as_slice()
        && tool.parameters.pointer(&format!("/properties/{only}/type")).and_then(Value::as_str)
            == Some("string")
    {
        let text = unfenced.trim_matches('"').trim();
        return Ok(serde_json::json!({ *only: text }));
    }
    Err(format!(
        "Invalid Format: 'Action Input:' for {} must be a JSON object matching {}",
        tool.name, tool.parameters
    ))
}

/// The GBNF of one ReAct reply over these tools: a thought line, then an action on one of the
/// tools with a JSON object input that has exactly that tool's declared arguments (its required
/// ones first, in schema order, then any of its optional ones; each typed when the schema says
/// string, number, integer, boolean, null or a list of those, or an enum of such values; any
/// JSON value otherwise), or a final answer. The tool name and its arguments are one rule, so a
/// small model cannot send one tool's arguments to another (`{"expression": ...}` to a clock).
/// A tool whose schema declares no `properties` takes any object, unless it sets
/// `additionalProperties: false`, when it takes `{}` only.
#[must_use]
pub fn react_grammar(tools: &[ToolSpec]) -> String {
    let names: Vec<String> =
        tools.iter().map(|t| format!("\"{}\"", t.name.replace('\\', "\\\\").replace('"', "\\\""))).collect();
    let mut g = String::from(
        "root ::= \"Thought: \" line \"\\n\" (action | final)\n\
         line ::= [^\\n]+\n\
         final ::= \"Final Answer: \" line\n",
    );
    if names.is_empty() {
        g = g.replace("(action | final)", "final");
    } else {
        let actions: Vec<String> = (0..tools.len()).map(|i| format!("action{i}")).collect();
        let _ = writeln!(g, "action ::= {}", actions.join(" | "));
        for (i, (tool, name)) in tools.iter().zip(&names).enumerate() {
            let _ = writeln!(
                g,
                "action{i} ::= \"Action: \" {name} \"\\nAction Input: \" {}",
                arguments_rule(tool)
            );
        }
    }
    g.push_str(
        "object ::= \"{\" ws ( string \":\" ws value ( \",\" ws string \":\" ws value )* )? \"}\"\n\
         value ::= object | array | string | number | (\"true\" | \"false\" | \"null\") ws\n\
         array ::= \"[\" ws ( value ( \",\" ws value )* )? \"]\" ws\n\
         string ::= \"\\\"\" ( [^\"\\\\\\x7F\\x00-\\x1F] | \"\\\\\" ([\"\\\\/bfnrt] | \"u\" [0-9a-fA-F]{4}) )* \"\\\"\" ws\n\
         number ::= (\"-\"? ([0-9] | [1-9] [0-9]{0,15})) (\".\" [0-9]+)? ([eE] [-+]? [0-9]{1,2})? ws\n\
         integer ::= \"-\"? ([0-9] | [1-9] [0-9]{0,15}) ws\n\
         boolean ::= (\"true\" | \"false\") ws\n\
         ws ::= | \" \" | \"\\n\" [ \\t]{0,20}\n",
    );
    g
}

/// The names of a tool's required arguments, in schema order.
fn required_arguments(tool: &ToolSpec) -> Vec<&str> {
    tool.parameters
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// A GBNF string literal for `text` as a JSON value (quotes and escapes included).
fn json_literal(text: &Value) -> String {
    let json = serde_json::to_string(text).unwrap_or_default();
    format!("\"{}\"", json.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A GBNF expression for one argument's value, from its schema: an enum of literals, one of the
/// primitive types (or a list of them, as `Option<String>` becomes `["string", "null"]`), or
/// any JSON value.
fn value_rule(schema: &Value) -> String {
    if let Some(choices) = schema.get("enum").and_then(Value::as_array)
        && !choices.is_empty()
    {
        let literals: Vec<String> = choices.iter().map(|c| format!("{} ws", json_literal(c))).collect();
        return format!("( {} )", literals.join(" | "));
    }
    let primitive = |name: &str| match name {
        "string" => Some("string"),
        "number" => Some("number"),
        "integer" => Some("integer"),
        "boolean" => Some("boolean"),
        "null" => Some("\"null\" ws"),
        _ => None,
    };
    match schema.get("type") {
        Some(Value::String(name)) => primitive(name).unwrap_or("value").to_owned(),
        Some(Value::Array(names)) => {
            let rules: Option<Vec<&str>> = names.iter().map(|n| n.as_str().and_then(primitive)).collect();
            match rules {
                Some(rules) if !rules.is_empty() => format!("( {} )", rules.join(" | ")),
                _ => "value".to_owned(),
            }
        }
        _ => "value".to_owned(),
    }
}

/// A GBNF expression for a tool's arguments object: its required properties first, in schema
/// order, then any of its optional ones, each with a value of its declared type.
fn arguments_rule(tool: &ToolSpec) -> String {
    let Some(properties) = tool.parameters.get("properties").and_then(Value::as_object) else {
        let closed = tool.parameters.get("additionalProperties") == Some(&Value::Bool(false));
        return if closed { "\"{\" ws \"}\" ws".to_owned() } else { "object".to_owned() };
    };
    let member = |name: &str| {
        let key = json_literal(&Value::String(name.to_owned()));
        format!("{key} ws \":\" ws {}", value_rule(properties.get(name).unwrap_or(&Value::Null)))
    };
    let required: Vec<&str> =
        required_arguments(tool).into_iter().filter(|name| properties.contains_key(*name)).collect();
    let optional: Vec<String> = properties
        .keys()
        .filter(|name| !required.contains(&name.as_str()))
        .map(|name| member(name))
        .collect();
    let optional = match optional.len() {
        0 => None,
        1 => optional.into_iter().next(),
        _ => Some(format!("( {} )", optional.join(" | "))),
    };
    let members = match (required.is_empty(), optional) {
        (true, None) => String::new(),
        (true, Some(opt)) => format!("( {opt} ( \",\" ws {opt} )* )? "),
        (false, opt) => {
            let required: Vec<String> = required.iter().map(|name| member(name)).collect();
            let rest = opt.map(|opt| format!(" ( \",\" ws {opt} )*")).unwrap_or_default();
            format!("{}{rest} ", required.join(" \",\" ws "))
        }
    };
    format!("\"{{\" ws {members}\"}}\" ws")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use serde_json::json;

    fn tools() -> Vec<ToolSpec> {
        vec![
            ToolSpec {
                name: "calculator".into(),
                description: "Evaluates arithmetic.".into(),
                parameters: json!({"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]}),
            },
            ToolSpec {
                name: "add".into(),
                description: "Adds.".into(),
                parameters: json!({"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]}),
            },
        ]
    }

    #[test]
    fn actions_answers_and_every_format_error() {
        let t = tools();
        match parse_react("Thought: add them\nAction: add\nAction Input: {\"a\": 1, \"b\": 2}", &t, 0) {
            Next::Call(calls) => {
                assert_eq!(calls[0].name, "add");
                assert_eq!(calls[0].arguments, json!({"a": 1, "b": 2}));
            }
            other => panic!("{other:?}"),
        }
        // Single-input tools take raw text; quotes and a hallucinated observation are dropped.
        match parse_react("Thought: x\nAction: `calculator`\nAction Input: \"2 + 2\"\nObservation: 4", &t, 1)
        {
            Next::Call(calls) => assert_eq!(calls[0].arguments, json!({"expression": "2 + 2"})),
            other => panic!("{other:?}"),
        }
        assert_eq!(parse_react("Thought: done\nFinal Answer: 42", &t, 0), Next::Finish("42".into()));
        let invalid = |text: &str| match parse_react(text, &t, 0) {
            Next::Invalid(why) => why,
            other => panic!("{text}: {other:?}"),
        };
        assert!(invalid("I think it is 4").contains("Missing 'Action:'"));
        assert!(invalid("Thought: x\nAction: add").contains("Missing 'Action Input:'"));
        assert!(
            invalid("Thought: x\nAction: search\nAction Input: {}")
                .contains("search is not a valid tool, try one of [calculator, add]")
        );
        assert!(
            invalid("Thought: x\nAction: add\nAction Input: one and two").contains("must be a JSON object")
        );
        assert!(invalid("Action: add\nAction Input: {\"a\":1,\"b\":2}\nFinal Answer: 3").contains("both"));
        assert!(invalid("Final Answer:   ").contains("empty"));
    }

    #[test]
    fn grammar_names_every_tool_and_scratchpad_replays_steps() {
        let g = react_grammar(&tools());
        assert!(g.contains("action ::= action0 | action1"), "{g}");
        assert!(
            g.contains(r#"action0 ::= "Action: " "calculator" "\nAction Input: " "{" ws "\"expression\"" ws ":" ws string "}" ws"#),
            "{g}"
        );
        assert!(g.contains(r#""\"a\"" ws ":" ws number "," ws "\"b\"" ws ":" ws number "}" ws"#), "{g}");
        assert!(react_grammar(&[]).contains("root ::= \"Thought: \" line \"\\n\" final"));
        let steps = vec![AgentStep {
            turn: 0,
            log: "Thought: add\nAction: add\nAction Input: {}".into(),
            call: None,
            observation: "Error: bad".into(),
            artifact: None,
            failed: true,
        }];
        assert_eq!(
            scratchpad(&steps, &Guard::off()),
            "Thought: add\nAction: add\nAction Input: {}\nObservation: Error: bad\n"
        );
    }

    #[test]
    fn each_action_admits_only_its_own_tools_declared_arguments() {
        let clock = ToolSpec {
            name: "current_datetime".into(),
            description: "Now.".into(),
            parameters: json!({"type": "object", "properties": {"timezone": {"type": ["string", "null"]}}}),
        };
        let unit = ToolSpec {
            name: "convert".into(),
            description: "Converts.".into(),
            parameters: json!({"type": "object", "required": ["value"], "properties": {
                "value": {"type": "number"}, "unit": {"enum": ["m", "ft"]}, "precise": {"type": "boolean"}}}),
        };
        let closed = ToolSpec {
            name: "ping".into(),
            description: "Pings.".into(),
            parameters: json!({"type": "object", "additionalProperties": false}),
        };
        let open = ToolSpec { name: "anything".into(), description: "Any.".into(), parameters: json!({}) };
        assert_eq!(
            arguments_rule(&clock),
            r#""{" ws ( "\"timezone\"" ws ":" ws ( string | "null" ws ) ( "," ws "\"timezone\"" ws ":" ws ( string | "null" ws ) )* )? "}" ws"#
        );
        let rule = arguments_rule(&unit);
        assert!(rule.starts_with(r#""{" ws "\"value\"" ws ":" ws number ( "," ws ( "#), "{rule}");
        assert!(rule.contains(r#""\"unit\"" ws ":" ws ( "\"m\"" ws | "\"ft\"" ws )"#), "{rule}");
        assert!(rule.contains(r#""\"precise\"" ws ":" ws boolean"#), "{rule}");
        assert_eq!(arguments_rule(&closed), r#""{" ws "}" ws"#);
        assert_eq!(arguments_rule(&open), "object");
    }
}
