//! Typed metadata filters, evaluated by every [`VectorStore`](crate::VectorStore).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Metadata;

/// A condition on document metadata. Field names are metadata keys; a missing key never matches a
/// comparison (but does match `Ne`/`Nin`, as in most stores).
///
/// ```
/// use catena_core::{Document, Filter};
/// use serde_json::json;
///
/// let f = Filter::eq("lang", "en").and(Filter::gte("year", 2020));
/// let doc = Document::new("...").with_metadata("lang", "en").with_metadata("year", 2023);
/// assert!(f.matches(&doc.metadata));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Filter {
    /// field == value
    Eq(String, Value),
    /// field != value
    Ne(String, Value),
    /// field > value (numbers or strings)
    Gt(String, Value),
    /// field >= value
    Gte(String, Value),
    /// field < value
    Lt(String, Value),
    /// field <= value
    Lte(String, Value),
    /// field is one of the values
    In(String, Vec<Value>),
    /// field is none of the values
    Nin(String, Vec<Value>),
    /// string field contains the text, or array field contains the value
    Contains(String, Value),
    /// SQL LIKE pattern (`%` any run, `_` one character) on a string field
    Like(String, String),
    /// all hold
    And(Vec<Filter>),
    /// any holds
    Or(Vec<Filter>),
    /// does not hold
    Not(Box<Filter>),
}

impl Filter {
    /// `field == value`
    pub fn eq(field: impl Into<String>, value: impl Into<Value>) -> Self {
        Self::Eq(field.into(), value.into())
    }

    /// `field >= value`
    pub fn gte(field: impl Into<String>, value: impl Into<Value>) -> Self {
        Self::Gte(field.into(), value.into())
    }

    /// `field <= value`
    pub fn lte(field: impl Into<String>, value: impl Into<Value>) -> Self {
        Self::Lte(field.into(), value.into())
    }

    /// Both this and `other`.
    #[must_use]
    pub fn and(self, other: Filter) -> Self {
        match self {
            Self::And(mut all) => {
                all.push(other);
                Self::And(all)
            }
            first => Self::And(vec![first, other]),
        }
    }

    /// This or `other`.
    #[must_use]
    pub fn or(self, other: Filter) -> Self {
        match self {
            Self::Or(mut any) => {
                any.push(other);
                Self::Or(any)
            }
            first => Self::Or(vec![first, other]),
        }
    }

    /// Whether `metadata` satisfies the filter.
    #[must_use]
    pub fn matches(&self, metadata: &Metadata) -> bool {
        self.eval(&|field| metadata.get(field))
    }

    /// Whether `document` satisfies the filter: its metadata, plus `id` (when the metadata has no
    /// `id` of its own), so stores can filter by id the same way.
    #[must_use]
    pub fn matches_document(&self, document: &crate::Document) -> bool {
        if document.metadata.contains_key("id") || !self.mentions("id") {
            return self.matches(&document.metadata);
        }
        let id = document.id.clone().map(Value::String);
        self.eval(&|field| if field == "id" { id.as_ref() } else { document.metadata.get(field) })
    }

    /// Whether the filter names `field` anywhere.
    #[must_use]
    pub fn mentions(&self, field: &str) -> bool {
        match self {
            Self::Eq(f, _)
            | Self::Ne(f, _)
            | Self::Gt(f, _)
            | Self::Gte(f, _)
            | Self::Lt(f, _)
            | Self::Lte(f, _)
            | Self::In(f, _)
            | Self::Nin(f, _)
            | Self::Contains(f, _)
            | Self::Like(f, _) => f == field,
            Self::And(all) | Self::Or(all) => all.iter().any(|f| f.mentions(field)),
            Self::Not(inner) => inner.mentions(field),
        }
    }

    fn eval<'a>(&self, get: &dyn Fn(&str) -> Option<&'a Value>) -> bool {
        use std::cmp::Ordering::{Equal, Greater, Less};
        let cmp = |field: &str, value: &Value, ok: &[std::cmp::Ordering]| {
            get(field).and_then(|v| compare(v, value)).is_some_and(|o| ok.contains(&o))
        };
        match self {
            Self::Eq(f, v) => get(f).is_some_and(|m| json_eq(m, v)),
            Self::Ne(f, v) => !get(f).is_some_and(|m| json_eq(m, v)),
            Self::Gt(f, v) => cmp(f, v, &[Greater]),
            Self::Gte(f, v) => cmp(f, v, &[Greater, Equal]),
            Self::Lt(f, v) => cmp(f, v, &[Less]),
            Self::Lte(f, v) => cmp(f, v, &[Less, Equal]),
            Self::In(f, vs) => get(f).is_some_and(|m| vs.iter().any(|v| json_eq(m, v))),
            Self::Nin(f, vs) => !get(f).is_some_and(|m| vs.iter().any(|v| json_eq(m, v))),
            Self::Contains(f, v) => match (get(f), v) {
                (Some(Value::String(s)), Value::String(needle)) => s.contains(needle.as_str()),
                (Some(Value::Array(items)), v) => items.iter().any(|i| json_eq(i, v)),
                _ => false,
            },
            Self::Like(f, pattern) => get(f)
                .and_then(Value::as_str)
                .is_some_and(|s| like(&s.chars().collect::<Vec<_>>(), &pattern.chars().collect::<Vec<_>>())),
            Self::And(all) => all.iter().all(|f| f.eval(get)),
            Self::Or(any) => any.iter().any(|f| f.eval(get)),
            Self::Not(inner) => !inner.eval(get),
        }
    }
}

/// Numbers compare by value (so 2 == 2.0), everything else structurally.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) if a.is_number() && b.is_number() => x == y,
        _ => a == b,
    }
}

fn compare(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// SQL LIKE over characters, iterative with backtracking on the last `%`.
fn like(text: &[char], pattern: &[char]) -> bool {
    let (mut t, mut p) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('%') => {
                star = Some((p, t));
                p += 1;
            }
            Some('_') => {
                t += 1;
                p += 1;
            }
            Some(c) if Some(c) == text.get(t) => {
                t += 1;
                p += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern.get(p..).is_some_and(|rest| rest.iter().all(|&c| c == '%'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn meta(v: Value) -> Metadata {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn comparisons_and_logic() {
        let m = meta(json!({"year": 2021, "lang": "en", "tags": ["a", "b"], "title": "Rust book"}));
        assert!(Filter::gte("year", 2021.0).matches(&m));
        assert!(!Filter::Gt("year".into(), json!(2021)).matches(&m));
        assert!(Filter::Contains("tags".into(), json!("b")).matches(&m));
        assert!(Filter::Contains("title".into(), json!("ust")).matches(&m));
        assert!(Filter::Like("title".into(), "R_st%".into()).matches(&m));
        assert!(!Filter::Like("title".into(), "%book_".into()).matches(&m));
        assert!(Filter::eq("lang", "en").or(Filter::eq("lang", "fr")).matches(&m));
        assert!(Filter::Not(Box::new(Filter::eq("lang", "fr"))).matches(&m));
        assert!(Filter::Ne("missing".into(), json!(1)).matches(&m));
        assert!(!Filter::Lt("missing".into(), json!(1)).matches(&m));
        assert!(!Filter::Lt("lang".into(), json!(1)).matches(&m), "string vs number never compares");
        let doc = crate::Document::new("x").with_id("d1").with_metadata("lang", "en");
        assert!(Filter::eq("id", "d1").and(Filter::eq("lang", "en")).matches_document(&doc));
        assert!(!Filter::eq("id", "d2").matches_document(&doc));
    }
}
