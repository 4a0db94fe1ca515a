//! Peer frames: many small messages per frame, batched on size or a short
//! deadline, compressed through one long-lived zstd stream per link
//! direction where it pays, length-prefixed on an ordered byte stream.
//!
//! The pieces, each sans-IO:
//! - [`Batcher`]: a bounded FIFO of [`Message`]s (backpressure through
//!   [`Batcher::try_push`]) that yields a [`Batch`] when it holds
//!   `max_batch_bytes`, at once on an idle link, and otherwise `max_delay`
//!   after the previous batch (paced: no message waits longer).
//! - [`FrameEncoder`]: a batch → one frame, compressed or not.
//! - [`FrameDecoder`]: bytes from the stream → messages, in order.
//!
//! Order: one link direction is one FIFO (queue, then one ordered stream),
//! so messages of a session keep their order as long as the caller pushes
//! them in order and, when a push is refused, does not push a later message
//! of that session before the refused one. Wire format: `docs/PROTOCOL.md`.

mod batcher;
mod compress;
mod config;
mod decoder;
mod encoder;
mod message;

pub use batcher::{Batch, Batcher, Refused};
pub use config::Config;
pub use decoder::FrameDecoder;
pub use encoder::{FrameEncoder, FrameStats};
pub use message::Message;

/// Bytes before a frame's body: `len: u32`, `flags: u8`, `count: u32`.
pub const HEADER_LEN: usize = 9;
/// Flag bit: the body went through the link's zstd stream.
pub const FLAG_COMPRESSED: u8 = 1;

/// Why a frame could not be decoded. The link is unusable after any of
/// these (the zstd stream is out of step), so the connection is closed.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// A frame longer than `max_frame_bytes` on the wire or once decompressed.
    #[error("frame of {0} bytes exceeds the limit")]
    TooLarge(usize),
    /// Flags with unknown bits set.
    #[error("unknown frame flags {0:#04x}")]
    Flags(u8),
    /// The body ended inside a message, or held more or fewer messages than `count`.
    #[error("malformed frame body: {0}")]
    Malformed(&'static str),
    /// zstd refused the compressed body.
    #[error("zstd: {0}")]
    Zstd(#[from] std::io::Error),
}
