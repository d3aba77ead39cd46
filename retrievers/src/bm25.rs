//! [`Bm25Retriever`]: Okapi BM25 keyword search over documents held in memory.

use std::collections::HashMap;
use std::collections::HashSet;

use async_trait::async_trait;
use catena_core::{Document, Error, Filter, Result, Retriever, RunContext, ScoredDocument};
use rayon::prelude::*;
use unicode_segmentation::UnicodeSegmentation;

/// How text becomes index terms. The same analyzer must read the corpus and the queries.
#[derive(Debug, Clone)]
pub struct Analyzer {
    words: WordMode,
    lowercase: bool,
    stop_words: Option<HashSet<String>>,
    stemmer: Option<rust_stemmers::Algorithm>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WordMode {
    /// Python's `str.split()`: runs of whitespace separate tokens.
    Whitespace,
    /// Unicode word boundaries (UAX #29), punctuation dropped.
    UnicodeWords,
}

impl Analyzer {
    /// Python's `text.split()` and nothing else: case and punctuation are kept.
    #[must_use]
    pub fn whitespace() -> Self {
        Self { words: WordMode::Whitespace, lowercase: false, stop_words: None, stemmer: None }
    }

    /// Unicode words (UAX #29), lowercased; no stop words, no stemming. Works for any language
    /// that separates words (for Chinese or Japanese, each ideograph is a word).
    #[must_use]
    pub fn unicode() -> Self {
        Self { words: WordMode::UnicodeWords, lowercase: true, stop_words: None, stemmer: None }
    }

    /// [`unicode`](Self::unicode) plus NLTK's English stop words and the Snowball English stemmer.
    #[must_use]
    pub fn english() -> Self {
        Self::unicode()
            .with_stop_words(stop_words::lookup("en").unwrap_or_default().iter().copied())
            .with_stemmer(rust_stemmers::Algorithm::English)
    }

    /// Drops these words (compared after lowercasing, before stemming).
    #[must_use]
    pub fn with_stop_words<S: Into<String>>(mut self, words: impl IntoIterator<Item = S>) -> Self {
        self.stop_words = Some(words.into_iter().map(Into::into).collect());
        self
    }

    /// Reduces words to their stems with a Snowball algorithm.
    #[must_use]
    pub fn with_stemmer(mut self, algorithm: rust_stemmers::Algorithm) -> Self {
        self.stemmer = Some(algorithm);
        self
    }

    /// Whether to lowercase (on by default except for [`whitespace`](Self::whitespace)).
    #[must_use]
    pub fn with_lowercase(mut self, lowercase: bool) -> Self {
        self.lowercase = lowercase;
        self
    }

    /// The terms of `text`, in order, repeats kept.
    #[must_use]
    pub fn terms(&self, text: &str) -> Vec<String> {
        let stemmer = self.stemmer.map(rust_stemmers::Stemmer::create);
        let words: Box<dyn Iterator<Item = &str>> = match self.words {
            WordMode::Whitespace => Box::new(text.split(py_is_space).filter(|w| !w.is_empty())),
            WordMode::UnicodeWords => Box::new(text.unicode_words()),
        };
        words
            .filter_map(|w| {
                let w = if self.lowercase { w.to_lowercase() } else { w.to_owned() };
                if self.stop_words.as_ref().is_some_and(|s| s.contains(&w)) {
                    return None;
                }
                Some(match &stemmer {
                    Some(s) => s.stem(&w).into_owned(),
                    None => w,
                })
            })
            .collect()
    }
}

/// Python's `str.isspace`, which `str.split()` splits on (it includes U+001C..U+001F, which
/// Rust's `char::is_whitespace` does not).
fn py_is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// How rare a term is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Idf {
    /// `ln(1 + (N - n + 0.5) / (n + 0.5))`: never negative (Lucene, Elasticsearch, bm25s).
    Lucene,
    /// `ln(N - n + 0.5) - ln(n + 0.5)`, with terms in more than half the documents floored to
    /// `epsilon` times the mean idf (rank_bm25's `BM25Okapi`; its default epsilon is 0.25).
    RankBm25 {
        /// The floor, as a fraction of the mean idf.
        epsilon: f64,
    },
}

/// BM25's parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bm25Params {
    /// Term-frequency saturation (default 1.5, as rank_bm25; Lucene uses 1.2).
    pub k1: f64,
    /// Length normalisation, 0 (none) to 1 (full); default 0.75.
    pub b: f64,
    /// The idf formula.
    pub idf: Idf,
}

impl Default for Bm25Params {
    fn default() -> Self {
        Self { k1: 1.5, b: 0.75, idf: Idf::Lucene }
    }
}

