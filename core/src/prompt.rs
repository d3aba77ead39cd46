//! Prompt templates: strings and chat message lists with `{variable}` placeholders.

use std::collections::BTreeSet;

use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::runnable::json_type_name;
use crate::{ChatRequest, Error, Message, Result, Role, RunContext, Runnable};

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Text(String),
    Var(String),
}

/// A string template with `{variable}` placeholders.
///
/// Placeholders are `{name}` (letters, digits, `_`, not starting with a digit); `{{` and `}}` are
/// literal braces. A variable the template needs but the input lacks is an
/// [`Error::InvalidInput`] naming it, and so is a declared variable the template never uses.
/// Input keys the template does not need are ignored, so one JSON object can feed several prompts
/// in a chain.
///
/// ```
/// use catena_core::{ChatPromptTemplate, PromptTemplate, Role};
/// use serde_json::json;
///
/// let p = PromptTemplate::new("Answer {question} in {{JSON}}").unwrap();
/// assert_eq!(p.format(&json!({"question": "why?"})).unwrap(), "Answer why? in {JSON}");
/// assert!(p.format(&json!({})).unwrap_err().to_string().contains("`question`"));
///
/// let chat = ChatPromptTemplate::new()
///     .system("You answer from the context.\n{context}").unwrap()
///     .user("{question}").unwrap();
/// let messages = chat.format_messages(&json!({"context": "Rust is fast.", "question": "Is Rust fast?"})).unwrap();
/// assert_eq!(messages[1].role, Role::User);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct PromptTemplate {
    source: String,
    segments: Vec<Segment>,
    partials: Map<String, Value>,
}

impl PromptTemplate {
    /// Parses `template`. Unbalanced braces and malformed names are errors that say where.
    pub fn new(template: impl Into<String>) -> Result<Self> {
        let source = template.into();
        let segments = parse(&source)?;
        Ok(Self { source, segments, partials: Map::new() })
    }

    /// Parses `template` and checks that its variables are exactly `declared` (minus none, plus
    /// none): a declared variable the template does not use, or a used one not declared, is an error.
    pub fn with_input_variables<S: AsRef<str>>(template: impl Into<String>, declared: &[S]) -> Result<Self> {
        let template = Self::new(template)?;
        let used = template.variables();
        let declared: BTreeSet<String> = declared.iter().map(|s| s.as_ref().to_owned()).collect();
        if let Some(unused) = declared.difference(&used).next() {
            return Err(Error::invalid_input(format!(
                "prompt variable `{unused}` is declared but the template never uses it"
            )));
        }
        if let Some(undeclared) = used.difference(&declared).next() {
            return Err(Error::invalid_input(format!(
                "prompt template uses `{{{undeclared}}}` but it is not among the declared variables"
            )));
        }
        Ok(template)
    }

    /// Fixes a variable's value ahead of time.
    #[must_use]
    pub fn partial(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.partials.insert(name.into(), value.into());
        self
    }

    /// The template text as given.
    #[must_use]
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The variables the template still needs (partials excluded), sorted.
    #[must_use]
    pub fn variables(&self) -> BTreeSet<String> {
        self.segments
            .iter()
            .filter_map(|s| match s {
                Segment::Var(v) if !self.partials.contains_key(v) => Some(v.clone()),
                _ => None,
            })
            .collect()
    }

    /// Fills the placeholders from a JSON object. Strings are inserted as they are, other values as
    /// JSON.
    pub fn format(&self, input: &Value) -> Result<String> {
        let vars = as_object(input, "a prompt template")?;
        let mut out = String::with_capacity(self.source.len());
        for segment in &self.segments {
            match segment {
                Segment::Text(t) => out.push_str(t),
                Segment::Var(name) => {
                    let value = vars.get(name).or_else(|| self.partials.get(name)).ok_or_else(|| {
                        let have: Vec<&str> = vars.keys().map(String::as_str).collect();
                        Error::invalid_input(format!(
                            "prompt variable `{name}` is missing (the input has: {})",
                            if have.is_empty() { "nothing".to_owned() } else { have.join(", ") }
                        ))
                    })?;
                    push_value(&mut out, value);
                }
            }
        }
        Ok(out)
    }
}

fn as_object<'a>(input: &'a Value, what: &str) -> Result<&'a Map<String, Value>> {
    input.as_object().ok_or_else(|| {
        Error::invalid_input(format!(
            "{what} needs a JSON object of variables, got {}",
            json_type_name(input)
        ))
    })
}

fn push_value(out: &mut String, value: &Value) {
    match value {
        Value::String(s) => out.push_str(s),
        other => out.push_str(&other.to_string()),
    }
}

