//! [`Layer`]: `Peers` behind the node's [`SessionLayer`] interface, which is all the HTTP side
//! and the node's own code see of the cluster (`session/layer.rs`).

use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::future::BoxFuture;

use super::peers::Peers;
use super::relay;
use crate::content::ChangeEvent;
use crate::node::Node;
use crate::session::layer::{
    Admission, Hops, RelayError, RelayRequest, Relayed, Route, SessionLayer, StopFigures,
};
use crate::session::{Session, SessionId};

/// The session layer installed in the node by `cluster::start`.
#[derive(Debug)]
pub struct Layer {
    peers: Arc<Peers>,
    /// The node that holds this layer (weak: the node owns it).
    node: Weak<Node>,
}

impl Layer {
    /// The interface over `peers`, for `node`.
    pub fn new(peers: Arc<Peers>, node: &Arc<Node>) -> Self {
        Self {
            peers,
            node: Arc::downgrade(node),
        }
    }
}

impl SessionLayer for Layer {
    fn has_quorum(&self) -> bool {
        self.peers.has_quorum()
    }

    fn admission(&self) -> Admission {
        self.peers.admission()
    }

    fn new_session_id(&self) -> SessionId {
        self.peers.new_session_id()
    }

    fn created(&self, s: &Arc<Session>) -> BoxFuture<'static, ()> {
        let (peers, node, s) = (self.peers.clone(), self.node.clone(), s.clone());
        Box::pin(async move {
            if let Some(node) = node.upgrade() {
                peers.replicate_and_wait(&node, &s).await;
            }
        })
    }

    fn changed(&self, s: &Arc<Session>) {
        self.peers.mark(s);
    }

    fn changed_durably(&self, s: &Arc<Session>) -> BoxFuture<'static, ()> {
        let (peers, node, s) = (self.peers.clone(), self.node.clone(), s.clone());
        Box::pin(async move {
            if let Some(node) = node.upgrade() {
                peers.change_and_wait(&node, &s).await;
            }
        })
    }

    fn deleted(&self, s: &Session) {
        self.peers.deleted(s);
    }

    fn announce(&self, event: &ChangeEvent) {
        self.peers.notify(event);
    }

    fn route(&self, id: SessionId, hops: Hops) -> Route {
        match self.node.upgrade() {
            Some(node) => self.peers.route(&node, id, hops.0),
            None => Route::NotFound,
        }
    }

    fn settled(&self) -> bool {
        self.peers.sure()
    }

    fn is_leaving(&self, id: SessionId) -> bool {
        self.peers.is_leaving(id)
    }

    fn is_handing_off(&self, id: SessionId) -> bool {
        self.peers.is_handing_off(id)
    }

    fn is_live(&self, addr: SocketAddr) -> bool {
        self.peers.live().iter().any(|m| m.addr == addr)
    }

    fn forward(
        &self,
        to: SocketAddr,
        hops: Hops,
        req: RelayRequest,
    ) -> BoxFuture<'static, Result<Relayed, RelayError>> {
        let (peers, node) = (self.peers.clone(), self.node.clone());
        Box::pin(async move {
            let node = node.upgrade().ok_or(RelayError::TargetDown)?;
            relay::forward(&node, &peers.relays, to, hops, req).await
        })
    }

    fn end_relayed_streams(&self) {
        self.peers.end_relayed_streams();
    }

    fn end_some_relayed_streams(&self, max: usize) -> usize {
        self.peers.end_some_relayed_streams(max)
    }

    fn has_successor(&self) -> bool {
        self.peers.has_successor()
    }

    fn hand_off_round(&self) -> usize {
        match self.node.upgrade() {
            Some(node) => self.peers.handoff_round(&node),
            None => 0,
        }
    }

    fn stop_figures(&self) -> StopFigures {
        self.peers.stop_figures()
    }

    fn handoff_figures(&self) -> crate::session::layer::HandoffFigures {
        self.peers.handoff_figures()
    }

    fn hand_off_all(&self, deadline: Duration) -> BoxFuture<'static, ()> {
        let (peers, node) = (self.peers.clone(), self.node.clone());
        Box::pin(async move {
            if let Some(node) = node.upgrade() {
                peers.handoff_all(&node, deadline).await;
            }
        })
    }
}
