//! Drafting for speculative decoding: where the guesses the scheduler verifies come from.
//!
//! The scheduler (see scheduler.rs) feeds a request's pending token together with a draft, gets
//! logits at every position from one decode, and keeps the draft's tokens for as long as they
//! equal what the request's sampler picks. This module only guesses; it never decides, so a bad
//! guess costs time, never correctness.

use catena_core::{Error, Result};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;

use super::{LlamaOptions, Speculation};

/// Guesses continuations of a token sequence.
pub(crate) enum Drafter<'m> {
    Off,
    PromptLookup { ngram_min: usize, ngram_max: usize, max_draft: usize },
    Model(ModelDrafter<'m>),
}

/// The shape of the model's context, which a draft model's context mirrors.
pub(crate) struct Shape {
    pub(crate) n_seq: u32,
    pub(crate) seq_ctx: u32,
    pub(crate) n_batch: u32,
}

fn size(v: u32) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

impl<'m> Drafter<'m> {
    /// The drafter `options` ask for, for `target`. `draft` is the loaded draft model when
    /// `options.speculation` names one; it is checked against `target` here.
    pub(crate) fn new(
        target: &LlamaModel,
        draft: Option<&'m LlamaModel>,
        options: &LlamaOptions,
        shape: &Shape,
    ) -> Result<Self> {
        // Recurrent state cannot be rolled back to an earlier position, so a rejected guess could
        // not be undone: no speculation for those models.
        if target.is_recurrent() || target.is_hybrid() {
            return Ok(Self::Off);
        }
        match (&options.speculation, draft) {
            (Speculation::DraftModel { path, max_draft }, Some(draft)) if *max_draft > 0 => {
                check_pair(target, draft).map_err(|why| {
                    Error::invalid_input(format!(
                        "{} cannot draft for this model: {why}. A draft model must share the model's \
                         tokenizer, as a smaller model of the same family does (`agent-small` for \
                         `agent`); or use prompt lookup (`Speculation::PROMPT_LOOKUP`, `--speculate`), which needs no second model",
                        path.display()
                    ))
                })?;
                ModelDrafter::new(target, draft, options, shape, size(*max_draft)).map(Self::Model)
            }
            (speculation, _) => Ok(Self::lookup(speculation)),
        }
    }

    /// The drafters that need no model: prompt lookup, or none.
    pub(crate) fn lookup(speculation: &Speculation) -> Self {
        match *speculation {
            Speculation::PromptLookup { ngram_min, ngram_max, max_draft } if max_draft > 0 => {
                let ngram_min = size(ngram_min).max(1);
                Self::PromptLookup {
                    ngram_min,
                    ngram_max: size(ngram_max).max(ngram_min),
                    max_draft: size(max_draft),
                }
            }
            _ => Self::Off,
        }
    }

    /// Up to `limit` tokens guessed to follow `history` (the prompt and the reply so far) in
    /// sequence `seq`; empty when there is no guess.
    pub(crate) fn draft(&mut self, seq: i32, history: &[LlamaToken], limit: usize) -> Vec<LlamaToken> {
        match self {
            Self::Off => Vec::new(),
            Self::PromptLookup { ngram_min, ngram_max, max_draft } => {
                prompt_lookup(history, *ngram_min, *ngram_max, limit.min(*max_draft))
            }
            Self::Model(drafter) => drafter.draft(seq, history, limit),
        }
    }
}

/// Prompt lookup takes the longest n-gram ending `history` (from `ngram_max` down to `ngram_min`
/// tokens) that occurred before, at its most recent earlier occurrence, and guesses the tokens
/// that followed it there. The most recent occurrence because a reply that copies a passage keeps
/// copying from where it last matched.
fn prompt_lookup(
    history: &[LlamaToken],
    ngram_min: usize,
    ngram_max: usize,
    limit: usize,
) -> Vec<LlamaToken> {
    if limit == 0 {
        return Vec::new();
    }
    for n in (ngram_min..=ngram_max).rev() {
        let Some(start) = history.len().checked_sub(n) else { continue };
        let Some(tail) = history.get(start..) else { continue };
        // Occurrences ending before the tail itself, latest first.
        let earlier = (0..start).rev().find(|&j| history.get(j..j + n) == Some(tail));
        if let Some(j) = earlier {
            let from = j + n;
            let to = (from + limit).min(history.len());
            return history.get(from..to).map(<[_]>::to_vec).unwrap_or_default();
        }
    }
    Vec::new()
}

/// Vocabularies may differ in size by padding tokens at the end (llama.cpp allows the same slack).
const VOCAB_SIZE_SLACK: i32 = 128;

