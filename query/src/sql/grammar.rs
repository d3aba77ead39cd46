//! A GBNF grammar, built from a schema, that admits only `SELECT` statements over its real
//! tables and columns. A local llama.cpp model decoding under it cannot misspell a column, invent
//! a table or wander into prose; it can still write a query that does not answer the question.
//!
//! The grammar covers the subset of SQL that questions over one database usually need:
//! `SELECT [DISTINCT]` up to four columns, aggregates (`COUNT`, `SUM`, `AVG`, `MIN`, `MAX`), year
//! extraction (dialect-specific) or arithmetic between them, with aliases (no bare literals in
//! the list: small models otherwise pad it with numbers); `FROM` one table, or one table joined to
//! a neighbour on their foreign key; `WHERE` conditions (comparisons, `LIKE`, `IN`, `BETWEEN`,
//! `IS [NOT] NULL`) joined by `AND`/`OR`; `GROUP BY`, `HAVING`, `ORDER BY ... ASC|DESC`, `LIMIT`.
//! Subqueries, CTEs, window functions and multi-way joins are outside it; models strong enough
//! to write those run unconstrained.

use super::guard::SqlDialect;
use super::schema::{Schema, TableInfo};

/// An identifier as SQL text: bare when it is a plain word, double-quoted otherwise.
fn sql_ident(name: &str) -> String {
    let plain = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain { name.to_owned() } else { format!("\"{}\"", name.replace('"', "\"\"")) }
}

