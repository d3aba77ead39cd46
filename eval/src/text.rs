//! Text metrics with the exact semantics of the reference tools, so scores compare with papers:
//!
//! - [`corpus_bleu`] / [`sentence_bleu`]: sacrebleu 2.x's BLEU with its defaults (the `13a`
//!   tokenizer of mteval-v13a, case-sensitive, `exp` smoothing, 4-grams; sentence BLEU with
//!   effective order), on a 0–100 scale like sacrebleu.
//! - [`rouge`] / [`rouge_stemmed`]: Google's `rouge-score` (its tokenizer: lowercase, runs of
//!   `[a-z0-9]`; ROUGE-N, ROUGE-L, and ROUGE-Lsum over newline-separated sentences), without or
//!   with its Porter stemming ([`porter_stem`], NLTK's variant, on tokens longer than 3 letters).
//! - [`exact_match`] / [`token_f1`]: the SQuAD v2.0 evaluation script (lowercase, punctuation
//!   and articles removed, whitespace collapsed; token F1 with the empty-answer rule), max over
//!   several references.
//!
//! ```
//! use catena_eval::text::{rouge, sentence_bleu, token_f1, RougeKind};
//!
//! // The value sacrebleu.sentence_bleu gives for the same pair.
//! let bleu = sentence_bleu("The cat sat on the mat.", &["The cat is on the mat."]).unwrap();
//! assert!((bleu.score - 48.892_302_243_490_086).abs() < 1e-9);
//! let r = rouge("the cat is on the mat", "the cat sat on the mat", RougeKind::N(1));
//! assert!((r.fmeasure - 5.0 / 6.0).abs() < 1e-12);
//! assert_eq!(token_f1("The Eiffel Tower", &["eiffel tower"]), 1.0);
//! ```

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;

pub use crate::porter::porter_stem;

/// A text-metric input error: mismatched lists, a missing reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TextMetricError(pub String);

/// Python's `str.split()` whitespace: Unicode White_Space plus the four ASCII separators
/// (U+001C..U+001F) Python also splits on, so token counts match the reference tools exactly.
fn python_split(text: &str) -> impl Iterator<Item = &str> {
    text.split(is_python_space).filter(|t| !t.is_empty())
}

/// Python's `str.isspace()`.
fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

// ---- BLEU ----------------------------------------------------------------------------------

/// How BLEU smooths n-gram orders with no match (Chen & Cherry 2014, as sacrebleu names them).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Smoothing {
    /// None: a zero precision makes BLEU 0.
    None,
    /// Method 1: zero counts become `value` (sacrebleu's default 0.1).
    Floor(f64),
    /// Method 2: add `value` (default 1) to the counts and totals of orders above 1.
    AddK(f64),
    /// Method 3, NIST's (sacrebleu's default): the k-th zero precision is 1 / (2^k · total).
    Exp,
}

/// How text is tokenized before BLEU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BleuTokenizer {
    /// mteval-v13a's tokenizer, sacrebleu's default.
    Thirteen,
    /// Whitespace only (already tokenized text).
    None,
}

/// BLEU's settings; the default is sacrebleu's corpus BLEU.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BleuOptions {
    /// Lowercase before tokenizing.
    pub lowercase: bool,
    /// The tokenizer.
    pub tokenizer: BleuTokenizer,
    /// The smoothing.
    pub smoothing: Smoothing,
    /// Average only up to the highest order with any n-grams (sentence BLEU's default).
    pub effective_order: bool,
    /// The highest n-gram order.
    pub max_order: usize,
}

impl Default for BleuOptions {
    fn default() -> Self {
        Self {
            lowercase: false,
            tokenizer: BleuTokenizer::Thirteen,
            smoothing: Smoothing::Exp,
            effective_order: false,
            max_order: 4,
        }
    }
}

/// A BLEU score and its sufficient statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct Bleu {
    /// BLEU on a 0–100 scale.
    pub score: f64,
    /// Matched n-grams per order.
    pub correct: Vec<f64>,
    /// Hypothesis n-grams per order.
    pub total: Vec<f64>,
    /// Modified precisions per order, 0–100.
    pub precisions: Vec<f64>,
    /// Brevity penalty.
    pub brevity_penalty: f64,
    /// Hypothesis tokens.
    pub sys_len: usize,
    /// Closest reference tokens.
    pub ref_len: usize,
}

