//! The plain UDP listener.
//!
//! Owns: the receive/answer loop of one UDP socket: every query queued on the socket is answered
//! as one batch (`dns::datagrams`), blocked and cached answers go out together at the end of the
//! batch, upstream work is spawned and its answers leave through a batched outbox.
//! Must not touch: what the answer is (`resolve`).

use std::{sync::Arc, time::Instant};

use tokio::net::UdpSocket;
use tokio_util::task::TaskTracker;
use tracing::debug;

use crate::{
    dns::datagrams::{Batch, Outbox},
    resolve::Transport,
    resolve::{Client, Resolver, Step},
};

/// Largest UDP query we read; anything longer is cut and then fails to parse.
const UDP_RECV_BUFFER: usize = 4096;

/// Answers every query queued on the socket as one batch (see `datagrams`): blocked and cached
/// answers go out together at the end of the batch, upstream work is spawned.
pub(crate) async fn serve_udp(resolver: Arc<Resolver>, socket: Arc<UdpSocket>, in_flight: TaskTracker) {
    let mut batch = Batch::new(UDP_RECV_BUFFER);
    // Answers of forwarded queries, sent together by their own task.
    let (outbox, sender) = Outbox::new(Arc::clone(&socket));
    in_flight.spawn(sender);
    loop {
        let received = match batch.recv(&socket).await {
            Ok(received) => received,
            Err(error) => {
                // ICMP errors from earlier sends surface here on some systems; keep serving.
                debug!(%error, "udp receive failed");
                continue;
            }
        };
        let now = Instant::now();
        for i in 0..received {
            let (packet, peer, out) = batch.query(i);
            let client = Client { addr: peer, transport: Transport::Udp };
            if let Step::Upstream(forward) = resolver.answer_locally(packet, client, out, now) {
                let packet = packet.to_vec();
                let (resolver, outbox) = (Arc::clone(&resolver), outbox.clone());
                in_flight.spawn(async move {
                    let mut out = Vec::new();
                    resolver.answer_from_upstream(&packet, client, forward, &mut out).await;
                    outbox.send(out, peer);
                });
            }
        }
        if let Err(error) = batch.send(&socket).await {
            debug!(%error, "udp send failed");
        }
        // Each query spends one unit of the task's scheduling budget, as with one receive per
        // query, so the attempt dispatcher on the same worker keeps pace with the listener.
        for _ in 0..received {
            tokio::task::consume_budget().await;
        }
    }
}
