//! catena's typed [`Filter`]s as LanceDB filter expressions. Every value is written as a quoted
//! literal of its column's type, so metadata can never inject filter syntax; a filter on a field
//! without a typed column is refused with the names of those that have one.

use catena_core::{Error, Filter, Result};
use serde_json::Value;

use super::FieldKind;

/// A string literal in LanceDB's SQL dialect: single quotes, embedded quotes doubled.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn literal(field: &str, kind: FieldKind, value: &Value) -> Result<String> {
    let wrong = || {
        Error::invalid_input(format!(
            "filter value {value} does not fit field `{field}`, which holds {}",
            match kind {
                FieldKind::String => "text",
                FieldKind::Integer => "integers",
                FieldKind::Float => "numbers",
                FieldKind::Bool => "booleans",
            }
        ))
    };
    match (kind, value) {
        (FieldKind::String, Value::String(s)) => Ok(quote(s)),
        (FieldKind::Integer, Value::Number(n)) => n.as_i64().map(|i| i.to_string()).ok_or_else(wrong),
        (FieldKind::Float, Value::Number(n)) => {
            n.as_f64().filter(|f| f.is_finite()).map(|f| format!("{f:?}")).ok_or_else(wrong)
        }
        (FieldKind::Bool, Value::Bool(b)) => Ok(b.to_string()),
        _ => Err(wrong()),
    }
}

/// Translates a [`Filter`] to a LanceDB filter expression, or says why it cannot apply.
pub(super) fn filter_sql(filter: &Filter, fields: &[(String, FieldKind)]) -> Result<String> {
    let column = |name: &str| -> Result<(String, FieldKind)> {
        if name == "id" {
            return Ok(("`id`".into(), FieldKind::String));
        }
        fields.iter().find(|(n, _)| n == name).map(|(n, k)| (format!("`{n}`"), *k)).ok_or_else(|| {
            let known: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
            Error::invalid_input(format!(
                "cannot filter on `{name}`: it is not a filterable field of this collection (filterable: id{}{})",
                if known.is_empty() { "" } else { ", " },
                known.join(", ")
            ))
        })
    };
    let cmp = |name: &str, op: &str, value: &Value| -> Result<String> {
        let (c, kind) = column(name)?;
        Ok(format!("({c} {op} {})", literal(name, kind, value)?))
    };
    let list = |name: &str, values: &[Value]| -> Result<(String, String)> {
        let (c, kind) = column(name)?;
        if values.is_empty() {
            return Err(Error::invalid_input(format!(
                "an `in`/`nin` filter on `{name}` needs at least one value"
            )));
        }
        let items: Vec<String> = values.iter().map(|v| literal(name, kind, v)).collect::<Result<_>>()?;
        Ok((c, items.join(", ")))
    };
    Ok(match filter {
        Filter::Eq(f, v) => cmp(f, "=", v)?,
        Filter::Ne(f, v) => {
            let (c, _) = column(f)?;
            format!("({c} IS NULL OR {})", cmp(f, "<>", v)?)
        }
        Filter::Gt(f, v) => cmp(f, ">", v)?,
        Filter::Gte(f, v) => cmp(f, ">=", v)?,
        Filter::Lt(f, v) => cmp(f, "<", v)?,
        Filter::Lte(f, v) => cmp(f, "<=", v)?,
        Filter::In(f, vs) => {
            let (c, items) = list(f, vs)?;
            format!("({c} IN ({items}))")
        }
        Filter::Nin(f, vs) => {
            let (c, items) = list(f, vs)?;
            format!("({c} IS NULL OR {c} NOT IN ({items}))")
        }
        Filter::Contains(f, v) => {
            let (c, kind) = column(f)?;
            let Value::String(needle) = v else {
                return Err(Error::invalid_input(format!("`contains` on `{f}` needs a text value")));
            };
            if kind != FieldKind::String {
                return Err(Error::invalid_input(format!("`contains` needs a text field; `{f}` is not one")));
            }
            format!("(strpos({c}, {}) > 0)", quote(needle))
        }
        Filter::Like(f, pattern) => {
            let (c, kind) = column(f)?;
            if kind != FieldKind::String {
                return Err(Error::invalid_input(format!("`like` needs a text field; `{f}` is not one")));
            }
            // LanceDB's LIKE treats backslash as an escape; catena's LIKE has no escape
            // character, so a backslash in the pattern is doubled to stand for itself.
            format!("({c} LIKE {})", quote(&pattern.replace('\\', "\\\\")))
        }
        Filter::And(all) if all.is_empty() => "true".into(),
        Filter::Or(any) if any.is_empty() => "false".into(),
        Filter::And(all) => {
            format!(
                "({})",
                all.iter().map(|f| filter_sql(f, fields)).collect::<Result<Vec<_>>>()?.join(" AND ")
            )
        }
        Filter::Or(any) => {
            format!(
                "({})",
                any.iter().map(|f| filter_sql(f, fields)).collect::<Result<Vec<_>>>()?.join(" OR ")
            )
        }
        // A missing field makes a comparison NULL, and NOT NULL is NULL (no match); catena's
        // filters are two-valued (missing never matches, so its negation does): IS NOT TRUE.
        Filter::Not(inner) => format!("({} IS NOT TRUE)", filter_sql(inner, fields)?),
    })
}

pub(super) fn id_list(ids: &[String]) -> String {
    format!("`id` IN ({})", ids.iter().map(|i| quote(i)).collect::<Vec<_>>().join(", "))
}
