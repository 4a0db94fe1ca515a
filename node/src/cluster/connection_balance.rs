//! Client connections spread back out after churn. A Service spreads new connections evenly,
//! but a restarted node gets only its share of the *reopened* ones: at 100K, after a kill and
//! a rolling restart, the restarted nodes held 1,000-5,000 connections while the others held
//! ~19,400 of their 19,744 cap, so the next drain pushed them into it. A node well above the
//! mean of its live, non-draining members (their counts are gossiped, `NodeMeta.connections`)
//! ends some of the streams its clients hold here, a few per second; those clients resume on
//! whichever node the Service picks, with `Last-Event-ID`, as after a drain.
//!
//! The decision is [`Shedder::decide`], pure; `mod.rs`'s `balance_connections` drives it once
//! a second and ends the streams (the relayed ones first: they cost this node nothing to
//! resume elsewhere).
//!
//! Paced by what the cluster absorbs (issue 11; docs/PROTOCOL.md, "Connections spread out
//! after churn"): [`SHED_PER_SEC`] is the whole cluster's, split over the nodes that shed (at
//! 100K four nodes shedding 250 a second each beside rebalancing ended ~2,000 streams a
//! second, which cost 6,022 sessions), and a node sheds nothing while it is busy (its
//! admission control refuses).

/// Start shedding above this multiple of the mean (plus [`SLACK`]).
pub const SHED_ABOVE: f64 = 1.20;
/// Shed down to this multiple of the mean (plus [`SLACK`]): the gap to [`SHED_ABOVE`] keeps a
/// node near the bound from shedding on and off.
pub const SHED_TO: f64 = 1.10;
/// Connections a node may hold above the bounds before it sheds (small clusters, small
/// counts: a few hundred connections apart is not worth a reconnect).
pub const SLACK: u64 = 500;
/// At most this many streams ended per second by the whole cluster: each node that sheds ends
/// its part (this over the number of members above [`SHED_ABOVE`] × mean + [`SLACK`], itself
/// included), at least one.
pub const SHED_PER_SEC: usize = 250;

/// Whether a node sheds, with memory of whether it was shedding (hysteresis).
#[derive(Debug, Default, Clone)]
pub struct Shedder {
    shedding: bool,
}

impl Shedder {
    /// How many streams to end now, given this node's connection count and those of the other
    /// live, non-draining members (a draining node or one with fewer than two others sheds
    /// nothing: the caller passes no peers then), and whether this node is busy (its
    /// admission control refuses: it keeps its hysteresis state and ends nothing meanwhile).
    pub fn decide(&mut self, mine: u64, others: &[u64], busy: bool) -> usize {
        if others.len() < 2 {
            self.shedding = false;
            return 0;
        }
        let total: u64 = others.iter().fold(mine, |sum, c| sum.saturating_add(*c));
        let mean = total as f64 / (others.len() + 1) as f64;
        let above = mean * SHED_ABOVE + SLACK as f64;
        let to = mean * SHED_TO + SLACK as f64;
        let mine_f = mine as f64;
        if !self.shedding && mine_f > above {
            self.shedding = true;
        }
        if self.shedding && mine_f <= to {
            self.shedding = false;
        }
        if !self.shedding || busy {
            return 0;
        }
        // The nodes shedding now (this one and the others above the start bound) share the
        // cluster's rate. A node that keeps shedding below the start bound (hysteresis)
        // counts itself only.
        let shedders = 1 + others.iter().filter(|c| **c as f64 > above).count();
        let excess = (mine_f - to).ceil();
        (excess as usize).min((SHED_PER_SEC / shedders).max(1))
    }

    /// Whether the last decision was to shed.
    pub fn shedding(&self) -> bool {
        self.shedding
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_even_cluster_sheds_nothing() {
        let mut s = Shedder::default();
        assert_eq!(
            s.decide(14_300, &[14_200, 14_400, 14_350, 14_100], false),
            0
        );
        // Within 20 % + 500 of the mean: still nothing.
        assert_eq!(s.decide(17_000, &[14_000, 14_000, 14_000], false), 0);
    }

    #[test]
    fn a_node_far_above_the_mean_sheds_at_the_rate_down_to_ten_percent_above() {
        let mut s = Shedder::default();
        // After a restart: one node near empty, the others near the cap.
        let others = [1_000, 19_400, 19_400, 19_400, 19_400, 19_400];
        // mean = 16,800; starts above 20,660: 19,400 is below that, nothing yet.
        assert_eq!(s.decide(19_400, &others, false), 0);
        let others = [0, 0, 19_400, 19_400, 19_400, 19_400];
        // mean ≈ 13,857: above 17,128, sheds toward 15,743; five nodes are above the start
        // bound, so each ends a fifth of the cluster's SHED_PER_SEC.
        assert_eq!(s.decide(19_400, &others, false), SHED_PER_SEC / 5);
        assert!(s.shedding());
        // Hysteresis: below the start bound but above the target, it keeps shedding.
        let others = [2_000, 2_000, 16_500, 16_500, 16_500, 16_500];
        let n = s.decide(16_500, &others, false);
        assert!(n > 0 && n <= SHED_PER_SEC, "{n}");
        // At the target it stops.
        let others = [10_000, 10_000, 10_000, 10_000, 10_000, 10_000];
        assert_eq!(s.decide(11_000, &others, false), 0);
        assert!(!s.shedding());
    }

    #[test]
    fn the_last_stretch_sheds_only_the_excess() {
        let mut s = Shedder::default();
        let others = [10_000, 10_000, 10_000];
        // 14,000 here, mean 11,000: above the start bound 13,700; target 12,600.
        assert_eq!(s.decide(14_000, &others, false), SHED_PER_SEC);
        // 12,300 here, mean 10,575: target 12,132.5, so only the 168 above it.
        assert_eq!(s.decide(12_300, &others, false), 168);
    }

    #[test]
    fn a_busy_node_waits() {
        let mut s = Shedder::default();
        let others = [10_000, 10_000, 10_000];
        // Above the start bound, but busy: nothing ends, and it sheds once it is not.
        assert_eq!(s.decide(14_000, &others, true), 0);
        assert_eq!(s.decide(14_000, &others, false), SHED_PER_SEC);
        // Waiting keeps the hysteresis: between the bounds it sheds on once it may.
        assert_eq!(s.decide(12_300, &others, true), 0);
        assert!(s.shedding());
        assert_eq!(s.decide(12_300, &others, false), 168);
    }

    #[test]
    fn the_rate_is_the_clusters_split_over_the_nodes_that_shed() {
        // After the rolling restart at 100K (run B of stop 22): four nodes at the cap of
        // 19,744, each ending 250 a second, 1,000 in all.
        let mut s = Shedder::default();
        let others = [19_744, 19_744, 19_744, 15_696, 8_106, 1_041];
        assert_eq!(s.decide(19_744, &others, false), SHED_PER_SEC / 4);
        // Many shedders: at least one each.
        let mut s = Shedder::default();
        let mut others = vec![100_000u64; 300];
        others.extend([0u64; 300]);
        assert_eq!(s.decide(100_000, &others, false), 1);
    }

    #[test]
    fn two_nodes_or_fewer_never_shed() {
        let mut s = Shedder::default();
        assert_eq!(s.decide(19_000, &[0], false), 0);
        assert_eq!(s.decide(19_000, &[], false), 0);
    }
}
