//! The PostgreSQL + pgvector store: schema and migrations, upserts, vector and keyword search
//! (filters in a submodule).

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use catena_core::{Document, Embedded, Error, Filter, Metadata, Result, ScoredDocument, VectorStore};
use pgvector::Vector;
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, QueryBuilder, Row};
use tokio::sync::RwLock;

use crate::Distance;
use crate::index::document_id;

mod filter;
mod keyword;

use filter::push_filter;
pub use keyword::PgKeywordRetriever;

/// The schema version this code writes; older collections are migrated when opened.
/// 1: the table (id, content, metadata JSONB, embedding). 2: a generated `tsvector` column with
/// a GIN index (keyword search) and an index on `metadata -> 'source'` (incremental cleanup).
const SCHEMA_VERSION: i32 = 2;

/// Key of the transaction-scoped advisory lock every schema change takes, so that many
/// processes opening the same collection at once (sharded ingestion) create it exactly once.
const SCHEMA_LOCK: i64 = 0x6361_7465_6e61; // "catena"

/// Which approximate-nearest-neighbour index [`PgVectorStore::create_index`] builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgIndex {
    /// A graph index: best recall/latency trade-off, slower to build. Query knob:
    /// [`PgVectorOptions::ef_search`].
    Hnsw {
        /// Neighbours per node (pgvector's default 16).
        m: u32,
        /// Build-time candidate list (pgvector's default 64).
        ef_construction: u32,
    },
    /// Inverted lists: fast to build, lower recall per millisecond. Query knob:
    /// [`PgVectorOptions::probes`]. Build it after loading data (the lists are learned from it).
    IvfFlat {
        /// Number of lists (rows / 1000 up to 1M rows, sqrt(rows) above, is pgvector's advice).
        lists: u32,
    },
}

impl PgIndex {
    /// HNSW with pgvector's defaults.
    pub const HNSW: Self = Self::Hnsw { m: 16, ef_construction: 64 };
}

/// How a [`PgVectorStore`] connects and searches.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PgVectorOptions {
    /// How vectors compare (default cosine); an index is built for this distance.
    pub distance: Distance,
    /// Connections in the pool (default 8).
    pub max_connections: u32,
    /// Longest any statement may run before PostgreSQL cancels it (default 30 s); a cancelled
    /// statement is an [`Error::Timeout`].
    pub statement_timeout: Duration,
    /// HNSW candidates examined per query (default 100; pgvector's own default is 40).
    pub ef_search: u32,
    /// IVFFlat lists probed per query (default 10; pgvector's own default is 1).
    pub probes: u32,
    /// Memory an index build may use, in MiB (default 1024; PostgreSQL's
    /// `maintenance_work_mem` for that transaction only). An HNSW graph that does not fit
    /// builds many times slower. Index builds are not subject to the statement timeout.
    pub index_build_memory_mb: u32,
    /// Longest wait for a connection, new or from the pool (default 5 s): a server that is down
    /// is reported after this long.
    pub connect_timeout: Duration,
    /// The text search configuration of the keyword column (default `english`), used when the
    /// collection is created; an existing collection keeps its own.
    pub text_search: String,
}

impl Default for PgVectorOptions {
    fn default() -> Self {
        Self {
            distance: Distance::Cosine,
            max_connections: 8,
            statement_timeout: Duration::from_secs(30),
            ef_search: 100,
            probes: 10,
            index_build_memory_mb: 1024,
            connect_timeout: Duration::from_secs(5),
            text_search: "english".into(),
        }
    }
}

impl PgVectorOptions {
    /// How vectors compare.
    #[must_use]
    pub fn with_distance(mut self, distance: Distance) -> Self {
        self.distance = distance;
        self
    }

    /// Connections in the pool.
    #[must_use]
    pub fn with_max_connections(mut self, max_connections: u32) -> Self {
        self.max_connections = max_connections;
        self
    }

    /// Longest a statement may run.
    #[must_use]
    pub fn with_statement_timeout(mut self, timeout: Duration) -> Self {
        self.statement_timeout = timeout;
        self
    }

