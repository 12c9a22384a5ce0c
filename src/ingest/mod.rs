//! Evidence from the resolvers a municipality already runs: dnstap over Frame Streams.
//!
//! Owns: the dnstap sockets (`unix:` and `tcp:`, TCP senders limited to `ingest.allow`), the
//! Frame Streams handshake and framing (`framestream`), the dnstap messages (`dnstap`, decoded
//! by prost), and turning each client query or response for a listed name into an attempt
//! (`record`), handed to the same dispatcher the resolver's own attempts go to (identity,
//! store, SIEM). Nothing here waits for the store: the dispatcher's queue is bounded and a
//! full queue drops the record (counted by the recorder, as for the resolver's own).
//! Does not own: the policy (read from the resolver's live settings at each message) or the
//! records' way to the store (`evidence`).

pub mod dnstap;
pub mod framestream;
pub mod record;

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use ipnet::IpNet;
use prost::Message as _;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, UnixListener},
    task::JoinSet,
};
use tokio_util::codec::Framed;
use tracing::{debug, info, warn};

use crate::{
    config::{DnstapSocket, IngestConfig},
    ingest::framestream::{
        CONTROL_ACCEPT, CONTROL_FINISH, CONTROL_READY, CONTROL_START, CONTROL_STOP, Codec, Frame, FrameError,
    },
    resolve::Resolver,
};

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("ingest.dnstap: {0}")]
    Socket(#[source] crate::config::DnstapSocketError),
    #[error("ingest.dnstap {socket}: {source}")]
    Bind { socket: String, source: std::io::Error },
}

