//! The read-only SQL guard: sqlparser's syntax tree walked, refusals, the LIMIT cap.

use std::collections::BTreeSet;
use std::fmt;
use std::ops::ControlFlow;

use catena_core::Error;
use sqlparser::ast::{
    Expr, LimitClause, ObjectName, ObjectNamePart, Query, SetExpr, Statement, TableFactor, Value, Visit,
    Visitor,
};
use sqlparser::dialect::{Dialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

/// The SQL dialect a statement is parsed and rendered in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SqlDialect {
    /// SQLite 3.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

impl SqlDialect {
    fn parser_dialect(self) -> Box<dyn Dialect> {
        match self {
            Self::Sqlite => Box::new(SQLiteDialect {}),
            Self::Postgres => Box::new(PostgreSqlDialect {}),
        }
    }

    /// The name used in prompts and on the command line (`SQLite`, `PostgreSQL`).
    #[must_use]
    pub fn display_name(self) -> &'static str {
        match self {
            Self::Sqlite => "SQLite",
            Self::Postgres => "PostgreSQL",
        }
    }
}

impl std::str::FromStr for SqlDialect {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s.to_ascii_lowercase().as_str() {
            "sqlite" | "sqlite3" => Ok(Self::Sqlite),
            "postgres" | "postgresql" | "pg" => Ok(Self::Postgres),
            other => {
                Err(Error::invalid_input(format!("unknown SQL dialect {other:?}; use sqlite or postgres")))
            }
        }
    }
}

impl fmt::Display for SqlDialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.display_name())
    }
}

/// Why the guard refused a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejectReason {
    /// The text is empty or only comments.
    Empty,
    /// The text does not parse in the dialect.
    Syntax,
    /// More than one statement.
    MultipleStatements,
    /// A statement that is not a query (DDL, DML, `PRAGMA`, `ATTACH`, `COPY`, `SET`, ...).
    NotAQuery,
    /// A write inside a query (a data-modifying CTE, `SELECT ... INTO`).
    Write,
    /// `FOR UPDATE` / `FOR SHARE`.
    Locking,
    /// A function that administers the server or has side effects.
    ForbiddenFunction,
    /// A system catalog.
    SystemTable,
    /// A table outside the allow-list.
    TableNotAllowed,
}

/// A refusal from [`SqlGuard::check`]: the reason, and a message a person (or the model, during
/// repair) can act on. Converts into [`catena_core::Error::InvalidInput`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// What kind of refusal.
    pub reason: RejectReason,
    /// What was refused and why.
    pub message: String,
}