    /// HNSW candidates examined per query.
    #[must_use]
    pub fn with_ef_search(mut self, ef_search: u32) -> Self {
        self.ef_search = ef_search;
        self
    }

    /// IVFFlat lists probed per query.
    #[must_use]
    pub fn with_probes(mut self, probes: u32) -> Self {
        self.probes = probes;
        self
    }

    /// Longest wait for a connection.
    #[must_use]
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Text search configuration for a new collection's keyword column.
    #[must_use]
    pub fn with_text_search(mut self, config: impl Into<String>) -> Self {
        self.text_search = config.into();
        self
    }
}

/// Documents and their vectors in a PostgreSQL table with the pgvector extension: one database
/// shared by many application servers, with transactions, backups and replicas as usual.
///
/// Scores follow [`Distance`] exactly as the in-memory and LanceDB stores give them: cosine
/// similarity, the inner product, `1 - d / sqrt(2)` for Euclidean distance `d`.
///
/// ```no_run
/// use catena_retrievers::{PgIndex, PgVectorOptions, PgVectorStore};
///
/// # async fn demo() -> catena_core::Result<()> {
/// let store = PgVectorStore::connect("postgres://app@db/catena", "docs").await?;
/// // ... upsert documents, then, once loaded:
/// store.create_index(PgIndex::HNSW).await?;
/// # Ok(()) }
/// ```
///
/// Each collection is a table named after it, with the columns `id` (primary key: upserts are
/// `INSERT ... ON CONFLICT`), `content`, `metadata` (JSONB), `embedding` (`vector(n)`, its
/// dimension fixed by the first upsert) and `fts` (a generated `tsvector` for
/// [`PgKeywordRetriever`]). The store creates the table and migrates older ones itself, under an
/// advisory lock, recording each collection in `catena_collections`. [`Filter`]s become
/// parameterised SQL over `metadata` (any field, no declaration needed); searches set pgvector's
/// iterative index scans so a filtered search still returns `k` hits when `k` match.
pub struct PgVectorStore {
    pool: PgPool,
    collection: String,
    /// The collection's table name, quoted for SQL.
    table: String,
    options: PgVectorOptions,
    /// The collection as recorded in the database, once it exists.
    state: RwLock<Option<Collection>>,
}

#[derive(Debug, Clone)]
struct Collection {
    dimensions: usize,
    text_search: String,
}

impl std::fmt::Debug for PgVectorStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgVectorStore")
            .field("collection", &self.collection)
            .field("distance", &self.options.distance)
            .finish_non_exhaustive()
    }
}

/// A sqlx error as a catena error: a cancelled statement is a timeout, data PostgreSQL cannot
/// hold is bad input, the rest store errors with PostgreSQL's own message.
fn pg_error(context: &str, timeout: Duration) -> impl Fn(sqlx::Error) -> Error + '_ {
    move |e| {
        if let sqlx::Error::Database(db) = &e {
            match db.code().as_deref() {
                // query_canceled: statement_timeout fired.
                Some("57014") => return Error::Timeout(timeout),
                // Data exceptions (class 22): the input, not the store, is wrong.
                Some(code) if code.starts_with("22") => {
                    return Error::invalid_input(format!("{context}: {}", db.message())).with_source(e);
                }
                _ => {}
            }
        }
        let message = match &e {
            sqlx::Error::Database(db) => format!("{context}: PostgreSQL said: {}", db.message()),
            sqlx::Error::PoolTimedOut => {
                format!("{context}: no connection became free in time (raise max_connections?)")
            }
            other => format!("{context}: {other}"),
        };
        Error::store(message).with_source(e)
    }
}

fn valid_collection(name: &str) -> Result<()> {
    // Index names append up to 17 characters; PostgreSQL cuts names at 63 bytes.
    if name.is_empty()
        || name.len() > 40
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
    {
        return Err(Error::invalid_input(format!(
            "collection name {name:?} must be 1 to 40 letters, digits, '_', '-' or '.'"
        )));
    }
    Ok(())
}

