//! Text-to-Cypher against `boltstub` (Neo4j's scripted Bolt server, from PyPI `boltkit`, fetched
//! by scripts/fetch-data.sh): wire-level contract tests of schema introspection, query execution
//! and a server FAILURE. Each stub serves one script and exits 0 only if the driver sent exactly
//! the scripted messages. Live tests against a real server run when `NEO4J_URI` is set.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic, missing_docs)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use catena::core::testing::ScriptedChatModel;
use catena::core::{ChatModel, ErrorKind, RunContext};
use catena::query::cypher::{
    CypherGuard, CypherRejectReason, GraphCypherChain, Neo4jGraph, RelationshipPattern, SchemaSource,
};
use serde_json::json;

fn boltstub() -> Option<PathBuf> {
    let data = std::env::var_os("CATENA_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/catena/data"));
    let path = data.join("bin/boltstub");
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var_os("CATENA_REQUIRE_DATA").is_none(),
        "boltstub missing at {}; run scripts/fetch-data.sh",
        path.display()
    );
    eprintln!("boltstub not fetched (scripts/fetch-data.sh): test skipped");
    None
}

/// A free loopback port this process has not handed out before.
fn fresh_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap();
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// A running stub serving `script`; `finish` checks it consumed the whole script.
struct Stub {
    child: Option<Child>,
    port: u16,
    /// What the stub printed (its log goes to stdout), read by a thread as it comes.
    log: Arc<std::sync::Mutex<String>>,
    _dir: tempfile::TempDir,
}

impl Drop for Stub {
    /// A test that fails before `finish` still stops its stub, and shows what the stub saw.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            eprintln!("boltstub log:\n{}", self.log.lock().unwrap());
        }
    }
}

impl Stub {
    fn start(script: &str) -> Option<Self> {
        let program = boltstub()?;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("script.bolt");
        std::fs::write(&path, script).unwrap();
        // Ready is when the stub itself says it listens. The socket table is not enough: under
        // load the stub (a Python program) can take seconds to start, and a port handed out by
        // the kernel's port-0 allocation can meanwhile be listened on briefly by another test's
        // probe, which made the port look ready before the stub had bound it (CI saw "connection
        // refused" with an empty stub log). A stub that dies before listening (its port taken)
        // is started again on another port.
        for _ in 0..5 {
            let port = fresh_port();
            let mut child = Command::new(&program)
                .arg("-v")
                .arg(port.to_string())
                .arg(&path)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let log = Arc::new(std::sync::Mutex::new(String::new()));
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            let (stdout, stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
            for (stream, is_stdout) in
                [(Box::new(stdout) as Box<dyn std::io::Read + Send>, true), (Box::new(stderr), false)]
            {
                let (log, ready) = (Arc::clone(&log), ready_tx.clone());
                std::thread::spawn(move || {
                    use std::io::BufRead;
                    for line in std::io::BufReader::new(stream).lines().map_while(std::result::Result::ok) {
                        if is_stdout && line.contains("Listening for incoming connections") {
                            let _ = ready.send(());
                        }
                        let mut log = log.lock().unwrap();
                        log.push_str(&line);
                        log.push('\n');
                    }
                });
            }
            drop(ready_tx);
            // The channel closes without a message when the stub exits before listening.
            match ready_rx.recv_timeout(Duration::from_secs(30)) {
                Ok(()) => return Some(Self { child: Some(child), port, log, _dir: dir }),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    let _ = child.kill();
                    panic!("boltstub did not start listening within 30 s:\n{}", log.lock().unwrap());
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    let _ = child.wait();
                    eprintln!(
                        "boltstub on port {port} exited before listening: {}; starting another",
                        log.lock().unwrap()
                    );
                }
            }
        }
        panic!("boltstub would not start on five ports in a row")
    }

    fn uri(&self) -> String {
        format!("bolt://127.0.0.1:{}", self.port)
    }

