//! Authenticated gossip packets for the plain UDP gossip socket: a cluster-wide key, a tag
//! on every packet, and a freshness window against replays.
//!
//! ```text
//! packet = magic:u8 (0xC7) version:u8 (1) sent_ms:u64 payload tag:[u8; 16]
//! tag    = HMAC-SHA256(key, magic .. payload), first 16 bytes
//! ```
//!
//! `sent_ms` is the sender's wall clock (ms since the Unix epoch); a packet more than
//! [`MAX_SKEW_MS`] away from the receiver's clock is refused, so a recorded packet cannot be
//! played back later. The key comes from a secret every node holds (the cluster Secret's
//! peer key, like the mutual TLS): rotating the Secret rotates both.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

const MAGIC: u8 = 0xC7;
const VERSION: u8 = 1;
const HEAD: usize = 2 + 8;
/// Tag bytes at the end of every packet.
pub(crate) const TAG: usize = 16;
/// Bytes a sealed packet adds to its payload.
pub(crate) const OVERHEAD: usize = HEAD + TAG;
/// How far a packet's send time may be from the receiver's clock. Nodes' clocks are kept
/// by NTP; a minute is far above their skew and far below any use of an old packet.
pub(crate) const MAX_SKEW_MS: u64 = 60_000;

/// Why a received packet was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// Shorter than the header and tag.
    #[error("gossip packet too short")]
    Short,
    /// Not a gossip packet of ours (magic or version).
    #[error("not a gossip packet (magic or version)")]
    Magic,
    /// The tag does not verify: another key, or altered bytes.
    #[error("gossip packet tag does not verify")]
    Tag,
    /// Sent too far from now (a replay, or a clock far off).
    #[error("gossip packet sent {0} ms away from this node's clock")]
    Stale(u64),
}

/// The cluster-wide gossip key.
#[derive(Clone)]
pub struct GossipKey {
    key: [u8; 32],
}

impl std::fmt::Debug for GossipKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GossipKey(..)")
    }
}

impl GossipKey {
    /// A key derived from a secret every node of the cluster holds (the peer private key of
    /// the cluster Secret), apart from any other use of that secret.
    pub fn from_secret(secret: &[u8]) -> Self {
        let mut h = Sha256::new();
        h.update(b"mcpcluster gossip v1\0");
        h.update(secret);
        Self {
            key: h.finalize().into(),
        }
    }

    fn mac(&self) -> HmacSha256 {
        // A 32-byte key is always accepted by HMAC.
        <HmacSha256 as KeyInit>::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!())
    }

    /// Writes `payload` sealed at wall-clock `now_ms` into `out` (cleared first).
    pub fn seal(&self, payload: &[u8], now_ms: u64, out: &mut Vec<u8>) {
        out.clear();
        out.reserve(payload.len() + OVERHEAD);
        out.push(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&now_ms.to_be_bytes());
        out.extend_from_slice(payload);
        let mut mac = self.mac();
        mac.update(out);
        let tag = mac.finalize().into_bytes();
        out.extend_from_slice(&tag[..TAG]);
    }

    /// The payload of a sealed `packet`, if it verifies and is fresh at `now_ms`.
    pub fn open<'a>(&self, packet: &'a [u8], now_ms: u64) -> Result<&'a [u8], SealError> {
        if packet.len() < OVERHEAD {
            return Err(SealError::Short);
        }
        if packet[0] != MAGIC || packet[1] != VERSION {
            return Err(SealError::Magic);
        }
        let (body, tag) = packet.split_at(packet.len() - TAG);
        let mut mac = self.mac();
        mac.update(body);
        mac.verify_truncated_left(tag).map_err(|_| SealError::Tag)?;
        let mut sent = [0u8; 8];
        sent.copy_from_slice(&body[2..HEAD]);
        let skew = u64::from_be_bytes(sent).abs_diff(now_ms);
        if skew > MAX_SKEW_MS {
            return Err(SealError::Stale(skew));
        }
        Ok(&body[HEAD..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: u64 = 1_795_900_000_000;

    #[test]
    fn a_sealed_packet_opens_with_the_same_key_only() {
        let key = GossipKey::from_secret(b"the cluster secret");
        let mut out = Vec::new();
        key.seal(b"ping", NOW, &mut out);
        assert_eq!(out.len(), 4 + OVERHEAD);
        assert_eq!(key.open(&out, NOW + 5), Ok(&b"ping"[..]));
        let other = GossipKey::from_secret(b"another secret");
        assert_eq!(other.open(&out, NOW), Err(SealError::Tag));
    }

    #[test]
    fn altered_stale_and_foreign_packets_are_refused() {
        let key = GossipKey::from_secret(b"s");
        let mut out = Vec::new();
        key.seal(b"payload", NOW, &mut out);
        let mut altered = out.clone();
        altered[HEAD] ^= 1;
        assert_eq!(key.open(&altered, NOW), Err(SealError::Tag));
        let mut retimed = out.clone();
        retimed[9] ^= 1;
        assert_eq!(
            key.open(&retimed, NOW),
            Err(SealError::Tag),
            "the time is covered"
        );
        assert_eq!(
            key.open(&out, NOW + MAX_SKEW_MS + 1),
            Err(SealError::Stale(MAX_SKEW_MS + 1))
        );
        assert_eq!(key.open(&out, NOW - MAX_SKEW_MS), Ok(&b"payload"[..]));
        assert_eq!(key.open(&out[..OVERHEAD - 1], NOW), Err(SealError::Short));
        let mut quic = out.clone();
        quic[0] = 0x40;
        assert_eq!(key.open(&quic, NOW), Err(SealError::Magic));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_and_never_open(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let key = GossipKey::from_secret(b"k");
            prop_assert!(key.open(&bytes, NOW).is_err());
        }

        #[test]
        fn every_payload_round_trips(payload in proptest::collection::vec(any::<u8>(), 0..1400)) {
            let key = GossipKey::from_secret(b"k");
            let mut out = Vec::new();
            key.seal(&payload, NOW, &mut out);
            prop_assert_eq!(key.open(&out, NOW), Ok(&payload[..]));
        }
    }
}
