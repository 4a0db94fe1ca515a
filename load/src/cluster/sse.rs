//! The event ids of a chunked SSE body, scanned byte by byte with no allocation.
//!
//! A held GET stream is read for one thing: the id of each event, to count events and find
//! gaps and duplicates. [`IdScanner`] undoes the chunked transfer coding and follows the SSE
//! lines in one pass over whatever bytes a read returned, keeping a few integers of state
//! between reads (an event may be split anywhere, even inside its id). Only `id: S-Q` lines
//! (the node's `<stream>-<seq>` ids) are read; data, event names and comments are skipped.

/// What [`IdScanner::feed`] found at the end of an event (a blank line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// An event with a `<stream>-<seq>` id.
    Id {
        /// Stream number.
        stream: u32,
        /// Sequence number within the stream (0: the priming event).
        seq: u32,
    },
    /// An event whose id is not `<stream>-<seq>`.
    BadId,
}

/// The chunked body framing is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("bad chunked framing at byte {0} of a read")]
pub struct BadChunk(pub usize);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Reading the hex size (digits so far).
    Size(u8),
    /// Skipping a chunk extension up to CR.
    Ext,
    /// After the size line's CR.
    SizeLf,
    /// Inside a chunk's data, bytes left.
    Data,
    /// After the data: CR, then LF.
    DataCr,
    DataLf,
    /// The last chunk was seen.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    /// At the start of a line.
    Start,
    /// Matched this many bytes of `id:`.
    Field(u8),
    /// After `id:`, an optional space.
    IdSpace,
    /// Stream digits.
    IdStream,
    /// Sequence digits.
    IdSeq,
    /// The rest of a line that is not an id (or a malformed one).
    Skip,
}

/// Incremental scanner of a chunked (or plain) SSE body; see the module docs.
#[derive(Debug, Clone)]
pub struct IdScanner {
    chunked: bool,
    chunk: Chunk,
    left: usize,
    line: Line,
    stream: u32,
    seq: u32,
    /// The current event has an id line: `Some(true)` well-formed, `Some(false)` not.
    id: Option<bool>,
}

impl IdScanner {
    /// A scanner for a body with (`chunked`) or without chunked transfer coding.
    pub fn new(chunked: bool) -> Self {
        Self {
            chunked,
            chunk: Chunk::Size(0),
            left: 0,
            line: Line::Start,
            stream: 0,
            seq: 0,
            id: None,
        }
    }

    /// The last chunk arrived: the server ended the stream.
    pub fn ended(&self) -> bool {
        self.chunk == Chunk::Done
    }