/// PostgreSQL cannot store NUL characters in text or JSONB: refuse them up front, naming the
/// document, rather than failing halfway through a batch.
fn check_no_nul(id: &str, document: &Document) -> Result<()> {
    fn in_value(v: &Value) -> bool {
        match v {
            Value::String(s) => s.contains('\0'),
            Value::Array(items) => items.iter().any(in_value),
            Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || in_value(v)),
            _ => false,
        }
    }
    if id.contains('\0')
        || document.content.contains('\0')
        || document.metadata.iter().any(|(k, v)| k.contains('\0') || in_value(v))
    {
        return Err(Error::invalid_input(format!(
            "document {id:?} contains a NUL character, which PostgreSQL cannot store; remove it"
        )));
    }
    Ok(())
}

impl PgVectorStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/database`) with
    /// default [`PgVectorOptions`] and uses the collection `collection`, created on the first
    /// upsert if it does not exist yet.
    ///
    /// # Errors
    /// See [`connect_with`](Self::connect_with).
    pub async fn connect(url: &str, collection: impl Into<String>) -> Result<Self> {
        Self::connect_with(url, collection, PgVectorOptions::default()).await
    }

    /// Like [`connect`](Self::connect) with explicit options.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a bad URL or collection name; [`Error::Store`] when the
    /// server cannot be reached, lacks the pgvector extension, or holds a table of that name
    /// that is not a catena collection.
    pub async fn connect_with(
        url: &str,
        collection: impl Into<String>,
        options: PgVectorOptions,
    ) -> Result<Self> {
        let collection = collection.into();
        valid_collection(&collection)?;
        let timeout_ms = options.statement_timeout.as_millis().max(1).to_string();
        let ef_search = options.ef_search.max(1).to_string();
        let probes = options.probes.max(1).to_string();
        // Per-connection settings: pgvector's query knobs apply to every search without a round
        // trip, and iterative scans keep filtered index searches from returning fewer than k.
        let connect = PgConnectOptions::from_str(url)
            .map_err(|e| Error::invalid_input(format!("bad PostgreSQL URL: {e}")))?
            .application_name("catena")
            .options([
                ("statement_timeout", timeout_ms.as_str()),
                ("hnsw.ef_search", ef_search.as_str()),
                ("hnsw.iterative_scan", "strict_order"),
                ("ivfflat.probes", probes.as_str()),
                ("ivfflat.iterative_scan", "relaxed_order"),
            ]);
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.connect_timeout)
            .connect_with(connect)
            .await
            .map_err(|e| {
                Error::store(format!(
                    "cannot connect to PostgreSQL: {e}. Is the server running and the URL right?"
                ))
                .with_source(e)
            })?;
        let store =
            Self { pool, table: format!("\"{collection}\""), collection, options, state: RwLock::new(None) };
        let found = store.migrate(None).await?;
        *store.state.write().await = found;
        Ok(store)
    }

    /// Opens an existing collection; unlike [`connect`](Self::connect), a missing one is an error.
    ///
    /// # Errors
    /// [`Error::Store`] when the collection does not exist, plus those of `connect`.
    pub async fn open(url: &str, collection: impl Into<String>) -> Result<Self> {
        let store = Self::connect(url, collection).await?;
        if store.collection_state().await?.is_none() {
            return Err(Error::store(format!(
                "there is no collection {:?} in this database: ingest documents first",
                store.collection
            )));
        }
        Ok(store)
    }

    /// The connection pool, for anything this type does not wrap (it carries the store's
    /// statement timeout and search settings).
    #[must_use]
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The collection's name (also its table's).
    #[must_use]
    pub fn collection(&self) -> &str {
        &self.collection
    }

    fn err<'a>(&'a self, context: &'a str) -> impl Fn(sqlx::Error) -> Error + 'a {
        pg_error(context, self.options.statement_timeout)
    }

    /// Reads the collection's record and brings its schema to [`SCHEMA_VERSION`]; with
    /// `create_dimensions`, creates a missing collection with vectors of that size. All under
    /// one advisory lock, in one transaction: concurrent processes see the collection either
    /// absent or complete.
    async fn migrate(&self, create_dimensions: Option<usize>) -> Result<Option<Collection>> {
        let e = |c| self.err(c);
        let mut tx = self.pool.begin().await.map_err(e("cannot start a transaction"))?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(SCHEMA_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(e("cannot lock the schema"))?;
        sqlx::query("CREATE EXTENSION IF NOT EXISTS vector").execute(&mut *tx).await.map_err(|err| {
            Error::store(format!(
                "the pgvector extension is not available in this database ({err}): install pgvector on \
                 the server, then run `CREATE EXTENSION vector` as a superuser"
            ))
        })?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS catena_collections (name text PRIMARY KEY, \
             schema_version integer NOT NULL, dimensions integer NOT NULL, text_search regconfig NOT NULL)",
        )
        .execute(&mut *tx)
        .await
        .map_err(e("cannot create the collection registry"))?;
        let record: Option<(i32, i32, String)> = sqlx::query_as(
            "SELECT schema_version, dimensions, text_search::text FROM catena_collections WHERE name = $1",
        )
        .bind(&self.collection)
        .fetch_optional(&mut *tx)
        .await
        .map_err(e("cannot read the collection registry"))?;
        let table = &self.table;
        let collection = match (record, create_dimensions) {
            (None, None) => {
                let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
                    .bind(table)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(e("cannot look the table up"))?;
                if exists {
                    return Err(Error::store(format!(
                        "table {table} exists but is not a catena collection; use another collection name"
                    )));
                }
                None
            }
            (None, Some(dimensions)) => {
                let config = self.text_search_config(&mut tx).await?;
                let dims = i32::try_from(dimensions)
                    .ok()
                    .filter(|d| (1..=16_000).contains(d))
                    .ok_or_else(|| Error::invalid_input("pgvector holds 1 to 16,000 dimensions"))?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "CREATE TABLE {table} (id text PRIMARY KEY, content text NOT NULL, \
                     metadata jsonb NOT NULL DEFAULT '{{}}', embedding vector({dims}) NOT NULL)"
                )))
                .execute(&mut *tx)
                .await
                .map_err(e("cannot create the collection's table"))?;
                sqlx::query("INSERT INTO catena_collections VALUES ($1, 1, $2, $3::regconfig)")
                    .bind(&self.collection)
                    .bind(dims)
                    .bind(&config)
                    .execute(&mut *tx)
                    .await
                    .map_err(e("cannot record the collection"))?;
                self.upgrade(&mut tx, 1, &config).await?;
                Some(Collection { dimensions, text_search: config })
            }
            (Some((version, dims, config)), _) => {
                if version > SCHEMA_VERSION {
                    return Err(Error::store(format!(
                        "collection {:?} has schema version {version}, newer than this catena \
                         understands ({SCHEMA_VERSION}): upgrade catena",
                        self.collection
                    )));
                }
                self.upgrade(&mut tx, version, &config).await?;
                Some(Collection { dimensions: usize::try_from(dims).unwrap_or(0), text_search: config })
            }
        };
        tx.commit().await.map_err(e("cannot commit the schema"))?;
        Ok(collection)
    }

    /// The configured text search configuration, checked to exist (it goes into DDL, where
    /// parameters cannot).
    async fn text_search_config(&self, tx: &mut sqlx::PgConnection) -> Result<String> {
        let name = &self.options.text_search;
        let known: Option<String> =
            sqlx::query_scalar("SELECT cfgname::text FROM pg_ts_config WHERE cfgname = $1")
                .bind(name)
                .fetch_optional(&mut *tx)
                .await
                .map_err(self.err("cannot look up the text search configuration"))?;
        known.ok_or_else(|| {
            Error::invalid_input(format!(
                "PostgreSQL has no text search configuration {name:?} (see `\\dF` in psql; 'english' and 'simple' always exist)"
            ))
        })
    }

    /// Applies the schema steps after `from` up to [`SCHEMA_VERSION`].
    async fn upgrade(&self, tx: &mut sqlx::PgConnection, from: i32, config: &str) -> Result<()> {
        let table = &self.table;
        let name = |suffix: &str| format!("\"{}_{suffix}\"", self.collection);
        if from < 2 {
            // `config` came from pg_ts_config or from the registry's regconfig column: a real
            // configuration name, quoted as a literal for the DDL.
            let literal = config.replace('\'', "''");
            for statement in [
                format!(
                    "ALTER TABLE {table} ADD COLUMN IF NOT EXISTS fts tsvector GENERATED ALWAYS AS \
                     (to_tsvector('{literal}'::regconfig, content)) STORED"
                ),
                format!("CREATE INDEX IF NOT EXISTS {} ON {table} USING gin (fts)", name("fts")),
                format!("CREATE INDEX IF NOT EXISTS {} ON {table} ((metadata -> 'source'))", name("source")),
            ] {
                sqlx::query(sqlx::AssertSqlSafe(statement))
                    .execute(&mut *tx)
                    .await
                    .map_err(self.err("cannot migrate the collection"))?;
            }
        }
        if from < SCHEMA_VERSION {
            sqlx::query("UPDATE catena_collections SET schema_version = $2 WHERE name = $1")
                .bind(&self.collection)
                .bind(SCHEMA_VERSION)
                .execute(&mut *tx)
                .await
                .map_err(self.err("cannot record the migration"))?;
            tracing::info!(collection = %self.collection, from, to = SCHEMA_VERSION, "migrated a pgvector collection");
        }
        Ok(())
    }

    /// The collection, looked up again while it is absent: another handle (another process:
    /// a sharded ingestion's workers) may have created it since this one connected.
    async fn collection_state(&self) -> Result<Option<Collection>> {
        if let Some(known) = self.state.read().await.clone() {
            return Ok(Some(known));
        }
        let mut guard = self.state.write().await;
        if guard.is_none() {
            *guard = self.migrate(None).await?;
        }
        Ok(guard.clone())
    }

    /// Builds an approximate-nearest-neighbour index for the store's distance (replacing one
    /// built before). Until then searches are exact scans.
    ///
    /// # Errors
    /// [`Error::Store`] when the collection does not exist or PostgreSQL fails (an index build
    /// on a large table takes minutes: it runs without the statement timeout).
    pub async fn create_index(&self, index: PgIndex) -> Result<()> {
        if self.collection_state().await?.is_none() {
            return Err(Error::store("cannot index an empty collection"));
        }
        let ops = match self.options.distance {
            Distance::Cosine => "vector_cosine_ops",
            Distance::Dot => "vector_ip_ops",
            Distance::L2 => "vector_l2_ops",
        };
        let name = format!("\"{}_embedding\"", self.collection);
        let create = match index {
            PgIndex::Hnsw { m, ef_construction } => format!(
                "CREATE INDEX {name} ON {} USING hnsw (embedding {ops}) WITH (m = {m}, ef_construction = {ef_construction})",
                self.table
            ),
            PgIndex::IvfFlat { lists } => format!(
                "CREATE INDEX {name} ON {} USING ivfflat (embedding {ops}) WITH (lists = {})",
                self.table,
                lists.max(1)
            ),
        };
        let mut tx = self.pool.begin().await.map_err(self.err("cannot start a transaction"))?;
        // Builds go much faster when the graph fits in memory (pgvector warns when it stops
        // fitting), and an index build may take longer than any query should.
        sqlx::query(
            "SELECT set_config('maintenance_work_mem', $1, true), set_config('statement_timeout', '0', true)",
        )
        .bind(format!("{}MB", self.options.index_build_memory_mb.max(64)))
        .execute(&mut *tx)
        .await
        .map_err(self.err("cannot configure the index build"))?;
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP INDEX IF EXISTS {name}")))
            .execute(&mut *tx)
            .await
            .map_err(self.err("cannot drop the old index"))?;
        sqlx::query(sqlx::AssertSqlSafe(create))
            .execute(&mut *tx)
            .await
            .map_err(self.err("cannot build the vector index"))?;
        tx.commit().await.map_err(self.err("cannot commit the index"))?;
        // Fresh statistics, or the planner may still cost the index out after a bulk load.
        sqlx::query(sqlx::AssertSqlSafe(format!("ANALYZE {}", self.table)))
            .execute(&self.pool)
            .await
            .map_err(self.err("cannot analyze the table"))?;
        Ok(())
    }

    /// Whether the collection has the vector index [`create_index`](Self::create_index) builds.
    ///
    /// # Errors
    /// [`Error::Store`] when PostgreSQL fails.
    pub async fn has_index(&self) -> Result<bool> {
        sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(format!("\"{}_embedding\"", self.collection))
            .fetch_one(&self.pool)
            .await
            .map_err(self.err("cannot look the index up"))
    }

    /// Drops the collection's table and record (nothing happens when it does not exist).
    ///
    /// # Errors
    /// [`Error::Store`] when PostgreSQL fails.
    pub async fn drop_collection(&self) -> Result<()> {
        let mut guard = self.state.write().await;
        let mut tx = self.pool.begin().await.map_err(self.err("cannot start a transaction"))?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(SCHEMA_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(self.err("cannot lock the schema"))?;
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE IF EXISTS {}", self.table)))
            .execute(&mut *tx)
            .await
            .map_err(self.err("cannot drop the table"))?;
        sqlx::query("DELETE FROM catena_collections WHERE name = $1")
            .bind(&self.collection)
            .execute(&mut *tx)
            .await
            .map_err(self.err("cannot remove the collection's record"))?;
        tx.commit().await.map_err(self.err("cannot commit"))?;
        *guard = None;
        Ok(())
    }

    /// PostgreSQL full-text search over the collection, ranked by `ts_rank_cd`: any of the
    /// query's words may match (the more, and the closer together, the higher), as keyword
    /// retrieval for natural-language questions wants.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an empty query or k = 0; [`Error::Store`] when PostgreSQL fails.
    pub async fn keyword_search(
        &self,
        query: &str,
        k: usize,
        filter: Option<&Filter>,
    ) -> Result<Vec<ScoredDocument>> {
        crate::check_query(query, k)?;
        let Some(state) = self.collection_state().await? else { return Ok(Vec::new()) };
        // The query's lexemes (stemmed by the collection's configuration) OR-ed together; each
        // lexeme is quoted as a tsquery literal, so the query text is never parsed as operators.
        let mut sql = QueryBuilder::<Postgres>::new(
            "WITH q AS (SELECT to_tsquery('simple', string_agg(quote_literal(lexeme), ' | ')) AS query \
             FROM unnest(tsvector_to_array(to_tsvector(",
        );
        sql.push_bind(state.text_search.clone())
            .push("::regconfig, ")
            .push_bind(query.to_owned())
            .push(")::tsvector)) AS lexeme) SELECT id, content, metadata, ts_rank_cd(fts, q.query)::float8 AS score FROM ")
            .push(&self.table)
            .push(", q WHERE q.query IS NOT NULL AND fts @@ q.query");
        if let Some(f) = filter {
            sql.push(" AND ");
            push_filter(&mut sql, f);
        }
        sql.push(" ORDER BY score DESC, id LIMIT ").push_bind(limit(k));
        let rows = sql.build().fetch_all(&self.pool).await.map_err(self.err("keyword search failed"))?;
        rows.iter()
            .map(|row| Ok(ScoredDocument::new(document_of(row)?, column::<f64>(row, "score")? as f32)))
            .collect()
    }

    async fn vector_search(
        &self,
        query: &[f32],
        k: usize,
        filter: Option<&Filter>,
        with_vectors: bool,
    ) -> Result<Vec<(ScoredDocument, Vec<f32>)>> {
        crate::check_vector_query(query, k)?;
        let Some(state) = self.collection_state().await? else { return Ok(Vec::new()) };
        crate::check_dimensions("the query vector", query.len(), state.dimensions, &self.collection)?;
        let op = match self.options.distance {
            Distance::Cosine => "<=>",
            Distance::Dot => "<#>",
            Distance::L2 => "<->",
        };
        let vector = Vector::from(query.to_vec());
        let mut sql = QueryBuilder::<Postgres>::new("SELECT id, content, metadata, embedding ");
        sql.push(op).push(" ").push_bind(vector.clone()).push(" AS distance");
        if with_vectors {
            sql.push(", embedding");
        }
        sql.push(" FROM ").push(&self.table);
        if let Some(f) = filter {
            sql.push(" WHERE ");
            push_filter(&mut sql, f);
        }
        // Ordering by the operator expression itself is what lets PostgreSQL use the index.
        sql.push(" ORDER BY embedding ")
            .push(op)
            .push(" ")
            .push_bind(vector)
            .push(" LIMIT ")
            .push_bind(limit(k));
        let rows = sql.build().fetch_all(&self.pool).await.map_err(self.err("vector search failed"))?;
        let mut hits = Vec::with_capacity(rows.len());
        for row in &rows {
            let d = column::<f64>(row, "distance")?;
            let score = match self.options.distance {
                Distance::Cosine => 1.0 - d,
                // `<#>` is the negative inner product.
                Distance::Dot => -d,
                Distance::L2 => 1.0 - d / std::f64::consts::SQRT_2,
            };
            let vector = if with_vectors { column::<Vector>(row, "embedding")?.to_vec() } else { Vec::new() };
            hits.push((ScoredDocument::new(document_of(row)?, score as f32), vector));
        }
        // Ties in a deterministic order, as the other stores give them.
        hits.sort_by(|a, b| {
            b.0.score.total_cmp(&a.0.score).then_with(|| a.0.document.id.cmp(&b.0.document.id))
        });
        Ok(hits)
    }
}

