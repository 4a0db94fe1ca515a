//! Measures compression of MCP-shaped JSON peer traffic, four ways, and
//! messages per frame under load. Prints the figures; asserts only the
//! ordering that motivates the design (streaming beats per message).
//!
//! `cargo test -p mcp-cluster --release --test compression_ratio -- --include-ignored --nocapture`

use std::time::{Duration, Instant};

use mcp_cluster::frame::{Batcher, Config, FrameDecoder, FrameEncoder, Message};

/// xorshift64*: deterministic traffic without a rand dependency here.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Traffic {
    g: Gen,
    words: Vec<String>,
    sessions: Vec<String>,
    id: u64,
}

impl Traffic {
    fn new(seed: u64) -> Self {
        let mut g = Gen(seed);
        let syll = [
            "ka", "lo", "mi", "ne", "ru", "ta", "vo", "shi", "er", "an", "po", "de", "qu", "zi",
            "mo", "ba",
        ];
        let words = (0..600)
            .map(|_| {
                (0..2 + g.below(3))
                    .map(|_| syll[g.below(16) as usize])
                    .collect::<String>()
            })
            .collect();
        let sessions = (0..1000)
            .map(|_| format!("{:016x}{:016x}", g.next(), g.next()))
            .collect();
        Self {
            g,
            words,
            sessions,
            id: 0,
        }
    }

    fn text(&mut self) -> String {
        let n = 3 + self.g.below(28);
        (0..n)
            .map(|_| self.words[self.g.below(600) as usize].as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// One peer message: a session id line, then a tools/call request, its
    /// result, or an SSE event of a legacy session stream.
    fn message(&mut self) -> Message {
        self.id += 1;
        let session = self.sessions[self.g.below(1000) as usize].clone();
        let (id, text) = (self.id, self.text());
        let json = match self.g.below(3) {
            0 => format!(
                r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"{text}"}},"_meta":{{"progressToken":{id}}}}}}}"#
            ),
            1 => format!(
                r#"{{"jsonrpc":"2.0","id":{id},"result":{{"content":[{{"type":"text","text":"{text}"}}],"isError":false}}}}"#
            ),
            _ => format!(
                "id: {session}-{id}\nevent: message\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{{\"progressToken\":{id},\"progress\":{},\"total\":100,\"message\":\"{text}\"}}}}\n\n",
                self.g.below(100)
            ),
        };
        Message::new(1, format!("{session}\n{json}").into_bytes())
    }
}

const MESSAGES: usize = 20_000;
const PER_FRAME: usize = 32;

fn sample(seed: u64) -> Vec<Message> {
    let mut t = Traffic::new(seed);
    (0..MESSAGES).map(|_| t.message()).collect()
}

fn raw_len(msgs: &[Message]) -> usize {
    msgs.iter().map(|m| m.body.len()).sum()
}

/// Streaming: every `per_frame` messages become one frame through one
/// long-lived context; the decoder checks the round trip. Returns raw/wire.
fn streaming(msgs: &[Message], per_frame: usize, level: i32, window_log: u32) -> (f64, f64) {
    let cfg = Config {
        level,
        window_log,
        compress_min_bytes: 0,
        max_batch_bytes: usize::MAX,
        ..Config::default()
    };
    let mut batcher = Batcher::new(cfg.clone());
    let mut enc = FrameEncoder::new(cfg.clone()).expect("encoder");
    let mut dec = FrameDecoder::new(cfg).expect("decoder");
    let t0 = Instant::now();
    let mut wire = Vec::new();
    for chunk in msgs.chunks(per_frame) {
        for m in chunk {
            batcher.try_push(m.clone(), t0).expect("room");
        }
        let b = batcher.flush().expect("batch");
        enc.encode(&b, &mut wire).expect("encodes");
    }
    dec.push(&wire);
    let mut back = Vec::new();
    dec.decode(&mut back).expect("decodes");
    assert_eq!(back, msgs);
    let s = enc.stats();
    (raw_len(msgs) as f64 / wire.len() as f64, s.ratio())
}

