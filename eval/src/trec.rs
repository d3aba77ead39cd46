//! Ranked-retrieval measures with trec_eval's semantics, so numbers compare with papers.
//!
//! What "trec_eval semantics" pins down, and this module follows:
//! - A run is re-sorted by score descending, ties broken by document id *descending* (byte
//!   order); the order the run lists documents in does not matter. A document listed twice
//!   counts once (its first line).
//! - A document is relevant when its judgement is at least the relevance level (default 1).
//!   nDCG's gains are the judgement values themselves (linear gain), as `ndcg_cut` computes them;
//!   `ndcg_exp`/`ndcg_exp_cut_k` use `2^grade - 1` instead, the learning-to-rank convention.
//! - Averages are over queries that have both judgements and results; with
//!   [`Options::complete`] (trec_eval's `-c`), queries with judgements but no results count as 0.
//! - Cutoff measures look at ranks 1..=k; `P_k` divides by k even when fewer were retrieved.
//! - `recip_rank` has no cutoff (MRR@k is a separate measure, `recip_rank_cut_k`).
//!
//! ```
//! use catena_eval::trec::{evaluate, Measure, Options, Qrels, Run};
//!
//! let mut qrels = Qrels::new();
//! qrels.entry("q1".into()).or_default().extend([("d1".to_string(), 2), ("d2".to_string(), 1)]);
//! let mut run = Run::new();
//! run.insert("q1".into(), vec![("d3".into(), 0.9), ("d1".into(), 0.8), ("d2".into(), 0.1)]);
//! let e = evaluate(&qrels, &run, &[Measure::RecipRank, Measure::P(2)], &Options::default());
//! assert_eq!(e.all["recip_rank"], 0.5);
//! assert_eq!(e.all["P_2"], 0.5);
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

/// Judgements: query id -> document id -> relevance grade.
pub type Qrels = BTreeMap<String, HashMap<String, i64>>;

/// A run: query id -> (document id, score) in any order.
pub type Run = BTreeMap<String, Vec<(String, f64)>>;

/// A measure, named as trec_eval names it (`P_10`, `recall_100`, `map`, `ndcg_cut_10`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Measure {
    /// Precision at k (`P_k`).
    P(usize),
    /// Recall at k (`recall_k`).
    Recall(usize),
    /// Mean average precision over the whole ranking (`map`).
    Map,
    /// Average precision looking at the first k only, still divided by all relevant (`map_cut_k`).
    MapCut(usize),
    /// nDCG over the whole ranking (`ndcg`).
    Ndcg,
    /// nDCG at k (`ndcg_cut_k`).
    NdcgCut(usize),
    /// nDCG over the whole ranking with exponential gain `2^grade - 1` (`ndcg_exp`), the form of
    /// Burges et al. and most learning-to-rank papers; not a trec_eval measure, but equal to
    /// trec_eval's `ndcg` on judgements whose grades were mapped to `2^grade - 1`.
    NdcgExp,
    /// nDCG at k with exponential gain (`ndcg_exp_cut_k`).
    NdcgExpCut(usize),
    /// Reciprocal rank of the first relevant document, any depth (`recip_rank`).
    RecipRank,
    /// Reciprocal rank, 0 when the first relevant document is below k (`recip_rank_cut_k`).
    RecipRankCut(usize),
    /// 1 when a relevant document is in the first k (`success_k`).
    Success(usize),
    /// Number of relevant documents judged (`num_rel`).
    NumRel,
    /// Number of relevant documents retrieved (`num_rel_ret`).
    NumRelRet,
}

impl fmt::Display for Measure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::P(k) => write!(f, "P_{k}"),
            Self::Recall(k) => write!(f, "recall_{k}"),
            Self::Map => f.write_str("map"),
            Self::MapCut(k) => write!(f, "map_cut_{k}"),
            Self::Ndcg => f.write_str("ndcg"),
            Self::NdcgCut(k) => write!(f, "ndcg_cut_{k}"),
            Self::NdcgExp => f.write_str("ndcg_exp"),
            Self::NdcgExpCut(k) => write!(f, "ndcg_exp_cut_{k}"),
            Self::RecipRank => f.write_str("recip_rank"),
            Self::RecipRankCut(k) => write!(f, "recip_rank_cut_{k}"),
            Self::Success(k) => write!(f, "success_{k}"),
            Self::NumRel => f.write_str("num_rel"),
            Self::NumRelRet => f.write_str("num_rel_ret"),
        }
    }
}

