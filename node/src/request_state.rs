//! Integrity-protected `requestState` for 2026-07-28 multi-round requests.
//!
//! The state a handler wants back on the retry is JSON; the node sends
//! `base64url(json).hex(hmac-sha256(key, name || 0 || json))`, binding it to the tool or prompt
//! it belongs to, and refuses anything that does not verify. The client is untrusted: a
//! modified or transplanted state is an error, never input to a handler.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Signs and verifies request states with one node-wide key.
#[derive(Clone)]
pub struct StateSigner {
    key: [u8; 32],
}

impl std::fmt::Debug for StateSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateSigner(..)")
    }
}

impl StateSigner {
    /// A signer whose key is derived from a secret every node of a cluster holds (the peer
    /// key from the cluster Secret), so a state issued by one node verifies on any other.
    pub fn from_secret(secret: &[u8]) -> Self {
        use sha2::Digest;
        let mut h = Sha256::new();
        h.update(b"mcpcluster requestState v1\0");
        h.update(secret);
        Self {
            key: h.finalize().into(),
        }
    }

    /// A signer with a random key (states do not survive a restart of the node).
    pub fn random() -> Self {
        Self {
            key: rand::random(),
        }
    }

    fn mac(&self, name: &str, payload: &[u8]) -> Option<HmacSha256> {
        let mut mac = HmacSha256::new_from_slice(&self.key).ok()?;
        mac.update(name.as_bytes());
        mac.update(&[0]);
        mac.update(payload);
        Some(mac)
    }

    /// Encodes `state` for the request named `name`.
    pub fn sign(&self, name: &str, state: &Value) -> String {
        let payload = serde_json::to_vec(state).unwrap_or_default();
        let tag = self
            .mac(name, &payload)
            .map(|m| m.finalize().into_bytes().to_vec())
            .unwrap_or_default();
        let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        format!("{}.{hex}", URL_SAFE_NO_PAD.encode(&payload))
    }

    /// Decodes a state returned by the client for the request named `name`.
    pub fn verify(&self, name: &str, text: &str) -> Option<Value> {
        let (payload_b64, hex) = text.split_once('.')?;
        if hex.len() != 64 {
            return None;
        }
        let payload = URL_SAFE_NO_PAD.decode(payload_b64).ok()?;
        let tag: Vec<u8> = (0..32)
            .map(|i| u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok())
            .collect::<Option<_>>()?;
        self.mac(name, &payload)?.verify_slice(&tag).ok()?;
        serde_json::from_slice(&payload).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nodes_sharing_the_cluster_secret_verify_each_others_states() {
        let a = StateSigner::from_secret(b"the cluster key");
        let b = StateSigner::from_secret(b"the cluster key");
        let other = StateSigner::from_secret(b"another cluster");
        let token = a.sign("tool_a", &json!({"step": 1}));
        assert_eq!(b.verify("tool_a", &token), Some(json!({"step": 1})));
        assert_eq!(other.verify("tool_a", &token), None);
    }

    #[test]
    fn round_trip_and_tamper_detection() {
        let s = StateSigner::random();
        let token = s.sign("tool_a", &json!({"step": 2, "name": "Alice"}));
        assert_eq!(
            s.verify("tool_a", &token),
            Some(json!({"step": 2, "name": "Alice"}))
        );
        assert_eq!(s.verify("tool_b", &token), None, "bound to its tool");
        assert_eq!(s.verify("tool_a", &format!("{token}-TAMPERED")), None);
        assert_eq!(s.verify("tool_a", "garbage"), None);
        assert_eq!(
            StateSigner::random().verify("tool_a", &token),
            None,
            "other key"
        );
    }
}
