//! A restarted process learns the notes before its answers count.
//!
//! Claims and drop notes (claim.rs) protect a session because a majority noted them, and any
//! majority that answers an inquiry later shares a member with it. A process that starts into
//! a running cluster holds none of the notes its predecessor at the same address held: were
//! its "I know of nothing newer" to count, a majority made of it and a member that missed the
//! notes (a stalled one, back with a stale copy) would revive what a claim or a drop had made
//! stale, while the members that know are cut off (seed 12322: a replica stalled while its
//! owner dropped it and drained into the third node; the owner restarted; a partition left
//! the stalled replica and the restarted process together, and they took the session over
//! with an acknowledged log level undone).
//!
//! So such a process is *recovering*: it asks every live member for the notes it holds
//! (`NotesRequest`, again every `retransmit` until answered), notes them, and answers
//! inquiries with `voter: false` — what it holds is told, but it does not count toward the
//! inquiry's majority, nor does it count itself in its own inquiries. It has recovered once
//! it has the notes of a majority of the cluster not counting itself, each from a member that
//! was not recovering (a note noted by a majority is then known to one of them: the two
//! groups share a member other than this process's predecessor), or the notes of every other
//! member (nothing anyone still holds is missing — also when the others restarted too).

use std::net::SocketAddr;
use std::time::Instant;

use crate::det::{Map, Set};
use crate::machine::Custody;
use crate::wire::{Claim, CustodyMsg, DropNote};

/// Notes per `Notes` message.
const NOTES_CHUNK: usize = 1_000;

/// One `Notes` message's claims and drops.
type NotesPart = (Vec<(u128, Claim)>, Vec<DropNote>);

/// What a recovering process has learned.
#[derive(Debug, Default)]
pub(crate) struct Recovery {
    /// The last request round sent.
    round: u64,
    /// When to ask again the members that have not answered whole.
    next_request: Option<Instant>,
    /// Per member, the parts of its latest answer received so far: `(round, parts, seen)`.
    parts: Map<SocketAddr, (u64, u32, Set<u32>)>,
    /// Members whose notes arrived whole, and whether they were recovering themselves.
    synced: Map<SocketAddr, bool>,
}

impl Custody {
    /// While recovering: asks the members that have not answered (or answered while
    /// recovering themselves) for their notes, every `retransmit`.
    pub(crate) fn recovery_due(&mut self, now: Instant) {
        if !self.recovering {
            return;
        }
        self.check_recovered();
        if !self.recovering || self.recovery.next_request.is_some_and(|t| now < t) {
            return;
        }
        self.recovery.next_request = Some(now + self.cfg.retransmit);
        self.recovery.round += 1;
        let round = self.recovery.round;
        let me = self.members.me().addr;
        let to: Vec<SocketAddr> = self
            .members
            .live()
            .iter()
            .map(|m| m.addr)
            .filter(|a| *a != me && self.recovery.synced.get(a) != Some(&false))
            .collect();
        for a in to {
            self.send(a, CustodyMsg::NotesRequest { round });
        }
    }

    /// Sends every note held here to a restarted process, in parts.
    pub(crate) fn on_notes_request(&mut self, from: SocketAddr, round: u64) {
        let claims: Vec<(u128, Claim)> = self.notes.iter().map(|(id, (c, _))| (id.0, *c)).collect();
        let drops: Vec<DropNote> = self
            .drops
            .iter()
            .map(|((id, member), (c, below, _))| DropNote {
                session: id.0,
                epoch: c.epoch,
                owner: c.owner,
                below: *below,
                member: *member,
            })
            .collect();
        let mut bodies: Vec<NotesPart> = claims
            .chunks(NOTES_CHUNK)
            .map(|c| (c.to_vec(), Vec::new()))
            .chain(drops.chunks(NOTES_CHUNK).map(|d| (Vec::new(), d.to_vec())))
            .collect();
        if bodies.is_empty() {
            bodies.push((Vec::new(), Vec::new()));
        }
        let parts = u32::try_from(bodies.len()).unwrap_or(u32::MAX);
        let recovering = self.recovering;
        for (part, (claims, drops)) in bodies.into_iter().enumerate() {
            self.send(
                from,
                CustodyMsg::Notes {
                    round,
                    recovering,
                    part: u32::try_from(part).unwrap_or(u32::MAX),
                    parts,
                    claims,
                    drops,
                },
            );
        }
    }

    /// A member's notes (part of them): noted; once its answer is whole, the member counts
    /// toward recovery.
    pub(crate) fn on_notes(
        &mut self,
        from: SocketAddr,
        round: u64,
        recovering: bool,
        (part, parts): (u32, u32),
        claims: Vec<(u128, Claim)>,
        drops: Vec<DropNote>,
    ) {
        self.on_claims(claims);
        self.note_drops(drops);
        if !self.recovering {
            return;
        }
        let entry = self
            .recovery
            .parts
            .entry(from)
            .or_insert((round, parts, Set::default()));
        if round < entry.0 {
            return;
        }
        if round > entry.0 {
            *entry = (round, parts, Set::default());
        }
        entry.2.insert(part);
        if entry.2.len() < entry.1 as usize {
            return;
        }
        self.recovery.parts.remove(&from);
        let was = self.recovery.synced.entry(from).or_insert(recovering);
        *was = *was && recovering;
        self.check_recovered();
    }

