//! NOTIFY (RFC 1996): telling the secondaries of each new serial, so that a policy change
//! reaches them in seconds instead of at the SOA's refresh. With `rpz.tsig_key_file` set, each
//! NOTIFY is signed with the key (RFC 8945 §5.1), so a secondary that checks can tell it came
//! from its primary; secondaries without TSIG (Unbound) accept it by address and answer
//! unsigned, which is taken as an answer too (an answer only stops the retries).

use std::{net::SocketAddr, sync::Arc, time::Duration};

use hickory_proto::{
    op::{Message, MessageType, OpCode, Query, ResponseCode},
    rr::{RecordType, TSigVerifier, TSigner},
};
use tokio::{net::UdpSocket, sync::watch};
use tracing::{debug, info, warn};

use crate::zone::{Zone, ZoneStats, contents::soa};

/// Tries per secondary and the wait for each answer (RFC 1996 §3.6: retransmit until answered).
const TRIES: u32 = 5;
const ANSWER_WAIT: Duration = Duration::from_secs(1);

/// Sends a NOTIFY to every secondary each time the zone's serial changes, until `changes` ends.
pub async fn run(
    zone: Arc<Zone>,
    secondaries: Vec<SocketAddr>,
    key: Option<TSigner>,
    mut changes: watch::Receiver<u32>,
) {
    changes.mark_unchanged();
    while changes.changed().await.is_ok() {
        let serial = *changes.borrow_and_update();
        for &secondary in &secondaries {
            let sent = notify(&zone, secondary, serial, key.as_ref()).await;
            ZoneStats::count(if sent { &zone.stats.notifies_sent } else { &zone.stats.notifies_failed });
        }
    }
}

/// The NOTIFY message for `serial`, signed with `key` when there is one; with the verifier of
/// a signed answer.
pub fn message(zone: &Zone, serial: u32, key: Option<&TSigner>, now: u64) -> Option<(Vec<u8>, Option<TSigVerifier>)> {
    let mut message = Message::new(rand::random::<u16>(), MessageType::Query, OpCode::Notify);
    message.metadata.authoritative = true;
    message.add_query(Query::query(zone.origin.clone(), RecordType::SOA));
    message.add_answer(soa(&zone.origin, serial, zone.refresh_secs));
    let verifier = match key {
        Some(key) => message.finalize(key, now).map_err(|error| warn!(%error, "rpz notify cannot be signed")).ok()?,
        None => None,
    };
    Some((message.to_vec().ok()?, verifier))
}

/// One NOTIFY, retried until the secondary answers; whether it did. A secondary that answers
/// a signed NOTIFY with FORMERR cannot parse TSIG (Unbound treats any additional record but
/// OPT so): it is sent unsigned. Spoofing that FORMERR gains nothing; the transfer itself
/// still needs the key.
pub async fn notify(zone: &Zone, secondary: SocketAddr, serial: u32, mut key: Option<&TSigner>) -> bool {
    let local: SocketAddr = if secondary.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
    let socket = match UdpSocket::bind(local).await {
        Ok(socket) => socket,
        Err(error) => {
            warn!(%error, secondary = %secondary, "rpz notify: no socket");
            return false;
        }
    };
    for attempt in 1..=TRIES {
        let Some((packet, verifier)) = message(zone, serial, key, unix_now()) else {
            return false;
        };
        match exchange(&socket, secondary, &packet, verifier).await {
            Some(Answer { rcode: ResponseCode::FormErr, .. }) if key.is_some() => {
                info!(secondary = %secondary, serial, "rpz notify: the secondary takes no TSIG (FORMERR); sent unsigned");
                key = None;
            }
            Some(answer) => {
                info!(secondary = %secondary, serial, rcode = %answer.rcode, signed = ?answer.signed, "rpz notify answered");
                return true;
            }
            None => debug!(secondary = %secondary, serial, attempt, "rpz notify unanswered"),
        }
    }
    warn!(secondary = %secondary, serial, "rpz notify never answered; the secondary picks the change up at its refresh");
    false
}

/// What a secondary answered: its rcode, and for a signed NOTIFY whether the answer's TSIG
/// verified (None: sent unsigned).
struct Answer {
    rcode: ResponseCode,
    signed: Option<bool>,
}

/// Sends `packet` and waits for the answer with its ID from `secondary`.
async fn exchange(
    socket: &UdpSocket,
    secondary: SocketAddr,
    packet: &[u8],
    mut verifier: Option<TSigVerifier>,
) -> Option<Answer> {
    socket.send_to(packet, secondary).await.ok()?;
    let mut buf = [0u8; 1024];
    let answer = async {
        loop {
            let (n, from) = socket.recv_from(&mut buf).await.ok()?;
            if from == secondary && n >= 4 && buf[..2] == packet[..2] && buf[2] & 0x80 != 0 {
                let rcode = ResponseCode::from_low(buf[3] & 0x0f);
                let signed = verifier.as_mut().map(|v| v.verify(&buf[..n]).is_ok());
                return Some(Answer { rcode, signed });
            }
        }
    };
    tokio::time::timeout(ANSWER_WAIT, answer).await.ok().flatten()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
