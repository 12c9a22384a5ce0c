//! The response cache.
//!
//! Owns: storing upstream answers in wire form, ready to serve: a hit copies the stored bytes,
//! patches the ID, flags, the client's question (keeping its 0x20 case mix) and the counted-down
//! TTLs, and appends the client's OPT record. Nothing is re-encoded. Negative answers are
//! cached per RFC 2308 §5 (for min(SOA TTL, SOA MINIMUM)); errors are not cached.
//! Does not own: deciding whether a cached answer may still be served under the current policy
//! (`pipeline` re-checks the stored CNAME chain when the policy changed).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use moka::{Expiry, sync::Cache as Moka};

use crate::{
    config::CacheConfig,
    dns::wire::{self, HEADER_LEN, LowerName, Query, TYPE_CNAME, TYPE_OPT, TYPE_SOA, WireError, flag, rcode},
};

/// TTL of stale answers (RFC 8767 §4 recommends 30 s).
const STALE_TTL: u32 = 30;
/// Extended DNS Error 3, "Stale Answer" (RFC 8914 §4.4).
const EDE_STALE_ANSWER: u16 = 3;

/// Hits an entry needs in its lifetime before it is prefetched.
const PREFETCH_MIN_HITS: u32 = 2;

/// Longest key: a 255-octet wire name, type, class and the flag byte.
pub const MAX_KEY: usize = 255 + 5;

/// Builds the cache key of a query into `buf`: lowercased wire name, QTYPE, QCLASS and the DO
/// and CD bits, which change the answer's content (RFC 4035 §3.2).
pub fn key<'b>(query: &Query<'_>, buf: &'b mut [u8; MAX_KEY]) -> &'b [u8] {
    let wire = query.qname_wire();
    for (dst, src) in buf.iter_mut().zip(wire) {
        *dst = src.to_ascii_lowercase();
    }
    let mut n = wire.len();
    buf[n..n + 2].copy_from_slice(&query.qtype.to_be_bytes());
    buf[n + 2..n + 4].copy_from_slice(&query.qclass.to_be_bytes());
    n += 4;
    buf[n] = u8::from(query.dnssec_ok()) | (u8::from(query.flags & flag::CD != 0) << 1);
    &buf[..n + 1]
}

/// An upstream answer, stored ready to serve.
#[derive(Debug)]
pub struct CachedAnswer {
    /// Header, question and records as received, the upstream's OPT record removed.
    body: Box<[u8]>,
    /// Upstream header flags (we keep rcode and AD from them).
    flags: u16,
    /// The upstream's OPT record had DO set. Without it (an upstream asked without EDNS, or
    /// one that ignored DO) the answer carries no DNSSEC records, so DO is not echoed.
    dnssec_ok: bool,
    /// Answer, authority and additional counts without the OPT record.
    counts: [u16; 3],
    /// Where each record's TTL sits, and its value when stored.
    ttls: Box<[(u16, u32)]>,
    pub stored_at: Instant,
    pub expires_at: Instant,
    /// From when a hit makes the entry due for a prefetch: the last tenth of its TTL (None:
    /// no TTL, never). Kept as an instant so that a hit compares instead of computing durations.
    prefetch_from: Option<Instant>,
    /// The CNAME targets the answer passes through, lowercased.
    pub chain: Box<[Box<str>]>,
    /// The policy generation the chain was last checked against.
    pub generation: u64,
    /// Whether the chain led into a banned domain under that generation.
    pub chain_blocked: bool,
    /// Fresh hits served from this entry (for prefetch).
    hits: AtomicU32,
    /// A prefetch of this entry was started (at most one per entry).
    prefetch_started: AtomicBool,
}

/// What an upstream answer says, read off its records.
#[derive(Debug)]
pub struct Inspected {
    pub answer: CachedAnswer,
    /// How long it may be cached; None = not cacheable.
    pub ttl: Option<u32>,
    /// The CNAME chain runs in a circle (the client gets SERVFAIL).
    pub chain_loop: bool,
    /// Records were removed: answer records off the question's CNAME chain, and the whole
    /// additional section (nothing a stub needs, and a classic cache-poisoning vector).
    pub scrubbed: bool,
}

