//! Shared test harness: a fake upstream on loopback that counts its calls, a server started
//! in-process on 127.0.0.1:0, a small DNS client over real sockets, and assertion helpers.
#![allow(dead_code)]

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    str::FromStr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use hickory_proto::{
    op::{Edns, Message, MessageType, OpCode, Query, ResponseCode},
    rr::{
        Name, RData, Record, RecordType,
        rdata::{A, AAAA, CNAME, MX, SOA},
    },
};
pub mod attempt;
pub mod history;
pub mod pg;
pub mod quic;

// tests/attempt_events.rs shares this harness and uses none of these.
#[allow(unused_imports)]
pub use attempt::{app, attempt, blocked_by, next_attempt};

use nxguard::{
    config::Config,
    evidence::attempt::Attempt,
    listen::Listeners,
    server::{self, Running},
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, TcpStream, UdpSocket},
    sync::mpsc,
};

pub const UPSTREAM_TTL: u32 = 300;

/// How the fake upstream answers a name (by the name's first label).
/// - `silent…`: never answers.
/// - `nx…`: NXDOMAIN with an SOA (negative TTL 60).
/// - `alias-to-tiktok…`: CNAME to v16.tiktokcdn.com, then an A record for it.
/// - `noedns…`: FORMERR to queries with EDNS, the normal answer without.
/// - `refused…`, `servfail…`, `notimp…`, `formerr…`: that rcode, with or without EDNS.
/// - `inject…`: its A record plus an A record for victim.example.com (answer and additional).
/// - `loop…`: CNAME to loop-b.example.org, which CNAMEs back.
/// - `big…`: 100 A records over UDP (truncated, TC=1), all of them over TCP.
/// - `huge…`: 400 A records over UDP without TC (a 6 KB datagram, more than the 1232 bytes
///   asked for), 3 over TCP.
/// - anything else: one record of the asked type (A, AAAA, MX), TTL 300; NODATA otherwise.
pub fn respond(query: &Message, over_tcp: bool) -> Option<Message> {
    let q = query.queries.first()?.clone();
    let first = q.name().to_ascii().to_lowercase();
    let first = first.split('.').next().unwrap_or_default().to_string();
    if first.starts_with("silent") {
        return None;
    }
    let mut m = Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
    m.metadata.recursion_desired = query.metadata.recursion_desired;
    m.metadata.recursion_available = true;
    m.add_query(q.clone());
    if let Some(edns) = &query.edns {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        e.set_dnssec_ok(edns.flags().dnssec_ok);
        m.set_edns(e);
    }
    if answer_error(&first, query, &mut m) || answer_scripted(&first, q.name(), over_tcp, &mut m) {
        return Some(m);
    }
    let rdata = match q.query_type() {
        RecordType::A => RData::A(A(Ipv4Addr::new(192, 0, 2, 1))),
        RecordType::AAAA => RData::AAAA(AAAA("2001:db8::1".parse().unwrap())),
        RecordType::MX => RData::MX(MX::new(10, Name::from_ascii("mail.example.org.").unwrap())),
        _ => {
            m.add_authority(soa_record("example.org.", 60));
            return Some(m);
        }
    };
    m.add_answer(Record::from_rdata(q.name().clone(), UPSTREAM_TTL, rdata));
    Some(m)
}

/// The `noedns…`, `refused…`, `servfail…`, `notimp…` and `formerr…` names: sets the rcode in
/// `m`; false for any other name.
fn answer_error(first: &str, query: &Message, m: &mut Message) -> bool {
    if first.starts_with("noedns") && query.edns.is_some() {
        m.metadata.response_code = ResponseCode::FormErr;
        m.edns = None;
        return true;
    }
    for (prefix, code) in [
        ("refused", ResponseCode::Refused),
        ("servfail", ResponseCode::ServFail),
        ("notimp", ResponseCode::NotImp),
        ("formerr", ResponseCode::FormErr),
    ] {
        if first.starts_with(prefix) {
            m.metadata.response_code = code;
            return true;
        }
    }
    false
}

