//! DNS wire format (RFC 1035 §4, RFC 6891 for EDNS): the few things the hot path reads and
//! writes by hand.
//!
//! Owns: parsing a query's header, question and OPT record without allocating; lowercasing the
//! query name into a stack buffer; walking the records of an upstream answer to find TTL
//! offsets and CNAME targets; writing synthesized answers (blocked, errors).
//! Does not own: policy decisions, caching, or full message handling (hickory-proto does that
//! where it is needed, e.g. for encrypted upstreams and in tests).

use std::ops::Range;

use thiserror::Error;

use crate::dns::presentation;

pub const HEADER_LEN: usize = 12;
pub const TYPE_CNAME: u16 = 5;
pub const TYPE_SOA: u16 = 6;
pub const TYPE_OPT: u16 = 41;
pub const TYPE_HINFO: u16 = 13;
pub const TYPE_ANY: u16 = 255;
pub const CLASS_IN: u16 = 1;
/// The QCLASS "any class" (RFC 1035 §3.2.5).
pub const CLASS_ANY: u16 = 255;
/// Longest name in presentation form without the trailing dot (RFC 1035 §2.3.4: 255 octets in
/// wire form).
pub const MAX_NAME_TEXT: usize = 253;
/// The EDNS buffer size we advertise and honour at most (DNS flag day 2020, RFC 9715).
pub const EDNS_UDP_SIZE: u16 = 1232;
/// Largest UDP answer to a query without EDNS (RFC 1035 §4.2.1).
pub const PLAIN_UDP_SIZE: usize = 512;

pub mod rcode {
    /// Extended rcode 16 (RFC 6891 §9): unsupported EDNS version.
    pub const BADVERS: u16 = 16;
    pub const NOERROR: u8 = 0;
    pub const FORMERR: u8 = 1;
    pub const SERVFAIL: u8 = 2;
    pub const NXDOMAIN: u8 = 3;
    pub const NOTIMP: u8 = 4;
    pub const REFUSED: u8 = 5;
}

/// Header flag bits (second 16-bit word of the header).
pub mod flag {
    pub const QR: u16 = 0x8000;
    pub const AA: u16 = 0x0400;
    pub const TC: u16 = 0x0200;
    pub const RD: u16 = 0x0100;
    pub const RA: u16 = 0x0080;
    pub const AD: u16 = 0x0020;
    pub const CD: u16 = 0x0010;
    pub const OPCODE_MASK: u16 = 0x7800;
    pub const RCODE_MASK: u16 = 0x000f;
}

/// The DO bit inside the OPT record's TTL field (RFC 3225).
const EDNS_DO: u32 = 0x0000_8000;

#[derive(Debug, Error, PartialEq, Eq, Clone, Copy)]
pub enum WireError {
    #[error("message shorter than its header")]
    ShortHeader,
    #[error("message ends inside a {0}")]
    Truncated(&'static str),
    #[error("label type 0x{0:02x} is not supported")]
    BadLabelType(u8),
    #[error("compression pointer does not point backwards")]
    BadPointer,
    #[error("question name holds a compression pointer")]
    CompressedQuestion,
    #[error("name longer than 255 octets")]
    NameTooLong,
    #[error("query must have exactly one question, has {0}")]
    QuestionCount(u16),
    #[error("more than one OPT record")]
    DuplicateOpt,
    #[error("OPT record not owned by the root name")]
    BadOpt,
    #[error("trailing bytes after the last record")]
    TrailingBytes,
}

/// A query name in presentation form, ASCII-lowercased, without the trailing dot; the root is
/// empty. Lives on the stack so the hot path does not allocate.
#[derive(Clone)]
pub struct LowerName {
    buf: [u8; MAX_NAME_TEXT + 2],
    len: u8,
}

impl LowerName {
    pub fn new() -> Self {
        LowerName { buf: [0; MAX_NAME_TEXT + 2], len: 0 }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }

    /// Lossy text for logs and records (a label may hold any byte).
    pub fn to_text(&self) -> String {
        String::from_utf8_lossy(self.as_bytes()).into_owned()
    }