/// mteval-v13a's regular expressions, applied in order.
const PUNCTUATION_RULES: [(&str, &str); 4] = [
    // Western punctuation and symbols become their own tokens.
    (r"([{-~\[-\x60\x20-&(-+:-@/])", " ${1} "),
    // Period and comma unless preceded by a digit...
    (r"([^0-9])([.,])", "${1} ${2} "),
    // ...or followed by one.
    (r"([.,])([^0-9])", " ${1} ${2}"),
    // A dash after a digit.
    (r"([0-9])(-)", "${1} ${2} "),
];

static PUNCTUATION: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    PUNCTUATION_RULES
        .iter()
        .filter_map(|(pattern, replacement)| Some((Regex::new(pattern).ok()?, *replacement)))
        .collect()
});

/// mteval-v13a's tokenization, as sacrebleu's `13a` tokenizer: tokens joined by single spaces.
#[must_use]
pub fn tokenize_13a(line: &str) -> String {
    let mut line = line.replace("<skipped>", "").replace("-\n", "").replace('\n', " ");
    if line.contains('&') {
        line = line.replace("&quot;", "\"").replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">");
    }
    let mut text = format!(" {line} ");
    for (re, replacement) in PUNCTUATION.iter() {
        text = re.replace_all(&text, *replacement).into_owned();
    }
    python_split(&text).collect::<Vec<_>>().join(" ")
}

fn preprocess(text: &str, options: &BleuOptions) -> String {
    // sacrebleu strips trailing whitespace before tokenizing.
    let text = text.trim_end_matches(is_python_space);
    let text = if options.lowercase { text.to_lowercase() } else { text.to_owned() };
    match options.tokenizer {
        BleuTokenizer::Thirteen => tokenize_13a(&text),
        BleuTokenizer::None => text,
    }
}

fn ngram_counts(tokens: &[&str], max_order: usize) -> HashMap<Vec<String>, usize> {
    let mut counts = HashMap::new();
    for n in 1..=max_order {
        for window in tokens.windows(n) {
            *counts.entry(window.iter().map(|t| (*t).to_owned()).collect()).or_insert(0) += 1;
        }
    }
    counts
}

/// One segment's statistics: (hypothesis length, closest reference length, correct, total).
fn segment_stats(
    hypothesis: &str,
    references: &[String],
    max_order: usize,
) -> (usize, usize, Vec<usize>, Vec<usize>) {
    let mut ref_counts: HashMap<Vec<String>, usize> = HashMap::new();
    let mut ref_lens = Vec::with_capacity(references.len());
    for reference in references {
        let tokens: Vec<&str> = python_split(reference).collect();
        ref_lens.push(tokens.len());
        for (ngram, count) in ngram_counts(&tokens, max_order) {
            let slot = ref_counts.entry(ngram).or_insert(0);
            *slot = (*slot).max(count);
        }
    }
    let tokens: Vec<&str> = python_split(hypothesis).collect();
    let hyp_len = tokens.len();
    // The closest reference length; ties go to the shorter one.
    let mut closest: Option<(usize, usize)> = None;
    for &len in &ref_lens {
        let diff = hyp_len.abs_diff(len);
        closest = match closest {
            None => Some((diff, len)),
            Some((d, _)) if diff < d => Some((diff, len)),
            Some((d, l)) if diff == d && len < l => Some((diff, len)),
            keep => keep,
        };
    }
    let mut correct = vec![0; max_order];
    let mut total = vec![0; max_order];
    for (ngram, count) in ngram_counts(&tokens, max_order) {
        let n = ngram.len() - 1;
        if let Some(slot) = total.get_mut(n) {
            *slot += count;
        }
        if let (Some(slot), Some(max_ref)) = (correct.get_mut(n), ref_counts.get(&ngram)) {
            *slot += count.min(*max_ref);
        }
    }
    (hyp_len, closest.map_or(0, |(_, len)| len), correct, total)
}

