//! DNS-over-HTTPS for clients (RFC 8484): HTTP/2 on the TLS connections that `tls` accepts.
//!
//! Owns: the HTTP/2 connection (stream limit, closing when idle), reading the DNS query out of a
//! request (POST with `application/dns-message`, or GET with `?dns=` in base64url, §4.1), and the
//! HTTP response: the DNS answer as `application/dns-message`, with `cache-control: max-age` no
//! longer than the answer's smallest TTL (§5.1). Every DNS answer, NXDOMAIN and SERVFAIL
//! included, is a 200 (§4.2.1); HTTP errors are only for requests that carry no DNS query.
//! The request checks (`query_in`) and the responses (`response_to`) are DoH3's too (`h3`), so
//! both answer alike.
//! Does not own: TLS (`tls`) or the answer (`resolve`).

use std::sync::Arc;

use bytes::Bytes;
use h2::{RecvStream, server::SendResponse};
use http::{Method, Request, Response, StatusCode, header};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::debug;

use crate::{
    dns::wire::{self, HEADER_LEN, TYPE_SOA, rcode},
    listen::tls::Service,
    resolve::{Client, Resolver},
};

/// Requests a client may have open at once on one connection.
const MAX_STREAMS: u32 = 100;
/// Largest DNS message (RFC 8484 §6 allows any size up to the 16-bit DNS limit).
pub(crate) const MAX_QUERY: usize = 65_535;
/// Request headers are small; a larger block is an attack, not a DNS client.
const MAX_HEADER_LIST: u32 = 16 << 10;
const DNS_MESSAGE: &str = "application/dns-message";

/// Why a request carries no usable DNS query.
#[derive(Debug, Error)]
pub(crate) enum RequestError {
    #[error("no DNS endpoint at this path")]
    NotFound,
    #[error("only GET and POST are supported")]
    MethodNotAllowed,
    #[error("content-type must be application/dns-message")]
    UnsupportedMediaType,
    #[error("the DNS query is larger than 65535 bytes")]
    TooLarge,
    #[error("GET needs a dns parameter with the query in base64url")]
    BadQueryParameter,
    #[error("request body: {0}")]
    Body(Box<dyn std::error::Error + Send + Sync>),
    #[error("the request did not arrive in time")]
    Timeout,
}

impl RequestError {
    fn status(&self) -> StatusCode {
        match self {
            RequestError::NotFound => StatusCode::NOT_FOUND,
            RequestError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            RequestError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            RequestError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            RequestError::BadQueryParameter | RequestError::Body(_) => StatusCode::BAD_REQUEST,
            RequestError::Timeout => StatusCode::REQUEST_TIMEOUT,
        }
    }
}

/// Serves HTTP/2 requests on one TLS connection until the client closes it or sends no request
/// for `service.idle` while none is in progress.
pub(crate) async fn serve_connection<S>(service: Arc<Service>, stream: S, client: Client)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let handshake = h2::server::Builder::new()
        .max_concurrent_streams(MAX_STREAMS)
        .max_header_list_size(MAX_HEADER_LIST)
        .handshake::<_, Bytes>(stream);
    let Ok(Ok(mut connection)) = tokio::time::timeout(service.idle, handshake).await else {
        debug!(client = %client.addr.ip(), "http/2 handshake failed");
        return;
    };
    loop {
        // `accept` also drives the connection's I/O, so the answers of the spawned requests
        // are written while it waits.
        match tokio::time::timeout(service.idle, connection.accept()).await {
            Ok(Some(Ok((request, respond)))) => {
                service.in_flight.spawn(answer(Arc::clone(&service), request, respond, client));
            }
            Ok(Some(Err(error))) => {
                debug!(client = %client.addr.ip(), %error, "http/2 connection failed");
                return;
            }
            Ok(None) => return,
            Err(_) if connection.has_streams() => continue,
            Err(_) => {
                // Idle: GOAWAY (RFC 9113 §6.8), then let the connection close cleanly.
                connection.graceful_shutdown();
                let drain = async { while let Some(Ok(_)) = connection.accept().await {} };
                let _ = tokio::time::timeout(service.idle, drain).await;
                return;
            }
        }
    }
}

