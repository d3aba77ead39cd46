//! Text-to-SQL on the real Chinook database: SQLite files and a PostgreSQL server
//! (`scripts/with-postgres.sh` starts one for `make test` and sets `CATENA_PG_URL`).
//!
//! The guard is measured on a generated corpus (kept in `tests/data/sql_guard_corpus.json`;
//! `CATENA_WRITE_CORPUS=1` rewrites it): every dangerous statement refused, every read-only query
//! accepted and executed. After every malicious attempt the database is compared with a snapshot
//! of its schema and row counts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic, missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use catena::core::testing::ScriptedChatModel;
use catena::core::{ChatModel, ErrorKind, RunContext};
use catena::query::sql::{
    RejectReason, SchemaOptions, SqlDatabase, SqlDialect, SqlGuard, SqlOptions, SqlQueryChain, chinook,
};
use serde_json::{Value, json};

const TABLES: [&str; 11] = [
    "Album",
    "Artist",
    "Customer",
    "Employee",
    "Genre",
    "Invoice",
    "InvoiceLine",
    "MediaType",
    "Playlist",
    "PlaylistTrack",
    "Track",
];

/// The Chinook fixture, or `None` (test skipped) when it is not fetched and not required.
fn fixture() -> Option<PathBuf> {
    let path = chinook::fixture_path();
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var_os("CATENA_REQUIRE_DATA").is_none(),
        "the Chinook fixture is missing at {}; run scripts/fetch-data.sh",
        path.display()
    );
    eprintln!("Chinook fixture not fetched (scripts/fetch-data.sh): test skipped");
    None
}

/// A fresh Chinook SQLite file in `dir`.
async fn chinook_sqlite(dir: &Path) -> String {
    let url = format!("sqlite://{}", dir.join("chinook.db").display());
    let writable = SqlDatabase::connect_with(&url, SqlOptions { read_only: false, ..SqlOptions::default() })
        .await
        .unwrap();
    let report = chinook::load(&fixture().unwrap(), &writable).await.unwrap();
    assert_eq!(report.total(), 15_607);
    writable.close().await;
    url
}

/// Schema text and row counts: what "the database is unchanged" compares.
async fn snapshot(db: &SqlDatabase) -> Value {
    let schema = db
        .schema(&SchemaOptions { sample_rows: 0, indexes: true, ..SchemaOptions::default() })
        .await
        .unwrap();
    let mut counts = serde_json::Map::new();
    for table in &schema.tables {
        let guarded =
            SqlGuard::new(db.dialect()).check(&format!("SELECT COUNT(*) FROM {}", table.name)).unwrap();
        counts.insert(table.name.clone(), db.query(&guarded).await.unwrap().rows[0][0].clone());
    }
    json!({"schema": schema.render(0), "counts": counts})
}

