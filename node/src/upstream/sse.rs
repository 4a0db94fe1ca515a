//! Reading an upstream's `text/event-stream` answer: bytes in, the `data` of each complete
//! event out, as the WHATWG event-stream rules read it: one leading UTF-8 BOM skipped; lines
//! may end in LF, CRLF or CR; `data` lines of one event are joined with LF; an event without
//! `data`, or not ended by a blank line, gives nothing; comments, `event` and `retry` are
//! ignored. `id` (without NUL) sets the last event id, which each event carries
//! ([`Decoder::feed_events`]: what a client session's own stream is resumed from with
//! `Last-Event-ID`, `client/own.rs`).
//!
//! Bounded, since the bytes are an upstream's: the line being read plus the data of the event
//! so far may not exceed the limit (a line of any field counts), so no buffer grows past it;
//! past it, `feed` is an error. Fuzzed against a plain model of those rules (`node/fuzz/fuzz_targets/upstream_sse.rs`).

/// A UTF-8 byte order mark.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// An event's lines grew past the limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an SSE event is larger than {0} bytes")]
pub struct TooLarge(pub usize);

/// One event: its data, and the stream's last event id when it was dispatched (`None`
/// before any `id` field, or after an empty one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub data: Vec<u8>,
    pub id: Option<Vec<u8>>,
}

/// Incremental SSE decoder.
#[derive(Debug)]
pub struct Decoder {
    /// At the stream's start: how many bytes of a BOM were seen so far; `None` once past it.
    bom: Option<usize>,
    line: Vec<u8>,
    data: Vec<u8>,
    has_data: bool,
    /// The last event id buffer (bounded like a line: it was one).
    id: Option<Vec<u8>>,
    /// The previous chunk ended in CR: an LF starting the next one belongs to it.
    after_cr: bool,
    limit: usize,
}

impl Decoder {
    /// A decoder refusing events (or lines) of more than `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            bom: Some(0),
            line: Vec::new(),
            data: Vec::new(),
            has_data: false,
            id: None,
            after_cr: false,
            limit,
        }
    }

    /// Feeds bytes; returns the data of every event they complete. After an error the
    /// decoder is of no further use (the stream is to be dropped).
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Vec<u8>>, TooLarge> {
        Ok(self
            .feed_events(bytes)?
            .into_iter()
            .map(|e| e.data)
            .collect())
    }

    /// [`Decoder::feed`], each event with the last event id it was dispatched with.
    pub fn feed_events(&mut self, bytes: &[u8]) -> Result<Vec<Event>, TooLarge> {
        let mut out = Vec::new();
        for &b in bytes {
            if let Some(seen) = self.bom {
                if BOM.get(seen) == Some(&b) {
                    self.bom = (seen + 1 < BOM.len()).then_some(seen + 1);
                    continue;
                }
                // Not a BOM after all: what looked like its start is text.
                self.bom = None;
                for &p in &BOM[..seen] {
                    self.byte(p, &mut out)?;
                }
            }
            self.byte(b, &mut out)?;
        }
        Ok(out)
    }

    fn byte(&mut self, b: u8, out: &mut Vec<Event>) -> Result<(), TooLarge> {
        if self.after_cr {
            self.after_cr = false;
            if b == b'\n' {
                return Ok(());
            }
        }
        match b {
            b'\n' | b'\r' => {
                self.after_cr = b == b'\r';
                self.end_line(out);
            }
            _ => {
                // `data` holds at most the earlier lines' bytes: their sum is what is bounded.
                if self.line.len() + self.data.len() >= self.limit {
                    return Err(TooLarge(self.limit));
                }
                self.line.push(b);
            }
        }
        Ok(())
    }

    fn end_line(&mut self, out: &mut Vec<Event>) {
        // The line's buffer is kept for the next line.
        let mut line = std::mem::take(&mut self.line);
        self.take_line(&line, out);
        line.clear();
        self.line = line;
    }

    fn take_line(&mut self, line: &[u8], out: &mut Vec<Event>) {
        if line.is_empty() {
            if self.has_data {
                out.push(Event {
                    data: std::mem::take(&mut self.data),
                    id: self.id.clone(),
                });
                self.has_data = false;
            }
            return;
        }
        let (field, value) = match line.iter().position(|&c| c == b':') {
            Some(0) => return, // a comment
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        if field == b"data" {
            if self.has_data {
                self.data.push(b'\n');
            }
            self.data.extend_from_slice(value);
            self.has_data = true;
        } else if field == b"id" && !value.contains(&0) {
            self.id = (!value.is_empty()).then(|| value.to_vec());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_anywhere_and_any_line_ending() {
        let text = b": keep-alive\r\nevent: message\r\nid: 1\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\ndata:x\n\nid: 2\rdata: y\r\r";
        for split in 0..text.len() {
            let mut d = Decoder::new(1024);
            let mut got = d.feed(&text[..split]).expect("small");
            got.extend(d.feed(&text[split..]).expect("small"));
            assert_eq!(
                got,
                vec![b"{\"a\":\n1}".to_vec(), b"x".to_vec(), b"y".to_vec()],
                "split at {split}"
            );
        }
    }

    #[test]
    fn events_carry_the_last_event_id() {
        let text = b"id: p1\ndata:\n\ndata: a\n\nid: 7\r\ndata: b\r\n\r\nid\ndata: c\n\nid: x\0y\ndata: d\n\n";
        for split in 0..text.len() {
            let mut d = Decoder::new(64);
            let mut got = d.feed_events(&text[..split]).expect("small");
            got.extend(d.feed_events(&text[split..]).expect("small"));
            let ids: Vec<Option<&[u8]>> = got.iter().map(|e| e.id.as_deref()).collect();
            // The priming event (empty data) carries its id; an id stays until another; an
            // empty one clears it; one with NUL is ignored.
            let want: Vec<Option<&[u8]>> = vec![Some(b"p1"), Some(b"p1"), Some(b"7"), None, None];
            assert_eq!(ids, want, "split at {split}");
            assert_eq!(got[0].data, b"", "split at {split}");
        }
    }

    #[test]
    fn an_event_without_data_is_no_event_and_a_large_one_is_refused() {
        let mut d = Decoder::new(8);
        assert!(d.feed(b"id: 3\n\n: c\n\n").expect("small").is_empty());
        assert_eq!(d.feed(b"data: 123456789\n"), Err(TooLarge(8)));
    }

    #[test]
    fn a_leading_bom_is_skipped_once_and_a_broken_one_is_text() {
        let stream = b"\xEF\xBB\xBFdata: a\n\n\xEF\xBB\xBFdata: b\n\n";
        for split in 0..stream.len() {
            let mut d = Decoder::new(64);
            let mut got = d.feed(&stream[..split]).expect("small");
            got.extend(d.feed(&stream[split..]).expect("small"));
            // The second BOM is inside the stream: its line's field is not `data`.
            assert_eq!(got, vec![b"a".to_vec()], "split at {split}");
        }
        let mut d = Decoder::new(64);
        assert_eq!(
            d.feed(b"\xEF\xBB: comment\ndata: c\n\n").expect("small"),
            vec![b"c".to_vec()]
        );
        // A BOM's bytes do not count toward the limit; text that only starts like one does.
        assert_eq!(
            Decoder::new(4).feed(b"\xEF\xBB\xBFdata\n\n"),
            Ok(vec![Vec::new()])
        );
        assert_eq!(Decoder::new(4).feed(b"\xEF\xBBdata\n\n"), Err(TooLarge(4)));
    }
}
