//! DNS-over-QUIC (RFC 9250, `server.quic`) and DNS-over-HTTPS over HTTP/3 (`server.h3`) for
//! clients, served by hickory-server's `Server`.
//!
//! Owns: starting one hickory-server `Server` for all QUIC and HTTP/3 sockets, with the DoT/DoH
//! certificate (`tls::Certificates`, so a reload reaches new handshakes here too), and the
//! bridge: a `RequestHandler` that hands each query's bytes to the same pipeline as every other
//! listener (`Resolver::answer`: access, policy, cache, upstream, attempt records with transport
//! `quic` or `h3`) and turns the wire answer back into the `MessageResponse` hickory-server
//! sends: rcode, flags, every section and the OPT record with its options (EDE included).
//! Does not own: the QUIC and HTTP/3 protocol work (hickory-server, hickory-net, quinn, h3), or
//! the answer (`resolve`).
//!
//! Where hickory-server 0.26 sets the limits (see docs/operator/listeners.md for the measurements): handshakes
//! are completed one at a time in the accept loop (5 s bound each); a DoQ connection's streams
//! are read one at a time (the bridge answers each in a task of its own, up to `PER_CONNECTION`
//! at once per connection, so a slow upstream answer holds up no later stream on the
//! connection); DoH3 reads only the POST body and ignores
//! method and path; a connection is closed after 100 requests; the idle bound is
//! `server.tcp_idle_timeout_ms`. Access: hickory-server checks nothing before our handler (its
//! own access list would answer REFUSED); the pipeline drops a query from outside `access.allow`
//! as on every transport, and the client gets no answer: the earliest point the crate offers is
//! after the QUIC handshake, per request.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex, Weak},
    time::Duration,
};

use hickory_proto::{
    op::{Header, HeaderCounts, Message, MessageType, Metadata, OpCode},
    serialize::binary::{BinDecodable, BinDecoder},
};
use hickory_server::{
    Server,
    net::{runtime::Time, xfer::Protocol},
    server::{Request, RequestHandler, ResponseHandler, ResponseInfo},
    zone_handler::{MessageResponseBuilder, Queries},
};
use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore},
    task::JoinSet,
};
use tokio_util::task::TaskTracker;
use tracing::debug;

use crate::{
    evidence::attempt::Transport,
    listen::tls::Certificates,
    resolve::{Client, Resolver},
};

/// Queries of one connection answered at once; the next waits for one of them. Over DoQ the
/// wait holds up hickory-server's reading of that connection's further streams, so a client
/// cannot queue unbounded work.
pub const PER_CONNECTION: usize = 16;

/// Hands hickory-server's requests to the pipeline and its answers back.
pub(crate) struct Bridge {
    resolver: Arc<Resolver>,
    in_flight: TaskTracker,
    connections: Connections,
}

/// The queries being answered per connection (by the client's address and port, which name a
/// QUIC connection here), `PER_CONNECTION` at most.
#[derive(Default)]
struct Connections {
    open: Mutex<HashMap<SocketAddr, Weak<Semaphore>>>,
}

impl Connections {
    fn slots(&self, client: SocketAddr) -> Arc<Semaphore> {
        let mut open = self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(slots) = open.get(&client).and_then(Weak::upgrade) {
            return slots;
        }
        if open.len() >= 1_024 {
            // Forget connections with nothing in flight.
            open.retain(|_, slots| slots.strong_count() > 0);
        }
        let slots = Arc::new(Semaphore::new(PER_CONNECTION));
        open.insert(client, Arc::downgrade(&slots));
        slots
    }

    /// Waits for a slot of `client`'s connection.
    async fn admit(&self, client: SocketAddr) -> Option<OwnedSemaphorePermit> {
        self.slots(client).acquire_owned().await.ok()
    }
}

#[async_trait::async_trait]
impl RequestHandler for Bridge {
    async fn handle_request<R: ResponseHandler, T: Time>(&self, request: &Request, response: R) -> ResponseInfo {
        let transport = if request.protocol() == Protocol::H3 { Transport::H3 } else { Transport::Quic };
        let client = Client { addr: request.src(), transport };
        let packet = request.as_slice().to_vec();
        let Some(slot) = self.connections.admit(client.addr).await else {
            return ResponseInfo::from(Header {
                metadata: Metadata::new(0, MessageType::Response, OpCode::Query),
                counts: HeaderCounts::default(),
            });
        };
        // Answered in a task: hickory-server awaits this handler before it reads the
        // connection's next DoQ stream, so a slow upstream answer would hold up every later
        // query on the connection.
        let resolver = Arc::clone(&self.resolver);
        self.in_flight.spawn(async move {
            answer(resolver, packet, client, response).await;
            drop(slot);
        });
        // hickory-server only logs this value; the real answer is sent by the task.
        ResponseInfo::from(Header {
            metadata: Metadata::new(0, MessageType::Response, OpCode::Query),
            counts: HeaderCounts::default(),
        })
    }
}