/// Why `draft` cannot guess tokens for `target`, if it cannot: a guess is a list of token ids,
/// which mean the same text only under the same tokenizer.
fn check_pair(target: &LlamaModel, draft: &LlamaModel) -> std::result::Result<(), String> {
    if draft.is_recurrent() || draft.is_hybrid() {
        return Err(
            "it is a recurrent model, whose state cannot be rolled back after a rejected guess".into()
        );
    }
    // The GGUF's tokenizer kind (`gpt2`, `llama`, `bert`...): llama-cpp-2's `vocab_type()` panics
    // on kinds it does not know.
    let kind = |m: &LlamaModel| m.meta_val_str("tokenizer.ggml.model").unwrap_or_default();
    if kind(target) != kind(draft) {
        return Err(format!("its tokenizer is {:?}, the model's is {:?}", kind(draft), kind(target)));
    }
    let (t, d) = (target.vocab(), draft.vocab());
    let (nt, nd) = (t.n_tokens(), d.n_tokens());
    if (nt - nd).abs() > VOCAB_SIZE_SLACK {
        return Err(format!("its vocabulary has {nd} tokens, the model's {nt}"));
    }
    if t.bos() != d.bos() || t.eos() != d.eos() {
        return Err(format!(
            "its BOS/EOS tokens are {}/{}, the model's {}/{}",
            d.bos().0,
            d.eos().0,
            t.bos().0,
            t.eos().0
        ));
    }
    for id in 0..nt.min(nd) {
        let token = LlamaToken::new(id);
        let (a, b) = (t.text(token), d.text(token));
        if a != b {
            let show = |c: Option<&std::ffi::CStr>| c.map(|c| c.to_string_lossy().into_owned());
            return Err(format!("token {id} is {:?} in it and {:?} in the model", show(b), show(a)));
        }
    }
    Ok(())
}

/// A draft model and its own context: one sequence per request slot, each holding the tokens it
/// evaluated, so a request's next guess evaluates only what was accepted since its last one.
pub(crate) struct ModelDrafter<'m> {
    model: &'m LlamaModel,
    ctx: LlamaContext<'m>,
    batch: LlamaBatch<'static>,
    greedy: LlamaSampler,
    /// Tokens evaluated into each sequence, by sequence id.
    cached: Vec<Vec<LlamaToken>>,
    n_batch: usize,
    max_draft: usize,
    /// Token ids the target model knows: a draft vocabulary's padding beyond them is never guessed.
    target_tokens: i32,
}

impl<'m> ModelDrafter<'m> {
    fn new(
        target: &LlamaModel,
        model: &'m LlamaModel,
        options: &LlamaOptions,
        shape: &Shape,
        max_draft: usize,
    ) -> Result<Self> {
        let params = options
            .context_params()
            .with_n_ctx(std::num::NonZeroU32::new(shape.seq_ctx.saturating_mul(shape.n_seq)))
            .with_n_seq_max(shape.n_seq)
            .with_kv_unified(true)
            .with_n_batch(shape.n_batch)
            .with_n_ubatch(shape.n_batch);
        let ctx = super::new_context(model, params)?;
        Ok(Self {
            model,
            ctx,
            batch: LlamaBatch::new(size(shape.n_batch), 1),
            greedy: LlamaSampler::greedy(),
            cached: vec![Vec::new(); size(shape.n_seq)],
            n_batch: size(shape.n_batch).max(1),
            max_draft,
            target_tokens: target.vocab().n_tokens(),
        })
    }

    fn draft(&mut self, seq: i32, history: &[LlamaToken], limit: usize) -> Vec<LlamaToken> {
        let limit = limit.min(self.max_draft);
        if limit == 0 || history.is_empty() {
            return Vec::new();
        }
        match self.try_draft(seq, history, limit) {
            Ok(draft) => draft,
            Err(e) => {
                // No guess this time; the sequence is rebuilt from scratch next time.
                tracing::debug!(error = %e, seq, "draft model failed to guess");
                self.forget(seq);
                Vec::new()
            }
        }
    }