    fn push_label(&mut self, label: &[u8]) -> Result<(), WireError> {
        let len = self.len as usize;
        let dot = usize::from(len > 0);
        if len + dot + label.len() > MAX_NAME_TEXT + 1 {
            return Err(WireError::NameTooLong);
        }
        if dot == 1 {
            self.buf[len] = b'.';
        }
        for (dst, src) in self.buf[len + dot..].iter_mut().zip(label) {
            *dst = src.to_ascii_lowercase();
        }
        self.len = (len + dot + label.len()) as u8;
        Ok(())
    }
}

impl Default for LowerName {
    fn default() -> Self {
        Self::new()
    }
}

/// The client's EDNS parameters (RFC 6891 §6.1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edns {
    pub udp_size: u16,
    pub version: u8,
    pub dnssec_ok: bool,
    /// Where the options sit in the packet, for the identity options read later.
    pub options: (u16, u16),
}

/// A parsed query: header fields, the single question and the EDNS record.
pub struct Query<'a> {
    pub packet: &'a [u8],
    pub id: u16,
    pub flags: u16,
    pub name: LowerName,
    /// End of the question name in `packet` (it starts at `HEADER_LEN`).
    pub qname_end: usize,
    pub qtype: u16,
    pub qclass: u16,
    pub edns: Option<Edns>,
}

impl<'a> Query<'a> {
    pub fn opcode(&self) -> u8 {
        ((self.flags & flag::OPCODE_MASK) >> 11) as u8
    }

    pub fn is_response(&self) -> bool {
        self.flags & flag::QR != 0
    }

    /// The question section exactly as the client sent it (keeps the 0x20 case mix).
    pub fn question_bytes(&self) -> &'a [u8] {
        &self.packet[HEADER_LEN..self.qname_end + 4]
    }

    pub fn qname_wire(&self) -> &'a [u8] {
        &self.packet[HEADER_LEN..self.qname_end]
    }

    /// The question name for logs and records: lowercase, in presentation form (`presentation::name_text`).
    pub fn name_text(&self) -> String {
        presentation::name_text(self.qname_wire())
    }

    pub fn dnssec_ok(&self) -> bool {
        self.edns.is_some_and(|e| e.dnssec_ok)
    }

    /// Largest UDP answer this client accepts (RFC 6891 §6.2.5, capped at 1232).
    pub fn udp_limit(&self) -> usize {
        match self.edns {
            Some(e) => usize::from(e.udp_size.clamp(512, EDNS_UDP_SIZE)),
            None => PLAIN_UDP_SIZE,
        }
    }

    /// Raw bytes of the EDNS options (code, length, data)*.
    pub fn edns_options(&self) -> &'a [u8] {
        match self.edns {
            Some(e) => &self.packet[usize::from(e.options.0)..usize::from(e.options.1)],
            None => &[],
        }
    }
}

/// Reads the header ID, if there is one: enough to answer FORMERR to a broken packet.
pub fn read_id(packet: &[u8]) -> Option<u16> {
    (packet.len() >= HEADER_LEN).then(|| u16::from_be_bytes([packet[0], packet[1]]))
}

pub fn read_u16(packet: &[u8], at: usize) -> Result<u16, WireError> {
    packet.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]])).ok_or(WireError::Truncated("field"))
}

pub fn read_u32(packet: &[u8], at: usize) -> Result<u32, WireError> {
    packet.get(at..at + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]])).ok_or(WireError::Truncated("field"))
}

/// Header section counts: (qd, an, ns, ar).
pub fn read_counts(packet: &[u8]) -> Result<[u16; 4], WireError> {
    if packet.len() < HEADER_LEN {
        return Err(WireError::ShortHeader);
    }
    Ok([4, 6, 8, 10].map(|at| u16::from_be_bytes([packet[at], packet[at + 1]])))
}

