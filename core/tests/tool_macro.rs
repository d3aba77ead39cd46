//! `#[tool]`: names, descriptions, schemas, optional arguments, the run context, output types and
//! errors of the generated tools.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]

use catena_core::{Error, ErrorKind, Event, Result, RunContext, Tool, ToolOutput, tool};
use serde_json::json;

/// Greets someone,
/// optionally loudly.
#[tool(name = "greet")]
async fn greeting(
    /// Who to greet.
    name: String,
    /// Shout the greeting.
    loud: Option<bool>,
    ctx: &RunContext,
) -> Result<String> {
    ctx.emit(Event::Warning { message: format!("greeting {name}") });
    let text = format!("Hello, {name}!");
    Ok(if loud.unwrap_or(false) { text.to_uppercase() } else { text })
}

/// Always refuses.
#[tool]
async fn refuse() -> Result<&'static str> {
    Err(Error::tool("refuse", "no"))
}

/// Returns an artifact too.
#[tool]
async fn with_artifact(
    /// A number.
    n: i64,
) -> Result<ToolOutput> {
    Ok(ToolOutput { content: n.to_string(), artifact: Some(json!({"n": n})) })
}

#[tokio::test]
async fn generated_tools_have_their_docs_schema_and_behaviour() {
    let tool = Greeting;
    assert_eq!(tool.name(), "greet");
    assert_eq!(tool.description(), "Greets someone, optionally loudly.");
    let schema = tool.parameters();
    assert_eq!(schema["properties"]["name"]["description"], "Who to greet.");
    assert_eq!(schema["required"], json!(["name"]), "Option arguments are optional: {schema}");
    assert!(schema.get("$schema").is_none() && schema["properties"].get("ctx").is_none());

    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = std::sync::Arc::clone(&seen);
    let ctx = RunContext::new().with_events(move |e: Event| sink.lock().unwrap().push(e));
    assert_eq!(tool.call(json!({"name": "Ada"}), &ctx).await.unwrap().content, "Hello, Ada!");
    assert_eq!(tool.call(json!({"name": "Ada", "loud": true}), &ctx).await.unwrap().content, "HELLO, ADA!");
    assert_eq!(seen.lock().unwrap().len(), 2, "the function got the run's context");
    assert_eq!(tool.call(json!({"loud": true}), &ctx).await.unwrap_err().kind(), ErrorKind::Tool);
    // The function is still an ordinary function.
    assert_eq!(greeting("Bo".into(), None, &ctx).await.unwrap(), "Hello, Bo!");

    assert_eq!(Refuse.call(json!({}), &ctx).await.unwrap_err().kind(), ErrorKind::Tool);
    let out = WithArtifact.call(json!({"n": 7}), &ctx).await.unwrap();
    assert_eq!((out.content.as_str(), out.artifact), ("7", Some(json!({"n": 7}))));
}
