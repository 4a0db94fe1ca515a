//! Reading an upstream's `text/event-stream` answer: bytes in, the `data` of each complete
//! event out. Lines may end in LF, CRLF or CR; `data` lines of one event are joined with LF;
//! comments, `id`, `event` and `retry` are ignored (the client never resumes an upstream stream
//! in this slice). Bounded: an event larger than the limit is an error, not a growing buffer.

/// An event's data grew past the limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an SSE event is larger than {0} bytes")]
pub struct TooLarge(pub usize);

/// Incremental SSE decoder.
#[derive(Debug)]
pub struct Decoder {
    line: Vec<u8>,
    data: Vec<u8>,
    has_data: bool,
    /// The previous chunk ended in CR: an LF starting the next one belongs to it.
    after_cr: bool,
    limit: usize,
}

impl Decoder {
    /// A decoder refusing events (or lines) of more than `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            line: Vec::new(),
            data: Vec::new(),
            has_data: false,
            after_cr: false,
            limit,
        }
    }

    /// Feeds bytes; returns the data of every event they complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Vec<u8>>, TooLarge> {
        let mut out = Vec::new();
        for &b in bytes {
            if self.after_cr {
                self.after_cr = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\n' | b'\r' => {
                    self.after_cr = b == b'\r';
                    self.end_line(&mut out);
                }
                _ => {
                    if self.line.len() + self.data.len() >= self.limit {
                        return Err(TooLarge(self.limit));
                    }
                    self.line.push(b);
                }
            }
        }
        Ok(out)
    }

    fn end_line(&mut self, out: &mut Vec<Vec<u8>>) {
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            if self.has_data {
                out.push(std::mem::take(&mut self.data));
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
            None => (&line[..], &b""[..]),
        };
        if field == b"data" {
            if self.has_data {
                self.data.push(b'\n');
            }
            self.data.extend_from_slice(value);
            self.has_data = true;
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
    fn an_event_without_data_is_no_event_and_a_large_one_is_refused() {
        let mut d = Decoder::new(8);
        assert!(d.feed(b"id: 3\n\n: c\n\n").expect("small").is_empty());
        assert_eq!(d.feed(b"data: 123456789\n"), Err(TooLarge(8)));
    }
}
