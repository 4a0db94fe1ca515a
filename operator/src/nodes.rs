//! Talking to the nodes' admin API: `GET /cluster` (membership and load) and `POST`/`GET
//! /drain`, each with the cluster's [`AdminToken`] (`Authorization: Bearer`). Shapes: "Admin
//! API" in `docs/ARCHITECTURE.md`.
//!
//! Where a pod's admin endpoint is: by default its stable DNS name under the headless Service,
//! `<pod>.<name>-peers.<ns>.svc:<admin port>`. `--node-admin-override` replaces that: a
//! template with `{pod}`, `{ordinal}`, `{service}`, `{namespace}`, `{port}` (contains `{`), or a
//! file of `POD ADDRESS` lines (`NAMESPACE/POD` also accepted), re-read on every use; the e2e
//! harness uses the file to map fake (kwok) pods to real node processes on 127.0.0.x.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

use crate::admin_token::AdminToken;
use crate::names::{Names, ordinal};

/// How the operator finds a pod's admin endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminAddress {
    /// `{pod}.{service}.{namespace}.svc:{port}` or another template.
    Template(String),
    /// A file mapping pod names to `host:port`.
    File(PathBuf),
}

impl Default for AdminAddress {
    fn default() -> Self {
        AdminAddress::Template("{pod}.{service}.{namespace}.svc:{port}".into())
    }
}

impl AdminAddress {
    /// From the `--node-admin-override` value (`None`: the DNS default).
    pub fn from_arg(arg: Option<&str>) -> Self {
        match arg {
            None | Some("") => Self::default(),
            Some(t) if t.contains('{') => AdminAddress::Template(t.to_owned()),
            Some(f) => AdminAddress::File(PathBuf::from(f)),
        }
    }

    /// The `host:port` of `pod`'s admin endpoint, if known.
    pub fn resolve(&self, pod: &str, names: &Names, port: i32) -> Option<String> {
        match self {
            AdminAddress::Template(t) => Some(
                t.replace("{pod}", pod)
                    .replace("{ordinal}", &ordinal(pod).unwrap_or(0).to_string())
                    .replace("{service}", &names.peers)
                    .replace("{namespace}", &names.namespace)
                    .replace("{port}", &port.to_string()),
            ),
            AdminAddress::File(path) => {
                let text = std::fs::read_to_string(path).ok()?;
                parse_map(&text)
                    .remove(&format!("{}/{pod}", names.namespace))
                    .or_else(|| parse_map(&text).remove(pod))
            }
        }
    }
}

fn parse_map(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            Some((parts.next()?.to_owned(), parts.next()?.to_owned()))
        })
        .collect()
}

/// One member as a node reports it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Member {
    /// Node (pod) name.
    pub name: String,
    /// `alive` (others once the cluster layer reports them).
    pub state: String,
    /// Open client connections.
    pub connections: i64,
    /// Live legacy sessions.
    pub sessions: i64,
    /// Whether it is draining.
    pub draining: bool,
}

/// One upstream MCP server as a node reaches it (`/cluster`'s `upstreams`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamRow {
    /// Its configured name.
    pub name: String,
    /// The node's circuit breaker: `up`, `probing` or `down`.
    pub state: String,
    /// Whether the node's last exchange with it was answered (`None`: none yet).
    #[serde(default)]
    pub reachable: Option<bool>,
    /// Its tools as the node last listed them.
    #[serde(default)]
    pub tools: i64,
    /// The era the node speaks to it in, once known.
    #[serde(default)]
    pub era: Option<String>,
    /// Why the node's last exchange failed, while it is not reachable.
    #[serde(default)]
    pub last_error: Option<String>,
}

/// `GET /cluster`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ClusterView {
    /// The answering node.
    #[serde(rename = "self")]
    pub self_: String,
    /// The members it knows.
    pub members: Vec<Member>,
    /// Its upstreams (absent from nodes older than the field).
    #[serde(default)]
    pub upstreams: Vec<UpstreamRow>,
}

/// `GET /drain` and `POST /drain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct DrainProgress {
    /// Whether the node is draining.
    pub draining: bool,
    /// Sessions still held.
    pub sessions: i64,
    /// Whether it can go.
    pub done: bool,
}

/// The cluster's load from the views of the nodes that answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Load {
    /// Open connections, each member counted once.
    pub connections: i64,
    /// Live sessions, each member counted once.
    pub sessions: i64,
    /// Alive members.
    pub members: i32,
}

