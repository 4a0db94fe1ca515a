//! Frame settings, one per link direction.

use std::time::Duration;

/// Batching and compression settings of a peer link.
#[derive(Debug, Clone)]
pub struct Config {
    /// A batch is flushed as soon as it holds this many (uncompressed)
    /// bytes. Default 64 KiB: large enough for ≥ 20 messages of a few
    /// hundred bytes under load, small enough to stay one QUIC burst.
    pub max_batch_bytes: usize,
    /// Batches on a busy link are at least this far apart (unless full), and
    /// no message waits longer; a message on an idle link goes at once.
    /// Default 500 µs: under load a batch carries what arrived in that time.
    pub max_delay: Duration,
    /// The most bytes queued for one peer; past it `try_push` refuses
    /// (backpressure to the caller). Default 8 MiB.
    pub max_queue_bytes: usize,
    /// The largest single message accepted by `try_push`. Default 4 MiB.
    pub max_message_bytes: usize,
    /// The largest frame the decoder accepts, on the wire and decompressed
    /// (bounds memory against a broken peer). Default 16 MiB.
    pub max_frame_bytes: usize,
    /// Batches smaller than this go uncompressed (not worth a zstd call).
    /// Default 128 bytes.
    pub compress_min_bytes: usize,
    /// zstd level. Default 3 (zstd's default; 1 is faster, a little larger).
    pub level: i32,
    /// log2 of the zstd window: the history each stream keeps, so memory
    /// per link direction on each side. Default 20 (1 MiB).
    pub window_log: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_batch_bytes: 64 * 1024,
            max_delay: Duration::from_micros(500),
            max_queue_bytes: 8 * 1024 * 1024,
            max_message_bytes: 4 * 1024 * 1024,
            max_frame_bytes: 16 * 1024 * 1024,
            compress_min_bytes: 128,
            level: 3,
            window_log: 20,
        }
    }
}
