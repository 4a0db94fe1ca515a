//! DNS-rebinding protection: the `Host` and `Origin` allow-lists.

use http::HeaderMap;
use http::header::{HOST, ORIGIN};

use crate::node::Node;

const LOCAL_NAMES: [&str; 4] = ["localhost", "127.0.0.1", "::1", "[::1]"];

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `Host` not allowed.
    Host,
    /// `Origin` not allowed.
    Origin,
}

/// Strips the port from a `host[:port]` / `[v6]:port` authority.
fn host_of(authority: &str) -> &str {
    let a = authority.trim();
    if let Some(rest) = a.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match a.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => a,
    }
}

/// Checks `Host` and `Origin` against the configuration.
pub fn check(node: &Node, headers: &HeaderMap) -> Result<(), Refusal> {
    let security = &node.settings.config.security;
    let loopback = node.settings.listen.ip().is_loopback();
    if let Some(host) = headers.get(HOST) {
        let host = host.to_str().map_err(|_| Refusal::Host)?;
        let name = host_of(host).to_ascii_lowercase();
        let allowed = if security.allowed_hosts.is_empty() {
            !loopback || LOCAL_NAMES.contains(&name.as_str())
        } else {
            security
                .allowed_hosts
                .iter()
                .any(|h| h == "*" || h.eq_ignore_ascii_case(&name))
        };
        if !allowed {
            return Err(Refusal::Host);
        }
    }
    if let Some(origin) = headers.get(ORIGIN) {
        let origin = origin.to_str().map_err(|_| Refusal::Origin)?.trim();
        if origin == "null" {
            return Err(Refusal::Origin);
        }
        let allowed = if security.allowed_origins.is_empty() {
            let authority = origin.split_once("://").map(|(_, a)| a).unwrap_or("");
            LOCAL_NAMES.contains(&host_of(authority).to_ascii_lowercase().as_str())
        } else {
            security
                .allowed_origins
                .iter()
                .any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
        };
        if !allowed {
            return Err(Refusal::Origin);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_ports() {
        assert_eq!(host_of("localhost:8080"), "localhost");
        assert_eq!(host_of("[::1]:8080"), "::1");
        assert_eq!(host_of("example.com"), "example.com");
    }
}
