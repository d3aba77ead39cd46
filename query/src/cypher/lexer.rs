//! The Cypher lexer the reader and the direction corrector share: tokens (strings, backquoted
//! names, comments, parameters) and the refusals both of them give.

use std::fmt;

use catena_core::Error;

/// Why the reader refused a query.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CypherRejectReason {
    /// Empty, or only comments.
    Empty,
    /// Unterminated string, name or comment; a character Cypher does not use.
    Syntax,
    /// Several statements.
    MultipleStatements,
    /// A clause that writes.
    Write,
    /// An administrative command.
    Admin,
    /// A procedure outside the read-only allow-list.
    Procedure,
    /// A `LIMIT` that is not a plain number.
    Limit,
    /// A relationship pattern the schema does not have in either direction.
    Schema,
}

/// A refusal, with a message a person or the model can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CypherRejection {
    /// The kind of refusal.
    pub reason: CypherRejectReason,
    /// What was refused and why.
    pub message: String,
}

impl CypherRejection {
    pub(crate) fn new(reason: CypherRejectReason, message: impl Into<String>) -> Self {
        Self { reason, message: message.into() }
    }
}

impl fmt::Display for CypherRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CypherRejection {}

impl From<CypherRejection> for Error {
    fn from(r: CypherRejection) -> Self {
        Error::invalid_input(format!("Cypher refused: {}", r.message))
    }
}

/// A token kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A name or keyword (bare).
    Word,
    /// A backquoted name.
    Quoted,
    /// A string literal.
    Str,
    /// A number.
    Number,
    /// `$name` or `$0`.
    Param,
    /// Punctuation and operators.
    Punct,
}

/// A token with the whitespace that preceded it (comments count as whitespace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token {
    pub kind: Kind,
    pub text: String,
    pub space_before: bool,
}

impl Token {
    pub(crate) fn is_word(&self, word: &str) -> bool {
        self.kind == Kind::Word && self.text.eq_ignore_ascii_case(word)
    }

    pub(crate) fn is_punct(&self, p: &str) -> bool {
        self.kind == Kind::Punct && self.text == p
    }

    pub(crate) fn new(kind: Kind, text: impl Into<String>, space_before: bool) -> Self {
        Self { kind, text: text.into(), space_before }
    }
}

fn syntax(message: impl Into<String>) -> CypherRejection {
    CypherRejection::new(CypherRejectReason::Syntax, message)
}

