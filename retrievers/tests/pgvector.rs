//! What only the pgvector store has, against a real PostgreSQL 18 + pgvector server
//! (`scripts/with-postgres.sh`): ANN indexes that the searches really use (and that filtered
//! searches still fill), keyword and hybrid search inside the database, schema migration of an
//! older collection, the statement timeout as a typed error, and the connection errors a user
//! meets first. The behaviour every store shares is in `store_conformance.rs`.
#![cfg(feature = "pgvector")]
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use catena_core::{Document, Embedded, ErrorKind, Filter, Retriever, RunContext, VectorStore};
use catena_retrievers::{
    Distance, EnsembleRetriever, PgIndex, PgKeywordRetriever, PgVectorOptions, PgVectorStore,
    VectorStoreRetriever,
};

#[path = "support/postgres.rs"]
mod support;
use support::fresh_database as database;

/// Clustered vectors: 20 centres, points scattered around them (what embeddings look like).
fn clustered(n: usize, dims: usize) -> Vec<Embedded> {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f32 / (1u64 << 53) as f32 - 0.5
    };
    let centres: Vec<Vec<f32>> = (0..20).map(|_| (0..dims).map(|_| next() * 4.0).collect()).collect();
    (0..n)
        .map(|i| {
            let centre = &centres[i % centres.len()];
            Embedded {
                document: Document::new(format!("point {i}"))
                    .with_id(format!("p{i:05}"))
                    .with_metadata("cluster", (i % centres.len()) as i64)
                    .with_metadata("rare", i % 50 == 0),
                vector: centre.iter().map(|c| c + next() * 0.8).collect(),
            }
        })
        .collect()
}

