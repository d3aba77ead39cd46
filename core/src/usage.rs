//! What a run's model calls used and cost: a [`PriceTable`] (built-in list prices of common hosted
//! models, overridable; local models are free) and the per-run ledger behind
//! [`RunContext::usage`](crate::RunContext::usage).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::Usage;

/// What a model charges, in US dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct ModelPrice {
    /// Per million prompt tokens evaluated.
    pub input: f64,
    /// Per million prompt tokens read from the provider's cache.
    pub cached_input: f64,
    /// Per million generated tokens.
    pub output: f64,
}

impl ModelPrice {
    /// Nothing: what a model in this process costs.
    pub const FREE: Self = Self { input: 0.0, cached_input: 0.0, output: 0.0 };

    /// A price per million tokens: prompt, cached prompt, completion.
    #[must_use]
    pub const fn per_million(input: f64, cached_input: f64, output: f64) -> Self {
        Self { input, cached_input, output }
    }

    /// The cost of `usage` in US dollars. Cached prompt tokens are billed at the cached rate, the
    /// rest of the prompt at the input rate.
    #[must_use]
    pub fn cost(&self, usage: &Usage) -> f64 {
        let cached = f64::from(usage.cached_prompt_tokens.min(usage.prompt_tokens));
        let fresh = f64::from(usage.prompt_tokens) - cached;
        (fresh * self.input + cached * self.cached_input + f64::from(usage.completion_tokens) * self.output)
            / 1e6
    }
}

/// Providers whose models run in this process, and so cost nothing per token.
const LOCAL_PROVIDERS: &[&str] = &["llama.cpp", "catena.testing"];

/// List prices (USD per million tokens: input, cached input, output) of common hosted models as
/// their providers published them in 2025. Prices change: override them with
/// [`PriceTable::with`] where it matters.
const BUILT_IN: &[(&str, f64, f64, f64)] = &[
    ("gpt-5", 1.25, 0.125, 10.0),
    ("gpt-5-mini", 0.25, 0.025, 2.0),
    ("gpt-5-nano", 0.05, 0.005, 0.40),
    ("gpt-4.1", 2.0, 0.50, 8.0),
    ("gpt-4.1-mini", 0.40, 0.10, 1.60),
    ("gpt-4.1-nano", 0.10, 0.025, 0.40),
    ("gpt-4o", 2.50, 1.25, 10.0),
    ("gpt-4o-mini", 0.15, 0.075, 0.60),
    ("o3", 2.0, 0.50, 8.0),
    ("o3-mini", 1.10, 0.55, 4.40),
    ("o4-mini", 1.10, 0.275, 4.40),
    ("text-embedding-3-small", 0.02, 0.02, 0.0),
    ("text-embedding-3-large", 0.13, 0.13, 0.0),
    ("claude-opus-4", 15.0, 1.50, 75.0),
    ("claude-sonnet-4", 3.0, 0.30, 15.0),
    ("claude-3-7-sonnet", 3.0, 0.30, 15.0),
    ("claude-3-5-haiku", 0.80, 0.08, 4.0),
    ("claude-haiku-4-5", 1.0, 0.10, 5.0),
    ("gemini-2.5-pro", 1.25, 0.31, 10.0),
    ("gemini-2.5-flash", 0.30, 0.075, 2.50),
    ("gemini-2.0-flash", 0.10, 0.025, 0.40),
    ("mistral-large", 2.0, 2.0, 6.0),
    ("mistral-small", 0.10, 0.10, 0.30),
];

/// Prices by model name. A model is priced by the longest entry its name starts with (after any
/// `provider/` prefix), so `gpt-4o-mini-2024-07-18` is priced as `gpt-4o-mini`; models of local
/// providers (`llama.cpp`) cost nothing; a model with no entry has no cost (reported as unknown,
/// never as zero).
#[derive(Debug, Clone, PartialEq)]
pub struct PriceTable {
    prices: BTreeMap<String, ModelPrice>,
}

