//! Server-sent events: parsing one event, and reading events incrementally from a long-lived
//! (possibly chunked) HTTP body.

use bytes::{Buf, BytesMut};
use serde_json::Value;

use super::ClientError;

/// One server-sent event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// `id:` field, the resumption point.
    pub id: Option<String>,
    /// `event:` field.
    pub event: Option<String>,
    /// `data:` lines joined with `\n` (empty for priming events).
    pub data: String,
}

impl SseEvent {
    /// The JSON-RPC message in `data`, if it is one.
    pub fn message(&self) -> Option<Value> {
        if self.data.is_empty() {
            return None;
        }
        serde_json::from_str(&self.data).ok()
    }

    fn parse(block: &str) -> Option<Self> {
        let mut ev = SseEvent::default();
        let mut data = Vec::new();
        for line in block.lines() {
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line, ""),
            };
            match field {
                "" => {} // a comment line (": keep-alive")
                "id" => ev.id = Some(value.to_string()),
                "event" => ev.event = Some(value.to_string()),
                "data" => data.push(value),
                _ => {}
            }
        }
        if ev.id.is_none() && ev.event.is_none() && data.is_empty() {
            return None; // only comments
        }
        ev.data = data.join("\n");
        Some(ev)
    }
}

/// The JSON messages in a complete SSE body (empty priming events skipped).
pub fn sse_messages(raw: &[u8]) -> Vec<Value> {
    let text = String::from_utf8_lossy(raw).replace("\r\n", "\n");
    text.split("\n\n")
        .filter_map(SseEvent::parse)
        .filter_map(|e| e.message())
        .collect()
}

/// Reads events from a stream body as bytes arrive, undoing chunked transfer coding.
#[derive(Debug)]
pub(crate) struct EventReader {
    chunked: bool,
    /// Bytes left in the current chunk.
    chunk_left: usize,
    /// The CRLF after a chunk's data is still to be skipped.
    chunk_crlf: bool,
    /// Decoded body not yet split into events.
    text: BytesMut,
    ended: bool,
}

impl EventReader {
    pub(crate) fn new(chunked: bool) -> Self {
        Self {
            chunked,
            chunk_left: 0,
            chunk_crlf: false,
            text: BytesMut::new(),
            ended: false,
        }
    }

    /// The body ended (last chunk seen).
    pub(crate) fn ended(&self) -> bool {
        self.ended
    }

    /// Moves what it can from `buf` and returns the next complete event, if any.
    pub(crate) fn next(&mut self, buf: &mut BytesMut) -> Result<Option<SseEvent>, ClientError> {
        self.decode(buf)?;
        loop {
            let Some(end) = find(&self.text, b"\n\n") else {
                return Ok(None);
            };
            let block = self.text.split_to(end + 2);
            let text = String::from_utf8_lossy(&block).replace('\r', "");
            if let Some(ev) = SseEvent::parse(&text) {
                return Ok(Some(ev));
            }
        }
    }

    fn decode(&mut self, buf: &mut BytesMut) -> Result<(), ClientError> {
        if !self.chunked {
            self.text.extend_from_slice(buf);
            buf.clear();
            return Ok(());
        }
        while !self.ended {
            if self.chunk_left > 0 {
                let n = self.chunk_left.min(buf.len());
                if n == 0 {
                    return Ok(());
                }
                self.text.extend_from_slice(&buf[..n]);
                buf.advance(n);
                self.chunk_left -= n;
                self.chunk_crlf = self.chunk_left == 0;
            } else if self.chunk_crlf {
                if buf.len() < 2 {
                    return Ok(());
                }
                buf.advance(2);
                self.chunk_crlf = false;
            } else {
                let Some(line_end) = find(buf, b"\r\n") else {
                    if buf.len() > 64 {
                        return Err(ClientError::BadHttp("chunk size line too long".into()));
                    }
                    return Ok(());
                };
                let line = String::from_utf8_lossy(&buf[..line_end]).to_string();
                let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                    .map_err(|_| ClientError::BadHttp(format!("bad chunk size `{line}`")))?;
                buf.advance(line_end + 2);
                if size == 0 {
                    self.ended = true;
                } else {
                    self.chunk_left = size;
                }
            }
        }
        Ok(())
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_events_across_chunk_and_read_boundaries() {
        let body = "id: 1-0\ndata: \n\n: keep-alive\n\nid: 1-1\ndata: {\"a\":1}\n\n";
        // Chunk it in 7-byte chunks, then feed it in 5-byte reads.
        let mut wire = Vec::new();
        for c in body.as_bytes().chunks(7) {
            wire.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
            wire.extend_from_slice(c);
            wire.extend_from_slice(b"\r\n");
        }
        wire.extend_from_slice(b"0\r\n\r\n");
        let mut r = EventReader::new(true);
        let mut buf = BytesMut::new();
        let mut events = Vec::new();
        for piece in wire.chunks(5) {
            buf.extend_from_slice(piece);
            while let Some(ev) = r.next(&mut buf).expect("valid") {
                events.push(ev);
            }
        }
        assert!(r.ended());
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].id.as_deref(), Some("1-0"));
        assert_eq!(events[0].message(), None);
        assert_eq!(events[1].message(), Some(json!({"a":1})));
    }

    #[test]
    fn rejects_a_bad_chunk_size_and_parses_whole_bodies() {
        let mut r = EventReader::new(true);
        let mut buf = BytesMut::from(&b"zz\r\n"[..]);
        assert!(r.next(&mut buf).is_err());
        let msgs = sse_messages(b"id: 1-0\ndata: \n\nid: 1-1\ndata: {\"a\":1}\n\n");
        assert_eq!(msgs, vec![json!({"a":1})]);
    }
}
