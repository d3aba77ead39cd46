//! Fusing ranked lists (reciprocal-rank, relative-score, distribution-based) and the ensemble retriever.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use catena_core::{Error, Result, Retriever, RunContext, ScoredDocument};

use crate::document_id;

/// Where ranks start in reciprocal-rank fusion. The papers and libraries disagree, and the choice
/// changes scores (not usually order): LangChain's `EnsembleRetriever` counts from 1; the
/// RAG-fusion reference code and LlamaIndex's `QueryFusionRetriever` count from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RankBase {
    /// The first document has rank 1 (LangChain, Cormack et al.).
    #[default]
    One,
    /// The first document has rank 0 (RAG-fusion, LlamaIndex).
    Zero,
}

/// How to combine several ranked lists into one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fusion {
    /// Reciprocal-rank fusion: each list adds `weight / (rank + c)`; scores are ignored.
    Rrf {
        /// The damping constant (60 in the paper and everywhere else).
        c: f32,
        /// Whether ranks start at 0 or 1.
        rank_base: RankBase,
    },
    /// Each list's scores min-max normalised to `[0, 1]`, weighted, summed (LlamaIndex's
    /// `relative_score`). A list whose scores are all equal scores 1 (0 if they are all <= 0).
    RelativeScore,
    /// Like `RelativeScore`, but each list is normalised against `mean ± 3 std` of its scores
    /// (LlamaIndex's `dist_based_score`), so one outlier does not squash the rest.
    DistributionBased,
}

impl Default for Fusion {
    fn default() -> Self {
        Self::Rrf { c: 60.0, rank_base: RankBase::One }
    }
}

/// Fuses `lists` (each best first) with one weight per list; the result is best first, each
/// document once, with its fused score. Ties keep the order of first appearance.
///
/// ```
/// use catena_core::{Document, ScoredDocument};
/// use catena_retrievers::{fuse, Fusion, RankBase};
///
/// let d = |t: &str| ScoredDocument::new(Document::new(t).with_id(t), 1.0);
/// let bm25 = vec![d("a"), d("b")];
/// let dense = vec![d("b"), d("c")];
/// let fused = fuse(&[bm25, dense], &[1.0, 1.0], Fusion::Rrf { c: 60.0, rank_base: RankBase::One }).unwrap();
/// let ids: Vec<_> = fused.iter().map(|h| h.document.content.as_str()).collect();
/// assert_eq!(ids, ["b", "a", "c"]);
/// assert!((fused[0].score - (1.0 / 62.0 + 1.0 / 61.0)).abs() < 1e-7);
/// ```
///
/// # Errors
/// [`Error::InvalidInput`] when the number of weights differs from the number of lists, or a
/// weight is negative or not finite.
pub fn fuse(lists: &[Vec<ScoredDocument>], weights: &[f32], fusion: Fusion) -> Result<Vec<ScoredDocument>> {
    if lists.len() != weights.len() {
        return Err(Error::invalid_input(format!(
            "{} ranked lists but {} weights: give one weight per list",
            lists.len(),
            weights.len()
        )));
    }
    if weights.iter().any(|w| !w.is_finite() || *w < 0.0) {
        return Err(Error::invalid_input("fusion weights must be finite and not negative"));
    }
    let mut order: Vec<(String, ScoredDocument)> = Vec::new();
    let mut position: HashMap<String, usize> = HashMap::new();
    for (list, &weight) in lists.iter().zip(weights) {
        let ids: Vec<String> = list.iter().map(|h| document_id(&h.document)).collect();
        let contributions = contributions(list, &ids, fusion);
        for ((hit, id), contribution) in list.iter().zip(ids).zip(contributions) {
            let add = f64::from(weight) * contribution;
            match position.get(&id) {
                Some(&at) => {
                    if let Some((_, seen)) = order.get_mut(at) {
                        seen.score = (f64::from(seen.score) + add) as f32;
                    }
                }
                None => {
                    position.insert(id.clone(), order.len());
                    order.push((id, ScoredDocument::new(hit.document.clone(), add as f32)));
                }
            }
        }
    }
    let mut fused: Vec<ScoredDocument> = order.into_iter().map(|(_, d)| d).collect();
    // Stable: equal scores keep first-appearance order.
    fused.sort_by(|a, b| b.score.total_cmp(&a.score));
    Ok(fused)
}

/// What each position of one list (whose document ids are `ids`) contributes before weighting; a
/// document repeated in the same list contributes only at its first (best) position.
fn contributions(list: &[ScoredDocument], ids: &[String], fusion: Fusion) -> Vec<f64> {
    let mut seen = std::collections::HashSet::new();
    let first: Vec<bool> = ids.iter().map(|id| seen.insert(id.as_str())).collect();
    let raw: Vec<f64> = match fusion {
        Fusion::Rrf { c, rank_base } => {
            let base = match rank_base {
                RankBase::One => 1.0,
                RankBase::Zero => 0.0,
            };
            (0..list.len()).map(|i| 1.0 / (i as f64 + base + f64::from(c))).collect()
        }
        Fusion::RelativeScore | Fusion::DistributionBased => {
            let scores: Vec<f64> = list.iter().map(|h| f64::from(h.score)).collect();
            let (lo, hi) = if fusion == Fusion::RelativeScore {
                let lo = scores.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                (lo, hi)
            } else {
                let n = scores.len().max(1) as f64;
                let mean = scores.iter().sum::<f64>() / n;
                let std = (scores.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / n).sqrt();
                (mean - 3.0 * std, mean + 3.0 * std)
            };
            scores
                .iter()
                .map(|s| if hi == lo { if hi > 0.0 { 1.0 } else { 0.0 } } else { (s - lo) / (hi - lo) })
                .collect()
        }
    };
    raw.into_iter().zip(first).map(|(r, f)| if f { r } else { 0.0 }).collect()
}

