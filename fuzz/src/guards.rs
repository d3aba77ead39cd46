//! The SQL guard (both dialects) and the Cypher guard: the gates between a model's query and a
//! database.

use catena_query::cypher::CypherGuard;
use catena_query::sql::{SqlDialect, SqlGuard};

/// Properties: deterministic; an accepted statement is a fixed point (checking the SQL that will
/// run gives that SQL again, reading the same tables) and its row cap holds; running it writes
/// nothing, witnessed by the database itself: a `query_only` scratch SQLite database for the
/// SQLite dialect, a read-only transaction on a real PostgreSQL server for the PostgreSQL one.
fn sql(data: &[u8], dialect: SqlDialect) {
    let text = crate::text(data);
    let guard = SqlGuard::new(dialect).with_max_rows(50);
    let first = guard.check(&text);
    let second = guard.check(&text);
    assert_eq!(first, second, "the guard decided differently twice");
    if let Ok(accepted) = first {
        assert!(accepted.limit <= 50, "row cap {} over 50", accepted.limit);
        let again = guard
            .check(&accepted.sql)
            .unwrap_or_else(|r| panic!("the guard refuses its own output {:?}: {r}", accepted.sql));
        assert_eq!(again.sql, accepted.sql, "the guard's output is not a fixed point");
        assert_eq!(again.tables, accepted.tables, "the tables read changed on a second check");
        let witnessed = match dialect {
            SqlDialect::Sqlite => crate::sqlite::sqlite_writes(&accepted.sql),
            SqlDialect::Postgres => crate::postgres::postgres_writes(&accepted.sql),
        };
        if let Some(write) = witnessed {
            panic!("the guard accepted {:?}, which writes: {write}", accepted.sql);
        }
    }
}

pub(crate) fn sql_sqlite(data: &[u8]) {
    sql(data, SqlDialect::Sqlite);
}

pub(crate) fn sql_postgres(data: &[u8]) {
    sql(data, SqlDialect::Postgres);
}

/// Clauses that write or load: never in clause position in a query the guard lets through.
const WRITES: &[&str] = &["CREATE", "MERGE", "DELETE", "DETACH", "SET", "REMOVE", "DROP", "FOREACH", "LOAD"];

/// Properties: deterministic; an accepted query is a fixed point; no write keyword stands in
/// clause position in what runs (an independent scanner: outside strings, backquoted names and
/// comments, not a property `n.set`, label `:SET`, parameter `$set` or map key `{set: 1}`).
pub(crate) fn cypher(data: &[u8]) {
    let text = crate::text(data);
    let guard = CypherGuard::new().with_max_rows(50);
    let first = guard.check(&text).map_err(|e| e.to_string());
    assert_eq!(first, guard.check(&text).map_err(|e| e.to_string()), "the guard decided differently twice");
    let Ok(accepted) = first else { return };
    assert!(accepted.limit <= 50, "row cap {} over 50", accepted.limit);
    if let Some(word) = write_in_clause_position(&accepted.query) {
        panic!("the guard let {word:?} through in {:?}", accepted.query);
    }
    let again = guard
        .check(&accepted.query)
        .unwrap_or_else(|r| panic!("the guard refuses its own output {:?}: {r}", accepted.query));
    assert_eq!(again.query, accepted.query, "the guard's output is not a fixed point");
}

/// The first write keyword in clause position, by a scanner written apart from the guard's lexer.
fn write_in_clause_position(query: &str) -> Option<String> {
    let chars: Vec<char> = query.chars().collect();
    let at = |i: usize| chars.get(i).copied();
    let mut i = 0;
    let mut previous: Option<char> = None;
    while let Some(c) = at(i) {
        match c {
            '\'' | '"' | '`' => {
                i += 1;
                while let Some(d) = at(i) {
                    i += 1;
                    if d == '\\' && c != '`' {
                        i += 1;
                    } else if d == c {
                        break;
                    }
                }
                previous = Some(c);
            }
            '/' if at(i + 1) == Some('/') => {
                while at(i).is_some_and(|d| d != '\n') {
                    i += 1;
                }
            }
            '/' if at(i + 1) == Some('*') => {
                i += 2;
                while at(i).is_some() && !(at(i) == Some('*') && at(i + 1) == Some('/')) {
                    i += 1;
                }
                i += 2;
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while at(i).is_some_and(|d| d.is_alphanumeric() || d == '_') {
                    i += 1;
                }
                let word: String = chars.get(start..i).unwrap_or_default().iter().collect();
                let next = chars.get(i..).unwrap_or_default().iter().find(|d| !d.is_whitespace()).copied();
                let data_position = matches!(previous, Some('.' | ':' | '$')) || next == Some(':');
                if !data_position && WRITES.iter().any(|w| w.eq_ignore_ascii_case(&word)) {
                    return Some(word);
                }
                previous = Some('a');
            }
            c if c.is_whitespace() => i += 1,
            c => {
                previous = Some(c);
                i += 1;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::write_in_clause_position;

    #[test]
    fn the_scanner_finds_clauses_and_skips_data() {
        assert_eq!(write_in_clause_position("MATCH (n) DETACH DELETE n").as_deref(), Some("DETACH"));
        assert_eq!(write_in_clause_position("MATCH (n) SET n.x = 1").as_deref(), Some("SET"));
        for data in [
            "MATCH (n) RETURN n.set, n.delete",
            "MATCH (n:CREATE)-[:SET]->(m) RETURN m",
            "RETURN {delete: 1}, $merge, 'DROP', `remove` // create",
            "RETURN 1 /* MERGE */",
        ] {
            assert_eq!(write_in_clause_position(data), None, "{data}");
        }
    }
}
