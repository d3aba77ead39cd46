//! Readers of files and messages: TREC qrels and runs, `catena serve` request bodies, ReAct
//! replies, personal-data scans.

use std::sync::OnceLock;

use catena_agents::{Next, Pii, find_pii, parse_react};
use catena_core::{ChatRequest, ToolSpec};
use catena_models::wire::{ChatCompletionRequest, EmbeddingsRequest};

/// Properties: deterministic; every judged query and document of an accepted file is in it.
pub(crate) fn qrels(data: &[u8]) {
    let text = crate::text(data);
    let first = catena_eval::trec::read_qrels(&text);
    assert_eq!(first, catena_eval::trec::read_qrels(&text), "the same qrels read differently twice");
    for (query, docs) in first.iter().flatten() {
        for doc in docs.keys() {
            assert!(
                text.contains(query.as_str()) && text.contains(doc.as_str()),
                "{query}/{doc} is not in the file"
            );
        }
    }
}

/// Properties: deterministic (NaN scores included).
pub(crate) fn run(data: &[u8]) {
    let text = crate::text(data);
    let first = catena_eval::trec::read_run(&text);
    let second = catena_eval::trec::read_run(&text);
    // Scores may be NaN, which is never equal to itself: compare the printed form.
    assert_eq!(format!("{first:?}"), format!("{second:?}"), "the same run read differently twice");
}

/// A chat completion body as `catena serve` reads it: JSON, then the checks that turn it into a
/// catena request. Properties: deterministic; an accepted body converts to the same request twice.
pub(crate) fn chat_body(data: &[u8]) {
    let convert = || -> Result<ChatRequest, String> {
        let body: ChatCompletionRequest = serde_json::from_slice(data).map_err(|e| e.to_string())?;
        ChatRequest::try_from(body).map_err(|e| e.to_string())
    };
    let first = convert();
    assert_eq!(format!("{first:?}"), format!("{:?}", convert()), "the same body read differently twice");
}

/// An embeddings body as `catena serve` reads it. Properties: deterministic.
pub(crate) fn embeddings_body(data: &[u8]) {
    let convert = || -> Result<Vec<String>, String> {
        let body: EmbeddingsRequest = serde_json::from_slice(data).map_err(|e| e.to_string())?;
        body.input.into_texts().map_err(|e| e.to_string())
    };
    assert_eq!(convert(), convert(), "the same body read differently twice");
}

/// The tools a ReAct reply may call: one with arguments, one without.
pub(crate) fn tools() -> &'static [ToolSpec] {
    static TOOLS: OnceLock<Vec<ToolSpec>> = OnceLock::new();
    TOOLS.get_or_init(|| {
        vec![
            ToolSpec {
                name: "calculator".into(),
                description: "Evaluates arithmetic.".into(),
                parameters: serde_json::json!({
                    "type": "object",
                    "properties": {"expression": {"type": "string"}},
                    "required": ["expression"]
                }),
            },
            ToolSpec {
                name: "now".into(),
                description: "The time.".into(),
                parameters: serde_json::json!({"type": "object", "properties": {}}),
            },
        ]
    })
}

/// A model's ReAct reply. Properties: deterministic; a call names one of the offered tools and
/// its arguments are a JSON object.
pub(crate) fn react_reply(data: &[u8]) {
    let text = crate::text(data);
    let next = parse_react(&text, tools(), 3);
    assert_eq!(next, parse_react(&text, tools(), 3), "the same reply read differently twice");
    if let Next::Call(calls) = next {
        for call in calls {
            assert!(tools().iter().any(|t| t.name == call.name), "a call of unknown tool {:?}", call.name);
            assert!(call.arguments.is_object(), "arguments {} are not an object", call.arguments);
        }
    }
}

/// The personal-data scan. Properties: deterministic; matches are in bounds, on character
/// boundaries, in order and not overlapping.
pub(crate) fn pii(data: &[u8]) {
    let text = crate::text(data);
    let found = find_pii(&text, &Pii::ALL);
    assert_eq!(found, find_pii(&text, &Pii::ALL), "the same text scanned differently twice");
    let mut end = 0;
    for m in &found {
        assert!(m.range.start >= end, "overlapping or unordered matches: {found:?}");
        assert!(
            text.get(m.range.clone()).is_some_and(|s| !s.is_empty()),
            "match {:?} is not a piece of the text",
            m.range
        );
        end = m.range.end;
    }
}

/// A remote MCP server's tool result (`CallToolResult` JSON), read as catena's MCP client reads
/// it and sent back out as catena's MCP server sends it. Properties: deterministic; a result
/// relayed through catena reads back as the same output (text for the model and artifact).
pub(crate) fn mcp_tool_result(data: &[u8]) {
    let Some((read, sent)) = catena_tools::mcp::relay_tool_result(data) else { return };
    let again = catena_tools::mcp::relay_tool_result(data).map(|(r, s)| (format!("{r:?}"), s));
    assert_eq!(again, Some((format!("{read:?}"), sent.clone())), "the same result read twice differently");
    if let Ok(output) = read {
        let relayed = catena_tools::mcp::relay_tool_result(sent.to_string().as_bytes())
            .expect("what catena sends is a CallToolResult");
        assert_eq!(relayed.0.ok(), Some(output), "a result relayed through catena changed: {sent}");
    }
}
