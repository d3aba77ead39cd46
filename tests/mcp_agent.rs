//! Agents on the local agent model (Qwen2.5-Coder-1.5B-Instruct through llama.cpp, greedy) whose
//! tools come over the Model Context Protocol: one from the protocol's reference server on npm
//! (`get-sum` of `@modelcontextprotocol/server-everything`), one from a second catena process
//! (`catena mcp serve`). The model's call is decoded under a grammar built from the remote
//! server's own schema, so it parses; the assertions are on the call, the remote result and the
//! number in the answer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic, missing_docs)]
#![cfg(feature = "mcp")]

use std::path::PathBuf;
use std::sync::Arc;

use catena::agents::{AgentExecutor, EarlyStopping, ExecutorConfig, ToolCallingAgent};
use catena::core::{ChatModel, RunContext, Tool, ToolChoice};
use catena::models::{LlamaChatModel, LlamaOptions};
use catena::tools::ToolRegistry;
use catena::tools::mcp::{McpClient, McpServerConfig};
use tokio::sync::OnceCell;

async fn agent_model() -> Arc<dyn ChatModel> {
    static MODEL: OnceCell<Arc<LlamaChatModel>> = OnceCell::const_new();
    let model = MODEL
        .get_or_init(|| async {
            Arc::new(LlamaChatModel::load_named("agent", LlamaOptions::default()).await.unwrap())
        })
        .await;
    model.clone()
}

fn executor(model: Arc<dyn ChatModel>, tools: ToolRegistry) -> AgentExecutor {
    let agent = ToolCallingAgent::new(model)
        .with_system_prompt(
            "You are a helpful assistant. When a tool has answered, reply to the user in plain words using its result.",
        )
        .with_first_tool_choice(ToolChoice::Required)
        .with_max_tokens(96);
    // As the agent REPL does: a repeated call ends the tool use and the model answers from the
    // results it has (small models tend to call a tool again instead of answering).
    let limits = ExecutorConfig {
        max_iterations: 3,
        max_repeats: 0,
        early_stopping: EarlyStopping::Generate,
        ..ExecutorConfig::default()
    };
    AgentExecutor::new(agent, tools).with_config(limits)
}

#[tokio::test]
async fn the_local_agent_answers_with_a_tool_of_the_reference_npm_server() {
    let data = std::env::var_os("CATENA_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/catena/data"));
    let server = data.join("mcp/node_modules/.bin/mcp-server-everything");
    if !server.exists() {
        assert!(std::env::var_os("CATENA_REQUIRE_DATA").is_none(), "run scripts/fetch-data.sh");
        return;
    }
    let client =
        McpClient::connect("everything", McpServerConfig::stdio(server.to_string_lossy(), ["stdio"]))
            .await
            .unwrap();
    let sum =
        client.tools().await.unwrap().into_iter().find(|t| t.name() == "get-sum").expect("get-sum listed");
    // The schema the grammar is built from is the remote server's own.
    assert_eq!(sum.parameters()["properties"]["a"]["type"], "number");
    let tools = ToolRegistry::new().with(sum).unwrap();

    let out = executor(agent_model().await, tools)
        .run("What is 1234 plus 5678?", &RunContext::new())
        .await
        .unwrap();
    eprintln!("{out:#?}");
    let step = out.steps.first().expect("the model called a tool");
    let call = step.call.as_ref().expect("the call parsed");
    assert_eq!(call.name, "get-sum");
    let mut numbers = [call.arguments["a"].as_f64().unwrap(), call.arguments["b"].as_f64().unwrap()];
    numbers.sort_by(f64::total_cmp);
    assert_eq!(numbers, [1234.0, 5678.0], "{:?}", call.arguments);
    assert!(!step.failed && step.observation.contains("6912"), "{}", step.observation);
    assert!(out.answer.replace(',', "").contains("6912"), "{}", out.answer);
}

#[tokio::test]
async fn a_second_catena_serves_its_calculator_to_the_local_agent() {
    let server =
        McpServerConfig::stdio(env!("CARGO_BIN_EXE_catena"), ["mcp", "serve", "--tools", "calculator"]);
    let client = McpClient::connect("catena", server).await.unwrap();
    let tools = client.tools().await.unwrap();
    assert_eq!(tools.iter().map(|t| t.name().to_owned()).collect::<Vec<_>>(), ["calculator"]);
    let tools = tools.into_iter().fold(ToolRegistry::new(), |registry, tool| registry.with(tool).unwrap());

    let out = executor(agent_model().await, tools).run("What is 17 * 23?", &RunContext::new()).await.unwrap();
    eprintln!("{out:#?}");
    let step = out.steps.first().expect("the model called a tool");
    assert_eq!(step.call.as_ref().unwrap().name, "calculator");
    assert!(!step.failed && step.observation.contains("391"), "{}", step.observation);
    assert!(out.answer.contains("391"), "{}", out.answer);
}
