//! [`SemanticSplitter`]: chunk boundaries where the meaning shifts, found with embeddings.

use std::sync::Arc;

use catena_core::{Document, Embedder, Error, Result, RunContext, Runnable, Splitter, async_trait};

use crate::RecursiveCharacterSplitter;
use crate::recursive::py_is_space;

/// How large a jump in embedding distance between neighbouring sentences must be to start a new
/// chunk (LangChain's `breakpoint_threshold_type` with its amount).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BreakpointThreshold {
    /// Distances above this percentile of all distances (LangChain default: 95).
    Percentile(f64),
    /// Distances above the mean plus this many standard deviations (default 3).
    StandardDeviation(f64),
    /// Distances above the mean plus this many interquartile ranges (default 1.5).
    Interquartile(f64),
    /// Gradients of the distances above this percentile of all gradients (default 95); suits
    /// texts whose sentences are all closely related (legal, medical).
    Gradient(f64),
}

impl Default for BreakpointThreshold {
    fn default() -> Self {
        Self::Percentile(95.0)
    }
}

/// Splits text into sentences, embeds each with its neighbours, and cuts where the cosine
/// distance between consecutive sentence windows is unusually large: LangChain's
/// `SemanticChunker` (langchain_experimental), with the same sentence pattern, windowing,
/// thresholds and joining. Two additions: a maximum chunk size (LangChain's chunks are unbounded,
/// which breaks embedding models with a context limit), enforced by cutting an oversized chunk at
/// its own largest distances first and by splitting a single oversized sentence with the
/// recursive splitter; and batching of the embedding calls.
///
/// Embedding is asynchronous, so this is not a [`Splitter`]: call
/// [`split_text`](Self::split_text) / [`split_documents`](Self::split_documents), or use it as a
/// `Runnable<Vec<Document>, Vec<Document>>`.
#[derive(Clone)]
pub struct SemanticSplitter {
    embedder: Arc<dyn Embedder>,
    buffer_size: usize,
    threshold: BreakpointThreshold,
    number_of_chunks: Option<usize>,
    /// `None`: LangChain's `(?<=[.?!])\s+`, matched without a regex engine.
    sentence_pattern: Option<fancy_regex::Regex>,
    min_chunk_size: Option<usize>,
    max_chunk_size: Option<usize>,
    batch_size: usize,
    add_start_index: bool,
}

impl std::fmt::Debug for SemanticSplitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SemanticSplitter")
            .field("buffer_size", &self.buffer_size)
            .field("threshold", &self.threshold)
            .field("max_chunk_size", &self.max_chunk_size)
            .finish_non_exhaustive()
    }
}

impl SemanticSplitter {
    /// A splitter embedding with `embedder`, with LangChain's defaults (one sentence of context on
    /// each side, 95th-percentile breakpoints) and no size limit.
    pub fn new(embedder: Arc<dyn Embedder>) -> Self {
        Self {
            embedder,
            buffer_size: 1,
            threshold: BreakpointThreshold::default(),
            number_of_chunks: None,
            sentence_pattern: None,
            min_chunk_size: None,
            max_chunk_size: None,
            batch_size: 64,
            add_start_index: false,
        }
    }

    /// How many sentences on each side are embedded with a sentence (default 1).
    #[must_use]
    pub fn with_buffer_size(mut self, sentences: usize) -> Self {
        self.buffer_size = sentences;
        self
    }

    /// The breakpoint rule (default: 95th percentile).
    #[must_use]
    pub fn with_threshold(mut self, threshold: BreakpointThreshold) -> Self {
        self.threshold = threshold;
        self
    }

    /// Aims for about this many chunks instead of a threshold rule (LangChain's `number_of_chunks`).
    #[must_use]
    pub fn with_number_of_chunks(mut self, chunks: usize) -> Self {
        self.number_of_chunks = Some(chunks);
        self
    }

