//! Response bodies: a complete buffer (JSON answers, errors) or an SSE stream fed by a
//! bounded channel. An enum rather than a boxed trait object keeps the JSON path allocation-free.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::session::layer::StreamEnd;
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

/// An SSE body: an optional first chunk, then whatever arrives on the channel. A stream
/// relayed from a peer knows why it ended, and where its client is connected it re-attaches
/// itself to its session's new owner when the session moved ([`RelayHook`]).
#[derive(Debug)]
pub struct SseStream {
    first: Option<Bytes>,
    rx: stream_queue::Receiver,
    _guard: Option<StreamGuard>,
    relay: Option<Box<dyn RelayHook>>,
}

/// What a stream relayed from a peer adds to its body: its end reason, and where the client
/// is connected, opening it again elsewhere when its session moved (`reattach.rs` implements
/// it; a trait so this file does not depend on the request handling a re-attach runs).
pub trait RelayHook: Send + std::fmt::Debug {
    /// The peer the stream is relayed from, and where its end reason is recorded.
    fn source(&self) -> (SocketAddr, StreamEnd);
    /// A chunk goes to the client.
    fn written(&mut self, chunk: &[u8]);
    /// The relay's queue ended: whether a try to open the stream again started.
    fn start(&mut self) -> bool;
    /// Whether a try is in progress.
    fn trying(&self) -> bool;
    /// Polls the try in progress: the stream to continue with, or `None` to end.
    fn poll_reattach(&mut self, cx: &mut Context<'_>) -> Poll<Option<SseStream>>;
    /// Continues with the stream a try opened: relayed from `next` (the peer and its end
    /// reason), or served here (`None`).
    fn continue_with(&mut self, next: Option<(SocketAddr, StreamEnd)>);
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
    /// The next chunk to send; `None` when the stream is over. Cancel-safe: a re-attach in
    /// progress lives in the stream, not in this future.
    pub async fn next_chunk(&mut self) -> Option<Bytes> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    /// Polls for the next chunk; `Ready(None)` when the stream is over.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        loop {
            if let Some(relay) = self.relay.as_deref_mut()
                && relay.trying()
            {
                match std::task::ready!(relay.poll_reattach(cx)) {
                    Some(next) => {
                        self.continue_with(next);
                        continue;
                    }
                    None => return Poll::Ready(None),
                }
            }
            let next = match self.first.take() {
                Some(first) => Some(first),
                None => std::task::ready!(self.rx.poll_recv(cx)),
            };
            match next {
                Some(chunk) => {
                    if let Some(relay) = self.relay.as_deref_mut() {
                        relay.written(&chunk);
                    }
                    return Poll::Ready(Some(chunk));
                }
                None => {
                    if self.relay.as_deref_mut().is_some_and(RelayHook::start) {
                        continue;
                    }
                    return Poll::Ready(None);
                }
            }
        }
    }

    /// Continues the client's body with the stream a re-attach opened (its queue, its guard,
    /// its end reason), keeping what this one knows (the last event id, the attempts).
    fn continue_with(&mut self, mut next: SseStream) {
        self.first = next.first.take();
        std::mem::swap(&mut self.rx, &mut next.rx);
        std::mem::swap(&mut self._guard, &mut next._guard);
        if let Some(relay) = self.relay.as_deref_mut() {
            relay.continue_with(next.relay.as_deref().map(RelayHook::source));
        }
    }

    /// Whether a relayed stream ended because its session moved (or its owner went down).
    pub fn ended_by_move(&self) -> bool {
        self.relay
            .as_deref()
            .is_some_and(|r| r.source().1.get().maybe_moved())
    }

    /// The peer a relayed stream comes from, and where its end reason is recorded.
    pub fn relay_source(&self) -> Option<(SocketAddr, StreamEnd)> {
        self.relay.as_deref().map(RelayHook::source)
    }

    /// Gives a relayed stream its hook (`reattach.rs`).
    pub fn set_relay(&mut self, hook: Box<dyn RelayHook>) {
        self.relay = Some(hook);
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
            relay: None,
        })
    }

    /// A streaming SSE body relayed from a peer, with its `hook`.
    pub fn relayed_sse(
        rx: stream_queue::Receiver,
        guard: StreamGuard,
        hook: Box<dyn RelayHook>,
    ) -> Self {
        Self::Stream(SseStream {
            first: None,
            rx,
            _guard: Some(guard),
            relay: Some(hook),
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
            Body::Stream(s) => s.poll_next(cx).map(|o| o.map(|b| Ok(Frame::data(b)))),
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
