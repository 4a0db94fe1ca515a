//! Releases open-loop calls at their due times, with sub-millisecond precision.
//!
//! Call *i* is due at `start + i / rate`. Tokio's timer wheel has 1 ms granularity, which would
//! add up to a millisecond of generator lateness to every latency measured from the due time.
//! The pacer is therefore a plain OS thread that sleeps with the kernel's high-resolution
//! `nanosleep` (tens of microseconds of slack) and hands each due call to whichever worker
//! connection is free, through an async multi-consumer channel. A call that finds every worker
//! busy waits in the channel, and that wait counts in its latency: the generator never slows
//! down because the server did.

use std::time::{Duration, Instant};

/// One call to send: its index and when it was due.
#[derive(Debug, Clone, Copy)]
pub struct Due {
    /// Index in the run, from 0.
    pub index: u64,
    /// The intended send time.
    pub at: Instant,
}

/// The due time of call `index` at `rate` calls per second from `start`.
pub fn due_at(start: Instant, rate: f64, index: u64) -> Instant {
    start + Duration::from_secs_f64(index as f64 / rate)
}

/// Starts the pacer thread: `total` calls at `rate` per second from `start`. The channel closes
/// after the last call, or the thread stops early when every receiver is gone.
pub fn start(
    start: Instant,
    rate: f64,
    total: u64,
) -> std::io::Result<async_channel::Receiver<Due>> {
    let (tx, rx) = async_channel::unbounded();
    std::thread::Builder::new()
        .name("mcp-load-pacer".into())
        .spawn(move || {
            let mut index = 0;
            while index < total {
                let now = Instant::now();
                let mut at = due_at(start, rate, index);
                while at <= now && index < total {
                    if tx.send_blocking(Due { index, at }).is_err() {
                        return;
                    }
                    index += 1;
                    at = due_at(start, rate, index);
                }
                if index < total {
                    std::thread::sleep(at.saturating_duration_since(Instant::now()));
                }
            }
        })?;
    Ok(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_every_call_once_in_order_and_on_time() {
        let start = Instant::now() + Duration::from_millis(20);
        let rx = start_pacer(start, 2_000.0, 200);
        let mut seen = Vec::new();
        let mut worst = Duration::ZERO;
        while let Ok(d) = rx.recv_blocking() {
            worst = worst.max(Instant::now().saturating_duration_since(d.at));
            assert!(Instant::now() >= d.at, "released before its due time");
            seen.push(d.index);
        }
        assert_eq!(seen, (0..200).collect::<Vec<_>>());
        // Generous bound for a loaded CI machine; the point is "not a whole timer tick per call".
        assert!(
            worst < Duration::from_millis(50),
            "worst lateness {worst:?}"
        );
    }

    fn start_pacer(s: Instant, rate: f64, total: u64) -> async_channel::Receiver<Due> {
        start(s, rate, total).expect("spawn pacer")
    }
}
