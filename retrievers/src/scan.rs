//! The exact scans behind [`InMemoryVectorStore`](crate::InMemoryVectorStore).
//!
//! One query is bound by memory bandwidth: every stored float is read once and used once, so
//! the kernel's job is to keep the loads streaming and its reduction off the critical path.
//! A batch of queries is bound by arithmetic: a block of stored vectors that fits in the core's
//! cache is multiplied by every query at once (`matrixmultiply`'s sgemm, tuned FMA kernels
//! chosen at run time), so each vector is read from memory once per batch instead of once per
//! query. Either way a scan keeps only each query's best `k` as scores arrive ([`Best`]), never
//! a score per row.

use rayon::prelude::*;

/// Above this many rows a scan runs on all cores (below it, threads cost more than they save).
const PARALLEL_ROWS: usize = 32_768;

/// Rows per block of a single-query scan: enough work per task to hide the scheduling.
const BLOCK_ROWS: usize = 4096;

/// Rows per block of a batch scan: 256 rows of 384 floats (384 KiB) stay in a core's L2 cache
/// while every query chunk is multiplied against them.
const BATCH_BLOCK_ROWS: usize = 256;

/// Queries multiplied against a block at once: the score tile (256 × 128 floats) stays in cache.
const BATCH_QUERY_CHUNK: usize = 128;

/// How a dot product (and the two squared lengths, for L2) becomes a score, higher is closer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scoring {
    /// The dot product itself (cosine on unit vectors, or raw inner product).
    Dot,
    /// `1 - |v - q| / sqrt(2)`, LangChain's relevance for Euclidean distance.
    L2,
}

/// The best `k` (score, row) pairs seen so far. Ties rank by row, so the order never depends on
/// how the rows were split between threads.
#[derive(Debug, Clone)]
pub(crate) struct Best {
    k: usize,
    items: Vec<(f32, usize)>,
    /// No item below this can make the final `k` (`-inf` until `k` items are held).
    floor: f32,
}

fn better(a: &(f32, usize), b: &(f32, usize)) -> std::cmp::Ordering {
    b.0.total_cmp(&a.0).then(a.1.cmp(&b.1))
}

impl Best {
    pub(crate) fn new(k: usize) -> Self {
        Self { k, items: Vec::with_capacity(2 * k), floor: f32::NEG_INFINITY }
    }

    /// Offers a row. Amortised O(1): items collect up to `2k`, then the best `k` are kept and
    /// the `k`-th score becomes the floor (ties with the floor are kept, and settled by row).
    #[inline]
    pub(crate) fn offer(&mut self, score: f32, row: usize) {
        if score >= self.floor && self.k > 0 {
            self.items.push((score, row));
            if self.items.len() >= 2 * self.k {
                self.shrink();
            }
        }
    }

    fn shrink(&mut self) {
        if self.k == 0 {
            self.items.clear();
            return;
        }
        if self.items.len() > self.k {
            self.items.select_nth_unstable_by(self.k - 1, better);
            self.items.truncate(self.k);
        }
        if self.items.len() == self.k {
            self.floor = self.items.iter().map(|p| p.0).fold(f32::INFINITY, f32::min);
        }
    }

    pub(crate) fn merge(mut self, other: Self) -> Self {
        for (score, row) in other.items {
            self.offer(score, row);
        }
        self
    }

    /// The best `k`, best first.
    pub(crate) fn into_sorted(mut self) -> Vec<(f32, usize)> {
        self.shrink();
        self.items.sort_by(better);
        self.items
    }
}

/// The dot product of two equal-length vectors over 32 lanes in fixed-size arrays, which the
/// compiler unrolls into SIMD: independent partial sums keep the FMA units busy, and the lanes
/// are added pairwise at the end, so the reduction is a short tree rather than a 32-add chain.
#[inline]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 32;
    let mut acc = [0.0f32; LANES];
    let (ac, bc) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ac.remainder().iter().zip(bc.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ac.zip(bc) {
        if let (Ok(x), Ok(y)) = (<&[f32; LANES]>::try_from(x), <&[f32; LANES]>::try_from(y)) {
            for ((s, p), q) in acc.iter_mut().zip(x).zip(y) {
                *s += p * q;
            }
        }
    }
    tree_sum(acc) + tail
}

#[inline]
fn tree_sum(acc: [f32; 32]) -> f32 {
    let mut half = [0.0f32; 16];
    for (i, h) in half.iter_mut().enumerate() {
        *h = acc.get(i).copied().unwrap_or(0.0) + acc.get(i + 16).copied().unwrap_or(0.0);
    }
    let mut quarter = [0.0f32; 8];
    for (i, q) in quarter.iter_mut().enumerate() {
        *q = half.get(i).copied().unwrap_or(0.0) + half.get(i + 8).copied().unwrap_or(0.0);
    }
    let [a, b, c, d, e, f, g, h] = quarter;
    ((a + e) + (c + g)) + ((b + f) + (d + h))
}

