//! The primitives of every peer message body: big-endian integers, LEB128 lengths, socket
//! addresses. [`Reader`] checks every length against what is left and never allocates from a
//! forged count: malformed bytes give a [`WireError`], never a panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::Bytes;

/// A message that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("peer message kind {kind}: {what}")]
pub struct WireError {
    /// The message kind.
    pub kind: u8,
    /// What was wrong.
    pub what: &'static str,
}

/// Appends encoded values to a buffer.
#[derive(Debug, Default)]
pub struct Writer(pub Vec<u8>);

impl Writer {
    /// An empty writer with room for `n` bytes.
    pub fn with_capacity(n: usize) -> Self {
        Self(Vec::with_capacity(n))
    }
    /// One byte.
    pub fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    /// Big-endian u16.
    pub fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    /// Big-endian u32.
    pub fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    /// Big-endian u64.
    pub fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    /// Big-endian u128.
    pub fn u128(&mut self, v: u128) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    /// A LEB128 length.
    pub fn len(&mut self, mut n: usize) {
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                self.0.push(b);
                return;
            }
            self.0.push(b | 0x80);
        }
    }
    /// Length-prefixed bytes.
    pub fn bytes(&mut self, b: &[u8]) {
        self.len(b.len());
        self.0.extend_from_slice(b);
    }
    /// Length-prefixed UTF-8.
    pub fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
    /// Family byte (4 or 6), the IP, the port.
    pub fn addr(&mut self, a: SocketAddr) {
        match a.ip() {
            IpAddr::V4(ip) => {
                self.u8(4);
                self.0.extend_from_slice(&ip.octets());
            }
            IpAddr::V6(ip) => {
                self.u8(6);
                self.0.extend_from_slice(&ip.octets());
            }
        }
        self.u16(a.port());
    }
    /// Header pairs: a count, then name and value each length-prefixed.
    pub fn headers(&mut self, h: &[(String, Bytes)]) {
        self.len(h.len());
        for (k, v) in h {
            self.str(k);
            self.bytes(v);
        }
    }
}

/// Reads encoded values from a message body.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
    kind: u8,
}

impl<'a> Reader<'a> {
    /// A reader over the body of a message of `kind` (named in errors).
    pub fn new(kind: u8, buf: &'a Bytes) -> Self {
        Self { buf, pos: 0, kind }
    }
    /// An error about this message.
    pub fn err(&self, what: &'static str) -> WireError {
        WireError {
            kind: self.kind,
            what,
        }
    }
    /// Fails unless every byte was read.
    pub fn finish(&self) -> Result<(), WireError> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(self.err("trailing bytes"))
        }
    }
    fn take(&mut self, n: usize) -> Result<&[u8], WireError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| self.err("truncated"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    /// One byte.
    pub fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }
    /// A boolean byte: 0 or 1, anything else an error.
    pub fn flag(&mut self) -> Result<bool, WireError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(self.err("bad flag")),
        }
    }
    /// Big-endian u16.
    pub fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    /// Big-endian u32.
    pub fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    /// Big-endian u64.
    pub fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    /// Big-endian u128.
    pub fn u128(&mut self) -> Result<u128, WireError> {
        Ok(u128::from_be_bytes(self.array()?))
    }
    /// A LEB128 length (at most 10 bytes, fitting usize).
    #[allow(clippy::len_without_is_empty)] // reads a length from the wire; not a container
    pub fn len(&mut self) -> Result<usize, WireError> {
        let mut n: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return usize::try_from(n).map_err(|_| self.err("length too large"));
            }
        }
        Err(self.err("length varint too long"))
    }
    /// A count of items each at least `min_item` bytes long: refused when the rest of the
    /// message cannot hold them (no allocation from a forged count).
    pub fn count(&mut self, min_item: usize) -> Result<usize, WireError> {
        let n = self.len()?;
        if n.saturating_mul(min_item.max(1)) > self.buf.len() - self.pos {
            return Err(self.err("count exceeds the message"));
        }
        Ok(n)
    }
    /// Length-prefixed bytes (a slice of the message, no copy).
    pub fn bytes(&mut self) -> Result<Bytes, WireError> {
        let n = self.len()?;
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| self.err("truncated"))?;
        let b = self.buf.slice(self.pos..end);
        self.pos = end;
        Ok(b)
    }
    /// Length-prefixed UTF-8.
    pub fn string(&mut self) -> Result<String, WireError> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| self.err("invalid UTF-8"))
    }
    /// A socket address.
    pub fn addr(&mut self) -> Result<SocketAddr, WireError> {
        let ip = match self.u8()? {
            4 => IpAddr::V4(Ipv4Addr::from(self.array::<4>()?)),
            6 => IpAddr::V6(Ipv6Addr::from(self.array::<16>()?)),
            _ => return Err(self.err("bad address family")),
        };
        Ok(SocketAddr::new(ip, self.u16()?))
    }
    /// Header pairs.
    pub fn headers(&mut self) -> Result<Vec<(String, Bytes)>, WireError> {
        let n = self.count(2)?;
        let mut h = Vec::with_capacity(n);
        for _ in 0..n {
            h.push((self.string()?, self.bytes()?));
        }
        Ok(h)
    }
}