impl Rejection {
    fn new(reason: RejectReason, message: impl Into<String>) -> Self {
        Self { reason, message: message.into() }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Rejection {}

impl From<Rejection> for Error {
    fn from(r: Rejection) -> Self {
        Error::invalid_input(format!("SQL refused: {}", r.message))
    }
}

/// A statement the guard accepted: the SQL to run (re-rendered, with its `LIMIT`), the tables it
/// reads and the row cap it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardedSql {
    /// The statement to execute.
    pub sql: String,
    /// The tables it reads (lowercase, without schema), CTE names excluded.
    pub tables: BTreeSet<String>,
    /// The `LIMIT` of the outermost query after capping.
    pub limit: u64,
}

/// The read-only SQL guard: parses a model's SQL and lets through only what cannot change anything.
///
/// ```
/// use catena_query::sql::{SqlDialect, SqlGuard};
///
/// let guard = SqlGuard::new(SqlDialect::Sqlite).with_max_rows(50);
/// let ok = guard.check("SELECT Name FROM Artist -- the artists").unwrap();
/// assert_eq!(ok.sql, "SELECT Name FROM Artist LIMIT 50");
/// assert!(guard.check("SELECT 1; DROP TABLE Artist").is_err());
/// assert!(guard.check("WITH gone AS (DELETE FROM Artist RETURNING *) SELECT * FROM gone").is_err());
/// ```
///
/// The guard does not look for bad words in the text; it parses the statement with
/// [`sqlparser`] and walks the syntax tree. What reaches the database is the statement as the
/// guard re-renders it from that tree, never the original text: comments, trailing statements
/// and anything the parser ignored are gone by construction.
///
/// A statement passes when it is exactly one query (`SELECT`, `WITH`, `UNION`/`INTERSECT`/
/// `EXCEPT`, subqueries, window functions, `VALUES`) and nothing inside it
/// - writes: `INSERT`/`UPDATE`/`DELETE`/`MERGE`, even inside a CTE (PostgreSQL allows
///   `WITH x AS (DELETE ... RETURNING *)`), or `SELECT ... INTO`;
/// - locks rows (`FOR UPDATE`/`FOR SHARE`);
/// - calls an administrative or side-effecting function (`pg_*`, `lo_*`, `dblink*`,
///   `set_config`, `nextval`, `load_extension`, `readfile`, ...);
/// - reads a system catalog (`pg_catalog`, `information_schema`, `sqlite_master`, ...);
/// - names a table outside the allow-list, when there is one (CTE names are always allowed).
///
/// Everything else (DDL, `PRAGMA`, `ATTACH`, `COPY`, `SET`, transactions, `EXPLAIN`, several
/// statements) is not a query and is refused. Finally the outermost query gets a `LIMIT`: added
/// when missing, lowered when above the cap, replaced when it is not a plain number.
///
/// The database connection is read-only as well ([`SqlDatabase`](super::SqlDatabase)); the guard
/// is what turns a dangerous statement into a clear refusal instead of a database error.
#[derive(Debug, Clone)]
pub struct SqlGuard {
    dialect: SqlDialect,
    allowed_tables: Option<BTreeSet<String>>,
    max_rows: u64,
}

/// Most levels of parentheses a statement may nest (see [`SqlGuard::check`]).
const MAX_PAREN_DEPTH: usize = 16;

/// The deepest nesting of parentheses among `tokens` (so strings, quoted names and comments,
/// which are single tokens, do not count).
fn paren_depth(tokens: &[TokenWithSpan]) -> usize {
    let mut depth = 0usize;
    let mut deepest = 0usize;
    for t in tokens {
        match t.token {
            Token::LParen => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            Token::RParen => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Function names (lowercase) that administer the server, touch files or have side effects.
const FORBIDDEN_FUNCTIONS: &[&str] = &[
    // PostgreSQL: settings, sequences, advisory locks, files, large objects, remote servers, sleeping.
    "set_config",
    "current_setting",
    "nextval",
    "setval",
    "currval",
    "lastval",
    "query_to_xml",
    "query_to_xml_and_xmlschema",
    "table_to_xml",
    "database_to_xml",
    "cursor_to_xml",
    "txid_current",
    "dblink",
    "copy",
    // SQLite: extensions, files, editing, tokenizer pointers.
    "load_extension",
    "readfile",
    "writefile",
    "edit",
    "fts3_tokenizer",
    "sqlite_compileoption_get",
];

/// Function name prefixes refused (PostgreSQL's admin and file functions, large objects, dblink).
const FORBIDDEN_PREFIXES: &[&str] = &["pg_", "lo_", "dblink"];

/// Schemas and tables that describe the database itself.
const SYSTEM_SCHEMAS: &[&str] = &["pg_catalog", "information_schema", "pg_toast", "sqlite_temp"];
const SYSTEM_TABLE_PREFIXES: &[&str] = &["pg_", "sqlite_"];

impl SqlGuard {
    /// A guard for `dialect` with no table allow-list and a 100-row cap.
    #[must_use]
    pub fn new(dialect: SqlDialect) -> Self {
        Self { dialect, allowed_tables: None, max_rows: 100 }
    }

    /// Only these tables may be read (compared case-insensitively, without schema).
    #[must_use]
    pub fn with_allowed_tables<I, S>(mut self, tables: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.allowed_tables = Some(tables.into_iter().map(|t| t.as_ref().to_lowercase()).collect());
        self
    }

    /// The most rows a statement may return (its `LIMIT` is added or lowered to this). At least 1.
    #[must_use]
    pub fn with_max_rows(mut self, max_rows: u64) -> Self {
        self.max_rows = max_rows.max(1);
        self
    }

    /// The dialect statements are parsed in.
    #[must_use]
    pub fn dialect(&self) -> SqlDialect {
        self.dialect
    }

    /// The row cap.
    #[must_use]
    pub fn max_rows(&self) -> u64 {
        self.max_rows
    }

    /// Checks one statement; returns the SQL to run, or why not.
    pub fn check(&self, sql: &str) -> Result<GuardedSql, Rejection> {
        if sql.contains('\0') {
            return Err(Rejection::new(RejectReason::Syntax, "the statement contains a NUL byte"));
        }
        let dialect = self.dialect.parser_dialect();
        let syntax = |e: ParserError| {
            Rejection::new(
                RejectReason::Syntax,
                format!("not valid {} SQL: {e}", self.dialect.display_name()),
            )
        };
        let tokens = Tokenizer::new(dialect.as_ref(), sql)
            .tokenize_with_location()
            .map_err(|e| syntax(ParserError::from(e)))?;
        // sqlparser tries a parenthesised subquery before an expression at every `(` and parses
        // the inside again when the first reading fails, so its time doubles with each level:
        // 40 unclosed parentheses took seconds (found by fuzzing). Real queries nest far less.
        let depth = paren_depth(&tokens);
        if depth > MAX_PAREN_DEPTH {
            return Err(Rejection::new(
                RejectReason::Syntax,
                format!(
                    "parentheses nested {depth} deep; at most {MAX_PAREN_DEPTH} levels are accepted, so \
                     write deep expressions as CTEs"
                ),
            ));
        }
        let mut statements = Parser::new(dialect.as_ref())
            .with_tokens_with_locations(tokens)
            .parse_statements()
            .map_err(syntax)?;
        let statement = match statements.len() {
            0 => return Err(Rejection::new(RejectReason::Empty, "there is no SQL statement")),
            1 => statements.pop(),
            n => {
                return Err(Rejection::new(
                    RejectReason::MultipleStatements,
                    format!("{n} statements; only one SELECT query is allowed"),
                ));
            }
        };
        let Some(Statement::Query(mut query)) = statement else {
            let kind = statement.as_ref().map(statement_kind).unwrap_or("empty");
            return Err(Rejection::new(
                RejectReason::NotAQuery,
                format!("{kind} is not allowed; only read-only SELECT queries are"),
            ));
        };
        let mut walker = Walker { guard: self, ctes: BTreeSet::new(), tables: BTreeSet::new() };
        if let ControlFlow::Break(rejection) = query.visit(&mut walker) {
            return Err(rejection);
        }
        let limit = self.cap_limit(&mut query);
        let sql = query.to_string();
        // What runs must be what was checked: the SQL sent is sqlparser's rendering of the checked
        // tree, so it must read back as that same statement. (Found by fuzzing: sqlparser misreads
        // runs of escaped quotes in a quoted name, and the rendering read back as another name.)
        let reread = Parser::new(dialect.as_ref())
            .try_with_sql(&sql)
            .and_then(|mut p| p.parse_statements())
            .ok()
            .map(|statements| statements.iter().map(ToString::to_string).collect::<Vec<_>>());
        if reread.as_deref() != Some(std::slice::from_ref(&sql)) {
            return Err(Rejection::new(
                RejectReason::Syntax,
                "the statement does not read back the same after rewriting (a quoted name with an \
                 escaped quote inside?); write it with plain names",
            ));
        }
        Ok(GuardedSql { sql, tables: walker.tables, limit })
    }

    /// Adds a `LIMIT` to the outermost query, or lowers the one there; returns the limit.
    fn cap_limit(&self, query: &mut Query) -> u64 {
        let cap = self.max_rows;
        if let SetExpr::Values(values) = query.body.as_ref() {
            // Literal rows: bounded by the text itself, and SQLite takes no LIMIT after VALUES.
            return u64::try_from(values.rows.len()).unwrap_or(u64::MAX);
        }
        let capped = |existing: Option<&Expr>| -> u64 {
            match existing {
                Some(Expr::Value(v)) => match &v.value {
                    Value::Number(n, _) => n.parse::<u64>().map_or(cap, |n| n.min(cap)),
                    _ => cap,
                },
                _ => cap,
            }
        };
        let number = |n: u64| Expr::value(Value::Number(n.to_string(), false));
        match &mut query.limit_clause {
            Some(LimitClause::LimitOffset { limit, .. }) => {
                let n = capped(limit.as_ref());
                *limit = Some(number(n));
                n
            }
            Some(LimitClause::OffsetCommaLimit { limit, .. }) => {
                let n = capped(Some(limit));
                *limit = number(n);
                n
            }
            None => {
                query.limit_clause = Some(LimitClause::LimitOffset {
                    limit: Some(number(cap)),
                    offset: None,
                    limit_by: vec![],
                });
                cap
            }
        }
    }
}

/// A short name for a statement kind, for refusals.
fn statement_kind(statement: &Statement) -> &'static str {
    match statement {
        Statement::Insert(_) => "INSERT",
        Statement::Update { .. } => "UPDATE",
        Statement::Delete(_) => "DELETE",
        Statement::Merge { .. } => "MERGE",
        Statement::CreateTable(_) | Statement::CreateView { .. } | Statement::CreateIndex(_) => "CREATE",
        Statement::Drop { .. } => "DROP",
        Statement::AlterTable { .. } => "ALTER",
        Statement::Truncate { .. } => "TRUNCATE",
        Statement::Pragma { .. } => "PRAGMA",
        Statement::AttachDatabase { .. } | Statement::AttachDuckDBDatabase { .. } => "ATTACH",
        Statement::Copy { .. } => "COPY",
        Statement::Explain { .. } | Statement::ExplainTable { .. } => "EXPLAIN",
        Statement::Grant { .. } | Statement::Revoke { .. } => "GRANT/REVOKE",
        Statement::StartTransaction { .. } | Statement::Commit { .. } | Statement::Rollback { .. } => {
            "a transaction statement"
        }
        Statement::Set(_) => "SET",
        Statement::Call(_) => "CALL",
        _ => "this statement",
    }
}

/// The last part of a name, unquoted and lowercased, and the schema part if any.
fn split_name(name: &ObjectName) -> (Option<String>, String) {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(ident) => ident.value.to_lowercase(),
            ObjectNamePart::Function(f) => f.name.value.to_lowercase(),
        })
        .collect();
    let last = parts.last().cloned().unwrap_or_default();
    let schema = parts.len().checked_sub(2).and_then(|i| parts.get(i).cloned());
    (schema, last)
}

struct Walker<'a> {
    guard: &'a SqlGuard,
    ctes: BTreeSet<String>,
    tables: BTreeSet<String>,
}

