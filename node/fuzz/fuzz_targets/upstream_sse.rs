//! Any bytes an upstream MCP server sends as `text/event-stream` through the node's SSE decoder
//! (`mcp_node::upstream::sse::Decoder`), fed at once, in chunks of varying size and byte by byte.
//!
//! Input: byte 0 picks the decoder's limit (1-192 bytes, or large), byte 1 seeds the chunk
//! sizes, the rest is the stream. Checks besides "no panic, no hang":
//! - the events do not depend on how the stream was cut into chunks;
//! - they are the events the WHATWG event-stream rules give (`model` below: a leading BOM
//!   skipped, LF/CR/CRLF line ends, comments, `data` lines joined with LF, an event without
//!   data or not yet ended by a blank line dispatches nothing), each with the last event id
//!   (`id` sets it unless its value has NUL; an empty one clears it) — the id a client's own
//!   stream is resumed from (`Decoder::feed_events`);
//! - no event or id is larger than the limit, no event contains CR and no id CR, LF or NUL;
//!   the limit is refused only when the lines since the last blank line really exceed it, and
//!   never when they do not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_node::upstream::sse::Decoder;

/// An event's data and the last event id it was dispatched with.
type Event = (Vec<u8>, Option<Vec<u8>>);

/// What a decoder run gave: the events, and whether it stopped on the limit.
#[derive(Debug, PartialEq)]
struct Run {
    events: Vec<Event>,
    refused: bool,
}

fn run<'a>(limit: usize, chunks: impl Iterator<Item = &'a [u8]>) -> Run {
    let mut d = Decoder::new(limit);
    let mut events = Vec::new();
    for chunk in chunks {
        match d.feed_events(chunk) {
            Ok(got) => events.extend(got.into_iter().map(|e| (e.data, e.id))),
            Err(_) => {
                return Run {
                    events,
                    refused: true,
                };
            }
        }
    }
    Run {
        events,
        refused: false,
    }
}

/// The events of a whole stream by the spec's rules, written plainly, and the most bytes of
/// lines (line ends not counted) between two blank lines (the unfinished last line included).
fn model(stream: &[u8]) -> (Vec<Event>, usize) {
    let stream = stream.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(stream);
    let mut events = Vec::new();
    let mut data: Vec<u8> = Vec::new();
    let mut id: Option<Vec<u8>> = None;
    let mut block = 0usize;
    let mut largest = 0usize;
    let mut i = 0;
    loop {
        let Some(end) = stream[i..].iter().position(|&b| b == b'\n' || b == b'\r') else {
            // An unfinished line: counted, never processed.
            largest = largest.max(block + (stream.len() - i));
            return (events, largest);
        };
        let line = &stream[i..i + end];
        i += end + 1;
        if stream[i - 1] == b'\r' && stream.get(i) == Some(&b'\n') {
            i += 1;
        }
        block += line.len();
        largest = largest.max(block);
        if line.is_empty() {
            block = 0;
            if !data.is_empty() {
                data.pop(); // the LF after the last data line
                events.push((std::mem::take(&mut data), id.clone()));
            }
            continue;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(0) => continue,
            Some(c) => {
                let v = &line[c + 1..];
                (&line[..c], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        if field == b"data" {
            data.extend_from_slice(value);
            data.push(b'\n');
        } else if field == b"id" && !value.contains(&0) {
            id = if value.is_empty() {
                None
            } else {
                Some(value.to_vec())
            };
        }
    }
}

fuzz_target!(|input: &[u8]| {
    let [pick, seed, stream @ ..] = input else {
        return;
    };
    let limit = match *pick {
        0..=191 => usize::from(*pick) + 1,
        _ => 1 << 20,
    };

    let whole = run(limit, std::iter::once(stream));
    let bytes = run(limit, stream.chunks(1));
    let mut state = u32::from(*seed) | 0x100;
    let mut rest = stream;
    let chunked = run(
        limit,
        std::iter::from_fn(|| {
            if rest.is_empty() {
                return None;
            }
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let n = (state as usize % 17).min(rest.len());
            let (now, later) = rest.split_at(n);
            rest = later;
            Some(now)
        }),
    );

    let (expected, largest) = model(stream);
    for r in [&whole, &bytes, &chunked] {
        assert_eq!(r.refused, whole.refused, "refusal depends on the chunking");
        assert!(
            r.events.len() <= expected.len() && r.events[..] == expected[..r.events.len()],
            "events differ from the spec's: {:?} vs {:?}",
            r.events,
            expected
        );
        for (e, id) in &r.events {
            assert!(
                e.len() <= limit,
                "an event of {} bytes passed a limit of {limit}",
                e.len()
            );
            assert!(!e.contains(&b'\r'), "an event contains CR");
            if let Some(id) = id {
                assert!(id.len() <= limit, "an id of {} bytes passed a limit of {limit}", id.len());
                assert!(
                    !id.iter().any(|b| matches!(b, b'\r' | b'\n' | 0)),
                    "an id contains CR, LF or NUL"
                );
            }
        }
    }
    if whole.refused {
        assert!(
            largest > limit,
            "refused lines of {largest} bytes under a limit of {limit}"
        );
    } else {
        assert_eq!(whole.events, expected, "not every event came out");
        assert_eq!(bytes.events, expected);
        assert_eq!(chunked.events, expected);
    }
    if largest <= limit {
        assert!(!whole.refused);
    }
});
