//! One load process: its sessions, the call pools of every node, the ramp, the paced calls,
//! the announcements, the per-second report and the final check — all on one current-thread
//! runtime (`Rc`/`Cell` state, no locks, no work stealing, one scratch buffer for every
//! stream's reads).
//!
//! Driven by [`Command`]s and reporting [`ShardMsg`]s; [`run`] is the whole life of a shard
//! (the `mcp-load cluster --shard` process wires it to stdin/stdout, tests to channels).

use std::cell::{Cell, RefCell};
use std::net::IpAddr;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{Notify, mpsc};

use super::pool::{Job, Kind, NodeQ};
use super::second::Second;
use super::session::{Sess, State};
use super::wire::Endpoint;
use super::{Command, LOST_LISTED, LostSession, ShardConfig, ShardDone, ShardMsg};
use crate::stats::Hist;

/// Milliseconds and seconds since the run's start.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    t0: Instant,
}

impl Clock {
    /// The clock of a run that started at `t0_unix_ms`.
    pub fn new(t0_unix_ms: u64) -> Self {
        let now_ms = unix_ms();
        let now = Instant::now();
        let t0 = if now_ms >= t0_unix_ms {
            now.checked_sub(Duration::from_millis(now_ms - t0_unix_ms))
                .unwrap_or(now)
        } else {
            now + Duration::from_millis(t0_unix_ms - now_ms)
        };
        Self { t0 }
    }

    /// Milliseconds since the start.
    pub fn ms(&self) -> u64 {
        self.t0.elapsed().as_millis() as u64
    }

    /// Whole seconds since the start.
    pub fn second(&self) -> u32 {
        self.t0.elapsed().as_secs() as u32
    }

    /// The instant `ms` after the start.
    pub fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }
}

/// Unix time in milliseconds.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The current second's counters and latency.
#[derive(Debug)]
pub struct Acc {
    /// Counters (gauges are filled in when the second is reported).
    pub s: Second,
    /// Latency of the calls answered in this second.
    pub hist: Hist,
}

/// The shared state of one shard.
pub struct Shard {
    /// Configuration.
    pub cfg: ShardConfig,
    /// Time since the run's start.
    pub clock: Clock,
    /// Every node's queue.
    pub nodes: Vec<NodeQ>,
    /// Every session, by index.
    pub sessions: RefCell<Vec<Rc<Sess>>>,
    /// This second's figures.
    pub acc: RefCell<Acc>,
    /// Reads of every stream land here (one thread: one buffer).
    pub scratch: RefCell<Vec<u8>>,
    /// The run is over: streams end, pool connections stop.
    pub stopping: Cell<bool>,
    held: Cell<u64>,
    streams_up: Cell<u64>,
    impaired: Cell<u64>,
    opening: Cell<u64>,
    opened_total: Cell<u64>,
    failed_total: Cell<u64>,
    lost_total: Cell<u64>,
    lost: RefCell<Vec<LostSession>>,
    inflight: Cell<u64>,
    target: Cell<u32>,
    ramp_reported: Cell<bool>,
    calling: Cell<bool>,
    rng: Cell<u64>,
    cpu_before: Cell<(f64, f64)>,
    next_id: Cell<u64>,
    call_rr: Cell<usize>,
    node_rr: Cell<usize>,
    /// `MCP_LOAD_TRACE_STREAMS` is set: print every stream open/end, gap and duplicate.
    trace_streams: bool,
    wake_ramp: Notify,
    opened_one: Notify,
    idle: Notify,
    out: RefCell<Box<dyn FnMut(ShardMsg)>>,
}

impl std::fmt::Debug for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shard")
            .field("shard", &self.cfg.shard)
            .field("held", &self.held.get())
            .finish_non_exhaustive()
    }
}

