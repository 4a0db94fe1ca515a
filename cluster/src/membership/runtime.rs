//! The sans-IO side of foca's `Runtime`: timers, outgoing packets and events
//! are queued here and drained by the caller.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use foca::{Notification, Timer};

use super::NodeId;
use super::observe::{Observation, Observer};

/// A gossip packet to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Destination member (its `addr` is where the packet goes).
    pub to: NodeId,
    /// The encoded packet; at most `Config::max_packet_size` bytes.
    pub data: Bytes,
}

/// A change in the membership, for the layers above (ownership, replication).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A member became active (alive or suspect).
    Up(NodeId),
    /// A member was declared down (or left).
    Down(NodeId),
    /// A member came back under a newer identity (restart or rejoin).
    Renamed {
        /// The identity it had.
        old: NodeId,
        /// The identity it has now.
        new: NodeId,
    },
    /// This node was declared down and rejoined under a new generation.
    Rejoined(NodeId),
    /// This node is known by at least one active member.
    Active,
    /// Every other member is down or gone.
    Idle,
    /// This node was declared down and could not renew its identity.
    Defunct,
}

/// Queues filled by foca through the `Runtime` trait.
#[derive(Debug)]
pub(crate) struct Queues {
    pub(crate) now: Instant,
    seq: u64,
    timers: BTreeMap<(Instant, u64), Timer<NodeId>>,
    pub(crate) outbox: VecDeque<Transmit>,
    pub(crate) events: VecDeque<Event>,
    pub(crate) observer: Observer,
    /// `1 + local health score`: foca's probe timers and suspicion timers are stretched by
    /// it here (foca cannot change `probe_period`/`probe_rtt` at run time).
    pub(crate) multiplier: u32,
    /// When each pending suspicion (member, incarnation) started, for deferred verdicts.
    pub(crate) suspected_since: HashMap<(NodeId, u16), Instant>,
}

/// Suspicions remembered at most (one per member in practice); past it the map is cleared,
/// which only makes verdicts count from their timer's start again.
const MAX_SUSPICIONS: usize = 1024;

impl Queues {
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            now,
            seq: 0,
            timers: BTreeMap::new(),
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            observer: Observer::default(),
            multiplier: 1,
            suspected_since: HashMap::new(),
        }
    }

    /// Puts a timer back to fire `after` from now (a deferred verdict), without counting it
    /// as a new suspicion.
    pub(crate) fn defer(&mut self, event: Timer<NodeId>, after: Duration) {
        self.seq += 1;
        self.timers.insert((self.now + after, self.seq), event);
    }

    /// When the earliest timer that is not parked is due. `parked` says which timers would
    /// do nothing if they fired now (see [`Queues::roll_parked`]).
    pub(crate) fn next_deadline(&self, parked: impl Fn(&Timer<NodeId>) -> bool) -> Option<Instant> {
        self.timers
            .iter()
            .find(|(_, t)| !parked(t))
            .map(|((at, _), _)| *at)
    }

    /// Removes and returns the earliest timer due at or before `now` (parked or not), with
    /// the instant it was due.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Instant, Timer<NodeId>)> {
        let first = *self.timers.keys().next()?;
        if first.0 > now {
            return None;
        }
        self.timers.remove(&first).map(|t| (first.0, t))
    }

    /// Puts back a parked timer that was due at `due`, at the first instant of its period
    /// after `now`: where foca would have re-armed it had it fired (and done nothing) at
    /// each of its periods.
    pub(crate) fn rearm_parked(
        &mut self,
        timer: Timer<NodeId>,
        due: Instant,
        period: Duration,
        now: Instant,
    ) {
        let periods = now.saturating_duration_since(due).as_nanos() / period.as_nanos().max(1) + 1;
        let next = u64::try_from(period.as_nanos().saturating_mul(periods))
            .ok()
            .and_then(|ahead| due.checked_add(Duration::from_nanos(ahead)))
            .unwrap_or(now + period);
        self.seq += 1;
        self.timers.insert((next, self.seq), timer);
    }

    /// Re-arms (as [`Queues::rearm_parked`]) every parked timer due before `now` (one due
    /// at `now` fires after the packets of `now`, as the driver and the simulator order
    /// them). `period` is `Some` for a parked timer. A parked timer wakes nobody; when it
    /// stops being parked it fires in its own phase.
    pub(crate) fn roll_parked(
        &mut self,
        now: Instant,
        period: impl Fn(&Timer<NodeId>) -> Option<Duration>,
    ) {
        let due: Vec<((Instant, u64), Duration)> = self
            .timers
            .iter()
            .take_while(|((at, _), _)| *at < now)
            .filter_map(|(k, t)| period(t).map(|p| (*k, p)))
            .collect();
        for (key, p) in due {
            if let Some(timer) = self.timers.remove(&key) {
                self.rearm_parked(timer, key.0, p, now);
            }
        }
    }

    pub(crate) fn pending_timers(&self) -> usize {
        self.timers.len()
    }
}