/// A measure name that is not one of [`Measure`]'s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownMeasure(pub String);

impl fmt::Display for UnknownMeasure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown measure {:?}: use P_k, recall_k, map, map_cut_k, ndcg, ndcg_cut_k, ndcg_exp, ndcg_exp_cut_k, recip_rank, recip_rank_cut_k, success_k, num_rel or num_rel_ret (k a positive integer)",
            self.0
        )
    }
}

impl std::error::Error for UnknownMeasure {}

impl FromStr for Measure {
    type Err = UnknownMeasure;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let unknown = || UnknownMeasure(s.to_owned());
        let cut = |prefix: &str| -> Option<Result<usize, UnknownMeasure>> {
            s.strip_prefix(prefix).map(|k| k.parse::<usize>().ok().filter(|k| *k > 0).ok_or_else(unknown))
        };
        Ok(match s {
            "map" => Self::Map,
            "ndcg" => Self::Ndcg,
            "ndcg_exp" => Self::NdcgExp,
            "recip_rank" => Self::RecipRank,
            "num_rel" => Self::NumRel,
            "num_rel_ret" => Self::NumRelRet,
            _ => {
                if let Some(k) = cut("P_") {
                    Self::P(k?)
                } else if let Some(k) = cut("recall_") {
                    Self::Recall(k?)
                } else if let Some(k) = cut("map_cut_") {
                    Self::MapCut(k?)
                } else if let Some(k) = cut("ndcg_cut_") {
                    Self::NdcgCut(k?)
                } else if let Some(k) = cut("ndcg_exp_cut_") {
                    Self::NdcgExpCut(k?)
                } else if let Some(k) = cut("recip_rank_cut_") {
                    Self::RecipRankCut(k?)
                } else if let Some(k) = cut("success_") {
                    Self::Success(k?)
                } else {
                    return Err(unknown());
                }
            }
        })
    }
}

/// Evaluation options, trec_eval's flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Minimum grade of a relevant document (`-l`, default 1).
    pub relevance_level: i64,
    /// Average over every judged query, scoring missing ones 0 (`-c`).
    pub complete: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self { relevance_level: 1, complete: false }
    }
}

/// Per-query values and their means.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Evaluation {
    /// Measure name -> mean over the evaluated queries.
    pub all: BTreeMap<String, f64>,
    /// Query id -> measure name -> value.
    pub per_query: BTreeMap<String, BTreeMap<String, f64>>,
}

/// One query's judged grades along the sorted ranking, plus its relevance counts.
struct Ranked {
    grades: Vec<i64>,
    num_rel: usize,
    /// Judged grades > 0, best first (the ideal ranking for nDCG).
    ideal: Vec<i64>,
}

fn rank(judged: &HashMap<String, i64>, results: &[(String, f64)], level: i64) -> Ranked {
    let mut seen = HashSet::new();
    let mut sorted: Vec<&(String, f64)> = results.iter().filter(|(d, _)| seen.insert(d.as_str())).collect();
    sorted.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| b.0.as_bytes().cmp(a.0.as_bytes())));
    let grades = sorted.iter().map(|(d, _)| judged.get(d).copied().unwrap_or(0)).collect();
    let num_rel = judged.values().filter(|&&g| g >= level).count();
    let mut ideal: Vec<i64> = judged.values().copied().filter(|&g| g > 0).collect();
    ideal.sort_unstable_by(|a, b| b.cmp(a));
    Ranked { grades, num_rel, ideal }
}

/// Discounted cumulative gain of the first `k` grades; trec_eval's gain is the grade itself.
fn dcg(grades: &[i64], k: usize, exponential: bool) -> f64 {
    let gain = |g: i64| if exponential { (g as f64).exp2() - 1.0 } else { g as f64 };
    grades
        .iter()
        .take(k)
        .enumerate()
        .filter(|(_, g)| **g > 0)
        .map(|(i, &g)| gain(g) / ((i + 2) as f64).log2())
        .sum()
}

