//! Give the agent a tool of your own: one struct, one arguments type, one `run`.
//!
//! ```text
//! cargo run --example custom_tool
//! cargo run --example custom_tool -- "Convert 21.5 degrees Celsius to Fahrenheit"
//! ```
//!
//! The tool below converts temperatures. `#[tool]` turns the function into a tool: its doc comment
//! is the description the model reads, its parameters (with their doc comments) become the JSON
//! Schema of the arguments, and the registry checks every call against that schema before the
//! function runs. (For a tool with state, a database handle say, implement `TypedTool` on a
//! struct instead: docs/guides/tools.md.)

use std::sync::Arc;

use catena::agents::{AgentExecutor, ToolCallingAgent};
use catena::core::{Error, Result, RunContext, ToolChoice, tool};
use catena::models::LlamaChatModel;
use catena::tools::ToolRegistry;

// ---- the tool: 16 lines --------------------------------------------------------------------

/// Converts a temperature between Celsius ("C") and Fahrenheit ("F").
#[tool]
async fn convert_temperature(
    /// The temperature to convert.
    value: f64,
    /// The unit it is in: "C" or "F".
    from: String,
) -> Result<String> {
    match from.trim() {
        "C" | "c" => Ok(format!("{value} °C = {:.1} °F", value * 9.0 / 5.0 + 32.0)),
        "F" | "f" => Ok(format!("{value} °F = {:.1} °C", (value - 32.0) * 5.0 / 9.0)),
        // An error goes back to the model as the observation, so it can correct its call.
        other => {
            Err(Error::tool("convert_temperature", format!("unknown unit {other:?}; use \"C\" or \"F\"")))
        }
    }
}

// ---- giving it to an agent -------------------------------------------------------------------

#[tokio::main]
async fn main() -> Result<()> {
    let question =
        std::env::args().nth(1).unwrap_or_else(|| "What is 100 degrees Fahrenheit in Celsius?".into());

    // `#[tool]` made the unit struct `ConvertTemperature`. The registry is the agent's toolbox;
    // `with` checks the name and the schema up front.
    let tools = ToolRegistry::new().with(ConvertTemperature)?;

    // The local default model calls tools through a grammar built from their schemas, so its
    // call always names this tool and has a number and a unit. The first reply must be a call.
    let model = Arc::new(LlamaChatModel::load_default().await?);
    let agent =
        ToolCallingAgent::new(model).with_first_tool_choice(ToolChoice::Required).with_max_tokens(128);
    let executor = AgentExecutor::new(agent, tools).with_max_iterations(3);

    let out = executor.run(&question, &RunContext::new()).await?;
    for step in &out.steps {
        if let Some(call) = &step.call {
            println!("called {}({}) -> {}", call.name, call.arguments, step.observation);
        }
    }
    println!("answer: {}", out.answer);
    Ok(())
}