/// BLEU from summed statistics, as sacrebleu's `compute_bleu`.
fn compute_bleu(
    mut correct: Vec<f64>,
    mut total: Vec<f64>,
    sys_len: usize,
    ref_len: usize,
    options: &BleuOptions,
) -> Bleu {
    let max_order = options.max_order;
    let brevity_penalty = if sys_len < ref_len {
        if sys_len > 0 { (1.0 - ref_len as f64 / sys_len as f64).exp() } else { 0.0 }
    } else {
        1.0
    };
    let mut precisions = vec![0.0; max_order];
    let done = |score: f64, correct: Vec<f64>, total: Vec<f64>, precisions: Vec<f64>| Bleu {
        score,
        correct,
        total,
        precisions,
        brevity_penalty,
        sys_len,
        ref_len,
    };
    if correct.iter().all(|c| *c == 0.0) {
        return done(0.0, correct, total, precisions);
    }
    let mut smooth_mteval = 1.0;
    let mut eff_order = max_order;
    for n in 1..=max_order {
        let i = n - 1;
        let (Some(c), Some(t), Some(p)) = (correct.get_mut(i), total.get_mut(i), precisions.get_mut(i))
        else {
            break;
        };
        if let Smoothing::AddK(k) = options.smoothing
            && n > 1
        {
            *c += k;
            *t += k;
        }
        if *t == 0.0 {
            break;
        }
        if options.effective_order {
            eff_order = n;
        }
        if *c == 0.0 {
            match options.smoothing {
                Smoothing::Exp => {
                    smooth_mteval *= 2.0;
                    *p = 100.0 / (smooth_mteval * *t);
                }
                Smoothing::Floor(value) => *p = 100.0 * value / *t,
                Smoothing::None | Smoothing::AddK(_) => {}
            }
        } else {
            *p = 100.0 * *c / *t;
        }
    }
    // sacrebleu floors log(0) at -9999999999 rather than -inf.
    let log = |p: f64| if p == 0.0 { -9_999_999_999.0 } else { p.ln() };
    let mean_log = precisions.iter().take(eff_order).map(|p| log(*p)).sum::<f64>() / eff_order as f64;
    let score = brevity_penalty * mean_log.exp();
    done(score, correct, total, precisions)
}

/// Corpus BLEU: `references[i]` are the references of `hypotheses[i]` (one or more each).
pub fn corpus_bleu<H: AsRef<str>, R: AsRef<str>>(
    hypotheses: &[H],
    references: &[Vec<R>],
    options: &BleuOptions,
) -> Result<Bleu, TextMetricError> {
    if hypotheses.len() != references.len() {
        return Err(TextMetricError(format!(
            "{} hypotheses but {} reference sets; give one set per hypothesis",
            hypotheses.len(),
            references.len()
        )));
    }
    if options.max_order == 0 {
        return Err(TextMetricError("max_order must be at least 1".into()));
    }
    let mut sys_len = 0;
    let mut ref_len = 0;
    let mut correct = vec![0.0; options.max_order];
    let mut total = vec![0.0; options.max_order];
    for (i, (hypothesis, refs)) in hypotheses.iter().zip(references).enumerate() {
        if refs.is_empty() {
            return Err(TextMetricError(format!("hypothesis {} has no reference", i + 1)));
        }
        let refs: Vec<String> = refs.iter().map(|r| preprocess(r.as_ref(), options)).collect();
        let (h, r, c, t) = segment_stats(&preprocess(hypothesis.as_ref(), options), &refs, options.max_order);
        sys_len += h;
        ref_len += r;
        for (sum, x) in correct.iter_mut().zip(c) {
            *sum += x as f64;
        }
        for (sum, x) in total.iter_mut().zip(t) {
            *sum += x as f64;
        }
    }
    Ok(compute_bleu(correct, total, sys_len, ref_len, options))
}

/// Sentence BLEU as sacrebleu's `sentence_bleu`: `options` with effective order on.
pub fn sentence_bleu<R: AsRef<str>>(hypothesis: &str, references: &[R]) -> Result<Bleu, TextMetricError> {
    let options = BleuOptions { effective_order: true, ..BleuOptions::default() };
    let refs: Vec<&str> = references.iter().map(AsRef::as_ref).collect();
    corpus_bleu(&[hypothesis], &[refs], &options)
}

// ---- ROUGE ---------------------------------------------------------------------------------

/// Which ROUGE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RougeKind {
    /// ROUGE-N: n-gram overlap.
    N(usize),
    /// ROUGE-L: longest common subsequence over the whole text.
    L,
    /// ROUGE-Lsum: summary-level LCS over sentences separated by newlines.
    Lsum,
}

impl std::str::FromStr for RougeKind {
    type Err = TextMetricError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "rougeL" => Ok(Self::L),
            "rougeLsum" => Ok(Self::Lsum),
            _ => s
                .strip_prefix("rouge")
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|n| *n > 0)
                .map(Self::N)
                .ok_or_else(|| {
                    TextMetricError(format!(
                        "unknown ROUGE type {s:?}; use rouge1, rouge2, ..., rougeL, rougeLsum"
                    ))
                }),
        }
    }
}

