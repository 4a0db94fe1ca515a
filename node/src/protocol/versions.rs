//! Protocol versions the node speaks.

use crate::session::ProtocolEra;

/// The stateless revision.
pub const MODERN: &str = "2026-07-28";

/// Legacy versions accepted by `initialize`, newest first.
pub const LEGACY: [&str; 3] = ["2025-11-25", "2025-06-18", "2025-03-26"];

/// Every version, newest first (as `supportedVersions` and error data list them).
pub const ALL: [&str; 4] = [MODERN, "2025-11-25", "2025-06-18", "2025-03-26"];

/// The version to answer an `initialize` asking for `requested`: the same if we speak it,
/// otherwise our newest legacy version (the spec's negotiation rule).
pub fn negotiate(requested: Option<&str>) -> ProtocolEra {
    requested
        .and_then(ProtocolEra::parse)
        .unwrap_or(ProtocolEra::V2025_11_25)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation() {
        assert_eq!(negotiate(Some("2025-06-18")), ProtocolEra::V2025_06_18);
        assert_eq!(negotiate(Some("2026-07-28")), ProtocolEra::V2025_11_25);
        assert_eq!(negotiate(Some("1900-01-01")), ProtocolEra::V2025_11_25);
        assert_eq!(negotiate(None), ProtocolEra::V2025_11_25);
    }
}
