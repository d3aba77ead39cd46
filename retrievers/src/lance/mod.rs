//! The LanceDB vector store: the table, its indexes and searches (codec, filters and keyword search in submodules).

use std::collections::HashMap;
use std::path::Path;

use arrow_array::{RecordBatch, RecordBatchIterator};
use arrow_schema::{DataType, Field};
use async_trait::async_trait;
use catena_core::{Document, Embedded, Error, Filter, Result, ScoredDocument, VectorStore};
use futures::TryStreamExt;
use lancedb::query::{ExecutableQuery, QueryBase};
use serde_json::Value;
use tokio::sync::RwLock;

use crate::Distance;
use crate::index::document_id;

mod codec;
mod filter;
mod keyword;

use codec::{batch_for, documents_of, float_column, vectors_of};
use filter::{filter_sql, id_list};
pub use keyword::LanceKeywordRetriever;

/// The type of a filterable metadata column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldKind {
    /// UTF-8 text.
    String,
    /// 64-bit integer.
    Integer,
    /// 64-bit float (integers are accepted and widened).
    Float,
    /// true / false.
    Bool,
}

impl FieldKind {
    fn data_type(self) -> DataType {
        match self {
            Self::String => DataType::Utf8,
            Self::Integer => DataType::Int64,
            Self::Float => DataType::Float64,
            Self::Bool => DataType::Boolean,
        }
    }

    fn of(value: &Value) -> Option<Self> {
        match value {
            Value::String(_) => Some(Self::String),
            Value::Bool(_) => Some(Self::Bool),
            Value::Number(n) if n.is_i64() => Some(Self::Integer),
            Value::Number(_) => Some(Self::Float),
            _ => None,
        }
    }

    fn from_data_type(t: &DataType) -> Option<Self> {
        match t {
            DataType::Utf8 | DataType::LargeUtf8 => Some(Self::String),
            DataType::Int64 | DataType::Int32 => Some(Self::Integer),
            DataType::Float64 | DataType::Float32 => Some(Self::Float),
            DataType::Boolean => Some(Self::Bool),
            _ => None,
        }
    }
}

/// Which approximate-nearest-neighbour index to build.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum VectorIndex {
    /// Below 5M rows, IVF-HNSW-SQ with about sqrt(rows) partitions (HNSW graphs over
    /// scalar-quantised vectors: recall near 1 at a few ms); from 5M rows, IVF-PQ with about
    /// sqrt(rows) partitions and 8 dimensions per sub-vector (compact). Tune recall with
    /// [`LanceDbStore::with_nprobes`], [`LanceDbStore::with_refine_factor`], [`LanceDbStore::with_ef`].
    Auto,
    /// Inverted file with product quantisation: compact, needs `refine_factor` for high recall.
    IvfPq {
        /// Number of IVF partitions (about sqrt(rows) is usual).
        partitions: u32,
        /// Number of PQ sub-vectors (dimension / 16 or / 8 usual); must divide the dimension.
        sub_vectors: u32,
    },
    /// IVF partitions, each an HNSW graph over scalar-quantised vectors.
    IvfHnswSq {
        /// Number of IVF partitions.
        partitions: u32,
        /// HNSW neighbours per node (default 20).
        m: u32,
        /// HNSW build-time candidate list (default 300).
        ef_construction: u32,
    },
}

/// Rows below which searches stay exact and [`LanceDbStore::create_index`] with
/// [`VectorIndex::Auto`] does nothing: a flat scan of this many rows is fast and exact.
pub const EXACT_SEARCH_ROWS: usize = 10_000;

const RESERVED: [&str; 4] = ["id", "content", "metadata", "vector"];

/// Documents and their vectors in a LanceDB table. Scores follow [`Distance`]: cosine similarity
/// (`1 - cosine distance`), `1 - d / sqrt(2)` for L2, the inner product for dot.
///
/// ```no_run
/// use catena_retrievers::{FieldKind, LanceDbStore};
///
/// # async fn demo() -> catena_core::Result<()> {
/// let store = LanceDbStore::connect("./catena-data", "docs").await?.with_field("year", FieldKind::Integer);
/// # Ok(()) }
/// ```
///
/// The table lives in a local directory, or at any object store URI LanceDB's own features
/// support. One table per collection, with the columns `id` (primary key for upserts), `content`,
/// `metadata` (the whole metadata object as JSON), `vector` (fixed-size float32 list), and one
/// typed column per filterable metadata field. Filterable fields are declared with
/// [`LanceDbStore::with_field`] or, when none are declared, inferred from the first batch written:
/// every metadata key whose values there are all strings, all integers, all numbers or all
/// booleans (and whose name is a plain identifier) becomes a column. [`Filter`]s are translated to
/// LanceDB filter expressions over those columns with every value written as a quoted literal,
/// so metadata can never inject filter syntax; a filter on any other field is an
/// [`Error::InvalidInput`] that names the filterable ones.
pub struct LanceDbStore {
    uri: String,
    collection: String,
    /// The storage options the connection was made with; the creation lock uses them too.
    storage_options: HashMap<String, String>,
    connection: lancedb::Connection,
    distance: Distance,
    declared: Vec<(String, FieldKind)>,
    table: RwLock<Option<TableState>>,
    nprobes: Option<usize>,
    refine_factor: Option<u32>,
    ef: usize,
}