/// The names with scripted records (`inject…`, `loop…`, `nx…`, `alias-to-tiktok…`, `big…`,
/// `huge…`): adds them to `m`; false for any other name.
fn answer_scripted(first: &str, name: &Name, over_tcp: bool, m: &mut Message) -> bool {
    let name = name.clone();
    if first.starts_with("inject") {
        let victim = Name::from_ascii("victim.example.com.").unwrap();
        m.add_answer(Record::from_rdata(name.clone(), UPSTREAM_TTL, RData::A(A(Ipv4Addr::new(192, 0, 2, 1)))));
        m.add_answer(Record::from_rdata(victim.clone(), UPSTREAM_TTL, RData::A(A(Ipv4Addr::new(203, 0, 113, 66)))));
        m.add_additional(Record::from_rdata(victim, UPSTREAM_TTL, RData::A(A(Ipv4Addr::new(203, 0, 113, 67)))));
    } else if first.starts_with("loop") {
        let other = Name::from_ascii("loop-b.example.org.").unwrap();
        m.add_answer(Record::from_rdata(name.clone(), UPSTREAM_TTL, RData::CNAME(CNAME(other.clone()))));
        m.add_answer(Record::from_rdata(other, UPSTREAM_TTL, RData::CNAME(CNAME(name))));
    } else if first.starts_with("nx") {
        m.metadata.response_code = ResponseCode::NXDomain;
        m.add_authority(soa_record("example.org.", 60));
    } else if first.starts_with("alias-to-tiktok") {
        let target = Name::from_ascii("v16.tiktokcdn.com.").unwrap();
        m.add_answer(Record::from_rdata(name, UPSTREAM_TTL, RData::CNAME(CNAME(target.clone()))));
        m.add_answer(Record::from_rdata(target, UPSTREAM_TTL, RData::A(A(Ipv4Addr::new(192, 0, 2, 9)))));
    } else if first.starts_with("big") {
        if over_tcp {
            for i in 0..100 {
                m.add_answer(Record::from_rdata(name.clone(), UPSTREAM_TTL, RData::A(A(Ipv4Addr::new(192, 0, 2, i)))));
            }
        } else {
            m.metadata.truncation = true;
        }
    } else if first.starts_with("huge") {
        let count = if over_tcp { 3 } else { 400 };
        for i in 0..count {
            let address = Ipv4Addr::new(192, 0, 2, (i % 250) as u8);
            m.add_answer(Record::from_rdata(name.clone(), UPSTREAM_TTL, RData::A(A(address))));
        }
    } else {
        return false;
    }
    true
}

fn soa_record(zone: &str, minimum: u32) -> Record {
    let zone = Name::from_ascii(zone).unwrap();
    let soa = SOA::new(
        Name::from_ascii("ns.example.org.").unwrap(),
        Name::from_ascii("hostmaster.example.org.").unwrap(),
        1,
        3600,
        600,
        86400,
        minimum,
    );
    Record::from_rdata(zone, 3600, RData::SOA(soa))
}

/// Ways a fake upstream misbehaves for every query, on top of what `respond` does by name.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// Never answers a query that carries an OPT record (an old firewall).
    pub drop_edns: bool,
    /// Answers with the question name lowercased (a case-folding forwarder or middlebox).
    pub fold_case: bool,
    /// Answers every query with this rcode instead.
    pub rcode: Option<ResponseCode>,
    /// Gives every answer a different address (so two answers never agree).
    pub vary_answers: bool,
    /// Nothing listens on TCP.
    pub no_tcp: bool,
    /// Error answers (with `rcode`) leave the question out: header only, QDCOUNT 0.
    pub no_question: bool,
    /// FORMERR to every query that carries an OPT record, without OPT (a server that does not
    /// know EDNS, RFC 6891 §7); the normal answer without.
    pub formerr_edns: bool,
    /// TCP connections are accepted and read, never answered.
    pub tcp_silent: bool,
    /// UDP queries are answered one at a time, each this long after the previous answer
    /// (ldns-testns with `sleep=`: slow but sure, a single thread).
    pub one_at_a_time: Option<Duration>,
}