fn limit(k: usize) -> i64 {
    i64::try_from(k).unwrap_or(i64::MAX)
}

fn column<'r, T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>>(row: &'r PgRow, name: &str) -> Result<T> {
    row.try_get(name)
        .map_err(|e| Error::store(format!("unexpected column `{name}` in a result: {e}")).with_source(e))
}

fn document_of(row: &PgRow) -> Result<Document> {
    let metadata: Metadata = match column::<Value>(row, "metadata")? {
        Value::Object(map) => map,
        _ => Metadata::new(),
    };
    Ok(Document { id: Some(column(row, "id")?), content: column(row, "content")?, metadata })
}

#[async_trait]
impl VectorStore for PgVectorStore {
    async fn upsert(&self, records: Vec<Embedded>) -> Result<Vec<String>> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = records
            .iter()
            .map(|r| r.document.id.clone().unwrap_or_else(|| document_id(&r.document)))
            .collect();
        let dims = match self.collection_state().await? {
            Some(state) => state.dimensions,
            None => {
                // Create the collection (or find the one another process just created) with
                // the first vector's size, then check every vector against what it holds.
                let first = records.first().map_or(0, |r| r.vector.len());
                let mut guard = self.state.write().await;
                if guard.is_none() && first > 0 {
                    *guard = self.migrate(Some(first)).await?;
                }
                guard.as_ref().map_or(first, |s| s.dimensions)
            }
        };
        for (r, id) in records.iter().zip(&ids) {
            crate::check_stored_vector(&r.vector, dims, &self.collection)?;
            check_no_nul(id, &r.document)?;
        }
        // Later duplicates of an id win, as sequential upserts would (one INSERT ... ON CONFLICT
        // cannot touch a row twice).
        let mut last: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for (i, id) in ids.iter().enumerate() {
            last.insert(id, i);
        }
        let mut kept_ids = Vec::with_capacity(last.len());
        let mut contents = Vec::with_capacity(last.len());
        let mut metadata = Vec::with_capacity(last.len());
        let mut vectors = Vec::with_capacity(last.len());
        for (i, (r, id)) in records.iter().zip(&ids).enumerate() {
            if last.get(id.as_str()) == Some(&i) {
                kept_ids.push(id.clone());
                contents.push(r.document.content.clone());
                metadata.push(Value::Object(r.document.metadata.clone()));
                vectors.push(Vector::from(r.vector.clone()));
            }
        }
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {} (id, content, metadata, embedding) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::vector[]) \
             ON CONFLICT (id) DO UPDATE SET content = EXCLUDED.content, metadata = EXCLUDED.metadata, \
             embedding = EXCLUDED.embedding",
            self.table
        )))
        .bind(kept_ids)
        .bind(contents)
        .bind(metadata)
        .bind(vectors)
        .execute(&self.pool)
        .await
        .map_err(self.err("cannot write the batch"))?;
        Ok(ids)
    }

    async fn search(&self, query: &[f32], k: usize, filter: Option<&Filter>) -> Result<Vec<ScoredDocument>> {
        Ok(self.vector_search(query, k, filter, false).await?.into_iter().map(|(d, _)| d).collect())
    }

    async fn search_with_vectors(
        &self,
        query: &[f32],
        k: usize,
        filter: Option<&Filter>,
    ) -> Result<Vec<(ScoredDocument, Vec<f32>)>> {
        self.vector_search(query, k, filter, true).await
    }

    async fn delete(&self, ids: &[String]) -> Result<usize> {
        if ids.is_empty() || self.collection_state().await?.is_none() {
            return Ok(0);
        }
        let done = sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {} WHERE id = ANY($1)", self.table)))
            .bind(ids)
            .execute(&self.pool)
            .await
            .map_err(self.err("cannot delete rows"))?;
        Ok(usize::try_from(done.rows_affected()).unwrap_or(usize::MAX))
    }

    async fn count(&self) -> Result<usize> {
        if self.collection_state().await?.is_none() {
            return Ok(0);
        }
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {}", self.table)))
            .fetch_one(&self.pool)
            .await
            .map_err(self.err("cannot count rows"))?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    async fn get(&self, ids: &[String]) -> Result<Vec<Document>> {
        if ids.is_empty() || self.collection_state().await?.is_none() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT id, content, metadata FROM {} WHERE id = ANY($1)",
            self.table
        )))
        .bind(ids)
        .fetch_all(&self.pool)
        .await
        .map_err(self.err("lookup failed"))?;
        let mut found: std::collections::HashMap<String, Document> = std::collections::HashMap::new();
        for row in &rows {
            let doc = document_of(row)?;
            if let Some(id) = doc.id.clone() {
                found.insert(id, doc);
            }
        }
        Ok(ids.iter().filter_map(|id| found.remove(id)).collect())
    }

    async fn documents(&self, filter: Option<&Filter>) -> Result<Vec<Document>> {
        if self.collection_state().await?.is_none() {
            return Ok(Vec::new());
        }
        let mut sql = QueryBuilder::<Postgres>::new("SELECT id, content, metadata FROM ");
        sql.push(&self.table);
        if let Some(f) = filter {
            sql.push(" WHERE ");
            push_filter(&mut sql, f);
        }
        sql.push(" ORDER BY id");
        let rows = sql.build().fetch_all(&self.pool).await.map_err(self.err("scan failed"))?;
        rows.iter().map(document_of).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_nul_are_checked() {
        assert!(valid_collection("docs-v1.2_x").is_ok());
        for bad in ["", "a\"b", "a b", "x;DROP", &"a".repeat(41)] {
            assert!(valid_collection(bad).is_err(), "{bad:?}");
        }
        let doc = Document::new("ok").with_metadata("k", serde_json::json!(["a", "b\0"]));
        assert!(check_no_nul("id", &doc).is_err());
        assert!(check_no_nul("id", &Document::new("fine")).is_ok());
    }
}
