//! The read-only Cypher reader: clauses, procedures and the LIMIT cap.

use super::corrector::{RelationshipPattern, correct_directions};
use super::lexer::{CypherRejectReason, CypherRejection, Kind, Token, render, tokenize};

const WRITE_CLAUSES: &[&str] = &["CREATE", "MERGE", "DELETE", "DETACH", "SET", "REMOVE", "DROP", "FOREACH"];
const ADMIN_COMMANDS: &[&str] =
    &["GRANT", "DENY", "REVOKE", "ALTER", "START", "STOP", "SHOW", "USE", "TERMINATE"];

/// Procedures a read-only query may call (lowercase): schema introspection and index search.
const READ_PROCEDURES: &[&str] = &[
    "db.labels",
    "db.relationshiptypes",
    "db.propertykeys",
    "db.schema.visualization",
    "db.schema.nodetypeproperties",
    "db.schema.reltypeproperties",
    "db.index.fulltext.querynodes",
    "db.index.fulltext.queryrelationships",
    "db.index.vector.querynodes",
    "db.index.vector.queryrelationships",
    "apoc.meta.data",
    "apoc.meta.schema",
];

/// A query the reader accepted: the text to run and its row cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardedCypher {
    /// The query to run.
    pub query: String,
    /// The `LIMIT` of its final `RETURN`.
    pub limit: u64,
}

/// A Cypher reader: tokenizes a query (strings, backquoted names, comments, parameters) and
/// refuses anything that writes or administers, before it reaches the server.
///
/// Refused: the write clauses `CREATE`, `MERGE`, `DELETE`, `DETACH`, `SET`, `REMOVE`, `DROP`,
/// `FOREACH`, `LOAD CSV` (`LOAD` in clause position, whatever follows it); `CALL { ... } IN
/// TRANSACTIONS`; administration (`GRANT`, `DENY`, `REVOKE`, `ALTER`, `START`, `STOP`, `SHOW`,
/// `USE`, `TERMINATE`); `CALL` of any procedure outside a read-only allow-list (schema and
/// index-search procedures); unbalanced brackets; more than one statement. Keywords
/// are recognised as tokens, so `n.set`, `{delete: 1}`, `:CREATED` and `'DROP'` are data, not
/// clauses. The query that runs is rebuilt from the tokens (comments dropped) with its final
/// `RETURN` capped by a `LIMIT`.
///
/// ```
/// use catena_query::cypher::CypherGuard;
///
/// let guard = CypherGuard::new().with_max_rows(25);
/// let ok = guard.check("MATCH (m:Movie) // all movies\nRETURN m.title").unwrap();
/// assert_eq!(ok.query, "MATCH (m:Movie) RETURN m.title LIMIT 25");
/// assert!(guard.check("MATCH (n) DETACH DELETE n").is_err());
/// assert!(guard.check("MATCH (n) RETURN n.set, n.delete").is_ok());
/// ```
#[derive(Debug, Clone)]
pub struct CypherGuard {
    max_rows: u64,
    relationships: Vec<RelationshipPattern>,
}

impl Default for CypherGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl CypherGuard {
    /// A reader with a 100-row cap.
    #[must_use]
    pub fn new() -> Self {
        Self { max_rows: 100, relationships: Vec::new() }
    }

    /// Check and correct relationship directions against these schema patterns (see
    /// [`RelationshipPattern`]); without them directions are not checked.
    #[must_use]
    pub fn with_relationships(mut self, relationships: Vec<RelationshipPattern>) -> Self {
        self.relationships = relationships;
        self
    }

    /// The most rows a query may return (at least 1).
    #[must_use]
    pub fn with_max_rows(mut self, max_rows: u64) -> Self {
        self.max_rows = max_rows.max(1);
        self
    }

    /// Checks a query; returns the query to run, or why not.
    pub fn check(&self, query: &str) -> Result<GuardedCypher, CypherRejection> {
        let mut tokens = tokenize(query)?;
        // One trailing `;` is a terminator; anything after a `;` is a second statement.
        if let Some(pos) = tokens.iter().position(|t| t.is_punct(";")) {
            if pos + 1 < tokens.len() {
                return Err(CypherRejection::new(
                    CypherRejectReason::MultipleStatements,
                    "more than one statement; send a single read query",
                ));
            }
            tokens.truncate(pos);
        }
        if tokens.is_empty() {
            return Err(CypherRejection::new(CypherRejectReason::Empty, "there is no Cypher query"));
        }
        check_brackets(&tokens)?;
        check_clauses(&tokens)?;
        correct_directions(&mut tokens, &self.relationships)?;
        let limit = self.cap_limit(&mut tokens)?;
        Ok(GuardedCypher { query: render(&tokens), limit })
    }

