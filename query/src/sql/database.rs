//! Connections: SQLite files and PostgreSQL servers through sqlx, read-only by default.

use std::str::FromStr;
use std::time::Duration;

use catena_core::{Error, Result};
use futures::TryStreamExt;
use serde::Serialize;
use serde_json::Value;
use sqlx::{Column, Row, TypeInfo, ValueRef};

use super::guard::{GuardedSql, SqlDialect};

/// How a [`SqlDatabase`] connects and runs statements.
#[derive(Debug, Clone)]
pub struct SqlOptions {
    /// Open the database read-only (default `true`): SQLite in read-only mode with
    /// `query_only`, PostgreSQL with `default_transaction_read_only` and every statement inside a
    /// `READ ONLY` transaction. Turn it off only to load data.
    pub read_only: bool,
    /// How long one statement may run (default 10 s). SQLite statements are interrupted through
    /// a progress handler, PostgreSQL ones by `statement_timeout`.
    pub statement_timeout: Duration,
    /// Connections in the pool (default 4).
    pub max_connections: u32,
    /// The most bytes of cell data one result may hold (default 8 MiB); larger results are an
    /// error rather than a memory blow-up.
    pub max_result_bytes: usize,
    /// PostgreSQL: the schema to introspect (default `public`).
    pub schema: String,
}

impl Default for SqlOptions {
    fn default() -> Self {
        Self {
            read_only: true,
            statement_timeout: Duration::from_secs(10),
            max_connections: 4,
            max_result_bytes: 8 << 20,
            schema: "public".to_owned(),
        }
    }
}

/// Rows from a query: column names in order, and each row's cells as JSON values (integers,
/// floats, strings, booleans, JSON, null; binary as a `<N bytes>` marker).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueryResult {
    /// Column names in select-list order (duplicates kept).
    pub columns: Vec<String>,
    /// The rows.
    pub rows: Vec<Vec<Value>>,
}

impl QueryResult {
    /// The result as a tab-separated table with a header line, each cell cut to `max_cell`
    /// characters (the shape prompts and terminals read well).
    #[must_use]
    pub fn to_tsv(&self, max_cell: usize) -> String {
        let mut out = self.columns.join("\t");
        for row in &self.rows {
            out.push('\n');
            let cells: Vec<String> = row.iter().map(|v| cut(&cell_text(v), max_cell)).collect();
            out.push_str(&cells.join("\t"));
        }
        out
    }

    /// The rows as JSON objects keyed by column name (a later duplicate name overwrites).
    #[must_use]
    pub fn to_objects(&self) -> Vec<serde_json::Map<String, Value>> {
        self.rows.iter().map(|row| self.columns.iter().cloned().zip(row.iter().cloned()).collect()).collect()
    }
}

/// A cell as plain text: strings without quotes, null as `NULL`.
#[must_use]
pub(crate) fn cell_text(value: &Value) -> String {
    match value {
        Value::Null => "NULL".to_owned(),
        Value::String(s) => s.replace(['\t', '\n'], " "),
        other => other.to_string(),
    }
}

/// `text` cut to `max` characters, with an ellipsis when cut.
pub(crate) fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", text.get(..at).unwrap_or(text)),
        None => text.to_owned(),
    }
}

#[derive(Debug, Clone)]
enum Backend {
    #[cfg(feature = "sqlite")]
    Sqlite(sqlx::SqlitePool),
    #[cfg(feature = "postgres")]
    Postgres(sqlx::PgPool),
}

/// A SQLite or PostgreSQL database, read-only by default.
///
/// URLs: `sqlite://path/to/file.db` (or a plain path ending in `.db`/`.sqlite`/`.sqlite3`),
/// `sqlite::memory:`, `postgres://user@host/db` (`postgresql://` too). Executes only statements
/// the [`SqlGuard`](super::SqlGuard) accepted ([`GuardedSql`]); [`SqlDatabase::execute_unguarded`]
/// exists for loading data into a writable connection.
#[derive(Debug, Clone)]
pub struct SqlDatabase {
    backend: Backend,
    options: SqlOptions,
    url: String,
}

fn store_err(what: &str, e: sqlx::Error) -> Error {
    Error::store(format!("{what}: {e}")).with_source(e)
}

