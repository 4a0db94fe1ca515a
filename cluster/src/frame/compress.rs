//! One long-lived zstd stream per link direction.
//!
//! Each compressed batch is fed into the same compression context and ended
//! with a flush (`ZSTD_e_flush`): the receiver can decode the batch at once,
//! and later batches reference the earlier ones (the window), which is what
//! makes small, repetitive JSON messages compress well. The decoder keeps the
//! mirror context. A batch sent uncompressed never touches either context, so
//! the two stay in step whatever the per-frame choice.

use std::io;

use zstd::stream::raw::{CParameter, DParameter, Decoder, Encoder, InBuffer, Operation, OutBuffer};

const CHUNK: usize = 16 * 1024;

/// The sending half of a link direction's zstd stream.
pub(crate) struct StreamCompressor {
    ctx: Encoder<'static>,
}

impl StreamCompressor {
    pub(crate) fn new(level: i32, window_log: u32) -> io::Result<Self> {
        let mut ctx = Encoder::new(level)?;
        ctx.set_parameter(CParameter::WindowLog(window_log))?;
        Ok(Self { ctx })
    }

    /// Compresses `input` and flushes, appending to `out`.
    pub(crate) fn compress(&mut self, input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        let mut src = InBuffer::around(input);
        while src.pos() < input.len() {
            out.reserve(CHUNK);
            let mut dst = OutBuffer::around_pos(out, out.len());
            self.ctx.run(&mut src, &mut dst)?;
        }
        loop {
            out.reserve(CHUNK);
            let mut dst = OutBuffer::around_pos(out, out.len());
            if self.ctx.flush(&mut dst)? == 0 {
                return Ok(());
            }
        }
    }
}

/// The receiving half: the mirror context.
pub(crate) struct StreamDecompressor {
    ctx: Decoder<'static>,
}

impl StreamDecompressor {
    pub(crate) fn new(window_log_max: u32) -> io::Result<Self> {
        let mut ctx = Decoder::new()?;
        ctx.set_parameter(DParameter::WindowLogMax(window_log_max))?;
        Ok(Self { ctx })
    }

    /// Decompresses one flushed batch into `out`, refusing more than `max` bytes.
    pub(crate) fn decompress(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        max: usize,
    ) -> io::Result<()> {
        let start = out.len();
        let mut src = InBuffer::around(input);
        loop {
            if out.len() - start > max {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "decompressed frame too large",
                ));
            }
            out.reserve(CHUNK);
            let before = out.len();
            let room = out.capacity() - before;
            let pos = {
                let mut dst = OutBuffer::around_pos(out, before);
                self.ctx.run(&mut src, &mut dst)?;
                dst.pos()
            };
            let filled = pos - before;
            // Done when every input byte is consumed and the decoder stopped
            // before filling the room it had (nothing left buffered inside).
            if src.pos() == input.len() && filled < room {
                return Ok(());
            }
        }
    }
}

impl std::fmt::Debug for StreamCompressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StreamCompressor")
    }
}

impl std::fmt::Debug for StreamDecompressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StreamDecompressor")
    }
}