/// A GBNF string literal for `text`.
fn literal(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn alternatives(items: impl IntoIterator<Item = String>) -> String {
    let items: Vec<String> = items.into_iter().collect();
    if items.is_empty() { "\"\"".to_owned() } else { items.join(" | ") }
}

/// The rules of one query shape: `FROM` clause text and the columns it makes available.
fn query_rules(id: &str, from: &str, columns: Vec<String>, year: (&str, &str)) -> Vec<String> {
    let (year_open, year_close) = year;
    vec![
        format!(
            "q{id} ::= \"SELECT \" (\"DISTINCT \")? items{id} {} where{id}? group{id}? having{id}? order{id}? limit?",
            literal(from)
        ),
        format!("col{id} ::= {}", alternatives(columns)),
        format!("items{id} ::= item{id} (\", \" item{id}){{0,3}}"),
        format!("item{id} ::= sel{id} (\" AS \" alias)?"),
        format!("sel{id} ::= pick{id} (arith pick{id})?"),
        format!(
            "pick{id} ::= agg \"(\" (\"DISTINCT \")? col{id} \")\" | \"COUNT(*)\" | {year_open} col{id} {year_close} | col{id}"
        ),
        format!("term{id} ::= pick{id} | value"),
        format!("expr{id} ::= term{id} (arith term{id})?"),
        format!(
            "cond{id} ::= expr{id} \" \" cmp \" \" expr{id} | expr{id} \" LIKE \" string | expr{id} (\" NOT\")? \" IN (\" value (\", \" value){{0,9}} \")\" | expr{id} \" BETWEEN \" value \" AND \" value | expr{id} \" IS \" (\"NOT \")? \"NULL\""
        ),
        format!("where{id} ::= \" WHERE \" cond{id} (logic cond{id}){{0,4}}"),
        format!("having{id} ::= \" HAVING \" cond{id} (logic cond{id}){{0,2}}"),
        format!("group{id} ::= \" GROUP BY \" col{id} (\", \" col{id}){{0,3}}"),
        format!("order{id} ::= \" ORDER BY \" key{id} (\", \" key{id}){{0,2}}"),
        format!("key{id} ::= (sel{id} | alias) (\" ASC\" | \" DESC\")?"),
    ]
}

/// The grammar for `schema` (root rule `root`).
///
/// One alternative per table and per join it can make: a query reads one table, or one table
/// joined to a table its foreign keys connect it to, on those key columns
/// (`FROM Track JOIN Genre ON Track.GenreId = Genre.GenreId`). Each alternative may name only the
/// columns of the tables in its `FROM` (qualified, or bare where that is unambiguous), so joins
/// are always on real keys and every column is in scope.
#[must_use]
pub fn select_grammar(schema: &Schema) -> String {
    let year = match schema.dialect {
        SqlDialect::Sqlite => ("\"strftime('%Y', \"", "\")\""),
        SqlDialect::Postgres => ("\"EXTRACT(YEAR FROM \"", "\")\""),
    };
    let qualify = |t: &str, c: &str| literal(&format!("{}.{}", sql_ident(t), sql_ident(c)));
    let mut queries: Vec<String> = Vec::new();
    let mut rules: Vec<String> = Vec::new();
    for (i, table) in schema.tables.iter().enumerate().filter(|(_, t)| !t.columns.is_empty()) {
        let name = sql_ident(&table.name);
        // Joins: tables this one references, and tables that reference it, on the key columns.
        let mut joins: Vec<(&TableInfo, String)> = Vec::new();
        for fk in &table.foreign_keys {
            let other = schema.tables.iter().find(|t| t.name == fk.ref_table);
            if let (Some(other), Some(c), Some(r)) = (other, fk.columns.first(), fk.ref_columns.first()) {
                let on = format!("{}.{} = {}.{}", name, sql_ident(c), sql_ident(&other.name), sql_ident(r));
                joins.push((other, on));
            }
        }
        for other in schema.tables.iter().filter(|o| o.name != table.name) {
            for fk in other.foreign_keys.iter().filter(|fk| fk.ref_table == table.name) {
                if let (Some(c), Some(r)) = (fk.columns.first(), fk.ref_columns.first()) {
                    let on =
                        format!("{}.{} = {}.{}", sql_ident(&other.name), sql_ident(c), name, sql_ident(r));
                    joins.push((other, on));
                }
            }
        }
        let own = |exclude: &[&str]| -> Vec<String> {
            table
                .columns
                .iter()
                .flat_map(|c| {
                    let bare = (!exclude.contains(&c.name.as_str())).then(|| literal(&sql_ident(&c.name)));
                    bare.into_iter().chain([qualify(&table.name, &c.name)])
                })
                .collect()
        };
        let id = format!("{i}");
        rules.extend(query_rules(&id, &format!(" FROM {name}"), own(&[]), year));
        queries.push(format!("q{id}"));
        for (j, (other, on)) in joins.iter().enumerate() {
            let shared: Vec<&str> = other.columns.iter().map(|c| c.name.as_str()).collect();
            let mut columns = own(&shared);
            columns.extend(other.columns.iter().map(|c| qualify(&other.name, &c.name)));
            let id = format!("{i}j{j}");
            let from = format!(" FROM {name} JOIN {} ON {on}", sql_ident(&other.name));
            rules.extend(query_rules(&id, &from, columns, year));
            queries.push(format!("q{id}"));
        }
    }
    let mut grammar = vec![format!("root ::= {}", alternatives(queries))];
    grammar.extend(rules);
    grammar.extend(
        [
            "alias ::= [a-z] [a-z0-9_]{0,24}",
            "logic ::= \" AND \" | \" OR \"",
            "cmp ::= \"=\" | \"<>\" | \"<\" | \"<=\" | \">\" | \">=\"",
            "limit ::= \" LIMIT \" [1-9] [0-9]{0,3}",
            "arith ::= \" + \" | \" - \" | \" * \" | \" / \"",
            "agg ::= \"COUNT\" | \"SUM\" | \"AVG\" | \"MIN\" | \"MAX\"",
            "value ::= number | string",
            "number ::= \"-\"? [0-9]{1,10} (\".\" [0-9]{1,6})?",
            "string ::= \"'\" [^'\\n]{0,80} \"'\"",
        ]
        .map(str::to_owned),
    );
    grammar.join("\n") + "\n"
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::sql::{ColumnInfo, ForeignKey, TableInfo};

    fn table(name: &str, columns: &[&str], fks: Vec<ForeignKey>) -> TableInfo {
        TableInfo {
            name: name.to_owned(),
            columns: columns
                .iter()
                .map(|c| ColumnInfo { name: (*c).to_owned(), data_type: "INTEGER".into(), nullable: false })
                .collect(),
            primary_key: vec![],
            foreign_keys: fks,
            indexes: vec![],
            sample_rows: vec![],
            description: None,
        }
    }

    #[test]
    fn one_alternative_per_table_and_join_with_only_in_scope_columns() {
        let fk = ForeignKey {
            columns: vec!["GenreId".into()],
            ref_table: "Genre".into(),
            ref_columns: vec!["GenreId".into()],
        };
        let schema = Schema {
            dialect: SqlDialect::Sqlite,
            tables: vec![
                table("Genre", &["GenreId", "Name"], vec![]),
                table("Track", &["TrackId", "GenreId", "Play Count"], vec![fk]),
            ],
        };
        let g = select_grammar(&schema);
        assert!(g.starts_with("root ::= q0 | q0j0 | q1 | q1j0\n"), "{g}");
        assert!(
            g.contains(r#"items1j0 " FROM Track JOIN Genre ON Track.GenreId = Genre.GenreId" where1j0?"#),
            "{g}"
        );
        assert!(
            g.contains(r#"items0j0 " FROM Genre JOIN Track ON Track.GenreId = Genre.GenreId" where0j0?"#),
            "{g}"
        );
        let rule = |name: &str| g.lines().find(|l| l.starts_with(&format!("{name} ::="))).unwrap().to_owned();
        // Alone, Track names its own columns only (quoted where needed).
        let alone = rule("col1");
        assert!(alone.contains(r#""\"Play Count\"""#) && !alone.contains("Genre."), "{alone}");
        // Joined, Genre's columns are in scope, qualified; the shared bare name is not.
        let joined = rule("col1j0");
        assert!(joined.contains(r#""Genre.Name""#) && joined.contains(r#""Track.GenreId""#), "{joined}");
        assert!(!joined.contains(r#" "GenreId""#), "ambiguous bare column: {joined}");
        assert!(rule("pick0").contains(r#""strftime('%Y', " col0 ")""#), "{g}");
    }
}