/// Answers one request: the DNS answer as 200, or an HTTP error saying what is wrong.
async fn answer(service: Arc<Service>, request: Request<RecvStream>, mut respond: SendResponse<Bytes>, client: Client) {
    // A body trickling in must not hold the stream (and the connection) open forever.
    let query = tokio::time::timeout(service.idle, read_query(request, &service.https_path))
        .await
        .unwrap_or(Err(RequestError::Timeout));
    let (head, body) = response_to(&service.resolver, query, client).await;
    match respond.send_response(head, false) {
        Ok(mut send) => {
            if let Err(error) = send.send_data(body, true) {
                debug!(client = %client.addr.ip(), %error, "https response not sent");
            }
        }
        Err(error) => debug!(client = %client.addr.ip(), %error, "https response not sent"),
    }
}

/// The HTTP response to a request whose DNS query is `query` (or could not be read): the
/// pipeline's answer as 200, 400 when it has none, or the HTTP error of `query`. DoH3 answers
/// through here too.
pub(crate) async fn response_to(
    resolver: &Resolver,
    query: Result<Vec<u8>, RequestError>,
    client: Client,
) -> (Response<()>, Bytes) {
    match query {
        Ok(query) => {
            let mut out = Vec::new();
            resolver.answer(&query, client, &mut out).await;
            if out.is_empty() {
                // Nothing to say (a response packet sent as a query, a header too short to
                // answer): the same as a DNS server that stays silent.
                error_response(StatusCode::BAD_REQUEST, "no DNS answer for this message")
            } else {
                dns_response(out)
            }
        }
        Err(error) => {
            debug!(client = %client.addr.ip(), transport = client.transport.as_str(), %error, "https request without a DNS query");
            let mut response = error_response(error.status(), &error.to_string());
            if matches!(error, RequestError::MethodNotAllowed) {
                response.0.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static("GET, POST"));
            }
            response
        }
    }
}

/// Where a request's DNS query is (RFC 8484 §4.1), from its head alone.
pub(crate) enum QueryIn {
    /// GET: decoded from `?dns=`.
    Uri(Vec<u8>),
    /// POST with `application/dns-message`: the body.
    Body,
}

/// Checks a request's path, method and content type, and decodes a GET's query.
pub(crate) fn query_in<B>(request: &Request<B>, path: &str) -> Result<QueryIn, RequestError> {
    if request.uri().path() != path {
        return Err(RequestError::NotFound);
    }
    match *request.method() {
        Method::GET => {
            let encoded = request
                .uri()
                .query()
                .unwrap_or_default()
                .split('&')
                .find_map(|pair| pair.strip_prefix("dns="))
                .ok_or(RequestError::BadQueryParameter)?;
            // §4.1: base64url without padding; padding is tolerated.
            data_encoding::BASE64URL_NOPAD
                .decode(encoded.trim_end_matches('=').as_bytes())
                .map(QueryIn::Uri)
                .map_err(|_| RequestError::BadQueryParameter)
        }
        Method::POST => {
            let content_type = request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
            if content_type.is_none_or(|t| !t.trim().eq_ignore_ascii_case(DNS_MESSAGE)) {
                return Err(RequestError::UnsupportedMediaType);
            }
            Ok(QueryIn::Body)
        }
        _ => Err(RequestError::MethodNotAllowed),
    }
}

/// The DNS query in a request (RFC 8484 §4.1).
async fn read_query(request: Request<RecvStream>, path: &str) -> Result<Vec<u8>, RequestError> {
    match query_in(&request, path)? {
        QueryIn::Uri(query) => Ok(query),
        QueryIn::Body => read_body(request.into_body()).await,
    }
}