/// How long a table folder without a committed version must sit unchanged to count as the
/// remains of a killed creation: a live creation commits an empty table within milliseconds.
const ABANDONED_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

/// How stale a read may be: a handle checks for versions other processes committed (another
/// `catena ingest`, a sharded ingestion's workers) when this long has passed since its last
/// check. LanceDB's default is never, which left a long-lived reader on the version it opened.
/// Writes are always made against the latest version.
pub const READ_CONSISTENCY: std::time::Duration = std::time::Duration::from_secs(1);

/// HNSW candidate-list size at query time: LanceDB's default (1.5 k) loses recall on real data.
const DEFAULT_EF: usize = 64;

#[derive(Clone)]
struct TableState {
    table: lancedb::Table,
    dimensions: usize,
    fields: Vec<(String, FieldKind)>,
}

impl std::fmt::Debug for LanceDbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LanceDbStore")
            .field("uri", &self.uri)
            .field("collection", &self.collection)
            .field("distance", &self.distance)
            .finish_non_exhaustive()
    }
}

fn lance_error(context: &str) -> impl Fn(lancedb::Error) -> Error + '_ {
    move |e| match &e {
        lancedb::Error::InvalidInput { message } => {
            Error::invalid_input(format!("{context}: {message}")).with_source(e)
        }
        other => Error::store(format!("{context}: {other}")).with_source(e),
    }
}

/// A database that cannot be opened or listed: always a [`Error::Store`] (LanceDB reports a
/// missing bucket as invalid input, but the caller's arguments are fine; the location is not),
/// with what to check for the usual object-store causes. The full error is the source.
fn unreachable_location(uri: &str, e: lancedb::Error) -> Error {
    let detail = e.to_string();
    let hint = if detail.contains("NoSuchBucket") {
        "the bucket does not exist: create it first".to_owned()
    } else if ["AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403 Forbidden"]
        .iter()
        .any(|m| detail.contains(m))
    {
        "access denied: check the credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY or the \
         AWS profile) and the bucket's policy"
            .to_owned()
    } else if ["error sending request", "Connection refused", "dns error", "timed out"]
        .iter()
        .any(|m| detail.contains(m))
    {
        "the object store did not answer: check the endpoint (AWS_ENDPOINT_URL or the \
         `aws_endpoint` option) and the network"
            .to_owned()
    } else {
        detail
    };
    Error::store(format!("cannot open the LanceDB database at {uri}: {hint}")).with_source(e)
}

fn plain_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !RESERVED.contains(&name)
        && !name.starts_with('_')
}

impl LanceDbStore {
    /// Connects to the database at `uri` (a directory, created if missing) and uses the table
    /// `collection`, created on the first upsert if it does not exist yet.
    ///
    /// # Errors
    /// [`Error::Store`] when the database cannot be opened or the table exists but is not a
    /// catena table (missing columns) or is corrupt.
    pub async fn connect(uri: impl Into<String>, collection: impl Into<String>) -> Result<Self> {
        Self::connect_with(uri, collection, std::iter::empty::<(String, String)>()).await
    }