/// Parses a query. The question name must be uncompressed (nothing precedes it to point to).
pub fn parse_query(packet: &[u8]) -> Result<Query<'_>, WireError> {
    let [qd, an, ns, ar] = read_counts(packet)?;
    if qd != 1 {
        return Err(WireError::QuestionCount(qd));
    }
    let mut name = LowerName::new();
    let qname_end = read_question_name(packet, &mut name)?;
    let qtype = read_u16(packet, qname_end)?;
    let qclass = read_u16(packet, qname_end + 2)?;
    let mut pos = qname_end + 4;
    for _ in 0..u32::from(an) + u32::from(ns) {
        pos = skip_record(packet, pos)?.end;
    }
    let mut edns = None;
    for _ in 0..ar {
        let at = pos;
        let rec = skip_record(packet, pos)?;
        pos = rec.end;
        if read_u16(packet, rec.type_at)? != TYPE_OPT {
            continue;
        }
        if edns.is_some() {
            return Err(WireError::DuplicateOpt);
        }
        if packet[at] != 0 {
            return Err(WireError::BadOpt);
        }
        let ttl = read_u32(packet, rec.type_at + 4)?;
        edns = Some(Edns {
            udp_size: read_u16(packet, rec.type_at + 2)?.max(512),
            version: (ttl >> 16) as u8,
            dnssec_ok: ttl & EDNS_DO != 0,
            options: (rec.rdata.start as u16, rec.rdata.end as u16),
        });
    }
    if pos != packet.len() {
        return Err(WireError::TrailingBytes);
    }
    Ok(Query {
        packet,
        id: u16::from_be_bytes([packet[0], packet[1]]),
        flags: u16::from_be_bytes([packet[2], packet[3]]),
        name,
        qname_end,
        qtype,
        qclass,
        edns,
    })
}

/// Reads the question name. Only the header precedes it, so a compression pointer there points
/// at nothing a name can be made of: FORMERR, as Unbound answers (RFC 1035 §4.1.4).
fn read_question_name(packet: &[u8], out: &mut LowerName) -> Result<usize, WireError> {
    let mut pos = HEADER_LEN;
    while let Some(&len) = packet.get(pos) {
        if len & 0xc0 == 0xc0 {
            return Err(WireError::CompressedQuestion);
        }
        if len == 0 || len & 0xc0 != 0 {
            break;
        }
        pos += 1 + usize::from(len);
    }
    read_name(packet, HEADER_LEN, out)
}

/// Reads a possibly compressed name starting at `pos` into `out`; returns the offset just after
/// the name's bytes at `pos`. Pointers must point strictly backwards, which rules out loops
/// (RFC 1035 §4.1.4 allows only prior occurrences).
pub fn read_name(packet: &[u8], mut pos: usize, out: &mut LowerName) -> Result<usize, WireError> {
    *out = LowerName::new();
    let mut end = None;
    let mut wire_len = 1usize;
    let mut floor = pos;
    loop {
        let len = *packet.get(pos).ok_or(WireError::Truncated("name"))?;
        match len & 0xc0 {
            0x00 if len == 0 => return Ok(end.unwrap_or(pos + 1)),
            0x00 => {
                let label = packet.get(pos + 1..pos + 1 + usize::from(len)).ok_or(WireError::Truncated("label"))?;
                wire_len += 1 + label.len();
                if wire_len > 255 {
                    return Err(WireError::NameTooLong);
                }
                out.push_label(label)?;
                pos += 1 + usize::from(len);
            }
            0xc0 => {
                let target = usize::from(read_u16(packet, pos)? & 0x3fff);
                if target >= floor {
                    return Err(WireError::BadPointer);
                }
                end.get_or_insert(pos + 2);
                floor = target;
                pos = target;
            }
            other => return Err(WireError::BadLabelType(other)),
        }
    }
}

/// Skips a name without decoding it; returns the offset after it.
pub fn skip_name(packet: &[u8], mut pos: usize) -> Result<usize, WireError> {
    loop {
        let len = *packet.get(pos).ok_or(WireError::Truncated("name"))?;
        match len & 0xc0 {
            0x00 if len == 0 => return Ok(pos + 1),
            0x00 => pos += 1 + usize::from(len),
            0xc0 => return Ok(pos + 2),
            other => return Err(WireError::BadLabelType(other)),
        }
    }
}

/// Where one resource record's fields sit.
#[derive(Debug, Clone)]
pub struct RecordAt {
    pub name_at: usize,
    /// Offset of TYPE; CLASS, TTL and RDLENGTH follow.
    pub type_at: usize,
    pub rdata: Range<usize>,
    pub end: usize,
}

impl RecordAt {
    pub fn rtype(&self, packet: &[u8]) -> u16 {
        u16::from_be_bytes([packet[self.type_at], packet[self.type_at + 1]])
    }

    pub fn ttl_at(&self) -> usize {
        self.type_at + 4
    }

    pub fn ttl(&self, packet: &[u8]) -> u32 {
        let at = self.ttl_at();
        u32::from_be_bytes([packet[at], packet[at + 1], packet[at + 2], packet[at + 3]])
    }
}

