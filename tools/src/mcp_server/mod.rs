//! Serving a [`ToolRegistry`] (and resources and prompts) as an MCP server: [`McpToolServer`].

// Logging, sampling and `resources/subscribe` are deprecated by the protocol's 2026-07-28
// revision (SEP-2577); the 2025 revisions that clients speak today have them, so this server does.
#![allow(deprecated)]

pub(crate) mod content;
pub(crate) mod prompts;
pub(crate) mod resources;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use catena_core::{Error, Event, LogLevel, Message, Result, Role, RunContext, ToolCall};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CompleteRequestParams, CompleteResult, GetPromptRequestParams,
    GetPromptResponse, ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult, ListToolsResult,
    LoggingLevel, PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResponse, ServerConfig,
    SetLevelRequestParams, SubscribeRequestParams, UnsubscribeRequestParams,
};
use rmcp::service::{Peer, RequestContext};
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};
use serde_json::{Value, json};

use self::prompts::ServedPrompt;
use self::resources::ResourceSource;
use crate::ToolRegistry;

/// Connected clients that subscribed to resources, by session.
type Subscribers = Arc<Mutex<HashMap<u64, (Peer<RoleServer>, HashSet<String>)>>>;

/// Any [`ToolRegistry`] as a Model Context Protocol server, with resources and prompts if you
/// add them.
///
/// - **Tools**: listed with their schemas (and `readOnlyHint` from
///   [`Tool::read_only`](catena_core::Tool::read_only)); calls go through the registry's own
///   rules (validation, policy, timeouts, confirmation); a tool's error is a result with
///   `isError` the client's model can read; a client's cancellation cancels the call. A tool's
///   [`Event::Log`] and [`Event::Warning`] events reach the client as log notifications (at the
///   level it set), its [`Event::Progress`] events as progress notifications, and a tool can ask
///   the client's model or user through the [`McpClientPeer`] in its context. Results made with
///   [`tool_output`](super::mcp::tool_output) carry images, audio and embedded resources.
/// - **Resources** from any number of [`ResourceSource`]s
///   ([`StaticResources`](super::mcp::StaticResources), a store's documents with
///   [`StoreResources`](super::mcp::StoreResources)); clients may subscribe, and
///   [`McpToolServer::resource_updated`] tells the subscribers.
/// - **Prompts**: [`ServedPrompt`]s, from catena prompt templates or any function, with
///   argument completion.
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
    resources: Vec<Arc<dyn ResourceSource>>,
    prompts: Vec<ServedPrompt>,
    subscribers: Subscribers,
    /// This client's session: its number and the least severe log level it wants.
    session: u64,
    log_level: Arc<Mutex<LogLevel>>,
}

impl std::fmt::Debug for McpToolServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpToolServer")
            .field("name", &self.name)
            .field("tools", &self.tools)
            .field("resources", &self.resources.len())
            .field("prompts", &self.prompts)
            .finish_non_exhaustive()
    }
}

impl From<ToolRegistry> for McpToolServer {
    fn from(tools: ToolRegistry) -> Self {
        Self::new(tools)
    }
}

static SESSIONS: AtomicU64 = AtomicU64::new(1);

