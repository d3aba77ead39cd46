//! Prompts an MCP server offers: [`ServedPrompt`].

use std::collections::BTreeMap;
use std::sync::Arc;

use catena_core::{ChatPromptTemplate, Error, Result, Role};
use serde_json::{Value, json};

use super::content::McpContent;

/// One argument of a prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpPromptArgument {
    /// Its name.
    pub name: String,
    /// What to give.
    pub description: Option<String>,
    /// Whether the prompt cannot be rendered without it.
    pub required: bool,
}

/// One message of a rendered prompt. MCP prompts have user and assistant turns only; a system
/// turn of a catena template is sent as a user turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpPromptMessage {
    /// [`Role::User`] or [`Role::Assistant`].
    pub role: Role,
    /// What it says (or shows).
    pub content: McpContent,
}

impl McpPromptMessage {
    /// A user turn.
    pub fn user(content: McpContent) -> Self {
        Self { role: Role::User, content }
    }

    /// An assistant turn.
    pub fn assistant(content: McpContent) -> Self {
        Self { role: Role::Assistant, content }
    }
}

type Render = Arc<dyn Fn(&BTreeMap<String, String>) -> Result<Vec<McpPromptMessage>> + Send + Sync>;

/// A prompt a server offers: a name, its arguments, and how to render it. Most are a catena
/// [`ChatPromptTemplate`] ([`ServedPrompt::from_template`]); [`ServedPrompt::new`] takes any
/// function, for prompts with images or embedded resources.
///
/// ```
/// use catena_core::ChatPromptTemplate;
/// use catena_tools::mcp::ServedPrompt;
///
/// let review = ChatPromptTemplate::new()
///     .system("You review {language} code for bugs.").unwrap()
///     .user("{code}").unwrap();
/// let prompt = ServedPrompt::from_template("review", "Reviews a piece of code.", review)
///     .with_completions("language", ["rust", "python", "sql"]);
/// ```
#[derive(Clone)]
pub struct ServedPrompt {
    name: String,
    description: String,
    arguments: Vec<McpPromptArgument>,
    completions: BTreeMap<String, Vec<String>>,
    render: Render,
}

impl std::fmt::Debug for ServedPrompt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServedPrompt").field("name", &self.name).field("arguments", &self.arguments).finish()
    }
}

impl ServedPrompt {
    /// A prompt rendered by `render` from its arguments. Declare the arguments with
    /// [`ServedPrompt::with_argument`]; required ones are checked before `render` runs.
    pub fn new(
        name: impl Into<String>,
        description: impl Into<String>,
        render: impl Fn(&BTreeMap<String, String>) -> Result<Vec<McpPromptMessage>> + Send + Sync + 'static,
    ) -> Self {
        Self {
            name: name.into(),
            description: description.into(),
            arguments: Vec::new(),
            completions: BTreeMap::new(),
            render: Arc::new(render),
        }
    }

    /// A chat prompt template: each of its variables is a required argument.
    pub fn from_template(
        name: impl Into<String>,
        description: impl Into<String>,
        template: ChatPromptTemplate,
    ) -> Self {
        let variables = template.variables();
        let mut prompt = Self::new(name, description, move |arguments| {
            let input = Value::Object(arguments.iter().map(|(k, v)| (k.clone(), json!(v))).collect());
            Ok(template
                .format_messages(&input)?
                .into_iter()
                .map(|message| McpPromptMessage {
                    role: if message.role == Role::Assistant { Role::Assistant } else { Role::User },
                    content: McpContent::Text(message.content),
                })
                .collect())
        });
        for variable in variables {
            prompt = prompt.with_argument(&variable, None::<String>, true);
        }
        prompt
    }

    /// Declares an argument.
    #[must_use]
    pub fn with_argument(
        mut self,
        name: &str,
        description: Option<impl Into<String>>,
        required: bool,
    ) -> Self {
        self.arguments.push(McpPromptArgument {
            name: name.into(),
            description: description.map(Into::into),
            required,
        });
        self
    }

    /// Values offered when a client asks to complete `argument` (those starting with what the
    /// user typed so far, case-insensitively).
    #[must_use]
    pub fn with_completions(
        mut self,
        argument: &str,
        values: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.completions.insert(argument.into(), values.into_iter().map(Into::into).collect());
        self
    }

    /// Its name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its arguments.
    #[must_use]
    pub fn arguments(&self) -> &[McpPromptArgument] {
        &self.arguments
    }

    /// Renders it.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming a required argument that is missing, or what the renderer
    /// returns.
    pub fn render(&self, arguments: &BTreeMap<String, String>) -> Result<Vec<McpPromptMessage>> {
        if let Some(missing) = self.arguments.iter().find(|a| a.required && !arguments.contains_key(&a.name))
        {
            return Err(Error::invalid_input(format!(
                "the prompt `{}` needs the argument `{}`",
                self.name, missing.name
            )));
        }
        (self.render)(arguments)
    }

    /// The completions of `argument` that start with `typed`.
    pub(crate) fn complete(&self, argument: &str, typed: &str) -> Vec<String> {
        let typed = typed.to_lowercase();
        self.completions
            .get(argument)
            .into_iter()
            .flatten()
            .filter(|value| value.to_lowercase().starts_with(&typed))
            .cloned()
            .collect()
    }

    /// The protocol's `Prompt` listing.
    pub(crate) fn listing(&self) -> Value {
        let arguments: Vec<Value> = self
            .arguments
            .iter()
            .map(|a| {
                let mut argument = json!({"name": a.name, "required": a.required});
                if let (Some(description), Some(map)) = (&a.description, argument.as_object_mut()) {
                    map.insert("description".into(), json!(description));
                }
                argument
            })
            .collect();
        json!({"name": self.name, "description": self.description, "arguments": arguments})
    }
}

/// The protocol's `PromptMessage`.
pub(crate) fn message_json(message: &McpPromptMessage) -> Value {
    let role = if message.role == Role::Assistant { "assistant" } else { "user" };
    json!({"role": role, "content": message.content.to_json()})
}