impl CachedAnswer {
    /// Reads an upstream response (already matched to `query`) into servable form.
    pub fn from_upstream(
        query: &Query<'_>,
        response: &[u8],
        limits: &CacheConfig,
        now: Instant,
        generation: u64,
    ) -> Result<Inspected, WireError> {
        Self::inspect(query, response, limits, now, generation, false)
    }

    fn inspect(
        query: &Query<'_>,
        response: &[u8],
        limits: &CacheConfig,
        now: Instant,
        generation: u64,
        scrubbed: bool,
    ) -> Result<Inspected, WireError> {
        let flags = wire::read_u16(response, 2)?;
        let records = Records::read(response, limits)?;
        let (chain, chain_loop) = follow_chain(query, &records.cnames);
        let on_chain = |name: &LowerName| {
            name.as_bytes() == query.name.as_bytes() || chain.iter().any(|c| c.as_bytes() == name.as_bytes())
        };
        let opt_not_last = records.opt.is_some_and(|(_, end)| end != response.len());
        let foreign =
            records.answer_owners.iter().any(|owner| !on_chain(owner)) || records.counts[2] > 0 || opt_not_last;
        if foreign && !scrubbed && !chain_loop {
            let clean = scrub(response, &query.name, &chain)?;
            let mut inspected = Self::inspect(query, &clean, limits, now, generation, true)?;
            // Scrubbing drops the OPT record; what it said about DO still holds.
            inspected.answer.dnssec_ok = records.dnssec_ok;
            return Ok(inspected);
        }
        let mut body = response.to_vec();
        if let Some((start, _)) = records.opt {
            // Last in the message (scrubbing made sure), so nothing points past it.
            body.truncate(start);
        }
        let cache_ttl = records.cache_ttl(flags, limits);
        let ttl = Duration::from_secs(u64::from(cache_ttl.unwrap_or(0)));
        let expires_at = now + ttl;
        let prefetch_from = (!ttl.is_zero()).then(|| expires_at - ttl / 10);
        Ok(Inspected {
            answer: CachedAnswer {
                body: body.into_boxed_slice(),
                flags,
                dnssec_ok: records.dnssec_ok,
                counts: records.counts,
                ttls: records.ttls.into_boxed_slice(),
                stored_at: now,
                expires_at,
                prefetch_from,
                chain,
                generation,
                chain_blocked: false,
                hits: AtomicU32::new(0),
                prefetch_started: AtomicBool::new(false),
            },
            ttl: cache_ttl,
            chain_loop,
            scrubbed,
        })
    }

    /// Counts a fresh hit at `now`; true exactly once per entry, when the entry is due for a
    /// prefetch: the hit falls in the last tenth of the entry's TTL and the entry has been hit at
    /// least `PREFETCH_MIN_HITS` times, this hit included (Unbound's rule, with a popularity
    /// floor so that a name asked once is left to expire).
    pub fn hit_wants_prefetch(&self, now: Instant) -> bool {
        let hits = self.hits.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        hits >= PREFETCH_MIN_HITS
            && self.prefetch_from.is_some_and(|from| now >= from)
            && !self.prefetch_started.swap(true, Ordering::Relaxed)
    }

    /// Lets a later hit try again (the prefetch could not start: no in-flight slot).
    pub fn prefetch_skipped(&self) {
        self.prefetch_started.store(false, Ordering::Relaxed);
    }

    pub fn rcode(&self) -> u8 {
        (self.flags & flag::RCODE_MASK) as u8
    }

