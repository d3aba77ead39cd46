//! A PostgreSQL witness for what the SQL guard accepts in the PostgreSQL dialect: each statement
//! runs inside `BEGIN TRANSACTION READ ONLY` on a scratch schema of a real server, so any write it
//! attempts (a DML or DDL statement, `nextval`, `lo_import`, `set_config` on a persisted setting,
//! ...) is refused by PostgreSQL itself with SQLSTATE 25006, `read_only_sql_transaction`, and
//! rolled back. `statement_timeout` (200 ms, under libFuzzer's 1 s per input) bounds each
//! statement's time.
//!
//! The server is the one `scripts/with-postgres.sh` starts (`CATENA_PG_URL`): `make test` replays
//! the corpus under it and `scripts/fuzz.sh` fuzzes under it. Without that variable the witness
//! is skipped, unless `CATENA_REQUIRE_DATA` is set (as in `make test`): then its absence fails.

use std::sync::{Mutex, OnceLock};

use sqlx::Connection as _;
use sqlx::postgres::PgConnection;

/// The SQLite witness's tables in PostgreSQL types, and a sequence (whose `nextval` writes).
const SCHEMA: &str = "
CREATE TABLE \"Artist\" (\"ArtistId\" INTEGER PRIMARY KEY, \"Name\" TEXT);
CREATE TABLE \"Album\" (\"AlbumId\" INTEGER PRIMARY KEY, \"Title\" TEXT, \"ArtistId\" INTEGER);
CREATE TABLE \"Track\" (\"TrackId\" INTEGER PRIMARY KEY, \"Name\" TEXT, \"AlbumId\" INTEGER, \"GenreId\" INTEGER, \"Milliseconds\" INTEGER, \"UnitPrice\" NUMERIC);
CREATE TABLE \"Genre\" (\"GenreId\" INTEGER PRIMARY KEY, \"Name\" TEXT);
CREATE TABLE \"Customer\" (\"CustomerId\" INTEGER PRIMARY KEY, \"FirstName\" TEXT, \"LastName\" TEXT, \"Country\" TEXT, \"Email\" TEXT);
CREATE TABLE \"Invoice\" (\"InvoiceId\" INTEGER PRIMARY KEY, \"CustomerId\" INTEGER, \"InvoiceDate\" TEXT, \"Total\" NUMERIC);
CREATE TABLE artist (artistid INTEGER PRIMARY KEY, name TEXT);
CREATE TABLE album (albumid INTEGER PRIMARY KEY, title TEXT, artistid INTEGER);
CREATE TABLE track (trackid INTEGER PRIMARY KEY, name TEXT, albumid INTEGER, genreid INTEGER, milliseconds INTEGER, unitprice NUMERIC);
CREATE TABLE t (x INTEGER, y TEXT);
CREATE SEQUENCE s;
INSERT INTO \"Artist\" VALUES (1, 'AC/DC'), (2, 'Accept');
INSERT INTO \"Album\" VALUES (1, 'For Those About To Rock', 1), (2, 'Balls to the Wall', 2);
INSERT INTO artist VALUES (1, 'AC/DC'), (2, 'Accept');
INSERT INTO album VALUES (1, 'For Those About To Rock', 1), (2, 'Balls to the Wall', 2);
INSERT INTO t VALUES (1, 'a'), (2, 'b');
";

/// `None` until first use; then the connection, or `None` inside when no server is configured.
fn connection() -> &'static Mutex<Option<PgConnection>> {
    static CONNECTION: OnceLock<Mutex<Option<PgConnection>>> = OnceLock::new();
    CONNECTION.get_or_init(|| Mutex::new(connect()))
}

fn connect() -> Option<PgConnection> {
    let Ok(url) = std::env::var("CATENA_PG_URL") else {
        assert!(
            std::env::var_os("CATENA_REQUIRE_DATA").is_none(),
            "CATENA_PG_URL is not set: run through scripts/with-postgres.sh (the PostgreSQL witness of \
             the SQL guard needs a server)"
        );
        return None;
    };
    crate::runtime().block_on(async {
        let mut connection = PgConnection::connect(&url).await.expect("the PostgreSQL witness's server");
        // A schema of this process's own, so parallel runs do not meet.
        let schema = format!("catena_fuzz_{}", std::process::id());
        let setup = format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}; SET search_path = {schema}; {SCHEMA}"
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(setup)).execute(&mut connection).await.expect("the scratch schema");
        Some(connection)
    })
}

/// Whether a PostgreSQL witness is configured (`CATENA_PG_URL`).
#[cfg(test)]
fn available() -> bool {
    connection().lock().is_ok_and(|c| c.is_some())
}

/// Runs `sql` in a read-only transaction; returns what PostgreSQL refused, if it tried to write.
/// `None` also when no server is configured.
pub(crate) fn postgres_writes(sql: &str) -> Option<String> {
    let mut slot = connection().lock().ok()?;
    let connection = slot.as_mut()?;
    let outcome = crate::runtime().block_on(async {
        sqlx::raw_sql("BEGIN TRANSACTION READ ONLY; SET LOCAL statement_timeout = '200ms'")
            .execute(&mut *connection)
            .await?;
        let result = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned())).execute(&mut *connection).await;
        sqlx::raw_sql("ROLLBACK").execute(&mut *connection).await?;
        Ok::<_, sqlx::Error>(result)
    });
    match outcome {
        Ok(Err(sqlx::Error::Database(e))) if e.code().as_deref() == Some("25006") => {
            Some(format!("PostgreSQL refused a write: {}", e.message()))
        }
        Ok(_) => None,
        Err(e) => panic!("the PostgreSQL witness lost its connection: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::{available, postgres_writes};

    #[test]
    fn the_witness_sees_writes_and_lets_reads_and_runaways_pass() {
        if !available() {
            eprintln!("CATENA_PG_URL not set (scripts/with-postgres.sh): PostgreSQL witness skipped");
            return;
        }
        assert_eq!(
            postgres_writes("SELECT \"Title\" FROM \"Album\" JOIN \"Artist\" USING (\"ArtistId\")"),
            None
        );
        assert!(postgres_writes("INSERT INTO t VALUES (3, 'c')").is_some());
        assert!(postgres_writes("UPDATE album SET title = 'x'").is_some());
        assert!(postgres_writes("CREATE TABLE u (x int)").is_some());
        // A function that writes, inside a plain SELECT: a reading of the SQL alone misses it.
        assert!(postgres_writes("SELECT nextval('s')").is_some());
        assert_eq!(postgres_writes("SELECT * FROM no_such_table"), None);
        // A statement that would run for 10 s is cut at 200 ms, not a hang.
        assert_eq!(postgres_writes("SELECT pg_sleep(10)"), None);
        // And the data is as it was.
        assert_eq!(postgres_writes("SELECT count(*) FROM t"), None);
    }
}