/// Precision, recall and F-measure of one ROUGE comparison.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rouge {
    /// Overlap over the prediction's size.
    pub precision: f64,
    /// Overlap over the target's size.
    pub recall: f64,
    /// Their harmonic mean (0 when both are 0).
    pub fmeasure: f64,
}

impl Rouge {
    fn new(precision: f64, recall: f64) -> Self {
        let fmeasure =
            if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 };
        Self { precision, recall, fmeasure }
    }
}

/// rouge-score's tokenizer: lowercase, then the runs of ASCII letters and digits.
#[must_use]
pub fn rouge_tokenize(text: &str) -> Vec<String> {
    tokenize_for_rouge(text, false)
}

/// rouge-score's tokenizer with `use_stemmer=True`: as [`rouge_tokenize`], then tokens longer
/// than 3 characters replaced by their Porter stem.
#[must_use]
pub fn rouge_tokenize_stemmed(text: &str) -> Vec<String> {
    tokenize_for_rouge(text, true)
}

fn tokenize_for_rouge(text: &str, stem: bool) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit()))
        .filter(|t| !t.is_empty())
        .map(|t| if stem && t.len() > 3 { porter_stem(t) } else { t.to_owned() })
        .collect()
}

fn ngrams(tokens: &[String], n: usize) -> HashMap<&[String], usize> {
    let mut counts = HashMap::new();
    for window in tokens.windows(n) {
        *counts.entry(window).or_insert(0) += 1;
    }
    counts
}

fn lcs_table(a: &[String], b: &[String]) -> Vec<Vec<usize>> {
    let mut table = vec![vec![0; b.len() + 1]; a.len() + 1];
    for (i, x) in a.iter().enumerate() {
        for (j, y) in b.iter().enumerate() {
            let value = if x == y {
                table.get(i).and_then(|r| r.get(j)).copied().unwrap_or(0) + 1
            } else {
                let up = table.get(i).and_then(|r| r.get(j + 1)).copied().unwrap_or(0);
                let left = table.get(i + 1).and_then(|r| r.get(j)).copied().unwrap_or(0);
                up.max(left)
            };
            if let Some(cell) = table.get_mut(i + 1).and_then(|r| r.get_mut(j + 1)) {
                *cell = value;
            }
        }
    }
    table
}

/// The indices into `a` of one longest common subsequence, read back as rouge-score does.
fn lcs_indices(a: &[String], b: &[String]) -> Vec<usize> {
    let table = lcs_table(a, b);
    let at = |i: usize, j: usize| table.get(i).and_then(|r| r.get(j)).copied().unwrap_or(0);
    let (mut i, mut j) = (a.len(), b.len());
    let mut out = Vec::new();
    while i > 0 && j > 0 {
        if a.get(i - 1) == b.get(j - 1) {
            out.push(i - 1);
            i -= 1;
            j -= 1;
        } else if at(i, j - 1) > at(i - 1, j) {
            j -= 1;
        } else {
            i -= 1;
        }
    }
    out.reverse();
    out
}

/// ROUGE of `prediction` against `target`, as rouge-score's `RougeScorer(..., use_stemmer=False)`.
#[must_use]
pub fn rouge(target: &str, prediction: &str, kind: RougeKind) -> Rouge {
    rouge_with(target, prediction, kind, rouge_tokenize)
}

/// ROUGE of `prediction` against `target`, as rouge-score's `RougeScorer(..., use_stemmer=True)`:
/// "cats" and "cat", "running" and "run" count as the same word.
///
/// ```
/// use catena_eval::text::{rouge, rouge_stemmed, RougeKind};
///
/// let (target, prediction) = ("the cats were running", "a cat runs");
/// assert_eq!(rouge(target, prediction, RougeKind::N(1)).fmeasure, 0.0);
/// assert!(rouge_stemmed(target, prediction, RougeKind::N(1)).fmeasure > 0.5);
/// ```
#[must_use]
pub fn rouge_stemmed(target: &str, prediction: &str, kind: RougeKind) -> Rouge {
    rouge_with(target, prediction, kind, rouge_tokenize_stemmed)
}