    /// [`connect`](Self::connect) with LanceDB storage options: for an object store, its
    /// endpoint, credentials and region (`aws_endpoint`, `aws_access_key_id`,
    /// `aws_secret_access_key`, `aws_region`, `allow_http`, ...). Options not given are read
    /// from the standard environment variables (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`,
    /// `AWS_REGION`, `AWS_ALLOW_HTTP`, ...), then the AWS credential chain.
    ///
    /// ```no_run
    /// use catena_retrievers::LanceDbStore;
    ///
    /// # async fn demo() -> catena_core::Result<()> {
    /// // MinIO, or any S3-compatible server (needs the `s3` feature).
    /// let store = LanceDbStore::connect_with(
    ///     "s3://rag/catena",
    ///     "docs",
    ///     [("aws_endpoint", "http://127.0.0.1:9000"), ("allow_http", "true")],
    /// )
    /// .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`connect`](Self::connect); an `s3://` URI in a build without the `s3` feature is an
    /// [`Error::InvalidInput`] that says so.
    pub async fn connect_with(
        uri: impl Into<String>,
        collection: impl Into<String>,
        storage_options: impl IntoIterator<Item = (impl Into<String>, impl Into<String>)>,
    ) -> Result<Self> {
        let uri = uri.into();
        let collection = collection.into();
        if collection.is_empty()
            || !collection.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        {
            return Err(Error::invalid_input(format!(
                "collection name {collection:?} must be non-empty and use only letters, digits, '_', '-' and '.'"
            )));
        }
        if (uri.starts_with("s3://") || uri.starts_with("s3+ddb://")) && !cfg!(feature = "s3") {
            return Err(Error::invalid_input(format!(
                "{uri} is on S3, and this build has no S3 support: enable catena's `s3` feature"
            )));
        }
        let storage_options: HashMap<String, String> =
            storage_options.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        let connection = lancedb::connect(&uri)
            .storage_options(storage_options.clone())
            .read_consistency_interval(READ_CONSISTENCY)
            .execute()
            .await
            .map_err(|e| unreachable_location(&uri, e))?;
        let store = Self {
            uri,
            collection,
            storage_options,
            connection,
            distance: Distance::Cosine,
            declared: Vec::new(),
            table: RwLock::new(None),
            nprobes: None,
            refine_factor: None,
            ef: DEFAULT_EF,
        };
        let names = store
            .connection
            .table_names()
            .execute()
            .await
            .map_err(|e| unreachable_location(&store.uri, e))?;
        if names.contains(&store.collection) {
            match store.connection.open_table(&store.collection).execute().await {
                Ok(table) => {
                    let state = inspect(table, &store.collection).await?;
                    *store.table.write().await = Some(state);
                }
                Err(lancedb::Error::TableNotFound { .. }) if store.never_committed() => {
                    // A folder with data files but no version is a creation in progress (another
                    // handle's first write: leave it alone, the table is absent for now) or one
                    // a killed process left behind, which makes every later create fail: remove
                    // that kind once nothing in it has changed for a while.
                    if store.untouched_for(ABANDONED_AFTER) {
                        tracing::warn!(
                            uri = %store.uri, collection = %store.collection,
                            "removing a table whose creation was interrupted before its first commit"
                        );
                        store
                            .connection
                            .drop_table(&store.collection, &[])
                            .await
                            .map_err(lance_error("cannot remove the unfinished table"))?;
                    }
                }
                Err(e) => return Err(lance_error("cannot open the table")(e)),
            }
        }
        Ok(store)
    }

    /// Whether nothing in the collection's folder (local databases only) changed for `age`.
    fn untouched_for(&self, age: std::time::Duration) -> bool {
        fn newest(dir: &Path, depth: usize) -> Option<std::time::SystemTime> {
            let mut latest = std::fs::metadata(dir).and_then(|m| m.modified()).ok();
            for entry in std::fs::read_dir(dir).ok()?.flatten() {
                let path = entry.path();
                let modified = if depth > 0 && path.is_dir() {
                    newest(&path, depth - 1)
                } else {
                    entry.metadata().and_then(|m| m.modified()).ok()
                };
                latest = latest.max(modified);
            }
            latest
        }
        let folder = Path::new(&self.uri).join(format!("{}.lance", self.collection));
        newest(&folder, 2).and_then(|t| t.elapsed().ok()).is_some_and(|elapsed| elapsed >= age)
    }

    /// Whether the collection's folder (local databases only) holds no committed version: a
    /// table whose creation is in progress or was interrupted.
    fn never_committed(&self) -> bool {
        if self.uri.contains("://") {
            return false;
        }
        let versions = Path::new(&self.uri).join(format!("{}.lance", self.collection)).join("_versions");
        match std::fs::read_dir(&versions) {
            Ok(mut entries) => entries.next().is_none(),
            Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        }
    }

    /// Opens an existing collection; unlike [`connect`](Self::connect), a missing one is an error
    /// (what a query wants: searching a table that was never written is a mistake).
    ///
    /// # Errors
    /// [`Error::Store`] when the table does not exist, plus those of `connect`.
    pub async fn open(uri: impl Into<String>, collection: impl Into<String>) -> Result<Self> {
        let store = Self::connect(uri, collection).await?;
        if store.table.read().await.is_none() {
            return Err(Error::store(format!(
                "there is no collection {:?} in {}: ingest documents first (catena ingest --store {})",
                store.collection, store.uri, store.uri
            )));
        }
        Ok(store)
    }

    /// How vectors are compared (default cosine). Takes effect for a new table; an existing table
    /// keeps working with whatever distance is asked at query time.
    #[must_use]
    pub fn with_distance(mut self, distance: Distance) -> Self {
        self.distance = distance;
        self
    }

    /// Declares a filterable metadata field (for a table not created yet; an existing table's
    /// columns come from its schema). Declaring any field turns off inference.
    #[must_use]
    pub fn with_field(mut self, name: impl Into<String>, kind: FieldKind) -> Self {
        self.declared.push((name.into(), kind));
        self
    }