fn measure(r: &Ranked, m: Measure, level: i64) -> f64 {
    let relevant = |g: &i64| *g >= level;
    let rel_in = |k: usize| r.grades.iter().take(k).filter(|g| relevant(g)).count() as f64;
    let ratio = |num: f64, den: usize| if den == 0 { 0.0 } else { num / den as f64 };
    let first_rel = r.grades.iter().position(relevant);
    let average_precision = |k: usize| {
        let mut found = 0usize;
        let mut sum = 0.0;
        for (i, g) in r.grades.iter().take(k).enumerate() {
            if relevant(g) {
                found += 1;
                sum += found as f64 / (i + 1) as f64;
            }
        }
        ratio(sum, r.num_rel)
    };
    match m {
        Measure::P(k) => ratio(rel_in(k), k),
        Measure::Recall(k) => ratio(rel_in(k), r.num_rel),
        Measure::Map => average_precision(usize::MAX),
        Measure::MapCut(k) => average_precision(k),
        Measure::Ndcg | Measure::NdcgCut(_) | Measure::NdcgExp | Measure::NdcgExpCut(_) => {
            let (k, exponential) = match m {
                Measure::NdcgCut(k) => (k, false),
                Measure::NdcgExp => (usize::MAX, true),
                Measure::NdcgExpCut(k) => (k, true),
                _ => (usize::MAX, false),
            };
            let ideal = dcg(&r.ideal, k, exponential);
            if ideal > 0.0 { dcg(&r.grades, k, exponential) / ideal } else { 0.0 }
        }
        Measure::RecipRank => first_rel.map_or(0.0, |i| 1.0 / (i + 1) as f64),
        Measure::RecipRankCut(k) => first_rel.filter(|&i| i < k).map_or(0.0, |i| 1.0 / (i + 1) as f64),
        Measure::Success(k) => f64::from(u8::from(first_rel.is_some_and(|i| i < k))),
        Measure::NumRel => r.num_rel as f64,
        Measure::NumRelRet => rel_in(usize::MAX),
    }
}

/// Evaluates `run` against `qrels` on `measures`.
#[must_use]
pub fn evaluate(qrels: &Qrels, run: &Run, measures: &[Measure], options: &Options) -> Evaluation {
    let mut evaluation = Evaluation::default();
    let empty: Vec<(String, f64)> = Vec::new();
    for (query, judged) in qrels {
        let results = match run.get(query) {
            Some(r) => r,
            None if options.complete => &empty,
            None => continue,
        };
        let ranked = rank(judged, results, options.relevance_level);
        let values =
            measures.iter().map(|m| (m.to_string(), measure(&ranked, *m, options.relevance_level))).collect();
        evaluation.per_query.insert(query.clone(), values);
    }
    let n = evaluation.per_query.len();
    for m in measures {
        let name = m.to_string();
        let total: f64 = evaluation.per_query.values().filter_map(|v| v.get(&name)).sum();
        // trec_eval sums the count measures instead of averaging them.
        let value = match m {
            Measure::NumRel | Measure::NumRelRet => total,
            _ if n == 0 => 0.0,
            _ => total / n as f64,
        };
        evaluation.all.insert(name, value);
    }
    evaluation
}

/// A line of a qrels or run file that cannot be read: which file, which line, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrecFileError {
    /// "qrels" or "run".
    pub file: &'static str,
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for TrecFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} line {}: {}", self.file, self.line, self.message)
    }
}

impl std::error::Error for TrecFileError {}

/// Reads judgements in TREC format (`query 0 document grade`, whitespace-separated) or BEIR's
/// TSV (`query-id<TAB>corpus-id<TAB>score`, with or without its header line). Blank lines are
/// skipped; a document judged twice for a query keeps its last grade, as trec_eval does.
pub fn read_qrels(text: &str) -> Result<Qrels, TrecFileError> {
    let mut qrels = Qrels::new();
    for (i, line) in text.lines().enumerate() {
        let error = |message: String| TrecFileError { file: "qrels", line: i + 1, message };
        let mut fields = line.split_whitespace();
        let parts = [fields.next(), fields.next(), fields.next(), fields.next()];
        let (query, doc, grade) = match (parts, fields.next()) {
            ([None, ..], _) => continue,
            ([Some("query-id"), Some("corpus-id"), Some("score"), None], None) if i == 0 => continue,
            ([Some(query), Some(_iteration), Some(doc), Some(grade)], None) => (query, doc, grade),
            ([Some(query), Some(doc), Some(grade), None], None) => (query, doc, grade),
            _ => {
                let count = line.split_whitespace().count();
                return Err(error(format!(
                    "expected `query 0 document grade` (TREC) or `query document grade` (BEIR), found {count} fields"
                )));
            }
        };
        let grade: i64 =
            grade.parse().map_err(|_| error(format!("the grade {grade:?} is not an integer")))?;
        match qrels.get_mut(query) {
            Some(judged) => {
                judged.insert(doc.to_owned(), grade);
            }
            None => {
                qrels.insert(query.to_owned(), HashMap::from([(doc.to_owned(), grade)]));
            }
        }
    }
    Ok(qrels)
}