pub fn skip_record(packet: &[u8], pos: usize) -> Result<RecordAt, WireError> {
    let type_at = skip_name(packet, pos)?;
    let rdlen = usize::from(read_u16(packet, type_at + 8)?);
    let start = type_at + 10;
    let end = start + rdlen;
    if end > packet.len() {
        return Err(WireError::Truncated("record data"));
    }
    Ok(RecordAt { name_at: pos, type_at, rdata: start..end, end })
}

/// Writes a header. Counts are (qd, an, ns, ar).
pub fn push_header(out: &mut Vec<u8>, id: u16, flags: u16, counts: [u16; 4]) {
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    for c in counts {
        out.extend_from_slice(&c.to_be_bytes());
    }
}

pub fn set_u16(out: &mut [u8], at: usize, value: u16) {
    out[at..at + 2].copy_from_slice(&value.to_be_bytes());
}

/// Appends an OPT record (RFC 6891 §6.1.2) with the given options payload.
pub fn push_opt(out: &mut Vec<u8>, dnssec_ok: bool, ext_rcode: u8, options: &[u8]) {
    out.push(0);
    out.extend_from_slice(&TYPE_OPT.to_be_bytes());
    out.extend_from_slice(&EDNS_UDP_SIZE.to_be_bytes());
    let ttl = (u32::from(ext_rcode) << 24) | if dnssec_ok { EDNS_DO } else { 0 };
    out.extend_from_slice(&ttl.to_be_bytes());
    out.extend_from_slice(&(options.len() as u16).to_be_bytes());
    out.extend_from_slice(options);
}

/// Appends an Extended DNS Error option (RFC 8914 §2) to an options buffer.
pub fn push_ede(options: &mut Vec<u8>, info_code: u16, text: &str) {
    const OPTION_EDE: u16 = 15;
    let text = &text.as_bytes()[..text.len().min(400)];
    options.extend_from_slice(&OPTION_EDE.to_be_bytes());
    options.extend_from_slice(&((text.len() + 2) as u16).to_be_bytes());
    options.extend_from_slice(&info_code.to_be_bytes());
    options.extend_from_slice(text);
}

/// Response flags for a query: QR, the client's opcode, RD and CD echoed, RA set.
pub fn response_flags(query_flags: u16, rcode: u8) -> u16 {
    flag::QR | (query_flags & (flag::OPCODE_MASK | flag::RD | flag::CD)) | flag::RA | u16::from(rcode & 0x0f)
}

/// An error answer (FORMERR, SERVFAIL, REFUSED, NOTIMP, BADVERS…) that echoes the question and,
/// when the query had EDNS, an OPT record; an extended rcode (≥ 16) puts its upper bits there
/// (RFC 6891 §6.1.3).
pub fn write_error(out: &mut Vec<u8>, query: &Query<'_>, rcode: u16, ede: Option<(u16, &str)>) {
    out.clear();
    let has_opt = query.edns.is_some();
    let flags = response_flags(query.flags, (rcode & 0x0f) as u8);
    push_header(out, query.id, flags, [1, 0, 0, u16::from(has_opt)]);
    out.extend_from_slice(query.question_bytes());
    if has_opt {
        let mut options = Vec::new();
        if let Some((code, text)) = ede {
            push_ede(&mut options, code, text);
        }
        push_opt(out, query.dnssec_ok(), (rcode >> 4) as u8, &options);
    }
}

/// TC=1 with the question only (and OPT): "ask again over TCP" (RFC 1035 §4.2.1, RFC 7766).
pub fn write_truncated(out: &mut Vec<u8>, query: &Query<'_>) {
    write_error(out, query, rcode::NOERROR.into(), None);
    set_u16(out, 2, response_flags(query.flags, rcode::NOERROR) | flag::TC);
}

/// The RFC 8482 §4.2 answer to ANY: one synthesized HINFO record, CPU "RFC8482", OS "".
pub fn write_any_refusal(out: &mut Vec<u8>, query: &Query<'_>) {
    write_error(out, query, rcode::NOERROR.into(), None);
    let opt = out.split_off(HEADER_LEN + query.question_bytes().len());
    set_u16(out, 6, 1);
    out.extend_from_slice(&(0xc000u16 | HEADER_LEN as u16).to_be_bytes());
    out.extend_from_slice(&TYPE_HINFO.to_be_bytes());
    out.extend_from_slice(&query.qclass.to_be_bytes());
    out.extend_from_slice(&3600u32.to_be_bytes());
    out.extend_from_slice(&9u16.to_be_bytes());
    out.extend_from_slice(b"\x07RFC8482\x00");
    out.extend_from_slice(&opt);
}

