//! Separators (literal or regex) and the pieces a text splits into around them.

use catena_core::{Error, Result};
use memchr::memmem;

/// Where a separator goes when text is split on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeepSeparator {
    /// At the start of the following piece (LangChain's default, `keep_separator=True`).
    #[default]
    Start,
    /// At the end of the preceding piece (`keep_separator="end"`).
    End,
    /// Dropped; pieces are joined back with the separator's text when merged
    /// (`keep_separator=False`).
    None,
}

impl std::str::FromStr for KeepSeparator {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "start" | "true" => Ok(Self::Start),
            "end" => Ok(Self::End),
            "none" | "false" => Ok(Self::None),
            other => {
                Err(Error::invalid_input(format!("keep_separator must be start, end or none, not {other:?}")))
            }
        }
    }
}

/// One separator: its text (what is re-inserted when separators are dropped, as LangChain does,
/// even for a regex) and how its occurrences are found.
#[derive(Debug, Clone)]
pub(crate) struct Separator {
    pub(crate) text: String,
    matcher: Matcher,
}

#[derive(Debug, Clone)]
enum Matcher {
    /// `""`: split between characters.
    Chars,
    Literal(memmem::Finder<'static>),
    Regex(fancy_regex::Regex),
}

impl Separator {
    pub(crate) fn literal(text: &str) -> Self {
        let matcher = if text.is_empty() {
            Matcher::Chars
        } else {
            Matcher::Literal(memmem::Finder::new(text).into_owned())
        };
        Self { text: text.to_owned(), matcher }
    }

    /// A separator written as a regular expression in Python's `re` dialect (LangChain's): the
    /// syntax fancy-regex shares with it, plus Python's `$`, which also matches before a final
    /// newline.
    pub(crate) fn regex(pattern: &str) -> Result<Self> {
        if pattern.is_empty() {
            return Ok(Self::literal(""));
        }
        let regex = fancy_regex::Regex::new(&python_dollar(pattern)).map_err(|e| {
            Error::invalid_input(format!("separator {pattern:?} is not a valid regular expression: {e}"))
        })?;
        Ok(Self { text: pattern.to_owned(), matcher: Matcher::Regex(regex) })
    }

    pub(crate) fn is_chars(&self) -> bool {
        matches!(self.matcher, Matcher::Chars)
    }

    /// The number of bytes a literal separator occupies between two pieces it separated; `None`
    /// for a regex, whose matches differ from its text.
    pub(crate) fn literal_len(&self) -> Option<usize> {
        match &self.matcher {
            Matcher::Chars => Some(0),
            Matcher::Literal(_) => Some(self.text.len()),
            Matcher::Regex(_) => None,
        }
    }

    /// Whether the separator occurs in `text` (`re.search`).
    pub(crate) fn occurs_in(&self, text: &str) -> Result<bool> {
        match &self.matcher {
            Matcher::Chars => Ok(true),
            Matcher::Literal(finder) => Ok(finder.find(text.as_bytes()).is_some()),
            Matcher::Regex(re) => re.is_match(text).map_err(|e| regex_failed(&self.text, &e)),
        }
    }

    /// Calls `piece(start, end)` for each non-empty piece of `text` split on this separator, in
    /// order, with the separator kept as `keep` says: `re.split` with LangChain's regrouping.
    pub(crate) fn for_each_piece(
        &self,
        text: &str,
        keep: KeepSeparator,
        mut piece: impl FnMut(usize, usize) -> Result<()>,
    ) -> Result<()> {
        let mut emit = |start: usize, end: usize| if end > start { piece(start, end) } else { Ok(()) };
        let mut from = 0;
        let mut on_match = |start: usize, end: usize| -> Result<()> {
            match keep {
                KeepSeparator::Start => {
                    emit(from, start)?;
                    from = start;
                }
                KeepSeparator::End => {
                    emit(from, end)?;
                    from = end;
                }
                KeepSeparator::None => {
                    emit(from, start)?;
                    from = end;
                }
            }
            Ok(())
        };
        match &self.matcher {
            Matcher::Chars => {
                for (i, c) in text.char_indices() {
                    piece(i, i + c.len_utf8())?;
                }
                return Ok(());
            }
            Matcher::Literal(finder) => {
                let len = self.text.len();
                for start in finder.find_iter(text.as_bytes()) {
                    on_match(start, start + len)?;
                }
            }
            Matcher::Regex(re) => {
                for found in re.find_iter(text) {
                    let found = found.map_err(|e| regex_failed(&self.text, &e))?;
                    on_match(found.start(), found.end())?;
                }
            }
        }
        let last = from;
        if text.len() > last { piece(last, text.len()) } else { Ok(()) }
    }
}

fn regex_failed(pattern: &str, e: &fancy_regex::Error) -> Error {
    Error::invalid_input(format!("separator {pattern:?} could not be matched: {e}"))
}

/// Rewrites Python's `$` (end of text, or before a newline that ends it) for fancy-regex, whose
/// `$` only matches at the very end. Escapes and character classes are left alone.
fn python_dollar(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    let mut in_class = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                out.push(c);
                if let Some(next) = chars.next() {
                    // Python's \Z is fancy-regex's \z.
                    out.push(if next == 'Z' { 'z' } else { next });
                }
            }
            '[' if !in_class => {
                in_class = true;
                out.push(c);
            }
            ']' if in_class => {
                in_class = false;
                out.push(c);
            }
            '$' if !in_class => out.push_str(r"(?=\n?\z)"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pieces<'t>(sep: &Separator, text: &'t str, keep: KeepSeparator) -> Vec<&'t str> {
        let mut out = Vec::new();
        sep.for_each_piece(text, keep, |s, e| {
            out.push(&text[s..e]);
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn keep_separator_variants() {
        let comma = Separator::literal(",");
        assert_eq!(pieces(&comma, "a,b,,c", KeepSeparator::Start), ["a", ",b", ",", ",c"]);
        assert_eq!(pieces(&comma, "a,b,,c", KeepSeparator::End), ["a,", "b,", ",", "c"]);
        assert_eq!(pieces(&comma, "a,b,,c", KeepSeparator::None), ["a", "b", "c"]);
        assert_eq!(pieces(&Separator::literal(""), "hé", KeepSeparator::Start), ["h", "é"]);
        let digits = Separator::regex(r"\d+").unwrap();
        assert_eq!(pieces(&digits, "a12b3", KeepSeparator::Start), ["a", "12b", "3"]);
    }

    #[test]
    fn python_dollar_matches_before_a_final_newline() {
        assert_eq!(python_dollar(r"a$[$]\$\Z"), r"a(?=\n?\z)[$]\$\z");
        let dollar = Separator::regex("$").unwrap();
        assert_eq!(pieces(&dollar, "ab\n", KeepSeparator::Start), ["ab", "\n"]);
    }

    #[test]
    fn bad_regex_is_invalid_input() {
        let err = Separator::regex("(unclosed").unwrap_err();
        assert!(err.to_string().contains("(unclosed"), "{err}");
    }
}
