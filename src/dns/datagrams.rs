//! Batches of UDP datagrams: for the listeners, up to [`BATCH`] queries read with one
//! `recvmmsg(2)` and their answers sent with one `sendmmsg(2)`; for the upstream sockets, every
//! queued answer read with one `recvmmsg(2)`.
//!
//! Owns: the batch buffers and the two system calls (Linux; elsewhere one datagram per call
//! through tokio). Does not own: what is answered (`resolve`) or the loops (`listen`).
//!
//! Why: on a busy listener every query costs a receive and a send system call, and on loopback
//! each send also wakes the client. Under load the socket holds many queries at once; taking
//! them together and answering them together halves the calls per query and wakes the client
//! once per batch. An idle listener still answers each query as soon as it arrives: a batch is
//! whatever is queued, never waited for.

use std::{io, net::SocketAddr, sync::Arc};

use tokio::{io::Interest, net::UdpSocket, sync::mpsc};

/// Datagrams per batch (the kernel's own UIO_MAXIOV limit is 1024; 32 is what DNS servers that
/// batch typically use).
pub const BATCH: usize = 32;

/// Received queries and their answers, reused from batch to batch.
pub struct Batch {
    buffers: Vec<Box<[u8]>>,
    lens: [usize; BATCH],
    /// Datagrams longer than their buffer (cut by the kernel, MSG_TRUNC).
    truncated: [bool; BATCH],
    peers: [SocketAddr; BATCH],
    answers: Vec<Vec<u8>>,
    received: usize,
    #[cfg(target_os = "linux")]
    headers: RecvHeaders,
}

/// The `recvmmsg(2)` headers of a batch, built once: each points at its buffer, its iovec and
/// its address slot, all on the heap, so they stay valid wherever the `Batch` moves. Building
/// (and zeroing) 6.6 KB of headers and address slots on every receive cost more user time
/// than the rest of a cached query's parsing at low rates, where a batch is one query.
#[cfg(target_os = "linux")]
struct RecvHeaders {
    names: Box<[libc::sockaddr_storage]>,
    iovecs: Box<[libc::iovec]>,
    headers: Box<[libc::mmsghdr]>,
}

// SAFETY: the raw pointers in `iovecs` and `headers` point only into the boxed slices of the
// same `Batch` (its buffers and `names`), which are owned by it and moved with it; they are
// dereferenced only by the kernel inside `recv_now(&mut self)`, so sharing or sending the
// batch cannot race on them.
#[cfg(target_os = "linux")]
unsafe impl Send for RecvHeaders {}
#[cfg(target_os = "linux")]
unsafe impl Sync for RecvHeaders {}

#[cfg(target_os = "linux")]
impl RecvHeaders {
    fn new(buffers: &mut [Box<[u8]>]) -> RecvHeaders {
        // SAFETY: sockaddr_storage, iovec and mmsghdr are plain C structs for which all-zero is
        // a valid value.
        let zeroed = || unsafe { std::mem::zeroed() };
        let mut names: Box<[libc::sockaddr_storage]> = (0..buffers.len()).map(|_| zeroed()).collect();
        let mut iovecs: Box<[libc::iovec]> = buffers
            .iter_mut()
            .map(|buffer| libc::iovec { iov_base: buffer.as_mut_ptr().cast(), iov_len: buffer.len() })
            .collect();
        let headers = (0..buffers.len())
            .map(|i| {
                // SAFETY: as above.
                let mut header: libc::mmsghdr = unsafe { std::mem::zeroed() };
                header.msg_hdr.msg_name = (&raw mut names[i]).cast();
                header.msg_hdr.msg_iov = &raw mut iovecs[i];
                header.msg_hdr.msg_iovlen = 1;
                header
            })
            .collect();
        RecvHeaders { names, iovecs, headers }
    }
}

impl Batch {
    /// Buffers for [`BATCH`] datagrams of up to `max_len` bytes each.
    pub fn new(max_len: usize) -> Batch {
        Batch { answers: (0..BATCH).map(|_| Vec::with_capacity(1232)).collect(), ..Batch::receive_only(max_len) }
    }