impl Walker<'_> {
    fn check_function(&self, name: &ObjectName) -> ControlFlow<Rejection> {
        let (schema, func) = split_name(name);
        let forbidden = FORBIDDEN_FUNCTIONS.contains(&func.as_str())
            || FORBIDDEN_PREFIXES.iter().any(|p| func.starts_with(p))
            || schema.as_deref().is_some_and(|s| SYSTEM_SCHEMAS.contains(&s));
        if forbidden {
            return ControlFlow::Break(Rejection::new(
                RejectReason::ForbiddenFunction,
                format!("function {name} is not allowed (administrative or side effects)"),
            ));
        }
        ControlFlow::Continue(())
    }

    fn check_relation(&mut self, name: &ObjectName) -> ControlFlow<Rejection> {
        let (schema, table) = split_name(name);
        if schema.is_none() && self.ctes.contains(&table) {
            return ControlFlow::Continue(());
        }
        let system = schema.as_deref().is_some_and(|s| SYSTEM_SCHEMAS.contains(&s) || s.starts_with("pg_"))
            || SYSTEM_TABLE_PREFIXES.iter().any(|p| table.starts_with(p));
        if system {
            return ControlFlow::Break(Rejection::new(
                RejectReason::SystemTable,
                format!("{name} is a system catalog; query the application's tables"),
            ));
        }
        if let Some(allowed) = &self.guard.allowed_tables
            && !allowed.contains(&table)
        {
            let list: Vec<&str> = allowed.iter().map(String::as_str).collect();
            return ControlFlow::Break(Rejection::new(
                RejectReason::TableNotAllowed,
                format!("table {name} is not available; the tables are: {}", list.join(", ")),
            ));
        }
        self.tables.insert(table);
        ControlFlow::Continue(())
    }
}