    /// Heap bytes of this answer: the struct and what it points to.
    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.body.len()
            + std::mem::size_of_val(&*self.ttls)
            + self.chain.iter().map(|name| name.len() + std::mem::size_of::<Box<str>>()).sum::<usize>()
    }

    /// Writes the answer for `query` into `out`; `udp_limit` truncates (TC=1) over UDP.
    pub fn write(&self, query: &Query<'_>, now: Instant, udp_limit: Option<usize>, out: &mut Vec<u8>) {
        self.write_as(query, now, udp_limit, out, false);
    }

    /// Writes the expired answer as a stale one (RFC 8767 §4): every TTL 30 and, with EDNS,
    /// Extended DNS Error 3 "Stale Answer" (RFC 8914).
    pub fn write_stale(&self, query: &Query<'_>, udp_limit: Option<usize>, out: &mut Vec<u8>) {
        self.write_as(query, self.stored_at, udp_limit, out, true);
    }

    fn write_as(&self, query: &Query<'_>, now: Instant, udp_limit: Option<usize>, out: &mut Vec<u8>, stale: bool) {
        out.clear();
        let question = query.question_bytes();
        let question_end = HEADER_LEN + question.len();
        if self.body.len() < question_end || self.body[HEADER_LEN..question_end].len() != question.len() {
            wire::write_error(out, query, rcode::SERVFAIL.into(), None);
            return;
        }
        out.extend_from_slice(&self.body);
        out[HEADER_LEN..question_end].copy_from_slice(question);
        let age = now.saturating_duration_since(self.stored_at).as_secs().min(u64::from(u32::MAX)) as u32;
        for &(at, ttl) in self.ttls.iter() {
            let at = usize::from(at);
            let ttl = if stale { STALE_TTL } else { ttl.saturating_sub(age) };
            out[at..at + 4].copy_from_slice(&ttl.to_be_bytes());
        }
        // RFC 6840 §5.8: AD only for clients that asked for it with AD or DO.
        let wants_ad = query.flags & flag::AD != 0 || query.dnssec_ok();
        let ad = if wants_ad { self.flags & flag::AD } else { 0 };
        let flags = wire::response_flags(query.flags, self.rcode()) | ad;
        wire::set_u16(out, 0, query.id);
        wire::set_u16(out, 2, flags);
        wire::set_u16(out, 4, 1);
        let [an, ns, ar] = self.counts;
        wire::set_u16(out, 6, an);
        wire::set_u16(out, 8, ns);
        wire::set_u16(out, 10, ar + u16::from(query.edns.is_some()));
        let mut options = Vec::new();
        if stale {
            wire::push_ede(&mut options, EDE_STALE_ANSWER, "");
        }
        let opt_len = if query.edns.is_some() { 11 + options.len() } else { 0 };
        if udp_limit.is_some_and(|limit| out.len() + opt_len > limit) {
            // RFC 2181 §9: a truncated answer is cut to the question, TC set, OPT kept.
            out.truncate(question_end);
            wire::set_u16(out, 2, flags | flag::TC);
            for at in [6, 8] {
                wire::set_u16(out, at, 0);
            }
            wire::set_u16(out, 10, u16::from(query.edns.is_some()));
        }
        if query.edns.is_some() {
            // RFC 3225 §3 copies DO into the answer; only when the upstream's answer had it too.
            wire::push_opt(out, query.dnssec_ok() && self.dnssec_ok, 0, &options);
        }
    }
}

/// What the records of an upstream answer say, read in one pass.
struct Records {
    /// Answer, authority and additional counts without the OPT record.
    counts: [u16; 3],
    /// Where each record's TTL sits, and its value clamped to the configured bounds.
    ttls: Vec<(u16, u32)>,
    /// The answer section's own count (with CNAMEs), for telling a negative answer.
    answers: u16,
    soa_negative_ttl: Option<u32>,
    min_answer_ttl: u32,
    /// The answer section's CNAMEs, owner to target, lowercased.
    cnames: Vec<(LowerName, LowerName)>,
    answer_owners: Vec<LowerName>,
    /// Where the OPT record starts and ends, if there is one.
    opt: Option<(usize, usize)>,
    dnssec_ok: bool,
}

impl Records {
    fn read(response: &[u8], limits: &CacheConfig) -> Result<Records, WireError> {
        let [_, an, ns, ar] = wire::read_counts(response)?;
        let mut pos = wire::skip_name(response, HEADER_LEN)? + 4;
        let total = usize::from(an) + usize::from(ns) + usize::from(ar);
        // Sized up front: growing them from empty was two reallocations per forwarded answer.
        let mut records = Records {
            counts: [an, ns, ar],
            ttls: Vec::with_capacity(total),
            answers: an,
            soa_negative_ttl: None,
            min_answer_ttl: u32::MAX,
            cnames: Vec::new(),
            answer_owners: Vec::with_capacity(usize::from(an)),
            opt: None,
            dnssec_ok: false,
        };
        for index in 0..total {
            let rec = wire::skip_record(response, pos)?;
            pos = rec.end;
            let section = if index < usize::from(an) {
                Section::Answer
            } else if index < usize::from(an) + usize::from(ns) {
                Section::Authority
            } else {
                Section::Additional
            };
            records.add(response, &rec, section, limits)?;
        }
        if pos != response.len() {
            return Err(WireError::TrailingBytes);
        }
        Ok(records)
    }