/// FORMERR for a packet that did not parse: header only, as RFC 1035 gives nothing better.
pub fn write_formerr_header(out: &mut Vec<u8>, packet: &[u8]) -> bool {
    out.clear();
    let Some(id) = read_id(packet) else {
        return false;
    };
    let query_flags = u16::from_be_bytes([packet[2], packet[3]]);
    if query_flags & flag::QR != 0 {
        return false;
    }
    push_header(out, id, response_flags(query_flags, rcode::FORMERR), [0; 4]);
    true
}

/// Offset of the label at which `suffix_len` trailing text bytes of the name start, as an offset
/// into the wire name; used to point an SOA owner at part of the question (RFC 1035 §4.1.4).
pub fn suffix_offset_in_wire(qname_wire: &[u8], name_len: usize, suffix_len: usize) -> Option<usize> {
    let skip = name_len.checked_sub(suffix_len)?;
    let mut text = 0usize;
    let mut pos = 0usize;
    while text < skip {
        let len = usize::from(*qname_wire.get(pos)?);
        if len == 0 {
            return None;
        }
        text += len + 1;
        pos += len + 1;
    }
    (text == skip).then_some(pos)
}

/// Appends `name` (presentation form, no trailing dot) in uncompressed wire form.
pub fn push_name(out: &mut Vec<u8>, name: &str) {
    for label in name.split('.').filter(|l| !l.is_empty()) {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
}

/// An answer belongs to a query when it is a response with the same ID and the same question
/// (names compared without regard to case).
pub fn matches_query(query: &[u8], answer: &[u8]) -> bool {
    if answer.len() < HEADER_LEN || answer[..2] != query[..2] || answer[2] & 0x80 == 0 {
        return false;
    }
    let Ok(end) = skip_name(query, HEADER_LEN) else {
        return false;
    };
    let question = &query[HEADER_LEN..end + 4];
    answer.get(4..6) == Some(&[0, 1])
        && answer.get(HEADER_LEN..end + 4).is_some_and(|q| q.eq_ignore_ascii_case(question))
}

/// An error answer without its question: some servers answer FORMERR, SERVFAIL, NOTIMP or
/// REFUSED with QDCOUNT 0 (RFC 1035 does not require the question in a response). Such a reply
/// to `query` (same ID, QR set) is returned with the query's question put back and any other
/// records left out, so that it reads as the error answer it is; anything else gives None.
/// Accepting it costs no spoofing protection worth having: an error rcode only makes the
/// resolver try the next upstream, and the ID (and the source port, over UDP) still had to match.
pub fn error_without_question(query: &[u8], answer: &[u8]) -> Option<Vec<u8>> {
    let is_error = |code: u8| matches!(code, rcode::FORMERR | rcode::SERVFAIL | rcode::NOTIMP | rcode::REFUSED);
    if answer.len() < HEADER_LEN
        || query.len() < HEADER_LEN
        || answer[..2] != query[..2]
        || answer[2] & 0x80 == 0
        || answer[4..6] != [0, 0]
        || !is_error(answer[3] & 0x0f)
    {
        return None;
    }
    let end = skip_name(query, HEADER_LEN).ok()? + 4;
    let question = query.get(HEADER_LEN..end)?;
    let mut fixed = Vec::with_capacity(end);
    fixed.extend_from_slice(&answer[..4]);
    fixed.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    fixed.extend_from_slice(question);
    Some(fixed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query_packet(name: &str, qtype: u16, edns: bool) -> Vec<u8> {
        let mut out = Vec::new();
        push_header(&mut out, 0xbeef, flag::RD, [1, 0, 0, u16::from(edns)]);
        push_name(&mut out, name);
        out.extend_from_slice(&qtype.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        if edns {
            push_opt(&mut out, true, 0, &[]);
        }
        out
    }

    #[test]
    fn parses_query_and_lowercases_name() {
        let packet = query_packet("WwW.TikTok.COM", 1, true);
        let q = parse_query(&packet).unwrap();
        assert_eq!(q.id, 0xbeef);
        assert_eq!(q.name.as_bytes(), b"www.tiktok.com");
        assert_eq!(q.qtype, 1);
        assert!(q.dnssec_ok());
        assert_eq!(q.udp_limit(), 1232);
        assert_eq!(&q.qname_wire()[1..4], b"WwW");
    }

    #[test]
    fn root_query_has_empty_name() {
        let packet = query_packet("", 2, false);
        let q = parse_query(&packet).unwrap();
        assert_eq!(q.name.as_bytes(), b"");
        assert_eq!(q.udp_limit(), 512);
    }

    #[test]
    fn rejects_malformed_packets() {
        assert_eq!(parse_query(&[0; 5]).err(), Some(WireError::ShortHeader));
        let mut p = query_packet("a.example", 1, false);
        p.truncate(p.len() - 3);
        assert!(matches!(parse_query(&p), Err(WireError::Truncated(_))));
        let mut p = query_packet("a.example", 1, false);
        p[12] = 0x41; // extended label type
        assert_eq!(parse_query(&p).err(), Some(WireError::BadLabelType(0x40)));
        let mut p = query_packet("a.example", 1, false);
        p[12] = 0xc0;
        p[13] = 12; // points at itself
        assert_eq!(parse_query(&p).err(), Some(WireError::CompressedQuestion));
        // In an answer's records, a pointer that does not point backwards is still refused.
        let mut name = LowerName::new();
        assert_eq!(read_name(&p, 12, &mut name).err(), Some(WireError::BadPointer));
        let mut p = query_packet("a.example", 1, false);
        p[5] = 2;
        assert!(parse_query(&p).is_err());
        let mut p = query_packet("a.example", 1, false);
        p.push(0);
        assert_eq!(parse_query(&p).err(), Some(WireError::TrailingBytes));
    }

    #[test]
    fn rejects_a_compression_pointer_in_the_question() {
        let mut p = query_packet("", 1, false);
        p.splice(12..13, [0xc0, 0x00]); // the whole name points into the header
        assert_eq!(parse_query(&p).err(), Some(WireError::CompressedQuestion));
        let mut p = query_packet("www", 1, false);
        p.splice(16..17, [0xc0, 0x02]); // a label, then a pointer into the header
        assert_eq!(parse_query(&p).err(), Some(WireError::CompressedQuestion));
    }

    #[test]
    fn rejects_names_over_255_octets() {
        let label = "a".repeat(63);
        let name = [label.as_str(); 4].join(".");
        let p = query_packet(&name, 1, false);
        assert_eq!(parse_query(&p).err(), Some(WireError::NameTooLong));
    }

    #[test]
    fn follows_backward_pointers_in_answers() {
        let mut p = query_packet("x.example", 1, false);
        p.extend_from_slice(&[0xc0, 12]);
        let mut name = LowerName::new();
        let end = read_name(&p, p.len() - 2, &mut name).unwrap();
        assert_eq!(end, p.len());
        assert_eq!(name.as_bytes(), b"x.example");
    }

    #[test]
    fn finds_suffix_label_offset() {
        let mut wire = Vec::new();
        push_name(&mut wire, "a.bb.tiktok.com");
        assert_eq!(suffix_offset_in_wire(&wire, 15, 10), Some(5));
        assert_eq!(suffix_offset_in_wire(&wire, 15, 15), Some(0));
        assert_eq!(suffix_offset_in_wire(&wire, 15, 9), None);
    }

    #[test]
    fn an_error_answer_without_question_gets_the_query_question_back() {
        let mut query = Vec::new();
        push_header(&mut query, 0x1234, flag::RD, [1, 0, 0, 0]);
        push_name(&mut query, "refused.example");
        query.extend_from_slice(&[0, 1, 0, 1]);
        let mut refused = Vec::new();
        push_header(&mut refused, 0x1234, 0x8000 | u16::from(rcode::REFUSED), [0, 0, 0, 0]);
        let fixed = error_without_question(&query, &refused).expect("a questionless REFUSED is accepted");
        assert!(matches_query(&query, &fixed));
        assert_eq!(fixed[3] & 0x0f, rcode::REFUSED);
        let mut other_id = refused.clone();
        other_id[1] ^= 1;
        assert!(error_without_question(&query, &other_id).is_none(), "the ID must match");
        let mut nxdomain = refused.clone();
        nxdomain[3] = (nxdomain[3] & 0xf0) | rcode::NXDOMAIN;
        assert!(error_without_question(&query, &nxdomain).is_none(), "only error rcodes");
        assert!(error_without_question(&query, &query).is_none(), "a query is not an answer");
    }
}