impl Bm25Params {
    /// rank_bm25's `BM25Okapi` defaults: k1 1.5, b 0.75, epsilon 0.25.
    #[must_use]
    pub fn rank_bm25() -> Self {
        Self { k1: 1.5, b: 0.75, idf: Idf::RankBm25 { epsilon: 0.25 } }
    }
}

/// An inverted index with BM25 scoring. Build it once, query it many times.
#[derive(Debug, Clone)]
pub struct Bm25Index {
    analyzer: Analyzer,
    params: Bm25Params,
    /// Term -> its number, in order of first appearance (rank_bm25's dict order, which fixes the
    /// order its mean idf is summed in).
    term_ids: HashMap<String, u32>,
    /// Per term: (document, term frequency), documents ascending.
    postings: Vec<Vec<(u32, u32)>>,
    idf: Vec<f64>,
    doc_len: Vec<u32>,
    /// `k1 * (1 - b + b * len / avgdl)` per document, computed in rank_bm25's operation order.
    norm: Vec<f64>,
    documents: Vec<Document>,
}

impl Bm25Index {
    /// Indexes `documents` (their content), analysing them in parallel.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when there are no documents or the parameters are out of range.
    pub fn new(documents: Vec<Document>, analyzer: Analyzer, params: Bm25Params) -> Result<Self> {
        if documents.is_empty() {
            return Err(Error::invalid_input("BM25 needs at least one document to index"));
        }
        if !(params.k1.is_finite() && params.k1 >= 0.0 && (0.0..=1.0).contains(&params.b)) {
            return Err(Error::invalid_input(format!(
                "BM25 parameters out of range: k1 = {} (must be >= 0), b = {} (must be in [0, 1])",
                params.k1, params.b
            )));
        }
        let analysed: Vec<Vec<String>> = documents.par_iter().map(|d| analyzer.terms(&d.content)).collect();
        let mut term_ids: HashMap<String, u32> = HashMap::new();
        let mut postings: Vec<Vec<(u32, u32)>> = Vec::new();
        let mut doc_len = Vec::with_capacity(documents.len());
        for (doc, terms) in analysed.into_iter().enumerate() {
            let doc =
                u32::try_from(doc).map_err(|_| Error::invalid_input("too many documents for one index"))?;
            doc_len.push(u32::try_from(terms.len()).unwrap_or(u32::MAX));
            // Term frequencies in first-appearance order, so new terms get numbers in the order
            // rank_bm25's dictionaries see them.
            let mut order: Vec<u32> = Vec::new();
            let mut tf: HashMap<u32, u32> = HashMap::new();
            for term in terms {
                let next = u32::try_from(term_ids.len()).unwrap_or(u32::MAX);
                let id = *term_ids.entry(term).or_insert_with(|| {
                    postings.push(Vec::new());
                    next
                });
                let count = tf.entry(id).or_insert(0);
                if *count == 0 {
                    order.push(id);
                }
                *count += 1;
            }
            for id in order {
                if let (Some(list), Some(&count)) = (postings.get_mut(id as usize), tf.get(&id)) {
                    list.push((doc, count));
                }
            }
        }
        let n = documents.len() as f64;
        let total: u64 = doc_len.iter().map(|&l| u64::from(l)).sum();
        let avgdl = total as f64 / n;
        let idf = idf_values(&postings, n, params.idf);
        let norm = doc_len
            .iter()
            .map(|&len| {
                // rank_bm25: k1 * (1 - b + b * doc_len / avgdl), evaluated left to right.
                let ratio = if avgdl > 0.0 { params.b * f64::from(len) / avgdl } else { 0.0 };
                params.k1 * (1.0 - params.b + ratio)
            })
            .collect();
        Ok(Self { analyzer, params, term_ids, postings, idf, doc_len, norm, documents })
    }

    /// The documents, in index order.
    #[must_use]
    pub fn documents(&self) -> &[Document] {
        &self.documents
    }

    /// How many documents are indexed.
    #[must_use]
    pub fn len(&self) -> usize {
        self.documents.len()
    }