impl Faults {
    /// The reply to `query` with these faults, as bytes; None = no reply.
    fn reply(&self, query: &Message, over_tcp: bool, serial: usize) -> Option<Vec<u8>> {
        if self.drop_edns && query.edns.is_some() {
            return None;
        }
        if over_tcp && self.tcp_silent {
            return None;
        }
        let mut reply = respond(query, over_tcp)?;
        if self.formerr_edns && query.edns.is_some() {
            reply.metadata.response_code = ResponseCode::FormErr;
            (reply.edns, reply.answers, reply.authorities) = (None, Vec::new(), Vec::new());
        }
        if let Some(code) = self.rcode {
            reply.metadata.response_code = code;
            reply.answers.clear();
            reply.authorities.clear();
        }
        if self.vary_answers {
            for record in &mut reply.answers {
                if let RData::A(a) = &mut record.data {
                    *a = A(Ipv4Addr::new(198, 51, 100, (serial % 250) as u8));
                }
            }
        }
        let mut bytes = reply.to_vec().ok()?;
        if self.no_question && self.rcode.is_some() {
            bytes.truncate(12);
            bytes[4..12].fill(0);
        }
        if self.fold_case {
            // The question name: labels from offset 12 to the root; length octets are < 64,
            // never letters, so the whole span can be lowercased. Compressed owner names
            // point here and fold with it.
            let mut end = 12;
            while end < bytes.len() && bytes[end] != 0 {
                end += 1 + usize::from(bytes[end]);
            }
            let end = end.min(bytes.len());
            bytes[12..end].make_ascii_lowercase();
        }
        Some(bytes)
    }
}

/// A fake upstream DNS server on 127.0.0.1 (UDP and TCP on one port) that counts its calls.
pub struct FakeUpstream {
    pub addr: SocketAddr,
    calls: Arc<AtomicUsize>,
    udp_calls: Arc<AtomicUsize>,
    tasks: tokio::task::JoinSet<()>,
}

impl FakeUpstream {
    pub async fn start() -> FakeUpstream {
        Self::start_with_delay(Duration::ZERO).await
    }

    /// A fake upstream whose UDP answers take `delay` (a slow resolver).
    pub async fn start_with_delay(delay: Duration) -> FakeUpstream {
        Self::start_with(delay, Faults::default()).await
    }

    /// A fake upstream with `faults` (a misbehaving resolver).
    pub async fn start_faulty(faults: Faults) -> FakeUpstream {
        Self::start_with(Duration::ZERO, faults).await
    }

    async fn start_with(delay: Duration, faults: Faults) -> FakeUpstream {
        if faults.no_tcp {
            let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            return Self::serve(udp, None, delay, faults);
        }
        // UDP and TCP on one port; retry when another socket holds that port for TCP.
        let mut bound = None;
        for _ in 0..32 {
            let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            if let Ok(tcp) = TcpListener::bind(udp.local_addr().unwrap()).await {
                bound = Some((udp, tcp));
                break;
            }
        }
        let (udp, tcp) = bound.expect("a free loopback port");
        Self::serve(udp, Some(tcp), delay, faults)
    }

    /// A fake upstream on a given address (one that comes back after being down).
    pub async fn start_on(addr: SocketAddr) -> FakeUpstream {
        let udp = UdpSocket::bind(addr).await.unwrap();
        let tcp = TcpListener::bind(addr).await.unwrap();
        Self::serve(udp, Some(tcp), Duration::ZERO, Faults::default())
    }

