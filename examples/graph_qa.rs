//! Ask a Neo4j movie graph questions in plain language.
//!
//! ```text
//! NEO4J_URI=bolt://localhost:7687 NEO4J_USERNAME=neo4j NEO4J_PASSWORD=secret \
//!     cargo run --example graph_qa -- --create "Who acted in The Matrix?"
//! ```
//!
//! `--create` first writes a small movie graph (the Cypher is below) with a plain driver
//! connection; the question-answering chain itself only ever reads: its Cypher reader refuses
//! writes, fixes relationship directions the model got backwards, and caps the rows.

use std::sync::Arc;

use catena::core::{ChatModel, Result, RunContext};
use catena::models::LlamaChatModel;
use catena::query::cypher::{GraphCypherChain, Neo4jGraph};

/// The example graph: three people, two movies, who acted in and directed what.
const MOVIES: &str = "MERGE (m1:Movie {title: 'The Matrix', released: 1999})
MERGE (m2:Movie {title: 'John Wick', released: 2014})
MERGE (k:Person {name: 'Keanu Reeves', born: 1964})
MERGE (c:Person {name: 'Carrie-Anne Moss', born: 1967})
MERGE (l:Person {name: 'Lana Wachowski', born: 1965})
MERGE (k)-[:ACTED_IN {roles: ['Neo']}]->(m1)
MERGE (c)-[:ACTED_IN {roles: ['Trinity']}]->(m1)
MERGE (k)-[:ACTED_IN {roles: ['John Wick']}]->(m2)
MERGE (l)-[:DIRECTED]->(m1)";

#[tokio::main]
async fn main() -> Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let create = args.iter().position(|a| a == "--create").map(|i| args.remove(i)).is_some();
    let Ok(uri) = std::env::var("NEO4J_URI") else {
        eprintln!(
            "Set NEO4J_URI (and NEO4J_USERNAME, NEO4J_PASSWORD) to a Neo4j server, e.g.\n  \
             docker run -p 7687:7687 -e NEO4J_AUTH=neo4j/secret neo4j:5\n  \
             NEO4J_URI=bolt://localhost:7687 NEO4J_PASSWORD=secret cargo run --example graph_qa -- --create"
        );
        return Ok(());
    };

    if create {
        // Writing the example data is the application's business, outside the chain's reader.
        let user = std::env::var("NEO4J_USERNAME").unwrap_or_else(|_| "neo4j".to_owned());
        let password = std::env::var("NEO4J_PASSWORD").unwrap_or_default();
        let writer = neo4rs::Graph::new(&uri, &user, &password)
            .map_err(|e| catena::core::Error::store(format!("cannot connect to {uri}: {e}")))?;
        writer.run(neo4rs::query(MOVIES)).await.map_err(|e| catena::core::Error::store(e.to_string()))?;
        println!("created the movie graph");
    }

    let graph = Arc::new(Neo4jGraph::from_env()?);
    let model: Arc<dyn ChatModel> = Arc::new(LlamaChatModel::load_default().await?);
    let chain = GraphCypherChain::new(model, graph).await?;
    println!("schema:\n{}\n", chain.schema().render());

    let question = args.first().cloned().unwrap_or_else(|| "Who acted in The Matrix?".to_owned());
    let answer = chain.ask(&question, &RunContext::new()).await?;
    println!("Q: {question}\nCypher: {}", answer.cypher);
    for row in &answer.rows {
        println!("{}", serde_json::Value::Object(row.clone()));
    }
    println!("A: {}", answer.answer.unwrap_or_default());
    Ok(())
}