/// Dangerous statements: writes, DDL, administration, file access, catalog reads, stacked
/// statements, comment tricks, homoglyph keywords, writes hidden in CTEs.
fn dangerous_corpus() -> Vec<String> {
    let mut out = Vec::new();
    for t in TABLES {
        out.extend([
            format!("INSERT INTO {t} DEFAULT VALUES"),
            format!("UPDATE {t} SET rowid = rowid"),
            format!("DELETE FROM {t}"),
            format!("DROP TABLE {t}"),
            format!("ALTER TABLE {t} ADD COLUMN pwned TEXT"),
            format!("TRUNCATE {t}"),
            format!("CREATE TABLE copy_{t} AS SELECT * FROM {t}"),
            format!("CREATE INDEX idx_{t} ON {t} (rowid)"),
            format!("SELECT 1; DROP TABLE {t}"),
            format!("SELECT * FROM {t}; DELETE FROM {t};"),
            format!("/* harmless */ DROP TABLE {t}"),
            format!("-- just a comment\nDELETE FROM {t}"),
            format!("SELECT 1 /* ; */ ; DROP TABLE {t}"),
            format!("WITH gone AS (DELETE FROM {t} RETURNING *) SELECT * FROM gone"),
            format!("WITH moved AS (UPDATE {t} SET rowid = rowid RETURNING *) SELECT COUNT(*) FROM moved"),
            format!("WITH added AS (INSERT INTO {t} DEFAULT VALUES RETURNING *) SELECT * FROM added"),
            format!("SELECT * INTO backup_{t} FROM {t}"),
            format!("SELECT * FROM {t} FOR UPDATE"),
            format!("DRОP TABLE {t}"),        // Cyrillic O
            format!("ＤＥＬＥＴＥ FROM {t}"), // full-width letters
            format!("SELECT 1; DЕLETE FROM {t}"),
            format!("REPLACE INTO {t} DEFAULT VALUES"),
            format!("COPY {t} TO '/tmp/{t}.csv'"),
            format!("EXPLAIN ANALYZE DELETE FROM {t}"),
            format!("LOCK TABLE {t}"),
            format!("GRANT ALL ON {t} TO PUBLIC"),
        ]);
    }
    out.extend(
        [
            "PRAGMA writable_schema = 1",
            "PRAGMA query_only = OFF",
            "ATTACH DATABASE '/tmp/evil.db' AS evil",
            "DETACH DATABASE main",
            "VACUUM",
            "REINDEX",
            "BEGIN",
            "COMMIT",
            "ROLLBACK",
            "SET default_transaction_read_only = off",
            "SET TRANSACTION READ WRITE",
            "RESET ALL",
            "CREATE ROLE evil SUPERUSER",
            "ALTER SYSTEM SET fsync = off",
            "COPY (SELECT 1) TO PROGRAM 'touch /tmp/pwned'",
            "DO $$ BEGIN DELETE FROM Album; END $$",
            "CALL cleanup()",
            "SELECT pg_sleep(10)",
            "SELECT pg_read_file('/etc/passwd')",
            "SELECT pg_terminate_backend(1)",
            "SELECT pg_reload_conf()",
            "SELECT * FROM pg_ls_dir('.')",
            "SELECT lo_import('/etc/passwd')",
            "SELECT set_config('default_transaction_read_only', 'off', false)",
            "SELECT current_setting('data_directory')",
            "SELECT nextval('album_seq')",
            "SELECT load_extension('/tmp/evil.so')",
            "SELECT readfile('/etc/passwd')",
            "SELECT writefile('/tmp/x', 'y')",
            "SELECT * FROM sqlite_master",
            "SELECT sql FROM sqlite_schema",
            "SELECT * FROM pg_catalog.pg_user",
            "SELECT * FROM pg_shadow",
            "SELECT table_name FROM information_schema.tables",
            "SELECT * FROM secrets",
            "SELECT Name FROM Artist UNION SELECT password FROM users",
            "",
            "-- only a comment",
            "SELECT 1\0; DROP TABLE Album",
        ]
        .map(str::to_owned),
    );
    out
}

/// Read-only queries over Chinook, from single columns to joins, CTEs, set operations and windows.
async fn valid_corpus(db: &SqlDatabase) -> Vec<String> {
    let schema = db.schema(&SchemaOptions { sample_rows: 0, ..SchemaOptions::default() }).await.unwrap();
    let mut out = Vec::new();
    for table in &schema.tables {
        let t = &table.name;
        let pk = &table.primary_key[0];
        for column in &table.columns {
            out.push(format!("SELECT {} FROM {t}", column.name));
        }
        let first = &table.columns[1.min(table.columns.len() - 1)].name;
        out.extend([
            format!("SELECT * FROM {t}"),
            format!("SELECT COUNT(*) AS n FROM {t}"),
            format!("SELECT DISTINCT {first} FROM {t} ORDER BY {first} DESC LIMIT 5000"),
            format!(
                "SELECT {first}, COUNT(*) FROM {t} GROUP BY {first} HAVING COUNT(*) >= 1 ORDER BY 2 DESC"
            ),
            format!("WITH c AS (SELECT * FROM {t}) SELECT COUNT(*) FROM c"),
            format!("SELECT {pk}, ROW_NUMBER() OVER (ORDER BY {pk} DESC) AS r FROM {t} LIMIT 5 OFFSET 2"),
            format!("SELECT * FROM {t} WHERE {pk} IN (SELECT {pk} FROM {t} WHERE {pk} < 10)"),
            format!("SELECT {pk} FROM {t} UNION SELECT {pk} FROM {t} ORDER BY 1"),
            format!("SELECT MIN({pk}), MAX({pk}), AVG({pk}) FROM {t} -- the key range"),
            format!("/* which rows */ SELECT * FROM {t} WHERE {pk} BETWEEN 1 AND 3;"),
            format!("SELECT x.{pk} FROM {t} AS x WHERE EXISTS (SELECT 1 FROM {t} y WHERE y.{pk} = x.{pk})"),
        ]);
        for fk in &table.foreign_keys {
            out.push(format!(
                "SELECT a.{c}, b.{r} FROM {t} a JOIN {rt} b ON a.{c} = b.{r} LIMIT 20",
                c = fk.columns[0],
                r = fk.ref_columns[0],
                rt = fk.ref_table
            ));
            out.push(format!(
                "SELECT b.{r}, COUNT(*) AS n FROM {t} a LEFT JOIN {rt} b ON a.{c} = b.{r} GROUP BY b.{r} ORDER BY n DESC",
                c = fk.columns[0],
                r = fk.ref_columns[0],
                rt = fk.ref_table
            ));
        }
    }
    out.push("SELECT 1".to_owned());
    out.push("VALUES (1, 'a'), (2, 'b')".to_owned());
    out.push("SELECT 'DROP TABLE Album; --' AS harmless_text".to_owned());
    out
}

