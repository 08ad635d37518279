//! A TCP proxy in front of Redis that can be made slow: the nodes reach Redis only through it.
//!
//! `tc netem` needs a kernel module this machine may lack; a proxy works everywhere. While a
//! delay is set, every chunk read in either direction is held for that long before it is
//! forwarded (so a command's reply comes at least twice the delay later). Owns the listener
//! and the forwarding tasks; must not interpret the Redis protocol.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A running proxy; dropping it does not stop it (it lives as long as the runtime).
#[derive(Clone)]
pub struct SlowProxy {
    pub port: u16,
    delay_ms: Arc<AtomicU64>,
}

impl SlowProxy {
    /// Listens on `bind_ip` (a free port) and forwards to 127.0.0.1:`target_port`.
    pub async fn start(bind_ip: &str, target_port: u16) -> std::io::Result<SlowProxy> {
        let listener = TcpListener::bind((bind_ip, 0)).await?;
        let port = listener.local_addr()?.port();
        let delay_ms = Arc::new(AtomicU64::new(0));
        let delay = delay_ms.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let delay = delay.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(("127.0.0.1", target_port)).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    let up = tokio::spawn(pump(cr, sw, delay.clone()));
                    pump(sr, cw, delay).await;
                    up.abort();
                });
            }
        });
        Ok(SlowProxy { port, delay_ms })
    }

    pub fn set_delay(&self, delay: Duration) {
        self.delay_ms
            .store(delay.as_millis() as u64, Ordering::Relaxed);
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay_ms: Arc<AtomicU64>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let delay = delay_ms.load(Ordering::Relaxed);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
