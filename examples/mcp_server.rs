//! Serve your own tools to any MCP client (Claude Desktop, VS Code, Cursor, another agent).
//!
//! ```text
//! cargo build --example mcp_server
//! ```
//!
//! Then tell a client to start it; in Claude Desktop's or Cursor's configuration:
//!
//! ```json
//! {"mcpServers": {"units": {"command": "/path/to/target/debug/examples/mcp_server"}}}
//! ```
//!
//! or try it from the command line with catena's own client:
//!
//! ```text
//! catena mcp tools target/debug/examples/mcp_server
//! catena mcp call convert_temperature --args '{"value": 100, "from": "F"}' target/debug/examples/mcp_server
//! ```
//!
//! The server speaks MCP on stdin and stdout, so it prints nothing else there; its log goes to
//! stderr. What it offers: a tool of our own beside the built-in calculator, a prompt, and a
//! document as a resource. Every call goes through the registry's rules (arguments checked
//! against the schema, timeouts) before the tool runs.

use catena::core::{ChatPromptTemplate, Error, Result, tool};
use catena::tools::mcp::{McpToolServer, ServedPrompt, StaticResources};
use catena::tools::{Calculator, ToolRegistry};

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
        // A tool's error reaches the client as a result with `isError`, for its model to read.
        other => {
            Err(Error::tool("convert_temperature", format!("unknown unit {other:?}; use \"C\" or \"F\"")))
        }
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    // 1. The tools: any registry. Clients see each tool's name, description and JSON Schema.
    let tools = ToolRegistry::new().with(ConvertTemperature)?.with(Calculator)?;

    // 2. A prompt a client can offer its user: the template's variables become its arguments.
    let template = ChatPromptTemplate::new()
        .system("You convert units for cooks. Use the convert_temperature tool; round to whole degrees.")?
        .user("{question}")?;
    let prompt = ServedPrompt::from_template("kitchen_units", "Ask a cooking unit question.", template);

    // 3. A document the client can read (or attach to its conversation).
    let resources = StaticResources::new().text(
        "units://oven-temperatures",
        "Oven temperatures",
        "text/markdown",
        "| Setting | °C | °F |\n|---|---|---|\n| Low | 150 | 300 |\n| Moderate | 180 | 350 |\n| Hot | 220 | 425 |\n",
    );

    // 4. Serve until the client closes stdin.
    McpToolServer::new(tools)
        .with_name("units")
        .with_instructions("Temperature conversion and arithmetic for recipes.")
        .with_prompt(prompt)
        .with_resources(resources)
        .serve_stdio()
        .await
}