    fn add(
        &mut self,
        response: &[u8],
        rec: &wire::RecordAt,
        section: Section,
        limits: &CacheConfig,
    ) -> Result<(), WireError> {
        let rtype = rec.rtype(response);
        if rtype == TYPE_OPT {
            self.opt = Some((rec.name_at, rec.end));
            // The OPT "TTL" holds extended rcode, version and flags; DO is the flags' top bit.
            self.dnssec_ok = rec.ttl(response) & 0x8000 != 0;
            self.counts[2] -= 1;
            return Ok(());
        }
        let ttl = rec.ttl(response).min(limits.max_ttl_secs).max(limits.min_ttl_secs);
        self.ttls.push((rec.ttl_at() as u16, ttl));
        match section {
            Section::Answer => {
                self.min_answer_ttl = self.min_answer_ttl.min(ttl);
                let mut owner = LowerName::new();
                wire::read_name(response, rec.name_at, &mut owner)?;
                if rtype == TYPE_CNAME {
                    let mut target = LowerName::new();
                    wire::read_name(response, rec.rdata.start, &mut target)?;
                    self.cnames.push((owner.clone(), target));
                }
                self.answer_owners.push(owner);
            }
            Section::Authority if rtype == TYPE_SOA => {
                let minimum_at = rec.rdata.end.checked_sub(4).ok_or(WireError::Truncated("SOA"))?;
                let minimum = wire::read_u32(response, minimum_at)?;
                self.soa_negative_ttl = Some(rec.ttl(response).min(minimum));
            }
            Section::Authority | Section::Additional => {}
        }
        Ok(())
    }

    /// How long the answer may be cached (None: not at all): negative answers per RFC 2308 §5,
    /// NOERROR for its shortest answer TTL, truncated and error answers never.
    fn cache_ttl(&self, flags: u16, limits: &CacheConfig) -> Option<u32> {
        let rc = (flags & flag::RCODE_MASK) as u8;
        let negative = rc == rcode::NXDOMAIN || (rc == rcode::NOERROR && self.answers == 0);
        if flags & flag::TC != 0 {
            None
        } else if negative {
            self.soa_negative_ttl.map(|t| t.min(limits.negative_max_ttl_secs))
        } else if rc == rcode::NOERROR {
            Some(self.min_answer_ttl)
        } else {
            None
        }
    }
}

#[derive(Clone, Copy)]
enum Section {
    Answer,
    Authority,
    Additional,
}

/// Follows CNAMEs from the query name (RFC 1034 §4.3.2); true when it runs in a circle.
fn follow_chain(query: &Query<'_>, cnames: &[(LowerName, LowerName)]) -> (Box<[Box<str>]>, bool) {
    let mut chain: Vec<Box<str>> = Vec::new();
    let mut current = query.name.as_bytes();
    while let Some((_, target)) = cnames.iter().find(|(owner, _)| owner.as_bytes() == current) {
        let text: Box<str> = target.to_text().into();
        if chain.contains(&text) || target.as_bytes() == query.name.as_bytes() {
            return (chain.into_boxed_slice(), true);
        }
        current = target.as_bytes();
        chain.push(text);
    }
    (chain.into_boxed_slice(), false)
}

/// Re-encodes `response` without answer records off the chain, without the additional
/// section and without its OPT record (the client gets ours).
fn scrub(response: &[u8], qname: &LowerName, chain: &[Box<str>]) -> Result<Vec<u8>, WireError> {
    use hickory_proto::op::Message;
    let mut message = Message::from_vec(response).map_err(|_| WireError::Truncated("message"))?;
    let keep = |name: &hickory_proto::rr::Name| {
        let text = name.to_ascii().to_ascii_lowercase();
        let text = text.trim_end_matches('.');
        text.as_bytes() == qname.as_bytes() || chain.iter().any(|c| &**c == text)
    };
    message.answers.retain(|r| keep(&r.name));
    message.additionals.clear();
    message.edns = None;
    message.to_vec().map_err(|_| WireError::Truncated("message"))
}

