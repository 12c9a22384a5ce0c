//! `nxguard selftest`: asks a running nxguard whether the ban on every enforced app is in force.
//!
//! Owns: choosing a few listed names of each app from the policy a config describes, asking the
//! server for each over UDP and TCP (with EDNS, every wait bounded), judging each answer against
//! the configured block response (with Extended DNS Error 15 and the app's notice, RFC 8914), and
//! the per-app report. Plain blocking sockets: it is a short command, not part of the server.
//! Does not own: the policy (`policy`) or the answers (`resolve`).

use std::{
    fmt,
    io::{self, Read, Write},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket},
    time::Duration,
};

use thiserror::Error;

use crate::{
    config::{BlockResponse, Config},
    dns::wire::{self, TYPE_SOA, rcode},
    policy::Policy,
};

/// RFC 8914 §5.2 info code 15, "Blocked".
const EDE_BLOCKED: u16 = 15;
/// RFC 6975/8914 option code of Extended DNS Errors in the OPT record.
const OPTION_EDE: u16 = 15;
const TYPE_A: u16 = 1;

#[derive(Debug, Error)]
pub enum SelftestError {
    #[error(
        "no answer from {server} over UDP or TCP within {} ms: is nxguard running there, and is this host in its access.allow?",
        timeout.as_millis()
    )]
    NoAnswer { server: SocketAddr, timeout: Duration },
    #[error("the policy has no blocked names to test")]
    NothingToTest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Over {
    Udp,
    Tcp,
}

impl fmt::Display for Over {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if *self == Over::Udp { "udp" } else { "tcp" })
    }
}

/// What was found for one app.
#[derive(Debug)]
pub struct AppReport {
    pub id: String,
    pub label: String,
    /// Names asked (each over UDP and TCP).
    pub names: usize,
    /// One line per answer that was not the blocked answer.
    pub failures: Vec<String>,
}

impl AppReport {
    pub fn enforced(&self) -> bool {
        self.names > 0 && self.failures.is_empty()
    }
}

/// The outcome of a self-test.
#[derive(Debug)]
pub struct Report {
    pub server: SocketAddr,
    pub expected: BlockResponse,
    pub apps: Vec<AppReport>,
}

impl Report {
    /// Every app's ban is in force.
    pub fn all_enforced(&self) -> bool {
        self.apps.iter().all(AppReport::enforced)
    }

    pub fn not_enforced(&self) -> Vec<&str> {
        self.apps.iter().filter(|a| !a.enforced()).map(|a| a.id.as_str()).collect()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let expected = expected_text(self.expected);
        writeln!(f, "selftest of {} over UDP and TCP, expecting {expected} and EDE 15 naming the app:", self.server)?;
        for app in &self.apps {
            let verdict = if app.enforced() { "enforced" } else { "NOT ENFORCED" };
            writeln!(f, "  {verdict:<13} {:<12} {} ({} names)", app.id, app.label, app.names)?;
            for failure in &app.failures {
                writeln!(f, "      {failure}")?;
            }
        }
        let missing = self.not_enforced();
        let total = self.apps.len();
        if missing.is_empty() {
            write!(f, "summary: all {total} apps enforced")
        } else {
            write!(
                f,
                "summary: {} of {total} apps enforced; not enforced: {}",
                total - missing.len(),
                missing.join(", ")
            )
        }
    }
}

/// The server `selftest` asks by default: the config's first UDP (else TCP) address, with an
/// unspecified address (0.0.0.0, ::) replaced by loopback.
pub fn default_server(config: &Config) -> Option<SocketAddr> {
    let mut addr = *config.server.udp.first().or(config.server.tcp.first())?;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() { IpAddr::V4(Ipv4Addr::LOCALHOST) } else { IpAddr::V6(Ipv6Addr::LOCALHOST) });
    }
    Some(addr)
}

