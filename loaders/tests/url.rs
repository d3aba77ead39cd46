//! The URL loader against a small HTTP server on loopback: HTML, PDF, plain text, error statuses,
//! the size cap and the timeout.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]

use std::time::Duration;

use catena_core::{Loader, RunContext};
use catena_loaders::UrlLoader;
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Serves fixed responses by path until the test ends.
async fn serve() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = socket.read(&mut buf).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]).into_owned();
                let path = request.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let (status, kind, body): (&str, &str, Vec<u8>) = match path.as_str() {
                    "/page" => (
                        "200 OK",
                        "text/html; charset=utf-8",
                        b"<title>T</title><nav>menu</nav><p>Hello <a href='/next'>next</a></p>".to_vec(),
                    ),
                    "/notes.txt" => ("200 OK", "text/plain", "plain notes \u{e9}".as_bytes().to_vec()),
                    "/big" => ("200 OK", "text/plain", vec![b'x'; 100_000]),
                    "/slow" => {
                        tokio::time::sleep(Duration::from_secs(5)).await;
                        ("200 OK", "text/plain", b"late".to_vec())
                    }
                    "/bin" => ("200 OK", "application/octet-stream", vec![0, 1, 2, 0, 255]),
                    _ => ("404 Not Found", "text/plain", b"nope".to_vec()),
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(&body).await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_text_and_failures() {
    let base = serve().await;
    let urls = ["/page", "/notes.txt", "/missing", "/big", "/slow", "/bin"].map(|p| format!("{base}{p}"));
    let loader = UrlLoader::new(urls.clone()).with_max_bytes(50_000).with_timeout(Duration::from_millis(800));
    let docs: Vec<_> = loader.load(&RunContext::new()).collect().await;
    assert_eq!(docs.len(), 6);
    let page = docs[0].as_ref().unwrap();
    assert_eq!(page.content, "Hello next");
    assert_eq!(page.metadata["source"], urls[0].as_str());
    assert_eq!(page.metadata["links"][0]["href"], format!("{base}/next"));
    assert_eq!(docs[1].as_ref().unwrap().content, "plain notes \u{e9}");
    let errors: Vec<String> = docs[2..].iter().map(|d| d.as_ref().unwrap_err().to_string()).collect();
    assert!(errors[0].contains("404"), "{}", errors[0]);
    assert!(errors[1].contains("larger than the 50000 byte limit"), "{}", errors[1]);
    assert!(errors[2].contains("timed out"), "{}", errors[2]);
    assert!(errors[3].contains("binary"), "{}", errors[3]);
}
