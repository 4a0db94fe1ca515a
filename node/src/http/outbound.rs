//! Where a request's notifications, client requests and final answer go: a session stream
//! (logged for resumption) for 2025-11-25 sessions, or the bare response stream for
//! 2026-07-28 requests.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::stream_queue;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use parking_lot::Mutex;
use serde_json::Value;

use crate::content::CallError;
use crate::content::context::Outbound;
use crate::jsonrpc::{self, RequestId};
use crate::session::layer::SessionLayer;
use crate::session::{EventId, ProtocolEra, Session, StreamKind};

/// The transport side of one request, as the exchange driver sees it.
pub trait StreamOut: Outbound {
    /// Whether anything was sent yet (then the answer must go on the stream, not as JSON).
    fn opened(&self) -> bool;
    /// Sends the final message (if any) and ends the stream.
    fn finish(&self, final_json: Option<Vec<u8>>);
    /// Resolves when the client is gone and the work should stop (2026-07-28: closing the
    /// stream is cancellation; 2025-11-25: never, the client cancels explicitly).
    fn gone(&self) -> BoxFuture<'static, ()>;
}

/// Output of a request inside a legacy session.
pub struct SessionOut {
    session: Arc<Session>,
    tx: Mutex<Option<stream_queue::Sender>>,
    stream: Mutex<Option<u32>>,
    log_capacity: usize,
    client_request_timeout: Duration,
    /// The session layer, which copies each event to the replicas.
    layer: Option<Arc<dyn SessionLayer>>,
}

impl std::fmt::Debug for SessionOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionOut")
            .field("session", &self.session.id)
            .finish_non_exhaustive()
    }
}

impl SessionOut {
    /// Output into `session`, with `tx` feeding the POST's response stream once opened.
    pub fn new(
        session: Arc<Session>,
        tx: stream_queue::Sender,
        log_capacity: usize,
        timeout: Duration,
        layer: Option<Arc<dyn SessionLayer>>,
    ) -> Self {
        Self {
            session,
            tx: Mutex::new(Some(tx)),
            stream: Mutex::new(None),
            log_capacity,
            client_request_timeout: timeout,
            layer,
        }
    }

    fn changed(&self) {
        if let Some(layer) = &self.layer {
            layer.changed(&self.session);
        }
    }

    fn send(&self, json: &[u8]) {
        let mut stream = self.stream.lock();
        let mut st = self.session.state.lock();
        let id = match *stream {
            Some(id) => id,
            None => {
                let tx = self.tx.lock();
                let id = st.open_stream(StreamKind::Response, tx.clone());
                if st.version >= ProtocolEra::V2025_11_25
                    && let Some(tx) = &*tx
                {
                    // Priming event: lets the client resume this stream even before the first
                    // real message arrives.
                    let priming = format!("id: {}\ndata: \n\n", EventId { stream: id, seq: 0 });
                    let _ = tx.try_send(Bytes::from(priming));
                }
                *stream = Some(id);
                id
            }
        };
        st.push(id, json, self.log_capacity);
        drop(st);
        drop(stream);
        self.changed();
    }
}

impl Outbound for SessionOut {
    fn notify(&self, method: &str, params: Value) {
        self.send(&jsonrpc::notification(method, &params));
    }

    fn request(
        &self,
        method: &'static str,
        params: Value,
    ) -> BoxFuture<'_, Result<Value, CallError>> {
        Box::pin(async move {
            let (id, rx) = self.session.state.lock().new_client_request();
            self.send(&jsonrpc::request(&RequestId::Number(id), method, &params));
            match tokio::time::timeout(self.client_request_timeout, rx).await {
                Err(_) => Err(CallError::Timeout),
                Ok(Err(_)) => Err(CallError::Cancelled),
                Ok(Ok(Ok(v))) => Ok(v),
                Ok(Ok(Err(e))) => Err(CallError::Client(e)),
            }
        })
    }

    fn end_stream_for_polling(&self, retry_ms: u32) {
        self.end_live(retry_ms);
    }
}

impl SessionOut {
    fn end_live(&self, retry_ms: u32) {
        self.send_priming_only();
        if let Some(tx) = self.tx.lock().take() {
            let _ = tx.try_send(Bytes::from(format!("retry: {retry_ms}\n\n")));
        }
        if let Some(id) = *self.stream.lock()
            && let Some(s) = self.session.state.lock().stream_mut(id)
        {
            s.detach();
        }
    }

    /// Opens the stream (with its priming event) if nothing was sent yet.
    fn send_priming_only(&self) {
        let mut stream = self.stream.lock();
        if stream.is_none() {
            let mut st = self.session.state.lock();
            let tx = self.tx.lock();
            let id = st.open_stream(StreamKind::Response, tx.clone());
            if let Some(tx) = &*tx {
                let priming = format!("id: {}\ndata: \n\n", EventId { stream: id, seq: 0 });
                let _ = tx.try_send(Bytes::from(priming));
            }
            *stream = Some(id);
        }
    }
}

impl StreamOut for SessionOut {
    fn opened(&self) -> bool {
        self.stream.lock().is_some()
    }

    fn finish(&self, final_json: Option<Vec<u8>>) {
        if let Some(json) = final_json {
            self.send(&json);
        }
        if let Some(id) = *self.stream.lock()
            && let Some(s) = self.session.state.lock().stream_mut(id)
        {
            s.finish();
        }
        self.changed();
    }

    fn gone(&self) -> BoxFuture<'static, ()> {
        Box::pin(std::future::pending())
    }
}

/// Output of a stateless 2026-07-28 request: events without ids straight to the response.
#[derive(Debug)]
pub struct DirectOut {
    tx: Mutex<Option<stream_queue::Sender>>,
    closed_probe: stream_queue::Sender,
    opened: AtomicBool,
}

impl DirectOut {
    /// Output feeding `tx`.
    pub fn new(tx: stream_queue::Sender) -> Self {
        Self {
            closed_probe: tx.clone(),
            tx: Mutex::new(Some(tx)),
            opened: AtomicBool::new(false),
        }
    }

    /// Sends one event (dropped if the reader is too slow: these are progress/log updates).
    pub fn send(&self, json: &[u8]) {
        self.opened.store(true, Ordering::Release);
        if let Some(tx) = &*self.tx.lock() {
            let _ = tx.try_send(super::reply::sse_data(json));
        }
    }
}

impl Outbound for DirectOut {
    fn notify(&self, method: &str, params: Value) {
        self.send(&jsonrpc::notification(method, &params));
    }

    fn request(
        &self,
        _method: &'static str,
        _params: Value,
    ) -> BoxFuture<'_, Result<Value, CallError>> {
        Box::pin(async {
            Err(CallError::Internal(
                "no server-to-client requests in 2026-07-28".into(),
            ))
        })
    }
}

impl StreamOut for DirectOut {
    fn opened(&self) -> bool {
        self.opened.load(Ordering::Acquire)
    }

    fn finish(&self, final_json: Option<Vec<u8>>) {
        if let Some(json) = final_json {
            self.send(&json);
        }
        self.tx.lock().take();
    }

    fn gone(&self) -> BoxFuture<'static, ()> {
        let probe = self.closed_probe.clone();
        Box::pin(async move { probe.closed().await })
    }
}
