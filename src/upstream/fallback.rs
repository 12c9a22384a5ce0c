//! What is done when one upstream misbehaves, and what is remembered about it for a while.
//!
//! Owns: `Upstream::ask` (one attempt at one server, with the fallbacks below), the notes kept
//! per server (`Memory`, like Unbound's infra cache: each note lasts [`REMEMBER`]) and the
//! counters of the fallbacks (`Fallbacks`). Does not own: choosing the server or the time
//! budget (`pool`), or the transports themselves (`upstream`, `udp`).
//!
//! - **Error rcodes.** SERVFAIL, REFUSED and NOTIMP, and a FORMERR that persists after the retry
//!   without EDNS, are [`UpstreamError::Rcode`]: this server failed this query, and the pool asks
//!   the next one. NXDOMAIN, NOERROR and every other rcode are answers.
//! - **EDNS fallback.** A FORMERR to a query with our OPT record is asked again without it
//!   (RFC 6891 §7), per query. A query with OPT that has no answer after half of the attempt's
//!   time is also sent without OPT, unless this server answered a query with OPT within
//!   [`REMEMBER`] (then the silence is loss or a slow name, not an EDNS-dropping firewall);
//!   whichever answer comes first is used. When the plain query is the one answered, the
//!   server is noted as needing plain DNS and gets no OPT for [`REMEMBER`], so the silence
//!   costs only the first query. So does a FORMERR followed by a usable answer without OPT. Without OPT there is no DO bit: such answers carry no OPT
//!   record, and the cache does not echo DO for them (`resolve::cache`).
//! - **Case-folding servers (UDP).** See [`Upstream::udp_exchange`] for the fallback and why it
//!   keeps the spoofing protection.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use hickory_proto::op::Message;
use tokio::time::{Instant, sleep_until, timeout_at};
use tracing::{debug, info};

use super::{Upstream, UpstreamError, tcp_exchange, udp};
use crate::{
    config::Protocol,
    dns::wire::{self, HEADER_LEN, TYPE_OPT, rcode},
};

/// How long a note about a server lasts (Unbound's `infra-host-ttl` default).
pub const REMEMBER: Duration = Duration::from_secs(900);

/// One note: until when it holds, in ms since the memory's epoch (0 = not noted).
#[derive(Default)]
struct Note(AtomicU64);

/// What has been learnt about one server. Time is passed in, so tests need not wait.
pub struct Memory {
    epoch: std::time::Instant,
    /// It answers queries carrying OPT.
    edns_works: Note,
    /// It answers only queries without OPT.
    needs_plain: Note,
    /// It answers over UDP with the question name's case changed.
    folds_case: Note,
    /// When it last answered anything, in ms since `epoch` (0 = never).
    heard_ms: AtomicU64,
}

impl Memory {
    pub fn new() -> Memory {
        Memory {
            epoch: std::time::Instant::now(),
            edns_works: Note::default(),
            needs_plain: Note::default(),
            folds_case: Note::default(),
            heard_ms: AtomicU64::new(0),
        }
    }

    /// Notes that the server answered (anything) at `now`.
    pub fn hear(&self, now: std::time::Instant) {
        self.heard_ms.store(self.ms(now).max(1), Ordering::Relaxed);
    }

    /// When the server last answered, if that was after `since`: it is alive.
    pub fn heard_after(&self, since: std::time::Instant) -> Option<std::time::Instant> {
        let ms = self.heard_ms.load(Ordering::Relaxed);
        let heard = self.epoch + Duration::from_millis(ms);
        (ms != 0 && heard > since).then_some(heard)
    }

    fn ms(&self, now: std::time::Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_millis() as u64
    }

    fn holds(&self, note: &Note, now: std::time::Instant) -> bool {
        self.ms(now) < note.0.load(Ordering::Relaxed)
    }

    fn set(&self, note: &Note, now: std::time::Instant) {
        note.0.store(self.ms(now) + REMEMBER.as_millis() as u64, Ordering::Relaxed);
    }

    /// Whether the server is noted as folding case (for tests and metrics).
    pub fn folds_case(&self, now: std::time::Instant) -> bool {
        self.holds(&self.folds_case, now)
    }

    /// Whether the server is noted as needing queries without OPT.
    pub fn needs_plain(&self, now: std::time::Instant) -> bool {
        self.holds(&self.needs_plain, now)
    }
}

