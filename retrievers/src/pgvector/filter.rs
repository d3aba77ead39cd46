//! catena's typed [`Filter`]s as parameterised PostgreSQL over the `metadata` JSONB column.
//!
//! Every value *and every field name* is a bind parameter: the SQL text depends only on the
//! filter's shape, so no metadata can inject SQL. The translation keeps
//! [`Filter::matches_document`]'s two-valued logic: each condition is wrapped so it is `true` or
//! `false`, never SQL's `NULL`, which is what makes `Not` and `Ne` on a missing field match as
//! they do in memory. Comparisons follow [`Filter`]'s rules: numbers by value (JSONB compares
//! numbers numerically), strings by code point (`COLLATE "C"`), never across types.

use catena_core::Filter;
use serde_json::Value;
use sqlx::{Postgres, QueryBuilder};

/// Appends `filter` as a boolean SQL expression to `sql`.
pub(super) fn push_filter(sql: &mut QueryBuilder<Postgres>, filter: &Filter) {
    match filter {
        Filter::Eq(field, value) => {
            sql.push("COALESCE(");
            push_field(sql, field);
            sql.push(" = ").push_bind(value.clone()).push(", false)");
        }
        Filter::Ne(field, value) => {
            sql.push("NOT COALESCE(");
            push_field(sql, field);
            sql.push(" = ").push_bind(value.clone()).push(", false)");
        }
        Filter::Gt(f, v) => push_compare(sql, f, ">", v),
        Filter::Gte(f, v) => push_compare(sql, f, ">=", v),
        Filter::Lt(f, v) => push_compare(sql, f, "<", v),
        Filter::Lte(f, v) => push_compare(sql, f, "<=", v),
        Filter::In(field, values) => {
            sql.push("COALESCE(");
            push_field(sql, field);
            sql.push(" = ANY(").push_bind(values.clone()).push("), false)");
        }
        Filter::Nin(field, values) => {
            sql.push("NOT COALESCE(");
            push_field(sql, field);
            sql.push(" = ANY(").push_bind(values.clone()).push("), false)");
        }
        Filter::Contains(field, value) => {
            // An array holds the value as an element (equal, not merely contained as JSONB's
            // `@>` would say); a string holds a text needle as a substring. CASE keeps
            // jsonb_array_elements away from non-arrays.
            sql.push("COALESCE(CASE jsonb_typeof(");
            push_field(sql, field);
            sql.push(") WHEN 'array' THEN EXISTS (SELECT 1 FROM jsonb_array_elements(");
            push_field(sql, field);
            sql.push(") AS element WHERE element = ").push_bind(value.clone()).push(")");
            if let Value::String(needle) = value {
                sql.push(" WHEN 'string' THEN strpos(");
                push_text(sql, field);
                sql.push(", ").push_bind(needle.clone()).push(") > 0");
            }
            sql.push(" ELSE false END, false)");
        }
        Filter::Like(field, pattern) => {
            // ESCAPE '' turns backslash into an ordinary character, as in catena's own LIKE.
            sql.push("COALESCE(jsonb_typeof(");
            push_field(sql, field);
            sql.push(") = 'string' AND ");
            push_text(sql, field);
            sql.push(" LIKE ").push_bind(pattern.clone()).push(" ESCAPE '', false)");
        }
        Filter::And(all) => push_joined(sql, all, " AND ", "true"),
        Filter::Or(any) => push_joined(sql, any, " OR ", "false"),
        Filter::Not(inner) => {
            sql.push("(NOT ");
            push_filter(sql, inner);
            sql.push(")");
        }
    }
}

fn push_joined(sql: &mut QueryBuilder<Postgres>, filters: &[Filter], op: &str, empty: &str) {
    if filters.is_empty() {
        sql.push(empty);
        return;
    }
    sql.push("(");
    for (i, f) in filters.iter().enumerate() {
        if i > 0 {
            sql.push(op);
        }
        push_filter(sql, f);
    }
    sql.push(")");
}

/// `field op value` when both are numbers or both strings; `false` otherwise (as in memory).
fn push_compare(sql: &mut QueryBuilder<Postgres>, field: &str, op: &str, value: &Value) {
    match value {
        Value::Number(_) => {
            sql.push("COALESCE(jsonb_typeof(");
            push_field(sql, field);
            sql.push(") = 'number' AND ");
            push_field(sql, field);
            sql.push(" ").push(op).push(" ").push_bind(value.clone()).push(", false)");
        }
        Value::String(text) => {
            sql.push("COALESCE(jsonb_typeof(");
            push_field(sql, field);
            sql.push(") = 'string' AND ");
            push_text(sql, field);
            sql.push(" COLLATE \"C\" ").push(op).push(" ").push_bind(text.clone()).push(", false)");
        }
        _ => {
            sql.push("false");
        }
    }
}

/// The field's JSONB value (SQL NULL when missing). `id` falls back to the row's id when the
/// metadata has none, as [`Filter::matches_document`] does.
fn push_field(sql: &mut QueryBuilder<Postgres>, field: &str) {
    if field == "id" {
        sql.push("COALESCE(metadata -> ").push_bind(field.to_owned()).push(", to_jsonb(id))");
    } else {
        sql.push("(metadata -> ").push_bind(field.to_owned()).push(")");
    }
}

/// The field as text (a JSON string's contents).
fn push_text(sql: &mut QueryBuilder<Postgres>, field: &str) {
    sql.push("(");
    push_field(sql, field);
    sql.push(" #>> '{}')");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_field_names_are_parameters() {
        let hostile = "x' OR '1'='1\"; DROP TABLE docs; --";
        let f = Filter::eq(hostile, hostile).and(Filter::Like("t".into(), hostile.into()));
        let mut sql = QueryBuilder::<Postgres>::new("SELECT 1 WHERE ");
        push_filter(&mut sql, &f);
        let text = sql.sql().as_str().to_owned();
        assert!(!text.contains("DROP") && !text.contains("'1'"), "{text}");
        assert!(text.contains("$1") && text.contains("$4"), "{text}");
    }
}
