//! A bounded single-consumer queue of SSE chunks, sized for memory: an empty queue allocates
//! nothing beyond its ~150-byte shared header (tokio's bounded mpsc allocates a 32-slot block,
//! ~1 KiB, per channel, and every open stream has one).

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use parking_lot::Mutex;
use tokio::sync::Notify;

struct State {
    queue: VecDeque<Bytes>,
    senders: usize,
    receiver_alive: bool,
    /// The server ended the stream so its client goes elsewhere (drain, shedding): the
    /// connection closes once the stream's end is written, so the client's next request goes
    /// through the Service again instead of back to this node on a kept-alive connection.
    close_connection: bool,
}

struct Shared {
    state: Mutex<State>,
    capacity: usize,
    rx_waker: AtomicWaker,
    closed: Notify,
}

/// Why a chunk was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrySendError {
    /// The queue holds `capacity` chunks (the reader is slow).
    Full,
    /// The reader is gone.
    Closed,
}

/// Sending half; clone for more senders. The queue ends when every sender is dropped.
pub struct Sender(Arc<Shared>);

/// Receiving half.
pub struct Receiver(Arc<Shared>);

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stream_queue::Sender")
    }
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stream_queue::Receiver")
    }
}

/// A queue holding at most `capacity` chunks.
pub fn channel(capacity: usize) -> (Sender, Receiver) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            senders: 1,
            receiver_alive: true,
            close_connection: false,
        }),
        capacity: capacity.max(1),
        rx_waker: AtomicWaker::new(),
        closed: Notify::new(),
    });
    (Sender(shared.clone()), Receiver(shared))
}

impl Sender {
    /// Queues a chunk without waiting.
    pub fn try_send(&self, chunk: Bytes) -> Result<(), TrySendError> {
        {
            let mut st = self.0.state.lock();
            if !st.receiver_alive {
                return Err(TrySendError::Closed);
            }
            if st.queue.len() >= self.0.capacity {
                return Err(TrySendError::Full);
            }
            st.queue.push_back(chunk);
        }
        self.0.rx_waker.wake();
        Ok(())
    }

    /// Asks that the reader's connection close once the stream has ended (the server moves the
    /// client elsewhere); the stream itself ends when every sender is dropped, as always.
    pub fn close_connection_after(&self) {
        self.0.state.lock().close_connection = true;
    }

    /// Whether the reader is gone.
    pub fn is_closed(&self) -> bool {
        !self.0.state.lock().receiver_alive
    }

    /// Resolves once the reader is gone.
    pub async fn closed(&self) {
        loop {
            let notified = self.0.closed.notified();
            if self.is_closed() {
                return;
            }
            notified.await;
        }
    }
}

impl Clone for Sender {
    fn clone(&self) -> Self {
        self.0.state.lock().senders += 1;
        Self(self.0.clone())
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        let last = {
            let mut st = self.0.state.lock();
            st.senders -= 1;
            st.senders == 0
        };
        if last {
            self.0.rx_waker.wake();
        }
    }
}

impl Receiver {
    /// Polls for the next chunk; `Ready(None)` once empty and every sender is gone.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        if let Some(ready) = self.try_take() {
            return Poll::Ready(ready);
        }
        self.0.rx_waker.register(cx.waker());
        match self.try_take() {
            Some(ready) => Poll::Ready(ready),
            None => Poll::Pending,
        }
    }

    fn try_take(&mut self) -> Option<Option<Bytes>> {
        let mut st = self.0.state.lock();
        match st.queue.pop_front() {
            Some(chunk) => {
                if st.queue.is_empty() && st.queue.capacity() > 4 {
                    st.queue.shrink_to_fit(); // a burst must not pin its memory
                }
                Some(Some(chunk))
            }
            None if st.senders == 0 => Some(None),
            None => None,
        }
    }

    /// The next chunk; `None` once empty and every sender is gone.
    pub async fn recv(&mut self) -> Option<Bytes> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// A chunk if one is queued now.
    pub fn try_recv(&mut self) -> Option<Bytes> {
        self.try_take().flatten()
    }

    /// Whether a sender asked that the connection close after the stream
    /// ([`Sender::close_connection_after`]).
    pub fn closes_connection(&self) -> bool {
        self.0.state.lock().close_connection
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        {
            let mut st = self.0.state.lock();
            st.receiver_alive = false;
            st.queue.clear();
        }
        self.0.closed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bounded_ordered_and_closing() {
        let (tx, mut rx) = channel(2);
        tx.try_send(Bytes::from_static(b"a")).expect("room");
        let tx2 = tx.clone();
        tx2.try_send(Bytes::from_static(b"b")).expect("room");
        assert_eq!(
            tx.try_send(Bytes::from_static(b"c")),
            Err(TrySendError::Full)
        );
        assert_eq!(rx.recv().await.as_deref(), Some(&b"a"[..]));
        assert_eq!(rx.recv().await.as_deref(), Some(&b"b"[..]));
        drop(tx);
        drop(tx2);
        assert_eq!(rx.recv().await, None, "ends when all senders are gone");
    }

    #[tokio::test]
    async fn sender_sees_reader_leave() {
        let (tx, rx) = channel(4);
        let waiter = tokio::spawn(async move { tx.closed().await });
        drop(rx);
        tokio::time::timeout(std::time::Duration::from_secs(1), waiter)
            .await
            .expect("resolves")
            .expect("joins");
    }

    #[tokio::test]
    async fn a_sender_may_ask_the_connection_closed_after_the_stream() {
        let (tx, mut rx) = channel(4);
        assert!(!rx.closes_connection());
        tx.try_send(Bytes::from_static(b"x")).expect("room");
        tx.close_connection_after();
        drop(tx);
        assert_eq!(
            rx.recv().await.as_deref(),
            Some(&b"x"[..]),
            "queued chunks still come"
        );
        assert_eq!(rx.recv().await, None);
        assert!(rx.closes_connection());
    }

    #[tokio::test]
    async fn wakes_a_waiting_reader() {
        let (tx, mut rx) = channel(4);
        let reader = tokio::spawn(async move { rx.recv().await });
        tokio::task::yield_now().await;
        tx.try_send(Bytes::from_static(b"x")).expect("room");
        let got = reader.await.expect("joins");
        assert_eq!(got.as_deref(), Some(&b"x"[..]));
    }
}
