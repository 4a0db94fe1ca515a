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
#[derive(Debug)]
pub struct Batcher {
    config: Config,
    queue: VecDeque<(Instant, Message)>,
    queued_bytes: usize,
}

impl Batcher {
    /// An empty queue.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            queue: VecDeque::new(),
            queued_bytes: 0,
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

    /// When the oldest queued message is due; `None` when the queue is empty.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.queue
            .front()
            .map(|(at, _)| *at + self.config.max_delay)
    }

    /// A batch, if one is full or due at `now`.
    pub fn poll_batch(&mut self, now: Instant) -> Option<Batch> {
        let due = self.poll_timeout().is_some_and(|t| t <= now);
        if due || self.queued_bytes >= self.config.max_batch_bytes {
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
    fn flushes_on_size_then_on_deadline() {
        let t0 = Instant::now();
        let mut b = Batcher::new(cfg());
        b.try_push(Message::new(1, vec![0u8; 40]), t0)
            .expect("fits");
        assert_eq!(b.poll_batch(t0), None, "neither full nor due");
        b.try_push(Message::new(1, vec![0u8; 40]), t0)
            .expect("fits");
        b.try_push(Message::new(1, vec![0u8; 40]), t0)
            .expect("fits");
        let full = b.poll_batch(t0).expect("full batch");
        assert_eq!(full.count, 2);
        assert_eq!(b.poll_timeout(), Some(t0 + Duration::from_millis(1)));
        assert_eq!(b.poll_batch(t0 + Duration::from_micros(999)), None);
        assert_eq!(
            b.poll_batch(t0 + Duration::from_millis(1)).map(|b| b.count),
            Some(1)
        );
        assert!(b.is_empty());
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
