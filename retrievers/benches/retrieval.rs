//! Retrieval benchmarks, one JSON line per measurement (benches/run.sh runs them beside their
//! references and docs/benchmarks.md reports the ratios):
//!
//! - `memory N D Q DIR`: exact top-10 queries/s of the in-memory store on N clustered D-dim
//!   vectors; writes the vectors and queries to DIR (raw little-endian f32) for numpy.
//! - `lance N D Q`: LanceDB on disk: ANN index build time, recall@10 of the index against exact
//!   search, p50/p99 latency through catena and through lancedb directly, and their ratio.
//! - `bm25 CORPUS.jsonl QUERIES.jsonl OUT.json`: index build and query latency of BM25 in
//!   rank_bm25 mode; writes each query's top-10 ids for comparison with rank_bm25.
//! - `pgvector N D Q` (feature `pgvector`, `CATENA_PG_URL` from scripts/with-postgres.sh): the
//!   same vectors and queries as `lance` in PostgreSQL: load and HNSW build time, recall@10
//!   against exact search at several `ef_search`, p50/p99 latency through catena and of the same
//!   SQL sent directly, and their ratio.
//! - `shards N` (same server): sharded ingestion of N chunks with a deterministic embedder by 1,
//!   2 and 4 concurrent workers, each with its own connection pool: chunks/s and the speed-up.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic, missing_docs)]

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use catena_core::{Document, Embedded, VectorStore};
use catena_retrievers::VectorIndex;
use catena_retrievers::{Analyzer, Bm25Index, Bm25Params, InMemoryVectorStore, LanceDbStore};
use futures::TryStreamExt;
use lancedb::query::{ExecutableQuery, QueryBase};

/// xorshift + Box-Muller: reproducible Gaussian numbers without a dependency.
struct Rng(u64);
impl Rng {
    fn uniform(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 + 0.5) / (1u64 << 24) as f32
    }
    fn gauss(&mut self) -> f32 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
    }
}

fn normalise(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
}

/// Vectors shaped like sentence embeddings: clusters (topics) with spread, unit length.
fn clustered(n: usize, d: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = Rng(seed);
    let centres: Vec<Vec<f32>> = (0..1000).map(|_| (0..d).map(|_| rng.gauss()).collect()).collect();
    (0..n)
        .map(|i| {
            let c = &centres[(i * 7919 + (rng.uniform() * 1000.0) as usize) % centres.len()];
            let mut v: Vec<f32> = c.iter().map(|x| x + 0.8 * rng.gauss()).collect();
            normalise(&mut v);
            v
        })
        .collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Latencies of one store queried through catena and directly, query by query.
struct Alternated {
    /// Through catena, sorted, in ms.
    catena_ms: Vec<f64>,
    /// The same query sent directly, sorted, in ms.
    direct_ms: Vec<f64>,
    /// How many of catena's top-10 hits are in the exact top 10.
    found: usize,
}

/// Runs each query through catena (`search`, which returns ids; the copy of the query it takes
/// is made before the clock starts) and directly (`direct`), in
/// alternating order: the second run of a query finds its index pages cached, so a fixed order
/// would favour one side. The first query is run once beforehand to warm the index.
async fn alternate<S, SF, D, DF>(
    queries: &[Vec<f32>],
    exact: &[Vec<String>],
    search: S,
    direct: D,
) -> Alternated
where
    S: Fn(Vec<f32>) -> SF,
    SF: std::future::Future<Output = Vec<String>>,
    D: Fn(&[f32]) -> DF,
    DF: std::future::Future<Output = ()>,
{
    let _ = search(queries[0].clone()).await;
    let timed_direct = |v: &[f32]| {
        let run = direct(v);
        async move {
            let t = Instant::now();
            run.await;
            t.elapsed().as_secs_f64() * 1e3
        }
    };
    let mut out = Alternated { catena_ms: Vec::new(), direct_ms: Vec::new(), found: 0 };
    for (i, (v, truth)) in queries.iter().zip(exact).enumerate() {
        if i % 2 == 1 {
            out.direct_ms.push(timed_direct(v).await);
        }
        let owned = v.clone();
        let t = Instant::now();
        let ids = search(owned).await;
        out.catena_ms.push(t.elapsed().as_secs_f64() * 1e3);
        out.found += ids.iter().filter(|id| truth.contains(id)).count();
        if i % 2 == 0 {
            out.direct_ms.push(timed_direct(v).await);
        }
    }
    out.catena_ms.sort_by(f64::total_cmp);
    out.direct_ms.sort_by(f64::total_cmp);
    out
}

/// [`top10`] of a query the future owns.
async fn top10_owned(store: &dyn VectorStore, v: Vec<f32>) -> Vec<String> {
    top10(store, &v).await
}

/// The ids of a store's top 10 for `v`.
async fn top10(store: &dyn VectorStore, v: &[f32]) -> Vec<String> {
    store.search(v, 10, None).await.unwrap().into_iter().map(|h| h.document.id.unwrap()).collect()
}

fn write_f32(path: &Path, rows: &[Vec<f32>]) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for r in rows {
        for x in r {
            f.write_all(&x.to_le_bytes()).unwrap();
        }
    }
}