/// Why one sender's stream was closed.
#[derive(Debug, thiserror::Error)]
enum SenderError {
    #[error(transparent)]
    Frame(FrameError),
    #[error("unexpected control frame {kind}")]
    Control { kind: u32 },
    #[error("dnstap message: {0}")]
    Message(#[source] prost::DecodeError),
}

/// What ingest counted, for the metrics endpoint and tests.
#[derive(Debug, Default)]
pub struct IngestStats {
    pub messages: AtomicU64,
    /// Client queries and responses for a listed name, handed to the dispatcher.
    pub recorded: AtomicU64,
    /// Senders closed for a malformed frame or message.
    pub malformed: AtomicU64,
    /// TCP senders outside `ingest.allow`, closed at once.
    pub refused: AtomicU64,
}

fn count(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// The dnstap receivers running.
pub struct Ingest {
    pub tcp_addrs: Vec<SocketAddr>,
    pub unix_paths: Vec<PathBuf>,
    pub stats: Arc<IngestStats>,
    tasks: JoinSet<()>,
}

impl Ingest {
    /// Binds every `ingest.dnstap` socket and receives on them. Must be called inside a tokio
    /// runtime.
    pub fn start(config: &IngestConfig, resolver: Arc<Resolver>) -> Result<Ingest, IngestError> {
        let stats = Arc::new(IngestStats::default());
        let mut ingest = Ingest { tcp_addrs: Vec::new(), unix_paths: Vec::new(), stats, tasks: JoinSet::new() };
        let max_frame_bytes = config.max_frame_bytes;
        for socket in config.sockets().map_err(IngestError::Socket)? {
            let name = format!("{socket:?}");
            let bind_error = |source| IngestError::Bind { socket: name.clone(), source };
            let context =
                Context { resolver: Arc::clone(&resolver), stats: Arc::clone(&ingest.stats), max_frame_bytes };
            match socket {
                DnstapSocket::Tcp(address) => {
                    let listener = std::net::TcpListener::bind(address).map_err(bind_error)?;
                    listener.set_nonblocking(true).map_err(bind_error)?;
                    ingest.tcp_addrs.push(listener.local_addr().map_err(bind_error)?);
                    let listener = TcpListener::from_std(listener).map_err(bind_error)?;
                    ingest.tasks.spawn(accept_tcp(listener, config.allow.clone(), context));
                }
                DnstapSocket::Unix(path) => {
                    // A socket file left by an earlier run would make the bind fail.
                    if std::fs::symlink_metadata(&path)
                        .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
                    {
                        let _ = std::fs::remove_file(&path);
                    }
                    let listener = UnixListener::bind(&path).map_err(bind_error)?;
                    ingest.unix_paths.push(path);
                    ingest.tasks.spawn(accept_unix(listener, context));
                }
            }
        }
        info!(tcp = ?ingest.tcp_addrs, unix = ?ingest.unix_paths, "dnstap ingest listening");
        Ok(ingest)
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        for path in &self.unix_paths {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[derive(Clone)]
struct Context {
    resolver: Arc<Resolver>,
    stats: Arc<IngestStats>,
    max_frame_bytes: usize,
}

async fn accept_tcp(listener: TcpListener, allow: Vec<IpNet>, context: Context) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else { continue };
        if !allow.iter().any(|net| net.contains(&peer.ip())) {
            count(&context.stats.refused);
            warn!(sender = %peer, "dnstap sender outside ingest.allow refused");
            continue;
        }
        tokio::spawn(receive(stream, peer.to_string(), context.clone()));
    }
}

async fn accept_unix(listener: UnixListener, context: Context) {
    let mut senders = 0u64;
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        senders += 1;
        tokio::spawn(receive(stream, format!("unix#{senders}"), context.clone()));
    }
}

/// One sender: the handshake, then its messages until STOP (answered FINISH) or the end of the
/// stream. A malformed frame or message closes this sender only.
async fn receive<S: AsyncRead + AsyncWrite + Unpin>(stream: S, sender: String, context: Context) {
    let mut frames = Framed::new(stream, Codec { max_frame_bytes: context.max_frame_bytes });
    let mut state = Sender { name: sender, saw_queries: false, identity: None };
    while let Some(frame) = frames.next().await {
        let result = match frame {
            Err(error) => Err(SenderError::Frame(error)),
            Ok(Frame::Control { kind: CONTROL_READY, .. }) => {
                frames.send(framestream::control(CONTROL_ACCEPT)).await.map_err(SenderError::Frame)
            }
            Ok(Frame::Control { kind: CONTROL_START, .. }) => Ok(()),
            Ok(Frame::Control { kind: CONTROL_STOP, .. }) => {
                let _ = frames.send(framestream::control(CONTROL_FINISH)).await;
                debug!(sender = %state.name, "dnstap sender stopped");
                return;
            }
            Ok(Frame::Control { kind, .. }) => Err(SenderError::Control { kind }),
            Ok(Frame::Data(payload)) => state.message(&payload, &context),
        };
        if let Err(error) = result {
            count(&context.stats.malformed);
            warn!(sender = %state.name, %error, "dnstap sender sent a malformed frame; closed");
            return;
        }
    }
}

/// What is known of one sender.
struct Sender {
    name: String,
    /// A resolver that logs client queries also logs their responses: only the query counts.
    saw_queries: bool,
    /// The sender's dnstap identity as sent, and as recorded (escaped; the socket's name when
    /// the sender gives none), kept while it stays the same.
    identity: Option<(Vec<u8>, Arc<str>)>,
}

impl Sender {
    fn identity(&mut self, sent: &[u8]) -> Arc<str> {
        match &self.identity {
            Some((bytes, text)) if bytes == sent => Arc::clone(text),
            _ => {
                let text: Arc<str> = if sent.is_empty() {
                    self.name.as_str().into()
                } else {
                    crate::dns::presentation::escape_name(sent).into()
                };
                self.identity = Some((sent.to_vec(), Arc::clone(&text)));
                text
            }
        }
    }

    fn message(&mut self, payload: &Bytes, context: &Context) -> Result<(), SenderError> {
        let tap = dnstap::Dnstap::decode(payload.as_ref()).map_err(SenderError::Message)?;
        count(&context.stats.messages);
        let Some(message) = tap.message.filter(|_| tap.r#type == dnstap::TYPE_MESSAGE) else {
            return Ok(());
        };
        match message.r#type {
            dnstap::CLIENT_QUERY => self.saw_queries = true,
            dnstap::CLIENT_RESPONSE if !self.saw_queries => {}
            _ => return Ok(()),
        }
        let identity = self.identity(tap.identity.as_deref().unwrap_or_default());
        let live = context.resolver.live();
        if let Some(attempt) = record::attempt_of(&message, &identity, &live) {
            count(&context.stats.recorded);
            context.resolver.recorder().record(attempt);
        }
        Ok(())
    }
}
