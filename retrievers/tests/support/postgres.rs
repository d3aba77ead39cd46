//! A database of its own in the PostgreSQL server `scripts/with-postgres.sh` started
//! (`CATENA_PG_URL`), for the tests and benchmarks that need one (included with `#[path]`).

/// Drops and creates database `name`; returns its URL. `None` when the tests run without a
/// server and do not require one (`CATENA_REQUIRE_DATA` unset); with it set, a missing server
/// fails the test.
#[allow(dead_code)]
pub(crate) async fn fresh_database(name: &str) -> Option<String> {
    let Ok(admin) = std::env::var("CATENA_PG_URL") else {
        assert!(
            std::env::var_os("CATENA_REQUIRE_DATA").is_none(),
            "CATENA_PG_URL is not set; run the tests through scripts/with-postgres.sh"
        );
        eprintln!("CATENA_PG_URL not set (scripts/with-postgres.sh): PostgreSQL tests skipped");
        return None;
    };
    let server = sqlx::PgPool::connect(&admin).await.expect("the server of scripts/with-postgres.sh");
    for statement in
        [format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"), format!("CREATE DATABASE {name}")]
    {
        sqlx::query(sqlx::AssertSqlSafe(statement)).execute(&server).await.expect("a fresh database");
    }
    let (base, _) = admin.rsplit_once('/').expect("a URL ending in /DATABASE");
    Some(format!("{base}/{name}"))
}
