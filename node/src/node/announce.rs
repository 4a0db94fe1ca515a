//! Paced change broadcasts: how a change announced to every session of the node
//! ([`Node::announce_local`]) reaches them without stalling everything else.
//!
//! Each session the change goes to costs an event in its log, a replication delta to its
//! replicas, a chunk over the peer link when its stream is relayed and a socket write: about
//! 0.15-0.2 s of CPU per 10K sessions on a node (owner, replica and relay work together). Done
//! in one loop, every node spent it in the same instant (each hears the announcement within a
//! millisecond) with a runtime worker inside the loop and the peer links filling with
//! thousands of deltas and chunks ahead of the forwarded calls: `tools/call` p99 went to
//! seconds at 100K sessions (issue 11; figures in `docs/ARCHITECTURE.md`, "Paced
//! broadcasts").
//!
//! Here the sessions are visited registry shard by registry shard until [`STEP`] sessions or
//! more took the event, and after each step the broadcast waits as long as
//! [`SESSIONS_PER_SEC`] allows for those sessions: other tasks and processes run in between, and the
//! replication deltas and relayed chunks go out in batches of that size. A node with fewer
//! sessions than [`STEP`] does it all at once, inside `announce_local`, as before. The queue
//! and the pace are in `broadcasts.rs`.
//!
//! [`STEP`]: super::broadcasts::STEP
//! [`SESSIONS_PER_SEC`]: super::broadcasts::SESSIONS_PER_SEC
//!
//! What stays as it was: each session gets the event once per announcement, through
//! `push_standalone` with the next id of its stream (ids strictly increasing, the event in the
//! log before it is written), and is marked for replication in the same step. Announcements
//! are broadcast one after the other in the order they were made; one that is queued while an
//! identical one waits (not yet started) is the same news and is not queued twice.

use std::sync::{Arc, Weak};

use super::Node;
use super::broadcasts::{Job, SHARDS, STEP, pause_after};
use crate::content::change::ChangeEvent;

impl Node {
    /// Announces a change to this node's clients only (a peer's `Notify`): at once to the
    /// 2026-07-28 listen streams, and to the legacy sessions by a paced broadcast (above).
    pub fn announce_local(&self, event: ChangeEvent) {
        let _ = self.changes.send(event.clone());
        if !self.broadcasts.push(event) {
            return;
        }
        // No broadcast was under way: the first step here, the rest in a task.
        let mut job = self.broadcasts.next().map(Job::new);
        if let Some(j) = job.as_mut() {
            self.broadcast_step(j, STEP);
            if j.done() {
                job = self.broadcasts.next().map(Job::new);
            }
        }
        let Some(mut job) = job else { return };
        match (self.me.upgrade(), tokio::runtime::Handle::try_current()) {
            (Some(node), Ok(rt)) => {
                rt.spawn(run(Arc::downgrade(&node), job));
            }
            // Outside a runtime (no task to pace with): the rest at once.
            _ => loop {
                self.broadcast_step(&mut job, usize::MAX);
                match self.broadcasts.next() {
                    Some(e) => job = Job::new(e),
                    None => return,
                }
            },
        }
    }

    /// Visits whole shards from where `job` stands until the event went to at least
    /// `budget` sessions or no shard is left; returns to how many it went.
    fn broadcast_step(&self, job: &mut Job, budget: usize) -> usize {
        let log_cap = self.settings.config.limits.event_log_capacity as usize;
        let mut delivered = 0usize;
        while !job.done() && delivered < budget {
            self.sessions.for_each_in_slice(job.shard, SHARDS, |s| {
                let mut st = s.state.lock();
                let wanted = match &job.event {
                    ChangeEvent::ResourceUpdated(uri) => {
                        st.subscriptions.iter().any(|u| &**u == uri)
                    }
                    _ => true,
                };
                if wanted && st.push_standalone(&job.json, log_cap) {
                    drop(st);
                    delivered += 1;
                    self.session_changed(s);
                }
            });
            job.shard += 1;
        }
        delivered
    }
}