    /// Whether the index is empty (never, once built).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.documents.is_empty()
    }

    /// The analyzer the index was built with.
    #[must_use]
    pub fn analyzer(&self) -> &Analyzer {
        &self.analyzer
    }

    /// The BM25 score of every document for `query`, in index order (0 for documents sharing no
    /// term with it). Query terms count as often as they occur, as in rank_bm25.
    #[must_use]
    pub fn scores(&self, query: &str) -> Vec<f64> {
        let mut scores = vec![0.0f64; self.documents.len()];
        self.accumulate(query, &mut scores, &mut None);
        scores
    }

    /// Adds each query term's contribution to `scores`; records which documents matched.
    fn accumulate(&self, query: &str, scores: &mut [f64], touched: &mut Option<Vec<bool>>) {
        let k1_plus_1 = self.params.k1 + 1.0;
        for term in self.analyzer.terms(query) {
            let Some(&id) = self.term_ids.get(&term) else { continue };
            let idf = self.idf.get(id as usize).copied().unwrap_or(0.0);
            for &(doc, tf) in self.postings.get(id as usize).map(Vec::as_slice).unwrap_or_default() {
                let tf = f64::from(tf);
                let norm = self.norm.get(doc as usize).copied().unwrap_or(0.0);
                if let Some(score) = scores.get_mut(doc as usize) {
                    *score += idf * (tf * k1_plus_1 / (tf + norm));
                }
                if let Some(flag) = touched.as_mut().and_then(|t| t.get_mut(doc as usize)) {
                    *flag = true;
                }
            }
        }
    }

    /// The `k` best documents containing at least one query term (and matching `filter`), best
    /// first; equal scores keep index order.
    #[must_use]
    pub fn search(&self, query: &str, k: usize, filter: Option<&Filter>) -> Vec<(usize, f64)> {
        let mut scores = vec![0.0f64; self.documents.len()];
        let mut touched = Some(vec![false; self.documents.len()]);
        self.accumulate(query, &mut scores, &mut touched);
        let touched = touched.unwrap_or_default();
        let mut hits: Vec<(usize, f64)> = scores
            .into_iter()
            .enumerate()
            .filter(|(i, _)| touched.get(*i).copied().unwrap_or(false))
            .filter(|(i, _)| {
                filter.is_none_or(|f| self.documents.get(*i).is_some_and(|d| f.matches_document(d)))
            })
            .collect();
        let by_score = |a: &(usize, f64), b: &(usize, f64)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if hits.len() > k && k > 0 {
            hits.select_nth_unstable_by(k - 1, by_score);
            hits.truncate(k);
        }
        hits.sort_by(by_score);
        hits.truncate(k);
        hits
    }

    /// Document lengths in terms, in index order.
    #[must_use]
    pub fn document_lengths(&self) -> &[u32] {
        &self.doc_len
    }
}

fn idf_values(postings: &[Vec<(u32, u32)>], n: f64, idf: Idf) -> Vec<f64> {
    match idf {
        Idf::Lucene => postings
            .iter()
            .map(|p| {
                let df = p.len() as f64;
                (1.0 + (n - df + 0.5) / (df + 0.5)).ln()
            })
            .collect(),
        Idf::RankBm25 { epsilon } => {
            let mut values: Vec<f64> = Vec::with_capacity(postings.len());
            let mut sum = 0.0f64;
            for p in postings {
                let df = p.len() as f64;
                let value = (n - df + 0.5).ln() - (df + 0.5).ln();
                sum += value;
                values.push(value);
            }
            let floor = epsilon * (sum / postings.len().max(1) as f64);
            for v in &mut values {
                if *v < 0.0 {
                    *v = floor;
                }
            }
            values
        }
    }
}

/// Keyword search with [`Bm25Index`] as a [`Retriever`]; scores are raw BM25 scores.
///
/// ```
/// use catena_core::{Document, Retriever, RunContext};
/// use catena_retrievers::Bm25Retriever;
///
/// # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// # rt.block_on(async {
/// let docs = vec![
///     Document::new("The borrow checker enforces ownership rules."),
///     Document::new("Paris is the capital of France."),
/// ];
/// let bm25 = Bm25Retriever::from_documents(docs).unwrap().with_k(1);
/// let hits = bm25.retrieve("who owns borrowed values?", &RunContext::new()).await.unwrap();
/// assert!(hits[0].document.content.starts_with("The borrow checker"));
/// # });
/// ```
///
/// Two presets cover what users reach for:
/// - [`Bm25Params::default`] with [`Analyzer::english`]: Unicode words, lowercased, English stop
///   words dropped, Snowball-stemmed, and the always-positive Lucene idf
///   `ln(1 + (N - n + 0.5) / (n + 0.5))`. This is what a search engine does.
/// - [`Bm25Params::rank_bm25`] with [`Analyzer::whitespace`]: the scores of Python's
///   `rank_bm25.BM25Okapi` on `text.split()` tokens, to the last bit (same idf with its epsilon
///   floor, same arithmetic order), which is also what LangChain's `BM25Retriever` computes.
#[derive(Debug, Clone)]
pub struct Bm25Retriever {
    index: std::sync::Arc<Bm25Index>,
    k: usize,
    filter: Option<Filter>,
}