#[tokio::test]
async fn guard_refuses_every_dangerous_statement_and_the_database_is_unchanged() {
    let Some(_) = fixture() else { return };
    let dir = tempfile::tempdir().unwrap();
    let url = chinook_sqlite(dir.path()).await;
    let db = SqlDatabase::connect(&url).await.unwrap();
    let before = snapshot(&db).await;
    let guard = SqlGuard::new(SqlDialect::Sqlite).with_allowed_tables(TABLES);
    let dangerous = dangerous_corpus();
    assert!(dangerous.len() >= 200, "{} dangerous statements", dangerous.len());
    for sql in &dangerous {
        let refused = guard.check(sql);
        assert!(refused.is_err(), "accepted a dangerous statement: {sql:?} -> {refused:?}");
        // Defense in depth: the read-only connection refuses writes even without the guard.
        if is_plain_write(sql) {
            assert!(db.execute_unguarded(sql).await.is_err(), "the read-only connection ran {sql:?}");
        }
        assert_eq!(snapshot(&db).await, before, "the database changed after {sql:?}");
    }
    // The same refusals through PostgreSQL's grammar.
    let pg_guard = SqlGuard::new(SqlDialect::Postgres).with_allowed_tables(TABLES);
    for sql in &dangerous {
        assert!(pg_guard.check(sql).is_err(), "PostgreSQL guard accepted {sql:?}");
    }
    write_corpus_if_asked(&dangerous, &valid_corpus(&db).await);
}

/// DML and DDL (no file or extension side effects), for the unguarded read-only backstop.
fn is_plain_write(sql: &str) -> bool {
    ["INSERT", "UPDATE", "DELETE", "DROP", "ALTER", "CREATE", "REPLACE", "WITH"]
        .iter()
        .any(|k| sql.starts_with(k))
}

fn write_corpus_if_asked(dangerous: &[String], valid: &[String]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sql_guard_corpus.json");
    if std::env::var_os("CATENA_WRITE_CORPUS").is_some() {
        let corpus = json!({"dangerous": dangerous, "valid": valid});
        std::fs::write(&path, serde_json::to_string_pretty(&corpus).unwrap() + "\n").unwrap();
    }
    let kept: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(
        kept["dangerous"].as_array().unwrap().len(),
        dangerous.len(),
        "kept corpus is stale: regenerate"
    );
    assert_eq!(kept["valid"].as_array().unwrap().len(), valid.len(), "kept corpus is stale: regenerate");
}

#[tokio::test]
async fn guard_accepts_and_runs_every_read_only_query() {
    let Some(_) = fixture() else { return };
    let dir = tempfile::tempdir().unwrap();
    let db = SqlDatabase::connect(&chinook_sqlite(dir.path()).await).await.unwrap();
    let guard = SqlGuard::new(SqlDialect::Sqlite).with_allowed_tables(TABLES).with_max_rows(100);
    let valid = valid_corpus(&db).await;
    assert!(valid.len() >= 200, "{} valid queries", valid.len());
    for sql in &valid {
        let guarded = guard.check(sql).unwrap_or_else(|e| panic!("refused a read-only query {sql:?}: {e}"));
        assert!(guarded.limit <= 100);
        let result =
            db.query(&guarded).await.unwrap_or_else(|e| panic!("{sql:?} as {:?} failed: {e}", guarded.sql));
        assert!(result.rows.len() <= 100, "{sql}: {} rows past the cap", result.rows.len());
    }
    // Huge results are capped; a string literal with SQL inside is data.
    let all = db.query(&guard.check("SELECT * FROM Track").unwrap()).await.unwrap();
    assert_eq!(all.rows.len(), 100);
    assert_eq!(all.columns.len(), 9);
    let text = db.query(&guard.check("SELECT 'DROP TABLE Album; --' AS t").unwrap()).await.unwrap();
    assert_eq!(text.rows[0][0], json!("DROP TABLE Album; --"));
}

