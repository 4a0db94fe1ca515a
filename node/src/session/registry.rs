//! The session registry: sessions sharded by id over independent locks, so concurrent
//! requests of different sessions never contend on one mutex.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::RwLock;

use super::id::SessionId;
use super::record::Session;

const SHARDS: usize = 64;

/// The registry is full (`limits.maxSessions`).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("session limit reached")]
pub struct RegistryFull;

/// All live sessions of the node.
#[derive(Debug)]
pub struct Registry {
    shards: Vec<RwLock<HashMap<SessionId, Arc<Session>>>>,
    len: AtomicUsize,
    capacity: usize,
}

impl Registry {
    /// An empty registry holding at most `capacity` sessions.
    pub fn new(capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            len: AtomicUsize::new(0),
            capacity,
        }
    }

    /// Number of sessions.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Inserts a session unless the registry is full.
    pub fn insert(&self, session: Arc<Session>) -> Result<(), RegistryFull> {
        if self.len.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.len.fetch_sub(1, Ordering::AcqRel);
            return Err(RegistryFull);
        }
        let shard = &self.shards[session.id.shard(SHARDS)];
        if shard.write().insert(session.id, session).is_some() {
            self.len.fetch_sub(1, Ordering::AcqRel); // replaced an equal id: count unchanged
        }
        Ok(())
    }

    /// Looks a session up.
    pub fn get(&self, id: &SessionId) -> Option<Arc<Session>> {
        self.shards[id.shard(SHARDS)].read().get(id).cloned()
    }

    /// Removes a session; returns it if it existed.
    pub fn remove(&self, id: &SessionId) -> Option<Arc<Session>> {
        let removed = self.shards[id.shard(SHARDS)].write().remove(id);
        if removed.is_some() {
            self.len.fetch_sub(1, Ordering::AcqRel);
        }
        removed
    }

    /// Removes `session` if it is the one registered under its id (not a newer object that
    /// replaced it); returns whether it did.
    pub fn remove_if_same(&self, session: &Arc<Session>) -> bool {
        let mut shard = self.shards[session.id.shard(SHARDS)].write();
        let same = shard
            .get(&session.id)
            .is_some_and(|s| Arc::ptr_eq(s, session));
        if same {
            shard.remove(&session.id);
            self.len.fetch_sub(1, Ordering::AcqRel);
        }
        same
    }

    /// Removes sessions idle since before `cutoff_ms` with no live stream; returns them.
    pub fn expire(&self, cutoff_ms: u64) -> Vec<Arc<Session>> {
        let mut removed = Vec::new();
        for shard in &self.shards {
            let mut map = shard.write();
            map.retain(|_, s| {
                let keep = {
                    let st = s.state.lock();
                    st.last_seen_ms >= cutoff_ms || st.has_live_stream()
                };
                if !keep {
                    removed.push(s.clone());
                }
                keep
            });
        }
        self.len.fetch_sub(removed.len(), Ordering::AcqRel);
        removed
    }

    /// Calls `f` for every session (shard by shard; never holds two shard locks).
    pub fn for_each(&self, f: impl FnMut(&Arc<Session>)) {
        self.for_each_in_slice(0, 1, f);
    }

    /// Calls `f` for the sessions of `slice` of `count` (whole shards: a session is always in
    /// the same slice; see `spread.rs`).
    pub fn for_each_in_slice(&self, slice: u32, count: u32, mut f: impl FnMut(&Arc<Session>)) {
        for (i, shard) in self.shards.iter().enumerate() {
            if !crate::spread::in_slice(i as u64, slice, count) {
                continue;
            }
            let sessions: Vec<Arc<Session>> = shard.read().values().cloned().collect();
            for s in &sessions {
                f(s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::record::ProtocolEra;
    use super::*;

    fn session(now: u64) -> Arc<Session> {
        Arc::new(Session::new(
            SessionId::random(),
            ProtocolEra::V2025_11_25,
            &serde_json::json!({}),
            10,
            now,
        ))
    }

    #[test]
    fn remove_if_same_leaves_a_newer_object_under_the_same_id() {
        let r = Registry::new(4);
        let old = session(0);
        let newer = Arc::new(Session::new(
            old.id,
            ProtocolEra::V2025_11_25,
            &serde_json::json!({}),
            10,
            1,
        ));
        r.insert(newer.clone()).expect("room");
        assert!(
            !r.remove_if_same(&old),
            "another object under that id stays"
        );
        assert!(r.get(&old.id).is_some_and(|s| Arc::ptr_eq(&s, &newer)));
        assert_eq!(r.len(), 1);
        assert!(r.remove_if_same(&newer));
        assert_eq!(r.len(), 0);
        assert!(r.get(&old.id).is_none());
    }

    #[test]
    fn capacity_is_enforced() {
        let r = Registry::new(2);
        r.insert(session(0)).expect("first");
        r.insert(session(0)).expect("second");
        assert!(r.insert(session(0)).is_err());
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn expire_removes_only_idle_sessions() {
        let r = Registry::new(10);
        let old = session(0);
        let fresh = session(5_000);
        r.insert(old.clone()).expect("insert");
        r.insert(fresh.clone()).expect("insert");
        assert_eq!(r.expire(1_000).len(), 1);
        assert!(r.get(&old.id).is_none());
        assert!(r.get(&fresh.id).is_some());
        assert!(r.remove(&fresh.id).is_some());
        assert!(r.is_empty());
    }
}
