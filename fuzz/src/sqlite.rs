//! A scratch SQLite database that runs what the SQL guard accepts and witnesses any write: the
//! connection is `query_only` (SQLite refuses a write with SQLITE_READONLY) and an update hook
//! records every row change, so a statement the guard let through that writes is caught by SQLite
//! itself, not by a second reading of the SQL. A progress handler bounds each statement's work.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use sqlx::Connection as _;
use sqlx::sqlite::SqliteConnection;

/// A few tables in the shape of the Chinook sample database the SQL tests use, so that mutated
/// queries over them get past "no such table" and run.
const SCHEMA: &str = "
CREATE TABLE Artist (ArtistId INTEGER PRIMARY KEY, Name TEXT);
CREATE TABLE Album (AlbumId INTEGER PRIMARY KEY, Title TEXT, ArtistId INTEGER REFERENCES Artist);
CREATE TABLE Track (TrackId INTEGER PRIMARY KEY, Name TEXT, AlbumId INTEGER, GenreId INTEGER, Milliseconds INTEGER, UnitPrice REAL);
CREATE TABLE Genre (GenreId INTEGER PRIMARY KEY, Name TEXT);
CREATE TABLE Customer (CustomerId INTEGER PRIMARY KEY, FirstName TEXT, LastName TEXT, Country TEXT, Email TEXT);
CREATE TABLE Invoice (InvoiceId INTEGER PRIMARY KEY, CustomerId INTEGER, InvoiceDate TEXT, Total REAL);
CREATE TABLE t (x INTEGER, y TEXT);
INSERT INTO Artist VALUES (1, 'AC/DC'), (2, 'Accept');
INSERT INTO Album VALUES (1, 'For Those About To Rock', 1), (2, 'Balls to the Wall', 2);
INSERT INTO Track VALUES (1, 'Go Down', 1, 1, 331180, 0.99), (2, 'Fast As a Shark', 2, 1, 230619, 0.99);
INSERT INTO Genre VALUES (1, 'Rock');
INSERT INTO Customer VALUES (1, 'Luís', 'Gonçalves', 'Brazil', 'luisg@embraer.com.br');
INSERT INTO Invoice VALUES (1, 1, '2009-01-01', 1.98);
INSERT INTO t VALUES (1, 'a'), (2, 'b');
PRAGMA query_only = ON;
";

/// Progress-handler calls (each every 1,000 virtual-machine steps) one statement may use.
const STEP_BUDGET: u32 = 1_000;

struct Witness {
    connection: Mutex<Option<SqliteConnection>>,
    changes: Arc<Mutex<Vec<String>>>,
    steps: Arc<AtomicU32>,
}

fn witness() -> &'static Witness {
    static WITNESS: OnceLock<Witness> = OnceLock::new();
    WITNESS.get_or_init(|| {
        let runtime = crate::runtime();
        let changes = Arc::new(Mutex::new(Vec::new()));
        let steps = Arc::new(AtomicU32::new(0));
        let connection = runtime.block_on(async {
            let mut connection =
                SqliteConnection::connect("sqlite::memory:").await.expect("an in-memory database");
            sqlx::raw_sql(SCHEMA).execute(&mut connection).await.expect("the scratch schema");
            let mut handle = connection.lock_handle().await.expect("the connection's handle");
            let seen = Arc::clone(&changes);
            handle.set_update_hook(move |change| {
                if let Ok(mut seen) = seen.lock() {
                    seen.push(format!("{:?} on {}.{}", change.operation, change.database, change.table));
                }
            });
            let used = Arc::clone(&steps);
            handle.set_progress_handler(1_000, move || used.fetch_add(1, Ordering::Relaxed) < STEP_BUDGET);
            drop(handle);
            connection
        });
        Witness { connection: Mutex::new(Some(connection)), changes, steps }
    })
}

/// Runs `sql` on the scratch database; returns what it wrote, if SQLite saw it write.
pub(crate) fn sqlite_writes(sql: &str) -> Option<String> {
    let witness = witness();
    witness.steps.store(0, Ordering::Relaxed);
    let mut connection = witness.connection.lock().ok()?.take()?;
    let result = crate::runtime()
        .block_on(sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned())).execute(&mut connection));
    if let Ok(mut slot) = witness.connection.lock() {
        *slot = Some(connection);
    }
    let changes: Vec<String> =
        witness.changes.lock().map(|mut c| std::mem::take(&mut *c)).unwrap_or_default();
    if !changes.is_empty() {
        return Some(changes.join(", "));
    }
    match result {
        // SQLITE_READONLY, plain or extended (its low byte): not the message, which quotes names
        // from the statement ("no such function: xreadonly" is no write).
        Err(sqlx::Error::Database(e))
            if e.code().and_then(|c| c.parse::<i32>().ok()).is_some_and(|c| c & 0xff == 8) =>
        {
            Some(format!("SQLite refused a write: {}", e.message()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::sqlite_writes;

    #[test]
    fn the_witness_sees_writes_and_lets_reads_and_runaways_pass() {
        assert_eq!(sqlite_writes("SELECT Title FROM Album JOIN Artist USING (ArtistId)"), None);
        assert!(sqlite_writes("INSERT INTO t VALUES (3, 'c')").is_some());
        assert!(sqlite_writes("UPDATE Album SET Title = 'x'").is_some());
        assert!(sqlite_writes("CREATE TABLE u (x)").is_some());
        assert_eq!(sqlite_writes("SELECT * FROM no_such_table"), None);
        // A query that never ends is interrupted by the progress handler, not a hang.
        let runaway =
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c";
        assert_eq!(sqlite_writes(runaway), None);
        // And the database is as it was.
        assert_eq!(sqlite_writes("SELECT count(*) FROM t"), None);
    }
}
