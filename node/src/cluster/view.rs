//! `GET /cluster`: every member this node knows, with the load each one gossips. The shape is
//! the operator's contract (`docs/ARCHITECTURE.md`, "Admin API"); fields beyond it (`peer`,
//! `generation`, `incarnation`) are additions readers may ignore.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use mcp_cluster::membership::{MemberState, MemberView};
use serde::Serialize;
use tokio::sync::watch;

use super::peers::Peers;
use crate::node::Node;
use crate::session::{Session, SessionId};

/// What the admin endpoint (and tests) read from a running cluster layer
/// (`Cluster::handle`).
#[derive(Debug, Clone)]
pub struct ClusterHandle {
    /// The membership's view (this node first), refreshed by the cluster crate's driver.
    pub view: watch::Receiver<Vec<MemberView>>,
    /// Where this node serves MCP (its row's `address`).
    pub mcp_addr: SocketAddr,
    pub(super) peers: Arc<Peers>,
}

impl ClusterHandle {
    /// Requests relayed over the peer links: (forwarded by this node and not answered yet,
    /// forwarded to this node and being served).
    pub fn relayed(&self) -> (usize, usize) {
        self.peers.relayed()
    }

    /// The copy of session `id` this node holds for its owner, if any.
    pub fn replica(&self, id: &SessionId) -> Option<Arc<Session>> {
        self.peers.replicas.get(id)
    }
}

/// One row of `/cluster`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberRow {
    /// Node (pod) name; a member whose metadata has not arrived yet shows its peer address.
    pub name: String,
    /// MCP address, as the member gossips it (`null` until its metadata arrives).
    pub address: Option<String>,
    /// `alive`, `suspect` or `dead`.
    pub state: &'static str,
    /// Open client connections it reported.
    pub connections: u64,
    /// Live sessions it reported.
    pub sessions: u64,
    /// Whether it reported draining.
    pub draining: bool,
    /// Its peer (QUIC) address: its identity in the membership.
    pub peer: String,
    /// Its process generation (start time, ms); a restart shows a higher one.
    pub generation: u64,
    /// Its SWIM incarnation (bumped each time it refutes a suspicion).
    pub incarnation: u16,
}

/// The whole answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterView {
    /// The answering node's name.
    #[serde(rename = "self")]
    pub self_: String,
    /// Every member, this node first, then by name.
    pub members: Vec<MemberRow>,
    /// Connections of the alive members together.
    pub connections: u64,
    /// Sessions of the alive members together.
    pub sessions: u64,
    /// This node's upstreams and how it reaches them (its own view, not gossiped).
    pub upstreams: Vec<crate::upstream::report::Report>,
}

fn state(s: MemberState) -> &'static str {
    match s {
        MemberState::Alive => "alive",
        MemberState::Suspect => "suspect",
        MemberState::Down => "dead",
    }
}

/// The view `/cluster` returns: only this node without a cluster layer, else the membership.
pub fn cluster_view(node: &Node, cluster: Option<&ClusterHandle>) -> ClusterView {
    let connections = u64::from(node.connections.load(Ordering::Relaxed));
    let sessions = node.sessions.len() as u64;
    let me = MemberRow {
        name: node.name.clone(),
        address: Some(node.settings.listen.to_string()),
        state: "alive",
        connections,
        sessions,
        draining: node.is_draining(),
        peer: String::new(),
        generation: 0,
        incarnation: 0,
    };
    let Some(handle) = cluster else {
        return ClusterView {
            self_: node.name.clone(),
            members: vec![me],
            connections,
            sessions,
            upstreams: node.upstreams.report(),
        };
    };
    let rows = handle.view.borrow().clone();
    let mut view = merge(me, handle.mcp_addr, &rows);
    view.upstreams = node.upstreams.report();
    view
}

/// This node's live row first, then one row per name (the newest generation wins, so a node
/// restarted at another address is not counted twice).
fn merge(mut me: MemberRow, mcp_addr: SocketAddr, rows: &[MemberView]) -> ClusterView {
    if let Some(first) = rows.first() {
        me.peer = first.id.addr.to_string();
        me.generation = first.id.generation;
    }
    me.address = Some(mcp_addr.to_string());
    let mut by_name: BTreeMap<String, MemberRow> = BTreeMap::new();
    for r in rows.iter().skip(1) {
        let meta = r.meta.clone().unwrap_or_default();
        let name = if meta.name.is_empty() {
            r.id.addr.to_string()
        } else {
            meta.name
        };
        let address = (!meta.address.is_empty()).then(|| meta.address.clone());
        let row = MemberRow {
            name: name.clone(),
            address,
            state: state(r.state),
            connections: meta.connections,
            sessions: meta.sessions,
            draining: meta.draining,
            peer: r.id.addr.to_string(),
            generation: r.id.generation,
            incarnation: r.incarnation,
        };
        if name == me.name {
            continue;
        }
        match by_name.get(&name) {
            Some(old) if old.generation >= row.generation => {}
            _ => {
                by_name.insert(name, row);
            }
        }
    }
    let mut members = vec![me];
    members.extend(by_name.into_values());
    let alive = members.iter().filter(|m| m.state == "alive");
    let (connections, sessions) =
        alive.fold((0, 0), |(c, s), m| (c + m.connections, s + m.sessions));
    ClusterView {
        self_: members[0].name.clone(),
        members,
        connections,
        sessions,
        upstreams: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcp_cluster::membership::{NodeId, NodeMeta};

    fn view(port: u16, generation: u64, state: MemberState, name: &str, c: u64) -> MemberView {
        MemberView {
            id: NodeId::new(SocketAddr::from(([127, 0, 0, 1], port)), generation),
            state,
            incarnation: 0,
            meta: Some(NodeMeta {
                name: name.into(),
                connections: c,
                sessions: c,
                draining: false,
                address: format!("127.0.0.1:{}", 8000 + port),
            }),
        }
    }

    #[test]
    fn one_row_per_name_newest_generation_and_alive_totals() {
        let me = MemberRow {
            name: "a".into(),
            address: None,
            state: "alive",
            connections: 1,
            sessions: 1,
            draining: false,
            peer: String::new(),
            generation: 0,
            incarnation: 0,
        };
        let rows = [
            view(1, 5, MemberState::Alive, "a", 99),
            view(2, 7, MemberState::Alive, "b", 10),
            view(3, 3, MemberState::Down, "c", 100),
            view(4, 9, MemberState::Alive, "c", 20),
            view(5, 1, MemberState::Down, "b", 1000),
        ];
        let v = merge(me, "127.0.0.1:8080".parse().expect("addr"), &rows);
        let names: Vec<_> = v
            .members
            .iter()
            .map(|m| (m.name.as_str(), m.state))
            .collect();
        assert_eq!(names, [("a", "alive"), ("b", "alive"), ("c", "alive")]);
        assert_eq!(v.members[0].generation, 5);
        assert_eq!(v.members[0].address.as_deref(), Some("127.0.0.1:8080"));
        assert_eq!(v.members[1].address.as_deref(), Some("127.0.0.1:8002"));
        assert_eq!((v.connections, v.sessions), (31, 31));
    }
}