    /// Waits (bounded) for the stub to exit and asserts the script ran to its end.
    fn finish(mut self) {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                child.kill().unwrap();
                break child.wait().unwrap();
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        // The reader threads finish the log once the stub's pipes close.
        std::thread::sleep(Duration::from_millis(50));
        assert!(status.success(), "boltstub: script not followed ({status}):\n{}", self.log.lock().unwrap());
    }
}

const PREAMBLE: &str = "!: BOLT 4\n!: AUTO HELLO\n!: AUTO RESET\n!: AUTO GOODBYE\n!: AUTO BEGIN\n!: AUTO COMMIT\n!: AUTO ROLLBACK\n\n";

const NODE_PROPS: &str = "CALL db.schema.nodeTypeProperties() YIELD nodeLabels, propertyName, propertyTypes RETURN nodeLabels, propertyName, propertyTypes";
const REL_PROPS: &str = "CALL db.schema.relTypeProperties() YIELD relType, propertyName, propertyTypes RETURN relType, propertyName, propertyTypes";
const PATTERNS: &str = "MATCH (a)-[r]->(b) WITH DISTINCT labels(a) AS starts, type(r) AS type, labels(b) AS ends UNWIND starts AS start UNWIND ends AS end RETURN DISTINCT start, type, end";

const APOC: &str = "CALL apoc.meta.data() YIELD label, other, elementType, type, property RETURN label, other, elementType, type, property";

/// The server answers the APOC probe with "no such procedure", as a server without APOC does.
fn no_apoc_script() -> String {
    format!(
        r#"C: RUN "{APOC}" {{}} {{"mode": "r"}}
   PULL {{"n": 500, "qid": -1}}
S: FAILURE {{"code": "Neo.ClientError.Procedure.ProcedureNotFound", "message": "There is no procedure with the name `apoc.meta.data` registered for this database instance."}}
   IGNORED
"#
    )
}

fn schema_script() -> String {
    format!(
        r#"C: RUN "{NODE_PROPS}" {{}} {{"mode": "r"}}
   PULL {{"n": 500, "qid": -1}}
S: SUCCESS {{"fields": ["nodeLabels", "propertyName", "propertyTypes"]}}
   RECORD [["Person"], "name", ["String"]]
   RECORD [["Person"], "born", ["Long"]]
   RECORD [["Movie"], "title", ["String"]]
   RECORD [["Movie"], "released", ["Long"]]
   SUCCESS {{}}
C: RUN "{REL_PROPS}" {{}} {{"mode": "r"}}
   PULL {{"n": 500, "qid": -1}}
S: SUCCESS {{"fields": ["relType", "propertyName", "propertyTypes"]}}
   RECORD [":`ACTED_IN`", "roles", ["StringArray"]]
   RECORD [":`DIRECTED`", null, null]
   SUCCESS {{}}
C: RUN "{PATTERNS}" {{}} {{"mode": "r"}}
   PULL {{"n": 500, "qid": -1}}
S: SUCCESS {{"fields": ["start", "type", "end"]}}
   RECORD ["Person", "ACTED_IN", "Movie"]
   RECORD ["Person", "DIRECTED", "Movie"]
   SUCCESS {{}}
"#
    )
}

#[tokio::test]
async fn schema_introspection_over_bolt() {
    // No APOC on this server: the probe fails and the built-in procedures answer.
    let Some(stub) = Stub::start(&format!("{PREAMBLE}{}{}", no_apoc_script(), schema_script())) else {
        return;
    };
    let graph = Neo4jGraph::connect(&stub.uri(), "neo4j", "pass").unwrap();
    let schema = graph.schema(SchemaSource::Auto).await.unwrap();
    assert_eq!(
        schema.node_properties["Person"],
        [("name".into(), "String".into()), ("born".into(), "Long".into())]
    );
    assert_eq!(schema.relationship_properties["ACTED_IN"], [("roles".into(), "StringArray".into())]);
    assert!(!schema.relationship_properties.contains_key("DIRECTED"));
    assert_eq!(
        schema.relationships,
        [
            RelationshipPattern::new("Person", "ACTED_IN", "Movie"),
            RelationshipPattern::new("Person", "DIRECTED", "Movie")
        ]
    );
    let text = schema.render();
    assert!(text.contains("Person {name: String, born: Long}"), "{text}");
    assert!(text.contains("(:Person)-[:ACTED_IN]->(:Movie)"), "{text}");
    drop(graph);
    stub.finish();
}