async fn memory(n: usize, d: usize, q: usize, dir: &Path) {
    let mut vectors = clustered(n + q, d, 1);
    let queries = vectors.split_off(n);
    std::fs::create_dir_all(dir).unwrap();
    write_f32(&dir.join("vectors.f32"), &vectors);
    write_f32(&dir.join("queries.f32"), &queries);
    let store = InMemoryVectorStore::new();
    for (chunk_i, chunk) in vectors.chunks(10_000).enumerate() {
        let records = chunk
            .iter()
            .enumerate()
            .map(|(i, v)| Embedded {
                document: Document::new(String::new()).with_id((chunk_i * 10_000 + i).to_string()),
                vector: v.clone(),
            })
            .collect();
        store.upsert(records).await.unwrap();
    }
    let mut ids = Vec::with_capacity(q);
    let start = Instant::now();
    for v in &queries {
        let hits = store.search(v, 10, None).await.unwrap();
        ids.push(hits.into_iter().map(|h| h.document.id.unwrap()).collect::<Vec<_>>());
    }
    let secs = start.elapsed().as_secs_f64();
    std::fs::write(dir.join("catena-top10.json"), serde_json::to_string(&ids).unwrap()).unwrap();
    let threads = rayon::current_num_threads();
    println!(
        "{}",
        serde_json::json!({"bench": "memory-exact", "impl": "catena", "mode": "single", "n": n, "d": d,
                           "queries": q, "qps": q as f64 / secs, "threads": threads})
    );
    // The same queries in batches: one pass over the vectors per batch.
    for batch in [64, 1000] {
        let start = Instant::now();
        let mut same = 0;
        for (chunk, expected) in queries.chunks(batch).zip(ids.chunks(batch)) {
            let found = store.search_batch(chunk, 10, None).await.unwrap();
            for (hits, single) in found.into_iter().zip(expected) {
                let got: Vec<String> = hits.into_iter().map(|h| h.document.id.unwrap()).collect();
                same += usize::from(&got == single);
            }
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{}",
            serde_json::json!({"bench": "memory-exact", "impl": "catena", "mode": "batch", "batch": batch,
                               "n": n, "d": d, "queries": q, "qps": q as f64 / secs, "threads": threads,
                               "same_top10_as_single": same})
        );
    }
}

async fn lance(n: usize, d: usize, q: usize) {
    // Queries come from the same topics as the data (held out), as real questions do.
    let mut vectors = clustered(n + q, d, 1);
    let queries = vectors.split_off(n);
    let dir = tempfile::tempdir().unwrap();
    let uri = dir.path().to_string_lossy().into_owned();
    // IVF-PQ (1M rows and up) probes 5% of its partitions and re-ranks 10x candidates exactly.
    let partitions = (n as f64).sqrt() as usize;
    let store = LanceDbStore::connect(uri.clone(), "bench")
        .await
        .unwrap()
        .with_nprobes((partitions / 20).max(20))
        .with_refine_factor(10);
    let start = Instant::now();
    for (chunk_i, chunk) in vectors.chunks(50_000).enumerate() {
        let records = chunk
            .iter()
            .enumerate()
            .map(|(i, v)| Embedded {
                document: Document::new(String::new()).with_id((chunk_i * 50_000 + i).to_string()),
                vector: v.clone(),
            })
            .collect();
        store.upsert(records).await.unwrap();
    }
    let load_s = start.elapsed().as_secs_f64();
    // Ground truth: exact search before any index exists.
    let mut exact: Vec<Vec<String>> = Vec::with_capacity(q);
    for v in &queries {
        exact.push(top10(&store, v).await);
    }
    let start = Instant::now();
    store.create_index(VectorIndex::Auto).await.unwrap();
    let index_s = start.elapsed().as_secs_f64();
    let table = store.table().await.unwrap();

    let direct = |v: &[f32]| {
        let query = table
            .query()
            .nearest_to(v)
            .unwrap()
            .distance_type(lancedb::DistanceType::Cosine)
            .ef(100)
            .nprobes((partitions / 20).max(20))
            .unwrap()
            .refine_factor(10)
            .limit(10);
        async move {
            let batches: Vec<arrow_array::RecordBatch> =
                query.execute().await.unwrap().try_collect().await.unwrap();
            assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 10);
        }
    };
    let Alternated { catena_ms, direct_ms, found } =
        alternate(&queries, &exact, |v| top10_owned(&store, v), direct).await;
    let (c50, d50) = (percentile(&catena_ms, 0.5), percentile(&direct_ms, 0.5));
    println!(
        "{}",
        serde_json::json!({"bench": "lancedb-ann", "n": n, "d": d, "queries": q, "load_s": load_s, "index_s": index_s,
            "index": if n < 5_000_000 { "IVF_HNSW_SQ" } else { "IVF_PQ" },
            "recall_at_10": found as f64 / (10 * q) as f64,
            "catena_p50_ms": c50, "catena_p99_ms": percentile(&catena_ms, 0.99),
            "lancedb_p50_ms": d50, "lancedb_p99_ms": percentile(&direct_ms, 0.99),
            "overhead_p50": c50 / d50})
    );
}

