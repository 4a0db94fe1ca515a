//! Where a node looks for its cluster: a static list of addresses, or a DNS
//! name (the StatefulSet's headless Service, which resolves to every ready
//! pod), or both.

use std::net::SocketAddr;
use std::time::Duration;

/// How long one resolution may take before it is abandoned (it is retried
/// at the next join attempt).
const RESOLVE_TIMEOUT: Duration = Duration::from_millis(500);

/// Seed entries, each `ip:port` or `name:port`; names are resolved at every
/// join attempt, so pods that start later are found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seeds {
    entries: Vec<String>,
}

impl Seeds {
    /// Seeds from entries such as `10.0.0.5:7946` or
    /// `mcp-peers.default.svc.cluster.local:7946`.
    pub fn new(entries: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            entries: entries.into_iter().map(Into::into).collect(),
        }
    }

    /// Static addresses only.
    pub fn addrs(addrs: impl IntoIterator<Item = SocketAddr>) -> Self {
        Self::new(addrs.into_iter().map(|a| a.to_string()))
    }

    /// No seed: this node starts a cluster and waits to be found.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every address the entries name now; a name that does not resolve is
    /// skipped (logged), not an error: the next attempt tries again.
    pub async fn resolve(&self) -> Vec<SocketAddr> {
        let mut out = Vec::new();
        for entry in &self.entries {
            if let Ok(addr) = entry.parse::<SocketAddr>() {
                out.push(addr);
                continue;
            }
            match tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host(entry.as_str()))
                .await
            {
                Ok(Ok(addrs)) => out.extend(addrs),
                Ok(Err(err)) => tracing::debug!(seed = %entry, %err, "seed does not resolve"),
                Err(_) => tracing::debug!(seed = %entry, "seed resolution timed out"),
            }
        }
        out.sort();
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn literal_addresses_and_names_resolve() {
        let seeds = Seeds::new(["127.0.0.1:7001", "localhost:7000", "no-such-host.invalid:1"]);
        let got = seeds.resolve().await;
        assert!(got.contains(&"127.0.0.1:7001".parse().expect("addr")));
        assert!(
            got.iter().any(|a| a.port() == 7000 && a.ip().is_loopback()),
            "{got:?}"
        );
        assert!(got.iter().all(|a| a.port() != 1));
    }
}
