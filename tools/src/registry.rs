//! [`ToolRegistry`]: the tools an agent may call, by name, with the rules every call goes through.
//!
//! A call passes, in order: the name lookup, the [`ToolPolicy`] (allow and deny lists), argument
//! validation against the tool's JSON Schema, the confirmation hook for tools that need one, and
//! then runs under the tool's timeout with panics caught. Each failure is an [`Error::Tool`]
//! whose message tells the model what to do differently, so an agent can hand it back as an
//! observation and let the model correct itself.
//!
//! Besides the tools added once, a registry can follow a [`ToolSource`]: tools that come and go
//! while it is in use (an MCP server's, which says when its list changed). Every lookup sees the
//! source's current list, so an agent offers the model what the server offers now.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use catena_core::{Error, Event, Result, RunContext, Tool, ToolCall, ToolOutput, ToolSpec, async_trait};
use futures::FutureExt;

/// How one tool is run. The defaults: 60 s timeout, result goes back to the model, no confirmation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToolOptions {
    /// Longest a call may run; `None` means no limit (cancellation still applies).
    pub timeout: Option<Duration>,
    /// The tool's output is the agent's final answer: no further model call.
    pub return_direct: bool,
    /// The [`Confirm`] hook must approve each call before it runs.
    pub needs_confirmation: bool,
}

impl Default for ToolOptions {
    fn default() -> Self {
        Self { timeout: Some(Duration::from_secs(60)), return_direct: false, needs_confirmation: false }
    }
}

impl ToolOptions {
    /// Sets the timeout.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Makes the tool's output the final answer.
    #[must_use]
    pub fn return_direct(mut self) -> Self {
        self.return_direct = true;
        self
    }

    /// Requires confirmation before every call.
    #[must_use]
    pub fn needs_confirmation(mut self) -> Self {
        self.needs_confirmation = true;
        self
    }
}

/// Asks whether a call may run; the `agent` REPL asks the person at the keyboard.
#[async_trait]
pub trait Confirm: Send + Sync {
    /// `true` to run the call, `false` to decline it (the model is told it was declined).
    async fn confirm(&self, call: &ToolCall) -> bool;
}

/// Which tools may run. An allow list, when set, names the only tools that may; the deny list
/// always wins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolPolicy {
    allow: Option<BTreeSet<String>>,
    deny: BTreeSet<String>,
}

impl ToolPolicy {
    /// Everything allowed.
    #[must_use]
    pub fn allow_all() -> Self {
        Self::default()
    }

    /// Only these tools may run.
    #[must_use]
    pub fn allow_only<S: Into<String>>(names: impl IntoIterator<Item = S>) -> Self {
        Self { allow: Some(names.into_iter().map(Into::into).collect()), deny: BTreeSet::new() }
    }

    /// These tools may not run.
    #[must_use]
    pub fn deny<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.deny.extend(names.into_iter().map(Into::into));
        self
    }

    /// Whether the tool called `name` may run.
    #[must_use]
    pub fn permits(&self, name: &str) -> bool {
        !self.deny.contains(name) && self.allow.as_ref().is_none_or(|allow| allow.contains(name))
    }
}

/// Tools that change while a registry is in use, such as an MCP server's
/// (`catena_tools::mcp::McpToolSet`). The registry asks [`generation`](Self::generation) on
/// every lookup and reads [`tools`](Self::tools) again only when it has moved, so both must be
/// cheap and must not block: a source refreshes its list in the background.
pub trait ToolSource: Send + Sync {
    /// A number that changes whenever [`tools`](Self::tools) would answer differently.
    fn generation(&self) -> u64;

    /// The tools now. A name already taken by a tool added to the registry directly, or by an
    /// earlier source, is skipped with a warning.
    fn tools(&self) -> Vec<Arc<dyn Tool>>;
}

/// What the registry built from its sources' lists, and the generations it was built at.
#[derive(Default)]
struct Live {
    generations: Vec<u64>,
    entries: Arc<BTreeMap<String, Arc<Entry>>>,
}

struct Entry {
    tool: Arc<dyn Tool>,
    /// Built once at registration: a typed tool's schema is generated on every `parameters()`
    /// call, and the agent loop offers the specs on every step.
    spec: ToolSpec,
    options: ToolOptions,
    validator: jsonschema::Validator,
}

