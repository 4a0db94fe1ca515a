//! Panics in connection tasks: caught at the task's edge ([`Caught`]), counted in
//! `mcp_connection_panics_total` and logged at most once a minute with the number of panics
//! not logged since, so a storm of crafted requests cannot flood the log. A panic is a bug;
//! catching it keeps the node serving everyone else and makes the bug visible in the metrics.
//!
//! The process's panic hook stays in charge of every other panic: ours only stays silent for a
//! panic raised while a connection task is being polled, and hands its message and location to
//! the [`Caught`] that reports it.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

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

/// Logs a caught panic unless one was logged less than a minute ago (then only counts it).
pub fn report(peer: &std::net::SocketAddr, what: &str) {
    static LAST_LOG: Mutex<Option<Instant>> = Mutex::new(None);
    static SUPPRESSED: AtomicU64 = AtomicU64::new(0);
    let now = Instant::now();
    let mut last = LAST_LOG.lock();
    if last.is_some_and(|t| now.duration_since(t) < LOG_EVERY) {
        SUPPRESSED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    *last = Some(now);
    drop(last);
    let suppressed = SUPPRESSED.swap(0, Ordering::Relaxed);
    tracing::error!(
        %peer,
        panic = what,
        not_logged_since_last = suppressed,
        "connection task panicked (a bug; the connection was closed and its resources released; \
         counted in mcp_connection_panics_total, logged at most once a minute)"
    );
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
}