impl McpToolServer {
    /// Serves `tools`, introducing itself as `catena`.
    #[must_use]
    pub fn new(tools: ToolRegistry) -> Self {
        Self {
            tools: Arc::new(tools),
            name: "catena".into(),
            instructions: None,
            resources: Vec::new(),
            prompts: Vec::new(),
            subscribers: Subscribers::default(),
            session: SESSIONS.fetch_add(1, Ordering::Relaxed),
            log_level: Arc::new(Mutex::new(LogLevel::Info)),
        }
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

    /// Adds a source of resources.
    #[must_use]
    pub fn with_resources(mut self, source: impl ResourceSource + 'static) -> Self {
        self.resources.push(Arc::new(source));
        self
    }

    /// Adds a prompt.
    #[must_use]
    pub fn with_prompt(mut self, prompt: ServedPrompt) -> Self {
        self.prompts.push(prompt);
        self
    }

    /// The same server for one more client: tools, resources, prompts and subscribers shared,
    /// its own log level. A transport serving many clients (streamable HTTP) makes one per
    /// session.
    #[must_use]
    pub fn session(&self) -> Self {
        Self {
            session: SESSIONS.fetch_add(1, Ordering::Relaxed),
            log_level: Arc::new(Mutex::new(LogLevel::Info)),
            ..self.clone()
        }
    }

    /// What it offers, in one line for a person: the tools, the prompts, whether it has resources.
    #[must_use]
    pub fn describe(&self) -> String {
        let tools: Vec<String> = self.tools.specs().into_iter().map(|s| s.name).collect();
        let mut line = format!("tools {}", tools.join(", "));
        if !self.prompts.is_empty() {
            let prompts: Vec<&str> = self.prompts.iter().map(ServedPrompt::name).collect();
            line.push_str(&format!("; prompts {}", prompts.join(", ")));
        }
        if !self.resources.is_empty() {
            line.push_str("; resources");
        }
        line
    }

    /// Tells every client subscribed to `uri` that it changed (a client that has gone is
    /// forgotten).
    pub async fn resource_updated(&self, uri: &str) {
        let peers: Vec<(u64, Peer<RoleServer>)> = self
            .subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(_, (_, uris))| uris.contains(uri))
            .map(|(session, (peer, _))| (*session, peer.clone()))
            .collect();
        for (session, peer) in peers {
            let Ok(params) = from_json(json!({ "uri": uri })) else { continue };
            if peer.notify_resource_updated(params).await.is_err() {
                self.subscribers.lock().unwrap_or_else(PoisonError::into_inner).remove(&session);
            }
        }
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

    fn min_log_level(&self) -> LogLevel {
        *self.log_level.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends a tool's events to the client as they come, until the call's context is dropped.
    fn forward_events(
        &self,
        context: &RequestContext<RoleServer>,
    ) -> (tokio::sync::mpsc::UnboundedSender<Event>, tokio::task::JoinHandle<()>) {
        let (sender, mut events) = tokio::sync::mpsc::unbounded_channel::<Event>();
        let peer = context.peer.clone();
        let progress_token = context.meta.get_progress_token();
        let min_level = self.min_log_level();
        let logger = self.name.clone();
        let forwarder = tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                match event {
                    Event::Progress { task, done, total } => {
                        let Some(token) = &progress_token else { continue };
                        let mut params = json!({"progressToken": token, "progress": done, "message": task});
                        if let (Some(total), Some(map)) = (total, params.as_object_mut()) {
                            map.insert("total".into(), json!(total));
                        }
                        if let Ok(params) = from_json(params) {
                            let _ = peer.notify_progress(params).await;
                        }
                    }
                    Event::Log { level, message } if level >= min_level => {
                        log(&peer, &logger, level, &message).await;
                    }
                    Event::Warning { message } if LogLevel::Warning >= min_level => {
                        log(&peer, &logger, LogLevel::Warning, &message).await;
                    }
                    _ => {}
                }
            }
        });
        (sender, forwarder)
    }
}

async fn log(peer: &Peer<RoleServer>, logger: &str, level: LogLevel, message: &str) {
    let level = match level {
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Notice => "notice",
        LogLevel::Warning => "warning",
        _ => "error",
    };
    if let Ok(params) = from_json(json!({"level": level, "logger": logger, "data": message})) {
        let _ = peer.notify_logging_message(params).await;
    }
}

fn from_json<T: serde::de::DeserializeOwned>(value: Value) -> std::result::Result<T, ErrorData> {
    serde_json::from_value(value).map_err(|e| ErrorData::internal_error(e.to_string(), None))
}

/// A finished result: `"resultType": "complete"` added (see above).
fn finished<T: serde::de::DeserializeOwned>(mut value: Value) -> std::result::Result<T, ErrorData> {
    if let Some(map) = value.as_object_mut() {
        map.insert("resultType".into(), json!("complete"));
    }
    from_json(value)
}