    /// Buffers for receiving only (no answer buffers): an upstream socket's receive loop.
    pub fn receive_only(max_len: usize) -> Batch {
        let mut buffers: Vec<Box<[u8]>> = (0..BATCH).map(|_| vec![0u8; max_len].into_boxed_slice()).collect();
        Batch {
            #[cfg(target_os = "linux")]
            headers: RecvHeaders::new(&mut buffers),
            buffers,
            lens: [0; BATCH],
            truncated: [false; BATCH],
            peers: [SocketAddr::from(([0, 0, 0, 0], 0)); BATCH],
            answers: (0..BATCH).map(|_| Vec::new()).collect(),
            received: 0,
        }
    }

    /// Datagram `i` of the batch and whether it was longer than its buffer (and so cut).
    pub fn datagram(&self, i: usize) -> (&[u8], bool) {
        (&self.buffers[i][..self.lens[i]], self.truncated[i])
    }

    /// Waits for queries and reads every one queued, up to [`BATCH`]; returns how many.
    pub async fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        loop {
            socket.readable().await?;
            match socket.try_io(Interest::READABLE, || self.recv_now(socket)) {
                Ok(n) => {
                    self.received = n;
                    for answer in &mut self.answers[..n] {
                        answer.clear();
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Query `i` of the batch, who sent it, and the buffer for its answer (left empty: none).
    pub fn query(&mut self, i: usize) -> (&[u8], SocketAddr, &mut Vec<u8>) {
        (&self.buffers[i][..self.lens[i]], self.peers[i], &mut self.answers[i])
    }

    /// Sends every non-empty answer of the batch to its client, waiting while the socket's
    /// send buffer is full. An answer the kernel refuses is skipped (and returned as the error
    /// once the rest went out), so one bad address cannot hold up the others.
    pub async fn send(&self, socket: &UdpSocket) -> io::Result<()> {
        let mut failed = None;
        let mut start = 0;
        while start < self.received {
            // The next run of answers with no unanswered query among them.
            let run = self.answers[start..self.received].iter().take_while(|a| !a.is_empty()).count();
            let (answers, peers) = (&self.answers[start..start + run], &self.peers[start..start + run]);
            send_all(socket, answers, Some(peers), |_, error| failed = Some(error)).await;
            start += run + 1;
        }
        failed.map_or(Ok(()), Err)
    }

    #[cfg(target_os = "linux")]
    fn recv_now(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        let RecvHeaders { names, iovecs, headers } = &mut self.headers;
        debug_assert_eq!(iovecs.len(), BATCH);
        for header in headers.iter_mut() {
            // The kernel overwrites these two on every receive.
            header.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            header.msg_hdr.msg_flags = 0;
        }
        // SAFETY: every pointer in `headers` points into `iovecs`, `names` or `self.buffers`
        // (set up by `RecvHeaders::new`), all alive and unmoved heap allocations, with their
        // true lengths; the kernel writes at most that much into each.
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                headers.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        for i in 0..n {
            // A datagram longer than the buffer is cut (MSG_TRUNC): a query then fails to
            // parse; an upstream answer is asked for again over TCP.
            self.lens[i] = (headers[i].msg_len as usize).min(self.buffers[i].len());
            self.truncated[i] = headers[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            // SAFETY: the kernel wrote a socket address of `msg_namelen` bytes into `names[i]`.
            let name = unsafe { socket2::SockAddr::new(names[i], headers[i].msg_hdr.msg_namelen) };
            self.peers[i] = name.as_socket().unwrap_or(self.peers[i]);
        }
        Ok(n)
    }

    #[cfg(not(target_os = "linux"))]
    fn recv_now(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        let (len, peer) = socket.try_recv_from(&mut self.buffers[0])?;
        self.lens[0] = len.min(self.buffers[0].len());
        self.truncated[0] = len > self.buffers[0].len();
        self.peers[0] = peer;
        Ok(1)
    }
}

/// Answers that finished one by one (forwarded queries), queued for a sender task that sends
/// whatever has piled up with one `sendmmsg(2)`: under load the answers of many forwarded
/// queries leave together; an idle listener's answer leaves at once.
#[derive(Clone)]
pub struct Outbox {
    queue: mpsc::UnboundedSender<(Vec<u8>, SocketAddr)>,
}

impl Outbox {
    /// An outbox for `socket` and the task that empties it; the task ends when every `Outbox`
    /// clone is dropped and the queue is empty.
    pub fn new(socket: Arc<UdpSocket>) -> (Outbox, impl Future<Output = ()> + Send + 'static) {
        let (queue, mut queued) = mpsc::unbounded_channel::<(Vec<u8>, SocketAddr)>();
        let sender = async move {
            let mut pending = Vec::with_capacity(BATCH);
            let (mut answers, mut peers) = (Vec::with_capacity(BATCH), Vec::with_capacity(BATCH));
            while next_batch(&mut queued, &mut pending).await {
                answers.clear();
                peers.clear();
                for (answer, peer) in pending.drain(..) {
                    answers.push(answer);
                    peers.push(peer);
                }
                send_all(&socket, &answers, Some(&peers), |_, error| tracing::debug!(%error, "udp send failed")).await;
            }
        };
        (Outbox { queue }, sender)
    }

    /// Queues `answer` for `peer` (nothing when it is empty).
    pub fn send(&self, answer: Vec<u8>, peer: SocketAddr) {
        if !answer.is_empty() {
            // Fails only once the sender task is gone, at shutdown: the answer is dropped.
            let _ = self.queue.send((answer, peer));
        }
    }
}

/// Sends every datagram, each to its peer (`None`: a connected socket's own peer), waiting
/// while the socket's send buffer is full. A datagram that cannot be sent is skipped and handed
/// to `failed` by its index, so one bad address cannot hold up the others.
pub async fn send_all<D: AsRef<[u8]>>(
    socket: &UdpSocket,
    datagrams: &[D],
    peers: Option<&[SocketAddr]>,
    mut failed: impl FnMut(usize, io::Error),
) {
    let mut sent = 0;
    while sent < datagrams.len() {
        let rest = peers.map(|peers| &peers[sent..]);
        match socket.try_io(Interest::WRITABLE, || send_many(socket, &datagrams[sent..], rest)) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if let Err(e) = socket.writable().await {
                    for i in sent..datagrams.len() {
                        failed(i, io::Error::new(e.kind(), e.to_string()));
                    }
                    return;
                }
            }
            Err(e) => {
                failed(sent, e);
                sent += 1;
            }
        }
    }
}

/// Sends up to [`BATCH`] of `datagrams` (none empty), each to its peer (`None`: a connected
/// socket's own peer), with one system call; returns how many went out.
#[cfg(target_os = "linux")]
pub fn send_many<D: AsRef<[u8]>>(
    socket: &UdpSocket,
    datagrams: &[D],
    peers: Option<&[SocketAddr]>,
) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let run = datagrams.len().min(peers.map_or(BATCH, <[SocketAddr]>::len)).min(BATCH);
    let names: Vec<socket2::SockAddr> = peers.map_or(Vec::new(), |p| p[..run].iter().map(|&a| a.into()).collect());
    // SAFETY: the headers point into `iovecs`, `names` and the datagrams, all alive and unmoved
    // during the call; the kernel only reads through them. mmsghdr and iovec are plain C
    // structs for which all-zero is a valid value (a null name: the connected peer).
    unsafe {
        let mut iovecs: [libc::iovec; BATCH] = std::mem::zeroed();
        let mut headers: [libc::mmsghdr; BATCH] = std::mem::zeroed();
        for i in 0..run {
            let datagram = datagrams[i].as_ref();
            iovecs[i] = libc::iovec { iov_base: datagram.as_ptr().cast_mut().cast(), iov_len: datagram.len() };
            let header = &mut headers[i].msg_hdr;
            if let Some(name) = names.get(i) {
                header.msg_name = name.as_ptr().cast_mut().cast();
                header.msg_namelen = name.len();
            }
            header.msg_iov = &raw mut iovecs[i];
            header.msg_iovlen = 1;
        }
        let n = libc::sendmmsg(socket.as_raw_fd(), headers.as_mut_ptr(), run as libc::c_uint, libc::MSG_DONTWAIT);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }
}

#[cfg(not(target_os = "linux"))]
pub fn send_many<D: AsRef<[u8]>>(
    socket: &UdpSocket,
    datagrams: &[D],
    peers: Option<&[SocketAddr]>,
) -> io::Result<usize> {
    match peers {
        Some(peers) => socket.try_send_to(datagrams[0].as_ref(), peers[0]),
        None => socket.try_send(datagrams[0].as_ref()),
    }
    .map(|_| 1)
}

/// Waits for the next items of `queue` and takes every one queued, up to [`BATCH`]; false once
/// the queue is closed and empty. After the first item it lets the other ready tasks of this
/// worker run once, so that items they queue in the meantime join the batch instead of each
/// costing a system call of its own.
pub async fn next_batch<T>(queue: &mut mpsc::UnboundedReceiver<T>, batch: &mut Vec<T>) -> bool {
    if queue.recv_many(batch, BATCH).await == 0 {
        return false;
    }
    if batch.len() < BATCH {
        tokio::task::yield_now().await;
        while batch.len() < BATCH {
            match queue.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_batch_is_everything_queued_and_answers_go_to_their_senders() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        let mut clients = Vec::new();
        for _ in 0..3 {
            clients.push(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        }
        for (i, client) in clients.iter().enumerate() {
            for k in 0..15u8 {
                client.send_to(&[i as u8, k], addr).await.unwrap();
            }
        }
        let mut batch = Batch::new(512);
        let mut total = 0;
        while total < 45 {
            let n = batch.recv(&server).await.unwrap();
            assert!((1..=BATCH).contains(&n));
            for i in 0..n {
                let (query, _, answer) = batch.query(i);
                // Every other query goes unanswered, as a dropped one would.
                if query[1] % 2 == 0 {
                    answer.extend_from_slice(&[query[0], query[1], 0xaa]);
                }
            }
            batch.send(&server).await.unwrap();
            total += n;
        }
        for (i, client) in clients.iter().enumerate() {
            let mut seen = Vec::new();
            let mut buf = [0u8; 16];
            for _ in 0..8 {
                let n = client.recv(&mut buf).await.unwrap();
                assert_eq!((n, buf[0], buf[2]), (3, i as u8, 0xaa));
                seen.push(buf[1]);
            }
            seen.sort();
            assert_eq!(seen, (0..15).step_by(2).collect::<Vec<u8>>());
        }
    }

    #[tokio::test]
    async fn the_outbox_delivers_every_queued_answer_and_ends_with_its_last_handle() {
        let server = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let clients = [UdpSocket::bind("127.0.0.1:0").await.unwrap(), UdpSocket::bind("127.0.0.1:0").await.unwrap()];
        let (outbox, sender) = Outbox::new(Arc::clone(&server));
        let sender = tokio::spawn(sender);
        // More than a batch at once, as forwarded answers arrive together; an empty answer
        // (a query dropped on purpose) sends nothing.
        for k in 0..100u8 {
            let client = &clients[usize::from(k % 2)];
            outbox.send(vec![k % 2, k], client.local_addr().unwrap());
        }
        outbox.send(Vec::new(), clients[0].local_addr().unwrap());
        drop(outbox);
        sender.await.unwrap();
        for (i, client) in clients.iter().enumerate() {
            let mut seen = Vec::new();
            let mut buf = [0u8; 16];
            while let Ok(Ok(n)) =
                tokio::time::timeout(std::time::Duration::from_millis(200), client.recv(&mut buf)).await
            {
                assert_eq!((n, usize::from(buf[0])), (2, i));
                seen.push(buf[1]);
            }
            assert_eq!(seen, (0..100).filter(|k| usize::from(k % 2) == i).collect::<Vec<u8>>());
        }
    }
}
