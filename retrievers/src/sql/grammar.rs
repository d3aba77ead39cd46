//! A GBNF grammar, built from a schema, that admits only `SELECT` statements over its real
//! tables and columns. A local llama.cpp model decoding under it cannot misspell a column, invent
//! a table or wander into prose; it can still write a query that does not answer the question.
//!
//! The grammar covers the subset of SQL that questions over one database usually need:
//! `SELECT [DISTINCT]` expressions with aliases, aggregates (`COUNT`, `SUM`, `AVG`, `MIN`, `MAX`),
//! arithmetic, year extraction (dialect-specific), `FROM` one table with `JOIN ... ON` equalities,
//! `WHERE` conditions (comparisons, `LIKE`, `IN`, `BETWEEN`, `IS [NOT] NULL`) joined by
//! `AND`/`OR`, `GROUP BY`, `HAVING`, `ORDER BY ... ASC|DESC` and `LIMIT`. Subqueries, CTEs and
//! window functions are outside it; models that write them run unconstrained (remote models).

use super::guard::SqlDialect;
use super::schema::Schema;

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

/// The grammar for `schema` (root rule `root`).
#[must_use]
pub fn select_grammar(schema: &Schema) -> String {
    let tables = alternatives(schema.tables.iter().map(|t| literal(&sql_ident(&t.name))));
    let mut column_names: Vec<String> =
        schema.tables.iter().flat_map(|t| t.columns.iter().map(|c| sql_ident(&c.name))).collect();
    column_names.sort();
    column_names.dedup();
    let bare = alternatives(column_names.iter().map(|c| literal(c)));
    let qualified = alternatives(schema.tables.iter().filter(|t| !t.columns.is_empty()).map(|t| {
        let cols = alternatives(t.columns.iter().map(|c| literal(&sql_ident(&c.name))));
        format!("{} \".\" ({cols})", literal(&sql_ident(&t.name)))
    }));
    let year = match schema.dialect {
        SqlDialect::Sqlite => r#""strftime('%Y', " column ")""#,
        SqlDialect::Postgres => r#""EXTRACT(YEAR FROM " column ")""#,
    };
    format!(
        r#"root ::= "SELECT " ("DISTINCT ")? items " FROM " table join* where? group? having? order? limit?
items ::= item (", " item)*
item ::= expr (" AS " alias)?
alias ::= [a-z] [a-z0-9_]{{0,24}}
join ::= " JOIN " table " ON " column " = " column
where ::= " WHERE " cond (logic cond)*
having ::= " HAVING " cond (logic cond)*
logic ::= " AND " | " OR "
cond ::= expr " " cmp " " expr | expr " LIKE " string | expr (" NOT")? " IN (" value (", " value)* ")" | expr " BETWEEN " value " AND " value | expr " IS " ("NOT ")? "NULL"
cmp ::= "=" | "<>" | "<" | "<=" | ">" | ">="
group ::= " GROUP BY " column (", " column)*
order ::= " ORDER BY " key (", " key)*
key ::= (expr | alias) (" ASC" | " DESC")?
limit ::= " LIMIT " [1-9] [0-9]{{0,3}}
expr ::= term (arith term)?
arith ::= " + " | " - " | " * " | " / "
term ::= agg "(" ("DISTINCT ")? column ")" | "COUNT(*)" | year | column | value
agg ::= "COUNT" | "SUM" | "AVG" | "MIN" | "MAX"
year ::= {year}
column ::= qualified | bare
qualified ::= {qualified}
bare ::= {bare}
table ::= {tables}
value ::= number | string
number ::= "-"? [0-9]{{1,10}} ("." [0-9]{{1,6}})?
string ::= "'" [^'\n]{{0,80}} "'"
"#
    )
}
