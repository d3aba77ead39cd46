//! An S3-compatible object store on loopback for the LanceDB-on-S3 tests: moto's S3 server
//! (pinned in scripts/moto/requirements.txt, installed by scripts/fetch-data.sh), started on a
//! free port with one empty bucket, stopped when dropped (included with `#[path]`).

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running server with one bucket. Stores go under `s3://BUCKET/...` with [`options`](Self::options)
/// (the library) or [`env`](Self::env) (a `catena` process).
pub(crate) struct S3Server {
    child: Child,
    pub(crate) endpoint: String,
    pub(crate) bucket: String,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[allow(dead_code)]
impl S3Server {
    /// Starts the server, or `None` (test skipped) when scripts/fetch-data.sh has not installed
    /// it and the run does not require the data (`CATENA_REQUIRE_DATA` unset).
    pub(crate) fn start(bucket: &str) -> Option<Self> {
        Self::launch(bucket, false)
    }

    /// [`start`](Self::start), then every request after the bucket's creation is checked
    /// against moto's (empty) IAM: any credentials are refused, as unknown keys are by S3.
    pub(crate) fn start_refusing_credentials(bucket: &str) -> Option<Self> {
        Self::launch(bucket, true)
    }

    fn launch(bucket: &str, refuse_credentials: bool) -> Option<Self> {
        let data = std::env::var_os("CATENA_DATA_DIR").map(PathBuf::from).unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/catena/data")
        });
        let program = data.join("moto/bin/moto_server");
        if !program.exists() {
            assert!(
                std::env::var_os("CATENA_REQUIRE_DATA").is_none(),
                "moto's S3 server is missing at {}; run scripts/fetch-data.sh",
                program.display()
            );
            eprintln!("moto not installed (scripts/fetch-data.sh): S3 tests skipped");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        // CATENA_S3_LOG=FILE keeps moto's request log (one line per request, with its status:
        // 412 is a conditional write refused).
        let log = || match std::env::var_os("CATENA_S3_LOG") {
            Some(path) => std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_or_else(|_| Stdio::null(), Stdio::from),
            None => Stdio::null(),
        };
        let mut command = Command::new(&program);
        if refuse_credentials {
            // moto enforces IAM after this many requests: the bucket's creation goes through.
            command.env("INITIAL_NO_AUTH_ACTION_COUNT", "1");
        }
        let child = command
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(log())
            .stderr(log())
            .spawn()
            .expect("moto_server starts");
        let server = Self { child, endpoint: format!("http://127.0.0.1:{port}"), bucket: bucket.to_owned() };
        let deadline = Instant::now() + Duration::from_secs(60);
        // The bucket is made with one plain HTTP request (moto accepts it unsigned), which is
        // also the readiness check.
        loop {
            if let Some(status) = http_put(port, &format!("/{bucket}")) {
                assert_eq!(status, 200, "moto did not create bucket {bucket}");
                return Some(server);
            }
            assert!(Instant::now() < deadline, "moto's S3 server did not start within 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `s3://BUCKET/PREFIX`.
    pub(crate) fn uri(&self, prefix: &str) -> String {
        format!("s3://{}/{prefix}", self.bucket)
    }

    /// LanceDB storage options that reach this server.
    pub(crate) fn options(&self) -> Vec<(String, String)> {
        options_for(&self.endpoint)
    }

    /// The standard environment variables that point a `catena` process at this server.
    pub(crate) fn env(&self) -> Vec<(String, String)> {
        env_for(&self.endpoint)
    }
}

/// LanceDB storage options for an S3 server at `endpoint` (with the test credentials).
#[allow(dead_code)]
pub(crate) fn options_for(endpoint: &str) -> Vec<(String, String)> {
    env_for(endpoint)
        .into_iter()
        .map(|(k, v)| (k.to_lowercase().replace("aws_endpoint_url", "aws_endpoint"), v))
        .collect()
}

fn env_for(endpoint: &str) -> Vec<(String, String)> {
    [
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_ACCESS_KEY_ID", "catena-test"),
        ("AWS_SECRET_ACCESS_KEY", "catena-test-secret"),
        ("AWS_REGION", "us-east-1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// The status of `PUT path` with an empty body, or `None` when nothing answers yet.
fn http_put(port: u16, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        stream,
        "PUT {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}