impl Shard {
    fn new(cfg: ShardConfig, out: Box<dyn FnMut(ShardMsg)>) -> Self {
        let nodes = cfg
            .nodes
            .iter()
            .map(|t| {
                NodeQ::new(Endpoint {
                    host: t.addr.to_string(),
                    path: t.path.clone(),
                    addr: t.addr,
                })
            })
            .collect();
        Self {
            clock: Clock::new(cfg.t0_unix_ms),
            nodes,
            sessions: RefCell::new(Vec::new()),
            acc: RefCell::new(Acc {
                s: Second::default(),
                hist: Hist::with_precision(2),
            }),
            scratch: RefCell::new(vec![0; 64 * 1024]),
            stopping: Cell::new(false),
            held: Cell::new(0),
            streams_up: Cell::new(0),
            impaired: Cell::new(0),
            opening: Cell::new(0),
            opened_total: Cell::new(0),
            failed_total: Cell::new(0),
            lost_total: Cell::new(0),
            lost: RefCell::new(Vec::new()),
            inflight: Cell::new(0),
            target: Cell::new(0),
            ramp_reported: Cell::new(true),
            calling: Cell::new(false),
            rng: Cell::new(cfg.seed | 1),
            cpu_before: Cell::new(cpu_seconds()),
            next_id: Cell::new(1),
            call_rr: Cell::new(0),
            node_rr: Cell::new(cfg.shard as usize),
            trace_streams: std::env::var_os("MCP_LOAD_TRACE_STREAMS").is_some(),
            wake_ramp: Notify::new(),
            opened_one: Notify::new(),
            idle: Notify::new(),
            out: RefCell::new(out),
            cfg,
        }
    }

    fn emit(&self, msg: ShardMsg) {
        (self.out.borrow_mut())(msg);
    }

    /// With `MCP_LOAD_TRACE_STREAMS` set: one line on stderr about `sess`'s stream.
    pub fn trace(&self, sess: &Sess, what: std::fmt::Arguments<'_>) {
        if self.trace_streams {
            eprintln!(
                "mcp-load trace {:.3}s shard {} #{} {}: {what}",
                self.clock.ms() as f64 / 1000.0,
                self.cfg.shard,
                sess.index,
                sess.sid()
            );
        }
    }

