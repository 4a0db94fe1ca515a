//! A TCP socket on the runtime's reactor that reads without the extra `EAGAIN` call.
//!
//! tokio's `TcpStream` only learns that a socket is drained from a read that fails with
//! `WouldBlock`, so each event costs two `recvfrom` calls: the one that reads it and the one
//! that finds nothing more. A short read from a TCP socket already says it is drained, and an
//! [`AsyncFd`] guard can record that ([`AsyncFdReadyGuard::clear_ready`] only clears readiness
//! the reactor has not renewed since, so an event that arrives in between is not lost). Held
//! streams and call connections read through this; a call then costs one `sendto`, one
//! `recvfrom` and its share of `epoll_wait`.
//!
//! [`AsyncFdReadyGuard::clear_ready`]: tokio::io::unix::AsyncFdReadyGuard::clear_ready

use std::io::{Read as _, Write as _};
use std::net::TcpStream;

use tokio::io::unix::{AsyncFd, AsyncFdReadyGuard};

/// A connected, non-blocking TCP socket registered with the reactor.
#[derive(Debug)]
pub struct Sock {
    fd: AsyncFd<TcpStream>,
}

impl Sock {
    /// Takes a connected tokio stream over.
    pub fn new(stream: tokio::net::TcpStream) -> std::io::Result<Self> {
        let std = stream.into_std()?;
        std.set_nonblocking(true)?;
        // `AsyncFd::new` is deprecated because a `T: AsRawFd` that does not own its descriptor
        // could close it under the reactor (tokio#8587); its replacement is `unsafe`, which
        // this crate forbids. A `std::net::TcpStream` owns its descriptor until dropped, which
        // happens after the `AsyncFd` deregisters it, so the safe constructor is sound here.
        #[allow(deprecated)]
        let fd = AsyncFd::new(std)?;
        Ok(Self { fd })
    }

    /// Writes all of `data`.
    pub async fn write_all(&self, mut data: &[u8]) -> std::io::Result<()> {
        while !data.is_empty() {
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|s| s.get_ref().write(data)) {
                Ok(Ok(0)) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(Ok(n)) => data = &data[n..],
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => {}
            }
        }
        Ok(())
    }

    /// Reads into `buf` once data is there; 0 at the end of the stream. A read that does not
    /// fill `buf` marks the socket drained, so the next call waits for the reactor instead of
    /// trying a read that would fail.
    pub async fn read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if let Some(r) = self.readable().await?.read(buf) {
                return r;
            }
        }
    }

    /// Waits until the socket may be read (the read itself is then synchronous, so a caller
    /// can lend it a buffer it may not hold across an await).
    pub async fn readable(&self) -> std::io::Result<Readable<'_>> {
        Ok(Readable(self.fd.readable().await?))
    }
}

/// A socket the reactor said is readable.
#[derive(Debug)]
pub struct Readable<'a>(AsyncFdReadyGuard<'a, TcpStream>);

impl Readable<'_> {
    /// Reads into `buf`: `None` when there was nothing after all (wait again), else what the
    /// read returned (0: the end of the stream).
    pub fn read(&mut self, buf: &mut [u8]) -> Option<std::io::Result<usize>> {
        match self.0.try_io(|s| s.get_ref().read(buf)) {
            Ok(Ok(n)) => {
                if n > 0 && n < buf.len() {
                    self.0.clear_ready();
                }
                Some(Ok(n))
            }
            Ok(Err(e)) => Some(Err(e)),
            Err(_would_block) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn reads_every_piece_as_it_arrives() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.expect("accept");
            for i in 0..20u8 {
                s.write_all(&[b'a' + i]).await.expect("write");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        });
        let sock =
            Sock::new(tokio::net::TcpStream::connect(addr).await.expect("connect")).expect("sock");
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        while got.len() < 20 {
            let n = tokio::time::timeout(std::time::Duration::from_secs(2), sock.read(&mut buf))
                .await
                .expect("each piece is read within 2 s")
                .expect("read");
            assert!(n > 0);
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, (0..20u8).map(|i| b'a' + i).collect::<Vec<_>>());
        server.await.expect("server");
    }
}
