//! [`ToolSelector`]: offer a run only the tools most related to its question.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use catena_core::{Embedder, Result, RunContext, ToolSpec, cosine_similarity};

/// Narrows a long tool list to the `k` tools whose name and description are most similar to the
/// run's input (by embedding), in their original order.
///
/// Every offered tool costs prompt tokens on every call, and small models choose worse among
/// many tools; ranking by similarity to the question and offering the top few is the usual cure
/// (LangChain's "many tools" recipe, LlamaIndex's tool retrieval). The tools' embeddings are
/// computed once per name and description and kept; each run embeds its input once. With `k`
/// at least the number of tools, nothing is narrowed and nothing is embedded.
///
/// ```
/// use std::sync::Arc;
/// use catena_agents::ToolSelector;
/// use catena_core::{RunContext, ToolSpec, testing::DeterministicEmbedder};
///
/// # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// # rt.block_on(async {
/// let spec = |name: &str, description: &str| ToolSpec {
///     name: name.into(),
///     description: description.into(),
///     parameters: serde_json::json!({"type": "object"}),
/// };
/// let tools = [spec("weather", "weather forecast"), spec("calculator", "arithmetic"), spec("clock", "time")];
/// let selector = ToolSelector::new(Arc::new(DeterministicEmbedder::new(64)), 1);
/// let chosen = selector.select("weather forecast", &tools, &RunContext::new()).await.unwrap();
/// assert_eq!(chosen[0].name, "weather");
/// # });
/// ```
pub struct ToolSelector {
    embedder: Arc<dyn Embedder>,
    k: usize,
    known: Mutex<HashMap<String, Vec<f32>>>,
}

impl std::fmt::Debug for ToolSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolSelector")
            .field("embedder", &self.embedder)
            .field("k", &self.k)
            .finish_non_exhaustive()
    }
}

impl ToolSelector {
    /// Offers the `k` (at least 1) tools most similar to the input, embedded with `embedder`.
    #[must_use]
    pub fn new(embedder: Arc<dyn Embedder>, k: usize) -> Self {
        Self { embedder, k: k.max(1), known: Mutex::new(HashMap::new()) }
    }

    /// How many tools a run is offered.
    #[must_use]
    pub fn k(&self) -> usize {
        self.k
    }

    /// The `k` tools of `tools` most similar to `input`, in their original order.
    ///
    /// # Errors
    /// The embedder's errors.
    pub async fn select(&self, input: &str, tools: &[ToolSpec], ctx: &RunContext) -> Result<Vec<ToolSpec>> {
        if tools.len() <= self.k {
            return Ok(tools.to_vec());
        }
        let text = |tool: &ToolSpec| format!("{}: {}", tool.name, tool.description);
        let missing: Vec<String> = {
            let known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
            tools.iter().map(text).filter(|t| !known.contains_key(t)).collect()
        };
        let mut texts = missing;
        texts.push(input.to_owned());
        let mut vectors = self.embedder.embed(&texts, ctx).await?;
        let question = vectors.pop().unwrap_or_default();
        texts.pop();
        // Scored under the lock: the cache is only read there, never copied out.
        let mut ranked: Vec<(usize, f32)> = {
            let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
            known.extend(texts.into_iter().zip(vectors));
            tools
                .iter()
                .enumerate()
                .map(|(i, tool)| {
                    (i, known.get(&text(tool)).map_or(f32::MIN, |v| cosine_similarity(v, &question)))
                })
                .collect()
        };
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        let mut chosen: Vec<usize> = ranked.iter().take(self.k).map(|(i, _)| *i).collect();
        chosen.sort_unstable();
        tracing::debug!(
            offered = ?chosen.iter().filter_map(|&i| tools.get(i)).map(|t| t.name.as_str()).collect::<Vec<_>>(),
            "tool selection"
        );
        Ok(chosen.into_iter().filter_map(|i| tools.get(i).cloned()).collect())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use catena_core::testing::DeterministicEmbedder;

    fn spec(name: &str, description: &str) -> ToolSpec {
        ToolSpec { name: name.into(), description: description.into(), parameters: serde_json::json!({}) }
    }

    #[tokio::test]
    async fn keeps_the_most_similar_tools_in_order_and_embeds_each_tool_once() {
        let tools = [spec("a", "alpha beta"), spec("b", "gamma delta"), spec("c", "epsilon zeta")];
        let selector = ToolSelector::new(Arc::new(DeterministicEmbedder::new(64)), 2);
        let ctx = RunContext::new();
        let chosen = selector.select("c: epsilon zeta", &tools, &ctx).await.unwrap();
        assert_eq!(chosen.len(), 2);
        assert!(chosen.iter().any(|t| t.name == "c"));
        assert_eq!(selector.known.lock().unwrap().len(), 3);
        // Nothing to narrow: every tool, untouched.
        let all = ToolSelector::new(Arc::new(DeterministicEmbedder::new(64)), 3);
        assert_eq!(all.select("x", &tools, &ctx).await.unwrap(), tools.to_vec());
        assert!(all.known.lock().unwrap().is_empty());
    }
}
