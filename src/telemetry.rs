//! Sends catena's spans to an OpenTelemetry backend (Arize Phoenix, Jaeger, Grafana Tempo,
//! Langfuse, an OpenTelemetry Collector, ...) over OTLP/HTTP.
//!
//! Every chat call, embeddings call, tool call, retrieval, rerank, agent run and graph step makes
//! a span in OpenTelemetry's GenAI conventions ([`catena::core::telemetry`](crate::core::telemetry)
//! lists the attributes), with its tokens and cost. This module exports them:
//!
//! - [`init`] sets up logging for a program (what `catena` and the examples call): log lines to
//!   stderr as `RUST_LOG` says, and, when the standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//!   `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) variable is set, the spans to that endpoint;
//!   `OTEL_SERVICE_NAME`, `OTEL_EXPORTER_OTLP_HEADERS` and `OTEL_RESOURCE_ATTRIBUTES` apply as
//!   usual. Nothing is exported, and nothing costs, when they are unset.
//! - [`otlp_layer`] is the same export as a `tracing-subscriber` layer, for a program that sets
//!   up its own subscriber, with the endpoint given in code or taken from the environment.
//!
//! Message and document content is left out of spans unless
//! `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true` (or
//! [`set_capture_content`](crate::core::telemetry::set_capture_content)).
//!
//! ```no_run
//! # fn main() -> catena::core::Result<()> {
//! // OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:6006 for a local Phoenix, say.
//! let _telemetry = catena::telemetry::init("warn")?;
//! // ... run chains and agents; spans are flushed when `_telemetry` is dropped.
//! # Ok(()) }
//! ```

use catena_core::{Error, Result};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// The export's handle: dropping it sends what is still buffered and stops the exporter.
#[must_use = "dropping it stops the export"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").field("exporting", &self.provider.is_some()).finish()
    }
}

impl Telemetry {
    /// Whether spans are being exported.
    #[must_use]
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Sends the spans finished so far now (the exporter otherwise sends in batches, every few
    /// seconds).
    ///
    /// # Errors
    /// The backend did not accept them.
    pub fn flush(&self) -> Result<()> {
        match &self.provider {
            Some(provider) => provider.force_flush().map_err(|e| export_error("flushing the spans", e)),
            None => Ok(()),
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("warning: the last spans could not be exported: {e}");
        }
    }
}

fn export_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::invalid_input(format!(
        "OpenTelemetry export: {what}: {e}. Check OTEL_EXPORTER_OTLP_ENDPOINT (an OTLP/HTTP endpoint such as \
         http://127.0.0.1:4318, or a Phoenix server's http://127.0.0.1:6006)"
    ))
}

/// Whether the environment asks for an OTLP export: `OTEL_EXPORTER_OTLP_ENDPOINT` or
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set, and `OTEL_SDK_DISABLED` is not `true`.
#[must_use]
pub fn configured() -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
    !disabled && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// A layer exporting catena's GenAI spans (target `catena::gen_ai`, level info and up) over
/// OTLP/HTTP to `endpoint` (the full traces URL, e.g. `http://127.0.0.1:6006/v1/traces`), or to
/// the endpoint of the standard environment variables when `None`; and its handle.
///
/// # Errors
/// The exporter cannot be built (a malformed endpoint or header).
pub fn otlp_layer<S>(endpoint: Option<&str>) -> Result<(impl Layer<S> + Send + Sync + 'static, Telemetry)>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span> + Send + Sync,
{
    let mut exporter = opentelemetry_otlp::SpanExporter::builder().with_http();
    if let Some(endpoint) = endpoint {
        exporter = exporter.with_endpoint(endpoint);
    }
    let exporter = exporter.build().map_err(|e| export_error("cannot build the exporter", e))?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("catena");
    }
    let provider =
        SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource.build()).build();
    let tracer = provider.tracer("catena");
    let layer = tracing_opentelemetry::layer().with_tracer(tracer).with_filter(
        tracing_subscriber::filter::Targets::new()
            .with_target(catena_core::telemetry::TARGET, tracing::Level::INFO),
    );
    Ok((layer, Telemetry { provider: Some(provider) }))
}

/// Sets up this process's `tracing` subscriber: log lines to stderr filtered by `RUST_LOG`
/// (`default_filter` when unset, e.g. `"warn"`), plus the OTLP export of the spans when
/// [`configured`]. Keep the handle until the program ends.
///
/// # Errors
/// The export is configured but its exporter cannot be built, or a subscriber is already set.
pub fn init(default_filter: &str) -> Result<Telemetry> {
    init_with(default_filter, Vec::new())
}

/// [`init`] with more layers beside the log lines and the export, such as a
/// [`TraceStore`](crate::traces::TraceStore)'s (what `catena serve --console` adds).
///
/// # Errors
/// As [`init`].
pub fn init_with(default_filter: &str, layers: Vec<BoxedLayer>) -> Result<Telemetry> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: logs piped to files or collectors stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        // A log line that cannot be written (stderr closed, a pipe whose reader left) is dropped;
        // reporting it would print to the same broken stderr, which panics mid-request.
        .log_internal_errors(false)
        .with_filter(filter);
    let mut all = vec![logs.boxed()];
    all.extend(layers);
    let telemetry = if configured() {
        let (export, telemetry) = otlp_layer(None)?;
        all.push(export.boxed());
        telemetry
    } else {
        Telemetry { provider: None }
    };
    tracing_subscriber::registry()
        .with(all)
        .try_init()
        .map_err(|e| export_error("cannot set the subscriber", e))?;
    Ok(telemetry)
}

/// A layer for [`init_with`].
pub type BoxedLayer = Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync + 'static>;