impl Entry {
    /// Checks the tool's name and schema once, at registration.
    fn new(tool: Arc<dyn Tool>, options: ToolOptions) -> Result<Self> {
        let name = tool.name().to_owned();
        let valid =
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid {
            return Err(Error::invalid_input(format!(
                "tool name {name:?} is not valid: use letters, digits, `_` and `-`"
            )));
        }
        let spec = tool.spec();
        let schema = if spec.parameters.is_null() {
            serde_json::json!({"type": "object"})
        } else {
            spec.parameters.clone()
        };
        let validator = jsonschema::validator_for(&schema).map_err(|e| {
            Error::invalid_input(format!(
                "tool `{name}` has a parameters schema that is not valid JSON Schema: {e}"
            ))
        })?;
        Ok(Self { tool, spec, options, validator })
    }
}

/// Tools by name. Names must be unique and made of letters, digits, `_` and `-` (what every
/// tool-calling API accepts). Cloning shares the tools, and the sources.
#[derive(Clone, Default)]
pub struct ToolRegistry {
    tools: BTreeMap<String, Arc<Entry>>,
    sources: Vec<Arc<dyn ToolSource>>,
    /// Shared by clones, so a source's new list is checked once for all of them.
    live: Arc<std::sync::Mutex<Live>>,
    policy: ToolPolicy,
    confirm: Option<Arc<dyn Confirm>>,
}

impl std::fmt::Debug for ToolRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolRegistry")
            .field("tools", &self.tools.keys().collect::<Vec<_>>())
            .field("sources", &self.sources.len())
            .field("policy", &self.policy)
            .field("confirm", &self.confirm.is_some())
            .finish()
    }
}

impl ToolRegistry {
    /// No tools.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a tool with default options; a duplicate or malformed name, or a parameters schema
    /// that is not valid JSON Schema, is an [`Error::InvalidInput`].
    pub fn with(mut self, tool: impl Tool + 'static) -> Result<Self> {
        self.add(Arc::new(tool))?;
        Ok(self)
    }

    /// Adds a tool with these options.
    pub fn with_options(mut self, tool: impl Tool + 'static, options: ToolOptions) -> Result<Self> {
        self.add_with(Arc::new(tool), options)?;
        Ok(self)
    }

    /// Adds a shared tool with default options.
    pub fn add(&mut self, tool: Arc<dyn Tool>) -> Result<()> {
        self.add_with(tool, ToolOptions::default())
    }

    /// Adds a shared tool with these options.
    pub fn add_with(&mut self, tool: Arc<dyn Tool>, options: ToolOptions) -> Result<()> {
        let entry = Entry::new(tool, options)?;
        let name = entry.spec.name.clone();
        if self.tools.contains_key(&name) {
            return Err(Error::invalid_input(format!("a tool named `{name}` is already registered")));
        }
        self.tools.insert(name, Arc::new(entry));
        if !self.sources.is_empty() {
            // A source's tool of this name, if any, is now shadowed: list the sources again.
            self.live = Arc::default();
        }
        Ok(())
    }

    /// Follows `source`: its tools, as it lists them at each lookup, run with default options
    /// under this registry's policy and confirmation hook.
    #[must_use]
    pub fn with_source(mut self, source: Arc<dyn ToolSource>) -> Self {
        self.add_source(source);
        self
    }

    /// [`with_source`](Self::with_source) in place.
    pub fn add_source(&mut self, source: Arc<dyn ToolSource>) {
        self.sources.push(source);
        // A clone made before shares the cache but not the new source: start a cache of our own.
        self.live = Arc::default();
    }

    /// The sources' tools now, rebuilt only when a source's generation has moved.
    fn live(&self) -> Arc<BTreeMap<String, Arc<Entry>>> {
        if self.sources.is_empty() {
            return Arc::default();
        }
        let generations: Vec<u64> = self.sources.iter().map(|s| s.generation()).collect();
        // A poisoned lock only means another thread panicked while rebuilding: rebuild again.
        let mut live = self.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if live.generations != generations {
            let mut entries = BTreeMap::new();
            for tool in self.sources.iter().flat_map(|s| s.tools()) {
                let name = tool.name().to_owned();
                if self.tools.contains_key(&name) || entries.contains_key(&name) {
                    tracing::warn!(tool = %name, "a tool of this name is already registered; the source's is skipped");
                    continue;
                }
                match Entry::new(tool, ToolOptions::default()) {
                    Ok(entry) => {
                        entries.insert(name, Arc::new(entry));
                    }
                    Err(e) => tracing::warn!(tool = %name, "tool skipped: {e}"),
                }
            }
            *live = Live { generations, entries: Arc::new(entries) };
        }
        Arc::clone(&live.entries)
    }