/// Merges views: each member counted once, so the sum is right whether a node knows only
/// itself (no clustering) or the whole membership (gossip). A node's report of itself wins
/// over what others gossip about it (theirs may be half a second old).
pub fn total(views: &[ClusterView]) -> Load {
    let mut seen = BTreeMap::new();
    for v in views {
        if let Some(me) = v.members.iter().find(|m| m.name == v.self_) {
            seen.insert(me.name.as_str(), me);
        }
    }
    for m in views.iter().flat_map(|v| &v.members) {
        seen.entry(m.name.as_str()).or_insert(m);
    }
    let alive = seen.values().filter(|m| m.state == "alive");
    alive.fold(Load::default(), |l, m| Load {
        connections: l.connections + m.connections.max(0),
        sessions: l.sessions + m.sessions.max(0),
        members: l.members + 1,
    })
}

/// Whether the nodes disagree on who is alive (a partition, or a view not converged yet):
/// `Some("demo-0 sees [..]; demo-2 sees [..]")` naming the first two different views.
pub fn divergence(views: &[ClusterView]) -> Option<String> {
    fn alive(v: &ClusterView) -> Vec<&str> {
        let mut names: Vec<&str> = v
            .members
            .iter()
            .filter(|m| m.state == "alive")
            .map(|m| m.name.as_str())
            .collect();
        names.sort_unstable();
        names
    }
    let first = views.first()?;
    let seen = alive(first);
    let other = views.iter().find(|v| alive(v) != seen)?;
    Some(format!(
        "{} sees [{}]; {} sees [{}]",
        first.self_,
        seen.join(", "),
        other.self_,
        alive(other).join(", ")
    ))
}

/// Why a node could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// No answer in time.
    #[error("{0}: timed out")]
    Timeout(String),
    /// Connection or protocol failure.
    #[error("{0}: {1}")]
    Http(String, String),
    /// The node refused the admin token (401/403): it holds another one, or none.
    #[error("{0}: admin token refused (HTTP {1}): {2}")]
    Refused(String, StatusCode, String),
    /// An answer that is not the documented shape.
    #[error("{0}: HTTP {1}: {2}")]
    Answer(String, StatusCode, String),
}

/// A small HTTP/1.1 client for the admin API with a per-request timeout.
#[derive(Debug, Clone)]
pub struct NodeClient {
    http: Client<HttpConnector, Empty<Bytes>>,
    timeout: Duration,
}

