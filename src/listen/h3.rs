//! DNS-over-HTTPS over HTTP/3 (RFC 9114 with RFC 8484) on one established QUIC connection.
//!
//! Owns: the HTTP/3 connection (h3 over h3-quinn; requests open at once bounded by quinn's
//! stream limit, `server.tcp_max_in_flight_per_connection`), and reading each request's body.
//! Which requests carry a DNS query (GET with `?dns=`, POST with `application/dns-message`, on
//! `server.https_path` only; 404, 405, 415 otherwise) and the responses are the DoH/2 listener's
//! own (`https`), so both answer alike. Each request is answered in a task of its own.
//! Does not own: the QUIC endpoint and admission (`quic`), or the answer (`resolve`).

use std::sync::Arc;

use bytes::{Buf, Bytes};
use h3::server::{RequestResolver, RequestStream};
use quinn::VarInt;
use tracing::debug;

use crate::{
    listen::{
        https::{self, MAX_QUERY, QueryIn, RequestError},
        quic::Shared,
    },
    resolve::Client,
};

/// RFC 9114 §8.1: H3_EXCESSIVE_LOAD.
pub const EXCESSIVE_LOAD: VarInt = VarInt::from_u32(0x0107);
/// Request headers are small; a larger field section is an attack, not a DNS client.
const MAX_FIELD_SECTION: u64 = 16 << 10;

type Stream = RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>;

/// Serves HTTP/3 requests on `connection` until it closes (the client closes it, or quinn's
/// idle timeout does).
pub(crate) async fn serve_connection(shared: &Arc<Shared>, connection: quinn::Connection, client: Client) {
    let mut builder = h3::server::builder();
    builder.max_field_section_size(MAX_FIELD_SECTION);
    let built = builder.build::<_, Bytes>(h3_quinn::Connection::new(connection));
    let Ok(Ok(mut connection)) = tokio::time::timeout(shared.idle, built).await else {
        debug!(client = %client.addr.ip(), "http/3 connection setup failed");
        return;
    };
    loop {
        match connection.accept().await {
            Ok(Some(request)) => {
                shared.in_flight.spawn(answer(Arc::clone(shared), request, client));
            }
            Ok(None) => return,
            Err(error) => {
                debug!(client = %client.addr.ip(), %error, "http/3 connection closed");
                return;
            }
        }
    }
}

/// Answers one request: the DNS answer as 200, or the HTTP error the DoH/2 listener would send.
async fn answer(shared: Arc<Shared>, request: RequestResolver<h3_quinn::Connection, Bytes>, client: Client) {
    let Ok(Ok((request, mut stream))) = tokio::time::timeout(shared.idle, request.resolve_request()).await else {
        debug!(client = %client.addr.ip(), "http/3 request head not read");
        return;
    };
    // A body trickling in must not hold the stream open forever.
    let query = tokio::time::timeout(shared.idle, read_query(&request, &mut stream, &shared.https_path))
        .await
        .unwrap_or(Err(RequestError::Timeout));
    let (head, body) = https::response_to(&shared.resolver, query, client).await;
    let sent = async {
        stream.send_response(head).await?;
        stream.send_data(body).await?;
        stream.finish().await
    };
    if let Err(error) = sent.await {
        debug!(client = %client.addr.ip(), %error, "http/3 response not sent");
    }
}

async fn read_query(request: &http::Request<()>, stream: &mut Stream, path: &str) -> Result<Vec<u8>, RequestError> {
    match https::query_in(request, path)? {
        QueryIn::Uri(query) => Ok(query),
        QueryIn::Body => {
            let mut query = Vec::new();
            while let Some(mut chunk) = stream.recv_data().await.map_err(|e| RequestError::Body(Box::new(e)))? {
                if query.len() + chunk.remaining() > MAX_QUERY {
                    return Err(RequestError::TooLarge);
                }
                while chunk.has_remaining() {
                    let part = chunk.chunk();
                    query.extend_from_slice(part);
                    let n = part.len();
                    chunk.advance(n);
                }
            }
            Ok(query)
        }
    }
}
