//! Plain UDP to one upstream: a few long-lived connected sockets, queries multiplexed on them
//! by ID.
//!
//! Owns: the sockets (bound to random ports, replaced after a number of queries or an age, so
//! the source ports keep changing), a random ID per query that is unique on its socket, the
//! 0x20 case randomization of the name asked, and matching answers to waiting queries: an
//! answer is delivered only when its ID and question (case included) are those of a query
//! waiting on that socket; anything else is dropped and counted. Does not own: time limits and
//! TCP fallback (the caller bounds the wait and retries over TCP).
//!
//! Why: a fresh socket per query costs a bind, a connect, an epoll registration and a close per
//! query. Spoofing resistance stays that of one socket per query: a forged answer must still hit
//! an open port and one of the IDs waiting on it, and on top of that guess the name's case.

use std::{
    io,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use hashbrown::HashMap;
use tokio::{
    net::UdpSocket,
    sync::{mpsc, oneshot},
    task::AbortHandle,
};

use crate::{
    dns::datagrams::{self, BATCH, Batch},
    dns::wire::{self, HEADER_LEN},
};

/// Sockets kept open per upstream: enough that one socket's receive loop is not a bottleneck,
/// few enough that they stay a handful of file descriptors.
pub const SOCKETS: usize = 8;
/// A socket is replaced after this many queries…
const ROTATE_AFTER_QUERIES: u32 = 2_000;
/// …or when it is this old, whichever comes first.
const ROTATE_AFTER: Duration = Duration::from_secs(10);
/// Largest answer read over UDP. Queries advertise an EDNS size of 1232; an upstream that
/// sends more than this anyway has its answer asked for again over TCP.
const MAX_ANSWER: usize = 4096;

/// What the receive loop hands to a waiting query.
#[derive(Debug)]
pub enum Delivery {
    Answer(Vec<u8>),
    /// An answer with the right ID and question but not the case we asked with (given back with
    /// the caller's ID and case): either a forgery that guessed ID and port, or an upstream that
    /// does not echo the name as asked. Not to be used as it is: the caller settles it over TCP
    /// or with a second query (see `fallback`).
    CaseMismatch(Vec<u8>),
    /// The upstream's port is closed (ICMP port unreachable).
    Refused,
    /// The answer was larger than [`MAX_ANSWER`]: the caller asks again over TCP.
    Oversize,
    /// The query could not be sent.
    SendFailed(io::Error),
}

struct Waiter {
    /// The query as sent (ID and case included), for matching the answer.
    query: Arc<[u8]>,
    /// Taken when the answer is delivered. The entry itself stays until its `Registration` is
    /// dropped, so its ID cannot be handed to another query while this one still owns it.
    reply: Option<oneshot::Sender<Delivery>>,
}

struct Shared {
    socket: UdpSocket,
    waiting: Mutex<HashMap<u16, Waiter>>,
    counters: Arc<Counters>,
}

impl Shared {
    fn waiting(&self) -> MutexGuard<'_, HashMap<u16, Waiter>> {
        // A panic while holding the lock leaves a map that is still consistent.
        self.waiting.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One pooled socket; its send and receive loops end when the last user drops it.
struct PooledSocket {
    shared: Arc<Shared>,
    /// Queries to send, by the send loop, as many at a time as are queued.
    outgoing: mpsc::UnboundedSender<(u16, Arc<[u8]>)>,
    sender: AbortHandle,
    receiver: AbortHandle,
    opened: Instant,
    queries: AtomicU32,
}

impl Drop for PooledSocket {
    fn drop(&mut self) {
        self.sender.abort();
        self.receiver.abort();
    }
}

#[derive(Default)]
struct Counters {
    /// Answers dropped: unknown ID, wrong question, or not a response.
    unmatched: AtomicU64,
    case_mismatch: AtomicU64,
    opened: AtomicU64,
}

/// The UDP sockets to one upstream server.
pub struct UdpPool {
    server: SocketAddr,
    slots: Box<[Mutex<Option<Arc<PooledSocket>>>]>,
    next: AtomicUsize,
    counters: Arc<Counters>,
}

impl UdpPool {
    /// A pool for `server`; sockets are opened on first use (so this needs no runtime).
    pub fn new(server: SocketAddr) -> UdpPool {
        UdpPool {
            server,
            slots: (0..SOCKETS).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
            counters: Arc::default(),
        }
    }

    /// The server this pool sends to.
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// Sends `query` (its ID is replaced by one unique on the chosen socket, its name's case
    /// randomized) and waits for the matching answer, returned with the caller's ID and case.
    /// The caller bounds the wait; dropping the future forgets the query.
    pub async fn exchange(&self, query: &[u8]) -> io::Result<Delivery> {
        let socket = self.socket()?;
        self.exchange_on(&socket, query).await
    }

    /// As `exchange`, on a new socket of its own (a fresh source port, open only for this
    /// query), for the second query that confirms an answer in another case.
    pub async fn exchange_on_fresh_socket(&self, query: &[u8]) -> io::Result<Delivery> {
        let socket = self.open()?;
        self.exchange_on(&socket, query).await
    }

    async fn exchange_on(&self, socket: &PooledSocket, query: &[u8]) -> io::Result<Delivery> {
        let mut sent = query.to_vec();
        randomize_case(&mut sent);
        let (reply, answer) = oneshot::channel();
        let (registration, sent) = Registration::new(&socket.shared, sent, reply)?;
        socket.outgoing.send((registration.id, sent)).map_err(|_| io::Error::other("send loop ended"))?;
        let delivery = answer.await.map_err(|_| io::Error::other("receive loop ended"))?;
        drop(registration);
        // The client sees its own ID and case (the question is answered as it asked); the
        // question matched up to case, so it has the same length.
        let restore = |mut answer: Vec<u8>| {
            answer[..2].copy_from_slice(&query[..2]);
            let question = HEADER_LEN..question_end(query).unwrap_or(HEADER_LEN);
            answer[question.clone()].copy_from_slice(&query[question]);
            answer
        };
        Ok(match delivery {
            Delivery::Answer(answer) => Delivery::Answer(restore(answer)),
            Delivery::CaseMismatch(answer) => Delivery::CaseMismatch(restore(answer)),
            other => other,
        })
    }

    /// A socket from the pool (round robin), opening or replacing it when due.
    fn socket(&self) -> io::Result<Arc<PooledSocket>> {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let mut slot = self.slots[index].lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(socket) = slot.as_ref() {
            let used = socket.queries.fetch_add(1, Ordering::Relaxed);
            if used < ROTATE_AFTER_QUERIES && socket.opened.elapsed() < ROTATE_AFTER {
                return Ok(Arc::clone(socket));
            }
        }
        // Queries still waiting on a replaced socket keep it (and its receive loop) alive.
        let socket = Arc::new(self.open()?);
        *slot = Some(Arc::clone(&socket));
        Ok(socket)
    }

    fn open(&self) -> io::Result<PooledSocket> {
        let bind: SocketAddr =
            if self.server.is_ipv4() { (Ipv4Addr::UNSPECIFIED, 0).into() } else { (Ipv6Addr::UNSPECIFIED, 0).into() };
        // Port 0: the kernel picks a random free ephemeral port.
        let socket = std::net::UdpSocket::bind(bind)?;
        socket.connect(self.server)?;
        socket.set_nonblocking(true)?;
        let shared = Arc::new(Shared {
            socket: UdpSocket::from_std(socket)?,
            waiting: Mutex::new(HashMap::new()),
            counters: Arc::clone(&self.counters),
        });
        let receiver = tokio::spawn(receive(Arc::clone(&shared))).abort_handle();
        let (outgoing, queued) = mpsc::unbounded_channel();
        let sender = tokio::spawn(transmit(Arc::clone(&shared), queued)).abort_handle();
        self.counters.opened.fetch_add(1, Ordering::Relaxed);
        Ok(PooledSocket { shared, outgoing, sender, receiver, opened: Instant::now(), queries: AtomicU32::new(1) })
    }

    /// Answers dropped because they matched no waiting query.
    pub fn unmatched(&self) -> u64 {
        self.counters.unmatched.load(Ordering::Relaxed)
    }

    /// Answers whose question differed from the query only in case (settled by `fallback`).
    pub fn case_mismatches(&self) -> u64 {
        self.counters.case_mismatch.load(Ordering::Relaxed)
    }

    /// Sockets opened so far (replacements included).
    pub fn sockets_opened(&self) -> u64 {
        self.counters.opened.load(Ordering::Relaxed)
    }
}

/// A query waiting on a socket; dropping it (answered, timed out or cancelled) frees its ID.
struct Registration<'s> {
    shared: &'s Shared,
    id: u16,
}

impl<'s> Registration<'s> {
    /// Picks a random ID not waiting on this socket, writes it into `query` and registers it;
    /// returns the query as it is to be sent.
    fn new(
        shared: &'s Shared,
        mut query: Vec<u8>,
        reply: oneshot::Sender<Delivery>,
    ) -> io::Result<(Registration<'s>, Arc<[u8]>)> {
        let mut waiting = shared.waiting();
        // The in-flight cap keeps far fewer than 65 536 queries on one socket; a few tries find
        // a free ID, and a socket that somehow is full fails the query rather than spin.
        for _ in 0..16 {
            let id: u16 = rand::random();
            if let hashbrown::hash_map::Entry::Vacant(slot) = waiting.entry(id) {
                query[..2].copy_from_slice(&id.to_be_bytes());
                let query: Arc<[u8]> = query.into();
                slot.insert(Waiter { query: Arc::clone(&query), reply: Some(reply) });
                return Ok((Registration { shared, id }, query));
            }
        }
        Err(io::Error::other("no free query ID on the upstream socket"))
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.shared.waiting().remove(&self.id);
    }
}

/// The send loop of one socket: sends the queries queued by `exchange`, every one queued with
/// one system call; a query the kernel refuses is failed at once.
async fn transmit(shared: Arc<Shared>, mut queued: mpsc::UnboundedReceiver<(u16, Arc<[u8]>)>) {
    let mut pending = Vec::with_capacity(BATCH);
    let (mut ids, mut queries) = (Vec::with_capacity(BATCH), Vec::with_capacity(BATCH));
    while datagrams::next_batch(&mut queued, &mut pending).await {
        ids.clear();
        queries.clear();
        for (id, query) in pending.drain(..) {
            ids.push(id);
            queries.push(query);
        }
        datagrams::send_all(&shared.socket, &queries, None, |i, error| fail(&shared, ids[i], error)).await;
    }
}

/// Tells the query with `id` that it could not be sent.
fn fail(shared: &Shared, id: u16, error: io::Error) {
    let reply = shared.waiting().get_mut(&id).and_then(|waiter| waiter.reply.take());
    if let Some(reply) = reply {
        let _ = reply.send(Delivery::SendFailed(error));
    }
}

/// The receive loop of one socket: hands each answer to the query it belongs to, reading every
/// answer queued on the socket with one system call.
async fn receive(shared: Arc<Shared>) {
    let mut batch = Batch::receive_only(MAX_ANSWER);
    loop {
        match batch.recv(&shared.socket).await {
            Ok(n) => {
                for i in 0..n {
                    let (answer, truncated) = batch.datagram(i);
                    deliver(&shared, answer, truncated);
                }
            }
            Err(error) if error.kind() == io::ErrorKind::ConnectionRefused => {
                // An earlier send drew an ICMP port unreachable: nothing listens there, so no
                // query waiting here will be answered; let them fail over now.
                for waiter in shared.waiting().values_mut() {
                    if let Some(reply) = waiter.reply.take() {
                        let _ = reply.send(Delivery::Refused);
                    }
                }
            }
            Err(error) => tracing::debug!(%error, "upstream udp receive failed"),
        }
    }
}

fn deliver(shared: &Shared, answer: &[u8], truncated: bool) {
    let id = answer.get(..2).map(|id| u16::from_be_bytes([id[0], id[1]]));
    let mut waiting = shared.waiting();
    // Unknown ID, already answered (a duplicate or a late forgery), or another question.
    let Some(waiter) = id.and_then(|id| waiting.get_mut(&id)).filter(|w| w.reply.is_some()) else {
        drop(waiting);
        shared.counters.unmatched.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let delivery = if truncated && matches_exactly(&waiter.query, answer) {
        Delivery::Oversize
    } else if matches_exactly(&waiter.query, answer) {
        Delivery::Answer(answer.to_vec())
    } else if wire::matches_query(&waiter.query, answer) {
        shared.counters.case_mismatch.fetch_add(1, Ordering::Relaxed);
        Delivery::CaseMismatch(answer.to_vec())
    } else if let Some(error) = wire::error_without_question(&waiter.query, answer) {
        Delivery::Answer(error)
    } else {
        drop(waiting);
        shared.counters.unmatched.fetch_add(1, Ordering::Relaxed);
        return;
    };
    if let Some(reply) = waiter.reply.take() {
        drop(waiting);
        let _ = reply.send(delivery);
    }
}

/// The end of the question section (after QTYPE and QCLASS).
pub(super) fn question_end(query: &[u8]) -> Option<usize> {
    let end = wire::skip_name(query, HEADER_LEN).ok()? + 4;
    (end <= query.len()).then_some(end)
}

/// An answer to `query`: a response, same ID, one question, byte for byte the same (case too).
fn matches_exactly(query: &[u8], answer: &[u8]) -> bool {
    let Some(end) = question_end(query) else {
        return false;
    };
    answer.len() >= end
        && answer[..2] == query[..2]
        && answer[2] & 0x80 != 0
        && answer[4..6] == [0, 1]
        && answer[HEADER_LEN..end] == query[HEADER_LEN..end]
}

/// 0x20 (draft-vixie-dnsext-dns0x20): flips the case of each letter of the question name at
/// random, one more bit a forger must guess per letter.
pub(super) fn randomize_case(query: &mut [u8]) {
    let Some(end) = question_end(query) else {
        return;
    };
    let mut bits: u64 = rand::random();
    let mut left = 64;
    for byte in &mut query[HEADER_LEN..end - 4] {
        if byte.is_ascii_alphabetic() {
            if left == 0 {
                bits = rand::random();
                left = 64;
            }
            if bits & 1 == 1 {
                *byte ^= 0x20;
            }
            bits >>= 1;
            left -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::wire::flag;

    fn query(name: &str) -> Vec<u8> {
        let mut out = Vec::new();
        wire::push_header(&mut out, 0x1234, flag::RD, [1, 0, 0, 0]);
        wire::push_name(&mut out, name);
        out.extend_from_slice(&[0, 1, 0, 1]);
        out
    }

    #[test]
    fn case_is_randomized_in_the_name_only() {
        let original = query("abcdefghijklmnopqrstuvwxyz.example");
        let mut changed = false;
        for _ in 0..8 {
            let mut q = original.clone();
            randomize_case(&mut q);
            assert!(q.eq_ignore_ascii_case(&original));
            assert_eq!(q[..HEADER_LEN], original[..HEADER_LEN]);
            assert_eq!(q[q.len() - 4..], original[original.len() - 4..]);
            changed |= q != original;
        }
        assert!(changed, "26 letters keep their case eight times over: not random");
    }

    #[test]
    fn exact_match_needs_the_same_case() {
        let q = query("a.example");
        let mut answer = q.clone();
        answer[2] |= 0x80;
        assert!(matches_exactly(&q, &answer));
        answer[HEADER_LEN + 1] = b'A';
        assert!(!matches_exactly(&q, &answer));
        assert!(wire::matches_query(&q, &answer));
        assert!(!matches_exactly(&q, &q), "a query is not an answer");
    }

    /// A loopback upstream sending the datagrams `answer(query)` returns, in order.
    async fn upstream(answer: fn(&[u8]) -> Vec<Vec<u8>>) -> SocketAddr {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 512];
            while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
                for reply in answer(&buf[..n]) {
                    let _ = socket.send_to(&reply, peer).await;
                }
            }
        });
        addr
    }

    /// `pool.exchange`, bounded so that a lost datagram fails the test instead of hanging it.
    async fn ask(pool: &UdpPool, q: &[u8]) -> Delivery {
        tokio::time::timeout(Duration::from_secs(5), pool.exchange(q)).await.expect("answered in time").unwrap()
    }

    fn echo(q: &[u8]) -> Vec<u8> {
        let mut a = q.to_vec();
        a[2] |= 0x80;
        a
    }

    #[tokio::test]
    async fn answers_come_back_with_the_callers_id_and_case() {
        let pool = UdpPool::new(upstream(|q| vec![echo(q)]).await);
        for i in 0..50 {
            let q = query(&format!("Host{i}.Example"));
            let Delivery::Answer(a) = ask(&pool, &q).await else { panic!("no answer") };
            assert_eq!(a[..2], q[..2]);
            assert_eq!(a[HEADER_LEN..], q[HEADER_LEN..]);
        }
        assert_eq!(pool.unmatched(), 0);
    }

    #[tokio::test]
    async fn forged_answers_are_dropped_and_counted() {
        // First a forgery with another ID, then one with the wrong name, then the real answer.
        let pool = UdpPool::new(
            upstream(|q| {
                let mut wrong_id = echo(q);
                wrong_id[1] ^= 1;
                let mut wrong_name = echo(q);
                wrong_name[HEADER_LEN + 1] ^= 1;
                vec![wrong_id, wrong_name, echo(q)]
            })
            .await,
        );
        let q = query("a.example");
        assert!(matches!(ask(&pool, &q).await, Delivery::Answer(_)));
        assert_eq!(pool.unmatched(), 2);
    }

    #[tokio::test]
    async fn an_answer_in_another_case_is_reported() {
        let pool = UdpPool::new(
            upstream(|q| {
                let mut a = echo(q);
                a[HEADER_LEN..].make_ascii_lowercase();
                vec![a]
            })
            .await,
        );
        let q = query("abcdefghijklmnopqrstuvwxyz.example");
        assert!(matches!(ask(&pool, &q).await, Delivery::CaseMismatch(a) if a[HEADER_LEN..] == q[HEADER_LEN..]));
        assert_eq!(pool.case_mismatches(), 1);
    }

    #[tokio::test]
    async fn an_answered_id_stays_taken_until_its_query_lets_go() {
        // Regression: delivering used to free the ID at once, so a new query could take it and
        // then lose its own entry when the answered query cleaned up after itself.
        let shared = Shared {
            socket: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            waiting: Mutex::new(HashMap::new()),
            counters: Arc::default(),
        };
        let (reply, answered) = oneshot::channel();
        let (registration, q) = Registration::new(&shared, query("a.example"), reply).unwrap();
        deliver(&shared, &echo(&q), false);
        assert!(matches!(answered.await, Ok(Delivery::Answer(_))));
        assert!(shared.waiting().contains_key(&registration.id), "ID still owned");
        deliver(&shared, &echo(&q), false);
        assert_eq!(shared.counters.unmatched.load(Ordering::Relaxed), 1, "a duplicate is dropped");
        drop(registration);
        assert!(shared.waiting().is_empty());
    }

    #[tokio::test]
    async fn many_queries_in_flight_share_few_sockets() {
        let pool = Arc::new(UdpPool::new(upstream(|q| vec![echo(q)]).await));
        // 100 at once: well within the loopback socket buffers, so none is lost.
        let tasks: Vec<_> = (0..100)
            .map(|i| {
                let pool = Arc::clone(&pool);
                tokio::spawn(async move {
                    let q = query(&format!("n{i}.example"));
                    matches!(ask(&pool, &q).await, Delivery::Answer(a) if a[HEADER_LEN..] == q[HEADER_LEN..])
                })
            })
            .collect();
        for task in tasks {
            assert!(task.await.unwrap());
        }
        assert!(pool.sockets_opened() <= SOCKETS as u64, "{} sockets", pool.sockets_opened());
    }
}