    /// A number in `[0, 1)` (xorshift: spread, not secrecy).
    pub fn random(&self) -> f64 {
        let mut x = self.rng.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.set(x);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A node other than `node`, each equally likely (as a Kubernetes Service spreads new
    /// connections), or `node` when it is the only one. A stream that broke reconnects here:
    /// moving every stream of a failed node to the same next node would put them all on one
    /// node at once, past its connection cap and its accept backlog, which no Service does.
    /// Nodes marked down (refused a connection) are left out while another is up.
    pub fn other_node(&self, node: usize) -> usize {
        let n = self.nodes.len();
        let r = self.random();
        let up: Vec<usize> = (0..n)
            .filter(|&i| i != node && !self.nodes[i].is_down())
            .collect();
        if up.is_empty() {
            return other_of(node, n, r);
        }
        up[((r * up.len() as f64) as usize).min(up.len() - 1)]
    }

    /// The next JSON-RPC id.
    pub fn next_id(&self) -> u64 {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        id
    }

    /// The `i`-th source address.
    pub fn source(&self, i: usize) -> Option<IpAddr> {
        let s = &self.cfg.sources;
        (!s.is_empty()).then(|| s[i % s.len()])
    }

    /// The session deadline in milliseconds.
    pub fn deadline_ms(&self) -> u64 {
        self.cfg.deadline.as_millis() as u64
    }

    /// Counts a failed attempt of `what` (`init`, `call`, `stream`, `announce`).
    pub fn error(&self, what: &str, kind: &str) {
        let mut acc = self.acc.borrow_mut();
        let key = format!("{what}_{kind}");
        *acc.s.errors.entry(key).or_insert(0) += 1;
    }

    /// The impaired gauge moved by `d`.
    pub fn impaired_changed(&self, d: i64) {
        let v = self.impaired.get().saturating_add_signed(d);
        self.impaired.set(v);
        let mut acc = self.acc.borrow_mut();
        acc.s.impaired_max = acc.s.impaired_max.max(v);
    }

    /// The streams-up gauge moved by `d`.
    pub fn streams_up_changed(&self, d: i64) {
        self.streams_up
            .set(self.streams_up.get().saturating_add_signed(d));
    }

    /// The held gauge moved by `d`.
    pub fn held_changed(&self, d: i64) {
        self.held.set(self.held.get().saturating_add_signed(d));
    }

    /// Keeps a lost session for the report (the first [`LOST_LISTED`]).
    pub fn record_lost(&self, lost: LostSession) {
        let n = self.lost_total.get() + 1;
        self.lost_total.set(n);
        if n <= 20 {
            eprintln!(
                "mcp-load: shard {} LOST session #{} {} (initialized on node {}): {} at {:.3} s; last error: {}",
                lost.shard,
                lost.index,
                lost.session,
                lost.home,
                lost.reason,
                lost.at_ms as f64 / 1000.0,
                lost.last_error
            );
        }
        let mut l = self.lost.borrow_mut();
        if l.len() < LOST_LISTED {
            l.push(lost);
        }
    }

    /// `initialize` answered on `node`: the session is held and its stream opened.
    pub fn opened(self: &Rc<Self>, sess: &Rc<Sess>, sid: Option<Box<str>>, node: usize) {
        self.opening.set(self.opening.get().saturating_sub(1));
        self.opened_one.notify_one();
        let Some(sid) = sid else {
            return;
        };
        let _ = sess.id.set(sid);
        sess.home.set(node as u8);
        sess.state.set(State::Held);
        self.held_changed(1);
        self.opened_total.set(self.opened_total.get() + 1);
        self.acc.borrow_mut().s.opened += 1;
        let stream_node = if self.random() < self.cfg.relay_fraction {
            self.other_node(node)
        } else {
            node
        };
        let source = self.source(sess.index as usize);
        tokio::task::spawn_local(super::stream::hold(
            self.clone(),
            sess.clone(),
            stream_node,
            source,
        ));
        self.maybe_ramp_done();
    }

    /// The session could not be opened within the deadline (its failed attempts are in
    /// `errors` as `init_*`).
    pub fn open_failed(&self, sess: &Sess) {
        self.opening.set(self.opening.get().saturating_sub(1));
        self.opened_one.notify_one();
        sess.state.set(State::Failed);
        self.failed_total.set(self.failed_total.get() + 1);
        self.acc.borrow_mut().s.open_failed += 1;
        self.maybe_ramp_done();
    }

    /// A paced or final call is over (answered or given up).
    pub fn call_finished(&self) {
        let n = self.inflight.get().saturating_sub(1);
        self.inflight.set(n);
        if n == 0 {
            self.idle.notify_waiters();
        }
    }

    fn maybe_ramp_done(&self) {
        let len = self.sessions.borrow().len() as u32;
        if !self.ramp_reported.get() && len >= self.target.get() && self.opening.get() == 0 {
            self.ramp_reported.set(true);
            self.emit(ShardMsg::RampDone {
                target: self.target.get(),
                held: self.held.get(),
                failed: self.failed_total.get(),
                opened: self.opened_total.get(),
            });
        }
    }

    /// The next held session for a call, round-robin.
    fn next_session(&self) -> Option<Rc<Sess>> {
        if self.held.get() == 0 {
            return None;
        }
        let sessions = self.sessions.borrow();
        let len = sessions.len();
        for _ in 0..len {
            let i = self.call_rr.get() % len;
            self.call_rr.set(i + 1);
            if sessions[i].held() {
                return Some(sessions[i].clone());
            }
        }
        None
    }

    fn next_node(&self) -> usize {
        let i = self.node_rr.get();
        self.node_rr.set(i.wrapping_add(1));
        i % self.nodes.len()
    }

    fn call(self: &Rc<Self>, sess: Rc<Sess>, kind: Kind) {
        self.inflight.set(self.inflight.get() + 1);
        self.enqueue(Job {
            sess,
            kind,
            node: self.next_node(),
            failures: 0,
            first_ms: self.clock.ms(),
            last_error: String::new(),
        });
    }

    /// Builds this second's report (counters taken, gauges read, CPU used since the last).
    fn second(&self, t: u32) -> Second {
        let cpu_now = cpu_seconds();
        let before = self.cpu_before.replace(cpu_now);
        let cpu = (cpu_now.0 - before.0, cpu_now.1 - before.1);
        let mut acc = self.acc.borrow_mut();
        let mut s = std::mem::take(&mut acc.s);
        s.latency = acc.hist.to_bins();
        acc.hist = Hist::with_precision(2);
        s.t = t;
        s.shards = 1;
        s.held = self.held.get();
        s.streams_up = self.streams_up.get();
        s.impaired = self.impaired.get();
        s.impaired_max = s.impaired_max.max(s.impaired);
        s.opening = self.opening.get();
        s.cpu_user_s = cpu.0;
        s.cpu_sys_s = cpu.1;
        s
    }
}

/// CPU seconds (user, system) this process used so far, from `/proc/self/stat`.
pub fn cpu_seconds() -> (f64, f64) {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return (0.0, 0.0);
    };
    // Fields after the command name (which may hold spaces): state is field 3, utime 14,
    // stime 15, in clock ticks (USER_HZ, 100 on Linux).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) / 100.0;
    (tick(11), tick(12))
}

/// Opens sessions up to the target at the ramp rate, at most `open_concurrency` at a time.
async fn ramp(shard: Rc<Shard>) {
    let rate = shard.cfg.ramp_rate;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tokens = 0.0f64;
    loop {
        if shard.stopping.get() {
            return;
        }
        let len = shard.sessions.borrow().len() as u32;
        if len >= shard.target.get() {
            tokens = 0.0;
            shard.wake_ramp.notified().await;
            continue;
        }
        if shard.opening.get() >= u64::from(shard.cfg.open_concurrency.max(1)) {
            shard.opened_one.notified().await;
            continue;
        }
        if rate > 0.0 {
            if tokens < 1.0 {
                tick.tick().await;
                tokens = (tokens + rate * 0.01).min(rate * 0.05 + 1.0);
                continue;
            }
            tokens -= 1.0;
        }
        let sess = Rc::new(Sess::new(len));
        shard.sessions.borrow_mut().push(sess.clone());
        shard.opening.set(shard.opening.get() + 1);
        let node = (len as usize + shard.cfg.shard as usize) % shard.nodes.len();
        shard.enqueue(Job {
            sess,
            kind: Kind::Open,
            node,
            failures: 0,
            first_ms: shard.clock.ms(),
            last_error: String::new(),
        });
        if rate <= 0.0 {
            tokio::task::yield_now().await;
        }
    }
}

/// Sends the paced calls: call `i` is due at `start + i / rate`. The runtime's own timer
/// wakes this task (at most once a millisecond) and every call due by then goes out at once:
/// no pacer thread, no cross-thread wake-up per call. Its lateness (up to the timer's 1 ms
/// plus any queue wait) is part of the latency from the due time, and its maximum per second
/// is reported (`late_max_us`).
async fn calls(shard: Rc<Shard>, start: Instant) {
    let rate = shard.cfg.rate;
    if rate <= 0.0 {
        return;
    }
    let mut index: u64 = 0;
    while shard.calling.get() {
        let next = crate::pacer::due_at(start, rate, index);
        if next > Instant::now() {
            tokio::time::sleep_until(next.into()).await;
        }
        let now = Instant::now();
        loop {
            let due = crate::pacer::due_at(start, rate, index);
            if due > now || !shard.calling.get() {
                break;
            }
            index += 1;
            match shard.next_session() {
                Some(sess) => shard.call(sess, Kind::Call { due, timed: true }),
                None => shard.acc.borrow_mut().s.unsent += 1,
            }
        }
    }
}

/// One `test_trigger_tool_change` every `every` while calls run.
async fn announce(shard: Rc<Shard>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    while shard.calling.get() {
        tick.tick().await;
        if !shard.calling.get() {
            break;
        }
        if let Some(sess) = shard.next_session() {
            let node = shard.next_node();
            shard.enqueue(Job {
                sess,
                kind: Kind::Announce,
                node,
                failures: 0,
                first_ms: shard.clock.ms(),
                last_error: String::new(),
            });
        }
    }
}

/// Reports every second; closes streams idle past the limit.
async fn report(shard: Rc<Shard>) {
    let mut t = shard.clock.second();
    loop {
        let next = shard.clock.at(u64::from(t + 1) * 1000);
        tokio::time::sleep_until(next.into()).await;
        let mut s = shard.second(t);
        // How late this wake-up came: the shard's own stall (its thread blocked or not
        // scheduled), during which its timeouts and deadlines ran on without it.
        s.stall_max_us = u64::try_from(Instant::now().saturating_duration_since(next).as_micros())
            .unwrap_or(u64::MAX);
        shard.emit(ShardMsg::Second(Box::new(s)));
        t += 1;
        // Streams that went silent (no keep-alive for `stream_idle`): a dead peer that sent no
        // FIN or RST. One pass over the sessions per second instead of a timer per stream.
        let idle_s = shard.cfg.stream_idle.as_secs() as u32;
        if t.is_multiple_of(5) {
            let now = shard.clock.second();
            for s in shard.sessions.borrow().iter() {
                if s.stream_up.get() && now.saturating_sub(s.last_rx_s.get()) > idle_s {
                    s.kill.notify_one();
                }
            }
        }
        if shard.stopping.get() {
            return;
        }
    }
}

/// Waits until no paced or final call is in flight, at most `limit`.
async fn drain_calls(shard: &Shard, limit: Duration) -> bool {
    let end = Instant::now() + limit;
    while shard.inflight.get() > 0 {
        let idle = shard.idle.notified();
        if tokio::time::timeout_at(end.into(), idle).await.is_err() {
            return false;
        }
    }
    true
}

/// The final check: one call per held session (with the same retries), then every held
/// session's stream must be up (or come back within the deadline).
async fn final_check(shard: &Rc<Shard>, done: &mut ShardDone) -> bool {
    let slack = shard.cfg.deadline + shard.cfg.timeout + Duration::from_secs(2);
    let mut complete = drain_calls(shard, slack).await;
    let held: Vec<Rc<Sess>> = shard
        .sessions
        .borrow()
        .iter()
        .filter(|s| s.held())
        .cloned()
        .collect();
    let rate = shard.cfg.final_rate.max(1.0);
    let started = Instant::now();
    for (i, sess) in held.iter().enumerate() {
        let due = started + Duration::from_secs_f64(i as f64 / rate);
        if due > Instant::now() + Duration::from_millis(5) {
            tokio::time::sleep_until(due.into()).await;
        }
        if sess.held() {
            done.checked += 1;
            shard.call(sess.clone(), Kind::Call { due, timed: false });
        }
    }
    complete &= drain_calls(shard, slack).await;
    let end = Instant::now() + shard.cfg.deadline + shard.cfg.timeout;
    while Instant::now() < end && held.iter().any(|s| s.held() && !s.stream_up.get()) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for s in &held {
        if s.held() && !s.stream_up.get() {
            s.lose(
                shard,
                "final_stream_down",
                "stream not up at the end".into(),
            );
        }
    }
    done.final_ok = held.iter().filter(|s| s.held()).count() as u64;
    complete
}

/// The whole life of a shard: follows `commands` until `Finish` (or until they end, or
/// `max_run` passes), reporting through `out`.
pub fn run(
    cfg: ShardConfig,
    commands: mpsc::UnboundedReceiver<Command>,
    out: Box<dyn FnMut(ShardMsg)>,
) -> anyhow::Result<()> {
    anyhow::ensure!(!cfg.nodes.is_empty(), "no nodes");
    anyhow::ensure!(cfg.nodes.len() <= 255, "at most 255 nodes");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, drive(cfg, commands, out));
    Ok(())
}

