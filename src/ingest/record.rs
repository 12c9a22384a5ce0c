//! A dnstap message turned into an attempt: the question from the DNS message it carries,
//! matched against the policy in force, the client, time and transport from the message.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use hickory_proto::rr::RecordType;

use crate::{
    config::GroupMode,
    dns::wire,
    evidence::{
        attempt::{Mode, Sighting, Stamp, Via},
        devices::EdnsIdentity,
    },
    ingest::dnstap::{self, Message},
    resolve::{Live, Transport},
};

/// The attempt a client query or response stands for, when the policy lists its name (and
/// the client's group does not exempt it); the dispatcher identifies the device.
pub fn attempt_of(message: &Message, resolver: &Arc<str>, live: &Live) -> Option<Sighting> {
    let response = message.r#type == dnstap::CLIENT_RESPONSE;
    let packet = if response { message.response_message.as_deref() } else { message.query_message.as_deref() };
    let mut question = [0u8; wire::HEADER_LEN + 260];
    let query = wire::parse_query(question_only(packet?, &mut question)?).ok()?;
    let matched = live.policy.lookup(query.name.as_bytes())?;
    let client = client_of(message)?;
    let mode = match live.policy.decide(&matched, client.ip()) {
        GroupMode::Enforce => Mode::Enforce,
        GroupMode::LogOnly => Mode::LogOnly,
        GroupMode::Exempt => return None,
    };
    let (secs, nanos) = if response {
        (message.response_time_sec, message.response_time_nsec)
    } else {
        (message.query_time_sec, message.query_time_nsec)
    };
    let time =
        secs.map_or_else(SystemTime::now, |s| UNIX_EPOCH + Duration::new(s, nanos.unwrap_or(0).min(999_999_999)));
    Some(Sighting {
        time,
        client,
        transport: transport_of(message.socket_protocol),
        edns: EdnsIdentity::default(),
        qname: query.name_text(),
        qtype: RecordType::from(query.qtype).to_string(),
        app: Arc::clone(matched.app),
        domain: matched.domain.to_string(),
        kind: matched.kind,
        via: Via::Query,
        stamp: Stamp { mode, policy_version: live.policy.version(), rule: Arc::clone(matched.rule) },
        resolver: Some(Arc::clone(resolver)),
    })
}

/// The header and question of `packet`, as a query with no other section (a response's
/// answers are not needed, and the query parser takes only queries).
fn question_only<'b>(packet: &[u8], out: &'b mut [u8]) -> Option<&'b [u8]> {
    let end = wire::skip_name(packet, wire::HEADER_LEN).ok()? + 4;
    let copy = out.get_mut(..end)?;
    copy.copy_from_slice(packet.get(..end)?);
    copy[2] &= !(wire::flag::QR >> 8) as u8;
    copy[4..wire::HEADER_LEN].copy_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    Some(copy)
}

fn client_of(message: &Message) -> Option<SocketAddr> {
    let address = message.query_address.as_deref()?;
    let ip = match address.len() {
        4 => IpAddr::V4(Ipv4Addr::new(address[0], address[1], address[2], address[3])),
        16 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(address).ok()?)),
        _ => return None,
    };
    Some(SocketAddr::new(ip, u16::try_from(message.query_port.unwrap_or(0)).unwrap_or(0)))
}

fn transport_of(protocol: Option<i32>) -> Transport {
    match protocol {
        Some(dnstap::PROTOCOL_TCP | dnstap::PROTOCOL_DNSCRYPT_TCP) => Transport::Tcp,
        Some(dnstap::PROTOCOL_DOT) => Transport::Tls,
        Some(dnstap::PROTOCOL_DOH) => Transport::Https,
        Some(dnstap::PROTOCOL_DOQ) => Transport::Quic,
        Some(dnstap::PROTOCOL_UDP | dnstap::PROTOCOL_DNSCRYPT_UDP) | Some(_) | None => Transport::Udp,
    }
}
