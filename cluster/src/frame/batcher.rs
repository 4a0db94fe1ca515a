//! The bounded send queue of one link direction, cut into batches.

use std::collections::VecDeque;
use std::time::Instant;

use super::{Config, Message};

/// Why [`Batcher::try_push`] refused a message; the message comes back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The queue holds `max_queue_bytes` already: slow down or shed.
    Full(Message),
    /// The message alone is larger than `max_message_bytes`.
    TooLarge(Message),
}

/// Messages ready to become one frame: their encoded bodies back to back.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Batch {
    /// `Message::encode` of each message, in order.
    pub body: Vec<u8>,
    /// How many messages.
    pub count: u32,
}

/// A bounded FIFO that yields batches on size or deadline. Sans-IO: the
/// caller passes `now` and sleeps until [`Batcher::poll_timeout`].
///
/// Frames are paced, not delayed: a message on an idle link (no batch cut in
/// the last `max_delay`) goes out at once, and while the link is busy the
/// next batch is cut `max_delay` after the previous one, so messages that
/// arrive meanwhile share it. No message waits longer than `max_delay`;
/// light traffic pays no delay at all (a timer cannot wake in under ~1 ms,
/// so waiting for company on an idle link cost every forwarded request
/// about 2 ms per hop), and under load batches grow with the rate.
#[derive(Debug)]
pub struct Batcher {
    config: Config,
    queue: VecDeque<(Instant, Message)>,
    queued_bytes: usize,
    last_cut: Option<Instant>,
}

impl Batcher {
    /// An empty queue.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            queue: VecDeque::new(),
            queued_bytes: 0,
            last_cut: None,
        }
    }

    /// Queues `msg` (sent no later than `now + max_delay`), or gives it back.
    pub fn try_push(&mut self, msg: Message, now: Instant) -> Result<(), Refused> {
        let len = msg.encoded_len();
        if msg.body.len() > self.config.max_message_bytes {
            return Err(Refused::TooLarge(msg));
        }
        if self.queued_bytes + len > self.config.max_queue_bytes {
            return Err(Refused::Full(msg));
        }
        self.queued_bytes += len;
        self.queue.push_back((now, msg));
        Ok(())
    }

    /// When the next batch is due: at once on an idle link, else `max_delay`
    /// after the previous batch, and never later than the oldest message's
    /// arrival plus `max_delay`. `None` when the queue is empty.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let (oldest, _) = self.queue.front()?;
        let paced = self
            .last_cut
            .map_or(*oldest, |t| (t + self.config.max_delay).max(*oldest));
        Some(paced.min(*oldest + self.config.max_delay))
    }

    /// A batch, if one is full or due at `now`.
    pub fn poll_batch(&mut self, now: Instant) -> Option<Batch> {
        let due = self.poll_timeout().is_some_and(|t| t <= now);
        if due || self.queued_bytes >= self.config.max_batch_bytes {
            self.last_cut = Some(now);
            self.take()
        } else {
            None
        }
    }

    /// The next batch regardless of size and deadline (shutdown, drain).
    pub fn flush(&mut self) -> Option<Batch> {
        self.take()
    }

    /// Messages queued.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Nothing queued.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Encoded bytes queued.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Takes messages in order up to `max_batch_bytes` (at least one).
    fn take(&mut self) -> Option<Batch> {
        let mut batch = Batch::default();
        while let Some((_, msg)) = self.queue.front() {
            let len = msg.encoded_len();
            if batch.count > 0 && batch.body.len() + len > self.config.max_batch_bytes {
                break;
            }
            msg.encode(&mut batch.body);
            batch.count += 1;
            self.queued_bytes -= len;
            self.queue.pop_front();
        }
        (batch.count > 0).then_some(batch)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn cfg() -> Config {
        Config {
            max_batch_bytes: 100,
            max_queue_bytes: 250,
            max_delay: Duration::from_millis(1),
            ..Config::default()
        }
    }

    #[test]
    fn an_idle_link_sends_at_once_a_busy_one_paces_batches() {
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        let mut b = Batcher::new(cfg());
        b.try_push(Message::new(1, vec![0u8; 40]), t0)
            .expect("fits");
        assert_eq!(b.poll_timeout(), Some(t0), "idle link: due at once");
        assert_eq!(b.poll_batch(t0).map(|b| b.count), Some(1));
        // Busy: what arrives within max_delay of that batch waits for the next.
        let t1 = t0 + Duration::from_micros(300);
        b.try_push(Message::new(1, vec![0u8; 40]), t1)
            .expect("fits");
        assert_eq!(b.poll_timeout(), Some(t0 + ms(1)));
        assert_eq!(b.poll_batch(t1), None, "neither full nor due");
        b.try_push(Message::new(1, vec![0u8; 40]), t1)
            .expect("fits");
        b.try_push(Message::new(1, vec![0u8; 40]), t1)
            .expect("fits");
        let full = b.poll_batch(t1).expect("full batch");
        assert_eq!(full.count, 2, "size cuts a batch at once");
        assert_eq!(b.poll_timeout(), Some(t1 + ms(1)));
        assert_eq!(b.poll_batch(t1 + Duration::from_micros(999)), None);
        assert_eq!(b.poll_batch(t1 + ms(1)).map(|b| b.count), Some(1));
        assert!(b.is_empty());
        // Idle again after max_delay: at once.
        let t2 = t1 + ms(3);
        b.try_push(Message::new(1, vec![0u8; 40]), t2)
            .expect("fits");
        assert_eq!(b.poll_batch(t2).map(|b| b.count), Some(1));
    }

    proptest::proptest! {
        /// Whatever the arrivals, no message waits longer than max_delay once
        /// the caller polls when told to.
        #[test]
        fn no_message_waits_longer_than_max_delay(gaps in proptest::collection::vec(0u64..3000, 1..60)) {
            let t0 = Instant::now();
            let mut b = Batcher::new(Config { max_batch_bytes: 1 << 20, ..cfg() });
            let mut now = t0;
            let mut arrivals = std::collections::VecDeque::new();
            for gap in gaps {
                let next = now + Duration::from_micros(gap);
                // Serve every deadline before the next arrival.
                while let Some(due) = b.poll_timeout() {
                    if due > next { break; }
                    now = now.max(due);
                    let batch = b.poll_batch(now).expect("due");
                    for _ in 0..batch.count {
                        let at: Instant = arrivals.pop_front().expect("arrival");
                        proptest::prop_assert!(now - at <= Duration::from_millis(1));
                    }
                }
                now = next;
                b.try_push(Message::new(1, vec![0u8; 10]), now).expect("fits");
                arrivals.push_back(now);
            }
        }
    }

    #[test]
    fn refuses_when_full_and_gives_the_message_back() {
        let t0 = Instant::now();
        let mut b = Batcher::new(cfg());
        for _ in 0..5 {
            b.try_push(Message::new(1, vec![0u8; 40]), t0)
                .expect("fits");
        }
        let m = Message::new(2, vec![0u8; 40]);
        assert_eq!(b.try_push(m.clone(), t0), Err(Refused::Full(m)));
        let big = Message::new(3, vec![0u8; 5 * 1024 * 1024]);
        assert_eq!(b.try_push(big.clone(), t0), Err(Refused::TooLarge(big)));
        b.flush().expect("a batch");
        assert!(
            b.try_push(Message::new(2, vec![0u8; 40]), t0).is_ok(),
            "room again"
        );
    }
}
