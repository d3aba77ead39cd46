//! What turning logits into text needs, shared by the scheduler that decodes requests: the
//! sampler chain for a request's sampling options, GBNF grammars for its response format, and
//! the assembly of token bytes into text deltas that never leak a stop string.

use catena_core::{Error, ResponseFormat, Result, Sampling};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;

/// Sampling defaults for the local model when a request leaves a field unset. Small models loop
/// without a repeat penalty, so it is on by default.
const DEFAULT_TEMPERATURE: f32 = 0.7;
const DEFAULT_TOP_K: u32 = 40;
const DEFAULT_TOP_P: f32 = 0.95;
const DEFAULT_MIN_P: f32 = 0.05;
const DEFAULT_REPEAT_PENALTY: f32 = 1.1;
const REPEAT_WINDOW: i32 = 64;
pub(crate) fn format_grammar(format: Option<&ResponseFormat>) -> Result<Option<String>> {
    Ok(match format {
        None | Some(ResponseFormat::Text) => None,
        Some(ResponseFormat::Grammar { gbnf }) => Some(gbnf.clone()),
        Some(ResponseFormat::JsonObject) => Some(schema_grammar(&serde_json::json!({"type": "object"}))?),
        Some(ResponseFormat::JsonSchema { schema, .. }) => Some(schema_grammar(schema)?),
    })
}

/// The sampler chain for a request: its grammar (engaged from the first token, or lazily once
/// the output matches one of `triggers`, regular expressions with llama.cpp's trigger semantics),
/// the repeat penalty, then greedy or sampled choice.
pub(crate) fn build_sampler(
    model: &LlamaModel,
    s: &Sampling,
    grammar: Option<&str>,
    triggers: &[String],
) -> Result<LlamaSampler> {
    let mut chain = Vec::new();
    if let Some(g) = grammar {
        let invalid = |e: llama_cpp_2::GrammarError| Error::invalid_input(format!("invalid grammar: {e}"));
        chain.push(if triggers.is_empty() {
            LlamaSampler::grammar(model, g, "root").map_err(invalid)?
        } else {
            LlamaSampler::grammar_lazy_patterns(model, g, "root", triggers, &[]).map_err(invalid)?
        });
    }
    let repeat = s.repeat_penalty.unwrap_or(DEFAULT_REPEAT_PENALTY);
    if (repeat - 1.0).abs() > f32::EPSILON {
        chain.push(LlamaSampler::penalties(model.n_vocab(), REPEAT_WINDOW, repeat, 0.0, 0.0));
    }
    let temperature = s.temperature.unwrap_or(DEFAULT_TEMPERATURE);
    if temperature <= 0.0 {
        chain.push(LlamaSampler::greedy());
    } else {
        chain.push(LlamaSampler::top_k(i32::try_from(s.top_k.unwrap_or(DEFAULT_TOP_K)).unwrap_or(40)));
        chain.push(LlamaSampler::top_p(s.top_p.unwrap_or(DEFAULT_TOP_P), 1));
        chain.push(LlamaSampler::min_p(s.min_p.unwrap_or(DEFAULT_MIN_P), 1));
        chain.push(LlamaSampler::temp(temperature));
        chain.push(LlamaSampler::dist(s.seed.unwrap_or_else(rand_seed)));
    }
    Ok(LlamaSampler::chain_simple(chain))
}

/// Samples the token at batch position `at` and feeds it to the sampler chain (grammar, penalty).
/// llama.cpp's grammar throws when output it is fed leaves the grammar (a lazy grammar engaging on
/// text it cannot accept); that is an error here, not a process abort.
pub(crate) fn sample(sampler: &mut LlamaSampler, ctx: &LlamaContext<'_>, at: i32) -> Result<LlamaToken> {
    let mut candidates = ctx.token_data_array_ith(at);
    candidates.apply_sampler(sampler);
    let token = candidates
        .selected_token()
        .ok_or_else(|| Error::model_permanent("the sampler chose no token (the grammar allows none)"))?;
    sampler.try_accept(token).map_err(|e| {
        Error::parse(
            "model output",
            format!("the output left its grammar ({e}); try again or relax the schema"),
        )
    })?;
    Ok(token)
}

fn rand_seed() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64),
    );
    (h.finish() & 0xffff_ffff) as u32
}