#[tokio::test]
async fn apoc_schema_when_the_server_has_it() {
    let script = format!(
        r#"{PREAMBLE}C: RUN "{APOC}" {{}} {{"mode": "r"}}
   PULL {{"n": 500, "qid": -1}}
S: SUCCESS {{"fields": ["label", "other", "elementType", "type", "property"]}}
   RECORD ["Person", ["Movie"], "node", "RELATIONSHIP", "ACTED_IN"]
   RECORD ["Person", [], "node", "STRING", "name"]
   RECORD ["Movie", [], "node", "INTEGER", "released"]
   RECORD ["ACTED_IN", [], "relationship", "LIST", "roles"]
   SUCCESS {{}}
"#
    );
    let Some(stub) = Stub::start(&script) else { return };
    let graph = Neo4jGraph::connect(&stub.uri(), "neo4j", "pass").unwrap();
    let schema = graph.schema(SchemaSource::Auto).await.unwrap();
    assert_eq!(schema.relationships, [RelationshipPattern::new("Person", "ACTED_IN", "Movie")]);
    assert_eq!(schema.node_properties["Person"], [("name".into(), "STRING".into())]);
    assert_eq!(schema.relationship_properties["ACTED_IN"], [("roles".into(), "LIST".into())]);
    drop(graph);
    stub.finish();
}

#[tokio::test]
async fn the_chain_corrects_directions_runs_and_answers() {
    let query =
        "MATCH (m:Movie {title: 'The Matrix'})<-[:ACTED_IN]-(p:Person) RETURN p.name AS name LIMIT 100";
    let script = format!(
        r#"{PREAMBLE}{}{}C: RUN "{query}" {{}} {{"mode": "r"}}
   PULL {{"n": 500, "qid": -1}}
S: SUCCESS {{"fields": ["name"]}}
   RECORD ["Keanu Reeves"]
   RECORD ["Carrie-Anne Moss"]
   SUCCESS {{}}
"#,
        no_apoc_script(),
        schema_script()
    );
    let Some(stub) = Stub::start(&script) else { return };
    let graph = Arc::new(Neo4jGraph::connect(&stub.uri(), "neo4j", "pass").unwrap());
    // The model writes the arrow backwards and adds a write on the first try.
    let model = Arc::new(ScriptedChatModel::new([
        "MATCH (p:Person) SET p.seen = true RETURN p",
        "```cypher\nMATCH (m:Movie {title: 'The Matrix'})-[:ACTED_IN]->(p:Person) RETURN p.name AS name\n```",
        "Keanu Reeves and Carrie-Anne Moss.",
    ]));
    let chain = GraphCypherChain::new(model.clone() as Arc<dyn ChatModel>, graph.clone()).await.unwrap();
    let answer = chain.ask("Who acted in The Matrix?", &RunContext::new()).await.unwrap();
    assert_eq!(answer.cypher, query);
    assert_eq!(
        answer.rows,
        vec![json!({"name": "Keanu Reeves"}), json!({"name": "Carrie-Anne Moss"})]
            .into_iter()
            .map(|v| v.as_object().unwrap().clone())
            .collect::<Vec<_>>()
    );
    assert_eq!(answer.answer.as_deref(), Some("Keanu Reeves and Carrie-Anne Moss."));
    assert!(answer.attempts[0].error.as_deref().unwrap().contains("SET writes"), "{:?}", answer.attempts);
    // The prompt showed the schema; the answer step saw the rows.
    let requests = model.requests();
    assert!(requests[0].messages[0].content.contains("(:Person)-[:ACTED_IN]->(:Movie)"));
    assert!(requests[2].messages[0].content.contains("Carrie-Anne Moss"));
    drop(chain);
    drop(graph);
    stub.finish();
}