fn parse(template: &str) -> Result<Vec<Segment>> {
    let mut segments = Vec::new();
    let mut text = String::new();
    let mut chars = template.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match c {
            '{' if chars.peek().is_some_and(|&(_, n)| n == '{') => {
                chars.next();
                text.push('{');
            }
            '}' if chars.peek().is_some_and(|&(_, n)| n == '}') => {
                chars.next();
                text.push('}');
            }
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some((_, '}')) => break,
                        Some((_, ch)) => name.push(ch),
                        None => {
                            return Err(Error::invalid_input(format!(
                                "prompt template has an unclosed `{{` at byte {at} (write `{{{{` for a literal brace)"
                            )));
                        }
                    }
                }
                let valid = name.chars().next().is_some_and(|f| f.is_alphabetic() || f == '_')
                    && name.chars().all(|ch| ch.is_alphanumeric() || ch == '_');
                if !valid {
                    return Err(Error::invalid_input(format!(
                        "prompt template has an invalid variable name `{{{name}}}` at byte {at} \
                         (names are letters, digits and `_`; write `{{{{` and `}}}}` for literal braces)"
                    )));
                }
                if !text.is_empty() {
                    segments.push(Segment::Text(std::mem::take(&mut text)));
                }
                segments.push(Segment::Var(name));
            }
            '}' => {
                return Err(Error::invalid_input(format!(
                    "prompt template has a stray `}}` at byte {at} (write `}}}}` for a literal brace)"
                )));
            }
            other => text.push(other),
        }
    }
    if !text.is_empty() {
        segments.push(Segment::Text(text));
    }
    Ok(segments)
}

#[async_trait]
impl Runnable<Value, String> for PromptTemplate {
    async fn invoke(&self, input: Value, _ctx: &RunContext) -> Result<String> {
        self.format(&input)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum ChatPart {
    Template(Role, PromptTemplate),
    Fixed(Vec<Message>),
    Placeholder { name: String, optional: bool },
}

/// A list of message templates, plus placeholders for message lists (history) supplied at run
/// time. As a [`Runnable`] it turns a JSON object into a [`ChatRequest`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChatPromptTemplate {
    parts: Vec<ChatPart>,
}

impl ChatPromptTemplate {
    /// An empty template.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a message template with this role.
    pub fn message(mut self, role: Role, template: &str) -> Result<Self> {
        self.parts.push(ChatPart::Template(role, PromptTemplate::new(template)?));
        Ok(self)
    }

    /// Appends a system message template.
    pub fn system(self, template: &str) -> Result<Self> {
        self.message(Role::System, template)
    }

    /// Appends a user message template.
    pub fn user(self, template: &str) -> Result<Self> {
        self.message(Role::User, template)
    }

    /// Appends an assistant message template.
    pub fn assistant(self, template: &str) -> Result<Self> {
        self.message(Role::Assistant, template)
    }

    /// Appends the messages found under `name` in the input (a JSON array of [`Message`]s).
    /// A missing value is an error unless `optional`.
    #[must_use]
    pub fn placeholder(mut self, name: impl Into<String>, optional: bool) -> Self {
        self.parts.push(ChatPart::Placeholder { name: name.into(), optional });
        self
    }

    /// Few-shot examples: formats `example` once per example (each a JSON object of its variables)
    /// and appends the resulting messages, in order.
    pub fn examples(mut self, example: &ChatPromptTemplate, examples: &[Value]) -> Result<Self> {
        let mut messages = Vec::new();
        for e in examples {
            messages.extend(example.format_messages(e)?);
        }
        self.parts.push(ChatPart::Fixed(messages));
        Ok(self)
    }

    /// The variables the template needs, sorted (placeholders included).
    #[must_use]
    pub fn variables(&self) -> BTreeSet<String> {
        let mut vars = BTreeSet::new();
        for part in &self.parts {
            match part {
                ChatPart::Template(_, t) => vars.extend(t.variables()),
                ChatPart::Placeholder { name, optional: false } => {
                    vars.insert(name.clone());
                }
                _ => {}
            }
        }
        vars
    }