/// Runs several retrievers concurrently on the same query and fuses their lists (by default
/// with reciprocal-rank fusion, c = 60, equal weights): hybrid keyword + vector search is an
/// ensemble of a [`Bm25Retriever`](crate::Bm25Retriever) and a
/// [`VectorStoreRetriever`](crate::VectorStoreRetriever).
///
/// Fusion: reciprocal-rank, relative-score or distribution-based ([`Fusion`], [`fuse`]).
/// Documents are the same when their [`document_id`](crate::document_id) is (their id, else
/// their source and content); the first list a document appears in supplies its metadata.
#[derive(Debug, Clone)]
pub struct EnsembleRetriever {
    retrievers: Vec<Arc<dyn Retriever>>,
    weights: Vec<f32>,
    fusion: Fusion,
    k: Option<usize>,
}

impl EnsembleRetriever {
    /// Fuses these retrievers with equal weights.
    #[must_use]
    pub fn new(retrievers: Vec<Arc<dyn Retriever>>) -> Self {
        let weights = vec![1.0; retrievers.len()];
        Self { retrievers, weights, fusion: Fusion::default(), k: None }
    }

    /// One weight per retriever (validated when retrieving).
    #[must_use]
    pub fn with_weights(mut self, weights: Vec<f32>) -> Self {
        self.weights = weights;
        self
    }

    /// The fusion method.
    #[must_use]
    pub fn with_fusion(mut self, fusion: Fusion) -> Self {
        self.fusion = fusion;
        self
    }

    /// Keep only the best `k` fused documents (default: all of them).
    #[must_use]
    pub fn with_k(mut self, k: usize) -> Self {
        self.k = Some(k);
        self
    }
}

#[async_trait]
impl Retriever for EnsembleRetriever {
    async fn retrieve(&self, query: &str, ctx: &RunContext) -> Result<Vec<ScoredDocument>> {
        crate::check_query(query, self.k.unwrap_or(1))?;
        if self.retrievers.is_empty() {
            return Err(Error::invalid_input("an ensemble needs at least one retriever"));
        }
        let lists = futures::future::try_join_all(self.retrievers.iter().enumerate().map(|(i, r)| {
            let name = format!("ensemble[{i}]");
            async move {
                catena_core::telemetry::observe_retrieval(
                    ctx,
                    "retrieval",
                    &name,
                    query,
                    r.retrieve(query, ctx),
                )
                .await
            }
        }))
        .await?;
        let mut fused = fuse(&lists, &self.weights, self.fusion)?;
        if let Some(k) = self.k {
            fused.truncate(k);
        }
        Ok(crate::retrieved(ctx, query, fused))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use catena_core::Document;

    fn list(ids: &[&str], scores: &[f32]) -> Vec<ScoredDocument> {
        ids.iter().zip(scores).map(|(i, s)| ScoredDocument::new(Document::new(*i).with_id(*i), *s)).collect()
    }

    #[test]
    fn rrf_weights_and_rank_base() {
        let a = list(&["x", "y"], &[9.0, 1.0]);
        let b = list(&["y", "z"], &[0.9, 0.8]);
        let f =
            fuse(&[a.clone(), b.clone()], &[0.3, 0.7], Fusion::Rrf { c: 60.0, rank_base: RankBase::Zero })
                .unwrap();
        assert_eq!(f[0].document.content, "y");
        assert!((f64::from(f[0].score) - (0.3 / 61.0 + 0.7 / 60.0)).abs() < 1e-7);
        assert_eq!(f.len(), 3);
        assert!(fuse(std::slice::from_ref(&a), &[1.0, 2.0], Fusion::default()).is_err());
        assert!(fuse(&[a], &[-1.0], Fusion::default()).is_err());
    }

    #[test]
    fn repeated_documents_count_once_per_list() {
        let a = list(&["x", "x", "y"], &[3.0, 2.0, 1.0]);
        let f = fuse(&[a], &[1.0], Fusion::default()).unwrap();
        assert_eq!(f.len(), 2);
        assert!((f64::from(f[0].score) - 1.0 / 61.0).abs() < 1e-7);
        assert!((f64::from(f[1].score) - 1.0 / 63.0).abs() < 1e-7);
    }

    #[test]
    fn relative_and_distribution_scores() {
        let a = list(&["x", "y", "z"], &[10.0, 5.0, 0.0]);
        let b = list(&["z", "x"], &[0.9, 0.1]);
        let f = fuse(&[a.clone(), b.clone()], &[1.0, 1.0], Fusion::RelativeScore).unwrap();
        // x: 1.0 + 0.0; z: 0.0 + 1.0; y: 0.5; tie keeps first appearance (x before z).
        assert_eq!(f.iter().map(|h| h.document.content.as_str()).collect::<Vec<_>>(), ["x", "z", "y"]);
        assert!((f[2].score - 0.5).abs() < 1e-6);
        let d = fuse(&[a], &[1.0], Fusion::DistributionBased).unwrap();
        // mean 5, std sqrt(50/3): x = (10 - (5 - 3s)) / 6s
        let s = (50.0f64 / 3.0).sqrt();
        assert!((f64::from(d[0].score) - (5.0 + 3.0 * s) / (6.0 * s)).abs() < 1e-6);
        let same = fuse(&[list(&["p", "q"], &[2.0, 2.0])], &[1.0], Fusion::RelativeScore).unwrap();
        assert!(same.iter().all(|h| h.score == 1.0));
    }
}