/// The URL with any password replaced, for messages.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

impl SqlDatabase {
    /// Connects with the default (read-only) options.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, SqlOptions::default()).await
    }

    /// Connects with `options`. Fails early, with the reason, when the database is unreachable or
    /// the SQLite file does not exist (a read-only open never creates one).
    pub async fn connect_with(url: &str, options: SqlOptions) -> Result<Self> {
        let lower = url.to_ascii_lowercase();
        let shown = redact(url);
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            return Self::connect_postgres(url, &shown, options).await;
        }
        let sqlite_url = if lower.starts_with("sqlite:") {
            url.to_owned()
        } else if [".db", ".sqlite", ".sqlite3"].iter().any(|ext| lower.ends_with(ext)) {
            format!("sqlite://{url}")
        } else {
            return Err(Error::invalid_input(format!(
                "cannot tell which database {shown:?} is; use sqlite://FILE, sqlite::memory: or postgres://USER@HOST/DB"
            )));
        };
        Self::connect_sqlite(&sqlite_url, &shown, options).await
    }

    #[cfg(feature = "sqlite")]
    async fn connect_sqlite(url: &str, shown: &str, options: SqlOptions) -> Result<Self> {
        use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
        let mut connect = SqliteConnectOptions::from_str(url)
            .map_err(|e| Error::invalid_input(format!("bad SQLite URL {shown:?}: {e}")))?
            .read_only(options.read_only)
            .create_if_missing(!options.read_only)
            .foreign_keys(true);
        if options.read_only {
            connect = connect.pragma("query_only", "ON");
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .connect_with(connect)
            .await
            .map_err(|e| store_err(&format!("cannot open SQLite database {shown}"), e))?;
        Ok(Self { backend: Backend::Sqlite(pool), options, url: shown.to_owned() })
    }

    #[cfg(not(feature = "sqlite"))]
    async fn connect_sqlite(_url: &str, shown: &str, _options: SqlOptions) -> Result<Self> {
        Err(Error::invalid_input(format!(
            "{shown} is a SQLite database; enable catena-retrievers' `sqlite` feature"
        )))
    }

    #[cfg(feature = "postgres")]
    async fn connect_postgres(url: &str, shown: &str, options: SqlOptions) -> Result<Self> {
        use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
        let mut connect = PgConnectOptions::from_str(url)
            .map_err(|e| Error::invalid_input(format!("bad PostgreSQL URL {shown:?}: {e}")))?
            .application_name("catena");
        if options.read_only {
            connect = connect.options([("default_transaction_read_only", "on")]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.statement_timeout.max(Duration::from_secs(5)))
            .connect_with(connect)
            .await
            .map_err(|e| {
                Error::store(format!(
                    "cannot connect to PostgreSQL at {shown}: {e}. Is the server running and the URL right?"
                ))
            })?;
        Ok(Self { backend: Backend::Postgres(pool), options, url: shown.to_owned() })
    }

    #[cfg(not(feature = "postgres"))]
    async fn connect_postgres(_url: &str, shown: &str, _options: SqlOptions) -> Result<Self> {
        Err(Error::invalid_input(format!(
            "{shown} is a PostgreSQL database; enable catena-retrievers' `postgres` feature"
        )))
    }

    /// The dialect of this database.
    #[must_use]
    pub fn dialect(&self) -> SqlDialect {
        match self.backend {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(_) => SqlDialect::Sqlite,
            #[cfg(feature = "postgres")]
            Backend::Postgres(_) => SqlDialect::Postgres,
        }
    }

    /// The connection URL, password redacted.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The options it was opened with.
    #[must_use]
    pub fn options(&self) -> &SqlOptions {
        &self.options
    }

    /// Runs a statement the guard accepted.
    pub async fn query(&self, guarded: &GuardedSql) -> Result<QueryResult> {
        self.fetch(&guarded.sql, self.options.read_only).await
    }

    /// Runs SQL as it is, without the guard: for loading data and for introspection queries the
    /// application itself wrote. Never pass model output or user input here. On a read-only
    /// database writes still fail.
    pub async fn execute_unguarded(&self, sql: &str) -> Result<QueryResult> {
        self.fetch(sql, self.options.read_only).await
    }

    /// Runs SQL on a writable database outside any transaction (PostgreSQL's `CREATE DATABASE`,
    /// `VACUUM`); like [`execute_unguarded`](Self::execute_unguarded) on SQLite.
    pub async fn execute_outside_transaction(&self, sql: &str) -> Result<()> {
        if self.options.read_only {
            return Err(Error::invalid_input("the database is open read-only"));
        }
        match &self.backend {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(_) => self.fetch(sql, false).await.map(drop),
            #[cfg(feature = "postgres")]
            Backend::Postgres(pool) => {
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(pool).await.map_err(db_error).map(drop)
            }
        }
    }

    /// Closes the pool.
    pub async fn close(&self) {
        match &self.backend {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(pool) => pool.close().await,
            #[cfg(feature = "postgres")]
            Backend::Postgres(pool) => pool.close().await,
        }
    }

    async fn fetch(&self, sql: &str, read_only: bool) -> Result<QueryResult> {
        let system = match &self.backend {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(_) => "sqlite",
            #[cfg(feature = "postgres")]
            Backend::Postgres(_) => "postgresql",
        };
        catena_core::telemetry::observe_db(
            system,
            sql,
            |r: &QueryResult| r.rows.len(),
            Box::pin(self.fetch_now(sql, read_only)),
        )
        .await
    }

    async fn fetch_now(&self, sql: &str, read_only: bool) -> Result<QueryResult> {
        let limit = self.options.max_result_bytes;
        let timeout = self.options.statement_timeout;
        match &self.backend {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(pool) => {
                use std::time::Instant;
                // SQLite connections are read-only (or not) as a whole: `query_only` is set when
                // the pool is opened, so there is nothing to choose per statement.
                let _ = read_only;
                let mut conn =
                    pool.acquire().await.map_err(|e| store_err("cannot get a SQLite connection", e))?;
                let deadline = Instant::now() + timeout;
                conn.lock_handle()
                    .await
                    .map_err(|e| store_err("cannot lock the SQLite connection", e))?
                    .set_progress_handler(10_000, move || Instant::now() < deadline);
                let result = collect(sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).fetch(&mut *conn), limit).await;
                if let Ok(mut handle) = conn.lock_handle().await {
                    handle.remove_progress_handler();
                }
                result.map_err(|e| if Instant::now() >= deadline { Error::Timeout(timeout) } else { e })
            }
            #[cfg(feature = "postgres")]
            Backend::Postgres(pool) => {
                let mut tx =
                    pool.begin().await.map_err(|e| store_err("cannot start a PostgreSQL transaction", e))?;
                let mode = if read_only { "READ ONLY" } else { "READ WRITE" };
                let setup = format!(
                    "SET TRANSACTION {mode}; SET LOCAL statement_timeout = {}",
                    timeout.as_millis().max(1)
                );
                sqlx::raw_sql(sqlx::AssertSqlSafe(setup))
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| store_err("cannot configure the PostgreSQL transaction", e))?;
                let result = collect(sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).fetch(&mut *tx), limit).await;
                if result.is_ok() && !read_only {
                    tx.commit().await.map_err(|e| store_err("PostgreSQL commit failed", e))?;
                }
                // A read-only transaction has nothing to commit; dropping it rolls back.
                result
            }
        }
    }
}