    /// Brings sequence `seq` up to `history` (keeping the prefix it already holds), then decodes
    /// greedily one token at a time.
    fn try_draft(
        &mut self,
        seq: i32,
        history: &[LlamaToken],
        limit: usize,
    ) -> std::result::Result<Vec<LlamaToken>, String> {
        let Self { model, ctx, batch, greedy, cached, n_batch, target_tokens, .. } = self;
        let cached = cached.get_mut(usize::try_from(seq).unwrap_or(usize::MAX)).ok_or("no such sequence")?;
        let id = u32::try_from(seq).ok();
        // The last token is evaluated again if it was cached: its logits are needed.
        let mut common = common_prefix(cached, history).min(history.len() - 1);
        if ctx.clear_kv_cache_seq(id, u32::try_from(common).ok(), None).ok() != Some(true) {
            let _ = ctx.clear_kv_cache_seq(id, None, None);
            common = 0;
        }
        cached.truncate(common);
        let position = |cached: &Vec<LlamaToken>| i32::try_from(cached.len()).unwrap_or(i32::MAX);
        let mut logits_at = 0;
        for chunk in history.get(common..).unwrap_or_default().chunks(*n_batch) {
            batch.clear();
            for (i, &token) in chunk.iter().enumerate() {
                let last = cached.len() + 1 == history.len();
                batch.add(token, position(cached), &[seq], last).map_err(|e| e.to_string())?;
                cached.push(token);
                if last {
                    logits_at = i32::try_from(i).unwrap_or(0);
                }
            }
            ctx.decode(batch).map_err(|e| e.to_string())?;
        }
        let mut draft = Vec::with_capacity(limit);
        loop {
            let token = super::decode::sample(greedy, ctx, logits_at).map_err(|e| e.to_string())?;
            if model.vocab().is_eog(token) || token.0 >= *target_tokens {
                break;
            }
            draft.push(token);
            if draft.len() >= limit {
                break;
            }
            batch.clear();
            batch.add(token, position(cached), &[seq], true).map_err(|e| e.to_string())?;
            cached.push(token);
            ctx.decode(batch).map_err(|e| e.to_string())?;
            logits_at = 0;
        }
        Ok(draft)
    }

    fn forget(&mut self, seq: i32) {
        let _ = self.ctx.clear_kv_cache_seq(u32::try_from(seq).ok(), None, None);
        if let Some(cached) = self.cached.get_mut(usize::try_from(seq).unwrap_or(usize::MAX)) {
            cached.clear();
        }
    }
}

pub(crate) fn common_prefix(a: &[LlamaToken], b: &[LlamaToken]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(ids: &[i32]) -> Vec<LlamaToken> {
        ids.iter().map(|&i| LlamaToken::new(i)).collect()
    }

    fn lookup(ngram_min: u32, ngram_max: u32, max_draft: u32) -> Drafter<'static> {
        Drafter::lookup(&Speculation::PromptLookup { ngram_min, ngram_max, max_draft })
    }

    #[test]
    fn guesses_what_followed_the_latest_earlier_match() {
        let mut d = lookup(2, 3, 4);
        // "1 2" occurs twice before the tail; the later one was followed by 7 8.
        let h = tokens(&[1, 2, 3, 4, 1, 2, 7, 8, 9, 5, 1, 2]);
        assert_eq!(d.draft(0, &h, 10), tokens(&[7, 8, 9, 5]));
        // The guess stops at the draft limit and at the request's limit.
        assert_eq!(d.draft(0, &h, 2), tokens(&[7, 8]));
        assert_eq!(d.draft(0, &h, 0), tokens(&[]));
    }

    #[test]
    fn longer_ngrams_win_over_shorter() {
        let mut d = lookup(1, 2, 2);
        // The 2-gram "3 4" matched at 0 is preferred to the 1-gram "4" matched later at 4.
        let h = tokens(&[3, 4, 5, 6, 4, 9, 3, 4]);
        assert_eq!(d.draft(0, &h, 8), tokens(&[5, 6]));
    }

    #[test]
    fn no_guess_without_an_earlier_occurrence() {
        let mut d = lookup(2, 3, 8);
        assert!(d.draft(0, &tokens(&[1, 2, 3, 4, 5]), 8).is_empty());
        assert!(d.draft(0, &tokens(&[1]), 8).is_empty());
        assert!(d.draft(0, &[], 8).is_empty());
        // A repeated token is a 1-gram, below this drafter's minimum.
        assert!(d.draft(0, &tokens(&[1, 2, 9, 2]), 8).is_empty());
    }

    #[test]
    fn a_match_at_the_very_end_guesses_what_is_there() {
        // "5 5" matches one position earlier; the guess is the one token after it.
        let mut d = lookup(2, 2, 8);
        assert_eq!(d.draft(0, &tokens(&[5, 5, 5]), 8), tokens(&[5]));
    }

    #[test]
    fn off_and_degenerate_settings_never_guess() {
        let h = tokens(&[1, 2, 1, 2, 1, 2]);
        assert!(Drafter::lookup(&Speculation::Off).draft(0, &h, 8).is_empty());
        assert!(lookup(2, 3, 0).draft(0, &h, 8).is_empty());
        // ngram_min 0 means 1; ngram_max below ngram_min means ngram_min.
        assert_eq!(lookup(0, 0, 2).draft(0, &h, 8), tokens(&[1, 2]));
    }
}
