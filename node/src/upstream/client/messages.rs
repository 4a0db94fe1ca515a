//! An upstream's `text/event-stream` body read as JSON-RPC messages, one at a time: body frames
//! into the bounded [`sse::Decoder`], each event's data parsed as JSON. An event whose data is
//! not JSON is skipped (an upstream may send other events; nothing of ours is lost by it) by
//! [`Messages::next`], handed out as `None` by [`Messages::next_event`] (its id counts); an
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
    /// Decoded from frames already read, not yet handed out (`None`: not JSON), each with the
    /// stream's last event id.
    ready: VecDeque<(Option<Value>, Option<Vec<u8>>)>,
    /// The last event id of the last event handed out or skipped.
    last_id: Option<Vec<u8>>,
}

impl Messages {
    /// The messages of `body`, none larger than `limit` bytes.
    pub(super) fn new(body: Incoming, limit: usize) -> Self {
        Self {
            body,
            decoder: sse::Decoder::new(limit),
            ready: VecDeque::new(),
            last_id: None,
        }
    }

    /// The next message; `None` once the stream ended. Cancel-safe (the only wait is for the
    /// next body frame, which a dropped call does not take), so it may be raced in `select!`.
    pub(super) async fn next(&mut self) -> Result<Option<Value>, UpstreamError> {
        loop {
            match self.next_event().await? {
                None => return Ok(None),
                Some(Some(message)) => return Ok(Some(message)),
                Some(None) => {}
            }
        }
    }

    /// The last event id (`id:`) of the last event [`Messages::next_event`] or
    /// [`Messages::next`] handed out or skipped.
    pub(super) fn last_event_id(&self) -> Option<&[u8]> {
        self.last_id.as_deref()
    }

    /// The next event: its message, or `None` when its data is not JSON (a priming event's
    /// empty data: its id is still [`Messages::last_event_id`] then); `None` once the stream
    /// ended. Cancel-safe like [`Messages::next`].
    pub(super) async fn next_event(&mut self) -> Result<Option<Option<Value>>, UpstreamError> {
        loop {
            if let Some((message, id)) = self.ready.pop_front() {
                self.last_id = id;
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
                .feed_events(&data)
                .map_err(|e| UpstreamError::Protocol(e.to_string()))?;
            self.ready.extend(
                events
                    .into_iter()
                    .map(|event| (serde_json::from_slice::<Value>(&event.data).ok(), event.id)),
            );
        }
    }
}