impl Bm25Retriever {
    /// Indexes `documents` with [`Analyzer::english`] and [`Bm25Params::default`].
    ///
    /// # Errors
    /// See [`Bm25Index::new`].
    pub fn from_documents(documents: Vec<Document>) -> Result<Self> {
        Ok(Self::new(Bm25Index::new(documents, Analyzer::english(), Bm25Params::default())?))
    }

    /// Searches an index built by the caller (say, with [`Bm25Params::rank_bm25`]).
    #[must_use]
    pub fn new(index: Bm25Index) -> Self {
        Self { index: std::sync::Arc::new(index), k: 4, filter: None }
    }

    /// How many documents to return (default 4).
    #[must_use]
    pub fn with_k(mut self, k: usize) -> Self {
        self.k = k;
        self
    }

    /// Only documents whose metadata match.
    #[must_use]
    pub fn with_filter(mut self, filter: Filter) -> Self {
        self.filter = Some(filter);
        self
    }

    /// The index searched.
    #[must_use]
    pub fn index(&self) -> &Bm25Index {
        &self.index
    }
}

#[async_trait]
impl Retriever for Bm25Retriever {
    async fn retrieve(&self, query: &str, ctx: &RunContext) -> Result<Vec<ScoredDocument>> {
        crate::check_query(query, self.k)?;
        let filter = catena_core::security::scoped_filter(self.filter.as_ref(), ctx);
        let hits: Vec<ScoredDocument> = self
            .index
            .search(query, self.k, filter.as_ref())
            .into_iter()
            .filter_map(|(i, s)| {
                self.index.documents.get(i).map(|d| ScoredDocument::new(d.clone(), s as f32))
            })
            .collect();
        crate::emit_retrieved(ctx, query, &hits);
        Ok(hits)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn docs(texts: &[&str]) -> Vec<Document> {
        texts.iter().map(|t| Document::new(*t)).collect()
    }

    #[test]
    fn rank_bm25_by_hand() {
        // Three documents; "a" is in all three (idf negative -> floored), "b" in one.
        let index =
            Bm25Index::new(docs(&["a b", "a a", "a c c"]), Analyzer::whitespace(), Bm25Params::rank_bm25())
                .unwrap();
        let n = 3.0f64;
        let idf_a = (n - 3.0 + 0.5f64).ln() - (3.0f64 + 0.5).ln();
        let idf_b = (n - 1.0 + 0.5f64).ln() - (1.0f64 + 0.5).ln();
        let idf_c = idf_b;
        let floor = 0.25 * ((idf_a + idf_b + idf_c) / 3.0);
        let avgdl = 7.0 / 3.0;
        let part =
            |tf: f64, len: f64, idf: f64| idf * (tf * 2.5 / (tf + 1.5 * (1.0 - 0.75 + 0.75 * len / avgdl)));
        let s = index.scores("b a");
        assert_eq!(s[0], 0.0 + part(1.0, 2.0, idf_b) + part(1.0, 2.0, floor));
        assert_eq!(s[1], part(2.0, 2.0, floor));
        assert_eq!(s[2], part(1.0, 3.0, floor));
    }

    #[test]
    fn english_analyzer_stems_and_drops_stop_words() {
        let a = Analyzer::english();
        assert_eq!(a.terms("The Running dogs, and their owners!"), ["run", "dog", "owner"]);
        assert_eq!(Analyzer::whitespace().terms(" a\u{1f}B\tc "), ["a", "B", "c"]);
    }

    #[test]
    fn search_orders_and_filters() {
        let mut d = docs(&["rust borrow checker", "rust rust rust", "python garbage collector"]);
        d[1] = d[1].clone().with_metadata("lang", "en");
        let index = Bm25Index::new(d, Analyzer::unicode(), Bm25Params::default()).unwrap();
        let hits = index.search("rust", 10, None);
        assert_eq!(hits.iter().map(|h| h.0).collect::<Vec<_>>(), [1, 0], "only matching documents");
        let hits = index.search("rust", 10, Some(&Filter::eq("lang", "en")));
        assert_eq!(hits.len(), 1);
        assert!(index.search("nothing matches", 3, None).is_empty());
        assert!(Bm25Index::new(vec![], Analyzer::unicode(), Bm25Params::default()).is_err());
        let bad = Bm25Params { b: 1.5, ..Bm25Params::default() };
        assert!(Bm25Index::new(docs(&["x"]), Analyzer::unicode(), bad).is_err());
    }
}
