//! Per-member metadata (name, load, draining) carried as foca custom broadcasts.
//!
//! Each node owns one versioned record about itself. It re-broadcasts it
//! when it changes, when it sees a new member, and every
//! `Config::meta_refresh`, so a node that joins late learns every record
//! within one refresh period and any node can answer the whole cluster's view.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use parking_lot::Mutex;

use bytes::{Buf, BufMut};
use foca::{BroadcastHandler, Invalidates};

use super::NodeId;
use super::codec::{CodecError, get_id, put_id};

/// The longest node name carried on the wire, in bytes.
pub const MAX_NAME_LEN: usize = 63;

/// What a member says about itself; rides on gossip.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeMeta {
    /// Human name (the pod name in Kubernetes); at most [`MAX_NAME_LEN`] bytes.
    pub name: String,
    /// Open client connections.
    pub connections: u64,
    /// Live sessions it owns.
    pub sessions: u64,
    /// Draining: takes no new sessions, hands its sessions off.
    pub draining: bool,
    /// Where clients reach its MCP endpoint (`IP:PORT`), empty if not said; at most
    /// [`MAX_NAME_LEN`] bytes. Carried after the name, so a record without it (an older
    /// node) decodes with it empty.
    pub address: String,
}

/// One versioned record: who, which version of its metadata, and the data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MetaRecord {
    pub(crate) id: NodeId,
    pub(crate) version: u64,
    pub(crate) meta: NodeMeta,
}

impl MetaRecord {
    /// `id`, `version: u64`, `connections: u64`, `sessions: u64`, `flags: u8`
    /// (bit 0 draining), `name_len: u8`, `name`.
    pub(crate) fn encode(&self, buf: &mut impl BufMut) {
        put_id(&self.id, buf);
        buf.put_u64(self.version);
        buf.put_u64(self.meta.connections);
        buf.put_u64(self.meta.sessions);
        buf.put_u8(u8::from(self.meta.draining));
        let name = truncate(&self.meta.name);
        // `truncate` bounds the length by MAX_NAME_LEN, which fits in a u8.
        buf.put_u8(name.len() as u8);
        buf.put_slice(name.as_bytes());
        let address = truncate(&self.meta.address);
        buf.put_u8(address.len() as u8);
        buf.put_slice(address.as_bytes());
    }

    pub(crate) fn decode(mut buf: &[u8]) -> Result<Self, CodecError> {
        let id = get_id(&mut buf)?;
        if buf.remaining() < 8 * 3 + 2 {
            return Err(CodecError::Truncated);
        }
        let version = buf.get_u64();
        let connections = buf.get_u64();
        let sessions = buf.get_u64();
        let draining = buf.get_u8() & 1 == 1;
        let len = usize::from(buf.get_u8());
        if buf.remaining() < len {
            return Err(CodecError::Truncated);
        }
        let name = String::from_utf8_lossy(&buf[..len]).into_owned();
        buf.advance(len);
        // Optional: absent in records from nodes that predate it.
        let address = match buf.first() {
            Some(&n) if buf.len() > usize::from(n) => {
                String::from_utf8_lossy(&buf[1..=usize::from(n)]).into_owned()
            }
            Some(_) => return Err(CodecError::Truncated),
            None => String::new(),
        };
        Ok(Self {
            id,
            version,
            meta: NodeMeta {
                name,
                connections,
                sessions,
                draining,
                address,
            },
        })
    }
}

fn truncate(name: &str) -> &str {
    if name.len() <= MAX_NAME_LEN {
        return name;
    }
    let mut end = MAX_NAME_LEN;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

/// The dissemination key of a record: a newer (generation, version) for the
/// same address replaces an older one still being gossiped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetaKey {
    addr: SocketAddr,
    generation: u64,
    version: u64,
}

impl Invalidates for MetaKey {
    fn invalidates(&self, other: &Self) -> bool {
        self.addr == other.addr
            && (self.generation, self.version) >= (other.generation, other.version)
    }
}

/// The latest record known for each address.
#[derive(Debug, Default)]
pub struct MetaStore {
    records: HashMap<SocketAddr, MetaRecord>,
    /// Bumped whenever what [`MetaStore::get`] answers may have changed (a new identity or
    /// new metadata; not a re-broadcast of the same metadata under a new version).
    changes: u64,
}

/// foca's broadcast handler: a handle on the [`MetaStore`] that
/// [`super::Membership`] reads (foca owns its handler and lends no access).
#[derive(Debug, Default, Clone)]
pub(crate) struct SharedMeta(pub(crate) Arc<Mutex<MetaStore>>);

impl MetaStore {
    /// The newest metadata known for `id` (same generation only).
    pub fn get(&self, id: &NodeId) -> Option<&NodeMeta> {
        self.records
            .get(&id.addr)
            .filter(|r| r.id.generation == id.generation)
            .map(|r| &r.meta)
    }