#[tokio::test]
async fn a_server_failure_is_a_typed_error_and_the_model_sees_it() {
    let bad = "MATCH (p:Person) RETURN p.nmae AS name LIMIT 100";
    let script = format!(
        r#"{PREAMBLE}C: RUN "{bad}" {{}} {{"mode": "r"}}
   PULL {{"n": 500, "qid": -1}}
S: FAILURE {{"code": "Neo.ClientError.Statement.SyntaxError", "message": "Variable `nmae` not defined"}}
   IGNORED
"#
    );
    let Some(stub) = Stub::start(&script) else { return };
    let graph = Arc::new(Neo4jGraph::connect(&stub.uri(), "neo4j", "pass").unwrap());
    let guarded = CypherGuard::new().check("MATCH (p:Person) RETURN p.nmae AS name").unwrap();
    let err = graph.query(&guarded, &serde_json::Map::new()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Store, "{err}");
    assert!(err.to_string().contains("Neo.ClientError.Statement.SyntaxError"), "{err}");
    assert!(err.to_string().contains("Variable `nmae` not defined"), "{err}");
    drop(graph);
    stub.finish();
}

#[tokio::test]
async fn an_unreachable_server_is_a_typed_error_without_a_hang() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let graph = Neo4jGraph::connect(&format!("bolt://127.0.0.1:{port}"), "neo4j", "x")
        .unwrap()
        .with_timeout(Duration::from_secs(5));
    let started = Instant::now();
    let err = graph.schema(SchemaSource::Builtin).await.unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Store | ErrorKind::Timeout), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn the_reader_refuses_writes_admin_and_stacked_statements() {
    let guard = CypherGuard::new().with_max_rows(50);
    let refused = [
        ("CREATE (n:Person {name: 'x'})", CypherRejectReason::Write),
        ("MATCH (n) DETACH DELETE n", CypherRejectReason::Write),
        ("MERGE (n:Person {name: 'x'}) RETURN n", CypherRejectReason::Write),
        ("MATCH (n) SET n.name = 'x' RETURN n", CypherRejectReason::Write),
        ("MATCH (n) REMOVE n.name RETURN n", CypherRejectReason::Write),
        ("MATCH (n) WITH n DELETE n", CypherRejectReason::Write),
        ("LOAD CSV FROM 'file:///etc/passwd' AS line RETURN line", CypherRejectReason::Write),
        ("MATCH (n) FOREACH (x IN [1] | SET n.a = x)", CypherRejectReason::Write),
        ("MATCH (n) CALL { WITH n DELETE n } IN TRANSACTIONS RETURN 1", CypherRejectReason::Write),
        ("DROP INDEX movie_title", CypherRejectReason::Write),
        ("CALL apoc.periodic.iterate('MATCH (n) RETURN n', 'DELETE n', {})", CypherRejectReason::Procedure),
        ("CALL apoc.create.node(['X'], {}) YIELD node RETURN node", CypherRejectReason::Procedure),
        ("CALL dbms.security.createUser('x', 'y', false)", CypherRejectReason::Procedure),
        ("CALL db.clearQueryCaches()", CypherRejectReason::Procedure),
        ("SHOW USERS", CypherRejectReason::Admin),
        ("GRANT ROLE admin TO bob", CypherRejectReason::Admin),
        ("STOP DATABASE neo4j", CypherRejectReason::Admin),
        ("MATCH (n) RETURN n; MATCH (m) DETACH DELETE m", CypherRejectReason::MultipleStatements),
        ("MATCH (n) RETURN n; // and then\nCREATE (x)", CypherRejectReason::MultipleStatements),
        ("/* nothing */ // here", CypherRejectReason::Empty),
        ("MATCH (n) RETURN n LIMIT $many", CypherRejectReason::Limit),
        ("MATCH (n) RETURN 'unterminated", CypherRejectReason::Syntax),
        ("MATCH (n) RETURN n /* open", CypherRejectReason::Syntax),
        ("MATCH (n) RETURN n ＬＩＭＩＴ 5", CypherRejectReason::Syntax),
        // Found by fuzzing: an open bracket hid the final LIMIT, and a second one was added.
        ("MATCH (m) RETURN count(*=~DESC LIMIT 500", CypherRejectReason::Syntax),
        ("MATCH (n)) RETURN n", CypherRejectReason::Syntax),
        ("MATCH (n {a: [1, 2}]) RETURN n", CypherRejectReason::Syntax),
        ("LOAD\"CSV FROM \"fi AS r RETURN r", CypherRejectReason::Write),
        // Found by fuzzing: Neo4j reads `1create` as 1 then CREATE, which the guard took for one
        // number.
        ("MATCH (n) WITH n, 1create (m:Pwned) RETURN n", CypherRejectReason::Syntax),
        ("MATCH (n) RETURN n, 0x1Fdelete", CypherRejectReason::Syntax),
        ("MATCH (n) RETURN {merge: 1},\u{0}4create", CypherRejectReason::Syntax),
        ("MATCH (n) WITH n, $0create (m:Pwned) RETURN n", CypherRejectReason::Syntax),
        ("MATCH (n) WITH n, $¾MERGE (m:Pwned) RETURN n", CypherRejectReason::Syntax),
        ("MATCH (n) RETURN $", CypherRejectReason::Syntax),
        ("MATCH (n) RETURN n CALL", CypherRejectReason::Syntax),
    ];
    for (query, reason) in refused {
        let err = guard.check(query).unwrap_err();
        assert_eq!(err.reason, reason, "{query}: {err}");
    }
    let accepted = [
        ("MATCH (n:Person) RETURN n.name", "MATCH (n:Person) RETURN n.name LIMIT 50"),
        (
            "MATCH (n) RETURN n.set, n.delete, {create: 1} AS m LIMIT 500;",
            "MATCH (n) RETURN n.set, n.delete, {create: 1} AS m LIMIT 50",
        ),
        (
            "MATCH (p)-[:CREATED]->(x) WHERE p.name = 'DETACH DELETE' RETURN x LIMIT 3",
            "MATCH (p)-[:CREATED]->(x) WHERE p.name = 'DETACH DELETE' RETURN x LIMIT 3",
        ),
        ("CALL db.labels() YIELD label RETURN label", "CALL db.labels() YIELD label RETURN label LIMIT 50"),
        ("MATCH (n) // comment with DELETE\nRETURN count(n)", "MATCH (n) RETURN count(n) LIMIT 50"),
        ("MATCH (n) WITH n LIMIT 1000 RETURN n", "MATCH (n) WITH n LIMIT 1000 RETURN n LIMIT 50"),
        ("CALL { MATCH (n) RETURN n } RETURN n", "CALL { MATCH (n) RETURN n } RETURN n LIMIT 50"),
        (
            "RETURN 42, 1_000, 3.14, 6.02e23, 1e-5, 2E+3, 0x1F, 0o17, $0, $name2",
            "RETURN 42, 1_000, 3.14, 6.02e23, 1e-5, 2E+3, 0x1F, 0o17, $0, $name2 LIMIT 50",
        ),
    ];
    for (query, expected) in accepted {
        assert_eq!(guard.check(query).unwrap_or_else(|e| panic!("{query}: {e}")).query, expected);
    }
}

#[tokio::test]
async fn live_neo4j_when_configured() {
    if std::env::var_os("NEO4J_URI").is_none() {
        eprintln!("NEO4J_URI not set: live Neo4j test skipped");
        return;
    }
    let graph = Neo4jGraph::from_env().unwrap();
    let schema = graph.schema(SchemaSource::Builtin).await.unwrap();
    eprintln!("{}", schema.render());
    let rows = graph
        .query(&CypherGuard::new().check("MATCH (n) RETURN count(n) AS n").unwrap(), &serde_json::Map::new())
        .await
        .unwrap();
    assert!(rows[0]["n"].is_i64());
}