#[test]
fn what_the_guard_lets_run_reads_back_as_itself() {
    // Found by fuzzing: sqlparser misreads runs of escaped quotes in a quoted name, so its
    // rendering of the checked statement read back as another name; such statements are refused.
    for (dialect, sql) in [
        (SqlDialect::Postgres, r#"SELECT pegr_"""""""""""#),
        (SqlDialect::Sqlite, "SELECT a, ```````x` FROM t"),
    ] {
        let refused = SqlGuard::new(dialect).check(sql).unwrap_err();
        assert_eq!(refused.reason, RejectReason::Syntax, "{sql}: {refused}");
        assert!(refused.message.contains("read back"), "{refused}");
    }
    for dialect in [SqlDialect::Sqlite, SqlDialect::Postgres] {
        let guard = SqlGuard::new(dialect);
        let first = guard.check(r#"SELECT "Title" AS "the title" FROM Album WHERE Title = 'It''s'"#).unwrap();
        assert_eq!(guard.check(&first.sql).unwrap().sql, first.sql);
    }
}

#[tokio::test]
async fn schema_introspection_matches_chinook() {
    let Some(_) = fixture() else { return };
    let dir = tempfile::tempdir().unwrap();
    let db = SqlDatabase::connect(&chinook_sqlite(dir.path()).await).await.unwrap();
    let schema = db.schema(&SchemaOptions::default()).await.unwrap();
    assert_eq!(schema.table_names(), TABLES.map(str::to_owned).to_vec());
    let track = schema.tables.iter().find(|t| t.name == "Track").unwrap();
    assert_eq!(track.primary_key, ["TrackId"]);
    assert_eq!(track.foreign_keys.len(), 3);
    assert_eq!(track.sample_rows.len(), 3);
    let text = track.render(100);
    assert!(text.starts_with("CREATE TABLE \"Track\" (\n\t\"TrackId\" INTEGER NOT NULL"), "{text}");
    assert!(text.contains("FOREIGN KEY(\"AlbumId\") REFERENCES \"Album\" (\"AlbumId\")"), "{text}");
    assert!(text.contains("3 rows from Track table:\nTrackId\tName\tAlbumId"), "{text}");
    assert!(text.contains("For Those About To Rock (We Salute You)"), "{text}");
    // Include/ignore lists and descriptions.
    let options = SchemaOptions {
        include_tables: Some(vec!["artist".into(), "album".into(), "track".into()]),
        ignore_tables: vec!["Track".into()],
        descriptions: [("Artist".to_owned(), "Musicians and bands.".to_owned())].into(),
        ..SchemaOptions::default()
    };
    let some = db.schema(&options).await.unwrap();
    assert_eq!(some.table_names(), ["Album", "Artist"]);
    assert!(some.render(100).contains("-- Musicians and bands.\nCREATE TABLE \"Artist\""));
}

#[tokio::test]
async fn bad_connections_and_runaway_queries_are_typed_errors() {
    let Some(_) = fixture() else { return };
    let dir = tempfile::tempdir().unwrap();
    // A missing file is not created by a read-only open.
    let missing = dir.path().join("missing.db");
    let err = SqlDatabase::connect(&format!("sqlite://{}", missing.display())).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Store, "{err}");
    assert!(!missing.exists());
    let err = SqlDatabase::connect("mysql://nobody@localhost/x").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    let err = SqlDatabase::connect("postgres://nobody:secret@127.0.0.1:1/x").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Store, "{err}");
    assert!(!err.to_string().contains("secret"), "password leaked: {err}");

    let url = chinook_sqlite(dir.path()).await;
    let options = SqlOptions { statement_timeout: Duration::from_millis(300), ..SqlOptions::default() };
    let db = SqlDatabase::connect_with(&url, options).await.unwrap();
    let guard = SqlGuard::new(SqlDialect::Sqlite);
    // Read-only but endless: the progress handler interrupts it.
    let endless = guard
        .check("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT COUNT(*) FROM c")
        .unwrap();
    let started = std::time::Instant::now();
    let err = db.query(&endless).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // The connection is usable afterwards.
    assert_eq!(
        db.query(&guard.check("SELECT COUNT(*) FROM Artist").unwrap()).await.unwrap().rows[0][0],
        json!(275)
    );
    // Unknown columns are database errors with the database's message.
    let err = db.query(&guard.check("SELECT Nope FROM Artist").unwrap()).await.unwrap_err();
    assert!(err.to_string().contains("no such column"), "{err}");
    // A result over the byte cap is refused instead of filling memory.
    let small = SqlOptions { max_result_bytes: 1000, ..SqlOptions::default() };
    let db = SqlDatabase::connect_with(&url, small).await.unwrap();
    let err = db.query(&guard.check("SELECT Name FROM Track").unwrap()).await.unwrap_err();
    assert!(err.to_string().contains("larger than 1000 bytes"), "{err}");
    // A guard refusal converts to InvalidInput naming the reason.
    let rejection = guard.check("DELETE FROM Artist").unwrap_err();
    assert_eq!(rejection.reason, RejectReason::NotAQuery);
    assert_eq!(catena::core::Error::from(rejection).kind(), ErrorKind::InvalidInput);
}