fn l2_score(squared_distance: f32) -> f32 {
    1.0 - squared_distance.max(0.0).sqrt() / std::f32::consts::SQRT_2
}

/// Scores one stored vector against one query.
#[inline]
pub(crate) fn score(scoring: Scoring, query: &[f32], v: &[f32]) -> f32 {
    match scoring {
        Scoring::Dot => dot(v, query),
        Scoring::L2 => l2_score(v.iter().zip(query).map(|(a, b)| (a - b) * (a - b)).sum()),
    }
}

/// The best `k` rows of `vectors` (row-major, `d` floats each) for one query, among the rows
/// `keep` accepts; best first, ties by row.
pub(crate) fn top_k(
    vectors: &[f32],
    d: usize,
    query: &[f32],
    k: usize,
    scoring: Scoring,
    keep: &(dyn Fn(usize) -> bool + Sync),
) -> Vec<(f32, usize)> {
    let d = d.max(1);
    let rows = vectors.len() / d;
    let scan_block = |block: usize| -> Best {
        let mut best = Best::new(k);
        let start = block * BLOCK_ROWS;
        let end = (start + BLOCK_ROWS).min(rows);
        let slice = vectors.get(start * d..end * d).unwrap_or_default();
        for (j, v) in slice.chunks_exact(d).enumerate() {
            if keep(start + j) {
                best.offer(score(scoring, query, v), start + j);
            }
        }
        best
    };
    let blocks = rows.div_ceil(BLOCK_ROWS);
    let best = if rows >= PARALLEL_ROWS {
        (0..blocks).into_par_iter().map(scan_block).reduce(|| Best::new(k), Best::merge)
    } else {
        (0..blocks).map(scan_block).fold(Best::new(k), Best::merge)
    };
    best.into_sorted()
}

/// [`top_k`] for many queries (`queries` row-major, `d` floats each), one list per query: each
/// block of stored vectors is multiplied by a chunk of queries in one sgemm call while it is in
/// cache. Scores equal [`top_k`]'s up to float rounding (the sums run in another order).
pub(crate) fn top_k_batch(
    vectors: &[f32],
    d: usize,
    queries: &[f32],
    k: usize,
    scoring: Scoring,
    keep: &(dyn Fn(usize) -> bool + Sync),
) -> Vec<Vec<(f32, usize)>> {
    let d = d.max(1);
    let rows = vectors.len() / d;
    let query_count = queries.len() / d;
    let query_norms: Vec<f32> = queries.chunks_exact(d).map(|q| dot(q, q)).collect();
    let fresh = || vec![Best::new(k); query_count];
    let scan_block = |mut best: Vec<Best>, block: usize| -> Vec<Best> {
        let start = block * BATCH_BLOCK_ROWS;
        let end = (start + BATCH_BLOCK_ROWS).min(rows);
        let slice = vectors.get(start * d..end * d).unwrap_or_default();
        let m = end.saturating_sub(start);
        let row_norms: Vec<f32> = match scoring {
            Scoring::Dot => Vec::new(),
            Scoring::L2 => slice.chunks_exact(d).map(|v| dot(v, v)).collect(),
        };
        let kept: Vec<bool> = (start..end).map(keep).collect();
        let mut tile = vec![0.0f32; m * BATCH_QUERY_CHUNK];
        for (chunk_index, chunk) in queries.chunks(BATCH_QUERY_CHUNK * d).enumerate() {
            let n = chunk.len() / d;
            let first_query = chunk_index * BATCH_QUERY_CHUNK;
            multiply(slice, chunk, m, d, n, &mut tile);
            for (r, scores) in tile.chunks_exact(n.max(1)).take(m).enumerate() {
                if !kept.get(r).copied().unwrap_or(false) {
                    continue;
                }
                for (j, &dot) in scores.iter().enumerate() {
                    let score = match scoring {
                        Scoring::Dot => dot,
                        Scoring::L2 => {
                            let vv = row_norms.get(r).copied().unwrap_or(0.0);
                            let qq = query_norms.get(first_query + j).copied().unwrap_or(0.0);
                            l2_score(vv + qq - 2.0 * dot)
                        }
                    };
                    if let Some(b) = best.get_mut(first_query + j) {
                        b.offer(score, start + r);
                    }
                }
            }
        }
        best
    };
    let merge =
        |a: Vec<Best>, b: Vec<Best>| a.into_iter().zip(b).map(|(x, y)| x.merge(y)).collect::<Vec<_>>();
    let blocks = rows.div_ceil(BATCH_BLOCK_ROWS);
    let best = if rows * query_count >= PARALLEL_ROWS {
        (0..blocks).into_par_iter().fold(fresh, scan_block).reduce(fresh, merge)
    } else {
        (0..blocks).fold(fresh(), scan_block)
    };
    best.into_iter().map(Best::into_sorted).collect()
}