impl foca::Runtime<NodeId> for Queues {
    fn notify(&mut self, notification: Notification<'_, NodeId>) {
        let event = match notification {
            Notification::MemberUp(id) => Event::Up(*id),
            Notification::MemberDown(id) => Event::Down(*id),
            Notification::Rename(old, new) => Event::Renamed {
                old: *old,
                new: *new,
            },
            Notification::Rejoin(id) => Event::Rejoined(*id),
            Notification::Active => Event::Active,
            Notification::Idle => Event::Idle,
            Notification::Defunct => Event::Defunct,
        };
        self.events.push_back(event);
    }

    fn send_to(&mut self, to: NodeId, data: &[u8]) {
        self.observer.sent(data, self.now);
        self.outbox.push_back(Transmit {
            to,
            data: Bytes::copy_from_slice(data),
        });
    }

    fn submit_after(&mut self, event: Timer<NodeId>, after: Duration) {
        let after = match &event {
            Timer::ProbeRandomMember(_) | Timer::SendIndirectProbe { .. } => {
                after.saturating_mul(self.multiplier)
            }
            Timer::ChangeSuspectToDown {
                member_id,
                incarnation,
                ..
            } => {
                // foca arms this timer only when this node's own probe failed.
                self.observer.push(Observation::Suspected(*member_id));
                if self.suspected_since.len() >= MAX_SUSPICIONS {
                    self.suspected_since.clear();
                }
                self.suspected_since
                    .entry((*member_id, *incarnation))
                    .or_insert(self.now);
                after.saturating_mul(self.multiplier)
            }
            _ => after,
        };
        self.defer(event, after);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parked_timers_wake_nobody_and_keep_their_phase() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut q = Queues::new(t0);
        q.defer(Timer::PeriodicGossip(0), ms(50));
        q.defer(Timer::ProbeRandomMember(0), ms(150));
        let gossip = |t: &Timer<NodeId>| matches!(t, Timer::PeriodicGossip(_)).then_some(ms(50));
        assert_eq!(q.next_deadline(|_| false), Some(t0 + ms(50)));
        assert_eq!(q.next_deadline(|t| gossip(t).is_some()), Some(t0 + ms(150)));

        // Due at 50, rolled at 170: it would have fired (for nothing) at 50, 100 and 150.
        q.roll_parked(t0 + ms(170), gossip);
        assert_eq!(q.next_deadline(|_| false), Some(t0 + ms(150)));
        let (due, t) = q.pop_due(t0 + ms(170)).expect("the probe");
        assert_eq!((due, t), (t0 + ms(150), Timer::ProbeRandomMember(0)));
        assert_eq!(q.next_deadline(|_| false), Some(t0 + ms(200)));

        // One due exactly now is left for the timers (packets of `now` come first).
        q.roll_parked(t0 + ms(200), gossip);
        assert_eq!(q.next_deadline(|_| false), Some(t0 + ms(200)));
        let (due, t) = q.pop_due(t0 + ms(230)).expect("the gossip");
        q.rearm_parked(t, due, ms(50), t0 + ms(230));
        assert_eq!(q.next_deadline(|_| false), Some(t0 + ms(250)));
        assert_eq!(q.pending_timers(), 1);
    }
}