// Results carry `"resultType": "complete"`: the 2026-07-28 revision tells a finished result
// from one that needs input by it, and rmcp strips it again for clients of earlier revisions.

/// A catena error as the protocol's: bad input is the client's fault, the rest the server's.
fn protocol_error(error: &Error) -> ErrorData {
    match error.kind() {
        catena_core::ErrorKind::InvalidInput => ErrorData::invalid_params(error.to_string(), None),
        _ => ErrorData::internal_error(error.to_string(), None),
    }
}

/// The connected MCP client, as a tool running under [`McpToolServer`] sees it: its context
/// carries one (`ctx.extension::<McpClientPeer>()`), so the tool can ask the client's model
/// (sampling) or its user (elicitation), when the client offers them.
///
/// ```
/// use catena_core::{Result, RunContext, ToolOutput, TypedTool, async_trait};
/// use catena_tools::mcp::McpClientPeer;
/// # #[derive(serde::Deserialize, schemars::JsonSchema)] struct Args { text: String }
/// struct Summarize;
///
/// #[async_trait]
/// impl TypedTool for Summarize {
///     type Args = Args;
///     const NAME: &'static str = "summarize";
///     const DESCRIPTION: &'static str = "Summarizes a text with the client's own model.";
///     async fn run(&self, args: Args, ctx: &RunContext) -> Result<ToolOutput> {
///         let Some(client) = ctx.extension::<McpClientPeer>().filter(|c| c.can_sample()) else {
///             return Ok(ToolOutput::text("no model to ask: the text is\n".to_owned() + &args.text));
///         };
///         let prompt = catena_core::Message::user(format!("Summarize:\n{}", args.text));
///         Ok(ToolOutput::text(client.sample(&[prompt], 200).await?))
///     }
/// }
/// ```
#[derive(Clone)]
pub struct McpClientPeer {
    peer: Peer<RoleServer>,
}

impl std::fmt::Debug for McpClientPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpClientPeer").finish_non_exhaustive()
    }
}

/// What a user did with an elicitation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ElicitAction {
    /// Gave the values asked for.
    Accept,
    /// Said no.
    Decline,
    /// Dismissed the question.
    Cancel,
}

/// A user's answer to [`McpClientPeer::elicit`].
#[derive(Debug, Clone, PartialEq)]
pub struct Elicitation {
    /// What they did.
    pub action: ElicitAction,
    /// The values, when they accepted.
    pub content: Option<Value>,
}

impl McpClientPeer {
    fn capability(&self, name: &str) -> bool {
        self.peer
            .peer_info()
            .and_then(|info| serde_json::to_value(&info.capabilities).ok())
            .is_some_and(|capabilities| capabilities.get(name).is_some_and(|c| !c.is_null()))
    }

    /// Whether the client lets servers use its model.
    #[must_use]
    pub fn can_sample(&self) -> bool {
        self.capability("sampling")
    }

    /// Whether the client lets servers ask its user.
    #[must_use]
    pub fn can_elicit(&self) -> bool {
        self.capability("elicitation")
    }

    /// Asks the client's model to answer `messages` (user and assistant turns; system text is
    /// sent as the request's system prompt), in at most `max_tokens`; returns its text.
    ///
    /// # Errors
    /// [`Error::Tool`] when the client refuses, lacks sampling, or answers with no text.
    pub async fn sample(&self, messages: &[Message], max_tokens: u32) -> Result<String> {
        let system: Vec<&str> =
            messages.iter().filter(|m| m.role == Role::System).map(|m| m.content.as_str()).collect();
        let turns: Vec<Value> = messages
            .iter()
            .filter(|m| m.role != Role::System)
            .map(|m| {
                let role = if m.role == Role::Assistant { "assistant" } else { "user" };
                json!({"role": role, "content": {"type": "text", "text": m.content}})
            })
            .collect();
        let mut params = json!({"messages": turns, "maxTokens": max_tokens});
        if let (false, Some(map)) = (system.is_empty(), params.as_object_mut()) {
            map.insert("systemPrompt".into(), json!(system.join("\n\n")));
        }
        let params =
            serde_json::from_value(params).map_err(|e| Error::tool("mcp-sampling", e.to_string()))?;
        let result = self
            .peer
            .create_message(params)
            .await
            .map_err(|e| Error::tool("mcp-sampling", format!("the client did not sample: {e}")))?;
        let result = serde_json::to_value(&result).unwrap_or_default();
        let content = result.get("content").cloned().unwrap_or_default();
        let parts = content.as_array().cloned().unwrap_or_else(|| vec![content.clone()]);
        let text: Vec<&str> =
            parts.iter().filter_map(|part| part.get("text").and_then(Value::as_str)).collect();
        if text.is_empty() {
            return Err(Error::tool("mcp-sampling", "the client's model answered with no text"));
        }
        Ok(text.concat())
    }