#[tokio::test]
async fn the_chain_repairs_refused_and_failing_queries() {
    let Some(_) = fixture() else { return };
    let dir = tempfile::tempdir().unwrap();
    let db = SqlDatabase::connect(&chinook_sqlite(dir.path()).await).await.unwrap();
    let model = Arc::new(ScriptedChatModel::new([
        "DROP TABLE Artist",
        "```sql\nSELECT Nmae FROM Artist\n```",
        "SQLQuery: SELECT COUNT(*) AS artists FROM Artist",
        "There are 275 artists.",
    ]));
    let chain = SqlQueryChain::new(model.clone() as Arc<dyn ChatModel>, db).await.unwrap();
    let answer = chain.ask("How many artists are there?", &RunContext::new()).await.unwrap();
    assert_eq!(answer.sql, "SELECT COUNT(*) AS artists FROM Artist LIMIT 100");
    assert_eq!(answer.result.rows, vec![vec![json!(275)]]);
    assert_eq!(answer.answer.as_deref(), Some("There are 275 artists."));
    assert_eq!(answer.attempts.len(), 3);
    assert!(answer.attempts[0].error.as_deref().unwrap().contains("refused"), "{:?}", answer.attempts);
    assert!(
        answer.attempts[1].error.as_deref().unwrap().contains("no such column: Nmae"),
        "{:?}",
        answer.attempts
    );
    // The repair request showed the model its query and the database's complaint.
    let requests = model.requests();
    let repair = &requests[2].messages;
    assert!(repair.iter().any(|m| m.content.contains("no such column: Nmae")), "{repair:?}");
    // The schema prompt carries CREATE TABLE text and sample rows.
    assert!(requests[0].messages[0].content.contains("CREATE TABLE \"Artist\""));
    // The answer step sees the SQL and the rows.
    assert!(requests[3].messages[0].content.contains("SELECT COUNT(*) AS artists FROM Artist LIMIT 100"));

    // A model that never writes a query: a Parse error after every try, nothing executed.
    let db =
        SqlDatabase::connect(&format!("sqlite://{}", dir.path().join("chinook.db").display())).await.unwrap();
    let silent = Arc::new(ScriptedChatModel::new(["I am not sure.", "Sorry.", "No."]));
    let chain = SqlQueryChain::new(silent as Arc<dyn ChatModel>, db).await.unwrap();
    let err = chain.ask("How many artists?", &RunContext::new()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Parse, "{err}");
    assert!(err.to_string().contains("after 3 tries"), "{err}");
}

