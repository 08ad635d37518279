//! The connections accepted on the API/peer port: TCP keepalive, no Nagle's algorithm, and a
//! failed accept (out of file descriptors) pauses accepting briefly instead of busy-looping.
//!
//! Invariant: at most `max_connections` (lowered to fit the open-files limit) are open at once,
//! one more is closed as soon as it is accepted, and a connection that has not sent its first
//! bytes (the HTTP/2 preface or a TLS ClientHello) within `handshake_timeout` is closed. Owns
//! the accept loop only: it must not read what a connection carries.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tokio_stream::Stream;
use tonic::transport::server::{Connected, TcpConnectInfo, TcpIncoming};
use tracing::warn;

use crate::config::ConnectionLimits;

/// The bytes a connection must send within the handshake timeout: the length of the HTTP/2
/// client preface, which every TLS ClientHello exceeds too.
const HANDSHAKE_BYTES: usize = 24;
/// How long accepting pauses after an accept failed (typically: no file descriptor left).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// At most one warning per this interval about refused connections or failed accepts.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The accepted connections of a listener, within `limits`.
pub(crate) struct Guarded {
    incoming: TcpIncoming,
    permits: Arc<Semaphore>,
    max_connections: usize,
    handshake_timeout: Duration,
    backoff: Option<Pin<Box<Sleep>>>,
    refused: u64,
    last_warning: Option<Instant>,
}

impl Guarded {
    pub(crate) fn new(listener: TcpListener, limits: &ConnectionLimits) -> Guarded {
        let max_connections = effective_max_connections(limits.max_connections);
        if max_connections < limits.max_connections {
            warn!(
                configured = limits.max_connections,
                max_connections,
                "the open-files limit (ulimit -n) is too low for connections.max_connections: \
                 lowered to leave room for the node's own files"
            );
        }
        let incoming = TcpIncoming::from(listener)
            // Replies are small and latency-bound: Nagle plus delayed acknowledgements would
            // hold some back for tens of milliseconds.
            .with_nodelay(Some(true))
            // A peer that vanished without closing (power loss, partition) is noticed and its
            // connection's slot freed.
            .with_keepalive(Some(limits.keepalive_interval))
            .with_keepalive_interval(Some(limits.keepalive_interval))
            .with_keepalive_retries(Some(3));
        Guarded {
            incoming,
            permits: Arc::new(Semaphore::new(max_connections)),
            max_connections,
            handshake_timeout: limits.handshake_timeout,
            backoff: None,
            refused: 0,
            last_warning: None,
        }
    }

    /// Logs a refusal or failure, at most once per `WARN_EVERY`.
    fn warn_now(&mut self) -> bool {
        let now = Instant::now();
        if self
            .last_warning
            .is_some_and(|last| now.duration_since(last) < WARN_EVERY)
        {
            return false;
        }
        self.last_warning = Some(now);
        true
    }
}

impl Stream for Guarded {
    type Item = io::Result<GuardedStream>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(backoff) = self.backoff.as_mut() {
                ready!(backoff.as_mut().poll(cx));
                self.backoff = None;
            }
            let stream = match ready!(Pin::new(&mut self.incoming).poll_next(cx)) {
                None => return Poll::Ready(None),
                Some(Ok(stream)) => stream,
                Some(Err(err)) => {
                    if self.warn_now() {
                        warn!(%err, "cannot accept connections; pausing accepts briefly");
                    }
                    self.backoff = Some(Box::pin(tokio::time::sleep(ACCEPT_BACKOFF)));
                    continue;
                }
            };
            match self.permits.clone().try_acquire_owned() {
                Ok(permit) => {
                    let stream = GuardedStream::new(stream, permit, self.handshake_timeout);
                    return Poll::Ready(Some(Ok(stream)));
                }
                Err(_) => {
                    // Closed at once: the connections already open (the peers' among them)
                    // keep working, and a file descriptor is held only for this instant.
                    drop(stream);
                    self.refused += 1;
                    if self.warn_now() {
                        warn!(
                            max_connections = self.max_connections,
                            refused_so_far = self.refused,
                            "connection limit reached: refusing new connections"
                        );
                    }
                }
            }
        }
    }
}

/// An accepted connection. It holds one of the listener's permits until it is closed.
pub(crate) struct GuardedStream {
    inner: TcpStream,
    _permit: OwnedSemaphorePermit,
    /// Until the first `HANDSHAKE_BYTES` have arrived: when they must have.
    handshake: Option<Pin<Box<Sleep>>>,
    received: usize,
}