    /// Asks the client's user for values matching `schema` (an object of primitive-typed
    /// properties, as the protocol allows), showing `message`.
    ///
    /// # Errors
    /// [`Error::Tool`] when the client refuses, lacks elicitation, or the schema is not one the
    /// protocol allows.
    pub async fn elicit(&self, message: &str, schema: Value) -> Result<Elicitation> {
        let params =
            serde_json::from_value(json!({"mode": "form", "message": message, "requestedSchema": schema}))
                .map_err(|e| {
                    Error::tool("mcp-elicitation", format!("the schema is not one MCP allows: {e}"))
                })?;
        let result =
            self.peer.create_elicitation(params).await.map_err(|e| {
                Error::tool("mcp-elicitation", format!("the client did not ask its user: {e}"))
            })?;
        let action = match serde_json::to_value(result.action).unwrap_or_default().as_str() {
            Some("accept") => ElicitAction::Accept,
            Some("decline") => ElicitAction::Decline,
            _ => ElicitAction::Cancel,
        };
        Ok(Elicitation { action, content: result.content })
    }
}

impl ServerHandler for McpToolServer {
    fn get_info(&self) -> ServerConfig {
        let mut capabilities = json!({"tools": {"listChanged": false}, "logging": {}});
        if let Some(map) = capabilities.as_object_mut() {
            if !self.resources.is_empty() {
                map.insert("resources".into(), json!({"subscribe": true, "listChanged": false}));
            }
            if !self.prompts.is_empty() {
                map.insert("prompts".into(), json!({"listChanged": false}));
                map.insert("completions".into(), json!({}));
            }
        }
        let mut info = ServerConfig::default();
        if let Ok(capabilities) = serde_json::from_value(capabilities) {
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
        finished(json!({ "tools": tools }))
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
        let (events, forwarder) = self.forward_events(&context);
        let ctx = RunContext::new()
            .with_events(events)
            .with_extension(McpClientPeer { peer: context.peer.clone() });
        // The client's cancellation (or its disconnecting) cancels the call.
        let cancel = ctx.cancellation().clone();
        let token = context.ct.clone();
        let watcher = tokio::spawn(async move {
            token.cancelled().await;
            cancel.cancel();
        });
        let result = self.tools.call(&call, &ctx).await;
        watcher.abort();
        drop(ctx);
        // Every notification the tool caused goes out before its result. A tool that left a
        // task holding its context running does not hold the answer up for long.
        let _ = tokio::time::timeout(Duration::from_secs(2), forwarder).await;
        let body = match result {
            Ok(out) => content::to_result(out),
            Err(e) => json!({"content": [{"type": "text", "text": e.to_string()}], "isError": true}),
        };
        Ok(CallToolResponse::Complete(finished(body)?))
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> std::result::Result<(), ErrorData> {
        let level = match request.level {
            LoggingLevel::Debug => LogLevel::Debug,
            LoggingLevel::Info => LogLevel::Info,
            LoggingLevel::Notice => LogLevel::Notice,
            LoggingLevel::Warning => LogLevel::Warning,
            _ => LogLevel::Error,
        };
        *self.log_level.lock().unwrap_or_else(PoisonError::into_inner) = level;
        Ok(())
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> std::result::Result<ListResourcesResult, ErrorData> {
        let mut listed = Vec::new();
        for source in &self.resources {
            for resource in source.list().await.map_err(|e| protocol_error(&e))? {
                let mut entry = json!({"uri": resource.uri, "name": resource.name});
                if let Some(map) = entry.as_object_mut() {
                    if let Some(mime) = resource.mime_type {
                        map.insert("mimeType".into(), json!(mime));
                    }
                    if let Some(description) = resource.description {
                        map.insert("description".into(), json!(description));
                    }
                }
                listed.push(entry);
            }
        }
        finished(json!({ "resources": listed }))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> std::result::Result<ListResourceTemplatesResult, ErrorData> {
        let templates: Vec<Value> = self
            .resources
            .iter()
            .flat_map(|source| source.templates())
            .map(|t| {
                json!({"uriTemplate": t.uri_template, "name": t.name, "mimeType": t.mime_type, "description": t.description})
            })
            .collect();
        finished(json!({ "resourceTemplates": templates }))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> std::result::Result<ReadResourceResponse, ErrorData> {
        let uri = request.uri.as_str();
        for source in &self.resources {
            if let Some(contents) = source.read(uri).await.map_err(|e| protocol_error(&e))? {
                let contents: Vec<Value> = contents.iter().map(content::ResourceContent::to_json).collect();
                return Ok(ReadResourceResponse::Complete(finished(json!({ "contents": contents }))?));
            }
        }
        Err(ErrorData::resource_not_found(
            format!("no resource at `{uri}`: list the resources to see what there is"),
            Some(json!({ "uri": uri })),
        ))
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> std::result::Result<(), ErrorData> {
        let mut subscribers = self.subscribers.lock().unwrap_or_else(PoisonError::into_inner);
        let (_, uris) =
            subscribers.entry(self.session).or_insert_with(|| (context.peer.clone(), HashSet::new()));
        uris.insert(request.uri.to_string());
        Ok(())
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> std::result::Result<(), ErrorData> {
        let mut subscribers = self.subscribers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, uris)) = subscribers.get_mut(&self.session) {
            uris.remove(request.uri.as_str());
        }
        Ok(())
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> std::result::Result<ListPromptsResult, ErrorData> {
        let prompts: Vec<Value> = self.prompts.iter().map(ServedPrompt::listing).collect();
        finished(json!({ "prompts": prompts }))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> std::result::Result<GetPromptResponse, ErrorData> {
        let Some(prompt) = self.prompts.iter().find(|p| p.name() == request.name) else {
            return Err(ErrorData::invalid_params(format!("no prompt named `{}`", request.name), None));
        };
        let arguments: BTreeMap<String, String> = request
            .arguments
            .unwrap_or_default()
            .into_iter()
            .map(|(name, value)| {
                let text = value.as_str().map_or_else(|| value.to_string(), str::to_owned);
                (name, text)
            })
            .collect();
        let messages = prompt.render(&arguments).map_err(|e| protocol_error(&e))?;
        let messages: Vec<Value> = messages.iter().map(prompts::message_json).collect();
        Ok(GetPromptResponse::Complete(finished(json!({ "messages": messages }))?))
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> std::result::Result<CompleteResult, ErrorData> {
        let request = serde_json::to_value(&request).unwrap_or_default();
        let field = |pointer: &str| request.pointer(pointer).and_then(Value::as_str);
        let argument = field("/argument/name").unwrap_or_default();
        let typed = field("/argument/value").unwrap_or_default();
        let values: Vec<String> = match (field("/ref/type"), field("/ref/name")) {
            (Some("ref/prompt"), Some(name)) => self
                .prompts
                .iter()
                .find(|p| p.name() == name)
                .map(|p| p.complete(argument, typed))
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        let total = values.len();
        // The protocol caps a completion at 100 values.
        let values: Vec<String> = values.into_iter().take(100).collect();
        finished(json!({"completion": {"values": values, "total": total, "hasMore": total > 100}}))
    }
}
