//! Maximal marginal relevance: relevant results that do not repeat each other.

use std::sync::Arc;

use async_trait::async_trait;
use catena_core::{Embedder, Error, Filter, Result, Retriever, RunContext, ScoredDocument, VectorStore};

/// Picks `k` of `candidates` one at a time, each maximising
/// `lambda * sim(query, c) - (1 - lambda) * max(sim(c, already picked))` under cosine similarity;
/// returns their indices in pick order. The first pick is the most similar to the query; ties go
/// to the earlier candidate. Same definition and tie rules as LangChain's
/// `maximal_marginal_relevance`.
///
/// ```
/// use catena_retrievers::maximal_marginal_relevance;
///
/// let query = [1.0, 0.3];
/// let candidates = vec![vec![1.0, 0.05], vec![1.0, 0.0], vec![0.0, 1.0]];
/// // Pure relevance keeps the two near-duplicates; lambda 0.5 swaps the second for variety.
/// assert_eq!(maximal_marginal_relevance(&query, &candidates, 2, 1.0), [0, 1]);
/// assert_eq!(maximal_marginal_relevance(&query, &candidates, 2, 0.5), [0, 2]);
/// ```
#[must_use]
pub fn maximal_marginal_relevance(
    query: &[f32],
    candidates: &[Vec<f32>],
    k: usize,
    lambda: f32,
) -> Vec<usize> {
    let k = k.min(candidates.len());
    if k == 0 {
        return Vec::new();
    }
    let to_query: Vec<f32> = candidates.iter().map(|c| cosine(query, c)).collect();
    let mut picked: Vec<usize> = Vec::with_capacity(k);
    // For each candidate, its highest similarity to anything picked so far.
    let mut redundancy = vec![f32::NEG_INFINITY; candidates.len()];
    let mut is_picked = vec![false; candidates.len()];
    let first = to_query
        .iter()
        .enumerate()
        .fold((0usize, f32::NEG_INFINITY), |best, (i, &s)| if s > best.1 { (i, s) } else { best })
        .0;
    let mut last = first;
    loop {
        picked.push(last);
        if let Some(flag) = is_picked.get_mut(last) {
            *flag = true;
        }
        if picked.len() == k {
            return picked;
        }
        let chosen = candidates.get(last).map(Vec::as_slice).unwrap_or_default();
        for (i, c) in candidates.iter().enumerate() {
            if let Some(r) = redundancy.get_mut(i) {
                *r = r.max(cosine(c, chosen));
            }
        }
        let mut best = (usize::MAX, f32::NEG_INFINITY);
        for (i, (&q, &r)) in to_query.iter().zip(&redundancy).enumerate() {
            if is_picked.get(i).copied().unwrap_or(true) {
                continue;
            }
            let score = lambda * q - (1.0 - lambda) * r;
            if score > best.1 || best.0 == usize::MAX {
                best = (i, score);
            }
        }
        if best.0 == usize::MAX {
            return picked;
        }
        last = best.0;
    }
}

pub(crate) use catena_core::cosine_similarity as cosine;

/// Similarity search that trades some relevance for variety: fetches `fetch_k` candidates (20),
/// keeps `k` (4) by [`maximal_marginal_relevance`] with `lambda` (0.5; 1 is pure relevance, 0
/// pure diversity). Scores are the store's similarity scores. Needs a store that returns its
/// vectors (the in-memory and LanceDB stores do).
#[derive(Debug, Clone)]
pub struct MmrRetriever {
    store: Arc<dyn VectorStore>,
    embedder: Arc<dyn Embedder>,
    k: usize,
    fetch_k: usize,
    lambda: f32,
    filter: Option<Filter>,
}

impl MmrRetriever {
    /// MMR over `store` with LangChain's defaults: k 4, fetch_k 20, lambda 0.5.
    pub fn new(store: Arc<dyn VectorStore>, embedder: Arc<dyn Embedder>) -> Self {
        Self { store, embedder, k: 4, fetch_k: 20, lambda: 0.5, filter: None }
    }

    /// How many documents to return.
    #[must_use]
    pub fn with_k(mut self, k: usize) -> Self {
        self.k = k;
        self
    }

    /// How many candidates to choose from.
    #[must_use]
    pub fn with_fetch_k(mut self, fetch_k: usize) -> Self {
        self.fetch_k = fetch_k;
        self
    }

    /// Relevance versus diversity, in `[0, 1]`.
    #[must_use]
    pub fn with_lambda(mut self, lambda: f32) -> Self {
        self.lambda = lambda;
        self
    }

    /// Only documents whose metadata match.
    #[must_use]
    pub fn with_filter(mut self, filter: Filter) -> Self {
        self.filter = Some(filter);
        self
    }
}

#[async_trait]
impl Retriever for MmrRetriever {
    async fn retrieve(&self, query: &str, ctx: &RunContext) -> Result<Vec<ScoredDocument>> {
        crate::check_query(query, self.k)?;
        if !(0.0..=1.0).contains(&self.lambda) {
            return Err(Error::invalid_input(format!("MMR lambda must be in [0, 1], not {}", self.lambda)));
        }
        let vector = self.embedder.embed_one(query, ctx).await?;
        let filter = catena_core::security::scoped_filter(self.filter.as_ref(), ctx);
        let candidates =
            self.store.search_with_vectors(&vector, self.fetch_k.max(self.k), filter.as_ref()).await?;
        let vectors: Vec<Vec<f32>> = candidates.iter().map(|(_, v)| v.clone()).collect();
        let picks = maximal_marginal_relevance(&vector, &vectors, self.k, self.lambda);
        let mut slots: Vec<Option<ScoredDocument>> = candidates.into_iter().map(|(d, _)| Some(d)).collect();
        let hits = picks.into_iter().filter_map(|i| slots.get_mut(i).and_then(Option::take)).collect();
        Ok(crate::retrieved(ctx, query, hits))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn edge_cases() {
        assert!(maximal_marginal_relevance(&[1.0], &[], 3, 0.5).is_empty());
        assert_eq!(maximal_marginal_relevance(&[1.0, 0.0], &[vec![0.0, 1.0]], 3, 0.5), [0]);
        // lambda 0: after the first pick, the least similar to it wins.
        let c = vec![vec![1.0, 0.0], vec![0.9, 0.1], vec![-1.0, 0.0]];
        assert_eq!(maximal_marginal_relevance(&[1.0, 0.0], &c, 2, 0.0), [0, 2]);
        // A zero vector is similar to nothing and does not poison the scores.
        let z = vec![vec![0.0, 0.0], vec![1.0, 0.0]];
        assert_eq!(maximal_marginal_relevance(&[1.0, 0.0], &z, 2, 0.5), [1, 0]);
    }
}
