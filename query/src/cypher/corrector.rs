//! Relationship-direction correction against the graph schema, with the semantics of
//! LangChain's `CypherQueryCorrector`: small models often write `(m:Movie)-[:ACTED_IN]->(p:Person)`
//! when the graph has `(:Person)-[:ACTED_IN]->(:Movie)`.
//!
//! For every `(a)-[r]->(b)` / `(a)<-[r]-(b)` step in a pattern, with the labels of `a` and `b`
//! taken from the node itself or from where its variable was labelled elsewhere in the query:
//! - a step the schema has in the written direction is kept;
//! - a step the schema has only reversed is flipped;
//! - a step the schema has in neither direction refuses the query;
//! - undirected steps, steps without a type and nodes without a known label match anything
//!   (there is nothing to check them against).

use std::collections::HashMap;

use super::lexer::{CypherRejectReason, CypherRejection, Kind, Token};

/// A relationship pattern of the schema: `(:start)-[:rel_type]->(:end)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct RelationshipPattern {
    /// Label of the start node.
    pub start: String,
    /// Relationship type.
    pub rel_type: String,
    /// Label of the end node.
    pub end: String,
}

impl RelationshipPattern {
    /// A pattern.
    #[must_use]
    pub fn new(start: impl Into<String>, rel_type: impl Into<String>, end: impl Into<String>) -> Self {
        Self { start: start.into(), rel_type: rel_type.into(), end: end.into() }
    }
}

/// A node pattern found in the token list.
#[derive(Debug, Clone)]
struct NodePat {
    /// Index of the closing `)`.
    close: usize,
    variable: Option<String>,
    labels: Vec<String>,
}

fn name_of(t: &Token) -> Option<String> {
    match t.kind {
        Kind::Word => Some(t.text.clone()),
        Kind::Quoted => Some(t.text.trim_matches('`').replace("``", "`")),
        _ => None,
    }
}

/// Parses `( [var] [:Label[:Label|&Label]...] [{...}] )` starting at `open`.
fn node_at(tokens: &[Token], open: usize) -> Option<NodePat> {
    if !tokens.get(open)?.is_punct("(") {
        return None;
    }
    let mut i = open + 1;
    let mut variable = None;
    let mut labels = Vec::new();
    if let Some(v) = tokens.get(i).and_then(name_of) {
        variable = Some(v);
        i += 1;
    }
    while tokens.get(i).is_some_and(|t| t.is_punct(":") || t.is_punct("|") || t.is_punct("&")) {
        labels.push(tokens.get(i + 1).and_then(name_of)?);
        i += 2;
    }
    if tokens.get(i).is_some_and(|t| t.is_punct("{")) {
        let mut depth = 0;
        while let Some(t) = tokens.get(i) {
            if t.is_punct("{") {
                depth += 1;
            } else if t.is_punct("}") {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            i += 1;
        }
        i += 1;
    }
    tokens.get(i).filter(|t| t.is_punct(")")).map(|_| NodePat { close: i, variable, labels })
}

/// A relationship step between two nodes: token range, types, direction.
struct RelPat {
    /// First token after the left node's `)`, and the `(` of the right node.
    start: usize,
    end: usize,
    types: Vec<String>,
    /// `Some(true)` for `->`, `Some(false)` for `<-`, `None` undirected.
    forward: Option<bool>,
}

/// Parses the relationship between a node ending at `after` and the next node.
fn rel_at(tokens: &[Token], after: usize) -> Option<RelPat> {
    let mut i = after;
    let left_arrow = tokens.get(i)?.is_punct("<");
    if left_arrow {
        i += 1;
    }
    if !tokens.get(i)?.is_punct("-") {
        return None;
    }
    i += 1;
    let mut types = Vec::new();
    if tokens.get(i)?.is_punct("[") {
        let mut j = i + 1;
        if tokens.get(j).and_then(name_of).is_some() {
            j += 1; // the variable in `[r:ACTED_IN]`
        }
        while tokens.get(j).is_some_and(|t| t.is_punct(":") || t.is_punct("|")) {
            types.push(tokens.get(j + 1).and_then(name_of)?);
            j += 2;
        }
        let mut depth = 1;
        i += 1;
        while depth > 0 {
            let t = tokens.get(i)?;
            if t.is_punct("[") {
                depth += 1;
            } else if t.is_punct("]") {
                depth -= 1;
            }
            i += 1;
        }
    }
    if !tokens.get(i)?.is_punct("-") {
        return None;
    }
    i += 1;
    let right_arrow = tokens.get(i).is_some_and(|t| t.is_punct(">"));
    if right_arrow {
        i += 1;
    }
    if !tokens.get(i)?.is_punct("(") {
        return None;
    }
    let forward = match (left_arrow, right_arrow) {
        (false, true) => Some(true),
        (true, false) => Some(false),
        _ => None,
    };
    Some(RelPat { start: after, end: i, types, forward })
}

fn allowed(schema: &[RelationshipPattern], from: &[String], types: &[String], to: &[String]) -> bool {
    schema.iter().any(|p| {
        (from.is_empty() || from.contains(&p.start))
            && (types.is_empty() || types.contains(&p.rel_type))
            && (to.is_empty() || to.contains(&p.end))
    })
}

/// Corrects relationship directions in `tokens` against `schema` (see the [module docs](self)).
/// An empty schema checks nothing.
pub(crate) fn correct_directions(
    tokens: &mut Vec<Token>,
    schema: &[RelationshipPattern],
) -> Result<usize, CypherRejection> {
    if schema.is_empty() {
        return Ok(0);
    }
    // Labels each variable is given anywhere in the query.
    let mut labels_of: HashMap<String, Vec<String>> = HashMap::new();
    for i in 0..tokens.len() {
        if let Some(node) = node_at(tokens, i)
            && let Some(var) = &node.variable
            && !node.labels.is_empty()
        {
            labels_of.entry(var.clone()).or_default().extend(node.labels.iter().cloned());
        }
    }
    let labels = |node: &NodePat| -> Vec<String> {
        if node.labels.is_empty() {
            node.variable.as_ref().and_then(|v| labels_of.get(v)).cloned().unwrap_or_default()
        } else {
            node.labels.clone()
        }
    };
    let mut flips: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let Some(left) = node_at(tokens, i) else {
            i += 1;
            continue;
        };
        let mut current = left;
        while let Some(rel) = rel_at(tokens, current.close + 1) {
            let Some(right) = node_at(tokens, rel.end) else { break };
            if let Some(forward) = rel.forward
                && !rel.types.is_empty()
            {
                let (a, b) = (labels(&current), labels(&right));
                let (from, to) = if forward { (&a, &b) } else { (&b, &a) };
                if !allowed(schema, from, &rel.types, to) {
                    if allowed(schema, to, &rel.types, from) {
                        flips.push((rel.start, rel.end));
                    } else {
                        return Err(CypherRejection::new(
                            CypherRejectReason::Schema,
                            format!(
                                "the graph has no ({})-[:{}]-({}) relationship in either direction",
                                from.join("|"),
                                rel.types.join("|"),
                                to.join("|")
                            ),
                        ));
                    }
                }
            }
            current = right;
        }
        i = current.close + 1;
    }
    // Apply right to left so earlier indices stay valid.
    for &(start, end) in flips.iter().rev() {
        flip(tokens, start, end);
    }
    Ok(flips.len())
}