fn body_write(body: &SetExpr) -> Option<&'static str> {
    match body {
        SetExpr::Insert(_) => Some("INSERT"),
        SetExpr::Update(_) => Some("UPDATE"),
        SetExpr::Delete(_) => Some("DELETE"),
        SetExpr::Merge(_) => Some("MERGE"),
        SetExpr::SetOperation { left, right, .. } => body_write(left).or_else(|| body_write(right)),
        SetExpr::Select(select) if select.into.is_some() => Some("SELECT ... INTO"),
        SetExpr::Select(_) | SetExpr::Query(_) | SetExpr::Values(_) | SetExpr::Table(_) => None,
    }
}

impl Visitor for Walker<'_> {
    type Break = Rejection;

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<Rejection> {
        if let Some(write) = body_write(&query.body) {
            return ControlFlow::Break(Rejection::new(
                RejectReason::Write,
                format!("{write} inside a query writes data; only reads are allowed"),
            ));
        }
        if !query.locks.is_empty() {
            return ControlFlow::Break(Rejection::new(
                RejectReason::Locking,
                "FOR UPDATE/FOR SHARE locks rows; remove the locking clause",
            ));
        }
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                self.ctes.insert(cte.alias.name.value.to_lowercase());
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<Rejection> {
        // Statements nested in a query (a CTE's DML) are writes; the top-level query is a Query.
        if matches!(statement, Statement::Query(_)) {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break(Rejection::new(
                RejectReason::Write,
                format!("{} inside a query is not allowed", statement_kind(statement)),
            ))
        }
    }

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<Rejection> {
        self.check_relation(relation)
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<Rejection> {
        match factor {
            // A table-valued function (`FROM generate_series(1, 3)`, `FROM pg_ls_dir('.')`).
            TableFactor::Table { name, args: Some(_), .. } | TableFactor::Function { name, .. } => {
                self.check_function(name)
            }
            _ => ControlFlow::Continue(()),
        }
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<Rejection> {
        match expr {
            Expr::Function(function) => self.check_function(&function.name),
            _ => ControlFlow::Continue(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_parentheses_are_refused_before_parsing_and_real_nesting_passes() {
        let guard = SqlGuard::new(SqlDialect::Postgres);
        // The fuzzer's input: unclosed parentheses 40 deep took seconds in sqlparser.
        let deep = format!("SELECT {}1", "(".repeat(40));
        let refused = guard.check(&deep).unwrap_err();
        assert!(refused.to_string().contains("nested 40 deep"), "{refused}");
        let closed = format!("SELECT {}1{}", "(".repeat(17), ")".repeat(17));
        assert!(guard.check(&closed).is_err());
        // Sixteen levels, and parentheses inside strings, quoted names and comments, pass.
        let fine = format!("SELECT {}1{} AS x", "(".repeat(16), ")".repeat(16));
        assert!(guard.check(&fine).is_ok(), "{:?}", guard.check(&fine));
        let quoted = format!("SELECT '{}' AS \"{}\" -- {}", "(".repeat(40), "(".repeat(40), "(".repeat(40));
        assert!(guard.check(&quoted).is_ok(), "{:?}", guard.check(&quoted));
    }
}
