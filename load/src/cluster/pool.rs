//! The shared call pool of each node: a queue of exchanges (`initialize`, paced calls, their
//! retries, announcements, final-check calls) served by keep-alive connections, so calls for
//! any session go over the connections of the node they are sent to.
//!
//! The pool starts with `pool` connections and opens another (up to [`POOL_MAX`]) whenever an
//! exchange is queued while every connection is busy — as an HTTP client's pool does — so a
//! node that answers slowly cannot hold the calls queued behind it; the extra connections
//! close after [`EXTRA_IDLE`] without work. A node that refuses connections is marked down:
//! its queue moves to the other nodes and nothing is sent to it until a probe connects again
//! (no call is spent finding out).
//!
//! An exchange that fails is retried on the next node after a jittered backoff (at least the
//! `Retry-After` the node asked for, at most 1 s of it), with the same session, until it
//! succeeds, the node answers 404 (the session is lost), or the session's deadline passes.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::session::{Sess, State};
use super::shard::Shard;
use super::wire::{self, Answer, Conn, Endpoint, Fail};

/// Most call connections per node per process.
pub const POOL_MAX: u32 = 256;
/// An extra connection (beyond `pool`) closes after this long without work.
pub const EXTRA_IDLE: Duration = Duration::from_secs(60);
/// A down node is probed (a TCP connect) this often.
const PROBE_EVERY: Duration = Duration::from_millis(250);

/// One node's queue and state, shared by its pool connections.
#[derive(Debug)]
pub struct NodeQ {
    /// Where it is.
    pub ep: Endpoint,
    queue: RefCell<VecDeque<Job>>,
    ready: Notify,
    /// Connection tasks.
    conns: Cell<u32>,
    /// Of which running an exchange.
    busy: Cell<u32>,
    /// Refused connections; a probe runs until it accepts one.
    down: Cell<bool>,
}

impl NodeQ {
    /// A node with an empty queue.
    pub fn new(ep: Endpoint) -> Self {
        Self {
            ep,
            queue: RefCell::new(VecDeque::new()),
            ready: Notify::new(),
            conns: Cell::new(0),
            busy: Cell::new(0),
            down: Cell::new(false),
        }
    }

    /// Marked down (connections refused).
    pub fn is_down(&self) -> bool {
        self.down.get()
    }

    /// Exchanges waiting.
    pub fn queued(&self) -> usize {
        self.queue.borrow().len()
    }

    /// Pool connections open (or opening).
    pub fn connections(&self) -> u32 {
        self.conns.get()
    }

    /// Starts one more pool connection (task) of this node, `node`.
    pub fn open_connection(&self, shard: &Rc<Shard>, node: usize) {
        let k = self.conns.get() as usize;
        self.conns.set(self.conns.get() + 1);
        tokio::task::spawn_local(connection(shard.clone(), node, k));
    }

    /// Wakes every connection (the run is over).
    pub fn wake_all(&self) {
        self.ready.notify_waiters();
    }
}

/// What an exchange is for.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// `initialize` + `notifications/initialized`.
    Open,
    /// A paced `tools/call` (`timed`: its latency counts) or a final-check call.
    Call {
        /// When it was due.
        due: Instant,
        /// A paced call (latency recorded), not a final-check call.
        timed: bool,
    },
    /// `test_trigger_tool_change` (no retry).
    Announce,
}

/// One exchange to run, with its retry state.
#[derive(Debug)]
pub struct Job {
    /// The session.
    pub sess: Rc<Sess>,
    /// What for.
    pub kind: Kind,
    /// Node it is queued on.
    pub node: usize,
    /// Failed attempts so far.
    pub failures: u32,
    /// First attempt (ms since the start): the session's deadline counts from here.
    pub first_ms: u64,
    /// The last failure, `KIND@NODE`.
    pub last_error: String,
}

impl Shard {
    /// Queues `job` on its node (or the next one up); opens another connection to it when
    /// every one is busy.
    pub fn enqueue(self: &Rc<Self>, mut job: Job) {
        job.node = self.pick_node(job.node);
        let node = job.node;
        let n = &self.nodes[node];
        n.queue.borrow_mut().push_back(job);
        if n.busy.get() >= n.conns.get() && n.conns.get() < POOL_MAX {
            n.open_connection(self, node);
        } else {
            n.ready.notify_one();
        }
    }

    /// `preferred`, or the next node not marked down (any, if all are).
    pub fn pick_node(&self, preferred: usize) -> usize {
        let len = self.nodes.len();
        (0..len)
            .map(|k| (preferred + k) % len)
            .find(|&i| !self.nodes[i].is_down())
            .unwrap_or(preferred % len)
    }