impl Default for PriceTable {
    fn default() -> Self {
        Self::built_in()
    }
}

impl PriceTable {
    /// The built-in list prices.
    #[must_use]
    pub fn built_in() -> Self {
        let prices = BUILT_IN
            .iter()
            .map(|&(name, input, cached, output)| {
                (name.to_owned(), ModelPrice::per_million(input, cached, output))
            })
            .collect();
        Self { prices }
    }

    /// No prices: every hosted model's cost is unknown.
    #[must_use]
    pub fn empty() -> Self {
        Self { prices: BTreeMap::new() }
    }

    /// Sets the price of `model` (and of every model whose name starts with it, unless a longer
    /// entry matches).
    #[must_use]
    pub fn with(mut self, model: impl Into<String>, price: ModelPrice) -> Self {
        self.prices.insert(model.into().to_lowercase(), price);
        self
    }

    /// The price of `provider`'s `model`, if known.
    #[must_use]
    pub fn price(&self, provider: &str, model: &str) -> Option<ModelPrice> {
        if LOCAL_PROVIDERS.contains(&provider) {
            return Some(ModelPrice::FREE);
        }
        let name = model.rsplit_once('/').map_or(model, |(_, name)| name).to_lowercase();
        self.prices
            .iter()
            .filter(|(entry, _)| name.starts_with(entry.as_str()))
            .max_by_key(|(entry, _)| entry.len())
            .map(|(_, price)| *price)
    }

    /// What `usage` of `provider`'s `model` cost, if its price is known.
    #[must_use]
    pub fn cost(&self, provider: &str, model: &str, usage: &Usage) -> Option<f64> {
        self.price(provider, model).map(|price| price.cost(usage))
    }
}

/// One model's share of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelUsage {
    /// Who serves it (`openai`, `llama.cpp`, ...).
    pub provider: String,
    /// The model's name.
    pub model: String,
    /// Calls made.
    pub calls: u32,
    /// Tokens, summed over the calls.
    pub usage: Usage,
    /// US dollars, when the model's price is known.
    pub cost_usd: Option<f64>,
}

/// Tokens and cost of a run, per model and in total.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct UsageReport {
    /// Per model, by provider and name.
    pub models: Vec<ModelUsage>,
    /// All models' tokens.
    pub total: Usage,
    /// The cost of the models whose price is known, in US dollars.
    pub cost_usd: f64,
    /// Models whose price is not known (their cost is not in `cost_usd`).
    pub unpriced: Vec<String>,
}

impl UsageReport {
    /// Model calls in all.
    #[must_use]
    pub fn calls(&self) -> u32 {
        self.models.iter().map(|m| m.calls).sum()
    }
}

/// `3 model calls: 1200 prompt tokens (800 cached), 150 completion tokens, $0.0031` — the line
/// the CLI prints after a run.
impl std::fmt::Display for UsageReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let calls = self.calls();
        write!(
            f,
            "{calls} model call{}: {} prompt tokens",
            if calls == 1 { "" } else { "s" },
            self.total.prompt_tokens
        )?;
        if self.total.cached_prompt_tokens > 0 {
            write!(f, " ({} cached)", self.total.cached_prompt_tokens)?;
        }
        write!(f, ", {} completion tokens, ${:.4}", self.total.completion_tokens, self.cost_usd)?;
        if !self.unpriced.is_empty() {
            write!(f, " (no price for {}: PriceTable::with adds one)", self.unpriced.join(", "))?;
        }
        Ok(())
    }
}

/// The usage of one run, shared by a [`RunContext`](crate::RunContext), its clones and children.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    prices: Arc<PriceTable>,
    models: Mutex<BTreeMap<(String, String), (u32, Usage)>>,
}

impl Ledger {
    pub(crate) fn new(prices: Arc<PriceTable>) -> Self {
        Self { prices, models: Mutex::default() }
    }