/// Drains a row stream into a [`QueryResult`], stopping once cells exceed `max_bytes`.
async fn collect<'a, R, S>(mut rows: S, max_bytes: usize) -> Result<QueryResult>
where
    R: Row,
    S: futures::Stream<Item = std::result::Result<R, sqlx::Error>> + Unpin,
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    usize: sqlx::ColumnIndex<R>,
    R::Database: CellDecoder,
{
    let mut result = QueryResult { columns: Vec::new(), rows: Vec::new() };
    let mut bytes = 0usize;
    while let Some(row) = rows.try_next().await.map_err(db_error)? {
        if result.columns.is_empty() && result.rows.is_empty() {
            result.columns = row.columns().iter().map(|c| c.name().to_owned()).collect();
        }
        let mut cells = Vec::with_capacity(row.len());
        for i in 0..row.len() {
            let raw = row.try_get_raw(i).map_err(db_error)?;
            let cell = R::Database::decode_cell(raw)?;
            bytes += match &cell {
                Value::String(s) => s.len(),
                _ => 8,
            };
            cells.push(cell);
        }
        if bytes > max_bytes {
            return Err(Error::store(format!(
                "the result is larger than {max_bytes} bytes; select fewer rows or columns (or raise max_result_bytes)"
            )));
        }
        result.rows.push(cells);
    }
    Ok(result)
}

