//! The socket under each QUIC endpoint: quinn's own tokio socket, with every datagram from a
//! source outside `access.allow` dropped as it is read, before quinn parses it.
//!
//! Owns: that filter. quinn derives the Initial keys (RFC 9001 §5.2, HKDF) and removes header
//! protection for every Initial before the application sees the attempt (`Incoming`), so an
//! access check there would come after crypto work; here it comes before any, and such a source
//! gets nothing back. An Initial dropped here is counted as an `outside_allow` attempt.
//! Does not own: what happens to the datagrams it lets through (`quic`).

use std::{
    fmt,
    io::{self, IoSliceMut},
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use quinn::{
    AsyncUdpSocket, UdpPoller,
    udp::{RecvMeta, Transmit},
};

use crate::{
    listen::quic::{Admission, HandshakeStats},
    resolve::{Resolver, Transport, access::Verdict},
};

/// quinn's socket with the access check in front of its receive path.
pub(crate) struct Gate {
    inner: Arc<dyn AsyncUdpSocket>,
    resolver: Arc<Resolver>,
    stats: Arc<HandshakeStats>,
    transport: Transport,
}

impl Gate {
    pub(crate) fn new(
        inner: Arc<dyn AsyncUdpSocket>,
        resolver: Arc<Resolver>,
        stats: Arc<HandshakeStats>,
        transport: Transport,
    ) -> Gate {
        Gate { inner, resolver, stats, transport }
    }

    /// Keeps the first `received` datagrams whose source is allowed, moved to the front of
    /// `bufs` and `meta` in their order; returns how many were kept.
    fn keep_allowed(&self, bufs: &mut [IoSliceMut<'_>], meta: &mut [RecvMeta], received: usize) -> usize {
        let access = &self.resolver.live().access;
        let mut kept = 0;
        for i in 0..received.min(meta.len()).min(bufs.len()) {
            if access.check(meta[i].addr.ip()) == Verdict::Drop {
                if bufs[i].first().is_some_and(|first| is_initial(*first)) {
                    self.stats.count(self.transport, Admission::OutsideAllow);
                }
                continue;
            }
            if kept != i {
                let (front, back) = bufs.split_at_mut(i);
                let len = meta[i].len;
                // quinn hands buffers of one size, so a kept datagram always fits an earlier one.
                let (Some(to), Some(from)) = (front[kept].get_mut(..len), back[0].get(..len)) else { continue };
                to.copy_from_slice(from);
                meta[kept] = meta[i];
            }
            kept += 1;
        }
        kept
    }
}

/// Whether `first`, a datagram's first byte, starts a QUIC v1 Initial (RFC 9000 §17.2.2: long
/// header, type 0).
fn is_initial(first: u8) -> bool {
    first & 0xb0 == 0x80
}

impl AsyncUdpSocket for Gate {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Arc::clone(&self.inner).create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        self.inner.try_send(transmit)
    }

    /// A batch with nothing allowed in it is `Ready(0)`; quinn then reads on until the socket
    /// is empty or its time budget for the round is spent.
    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let received = ready!(self.inner.poll_recv(cx, bufs, meta))?;
        Poll::Ready(Ok(self.keep_allowed(bufs, meta, received)))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.inner.max_transmit_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}

impl fmt::Debug for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gate").field("inner", &self.inner).field("transport", &self.transport).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::is_initial;

    #[test]
    fn only_long_header_type_zero_is_an_initial() {
        assert!(is_initial(0xc3), "Initial with the fixed bit and a 4-byte packet number");
        assert!(is_initial(0xc0));
        assert!(!is_initial(0xe0), "Handshake");
        assert!(!is_initial(0xd0), "0-RTT");
        assert!(!is_initial(0xf0), "Retry");
        assert!(!is_initial(0x40), "short header");
    }
}