impl NodeClient {
    /// A client whose requests give up after `timeout`.
    pub fn new(timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        Self {
            http: Client::builder(TokioExecutor::new()).build(connector),
            timeout,
        }
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        addr: &str,
        path: &str,
        token: &AdminToken,
    ) -> Result<T, NodeError> {
        let url = format!("http://{addr}{path}");
        let req = Request::builder()
            .method(method)
            .uri(&url)
            .header(http::header::AUTHORIZATION, token.authorization())
            .body(Empty::new())
            .map_err(|e| NodeError::Http(url.clone(), e.to_string()))?;
        let exchange = async {
            let resp = self
                .http
                .request(req)
                .await
                .map_err(|e| NodeError::Http(url.clone(), e.to_string()))?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| NodeError::Http(url.clone(), e.to_string()))?
                .to_bytes();
            if !status.is_success() {
                let text = String::from_utf8_lossy(&body).trim_end().to_owned();
                if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
                    return Err(NodeError::Refused(url.clone(), status, text));
                }
                return Err(NodeError::Answer(url.clone(), status, text));
            }
            serde_json::from_slice(&body)
                .map_err(|e| NodeError::Answer(url.clone(), status, e.to_string()))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| NodeError::Timeout(url.clone()))?
    }

    /// `GET /cluster`.
    pub async fn cluster(&self, addr: &str, token: &AdminToken) -> Result<ClusterView, NodeError> {
        self.call(Method::GET, addr, "/cluster", token).await
    }

    /// `POST /drain` (`start`) or `GET /drain`.
    pub async fn drain(
        &self,
        addr: &str,
        start: bool,
        token: &AdminToken,
    ) -> Result<DrainProgress, NodeError> {
        let method = if start { Method::POST } else { Method::GET };
        self.call(method, addr, "/drain", token).await
    }

    /// `DELETE /drain`: calls a drain off.
    pub async fn cancel_drain(
        &self,
        addr: &str,
        token: &AdminToken,
    ) -> Result<DrainProgress, NodeError> {
        self.call(Method::DELETE, addr, "/drain", token).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcpcluster_api::McpCluster;

    fn names() -> Names {
        let mut c = McpCluster::new("demo", Default::default());
        c.metadata.namespace = Some("ns".into());
        Names::of(&c)
    }

    #[test]
    fn default_address_is_the_pods_dns_name() {
        let a = AdminAddress::from_arg(None);
        assert_eq!(
            a.resolve("demo-2", &names(), 9090).as_deref(),
            Some("demo-2.demo-peers.ns.svc:9090")
        );
        let t = AdminAddress::from_arg(Some("127.0.0.1:{port}{ordinal}"));
        assert_eq!(
            t.resolve("demo-2", &names(), 90).as_deref(),
            Some("127.0.0.1:902")
        );
    }

    #[test]
    fn a_map_file_resolves_pods_and_is_reread() {
        let path = std::env::temp_dir().join(format!("mcp-operator-map-{}", std::process::id()));
        std::fs::write(
            &path,
            "# harness\ndemo-0 127.0.0.2:9090\nns/demo-1 127.0.0.3:9090\n",
        )
        .expect("write");
        let a = AdminAddress::from_arg(path.to_str());
        assert_eq!(
            a.resolve("demo-0", &names(), 1).as_deref(),
            Some("127.0.0.2:9090")
        );
        assert_eq!(
            a.resolve("demo-1", &names(), 1).as_deref(),
            Some("127.0.0.3:9090")
        );
        assert_eq!(a.resolve("demo-2", &names(), 1), None);
        std::fs::write(&path, "demo-2 127.0.0.4:9090\n").expect("write");
        assert_eq!(
            a.resolve("demo-2", &names(), 1).as_deref(),
            Some("127.0.0.4:9090")
        );
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn totals_count_each_member_once() {
        let view = |me: &str, members: &[(&str, i64)]| ClusterView {
            upstreams: Vec::new(),
            self_: me.into(),
            members: members
                .iter()
                .map(|(n, c)| Member {
                    name: (*n).into(),
                    state: "alive".into(),
                    connections: *c,
                    sessions: 1,
                    draining: false,
                })
                .collect(),
        };
        // Today: each node knows itself.
        let l = total(&[view("a", &[("a", 10)]), view("b", &[("b", 5)])]);
        assert_eq!((l.connections, l.sessions, l.members), (15, 2, 2));
        // With gossip: both know both.
        let both = [("a", 10), ("b", 5)];
        let l = total(&[view("a", &both), view("b", &both)]);
        assert_eq!((l.connections, l.members), (15, 2));
        // b's own (fresher) report wins over a's gossip about it; c is known only by gossip.
        let l = total(&[
            view("a", &[("a", 10), ("b", 1), ("c", 7)]),
            view("b", &[("b", 5)]),
        ]);
        assert_eq!((l.connections, l.members), (22, 3));
    }

    #[test]
    fn divergence_names_two_different_views() {
        let view = |me: &str, alive: &[&str]| ClusterView {
            upstreams: Vec::new(),
            self_: me.into(),
            members: alive
                .iter()
                .map(|n| Member {
                    name: (*n).into(),
                    state: "alive".into(),
                    connections: 0,
                    sessions: 0,
                    draining: false,
                })
                .collect(),
        };
        let agree = [view("a", &["a", "b"]), view("b", &["b", "a"])];
        assert_eq!(divergence(&agree), None);
        assert_eq!(divergence(&[view("a", &["a"])]), None);
        let split = [view("a", &["a", "b", "c"]), view("c", &["c"])];
        assert_eq!(
            divergence(&split).as_deref(),
            Some("a sees [a, b, c]; c sees [c]")
        );
    }

    #[test]
    fn parses_the_node_answers() {
        let v: ClusterView = serde_json::from_str(
            r#"{"self":"demo-0","members":[{"name":"demo-0","address":"0.0.0.0:8080","state":"alive","connections":3,"sessions":2,"draining":false}],"connections":3,"sessions":2}"#,
        )
        .expect("parses");
        assert_eq!(v.members[0].connections, 3);
        assert!(v.upstreams.is_empty());
        let v: ClusterView = serde_json::from_str(
            r#"{"self":"demo-0","members":[],"connections":0,"sessions":0,"upstreams":[{"name":"fs","state":"down","reachable":false,"tools":0,"era":null,"lastError":"unreachable: connection refused"}]}"#,
        )
        .expect("parses");
        assert_eq!(
            v.upstreams[0].last_error.as_deref(),
            Some("unreachable: connection refused")
        );
        assert_eq!(v.upstreams[0].reachable, Some(false));
        let d: DrainProgress =
            serde_json::from_str(r#"{"draining":true,"sessions":0,"connections":0,"done":true}"#)
                .expect("parses");
        assert!(d.done);
    }
}
