//! What the connection loop needs from a client socket: bytes both ways, plus waiting until
//! bytes (or the end) can be read *without* handing over a buffer — the loop holds no buffer
//! while a connection is idle. A TCP stream in production; an in-memory stream in the fuzz
//! target (`node/fuzz`), so the fuzzer drives the real loop.

use std::future::poll_fn;
use std::io;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// A client connection's byte stream.
pub trait ReadyIo: AsyncRead + AsyncWrite + Unpin + Send {
    /// Ready once a read would return data, the end of the stream, or an error.
    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

impl ReadyIo for TcpStream {
    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        TcpStream::poll_read_ready(self, cx)
    }
}

/// Resolves when `io` has something to read (see [`ReadyIo::poll_read_ready`]).
pub async fn readable<S: ReadyIo>(io: &mut S) -> io::Result<()> {
    poll_fn(|cx| io.poll_read_ready(cx)).await
}

impl<T: ReadyIo + ?Sized> ReadyIo for &mut T {
    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        (**self).poll_read_ready(cx)
    }
}