/// `tile[r * n + j] = dot(block row r, query j)` for an `m × d` block and `n` queries.
fn multiply(block: &[f32], queries: &[f32], m: usize, d: usize, n: usize, tile: &mut [f32]) {
    let fits = block.len() >= m * d && queries.len() >= n * d && tile.len() >= m * n;
    // Row stride of the block and column stride of the queries are both `d`.
    let (Ok(stride), Ok(rsc)) = (isize::try_from(d), isize::try_from(n)) else {
        return;
    };
    if !fits || m == 0 || n == 0 {
        return;
    }
    // SAFETY: sgemm reads `block` as m × d with row stride d (checked above: block holds m * d
    // floats), reads `queries` transposed, d × n with column stride d (n * d floats), and
    // writes `tile` as m × n with row stride n (m * n floats); the three slices do not overlap
    // (`tile` is borrowed mutably).
    unsafe {
        matrixmultiply::sgemm(
            m,
            d,
            n,
            1.0,
            block.as_ptr(),
            stride,
            1,
            queries.as_ptr(),
            1,
            stride,
            0.0,
            tile.as_mut_ptr(),
            rsc,
            1,
        );
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    /// Reproducible pseudo-random floats in [-1, 1).
    fn floats(count: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..count)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 23) as f32) - 1.0
            })
            .collect()
    }

    fn reference(vectors: &[f32], d: usize, q: &[f32], k: usize, scoring: Scoring) -> Vec<(f64, usize)> {
        let mut all: Vec<(f64, usize)> = vectors
            .chunks_exact(d)
            .enumerate()
            .map(|(i, v)| {
                let s = match scoring {
                    Scoring::Dot => v.iter().zip(q).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum(),
                    Scoring::L2 => {
                        let d2: f64 =
                            v.iter().zip(q).map(|(a, b)| (f64::from(*a) - f64::from(*b)).powi(2)).sum();
                        1.0 - d2.sqrt() / std::f64::consts::SQRT_2
                    }
                };
                (s, i)
            })
            .collect();
        all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        all.truncate(k);
        all
    }

    #[test]
    fn single_and_batch_scans_equal_an_exact_reference() {
        // Sizes straddle the block and query-chunk edges and the parallel threshold.
        for (rows, d, queries, k) in [(1, 3, 1, 5), (300, 7, 5, 4), (40_000, 33, 3, 10), (700, 64, 130, 7)] {
            let vectors = floats(rows * d, rows as u64);
            let qs = floats(queries * d, 7);
            let odd = |r: usize| r % 3 != 1;
            for scoring in [Scoring::Dot, Scoring::L2] {
                let batch = top_k_batch(&vectors, d, &qs, k, scoring, &odd);
                assert_eq!(batch.len(), queries);
                for (qi, q) in qs.chunks_exact(d).enumerate() {
                    let single = top_k(&vectors, d, q, k, scoring, &odd);
                    let kept: Vec<f32> = vectors
                        .chunks_exact(d)
                        .enumerate()
                        .filter(|(i, _)| odd(*i))
                        .flat_map(|(_, v)| v.to_vec())
                        .collect();
                    let index: Vec<usize> = (0..rows).filter(|&i| odd(i)).collect();
                    let exact: Vec<(f64, usize)> =
                        reference(&kept, d, q, k, scoring).into_iter().map(|(s, i)| (s, index[i])).collect();
                    for got in [&single, &batch[qi]] {
                        assert_eq!(got.len(), exact.len());
                        for ((s, i), (es, ei)) in got.iter().zip(&exact) {
                            assert!((f64::from(*s) - es).abs() < 1e-4, "score {s} vs {es}");
                            // Random floats leave no near-ties at this tolerance.
                            assert_eq!(i, ei, "rows={rows} d={d} query {qi} {scoring:?}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn best_keeps_ties_in_row_order_whatever_the_arrival_order() {
        let mut a = Best::new(2);
        for (s, r) in [(1.0, 9), (1.0, 4), (0.5, 1), (1.0, 2), (1.0, 7)] {
            a.offer(s, r);
        }
        assert_eq!(a.into_sorted(), vec![(1.0, 2), (1.0, 4)]);
        assert!(Best::new(0).into_sorted().is_empty());
    }

    #[test]
    fn tree_sum_dot_matches_naive() {
        let (a, b) = (floats(100, 1), floats(100, 2));
        let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - naive).abs() < 1e-4);
    }
}