    /// The messages for this input.
    pub fn format_messages(&self, input: &Value) -> Result<Vec<Message>> {
        let vars = as_object(input, "a chat prompt template")?;
        let mut messages = Vec::new();
        for part in &self.parts {
            match part {
                ChatPart::Template(role, t) => messages.push(Message {
                    role: *role,
                    content: t.format(input)?,
                    tool_calls: Vec::new(),
                    tool_call_id: None,
                }),
                ChatPart::Fixed(fixed) => messages.extend(fixed.iter().cloned()),
                ChatPart::Placeholder { name, optional } => match vars.get(name) {
                    None | Some(Value::Null) if *optional => {}
                    None | Some(Value::Null) => {
                        return Err(Error::invalid_input(format!(
                            "messages placeholder `{name}` is missing from the input"
                        )));
                    }
                    Some(value) => {
                        let history: Vec<Message> = serde_json::from_value(value.clone()).map_err(|e| {
                            Error::invalid_input(format!(
                                "messages placeholder `{name}` must be an array of messages: {e}"
                            ))
                        })?;
                        messages.extend(history);
                    }
                },
            }
        }
        Ok(messages)
    }
}

#[async_trait]
impl Runnable<Value, ChatRequest> for ChatPromptTemplate {
    async fn invoke(&self, input: Value, _ctx: &RunContext) -> Result<ChatRequest> {
        Ok(ChatRequest::new(self.format_messages(&input)?))
    }
}

/// A string prompt made of a prefix, formatted examples, and a suffix (LangChain's
/// `FewShotPromptTemplate`). The prefix and suffix are templates over the input; each example is
/// formatted with `example_prompt`.
#[derive(Debug, Clone, PartialEq)]
pub struct FewShotPromptTemplate {
    /// Formats one example.
    pub example_prompt: PromptTemplate,
    /// The examples, each a JSON object of the example prompt's variables.
    pub examples: Vec<Value>,
    /// Before the examples.
    pub prefix: PromptTemplate,
    /// After the examples (usually holds the actual question).
    pub suffix: PromptTemplate,
    /// Between the parts.
    pub separator: String,
}

impl FewShotPromptTemplate {
    /// Formats prefix, examples and suffix, joined by the separator; empty parts are left out.
    pub fn format(&self, input: &Value) -> Result<String> {
        let mut parts = vec![self.prefix.format(input)?];
        for example in &self.examples {
            parts.push(self.example_prompt.format(example)?);
        }
        parts.push(self.suffix.format(input)?);
        parts.retain(|p| !p.is_empty());
        Ok(parts.join(&self.separator))
    }
}

#[async_trait]
impl Runnable<Value, String> for FewShotPromptTemplate {
    async fn invoke(&self, input: Value, _ctx: &RunContext) -> Result<String> {
        self.format(&input)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn braces_and_errors() {
        let t = PromptTemplate::new("{{a}} {b}}}").unwrap();
        assert_eq!(t.format(&json!({"b": 1})).unwrap(), "{a} 1}");
        for bad in ["{", "}", "{a", "{1x}", "{a b}", "{}"] {
            let err = PromptTemplate::new(bad).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::InvalidInput, "{bad}");
        }
    }

    #[test]
    fn missing_and_unused_variables_are_named() {
        let t = PromptTemplate::new("{x} and {y}").unwrap();
        let err = t.format(&json!({"x": "1"})).unwrap_err().to_string();
        assert!(err.contains("`y`") && err.contains("has: x"), "{err}");
        let err = PromptTemplate::with_input_variables("{x}", &["x", "z"]).unwrap_err().to_string();
        assert!(err.contains("`z`") && err.contains("never uses"), "{err}");
        let err = PromptTemplate::with_input_variables("{x} {w}", &["x"]).unwrap_err().to_string();
        assert!(err.contains("{w}"), "{err}");
        assert!(t.format(&json!("not an object")).is_err());
        assert_eq!(t.clone().partial("y", "2").format(&json!({"x": 1})).unwrap(), "1 and 2");
    }

    #[test]
    fn chat_placeholders_and_examples() {
        let example = ChatPromptTemplate::new().user("{q}").unwrap().assistant("{a}").unwrap();
        let chat = ChatPromptTemplate::new()
            .system("Be brief.")
            .unwrap()
            .examples(&example, &[json!({"q": "2+2", "a": "4"})])
            .unwrap()
            .placeholder("history", true)
            .user("{question}")
            .unwrap();
        let msgs = chat.format_messages(&json!({"question": "3+3"})).unwrap();
        assert_eq!(msgs.len(), 4);
        assert_eq!(msgs[2].content, "4");
        let with_history = chat
            .format_messages(&json!({"question": "3+3", "history": [{"role": "user", "content": "hi"}]}))
            .unwrap();
        assert_eq!(with_history.len(), 5);
        let strict = ChatPromptTemplate::new().placeholder("history", false);
        assert!(strict.format_messages(&json!({})).unwrap_err().to_string().contains("`history`"));
        assert!(strict.format_messages(&json!({"history": 3})).is_err());
    }

    #[test]
    fn few_shot_string() {
        let fs = FewShotPromptTemplate {
            example_prompt: PromptTemplate::new("Q: {q}\nA: {a}").unwrap(),
            examples: vec![json!({"q": "1+1", "a": "2"})],
            prefix: PromptTemplate::new("Answer.").unwrap(),
            suffix: PromptTemplate::new("Q: {input}\nA:").unwrap(),
            separator: "\n\n".into(),
        };
        assert_eq!(fs.format(&json!({"input": "2+2"})).unwrap(), "Answer.\n\nQ: 1+1\nA: 2\n\nQ: 2+2\nA:");
    }
}