async fn answer<R: ResponseHandler>(resolver: Arc<Resolver>, packet: Vec<u8>, client: Client, mut response: R) {
    let mut out = Vec::new();
    resolver.answer(&packet, client, &mut out).await;
    if out.is_empty() {
        // Dropped (outside access.allow, or not a query): no answer, as on every transport.
        return;
    }
    if let Err(error) = send(&packet, &out, &mut response).await {
        debug!(client = %client.addr.ip(), transport = client.transport.as_str(), %error, "answer not sent");
    }
}

/// Why an answer could not be handed to hickory-server.
#[derive(Debug, thiserror::Error)]
enum BridgeError {
    #[error("cannot decode: {0}")]
    Decode(#[from] hickory_proto::ProtoError),
    #[error("cannot decode the question: {0}")]
    Question(#[from] hickory_proto::serialize::binary::DecodeError),
    #[error("cannot send: {0}")]
    Send(#[from] hickory_server::net::NetError),
}

/// Sends the pipeline's wire `answer` to `query` as a hickory-server `MessageResponse`: its
/// header flags and rcode, its answer, authority and additional records, its OPT record
/// (options included), and the client's question exactly as asked (case kept).
async fn send<R: ResponseHandler>(query: &[u8], answer: &[u8], response: &mut R) -> Result<(), BridgeError> {
    let message = Message::from_vec(answer)?;
    let mut decoder = BinDecoder::new(query);
    let header = Header::read(&mut decoder)?;
    let queries = Queries::read(&mut decoder, usize::from(header.counts.queries))?;
    let mut builder = MessageResponseBuilder::new(&queries, None);
    if let Some(edns) = &message.edns {
        builder.edns(edns);
    }
    let reply = builder.build(
        message.metadata,
        message.answers.iter(),
        message.authorities.iter(),
        std::iter::empty(),
        message.additionals.iter(),
    );
    response.send_response(reply).await?;
    Ok(())
}

/// The running DoQ and DoH3 listeners' addresses.
pub(crate) struct Started {
    pub quic_addrs: Vec<SocketAddr>,
    pub h3_addrs: Vec<SocketAddr>,
}

/// Serves `quic` (DoQ) and `h3` (DoH3) sockets with one hickory-server `Server`, kept in a task
/// of `tasks` (aborting it stops the listeners).
pub(crate) fn start(
    quic: Vec<std::net::UdpSocket>,
    h3: Vec<std::net::UdpSocket>,
    resolver: &Arc<Resolver>,
    certificates: &Arc<Certificates>,
    idle: Duration,
    in_flight: &TaskTracker,
    tasks: &mut JoinSet<()>,
) -> std::io::Result<Started> {
    let mut started = Started { quic_addrs: Vec::new(), h3_addrs: Vec::new() };
    if quic.is_empty() && h3.is_empty() {
        return Ok(started);
    }
    let bridge =
        Bridge { resolver: Arc::clone(resolver), in_flight: in_flight.clone(), connections: Connections::default() };
    let mut server = Server::new(bridge);
    let resolves: Arc<dyn rustls::server::ResolvesServerCert> = certificates.clone();
    for socket in quic {
        let socket = tokio::net::UdpSocket::from_std(socket)?;
        started.quic_addrs.push(socket.local_addr()?);
        server.register_quic_listener(socket, idle, Arc::clone(&resolves))?;
    }
    for socket in h3 {
        let socket = tokio::net::UdpSocket::from_std(socket)?;
        started.h3_addrs.push(socket.local_addr()?);
        server.register_h3_listener(socket, idle, Arc::clone(&resolves), None)?;
    }
    tasks.spawn(async move {
        if let Err(error) = server.block_until_done().await {
            tracing::error!(%error, "QUIC listener stopped");
        }
    });
    Ok(started)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_connection_gets_its_own_slots() {
        let connections = Connections::default();
        let (a, b): (SocketAddr, SocketAddr) = ("127.0.0.1:1000".parse().unwrap(), "127.0.0.1:1001".parse().unwrap());
        let slots = connections.slots(a);
        let held: Vec<_> = (0..PER_CONNECTION).map(|_| Arc::clone(&slots).try_acquire_owned().unwrap()).collect();
        assert!(connections.slots(a).try_acquire_owned().is_err(), "the 17th query waits");
        assert!(connections.slots(b).try_acquire_owned().is_ok(), "another connection does not");
        drop(held);
        assert!(connections.slots(a).try_acquire_owned().is_ok());
    }
}
