//! Upstream MCP servers as the cluster reaches them: the nodes' own reports (`/cluster`'s
//! `upstreams`, each node's view of its own sessions with them) aggregated into
//! `status.upstreams`, the `UpstreamsReady` condition, and the Events when one becomes
//! unreachable or reachable again. Pure: reports in, status, condition and events out.

use mcpcluster_api::UpstreamStatus;
use mcpcluster_api::mcpcluster::condition::{UPSTREAMS_READY, reason};

use crate::conditions::Report;
use crate::nodes::ClusterView;

/// What the nodes that answered said about their upstreams.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reports {
    /// Nodes that answered `/cluster`.
    pub answered: usize,
    /// Each answering node's name and its rows.
    pub rows: Vec<(String, Vec<crate::nodes::UpstreamRow>)>,
}

impl Reports {
    /// The upstream rows of the views that answered.
    pub fn of(views: &[ClusterView]) -> Self {
        Self {
            answered: views.len(),
            rows: views
                .iter()
                .map(|v| (v.self_.clone(), v.upstreams.clone()))
                .collect(),
        }
    }
}

/// One status entry per configured upstream (`configured`: the names, in order): how many
/// answering nodes report an exchange with it and how many reach it (their last exchange answered, their breaker not
/// holding it down), its tool count (the largest reported by a node that reaches it, else by
/// any), its era, and the first unreachable node's error.
pub fn aggregate(configured: &[&str], reports: &Reports) -> Vec<UpstreamStatus> {
    configured
        .iter()
        .map(|name| {
            let mut s = UpstreamStatus {
                name: (*name).to_owned(),
                ..Default::default()
            };
            let mut any_tools = 0;
            for (node, rows) in &reports.rows {
                // A node that has not finished an exchange with it yet (just started) says
                // nothing either way.
                let Some(row) = rows
                    .iter()
                    .find(|r| r.name == *name && r.reachable.is_some())
                else {
                    continue;
                };
                s.nodes += 1;
                any_tools = any_tools.max(row.tools);
                let reaches = row.reachable == Some(true) && row.state != "down";
                if reaches {
                    s.reachable_nodes += 1;
                    s.tools = s.tools.max(row.tools);
                    if s.era.is_none() {
                        s.era = row.era.clone();
                    }
                } else if s.last_error.is_none() {
                    let why = match &row.last_error {
                        Some(e) => e.clone(),
                        None => format!("circuit breaker {}", row.state),
                    };
                    s.last_error = Some(format!("{node}: {why}"));
                }
            }
            if s.reachable_nodes == 0 {
                s.tools = any_tools;
            }
            s
        })
        .collect()
}

/// The `UpstreamsReady` condition: true when every upstream is reached by every node that
/// answered; the message names the others. `None` without upstreams.
pub fn condition(statuses: &[UpstreamStatus], answered: usize) -> Option<Report> {
    if statuses.is_empty() {
        return None;
    }
    if answered == 0 {
        return Some(Report::new(
            UPSTREAMS_READY,
            false,
            reason::NO_NODE_ANSWERED,
            "no node answered the operator: upstream reachability unknown",
        ));
    }
    let failing: Vec<String> = statuses
        .iter()
        .filter(|s| !s.ready())
        .map(describe)
        .collect();
    Some(if failing.is_empty() {
        Report::new(
            UPSTREAMS_READY,
            true,
            reason::UPSTREAMS_REACHABLE,
            format!(
                "{} upstream{} reachable from every node",
                statuses.len(),
                if statuses.len() == 1 { "" } else { "s" }
            ),
        )
    } else {
        Report::new(
            UPSTREAMS_READY,
            false,
            reason::UPSTREAM_UNREACHABLE,
            failing.join("; "),
        )
    })
}

/// `` `fs` reachable from 1 of 2 nodes (demo-1: unreachable: ...) ``.
fn describe(s: &UpstreamStatus) -> String {
    if s.nodes == 0 {
        return format!(
            "`{}` reported by no node (not configured or not tried on them yet)",
            s.name
        );
    }
    let mut m = format!(
        "`{}` reachable from {} of {} nodes",
        s.name, s.reachable_nodes, s.nodes
    );
    if let Some(e) = &s.last_error {
        m.push_str(&format!(" ({e})"));
    }
    m
}