    /// Recovered: the notes of a majority of the cluster other than this process, from
    /// members that were not recovering, or of every other member.
    fn check_recovered(&mut self) {
        if !self.recovering {
            return;
        }
        let knowing: Set<SocketAddr> = self
            .recovery
            .synced
            .iter()
            .filter(|(_, rec)| !**rec)
            .map(|(a, _)| *a)
            .collect();
        let all: Set<SocketAddr> = self.recovery.synced.keys().copied().collect();
        if self.members.majority_without_me(&knowing) || self.members.all_others_in(&all) {
            self.recovering = false;
            self.recovery = Recovery::default();
        }
    }

    /// Whether the answers of `voters` decide an inquiry: a majority of them with this node,
    /// or without it while it is recovering.
    pub(crate) fn majority_decides(&self, voters: &Set<SocketAddr>) -> bool {
        if self.recovering {
            self.members.majority_without_me(voters)
        } else {
            self.members.majority_of(voters)
        }
    }

    /// Whether this process is still learning the notes its predecessor held.
    pub fn is_recovering(&self) -> bool {
        self.recovering
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use mcp_cluster::membership::{MemberState, MemberView, NodeId, NodeMeta};

    use super::*;
    use crate::action::Action;
    use crate::config::Config;

    fn node(i: u8) -> NodeId {
        NodeId::new(SocketAddr::from(([10, 0, 0, i], 7000)), 1)
    }

    fn view(me: u8, others: &[u8]) -> Vec<MemberView> {
        std::iter::once(me)
            .chain(others.iter().copied())
            .map(|i| MemberView {
                id: node(i),
                state: MemberState::Alive,
                incarnation: 0,
                meta: Some(NodeMeta {
                    name: format!("n{i}"),
                    address: String::new(),
                    connections: 0,
                    sessions: 0,
                    draining: false,
                }),
            })
            .collect()
    }

    fn sent(c: &mut Custody) -> Vec<(SocketAddr, CustodyMsg)> {
        let mut out = Vec::new();
        while let Some(a) = c.poll_action() {
            if let Action::Send { to, msg } = a {
                out.push((to, msg));
            }
        }
        out
    }

    fn restarted(size: usize) -> (Custody, Instant) {
        let now = Instant::now();
        let cfg = Config {
            has_seeds: true,
            cluster_size: size,
            ..Config::default()
        };
        let mut c = Custody::new(node(1), cfg, 7, now);
        c.set_view(&view(1, &[2, 3, 4]), now);
        (c, now)
    }

    fn notes(c: &mut Custody, from: u8, recovering: bool, claims: Vec<(u128, Claim)>) {
        c.handle_message(
            node(from).addr,
            CustodyMsg::Notes {
                round: 1,
                recovering,
                part: 0,
                parts: 1,
                claims,
                drops: Vec::new(),
            },
            Instant::now(),
        );
    }

    fn answers_as_voter(c: &mut Custody) -> bool {
        c.handle_message(
            node(2).addr,
            CustodyMsg::Inquire {
                id: 1,
                sessions: vec![5],
            },
            Instant::now(),
        );
        sent(c)
            .into_iter()
            .find_map(|(_, m)| match m {
                CustodyMsg::Holdings { voter, .. } => Some(voter),
                _ => None,
            })
            .expect("an answer")
    }

    #[test]
    fn a_restarted_process_asks_for_notes_and_does_not_vote_until_it_has_a_majoritys() {
        let (mut c, now) = restarted(4);
        assert!(c.is_recovering());
        c.handle_timeout(now + Duration::from_millis(50));
        let asked: Set<SocketAddr> = sent(&mut c)
            .into_iter()
            .filter(|(_, m)| matches!(m, CustodyMsg::NotesRequest { .. }))
            .map(|(a, _)| a)
            .collect();
        assert_eq!(asked.len(), 3, "every other live member");
        assert!(!answers_as_voter(&mut c));
        // A claim it learns is noted (and reported to inquirers).
        let claim = Claim {
            epoch: 3,
            owner: node(4).addr,
        };
        notes(&mut c, 2, false, vec![(5, claim)]);
        assert!(c.is_recovering(), "1 of 4 others");
        // A member that is recovering itself does not count toward the majority…
        notes(&mut c, 3, true, Vec::new());
        assert!(c.is_recovering(), "2 of 4, one of them recovering");
        notes(&mut c, 4, false, Vec::new());
        // …but 2 and 4 knowing make 2 of 4 without the lowest address (node 1 itself):
        // still not a majority; node 3's answer while recovering completes "every other".
        assert!(!c.is_recovering(), "every other member answered");
        assert!(answers_as_voter(&mut c));
    }

    #[test]
    fn notes_of_a_majority_of_members_that_know_are_enough() {
        let (mut c, _) = restarted(5);
        let mut v = view(1, &[2, 3, 4, 5]);
        v[4].state = MemberState::Down;
        c.set_view(&v, Instant::now());
        notes(&mut c, 2, false, Vec::new());
        notes(&mut c, 3, false, Vec::new());
        assert!(c.is_recovering(), "2 of 5");
        notes(&mut c, 4, false, Vec::new());
        assert!(!c.is_recovering(), "3 of 5 that were not recovering");
    }

    #[test]
    fn a_process_started_alone_is_not_recovering() {
        let c = Custody::new(node(1), Config::default(), 7, Instant::now());
        assert!(!c.is_recovering());
    }
}
