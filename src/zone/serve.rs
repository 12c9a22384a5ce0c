//! Serving the zone: SOA over UDP (hickory-server's `Server`) and TCP, the transfer over TCP
//! (`tcp`, nxguard's own connections, which stream it), both answered by `Handler`.
//!
//! Every request's source must be in `rpz.allow`. With a key set, a transfer must carry a valid
//! TSIG unless its source is in `rpz.allow_unsigned` (Unbound cannot sign transfers); a signed
//! request of any kind gets signed answers. IXFR is answered with the whole zone, which RFC 1995
//! §4 allows. Every refusal is counted.

use std::sync::Arc;

use hickory_proto::{
    op::{Header, HeaderCounts, Metadata, OpCode, ResponseCode},
    rr::{LowerName, Record, RecordType, TSigner},
    serialize::binary::BinEncoder,
};
use hickory_server::{
    Server,
    net::runtime::Time,
    server::{Request, RequestHandler, ResponseHandler, ResponseInfo},
    zone_handler::MessageResponseBuilder,
};
use ipnet::IpNet;
use tokio::{
    net::{TcpListener, UdpSocket},
    task::JoinHandle,
};
use tracing::{debug, info, warn};

use crate::{
    config::RpzConfig,
    zone::{
        Zone, ZoneError, ZoneStats,
        contents::{Transfer, soa},
        tsig::{self, Chain, Rejected},
    },
};

/// Who may ask what: the networks, the key, the networks that need no key.
#[derive(Clone)]
pub struct Handler {
    zone: Arc<Zone>,
    origin: LowerName,
    allow: Vec<IpNet>,
    allow_unsigned: Vec<IpNet>,
    key: Option<TSigner>,
}

impl Handler {
    pub fn new(zone: Arc<Zone>, config: &RpzConfig) -> Result<Handler, ZoneError> {
        let key = config.tsig_key_file.as_deref().map(tsig::read_key).transpose()?;
        Ok(Handler {
            origin: LowerName::from(zone.origin.clone()),
            zone,
            allow: config.allow.clone(),
            allow_unsigned: config.allow_unsigned.clone(),
            key,
        })
    }

    /// Whether `source` is in `rpz.allow`.
    pub fn allows(&self, source: std::net::IpAddr) -> bool {
        self.allow.iter().any(|n| n.contains(&source))
    }