/// An Event to emit: whether it is a Warning, its reason, its message.
pub type Event = (bool, &'static str, String);

/// The Events for upstreams whose readiness changed from `old` (the status as it was) to
/// `new`: a Warning when one is not ready (first seen so, or no longer ready), a Normal event
/// when one that was not ready is again. Nothing for one first seen ready, or unchanged, nor
/// while no node reports it (a rollout bringing the config to the nodes says nothing about
/// the upstream): such an entry counts as not seen.
pub fn events(old: &[UpstreamStatus], new: &[UpstreamStatus]) -> Vec<Event> {
    new.iter()
        .filter(|n| n.nodes > 0)
        .filter_map(|n| {
            let was = old
                .iter()
                .find(|o| o.name == n.name && o.nodes > 0)
                .map(UpstreamStatus::ready);
            match (was, n.ready()) {
                (Some(true) | None, false) => {
                    Some((true, reason::UPSTREAM_UNREACHABLE, describe(n)))
                }
                (Some(false), true) => Some((
                    false,
                    "UpstreamReachable",
                    format!(
                        "`{}` reachable again from all {} nodes ({} tools)",
                        n.name, n.nodes, n.tools
                    ),
                )),
                _ => None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nodes::UpstreamRow;

    fn row(
        name: &str,
        state: &str,
        reachable: Option<bool>,
        tools: i64,
        err: Option<&str>,
    ) -> UpstreamRow {
        UpstreamRow {
            name: name.into(),
            state: state.into(),
            reachable,
            tools,
            era: reachable.filter(|r| *r).map(|_| "legacy".to_owned()),
            last_error: err.map(str::to_owned),
        }
    }

    fn reports(nodes: Vec<(&str, Vec<UpstreamRow>)>) -> Reports {
        Reports {
            answered: nodes.len(),
            rows: nodes.into_iter().map(|(n, r)| (n.to_owned(), r)).collect(),
        }
    }

    #[test]
    fn counts_nodes_that_reach_each_upstream() {
        let r = reports(vec![
            (
                "demo-0",
                vec![
                    row("fs", "up", Some(true), 3, None),
                    row(
                        "web",
                        "down",
                        Some(false),
                        0,
                        Some("unreachable: connection refused"),
                    ),
                ],
            ),
            (
                "demo-1",
                vec![
                    row("fs", "up", Some(true), 4, None),
                    row("web", "up", Some(true), 2, None),
                ],
            ),
        ]);
        let s = aggregate(&["fs", "web", "new"], &r);
        assert_eq!(
            s[0],
            UpstreamStatus {
                name: "fs".into(),
                nodes: 2,
                reachable_nodes: 2,
                tools: 4,
                era: Some("legacy".into()),
                last_error: None,
            }
        );
        assert!(s[0].ready());
        assert_eq!((s[1].nodes, s[1].reachable_nodes, s[1].tools), (2, 1, 2));
        assert_eq!(
            s[1].last_error.as_deref(),
            Some("demo-0: unreachable: connection refused")
        );
        assert_eq!((s[2].nodes, s[2].reachable_nodes), (0, 0));
        assert!(!s[1].ready() && !s[2].ready());

        let c = condition(&s, 2).expect("reported");
        assert!(!c.status);
        assert_eq!(c.reason, reason::UPSTREAM_UNREACHABLE);
        assert_eq!(
            c.message,
            "`web` reachable from 1 of 2 nodes (demo-0: unreachable: connection refused); `new` reported by no node (not configured or not tried on them yet)"
        );
        let c = condition(&s[..1], 2).expect("reported");
        assert!(c.status);
        assert_eq!(c.reason, reason::UPSTREAMS_REACHABLE);
        assert_eq!(c.message, "1 upstream reachable from every node");
        assert_eq!(condition(&[], 2), None, "no upstreams, no condition");
        assert_eq!(
            condition(&s, 0).expect("unknown").reason,
            reason::NO_NODE_ANSWERED
        );
    }

    #[test]
    fn a_breaker_holding_it_down_or_no_contact_is_not_reaching_it() {
        let r = reports(vec![
            // Answered last, but marked down since (its probe time not come): not reaching it.
            ("a", vec![row("fs", "down", Some(true), 1, None)]),
            ("b", vec![row("fs", "up", None, 0, None)]),
        ]);
        let s = aggregate(&["fs"], &r);
        // b has not finished an exchange yet: not counted either way.
        assert_eq!((s[0].nodes, s[0].reachable_nodes, s[0].tools), (1, 0, 1));
        assert_eq!(s[0].last_error.as_deref(), Some("a: circuit breaker down"));
        let r = reports(vec![("b", vec![row("fs", "up", None, 0, None)])]);
        assert_eq!(aggregate(&["fs"], &r)[0].nodes, 0);
        let probing = reports(vec![("a", vec![row("fs", "probing", Some(true), 2, None)])]);
        assert!(
            aggregate(&["fs"], &probing)[0].ready(),
            "a probe in flight after an answer"
        );
    }

    #[test]
    fn events_on_changes_only() {
        let up = |name: &str| UpstreamStatus {
            name: name.into(),
            nodes: 2,
            reachable_nodes: 2,
            tools: 3,
            ..Default::default()
        };
        let down = |name: &str| UpstreamStatus {
            name: name.into(),
            nodes: 2,
            reachable_nodes: 0,
            last_error: Some("demo-0: unreachable: connection refused".into()),
            ..Default::default()
        };
        assert_eq!(
            events(&[], &[up("fs")]),
            vec![],
            "first seen ready: nothing"
        );
        assert_eq!(events(&[up("fs")], &[up("fs")]), vec![]);
        assert_eq!(events(&[down("fs")], &[down("fs")]), vec![]);
        let e = events(&[up("fs")], &[down("fs")]);
        assert_eq!(
            e,
            vec![(
                true,
                reason::UPSTREAM_UNREACHABLE,
                "`fs` reachable from 0 of 2 nodes (demo-0: unreachable: connection refused)"
                    .to_owned()
            )]
        );
        assert_eq!(
            events(&[], &[down("fs")]).len(),
            1,
            "first seen unreachable: warned"
        );
        let unreported = UpstreamStatus {
            name: "fs".into(),
            ..Default::default()
        };
        assert_eq!(
            events(&[], std::slice::from_ref(&unreported)),
            vec![],
            "no node reports it yet"
        );
        assert_eq!(
            events(&[unreported], &[up("fs")]),
            vec![],
            "reported ready after a rollout: first seen"
        );
        let e = events(&[down("fs")], &[up("fs")]);
        assert_eq!(
            e,
            vec![(
                false,
                "UpstreamReachable",
                "`fs` reachable again from all 2 nodes (3 tools)".to_owned()
            )]
        );
    }
}