/// One query's ranked documents as TREC run lines (`query Q0 document rank score tag`), ranks
/// from 1 in the order given, ready for [`read_run`] and trec_eval. Fields are separated by
/// spaces, so an id or tag that is empty or holds whitespace is refused (naming it) rather than
/// written as a line that reads back differently.
pub fn format_run(query: &str, ranked: &[(String, f64)], tag: &str) -> Result<String, String> {
    let field = |what: &str, value: &str| {
        if value.is_empty() || value.contains(char::is_whitespace) {
            Err(format!("the {what} {value:?} is empty or has whitespace, which a TREC run cannot hold"))
        } else {
            Ok(())
        }
    };
    field("query id", query)?;
    field("run tag", tag)?;
    let mut out = String::new();
    for (rank, (document, score)) in ranked.iter().enumerate() {
        field("document id", document)?;
        if !score.is_finite() {
            return Err(format!("document {document} has the score {score}, which a run cannot rank"));
        }
        out.push_str(&format!("{query} Q0 {document} {} {score} {tag}\n", rank + 1));
    }
    Ok(out)
}

/// Reads a run in TREC format (`query Q0 document rank score tag`). The rank column is ignored (the
/// score orders the run, as in trec_eval); a document listed twice for one query is an error, as
/// trec_eval refuses such runs.
pub fn read_run(text: &str) -> Result<Run, TrecFileError> {
    let mut run = Run::new();
    // Runs list a query's lines together: they are collected per query, and duplicates checked
    // within the query (a set that stays small and in cache; one global set of a million pairs
    // made parsing several times slower). A query that comes back later is checked against its
    // earlier lines too.
    let mut current: Option<(&str, Vec<(String, f64)>)> = None;
    let mut docs_seen: HashSet<&str> = HashSet::new();
    let mut flushed: HashSet<&str> = HashSet::new();
    let flush = |run: &mut Run, current: Option<(&str, Vec<(String, f64)>)>| {
        if let Some((q, docs)) = current {
            run.entry(q.to_owned()).or_default().extend(docs);
        }
    };
    for (i, line) in text.lines().enumerate() {
        let error = |message: String| TrecFileError { file: "run", line: i + 1, message };
        let mut fields = line.split_whitespace();
        let parts =
            [fields.next(), fields.next(), fields.next(), fields.next(), fields.next(), fields.next()];
        let (query, doc, score) = match (parts, fields.next()) {
            ([None, ..], _) => continue,
            ([Some(query), Some(_q0), Some(doc), Some(_rank), Some(score), Some(_tag)], None) => {
                (query, doc, score)
            }
            _ => {
                let count = line.split_whitespace().count();
                return Err(error(format!(
                    "expected `query Q0 document rank score tag`, found {count} fields"
                )));
            }
        };
        let score: f64 = score.parse().map_err(|_| error(format!("the score {score:?} is not a number")))?;
        if !score.is_finite() {
            return Err(error(format!("the score {score} is not finite")));
        }
        if current.as_ref().is_none_or(|(q, _)| *q != query) {
            if let Some((q, _)) = &current {
                flushed.insert(q);
            }
            flush(&mut run, current.take());
            docs_seen.clear();
            current = Some((query, Vec::new()));
        }
        // Rare: the query's lines are split, and its earlier documents count too.
        let duplicate_earlier = flushed.contains(query)
            && run.get(query).is_some_and(|earlier| earlier.iter().any(|(d, _)| d == doc));
        if !docs_seen.insert(doc) || duplicate_earlier {
            return Err(error(format!("document {doc} is listed twice for query {query}")));
        }
        if let Some((_, docs)) = current.as_mut() {
            docs.push((doc.to_owned(), score));
        }
    }
    flush(&mut run, current);
    Ok(run)
}