    fn entry(&self, name: &str) -> Option<Arc<Entry>> {
        self.tools.get(name).cloned().or_else(|| self.live().get(name).cloned())
    }

    /// Every entry, those added directly and the sources' now, by name.
    fn entries(&self) -> BTreeMap<String, Arc<Entry>> {
        let mut all = (*self.live()).clone();
        all.extend(self.tools.iter().map(|(name, entry)| (name.clone(), Arc::clone(entry))));
        all
    }

    /// Replaces the policy (by default every registered tool may run).
    #[must_use]
    pub fn with_policy(mut self, policy: ToolPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Sets the hook that approves calls of tools marked [`ToolOptions::needs_confirmation`].
    /// Without one, such calls are declined.
    #[must_use]
    pub fn with_confirmation(mut self, confirm: Arc<dyn Confirm>) -> Self {
        self.confirm = Some(confirm);
        self
    }

    /// The tool called `name`.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<Arc<dyn Tool>> {
        self.entry(name).map(|e| Arc::clone(&e.tool))
    }

    /// How the tool called `name` is run.
    #[must_use]
    pub fn options(&self, name: &str) -> Option<ToolOptions> {
        self.entry(name).map(|e| e.options)
    }

    /// The policy in force.
    #[must_use]
    pub fn policy(&self) -> &ToolPolicy {
        &self.policy
    }

    /// The specs to offer a model, sorted by name: only the tools the policy permits, so a model
    /// is never tempted by a tool it may not call.
    #[must_use]
    pub fn specs(&self) -> Vec<ToolSpec> {
        self.entries()
            .into_values()
            .filter(|e| self.policy.permits(&e.spec.name))
            .map(|e| e.spec.clone())
            .collect()
    }

    /// Runs a model's tool call through its checks, in order: the name lookup, the
    /// [`ToolPolicy`], argument validation against the tool's JSON Schema, the confirmation hook,
    /// then the tool under its timeout with panics caught. Each failure is an [`Error::Tool`] whose
    /// message tells the model what to do differently. Emits
    /// [`Event::ToolStart`] and [`Event::ToolEnd`]. A declined confirmation is not an error: the
    /// output says so, for the model to read.
    ///
    /// Timeouts use tokio's timer: call it on a runtime with time enabled (`#[tokio::main]` and
    /// `enable_all()` runtimes are).
    pub async fn call(&self, call: &ToolCall, ctx: &RunContext) -> Result<ToolOutput> {
        self.run_call(call, false, ctx).await
    }

    /// [`call`](Self::call) for a call a person already approved: every rule applies except the
    /// [`Confirm`] hook, which is not asked again. What an agent paused for approval runs when
    /// resumed.
    ///
    /// # Errors
    /// As [`call`](Self::call).
    pub async fn call_approved(&self, call: &ToolCall, ctx: &RunContext) -> Result<ToolOutput> {
        self.run_call(call, true, ctx).await
    }