    /// `node` refused a connection: mark it down, move its queue to the other nodes, probe it
    /// until it accepts again.
    pub fn node_refused(self: &Rc<Self>, node: usize) {
        let n = &self.nodes[node];
        if n.down.replace(true) {
            return;
        }
        let moved: Vec<Job> = n.queue.borrow_mut().drain(..).collect();
        if self.nodes.iter().any(|m| !m.is_down()) {
            for mut job in moved {
                job.node = (node + 1) % self.nodes.len();
                self.enqueue(job);
            }
        } else {
            n.queue.borrow_mut().extend(moved);
        }
        let shard = self.clone();
        tokio::task::spawn_local(async move {
            let source = shard.source(node);
            while !shard.stopping.get() {
                tokio::time::sleep(PROBE_EVERY).await;
                let ep = &shard.nodes[node].ep;
                let ok = tokio::time::timeout(shard.cfg.timeout, wire::connect(ep.addr, source))
                    .await
                    .is_ok_and(|r| r.is_ok());
                if ok {
                    shard.nodes[node].down.set(false);
                    shard.nodes[node].ready.notify_one();
                    return;
                }
            }
        });
    }

    async fn next_job(&self, node: usize, extra: bool) -> Option<Job> {
        loop {
            if let Some(j) = self.nodes[node].queue.borrow_mut().pop_front() {
                return Some(j);
            }
            if self.stopping.get() {
                return None;
            }
            let ready = self.nodes[node].ready.notified();
            if extra {
                tokio::time::timeout(EXTRA_IDLE, ready).await.ok()?;
            } else {
                ready.await;
            }
        }
    }
}

/// One pool connection of `node`: runs queued exchanges until the shard stops (an extra one,
/// `k >= pool`, until it has been idle for [`EXTRA_IDLE`]).
pub async fn connection(shard: Rc<Shard>, node: usize, k: usize) {
    let mut conn: Option<Conn> = None;
    let mut req = Vec::with_capacity(512);
    let source = shard.source(node * 64 + k);
    let extra = k >= shard.cfg.pool as usize;
    while let Some(job) = shard.next_job(node, extra).await {
        let n = &shard.nodes[node];
        n.busy.set(n.busy.get() + 1);
        let result = tokio::time::timeout(
            shard.cfg.timeout,
            run(&shard, &mut conn, source, node, &job, &mut req),
        )
        .await
        .unwrap_or_else(|_| Err(Fail::new("timeout")));
        n.busy.set(n.busy.get() - 1);
        if matches!(&result, Err(f) if f.kind == "connect") {
            shard.node_refused(node);
        }
        if result.is_err() {
            conn = None; // its state is unknown
        }
        complete(&shard, job, result);
    }
    let n = &shard.nodes[node];
    n.conns.set(n.conns.get() - 1);
}

/// What a successful exchange yields.
struct Done {
    session: Option<Box<str>>,
}

