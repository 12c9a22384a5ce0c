//! NOTIFY (RFC 1996): telling the secondaries of each new serial, so that a policy change
//! reaches them in seconds instead of at the SOA's refresh.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use hickory_proto::{
    op::{Message, MessageType, OpCode, Query},
    rr::RecordType,
};
use tokio::{net::UdpSocket, sync::watch};
use tracing::{debug, info, warn};

use crate::zone::{Zone, ZoneStats, contents::soa};

/// Tries per secondary and the wait for each answer (RFC 1996 §3.6: retransmit until answered).
const TRIES: u32 = 5;
const ANSWER_WAIT: Duration = Duration::from_secs(1);

/// Sends a NOTIFY to every secondary each time the zone's serial changes, until `changes` ends.
pub async fn run(zone: Arc<Zone>, secondaries: Vec<SocketAddr>, mut changes: watch::Receiver<u32>) {
    changes.mark_unchanged();
    while changes.changed().await.is_ok() {
        let serial = *changes.borrow_and_update();
        for &secondary in &secondaries {
            let sent = notify(&zone, secondary, serial).await;
            ZoneStats::count(if sent { &zone.stats.notifies_sent } else { &zone.stats.notifies_failed });
        }
    }
}

/// One NOTIFY, retried until the secondary answers; whether it did.
pub async fn notify(zone: &Zone, secondary: SocketAddr, serial: u32) -> bool {
    let local: SocketAddr = if secondary.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
    let socket = match UdpSocket::bind(local).await {
        Ok(socket) => socket,
        Err(error) => {
            warn!(%error, secondary = %secondary, "rpz notify: no socket");
            return false;
        }
    };
    let id = rand::random::<u16>();
    let mut message = Message::new(id, MessageType::Query, OpCode::Notify);
    message.metadata.authoritative = true;
    message.add_query(Query::query(zone.origin.clone(), RecordType::SOA));
    message.add_answer(soa(&zone.origin, serial, zone.refresh_secs));
    let Ok(packet) = message.to_vec() else {
        return false;
    };
    let mut buf = [0u8; 512];
    for attempt in 1..=TRIES {
        if socket.send_to(&packet, secondary).await.is_err() {
            continue;
        }
        let answered = tokio::time::timeout(ANSWER_WAIT, async {
            loop {
                match socket.recv_from(&mut buf).await {
                    Ok((n, from)) if from == secondary && n >= 2 && buf[..2] == id.to_be_bytes() => return true,
                    Ok(_) => {}
                    Err(_) => return false,
                }
            }
        });
        if answered.await.unwrap_or(false) {
            info!(secondary = %secondary, serial, "rpz notify answered");
            return true;
        }
        debug!(secondary = %secondary, serial, attempt, "rpz notify unanswered");
    }
    warn!(secondary = %secondary, serial, "rpz notify never answered; the secondary picks the change up at its refresh");
    false
}