fn rouge_with(target: &str, prediction: &str, kind: RougeKind, tokenize: fn(&str) -> Vec<String>) -> Rouge {
    match kind {
        RougeKind::N(n) => {
            let (t, p) = (tokenize(target), tokenize(prediction));
            let (tn, pn) = (ngrams(&t, n.max(1)), ngrams(&p, n.max(1)));
            let overlap: usize = tn.iter().map(|(g, c)| (*c).min(pn.get(g).copied().unwrap_or(0))).sum();
            let t_total: usize = tn.values().sum();
            let p_total: usize = pn.values().sum();
            Rouge::new(overlap as f64 / p_total.max(1) as f64, overlap as f64 / t_total.max(1) as f64)
        }
        RougeKind::L => {
            let (t, p) = (tokenize(target), tokenize(prediction));
            if t.is_empty() || p.is_empty() {
                return Rouge::new(0.0, 0.0);
            }
            let lcs = lcs_table(&t, &p).last().and_then(|r| r.last()).copied().unwrap_or(0) as f64;
            Rouge::new(lcs / p.len() as f64, lcs / t.len() as f64)
        }
        RougeKind::Lsum => {
            let sentences = |text: &str| -> Vec<Vec<String>> {
                text.split('\n').filter(|s| !s.is_empty()).map(tokenize).collect()
            };
            let (refs, cands) = (sentences(target), sentences(prediction));
            let m: usize = refs.iter().map(Vec::len).sum();
            let n: usize = cands.iter().map(Vec::len).sum();
            if refs.is_empty() || cands.is_empty() || m == 0 || n == 0 {
                return Rouge::new(0.0, 0.0);
            }
            let mut ref_counts: HashMap<&String, usize> = HashMap::new();
            let mut cand_counts: HashMap<&String, usize> = HashMap::new();
            refs.iter().flatten().for_each(|t| *ref_counts.entry(t).or_insert(0) += 1);
            cands.iter().flatten().for_each(|t| *cand_counts.entry(t).or_insert(0) += 1);
            let mut hits = 0usize;
            for r in &refs {
                let mut union: Vec<usize> = cands.iter().flat_map(|c| lcs_indices(r, c)).collect();
                union.sort_unstable();
                union.dedup();
                for token in union.iter().filter_map(|i| r.get(*i)) {
                    let (Some(c), Some(rc)) = (cand_counts.get_mut(token), ref_counts.get_mut(token)) else {
                        continue;
                    };
                    if *c > 0 && *rc > 0 {
                        hits += 1;
                        *c -= 1;
                        *rc -= 1;
                    }
                }
            }
            Rouge::new(hits as f64 / n as f64, hits as f64 / m as f64)
        }
    }
}

// ---- SQuAD exact match and F1 --------------------------------------------------------------

static ARTICLES: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"\b(a|an|the)\b").ok());

/// The SQuAD normalisation: lowercase, ASCII punctuation removed, articles removed, whitespace
/// collapsed.
#[must_use]
pub fn squad_normalize(text: &str) -> String {
    let lower = text.to_lowercase();
    let no_punct: String = lower.chars().filter(|c| !c.is_ascii_punctuation()).collect();
    let no_articles = match ARTICLES.as_ref() {
        Some(articles) => articles.replace_all(&no_punct, " ").into_owned(),
        None => no_punct,
    };
    python_split(&no_articles).collect::<Vec<_>>().join(" ")
}

/// 1.0 when the normalised prediction equals some normalised reference, else 0.0.
#[must_use]
pub fn exact_match<R: AsRef<str>>(prediction: &str, references: &[R]) -> f64 {
    let p = squad_normalize(prediction);
    if references.iter().any(|r| squad_normalize(r.as_ref()) == p) { 1.0 } else { 0.0 }
}

/// SQuAD v2.0's token F1, the best over the references. An empty answer on either side scores 1
/// when both are empty and 0 otherwise.
#[must_use]
pub fn token_f1<R: AsRef<str>>(prediction: &str, references: &[R]) -> f64 {
    let tokens = |s: &str| -> Vec<String> { python_split(&squad_normalize(s)).map(str::to_owned).collect() };
    let pred = tokens(prediction);
    references
        .iter()
        .map(|r| {
            let gold = tokens(r.as_ref());
            if gold.is_empty() || pred.is_empty() {
                return if gold == pred { 1.0 } else { 0.0 };
            }
            let mut counts: HashMap<&String, isize> = HashMap::new();
            gold.iter().for_each(|t| *counts.entry(t).or_insert(0) += 1);
            let mut same = 0usize;
            for t in &pred {
                if let Some(c) = counts.get_mut(t)
                    && *c > 0
                {
                    *c -= 1;
                    same += 1;
                }
            }
            if same == 0 {
                return 0.0;
            }
            let precision = same as f64 / pred.len() as f64;
            let recall = same as f64 / gold.len() as f64;
            2.0 * precision * recall / (precision + recall)
        })
        .fold(0.0, f64::max)
}