    /// Adds one call; returns its cost when the price is known.
    pub(crate) fn record(&self, provider: &str, model: &str, usage: Usage) -> Option<f64> {
        // A poisoned lock only means a panic elsewhere while adding: the counts are still usable.
        let mut models = self.models.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = models.entry((provider.to_owned(), model.to_owned())).or_default();
        entry.0 = entry.0.saturating_add(1);
        entry.1 += usage;
        self.prices.cost(provider, model, &usage)
    }

    pub(crate) fn report(&self) -> UsageReport {
        let models = self.models.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut report = UsageReport::default();
        for ((provider, model), (calls, usage)) in models.iter() {
            let cost_usd = self.prices.cost(provider, model, usage);
            match cost_usd {
                Some(cost) => report.cost_usd += cost,
                None => report.unpriced.push(model.clone()),
            }
            report.total += *usage;
            report.models.push(ModelUsage {
                provider: provider.clone(),
                model: model.clone(),
                calls: *calls,
                usage: *usage,
                cost_usd,
            });
        }
        report
    }

    pub(crate) fn prices(&self) -> &Arc<PriceTable> {
        &self.prices
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::float_cmp)]
    use super::*;

    fn usage(prompt: u32, cached: u32, completion: u32) -> Usage {
        Usage {
            prompt_tokens: prompt,
            cached_prompt_tokens: cached,
            completion_tokens: completion,
            ..Usage::default()
        }
    }

    #[test]
    fn prices_match_the_longest_prefix_and_local_models_are_free() {
        let prices = PriceTable::built_in();
        assert_eq!(prices.price("openai", "gpt-4o-mini-2024-07-18"), prices.price("openai", "gpt-4o-mini"));
        assert_ne!(prices.price("openai", "gpt-4o-mini"), prices.price("openai", "gpt-4o"));
        assert_eq!(prices.price("openai", "openai/GPT-4o"), prices.price("openai", "gpt-4o"));
        assert_eq!(prices.price("llama.cpp", "qwen2.5-coder"), Some(ModelPrice::FREE));
        assert_eq!(prices.price("openai", "my-finetune"), None);
        let custom = prices.with("my-finetune", ModelPrice::per_million(1.0, 0.5, 2.0));
        assert!(custom.price("openai", "my-finetune-v2").is_some());
    }

    #[test]
    fn cost_bills_cached_tokens_at_the_cached_rate() {
        let price = ModelPrice::per_million(2.0, 0.5, 8.0);
        // 600 fresh × 2 + 400 cached × 0.5 + 100 out × 8 = 1200 + 200 + 800 per million.
        assert!((price.cost(&usage(1000, 400, 100)) - 0.0022).abs() < 1e-12);
        // More cached tokens than prompt tokens (a provider's rounding) bills no negative tokens.
        assert!(price.cost(&usage(10, 50, 0)) >= 0.0);
    }

    #[test]
    fn the_ledger_sums_per_model_and_reports_unpriced_models() {
        let ledger = Ledger::new(Arc::new(PriceTable::built_in()));
        ledger.record("openai", "gpt-4o-mini", usage(1000, 0, 100));
        ledger.record("openai", "gpt-4o-mini", usage(1000, 500, 100));
        ledger.record("llama.cpp", "SmolLM2", usage(300, 0, 30));
        ledger.record("openai", "mystery", usage(10, 0, 1));
        let report = ledger.report();
        assert_eq!(report.calls(), 4);
        assert_eq!(report.total, usage(2310, 500, 231));
        assert_eq!(report.unpriced, ["mystery"]);
        let mini = report.models.iter().find(|m| m.model == "gpt-4o-mini").unwrap();
        assert_eq!(mini.calls, 2);
        assert!((report.cost_usd - mini.cost_usd.unwrap()).abs() < 1e-12, "local models add nothing");
        let line = report.to_string();
        assert!(
            line.starts_with(
                "4 model calls: 2310 prompt tokens (500 cached), 231 completion tokens, $0.0004"
            ),
            "{line}"
        );
        assert!(line.contains("no price for mystery"), "{line}");
    }
}