/// A database error as a catena error, with the database's own message (the model reads it
/// during repair).
fn db_error(e: sqlx::Error) -> Error {
    let message = match &e {
        sqlx::Error::Database(db) => format!("database error: {}", db.message()),
        sqlx::Error::Io(io) => format!("database connection failed: {io}"),
        sqlx::Error::PoolTimedOut => {
            "no database connection became free in time; the pool is exhausted".into()
        }
        other => format!("database error: {other}"),
    };
    Error::store(message).with_source(e)
}

/// Turns one raw cell into JSON, per driver.
pub(crate) trait CellDecoder: sqlx::Database {
    fn decode_cell(raw: <Self as sqlx::Database>::ValueRef<'_>) -> Result<Value>;
}

#[cfg(feature = "sqlite")]
impl CellDecoder for sqlx::Sqlite {
    fn decode_cell(raw: sqlx::sqlite::SqliteValueRef<'_>) -> Result<Value> {
        use sqlx::Decode;
        if raw.is_null() {
            return Ok(Value::Null);
        }
        // SQLite is dynamically typed: dispatch on the value's storage class, not the column's.
        let type_name = raw.type_info().name().to_owned();
        let decoded = match type_name.as_str() {
            "INTEGER" => <i64 as Decode<sqlx::Sqlite>>::decode(raw).map(Value::from),
            "REAL" => <f64 as Decode<sqlx::Sqlite>>::decode(raw).map(float),
            "BLOB" => <Vec<u8> as Decode<sqlx::Sqlite>>::decode(raw)
                .map(|b| Value::from(format!("<{} bytes>", b.len()))),
            _ => <String as Decode<sqlx::Sqlite>>::decode(raw).map(Value::from),
        };
        decoded.map_err(|e| Error::store(format!("cannot read a {type_name} cell: {e}")))
    }
}

#[cfg(feature = "postgres")]
impl CellDecoder for sqlx::Postgres {
    fn decode_cell(raw: sqlx::postgres::PgValueRef<'_>) -> Result<Value> {
        if raw.is_null() {
            return Ok(Value::Null);
        }
        // raw_sql runs the simple query protocol, so every cell arrives as text; parse by type.
        let type_name = raw.type_info().name().to_owned();
        let text = raw
            .as_str()
            .map_err(|e| Error::store(format!("cannot read a {type_name} cell: {e}")))?
            .to_owned();
        Ok(match type_name.as_str() {
            "INT2" | "INT4" | "INT8" | "OID" => text.parse::<i64>().map_or(Value::String(text), Value::from),
            "FLOAT4" | "FLOAT8" | "NUMERIC" => text.parse::<f64>().map_or(Value::String(text), float),
            "BOOL" => Value::Bool(text == "t"),
            "JSON" | "JSONB" => serde_json::from_str(&text).unwrap_or(Value::String(text)),
            "BYTEA" => Value::from(format!("<{} bytes>", text.len().saturating_sub(2) / 2)),
            _ => Value::String(text),
        })
    }
}

/// A float as JSON; NaN and infinities (which JSON cannot hold) as strings.
fn float(f: f64) -> Value {
    serde_json::Number::from_f64(f).map_or_else(|| Value::String(f.to_string()), Value::Number)
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_database_error_keeps_sqlx_as_its_source_and_its_message_for_the_model() {
        let db = SqlDatabase::connect("sqlite::memory:").await.unwrap();
        let err = db.execute_unguarded("SELECT nope FROM nowhere").await.unwrap_err();
        assert_eq!(err.kind(), catena_core::ErrorKind::Store);
        // The database's own words stay in the message: the repair loop shows them to the model.
        assert!(err.to_string().contains("no such table: nowhere"), "{err}");
        let cause = std::error::Error::source(&err).and_then(|s| s.downcast_ref::<sqlx::Error>());
        assert!(matches!(cause, Some(sqlx::Error::Database(_))), "{cause:?}");
    }
}
