//! [`ToolRegistry`]: the tools an agent may call, by name.

use std::collections::BTreeMap;
use std::sync::Arc;

use catena_core::{Error, Event, Result, RunContext, Tool, ToolCall, ToolOutput, ToolSpec};

/// Tools by name. Names must be unique and made of letters, digits, `_` and `-` (what every
/// tool-calling API accepts).
#[derive(Clone, Default)]
pub struct ToolRegistry {
    tools: BTreeMap<String, Arc<dyn Tool>>,
}

impl std::fmt::Debug for ToolRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolRegistry").field("tools", &self.tools.keys().collect::<Vec<_>>()).finish()
    }
}

impl ToolRegistry {
    /// No tools.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a tool; a duplicate or malformed name is an [`Error::InvalidInput`].
    pub fn with(mut self, tool: impl Tool + 'static) -> Result<Self> {
        self.add(Arc::new(tool))?;
        Ok(self)
    }

    /// Adds a shared tool.
    pub fn add(&mut self, tool: Arc<dyn Tool>) -> Result<()> {
        let name = tool.name().to_owned();
        let valid =
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid {
            return Err(Error::invalid_input(format!(
                "tool name {name:?} is not valid: use letters, digits, `_` and `-`"
            )));
        }
        if self.tools.contains_key(&name) {
            return Err(Error::invalid_input(format!("a tool named `{name}` is already registered")));
        }
        self.tools.insert(name, tool);
        Ok(())
    }

    /// The tool called `name`.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Tool>> {
        self.tools.get(name)
    }

    /// The specs to offer a model, sorted by name.
    #[must_use]
    pub fn specs(&self) -> Vec<ToolSpec> {
        self.tools.values().map(|t| t.spec()).collect()
    }

    /// Runs a model's tool call, emitting [`Event::ToolStart`] and [`Event::ToolEnd`]. An unknown
    /// tool is an [`Error::Tool`] listing the known ones, so an agent can show it to the model.
    pub async fn call(&self, call: &ToolCall, ctx: &RunContext) -> Result<ToolOutput> {
        let tool = self.tools.get(&call.name).ok_or_else(|| {
            let known: Vec<&str> = self.tools.keys().map(String::as_str).collect();
            Error::tool(&call.name, format!("no such tool; available tools: {}", known.join(", ")))
        })?;
        ctx.emit(Event::ToolStart { name: call.name.clone(), arguments: call.arguments.clone() });
        let result = tool.call(call.arguments.clone(), ctx).await;
        let shown = match &result {
            Ok(out) => out.content.clone(),
            Err(e) => format!("error: {e}"),
        };
        ctx.emit(Event::ToolEnd { name: call.name.clone(), output: shown });
        result
    }

    /// Number of tools.
    #[must_use]
    pub fn len(&self) -> usize {
        self.tools.len()
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use catena_core::{ErrorKind, TypedTool, async_trait};

    struct Echo;
    #[derive(serde::Deserialize, schemars::JsonSchema)]
    struct EchoArgs {
        text: String,
    }
    #[async_trait]
    impl TypedTool for Echo {
        type Args = EchoArgs;
        const NAME: &'static str = "echo";
        const DESCRIPTION: &'static str = "Echoes.";
        async fn run(&self, args: EchoArgs, _: &RunContext) -> Result<ToolOutput> {
            Ok(ToolOutput::text(args.text))
        }
    }

    #[tokio::test]
    async fn unknown_tools_bad_args_and_duplicates_are_errors() {
        let reg = ToolRegistry::new().with(Echo).unwrap();
        assert!(ToolRegistry::new().with(Echo).unwrap().with(Echo).is_err());
        let ctx = RunContext::new();
        let unknown = ToolCall { id: "1".into(), name: "nope".into(), arguments: serde_json::json!({}) };
        let err = reg.call(&unknown, &ctx).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Tool);
        assert!(err.to_string().contains("available tools: echo"), "{err}");
        let bad = ToolCall { id: "2".into(), name: "echo".into(), arguments: serde_json::json!({"text": 5}) };
        let err = reg.call(&bad, &ctx).await.unwrap_err();
        assert!(err.to_string().contains("invalid arguments"), "{err}");
    }
}