async fn plan(store: &PgVectorStore, query: &[f32]) -> String {
    let vector = format!("[{}]", query.iter().map(f32::to_string).collect::<Vec<_>>().join(","));
    let rows: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "EXPLAIN SELECT id FROM \"{}\" ORDER BY embedding <=> '{vector}'::vector LIMIT 10",
        store.collection()
    )))
    .fetch_all(store.pool())
    .await
    .unwrap();
    rows.into_iter().map(|r| r.0).collect::<Vec<_>>().join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexes_are_used_keep_recall_and_fill_filtered_searches() {
    let Some(url) = database("catena_pgvector_index").await else { return };
    let store = PgVectorStore::connect(&url, "points").await.unwrap();
    let points = clustered(20_000, 32);
    for batch in points.chunks(2000) {
        store.upsert(batch.to_vec()).await.unwrap();
    }
    let queries: Vec<Vec<f32>> =
        points.iter().step_by(1000).map(|p| p.vector.iter().map(|x| x + 0.05).collect()).collect();
    let mut exact = Vec::new();
    for q in &queries {
        exact.push(store.search(q, 10, None).await.unwrap());
    }
    assert!(!plan(&store, &queries[0]).await.contains("points_embedding"), "no index yet: an exact scan");

    for index in [PgIndex::HNSW, PgIndex::IvfFlat { lists: 30 }] {
        store.create_index(index).await.unwrap();
        let explained = plan(&store, &queries[0]).await;
        assert!(explained.contains("Index Scan using points_embedding"), "{index:?} not used:\n{explained}");
        let (mut found, mut total) = (0usize, 0usize);
        for (q, truth) in queries.iter().zip(&exact) {
            let hits = store.search(q, 10, None).await.unwrap();
            total += truth.len();
            found += hits.iter().filter(|h| truth.iter().any(|t| t.document.id == h.document.id)).count();
        }
        let recall = found as f64 / total as f64;
        assert!(recall >= 0.9, "{index:?}: recall@10 {recall}");
        // A filter matching 2% of rows: iterative index scans still find k of them.
        let rare = Filter::eq("rare", true);
        let hits = store.search(&queries[1], 10, Some(&rare)).await.unwrap();
        assert_eq!(hits.len(), 10, "{index:?}: a filtered search came back short");
        assert!(hits.iter().all(|h| h.document.metadata["rare"] == true));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyword_and_hybrid_search_run_inside_the_database() {
    let Some(url) = database("catena_pgvector_keyword").await else { return };
    let store = Arc::new(PgVectorStore::connect(&url, "docs").await.unwrap());
    let texts = [
        "Rust's borrow checker enforces ownership and borrowing rules at compile time.",
        "Paris is the capital of France and sits on the Seine.",
        "The recursive splitter cuts documents at paragraphs, then sentences, then words.",
        "PostgreSQL stores vectors with the pgvector extension.",
    ];
    let embedder = Arc::new(catena_core::testing::DeterministicEmbedder::new(32));
    let docs: Vec<Document> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| Document::new(*t).with_id(format!("d{i}")).with_metadata("n", i))
        .collect();
    catena_retrievers::index_documents(&docs, embedder.as_ref(), store.as_ref(), 8, &RunContext::new())
        .await
        .unwrap();

    let ctx = RunContext::new();
    let keywords = PgKeywordRetriever::new(store.clone()).with_k(2);
    let hits = keywords.retrieve("what are the borrowing rules?", &ctx).await.unwrap();
    assert_eq!(hits[0].document.id.as_deref(), Some("d0"), "stemmed: borrowing ~ borrow, rules ~ rule");
    assert_eq!(hits.len(), 1, "only documents sharing a word match");
    let hits = keywords.retrieve("splitting documents by paragraphs", &ctx).await.unwrap();
    assert_eq!(hits[0].document.id.as_deref(), Some("d2"));
    let filtered = PgKeywordRetriever::new(store.clone()).with_filter(Filter::gte("n", 3));
    assert!(filtered.retrieve("borrowing rules", &ctx).await.unwrap().is_empty(), "the filter applies");
    // Query text is never parsed as tsquery operators or SQL.
    for hostile in ["'); DROP TABLE docs; --", "a & | ! ( ) :* <-> \\", "the of and", "🦀"] {
        assert!(keywords.retrieve(hostile, &ctx).await.unwrap().is_empty(), "{hostile:?}");
    }
    assert_eq!(store.count().await.unwrap(), 4);
    assert_eq!(keywords.retrieve("  ", &ctx).await.unwrap_err().kind(), ErrorKind::InvalidInput);

    // Hybrid: keywords and vectors from the same database, fused by reciprocal rank.
    let vectors: Arc<dyn Retriever> = Arc::new(VectorStoreRetriever::new(store.clone(), embedder).with_k(2));
    let hybrid = EnsembleRetriever::new(vec![Arc::new(keywords), vectors]).with_k(1);
    let hits = hybrid.retrieve("Which extension stores vectors in PostgreSQL?", &ctx).await.unwrap();
    assert_eq!(hits[0].document.id.as_deref(), Some("d3"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_one_collection_is_migrated_when_opened() {
    let Some(url) = database("catena_pgvector_migrate").await else { return };
    // What the first schema version wrote: the table and its record, no keyword column.
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    for statement in [
        "CREATE EXTENSION vector",
        "CREATE TABLE catena_collections (name text PRIMARY KEY, schema_version integer NOT NULL, \
         dimensions integer NOT NULL, text_search regconfig NOT NULL)",
        "CREATE TABLE \"old\" (id text PRIMARY KEY, content text NOT NULL, metadata jsonb NOT NULL DEFAULT '{}', \
         embedding vector(3) NOT NULL)",
        "INSERT INTO catena_collections VALUES ('old', 1, 3, 'english')",
        "INSERT INTO \"old\" VALUES ('a', 'gardens grow tomatoes', '{\"source\": \"g.md\"}', '[1,0,0]')",
    ] {
        sqlx::query(statement).execute(&pool).await.unwrap();
    }
    let store = Arc::new(PgVectorStore::open(&url, "old").await.unwrap());
    let version: i32 = sqlx::query_scalar("SELECT schema_version FROM catena_collections WHERE name = 'old'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(version, 2);
    let hits = store.keyword_search("tomato garden", 3, None).await.unwrap();
    assert_eq!(hits[0].document.id.as_deref(), Some("a"), "old rows are keyword-searchable");
    assert_eq!(
        store.search(&[1.0, 0.1, 0.0], 1, None).await.unwrap()[0].document.content,
        "gardens grow tomatoes"
    );
    // Opening it again changes nothing; a newer schema than this code knows is refused.
    drop(PgVectorStore::open(&url, "old").await.unwrap());
    sqlx::query("UPDATE catena_collections SET schema_version = 99").execute(&pool).await.unwrap();
    let err = PgVectorStore::open(&url, "old").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Store);
    assert!(err.to_string().contains("upgrade catena"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_and_connection_problems_are_typed_and_say_what_to_do() {
    let Some(url) = database("catena_pgvector_errors").await else { return };
    let options = PgVectorOptions::default().with_statement_timeout(Duration::from_millis(300));
    let store = PgVectorStore::connect_with(&url, "locked", options).await.unwrap();
    store
        .upsert(vec![Embedded { document: Document::new("x").with_id("x"), vector: vec![1.0, 2.0] }])
        .await
        .unwrap();
    // Another session holds the table: the statement timeout cancels the wait.
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let mut holder = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE \"locked\" IN ACCESS EXCLUSIVE MODE").execute(&mut *holder).await.unwrap();
    let err = store.count().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    holder.rollback().await.unwrap();
    assert_eq!(store.count().await.unwrap(), 1, "the store works again once the lock is gone");

    let err = PgVectorStore::connect("not a url", "c").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    let err = PgVectorStore::connect(&url, "bad\"name").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    let closed = format!("postgres://catena@127.0.0.1:{}/postgres", free_port());
    let quick = PgVectorOptions::default().with_connect_timeout(Duration::from_secs(1));
    let err = PgVectorStore::connect_with(&closed, "c", quick).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Store);
    assert!(err.to_string().contains("Is the server running"), "{err}");
    sqlx::query("CREATE TABLE \"theirs\" (x int)").execute(&pool).await.unwrap();
    let err = PgVectorStore::connect(&url, "theirs").await.unwrap_err();
    assert!(err.to_string().contains("not a catena collection"), "{err}");
    let err = PgVectorStore::open(&url, "never_written").await.unwrap_err();
    assert!(err.to_string().contains("ingest documents first"), "{err}");
    // Other dimensions than the collection holds, from a second handle.
    let other = PgVectorStore::connect(&url, "locked").await.unwrap();
    let err = other
        .upsert(vec![Embedded { document: Document::new("y"), vector: vec![1.0, 2.0, 3.0] }])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let l2 = PgVectorOptions::default().with_distance(Distance::L2);
    let l2_store = PgVectorStore::connect_with(&url, "locked", l2).await.unwrap();
    assert!((l2_store.search(&[1.0, 2.0], 1, None).await.unwrap()[0].score - 1.0).abs() < 1e-6);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
