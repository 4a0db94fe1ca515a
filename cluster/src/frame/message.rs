//! One peer message and its encoding inside a batch body.

use bytes::{Buf, BufMut, Bytes};

use super::FrameError;

/// One peer message: a kind (replicate, forward, reply, event, ...; the
/// layers above define them) and an opaque body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// What the body is; chosen by the layer above.
    pub kind: u8,
    /// The payload (usually JSON or a small binary record).
    pub body: Bytes,
}

impl Message {
    /// A message of `kind` carrying `body`.
    pub fn new(kind: u8, body: impl Into<Bytes>) -> Self {
        Self {
            kind,
            body: body.into(),
        }
    }

    /// Bytes this message takes in a batch body.
    pub fn encoded_len(&self) -> usize {
        1 + varint_len(self.body.len() as u64) + self.body.len()
    }

    /// `kind: u8`, `len: varint`, `body`.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.put_u8(self.kind);
        put_varint(out, self.body.len() as u64);
        out.extend_from_slice(&self.body);
    }

    /// Reads the messages of one batch body; `count` must match exactly.
    pub(crate) fn decode_all(
        body: Bytes,
        count: u32,
        out: &mut Vec<Message>,
    ) -> Result<(), FrameError> {
        let mut rest = body.clone();
        for _ in 0..count {
            if !rest.has_remaining() {
                return Err(FrameError::Malformed("fewer messages than count"));
            }
            let kind = rest.get_u8();
            let len = get_varint(&mut rest)?;
            let len = usize::try_from(len).map_err(|_| FrameError::Malformed("length"))?;
            if rest.remaining() < len {
                return Err(FrameError::Malformed("message runs past the body"));
            }
            out.push(Message {
                kind,
                body: rest.split_to(len),
            });
        }
        if rest.has_remaining() {
            return Err(FrameError::Malformed("bytes after the last message"));
        }
        Ok(())
    }
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// LEB128, at most 10 bytes.
fn get_varint(buf: &mut Bytes) -> Result<u64, FrameError> {
    let mut v = 0u64;
    for shift in (0..70).step_by(7) {
        if !buf.has_remaining() {
            return Err(FrameError::Malformed("varint truncated"));
        }
        let b = buf.get_u8();
        v |= u64::from(b & 0x7f).checked_shl(shift).unwrap_or(0);
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(FrameError::Malformed("varint too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip() {
        for v in [
            0u64,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u32::MAX as u64,
            u64::MAX,
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v));
            assert_eq!(get_varint(&mut Bytes::from(out)).expect("decodes"), v);
        }
    }
}