impl Default for Memory {
    fn default() -> Self {
        Memory::new()
    }
}

/// How often each fallback was taken, per server (for the metrics endpoint).
#[derive(Default)]
pub struct Fallbacks {
    /// Answers got without OPT (after a FORMERR or silence, or because the server needs it).
    pub edns_plain: AtomicU64,
    /// Case mismatches settled over TCP.
    pub case_tcp: AtomicU64,
    /// Case mismatches accepted because a second UDP query got the same answer.
    pub case_double_query: AtomicU64,
    /// Case mismatches rejected: the second UDP query got another answer, or none usable.
    pub case_rejected: AtomicU64,
    /// Error answers counted as this server failing the query, by rcode.
    pub servfail: AtomicU64,
    pub refused: AtomicU64,
    pub notimp: AtomicU64,
    pub formerr: AtomicU64,
}

impl Fallbacks {
    /// (kind label, count) of each fallback, for `nxguard_upstream_fallbacks_total`.
    pub fn kinds(&self) -> [(&'static str, u64); 4] {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            ("edns_plain", n(&self.edns_plain)),
            ("case_tcp", n(&self.case_tcp)),
            ("case_double_query", n(&self.case_double_query)),
            ("case_rejected", n(&self.case_rejected)),
        ]
    }

    /// (rcode label, count), for `nxguard_upstream_error_rcodes_total`.
    pub fn rcodes(&self) -> [(&'static str, u64); 4] {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            ("SERVFAIL", n(&self.servfail)),
            ("REFUSED", n(&self.refused)),
            ("NOTIMP", n(&self.notimp)),
            ("FORMERR", n(&self.formerr)),
        ]
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Where a UDP exchange goes next.
enum Next {
    Answer(Vec<u8>),
    /// Truncated or oversized: ask over TCP.
    Tcp,
}

/// Which of the two raced queries answered.
enum Raced {
    Edns(Vec<u8>),
    Plain(Vec<u8>),
}

impl Upstream {
    /// One attempt at this server: sends `query` (built by the pipeline: header, question and
    /// our OPT record last, if any) with the fallbacks in this module's header. An answer with
    /// an error rcode is an error here; the caller bounds the time by `deadline`.
    pub async fn ask(&self, query: &[u8], deadline: Instant) -> Result<Vec<u8>, UpstreamError> {
        let Some(plain) = without_opt(query) else {
            return self.usable(self.exchange(query, deadline).await?);
        };
        let now = std::time::Instant::now();
        if self.memory.needs_plain(now) {
            let answer = self.exchange(&plain, deadline).await?;
            bump(&self.stats.fallbacks.edns_plain);
            return self.usable(answer);
        }
        let plain_transport = matches!(self.protocol(), Protocol::Udp | Protocol::Tcp);
        let answer = if plain_transport && !self.memory.holds(&self.memory.edns_works, now) {
            // Boxed: taken only while the server's EDNS support is unknown.
            match Box::pin(self.race(query, &plain, deadline)).await? {
                Raced::Edns(answer) => answer,
                Raced::Plain(answer) => return self.answered_plain(answer, true),
            }
        } else {
            self.exchange(query, deadline).await?
        };
        if rcode_of(&answer) == rcode::FORMERR {
            // RFC 6891 §7: a server that does not know EDNS answers FORMERR; ask once more
            // without the OPT record. When that is answered, the server is noted as needing
            // plain DNS, as Unbound's infra cache does: against a server that also folds case,
            // each FORMERR costs a round trip more, and together they outlast the budget. A
            // FORMERR without OPT too is about this query only and is not noted.
            let answer = self.exchange(&plain, deadline).await?;
            return self.answered_plain(answer, true);
        }
        self.memory.set(&self.memory.edns_works, now);
        self.usable(answer)
    }

    /// Sends the query with OPT; if it is not answered by half the time left, sends it without
    /// OPT as well and takes whichever answer comes first.
    async fn race(&self, query: &[u8], plain: &[u8], deadline: Instant) -> Result<Raced, UpstreamError> {
        let now = Instant::now();
        let halfway = now + deadline.saturating_duration_since(now) / 2;
        let edns = self.exchange(query, deadline);
        tokio::pin!(edns);
        tokio::select! {
            result = &mut edns => return result.map(Raced::Edns),
            () = sleep_until(halfway) => {}
        }
        debug!(upstream = %self.address(), "no answer to a query with EDNS yet; asking without too");
        let mut plain = Box::pin(self.exchange(plain, deadline));
        tokio::select! {
            result = &mut edns => match result {
                Ok(answer) => Ok(Raced::Edns(answer)),
                Err(_) => plain.await.map(Raced::Plain),
            },
            result = &mut plain => match result {
                Ok(answer) => Ok(Raced::Plain(answer)),
                Err(_) => edns.await.map(Raced::Edns),
            },
        }
    }

    /// An answer to the query without OPT, after the one with OPT failed. Unless it is FORMERR
    /// too, it counts as a fallback, and with `remember`, if it is usable, the server is noted
    /// as needing plain DNS.
    fn answered_plain(&self, answer: Vec<u8>, remember: bool) -> Result<Vec<u8>, UpstreamError> {
        let now = std::time::Instant::now();
        let code = rcode_of(&answer);
        if code != rcode::FORMERR {
            bump(&self.stats.fallbacks.edns_plain);
            let failed = matches!(code, rcode::SERVFAIL | rcode::REFUSED | rcode::NOTIMP);
            if remember && !failed {
                if !self.memory.needs_plain(now) {
                    info!(upstream = %self.address(), remember_secs = REMEMBER.as_secs(), "upstream answers only without EDNS");
                }
                self.memory.set(&self.memory.needs_plain, now);
            }
        }
        self.usable(answer)
    }

    /// The answer, unless its rcode says this server failed the query.
    fn usable(&self, answer: Vec<u8>) -> Result<Vec<u8>, UpstreamError> {
        let code = rcode_of(&answer);
        let counter = match code {
            rcode::SERVFAIL => &self.stats.fallbacks.servfail,
            rcode::REFUSED => &self.stats.fallbacks.refused,
            rcode::NOTIMP => &self.stats.fallbacks.notimp,
            rcode::FORMERR => &self.stats.fallbacks.formerr,
            _ => return Ok(answer),
        };
        bump(counter);
        Err(UpstreamError::Rcode { server: self.address(), rcode: code })
    }

    /// Plain UDP with the 0x20 check, and the fallbacks when the answer's case is not ours.
    ///
    /// A mismatch is a forgery that guessed port and ID but not the case, or a server (or
    /// middlebox) that folds case. It is settled over TCP, which a blind attacker cannot
    /// spoof; the TCP query's case is randomized too, so a TCP answer in another case proves
    /// the server folds case, and it is noted so. When TCP fails, or the server is noted as
    /// folding, the UDP answer is accepted only if a second UDP query, with a fresh ID from a
    /// fresh socket (so a fresh source port), gets the same answer (same rcode, same records in
    /// any order; TTLs may differ).
    ///
    /// Why that is as strong as the ID and port checks plus the double query: a blind forger
    /// must hit the port and ID of each query (about 2^-16 for the ID times the chance of
    /// hitting one of our few open ports among the ephemeral range, per forged packet), and
    /// must do it twice, for two queries whose IDs and ports are drawn independently, with
    /// the same records both times: the chances multiply. The first query gives nothing away
    /// for the second (nothing an off-path attacker sees changes). The note that a server
    /// folds case, which skips TCP, is set only by a TCP answer (not spoofable blind) or by an
    /// agreeing double query, so forging it is as hard as forging an answer; it lapses after
    /// [`REMEMBER`]. What is lost against such a server is only the 0x20 bits, which it
    /// throws away itself.
    pub(super) async fn udp_exchange(&self, query: &[u8], deadline: Instant) -> Result<Vec<u8>, UpstreamError> {
        let server = self.address();
        let delivery = self.udp.load().exchange(query).await.map_err(|source| UpstreamError::Io { server, source })?;
        self.heard(&delivery);
        let next = match delivery {
            udp::Delivery::CaseMismatch(first) if self.formerr_to_edns_from_folder(query, &first) => {
                Next::Answer(first)
            }
            // Boxed: the rare path should not grow every query's future.
            udp::Delivery::CaseMismatch(first) => Box::pin(self.after_case_mismatch(query, first, deadline)).await?,
            other => self.settled(other)?,
        };
        match next {
            Next::Answer(answer) => Ok(answer),
            Next::Tcp => tcp_exchange(server, query).await,
        }
    }

    /// A FORMERR in another case to a query with OPT, from a server noted as folding case: taken
    /// as it is, without TCP or a second query to confirm it. All it leads to is the query
    /// asked again without OPT, whose answer is checked like any; confirming it would cost a
    /// round trip more per query, which with the retry outlasts the budget (`fwd_edns_probe`).
    fn formerr_to_edns_from_folder(&self, query: &[u8], answer: &[u8]) -> bool {
        rcode_of(answer) == rcode::FORMERR
            && self.memory.folds_case(std::time::Instant::now())
            && without_opt(query).is_some()
    }

    async fn after_case_mismatch(
        &self,
        query: &[u8],
        first: Vec<u8>,
        deadline: Instant,
    ) -> Result<Next, UpstreamError> {
        let server = self.address();
        let now = std::time::Instant::now();
        if !self.memory.folds_case(now) {
            let left = deadline.saturating_duration_since(Instant::now());
            match timeout_at(Instant::now() + left / 2, self.tcp_checking_case(query)).await {
                Ok(Ok(answer)) => {
                    bump(&self.stats.fallbacks.case_tcp);
                    return Ok(Next::Answer(answer));
                }
                Ok(Err(error)) => debug!(%error, "tcp after a case mismatch failed; asking over udp again"),
                Err(_) => debug!(upstream = %server, "tcp after a case mismatch timed out; asking over udp again"),
            }
        }
        let delivery = self
            .udp
            .load()
            .exchange_on_fresh_socket(query)
            .await
            .map_err(|source| UpstreamError::Io { server, source })?;
        self.heard(&delivery);
        let udp::Delivery::CaseMismatch(second) = delivery else {
            return self.settled(delivery);
        };
        if !same_answer(&first, &second) {
            bump(&self.stats.fallbacks.case_rejected);
            return Err(UpstreamError::CaseMismatch { server });
        }
        if !self.memory.folds_case(now) {
            info!(upstream = %server, remember_secs = REMEMBER.as_secs(), "upstream folds the case of names");
        }
        self.memory.set(&self.memory.folds_case, now);
        bump(&self.stats.fallbacks.case_double_query);
        self.settled(udp::Delivery::Answer(second))
    }

    /// Notes a delivered answer, in any case, as a sign of life (the pool waits for a slow
    /// server that keeps answering, `pool::Rtt`).
    fn heard(&self, delivery: &udp::Delivery) {
        if matches!(delivery, udp::Delivery::Answer(_) | udp::Delivery::CaseMismatch(_) | udp::Delivery::Oversize) {
            self.memory.hear(std::time::Instant::now());
        }
    }

    /// What one UDP delivery comes to: the answer, or TCP for truncated and oversized ones.
    fn settled(&self, delivery: udp::Delivery) -> Result<Next, UpstreamError> {
        let server = self.address();
        let io = |source| UpstreamError::Io { server, source };
        match delivery {
            udp::Delivery::Answer(answer) if !truncated(&answer) => Ok(Next::Answer(answer)),
            udp::Delivery::Answer(_) | udp::Delivery::Oversize => Ok(Next::Tcp),
            udp::Delivery::CaseMismatch(_) => Err(UpstreamError::CaseMismatch { server }),
            udp::Delivery::Refused => Err(io(std::io::ErrorKind::ConnectionRefused.into())),
            udp::Delivery::SendFailed(error) => Err(io(error)),
        }
    }

    /// `query` over TCP with its name's case randomized; an answer in another case marks the
    /// server as folding case. The answer comes back with the caller's case.
    async fn tcp_checking_case(&self, query: &[u8]) -> Result<Vec<u8>, UpstreamError> {
        let mut asked = query.to_vec();
        udp::randomize_case(&mut asked);
        let mut answer = tcp_exchange(self.address(), &asked).await?;
        let question = HEADER_LEN..udp::question_end(query).unwrap_or(HEADER_LEN);
        if answer.get(question.clone()) != asked.get(question.clone()) {
            self.memory.set(&self.memory.folds_case, std::time::Instant::now());
            info!(upstream = %self.address(), remember_secs = REMEMBER.as_secs(), "upstream folds the case of names");
        }
        // `tcp_exchange` checked the question up to case, so the lengths agree.
        if let (Some(to), Some(from)) = (answer.get_mut(question.clone()), query.get(question)) {
            to.copy_from_slice(from);
        }
        Ok(answer)
    }
}

fn truncated(answer: &[u8]) -> bool {
    answer.get(2).is_some_and(|b| b & 0x02 != 0)
}

fn rcode_of(answer: &[u8]) -> u8 {
    answer.get(3).map_or(0, |b| b & 0x0f)
}

/// `query` without its OPT record (our queries carry at most that one additional record, last),
/// or None when it has none.
pub fn without_opt(query: &[u8]) -> Option<Vec<u8>> {
    let [_, _, _, additional] = wire::read_counts(query).ok()?;
    let end = udp::question_end(query)?;
    let record = wire::skip_record(query, end).ok()?;
    if additional != 1 || record.rtype(query) != TYPE_OPT || record.end != query.len() {
        return None;
    }
    let mut plain = query[..end].to_vec();
    wire::set_u16(&mut plain, 10, 0);
    Some(plain)
}

/// Two answers to the same question agree: same rcode and flags that matter, and the same
/// records in each section, in any order (RFC 2136 §1.1.1 equality: names up to case, TTLs
/// ignored, since a caching server counts them down between the two queries).
fn same_answer(a: &[u8], b: &[u8]) -> bool {
    let (Ok(a), Ok(b)) = (Message::from_vec(a), Message::from_vec(b)) else {
        return false;
    };
    let sorted = |records: &[hickory_proto::rr::Record]| {
        let mut records = records.to_vec();
        records.sort();
        records
    };
    a.metadata.response_code == b.metadata.response_code
        && a.metadata.authoritative == b.metadata.authoritative
        && a.metadata.truncation == b.metadata.truncation
        && sorted(&a.answers) == sorted(&b.answers)
        && sorted(&a.authorities) == sorted(&b.authorities)
        && sorted(&a.additionals) == sorted(&b.additionals)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::wire::flag;

    fn query(edns: bool) -> Vec<u8> {
        let mut out = Vec::new();
        wire::push_header(&mut out, 0x1234, flag::RD, [1, 0, 0, u16::from(edns)]);
        wire::push_name(&mut out, "a.example");
        out.extend_from_slice(&[0, 1, 0, 1]);
        if edns {
            wire::push_opt(&mut out, true, 0, &[]);
        }
        out
    }

    #[test]
    fn the_plain_query_is_the_query_without_its_opt_record() {
        assert_eq!(without_opt(&query(true)), Some(query(false)));
        assert_eq!(without_opt(&query(false)), None);
    }

    #[test]
    fn notes_last_for_the_memory_window_and_then_lapse() {
        let memory = Memory::new();
        let now = std::time::Instant::now();
        assert!(!memory.folds_case(now));
        memory.set(&memory.folds_case, now);
        assert!(memory.folds_case(now + REMEMBER - Duration::from_secs(1)));
        assert!(!memory.folds_case(now + REMEMBER + Duration::from_secs(1)));
        assert!(!memory.needs_plain(now), "notes are separate");
    }

    fn answer(addresses: &[[u8; 4]], ttl: u32) -> Vec<u8> {
        use hickory_proto::rr::{RData, Record, rdata::A};
        let mut m = Message::from_vec(&query(false)).unwrap();
        m.metadata.message_type = hickory_proto::op::MessageType::Response;
        let name = m.queries[0].name().clone();
        for a in addresses {
            m.add_answer(Record::from_rdata(name.clone(), ttl, RData::A(A::from(std::net::Ipv4Addr::from(*a)))));
        }
        m.to_vec().unwrap()
    }

    #[test]
    fn answers_agree_up_to_record_order_and_ttl() {
        let one = answer(&[[192, 0, 2, 1], [192, 0, 2, 2]], 300);
        assert!(same_answer(&one, &answer(&[[192, 0, 2, 2], [192, 0, 2, 1]], 299)));
        assert!(!same_answer(&one, &answer(&[[192, 0, 2, 1], [203, 0, 113, 66]], 300)));
        assert!(!same_answer(&one, &answer(&[[192, 0, 2, 1]], 300)));
        assert!(!same_answer(&one, b"garbage"));
    }
}