    /// Forgets everything about `addr` older than `generation`.
    pub(crate) fn forget_before(&mut self, addr: SocketAddr, generation: u64) {
        if self
            .records
            .get(&addr)
            .is_some_and(|r| r.id.generation < generation)
        {
            self.records.remove(&addr);
            self.changes += 1;
        }
    }

    /// A counter that moves whenever an answer of [`MetaStore::get`] may have changed.
    pub(crate) fn changes(&self) -> u64 {
        self.changes
    }
}

impl BroadcastHandler<NodeId> for SharedMeta {
    type Key = MetaKey;
    type Error = CodecError;

    fn receive_item(
        &mut self,
        data: &[u8],
        sender: Option<&NodeId>,
    ) -> Result<Option<MetaKey>, CodecError> {
        self.0.lock().receive(data, sender)
    }
}

impl MetaStore {
    fn receive(
        &mut self,
        data: &[u8],
        _sender: Option<&NodeId>,
    ) -> Result<Option<MetaKey>, CodecError> {
        let record = MetaRecord::decode(data)?;
        let key = MetaKey {
            addr: record.id.addr,
            generation: record.id.generation,
            version: record.version,
        };
        let newer = self
            .records
            .get(&key.addr)
            .is_none_or(|old| (old.id.generation, old.version) < (key.generation, key.version));
        if !newer {
            return Ok(None);
        }
        if let Some(old) = self.records.insert(key.addr, record)
            && let Some(new) = self.records.get(&key.addr)
            && old.id == new.id
            && old.meta == new.meta
        {
            return Ok(Some(key));
        }
        self.changes += 1;
        Ok(Some(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record(version: u64) -> MetaRecord {
        MetaRecord {
            id: NodeId::new(SocketAddr::from(([127, 0, 0, 1], 7000)), 3),
            version,
            meta: NodeMeta {
                name: "mcp-0".into(),
                connections: 12,
                sessions: 7,
                draining: true,
                address: "10.0.0.7:8080".into(),
            },
        }
    }

    fn bytes(r: &MetaRecord) -> Vec<u8> {
        let mut v = Vec::new();
        r.encode(&mut v);
        v
    }

    #[test]
    fn record_round_trips() {
        let r = record(4);
        assert_eq!(MetaRecord::decode(&bytes(&r)).expect("decodes"), r);
    }

    #[test]
    fn only_newer_versions_are_disseminated() {
        let mut store = MetaStore::default();
        assert!(
            store
                .receive(&bytes(&record(2)), None)
                .expect("ok")
                .is_some()
        );
        assert!(
            store
                .receive(&bytes(&record(2)), None)
                .expect("ok")
                .is_none()
        );
        assert!(
            store
                .receive(&bytes(&record(1)), None)
                .expect("ok")
                .is_none()
        );
        assert!(
            store
                .receive(&bytes(&record(3)), None)
                .expect("ok")
                .is_some()
        );
        assert_eq!(store.get(&record(0).id).map(|m| m.sessions), Some(7));
    }

    #[test]
    fn only_new_metadata_counts_as_a_change() {
        let mut store = MetaStore::default();
        store.receive(&bytes(&record(1)), None).expect("ok");
        let after_first = store.changes();
        assert!(after_first > 0);
        store.receive(&bytes(&record(2)), None).expect("ok");
        assert_eq!(
            store.changes(),
            after_first,
            "the same metadata re-broadcast"
        );
        let mut busier = record(3);
        busier.meta.sessions += 1;
        store.receive(&bytes(&busier), None).expect("ok");
        assert_eq!(store.changes(), after_first + 1);
        store.forget_before(busier.id.addr, busier.id.generation + 1);
        assert_eq!(store.changes(), after_first + 2);
    }

    #[test]
    fn a_record_without_the_address_decodes_with_it_empty() {
        let mut r = record(1);
        let full = bytes(&r);
        let old = &full[..full.len() - 1 - r.meta.address.len()];
        r.meta.address.clear();
        assert_eq!(MetaRecord::decode(old).expect("decodes"), r);
        assert_eq!(
            MetaRecord::decode(&full[..full.len() - 1]),
            Err(CodecError::Truncated)
        );
    }

    #[test]
    fn long_names_are_cut_on_a_char_boundary() {
        let mut r = record(1);
        r.meta.name = "é".repeat(40);
        let back = MetaRecord::decode(&bytes(&r)).expect("decodes");
        assert!(back.meta.name.len() <= MAX_NAME_LEN);
        assert!(r.meta.name.starts_with(&back.meta.name));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..96)) {
            let _ = MetaRecord::decode(&b);
        }
    }
}
