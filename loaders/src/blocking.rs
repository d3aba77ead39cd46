//! Streams fed by a blocking producer on tokio's blocking pool, through a bounded channel: file
//! parsing stays off the async workers, and a slow consumer holds back the producer, so memory
//! stays bounded however large the input.

use catena_core::{Document, Result};
use futures::stream::BoxStream;
use tokio::sync::mpsc;

/// How many documents may wait in the channel before the producer blocks.
const BUFFER: usize = 16;

/// A sink the producer pushes documents (or per-item errors) into; `false` from [`Sink::send`]
/// means the consumer went away and the producer should stop.
pub(crate) struct Sink(mpsc::Sender<Result<Document>>);

impl Sink {
    pub(crate) fn send(&self, item: Result<Document>) -> bool {
        self.0.blocking_send(item).is_ok()
    }
}

/// Runs `produce` on the blocking pool and streams what it sends.
pub(crate) fn blocking_stream<'a>(
    produce: impl FnOnce(&Sink) + Send + 'static,
) -> BoxStream<'a, Result<Document>> {
    let (tx, mut rx) = mpsc::channel(BUFFER);
    tokio::task::spawn_blocking(move || produce(&Sink(tx)));
    Box::pin(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)))
}
