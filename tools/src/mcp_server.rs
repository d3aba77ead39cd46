//! Serving a [`ToolRegistry`] as an MCP server: [`McpToolServer`].

use std::sync::Arc;

use catena_core::{Error, Result, RunContext, ToolCall};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ListToolsResult, PaginatedRequestParams,
    ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};
use serde_json::{Value, json};

use crate::ToolRegistry;

/// Any [`ToolRegistry`] as a Model Context Protocol server: its tools are listed with their
/// schemas (and `readOnlyHint` from [`Tool::read_only`](catena_core::Tool::read_only)), calls go
/// through the registry's own rules (validation, policy, timeouts, confirmation), a tool's
/// error is a result with `isError` the client's model can read, and a client's cancellation
/// cancels the call.
///
/// ```no_run
/// use catena_tools::{Calculator, DateTimeTool, ToolRegistry};
/// use catena_tools::mcp::McpToolServer;
///
/// # async fn demo() -> catena_core::Result<()> {
/// let tools = ToolRegistry::new().with(Calculator)?.with(DateTimeTool::new())?;
/// // Speaks MCP on stdin and stdout until the client leaves.
/// McpToolServer::new(tools).serve_stdio().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct McpToolServer {
    tools: Arc<ToolRegistry>,
    name: String,
    instructions: Option<String>,
}

impl std::fmt::Debug for McpToolServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpToolServer").field("name", &self.name).field("tools", &self.tools).finish()
    }
}

impl McpToolServer {
    /// Serves `tools`, introducing itself as `catena`.
    #[must_use]
    pub fn new(tools: ToolRegistry) -> Self {
        Self { tools: Arc::new(tools), name: "catena".into(), instructions: None }
    }

    /// The name the server gives clients.
    #[must_use]
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Instructions clients may show their model.
    #[must_use]
    pub fn with_instructions(mut self, instructions: impl Into<String>) -> Self {
        self.instructions = Some(instructions.into());
        self
    }

    /// Speaks MCP on this process's stdin and stdout until the client disconnects.
    ///
    /// # Errors
    /// The handshake fails.
    pub async fn serve_stdio(self) -> Result<()> {
        self.serve_on(rmcp::transport::stdio()).await
    }

    /// Speaks MCP over any byte stream pair (a socket, a pipe) until the client disconnects.
    ///
    /// # Errors
    /// The handshake fails.
    pub async fn serve_on<R, W>(self, io: (R, W)) -> Result<()>
    where
        R: tokio::io::AsyncRead + Send + Unpin + 'static,
        W: tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        let running = self
            .serve(io)
            .await
            .map_err(|e| Error::tool("mcp-server", format!("the MCP handshake failed: {e}")))?;
        running
            .waiting()
            .await
            .map_err(|e| Error::tool("mcp-server", format!("the session ended badly: {e}")))?;
        Ok(())
    }
}

fn from_json<T: serde::de::DeserializeOwned>(value: Value) -> std::result::Result<T, ErrorData> {
    serde_json::from_value(value).map_err(|e| ErrorData::internal_error(e.to_string(), None))
}

impl ServerHandler for McpToolServer {
    fn get_info(&self) -> ServerConfig {
        let mut info = ServerConfig::default();
        if let Ok(capabilities) = serde_json::from_value(json!({"tools": {"listChanged": false}})) {
            info.capabilities = capabilities;
        }
        if let Ok(implementation) =
            serde_json::from_value(json!({"name": self.name, "version": env!("CARGO_PKG_VERSION")}))
        {
            info.server_info = implementation;
        }
        info.instructions.clone_from(&self.instructions);
        info
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> std::result::Result<ListToolsResult, ErrorData> {
        let tools: Vec<Value> = self
            .tools
            .specs()
            .into_iter()
            .map(|spec| {
                let read_only = self.tools.get(&spec.name).is_some_and(|t| t.read_only());
                json!({
                    "name": spec.name,
                    "description": spec.description,
                    "inputSchema": spec.parameters,
                    "annotations": {"readOnlyHint": read_only},
                })
            })
            .collect();
        from_json(json!({ "tools": tools }))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> std::result::Result<CallToolResponse, ErrorData> {
        let call = ToolCall {
            id: "mcp".into(),
            name: request.name.to_string(),
            arguments: request.arguments.map_or_else(|| json!({}), Value::Object),
        };
        let ctx = RunContext::new();
        // The client's cancellation (or its disconnecting) cancels the call.
        let cancel = ctx.clone();
        let token = context.ct.clone();
        let watcher = tokio::spawn(async move {
            token.cancelled().await;
            cancel.cancel();
        });
        let result = self.tools.call(&call, &ctx).await;
        watcher.abort();
        let result: CallToolResult = match result {
            Ok(out) => {
                let mut body = json!({"content": [{"type": "text", "text": out.content}], "isError": false});
                if let (Some(artifact), Some(map)) = (out.artifact, body.as_object_mut()) {
                    map.insert("structuredContent".into(), json!({ "artifact": artifact }));
                }
                from_json(body)?
            }
            Err(e) => {
                from_json(json!({"content": [{"type": "text", "text": e.to_string()}], "isError": true}))?
            }
        };
        Ok(CallToolResponse::Complete(result))
    }
}