async fn drive(
    cfg: ShardConfig,
    mut commands: mpsc::UnboundedReceiver<Command>,
    out: Box<dyn FnMut(ShardMsg)>,
) {
    let max_run = cfg.max_run;
    let shard = Rc::new(Shard::new(cfg, out));
    for node in 0..shard.nodes.len() {
        for _ in 0..shard.cfg.pool.max(1) {
            shard.nodes[node].open_connection(&shard, node);
        }
    }
    tokio::task::spawn_local(ramp(shard.clone()));
    let reporter = tokio::task::spawn_local(report(shard.clone()));
    let bound = tokio::time::sleep(max_run);
    tokio::pin!(bound);
    let mut complete = true;
    loop {
        let cmd = tokio::select! {
            c = commands.recv() => c,
            _ = &mut bound => {
                eprintln!("mcp-load: shard {} reached its time limit ({max_run:?})", shard.cfg.shard);
                complete = false;
                Some(Command::Finish)
            }
        };
        match cmd {
            Some(Command::Target { sessions }) => {
                shard.target.set(sessions.max(shard.target.get()));
                shard.ramp_reported.set(false);
                shard.wake_ramp.notify_one();
                shard.maybe_ramp_done();
            }
            Some(Command::StopRamp) => {
                let len = shard.sessions.borrow().len() as u32;
                shard.target.set(len);
                shard.maybe_ramp_done();
            }
            Some(Command::Calls { start_unix_ms }) => {
                if !shard.calling.replace(true) {
                    let start = shard
                        .clock
                        .at(start_unix_ms.saturating_sub(shard.cfg.t0_unix_ms));
                    tokio::task::spawn_local(calls(shard.clone(), start));
                    if let Some(every) = shard.cfg.announce_every {
                        tokio::task::spawn_local(announce(shard.clone(), every));
                    }
                }
            }
            Some(Command::Finish) => break,
            None => {
                // The parent is gone: stop at once.
                shard.stopping.set(true);
                return;
            }
        }
    }
    // Final check, then stop everything.
    shard.calling.set(false);
    let target = shard.sessions.borrow().len() as u32;
    shard.target.set(target);
    let mut done = ShardDone {
        shard: shard.cfg.shard,
        ..ShardDone::default()
    };
    if complete {
        complete = tokio::select! {
            c = final_check(&shard, &mut done) => c,
            c = commands.recv() => {
                // Only the parent going away interrupts the check.
                if c.is_none() {
                    shard.stopping.set(true);
                    return;
                }
                false
            }
        };
    }
    shard.stopping.set(true);
    for n in &shard.nodes {
        n.wake_all();
    }
    for s in shard.sessions.borrow().iter() {
        s.kill.notify_one();
    }
    // The last second's figures, then the end.
    reporter.abort();
    let last = shard.second(shard.clock.second());
    shard.emit(ShardMsg::Second(Box::new(last)));
    done.opened = shard.opened_total.get();
    done.held = shard.held.get();
    done.lost = shard.lost_total.get();
    done.lost_sessions = shard.lost.borrow().clone();
    done.complete = complete;
    shard.emit(ShardMsg::Done(done));
}

/// Of `n` nodes, the one other than `node` that `r` (uniform in [0, 1)) picks; `node` itself
/// when it is the only one.
fn other_of(node: usize, n: usize, r: f64) -> usize {
    if n < 2 {
        return node;
    }
    let k = ((r * (n - 1) as f64) as usize).min(n - 2);
    (node + 1 + k) % n
}

#[cfg(test)]
mod tests {
    use super::other_of;

    #[test]
    fn reconnects_spread_over_every_other_node_evenly() {
        let (n, node, draws) = (7, 3, 7_000);
        let mut hits = [0u32; 7];
        for i in 0..draws {
            hits[other_of(node, n, f64::from(i) / f64::from(draws))] += 1;
        }
        assert_eq!(hits[node], 0, "never the node that failed: {hits:?}");
        for (i, h) in hits.iter().enumerate().filter(|(i, _)| *i != node) {
            assert!(
                (1_100..=1_234).contains(h),
                "node {i} gets about a sixth: {hits:?}"
            );
        }
        assert_eq!(other_of(0, 1, 0.5), 0, "one node: itself");
        assert_eq!(
            other_of(1, 2, 0.999_999),
            0,
            "the top of the range stays in range"
        );
    }
}