impl GuardedStream {
    fn new(inner: TcpStream, permit: OwnedSemaphorePermit, timeout: Duration) -> GuardedStream {
        GuardedStream {
            inner,
            _permit: permit,
            handshake: Some(Box::pin(tokio::time::sleep(timeout))),
            received: 0,
        }
    }
}

impl Connected for GuardedStream {
    /// The TCP stream's own: `Request::remote_addr` and `peer_certs` look for exactly this.
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.inner.connect_info()
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let this = &mut *self;
        let Some(deadline) = this.handshake.as_mut() else {
            return polled;
        };
        match polled {
            Poll::Ready(Ok(())) => {
                let read = buf.filled().len() - before;
                this.received += read;
                // End of stream also ends the wait: the connection is closing anyway.
                if read == 0 || this.received >= HANDSHAKE_BYTES {
                    this.handshake = None;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => match deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client sent nothing within the handshake timeout",
                ))),
                Poll::Pending => Poll::Pending,
            },
            other => other,
        }
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The connection limit to use: `configured`, lowered when the process may not open that many
/// files with room to spare for its own (storage, peers, Redis).
pub(crate) fn effective_max_connections(configured: usize) -> usize {
    match open_files_limit() {
        Some(files) => {
            let room = files.saturating_sub(RESERVED_FILES).max(files / 2);
            configured.min(room.max(1))
        }
        None => configured,
    }
}

/// File descriptors kept for the node's own use when the connection limit is derived from the
/// process's open-files limit.
const RESERVED_FILES: usize = 128;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn open_files_limit() -> Option<usize> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes into the struct it is given.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    (rc == 0 && limit.rlim_cur != libc::RLIM_INFINITY)
        .then(|| usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX))
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn open_files_limit() -> Option<usize> {
    None
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn limits(max_connections: usize, handshake_ms: u64) -> ConnectionLimits {
        ConnectionLimits {
            max_connections,
            handshake_timeout: Duration::from_millis(handshake_ms),
            ..ConnectionLimits::default()
        }
    }

    async fn listener() -> (TcpListener, std::net::SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        (listener, addr)
    }

    #[tokio::test]
    async fn a_connection_beyond_the_limit_is_closed_and_its_slot_comes_back() {
        use tokio_stream::StreamExt;
        let (listener, addr) = listener().await;
        let mut guarded = Guarded::new(listener, &limits(1, 60_000));
        let _first_client = TcpStream::connect(addr).await.unwrap();
        let first = guarded.next().await.unwrap().unwrap();
        let mut second_client = TcpStream::connect(addr).await.unwrap();
        let third_client = TcpStream::connect(addr).await.unwrap();
        // The second is refused at once: its client reads end of stream.
        let accepted = tokio::time::timeout(Duration::from_millis(300), guarded.next()).await;
        assert!(
            accepted.is_err(),
            "a connection beyond the limit was served"
        );
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), second_client.read(&mut byte))
            .await
            .expect("the refused connection is closed");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        // Closing the first frees its slot for the next.
        drop(first);
        drop(third_client);
        let _fourth_client = TcpStream::connect(addr).await.unwrap();
        let next = tokio::time::timeout(Duration::from_secs(5), guarded.next()).await;
        assert!(matches!(next, Ok(Some(Ok(_)))));
    }

    #[tokio::test]
    async fn a_silent_connection_times_out_and_a_talking_one_does_not() {
        use tokio_stream::StreamExt;
        let (listener, addr) = listener().await;
        let mut guarded = Guarded::new(listener, &limits(10, 200));
        let _silent_client = TcpStream::connect(addr).await.unwrap();
        let mut silent = guarded.next().await.unwrap().unwrap();
        let mut buf = [0u8; 64];
        let err = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf))
            .await
            .expect("the handshake timeout ends the read")
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);

        let mut talking_client = TcpStream::connect(addr).await.unwrap();
        let mut talking = guarded.next().await.unwrap().unwrap();
        talking_client
            .write_all(&[b'x'; HANDSHAKE_BYTES])
            .await
            .unwrap();
        let mut got = 0;
        while got < HANDSHAKE_BYTES {
            got += talking.read(&mut buf[got..]).await.unwrap();
        }
        // Past the handshake, a quiet spell is not an error.
        let quiet = tokio::time::timeout(Duration::from_millis(500), talking.read(&mut buf)).await;
        assert!(quiet.is_err(), "{quiet:?}");
    }

    #[test]
    fn the_limit_leaves_room_for_the_nodes_own_files() {
        let configured = usize::MAX;
        let effective = effective_max_connections(configured);
        if let Some(files) = open_files_limit() {
            assert!(effective < files, "{effective} >= {files}");
        }
        assert!(effective >= 1);
    }
}