/// What the cache holds for a key at a given moment.
pub enum Lookup {
    /// Within its TTL: answer from it.
    Fresh(Arc<CachedAnswer>),
    /// Expired, but within `cache.serve_stale_secs`: forward, and fall back to it (RFC 8767).
    Stale(Arc<CachedAnswer>),
    Absent,
}

/// Bookkeeping per cached answer besides its own bytes (moka's entry, timer and frequency
/// sketch slots, the `Arc` and `CachedAnswer` headers, allocator overhead): about 680 bytes in
/// all for a typical entry, measured with 100 k entries.
const ENTRY_OVERHEAD: usize = 500;

/// Entries stay until their TTL ran out plus the serve-stale window.
struct UntilExpiry {
    stale: Duration,
}

impl Expiry<Box<[u8]>, Arc<CachedAnswer>> for UntilExpiry {
    fn expire_after_create(&self, _: &Box<[u8]>, value: &Arc<CachedAnswer>, created_at: Instant) -> Option<Duration> {
        Some(value.expires_at.saturating_duration_since(created_at) + self.stale)
    }
}

/// The shared response cache (moka, as the design card asks), bounded in entries and in bytes.
///
/// Measured alternative, not adopted without sign-off: quick_cache hits in about 40 ns instead
/// of moka's 200–800 ns, inserts into a full cache in 150 ns instead of 1.8–3.8 µs, and takes
/// about 360 bytes per entry instead of 680 (see benches/README.md).
#[derive(Clone)]
pub struct Cache {
    inner: Option<Moka<Box<[u8]>, Arc<CachedAnswer>, foldhash::fast::RandomState>>,
    /// How long past its TTL an answer may still be served when no upstream answers.
    stale: Duration,
}

impl Cache {
    pub fn new(config: &CacheConfig) -> Cache {
        let stale = Duration::from_secs(u64::from(config.serve_stale_secs));
        let inner = (config.max_entries > 0 && config.max_bytes > 0).then(|| {
            // Every entry weighs at least its share of the byte limit, so that neither
            // `max_bytes` nor `max_entries` is ever exceeded.
            let floor = config.max_bytes.div_ceil(config.max_entries);
            Moka::<Box<[u8]>, Arc<CachedAnswer>, _>::builder()
                .max_capacity(config.max_bytes)
                .weigher(move |key, answer| {
                    let bytes = (key.len() + answer.heap_bytes() + ENTRY_OVERHEAD) as u64;
                    bytes.max(floor).min(u64::from(u32::MAX)) as u32
                })
                .expire_after(UntilExpiry { stale })
                // moka hashes every key on each get and insert, and again each time a segment
                // of its table is rebuilt to clear removed entries, which a full cache does all
                // the time. SipHash made that a tenth of a miss's CPU time; foldhash (seeded per
                // process) costs a fraction of it.
                .build_with_hasher(foldhash::fast::RandomState::default())
        });
        Cache { inner, stale }
    }

    /// A live entry for `key`, or None if absent or expired at `now`.
    pub fn get(&self, key: &[u8], now: Instant) -> Option<Arc<CachedAnswer>> {
        match self.lookup(key, now) {
            Lookup::Fresh(entry) => Some(entry),
            Lookup::Stale(_) | Lookup::Absent => None,
        }
    }

    /// What the cache holds for `key` at `now`, in one lookup: a miss that will be forwarded
    /// keeps its stale entry for later instead of asking the cache twice.
    pub fn lookup(&self, key: &[u8], now: Instant) -> Lookup {
        let Some(entry) = self.inner.as_ref().and_then(|inner| inner.get(key)) else {
            return Lookup::Absent;
        };
        // An instant comparison first: a fresh hit computes no duration.
        if now < entry.expires_at {
            Lookup::Fresh(entry)
        } else if now - entry.expires_at <= self.stale {
            Lookup::Stale(entry)
        } else {
            Lookup::Absent
        }
    }