fn bm25(corpus: &Path, queries: &Path, out: &Path) {
    let read = |p: &Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let docs: Vec<Document> = read(corpus)
        .iter()
        .map(|d| {
            Document::new(format!(
                "{} {}",
                d["title"].as_str().unwrap_or(""),
                d["text"].as_str().unwrap_or("")
            ))
            .with_id(d["_id"].as_str().unwrap())
        })
        .collect();
    let queries: Vec<String> = read(queries).iter().map(|q| q["text"].as_str().unwrap().to_owned()).collect();
    let start = Instant::now();
    let index = Bm25Index::new(docs, Analyzer::whitespace(), Bm25Params::rank_bm25()).unwrap();
    let build_s = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let mut tops = Vec::new();
    for q in &queries {
        let top: Vec<(String, f64)> = index
            .search(q, 10, None)
            .into_iter()
            .map(|(i, s)| (index.documents()[i].id.clone().unwrap(), s))
            .collect();
        tops.push(top);
    }
    let query_s = start.elapsed().as_secs_f64();
    std::fs::write(out, serde_json::to_string(&tops).unwrap()).unwrap();
    println!(
        "{}",
        serde_json::json!({"bench": "bm25", "impl": "catena", "docs": index.len(), "queries": queries.len(),
                           "build_ms": build_s * 1e3, "query_ms": query_s * 1e3 / queries.len() as f64})
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let num = |i: usize| args.get(i).and_then(|s| s.parse::<usize>().ok());
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    match args.first().map(String::as_str) {
        Some("memory") => {
            rt.block_on(memory(num(1).unwrap(), num(2).unwrap(), num(3).unwrap(), Path::new(&args[4])))
        }
        Some("lance") => rt.block_on(lance(num(1).unwrap(), num(2).unwrap(), num(3).unwrap())),
        Some("bm25") => bm25(Path::new(&args[1]), Path::new(&args[2]), Path::new(&args[3])),
        #[cfg(feature = "pgvector")]
        Some("pgvector") => rt.block_on(pg::pgvector(num(1).unwrap(), num(2).unwrap(), num(3).unwrap())),
        #[cfg(feature = "pgvector")]
        Some("shards") => rt.block_on(pg::shards(num(1).unwrap())),
        _ => eprintln!(
            "usage: retrieval memory N D Q DIR | lance N D Q | bm25 CORPUS QUERIES OUT | pgvector N D Q | shards N"
        ),
    }
}

#[cfg(feature = "pgvector")]
#[path = "../tests/support/postgres.rs"]
mod support;

#[cfg(feature = "pgvector")]
mod pg {
    use std::sync::Arc;
    use std::time::Instant;

    use catena_core::{Document, Embedded, RunContext, VectorStore};
    use catena_retrievers::{Cleanup, Indexer, PgIndex, PgVectorOptions, PgVectorStore, Shard};

    use super::{Alternated, alternate, clustered, percentile, top10, top10_owned};

    /// A fresh database in the server of `scripts/with-postgres.sh` (a benchmark needs one).
    async fn database(name: &str) -> String {
        super::support::fresh_database(name)
            .await
            .expect("run under scripts/with-postgres.sh (CATENA_PG_URL)")
    }

    pub(super) async fn pgvector(n: usize, d: usize, q: usize) {
        // The very vectors and queries of the `lance` part (same seed), so the rows compare.
        let mut vectors = clustered(n + q, d, 1);
        let queries = vectors.split_off(n);
        let url = database("catena_bench_pgvector").await;
        let store =
            PgVectorStore::connect_with(&url, "bench", PgVectorOptions::default().with_max_connections(2))
                .await
                .unwrap();
        let start = Instant::now();
        for (chunk_i, chunk) in vectors.chunks(5_000).enumerate() {
            let records = chunk
                .iter()
                .enumerate()
                .map(|(i, v)| Embedded {
                    document: Document::new(String::new()).with_id((chunk_i * 5_000 + i).to_string()),
                    vector: v.clone(),
                })
                .collect();
            store.upsert(records).await.unwrap();
        }
        let load_s = start.elapsed().as_secs_f64();
        let mut exact: Vec<Vec<String>> = Vec::with_capacity(q);
        for v in &queries {
            exact.push(top10(&store, v).await);
        }
        let start = Instant::now();
        store.create_index(PgIndex::HNSW).await.unwrap();
        let index_s = start.elapsed().as_secs_f64();
        let (index_mb, table_mb): (f64, f64) = sqlx::query_as(
            "SELECT pg_relation_size('\"bench_embedding\"')::float8 / 1048576, \
             pg_total_relation_size('\"bench\"')::float8 / 1048576",
        )
        .fetch_one(store.pool())
        .await
        .unwrap();
        // The SQL catena sends, sent directly on the store's own pool (same connection settings).
        let sql = "SELECT id, content, metadata, embedding <=> $1 AS distance FROM \"bench\" \
                   ORDER BY embedding <=> $1 LIMIT $2";
        for ef in [40u32, 100, 200] {
            let store = PgVectorStore::connect_with(
                &url,
                "bench",
                PgVectorOptions::default().with_max_connections(1).with_ef_search(ef),
            )
            .await
            .unwrap();
            let direct = |v: &[f32]| {
                let query = sqlx::query(sql).bind(pgvector::Vector::from(v.to_vec())).bind(10_i64);
                let pool = store.pool().clone();
                async move {
                    assert_eq!(query.fetch_all(&pool).await.unwrap().len(), 10);
                }
            };
            let Alternated { catena_ms, direct_ms, found } =
                alternate(&queries, &exact, |v| top10_owned(&store, v), direct).await;
            let (c50, d50) = (percentile(&catena_ms, 0.5), percentile(&direct_ms, 0.5));
            println!(
                "{}",
                serde_json::json!({"bench": "pgvector-hnsw", "n": n, "d": d, "queries": q, "load_s": load_s,
                    "index_s": index_s, "index_mb": index_mb, "table_mb": table_mb, "ef_search": ef, "recall_at_10": found as f64 / (10 * q) as f64,
                    "catena_p50_ms": c50, "catena_p99_ms": percentile(&catena_ms, 0.99),
                    "sql_p50_ms": d50, "sql_p99_ms": percentile(&direct_ms, 0.99), "overhead_p50": c50 / d50})
            );
        }
    }

    pub(super) async fn shards(n: usize) {
        let embedder = catena_core::testing::DeterministicEmbedder::new(384);
        let docs: Vec<Document> = (0..n)
            .map(|i| {
                Document::new(format!(
                    "chunk {i}: some words about topic {} and detail {}",
                    i % 97,
                    i * 31 % 1013
                ))
                .with_metadata("source", format!("docs/file-{}.md", i % 500))
            })
            .collect();
        let url = database("catena_bench_shards").await;
        let mut base = None;
        for workers in [1u32, 2, 4] {
            let collection = format!("shards{workers}");
            let start = Instant::now();
            let mut tasks = Vec::new();
            for k in 1..=workers {
                let shard = Shard::new(k, workers).unwrap();
                let mine: Vec<Document> =
                    docs.iter().filter(|d| shard.owns(d.source().unwrap_or(""))).cloned().collect();
                let (url, collection, embedder) = (url.clone(), collection.clone(), embedder);
                tasks.push(tokio::spawn(async move {
                    let store = Arc::new(
                        PgVectorStore::connect_with(
                            &url,
                            collection,
                            PgVectorOptions::default().with_max_connections(2),
                        )
                        .await
                        .unwrap(),
                    );
                    let mut indexer = Indexer::new(&embedder, store.as_ref(), Cleanup::Incremental);
                    let ctx = RunContext::new();
                    for batch in mine.chunks(256) {
                        indexer.add(batch.to_vec(), &ctx).await.unwrap();
                    }
                    indexer.finish().await.unwrap()
                }));
            }
            let mut added = 0;
            for task in tasks {
                added += task.await.unwrap().added;
            }
            let secs = start.elapsed().as_secs_f64();
            let store = PgVectorStore::open(&url, collection).await.unwrap();
            assert_eq!(store.count().await.unwrap(), n, "every chunk once");
            assert_eq!(added, n);
            let rate = n as f64 / secs;
            let speedup = rate / *base.get_or_insert(rate);
            println!(
                "{}",
                serde_json::json!({"bench": "sharded-ingest", "store": "pgvector", "chunks": n, "workers": workers,
                    "seconds": secs, "chunks_per_s": rate, "speedup": speedup,
                    "cores": std::thread::available_parallelism().map_or(1, usize::from)})
            );
        }
    }
}
