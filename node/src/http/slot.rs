//! The connection slot: one of the node's `max_connections`, held by a guard that the accept
//! loop takes and moves into the connection's task. Dropping the guard gives the slot back, so
//! a task that ends in any way (returned, panicked, cancelled at shutdown) cannot leak it.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::node::Node;

/// One open client connection counted in `Node::connections` and `mcp_connections`.
#[derive(Debug)]
pub struct ConnectionSlot {
    node: Arc<Node>,
}

impl ConnectionSlot {
    /// Takes a slot unless `cap` connections are already open.
    pub fn try_acquire(node: &Arc<Node>, cap: u32) -> Option<Self> {
        node.connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < cap).then_some(open + 1)
            })
            .ok()?;
        node.metrics.connections.inc();
        Some(Self { node: node.clone() })
    }

    /// The node this slot belongs to.
    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.node.connections.fetch_sub(1, Ordering::AcqRel);
        self.node.metrics.connections.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> Arc<Node> {
        Node::for_test()
    }

    #[test]
    fn cap_is_enforced_and_drop_returns_the_slot() {
        let node = node();
        let a = ConnectionSlot::try_acquire(&node, 2).expect("first");
        let b = ConnectionSlot::try_acquire(&node, 2).expect("second");
        assert!(
            ConnectionSlot::try_acquire(&node, 2).is_none(),
            "over the cap"
        );
        assert_eq!(node.connections.load(Ordering::Acquire), 2);
        drop(a);
        let c = ConnectionSlot::try_acquire(&node, 2).expect("a slot came back");
        drop((b, c));
        assert_eq!(node.connections.load(Ordering::Acquire), 0);
    }

    #[test]
    fn a_panic_gives_the_slot_back() {
        let node = node();
        let slot = ConnectionSlot::try_acquire(&node, 1).expect("slot");
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _held = slot;
            panic!("connection task failed");
        }));
        assert!(caught.is_err());
        assert_eq!(node.connections.load(Ordering::Acquire), 0);
    }
}