async fn read_body(mut body: RecvStream) -> Result<Vec<u8>, RequestError> {
    let mut query = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|e| RequestError::Body(Box::new(e)))?;
        let _ = body.flow_control().release_capacity(chunk.len());
        if query.len() + chunk.len() > MAX_QUERY {
            return Err(RequestError::TooLarge);
        }
        query.extend_from_slice(&chunk);
    }
    Ok(query)
}

fn dns_response(answer: Vec<u8>) -> (Response<()>, Bytes) {
    let mut response = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, DNS_MESSAGE)
        .header(header::CONTENT_LENGTH, answer.len());
    if let Some(ttl) = freshness(&answer) {
        response = response.header(header::CACHE_CONTROL, format!("max-age={ttl}"));
    }
    (response.body(()).unwrap_or_default(), Bytes::from(answer))
}

fn error_response(status: StatusCode, text: &str) -> (Response<()>, Bytes) {
    let body = Bytes::from(format!("{text}\n"));
    let response = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(header::CONTENT_LENGTH, body.len())
        .body(())
        .unwrap_or_default();
    (response, body)
}

/// How long an HTTP cache may keep `answer` (RFC 8484 §5.1): the smallest TTL of its answer and
/// authority records, and for an SOA also its MINIMUM (the negative TTL, RFC 2308 §5). None for
/// error answers and answers without records, which get no `cache-control`.
fn freshness(answer: &[u8]) -> Option<u32> {
    let rcode_bits = answer.get(3)? & 0x0f;
    if rcode_bits != rcode::NOERROR && rcode_bits != rcode::NXDOMAIN {
        return None;
    }
    let [qd, an, ns, _] = wire::read_counts(answer).ok()?;
    let mut pos = HEADER_LEN;
    for _ in 0..qd {
        pos = wire::skip_name(answer, pos).ok()? + 4;
    }
    let mut smallest: Option<u32> = None;
    for _ in 0..u32::from(an) + u32::from(ns) {
        let record = wire::skip_record(answer, pos).ok()?;
        let mut ttl = record.ttl(answer);
        if record.rtype(answer) == TYPE_SOA && record.rdata.len() >= 4 {
            let min = &answer[record.rdata.end - 4..record.rdata.end];
            ttl = ttl.min(u32::from_be_bytes([min[0], min[1], min[2], min[3]]));
        }
        smallest = Some(smallest.map_or(ttl, |s| s.min(ttl)));
        pos = record.end;
    }
    smallest
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A response with one question and the given records (type, ttl, rdata).
    fn response(rcode_bits: u8, records: &[(u16, u32, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        wire::push_header(&mut out, 1, wire::flag::QR | u16::from(rcode_bits), [1, records.len() as u16, 0, 0]);
        wire::push_name(&mut out, "example.org");
        out.extend_from_slice(&[0, 1, 0, 1]);
        for (rtype, ttl, rdata) in records {
            out.extend_from_slice(&[0xc0, 12]);
            out.extend_from_slice(&rtype.to_be_bytes());
            out.extend_from_slice(&1u16.to_be_bytes());
            out.extend_from_slice(&ttl.to_be_bytes());
            out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            out.extend_from_slice(rdata);
        }
        out
    }

    #[test]
    fn freshness_is_the_smallest_ttl() {
        assert_eq!(freshness(&response(0, &[(1, 300, &[192, 0, 2, 1]), (1, 60, &[192, 0, 2, 2])])), Some(60));
    }

    #[test]
    fn freshness_of_a_negative_answer_is_capped_by_the_soa_minimum() {
        let mut soa = vec![0, 0]; // root names for mname and rname
        soa.extend_from_slice(&[0; 16]);
        soa.extend_from_slice(&30u32.to_be_bytes());
        assert_eq!(freshness(&response(rcode::NXDOMAIN, &[(TYPE_SOA, 300, &soa)])), Some(30));
    }

    #[test]
    fn error_and_empty_answers_get_no_freshness() {
        assert_eq!(freshness(&response(rcode::SERVFAIL, &[(1, 300, &[192, 0, 2, 1])])), None);
        assert_eq!(freshness(&response(0, &[])), None);
        assert_eq!(freshness(&[0, 1]), None);
    }
}
