//! The plain TCP listener and the length-framed stream loop that DoT shares.
//!
//! Owns: accepting TCP connections (access check first, then the connection caps), and serving
//! 2-byte length-framed queries (RFC 7766 §8; RFC 7858 §3.3 over TLS) on one connection:
//! pipelined, answered out of order as each is ready (RFC 7766 §6.2.1.1) up to a per-connection
//! cap, with an idle timeout that only answered queries renew.
//! Must not touch: what the answer is (`resolve`) or TLS (`tls`).

use std::{sync::Arc, time::Duration};

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpListener,
    task::JoinSet,
    time::Instant,
};
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use crate::{
    config::Config,
    resolve::Transport,
    resolve::{Client, Outcome, Resolver, Step, access::Verdict, limits::ConnectionLimits},
};

/// How one connection is served: `server.tcp_idle_timeout_ms` and
/// `server.tcp_max_in_flight_per_connection`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StreamLimits {
    pub idle: Duration,
    pub max_in_flight: usize,
}

impl StreamLimits {
    pub fn of(config: &Config) -> StreamLimits {
        StreamLimits {
            idle: Duration::from_millis(config.server.tcp_idle_timeout_ms),
            max_in_flight: config.server.tcp_max_in_flight_per_connection.max(1),
        }
    }
}

pub(crate) async fn serve_tcp(
    resolver: Arc<Resolver>,
    listener: TcpListener,
    limits: StreamLimits,
    connections: Arc<ConnectionLimits>,
    in_flight: TaskTracker,
) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                // A client outside access.allow would get no answer: closed before it can take
                // one of the connection slots the allowed clients need (as the DoT listener does).
                if resolver.live().access.check(peer.ip()) == Verdict::Drop {
                    debug!(client = %peer.ip(), "tcp connection outside access.allow closed");
                    continue;
                }
                // Over the caps: close at once (RFC 7766 §6.2.2 lets a server refuse).
                let Some(slot) = connections.admit(peer.ip()) else {
                    debug!(client = %peer.ip(), "tcp connection refused: too many open");
                    continue;
                };
                let resolver = Arc::clone(&resolver);
                in_flight.spawn(async move {
                    let _ = stream.set_nodelay(true);
                    serve_stream(resolver, stream, Client { addr: peer, transport: Transport::Tcp }, limits).await;
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
/// the client closes it or it stays idle too long.
///
/// Queries are pipelined: blocked and cached answers are written at once, queries for the
/// upstream run beside each other (at most `limits.max_in_flight`; beyond that the connection
/// is not read until one finishes) and each answer is written when it is ready, so a slow
/// upstream answer holds up no other (RFC 7766 §6.2.1.1). The idle timer runs from the last
/// answered query: a query that is dropped, refused or malformed does not renew it, nor do bytes
/// that never make a whole query, and the connection is never closed while an answer is pending.
pub(crate) async fn serve_stream<S>(resolver: Arc<Resolver>, stream: S, client: Client, limits: StreamLimits)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut received = Vec::with_capacity(1024);
    let mut upstream: JoinSet<(Vec<u8>, Outcome)> = JoinSet::new();
    let mut out = Vec::new();
    // The length prefix and the answer, written with one call; reused for every answer.
    let mut framed = Vec::new();
    let mut idle_until = Instant::now() + limits.idle;
    let mut closed = false;
    loop {
        // Every whole query already read, as far as the cap allows.
        while upstream.len() < limits.max_in_flight {
            let Some(len) = frame_len(&received) else { break };
            // Answered in place; only a query that waits for an upstream gets its own copy.
            match resolver.answer_locally(&received[2..2 + len], client, &mut out, std::time::Instant::now()) {
                Step::Done(outcome) => {
                    received.drain(..2 + len);
                    if !write_framed(&mut writer, &mut framed, &out, limits.idle).await {
                        return;
                    }
                    renew(&mut idle_until, outcome, limits.idle);
                }
                Step::Upstream(forward) => {
                    let packet = received[2..2 + len].to_vec();
                    received.drain(..2 + len);
                    let resolver = Arc::clone(&resolver);
                    upstream.spawn(async move {
                        let mut out = Vec::new();
                        let outcome = resolver.answer_from_upstream(&packet, client, forward, &mut out).await;
                        (out, outcome)
                    });
                }
            }
        }
        if closed && upstream.is_empty() {
            return;
        }
        let reading = !closed && upstream.len() < limits.max_in_flight;
        tokio::select! {
            // `read_buf` is cancel-safe: bytes read before another branch wins stay in `received`.
            read = reader.read_buf(&mut received), if reading => match read {
                Ok(0) | Err(_) => closed = true,
                Ok(_) => {}
            },
            Some(done) = upstream.join_next(), if !upstream.is_empty() => {
                let Ok((answer, outcome)) = done else { continue };
                if !write_framed(&mut writer, &mut framed, &answer, limits.idle).await {
                    return;
                }
                renew(&mut idle_until, outcome, limits.idle);
            }
            () = tokio::time::sleep_until(idle_until), if upstream.is_empty() => return,
        }
    }
}

/// The length of the whole length-prefixed message at the front of `received`, if it is all
/// there (the message is `received[2..2 + len]`).
fn frame_len(received: &[u8]) -> Option<usize> {
    let len = usize::from(u16::from_be_bytes([*received.first()?, *received.get(1)?]));
    (received.len() >= 2 + len).then_some(len)
}

/// Writes `answer` with its length prefix (nothing when it is empty); false when the
/// connection is gone, or the client has read nothing for an idle period (a client that never
/// reads must not hold its slot either).
async fn write_framed<W: AsyncWrite + Unpin>(
    writer: &mut W,
    framed: &mut Vec<u8>,
    answer: &[u8],
    idle: Duration,
) -> bool {
    if answer.is_empty() {
        return true;
    }
    framed.clear();
    framed.extend_from_slice(&(answer.len() as u16).to_be_bytes());
    framed.extend_from_slice(answer);
    matches!(tokio::time::timeout(idle, writer.write_all(framed)).await, Ok(Ok(())))
}

/// An answered query keeps the connection open for another idle period; one that was dropped,
/// refused or malformed does not, so a source can't hold a connection slot with junk.
fn renew(idle_until: &mut Instant, outcome: Outcome, idle: Duration) {
    if !matches!(outcome, Outcome::Dropped | Outcome::Refused | Outcome::Malformed) {
        *idle_until = Instant::now() + idle;
    }
}
