//! Session ids: 128 random bits, shown as 32 lowercase hex characters (visible ASCII, as the
//! Streamable HTTP transport requires, and unguessable).

use std::fmt;

/// A session id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u128);

impl SessionId {
    /// Parses the header form; anything else is `None` (answered 404 by the caller).
    pub fn parse(text: &str) -> Option<Self> {
        if text.len() != 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u128::from_str_radix(text, 16).ok().map(Self)
    }

    /// The bytes rendezvous hashing ranks members by.
    pub fn key(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let id = SessionId(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
        assert_eq!(id.to_string(), "0123456789abcdef0011223344556677");
        assert_eq!(SessionId::parse(&id.to_string()), Some(id));
        assert_eq!(SessionId::parse("xyz"), None);
        assert_eq!(SessionId::parse(&"g".repeat(32)), None);
        assert_eq!(SessionId::parse(&"+".repeat(32)), None);
    }
}