/// Reverses the arrow of the relationship occupying `tokens[start..end]`.
fn flip(tokens: &mut Vec<Token>, start: usize, end: usize) {
    let right_arrow = end.checked_sub(1).filter(|&j| tokens.get(j).is_some_and(|t| t.is_punct(">")));
    if let Some(j) = right_arrow {
        // `-[..]->` becomes `<-[..]-`.
        tokens.remove(j);
        tokens.insert(start, Token::new(Kind::Punct, "<", false));
    } else if tokens.get(start).is_some_and(|t| t.is_punct("<")) {
        // `<-[..]-` becomes `-[..]->`; after removing `<` the right node's `(` is at end - 1.
        tokens.remove(start);
        tokens.insert(end - 1, Token::new(Kind::Punct, ">", false));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::lexer::{render, tokenize};
    use super::*;

    fn schema() -> Vec<RelationshipPattern> {
        vec![
            RelationshipPattern::new("Person", "ACTED_IN", "Movie"),
            RelationshipPattern::new("Person", "DIRECTED", "Movie"),
            RelationshipPattern::new("Person", "FOLLOWS", "Person"),
        ]
    }

    fn fix(q: &str) -> Result<String, CypherRejection> {
        let mut tokens = tokenize(q).unwrap();
        correct_directions(&mut tokens, &schema())?;
        Ok(render(&tokens))
    }

    #[test]
    fn keeps_flips_and_refuses_like_langchains_corrector() {
        let ok = "MATCH (p:Person)-[:ACTED_IN]->(m:Movie) RETURN p";
        assert_eq!(fix(ok).unwrap(), ok);
        assert_eq!(
            fix("MATCH (m:Movie)-[:ACTED_IN]->(p:Person) RETURN p").unwrap(),
            "MATCH (m:Movie)<-[:ACTED_IN]-(p:Person) RETURN p"
        );
        assert_eq!(
            fix("MATCH (p:Person)<-[r:DIRECTED]-(m:Movie) RETURN p").unwrap(),
            "MATCH (p:Person)-[r:DIRECTED]->(m:Movie) RETURN p"
        );
        // Labels known from elsewhere in the query.
        assert_eq!(
            fix("MATCH (p:Person), (m:Movie) MATCH (m)-[:DIRECTED]->(p) RETURN p").unwrap(),
            "MATCH (p:Person), (m:Movie) MATCH (m)<-[:DIRECTED]-(p) RETURN p"
        );
        // Undirected, untyped and unlabelled steps are left alone.
        for q in [
            "MATCH (m:Movie)-[:ACTED_IN]-(p:Person) RETURN p",
            "MATCH (a)-->(b) RETURN a",
            "MATCH (a)-[:ACTED_IN]->(b) RETURN a",
        ] {
            assert_eq!(fix(q).unwrap(), q);
        }
        let err = fix("MATCH (m:Movie)-[:FOLLOWS]->(p:Person) RETURN p").unwrap_err();
        assert_eq!(err.reason, CypherRejectReason::Schema);
        // Chains: each step is checked on its own.
        assert_eq!(
            fix("MATCH (a:Person)-[:FOLLOWS]->(b:Person)<-[:ACTED_IN]-(m:Movie) RETURN m").unwrap(),
            "MATCH (a:Person)-[:FOLLOWS]->(b:Person)-[:ACTED_IN]->(m:Movie) RETURN m"
        );
    }
}