#[tokio::test]
async fn local_model_writes_valid_sql_under_the_schema_grammar() {
    let Some(_) = fixture() else { return };
    let dir = tempfile::tempdir().unwrap();
    let db = SqlDatabase::connect(&chinook_sqlite(dir.path()).await).await.unwrap();
    let model: Arc<dyn ChatModel> = Arc::new(catena::models::LlamaChatModel::load_default().await.unwrap());
    let embedder: Arc<dyn catena::core::Embedder> =
        Arc::new(catena::models::LlamaEmbedder::load_default().await.unwrap());
    let chain = SqlQueryChain::new(model, db)
        .await
        .unwrap()
        .with_constrained_decoding(true)
        .with_table_selection(embedder, 3)
        .with_max_repairs(1);
    let guard = SqlGuard::new(SqlDialect::Sqlite).with_allowed_tables(TABLES);
    for question in ["How many artists are there?", "List the names of five genres."] {
        let answer = chain.ask(question, &RunContext::new()).await.unwrap();
        // The grammar guarantees syntax and identifiers: every try passed the guard.
        for attempt in &answer.attempts {
            let sql = attempt.query.as_deref().unwrap();
            assert!(guard.check(sql).is_ok(), "{sql:?}");
            assert!(!attempt.error.as_deref().unwrap_or_default().contains("refused"), "{attempt:?}");
        }
        assert!(answer.answer.is_some_and(|a| !a.is_empty()));
    }
}

/// PostgreSQL: a database of its own in the server `scripts/with-postgres.sh` started.
async fn chinook_postgres(name: &str) -> Option<(String, String)> {
    let Some(admin) = std::env::var("CATENA_PG_URL").ok() else {
        assert!(
            std::env::var_os("CATENA_REQUIRE_DATA").is_none(),
            "CATENA_PG_URL is not set; run the tests through scripts/with-postgres.sh"
        );
        eprintln!("CATENA_PG_URL not set (scripts/with-postgres.sh): PostgreSQL test skipped");
        return None;
    };
    let fixture = fixture()?;
    let writable = SqlOptions { read_only: false, ..SqlOptions::default() };
    let server = SqlDatabase::connect_with(&admin, writable.clone()).await.unwrap();
    // CREATE DATABASE cannot run inside a transaction block, so it goes through a plain connection.
    server.execute_outside_transaction(&format!("DROP DATABASE IF EXISTS {name}")).await.unwrap();
    server.execute_outside_transaction(&format!("CREATE DATABASE {name}")).await.unwrap();
    let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    let db = SqlDatabase::connect_with(&url, writable).await.unwrap();
    chinook::load(&fixture, &db).await.unwrap();
    db.close().await;
    Some((admin, url))
}

#[tokio::test]
async fn postgres_guarded_reads_and_a_read_only_backstop() {
    let Some((_admin, url)) = chinook_postgres("catena_sql_test").await else { return };
    let db = SqlDatabase::connect(&url).await.unwrap();
    assert_eq!(db.dialect(), SqlDialect::Postgres);
    let schema = db.schema(&SchemaOptions::default()).await.unwrap();
    let names = schema.table_names();
    assert_eq!(names.len(), 11, "{names:?}");
    let track = schema.tables.iter().find(|t| t.name == "track").unwrap();
    assert_eq!(track.primary_key, ["trackid"]);
    assert_eq!(track.foreign_keys.len(), 3);
    assert!(track.columns.iter().any(|c| c.data_type == "numeric(10,2)"), "{:?}", track.columns);

    let before = snapshot(&db).await;
    let guard = SqlGuard::new(SqlDialect::Postgres).with_allowed_tables(&names);
    for sql in valid_corpus(&db).await {
        let guarded = guard.check(&sql).unwrap_or_else(|e| panic!("refused {sql:?}: {e}"));
        db.query(&guarded).await.unwrap_or_else(|e| panic!("{:?} failed: {e}", guarded.sql));
    }
    // Numbers, NULLs and text come back typed.
    let row = db
        .query(
            &guard
                .check("SELECT unitprice, composer, name, milliseconds FROM track WHERE trackid = 2")
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(row.rows[0], vec![json!(0.99), Value::Null, json!("Balls to the Wall"), json!(342_562)]);
    for sql in dangerous_corpus() {
        assert!(guard.check(&sql).is_err(), "accepted {sql:?}");
        // Writes fail in the read-only transaction even without the guard.
        if is_plain_write(&sql) {
            assert!(db.execute_unguarded(&sql).await.is_err(), "the read-only transaction ran {sql:?}");
        }
    }
    assert_eq!(snapshot(&db).await, before, "the PostgreSQL database changed");
    // statement_timeout stops a runaway query.
    let quick = SqlOptions { statement_timeout: Duration::from_millis(200), ..SqlOptions::default() };
    let db = SqlDatabase::connect_with(&url, quick).await.unwrap();
    let err = db.execute_unguarded("SELECT pg_sleep(5)").await.unwrap_err();
    assert!(err.to_string().contains("statement timeout"), "{err}");
}

#[tokio::test]
async fn sql_tools_return_refusals_and_errors_as_observations() {
    use catena::core::Tool;
    use catena::tools::SqlQueryTool;
    let Some(_) = fixture() else { return };
    let dir = tempfile::tempdir().unwrap();
    let db = SqlDatabase::connect(&chinook_sqlite(dir.path()).await).await.unwrap();
    let tool =
        SqlQueryTool::new(db, SqlGuard::new(SqlDialect::Sqlite).with_allowed_tables(TABLES).with_max_rows(3));
    let ctx = RunContext::new();
    let out = tool.call(json!({"sql": "SELECT Name FROM Artist ORDER BY ArtistId"}), &ctx).await.unwrap();
    assert_eq!(out.content, "Rows (3):\nName\nAC/DC\nAccept\nAerosmith");
    assert_eq!(out.artifact.unwrap()["rows"][0][0], json!("AC/DC"));
    let out = tool.call(json!({"sql": "DELETE FROM Artist"}), &ctx).await.unwrap();
    assert!(out.content.starts_with("Error: the query was refused: DELETE"), "{}", out.content);
    let out = tool.call(json!({"sql": "SELECT nope FROM Artist"}), &ctx).await.unwrap();
    assert!(out.content.contains("no such column: nope"), "{}", out.content);
    let err = tool.call(json!({"query": 1}), &ctx).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Tool, "{err}");
    assert!(err.to_string().contains("missing field `sql`"), "{err}");
}

