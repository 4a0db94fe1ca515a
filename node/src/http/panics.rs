//! Panics in connection and request tasks: caught at the task's edge ([`catch`], built on
//! [`Caught`]), counted in `mcp_connection_panics_total` and logged at most once a minute with
//! the number of panics not logged since, so a storm of crafted requests cannot flood the log.
//! A panic is a bug; catching it keeps the node serving everyone else and makes the bug visible
//! in the metrics. Every task the node spawns for one connection or one request goes through
//! [`catch`]: the connection task, a request's work that goes on in the background once its
//! answer streams, a request a peer forwarded, a `subscriptions/listen` stream.
//!
//! The process's panic hook stays in charge of every other panic: ours only stays silent for a
//! panic raised while a [`Caught`] future is being polled, and hands its message and location
//! to the [`Caught`] that reports it.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Once;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::node::Node;

/// At most one panic log line per this period.
const LOG_EVERY: Duration = Duration::from_secs(60);

thread_local! {
    /// Set while a [`Caught`] polls its future on this thread.
    static IN_CONNECTION: Cell<bool> = const { Cell::new(false) };
    /// What the hook saw of the last panic inside a connection task on this thread.
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs (once per process) the hook that keeps panics inside connection tasks off stderr;
/// other panics go to the hook that was there before.
pub fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_CONNECTION.with(Cell::get) {
                LAST_PANIC.with(|last| *last.borrow_mut() = Some(info.to_string()));
            } else {
                previous(info);
            }
        }));
    });
}

pin_project_lite::pin_project! {
    /// A future whose panics become `Err(description)` instead of unwinding into the runtime.
    #[derive(Debug)]
    pub struct Caught<F> {
        #[pin]
        inner: F,
    }
}

impl<F: Future> Caught<F> {
    /// Wraps `inner`.
    pub fn new(inner: F) -> Self {
        Self { inner }
    }
}

/// Clears [`IN_CONNECTION`] when a poll ends, by returning or by unwinding.
struct Scope(bool);

impl Scope {
    fn enter() -> Self {
        Self(IN_CONNECTION.with(|c| c.replace(true)))
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        let outer = self.0;
        IN_CONNECTION.with(|c| c.set(outer));
    }
}

impl<F: Future> Future for Caught<F> {
    type Output = Result<F::Output, String>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let polled = {
            let _scope = Scope::enter();
            let inner = self.project().inner;
            catch_unwind(AssertUnwindSafe(move || inner.poll(cx)))
        };
        match polled {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => {
                let seen = LAST_PANIC.with(|last| last.borrow_mut().take());
                Poll::Ready(Err(seen.unwrap_or_else(|| describe(payload.as_ref()))))
            }
        }
    }
}

fn describe(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-text payload".to_owned()
    }
}

/// Which task panicked (for the log line).
#[derive(Debug, Clone, Copy)]
pub enum Origin {
    /// A client connection's task.
    Connection(SocketAddr),
    /// A request's work, finishing in the background after its answer began streaming.
    Request,
    /// A request a peer forwarded to this node.
    Forwarded(SocketAddr),
    /// A `subscriptions/listen` stream.
    Listen,
    /// A connection to the admin port.
    Admin(SocketAddr),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connection(peer) => write!(f, "connection from {peer}"),
            Self::Request => f.write_str("request finishing behind its stream"),
            Self::Forwarded(peer) => write!(f, "request forwarded by peer {peer}"),
            Self::Listen => f.write_str("subscriptions/listen stream"),
            Self::Admin(peer) => write!(f, "admin connection from {peer}"),
        }
    }
}

/// Runs `task`; a panic in it is caught, counted in `mcp_connection_panics_total` and
/// reported ([`report`]), and gives `Err` with its description. What the task held is
/// released by its guards as it unwinds; what else it owed (an answer) is the caller's to send.
pub async fn catch<F: Future>(node: &Node, origin: Origin, task: F) -> Result<F::Output, String> {
    let caught = Caught::new(task).await;
    if let Err(what) = &caught {
        node.metrics.connection_panics.inc();
        report(origin, what);
    }
    caught
}

/// Logs a caught panic unless one was logged less than a minute ago (then only counts it).
pub fn report(origin: Origin, what: &str) {
    static LIMIT: LogLimit = LogLimit::new();
    let Some(not_logged) = LIMIT.admit(Instant::now()) else {
        return;
    };
    tracing::error!(
        task = %origin,
        panic = what,
        not_logged_since_last = not_logged,
        "task panicked (a bug; its connection or request was ended and its resources released; \
         counted in mcp_connection_panics_total, logged at most once a minute)"
    );
}

/// At most one log line per [`LOG_EVERY`]; counts what it holds back.
#[derive(Debug)]
struct LogLimit {
    /// When the last line was logged, and the panics not logged since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl LogLimit {
    const fn new() -> Self {
        Self {
            state: Mutex::new((None, 0)),
        }
    }

    /// Whether a panic seen at `now` is logged: then `Some(panics not logged since the last
    /// line)`; `None` when it is only counted.
    fn admit(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock();
        let (last, held_back) = &mut *state;
        if last.is_some_and(|t| now.saturating_duration_since(t) < LOG_EVERY) {
            *held_back += 1;
            return None;
        }
        *last = Some(now);
        Some(std::mem::take(held_back))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_becomes_an_error_with_its_message() {
        install_hook();
        let out = Caught::new(async {
            tokio::task::yield_now().await;
            let v: Vec<u8> = Vec::new();
            v[usize::MAX / 2]
        })
        .await;
        let what = out.expect_err("caught");
        assert!(what.contains("index out of bounds"), "{what}");
        assert!(what.contains("panics.rs"), "the location is kept: {what}");
        assert!(
            !IN_CONNECTION.with(Cell::get),
            "scope cleared after unwinding"
        );
        assert_eq!(Caught::new(async { 7 }).await, Ok(7));
    }

    #[test]
    fn the_log_is_limited_to_a_line_a_minute_counting_the_rest() {
        let limit = LogLimit::new();
        let t0 = Instant::now();
        assert_eq!(limit.admit(t0), Some(0), "the first panic is logged");
        for ms in [1, 1_000, 30_000, 59_999] {
            assert_eq!(
                limit.admit(t0 + Duration::from_millis(ms)),
                None,
                "{ms} ms later"
            );
        }
        assert_eq!(
            limit.admit(t0 + LOG_EVERY),
            Some(4),
            "a minute later: logged, with the 4 held back"
        );
        assert_eq!(limit.admit(t0 + LOG_EVERY + Duration::from_secs(1)), None);
        assert_eq!(limit.admit(t0 + LOG_EVERY * 5), Some(1));
        assert_eq!(
            limit.admit(t0),
            None,
            "a clock reading before the last line counts as within the minute"
        );
    }
}