/// Runs the broadcasts from `job` on, a step and a pause at a time, until none is queued or
/// the node is gone.
async fn run(node: Weak<Node>, mut job: Job) {
    loop {
        let Some(n) = node.upgrade() else { return };
        let delivered = n.broadcast_step(&mut job, STEP);
        if job.done() {
            match n.broadcasts.next() {
                Some(e) => job = Job::new(e),
                None => return,
            }
        }
        drop(n);
        tokio::time::sleep(pause_after(delivered)).await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::session::{ProtocolEra, Session, SessionId, StreamKind};
    use crate::stream_queue::{self, Receiver};

    fn node() -> Arc<Node> {
        Node::for_test()
    }

    /// `n` sessions with a GET stream each, and their readers.
    fn sessions(node: &Node, n: usize) -> Vec<Receiver> {
        (0..n)
            .map(|_| {
                let s = Arc::new(Session::new(
                    SessionId::random(),
                    ProtocolEra::V2025_11_25,
                    &serde_json::json!({}),
                    10,
                    0,
                ));
                let (tx, rx) = stream_queue::channel(16);
                s.state.lock().open_stream(StreamKind::Standalone, Some(tx));
                node.sessions.insert(s).expect("room");
                rx
            })
            .collect()
    }

    /// The event ids each reader got since the last call (`<stream>-<seq>`).
    fn ids(readers: &mut [Receiver]) -> Vec<Vec<String>> {
        readers
            .iter_mut()
            .map(|rx| {
                std::iter::from_fn(|| rx.try_recv())
                    .map(|ev| {
                        let text = String::from_utf8_lossy(&ev).into_owned();
                        let id = text.lines().find_map(|l| l.strip_prefix("id: "));
                        id.expect("an event id").to_owned()
                    })
                    .collect()
            })
            .collect()
    }

    #[tokio::test]
    async fn a_few_sessions_hear_it_before_announce_returns() {
        let node = node();
        let mut readers = sessions(&node, STEP - 1);
        node.announce_local(ChangeEvent::ToolsListChanged);
        let got = ids(&mut readers);
        assert!(got.iter().all(|g| g.len() == 1), "{got:?}");
    }

    #[tokio::test]
    async fn a_resource_update_reaches_its_few_subscribers_before_announce_returns() {
        let node = node();
        let n = 8 * STEP;
        let mut readers = sessions(&node, n);
        // One session in 200, spread over the shards.
        let mut k = 0usize;
        let mut subscribed = 0;
        node.sessions.for_each(|s| {
            if k.is_multiple_of(200) {
                s.state.lock().subscriptions.push("test://r".into());
                subscribed += 1;
            }
            k += 1;
        });
        node.announce_local(ChangeEvent::ResourceUpdated("test://r".to_owned()));
        let got = ids(&mut readers);
        let heard = got.iter().filter(|g| g.len() == 1).count();
        assert_eq!(heard, subscribed, "every subscriber at once, nobody else");
    }

    #[tokio::test]
    async fn a_large_broadcast_is_paced_and_reaches_every_session_once_in_order() {
        let node = node();
        let n = 8 * STEP;
        let mut readers = sessions(&node, n);
        node.announce_local(ChangeEvent::ToolsListChanged);
        node.announce_local(ChangeEvent::PromptsListChanged);
        let first = ids(&mut readers);
        let heard = first.iter().filter(|g| !g.is_empty()).count();
        assert!(
            (STEP..n / 2).contains(&heard),
            "the first step only, at once: {heard} of {n}"
        );
        assert!(first.iter().all(|g| g.len() <= 1));
        // Both announcements reach everyone, each once, with strictly increasing ids (waited
        // for with a bound far above the rate's ~0.4 s).
        let mut rest = vec![Vec::new(); n];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
            for (r, new) in rest.iter_mut().zip(ids(&mut readers)) {
                r.extend(new);
            }
            if first.iter().zip(&rest).all(|(a, b)| a.len() + b.len() >= 2) {
                break;
            }
        }
        for (a, b) in first.iter().zip(&rest) {
            let all: Vec<&String> = a.iter().chain(b).collect();
            assert_eq!(all.len(), 2, "{all:?}");
            let seqs: Vec<u32> = all
                .iter()
                .map(|id| {
                    id.rsplit('-')
                        .next()
                        .and_then(|x| x.parse().ok())
                        .expect("seq")
                })
                .collect();
            assert!(seqs[0] < seqs[1], "{all:?}");
        }
    }
}