#[test]
#[ignore = "measurement (~40 s in a debug build): cargo test -p mcp-cluster --release --test compression_ratio -- --ignored --nocapture"]
fn compression_of_mcp_json() {
    let msgs = sample(1);
    let raw = raw_len(&msgs);
    println!(
        "{MESSAGES} MCP-shaped peer messages, {raw} bytes, mean {} bytes; frames of {PER_FRAME}",
        raw / MESSAGES
    );

    let per_msg: usize = msgs
        .iter()
        .map(|m| zstd::bulk::compress(&m.body, 3).expect("zstd").len())
        .sum();
    let per_msg_ratio = raw as f64 / per_msg as f64;
    println!("per-message zstd -3 (no context):            {per_msg_ratio:.2}x");

    let per_batch: usize = msgs
        .chunks(PER_FRAME)
        .map(|c| {
            let body: Vec<u8> = c.iter().flat_map(|m| m.body.iter().copied()).collect();
            zstd::bulk::compress(&body, 3).expect("zstd").len()
        })
        .sum();
    println!(
        "per-frame zstd -3 (fresh context per frame):  {:.2}x",
        raw as f64 / per_batch as f64
    );

    // A dictionary trained on other traffic of the same shape (a different seed).
    let training = sample(2);
    let samples: Vec<&[u8]> = training.iter().take(8000).map(|m| &m.body[..]).collect();
    for dict_size in [16 * 1024, 64 * 1024] {
        let dict = zstd::dict::from_samples(&samples, dict_size).expect("trains");
        let mut c = zstd::bulk::Compressor::with_dictionary(3, &dict).expect("dict compressor");
        let with_dict: usize = msgs
            .iter()
            .map(|m| c.compress(&m.body).expect("zstd").len())
            .sum();
        println!(
            "per-message zstd -3 + trained {} KiB dict:     {:.2}x",
            dict_size / 1024,
            raw as f64 / with_dict as f64
        );
    }

    let mut stream_ratio = 0.0;
    for (level, window_log) in [(3, 20), (1, 20), (3, 17), (3, 23)] {
        for per_frame in [1, PER_FRAME] {
            let (r, r_body) = streaming(&msgs, per_frame, level, window_log);
            println!(
                "streaming per link, level {level}, window 2^{window_log}, {per_frame:>2} msg/frame: {r:.2}x (encoded batch bodies / wire: {r_body:.2}x)"
            );
            if (level, window_log, per_frame) == (3, 20, PER_FRAME) {
                stream_ratio = r;
            }
        }
    }
    assert!(
        stream_ratio > per_msg_ratio,
        "streaming {stream_ratio} vs per message {per_msg_ratio}"
    );
}

#[test]
fn messages_per_frame_under_load() {
    let mut t = Traffic::new(3);
    for rate in [2_000u64, 20_000, 100_000, 400_000] {
        let cfg = Config::default();
        let mut batcher = Batcher::new(cfg.clone());
        let mut enc = FrameEncoder::new(cfg).expect("encoder");
        let t0 = Instant::now();
        let gap = Duration::from_nanos(1_000_000_000 / rate);
        let n = (rate / 4).max(1000);
        let mut wire = Vec::new();
        for i in 0..n {
            let now = t0 + gap * i as u32;
            while let Some(b) = batcher.poll_batch(now) {
                enc.encode(&b, &mut wire).expect("encodes");
            }
            batcher.try_push(t.message(), now).expect("room");
        }
        while let Some(b) = batcher.flush() {
            enc.encode(&b, &mut wire).expect("encodes");
        }
        let s = enc.stats();
        println!(
            "{rate:>7} msg/s to one peer, 500 µs deadline: {:.1} messages/frame, {:.2}x compression, {} frames",
            s.messages_per_frame(),
            s.ratio(),
            s.frames
        );
    }
}