/// The evaluation in trec_eval's text layout: `measure<TAB>query<TAB>value` lines, per query (when
/// `per_query`) and then `all`, counts as integers and everything else with 4 decimals.
#[must_use]
pub fn format_trec(evaluation: &Evaluation, measures: &[Measure], per_query: bool) -> String {
    let mut out = String::new();
    let line = |out: &mut String, m: &Measure, query: &str, value: f64| {
        let name = m.to_string();
        let shown = match m {
            Measure::NumRel | Measure::NumRelRet => format!("{value:.0}"),
            _ => format!("{value:.4}"),
        };
        out.push_str(&format!("{name:<22}\t{query}\t{shown}\n"));
    };
    if per_query {
        for (query, values) in &evaluation.per_query {
            for m in measures {
                if let Some(v) = values.get(&m.to_string()) {
                    line(&mut out, m, query, *v);
                }
            }
        }
    }
    for m in measures {
        if let Some(v) = evaluation.all.get(&m.to_string()) {
            line(&mut out, m, "all", *v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn written_runs_read_back_and_bad_fields_are_refused() {
        let ranked = vec![("d3".to_owned(), 0.9), ("d1".to_owned(), 0.25), ("d2".to_owned(), -1.5e-3)];
        let text = format_run("q7", &ranked, "catena").unwrap();
        assert_eq!(text.lines().next(), Some("q7 Q0 d3 1 0.9 catena"));
        let run = read_run(&text).unwrap();
        assert_eq!(run["q7"], ranked);
        assert!(format_run("q 7", &ranked, "t").unwrap_err().contains("query id"));
        assert!(format_run("q", &[("a b".to_owned(), 1.0)], "t").unwrap_err().contains("document id"));
        assert!(format_run("q", &[("a".to_owned(), f64::NAN)], "t").is_err());
        assert!(format_run("q", &ranked, "").is_err());
        assert_eq!(format_run("q", &[], "t").unwrap(), "");
    }

    fn qrels(items: &[(&str, &str, i64)]) -> Qrels {
        let mut q = Qrels::new();
        for (query, doc, g) in items {
            q.entry((*query).into()).or_default().insert((*doc).into(), *g);
        }
        q
    }

    #[test]
    fn hand_computed_values() {
        let q = qrels(&[("1", "a", 3), ("1", "b", 1), ("1", "c", 0), ("1", "z", 2)]);
        let mut run = Run::new();
        // Listed out of order, with a tie broken by id descending: b (0.5) before a (0.5).
        run.insert(
            "1".into(),
            vec![("a".into(), 0.5), ("c".into(), 0.9), ("b".into(), 0.5), ("c".into(), 0.1)],
        );
        let ms = [
            Measure::P(2),
            Measure::P(10),
            Measure::Recall(3),
            Measure::Map,
            Measure::NdcgCut(3),
            Measure::RecipRank,
            Measure::Success(1),
        ];
        let e = evaluate(&q, &run, &ms, &Options::default());
        let v = &e.per_query["1"];
        // Ranking: c(0), b(1), a(3). Relevant (>= 1): a, b, z -> 3.
        assert_eq!(v["P_2"], 0.5);
        assert_eq!(v["P_10"], 0.2);
        assert_eq!(v["recall_3"], 2.0 / 3.0);
        assert_eq!(v["map"], (1.0 / 2.0 + 2.0 / 3.0) / 3.0);
        let dcg = 1.0 / 3f64.log2() + 3.0 / 4f64.log2();
        let idcg = 3.0 + 2.0 / 3f64.log2() + 1.0 / 4f64.log2();
        assert!((v["ndcg_cut_3"] - dcg / idcg).abs() < 1e-15);
        assert_eq!(v["recip_rank"], 0.5);
        assert_eq!(v["success_1"], 0.0);
    }

    #[test]
    fn missing_queries_and_levels() {
        let q = qrels(&[("1", "a", 1), ("2", "b", 2)]);
        let mut run = Run::new();
        run.insert("1".into(), vec![("a".into(), 1.0)]);
        run.insert("3".into(), vec![("x".into(), 1.0)]);
        let e = evaluate(&q, &run, &[Measure::Map], &Options::default());
        assert_eq!(e.all["map"], 1.0, "query 2 has no results; query 3 has no judgements");
        let c = evaluate(&q, &run, &[Measure::Map], &Options { complete: true, ..Options::default() });
        assert_eq!(c.all["map"], 0.5);
        let l2 = evaluate(&q, &run, &[Measure::Map], &Options { relevance_level: 2, complete: false });
        assert_eq!(l2.all["map"], 0.0, "a grade-1 document is not relevant at level 2");
    }

    #[test]
    fn measure_names_round_trip() {
        for name in [
            "P_5",
            "recall_100",
            "map",
            "map_cut_10",
            "ndcg",
            "ndcg_cut_10",
            "ndcg_exp",
            "ndcg_exp_cut_5",
            "recip_rank",
            "success_1",
        ] {
            assert_eq!(name.parse::<Measure>().unwrap().to_string(), name);
        }
        assert!("P_0".parse::<Measure>().is_err());
        assert!("ndcg@10".parse::<Measure>().is_err());
    }
}
