//! Round trips through batcher + encoder + decoder, and arbitrary bytes.

use std::time::{Duration, Instant};

use bytes::Bytes;
use mcp_cluster::frame::{Batcher, Config, FrameDecoder, FrameEncoder, Message};
use proptest::prelude::*;

fn message() -> impl Strategy<Value = Message> {
    let json = (0u64..1000, "[a-z ]{0,60}").prop_map(|(id, text)| {
        format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{"content":[{{"type":"text","text":"{text}"}}]}}}}"#).into_bytes()
    });
    let body = prop_oneof![json, proptest::collection::vec(any::<u8>(), 0..300)];
    (any::<u8>(), body).prop_map(|(kind, body)| Message::new(kind, body))
}

fn small_config(batch: usize, min: usize) -> Config {
    Config {
        max_batch_bytes: batch,
        compress_min_bytes: min,
        max_queue_bytes: 1 << 24,
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn messages_survive_batching_compression_and_chunked_reads(
        msgs in proptest::collection::vec(message(), 0..200),
        batch in 1usize..4096,
        min in prop_oneof![Just(0usize), Just(128), Just(usize::MAX)],
        chunk in 1usize..2000,
        flush_every in 1usize..50,
    ) {
        let cfg = small_config(batch, min);
        let mut batcher = Batcher::new(cfg.clone());
        let mut enc = FrameEncoder::new(cfg.clone()).expect("encoder");
        let mut dec = FrameDecoder::new(cfg).expect("decoder");
        let t0 = Instant::now();
        let mut wire = Vec::new();
        for (i, m) in msgs.iter().enumerate() {
            batcher.try_push(m.clone(), t0).expect("room");
            let now = if i % flush_every == 0 { t0 + Duration::from_secs(1) } else { t0 };
            while let Some(b) = batcher.poll_batch(now) {
                enc.encode(&b, &mut wire).expect("encodes");
            }
        }
        while let Some(b) = batcher.flush() {
            enc.encode(&b, &mut wire).expect("encodes");
        }
        let mut got = Vec::new();
        let mut frames = 0;
        for piece in wire.chunks(chunk) {
            dec.push(piece);
            frames += dec.decode(&mut got).expect("decodes");
        }
        prop_assert_eq!(dec.buffered(), 0);
        prop_assert_eq!(frames as u64, enc.stats().frames);
        prop_assert_eq!(got, msgs);
    }

    #[test]
    fn arbitrary_bytes_give_errors_not_panics(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let mut dec = FrameDecoder::new(Config::default()).expect("decoder");
        dec.push(&bytes);
        let _ = dec.decode(&mut Vec::new());
    }

    #[test]
    fn corrupted_frames_give_errors_not_panics(
        msgs in proptest::collection::vec(message(), 1..40),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
    ) {
        let cfg = small_config(1024, 0);
        let mut batcher = Batcher::new(cfg.clone());
        let mut enc = FrameEncoder::new(cfg.clone()).expect("encoder");
        let t0 = Instant::now();
        for m in msgs {
            batcher.try_push(m, t0).expect("room");
        }
        let mut wire = Vec::new();
        while let Some(b) = batcher.flush() {
            enc.encode(&b, &mut wire).expect("encodes");
        }
        for (at, x) in flips {
            let i = at % wire.len();
            wire[i] ^= x | 1;
        }
        let mut dec = FrameDecoder::new(cfg).expect("decoder");
        dec.push(&wire);
        let _ = dec.decode(&mut Vec::new());
    }
}

#[test]
fn incompressible_payloads_fall_back_to_raw_frames() {
    let cfg = small_config(4096, 128);
    let mut enc = FrameEncoder::new(cfg.clone()).expect("encoder");
    let mut batcher = Batcher::new(cfg);
    let t0 = Instant::now();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..2000 {
        let body: Vec<u8> = (0..500)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        batcher
            .try_push(Message::new(0, Bytes::from(body)), t0)
            .expect("room");
        while let Some(b) = batcher.poll_batch(t0) {
            enc.encode(&b, &mut Vec::new()).expect("encodes");
        }
    }
    let s = enc.stats();
    println!(
        "random payloads: {} of {} frames compressed, ratio {:.3}",
        s.compressed_frames,
        s.frames,
        s.ratio()
    );
    assert!(s.compressed_frames < s.frames / 2, "{s:?}");
}
