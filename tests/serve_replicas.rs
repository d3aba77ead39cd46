//! `catena serve --upstream ...`: a gateway over three `catena serve` replicas on loopback, on the
//! real default models. One replica is killed while requests are in flight: every request still
//! succeeds (retried on another replica), streams included; restarted, the replica is found by
//! the health checks and serves again. The gateway keeps its own API key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};

/// A `catena serve` process, killed when dropped, its log collected as it is written (an
/// unread pipe would fill and stall the server).
struct Server {
    child: Child,
    base: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_catena"))
            .arg("serve")
            .args(args)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let banner =
            lines.by_ref().map(Result::unwrap).find(|l| l.starts_with("catena serve: http")).unwrap();
        let base = banner.split_whitespace().nth(2).unwrap().trim_end_matches("/v1").to_owned();
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Self { child, base, log }
    }

    fn served(&self, path: &str) -> usize {
        self.log.lock().unwrap().iter().filter(|l| l.contains(path) && l.contains("status=200")).count()
    }
}

/// One request through the gateway: chat (streamed or not) or embeddings; returns what came back.
async fn ask(client: &reqwest::Client, base: &str, n: usize, stream: bool) -> Result<String, String> {
    let authorised = |r: reqwest::RequestBuilder| r.bearer_auth("gateway-key");
    if n % 2 == 1 && !stream {
        let body = json!({"model": "embed", "input": [format!("text number {n}")]});
        let reply = authorised(client.post(format!("{base}/v1/embeddings"))).json(&body).send().await;
        let reply = reply.map_err(|e| e.to_string())?;
        let status = reply.status();
        let v: Value = reply.json().await.map_err(|e| e.to_string())?;
        let len = v["data"][0]["embedding"].as_array().map_or(0, Vec::len);
        return if status.is_success() && len == 384 {
            Ok(format!("{len}"))
        } else {
            Err(format!("{status}: {v}"))
        };
    }
    let body = json!({
        "model": "chat", "messages": [{"role": "user", "content": format!("Count to {}.", n % 5 + 2)}],
        "max_tokens": 6, "temperature": 0, "stream": stream,
    });
    let reply = authorised(client.post(format!("{base}/v1/chat/completions"))).json(&body).send().await;
    let reply = reply.map_err(|e| e.to_string())?;
    let status = reply.status();
    let text = reply.text().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("{status}: {text}"));
    }
    if stream {
        // Server-sent events: text deltas, then [DONE]; an error event would say "error".
        let ok = text.contains("\"delta\"")
            && text.trim_end().ends_with("data: [DONE]")
            && !text.contains("\"error\"");
        return if ok { Ok(text) } else { Err(text) };
    }
    let v: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    v["choices"][0]["message"]["content"].as_str().map(str::to_owned).ok_or(text)
}

async fn ask_many(
    client: &reqwest::Client,
    base: &str,
    from: usize,
    count: usize,
    stream: bool,
) -> Vec<Result<String, String>> {
    futures::stream::iter(from..from + count)
        .map(|n| ask(client, base, n, stream))
        .buffer_unordered(6)
        .collect()
        .await
}

#[test]
fn a_gateway_over_three_replicas_answers_every_request_while_one_is_killed_and_readmits_it() {
    let mut replicas: Vec<Server> = (0..3)
        .map(|_| Server::start(&["--addr", "127.0.0.1:0", "--parallel", "2", "--temperature", "0"]))
        .collect();
    let mut args = vec!["--addr".to_owned(), "127.0.0.1:0".into(), "--api-key".into(), "gateway-key".into()];
    for r in &replicas {
        args.extend(["--upstream".into(), format!("{}/v1", r.base)]);
    }
    args.extend(["--health-interval".into(), "0.3".into()]);
    let gateway = Server::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let client = reqwest::Client::new();
        let unauthorised = client.get(format!("{}/v1/models", gateway.base)).send().await.unwrap();
        assert_eq!(unauthorised.status(), 401, "the gateway's own key is required");

        let warm = ask_many(&client, &gateway.base, 0, 12, false).await;
        assert!(warm.iter().all(Result::is_ok), "{warm:?}");
        for r in &replicas {
            assert!(r.served("/v1/") > 0, "every replica takes requests: {}", r.base);
        }

        // Load, and one replica killed in the middle of it.
        let load = ask_many(&client, &gateway.base, 100, 30, false);
        let victim = replicas[1].child.id();
        let kill = async {
            tokio::time::sleep(Duration::from_millis(400)).await;
            assert!(Command::new("kill").args(["-KILL", &victim.to_string()]).status().unwrap().success());
        };
        let (results, ()) = tokio::join!(load, kill);
        let failed: Vec<_> = results.iter().filter(|r| r.is_err()).collect();
        assert!(failed.is_empty(), "{} of 30 failed: {failed:?}", failed.len());
        // Streams too: one that lands on the dead replica is retried before its first token.
        let streams = ask_many(&client, &gateway.base, 200, 6, true).await;
        assert!(streams.iter().all(Result::is_ok), "{streams:?}");

        // Back on the same address: the health checks find it and it serves again.
        let _ = replicas[1].child.wait();
        let addr = replicas[1].base.trim_start_matches("http://").to_owned();
        replicas[1] = Server::start(&["--addr", &addr, "--parallel", "2", "--temperature", "0"]);
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let after = ask_many(&client, &gateway.base, 300, 18, false).await;
        assert!(after.iter().all(Result::is_ok), "{after:?}");
        assert!(
            replicas[1].served("/v1/chat/completions") + replicas[1].served("/v1/embeddings") > 0,
            "readmitted"
        );
    });
    let log = gateway.log.lock().unwrap().clone();
    assert!(log.iter().any(|l| l.contains("replica ejected")), "the kill was noticed: {log:?}");
    assert!(
        log.iter().any(|l| l.contains("replica failed; trying another")),
        "requests in flight on the killed replica were retried elsewhere: {log:?}"
    );
    assert!(log.iter().any(|l| l.contains("/v1/chat/completions") && l.contains("status=200")), "access log");
}
