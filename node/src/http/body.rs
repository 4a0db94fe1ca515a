//! Response bodies: a complete buffer (JSON answers, errors) or an SSE stream fed by a
//! bounded channel. An enum rather than a boxed trait object keeps the JSON path allocation-free.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::stream_queue;
use bytes::Bytes;
use http_body::{Frame, SizeHint};

/// A response body.
#[derive(Debug)]
pub enum Body {
    /// The whole body at once (or nothing).
    Full(Option<Bytes>),
    /// SSE events as they are produced; ends when every sender is dropped.
    Stream(SseStream),
}

/// An SSE body: an optional first chunk, then whatever arrives on the channel.
#[derive(Debug)]
pub struct SseStream {
    first: Option<Bytes>,
    rx: stream_queue::Receiver,
    _guard: Option<StreamGuard>,
}

/// Runs a closure when the stream body is dropped (client gone or stream ended): used to
/// keep the open-stream gauge true and to cancel work tied to the stream.
pub struct StreamGuard(Option<Box<dyn FnOnce() + Send + Sync>>);

impl std::fmt::Debug for StreamGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StreamGuard")
    }
}

impl StreamGuard {
    /// Calls `f` on drop.
    pub fn new(f: impl FnOnce() + Send + Sync + 'static) -> Self {
        Self(Some(Box::new(f)))
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

impl SseStream {
    /// The next chunk to send; `None` when the stream is over.
    pub async fn next_chunk(&mut self) -> Option<Bytes> {
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        self.rx.recv().await
    }

    /// Whether the server ended the stream to move its client elsewhere: the connection
    /// closes after it (`stream_queue::Sender::close_connection_after`).
    pub fn closes_connection(&self) -> bool {
        self.rx.closes_connection()
    }
}

impl Body {
    /// An empty body.
    pub fn empty() -> Self {
        Self::Full(None)
    }
    /// A complete body.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        Self::Full(Some(bytes.into()))
    }
    /// A streaming SSE body.
    pub fn sse(
        first: Option<Bytes>,
        rx: stream_queue::Receiver,
        guard: Option<StreamGuard>,
    ) -> Self {
        Self::Stream(SseStream {
            first,
            rx,
            _guard: guard,
        })
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Body::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Body::Stream(s) => {
                if let Some(first) = s.first.take() {
                    return Poll::Ready(Some(Ok(Frame::data(first))));
                }
                s.rx.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Body::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Body::Full(None) => SizeHint::with_exact(0),
            Body::Stream(_) => SizeHint::default(),
        }
    }
}