/// Asks `server` for `per_app` names of every app in `policy`, over UDP and TCP, and reports
/// per app whether each answer was the `expected` blocked answer. Fails only when the server
/// does not answer at all.
pub fn run(
    server: SocketAddr,
    policy: &Policy,
    expected: BlockResponse,
    per_app: usize,
    timeout: Duration,
) -> Result<Report, SelftestError> {
    let samples = policy.sample_names(per_app);
    let (_, probe) = samples.first().ok_or(SelftestError::NothingToTest)?;
    if ask(server, probe, Over::Udp, timeout).is_err() && ask(server, probe, Over::Tcp, timeout).is_err() {
        return Err(SelftestError::NoAnswer { server, timeout });
    }
    let mut apps: Vec<AppReport> = policy
        .apps()
        .iter()
        .map(|entry| AppReport {
            id: entry.app.id.clone(),
            label: format!("{} ({})", entry.app.name, entry.app.vendor),
            names: 0,
            failures: Vec::new(),
        })
        .collect();
    for (app, name) in samples {
        // A name under a `policy.allow` exception is answered normally: not a test of the ban.
        let Some(matched) = policy.lookup_text(name) else { continue };
        let Some(report) = apps.iter_mut().find(|a| a.id == app.id) else { continue };
        report.names += 1;
        let [udp, tcp] = [Over::Udp, Over::Tcp].map(|over| {
            ask(server, name, over, timeout)
                .map_err(NotBlocked::NoAnswer)
                .and_then(|reply| judge(&reply, matched.app.app.response.unwrap_or(expected), &matched.app.notice))
        });
        match (udp, tcp) {
            (Err(udp), Err(tcp)) if udp.to_string() == tcp.to_string() => {
                report.failures.push(format!("{name} over udp and tcp: {udp}"));
            }
            (udp, tcp) => {
                for (over, verdict) in [(Over::Udp, udp), (Over::Tcp, tcp)] {
                    if let Err(problem) = verdict {
                        report.failures.push(format!("{name} over {over}: {problem}"));
                    }
                }
            }
        }
    }
    Ok(Report { server, expected, apps })
}

/// Sends an A query for `name` with EDNS and returns the reply with the same ID.
fn ask(server: SocketAddr, name: &str, over: Over, timeout: Duration) -> io::Result<Vec<u8>> {
    let id: u16 = rand::random();
    let mut query = Vec::with_capacity(64);
    wire::push_header(&mut query, id, wire::flag::RD, [1, 0, 0, 1]);
    wire::push_name(&mut query, name);
    query.extend_from_slice(&TYPE_A.to_be_bytes());
    query.extend_from_slice(&wire::CLASS_IN.to_be_bytes());
    wire::push_opt(&mut query, false, 0, &[]);
    let reply = match over {
        Over::Udp => ask_udp(server, &query, timeout)?,
        Over::Tcp => ask_tcp(server, &query, timeout)?,
    };
    if wire::read_id(&reply) != Some(id) {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "reply with another ID"));
    }
    Ok(reply)
}

fn ask_udp(server: SocketAddr, query: &[u8], timeout: Duration) -> io::Result<Vec<u8>> {
    let local: SocketAddr =
        if server.is_ipv4() { (Ipv4Addr::UNSPECIFIED, 0).into() } else { (Ipv6Addr::UNSPECIFIED, 0).into() };
    let socket = UdpSocket::bind(local)?;
    socket.connect(server)?;
    socket.set_read_timeout(Some(timeout))?;
    socket.send(query)?;
    let mut buf = vec![0u8; 65_535];
    let n = socket.recv(&mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

fn ask_tcp(server: SocketAddr, query: &[u8], timeout: Duration) -> io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect_timeout(&server, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut framed = (query.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(query);
    stream.write_all(&framed)?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len)?;
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut reply)?;
    Ok(reply)
}

fn expected_text(expected: BlockResponse) -> &'static str {
    match expected {
        BlockResponse::Nxdomain => "NXDOMAIN with an SOA",
        BlockResponse::Nodata => "NOERROR without records, with an SOA",
        BlockResponse::Refused => "REFUSED",
    }
}

fn rcode_text(code: u8) -> String {
    match code {
        rcode::NOERROR => "NOERROR".into(),
        rcode::FORMERR => "FORMERR".into(),
        rcode::SERVFAIL => "SERVFAIL".into(),
        rcode::NXDOMAIN => "NXDOMAIN".into(),
        rcode::NOTIMP => "NOTIMP".into(),
        rcode::REFUSED => "REFUSED".into(),
        other => format!("RCODE {other}"),
    }
}