    /// The pattern sentences are split on (fancy-regex syntax, look-behind allowed).
    pub fn with_sentence_pattern(mut self, pattern: &str) -> Result<Self> {
        self.sentence_pattern = Some(fancy_regex::Regex::new(pattern).map_err(|e| {
            Error::invalid_input(format!("sentence pattern {pattern:?} does not compile: {e}"))
        })?);
        Ok(self)
    }

    /// Chunks shorter than this (in characters) are merged into the next, as in LangChain.
    #[must_use]
    pub fn with_min_chunk_size(mut self, chars: usize) -> Self {
        self.min_chunk_size = Some(chars);
        self
    }

    /// No chunk longer than this many characters (LangChain has no such bound).
    pub fn with_max_chunk_size(mut self, chars: usize) -> Result<Self> {
        if chars == 0 {
            return Err(Error::invalid_input("max_chunk_size must be at least 1"));
        }
        self.max_chunk_size = Some(chars);
        Ok(self)
    }

    /// How many sentence windows go to the embedder per call (default 64).
    #[must_use]
    pub fn with_batch_size(mut self, batch: usize) -> Self {
        self.batch_size = batch.max(1);
        self
    }

    /// Whether chunks record `start_index` (LangChain's semantic `start_index`: the sum of the
    /// previous chunks' lengths).
    #[must_use]
    pub fn with_start_index(mut self, add: bool) -> Self {
        self.add_start_index = add;
        self
    }