/// Splits a query into tokens.
pub(crate) fn tokenize(query: &str) -> Result<Vec<Token>, CypherRejection> {
    let chars: Vec<char> = query.chars().collect();
    let at = |i: usize| chars.get(i).copied();
    let mut tokens = Vec::new();
    let mut i = 0;
    let mut space = false;
    while let Some(c) = at(i) {
        if c.is_whitespace() {
            space = true;
            i += 1;
            continue;
        }
        if c == '/' && at(i + 1) == Some('/') {
            while at(i).is_some_and(|c| c != '\n') {
                i += 1;
            }
            space = true;
            continue;
        }
        if c == '/' && at(i + 1) == Some('*') {
            i += 2;
            loop {
                match (at(i), at(i + 1)) {
                    (Some('*'), Some('/')) => break,
                    (None, _) => return Err(syntax("unterminated /* comment")),
                    _ => i += 1,
                }
            }
            i += 2;
            space = true;
            continue;
        }
        let start = i;
        let kind = if c == '\'' || c == '"' || c == '`' {
            i += 1;
            loop {
                match at(i) {
                    None => return Err(syntax(format!("unterminated {c}...{c} in the query"))),
                    Some('\\') if c != '`' => i += 2,
                    // A doubled backquote is an escaped backquote inside a name.
                    Some('`') if c == '`' && at(i + 1) == Some('`') => i += 2,
                    Some(d) if d == c => break,
                    Some(_) => i += 1,
                }
            }
            i += 1;
            if c == '`' { Kind::Quoted } else { Kind::Str }
        } else if c.is_alphabetic() || c == '_' {
            while at(i).is_some_and(|c| c.is_alphanumeric() || c == '_') {
                i += 1;
            }
            // Look-alike letters (Cyrillic О in `DRОP`, full-width `ＬＩＭＩＴ`) must not pass for
            // keywords or names; non-ASCII names are fine inside backquotes.
            if chars.get(start..i).is_some_and(|w| w.iter().any(|c| !c.is_ascii())) {
                let word: String = chars.get(start..i).map(|w| w.iter().collect()).unwrap_or_default();
                return Err(syntax(format!(
                    "{word:?} has non-ASCII letters; write keywords in ASCII and quote such names with backquotes"
                )));
            }
            Kind::Word
        } else if c.is_ascii_digit() {
            while at(i).is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                || (at(i) == Some('.') && at(i + 1).is_some_and(|d| d.is_ascii_digit()))
            {
                i += 1;
            }
            let number: String = chars.get(start..i).map(|s| s.iter().collect()).unwrap_or_default();
            // Cypher's lexer ends a number where the letters begin, so `4create` is the number 4
            // and the clause CREATE: `WITH n, 1create (m)` writes. Only well-formed numbers pass
            // (found by fuzzing).
            if !well_formed_number(&number) {
                return Err(syntax(format!(
                    "{number:?} is a number run into a word; put a space between them"
                )));
            }
            Kind::Number
        } else if c == '$' {
            i += 1;
            // ASCII names, as for words: `$¾MERGE` was one parameter to a Unicode-alphanumeric
            // reading (found by fuzzing).
            while at(i).is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                i += 1;
            }
            // `$0` is a numbered parameter, and Neo4j ends it where the digits end: `$0create` is
            // `$0` then CREATE (found by fuzzing). Named parameters start with a letter.
            let name: String = chars.get(start + 1..i).map(|s| s.iter().collect()).unwrap_or_default();
            if name.is_empty() {
                return Err(syntax("`$` must be followed by a parameter name (`$name` or `$0`)"));
            }
            if name.starts_with(|d: char| d.is_ascii_digit()) && !name.chars().all(|d| d.is_ascii_digit()) {
                return Err(syntax(format!(
                    "${name} is a numbered parameter run into a word; put a space between them"
                )));
            }
            Kind::Param
        } else {
            let two: String = chars.get(i..i + 2).map(|s| s.iter().collect()).unwrap_or_default();
            i += if ["<>", "<=", ">=", "=~", "..", "+="].contains(&two.as_str()) { 2 } else { 1 };
            if !c.is_ascii() || c.is_ascii_control() {
                return Err(syntax(format!(
                    "the character {c:?} is not valid in Cypher outside strings and names"
                )));
            }
            Kind::Punct
        };
        let text: String = chars.get(start..i).map(|s| s.iter().collect()).unwrap_or_default();
        tokens.push(Token::new(kind, text, space));
        space = false;
    }
    Ok(tokens)
}

/// A decimal (`42`, `1_000`, `3.14`, `6.02e23`, `1e` before a signed exponent), hexadecimal
/// (`0x1F`) or octal (`0o17`) number, as the lexer cut it (it stops before `+` and `-`).
fn well_formed_number(text: &str) -> bool {
    let digits = |s: &str, radix: u32| !s.is_empty() && s.chars().all(|c| c == '_' || c.is_digit(radix));
    if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        return digits(hex, 16);
    }
    if let Some(octal) = text.strip_prefix("0o") {
        return digits(octal, 8);
    }
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(at) => (text.get(..at).unwrap_or_default(), text.get(at + 1..)),
        None => (text, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some((whole, fraction)) => digits(whole, 10) && digits(fraction, 10),
        None => digits(mantissa, 10),
    };
    mantissa_ok && exponent.is_none_or(|e| e.is_empty() || digits(e, 10))
}

/// Renders tokens back to a query, one space where the original had any whitespace or comment.
pub(crate) fn render(tokens: &[Token]) -> String {
    let mut out = String::new();
    for t in tokens {
        if t.space_before && !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&t.text);
    }
    out
}
