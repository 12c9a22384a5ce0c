//! The plain TCP listener and the length-framed stream loop that DoT shares.
//!
//! Owns: accepting TCP connections under the connection caps, and serving 2-byte length-framed
//! queries (RFC 7766 §8; RFC 7858 §3.3 over TLS) on one connection with its idle timeout.
//! Must not touch: what the answer is (`resolve`) or TLS (`tls`).

use std::{sync::Arc, time::Duration};

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpListener,
};
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use crate::{
    evidence::attempt::Transport,
    resolve::{Client, Resolver, limits::ConnectionLimits},
};

pub(crate) async fn serve_tcp(
    resolver: Arc<Resolver>,
    listener: TcpListener,
    idle: Duration,
    connections: Arc<ConnectionLimits>,
    in_flight: TaskTracker,
) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                // Over the caps: close at once (RFC 7766 §6.2.2 lets a server refuse).
                let Some(slot) = connections.admit(peer.ip()) else {
                    debug!(client = %peer.ip(), "tcp connection refused: too many open");
                    continue;
                };
                let resolver = Arc::clone(&resolver);
                in_flight.spawn(async move {
                    let _ = stream.set_nodelay(true);
                    serve_stream(resolver, stream, Client { addr: peer, transport: Transport::Tcp }, idle).await;
                    drop(slot);
                });
            }
            Err(error) => {
                // Out of file descriptors and the like: back off briefly instead of spinning.
                warn!(%error, "tcp accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Serves length-framed queries (RFC 7766 §8; RFC 7858 §3.3 over TLS) on one connection until
/// the client closes it or stays idle too long.
pub(crate) async fn serve_stream<S>(resolver: Arc<Resolver>, mut stream: S, client: Client, idle: Duration)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut packet = Vec::new();
    let mut out = Vec::new();
    loop {
        let len = match tokio::time::timeout(idle, stream.read_u16()).await {
            Ok(Ok(len)) => usize::from(len),
            _ => return,
        };
        packet.resize(len, 0);
        if !matches!(tokio::time::timeout(idle, stream.read_exact(&mut packet)).await, Ok(Ok(_))) {
            return;
        }
        resolver.answer(&packet, client, &mut out).await;
        if out.is_empty() {
            continue;
        }
        let mut framed = Vec::with_capacity(out.len() + 2);
        framed.extend_from_slice(&(out.len() as u16).to_be_bytes());
        framed.extend_from_slice(&out);
        if stream.write_all(&framed).await.is_err() {
            return;
        }
    }
}