    async fn run_call(&self, call: &ToolCall, approved: bool, ctx: &RunContext) -> Result<ToolOutput> {
        let entry = self.entry(&call.name).ok_or_else(|| {
            let all = self.entries();
            let known: Vec<&str> =
                all.keys().map(String::as_str).filter(|n| self.policy.permits(n)).collect();
            Error::tool(&call.name, format!("no such tool; available tools: {}", known.join(", ")))
        })?;
        if !self.policy.permits(&call.name) {
            return Err(Error::tool(&call.name, "this tool is not allowed here; use another tool or answer"));
        }
        let problems: Vec<String> = entry
            .validator
            .iter_errors(&call.arguments)
            .take(5)
            .map(|e| {
                let at = e.instance_path().to_string();
                if at.is_empty() { e.to_string() } else { format!("{at}: {e}") }
            })
            .collect();
        if !problems.is_empty() {
            return Err(Error::tool(
                &call.name,
                format!(
                    "invalid arguments: {}. The arguments must match this JSON Schema: {}",
                    problems.join("; "),
                    entry.spec.parameters
                ),
            ));
        }
        if entry.options.needs_confirmation && !approved {
            let approved = match &self.confirm {
                Some(confirm) => confirm.confirm(call).await,
                None => false,
            };
            if !approved {
                let declined =
                    format!("The user declined to run `{}`. Do not retry it; answer without it.", call.name);
                ctx.emit(Event::ToolEnd { name: call.name.clone(), output: declined.clone() });
                return Ok(ToolOutput::text(declined));
            }
        }
        ctx.emit(Event::ToolStart { name: call.name.clone(), arguments: call.arguments.clone() });
        // The tool runs under its `execute_tool` span: what it calls (a model, a database) is
        // traced beneath it.
        let span = catena_core::telemetry::tool_span(ctx, &call.name, &call.id, &call.arguments);
        let result = {
            use tracing::Instrument;
            let traced = ctx.clone().with_span(span.clone());
            run_guarded(&entry, call, &traced).instrument(span.clone()).await
        };
        catena_core::telemetry::record_tool(&span, &result);
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
        self.tools.len() + self.live().len()
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Runs the tool under its timeout and the run's cancellation, turning a panic into an error: a
/// bug in one tool must not take the agent (or the REPL) down with it.
async fn run_guarded(entry: &Entry, call: &ToolCall, ctx: &RunContext) -> Result<ToolOutput> {
    let run = AssertUnwindSafe(entry.tool.call(call.arguments.clone(), ctx)).catch_unwind();
    let timed = async {
        match entry.options.timeout {
            Some(limit) => tokio::time::timeout(limit, run).await.map_err(|_| {
                Error::tool(
                    &call.name,
                    format!("timed out after {limit:?}; try simpler arguments or another tool"),
                )
            }),
            None => Ok(run.await),
        }
    };
    let outcome = tokio::select! {
        biased;
        () = ctx.cancellation().cancelled() => return Err(Error::Cancelled),
        outcome = timed => outcome?,
    };
    outcome.unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned());
        Err(Error::tool(&call.name, format!("the tool failed internally ({what})")))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use catena_core::{ErrorKind, TypedTool};
    use serde_json::json;

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
            match args.text.as_str() {
                "panic" => panic!("boom"),
                "sleep" => {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    Ok(ToolOutput::text("late"))
                }
                _ => Ok(ToolOutput::text(args.text)),
            }
        }
    }

    fn call(name: &str, arguments: serde_json::Value) -> ToolCall {
        ToolCall { id: "1".into(), name: name.into(), arguments }
    }

    #[tokio::test]
    async fn unknown_tools_bad_args_and_duplicates_are_errors() {
        let reg = ToolRegistry::new().with(Echo).unwrap();
        assert!(ToolRegistry::new().with(Echo).unwrap().with(Echo).is_err());
        let ctx = RunContext::new();
        let err = reg.call(&call("nope", json!({})), &ctx).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Tool);
        assert!(err.to_string().contains("available tools: echo"), "{err}");
        let err = reg.call(&call("echo", json!({"text": 5})), &ctx).await.unwrap_err();
        assert!(err.to_string().contains("invalid arguments: /text: 5 is not of type \"string\""), "{err}");
        assert!(err.to_string().contains("JSON Schema"), "{err}");
        let err = reg.call(&call("echo", json!({})), &ctx).await.unwrap_err();
        assert!(err.to_string().contains("\"text\" is a required property"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn panics_and_timeouts_become_tool_errors() {
        let reg = ToolRegistry::new()
            .with_options(Echo, ToolOptions::default().timeout(Duration::from_secs(2)))
            .unwrap();
        let ctx = RunContext::new();
        let err = reg.call(&call("echo", json!({"text": "panic"})), &ctx).await.unwrap_err();
        assert!(err.to_string().contains("failed internally (boom)"), "{err}");
        let err = reg.call(&call("echo", json!({"text": "sleep"})), &ctx).await.unwrap_err();
        assert!(err.to_string().contains("timed out after 2s"), "{err}");
        ctx.cancel();
        assert_eq!(
            reg.call(&call("echo", json!({"text": "sleep"})), &ctx).await.unwrap_err().kind(),
            ErrorKind::Cancelled
        );
    }

    struct Answer(bool);
    #[async_trait]
    impl Confirm for Answer {
        async fn confirm(&self, _: &ToolCall) -> bool {
            self.0
        }
    }

    #[tokio::test]
    async fn policy_hides_and_refuses_tools_and_confirmation_gates_calls() {
        let ctx = RunContext::new();
        let denied =
            ToolRegistry::new().with(Echo).unwrap().with_policy(ToolPolicy::allow_all().deny(["echo"]));
        assert!(denied.specs().is_empty());
        let err = denied.call(&call("echo", json!({"text": "x"})), &ctx).await.unwrap_err();
        assert!(err.to_string().contains("not allowed"), "{err}");
        assert!(!ToolPolicy::allow_only(["a"]).permits("echo"));
        assert!(ToolPolicy::allow_only(["echo"]).permits("echo"));

        let gated =
            ToolRegistry::new().with_options(Echo, ToolOptions::default().needs_confirmation()).unwrap();
        let out = gated.call(&call("echo", json!({"text": "x"})), &ctx).await.unwrap();
        assert!(out.content.contains("declined"), "no hook means declined: {}", out.content);
        let yes = gated.clone().with_confirmation(Arc::new(Answer(true)));
        assert_eq!(yes.call(&call("echo", json!({"text": "x"})), &ctx).await.unwrap().content, "x");
        let no = gated.with_confirmation(Arc::new(Answer(false)));
        assert!(
            no.call(&call("echo", json!({"text": "x"})), &ctx).await.unwrap().content.contains("declined")
        );
    }

    /// A source whose list the test changes, as an MCP server's changes.
    #[derive(Default)]
    struct Changing {
        generation: std::sync::atomic::AtomicU64,
        tools: std::sync::Mutex<Vec<Arc<dyn Tool>>>,
    }
    impl Changing {
        fn set(&self, tools: Vec<Arc<dyn Tool>>) {
            *self.tools.lock().unwrap() = tools;
            self.generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
    impl ToolSource for Changing {
        fn generation(&self) -> u64 {
            self.generation.load(std::sync::atomic::Ordering::SeqCst)
        }
        fn tools(&self) -> Vec<Arc<dyn Tool>> {
            self.tools.lock().unwrap().clone()
        }
    }

    struct Named(&'static str, serde_json::Value);
    #[async_trait]
    impl Tool for Named {
        fn name(&self) -> &str {
            self.0
        }
        fn description(&self) -> &str {
            "A tool from a source."
        }
        fn parameters(&self) -> serde_json::Value {
            self.1.clone()
        }
        async fn call(&self, _: serde_json::Value, _: &RunContext) -> Result<ToolOutput> {
            Ok(ToolOutput::text(self.0))
        }
    }

    #[tokio::test]
    async fn a_source_s_tools_follow_its_list_under_the_registry_s_rules() {
        let ctx = RunContext::new();
        let source = Arc::new(Changing::default());
        let reg = ToolRegistry::new()
            .with(Echo)
            .unwrap()
            .with_source(source.clone())
            .with_policy(ToolPolicy::allow_all().deny(["denied"]));
        let shared = reg.clone();
        assert_eq!(reg.len(), 1);

        let object = json!({"type": "object"});
        source.set(vec![
            Arc::new(Named("fresh", object.clone())),
            Arc::new(Named("denied", object.clone())),
            // Taken by a tool added directly, and a schema that is not one: both skipped.
            Arc::new(Named("echo", object.clone())),
            Arc::new(Named("broken", json!({"type": 5}))),
        ]);
        let names: Vec<String> = reg.specs().into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["echo", "fresh"]);
        assert_eq!(reg.call(&call("fresh", json!({})), &ctx).await.unwrap().content, "fresh");
        assert_eq!(shared.call(&call("fresh", json!({})), &ctx).await.unwrap().content, "fresh");
        assert_eq!(reg.call(&call("echo", json!({"text": "mine"})), &ctx).await.unwrap().content, "mine");
        let err = reg.call(&call("denied", json!({})), &ctx).await.unwrap_err();
        assert!(err.to_string().contains("not allowed"), "{err}");

        // The source drops a tool: the registry no longer offers or runs it.
        source.set(vec![Arc::new(Named("later", object))]);
        assert!(reg.get("fresh").is_none());
        let err = reg.call(&call("fresh", json!({})), &ctx).await.unwrap_err();
        assert!(err.to_string().contains("available tools: echo, later"), "{err}");
        assert_eq!(reg.len(), 2);
    }
}
