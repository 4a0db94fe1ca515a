//! Stream bytes → frames → messages, for one link direction.

use bytes::{Buf, Bytes, BytesMut};

use super::compress::StreamDecompressor;
use super::{Config, FLAG_COMPRESSED, FrameError, HEADER_LEN, Message};

/// Reassembles frames from an ordered byte stream and decodes their messages.
#[derive(Debug)]
pub struct FrameDecoder {
    config: Config,
    zstd: StreamDecompressor,
    buf: BytesMut,
    scratch: Vec<u8>,
}

impl FrameDecoder {
    /// The mirror of a [`super::FrameEncoder`] with the same `window_log`.
    pub fn new(config: Config) -> Result<Self, FrameError> {
        let zstd = StreamDecompressor::new(config.window_log)?;
        Ok(Self {
            config,
            zstd,
            buf: BytesMut::new(),
            scratch: Vec::new(),
        })
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes held that do not yet make a whole frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Decodes every whole frame buffered, appending its messages to `out`
    /// in order; returns how many frames. After an error the link must be
    /// closed: the zstd stream is out of step.
    pub fn decode(&mut self, out: &mut Vec<Message>) -> Result<usize, FrameError> {
        let mut frames = 0;
        while self.buf.len() >= 4 {
            let len =
                u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
            if len > self.config.max_frame_bytes {
                return Err(FrameError::TooLarge(len));
            }
            if len < HEADER_LEN - 4 {
                return Err(FrameError::Malformed("frame shorter than its header"));
            }
            if self.buf.len() < 4 + len {
                break;
            }
            self.buf.advance(4);
            let mut frame = self.buf.split_to(len).freeze();
            let flags = frame.get_u8();
            let count = frame.get_u32();
            let body = match flags {
                0 => frame,
                FLAG_COMPRESSED => {
                    self.scratch.clear();
                    self.zstd
                        .decompress(&frame, &mut self.scratch, self.config.max_frame_bytes)?;
                    Bytes::copy_from_slice(&self.scratch)
                }
                f => return Err(FrameError::Flags(f)),
            };
            if count as usize > body.len() / 2 + 1 {
                return Err(FrameError::Malformed("count larger than the body allows"));
            }
            Message::decode_all(body, count, out)?;
            frames += 1;
        }
        Ok(frames)
    }
}