    /// `re.split` of the text on the sentence pattern.
    fn sentences<'t>(&self, text: &'t str) -> Result<Vec<&'t str>> {
        let mut out = Vec::new();
        let mut from = 0;
        let mut cut = |start: usize, end: usize| {
            out.push(text.get(from..start).unwrap_or_default());
            from = end;
        };
        match &self.sentence_pattern {
            Some(pattern) => {
                for found in pattern.find_iter(text) {
                    let found =
                        found.map_err(|e| Error::invalid_input(format!("sentence pattern failed: {e}")))?;
                    cut(found.start(), found.end());
                }
            }
            None => {
                // Whitespace runs (Python's \s) that follow '.', '?' or '!'.
                let mut previous = None;
                let mut run: Option<usize> = None;
                for (i, c) in text.char_indices() {
                    if py_is_space(c) {
                        if run.is_none() && matches!(previous, Some('.' | '?' | '!')) {
                            run = Some(i);
                        }
                    } else if let Some(start) = run.take() {
                        cut(start, i);
                    }
                    previous = Some(c);
                }
                if let Some(start) = run {
                    cut(start, text.len());
                }
            }
        }
        out.push(text.get(from..).unwrap_or_default());
        Ok(out)
    }

    /// The chunks of one text.
    pub async fn split_text(&self, text: &str, ctx: &RunContext) -> Result<Vec<String>> {
        let sentences = self.sentences(text)?;
        let trivial = sentences.len() == 1
            || (matches!(self.threshold, BreakpointThreshold::Gradient(_)) && sentences.len() == 2);
        if trivial {
            let chunks = sentences.into_iter().map(str::to_owned).collect();
            return self.bound(chunks);
        }
        let distances = self.distances(&sentences, ctx).await?;
        let (threshold, scores) = match self.number_of_chunks {
            Some(n) => (threshold_for_chunks(&distances, n), distances.clone()),
            None => breakpoint_threshold(self.threshold, &distances),
        };
        let mut groups: Vec<(usize, usize)> = Vec::new();
        let mut start = 0;
        for (i, score) in scores.iter().enumerate() {
            if *score <= threshold {
                continue;
            }
            let chars: usize =
                sentences.get(start..=i).unwrap_or_default().iter().map(|s| s.chars().count() + 1).sum();
            if self.min_chunk_size.is_some_and(|min| chars.saturating_sub(1) < min) {
                continue;
            }
            groups.push((start, i + 1));
            start = i + 1;
        }
        if start < sentences.len() {
            groups.push((start, sentences.len()));
        }
        let mut chunks = Vec::new();
        for (from, to) in groups {
            self.bounded_group(&sentences, &distances, from, to, &mut chunks)?;
        }
        Ok(chunks)
    }

    /// Cosine distances between consecutive sentence windows.
    async fn distances(&self, sentences: &[&str], ctx: &RunContext) -> Result<Vec<f64>> {
        let n = sentences.len();
        let windows: Vec<String> = (0..n)
            .map(|i| {
                let from = i.saturating_sub(self.buffer_size);
                let to = (i + 1 + self.buffer_size).min(n);
                sentences.get(from..to).unwrap_or_default().join(" ")
            })
            .collect();
        let mut vectors = Vec::with_capacity(n);
        for batch in windows.chunks(self.batch_size) {
            ctx.check_cancelled()?;
            vectors.extend(self.embedder.embed(batch, ctx).await?);
        }
        if vectors.len() != n {
            return Err(Error::model_permanent(format!(
                "the embedder returned {} vectors for {n} sentence windows",
                vectors.len()
            )));
        }
        Ok(vectors.iter().zip(vectors.iter().skip(1)).map(|(a, b)| 1.0 - cosine(a, b)).collect())
    }

    /// Appends the sentences `from..to` as one chunk, or as several when it exceeds the maximum
    /// size: cut at the group's largest inner distance, recursively; a single sentence that is
    /// still too long goes through the recursive splitter.
    fn bounded_group(
        &self,
        sentences: &[&str],
        distances: &[f64],
        from: usize,
        to: usize,
        out: &mut Vec<String>,
    ) -> Result<()> {
        let joined = sentences.get(from..to).unwrap_or_default().join(" ");
        let Some(max) = self.max_chunk_size else {
            out.push(joined);
            return Ok(());
        };
        if joined.chars().count() <= max {
            out.push(joined);
            return Ok(());
        }
        if to - from == 1 {
            out.extend(RecursiveCharacterSplitter::new(max, 0)?.split_text(&joined)?);
            return Ok(());
        }
        // distances[i] is between sentences i and i + 1: cut after the most distant pair.
        let cut = (from..to - 1)
            .max_by(|&a, &b| {
                let (da, db) =
                    (distances.get(a).copied().unwrap_or(0.0), distances.get(b).copied().unwrap_or(0.0));
                da.total_cmp(&db)
            })
            .unwrap_or(from);
        self.bounded_group(sentences, distances, from, cut + 1, out)?;
        self.bounded_group(sentences, distances, cut + 1, to, out)
    }

    fn bound(&self, chunks: Vec<String>) -> Result<Vec<String>> {
        let Some(max) = self.max_chunk_size else { return Ok(chunks) };
        let splitter = RecursiveCharacterSplitter::new(max, 0)?;
        let mut out = Vec::new();
        for chunk in chunks {
            if chunk.chars().count() <= max {
                out.push(chunk);
            } else {
                out.extend(splitter.split_text(&chunk)?);
            }
        }
        Ok(out)
    }

    /// The chunks of each document, carrying its metadata.
    pub async fn split_documents(&self, documents: &[Document], ctx: &RunContext) -> Result<Vec<Document>> {
        let mut out = Vec::new();
        for document in documents {
            let mut start = 0usize;
            for content in self.split_text(&document.content, ctx).await? {
                let mut metadata = document.metadata.clone();
                if self.add_start_index {
                    metadata.insert("start_index".into(), start.into());
                }
                start += content.chars().count();
                out.push(Document { id: None, content, metadata });
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl Runnable<Vec<Document>, Vec<Document>> for SemanticSplitter {
    async fn invoke(&self, input: Vec<Document>, ctx: &RunContext) -> Result<Vec<Document>> {
        self.split_documents(&input, ctx).await
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut dot, mut na, mut nb) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (f64::from(*x), f64::from(*y));
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 { 0.0 } else { dot / (na.sqrt() * nb.sqrt()) }
}

/// numpy's `percentile` with its default linear interpolation.
pub(crate) fn percentile(values: &[f64], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let Some(last) = sorted.len().checked_sub(1) else { return f64::NAN };
    let rank = (p / 100.0).clamp(0.0, 1.0) * last as f64;
    let low = rank.floor() as usize;
    let high = rank.ceil() as usize;
    let (a, b) =
        (sorted.get(low).copied().unwrap_or(f64::NAN), sorted.get(high).copied().unwrap_or(f64::NAN));
    a + (b - a) * (rank - low as f64)
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// numpy's `gradient` with unit spacing: one-sided at the ends, central inside.
pub(crate) fn gradient(values: &[f64]) -> Vec<f64> {
    let n = values.len();
    let at = |i: usize| values.get(i).copied().unwrap_or(0.0);
    (0..n)
        .map(|i| match i {
            0 => at(1) - at(0),
            i if i == n - 1 => at(i) - at(i - 1),
            i => (at(i + 1) - at(i - 1)) / 2.0,
        })
        .collect()
}

/// The threshold and the scores compared with it (distances, or their gradient).
fn breakpoint_threshold(rule: BreakpointThreshold, distances: &[f64]) -> (f64, Vec<f64>) {
    match rule {
        BreakpointThreshold::Percentile(p) => (percentile(distances, p), distances.to_vec()),
        BreakpointThreshold::StandardDeviation(k) => {
            let m = mean(distances);
            let var = distances.iter().map(|d| (d - m) * (d - m)).sum::<f64>() / distances.len() as f64;
            (m + k * var.sqrt(), distances.to_vec())
        }
        BreakpointThreshold::Interquartile(k) => {
            let iqr = percentile(distances, 75.0) - percentile(distances, 25.0);
            (mean(distances) + k * iqr, distances.to_vec())
        }
        BreakpointThreshold::Gradient(p) => {
            let g = gradient(distances);
            (percentile(&g, p), g)
        }
    }
}

/// LangChain's `_threshold_from_clusters`: the percentile that leaves about `chunks` chunks.
fn threshold_for_chunks(distances: &[f64], chunks: usize) -> f64 {
    let (x1, y1) = (distances.len() as f64, 0.0);
    let (x2, y2) = (1.0, 100.0);
    let x = (chunks as f64).min(x1).max(x2);
    let y = if x2 == x1 { y2 } else { y1 + ((y2 - y1) / (x2 - x1)) * (x - x1) };
    percentile(distances, y.clamp(0.0, 100.0))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::float_cmp)]
    use super::*;

    #[test]
    fn statistics_match_numpy() {
        // np.percentile([1, 2, 3, 4], 95) == 3.85; np.gradient([1, 4, 9, 16]) == [3, 4, 6, 7]
        assert!((percentile(&[4.0, 1.0, 3.0, 2.0], 95.0) - 3.85).abs() < 1e-12);
        assert_eq!(gradient(&[1.0, 4.0, 9.0, 16.0]), [3.0, 4.0, 6.0, 7.0]);
        // mean 2.5 + 3 * population std 1.118... = 5.854...
        let (t, _) = breakpoint_threshold(BreakpointThreshold::StandardDeviation(3.0), &[1.0, 2.0, 3.0, 4.0]);
        assert!((t - (2.5 + 3.0 * 1.25f64.sqrt())).abs() < 1e-12);
        assert_eq!(threshold_for_chunks(&[0.1, 0.5, 0.9], 3), 0.1);
    }

    #[test]
    fn sentences_split_like_python() {
        // re.split(r"(?<=[.?!])\s+", "A b. C?  D!\nE. ") == ['A b.', 'C?', 'D!', 'E.', '']
        let s = SemanticSplitter::new(Arc::new(catena_core::testing::DeterministicEmbedder::new(8)));
        assert_eq!(s.sentences("A b. C?  D!\nE. ").unwrap(), ["A b.", "C?", "D!", "E.", ""]);
        assert_eq!(s.sentences("no stop here").unwrap(), ["no stop here"]);
    }
}
