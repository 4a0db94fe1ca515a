//! [`Gate`]: what a request passes before it is sent to an upstream — the circuit breaker
//! (`breaker.rs`: refused at once while the upstream is marked down), then one of the
//! `maxConcurrency` slots, waited for in a queue of at most `maxQueued` requests (within the
//! request's own deadline), else refused at once. The [`Pass`] it gives holds the slot and
//! reports the request's outcome to the breaker when finished or dropped. It keeps the
//! `mcp_upstream_in_flight`, `_queued`, `_state` and `_breaker_opened_total` metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use mcpcluster_api::UpstreamConfig;
use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::breaker::{Admit, Breaker, State, Verdict};
use super::error::UpstreamError;
use super::metrics::Handle;

/// One upstream's admission: breaker, slots, queue.
#[derive(Debug)]
pub struct Gate {
    name: String,
    max_concurrency: u32,
    max_queued: u32,
    timeout_ms: u64,
    permits: Arc<Semaphore>,
    queued: AtomicU32,
    breaker: Mutex<Breaker>,
    /// How the last request that reached a verdict ended: answered, or failed and why.
    last: Mutex<Option<Result<(), String>>>,
    metrics: Handle,
}

impl Gate {
    /// The gate of a validated upstream entry.
    pub fn new(config: &UpstreamConfig, metrics: Handle) -> Self {
        Self {
            name: config.name.clone(),
            max_concurrency: config.max_concurrency,
            max_queued: config.max_queued,
            timeout_ms: config.timeout_ms,
            permits: Arc::new(Semaphore::new(config.max_concurrency as usize)),
            queued: AtomicU32::new(0),
            breaker: Mutex::new(Breaker::new(
                config.breaker_failures,
                Duration::from_millis(config.breaker_open_ms),
            )),
            last: Mutex::new(None),
            metrics,
        }
    }

    /// Lets a request through, or refuses it: `Down` while the breaker is open (or another
    /// request is probing), `Busy` when every slot is taken and the queue is full (or
    /// `maxQueued` is 0), `Timeout` when `deadline` passes in the queue.
    pub async fn enter(&self, deadline: tokio::time::Instant) -> Result<Pass<'_>, UpstreamError> {
        let probe = match self.breaker.lock().admit(Instant::now()) {
            Admit::Go => false,
            Admit::Probe => {
                self.metrics.state(State::HalfOpen);
                true
            }
            Admit::Down(wait) => {
                return Err(UpstreamError::Down {
                    retry_after_ms: wait.as_millis().max(1) as u64,
                });
            }
        };
        // Until the pass exists, a refusal must give the probe back.
        let give_back = |e: UpstreamError| {
            if probe {
                self.breaker
                    .lock()
                    .record(Instant::now(), true, Verdict::Unknown);
            }
            e
        };
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => self.wait(deadline).await.map_err(give_back)?,
        };
        self.metrics.in_flight(1);
        Ok(Pass {
            gate: self,
            probe,
            verdict: Verdict::Unknown,
            error: None,
            _permit: permit,
        })
    }

    /// Waits for a slot in the queue, if there is room in it.
    async fn wait(
        &self,
        deadline: tokio::time::Instant,
    ) -> Result<OwnedSemaphorePermit, UpstreamError> {
        let busy = UpstreamError::Busy(self.max_concurrency);
        let taken = self
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                (q < self.max_queued).then_some(q + 1)
            });
        if taken.is_err() {
            return Err(busy);
        }
        self.metrics.queued(1);
        let waited = tokio::time::timeout_at(deadline, self.permits.clone().acquire_owned()).await;
        self.queued.fetch_sub(1, Ordering::AcqRel);
        self.metrics.queued(-1);
        match waited {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) => Err(busy),
            Err(_) => Err(UpstreamError::Timeout(self.timeout_ms)),
        }
    }

    /// How long the upstream stays marked down before the next probe (`None`: it is up, or
    /// a probe may go now).
    pub fn down_for(&self) -> Option<Duration> {
        let b = self.breaker.lock();
        let now = Instant::now();
        (b.state(now) == State::Open).then(|| b.retry_in(now))
    }

    /// The breaker's state now.
    pub fn state(&self) -> State {
        self.breaker.lock().state(Instant::now())
    }

    /// How the last request with a verdict ended: `Some(Ok)` answered, `Some(Err(why))`
    /// failed; `None` before any.
    pub fn last_outcome(&self) -> Option<Result<(), String>> {
        self.last.lock().clone()
    }

    fn record(&self, probe: bool, verdict: Verdict, error: Option<String>) {
        match verdict {
            Verdict::Up => *self.last.lock() = Some(Ok(())),
            Verdict::Failed => *self.last.lock() = Some(Err(error.unwrap_or_default())),
            Verdict::Unknown => {}
        }
        let mut b = self.breaker.lock();
        let now = Instant::now();
        let opened = b.record(now, probe, verdict);
        let state = b.state(now);
        drop(b);
        if opened {
            self.metrics.breaker_opened();
            tracing::warn!(upstream = %self.name, "upstream marked down by its circuit breaker");
        } else if probe && state == State::Closed {
            tracing::info!(upstream = %self.name, "upstream up again (probe answered)");
        }
        if opened || probe || verdict == Verdict::Up {
            self.metrics.state(if opened { State::Open } else { state });
        }
    }
}

/// A request let through: holds its slot; tells the breaker how it ended.
#[derive(Debug)]
pub struct Pass<'a> {
    gate: &'a Gate,
    probe: bool,
    verdict: Verdict,
    error: Option<String>,
    _permit: OwnedSemaphorePermit,
}

impl Pass<'_> {
    /// The request ended with `outcome`.
    pub fn finish(mut self, outcome: &Result<Value, UpstreamError>) {
        self.verdict = verdict(outcome);
        if self.verdict == Verdict::Failed {
            self.error = outcome.as_ref().err().map(ToString::to_string);
        }
    }
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        self.gate.metrics.in_flight(-1);
        self.gate
            .record(self.probe, self.verdict, self.error.take());
    }
}

/// What an outcome says about the upstream's health: any JSON-RPC answer means it is up;
/// no answer, a 5xx or 429, or an answer that is not JSON-RPC means it failed.
pub fn verdict(outcome: &Result<Value, UpstreamError>) -> Verdict {
    match outcome {
        Ok(_) | Err(UpstreamError::Rpc { .. } | UpstreamError::Unsupported(_)) => Verdict::Up,
        Err(UpstreamError::Status { status, .. }) if *status >= 500 || *status == 429 => {
            Verdict::Failed
        }
        Err(UpstreamError::Status { .. }) => Verdict::Up,
        Err(
            UpstreamError::Timeout(_) | UpstreamError::Unreachable(_) | UpstreamError::Protocol(_),
        ) => Verdict::Failed,
        Err(UpstreamError::Busy(_) | UpstreamError::Down { .. }) => Verdict::Unknown,
    }
}
