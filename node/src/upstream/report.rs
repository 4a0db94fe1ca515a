//! [`Report`]: one upstream as this node sees it, for the admin API's `/cluster` (the operator
//! aggregates the nodes' reports into `McpCluster.status.upstreams`).

use serde::Serialize;

use super::breaker::State;
use super::served::Upstream;

/// Longest `lastError` reported (an HTTP error's body can be long).
const MAX_ERROR: usize = 300;

/// One upstream's health on this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Its configured name.
    pub name: String,
    /// Its circuit breaker: `up`, `probing` (half-open) or `down` (requests refused unsent).
    pub state: &'static str,
    /// Whether the last exchange that told (a client's request, a list fetch, a health
    /// check) got an answer; `null` before any.
    pub reachable: Option<bool>,
    /// Its tools as last listed.
    pub tools: usize,
    /// The era it is spoken to in (`legacy`, `2026-07-28`; `null` while `auto` has not
    /// detected it).
    pub era: Option<&'static str>,
    /// Why the last failed exchange failed, while the upstream is not reachable.
    pub last_error: Option<String>,
}

impl Report {
    /// The report of `u` now.
    pub fn of(u: &Upstream) -> Self {
        let client = u.client();
        let gate = client.gate();
        let state = match gate.state() {
            State::Closed => "up",
            State::HalfOpen => "probing",
            State::Open => "down",
        };
        let last = gate.last_outcome();
        Self {
            name: u.name().to_owned(),
            state,
            reachable: last.as_ref().map(Result::is_ok),
            tools: u.tools().len(),
            era: client.era(),
            last_error: last.and_then(Result::err).map(|mut e| {
                if e.len() > MAX_ERROR {
                    let mut end = MAX_ERROR;
                    while !e.is_char_boundary(end) {
                        end -= 1;
                    }
                    e.truncate(end);
                    e.push('…');
                }
                e
            }),
        }
    }
}
