//! An upstream's `text/event-stream` body read as JSON-RPC messages, one at a time: body frames
//! into the bounded [`sse::Decoder`], each event's data parsed as JSON. An event whose data is
//! not JSON is skipped (an upstream may send other events; nothing of ours is lost by it); an
//! event past the limit (`client::MAX_MESSAGE`) ends the stream with an error. Used by every reader of an upstream
//! stream: a request's answer stream, the node's standalone stream and a client's own stream.

use std::collections::VecDeque;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::Value;

use super::wire::chain;
use crate::upstream::error::UpstreamError;
use crate::upstream::sse;

/// The messages of one upstream event stream.
pub(super) struct Messages {
    body: Incoming,
    decoder: sse::Decoder,
    /// Decoded from frames already read, not yet handed out.
    ready: VecDeque<Value>,
}

impl Messages {
    /// The messages of `body`, none larger than `limit` bytes.
    pub(super) fn new(body: Incoming, limit: usize) -> Self {
        Self {
            body,
            decoder: sse::Decoder::new(limit),
            ready: VecDeque::new(),
        }
    }

    /// The next message; `None` once the stream ended. Cancel-safe (the only wait is for the
    /// next body frame, which a dropped call does not take), so it may be raced in `select!`.
    pub(super) async fn next(&mut self) -> Result<Option<Value>, UpstreamError> {
        loop {
            if let Some(message) = self.ready.pop_front() {
                return Ok(Some(message));
            }
            let Some(frame) = self.body.frame().await else {
                return Ok(None);
            };
            let frame = frame.map_err(|e| UpstreamError::Unreachable(chain(&e)))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let events = self
                .decoder
                .feed(&data)
                .map_err(|e| UpstreamError::Protocol(e.to_string()))?;
            self.ready.extend(
                events
                    .iter()
                    .filter_map(|event| serde_json::from_slice::<Value>(event).ok()),
            );
        }
    }
}
