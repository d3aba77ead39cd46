//! Perplexity of a model on a text: a quick check of a model file's quality (a broken conversion
//! or a bad quantisation shows up as a jump in perplexity).

use std::path::Path;

use catena_core::{Error, Result};
use llama_cpp_2::llama_batch::LlamaBatch;
use serde::Serialize;

use super::{LlamaOptions, load_model};

/// The result of [`perplexity`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Perplexity {
    /// exp(mean negative log-likelihood) over the scored tokens.
    pub perplexity: f64,
    /// Mean negative log-likelihood per scored token, in nats.
    pub mean_nll: f64,
    /// Tokens in the text.
    pub tokens: usize,
    /// Tokens that were predicted and scored: all but the first when windows overlap; with
    /// `stride == window`, each window's first token has no context and is not scored.
    pub scored: usize,
    /// Windows evaluated.
    pub windows: usize,
}

/// Perplexity of the GGUF model at `path` on `text`, with a sliding window of `window` tokens
/// moved `stride` tokens at a time: each window is evaluated from scratch and only the tokens not
/// scored by an earlier window are scored, each with up to `window - 1` tokens of context. With
/// `stride == window` this is plain chunked evaluation; smaller strides give every scored token more
/// context (and cost more); with `stride == window` each window's first token has no context and is
/// left out, as in llama.cpp's perplexity tool. Runs on the calling thread.
pub fn perplexity(
    path: &Path,
    text: &str,
    window: usize,
    stride: usize,
    options: &LlamaOptions,
) -> Result<Perplexity> {
    if window < 2 || stride == 0 || stride > window {
        return Err(Error::invalid_input(format!(
            "need window >= 2 and 0 < stride <= window (got window {window}, stride {stride})"
        )));
    }
    let model = load_model(path, options)?;
    let tokens = model.vocab().tokenize(text.as_bytes(), model.vocab().should_add_bos(), false);
    if tokens.len() < 2 {
        return Err(Error::invalid_input("the text is shorter than two tokens: there is nothing to predict"));
    }
    let n_ctx = u32::try_from(window).map_err(|_| Error::invalid_input("window too large"))?;
    let n_batch = n_ctx.min(options.n_batch.unwrap_or(512).max(32));
    let params = options
        .context_params()
        .with_n_ctx(std::num::NonZeroU32::new(n_ctx))
        .with_n_batch(n_batch)
        .with_n_ubatch(n_batch.min(options.n_ubatch.unwrap_or(512)));
    let mut ctx = super::new_context(&model, params)?;
    let n_vocab = usize::try_from(model.n_vocab()).unwrap_or(0);
    let mut nll = 0f64;
    let mut scored = 0usize;
    let mut windows = 0usize;
    // `done`: tokens (from index 1) already scored.
    let mut done = 1usize;
    let mut start = 0usize;
    let mut batch = LlamaBatch::new(usize::try_from(n_batch).unwrap_or(512), 1);
    while done < tokens.len() {
        let end = (start + window).min(tokens.len());
        let Some(span) = tokens.get(start..end) else { break };
        ctx.clear_kv_cache();
        windows += 1;
        // Logits at position p predict token p+1; score targets in [done, end).
        for (ci, chunk) in span.chunks(usize::try_from(n_batch).unwrap_or(512)).enumerate() {
            batch.clear();
            let base = start + ci * usize::try_from(n_batch).unwrap_or(512);
            for (i, &t) in chunk.iter().enumerate() {
                let p = base + i;
                let wanted = p + 1 >= done && p + 1 < end;
                batch
                    .add(t, i32::try_from(p - start).unwrap_or(0), &[0], wanted)
                    .map_err(|e| Error::model_permanent(format!("batch: {e}")))?;
            }
            ctx.decode(&mut batch)
                .map_err(|e| Error::model_transient(format!("llama.cpp decode failed: {e}")))?;
            for (i, _) in chunk.iter().enumerate() {
                let p = base + i;
                if !(p + 1 >= done && p + 1 < end) {
                    continue;
                }
                let logits = ctx.get_logits_ith(i32::try_from(i).unwrap_or(0));
                let Some(target) = tokens.get(p + 1).and_then(|t| usize::try_from(t.0).ok()) else {
                    continue;
                };
                if logits.len() < n_vocab {
                    return Err(Error::model_permanent(
                        "llama.cpp returned fewer logits than the vocabulary",
                    ));
                }
                let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let log_sum =
                    f64::from(max) + logits.iter().map(|&l| f64::from(l - max).exp()).sum::<f64>().ln();
                let Some(&target_logit) = logits.get(target) else { continue };
                nll += log_sum - f64::from(target_logit);
                scored += 1;
            }
        }
        done = end;
        if end == tokens.len() {
            break;
        }
        start += stride;
    }
    let mean_nll = nll / scored.max(1) as f64;
    Ok(Perplexity { perplexity: mean_nll.exp(), mean_nll, tokens: tokens.len(), scored, windows })
}