    pub fn insert(&self, key: &[u8], answer: Arc<CachedAnswer>) {
        if let Some(inner) = &self.inner {
            inner.insert(key.into(), answer);
        }
    }

    pub fn len(&self) -> u64 {
        // moka counts lazily; settle pending bookkeeping first (only metrics and tests ask).
        self.inner.as_ref().map_or(0, |c| {
            c.run_pending_tasks();
            c.entry_count()
        })
    }

    /// What the entries weigh, in bytes as `cache.max_bytes` counts them.
    pub fn bytes(&self) -> u64 {
        self.inner.as_ref().map_or(0, |c| {
            c.run_pending_tasks();
            c.weighted_size()
        })
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn clear(&self) {
        if let Some(inner) = &self.inner {
            inner.invalidate_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::wire::{push_header, push_name, push_opt};

    fn query(name: &str, edns: bool) -> Vec<u8> {
        let mut out = Vec::new();
        push_header(&mut out, 7, flag::RD, [1, 0, 0, u16::from(edns)]);
        push_name(&mut out, name);
        out.extend_from_slice(&[0, 1, 0, 1]);
        if edns {
            push_opt(&mut out, false, 0, &[]);
        }
        out
    }

    /// An upstream answer: `www.example` CNAME `edge.cdn.example` A 192.0.2.1, plus an OPT.
    fn answer(ttls: [u32; 2]) -> Vec<u8> {
        let mut out = Vec::new();
        push_header(&mut out, 99, flag::QR | flag::RD | flag::RA | flag::AD, [1, 2, 0, 1]);
        push_name(&mut out, "www.example");
        out.extend_from_slice(&[0, 1, 0, 1]);
        out.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1]);
        out.extend_from_slice(&ttls[0].to_be_bytes());
        let mut target = Vec::new();
        push_name(&mut target, "edge.cdn.example");
        out.extend_from_slice(&(target.len() as u16).to_be_bytes());
        let target_at = out.len();
        out.extend_from_slice(&target);
        out.extend_from_slice(&[0xc0, target_at as u8, 0, 1, 0, 1]);
        out.extend_from_slice(&ttls[1].to_be_bytes());
        out.extend_from_slice(&[0, 4, 192, 0, 2, 1]);
        push_opt(&mut out, false, 0, &[]);
        out
    }

    fn limits() -> CacheConfig {
        CacheConfig::default()
    }

    #[test]
    fn reads_ttl_and_cname_chain() {
        let q = query("WWW.example", true);
        let q = wire::parse_query(&q).unwrap();
        let now = Instant::now();
        let inspected = CachedAnswer::from_upstream(&q, &answer([300, 60]), &limits(), now, 1).unwrap();
        assert_eq!(inspected.ttl, Some(60));
        assert_eq!(&*inspected.answer.chain, &["edge.cdn.example".into()] as &[Box<str>]);
        assert_eq!(inspected.answer.counts, [2, 0, 0]);
    }

    #[test]
    fn serves_with_client_id_case_and_counted_down_ttls() {
        let packet = query("WWW.example", true);
        let q = wire::parse_query(&packet).unwrap();
        let now = Instant::now();
        let cached = CachedAnswer::from_upstream(&q, &answer([300, 60]), &limits(), now, 1).unwrap().answer;
        let mut out = Vec::new();
        cached.write(&q, now + Duration::from_secs(10), Some(1232), &mut out);
        let msg = hickory_proto::op::Message::from_vec(&out).unwrap();
        assert_eq!(msg.metadata.id, 7);
        assert_eq!(msg.queries[0].name().to_string(), "WWW.example.");
        assert_eq!(msg.answers[0].ttl, 290);
        assert_eq!(msg.answers[1].ttl, 50);
        assert!(msg.edns.is_some());
        assert!(!msg.metadata.authentic_data, "AD only when the client asked");
    }

    #[test]
    fn truncates_to_the_client_limit_and_keeps_opt() {
        let packet = query("www.example", true);
        let q = wire::parse_query(&packet).unwrap();
        let now = Instant::now();
        let cached = CachedAnswer::from_upstream(&q, &answer([300, 60]), &limits(), now, 1).unwrap().answer;
        let mut out = Vec::new();
        cached.write(&q, now, Some(40), &mut out);
        let msg = hickory_proto::op::Message::from_vec(&out).unwrap();
        assert!(msg.metadata.truncation);
        assert!(msg.answers.is_empty());
        assert!(msg.edns.is_some());
    }

    #[test]
    fn expired_entries_are_not_served() {
        let packet = query("www.example", false);
        let q = wire::parse_query(&packet).unwrap();
        let now = Instant::now();
        let inspected = CachedAnswer::from_upstream(&q, &answer([300, 60]), &limits(), now, 1).unwrap();
        let cache = Cache::new(&limits());
        let mut buf = [0; MAX_KEY];
        let k = key(&q, &mut buf).to_vec();
        cache.insert(&k, Arc::new(inspected.answer));
        assert!(cache.get(&k, now + Duration::from_secs(59)).is_some());
        assert!(cache.get(&k, now + Duration::from_secs(60)).is_none());
    }

    #[test]
    fn entries_and_bytes_are_both_bounded() {
        let packet = query("www.example", false);
        let q = wire::parse_query(&packet).unwrap();
        let now = Instant::now();
        let stored = Arc::new(CachedAnswer::from_upstream(&q, &answer([300, 60]), &limits(), now, 1).unwrap().answer);
        let fill = |config: &CacheConfig, answer: &Arc<CachedAnswer>| {
            let cache = Cache::new(config);
            for i in 0..5_000u32 {
                cache.insert(&i.to_be_bytes(), Arc::clone(answer));
            }
            cache
        };
        let by_count = CacheConfig { max_entries: 1_000, max_bytes: 1 << 20, ..limits() };
        let cache = fill(&by_count, &stored);
        assert!((500..=1_000).contains(&cache.len()), "{} entries", cache.len());
        assert!(cache.bytes() <= 1 << 20);
        // Big answers: the byte limit binds long before the entry limit.
        let mut big = CachedAnswer::from_upstream(&q, &answer([300, 60]), &limits(), now, 1).unwrap().answer;
        big.body = vec![0; 4_000].into();
        let by_bytes = CacheConfig { max_entries: 1_000, max_bytes: 200_000, ..limits() };
        let cache = fill(&by_bytes, &Arc::new(big));
        assert!(cache.len() <= 200_000 / 4_000, "{} entries", cache.len());
        assert!(cache.bytes() <= 200_000);
    }

    #[test]
    fn prefetch_is_due_once_in_the_last_tenth_after_two_hits() {
        let packet = query("www.example", false);
        let q = wire::parse_query(&packet).unwrap();
        let now = Instant::now();
        // TTL 60: the last tenth starts at 54 s.
        let entry = CachedAnswer::from_upstream(&q, &answer([300, 60]), &limits(), now, 1).unwrap().answer;
        assert!(!entry.hit_wants_prefetch(now + Duration::from_secs(55)), "one hit is not enough");
        let once = CachedAnswer::from_upstream(&q, &answer([300, 60]), &limits(), now, 1).unwrap().answer;
        assert!(!once.hit_wants_prefetch(now + Duration::from_secs(10)));
        assert!(!once.hit_wants_prefetch(now + Duration::from_secs(53)), "not yet in the last tenth");
        assert!(once.hit_wants_prefetch(now + Duration::from_secs(54)));
        assert!(!once.hit_wants_prefetch(now + Duration::from_secs(55)), "only once");
        once.prefetch_skipped();
        assert!(once.hit_wants_prefetch(now + Duration::from_secs(56)), "again after a skipped start");
    }

    #[test]
    fn ttl_limits_apply() {
        let packet = query("www.example", false);
        let q = wire::parse_query(&packet).unwrap();
        let limits = CacheConfig { min_ttl_secs: 100, max_ttl_secs: 200, ..CacheConfig::default() };
        let inspected = CachedAnswer::from_upstream(&q, &answer([300, 60]), &limits, Instant::now(), 1).unwrap();
        assert_eq!(inspected.ttl, Some(100));
    }
}
