//! Headless Chromium (the Debian package scripts/setup.sh installs) driven over the DevTools
//! protocol with chromiumoxide: pages whose console output, script errors and failed loads are
//! collected, conditions waited for, screenshots checked for content. Shared by the console
//! test and the console's load benchmark (examples/console_load.rs).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, dead_code)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chromiumoxide::cdp::browser_protocol::log::{EnableParams as LogEnable, EventEntryAdded};
use chromiumoxide::cdp::browser_protocol::page::CaptureScreenshotFormat;
use chromiumoxide::cdp::js_protocol::runtime::{EventConsoleApiCalled, EventExceptionThrown};
use chromiumoxide::page::ScreenshotParams;
use chromiumoxide::{Browser, BrowserConfig, Page};
use futures::StreamExt;

/// A running headless Chromium; closed (and its profile deleted) when dropped.
pub(crate) struct Chromium {
    pub(crate) browser: Browser,
    _profile: tempfile::TempDir,
}

/// What a page wrote to its console, threw, or logged (failed loads, policy violations).
#[derive(Clone, Default)]
pub(crate) struct Console(Arc<Mutex<Vec<String>>>);

impl Console {
    pub(crate) fn messages(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    fn push(&self, line: String) {
        self.0.lock().unwrap().push(line);
    }
}

/// The browser's path (chromiumoxide starts it by path, not through `PATH`).
fn executable() -> std::path::PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    ["chromium-headless-shell", "chromium"]
        .into_iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|candidate| candidate.is_file())
        .expect("headless Chromium is missing: run scripts/setup.sh (make setup)")
}

impl Chromium {
    /// Starts the browser with a `width` × `height` window and a throwaway profile.
    pub(crate) async fn launch(width: u32, height: u32) -> Self {
        let profile = tempfile::tempdir().unwrap();
        let config = BrowserConfig::builder()
            .chrome_executable(executable())
            .no_sandbox()
            .window_size(width, height)
            .user_data_dir(profile.path())
            .arg("--disable-gpu")
            .arg("--hide-scrollbars")
            .launch_timeout(Duration::from_secs(60))
            .request_timeout(Duration::from_secs(120))
            .build()
            .unwrap();
        let (browser, mut handler) = Browser::launch(config).await.unwrap();
        tokio::spawn(async move { while handler.next().await.is_some() {} });
        Self { browser, _profile: profile }
    }

    /// A blank page listening to its console; navigate it with `goto`.
    pub(crate) async fn page(&self) -> (Page, Console) {
        let page = self.browser.new_page("about:blank").await.unwrap();
        let console = Console::default();
        page.execute(LogEnable::default()).await.unwrap();
        let mut calls = page.event_listener::<EventConsoleApiCalled>().await.unwrap();
        let mut thrown = page.event_listener::<EventExceptionThrown>().await.unwrap();
        let mut logged = page.event_listener::<EventEntryAdded>().await.unwrap();
        let sink = console.clone();
        tokio::spawn(async move {
            loop {
                let line = tokio::select! {
                    Some(call) = calls.next() => format!(
                        "console.{:?}: {}",
                        call.r#type,
                        call.args.iter().map(|a| a.value.as_ref().map_or_else(|| format!("{:?}", a.description), ToString::to_string)).collect::<Vec<_>>().join(" ")
                    ),
                    Some(e) = thrown.next() => format!(
                        "uncaught: {} {}",
                        e.exception_details.text,
                        e.exception_details.exception.as_ref().and_then(|x| x.description.clone()).unwrap_or_default()
                    ),
                    Some(entry) = logged.next() => format!("log.{:?}: {} ({})", entry.entry.level, entry.entry.text, entry.entry.url.clone().unwrap_or_default()),
                    else => break,
                };
                sink.push(line);
            }
        });
        (page, console)
    }
}

/// The value of a JavaScript expression (awaited when it is a promise).
pub(crate) async fn eval<T: serde::de::DeserializeOwned>(page: &Page, expression: &str) -> T {
    page.evaluate(expression).await.unwrap_or_else(|e| panic!("{expression}: {e}")).into_value().unwrap()
}

/// Waits until `expression` is truthy; panics with `what` (and the page's text) after `timeout`.
pub(crate) async fn wait_for(page: &Page, expression: &str, timeout: Duration, what: &str) {
    let started = Instant::now();
    loop {
        let ok: bool = eval(page, &format!("Boolean({expression})")).await;
        if ok {
            return;
        }
        if started.elapsed() > timeout {
            let text: String = eval(page, "document.body ? document.body.innerText : ''").await;
            panic!("timed out after {timeout:?} waiting for {what}; the page says:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A PNG screenshot of the viewport.
pub(crate) async fn screenshot(page: &Page) -> Vec<u8> {
    page.screenshot(ScreenshotParams::builder().format(CaptureScreenshotFormat::Png).build()).await.unwrap()
}

/// The share of a PNG's pixels that differ from its most common colour: 0 for a blank image.
pub(crate) fn painted_fraction(png: &[u8]) -> f64 {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(png));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut pixels).unwrap();
    let channels = frame.color_type.samples();
    let mut counts = std::collections::HashMap::<&[u8], usize>::new();
    for pixel in pixels[..frame.buffer_size()].chunks(channels) {
        *counts.entry(pixel).or_default() += 1;
    }
    let total: usize = counts.values().sum();
    let background = counts.values().copied().max().unwrap_or(0);
    #[allow(clippy::cast_precision_loss)]
    let painted = (total - background) as f64 / total.max(1) as f64;
    painted
}
