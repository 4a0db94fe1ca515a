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
//! it has the notes of at least half of the cluster not counting itself, each from a member
//! that was not recovering (a note is in force once more than half of the cluster noted it —
//! no tie broken by the lowest address, members.rs — so the two groups share a member other
//! than this process's predecessor), or the notes of every other member (nothing anyone still
//! holds is missing — also when the others restarted too). When notes held by exactly half
//! with the lowest address counted, a restarted lowest-address process needed every other
//! member's notes: one member down then stopped every take-over in the cluster, and a drain
//! meanwhile took the newest copy of a dead owner's session away (seed 14202013).

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
            .flat_map(|((id, member), n)| {
                let note = |below, forced| DropNote {
                    session: id.0,
                    epoch: n.claim.epoch,
                    owner: n.claim.owner,
                    below,
                    member: *member,
                    forced,
                };
                // What is in force, and a raised note not in force yet beside it.
                let forced = (n.forced_below > 0).then(|| note(n.forced_below, true));
                let noted = (n.below > n.forced_below).then(|| note(n.below, false));
                forced.into_iter().chain(noted)
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

    /// Recovered: the notes of at least half of the cluster other than this process, from
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
        if self.members.half_without_me(&knowing) || self.members.all_others_in(&all) {
            self.recovering = false;
            self.recovery = Recovery::default();
        }
    }

    /// Whether the answers of `voters` decide an inquiry: more than half of the cluster with
    /// this node, or without it while it is recovering. No tie is broken by the lowest address:
    /// a confirmation is how a claim is noted, and the notes in force are those more than half
    /// of the cluster noted (members.rs, `strict_majority_of`).
    pub(crate) fn majority_decides(&self, voters: &Set<SocketAddr>) -> bool {
        if self.recovering {
            self.members.strict_majority_without_me(voters)
        } else {
            self.members.strict_majority_of(voters)
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
        // …but 2 and 4 knowing are half of the 4 without node 1 itself: every note in force
        // was noted by more than half, 2 of the 3 others, and one of them is 2 or 4.
        assert!(!c.is_recovering(), "2 of 4 that were not recovering");
        assert!(answers_as_voter(&mut c));
    }

    #[test]
    fn the_lowest_address_recovers_with_a_member_down() {
        // Seed 14202013: node 1 (the lowest address) restarted while node 4 was down. With
        // notes noted by exactly half including the lowest address, its predecessor and
        // node 4 alone might have held one, so it needed node 4's notes: every take-over
        // waited for node 4, and a drain meanwhile took the newest copy of a session away.
        let (mut c, now) = restarted(4);
        let mut v = view(1, &[2, 3, 4]);
        v[3].state = MemberState::Down;
        c.set_view(&v, now);
        notes(&mut c, 2, false, Vec::new());
        assert!(c.is_recovering(), "1 of 4");
        notes(&mut c, 3, false, Vec::new());
        assert!(!c.is_recovering(), "2 of 4: node 4's notes are not needed");
    }

    #[test]
    fn only_a_drop_in_force_tells_the_dropped_member_its_copy_is_stale() {
        // Node 1 (not recovering) notes node 4's drop from session 5 by node 2, below 9.
        let now = Instant::now();
        let mut c = Custody::new(node(1), Config::default(), 7, now);
        c.set_view(&view(1, &[2, 3, 4]), now);
        let drop = |below, forced| DropNote {
            session: 5,
            epoch: 0,
            owner: node(2).addr,
            below,
            member: node(4).addr,
            forced,
        };
        let told = |c: &mut Custody, from: u8| {
            c.handle_message(
                node(from).addr,
                CustodyMsg::Inquire {
                    id: 1,
                    sessions: vec![5],
                },
                now,
            );
            sent(c)
                .into_iter()
                .find_map(|(_, m)| match m {
                    CustodyMsg::Holdings { entries, .. } => {
                        entries.first().map(|h| (h.role, h.seq))
                    }
                    _ => None,
                })
                .expect("an answer")
        };
        let noted = |c: &mut Custody, note: DropNote| {
            c.handle_message(node(2).addr, CustodyMsg::Dropped(vec![note]), now);
            sent(c)
                .into_iter()
                .find_map(|(_, m)| match m {
                    CustodyMsg::DropsNoted(e) => Some(e),
                    _ => None,
                })
                .expect("noted")
        };
        // The first round: noted (and said so, as such), but whether it came into force is
        // not known here — the owner may have died short of it, having shown nothing the
        // copy lacks (seed 1639) — so the dropped member hears no copy number to fall short of.
        assert_eq!(
            noted(&mut c, drop(9, false)),
            vec![(5, node(4).addr, 9, false)]
        );
        assert_eq!(told(&mut c, 4), (4, 0));
        // The second round: in force.
        assert_eq!(
            noted(&mut c, drop(9, true)),
            vec![(5, node(4).addr, 9, true)]
        );
        assert_eq!(told(&mut c, 4), (4, 9));
        // A raised note not in force yet leaves the one in force as it was.
        noted(&mut c, drop(12, false));
        assert_eq!(told(&mut c, 4), (4, 9));
        // Another member is told nothing of it.
        assert_eq!(told(&mut c, 3).0, 0);
        // A restarted process learns both, each as it stands.
        c.handle_message(node(3).addr, CustodyMsg::NotesRequest { round: 1 }, now);
        let drops: Vec<(u64, bool)> = sent(&mut c)
            .into_iter()
            .flat_map(|(_, m)| match m {
                CustodyMsg::Notes { drops, .. } => drops,
                _ => Vec::new(),
            })
            .map(|d| (d.below, d.forced))
            .collect();
        assert_eq!(drops, vec![(9, true), (12, false)]);
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