/// JSON Schema to GBNF with llama.cpp's own converter, then tightened in two places so every
/// reply the grammar admits is also cheap and safe to use:
/// - whitespace between tokens is at most one space (the stock rule allows newlines and runs of
///   indentation, which small models wander into until `max_tokens` runs out);
/// - exponents have at most two digits (the stock rule allows sixteen, so `1e592` parses as
///   JSON grammar but not as an `f64`).
pub(crate) fn schema_grammar(schema: &serde_json::Value) -> Result<String> {
    let grammar = llama_cpp_2::json_schema_to_grammar(&schema.to_string())
        .map_err(|e| Error::invalid_input(format!("cannot turn the JSON schema into a grammar: {e}")))?;
    Ok(grammar
        .lines()
        .map(|line| match line {
            r#"space ::= | " " | "\n"{1,2} [ \t]{0,20}"# => r#"space ::= | " ""#.to_owned(),
            l if l.starts_with("number ::= ") => {
                l.replace("[eE] [-+]? integral-part", "[eE] [-+]? [0-9]{1,2}")
            }
            l => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n"))
}

/// Turns token bytes into text deltas: holds back incomplete UTF-8 sequences, and any tail that
/// could be the start of a stop string, so stop strings never leak into the output.
pub(crate) struct TextAssembler {
    bytes: Vec<u8>,
    pending: String,
    stops: Vec<String>,
}

impl TextAssembler {
    pub(crate) fn new(stops: Vec<String>) -> Self {
        Self {
            bytes: Vec::new(),
            pending: String::new(),
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
        }
    }

    /// Adds a token's bytes; returns the text safe to emit and whether a stop string was hit.
    pub(crate) fn push(&mut self, piece: &[u8]) -> (String, bool) {
        self.bytes.extend_from_slice(piece);
        // Everything up to an incomplete UTF-8 sequence at the very end can be released (invalid
        // bytes inside become U+FFFD); the incomplete tail waits for the next token.
        let mut valid = self.bytes.len();
        let mut start = 0;
        while let Some(rest) = self.bytes.get(start..) {
            match std::str::from_utf8(rest) {
                Ok(_) => break,
                Err(e) => match e.error_len() {
                    None => {
                        valid = start + e.valid_up_to();
                        break;
                    }
                    Some(n) => start += e.valid_up_to() + n,
                },
            }
        }
        let rest = self.bytes.split_off(valid);
        let done = std::mem::replace(&mut self.bytes, rest);
        self.pending.push_str(&String::from_utf8_lossy(&done));
        if let Some(at) = self.stops.iter().filter_map(|s| self.pending.find(s.as_str())).min() {
            let out: String = self.pending.get(..at).unwrap_or_default().to_owned();
            self.pending.clear();
            self.bytes.clear();
            return (out, true);
        }
        let hold = self.held_back();
        let cut = self.pending.len() - hold;
        let out = self.pending.get(..cut).unwrap_or_default().to_owned();
        self.pending = self.pending.get(cut..).unwrap_or_default().to_owned();
        (out, false)
    }

    /// Length of the longest suffix of `pending` that is a proper prefix of a stop string.
    fn held_back(&self) -> usize {
        let mut best = 0;
        for stop in &self.stops {
            for (i, _) in self.pending.char_indices() {
                let suffix = self.pending.get(i..).unwrap_or_default();
                if suffix.len() > best && stop.starts_with(suffix) {
                    best = suffix.len();
                }
            }
        }
        best
    }

    /// What is left when generation ends without a stop string.
    pub(crate) fn finish(self) -> String {
        let mut out = self.pending;
        out.push_str(&String::from_utf8_lossy(&self.bytes));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_strings_never_leak_even_across_tokens() {
        let mut t = TextAssembler::new(vec!["\nObservation:".into()]);
        let mut out = String::new();
        for piece in ["Action: x", "\nObs", "erv", "ation: 42"] {
            let (p, stop) = t.push(piece.as_bytes());
            out.push_str(&p);
            if stop {
                break;
            }
        }
        assert_eq!(out, "Action: x");
    }

    #[test]
    fn split_utf8_is_reassembled() {
        let mut t = TextAssembler::new(vec![]);
        let e = "é".as_bytes();
        let (a, _) = t.push(&e[..1]);
        let (b, _) = t.push(&e[1..]);
        assert_eq!((a.as_str(), b.as_str()), ("", "é"));
        let (c, _) = t.push(&[0xff, b'x']);
        assert_eq!(c, "\u{fffd}x");
    }

    #[test]
    fn held_text_is_released_when_it_stops_matching() {
        let mut t = TextAssembler::new(vec!["STOP".into()]);
        assert_eq!(t.push(b"ab ST").0, "ab ");
        assert_eq!(t.push(b"ar").0, "STar");
        assert_eq!(t.finish(), "");
    }

    #[test]
    fn json_grammar_is_tightened() {
        let g =
            schema_grammar(&serde_json::json!({"type": "object", "properties": {"x": {"type": "number"}}}))
                .unwrap_or_default();
        assert!(g.contains(r#"space ::= | " ""#), "{g}");
        assert!(g.contains("[eE] [-+]? [0-9]{1,2}"), "{g}");
        assert!(!g.contains(r#""\n"{1,2}"#), "{g}");
    }
}
