//! A session's GET stream, held on its own connection for the whole run: read event by event
//! into the shard's one scratch buffer (nothing is allocated per event and no timer runs while
//! it is idle), and reopened on another node (chosen at random, as a Service would) with
//! `Last-Event-ID` when it breaks.

use std::rc::Rc;
use std::time::Duration;

use super::session::Sess;
use super::shard::Shard;
use super::sse::IdScanner;
use super::wire::{self, Fail};

/// A stream that broke is reopened after a random delay up to this (then with backoff).
const REOPEN_JITTER: Duration = Duration::from_millis(100);

/// Why reading stopped.
enum End {
    /// The connection failed or the node ended the stream (kind).
    Broke(&'static str),
    /// Told to stop (session lost, run over, idle past the limit).
    Killed,
}

/// Holds `sess`'s stream, starting on node `first`, until the session is lost or the shard
/// stops.
pub async fn hold(
    shard: Rc<Shard>,
    sess: Rc<Sess>,
    first: usize,
    source: Option<std::net::IpAddr>,
) {
    let mut node = first;
    let mut failures = 0u32;
    let mut req = Vec::new();
    loop {
        if !sess.held() || shard.stopping.get() {
            return;
        }
        if shard.nodes[node].is_down() {
            node = shard.other_node(node);
        }
        wire::get_stream(
            &mut req,
            &shard.nodes[node].ep,
            sess.sid(),
            sess.last_event.get(),
        );
        shard.acc.borrow_mut().s.attempts += 1;
        let opened = tokio::select! {
            r = tokio::time::timeout(shard.cfg.timeout, wire::open_stream(shard.nodes[node].ep.addr, source, &req)) => {
                r.unwrap_or_else(|_| Err(Fail::new("timeout")))
            }
            _ = sess.kill.notified() => return,
        };
        let fail = match opened {
            Ok(open) => {
                shard.trace(
                    &sess,
                    format_args!(
                        "stream open on {} after {:?}",
                        shard.nodes[node].ep.host,
                        sess.last_event.get()
                    ),
                );
                failures = 0;
                sess.stream_opened(&shard);
                let mut scanner = IdScanner::new(open.chunked);
                let end = match scanner.feed(&open.rest, |f| sess.event(&shard, f)) {
                    Err(_) => End::Broke("bad_chunk"),
                    Ok(()) if scanner.ended() => End::Broke("ended"),
                    Ok(()) => read(&shard, &sess, &open.sock, &mut scanner).await,
                };
                match end {
                    End::Killed => {
                        if !sess.held() || shard.stopping.get() {
                            return;
                        }
                        // Idle past the limit: reopen on another node at once.
                        sess.stream_down(&shard);
                        shard.error("stream", "idle");
                        node = shard.other_node(node);
                        continue;
                    }
                    End::Broke(kind) => {
                        shard.trace(
                            &sess,
                            format_args!("stream {kind} on {}", shard.nodes[node].ep.host),
                        );
                        // The node went away, drained, or ended a relayed stream: reopen on
                        // another node after a jitter of up to REOPEN_JITTER, so that the
                        // thousands of streams a node held do not all come back in the same
                        // millisecond.
                        sess.stream_down(&shard);
                        shard.error("stream", kind);
                        node = shard.other_node(node);
                        let jitter = REOPEN_JITTER.mul_f64(shard.random());
                        tokio::select! {
                            _ = tokio::time::sleep(jitter) => {}
                            _ = sess.kill.notified() => return,
                        }
                        continue;
                    }
                }
            }
            Err(f) => f,
        };
        let last_error = format!("{}@{}", fail.kind, shard.nodes[node].ep.host);
        shard.error("stream", &fail.kind);
        if fail.kind == "connect" {
            shard.node_refused(node);
        }
        if fail.gone {
            sess.lose(&shard, "stream_404", last_error);
            return;
        }
        sess.stream_down(&shard);
        let down_for = shard
            .clock
            .ms()
            .saturating_sub(sess.stream_down_since.get().unwrap_or(0));
        if down_for >= shard.deadline_ms() {
            sess.lose(&shard, "stream_deadline", last_error);
            return;
        }
        failures += 1;
        shard.acc.borrow_mut().s.retries += 1;
        node = shard.other_node(node);
        let cap = Duration::from_millis(50)
            .saturating_mul(1 << failures.saturating_sub(1).min(10))
            .min(Duration::from_secs(1));
        let mut delay = cap.mul_f64(0.5 + shard.random() / 2.0);
        if let Some(ra) = fail.retry_after {
            delay = delay.max(Duration::from_secs_f64(ra.clamp(0.0, 1.0)));
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = sess.kill.notified() => return,
        }
    }
}

/// Reads the stream until it breaks or the session is told to stop.
async fn read(
    shard: &Shard,
    sess: &Sess,
    sock: &super::sock::Sock,
    scanner: &mut IdScanner,
) -> End {
    let killed = sess.kill.notified();
    tokio::pin!(killed);
    loop {
        let mut ready = tokio::select! {
            biased;
            _ = &mut killed => return End::Killed,
            r = sock.readable() => match r {
                Ok(r) => r,
                Err(_) => return End::Broke("io"),
            },
        };
        let mut scratch = shard.scratch.borrow_mut();
        match ready.read(&mut scratch) {
            None => {}
            Some(Ok(0)) => return End::Broke("eof"),
            Some(Ok(n)) => {
                sess.last_rx_s.set(shard.clock.second());
                let fed = scanner.feed(&scratch[..n], |f| sess.event(shard, f));
                if fed.is_err() {
                    return End::Broke("bad_chunk");
                }
                if scanner.ended() {
                    return End::Broke("ended");
                }
            }
            Some(Err(_)) => return End::Broke("io"),
        }
    }
}
