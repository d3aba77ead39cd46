//! Rank metrics over id lists. `retrieved` is in rank order; duplicates after the first
//! occurrence are ignored; `k` cuts the ranking.

use std::collections::HashSet;

fn ranked<S: AsRef<str>>(retrieved: &[S], k: usize) -> impl Iterator<Item = &str> {
    let mut seen = HashSet::new();
    retrieved.iter().map(AsRef::as_ref).filter(move |id| seen.insert(*id)).take(k)
}

fn set<S: AsRef<str>>(ids: &[S]) -> HashSet<&str> {
    ids.iter().map(AsRef::as_ref).collect()
}

/// 1.0 if any of the first `k` retrieved ids is relevant, else 0.0.
#[must_use]
pub fn hit_rate<S: AsRef<str>, T: AsRef<str>>(retrieved: &[S], relevant: &[T], k: usize) -> f64 {
    let rel = set(relevant);
    if ranked(retrieved, k).any(|id| rel.contains(id)) { 1.0 } else { 0.0 }
}

/// 1 / rank of the first relevant id within the first `k` (0.0 when there is none).
#[must_use]
pub fn reciprocal_rank<S: AsRef<str>, T: AsRef<str>>(retrieved: &[S], relevant: &[T], k: usize) -> f64 {
    let rel = set(relevant);
    ranked(retrieved, k).position(|id| rel.contains(id)).map_or(0.0, |p| 1.0 / (p as f64 + 1.0))
}

/// Relevant ids among the first `k`, divided by `k` (trec_eval's P@k convention).
#[must_use]
pub fn precision_at_k<S: AsRef<str>, T: AsRef<str>>(retrieved: &[S], relevant: &[T], k: usize) -> f64 {
    if k == 0 {
        return 0.0;
    }
    let rel = set(relevant);
    ranked(retrieved, k).filter(|id| rel.contains(id)).count() as f64 / k as f64
}

/// Relevant ids among the first `k`, divided by the number of relevant ids; `None` when there
/// are no relevant ids (the measure is undefined, not zero).
#[must_use]
pub fn recall_at_k<S: AsRef<str>, T: AsRef<str>>(retrieved: &[S], relevant: &[T], k: usize) -> Option<f64> {
    let rel = set(relevant);
    if rel.is_empty() {
        return None;
    }
    Some(ranked(retrieved, k).filter(|id| rel.contains(id)).count() as f64 / rel.len() as f64)
}

/// The mean, or `None` for no values.
#[must_use]
pub fn mean(values: &[f64]) -> Option<f64> {
    if values.is_empty() { None } else { Some(values.iter().sum::<f64>() / values.len() as f64) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_on_a_known_ranking() {
        let r = ["a", "b", "a", "c", "d"];
        let rel = ["c", "x"];
        assert_eq!(hit_rate(&r, &rel, 2), 0.0);
        assert_eq!(hit_rate(&r, &rel, 3), 1.0, "the duplicate `a` does not take a rank");
        assert_eq!(reciprocal_rank(&r, &rel, 10), 1.0 / 3.0);
        assert_eq!(precision_at_k(&r, &rel, 4), 0.25);
        assert_eq!(recall_at_k(&r, &rel, 10), Some(0.5));
        assert_eq!(recall_at_k(&r, &[] as &[&str], 10), None);
        assert_eq!(precision_at_k(&r, &rel, 0), 0.0);
        assert_eq!(mean(&[]), None);
    }
}