    /// IVF partitions probed per query once an index exists (LanceDB's default otherwise).
    #[must_use]
    pub fn with_nprobes(mut self, nprobes: usize) -> Self {
        self.nprobes = Some(nprobes);
        self
    }

    /// HNSW candidates examined per query when an HNSW index exists (default 64; higher is
    /// slower and closer to exact).
    #[must_use]
    pub fn with_ef(mut self, ef: usize) -> Self {
        self.ef = ef;
        self
    }

    /// Re-ranks `refine_factor * k` index candidates with exact distances (raises PQ recall).
    #[must_use]
    pub fn with_refine_factor(mut self, refine_factor: u32) -> Self {
        self.refine_factor = Some(refine_factor);
        self
    }

    /// The filterable metadata fields and their types (empty until the table exists).
    pub async fn fields(&self) -> Vec<(String, FieldKind)> {
        self.table.read().await.as_ref().map(|s| s.fields.clone()).unwrap_or_default()
    }

    /// The underlying LanceDB table, for anything this type does not wrap.
    pub async fn table(&self) -> Option<lancedb::Table> {
        self.table.read().await.as_ref().map(|s| s.table.clone())
    }

    /// The table, looked for again while it is absent: another handle (another process: a
    /// sharded ingestion's workers) may have created it since this one connected.
    async fn state(&self) -> Result<Option<TableState>> {
        if let Some(known) = self.table.read().await.clone() {
            return Ok(Some(known));
        }
        let mut guard = self.table.write().await;
        if guard.is_none() {
            match self.connection.open_table(&self.collection).execute().await {
                Ok(table) => *guard = Some(inspect(table, &self.collection).await?),
                Err(lancedb::Error::TableNotFound { .. }) => {}
                Err(e) => return Err(lance_error("cannot open the table")(e)),
            }
        }
        Ok(guard.clone())
    }

    /// Builds an approximate-nearest-neighbour index on the vectors. With [`VectorIndex::Auto`]
    /// and fewer than [`EXACT_SEARCH_ROWS`] rows it does nothing and returns `false` (searches
    /// stay exact); otherwise it builds the index and returns `true`.
    ///
    /// # Errors
    /// [`Error::Store`] when the table does not exist or LanceDB fails; [`Error::InvalidInput`]
    /// for parameters LanceDB rejects (say, sub-vectors that do not divide the dimension).
    pub async fn create_index(&self, index: VectorIndex) -> Result<bool> {
        use lancedb::index::Index;
        use lancedb::index::vector::{IvfHnswSqIndexBuilder, IvfPqIndexBuilder};
        let state = self.state().await?.ok_or_else(|| Error::store("cannot index an empty collection"))?;
        let rows = state.table.count_rows(None).await.map_err(lance_error("cannot count rows"))?;
        let distance = lance_distance(self.distance);
        let partitions = || ((rows as f64).sqrt() as u32).clamp(1, 4096);
        let built = match index {
            VectorIndex::Auto if rows < EXACT_SEARCH_ROWS => return Ok(false),
            VectorIndex::Auto if rows < 5_000_000 => Index::IvfHnswSq(
                IvfHnswSqIndexBuilder::default().distance_type(distance).num_partitions(partitions()),
            ),
            VectorIndex::Auto => Index::IvfPq(
                IvfPqIndexBuilder::default()
                    .distance_type(distance)
                    .num_partitions(partitions())
                    .num_sub_vectors(pq_sub_vectors(state.dimensions)),
            ),
            VectorIndex::IvfPq { partitions, sub_vectors } => Index::IvfPq(
                IvfPqIndexBuilder::default()
                    .distance_type(distance)
                    .num_partitions(partitions)
                    .num_sub_vectors(sub_vectors),
            ),
            VectorIndex::IvfHnswSq { partitions, m, ef_construction } => Index::IvfHnswSq(
                IvfHnswSqIndexBuilder::default()
                    .distance_type(distance)
                    .num_partitions(partitions)
                    .num_edges(m)
                    .ef_construction(ef_construction),
            ),
        };
        state
            .table
            .create_index(&["vector"], built)
            .replace(true)
            .execute()
            .await
            .map_err(lance_error("cannot build the vector index"))?;
        Ok(true)
    }

    /// Builds (or rebuilds) LanceDB's full-text index on `content`, for [`keyword_search`](Self::keyword_search).
    ///
    /// # Errors
    /// [`Error::Store`] when the table does not exist or LanceDB fails.
    pub async fn create_fts_index(&self) -> Result<()> {
        use lancedb::index::{Index, scalar::FtsIndexBuilder};
        let state = self.state().await?.ok_or_else(|| Error::store("cannot index an empty collection"))?;
        state
            .table
            .create_index(&["content"], Index::FTS(FtsIndexBuilder::default()))
            .replace(true)
            .execute()
            .await
            .map_err(lance_error("cannot build the full-text index"))?;
        Ok(())
    }