    fn cap_limit(&self, tokens: &mut Vec<Token>) -> Result<u64, CypherRejection> {
        // The final RETURN at nesting depth 0 decides; a LIMIT after it is capped, else added.
        let mut depth = 0i32;
        let mut last_return = None;
        let mut last_limit = None;
        for (i, t) in tokens.iter().enumerate() {
            match t.text.as_str() {
                "(" | "[" | "{" if t.kind == Kind::Punct => depth += 1,
                ")" | "]" | "}" if t.kind == Kind::Punct => depth -= 1,
                _ if depth == 0 && t.is_word("RETURN") => {
                    last_return = Some(i);
                    last_limit = None;
                }
                _ if depth == 0 && t.is_word("LIMIT") && last_return.is_some() => last_limit = Some(i),
                _ => {}
            }
        }
        if last_return.is_none() {
            // A query without RETURN returns no rows (or is a bare CALL, whose YIELD is bounded).
            return Ok(self.max_rows);
        }
        let Some(at) = last_limit else {
            tokens.push(Token::new(Kind::Word, "LIMIT", true));
            tokens.push(Token::new(Kind::Number, self.max_rows.to_string(), true));
            return Ok(self.max_rows);
        };
        let value =
            tokens.get(at + 1).filter(|t| t.kind == Kind::Number).and_then(|t| t.text.parse::<u64>().ok());
        let ends = tokens.get(at + 2).is_none();
        match value {
            Some(n) if ends => {
                let n = n.min(self.max_rows);
                if let Some(t) = tokens.get_mut(at + 1) {
                    t.text = n.to_string();
                }
                Ok(n)
            }
            _ => Err(CypherRejection::new(
                CypherRejectReason::Limit,
                format!("the final LIMIT must be a plain number (at most {})", self.max_rows),
            )),
        }
    }
}

/// Brackets must pair up and nest: the clause structure (which RETURN is final, where its LIMIT
/// is) is read from them, and an unbalanced query is one the server would refuse anyway. (Found
/// by fuzzing: with `count(*` left open, the final LIMIT was not seen and a second was added.)
fn check_brackets(tokens: &[Token]) -> Result<(), CypherRejection> {
    let mut open: Vec<&str> = Vec::new();
    for t in tokens.iter().filter(|t| t.kind == Kind::Punct) {
        let closes = match t.text.as_str() {
            "(" | "[" | "{" => {
                open.push(&t.text);
                continue;
            }
            ")" => "(",
            "]" => "[",
            "}" => "{",
            _ => continue,
        };
        if open.pop() != Some(closes) {
            return Err(CypherRejection::new(
                CypherRejectReason::Syntax,
                format!("an unmatched `{}`; check the query's brackets", t.text),
            ));
        }
    }
    match open.last() {
        Some(bracket) => Err(CypherRejection::new(
            CypherRejectReason::Syntax,
            format!("a `{bracket}` is never closed; check the query's brackets"),
        )),
        None => Ok(()),
    }
}

/// Whether the word at `i` is used as a clause keyword rather than a property (`n.set`), a map
/// key (`{delete: 1}`), a label or type (`:CREATED`) or a function-like name.
fn is_keyword_position(tokens: &[Token], i: usize) -> bool {
    let prev = i.checked_sub(1).and_then(|p| tokens.get(p));
    let next = tokens.get(i + 1);
    !(prev.is_some_and(|p| p.is_punct(".") || p.is_punct(":") || p.is_punct("$"))
        || next.is_some_and(|n| n.is_punct(":")))
}

fn check_clauses(tokens: &[Token]) -> Result<(), CypherRejection> {
    for (i, t) in tokens.iter().enumerate() {
        if t.kind != Kind::Word || !is_keyword_position(tokens, i) {
            continue;
        }
        let upper = t.text.to_ascii_uppercase();
        if WRITE_CLAUSES.contains(&upper.as_str()) {
            return Err(CypherRejection::new(
                CypherRejectReason::Write,
                format!("{upper} writes to the graph; only read queries (MATCH ... RETURN) are allowed"),
            ));
        }
        // LOAD in clause position whatever follows: `LOAD"CSV ..."` read LOAD then a string, not
        // LOAD CSV, and got through (found by fuzzing); no read query needs the word there.
        if upper == "LOAD" {
            return Err(CypherRejection::new(CypherRejectReason::Write, "LOAD CSV is not allowed"));
        }
        if upper == "IN" && tokens.get(i + 1).is_some_and(|n| n.is_word("TRANSACTIONS")) {
            return Err(CypherRejection::new(
                CypherRejectReason::Write,
                "CALL ... IN TRANSACTIONS is not allowed",
            ));
        }
        if ADMIN_COMMANDS.contains(&upper.as_str()) {
            return Err(CypherRejection::new(
                CypherRejectReason::Admin,
                format!("{upper} administers the server; only read queries are allowed"),
            ));
        }
        if upper == "CALL" {
            check_call(tokens, i)?;
        }
    }
    Ok(())
}

/// `CALL name.space.proc(...)` must name a read-only procedure; `CALL { subquery }` is checked
/// like the rest of the query.
fn check_call(tokens: &[Token], at: usize) -> Result<(), CypherRejection> {
    let mut name = String::new();
    let mut i = at + 1;
    while let Some(t) = tokens.get(i) {
        match t.kind {
            Kind::Word | Kind::Quoted => name.push_str(t.text.trim_matches('`')),
            Kind::Punct if t.text == "." => name.push('.'),
            _ => break,
        }
        i += 1;
    }
    if name.is_empty() {
        // `CALL {` opens a subquery, whose clauses the main loop checks token by token. A CALL
        // with neither (found by fuzzing: a trailing `CALL` took the added LIMIT as its
        // procedure's name) is refused.
        if tokens.get(i).is_some_and(|t| t.is_punct("{")) {
            return Ok(());
        }
        return Err(CypherRejection::new(
            CypherRejectReason::Syntax,
            "CALL must name a procedure (`CALL db.labels()`) or open a subquery (`CALL { ... }`)",
        ));
    }
    if READ_PROCEDURES.contains(&name.to_lowercase().as_str()) {
        Ok(())
    } else {
        Err(CypherRejection::new(
            CypherRejectReason::Procedure,
            format!("procedure {name} is not on the read-only list ({})", READ_PROCEDURES.join(", ")),
        ))
    }
}