#[tokio::test]
async fn the_text_to_sql_gold_set_passes_the_guard_and_returns_rows() {
    let Some(_) = fixture() else { return };
    let dir = tempfile::tempdir().unwrap();
    let db = SqlDatabase::connect(&chinook_sqlite(dir.path()).await).await.unwrap();
    let guard = SqlGuard::new(SqlDialect::Sqlite).with_allowed_tables(TABLES);
    let gold: Vec<Value> = serde_json::from_str(include_str!("data/chinook_questions.json")).unwrap();
    assert_eq!(gold.len(), 30);
    for item in &gold {
        let sql = item["sql"].as_str().unwrap();
        let result = db.query(&guard.check(sql).unwrap()).await.unwrap();
        assert!(!result.rows.is_empty() && result.rows.len() < 100, "{sql}: {} rows", result.rows.len());
        assert!(result.rows.iter().all(|r| r.iter().all(|c| !c.is_null())), "{sql}: NULL in the gold result");
    }
}

#[tokio::test]
async fn local_model_writes_valid_postgres_sql_under_the_schema_grammar() {
    let Some((_admin, url)) = chinook_postgres("catena_sql_grammar_test").await else { return };
    let db = SqlDatabase::connect(&url).await.unwrap();
    let model: Arc<dyn ChatModel> = Arc::new(catena::models::LlamaChatModel::load_default().await.unwrap());
    let chain = SqlQueryChain::new(model, db.clone())
        .await
        .unwrap()
        .with_constrained_decoding(true)
        .with_max_repairs(1);
    // The PostgreSQL grammar: lower-case folded names, EXTRACT for years.
    let grammar = catena::query::sql::select_grammar(chain.schema());
    assert!(
        grammar.contains(r#""EXTRACT(YEAR FROM ""#) && grammar.contains(r#""album.albumid""#),
        "{grammar}"
    );
    let guard = SqlGuard::new(SqlDialect::Postgres).with_allowed_tables(chain.schema().table_names());
    // A 135M model may still write SQL PostgreSQL rejects (a column missing from GROUP BY): what
    // the grammar guarantees is that no try is refused by the guard or lacks a query.
    match chain.query("How many invoices are there?", &RunContext::new()).await {
        Ok(answer) => {
            for attempt in &answer.attempts {
                let sql = attempt.query.as_deref().unwrap();
                assert!(guard.check(sql).is_ok(), "{sql:?}");
            }
        }
        Err(e) => {
            let message = e.to_string();
            assert_eq!(e.kind(), catena::core::ErrorKind::Parse, "{message}");
            assert!(!message.contains("refused") && !message.contains("no SQL query"), "{message}");
        }
    }
}
