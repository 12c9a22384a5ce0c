//! Blocked answers, written straight into the output buffer.
//!
//! NXDOMAIN (default) or NODATA carry an SOA in the authority section whose TTL and MINIMUM are
//! the block TTL, so stub resolvers cache the negative answer instead of asking again
//! (RFC 2308 §3, §5). REFUSED carries no SOA. When the query had EDNS, the OPT record carries
//! Extended DNS Error 15 "Blocked" with the app's notice (RFC 8914 §4.16); DO is echoed.
//! The same answer is given for every query type.

use crate::{
    config::{BlockConfig, BlockResponse},
    dns::wire::{self, HEADER_LEN, Query, TYPE_SOA, rcode},
};

const EDE_BLOCKED: u16 = 15;
/// The SOA's MNAME and RNAME: a name that can never exist (RFC 6761 §6.4).
const SOA_MNAME: &[u8] = b"\x07nxguard\x07invalid\x00";
const SOA_RNAME_LABEL: &[u8] = b"\x0ahostmaster";

/// Writes the blocked answer for `query` into `out`. `domain` is the listed domain that
/// matched; when it is a suffix of the query name the SOA is owned by it, otherwise (a CNAME
/// match) by the query name.
pub fn write(
    out: &mut Vec<u8>,
    query: &Query<'_>,
    config: &BlockConfig,
    response: Option<BlockResponse>,
    domain: &str,
    serial: u32,
    notice: &str,
) {
    out.clear();
    let (code, with_soa) = match response.unwrap_or(config.response) {
        BlockResponse::Nxdomain => (rcode::NXDOMAIN, true),
        BlockResponse::Nodata => (rcode::NOERROR, true),
        BlockResponse::Refused => (rcode::REFUSED, false),
    };
    let has_opt = query.edns.is_some();
    let flags = wire::response_flags(query.flags, code);
    wire::push_header(out, query.id, flags, [1, 0, u16::from(with_soa), u16::from(has_opt)]);
    out.extend_from_slice(query.question_bytes());
    if with_soa {
        let name = query.name.as_bytes();
        let owner = if name.ends_with(domain.as_bytes()) {
            wire::suffix_offset_in_wire(query.qname_wire(), name.len(), domain.len()).unwrap_or(0)
        } else {
            0
        };
        push_soa(out, HEADER_LEN + owner, config.ttl_secs, serial);
    }
    if has_opt {
        let mut options = Vec::with_capacity(notice.len() + 6);
        wire::push_ede(&mut options, EDE_BLOCKED, notice);
        wire::push_opt(out, query.dnssec_ok(), 0, &options);
    }
}

fn push_soa(out: &mut Vec<u8>, owner_at: usize, ttl: u32, serial: u32) {
    out.extend_from_slice(&(0xc000 | owner_at as u16).to_be_bytes());
    out.extend_from_slice(&TYPE_SOA.to_be_bytes());
    out.extend_from_slice(&wire::CLASS_IN.to_be_bytes());
    out.extend_from_slice(&ttl.to_be_bytes());
    let rdlen_at = out.len();
    out.extend_from_slice(&[0, 0]);
    let mname_at = out.len();
    out.extend_from_slice(SOA_MNAME);
    out.extend_from_slice(SOA_RNAME_LABEL);
    out.extend_from_slice(&(0xc000 | mname_at as u16).to_be_bytes());
    for value in [serial, 3600, 600, 86_400, ttl] {
        out.extend_from_slice(&value.to_be_bytes());
    }
    let rdlen = (out.len() - rdlen_at - 2) as u16;
    wire::set_u16(out, rdlen_at, rdlen);
}

#[cfg(test)]
mod tests {
    use hickory_proto::{
        op::{Message, ResponseCode},
        rr::{RData, RecordType},
    };

    use super::*;
    use crate::dns::wire::{flag, push_header, push_name, push_opt};

    fn query(name: &str, qtype: u16, edns: bool) -> Vec<u8> {
        let mut out = Vec::new();
        push_header(&mut out, 42, flag::RD, [1, 0, 0, u16::from(edns)]);
        push_name(&mut out, name);
        out.extend_from_slice(&qtype.to_be_bytes());
        out.extend_from_slice(&[0, 1]);
        if edns {
            push_opt(&mut out, true, 0, &[]);
        }
        out
    }

    fn blocked(name: &str, qtype: u16, edns: bool, config: &BlockConfig) -> Message {
        let packet = query(name, qtype, edns);
        let q = wire::parse_query(&packet).unwrap();
        let mut out = Vec::new();
        write(&mut out, &q, config, None, "tiktok.com", 7, "TikTok (ByteDance) is banned on this network");
        Message::from_vec(&out).unwrap()
    }

    #[test]
    fn nxdomain_with_soa_owned_by_the_listed_domain() {
        let msg = blocked("A.B.TikTok.com", 28, false, &BlockConfig::default());
        assert_eq!(msg.metadata.response_code, ResponseCode::NXDomain);
        assert!(msg.answers.is_empty());
        let soa = &msg.authorities[0];
        assert_eq!(soa.name.to_string().to_lowercase(), "tiktok.com.");
        assert_eq!(soa.ttl, 300);
        let RData::SOA(rdata) = &soa.data else { panic!("not an SOA") };
        assert_eq!(rdata.minimum, 300);
        assert_eq!(rdata.serial, 7);
        assert!(msg.edns.is_none(), "no OPT without EDNS in the query");
    }

    #[test]
    fn edns_queries_get_extended_error_15_and_do_echo() {
        let msg = blocked("tiktok.com", 65, true, &BlockConfig::default());
        let edns = msg.edns.as_ref().unwrap();
        assert!(edns.flags().dnssec_ok);
        let raw = msg.to_vec().unwrap();
        let text = b"TikTok (ByteDance) is banned on this network";
        assert!(raw.windows(text.len()).any(|w| w == text));
        assert!(raw.windows(4).any(|w| w == [0, 15, 0, (text.len() + 2) as u8]));
        assert_eq!(msg.queries[0].query_type(), RecordType::HTTPS);
    }

    #[test]
    fn nodata_and_refused_modes() {
        let nodata = BlockConfig { response: BlockResponse::Nodata, ttl_secs: 60 };
        let msg = blocked("tiktok.com", 15, false, &nodata);
        assert_eq!(msg.metadata.response_code, ResponseCode::NoError);
        assert_eq!(msg.authorities.len(), 1);
        let refused = BlockConfig { response: BlockResponse::Refused, ttl_secs: 60 };
        let msg = blocked("tiktok.com", 1, false, &refused);
        assert_eq!(msg.metadata.response_code, ResponseCode::Refused);
        assert!(msg.authorities.is_empty());
    }
}
