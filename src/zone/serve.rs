//! Serving the zone: SOA over UDP (hickory-server's `Server`) and TCP, the transfer over TCP
//! (`tcp`, nxguard's own connections, which stream it), both answered by `Handler`.
//!
//! Every request's source must be in `rpz.allow`. With a key set, a transfer must carry a valid
//! TSIG unless its source is in `rpz.allow_unsigned` (Unbound cannot sign transfers); a signed
//! request of any kind gets signed answers. An IXFR gets the differences from the secondary's
//! serial when they are kept, else the whole zone (RFC 1995 §4). Every refusal is counted.

use std::sync::Arc;

use hickory_proto::{
    op::{Header, HeaderCounts, Metadata, OpCode, ResponseCode},
    rr::{LowerName, RData, Record, RecordType, TSigner},
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
        Snapshot, Zone, ZoneError, ZoneStats,
        changes::ChangeSet,
        contents::{Messages, soa},
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
        let qtype = query.map(hickory_proto::op::LowerQuery::query_type);
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
                self.transfer(request, &snapshot, chain, response).await
            }
            Some(RecordType::IXFR) if query.is_some_and(|q| q.name() == &self.origin) => {
                // Over UDP only the current SOA, which tells the secondary to ask over TCP when
                // it is behind (RFC 1995 §2).
                let soa = soa(&self.zone.origin, snapshot.serial, self.zone.refresh_secs);
                reply(request, ResponseCode::NoError, std::slice::from_ref(&soa), chain, response).await
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

impl Handler {
    /// Answers an AXFR with the whole zone, an IXFR with what `ixfr_answer` picks; counts it.
    async fn transfer<R: ResponseHandler>(
        &self,
        request: &Request,
        snapshot: &Snapshot,
        chain: Option<Chain>,
        response: R,
    ) -> ResponseInfo {
        let stats = &self.zone.stats;
        ZoneStats::count(&stats.transfers);
        if chain.is_some() {
            ZoneStats::count(&stats.signed_transfers);
        }
        let ixfr = request.queries.queries().first().is_some_and(|q| q.query_type() == RecordType::IXFR);
        let answer = if ixfr { ixfr_answer(request, snapshot) } else { Ixfr::Whole };
        let (origin, ttl, serial) = (&self.zone.origin, self.zone.refresh_secs, snapshot.serial);
        let messages = match answer {
            Ixfr::UpToDate => Messages::records(vec![soa(origin, serial, ttl)]),
            Ixfr::Changes(changes) => {
                ZoneStats::count(&stats.incremental_transfers);
                Messages::ixfr(origin, serial, ttl, changes)
            }
            Ixfr::Whole => Messages::axfr(origin, serial, ttl, snapshot.source.policy()),
        };
        let source = request.src().ip();
        info!(source = %source, serial, ixfr, answer = answer.name(), signed = chain.is_some(), "rpz transfer");
        stream(stats, request, messages, chain, response).await
    }
}

/// What an IXFR gets (RFC 1995): the current SOA alone when the secondary is up to date (§2),
/// the differences from its serial when they are all kept, else the whole zone (§4).
enum Ixfr<'s> {
    UpToDate,
    Changes(&'s [Arc<ChangeSet>]),
    Whole,
}

impl Ixfr<'_> {
    fn name(&self) -> &'static str {
        match self {
            Ixfr::UpToDate => "up to date",
            Ixfr::Changes(_) => "differences",
            Ixfr::Whole => "whole zone",
        }
    }
}

/// The secondary's serial is the SOA in the IXFR's authority section (RFC 1995 §3).
fn ixfr_answer<'s>(request: &Request, snapshot: &'s Snapshot) -> Ixfr<'s> {
    let held = request.authorities.iter().find_map(|record| match &record.data {
        RData::SOA(soa) => Some(soa.serial),
        _ => None,
    });
    match held {
        None => Ixfr::Whole,
        // Same or newer (RFC 1982 arithmetic): nothing to send.
        Some(held) if held.wrapping_sub(snapshot.serial) < (1 << 31) => Ixfr::UpToDate,
        Some(held) => snapshot.changes_since(held).map_or(Ixfr::Whole, Ixfr::Changes),
    }
}

/// Sends a transfer's messages one after the other, each signed in the chain.
async fn stream<R: ResponseHandler>(
    stats: &ZoneStats,
    request: &Request,
    mut messages: Messages<'_>,
    mut chain: Option<Chain>,
    mut response: R,
) -> ResponseInfo {
    let mut last = None;
    while let Some(records) = messages.next_message() {
        match send(request, ResponseCode::NoError, &records, chain.as_mut(), &mut response).await {
            Ok(info) => {
                ZoneStats::count(&stats.transfer_messages);
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