    /// Scans `bytes`, calling `found` for every complete event that had an id line.
    pub fn feed(&mut self, bytes: &[u8], mut found: impl FnMut(Found)) -> Result<(), BadChunk> {
        if !self.chunked {
            for &b in bytes {
                self.sse(b, &mut found);
            }
            return Ok(());
        }
        let mut i = 0;
        while i < bytes.len() {
            match self.chunk {
                Chunk::Data => {
                    let n = self.left.min(bytes.len() - i);
                    for &b in &bytes[i..i + n] {
                        self.sse(b, &mut found);
                    }
                    self.left -= n;
                    i += n;
                    if self.left == 0 {
                        self.chunk = Chunk::DataCr;
                    }
                    continue;
                }
                Chunk::Size(digits) => {
                    let b = bytes[i];
                    match b {
                        b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' if digits < 12 => {
                            let v = (b as char).to_digit(16).unwrap_or(0) as usize;
                            self.left = self.left * 16 + v;
                            self.chunk = Chunk::Size(digits + 1);
                        }
                        b';' | b' ' if digits > 0 => self.chunk = Chunk::Ext,
                        b'\r' if digits > 0 => self.chunk = Chunk::SizeLf,
                        _ => return Err(BadChunk(i)),
                    }
                }
                Chunk::Ext => {
                    if bytes[i] == b'\r' {
                        self.chunk = Chunk::SizeLf;
                    }
                }
                Chunk::SizeLf => {
                    if bytes[i] != b'\n' {
                        return Err(BadChunk(i));
                    }
                    self.chunk = if self.left == 0 {
                        Chunk::Done
                    } else {
                        Chunk::Data
                    };
                }
                Chunk::DataCr => {
                    if bytes[i] != b'\r' {
                        return Err(BadChunk(i));
                    }
                    self.chunk = Chunk::DataLf;
                }
                Chunk::DataLf => {
                    if bytes[i] != b'\n' {
                        return Err(BadChunk(i));
                    }
                    self.chunk = Chunk::Size(0);
                }
                Chunk::Done => return Ok(()), // trailers and anything after: ignored
            }
            i += 1;
        }
        Ok(())
    }

    /// One byte of the SSE text.
    fn sse(&mut self, b: u8, found: &mut impl FnMut(Found)) {
        if b == b'\r' {
            return; // CRLF line ends read as LF
        }
        if b == b'\n' {
            if self.line == Line::Start {
                // A blank line ends the event.
                match self.id.take() {
                    Some(true) => found(Found::Id {
                        stream: self.stream,
                        seq: self.seq,
                    }),
                    Some(false) => found(Found::BadId),
                    None => {}
                }
            } else if self.line == Line::IdSeq {
                self.id = Some(true);
            } else if matches!(self.line, Line::IdSpace | Line::IdStream) {
                self.id = Some(false);
            }
            self.line = Line::Start;
            return;
        }
        const FIELD: &[u8] = b"id:";
        self.line = match self.line {
            Line::Start | Line::Field(_) => {
                let k = match self.line {
                    Line::Field(k) => k,
                    _ => 0,
                };
                if b == FIELD[k as usize] {
                    if k as usize + 1 == FIELD.len() {
                        self.stream = 0;
                        self.seq = 0;
                        Line::IdSpace
                    } else {
                        Line::Field(k + 1)
                    }
                } else {
                    Line::Skip
                }
            }
            Line::IdSpace if b == b' ' => Line::IdStream,
            Line::IdSpace | Line::IdStream if b.is_ascii_digit() => {
                self.stream = self
                    .stream
                    .saturating_mul(10)
                    .saturating_add(u32::from(b - b'0'));
                Line::IdStream
            }
            Line::IdStream if b == b'-' => Line::IdSeq,
            Line::IdSeq if b.is_ascii_digit() => {
                self.seq = self
                    .seq
                    .saturating_mul(10)
                    .saturating_add(u32::from(b - b'0'));
                Line::IdSeq
            }
            Line::IdSpace | Line::IdStream | Line::IdSeq => {
                self.id = Some(false);
                Line::Skip
            }
            Line::Skip => Line::Skip,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunked(body: &[u8], sizes: &[usize]) -> Vec<u8> {
        let mut wire = Vec::new();
        let mut rest = body;
        let mut k = 0;
        while !rest.is_empty() {
            let n = sizes[k % sizes.len()].clamp(1, rest.len());
            k += 1;
            wire.extend_from_slice(format!("{n:x}\r\n").as_bytes());
            wire.extend_from_slice(&rest[..n]);
            wire.extend_from_slice(b"\r\n");
            rest = &rest[n..];
        }
        wire.extend_from_slice(b"0\r\n\r\n");
        wire
    }

    fn scan(wire: &[u8], chunked: bool, reads: &[usize]) -> (Vec<Found>, bool) {
        let mut s = IdScanner::new(chunked);
        let mut out = Vec::new();
        let mut rest = wire;
        let mut k = 0;
        while !rest.is_empty() {
            let n = reads[k % reads.len()].clamp(1, rest.len());
            k += 1;
            s.feed(&rest[..n], |f| out.push(f)).expect("valid framing");
            rest = &rest[n..];
        }
        (out, s.ended())
    }

    #[test]
    fn finds_ids_skips_comments_and_data_and_sees_the_end() {
        let body = b"id: 1-0\ndata: \n\n:\n\nid: 1-1\ndata: {\"id\": 7}\n\nevent: x\ndata: y\n\nid: 2-15\r\ndata: z\r\n\r\n";
        let (found, ended) = scan(&chunked(body, &[7, 3, 50]), true, &[5, 1, 9]);
        assert!(ended);
        assert_eq!(
            found,
            vec![
                Found::Id { stream: 1, seq: 0 },
                Found::Id { stream: 1, seq: 1 },
                Found::Id { stream: 2, seq: 15 }
            ]
        );
        let (plain, ended) = scan(body, false, &[4]);
        assert!(!ended);
        assert_eq!(plain, found);
    }

    #[test]
    fn flags_malformed_ids_and_broken_framing() {
        let (found, _) = scan(b"id: abc\ndata: 1\n\nid: 3\n\nid:4-5\n\n", false, &[100]);
        assert_eq!(
            found,
            vec![Found::BadId, Found::BadId, Found::Id { stream: 4, seq: 5 }]
        );
        let mut s = IdScanner::new(true);
        assert!(s.feed(b"zz\r\n", |_| {}).is_err());
        let mut s = IdScanner::new(true);
        assert!(s.feed(b"3\r\nabcX", |_| {}).is_err(), "no CRLF after data");
    }

    proptest::proptest! {
        #[test]
        fn any_chunking_and_read_sizes_give_the_same_ids(
            events in proptest::collection::vec((0u32..5_000, 0u32..100_000, 0usize..40), 0..30),
            chunks in proptest::collection::vec(1usize..64, 1..8),
            reads in proptest::collection::vec(1usize..64, 1..8),
        ) {
            let mut body = Vec::new();
            let mut want = Vec::new();
            for (stream, seq, pad) in &events {
                body.extend_from_slice(format!(": keep-alive\n\nid: {stream}-{seq}\ndata: {}\n\n", "x".repeat(*pad)).as_bytes());
                want.push(Found::Id { stream: *stream, seq: *seq });
            }
            let (found, ended) = scan(&chunked(&body, &chunks), true, &reads);
            proptest::prop_assert!(ended);
            proptest::prop_assert_eq!(found, want);
        }
    }
}