/// Why a reply is not the blocked answer (one line of the report).
#[derive(Debug, Error)]
enum NotBlocked {
    #[error("no answer ({0})")]
    NoAnswer(#[source] io::Error),
    #[error("malformed reply ({0})")]
    Malformed(#[source] wire::WireError),
    #[error("{got}, expected {expected}")]
    Answer { got: String, expected: String },
    #[error("{0} but no SOA in the authority section (RFC 2308)")]
    NoSoa(String),
    #[error("EDE 15 says {text:?}, expected {notice:?}")]
    OtherNotice { text: String, notice: String },
    #[error("Extended DNS Error {0}, expected 15 (Blocked)")]
    OtherEde(u16),
    #[error("no Extended DNS Error 15 (Blocked)")]
    NoEde,
}

/// Whether `reply` is the blocked answer: the configured response and EDE 15 with `notice`.
fn judge(reply: &[u8], expected: BlockResponse, notice: &str) -> Result<(), NotBlocked> {
    let [_, answers, authorities, _] = wire::read_counts(reply).map_err(NotBlocked::Malformed)?;
    let code = reply[3] & 0x0f;
    let described = || format!("{} with {answers} answer record(s)", rcode_text(code));
    let (want_code, want_soa) = match expected {
        BlockResponse::Nxdomain => (rcode::NXDOMAIN, true),
        BlockResponse::Nodata => (rcode::NOERROR, true),
        BlockResponse::Refused => (rcode::REFUSED, false),
    };
    if code != want_code || answers != 0 {
        return Err(NotBlocked::Answer { got: described(), expected: expected_text(expected).to_string() });
    }
    let parsed = wire::parse_query(reply).map_err(NotBlocked::Malformed)?;
    if want_soa && !has_soa(reply, parsed.qname_end + 4, authorities) {
        return Err(NotBlocked::NoSoa(rcode_text(code)));
    }
    match extended_error(parsed.edns_options()) {
        Some((EDE_BLOCKED, text)) if text == notice => Ok(()),
        Some((EDE_BLOCKED, text)) => Err(NotBlocked::OtherNotice { text, notice: notice.to_string() }),
        Some((code, _)) => Err(NotBlocked::OtherEde(code)),
        None => Err(NotBlocked::NoEde),
    }
}

fn has_soa(reply: &[u8], mut pos: usize, authorities: u16) -> bool {
    for _ in 0..authorities {
        let Ok(record) = wire::skip_record(reply, pos) else { return false };
        if record.rtype(reply) == TYPE_SOA {
            return true;
        }
        pos = record.end;
    }
    false
}

/// The first Extended DNS Error option (info code, text) among the OPT record's options.
fn extended_error(mut options: &[u8]) -> Option<(u16, String)> {
    while options.len() >= 4 {
        let code = u16::from_be_bytes([options[0], options[1]]);
        let len = usize::from(u16::from_be_bytes([options[2], options[3]]));
        let data = options.get(4..4 + len)?;
        if code == OPTION_EDE && data.len() >= 2 {
            return Some((u16::from_be_bytes([data[0], data[1]]), String::from_utf8_lossy(&data[2..]).into_owned()));
        }
        options = &options[4 + len..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocked_reply(rcode_bits: u8, soa: bool, ede: Option<(u16, &str)>) -> Vec<u8> {
        let mut out = Vec::new();
        wire::push_header(&mut out, 7, wire::flag::QR | u16::from(rcode_bits), [1, 0, u16::from(soa), 1]);
        wire::push_name(&mut out, "tiktok.com");
        out.extend_from_slice(&[0, 1, 0, 1]);
        if soa {
            out.extend_from_slice(&[0xc0, 12]);
            out.extend_from_slice(&TYPE_SOA.to_be_bytes());
            out.extend_from_slice(&[0, 1, 0, 0, 1, 44, 0, 22, 0, 0]);
            out.extend_from_slice(&[0; 20]);
        }
        let mut options = Vec::new();
        if let Some((code, text)) = ede {
            wire::push_ede(&mut options, code, text);
        }
        wire::push_opt(&mut out, false, 0, &options);
        out
    }

    #[test]
    fn the_blocked_answer_passes() {
        let reply = blocked_reply(rcode::NXDOMAIN, true, Some((15, "TikTok (ByteDance) is banned on this network")));
        assert!(judge(&reply, BlockResponse::Nxdomain, "TikTok (ByteDance) is banned on this network").is_ok());
    }

    #[test]
    fn other_answers_fail_with_a_reason() {
        let notice = "X (Y) is banned on this network";
        let nodata = blocked_reply(rcode::NOERROR, true, Some((15, notice)));
        assert!(judge(&nodata, BlockResponse::Nxdomain, notice).unwrap_err().to_string().contains("NOERROR"));
        assert!(judge(&nodata, BlockResponse::Nodata, notice).is_ok());
        let no_soa = blocked_reply(rcode::NXDOMAIN, false, Some((15, notice)));
        assert!(judge(&no_soa, BlockResponse::Nxdomain, notice).unwrap_err().to_string().contains("SOA"));
        let no_ede = blocked_reply(rcode::NXDOMAIN, true, None);
        assert!(
            judge(&no_ede, BlockResponse::Nxdomain, notice).unwrap_err().to_string().contains("no Extended DNS Error")
        );
        let other_app = blocked_reply(rcode::NXDOMAIN, true, Some((15, "Z (Y) is banned on this network")));
        assert!(judge(&other_app, BlockResponse::Nxdomain, notice).unwrap_err().to_string().contains("expected"));
    }

    #[test]
    fn default_server_replaces_unspecified_addresses_with_loopback() {
        let mut config = Config::embedded();
        assert_eq!(default_server(&config), Some("127.0.0.1:5300".parse().unwrap()));
        config.server.udp = vec!["[::]:53".parse().unwrap()];
        assert_eq!(default_server(&config), Some("[::1]:53".parse().unwrap()));
    }
}