    fn serve(udp: UdpSocket, tcp: Option<TcpListener>, delay: Duration, faults: Faults) -> FakeUpstream {
        let udp = Arc::new(udp);
        let addr = udp.local_addr().unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let udp_calls = Arc::new(AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        let (all, only_udp) = (Arc::clone(&calls), Arc::clone(&udp_calls));
        tasks.spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok((n, peer)) = udp.recv_from(&mut buf).await {
                let serial = all.fetch_add(1, Ordering::SeqCst);
                only_udp.fetch_add(1, Ordering::SeqCst);
                let Ok(query) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let Some(reply) = faults.reply(&query, false, serial) else {
                    continue;
                };
                if let Some(each) = faults.one_at_a_time {
                    tokio::time::sleep(each).await;
                    let _ = udp.send_to(&reply, peer).await;
                } else {
                    let udp = Arc::clone(&udp);
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        let _ = udp.send_to(&reply, peer).await;
                    });
                }
            }
        });
        let Some(tcp) = tcp else {
            return FakeUpstream { addr, calls, udp_calls, tasks };
        };
        let tcp_calls = Arc::clone(&calls);
        tasks.spawn(async move {
            while let Ok((mut stream, _)) = tcp.accept().await {
                let calls = Arc::clone(&tcp_calls);
                tokio::spawn(async move {
                    while let Ok(len) = stream.read_u16().await {
                        let mut buf = vec![0u8; usize::from(len)];
                        if stream.read_exact(&mut buf).await.is_err() {
                            return;
                        }
                        let serial = calls.fetch_add(1, Ordering::SeqCst);
                        let Ok(query) = Message::from_vec(&buf) else {
                            return;
                        };
                        let Some(bytes) = faults.reply(&query, true, serial) else {
                            continue;
                        };
                        let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
                        framed.extend_from_slice(&bytes);
                        if stream.write_all(&framed).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        FakeUpstream { addr, calls, udp_calls, tasks }
    }

    /// Queries received over UDP and TCP.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Queries received over UDP.
    pub fn udp_calls(&self) -> usize {
        self.udp_calls.load(Ordering::SeqCst)
    }

    /// Queries received over TCP.
    pub fn tcp_calls(&self) -> usize {
        self.calls() - self.udp_calls()
    }

    /// Stops answering and closes the sockets (a dead upstream).
    pub async fn stop(&mut self) {
        self.tasks.shutdown().await;
    }
}

/// A config pointing at `upstream`, with `extra` TOML appended (tables not used above).
pub fn config_for(upstream: SocketAddr, extra: &str) -> Config {
    let text = format!(
        "[upstream]\ntimeout_ms = 400\n[[upstream.servers]]\naddress = \"{upstream}\"\nprotocol = \"udp\"\n{extra}"
    );
    Config::from_toml(&text).unwrap()
}

pub struct TestServer {
    pub running: Running,
    pub udp: SocketAddr,
    pub tcp: SocketAddr,
    pub attempts: mpsc::UnboundedReceiver<Attempt>,
}

pub fn start_server(config: &Config) -> TestServer {
    let listeners = Listeners::bind_loopback().unwrap();
    let (tx, attempts) = mpsc::unbounded_channel();
    let running = server::start(config, listeners, vec![tx]).unwrap();
    let (udp, tcp) = (running.udp_addrs[0], running.tcp_addrs[0]);
    TestServer { running, udp, tcp, attempts }
}

/// A query message for `name` and `qtype`, with or without EDNS.
pub fn query(name: &str, qtype: RecordType, edns: bool) -> Message {
    let mut m = Message::query();
    m.metadata.id = rand::random();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_str(name).unwrap(), qtype));
    if edns {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        m.set_edns(e);
    }
    m
}

/// A query built byte by byte, keeping the name's case exactly (for 0x20 checks).
pub fn raw_query(name: &str, qtype: u16, edns: bool, dnssec_ok: bool) -> Vec<u8> {
    use nxguard::dns::wire;
    let mut out = Vec::new();
    wire::push_header(&mut out, rand::random(), wire::flag::RD, [1, 0, 0, u16::from(edns)]);
    wire::push_name(&mut out, name);
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    if edns {
        wire::push_opt(&mut out, dnssec_ok, 0, &[]);
    }
    out
}

/// The question name of a raw reply, exactly as written (case kept).
pub fn raw_question_name(reply: &[u8]) -> String {
    let mut out = Vec::new();
    let mut pos = 12;
    while reply[pos] != 0 {
        let len = usize::from(reply[pos]);
        out.push(String::from_utf8_lossy(&reply[pos + 1..pos + 1 + len]).into_owned());
        pos += 1 + len;
    }
    out.join(".")
}

/// Sends raw bytes over UDP from `from` (an IP on loopback) and waits up to `wait` for a reply.
pub async fn udp_exchange_raw(server: SocketAddr, from: IpAddr, bytes: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind(SocketAddr::new(from, 0)).await.unwrap();
    socket.send_to(bytes, server).await.unwrap();
    let mut buf = vec![0u8; 65535];
    match tokio::time::timeout(wait, socket.recv_from(&mut buf)).await {
        Ok(Ok((n, _))) => Some(buf[..n].to_vec()),
        _ => None,
    }
}

pub async fn udp_ask(server: SocketAddr, message: &Message) -> Message {
    let raw =
        udp_exchange_raw(server, IpAddr::V4(Ipv4Addr::LOCALHOST), &message.to_vec().unwrap(), Duration::from_secs(5))
            .await
            .expect("no UDP answer");
    let reply = Message::from_vec(&raw).unwrap();
    assert_eq!(reply.metadata.id, message.metadata.id);
    reply
}

pub async fn tcp_ask(server: SocketAddr, message: &Message) -> Message {
    let mut stream = TcpStream::connect(server).await.unwrap();
    let bytes = message.to_vec().unwrap();
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    stream.write_all(&framed).await.unwrap();
    let len = tokio::time::timeout(Duration::from_secs(5), stream.read_u16()).await.expect("no TCP answer").unwrap();
    let mut buf = vec![0u8; usize::from(len)];
    stream.read_exact(&mut buf).await.unwrap();
    let reply = Message::from_vec(&buf).unwrap();
    assert_eq!(reply.metadata.id, message.metadata.id);
    reply
}

/// The Extended DNS Error (info code, text) of a reply, if any (RFC 8914).
pub fn extended_error(reply: &Message) -> Option<(u16, String)> {
    let raw = reply.to_vec().unwrap();
    let parsed = nxguard::dns::wire::parse_query(&raw).ok()?;
    let mut options = parsed.edns_options();
    while options.len() >= 4 {
        let code = u16::from_be_bytes([options[0], options[1]]);
        let len = usize::from(u16::from_be_bytes([options[2], options[3]]));
        let data = &options[4..4 + len];
        if code == 15 {
            return Some((u16::from_be_bytes([data[0], data[1]]), String::from_utf8_lossy(&data[2..]).into_owned()));
        }
        options = &options[4 + len..];
    }
    None
}

/// NXDOMAIN, no answers, an SOA whose minimum and TTL are the block TTL, and EDE 15 naming the
/// app when the query had EDNS.
pub fn assert_blocked(reply: &Message, app_text: &str, block_ttl: u32, edns: bool) {
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain, "{reply:?}");
    assert!(reply.answers.is_empty());
    assert_eq!(reply.authorities.len(), 1, "one SOA in the authority section");
    let soa = &reply.authorities[0];
    let RData::SOA(rdata) = &soa.data else { panic!("authority is not an SOA: {soa:?}") };
    assert_eq!(rdata.minimum, block_ttl);
    assert_eq!(soa.ttl, block_ttl);
    if edns {
        let (code, text) = extended_error(reply).expect("EDE option");
        assert_eq!(code, 15);
        assert!(text.contains(app_text), "{text}");
    } else {
        assert!(reply.edns.is_none());
    }
}

/// NOERROR with the fake upstream's record for `qtype`.
pub fn assert_forwarded(reply: &Message, qtype: RecordType) {
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError, "{reply:?}");
    assert_eq!(reply.answers.len(), 1, "{reply:?}");
    assert_eq!(reply.answers[0].record_type(), qtype);
}