async fn run(
    shard: &Shard,
    conn: &mut Option<Conn>,
    source: Option<std::net::IpAddr>,
    node: usize,
    job: &Job,
    req: &mut Vec<u8>,
) -> Result<Done, Fail> {
    let ep = &shard.nodes[node].ep;
    shard.acc.borrow_mut().s.attempts += 1;
    if conn.is_none() {
        *conn = Some(Conn::connect(ep.addr, source).await?);
    }
    let Some(c) = conn.as_mut() else {
        return Err(Fail::new("connect"));
    };
    let id = shard.next_id();
    let mut close = false;
    let out = match job.kind {
        Kind::Open => {
            let body = format!(
                r#"{{"jsonrpc":"2.0","id":{id},"method":"initialize","params":{{"protocolVersion":"{}","capabilities":{{}},"clientInfo":{{"name":"mcp-load","version":"{}"}}}}}}"#,
                crate::client::LEGACY,
                env!("CARGO_PKG_VERSION")
            );
            wire::post(req, ep, None, body.as_bytes());
            let a = c.exchange(req).await?;
            close |= a.close;
            a.check_status()?;
            wire::check_result(c.body(&a), a.sse, None)?;
            let Some(sid) = a.session else {
                return Err(Fail::new("no_session_id"));
            };
            wire::post(
                req,
                ep,
                Some(&sid),
                br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            );
            let b = c.exchange(req).await?;
            close |= b.close;
            b.check_status()?;
            Done { session: Some(sid) }
        }
        Kind::Call { .. } | Kind::Announce => {
            let announce = matches!(job.kind, Kind::Announce);
            let tool = if announce {
                "test_trigger_tool_change"
            } else {
                shard.cfg.tool.as_str()
            };
            let args = if announce {
                String::from("{}")
            } else {
                format!(r#"{{"text":"c{id}"}}"#)
            };
            let body = format!(
                r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}","arguments":{args}}}}}"#
            );
            wire::post(req, ep, Some(job.sess.sid()), body.as_bytes());
            if let Kind::Call { due, timed: true } = job.kind {
                let late = due.elapsed().as_micros() as u64;
                let mut acc = shard.acc.borrow_mut();
                acc.s.late_max_us = acc.s.late_max_us.max(late);
            }
            let a: Answer = c.exchange(req).await?;
            close |= a.close;
            a.check_status()?;
            let expect = (tool == "echo").then(|| format!(r#""text":"c{id}""#));
            wire::check_result(c.body(&a), a.sse, expect.as_deref().map(str::as_bytes))?;
            Done { session: None }
        }
    };
    if close {
        *conn = None; // a draining node closes its connections
    }
    Ok(out)
}

/// The jittered exponential backoff before retry number `failures` (from 1).
fn backoff(shard: &Shard, failures: u32, retry_after: Option<f64>) -> Duration {
    let cap = Duration::from_millis(50)
        .saturating_mul(1 << failures.saturating_sub(1).min(10))
        .min(Duration::from_secs(1));
    let d = cap.mul_f64(0.5 + shard.random() / 2.0);
    match retry_after {
        Some(ra) => d.max(Duration::from_secs_f64(ra.clamp(0.0, 1.0))),
        None => d,
    }
}

fn complete(shard: &Rc<Shard>, mut job: Job, result: Result<Done, Fail>) {
    let sess = job.sess.clone();
    match (job.kind, result) {
        (Kind::Open, Ok(done)) => shard.opened(&sess, done.session, job.node),
        (Kind::Call { due, timed }, Ok(_)) => {
            sess.call_ok(shard);
            if timed {
                let mut acc = shard.acc.borrow_mut();
                acc.s.calls_ok += 1;
                acc.hist.record(due.elapsed());
            } else {
                shard.acc.borrow_mut().s.checked += 1;
            }
            shard.call_finished();
        }
        (Kind::Announce, Ok(_)) => shard.acc.borrow_mut().s.announces_ok += 1,
        (kind, Err(fail)) => {
            let what = match kind {
                Kind::Open => "init",
                Kind::Call { .. } => "call",
                Kind::Announce => "announce",
            };
            shard.error(what, &fail.kind);
            job.last_error = format!("{}@{}", fail.kind, shard.nodes[job.node].ep.host);
            if let Kind::Announce = kind {
                shard.acc.borrow_mut().s.announces_failed += 1;
                return;
            }
            if fail.gone && !matches!(kind, Kind::Open) {
                sess.lose(shard, "call_404", job.last_error.clone());
                shard.acc.borrow_mut().s.calls_failed += 1;
                shard.call_finished();
                return;
            }
            job.failures += 1;
            let late = shard.clock.ms().saturating_sub(job.first_ms) >= shard.deadline_ms();
            match kind {
                Kind::Open if late || shard.stopping.get() => shard.open_failed(&sess),
                Kind::Call { timed, .. } if late || !sess.held() => {
                    if sess.held() {
                        let reason = if timed {
                            "call_deadline"
                        } else {
                            "final_call_deadline"
                        };
                        sess.lose(shard, reason, job.last_error.clone());
                    }
                    shard.acc.borrow_mut().s.calls_failed += 1;
                    shard.call_finished();
                }
                _ => {
                    if matches!(kind, Kind::Call { .. }) {
                        sess.call_failing(shard);
                    }
                    shard.acc.borrow_mut().s.retries += 1;
                    let delay = backoff(shard, job.failures, fail.retry_after);
                    job.node = (job.node + 1) % shard.nodes.len();
                    let shard = shard.clone();
                    tokio::task::spawn_local(async move {
                        tokio::time::sleep(delay).await;
                        if job.sess.state.get() == State::Lost {
                            // Lost meanwhile (its stream got a 404): the call never succeeded.
                            shard.acc.borrow_mut().s.calls_failed += 1;
                            shard.call_finished();
                            return;
                        }
                        shard.enqueue(job);
                    });
                }
            }
        }
    }
}
