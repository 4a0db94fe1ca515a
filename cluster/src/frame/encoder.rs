//! Batch → frame: header, then the body raw or through the link's zstd stream.

use super::compress::StreamCompressor;
use super::{Batch, Config, FLAG_COMPRESSED, FrameError, HEADER_LEN};

/// Counters of one link direction (for metrics and the batching targets).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameStats {
    /// Frames produced.
    pub frames: u64,
    /// Of which compressed.
    pub compressed_frames: u64,
    /// Messages carried.
    pub messages: u64,
    /// Batch bodies before compression.
    pub raw_bytes: u64,
    /// Bytes written to the wire, headers included.
    pub wire_bytes: u64,
}

impl FrameStats {
    /// Uncompressed body bytes per wire byte.
    pub fn ratio(&self) -> f64 {
        self.raw_bytes as f64 / self.wire_bytes.max(1) as f64
    }

    /// Messages per frame.
    pub fn messages_per_frame(&self) -> f64 {
        self.messages as f64 / self.frames.max(1) as f64
    }
}

/// Compressed frames looked at before judging whether compression pays.
const PAYOFF_WINDOW: u32 = 16;
/// Frames sent raw after compression was judged not to pay, before trying again.
const PAYOFF_BACKOFF: u32 = 64;

/// Turns batches into frames for one link direction.
#[derive(Debug)]
pub struct FrameEncoder {
    config: Config,
    zstd: StreamCompressor,
    stats: FrameStats,
    window_raw: u64,
    window_wire: u64,
    window_frames: u32,
    skip: u32,
}

impl FrameEncoder {
    /// A link direction's encoder with a fresh zstd stream.
    pub fn new(config: Config) -> Result<Self, FrameError> {
        let zstd = StreamCompressor::new(config.level, config.window_log)?;
        Ok(Self {
            config,
            zstd,
            stats: FrameStats::default(),
            window_raw: 0,
            window_wire: 0,
            window_frames: 0,
            skip: 0,
        })
    }

    /// Appends `batch` as one frame to `out`.
    ///
    /// Compression is chosen before compressing (so a body never enters the
    /// stream unless it is sent compressed): the batch must be at least
    /// `compress_min_bytes`, and the last window of compressed frames must
    /// have paid (≥ 1.1×); if not, the next frames go raw for a while, then
    /// compression is tried again (incompressible payloads cost little).
    pub fn encode(&mut self, batch: &Batch, out: &mut Vec<u8>) -> Result<(), FrameError> {
        let start = out.len();
        out.extend_from_slice(&[0; HEADER_LEN]);
        let compress = batch.body.len() >= self.config.compress_min_bytes && self.skip == 0;
        self.skip = self.skip.saturating_sub(1);
        let flags = if compress {
            self.zstd.compress(&batch.body, out)?;
            FLAG_COMPRESSED
        } else {
            out.extend_from_slice(&batch.body);
            0
        };
        let body_len = out.len() - start - HEADER_LEN;
        let len = u32::try_from(body_len + 5).map_err(|_| FrameError::TooLarge(body_len))?;
        out[start..start + 4].copy_from_slice(&len.to_be_bytes());
        out[start + 4] = flags;
        out[start + 5..start + 9].copy_from_slice(&batch.count.to_be_bytes());
        if compress {
            self.judge(batch.body.len(), body_len);
            self.stats.compressed_frames += 1;
        }
        self.stats.frames += 1;
        self.stats.messages += u64::from(batch.count);
        self.stats.raw_bytes += batch.body.len() as u64;
        self.stats.wire_bytes += (HEADER_LEN + body_len) as u64;
        Ok(())
    }

    /// Counters so far.
    pub fn stats(&self) -> FrameStats {
        self.stats
    }

    fn judge(&mut self, raw: usize, wire: usize) {
        self.window_raw += raw as u64;
        self.window_wire += wire as u64;
        self.window_frames += 1;
        if self.window_frames >= PAYOFF_WINDOW {
            if self.window_raw * 10 < self.window_wire * 11 {
                tracing::debug!(
                    raw = self.window_raw,
                    wire = self.window_wire,
                    "zstd does not pay; sending raw"
                );
                self.skip = PAYOFF_BACKOFF;
            }
            self.window_raw = 0;
            self.window_wire = 0;
            self.window_frames = 0;
        }
    }
}