    /// BM25 keyword search with LanceDB's full-text index (build it first with
    /// [`create_fts_index`](Self::create_fts_index)); scores are LanceDB's BM25 scores.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an empty query, k = 0 or a bad filter; [`Error::Store`] when
    /// there is no full-text index.
    pub async fn keyword_search(
        &self,
        query: &str,
        k: usize,
        filter: Option<&Filter>,
    ) -> Result<Vec<ScoredDocument>> {
        use lancedb::index::scalar::FullTextSearchQuery;
        crate::check_query(query, k)?;
        let Some(state) = self.state().await? else { return Ok(Vec::new()) };
        let mut q = state.table.query().full_text_search(FullTextSearchQuery::new(query.to_owned())).limit(k);
        if let Some(f) = filter {
            q = q.only_if(filter_sql(f, &state.fields)?);
        }
        let batches: Vec<RecordBatch> = q
            .execute()
            .await
            .map_err(lance_error("keyword search failed (was create_fts_index run?)"))?
            .try_collect()
            .await
            .map_err(lance_error("keyword search failed"))?;
        let mut hits = Vec::new();
        for batch in &batches {
            let scores = float_column(batch, "_score")?;
            for (row, doc) in documents_of(batch)?.into_iter().enumerate() {
                hits.push(ScoredDocument::new(doc, scores.get(row).copied().unwrap_or(0.0)));
            }
        }
        Ok(hits)
    }

    /// Compacts small files left by many writes and prunes old versions (LanceDB's optimize).
    ///
    /// # Errors
    /// [`Error::Store`] when LanceDB fails.
    pub async fn optimize(&self) -> Result<()> {
        if let Some(state) = self.state().await? {
            state
                .table
                .optimize(lancedb::table::OptimizeAction::All)
                .await
                .map_err(lance_error("cannot optimize the table"))?;
        }
        Ok(())
    }

    async fn vector_search(
        &self,
        query: &[f32],
        k: usize,
        filter: Option<&Filter>,
        with_vectors: bool,
    ) -> Result<Vec<(ScoredDocument, Vec<f32>)>> {
        crate::check_vector_query(query, k)?;
        let Some(state) = self.state().await? else { return Ok(Vec::new()) };
        crate::check_dimensions("the query vector", query.len(), state.dimensions, &self.collection)?;
        let mut q = state
            .table
            .query()
            .nearest_to(query)
            .map_err(lance_error("bad query vector"))?
            .distance_type(lance_distance(self.distance))
            // HNSW must return at least every candidate the refine step re-ranks.
            .ef(self.ef.max(k * self.refine_factor.map_or(1, |r| r as usize)))
            .limit(k);
        if let Some(n) = self.nprobes {
            q = q.nprobes(n).map_err(lance_error("bad nprobes"))?;
        }
        if let Some(r) = self.refine_factor {
            q = q.refine_factor(r);
        }
        if let Some(f) = filter {
            q = q.only_if(filter_sql(f, &state.fields)?);
        }
        let batches: Vec<RecordBatch> = q
            .execute()
            .await
            .map_err(lance_error("vector search failed"))?
            .try_collect()
            .await
            .map_err(lance_error("vector search failed"))?;
        let mut hits = Vec::new();
        for batch in &batches {
            let distances = float_column(batch, "_distance")?;
            let vectors = if with_vectors { vectors_of(batch)? } else { Vec::new() };
            for (row, doc) in documents_of(batch)?.into_iter().enumerate() {
                let d = distances.get(row).copied().unwrap_or(f32::INFINITY);
                let vector = vectors.get(row).cloned().unwrap_or_default();
                hits.push((ScoredDocument::new(doc, score(self.distance, d)), vector));
            }
        }
        // LanceDB returns nearest first; make ties deterministic by id.
        hits.sort_by(|a, b| {
            b.0.score.total_cmp(&a.0.score).then_with(|| a.0.document.id.cmp(&b.0.document.id))
        });
        Ok(hits)
    }

    /// Creates the table, empty: a commit of the schema alone, so the window in which the
    /// folder exists without a version (what a kill leaves behind, and what a concurrent writer
    /// sees) is milliseconds. When another handle, maybe in another process, creates it first
    /// (concurrent writers, sharded ingestion), its table is used; a folder without a version
    /// that stays unchanged is the remains of a killed creation, removed and created anew.
    async fn create_table(&self, dimensions: usize, fields: Vec<(String, FieldKind)>) -> Result<TableState> {
        // LanceDB commits a creation as an overwrite, and one whose check for an existing table
        // passed commits it on top of a table another creator made meanwhile (erasing rows
        // written since, or failing their writers with "incompatible with concurrent
        // Overwrite"; seen with four processes on S3). Creators take turns through a lock
        // object, and each looks for the table first, so only one ever creates it.
        let turn = self.creation_lock().await;
        let created = self.create_table_in_turn(dimensions, fields).await;
        if let Some(turn) = turn {
            turn.release().await;
        }
        created
    }

