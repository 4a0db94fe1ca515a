//! Session ids: 128 random bits, shown as 32 lowercase hex characters (visible ASCII, as the
//! transport requires, and unguessable).

use std::fmt;

/// A session id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId(pub u128);

impl SessionId {
    /// A fresh random id.
    pub fn random() -> Self {
        Self(rand::random::<u128>())
    }

    /// Parses the header form; anything else is `None` (and answered 404 by the caller).
    pub fn parse(text: &str) -> Option<Self> {
        if text.len() != 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u128::from_str_radix(text, 16).ok().map(Self)
    }

    /// Shard index for a registry of `shards` shards (a power of two).
    pub fn shard(&self, shards: usize) -> usize {
        (self.0 as usize) & (shards - 1)
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
        let id = SessionId::random();
        assert_eq!(SessionId::parse(&id.to_string()), Some(id));
        assert_eq!(SessionId::parse("xyz"), None);
        assert_eq!(SessionId::parse(&"g".repeat(32)), None);
    }
}