    /// Checks a request's signature: Ok(None) unsigned and acceptable, Ok(Some) signed and
    /// valid (the answer is signed with it), Err the answer's rcode.
    fn authorize(&self, request: &Request, transfer: bool, now: u64) -> Result<Option<Chain>, ResponseCode> {
        let source = request.src().ip();
        match (request.signature.as_deref(), &self.key) {
            (Some(signature), Some(key)) => match tsig::verify(key, request.as_slice(), signature, now) {
                Ok(chain) => Ok(Some(chain)),
                Err(reason) => {
                    warn!(source = %source, reason = ?reason, "rpz request with a bad TSIG refused");
                    Err(ResponseCode::NotAuth)
                }
            },
            (Some(_), None) => {
                warn!(source = %source, reason = ?Rejected::UnknownKey, "rpz request signed but no key is set");
                Err(ResponseCode::NotAuth)
            }
            (None, Some(_)) if transfer && !self.allow_unsigned.iter().any(|n| n.contains(&source)) => {
                warn!(source = %source, "rpz transfer without TSIG refused (source not in rpz.allow_unsigned)");
                Err(ResponseCode::Refused)
            }
            (None, _) => Ok(None),
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(&self, request: &Request, response: R) -> ResponseInfo {
        let source = request.src().ip();
        let stats = &self.zone.stats;
        let query = request.queries.queries().first();
        let in_zone = query.is_some_and(|q| self.origin.zone_of(q.name()));
        if !self.allows(source) {
            ZoneStats::count(&stats.refused);
            warn!(source = %source, "rpz request from a source outside rpz.allow refused");
            return reply(request, ResponseCode::Refused, &[], None, response).await;
        }
        let qtype = query.map(|q| q.query_type());
        let transfer = matches!(qtype, Some(RecordType::AXFR | RecordType::IXFR));
        if request.metadata.op_code != OpCode::Query || !in_zone {
            return reply(request, ResponseCode::Refused, &[], None, response).await;
        }
        let chain = match self.authorize(request, transfer, T::current_time()) {
            Ok(chain) => chain,
            Err(rcode) => {
                ZoneStats::count(&stats.refused);
                return reply(request, rcode, &[], None, response).await;
            }
        };
        let snapshot = self.zone.snapshot();
        match qtype {
            Some(RecordType::AXFR | RecordType::IXFR) if request.protocol().is_stream() => {
                ZoneStats::count(&stats.transfers);
                if chain.is_some() {
                    ZoneStats::count(&stats.signed_transfers);
                }
                info!(source = %source, serial = snapshot.serial, signed = chain.is_some(), "rpz transfer");
                transfer_zone(&self.zone, request, chain, response).await
            }
            Some(RecordType::SOA) if query.is_some_and(|q| q.name() == &self.origin) => {
                ZoneStats::count(&stats.soa_queries);
                debug!(source = %source, serial = snapshot.serial, "rpz soa");
                let soa = soa(&self.zone.origin, snapshot.serial, self.zone.refresh_secs);
                reply(request, ResponseCode::NoError, std::slice::from_ref(&soa), chain, response).await
            }
            _ => reply(request, ResponseCode::Refused, &[], chain, response).await,
        }
    }
}

/// Streams the zone in as many messages as it takes.
async fn transfer_zone<R: ResponseHandler>(
    zone: &Zone,
    request: &Request,
    mut chain: Option<Chain>,
    mut response: R,
) -> ResponseInfo {
    let snapshot = zone.snapshot();
    let policy = snapshot.source.policy();
    let mut transfer = Transfer::new(&zone.origin, snapshot.serial, zone.refresh_secs, policy);
    let mut last = None;
    while let Some(records) = transfer.next_message() {
        match send(request, ResponseCode::NoError, &records, chain.as_mut(), &mut response).await {
            Ok(info) => {
                ZoneStats::count(&zone.stats.transfer_messages);
                last = Some(info);
            }
            Err(()) => return failed(request),
        }
    }
    last.unwrap_or_else(|| failed(request))
}

/// What the server records of an answer that could not be sent.
fn failed(request: &Request) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = ResponseCode::ServFail;
    ResponseInfo::from(Header { metadata, counts: HeaderCounts::default() })
}

/// One answer message (signed when the request was).
async fn reply<R: ResponseHandler>(
    request: &Request,
    rcode: ResponseCode,
    answers: &[Record],
    mut chain: Option<Chain>,
    mut response: R,
) -> ResponseInfo {
    match send(request, rcode, answers, chain.as_mut(), &mut response).await {
        Ok(info) => info,
        Err(()) => failed(request),
    }
}

async fn send<R: ResponseHandler>(
    request: &Request,
    rcode: ResponseCode,
    answers: &[Record],
    chain: Option<&mut Chain>,
    response: &mut R,
) -> Result<ResponseInfo, ()> {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = rcode;
    metadata.authoritative = rcode == ResponseCode::NoError;
    let build = || {
        MessageResponseBuilder::new(&request.queries, None).build(
            metadata,
            answers.iter(),
            std::iter::empty(),
            std::iter::empty(),
            std::iter::empty(),
        )
    };
    let signature = match chain {
        Some(chain) => {
            let mut unsigned = Vec::with_capacity(4096);
            build()
                .destructive_emit(&mut BinEncoder::new(&mut unsigned))
                .map_err(|error| warn!(%error, "rpz answer cannot be encoded"))?;
            let id = request.metadata.id;
            Some(chain.sign(&unsigned, id).map_err(|error| warn!(%error, "rpz answer cannot be signed"))?)
        }
        None => None,
    };
    let mut message = build();
    if let Some(signature) = signature {
        message.set_signature(signature);
    }
    response.send_response(message).await.map_err(|error| debug!(%error, "rpz answer not sent"))
}

/// The zone server running: the zone (to publish new policies to), its addresses, the
/// hickory-server UDP tasks, the TCP accept loops and the NOTIFY task.
pub struct RpzServer {
    pub zone: Arc<Zone>,
    pub addrs: Vec<std::net::SocketAddr>,
    server: Server<Handler>,
    tcp: Vec<JoinHandle<()>>,
    notifier: JoinHandle<()>,
}

impl RpzServer {
    /// Binds `rpz.listen` (TCP, and UDP on the same port) and serves `source`'s policy. Must be
    /// called inside a tokio runtime.
    pub fn start(config: &RpzConfig, source: Arc<dyn super::PolicySource>) -> Result<RpzServer, ZoneError> {
        let zone = Arc::new(Zone::new(config, source)?);
        let handler = Handler::new(Arc::clone(&zone), config)?;
        let mut server = Server::new(handler.clone());
        let (mut addrs, mut tcp) = (Vec::new(), Vec::new());
        for &address in &config.listen {
            let error = |source| ZoneError::Bind { address, source };
            let listener = std::net::TcpListener::bind(address).map_err(error)?;
            // Port 0 picks a TCP port; UDP takes the same one, so SOA and transfers share it.
            let bound = listener.local_addr().map_err(error)?;
            let socket = std::net::UdpSocket::bind(bound).map_err(error)?;
            listener.set_nonblocking(true).map_err(error)?;
            socket.set_nonblocking(true).map_err(error)?;
            let listener = TcpListener::from_std(listener).map_err(error)?;
            tcp.push(tokio::spawn(super::tcp::accept(listener, handler.clone())));
            server.register_socket(UdpSocket::from_std(socket).map_err(error)?);
            addrs.push(bound);
        }
        let notify = super::notify::run(Arc::clone(&zone), config.notify.clone(), handler.key.clone(), zone.changes());
        let notifier = tokio::spawn(notify);
        info!(zone = %zone.origin, addrs = ?addrs, serial = zone.snapshot().serial, "rpz serving");
        Ok(RpzServer { zone, addrs, server, tcp, notifier })
    }

    pub async fn shutdown(mut self) {
        self.notifier.abort();
        for accept in &self.tcp {
            accept.abort();
        }
        if let Err(error) = self.server.shutdown_gracefully().await {
            debug!(%error, "rpz server stopped with an error");
        }
    }
}