/// Polls `done` every 20 ms until it holds; panics naming `what` after `within`.
pub async fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + within;
    while !done() {
        assert!(std::time::Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `wait_until` for code outside an async runtime.
pub fn wait_until_blocking(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + within;
    while !done() {
        assert!(std::time::Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The addresses a spawned nxguard wrote to its `--ready-file`, by kind.
pub struct Ready(serde_json::Map<String, serde_json::Value>);

impl Ready {
    /// Waits (at most 20 s) until `path` exists, then reads it.
    pub async fn wait(path: &std::path::Path) -> Ready {
        wait_until(&format!("ready file {}", path.display()), Duration::from_secs(20), || path.exists()).await;
        Self::read(path)
    }

    /// `wait` outside an async runtime.
    pub fn wait_blocking(path: &std::path::Path) -> Ready {
        wait_until_blocking(&format!("ready file {}", path.display()), Duration::from_secs(20), || path.exists());
        Self::read(path)
    }

    fn read(path: &std::path::Path) -> Ready {
        let text = std::fs::read_to_string(path).unwrap();
        Ready(serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}: {text}", path.display())))
    }

    /// The first address of `kind` (udp, tcp, metrics, console…).
    pub fn addr(&self, kind: &str) -> SocketAddr {
        let addrs =
            self.0.get(kind).and_then(|v| v.as_array()).unwrap_or_else(|| panic!("no {kind} in the ready file"));
        addrs[0].as_str().unwrap().parse().unwrap()
    }
}

/// The ready file a test's spawned nxguard writes, beside its config.
pub fn ready_path(config: &std::path::Path) -> std::path::PathBuf {
    config.with_extension("ready.json")
}

/// Starts the `nxguard serve` binary on `config`, its output discarded; it writes the bound
/// addresses to `ready_path(config)` (an old one is removed first).
pub fn spawn_serve(config: &std::path::Path) -> std::process::Child {
    let _ = std::fs::remove_file(ready_path(config));
    std::process::Command::new(env!("CARGO_BIN_EXE_nxguard"))
        .args(["serve", "--config", config.to_str().unwrap(), "--ready-file", ready_path(config).to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// Starts the `nxguard serve` binary on `config`, its log (stderr) written to `log`, its ready
/// file at `ready_path(config)`.
pub fn spawn_serve_logging(config: &std::path::Path, log: &std::path::Path) -> std::process::Child {
    let _ = std::fs::remove_file(ready_path(config));
    std::process::Command::new(env!("CARGO_BIN_EXE_nxguard"))
        .args(["serve", "--config", config.to_str().unwrap(), "--ready-file", ready_path(config).to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// A query whose name is given as raw label bytes (any byte a label may hold), of `qtype` and
/// `qclass`.
pub fn raw_labels_query(labels: &[&[u8]], qtype: u16, qclass: u16) -> Vec<u8> {
    let mut out = Vec::new();
    nxguard::dns::wire::push_header(&mut out, rand::random(), nxguard::dns::wire::flag::RD, [1, 0, 0, 0]);
    for label in labels {
        out.push(label.len() as u8);
        out.extend_from_slice(label);
    }
    out.push(0);
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&qclass.to_be_bytes());
    out
}

/// Sends signal `name` (HUP, TERM, KILL…) to the process `pid`, which this test started.
pub fn send_signal(pid: u32, name: &str) {
    let status = std::process::Command::new("kill").args([&format!("-{name}"), &pid.to_string()]).status().unwrap();
    assert!(status.success(), "kill -{name} {pid}");
}

/// A config for a spawned server on 127.0.0.1:`port` (UDP and TCP, one worker) forwarding to
/// `upstream`; `extra` is TOML for further sections (not `[server]` or `[[upstream.servers]]`).
pub fn serve_config(port: u16, upstream: SocketAddr, extra: &str) -> String {
    format!(
        "[server]\nudp = [\"127.0.0.1:{port}\"]\ntcp = [\"127.0.0.1:{port}\"]\nworkers = 1\n{extra}\n\
         [[upstream.servers]]\naddress = \"{upstream}\"\n"
    )
}

/// Sends a slow upstream query (`slow.example.org`), then a cached (`cached.example.org`, which
/// the caller has asked once) and a blocked one on one length-framed connection (TCP or DoT),
/// all in one write so they arrive together whatever the machine's load; returns the IDs of the
/// answers in the order they arrived, and the three queries' IDs in the order sent.
pub async fn pipelined_order<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) -> (Vec<u16>, [u16; 3]) {
    let slow = query("slow.example.org.", RecordType::A, false);
    let cached = query("cached.example.org.", RecordType::A, false);
    let blocked = query("x.tiktok.com.", RecordType::A, false);
    let mut framed = Vec::new();
    for message in [&slow, &cached, &blocked] {
        let bytes = message.to_vec().unwrap();
        framed.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        framed.extend_from_slice(&bytes);
    }
    stream.write_all(&framed).await.unwrap();
    let mut order = Vec::new();
    for _ in 0..3 {
        let len = tokio::time::timeout(Duration::from_secs(10), stream.read_u16()).await.expect("no answer").unwrap();
        let mut reply = vec![0u8; usize::from(len)];
        stream.read_exact(&mut reply).await.unwrap();
        order.push(Message::from_vec(&reply).unwrap().metadata.id);
    }
    (order, [slow.metadata.id, cached.metadata.id, blocked.metadata.id])
}

/// A DNS server on 127.0.0.1 for nxguard's own lookups (PTR names, bootstrap addresses): for
/// each query it starts a response with the question echoed and RD copied, lets `fill` add the
/// answer or set the rcode, and sends it after `delay`.
pub async fn lookup_server<F>(delay: Duration, fill: F) -> SocketAddr
where
    F: Fn(&hickory_proto::op::Query, &mut Message) + Send + Sync + 'static,
{
    let socket = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
            let Ok(query) = Message::from_vec(&buf[..n]) else { continue };
            let Some(q) = query.queries.first().cloned() else { continue };
            let mut reply = Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
            reply.metadata.recursion_desired = query.metadata.recursion_desired;
            reply.metadata.recursion_available = true;
            reply.add_query(q.clone());
            fill(&q, &mut reply);
            let socket = Arc::clone(&socket);
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = socket.send_to(&reply.to_vec().unwrap(), peer).await;
            });
        }
    });
    addr
}
