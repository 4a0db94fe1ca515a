//! The id of the last event of an SSE byte stream, read as the bytes pass (a relayed stream's
//! chunks on their way to the client), so the stream can be re-attached elsewhere with
//! `Last-Event-ID` = the id a browser's `EventSource` would send: the `id` field's value last
//! seen, taken when a blank line dispatches an event (WHATWG event-stream rules: lines end in
//! LF, CRLF or CR; `id` with one optional space after the colon; a value containing NUL is
//! ignored).
//!
//! Why read the bytes rather than have the owner send each event's id beside its chunk: the
//! chunks are what the client gets, so what is read here is exactly what it saw, whichever
//! node produced them (a relay through two nodes, a peer of an older version); it costs a scan
//! of bytes just received and no change to the peer message. Only the start of a line split
//! across chunks is kept, and only `MAX_ID_LINE` bytes of it: no buffer grows with events.

/// Longest `id` line remembered (ours are `<stream>-<seq>`, at most 24 bytes); a longer id
/// is ignored as if the line were not an id.
const MAX_ID_LINE: usize = 256;

/// Tracks the last event id of an SSE stream.
#[derive(Debug, Default)]
pub struct LastEventId {
    /// The id of the last dispatched event (what a client resumes from).
    last: Option<Box<[u8]>>,
    /// The id field seen in the event being read (the spec's "last event ID buffer").
    buffer: Option<Box<[u8]>>,
    /// The current line so far (up to [`MAX_ID_LINE`] bytes).
    line: Vec<u8>,
    /// The current line's length (it may be longer than what `line` keeps).
    line_len: usize,
    /// The previous byte was a CR: an LF right after it ends no second line.
    after_cr: bool,
}

impl LastEventId {
    /// Starting from `resumed_from`: the `Last-Event-ID` the stream was opened with, if any.
    pub fn starting_at(resumed_from: Option<&[u8]>) -> Self {
        Self {
            last: resumed_from.map(Box::from),
            buffer: resumed_from.map(Box::from),
            ..Self::default()
        }
    }

    /// The id of the last event dispatched so far (or the one the stream resumed from).
    pub fn get(&self) -> Option<&[u8]> {
        self.last.as_deref()
    }

    /// Reads the next bytes of the stream.
    pub fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            match b {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\n' | b'\r' => {
                    self.after_cr = b == b'\r';
                    self.end_line();
                }
                _ => {
                    self.after_cr = false;
                    if self.line_len < MAX_ID_LINE {
                        self.line.push(b);
                    }
                    self.line_len += 1;
                }
            }
        }
    }

    fn end_line(&mut self) {
        if self.line_len == 0 {
            // A blank line dispatches the event.
            self.last.clone_from(&self.buffer);
        } else if self.line_len <= MAX_ID_LINE
            && let Some(value) = id_value(&self.line)
            && !value.contains(&0)
        {
            self.buffer = Some(Box::from(value));
        }
        self.line.clear();
        if self.line.capacity() > 64 {
            self.line.shrink_to_fit(); // a long line must not pin its memory
        }
        self.line_len = 0;
    }
}

/// The value of an `id` field line (`id`, `id:` or `id: value`), `None` for any other line.
fn id_value(line: &[u8]) -> Option<&[u8]> {
    let rest = line.strip_prefix(b"id")?;
    if rest.is_empty() {
        return Some(rest);
    }
    let value = rest.strip_prefix(b":")?;
    Some(value.strip_prefix(b" ").unwrap_or(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last(t: &LastEventId) -> Option<&str> {
        t.get().map(|b| std::str::from_utf8(b).expect("utf-8"))
    }

    #[test]
    fn takes_the_id_when_the_event_is_dispatched() {
        let mut t = LastEventId::default();
        t.feed(b"id: 1-0\ndata: \n\n");
        assert_eq!(last(&t), Some("1-0"));
        t.feed(b"id: 1-1\ndata: {\"a\":1}\n");
        assert_eq!(last(&t), Some("1-0"), "not dispatched yet");
        t.feed(b"\n");
        assert_eq!(last(&t), Some("1-1"));
        t.feed(b":\n\n");
        assert_eq!(last(&t), Some("1-1"), "a comment keeps the id");
    }

    #[test]
    fn lines_split_across_chunks_and_any_line_ending() {
        let mut t = LastEventId::starting_at(Some(b"3-9"));
        assert_eq!(last(&t), Some("3-9"));
        for part in [&b"i"[..], b"d:3-1", b"0\r", b"\ndata: x\r\n", b"\r\n"] {
            t.feed(part);
        }
        assert_eq!(last(&t), Some("3-10"));
        t.feed(b"id: 4-1\rdata: y\r\r");
        assert_eq!(last(&t), Some("4-1"));
        t.feed(b"idx: 5-5\n\n");
        assert_eq!(last(&t), Some("4-1"), "not the id field");
        t.feed(b"id\n\n");
        assert_eq!(last(&t), Some(""), "an empty id resets it");
    }

    #[test]
    fn ignores_overlong_ids_and_nul_and_keeps_no_long_line() {
        let mut t = LastEventId::starting_at(Some(b"1-1"));
        let mut long = b"id: ".to_vec();
        long.extend(std::iter::repeat_n(b'7', 1_000));
        long.extend_from_slice(b"\n\n");
        t.feed(&long);
        assert_eq!(last(&t), Some("1-1"));
        t.feed(b"id: 2\x001\n\n");
        assert_eq!(last(&t), Some("1-1"));
        let mut data = b"data: ".to_vec();
        data.extend(std::iter::repeat_n(b'x', 100_000));
        t.feed(&data);
        assert!(t.line.capacity() <= 2 * MAX_ID_LINE);
        t.feed(b"\nid: 2-2\n\n");
        assert_eq!(last(&t), Some("2-2"));
    }
}
