//! What the server says about itself during a run: its resident memory from `/proc` (any
//! server, by pid) and, for mcp-node, its own gauges from the admin `/metrics` endpoint.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Resident set size of `pid` and all its descendants, in bytes (`None` if `pid` is gone).
///
/// Descendants count because some servers run behind a launcher (`npx`, a shell).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let mut total = own_rss(pid)?;
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for child in children(parent) {
            total += own_rss(child).unwrap_or(0);
            frontier.push(child);
        }
    }
    Some(total)
}

fn own_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn children(pid: u32) -> Vec<u32> {
    // /proc/PID/task/*/children lists direct children (CONFIG_PROC_CHILDREN, on in Debian).
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|s| {
            s.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// The node's own gauges (`mcp_connections`, `mcp_sessions`, `mcp_streams`, ...).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeGauges(pub BTreeMap<String, f64>);

/// Scrapes `http://{admin}/metrics` and keeps the unlabelled `mcp_*` samples.
pub async fn node_gauges(admin: SocketAddr) -> Result<NodeGauges, String> {
    let fetch = async {
        let mut s = tokio::net::TcpStream::connect(admin)
            .await
            .map_err(|e| format!("connect {admin}: {e}"))?;
        let req = format!("GET /metrics HTTP/1.1\r\nhost: {admin}\r\nconnection: close\r\n\r\n");
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut body = Vec::new();
        s.read_to_end(&mut body).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(String::from_utf8_lossy(&body).into_owned())
    };
    let text = tokio::time::timeout(Duration::from_secs(5), fetch)
        .await
        .map_err(|_| format!("{admin}/metrics did not answer in 5 s"))??;
    Ok(parse_gauges(&text))
}

fn parse_gauges(text: &str) -> NodeGauges {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let (Some(name), Some(value)) = (parts.next(), parts.next()) else {
            continue;
        };
        if name.starts_with("mcp_")
            && !name.contains('{')
            && let Ok(v) = value.parse::<f64>()
        {
            out.insert(name.to_string(), v);
        }
    }
    NodeGauges(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_rss_and_unlabelled_gauges() {
        let rss = rss_bytes(std::process::id()).expect("own rss");
        assert!(rss > 1024 * 1024);
        let g = parse_gauges(
            "HTTP/1.1 200 OK\r\n\r\n# HELP x\nmcp_connections 12\nmcp_sessions 7\n\
             mcp_requests_total{method=\"ping\"} 3\nother 1\n",
        );
        assert_eq!(g.0.get("mcp_connections"), Some(&12.0));
        assert_eq!(g.0.get("mcp_sessions"), Some(&7.0));
        assert_eq!(g.0.len(), 2);
    }
}
