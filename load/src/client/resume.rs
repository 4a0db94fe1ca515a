//! Reconnection: exponential backoff with jitter, and a legacy session whose GET stream survives
//! a lost connection by reconnecting with the same `Mcp-Session-Id` and `Last-Event-ID`, so no
//! event is lost and the session is never re-initialized.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::{Client, ClientError, SseEvent};

/// Exponential backoff with full jitter, bounded in attempts.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// First delay.
    pub initial: Duration,
    /// Largest delay.
    pub max: Duration,
    /// Attempts before giving up (the first try included).
    pub attempts: u32,
    seed: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Duration::from_millis(50), Duration::from_secs(5), 8)
    }
}

impl Backoff {
    /// A backoff from `initial` doubling up to `max`, for at most `attempts` tries.
    pub fn new(initial: Duration, max: Duration, attempts: u32) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9e37_79b9, |d| d.as_nanos() as u64)
            | 1;
        Self {
            initial,
            max,
            attempts,
            seed,
        }
    }

    /// The delay before retry number `retry` (1 = the first retry): uniformly random in
    /// `[cap/2, cap]` where `cap = min(max, initial * 2^(retry-1))`, so a crowd of clients that
    /// lost the same node does not come back in lockstep.
    pub fn delay(&mut self, retry: u32) -> Duration {
        let cap = self
            .initial
            .saturating_mul(1u32 << retry.saturating_sub(1).min(20))
            .min(self.max);
        // xorshift64: jitter needs spread, not cryptographic quality.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let frac = (self.seed % 1_000) as f64 / 1_000.0;
        cap.mul_f64(0.5 + frac / 2.0)
    }

    /// Runs `attempt` until it succeeds, the error is not worth retrying, or the attempts run
    /// out; sleeps [`Backoff::delay`] between tries.
    pub async fn retry<T, F, Fut>(&mut self, mut attempt: F) -> Result<T, ClientError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, ClientError>>,
    {
        let mut tries = 0;
        loop {
            tries += 1;
            match attempt().await {
                Ok(v) => return Ok(v),
                Err(e) if tries >= self.attempts.max(1) || !e.is_transient() => return Err(e),
                Err(_) => tokio::time::sleep(self.delay(tries)).await,
            }
        }
    }
}

impl ClientError {
    /// Worth retrying on a new connection: the connection failed, or the server is shedding load
    /// (429/503). A 404 for a session means it is gone and is not transient.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Connect(_) | Self::Io(_) | Self::BadHttp(_) | Self::Timeout => true,
            Self::Status(s) => matches!(s, 429 | 502 | 503 | 504),
            Self::Rpc { .. } | Self::BadAnswer(_) => false,
        }
    }
}

/// Where to connect.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Server address.
    pub addr: SocketAddr,
    /// MCP path.
    pub path: String,
    /// Local source address, if any.
    pub source: Option<IpAddr>,
}

impl Endpoint {
    /// Opens a new connection to the endpoint.
    pub async fn connect(&self) -> Result<Client, ClientError> {
        Client::connect(self.addr, &self.path, self.source).await
    }
}

/// A legacy session with its GET stream, resumed across lost connections.
#[derive(Debug)]
pub struct ResumableSession {
    endpoint: Endpoint,
    backoff: Backoff,
    session: String,
    last_event_id: Option<String>,
    stream: Option<Client>,
    reconnects: u64,
}

impl ResumableSession {
    /// Initializes a session (with backoff) and opens its GET stream.
    pub async fn open(endpoint: Endpoint, mut backoff: Backoff) -> Result<Self, ClientError> {
        let session = backoff
            .retry(|| async {
                let mut c = endpoint.connect().await?;
                c.initialize().await
            })
            .await?;
        let mut me = Self {
            endpoint,
            backoff,
            session,
            last_event_id: None,
            stream: None,
            reconnects: 0,
        };
        me.reconnect().await?;
        me.reconnects = 0;
        Ok(me)
    }

    /// The session id.
    pub fn session(&self) -> &str {
        &self.session
    }

    /// The id of the last event received.
    pub fn last_event_id(&self) -> Option<&str> {
        self.last_event_id.as_deref()
    }

    /// Times the stream was re-established after a lost connection.
    pub fn reconnects(&self) -> u64 {
        self.reconnects
    }

    /// A new request connection bound to this session (for `tools/call` etc.).
    pub async fn request_client(&self) -> Result<Client, ClientError> {
        let mut c = self.endpoint.connect().await?;
        c.set_session(Some(self.session.clone()));
        Ok(c)
    }

    /// Drops the stream's connection, as a network failure would (for tests and drills).
    pub fn drop_connection(&mut self) {
        self.stream = None;
    }

    async fn reconnect(&mut self) -> Result<(), ClientError> {
        let (endpoint, session, last) = (
            self.endpoint.clone(),
            self.session.clone(),
            self.last_event_id.clone(),
        );
        let client = self
            .backoff
            .retry(|| {
                let (endpoint, session, last) = (endpoint.clone(), session.clone(), last.clone());
                async move {
                    let mut c = endpoint.connect().await?;
                    c.set_session(Some(session));
                    c.open_stream(last.as_deref()).await?;
                    Ok(c)
                }
            })
            .await?;
        self.stream = Some(client);
        self.reconnects += 1;
        Ok(())
    }

    /// The next event on the session's GET stream, reconnecting with `Last-Event-ID` (with
    /// backoff) when the connection is lost or the server ends the stream. Fails when the
    /// server no longer knows the session (404) or the retries run out.
    pub async fn next_event(&mut self) -> Result<SseEvent, ClientError> {
        loop {
            if self.stream.is_none() {
                self.reconnect().await?;
            }
            let Some(stream) = self.stream.as_mut() else {
                continue;
            };
            match stream.next_event().await {
                Ok(ev) => {
                    if let Some(id) = &ev.id {
                        self.last_event_id = Some(id.clone());
                    }
                    return Ok(ev);
                }
                Err(e) if e.is_transient() => self.stream = None,
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_with_jitter() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1), 5);
        for retry in 1..=10 {
            let cap = Duration::from_millis(100 * (1u64 << (retry - 1).min(20)))
                .min(Duration::from_secs(1));
            let d = b.delay(retry);
            assert!(
                d >= cap / 2 && d <= cap,
                "retry {retry}: {d:?} not in [{:?}, {cap:?}]",
                cap / 2
            );
        }
    }

    #[tokio::test]
    async fn retry_stops_on_permanent_errors_and_after_the_attempts() {
        let mut b = Backoff::new(Duration::from_millis(1), Duration::from_millis(2), 3);
        let mut n = 0;
        let r: Result<(), _> = b
            .retry(|| {
                n += 1;
                async { Err(ClientError::Status(503)) }
            })
            .await;
        assert!(r.is_err());
        assert_eq!(n, 3);
        let mut n = 0;
        let r: Result<(), _> = b
            .retry(|| {
                n += 1;
                async { Err(ClientError::Status(404)) }
            })
            .await;
        assert!(r.is_err());
        assert_eq!(n, 1);
    }
}