    async fn create_table_in_turn(
        &self,
        dimensions: usize,
        fields: Vec<(String, FieldKind)>,
    ) -> Result<TableState> {
        let schema = codec::schema_for(dimensions, &fields)?;
        let mut last_error = None;
        for _ in 0..100 {
            if let Ok(table) = self.connection.open_table(&self.collection).execute().await {
                tracing::debug!(collection = %self.collection, "the table was created concurrently; writing into it");
                let state = inspect(table, &self.collection).await?;
                crate::check_dimensions("a vector", dimensions, state.dimensions, &self.collection)?;
                return Ok(state);
            }
            match self.connection.create_empty_table(&self.collection, schema.clone()).execute().await {
                Ok(table) => return Ok(TableState { table, dimensions, fields }),
                Err(e) => last_error = Some(e),
            }
            if self.never_committed() && self.untouched_for(ABANDONED_AFTER) {
                tracing::warn!(
                    uri = %self.uri, collection = %self.collection,
                    "removing a table whose creation was interrupted before its first commit"
                );
                self.connection
                    .drop_table(&self.collection, &[])
                    .await
                    .map_err(lance_error("cannot remove the unfinished table"))?;
                continue;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Err(match last_error {
            Some(e) => lance_error("cannot create the table")(e),
            None => Error::store("cannot create the table"),
        })
    }

    /// Waits for this collection's creation lock: an object `.<collection>.creating` beside the
    /// table, written only if absent (a create-only write, which local folders and object
    /// stores with conditional writes honour) and deleted by [`CreationLock::release`]. A lock
    /// left by a killed process is taken over once it is [`STALE_LOCK`] old. `None` when the
    /// location cannot hold one or the wait runs out: the creation then goes ahead unserialised,
    /// as LanceDB alone would.
    async fn creation_lock(&self) -> Option<CreationLock> {
        use object_store::{ObjectStore as _, ObjectStoreExt as _, PutMode, PutPayload};

        let params = lance_io::object_store::ObjectStoreParams {
            storage_options_accessor: Some(std::sync::Arc::new(
                lance_io::object_store::StorageOptionsAccessor::with_static_options(
                    self.storage_options.clone(),
                ),
            )),
            ..Default::default()
        };
        let registry = std::sync::Arc::new(lance_io::object_store::ObjectStoreRegistry::default());
        let (store, base) = match lance_io::object_store::ObjectStore::from_uri_and_params(
            registry, &self.uri, &params,
        )
        .await
        {
            Ok(opened) => opened,
            Err(e) => {
                tracing::warn!(uri = %self.uri, error = %e, "no creation lock: the location cannot be opened");
                return None;
            }
        };
        let path = base.join(format!(".{}.creating", self.collection).as_str());
        let deadline = std::time::Instant::now() + STALE_LOCK * 3;
        while std::time::Instant::now() < deadline {
            let claim = PutPayload::from_static(b"catena: creating this table");
            match store.inner.put_opts(&path, claim, PutMode::Create.into()).await {
                Ok(_) => return Some(CreationLock { store, path }),
                Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {
                    let stale = store.inner.head(&path).await.ok().is_some_and(|meta| {
                        std::time::SystemTime::from(meta.last_modified)
                            .elapsed()
                            .is_ok_and(|age| age >= STALE_LOCK)
                    });
                    if stale {
                        tracing::warn!(uri = %self.uri, collection = %self.collection, "taking over a stale creation lock");
                        let _ = store.inner.delete(&path).await;
                    } else {
                        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
                    }
                }
                Err(e) => {
                    tracing::warn!(uri = %self.uri, error = %e, "no creation lock: the location refused it");
                    return None;
                }
            }
        }
        tracing::warn!(uri = %self.uri, collection = %self.collection, "creating the table without the lock: it stayed taken");
        None
    }

    fn fields_for(&self, records: &[Embedded]) -> Vec<(String, FieldKind)> {
        if !self.declared.is_empty() {
            return self.declared.clone();
        }
        let mut kinds: Vec<(String, FieldKind)> = Vec::new();
        let mut conflicted: std::collections::HashSet<String> = std::collections::HashSet::new();
        for r in records {
            for (key, value) in &r.document.metadata {
                if !plain_identifier(key) || conflicted.contains(key) {
                    continue;
                }
                let Some(kind) = FieldKind::of(value) else {
                    if !value.is_null() {
                        conflicted.insert(key.clone());
                        kinds.retain(|(k, _)| k != key);
                    }
                    continue;
                };
                match kinds.iter_mut().find(|(k, _)| k == key) {
                    None => kinds.push((key.clone(), kind)),
                    Some((_, existing)) if *existing == kind => {}
                    Some((_, existing))
                        if matches!(
                            (*existing, kind),
                            (FieldKind::Integer | FieldKind::Float, FieldKind::Integer | FieldKind::Float)
                        ) =>
                    {
                        *existing = FieldKind::Float;
                    }
                    Some(_) => {
                        conflicted.insert(key.clone());
                        kinds.retain(|(k, _)| k != key);
                    }
                }
            }
        }
        kinds
    }
}

fn pq_sub_vectors(dimensions: usize) -> u32 {
    // Prefer 8 dimensions per sub-vector (16 lost too much recall at 1M x 384), else 4, 2, 1; it
    // must divide the dimension.
    [8usize, 4, 2, 1]
        .into_iter()
        .find(|w| dimensions.is_multiple_of(*w))
        .map_or(1, |w| u32::try_from(dimensions / w).unwrap_or(1))
}

fn lance_distance(d: Distance) -> lancedb::DistanceType {
    match d {
        Distance::Cosine => lancedb::DistanceType::Cosine,
        Distance::Dot => lancedb::DistanceType::Dot,
        Distance::L2 => lancedb::DistanceType::L2,
    }
}

/// LanceDB's `_distance` as catena's score (see [`Distance`]).
fn score(distance: Distance, d: f32) -> f32 {
    match distance {
        Distance::Cosine => 1.0 - d,
        // LanceDB's dot distance is `1 - x.y`.
        Distance::Dot => 1.0 - d,
        // LanceDB's L2 distance is squared.
        Distance::L2 => 1.0 - d.max(0.0).sqrt() / std::f32::consts::SQRT_2,
    }
}

/// How old a creation lock must be to count as left by a killed process: a live creation holds
/// it for milliseconds (a second on a slow object store). Clocks of the machine and an object
/// store may differ by a few seconds; this leaves room for that.
const STALE_LOCK: std::time::Duration = std::time::Duration::from_secs(5);

/// Held while creating a table, until [`release`](Self::release)d.
struct CreationLock {
    store: std::sync::Arc<lance_io::object_store::ObjectStore>,
    path: object_store::path::Path,
}

impl CreationLock {
    async fn release(self) {
        use object_store::ObjectStoreExt as _;
        if let Err(e) = self.store.inner.delete(&self.path).await {
            tracing::warn!(lock = %self.path, error = %e, "could not remove the creation lock; it goes stale in 5 s");
        }
    }
}

/// Inserts the rows, replacing those with the same ids (LanceDB's merge-insert on `id`).
async fn merge(state: &TableState, records: &[Embedded], ids: &[String]) -> Result<()> {
    let batch = batch_for(records, ids, state.dimensions, &state.fields)?;
    let schema = batch.schema();
    let reader = RecordBatchIterator::new(vec![Ok(batch)], schema);
    let mut merge = state.table.merge_insert(&["id"]);
    merge.when_matched_update_all(None).when_not_matched_insert_all();
    merge.execute(Box::new(reader)).await.map_err(lance_error("cannot write the batch"))?;
    Ok(())
}

async fn inspect(table: lancedb::Table, name: &str) -> Result<TableState> {
    let schema = table.schema().await.map_err(lance_error("cannot read the table schema"))?;
    let not_ours = |what: &str| {
        Error::store(format!(
            "table {name:?} is not a catena collection ({what}); use another collection name"
        ))
    };
    for column in ["id", "content", "metadata"] {
        schema.field_with_name(column).map_err(|_| not_ours(&format!("no `{column}` column")))?;
    }
    let dimensions = match schema.field_with_name("vector").map(Field::data_type) {
        Ok(DataType::FixedSizeList(_, n)) => {
            usize::try_from(*n).map_err(|_| not_ours("bad vector column"))?
        }
        _ => return Err(not_ours("no fixed-size `vector` column")),
    };
    let fields = schema
        .fields()
        .iter()
        .filter(|f| !RESERVED.contains(&f.name().as_str()))
        .filter_map(|f| FieldKind::from_data_type(f.data_type()).map(|k| (f.name().clone(), k)))
        .collect();
    Ok(TableState { table, dimensions, fields })
}

#[async_trait]
impl VectorStore for LanceDbStore {
    async fn upsert(&self, records: Vec<Embedded>) -> Result<Vec<String>> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let mut guard = self.table.write().await;
        let dims =
            guard.as_ref().map_or_else(|| records.first().map_or(0, |r| r.vector.len()), |s| s.dimensions);
        for r in &records {
            crate::check_stored_vector(&r.vector, dims, &self.collection)?;
        }
        // Later duplicates of an id win, as sequential upserts would; LanceDB's merge needs
        // unique keys in one batch.
        let mut last: HashMap<String, usize> = HashMap::new();
        let ids: Vec<String> = records
            .iter()
            .map(|r| r.document.id.clone().unwrap_or_else(|| document_id(&r.document)))
            .collect();
        for (i, id) in ids.iter().enumerate() {
            last.insert(id.clone(), i);
        }
        let unique: Vec<usize> =
            (0..records.len()).filter(|i| ids.get(*i).and_then(|id| last.get(id)) == Some(i)).collect();
        let kept_records: Vec<Embedded> = unique.iter().filter_map(|&i| records.get(i).cloned()).collect();
        let kept_ids: Vec<String> = unique.iter().filter_map(|&i| ids.get(i).cloned()).collect();

        match guard.as_ref() {
            Some(state) => merge(state, &kept_records, &kept_ids).await?,
            None => {
                let fields = self.fields_for(&kept_records);
                let state = self.create_table(dims, fields).await?;
                merge(&state, &kept_records, &kept_ids).await?;
                *guard = Some(state);
            }
        }
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
        let Some(state) = self.state().await? else { return Ok(0) };
        if ids.is_empty() {
            return Ok(0);
        }
        let predicate = id_list(ids);
        let existing = state
            .table
            .count_rows(Some(predicate.clone()))
            .await
            .map_err(lance_error("cannot count rows"))?;
        if existing > 0 {
            state.table.delete(predicate.as_str()).await.map_err(lance_error("cannot delete rows"))?;
        }
        Ok(existing)
    }

    async fn count(&self) -> Result<usize> {
        match self.state().await? {
            Some(state) => state.table.count_rows(None).await.map_err(lance_error("cannot count rows")),
            None => Ok(0),
        }
    }

    async fn get(&self, ids: &[String]) -> Result<Vec<Document>> {
        let Some(state) = self.state().await? else { return Ok(Vec::new()) };
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let batches: Vec<RecordBatch> = state
            .table
            .query()
            .only_if(id_list(ids))
            .execute()
            .await
            .map_err(lance_error("lookup failed"))?
            .try_collect()
            .await
            .map_err(lance_error("lookup failed"))?;
        let mut found: HashMap<String, Document> = HashMap::new();
        for batch in &batches {
            for doc in documents_of(batch)? {
                if let Some(id) = doc.id.clone() {
                    found.insert(id, doc);
                }
            }
        }
        Ok(ids.iter().filter_map(|id| found.remove(id)).collect())
    }

    async fn documents(&self, filter: Option<&Filter>) -> Result<Vec<Document>> {
        let Some(state) = self.state().await? else { return Ok(Vec::new()) };
        let mut q = state.table.query();
        if let Some(f) = filter {
            q = q.only_if(filter_sql(f, &state.fields)?);
        }
        let batches: Vec<RecordBatch> = q
            .execute()
            .await
            .map_err(lance_error("scan failed"))?
            .try_collect()
            .await
            .map_err(lance_error("scan failed"))?;
        let mut out = Vec::new();
        for batch in &batches {
            out.extend(documents_of(batch)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use serde_json::json;

    #[test]
    fn filters_quote_values_and_check_fields() {
        let fields = vec![("lang".to_string(), FieldKind::String), ("year".to_string(), FieldKind::Integer)];
        let f = Filter::eq("lang", "x' OR '1'='1").and(Filter::gte("year", 2020));
        assert_eq!(filter_sql(&f, &fields).unwrap(), "((`lang` = 'x'' OR ''1''=''1') AND (`year` >= 2020))");
        let err = filter_sql(&Filter::eq("author", "me"), &fields).unwrap_err();
        assert!(err.to_string().contains("filterable: id, lang, year"), "{err}");
        assert!(filter_sql(&Filter::eq("year", "2020"), &fields).is_err(), "wrong type");
        assert!(filter_sql(&Filter::In("lang".into(), vec![]), &fields).is_err());
        assert_eq!(
            filter_sql(&Filter::Nin("lang".into(), vec![json!("en"), json!("fr")]), &fields).unwrap(),
            "(`lang` IS NULL OR `lang` NOT IN ('en', 'fr'))"
        );
    }

    #[test]
    fn identifiers_and_pq() {
        assert!(plain_identifier("year_2"));
        assert!(!plain_identifier("2year") && !plain_identifier("a b") && !plain_identifier("id"));
        assert!(!plain_identifier("a`b") && !plain_identifier("_distance"));
        assert_eq!(pq_sub_vectors(384), 48);
        assert_eq!(pq_sub_vectors(100), 25);
    }
}
