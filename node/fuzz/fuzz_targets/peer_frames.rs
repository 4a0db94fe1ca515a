//! The peer frame decoder (`mcp_cluster::frame`) and, for each message it yields, the session
//! layer's wire decoder (`PeerMsg::decode`) — the path of every byte a peer sends.
//!
//! Byte 0 chooses the mode:
//! - even: the rest is a peer's byte stream, pushed in pieces of (byte 0 / 2 + 1) bytes: the
//!   decoder must decode or refuse, never panic, and must not buffer more than one frame;
//! - odd: the rest is read as messages (kind, length, body); they go through the real batcher
//!   and encoder (zstd on) and must come out of the decoder identical and in order.
#![no_main]

use std::time::Instant;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use mcp_cluster::frame::{Batcher, Config, FrameDecoder, FrameEncoder, Message};
use mcp_node::cluster::wire::PeerMsg;

fn config() -> Config {
    Config {
        // Small, so the limits are reached with small inputs.
        max_frame_bytes: 64 * 1024,
        max_message_bytes: 16 * 1024,
        max_batch_bytes: 4 * 1024,
        compress_min_bytes: 32,
        ..Config::default()
    }
}

fn decode_stream(step: usize, data: &[u8]) {
    let mut decoder = FrameDecoder::new(config()).expect("decoder");
    let mut out = Vec::new();
    for piece in data.chunks(step) {
        decoder.push(piece);
        match decoder.decode(&mut out) {
            Ok(_) => {}
            Err(_) => return, // the link would be closed
        }
        assert!(decoder.buffered() <= 4 + 64 * 1024 + step, "more than a frame buffered");
        for msg in out.drain(..) {
            let _ = PeerMsg::decode(msg.kind, &msg.body);
        }
    }
}

fn round_trip(data: &[u8]) {
    let mut msgs = Vec::new();
    let mut rest = data;
    while let [kind, len, tail @ ..] = rest {
        let n = (usize::from(*len) * 37).min(tail.len());
        msgs.push(Message::new(*kind, Bytes::copy_from_slice(&tail[..n])));
        rest = &tail[n..];
    }
    let mut batcher = Batcher::new(config());
    let mut encoder = FrameEncoder::new(config()).expect("encoder");
    let mut decoder = FrameDecoder::new(config()).expect("decoder");
    let mut wire = Vec::new();
    let now = Instant::now();
    for m in &msgs {
        if batcher.try_push(m.clone(), now).is_err() {
            let batch = batcher.flush().expect("a full queue flushes");
            encoder.encode(&batch, &mut wire).expect("encode");
            batcher.try_push(m.clone(), now).expect("fits an empty queue");
        }
    }
    while let Some(batch) = batcher.flush() {
        encoder.encode(&batch, &mut wire).expect("encode");
    }
    let mut got = Vec::new();
    // Across arbitrary cuts of the stream.
    for piece in wire.chunks(1 + data.len() % 97) {
        decoder.push(piece);
        decoder.decode(&mut got).expect("our own frames decode");
    }
    assert_eq!(decoder.buffered(), 0);
    assert_eq!(got, msgs, "messages changed on the way");
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode % 2 == 0 {
        decode_stream(usize::from(mode / 2) + 1, rest);
    } else {
        round_trip(rest);
    }
});
